#!/usr/bin/env bash
# scripts/install-deps.sh — install the Debian packages traind needs to build and
# to run its test suite (only those missing). Used by .ci/run and scripts/quickstart.sh.
# Run as root, or as a user with sudo.
set -euo pipefail
need="build-essential pkg-config libjansson-dev libsqlite3-dev libmicrohttpd-dev libsystemd-dev libgnutls28-dev
      libcurl4-openssl-dev libopenblas-dev libturbojpeg0-dev libpng-dev libjpeg-turbo-progs
      curl jq sqlite3 systemd python3 procps"
missing=""
for p in $need; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
