#!/bin/sh
# The main job until the server lands: a demo sandbox on the embedded
# default (the host image), showing isolation and limits.
set -e
SBX=${1:-build}/sbx
echo "== sbx info"; "$SBX" info
echo "== a sandboxed shell: who am I, what can I see"
"$SBX" run --memory 256 --cpu 1 --timeout 10 -- sh -c '
  echo "user: $(id -un) uid=$(id -u) host=$(hostname)"
  echo "processes visible: $(ls /proc | grep -c "^[0-9]")"
  echo "network: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\n" " ")"
  test -e /etc/shadow || echo "/etc/shadow: absent"
  python3 -c "print(\"python3 says\", 6*7)"'
echo "== a memory hog under --memory 64 (expect exit 137)"
"$SBX" run --memory 64 -- python3 -c 'x = b"a" * (512 << 20)' || echo "exit code: $?"
