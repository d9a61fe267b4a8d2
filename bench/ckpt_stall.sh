#!/bin/bash
# bench/ckpt_stall.sh — what checkpoints cost a run: a dinov2-base full fine-tune on the
# CPU backend (4 steps of batch 1, 224 px, a checkpoint every step: ~1 GB each) through
# the daemon; prints the job's wall time and the worker's checkpoint lines. BIN=DIR picks
# the build (default build/release) so two builds can be compared.
set -e
BIN=${BIN:-build/release}
ST=$(mktemp -d /tmp/ckb.XXXXXX)
PORT=18571
$BIN/traind --listen 127.0.0.1:$PORT --state-dir $ST --backend cpu > $ST/log 2>&1 &
PID=$!
export TRAIND_URL=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -sf $TRAIND_URL/v1/health >/dev/null && break; sleep 0.1; done
$BIN/trainctl datasets load syn --synthetic 32,224,1 --wait >/dev/null
J=$(curl -s -X POST $TRAIND_URL/v1/jobs -H 'Content-Type: application/json' -d '{"type":"train","dataset":"syn","model":{"backbone":"dinov2-base"},"batch_size":1,"steps":4,"eval_every":0,"checkpoint_every":1,"split":{"train":[0,0.9],"val":[0.9,1]}}' | jq -r .id)
while :; do s=$(curl -s $TRAIND_URL/v1/jobs/$J | jq -r .state); case $s in succeeded|failed|cancelled) break;; esac; sleep 1; done
echo "job $s"; curl -s $TRAIND_URL/v1/jobs/$J | jq -c '{wall: .result.wall_s, ips: .result.images_per_s, err: .error}'
grep -E "checkpoint|step [0-9]+:" $ST/log | sed 's/.*\(step [0-9]*: checkpoint\)/\1/' | head -20
kill $PID; wait $PID 2>/dev/null || true
rm -rf $ST
