#!/usr/bin/env bash
# tests/gpu/run_device.sh — what runs ON the GPU machine (through the `run`
# tool), after `tests/gpu/fetch_devlibs.sh` and `make -j2 all gpu-tests` here:
#   run(command="tests/gpu/run_device.sh [tests|hf|bench|all]...",
#       carry=["build/release/traind", "build/release/trainctl",
#              "build/release/gpu-tests", ".devlibs"])
# (naming the binaries rather than build/release keeps the carry under 64 MiB).
# Puts the carried runtime libraries on LD_LIBRARY_PATH, records the card, and
# runs, by mode: tests = every GPU test binary (TAP); hf = traind forward on
# the GPU against HF Dinov2Model (tests/hf/check_forward.py) and a train
# step's gradients against PyTorch autograd (tests/gpu/check_grads_torch.py);
# bench = the op timings (and bench/run_device.sh when it exists); ops = the op
# timings alone; multi = only the jobs over several GPUs (tests/gpu/test_multigpu.sh,
# then bench/run_device.sh's step traind_dp) — on a machine of 2+ GPUs: run(kind="nvidia-h100-x2",
# command="tests/gpu/run_device.sh multi", carry=[as above]). Several modes may
# be given; "all" is tests, hf and bench. Logs go to $OUT (or /tmp/traind-gpu-out).
set -uo pipefail
cd "$(dirname "$0")/../.."
modes=" ${*:-tests} "
[ "$modes" = " all " ] && modes=" tests hf bench "
has() { case "$modes" in *" $1 "*) return 0;; esac; return 1; }
OUT=${OUT:-/tmp/traind-gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$PWD/.devlibs/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
# cuDNN (fused attention forward, loaded at run time) and NVRTC for its
# runtime-compiled engines: the machine has them only in PyTorch's packages
nv=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
for d in ${nv:+$nv/*/lib}; do LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
export PATH="$PWD/.devlibs/bin:$PATH"   # jq for the TAP scripts, when the machine lacks it
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
{
    date -u
    git rev-parse --short HEAD 2>/dev/null || true
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
} | tee "$OUT/device.txt"

fail=0
if has tests; then
    # gpu/cuda/nvjpeg_api.h against the real nvjpeg.h (compile only)
    hdr=$(ls /usr/local/cuda/include/nvjpeg.h /usr/local/cuda-*/include/nvjpeg.h 2>/dev/null | head -1)
    if [ -n "$hdr" ]; then
        if gcc -std=gnu11 -Wall -Wextra -Werror -fsyntax-only -I. -I"$(dirname "$hdr")" tests/gpu/check_nvjpeg_api.c \
            > "$OUT/check_nvjpeg_api.log" 2>&1; then
            echo "check_nvjpeg_api: nvjpeg_api.h agrees with $hdr"
        else
            echo "check_nvjpeg_api: FAILED against $hdr"; head -20 "$OUT/check_nvjpeg_api.log"; fail=1
        fi
    else
        echo "check_nvjpeg_api: no nvjpeg.h on this machine"
    fi
    for t in build/release/gpu-tests/${GPU_TEST_ONLY:-test_*}; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        echo "== $name"
        "$t" > "$OUT/$name.log" 2>&1
        rc=$?
        grep -E '^not ok|^# |Bail out' "$OUT/$name.log" | head -60
        echo "$name: exit $rc, $(grep -c '^ok' "$OUT/$name.log") ok, $(grep -c '^not ok' "$OUT/$name.log") not ok"
        [ $rc -eq 0 ] || fail=1
    done
    for t in ${GPU_TEST_ONLY:+/nonexistent}tests/gpu/test_*.sh; do   # TAP scripts against a real daemon on the GPU
        [ -f "$t" ] || continue
        name=$(basename "$t" .sh)
        echo "== $name"
        bash "$t" > "$OUT/$name.log" 2>&1
        rc=$?
        grep -E '^not ok|Bail out' "$OUT/$name.log" | head -20
        echo "$name: exit $rc, $(grep -c '^ok' "$OUT/$name.log") ok, $(grep -c '^not ok' "$OUT/$name.log") not ok"
        [ $rc -eq 0 ] || fail=1
    done
fi
if has multi; then
    echo "== test_multigpu ($(nvidia-smi -L | grep -c '^GPU ') GPUs)"
    bash tests/gpu/test_multigpu.sh > "$OUT/test_multigpu.log" 2>&1
    rc=$?
    grep -E '^not ok|^# |Bail out|SKIP' "$OUT/test_multigpu.log" | head -40
    echo "test_multigpu: exit $rc, $(grep -c '^ok' "$OUT/test_multigpu.log") ok, $(grep -c '^not ok' "$OUT/test_multigpu.log") not ok"
    [ $rc -eq 0 ] || fail=1
    if [ -x build/release/bench/bench_traind ]; then
        OUT="$OUT/bench" BENCH_ONLY=traind_dp bench/run_device.sh 2>&1 | tail -25
    fi
fi
if has hf; then
    echo "== tests/hf/check_forward.py (cuda)"
    PYTHONUNBUFFERED=1 python3 tests/hf/check_forward.py --traind build/release/traind --backend cuda \
        > "$OUT/hf_forward.log" 2>&1
    rc=$?
    cat "$OUT/hf_forward.log" | tail -30
    [ $rc -eq 0 ] || fail=1
    echo "== tests/gpu/check_grads_torch.py"
    PYTHONUNBUFFERED=1 python3 tests/gpu/check_grads_torch.py --bin build/release/gpu-tests/test_grad_gpu \
        > "$OUT/grads_torch.log" 2>&1
    rc=$?
    tail -20 "$OUT/grads_torch.log"
    [ $rc -eq 0 ] || fail=1
fi
if has ops; then   # the op timings alone (test_ops_gpu TEST_BENCH=only)
    TEST_BENCH=only build/release/gpu-tests/test_ops_gpu 2>&1 | grep '^# bench' | tee "$OUT/bench_ops.txt"
fi
if has bench; then
    TEST_BENCH=1 TEST_QUICK=1 build/release/gpu-tests/test_ops_gpu 2>&1 | grep '^# bench' | tee "$OUT/bench_ops.txt"
    if [ -x bench/run_device.sh ]; then bench/run_device.sh 2>&1 | tee "$OUT/bench.txt"; fi
fi
exit $fail
