#!/usr/bin/env bash
# tests/gpu/device_batch.sh — one device call's worth of GPU work, run ON the GPU
# machine: what the machine has for image import (libjpeg-turbo, libpng,
# nvJPEG), the GPU suite (tests/gpu/run_device.sh GPU_MODES, default "tests hf";
# empty: none), the import benchmark (IMPORT_FRAMES), a baseline build's train
# steps beside this build's (BASE_BIN_DIR), and the benchmark steps named in
# BENCH_ONLY (bench/run_device.sh), if any. Carry:
#   build/release/traind build/release/trainctl build/release/gpu-tests
#   build/release/bench .devlibs (or, packed: tests/gpu/pack_carry.sh, carry build/carry)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/traind-gpu-out}
mkdir -p "$OUT"
{
    echo "== image libraries on this machine"
    ldconfig -p | grep -iE "turbojpeg|libjpeg|libpng|nvjpeg" || echo "(none in ldconfig)"
    find / -xdev \( -name 'libnvjpeg*.so*' -o -name 'nvjpeg.h' \) -not -path '/proc/*' 2>/dev/null | head -8
    python3 -c 'import torchvision, PIL; print("torchvision", torchvision.__version__, "PIL", PIL.__version__)' 2>&1
    echo "cores: $(nproc)"
} 2>&1 | tee "$OUT/probe.txt"
rc=0
# each part under its own limit, so that one that hangs leaves time to the next
MODES=${GPU_MODES-tests hf}
if [ -n "$MODES" ]; then
    timeout -k 10 "${SUITE_S:-200}" tests/gpu/run_device.sh $MODES >"$OUT/suite.log" 2>&1 || rc=1
    echo "== GPU suite ($MODES): $([ $rc -eq 0 ] && echo passed || echo FAILED), log suite.log"
    grep -E '^not ok|^# (Looks like|failed|FAIL)|^(PASS|FAIL|ok|not ok) *[a-z_]+[: ]|passed|failed' "$OUT/suite.log" | tail -n 40
fi
# IMPORT_FRAMES: the import benchmark (issue 8), bench/import_device.sh
if [ -n "${IMPORT_FRAMES:-}" ]; then
    OUT=$OUT/import timeout -k 10 "${IMPORT_S:-180}" bench/import_device.sh >/dev/null 2>&1 || rc=1
    echo "== import benchmark: log import/import.log"
    grep -E '^RESULT|images/s|goal|nvjpeg|SKIP|ERROR' "$OUT/import/import.log" | tail -n 20
fi
# BASE_BIN_DIR: the traind train steps of a baseline build (a folder with its
# bench_traind; traind is copied beside it) against this build, in this call;
# NEW_EXTRA: steps for this build only (default traind_augment32, issue 9)
if [ -n "${BASE_BIN_DIR:-}" ]; then
    cp build/release/traind "$BASE_BIN_DIR/"
    for v in base new; do
        dir=$([ $v = base ] && echo "$BASE_BIN_DIR" || echo "")
        steps=${BASE_STEPS:-traind_train32 traind_train128}
        [ $v = new ] && steps="$steps ${NEW_EXTRA-traind_augment32}"
        OUT=$OUT/$v BENCH_BIN_DIR=$dir BENCH_BUDGET_S="${BASE_S:-80}" BENCH_ONLY="$steps" \
            bench/run_device.sh >/dev/null 2>&1 || rc=1
        echo "== $v:"; grep -h '^RESULT\|^!!' "$OUT/$v/bench.log" | cut -c1-240
    done
fi
if [ -n "${BENCH_ONLY:-}" ]; then OUT=$OUT/bench BENCH_ONLY="$BENCH_ONLY" bench/run_device.sh || rc=1; fi
# a device call returns at most 8 files: everything under OUT as one archive
# (tar -xzf logs.tgz here); KEEP_FILES=1 leaves the files as they are
if [ -z "${KEEP_FILES:-}" ]; then
    tar -C "$OUT" -czf "/tmp/traind-logs.$$.tgz" . &&
        find "$OUT" -mindepth 1 -delete && mv "/tmp/traind-logs.$$.tgz" "$OUT/logs.tgz"
fi
exit $rc
