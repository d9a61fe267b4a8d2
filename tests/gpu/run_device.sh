#!/usr/bin/env bash
# tests/gpu/run_device.sh — what runs ON the GPU machine (through the `run`
# tool), after `tests/gpu/fetch_devlibs.sh` and `make -j2 all gpu-tests` here:
#   run(command="tests/gpu/run_device.sh [tests|bench|all]",
#       carry=["build/release", ".devlibs"])
# Puts the carried runtime libraries on LD_LIBRARY_PATH, records the card,
# runs every GPU test binary (TAP), and with "bench" or "all" the op timings
# (and bench/run_bench.sh when it exists). Logs go to $OUT (or ./gpu-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-tests}
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.devlibs/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
{
    date -u
    git rev-parse --short HEAD 2>/dev/null || true
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
} | tee "$OUT/device.txt"

fail=0
if [ "$mode" = tests ] || [ "$mode" = all ]; then
    for t in build/release/gpu-tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        echo "== $name"
        "$t" > "$OUT/$name.log" 2>&1
        rc=$?
        grep -E '^not ok|^# |Bail out' "$OUT/$name.log" | head -60
        echo "$name: exit $rc, $(grep -c '^ok' "$OUT/$name.log") ok, $(grep -c '^not ok' "$OUT/$name.log") not ok"
        [ $rc -eq 0 ] || fail=1
    done
fi
if [ "$mode" = bench ] || [ "$mode" = all ]; then
    TEST_BENCH=1 TEST_QUICK=1 build/release/gpu-tests/test_ops_gpu 2>&1 | grep '^# bench' | tee "$OUT/bench_ops.txt"
    if [ -x bench/run_bench.sh ]; then bench/run_bench.sh 2>&1 | tee "$OUT/bench.txt"; fi
fi
exit $fail
