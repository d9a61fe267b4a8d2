#!/bin/bash
# bench/ckpt_stall.sh — what checkpoints cost a run, through the daemon: a train job
# with a checkpoint every EVERY steps; prints the job's wall time, its images/s over
# the steps, and the worker's checkpoint lines (how long training stopped for each).
#   BIN=DIR      the build (default build/release), so two builds can be compared
#   BACKEND      cpu (default) | cuda
#   BB FREEZE BATCH STEPS EVERY SAMPLES IMG   the job (default: dinov2-base, 0 frozen,
#                batch 1, 4 steps, every step, 32 samples of 224 px: ~1 GB checkpoints)
# On the GPU machine, e.g.:
#   BACKEND=cuda BB=dinov2-large FREEZE=12 BATCH=32 STEPS=60 EVERY=20 SAMPLES=2048 bench/ckpt_stall.sh
set -e
cd "$(dirname "$0")/.."
BIN=${BIN:-build/release}
if [ "${BACKEND:-cpu}" != cpu ]; then   # the GPU machine: microhttpd from .devlibs, cuDNN from the toolkit or PyTorch's wheels
    export LD_LIBRARY_PATH="$PWD/.devlibs/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
    nv=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
    for d in ${nv:+$nv/*/lib}; do LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; done
fi
BACKEND=${BACKEND:-cpu} BB=${BB:-dinov2-base} FREEZE=${FREEZE:-0} BATCH=${BATCH:-1} STEPS=${STEPS:-4}
EVERY=${EVERY:-1} SAMPLES=${SAMPLES:-32} IMG=${IMG:-224}
ST=$(mktemp -d /tmp/ckb.XXXXXX)
PORT=${PORT:-18571}
"$BIN/traind" --listen 127.0.0.1:$PORT --state-dir "$ST" --backend "$BACKEND" >"$ST/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$ST"' EXIT
export TRAIND_URL=http://127.0.0.1:$PORT
for _ in $(seq 300); do curl -sf $TRAIND_URL/v1/health >/dev/null && break; sleep 0.1; done
"$BIN/trainctl" datasets load syn --synthetic "$SAMPLES,$IMG,1" --wait >/dev/null
J=$(curl -s -X POST $TRAIND_URL/v1/jobs -H 'Content-Type: application/json' -d "{\"type\":\"train\",\"dataset\":\"syn\",
  \"model\":{\"backbone\":\"$BB\",\"freeze_layers\":$FREEZE},\"batch_size\":$BATCH,\"steps\":$STEPS,\"eval_every\":0,
  \"checkpoint_every\":$EVERY,\"keep_checkpoints\":2,\"split\":{\"train\":[0,0.9],\"val\":[0.9,1]}}" | jq -r .id)
while :; do
    s=$(curl -s $TRAIND_URL/v1/jobs/$J | jq -r .state)
    case $s in succeeded|failed|cancelled) break ;; esac
    sleep 0.2
done
echo "== $BIN ($BACKEND, $BB, $FREEZE frozen, batch $BATCH, $STEPS steps, a checkpoint every $EVERY): job $s"
curl -s $TRAIND_URL/v1/jobs/$J | jq -c '{wall_s: .result.wall_s, images_per_s: .result.images_per_s, error: .error}'
grep -E "checkpoint /|step 1: the run" "$ST/log" | sed 's/.*\] //'
