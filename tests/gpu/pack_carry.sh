#!/usr/bin/env bash
# tests/gpu/pack_carry.sh — everything a device call needs that git does not
# carry, in one xz tarball under the 64 MiB carry limit (the stripped binaries
# and .devlibs are ~61 MiB raw, ~7 MiB packed; libopenblas alone is 36 MiB):
#   tests/gpu/fetch_devlibs.sh && make -j2 all gpu-tests bench-build && tests/gpu/pack_carry.sh [EXTRA_PATH...]
#   run(command="tar -xJf build/carry/all.tar.xz && GPU_MODES='tests hf' tests/gpu/device_batch.sh",
#       carry=["build/carry"])
# EXTRA_PATH: more built paths to pack (e.g. build/base with a baseline's bench_traind).
# Debug info is stripped from copies, not from the build tree (make stays up to date).
set -euo pipefail
cd "$(dirname "$0")/../.."
R=build/release
stage=$(mktemp -d "${TMPDIR:-/tmp}/traind-carry.XXXXXX")
trap 'rm -rf "$stage"' EXIT
paths=("$R/traind" "$R/trainctl" "$R/gpu-tests" "$R/bench/bench_traind" "$R/tools/mkframes" .devlibs "$@")
for p in "${paths[@]}"; do
    [ -e "$p" ] || { echo "pack_carry: $p missing (build it first)" >&2; exit 1; }
    mkdir -p "$stage/$(dirname "$p")"
    cp -a "$p" "$stage/$p"
done
find "$stage/$R" "$stage/build" -type f -name '*.d' -delete 2>/dev/null || true
find "$stage/$R" -type f -perm -u+x -exec strip --strip-debug {} + 2>/dev/null || true
mkdir -p build/carry
tar -C "$stage" -cf - . | xz -T2 -6 >build/carry/all.tar.xz.tmp
mv build/carry/all.tar.xz.tmp build/carry/all.tar.xz
ls -la build/carry/all.tar.xz
