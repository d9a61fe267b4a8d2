#!/usr/bin/env bash
# clients/examples.sh — the common tasks with plain curl (+ jq to pick fields),
# runnable as a walk-through against a running traind:
#
#   TRAIND_URL=http://127.0.0.1:8470 [TRAIND_TOKEN=...] clients/examples.sh
#
# Each step prints the curl command it runs. The README's "Using the API with
# curl" section shows the same commands; tests/integration/80_examples.sh runs
# this file so the examples stay true.
set -euo pipefail

URL=${TRAIND_URL:-http://127.0.0.1:8470}
AUTH=()
[ -n "${TRAIND_TOKEN:-}" ] && AUTH=(-H "Authorization: Bearer $TRAIND_TOKEN")
JSON=(-H 'Content-Type: application/json')
DS=${EXAMPLE_DATASET:-example}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step() { printf '\n### %s\n' "$*"; }
show() { printf '$ %s\n' "$*" | sed "s,$URL,\$TRAIND_URL,g" >&2; "$@"; }
wait_done() {   # until job $1 is succeeded, failed or cancelled
    until case "$(curl -s "${AUTH[@]}" "$URL/v1/jobs/$1" | jq -r .state)" in
              succeeded|failed|cancelled) true ;; *) false ;; esac; do sleep 0.2; done
}

step "Liveness (needs no token)"
show curl -s "$URL/v1/health"; echo

step "Daemon status: version, backend, devices and memory, datasets, running jobs, queue"
show curl -s "${AUTH[@]}" "$URL/v1/status" | jq .

step "Load a synthetic dataset (202; loads in the background)"
show curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$URL/v1/datasets" \
    -d "{\"name\":\"$DS\",\"synthetic\":{\"samples\":128,\"image_size\":28,\"seed\":1}}" | jq .
# From files instead (the directory must lie under a --dataset-root):
#   curl -s -X POST $TRAIND_URL/v1/datasets -H 'Content-Type: application/json' \
#        -d '{"name":"dexycb-s0","path":"/srv/datasets/dexycb-s0"}'

step "Wait until it is ready"
until [ "$(curl -s "${AUTH[@]}" "$URL/v1/datasets/$DS" | jq -r .state)" = ready ]; do sleep 0.2; done
show curl -s "${AUTH[@]}" "$URL/v1/datasets/$DS" | jq '{name, state, samples, bytes, gb_per_s}'

step "Submit a train job (201; submission_id makes a retry safe)"
cat >"$WORK/train.json" <<EOF
{"type": "train", "dataset": "$DS", "submission_id": "example-train-$$",
 "model": {"backbone": "dinov2-tiny", "heads": ["hand"]},
 "batch_size": 8, "steps": 20, "eval_every": 10, "checkpoint_every": 10,
 "optim": {"lr": {"backbone": 0.0001, "heads": 0.001}, "warmup_steps": 2}}
EOF
show curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$URL/v1/jobs" -d @"$WORK/train.json" | tee "$WORK/job.json" | jq '{id, state}'
JOB=$(jq -r .id "$WORK/job.json")

step "Follow it live: Server-Sent Events until the job ends (reconnect with -H 'Last-Event-ID: N')"
show curl -sN "${AUTH[@]}" "$URL/v1/jobs/$JOB/events" | grep --line-buffered -E '^(event|data):' | tail -n 6

step "The job record: spec, dtype plan, progress, latest metrics, timestamps"
show curl -s "${AUTH[@]}" "$URL/v1/jobs/$JOB" | jq '{id, state, plan, progress, metrics}'

step "Its loss curve"
show curl -s "${AUTH[@]}" "$URL/v1/jobs/$JOB/metrics?name=loss" | jq -c '.[] | [.step, .value]' | tail -n 3

step "List jobs (filters: state, type, limit, offset)"
show curl -s "${AUTH[@]}" "$URL/v1/jobs?state=succeeded&type=train&limit=5" | jq -c '.jobs[] | {id, type, state}'

step "Its checkpoints, and download one file"
show curl -s "${AUTH[@]}" "$URL/v1/checkpoints?job=$JOB" | tee "$WORK/ck.json" | jq -c '.checkpoints[] | {id, step, bytes}'
CK=$(jq -r '.checkpoints | max_by(.step) | .id' "$WORK/ck.json")
show curl -s "${AUTH[@]}" -o "$WORK/model.safetensors" "$URL/v1/checkpoints/$CK/files/model.safetensors"
ls -l "$WORK/model.safetensors" | awk '{print $5, "bytes"}'

step "Evaluate the checkpoint (MPJPE, PA-MPJPE, PCK, AUC, per joint, mean predictor)"
show curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$URL/v1/jobs" \
    -d "{\"type\":\"eval\",\"dataset\":\"$DS\",\"checkpoint\":\"$CK\",\"batch_size\":32}" | tee "$WORK/eval.json" | jq '{id, state}'
EVAL=$(jq -r .id "$WORK/eval.json")
wait_done "$EVAL"
show curl -s "${AUTH[@]}" "$URL/v1/jobs/$EVAL/result" | jq .

step "Debug report in fp32 (activations, gradient norms, prediction diversity)"
show curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$URL/v1/jobs" \
    -d "{\"type\":\"debug\",\"dataset\":\"$DS\",\"checkpoint\":\"$CK\",\"batches\":1}" | tee "$WORK/dbg.json" | jq '{id, state}'
DBG=$(jq -r .id "$WORK/dbg.json")

step "Inference on dataset samples"
show curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$URL/v1/jobs" \
    -d "{\"type\":\"infer\",\"dataset\":\"$DS\",\"checkpoint\":\"$CK\",\"indices\":[0,1]}" | tee "$WORK/inf.json" | jq '{id, state}'
INF=$(jq -r .id "$WORK/inf.json")

step "Cancel a job (a running train job checkpoints first)"
show curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$URL/v1/jobs" \
    -d "{\"type\":\"train\",\"dataset\":\"$DS\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"steps\":100000}" | tee "$WORK/long.json" | jq '{id, state}'
LONG=$(jq -r .id "$WORK/long.json")
show curl -s "${AUTH[@]}" -X POST "$URL/v1/jobs/$LONG/cancel" | jq '{id, state}'

step "Inference result"
wait_done "$INF"
show curl -s "${AUTH[@]}" "$URL/v1/jobs/$INF/result" | jq -c '.predictions[] | {index, first_joints_m: .joints[0:2], confidence: .confidence[0:3]}'

step "Errors are JSON with a code and a message"
show curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$URL/v1/jobs" -d '{"type":"train","dataset":"'"$DS"'","stpes":10}' | jq .

step "Prometheus metrics"
show curl -s "${AUTH[@]}" "$URL/metrics" | grep -E '^traind_(jobs|images_per_second|dataset_bytes)'

step "Evict the dataset once no queued or running job uses it"
wait_done "$LONG"; wait_done "$DBG"
show curl -s "${AUTH[@]}" -X DELETE "$URL/v1/datasets/$DS" -o /dev/null -w '%{http_code}\n'
