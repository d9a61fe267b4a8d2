#!/usr/bin/env bash
# bench/run_device.sh — the SPEC §8 benchmarks, traind against the PyTorch
# reference, side by side in ONE call on the GPU machine. Builds nothing: the
# binaries come built from the build machine. There (the build machine):
#
#   tests/gpu/fetch_devlibs.sh && make -j2 all bench-build
#   run(command="BENCH_COMMIT=<short hash, written out here> bench/run_device.sh",
#       carry=["build/release/traind", "build/release/bench", ".devlibs"], timeout_s=600)
#
# (bench/RESULTS.md shows the variant that builds a clean `git archive` of the
# commit into /tmp and carries its two binaries via BENCH_BIN_DIR, so that
# other people's uncommitted edits never reach the measured binaries.)
#
# Runs, in this order (traind first: it is fast; then the torch steps the
# goals need most; torch.compile takes longest), each step under a time limit
# taken from a total budget (BENCH_BUDGET_S, default 560 s) so that the whole
# call ends inside the device tool's 10 minutes even when a step hangs:
#   traind   train dinov2-large freeze 12 hand head, batch 32 and 128 (bf16
#            plan), each with a per-op profile (bench_traind --profile 3)
#   traind   the cost of augmentation (every kind on) on the batch-32 train
#            step: plain and augmented steps interleaved (bench_traind --augment; goal <= 3 %)
#   traind   eval dinov2-large batch 256
#   traind   load: random U8 shards of BENCH_LOAD_GB (4) GB resident bf16, warm page cache
#   traind   second job: the daemon (--backend cuda, loopback port, temp state
#            dir) with a resident synthetic dataset; two dinov2-small train
#            jobs, the second timed from POST to its first step (compare.py second-job)
#   torch    eager train b32; eval b256; torch.compile train b32, b128 (few
#            iterations); eager train b128; load (torch.load, safetensors) of
#            BENCH_TORCH_LOAD_GB (2) GB (writing its cache files takes longer
#            than loading them)
#   torch    "torch-best": bf16 inputs + compile mode max-autotune, b32 and b128
#   traind/torch dinov2-base fully trained, b128 (traind, compile, torch-best)
#   traind   second job again with dinov2-large freeze 12 (informational)
#   traind   data parallel (only on a machine with 2+ GPUs, e.g. kind nvidia-h100-x2):
#            a daemon on every GPU, dinov2-base fully trained at global batch
#            128 on 1 GPU and on all of them (NCCL), images/s and the scaling
#            (compare.py data-parallel); BENCH_ONLY="traind_dp" alone runs it
# Everything does not fit one call's 10 minutes: the default budget runs the
# steps in order and skips the rest; a second call with BENCH_ONLY="torch_best32
# torch_best128 traind_base128 torch_base_compile128 torch_base_best128" runs the others.
# Every line of output goes to $OUT/bench.log (RESULT lines and errors are
# echoed); at the end bench/compare.py prints the table ($OUT/table.txt, and
# Markdown in $OUT/table.md for bench/RESULTS.md).
#
# Environment: OUT (default ./bench-out); BENCH_BIN_DIR: a folder holding
# traind and bench_traind (e.g. built from a clean `git archive` of a commit
# and carried; default build/release and build/release/bench); BENCH_COMMIT
# (recorded in the log); BENCH_BUDGET_S; BENCH_LOAD_GB; BENCH_TORCH_LOAD_GB;
# BENCH_ONLY: step names to run, space-separated (e.g. "traind_train32
# torch_eager32", or "traind_augment32" alone; default all). A dry run of traind's steps on a machine
# without a GPU: BENCH_BACKEND=cpu BENCH_SIZE=tiny BENCH_FREEZE=1 BENCH_IMAGE=28
# BENCH_SECOND="dinov2-tiny 1" BENCH_LOAD_GB=0.05 BENCH_ONLY="traind_train32
# traind_eval256 traind_load traind_second".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench-out}
mkdir -p "$OUT"
LOG=$OUT/bench.log
BUDGET=${BENCH_BUDGET_S:-560}
LOAD_GB=${BENCH_LOAD_GB:-4}
TORCH_LOAD_GB=${BENCH_TORCH_LOAD_GB:-2}
ONLY=" ${BENCH_ONLY:-} "
BACKEND=${BENCH_BACKEND:-cuda}
SIZE=${BENCH_SIZE:-large}
FREEZE=${BENCH_FREEZE:-12}
IMAGE=${BENCH_IMAGE:-224}
read -r SECOND_BB SECOND_FREEZE <<<"${BENCH_SECOND:-dinov2-small 0}"
START=$(date +%s)
export LD_LIBRARY_PATH="$ROOT/.devlibs/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
# cuDNN and NVRTC (cuDNN's runtime-compiled engines: the fused MLP GELU) from PyTorch's packages
nv=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
for d in ${nv:+$nv/*/lib}; do LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
BIN=${BENCH_BIN_DIR:-}
TRAIND=${BIN:-$ROOT/build/release}/traind
BENCH=${BIN:-$ROOT/build/release/bench}/bench_traind
PY=${PYTHON:-python3}

elapsed() { echo $(( $(date +%s) - START )); }
wanted() {
    [ "$ONLY" = "  " ] && return 0
    case "$ONLY" in *" $1 "*) return 0;; esac
    return 1
}

# step NAME MAX_S CMD... — runs CMD with its output appended to the log, under
# min(MAX_S, budget left); echoes RESULT lines and the last lines of a failure.
step() {
    local name=$1 tmax=$2; shift 2
    wanted "$name" || return 0
    local left=$(( BUDGET - $(elapsed) ))
    if [ "$left" -lt 15 ]; then
        echo "== $name: skipped, budget spent ($(elapsed) s of $BUDGET)" | tee -a "$LOG"
        return 0
    fi
    [ "$tmax" -gt "$left" ] && tmax=$left
    echo "== $name (t=$(elapsed) s, limit $tmax s): $*" | tee -a "$LOG"
    local t0 rc
    t0=$(( $(date +%s%N) / 1000000 ))
    timeout -k 10 "$tmax" "$@" >"$OUT/step.log" 2>&1
    rc=$?
    cat "$OUT/step.log" >>"$LOG"
    grep '^RESULT ' "$OUT/step.log"
    if [ $rc -ne 0 ]; then
        echo "!! $name: exit $rc$([ $rc -eq 124 ] && echo ' (time limit)')" | tee -a "$LOG"
        grep -v '^RESULT ' "$OUT/step.log" | tail -n 8 | sed 's/^/   /'
    fi
    echo "   ($name took $(( $(date +%s%N) / 1000000 - t0 )) ms)" >>"$LOG"
    rm -f "$OUT/step.log"
}

# daemon_start [ARG...] — a daemon of its own (temporary state dir, a free port), with
# ARGs added to its command line; sets state, port and dpid. daemon_stop LINES — stops it,
# shows the last LINES of its log and removes its state.
daemon_start() {
    state=$(mktemp -d "${TMPDIR:-/tmp}/traind-bench.XXXXXX")
    port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$TRAIND" --state-dir "$state" --backend "$BACKEND" "$@" --listen "127.0.0.1:$port" --log-level info \
        2>"$state/daemon.log" &
    dpid=$!
}
daemon_stop() {
    kill -TERM "$dpid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dpid" 2>/dev/null
    wait "$dpid" 2>/dev/null
    echo "--- daemon log (last $1 lines)"
    tail -n "$1" "$state/daemon.log"
    rm -rf "$state"
}

# second_job BACKBONE FREEZE — a daemon of its own, two train jobs, the second
# timed. Run as `run_device.sh --second-job BACKBONE FREEZE` (a process of its
# own, so that `timeout` can stop it with the daemon it started).
second_job() {
    local backbone=$1 freeze=$2 state port dpid rc
    daemon_start
    $PY bench/compare.py second-job --url "http://127.0.0.1:$port" --backbone "$backbone" --freeze "$freeze" \
        --batch 32 --image "$IMAGE" --samples 256 --steps 5 --timeout 240
    rc=$?
    daemon_stop 30
    return $rc
}
if [ "${1:-}" = "--second-job" ]; then
    second_job "$2" "$3"
    exit $?
fi
# data_parallel N — a daemon on GPUs 0..N-1, the same train job on 1 and on N of them.
data_parallel() {
    local n=$1 state port dpid rc
    daemon_start --devices "$(seq -s, 0 $((n - 1)))"
    $PY bench/compare.py data-parallel --url "http://127.0.0.1:$port" --devices "$n" --image "$IMAGE" --timeout 240 \
        ${BENCH_DP_ARGS:-}
    rc=$?
    daemon_stop 40
    return $rc
}
if [ "${1:-}" = "--data-parallel" ]; then
    data_parallel "$2"
    exit $?
fi
: >"$LOG"

{
    echo "# bench/run_device.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC') commit ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    echo "# $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1)"
    echo "# $($PY -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1)"
    echo "# CPU: $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
} | tee -a "$LOG"
for f in "$TRAIND" "$BENCH"; do
    [ -x "$f" ] || { echo "run_device: $f missing (build it here and carry it)" | tee -a "$LOG"; exit 1; }
done

# traind
B=("$BENCH" --backend "$BACKEND")
step traind_train32   90 "${B[@]}" train --size "$SIZE" --image "$IMAGE" --batch 32 --freeze "$FREEZE" --profile 3
step traind_train128 120 "${B[@]}" train --size "$SIZE" --image "$IMAGE" --batch 128 --freeze "$FREEZE" --profile 3
step traind_augment32  90 "${B[@]}" train --size "$SIZE" --image "$IMAGE" --batch 32 --freeze "$FREEZE" --augment --iters 30
step traind_eval256   90 "${B[@]}" eval --size "$SIZE" --image "$IMAGE" --batch 256
step traind_load     120 "${B[@]}" load --image "$IMAGE" --gb "$LOAD_GB"
step traind_second    90 "$ROOT/bench/run_device.sh" --second-job "$SECOND_BB" "$SECOND_FREEZE"
# torch reference (bench/torch_ref.py), in the order of the goals' need:
# train eager b32, eval eager b256, compile b32/b128, then eager b128 and load
step torch_eager32   100 $PY bench/torch_ref.py train --batch 32
step torch_eval256   100 $PY bench/torch_ref.py eval --batch 256
step torch_compile32  220 $PY bench/torch_ref.py train --batch 32 --compile --warmup 3 --iters 10
step torch_compile128 220 $PY bench/torch_ref.py train --batch 128 --compile --warmup 3 --iters 10
step torch_eager128  120 $PY bench/torch_ref.py train --batch 128 --warmup 3 --iters 10
step torch_load      150 $PY bench/torch_ref.py load --gb "$TORCH_LOAD_GB"
# the strongest plain PyTorch a careful user would write: bf16 inputs, max-autotune
# (its autotuning took over 300 s at b32 on an H100: select one with BENCH_ONLY in a call of its own)
step torch_best32    560 $PY bench/torch_ref.py train --batch 32 --compile --mode max-autotune --bf16-input --warmup 3 --iters 10
step torch_best128   560 $PY bench/torch_ref.py train --batch 128 --compile --mode max-autotune --bf16-input --warmup 3 --iters 10
# a second shape: dinov2-base fully trained at batch 128
step traind_base128  120 "${B[@]}" train --size base --image "$IMAGE" --batch 128 --freeze 0
step torch_base_compile128 220 $PY bench/torch_ref.py train --size base --freeze 0 --batch 128 --compile --warmup 3 --iters 10
step torch_base_best128    560 $PY bench/torch_ref.py train --size base --freeze 0 --batch 128 --compile --mode max-autotune --bf16-input --warmup 3 --iters 10
# informational: the second job when it is the large model of the train benchmark
step traind_second_large 90 "$ROOT/bench/run_device.sh" --second-job "dinov2-$SIZE" "$FREEZE"
# data parallel over every GPU of the machine (NCCL), when there are several
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "$BACKEND" = cuda ] && [ "${NGPU:-0}" -ge 2 ]; then
    step traind_dp 240 "$ROOT/bench/run_device.sh" --data-parallel "$NGPU"
elif wanted traind_dp; then
    echo "== traind_dp: skipped, $NGPU GPU(s) (needs 2 or more)" | tee -a "$LOG"
fi

echo "== done in $(elapsed) s" | tee -a "$LOG"
$PY bench/compare.py table "$LOG" | tee "$OUT/table.txt"
$PY bench/compare.py table "$LOG" --md >"$OUT/table.md"
exit 0
