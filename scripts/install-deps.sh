#!/usr/bin/env bash
# scripts/install-deps.sh — install the Debian packages traind needs to build and
# to run its test suite (only those missing). Used by .ci/run and scripts/quickstart.sh.
# Run as root, or as a user with sudo. chromium (headless) is only for the test suite
# (tests/integration/16_boundaries.sh: a page of another origin attacking the daemon from a
# real browser); --no-browser leaves it out (scripts/quickstart.sh).
set -euo pipefail
# libjs-chart.js: Chart.js, built into traind's dashboard at build time (the Makefile embeds it);
# chromium (+ a font for its screenshots): the headless browser of tests/integration/90_dashboard.sh.
need="build-essential pkg-config libjansson-dev libsqlite3-dev libmicrohttpd-dev libsystemd-dev libgnutls28-dev
      libcurl4-openssl-dev libopenblas-dev libturbojpeg0-dev libpng-dev libjpeg-turbo-progs
      curl jq sqlite3 systemd python3 procps libjs-chart.js fonts-dejavu-core"
[ "${1:-}" = --no-browser ] || need="$need chromium"
missing=""
for p in $need; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
