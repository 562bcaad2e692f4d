#!/bin/sh
# Installs the Debian packages sbx needs to build and test, if missing.
set -e
PKGS="build-essential pkg-config libseccomp-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev
libsqlite3-dev libssl-dev libarchive-dev musl-tools bubblewrap util-linux python3 e2fsprogs hyperfine"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# node and npm run the official JS SDKs in the tests (and node the
# javascript REPL); a node installed another way counts.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $missing >/dev/null
