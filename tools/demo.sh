#!/bin/sh
# The main job: the sbx server on 127.0.0.1:5555 (state in ~/.sbx), in the
# foreground until Ctrl-C / SIGTERM. Make an API key with
#   build/sbx server keygen --expire 7d
# or set SBX_DEV=1 to run without auth.
set -e
SBX=${1:-build}/sbx
"$SBX" info
if [ -n "${SBX_DEV:-}" ]; then
    exec "$SBX" server start --dev
fi
echo "API key for clients (MSB_API_KEY): $("$SBX" server keygen --expire 7d | head -1 | cut -d' ' -f2)"
exec "$SBX" server start
