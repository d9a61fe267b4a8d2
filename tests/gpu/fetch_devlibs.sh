#!/usr/bin/env bash
# tests/gpu/fetch_devlibs.sh — run HERE (the build machine), not on the GPU machine.
#
# The GPU machine (Ubuntu 24.04, no package registry reachable) lacks the
# runtime libraries of libmicrohttpd and OpenBLAS that traind and the test
# binaries link against (and maybe jq, which the TAP scripts use), and maybe
# those of libjpeg-turbo's TurboJPEG and libpng (imports: libturbojpeg.so.0,
# libpng16.so.16). This downloads the Debian packages with
# `apt-get download`, unpacks them with `dpkg -x` into .devlibs/ (git-ignored)
# and copies the shared objects flat into .devlibs/lib/, which the device
# script puts on LD_LIBRARY_PATH. Carry it with run(carry=[..., ".devlibs"]).
set -euo pipefail
cd "$(dirname "$0")/../.."
pkgs="libmicrohttpd12 libopenblas0-pthread libgfortran5 libquadmath0 jq libjq1 libonig5 libturbojpeg0 libpng16-16"
# Debian may name it libmicrohttpd12t64 (time_t transition)
if ! apt-cache show libmicrohttpd12 >/dev/null 2>&1; then pkgs="${pkgs/libmicrohttpd12/libmicrohttpd12t64}"; fi
rm -rf .devlibs
mkdir -p .devlibs/deb .devlibs/root .devlibs/lib
(cd .devlibs/deb && apt-get download $pkgs 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
ls .devlibs/deb/*.deb >/dev/null
for f in .devlibs/deb/*.deb; do dpkg -x "$f" .devlibs/root; done
# flat copy of the four SONAMEs the binaries need (symlinks resolved; the
# carry limit is 64 MiB, so nothing else): OpenBLAS's pthread variant is the
# libopenblas.so.0 under openblas-pthread/
mkdir -p .devlibs/bin
cp .devlibs/root/usr/bin/jq .devlibs/bin/   # the device TAP scripts use jq
for so in libmicrohttpd.so.12 libgfortran.so.5 libquadmath.so.0 libjq.so.1 libonig.so.5 libturbojpeg.so.0 libpng16.so.16; do
    f=$(find .devlibs/root -name "$so" | head -1)
    [ -n "$f" ] && cp -L "$f" .devlibs/lib/
done
ob=$(find .devlibs/root -path '*openblas-pthread*' -name 'libopenblas.so.0' | head -1)
if [ -n "$ob" ]; then cp -L "$ob" .devlibs/lib/libopenblas.so.0; fi
rm -rf .devlibs/deb .devlibs/root
for need in libmicrohttpd.so.12 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libjq.so.1 libonig.so.5 \
            libturbojpeg.so.0 libpng16.so.16; do
    [ -e ".devlibs/lib/$need" ] || { echo "fetch_devlibs: $need missing after unpacking" >&2; exit 1; }
done
echo "fetch_devlibs: $(ls .devlibs/lib | wc -l) libraries + jq, $(du -sh .devlibs | cut -f1) in .devlibs"
