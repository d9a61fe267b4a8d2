#!/usr/bin/env bash
# tests/integration/10_api.sh — every endpoint's success path and every error
# path of SPEC §3 against a real daemon on loopback: malformed JSON, wrong
# types, unknown fields, missing jobs/datasets/checkpoints, oversized bodies,
# method not allowed, dataset paths outside the roots (`..` and symlink
# escapes), bad and missing tokens, refusal to listen beyond loopback without
# a token. After each group the daemon must still be serving.
. "$(dirname "$0")/lib.sh"

DATA_ROOT="$TDIR/data"
mkdir -p "$DATA_ROOT" "$TDIR/outside"
check "traind synth writes a dataset under the root" \
    "$TRAIND_BIN" synth --out "$DATA_ROOT/disk1" --samples 16 --image-size "$IMG" --seed 3
check "traind synth writes a dataset outside the root" \
    "$TRAIND_BIN" synth --out "$TDIR/outside/ds" --samples 16 --image-size "$IMG" --seed 3
ln -s "$TDIR/outside/ds" "$DATA_ROOT/escape-link"
ln -s "$DATA_ROOT/disk1" "$DATA_ROOT/inside-link"

start_daemon --dataset-root "$DATA_ROOT" || bail "daemon did not start"

# ---- health, status, metrics --------------------------------------------------
api GET /v1/health
is "$STATUS" 200 "GET /v1/health 200"
is "$(jb .status)" ok "health says ok"
case "$(curl -s -o /dev/null -w '%{content_type}' "$URL/v1/health")" in
    application/json*) ok 0 "JSON content type" ;; *) ok 1 "JSON content type" ;; esac

api GET /v1/status
is "$STATUS" 200 "GET /v1/status 200"
is "$(jb .backend)" cpu "status: backend cpu"
check "status: version, uptime, devices, queue length" \
    jq -e '(.version|type=="string") and (.uptime_s|type=="number") and (.devices|type=="array")
           and (.queue_length|type=="number")' <<<"$BODY"

api GET /metrics
is "$STATUS" 200 "GET /metrics 200"
check "metrics: Prometheus text with HELP/TYPE and the job family" \
    grep -q '^# TYPE traind_jobs' <<<"$BODY"
check "metrics: HTTP request counter" grep -q '^traind_http_requests_total' <<<"$BODY"

# ---- datasets -------------------------------------------------------------------
api POST /v1/datasets "{\"name\":\"syn\",\"synthetic\":{\"samples\":$NSAMP,\"image_size\":$IMG,\"seed\":5}}"
is "$STATUS" 202 "POST /v1/datasets synthetic -> 202"
is "$(jb .name)" syn "dataset record has the name"
check "record state is loading or ready" jq -e '.state=="loading" or .state=="ready"' <<<"$BODY"
is "$(wait_dataset syn 120)" ready "synthetic dataset becomes ready"
api GET /v1/datasets/syn
is "$(jb .samples)" "$NSAMP" "dataset samples"
check "dataset reports resident bytes (bf16 images + fp32 labels)" \
    jq -e --argjson n "$NSAMP" --argjson s "$IMG" '.bytes >= ($n*3*$s*$s*2 + $n*63*4)' <<<"$BODY"
check "dataset reports its fields" jq -e '.fields|length>0' <<<"$BODY"
check "dataset reports masked_joints (labels with NaN/Inf; 0 here)" jq -e '.masked_joints==0' <<<"$BODY"
api GET /v1/datasets
is "$STATUS" 200 "GET /v1/datasets 200"
check "list contains syn" jq -e '[.datasets[].name]|index("syn")!=null' <<<"$BODY"
api GET /v1/status
check "status lists the resident dataset" jq -e '[.datasets[]?.name]|index("syn")!=null' <<<"$BODY"

# Regression: a load that finished within the store clock's millisecond left the
# record "loading" forever (its GB/s was Inf, which JSON cannot hold). Thirty
# one-sample datasets, each of which loads in well under a millisecond:
"$TRAIND_BIN" synth --out "$DATA_ROOT/one" --samples 1 --image-size 14 --seed 1 >/dev/null 2>&1
notready=0
for i in $(seq 1 30); do
    api POST /v1/datasets "{\"name\":\"tiny$i\",\"path\":\"$DATA_ROOT/one\"}"
    [ "$(wait_dataset "tiny$i" 20)" = ready ] || notready=$((notready + 1))
    api DELETE "/v1/datasets/tiny$i"
done
is "$notready" 0 "thirty datasets that load in under a millisecond all become ready"

api POST /v1/datasets "{\"name\":\"disk\",\"path\":\"$DATA_ROOT/disk1\"}"
is "$STATUS" 202 "dataset from a path under the root -> 202"
is "$(wait_dataset disk 120)" ready "on-disk dataset becomes ready"
api POST /v1/datasets "{\"name\":\"viaLink\",\"path\":\"$DATA_ROOT/inside-link\"}"
is "$STATUS" 202 "a symlink that stays inside the root is accepted"
wait_dataset viaLink 120 >/dev/null

expect_error 409 conflict "dataset name already exists" \
    POST /v1/datasets "{\"name\":\"syn\",\"synthetic\":{\"samples\":8,\"image_size\":$IMG,\"seed\":1}}"
expect_error 403 forbidden "dataset path outside the roots" POST /v1/datasets '{"name":"x1","path":"/etc"}'
expect_error 403 forbidden "dataset path with a .. escape" \
    POST /v1/datasets "{\"name\":\"x2\",\"path\":\"$DATA_ROOT/../outside/ds\"}"
expect_error 403 forbidden "dataset path through a symlink out of the root" \
    POST /v1/datasets "{\"name\":\"x3\",\"path\":\"$DATA_ROOT/escape-link\"}"
expect_error "400|403" "forbidden|bad_request|invalid_field" "relative dataset path" POST /v1/datasets '{"name":"x4","path":"data/disk1"}'
expect_error '4[0-9][0-9]' 'not_found|bad_request|invalid_field|unprocessable|forbidden' \
    "nonexistent dataset directory under the root" \
    POST /v1/datasets "{\"name\":\"x5\",\"path\":\"$DATA_ROOT/nope\"}"
expect_error 400 'bad_request|invalid_field' "dataset: malformed JSON" POST /v1/datasets '{"name":"x6",'
expect_error 400 'bad_request|invalid_field' "dataset: body not an object" POST /v1/datasets '["x"]'
expect_error 400 'bad_request|invalid_field' "dataset: missing name" POST /v1/datasets '{"path":"/tmp"}'
expect_error 400 'bad_request|invalid_field' "dataset: neither path nor synthetic" POST /v1/datasets '{"name":"x7"}'
expect_error 400 'bad_request|invalid_field' "dataset: samples of the wrong type" \
    POST /v1/datasets '{"name":"x8","synthetic":{"samples":"many","image_size":28,"seed":1}}'
expect_error 400 'bad_request|invalid_field' "dataset: negative samples" \
    POST /v1/datasets '{"name":"x9","synthetic":{"samples":-4,"image_size":28,"seed":1}}'
expect_error 400 invalid_field "dataset: unknown field" POST /v1/datasets '{"name":"x10","colour":"red","synthetic":{"samples":8,"image_size":28,"seed":1}}'
check "unknown dataset field is named in the message" grep -q colour <<<"$(jb .error.message)"
expect_error 400 invalid_field "dataset: unknown nested field" \
    POST /v1/datasets '{"name":"x11","synthetic":{"samples":8,"image_size":28,"seed":1,"sharp":true}}'
check "unknown nested field is named" grep -q sharp <<<"$(jb .error.message)$(jb '.error.field // empty')"
expect_error 507 insufficient_storage "dataset larger than the device memory: refused before loading" \
    POST /v1/datasets '{"name":"x12","synthetic":{"samples":10000000,"image_size":224,"seed":1}}'
api GET /metrics
check "metrics: resident bytes of the dataset" grep -q '^traind_dataset_bytes{dataset="syn"' <<<"$BODY"
check "metrics: jobs by state" grep -q '^traind_jobs{state="queued"} 0' <<<"$BODY"
check "metrics: requests counted by status (the 507 above)" grep -q '^traind_http_requests_total{code="507"} 1' <<<"$BODY"
expect_error 404 not_found "GET missing dataset" GET /v1/datasets/nosuch
expect_error 404 not_found "DELETE missing dataset" DELETE /v1/datasets/nosuch
api GET /v1/datasets
check "refused loads left no dataset records" \
    jq -e '[.datasets[].name]|map(select(startswith("x")))|length==0' <<<"$BODY"

# ---- jobs: validation -----------------------------------------------------------
expect_error 400 'bad_request|invalid_field' "job: malformed JSON" POST /v1/jobs '{"type":"train",'
expect_error 400 'bad_request|invalid_field' "job: empty body" POST /v1/jobs ' '
expect_error 400 'bad_request|invalid_field' "job: body not an object" POST /v1/jobs '42'
expect_error 400 invalid_field "job: unknown field" POST /v1/jobs '{"type":"train","dataset":"syn","steps":2,"turbo":true}'
check "unknown job field named" grep -q turbo <<<"$(jb .error.message)$(jb '.error.field // empty')"
expect_error 400 invalid_field "job: unknown nested model field" \
    POST /v1/jobs '{"type":"train","dataset":"syn","steps":2,"model":{"backbone":"dinov2-tiny","wings":2}}'
check "nested field named" grep -q wings <<<"$(jb .error.message)$(jb '.error.field // empty')"
expect_error 400 invalid_field "job: wrong type (batch_size string)" \
    POST /v1/jobs '{"type":"train","dataset":"syn","steps":2,"batch_size":"eight"}'
check "wrong-type field named" grep -q batch_size <<<"$(jb .error.message)$(jb '.error.field // empty')"
expect_error 400 invalid_field "job: unknown type" POST /v1/jobs '{"type":"dance","dataset":"syn"}'
expect_error 400 invalid_field "job: unknown backbone" \
    POST /v1/jobs '{"type":"train","dataset":"syn","steps":2,"model":{"backbone":"dinov9-huge"}}'
expect_error 400 invalid_field "job: negative batch size" POST /v1/jobs '{"type":"train","dataset":"syn","steps":2,"batch_size":-1}'
expect_error 400 invalid_field "job: lr of the wrong type" \
    POST /v1/jobs '{"type":"train","dataset":"syn","steps":2,"optim":{"lr":{"heads":"fast"}}}'
expect_error 400 'bad_request|invalid_field' "job: missing type" POST /v1/jobs '{"dataset":"syn"}'
expect_error '404|422' 'not_found|unprocessable' "job on a missing dataset" POST /v1/jobs '{"type":"train","dataset":"nosuch","steps":2}'
expect_error '404|422' 'not_found|unprocessable' "eval of a missing checkpoint" POST /v1/jobs '{"type":"eval","dataset":"syn","checkpoint":"c-999999"}'
# hostile bodies: deep nesting, invalid UTF-8, NUL, duplicate keys, numbers out of range
python3 -c "print('[' * 100000 + ']' * 100000)" >"$TDIR/deep.json"
expect_error 400 bad_request "job: 100000-deep nesting" POST /v1/jobs "@$TDIR/deep.json"
printf '{"type":"train","dataset":"\xff\xfe"}' >"$TDIR/utf8.json"
expect_error 400 bad_request "job: invalid UTF-8" POST /v1/jobs "@$TDIR/utf8.json"
printf '{"type":"train\x00","dataset":"syn"}' >"$TDIR/nul.json"
expect_error 400 bad_request "job: NUL byte in a string" POST /v1/jobs "@$TDIR/nul.json"
expect_error 400 'bad_request|invalid_field' "job: duplicate key" POST /v1/jobs '{"type":"train","type":"eval","dataset":"syn"}'
expect_error 400 'bad_request|invalid_field' "job: number overflow" POST /v1/jobs '{"type":"train","dataset":"syn","steps":1e400}'
expect_error 400 'bad_request|invalid_field' "job: integer beyond 64 bits" POST /v1/jobs '{"type":"train","dataset":"syn","steps":99999999999999999999}'
expect_error 400 invalid_field "job: priority out of range" POST /v1/jobs '{"type":"train","dataset":"syn","priority":2147483648}'
expect_error 400 invalid_field "dataset name with a path" POST /v1/datasets '{"name":"../../etc","synthetic":{"samples":8,"image_size":28,"seed":1}}'
expect_error 400 invalid_field "empty dataset name" POST /v1/datasets '{"name":"","synthetic":{"samples":8,"image_size":28,"seed":1}}'
expect_error 400 invalid_field "unknown query parameter" GET '/v1/jobs?colour=red'
check "daemon still serving after hostile bodies" daemon_alive
api GET /v1/jobs
is "$(jb '.jobs|length')" 0 "no job was created by the invalid submissions"

# ---- jobs: missing ids, queries ----------------------------------------------------
for p in "GET /v1/jobs/j-999999" "POST /v1/jobs/j-999999/cancel" "GET /v1/jobs/j-999999/events" \
         "GET /v1/jobs/j-999999/metrics" "GET /v1/jobs/j-999999/result" \
         "GET /v1/checkpoints/c-999999" "GET /v1/checkpoints/c-999999/files/model.safetensors" \
         "DELETE /v1/checkpoints/c-999999"; do
    set -- $p
    expect_error 404 not_found "$p" "$1" "$2"
done
expect_error 400 'bad_request|invalid_field' "jobs: limit not a number" GET '/v1/jobs?limit=abc'
expect_error 400 'bad_request|invalid_field' "jobs: unknown state filter" GET '/v1/jobs?state=sleeping'
expect_error 400 'bad_request|invalid_field' "jobs: unknown type filter" GET '/v1/jobs?type=dance'
expect_error 404 not_found "unknown path" GET /v1/nothing-here
expect_error 404 not_found "unknown path outside /v1" GET /index.html

# ---- method not allowed -------------------------------------------------------------
for p in "PUT /v1/jobs" "DELETE /v1/health" "POST /v1/status" "PATCH /v1/datasets/syn" \
         "POST /v1/jobs/j-000001" "DELETE /v1/jobs/j-000001/events" "POST /metrics" "PUT /v1/checkpoints"; do
    set -- $p
    expect_error 405 method_not_allowed "$p" "$1" "$2"
done
allow=$(curl -s -o /dev/null -D - -X PUT "$URL/v1/jobs" | tr -d '\r' | awk -F': ' 'tolower($1)=="allow"{print $2}')
check "405 carries an Allow header naming GET and POST" grep -q 'GET' <<<"$allow"

# ---- oversized body -------------------------------------------------------------------
truncate -s 80M "$TDIR/big.json"
expect_error 413 too_large "80 MiB job body" POST /v1/jobs "@$TDIR/big.json"
expect_error 413 too_large "80 MiB dataset body" POST /v1/datasets "@$TDIR/big.json"
rm -f "$TDIR/big.json"
check "daemon still serving after the error paths" daemon_alive

# ---- a job end to end through every job endpoint ---------------------------------------
submit "$(train_spec syn 6 '"checkpoint_every":3,"eval_every":3')"; id=$JOB
is "$STATUS" 201 "POST /v1/jobs -> 201"
check "new job is queued (or already running)" jq -e '.state=="queued" or .state=="running"' <<<"$BODY"
check "job id is a string" test -n "$id"
api GET "/v1/jobs/$id"
check "job record: spec, plan, progress, timestamps" \
    jq -e '(.spec|type=="object") and (.plan|type=="object") and (.progress|type=="object") and has("created_at")' <<<"$BODY"
check "train plan: bf16 encoder input, fp32 gradients" \
    jq -e '[.plan|..|strings]|index("bf16")!=null and index("fp32")!=null' <<<"$BODY"
is "$(wait_job "$id" 300)" succeeded "train job succeeded"
api GET "/v1/jobs/$id"
check "finished job has progress at its total and finished_at" \
    jq -e '.progress.step==.progress.total_steps and .progress.total_steps==6 and (.finished_at|type=="string")' <<<"$BODY"
api GET "/v1/jobs?state=succeeded&type=train&limit=10&offset=0"
check "list filtered by state and type finds it" jq -e --arg id "$id" '[.jobs[].id]|index($id)!=null' <<<"$BODY"
api GET "/v1/jobs?state=queued"
check "list filtered by another state does not" jq -e --arg id "$id" '[.jobs[].id]|index($id)==null' <<<"$BODY"
api GET "/v1/jobs/$id/metrics?name=loss"
is "$STATUS" 200 "GET metrics?name=loss 200"
check "loss series has step/value/time" jq -e 'length>0 and (.[0]|has("step") and has("value") and has("time"))' <<<"$BODY"
api GET "/v1/jobs/$id/metrics?name=loss&since_step=3"
check "since_step filters" jq -e 'length>0 and all(.[]; .step>=3)' <<<"$BODY"
api GET "/v1/jobs/$id/result"
is "$STATUS" 200 "GET result of a train job 200"
api GET "/v1/jobs/$id/events"
is "$STATUS" 200 "GET events of a finished job 200"
check "event stream has a terminal state event" grep -q '"succeeded"' <<<"$BODY"
expect_error 409 conflict "cancel of a finished job" POST "/v1/jobs/$id/cancel"
api GET "/v1/checkpoints?job=$id"
is "$STATUS" 200 "GET checkpoints?job= 200"
ck=$(jb '.checkpoints[-1].id // empty')
check "train job recorded checkpoints" test -n "$ck"
api GET /v1/checkpoints
check "GET /v1/checkpoints lists every checkpoint" jq -e --arg ck "$ck" '[.checkpoints[].id]|index($ck)!=null' <<<"$BODY"
api GET "/v1/checkpoints/$ck"
check "checkpoint record: job, step, path, bytes, sha256" \
    jq -e --arg id "$id" '.job==$id and .step>0 and .bytes>0 and (.sha256|length==64) and (.path|type=="string")' <<<"$BODY"
code=$(curl -s -o "$TDIR/cfg.json" -w '%{http_code}' "$URL/v1/checkpoints/$ck/files/config.json")
is "$code" 200 "download config.json"
check "downloaded config.json is DINOv2 JSON" jq -e '.hidden_size==64' "$TDIR/cfg.json"
expect_error 404 not_found "checkpoint file name with a path" GET "/v1/checkpoints/$ck/files/..%2F..%2Ftraind.db"
expect_error 404 not_found "checkpoint file that does not exist" GET "/v1/checkpoints/$ck/files/nothing.bin"
expect_error 404 not_found "hidden file name" GET "/v1/checkpoints/$ck/files/.tmp"
api DELETE "/v1/checkpoints/$ck"
check "DELETE checkpoint -> 2xx" test "${STATUS:0:1}" = 2
expect_error 404 not_found "deleted checkpoint is gone" GET "/v1/checkpoints/$ck"

api DELETE /v1/datasets/disk
check "DELETE dataset -> 2xx" test "${STATUS:0:1}" = 2
expect_error 404 not_found "deleted dataset is gone" GET /v1/datasets/disk
check "daemon still serving" daemon_alive

# ---- shutdown: clean exit, no leaks (ASan) ------------------------------------------------
stop_daemon TERM
is "$DAEMON_RC" 0 "SIGTERM: traind exits 0 (no sanitizer report)"
check "no sanitizer report in the log" bash -c "! grep -q 'ERROR: \(Address\|Leak\)Sanitizer\|runtime error:' '$DLOG'"

# ---- authentication ------------------------------------------------------------------------
printf 's3cret-token-%s\n' "$RANDOM" >"$TDIR/token"
chmod 600 "$TDIR/token"
good=$(head -n1 "$TDIR/token")
STATE="$TDIR/state-auth" PORT=$(free_port)
start_daemon --token-file "$TDIR/token" || bail "daemon with token did not start"
api GET /v1/health
is "$STATUS" 200 "token set: /v1/health needs no token"
expect_error 401 unauthorized "no token on /v1/status" GET /v1/status
expect_error 401 unauthorized "wrong token" GET /v1/status "" -H "Authorization: Bearer nope"
expect_error 401 unauthorized "token without Bearer" GET /v1/jobs "" -H "Authorization: $good"
expect_error 401 unauthorized "token prefix only" GET /v1/jobs "" -H "Authorization: Bearer ${good:0:5}"
expect_error 401 unauthorized "no token on POST /v1/jobs" POST /v1/jobs '{"type":"train","dataset":"syn"}'
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")
is "$code" 401 "no token on /metrics -> 401"
TOKEN=$good api GET /v1/status
is "$STATUS" 200 "right token -> 200"
TOKEN=$good api GET /v1/jobs
is "$STATUS" 200 "right token on /v1/jobs -> 200"
check "daemon with token still serving" daemon_alive
stop_daemon TERM
is "$DAEMON_RC" 0 "token daemon exits 0"

# ---- refusal to listen beyond loopback without a token --------------------------------------
p=$(free_port)
timeout 30 "$TRAIND_BIN" --state-dir "$TDIR/state-open" --backend cpu --listen "0.0.0.0:$p" >"$TDIR/open.log" 2>&1
rc=$?
check "non-loopback listen without a token: refused (exit $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "the refusal says why" grep -qi 'token' "$TDIR/open.log"

done_testing
