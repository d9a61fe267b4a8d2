#!/usr/bin/env bash
# scripts/quickstart.sh — the README's first command (SPEC §2): on a fresh
# Debian machine, install what is missing, build, start traind (temporary state
# dir, --backend auto: the GPU where there is one), load a synthetic dataset,
# train dinov2-tiny with a live progress bar (`trainctl watch`), evaluate the
# trained checkpoint and print its metrics next to the mean predictor's, stop
# the daemon. About two minutes on a 2-core CPU machine.
#
#   scripts/quickstart.sh            (as root, or with sudo for apt-get)
#
# Knobs (environment): QS_SAMPLES (default 2000), QS_IMAGE (image size, 56),
# QS_STEPS (train steps, 4000), QS_BATCH (32), QS_LR (3e-4), QS_BACKEND (auto), QS_PORT (8470,
# or a free one when taken), QS_KEEP=1 keeps the state dir.
set -euo pipefail
cd "$(dirname "$0")/.."

SAMPLES=${QS_SAMPLES:-2000}
IMAGE=${QS_IMAGE:-56}
STEPS=${QS_STEPS:-4000}
BATCH=${QS_BATCH:-32}
LR=${QS_LR:-0.0003}
BACKEND=${QS_BACKEND:-auto}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ---- 1. packages -------------------------------------------------------------------------
say "checking packages (scripts/install-deps.sh)"
scripts/install-deps.sh --no-browser

# ---- 2. build ----------------------------------------------------------------------------
say "building (make)"
make -j"$(nproc)" >/dev/null
TRAIND=$PWD/build/release/traind
TRAINCTL=$PWD/build/release/trainctl

# ---- 3. daemon ---------------------------------------------------------------------------
STATE=$(mktemp -d "${TMPDIR:-/tmp}/traind-quickstart.XXXXXX")
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${QS_PORT:-8470}
if ! port_free "$PORT"; then
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
           || echo $((20000 + RANDOM % 20000)))
fi
export TRAIND_URL="http://127.0.0.1:$PORT"
DPID=
cleanup() {
    if [ -n "$DPID" ] && kill -0 "$DPID" 2>/dev/null; then
        kill -TERM "$DPID"
        wait "$DPID" 2>/dev/null || true
    fi
    if [ "${QS_KEEP:-0}" = 1 ]; then echo "state kept in $STATE (daemon log: $STATE/traind.log)";
    else rm -rf "$STATE"; fi
}
trap cleanup EXIT
say "starting traind on $TRAIND_URL (backend $BACKEND, state $STATE)"
"$TRAIND" --state-dir "$STATE" --backend "$BACKEND" --listen "127.0.0.1:$PORT" 2>"$STATE/traind.log" &
DPID=$!
for _ in $(seq 1 100); do
    curl -sf -m 2 "$TRAIND_URL/v1/health" >/dev/null 2>&1 && break
    kill -0 "$DPID" 2>/dev/null || { echo "traind failed to start:"; cat "$STATE/traind.log"; exit 1; }
    sleep 0.2
done
"$TRAINCTL" status

# ---- 4. data, train, eval ------------------------------------------------------------------
say "loading a synthetic dataset: $SAMPLES samples of ${IMAGE}x$IMAGE px (joints drawn as coloured blobs)"
"$TRAINCTL" datasets load demo --synthetic "$SAMPLES,$IMAGE,1" --wait

say "training dinov2-tiny + hand head for $STEPS steps (batch $BATCH)"
tid=$("$TRAINCTL" -q submit --type train --dataset demo --backbone dinov2-tiny --steps "$STEPS" \
      --batch-size "$BATCH" --lr-backbone "$LR" --lr-heads "$LR" --warmup-steps $((STEPS / 20)) \
      --eval-every $((STEPS / 3)) --checkpoint-every $((STEPS / 3)) --seed 1)
echo "job $tid — live curves in the dashboard: $TRAIND_URL/#/jobs/$tid"
"$TRAINCTL" watch "$tid"

ck=$("$TRAINCTL" --json checkpoints --job "$tid" | jq -r '.checkpoints | max_by(.step) | .id')
say "evaluating checkpoint $ck on the validation split"
eid=$("$TRAINCTL" -q submit --type eval --dataset demo --checkpoint "$ck" --batch-size 64)
"$TRAINCTL" watch "$eid"
say "metrics (job $eid)"
"$TRAINCTL" result "$eid"

say "what else: trainctl jobs | show $tid | metrics $tid | checkpoints | download $ck model.safetensors"
"$TRAINCTL" jobs
