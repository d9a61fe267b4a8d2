#!/usr/bin/env bash
# bench/headline.sh — the mission's headline run, ON the GPU machine (an H200
# for ~100 GB; an H100 holds ~60): HEADLINE_GB of bf16 samples written as u8
# shards into /dev/shm (half that on "disk"; the host's /tmp has 64 GB), made
# resident through the daemon (POST /v1/datasets {"path"} -> ready), then a
# dinov2-large train job (12 frozen, b32), an eval and an infer job from it —
# each timed from POST to its first step and to its end (bench/compare.py
# headline). Builds nothing; carry build/carry (tests/gpu/pack_carry.sh):
#   run(command="tar -xJf build/carry/all.tar.xz && HEADLINE_GB=100 bench/headline.sh",
#       carry=["build/carry"], kind="nvidia-h200")
# Environment: HEADLINE_GB (100), HEADLINE_DIR (/dev/shm/traind-headline),
# HEADLINE_STEPS (100), HEADLINE_BACKEND (cuda), HEADLINE_BACKBONE (dinov2-large), HEADLINE_FREEZE
# (12), HEADLINE_EVAL (16384), HEADLINE_INFER (4096), OUT (./bench-out), BENCH_BIN_DIR (build/release).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench-out}
mkdir -p "$OUT"
GB=${HEADLINE_GB:-100}
DIR=${HEADLINE_DIR:-/dev/shm/traind-headline}
BIN=${BENCH_BIN_DIR:-$ROOT/build/release}
LOG=$OUT/headline.log
export LD_LIBRARY_PATH="$ROOT/.devlibs/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
nv=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
for d in ${nv:+$nv/*/lib}; do LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
{
    echo "# bench/headline.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC') commit ${BENCH_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}"
    echo "# $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
    echo "# /dev/shm: $(df -h /dev/shm | tail -1)"
} | tee "$LOG"
t0=$(date +%s)
rm -rf "$DIR"
# bench_traind's load writes the shards (random u8 pixels, labels) and times one
# load of its own; --keep leaves them for the daemon
"$BIN/bench/bench_traind" --backend "${HEADLINE_BACKEND:-cuda}" load --gb "$GB" --dir "$DIR" --reps 1 --keep 2>&1 | tee -a "$LOG" | grep -E '^RESULT|error' 
echo "== shards written in $(( $(date +%s) - t0 )) s: $(du -sh "$DIR" | cut -f1) in $(ls "$DIR" | wc -l) files" | tee -a "$LOG"
state=$(mktemp -d /tmp/traind-headline.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN/traind" --state-dir "$state" --backend "${HEADLINE_BACKEND:-cuda}" --listen "127.0.0.1:$port" --dataset-root "$DIR" \
    --log-level info 2>"$state/daemon.log" &
dpid=$!
python3 bench/compare.py headline --url "http://127.0.0.1:$port" --path "$DIR" \
    --steps "${HEADLINE_STEPS:-100}" --backbone "${HEADLINE_BACKBONE:-dinov2-large}" --freeze "${HEADLINE_FREEZE:-12}" --eval-samples "${HEADLINE_EVAL:-16384}" --infer-samples "${HEADLINE_INFER:-4096}" --timeout 400 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
curl -s "http://127.0.0.1:$port/v1/status" >"$OUT/headline_status.json" 2>/dev/null
kill -TERM "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null
tail -n 40 "$state/daemon.log" >"$OUT/headline_daemon.log"
rm -rf "$state" "$DIR"
echo "== headline done in $(( $(date +%s) - t0 )) s, rc $rc" | tee -a "$LOG"
exit $rc
