#!/usr/bin/env bash
# tests/integration/70_trainctl.sh — the trainctl client against a real
# daemon: every command, human and --json output, exit codes (0 ok, 1 API
# error / job failed, 2 usage, 3 cancelled, 4 unreachable), the API's error
# code and message shown, address and token from flags, environment and token
# file, and `watch` surviving a daemon kill -9 + restart (it reconnects with
# Last-Event-ID and ends with the job's outcome).
. "$(dirname "$0")/lib.sh"

[ -x "$TRAINCTL_BIN" ] || bail "trainctl not found (TRAINCTL_BIN=$TRAINCTL_BIN)"
T="$TDIR/out"; E="$TDIR/err"
run() { tctl "$@" >"$T" 2>"$E"; RC=$?; }

"$TRAINCTL_BIN" --help >"$T" 2>&1
ok $? "--help exits 0"
check "--help lists the commands" grep -q 'download CKPT' "$T"
"$TRAINCTL_BIN" frobnicate >"$T" 2>&1
is "$?" 2 "unknown command: exit 2"
"$TRAINCTL_BIN" --url "http://127.0.0.1:1" status >"$T" 2>"$E"
is "$?" 4 "daemon unreachable: exit 4"
check "... saying it cannot reach traind" grep -q 'cannot reach traind' "$E"

mkdir -p "$TDIR/root"
"$TRAIND_BIN" synth --out "$TDIR/root/ds" --samples 16 --image-size "$IMG" --seed 9 >/dev/null 2>&1
start_daemon --dataset-root "$TDIR/root" || bail "daemon did not start"
run status
is "$RC" 0 "status"
check "status shows the backend" grep -q 'backend cpu' "$T"
run --json status
check "status --json is the API's JSON" jq -e '.backend=="cpu"' "$T"
run datasets load syn --synthetic "$NSAMP,$IMG,61" --wait
is "$RC" 0 "datasets load --synthetic --wait"
check "it ends ready" grep -q 'syn.*ready' "$T"
run datasets
check "datasets lists syn" grep -q '^syn .*ready' "$T"
run datasets load bad --synthetic x,y
is "$RC" 2 "bad --synthetic: usage error"
run datasets load syn --synthetic "8,$IMG,1"
is "$RC" 1 "loading an existing name: exit 1"
check "... showing the API's code and message" grep -q 'HTTP 409 conflict' "$E"
(cd "$TDIR" && tctl datasets load disk --path root/ds --wait >"$T" 2>"$E")
is "$?" 0 "datasets load --path with a relative directory (made absolute)"
check "it ends ready with 16 samples" grep -q '^disk .*ready .* 16 ' "$T"
run --json datasets show disk
check "datasets show: the record" jq -e '.name=="disk" and .samples==16' "$T"
run datasets rm disk
is "$RC" 0 "datasets rm"
run datasets show disk
is "$RC" 1 "the removed dataset is gone (exit 1)"
run datasets load evil --path /etc
is "$RC" 1 "path outside the roots: exit 1"
check "... forbidden" grep -q '403 forbidden' "$E"

run -q submit --type train --dataset syn --backbone dinov2-tiny --steps 12 --batch-size 8 \
    --checkpoint-every 6 --eval-every 6 --lr-heads 0.001 --seed 3 --submission-id tc-1
is "$RC" 0 "submit with flags"
tid=$(cat "$T")
check "submit -q prints the job id ($tid)" test -n "$tid"
run watch "$tid"
is "$RC" 0 "watch: exit 0 when the job succeeds"
check "watch drew the progress bar to 12/12" grep -q '12/12 100%' "$E"
check "watch shows images/s and ETA" grep -q 'img/s | ETA' "$E"
check "watch reports the final state" grep -q "job $tid succeeded" "$E"
# on a terminal the bar redraws in place (\r + erase line); script(1) gives it a tty
if command -v script >/dev/null 2>&1; then
    timeout 300 script -qec "$TRAINCTL_BIN --url $URL watch $tid" /dev/null >"$TDIR/tty.out" 2>&1
    is "$?" 0 "watch on a terminal"
    check "on a terminal the bar is redrawn in place" grep -q $'\r\033\[K\[#' "$TDIR/tty.out"
else
    skip "script(1) not installed"; skip "script(1) not installed"
fi
run submit --type train --dataset syn --backbone dinov2-tiny --steps 12 --batch-size 8 \
    --checkpoint-every 6 --eval-every 6 --lr-heads 0.001 --seed 3 --submission-id tc-1
check "resubmission: the existing job" grep -q "existing job $tid" "$T"
run jobs --state succeeded --type train
check "jobs --state --type lists it" grep -q "^$tid .*succeeded" "$T"
run show "$tid"
check "show: state and progress" bash -c "grep -q 'state *succeeded' '$T' && grep -q 'step 12/12' '$T'"
check "show: the dtype plan" grep -q 'dtype plan' "$T"
run --json show "$tid"
check "show --json is the record" jq -e --arg id "$tid" '.id==$id and .state=="succeeded"' "$T"
lossname=$(jq -r '[.metrics|keys[]|select(test("loss"))][0] // "loss"' "$T")
run metrics "$tid" --name "$lossname"
is "$RC" 0 "metrics --name $lossname"
check "metrics rows" test "$(grep -c "^$lossname " "$T")" -ge 1
run checkpoints --job "$tid"
check "checkpoints --job lists 2" test "$(grep -c "$tid" "$T")" -ge 2
run --json checkpoints --job "$tid"
ck=$(jq -r '.checkpoints|max_by(.step)|.id' "$T")
ckpath=$(jq -r '.checkpoints|max_by(.step)|.path' "$T")
first_ck=$(jq -r '.checkpoints|min_by(.step)|.id' "$T")
(cd "$TDIR" && tctl download "$ck" model.safetensors -o got.safetensors >"$T" 2>"$E")
is "$?" 0 "download"
check "downloaded file identical to the checkpoint's" cmp -s "$TDIR/got.safetensors" "$ckpath/model.safetensors"
run checkpoints rm "$first_ck"
is "$RC" 0 "checkpoints rm"
run checkpoints show "$first_ck"
is "$RC" 1 "the removed checkpoint is gone (exit 1)"
run download "$ck" no-such-file -o "$TDIR/x"
is "$RC" 1 "download of a missing file: exit 1"
check "... not_found, and no file left behind" bash -c "grep -q not_found '$E' && ! test -e '$TDIR/x' && ! test -e '$TDIR/x.part'"

printf '{"type":"eval","dataset":"syn","checkpoint":"%s","batch_size":16}\n' "$ck" >"$TDIR/eval.json"
run -q submit -f "$TDIR/eval.json" --watch
is "$RC" 0 "submit -f job.json --watch"
eid=$(head -n1 "$T")
run result "$eid"
is "$RC" 0 "result"
check "result shows MPJPE against the mean predictor" bash -c "grep -q '^MPJPE' '$T' && grep -q 'mean predictor' '$T'"
run submit -f - <<<'{"type":"debug","dataset":"syn","batches":1,"batch_size":4,"model":{"backbone":"dinov2-tiny","heads":["hand"]}}'
is "$RC" 0 "submit -f - (stdin)"

# errors from the API: code + message, exit 1
run show j-999999
is "$RC" 1 "show of a missing job: exit 1"
check "... shows 404 not_found" grep -q 'HTTP 404 not_found' "$E"
run watch j-999999
is "$RC" 1 "watch of a missing job: exit 1"
check "... 404 not_found" grep -q '404 not_found' "$E"
run jobs --state sleeping
is "$RC" 1 "jobs with an unknown state filter: exit 1"
check "... the API's invalid_field" grep -q 'invalid_field' "$E"
run submit --type train --dataset syn --set bogus=1
is "$RC" 1 "unknown field: exit 1"
check "... invalid_field naming it" bash -c "grep -q 'invalid_field' '$E' && grep -q bogus '$E'"
run submit --type train --dataset syn --steps many
is "$RC" 2 "non-integer --steps: usage error"
run submit -f "$TDIR/nope.json"
is "$RC" 2 "missing job file: usage error"

# cancel: watch ends with exit 3
run -q submit --type train --dataset syn --backbone dinov2-tiny --steps 1000000 --batch-size 8
lid=$(cat "$T")
wait_job_state "$lid" running 60
run cancel "$lid"
is "$RC" 0 "cancel"
run watch "$lid"
is "$RC" 3 "watch of a cancelled job: exit 3"

# watch survives a daemon kill -9 and restart
RSTEPS=${TEST_RESUME_STEPS:-400}
run -q submit --type train --dataset syn --backbone dinov2-tiny --steps "$RSTEPS" --batch-size 8 --checkpoint-every 20
wid=$(cat "$T")
tctl watch "$wid" >"$TDIR/w.out" 2>"$TDIR/w.err" &
wpid=$!
_bg_pids+=("$wpid")
has_ckpt() { api GET "/v1/checkpoints?job=$wid"; [ "$(jb '.checkpoints|length')" -ge 1 ] 2>/dev/null; }
wait_for 300 has_ckpt
ok $? "watched job checkpointed"
kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
sleep 2
DAEMON_PID=
start_daemon || bail "daemon did not restart"
wait "$wpid"
is "$?" 0 "watch reconnected after the restart and exited 0 when the job finished"
check "it said it reconnected" grep -q 'reconnecting' "$TDIR/w.err"
is "$(job_state "$wid")" succeeded "the job did succeed"
stop_daemon TERM

# token: flags, environment, token file
printf 'tok-%s\n' "$RANDOM$RANDOM" >"$TDIR/token"
chmod 600 "$TDIR/token"   # traind refuses a token file others can read
tok=$(head -n1 "$TDIR/token")
STATE="$TDIR/state2" PORT=$(free_port)
start_daemon --token-file "$TDIR/token" || bail "daemon with token did not start"
"$TRAINCTL_BIN" --url "$URL" status >"$T" 2>"$E"
is "$?" 1 "no token: exit 1"
check "... 401 unauthorized" grep -q '401 unauthorized' "$E"
"$TRAINCTL_BIN" --url "$URL" --token "$tok" status >"$T" 2>"$E"
is "$?" 0 "--token"
TRAIND_URL="$URL" TRAIND_TOKEN="$tok" "$TRAINCTL_BIN" status >"$T" 2>"$E"
is "$?" 0 "TRAIND_URL + TRAIND_TOKEN"
"$TRAINCTL_BIN" --url "$URL" --token-file "$TDIR/token" jobs >"$T" 2>"$E"
is "$?" 0 "--token-file"
TRAIND_URL="$URL" TRAIND_TOKEN_FILE="$TDIR/token" "$TRAINCTL_BIN" datasets >"$T" 2>"$E"
is "$?" 0 "TRAIND_TOKEN_FILE"
"$TRAINCTL_BIN" --url "$URL" --token-file "$TDIR/missing" status >"$T" 2>"$E"
is "$?" 2 "unreadable token file: usage error"
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0"
done_testing
