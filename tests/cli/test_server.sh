# The server's integration suite (Python stdlib client over real HTTP).
. "$(dirname "$0")/lib.sh"
exec /usr/bin/python3 "$SBX_ROOT/tests/server/test_msb.py"
