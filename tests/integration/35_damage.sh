#!/usr/bin/env bash
# tests/integration/35_damage.sh — files under a running (or restarting)
# daemon get damaged: a checkpoint's weights truncated or its directory
# removed, a dataset's shard truncated or its directory removed, the database
# replaced by garbage, checkpoints and then the database itself that cannot
# be written (a file size limit standing in for a full disk: a job's final
# state is retried until it is recorded). Each gives a clear error where it is used (the job
# fails naming the file, the dataset reload fails naming the shard, the
# daemon refuses to start naming the database) and loses nothing else: the
# daemon keeps serving, other datasets and jobs are unaffected, and a
# damaged database is never overwritten.
. "$(dirname "$0")/lib.sh"

ROOT="$TDIR/root"
mkdir -p "$ROOT"
"$TRAIND_BIN" synth --out "$ROOT/a" --samples 24 --image-size "$IMG" --seed 1 >/dev/null 2>&1 &&
"$TRAIND_BIN" synth --out "$ROOT/b" --samples 24 --image-size "$IMG" --seed 2 >/dev/null 2>&1
ok $? "two on-disk datasets written"

start_daemon --dataset-root "$ROOT" || bail "daemon did not start"
for n in a b; do
    api POST /v1/datasets "{\"name\":\"$n\",\"path\":\"$ROOT/$n\"}"
    is "$(wait_dataset "$n" 120)" ready "dataset $n ready"
done

submit "$(train_spec a 4 '"checkpoint_every":2,"keep_checkpoints":5')"
is "$(wait_job "$JOB" 300)" succeeded "a train job leaves checkpoints"
api GET "/v1/checkpoints?job=$JOB"
ck_a=$(jb '.checkpoints[0].id') ck_b=$(jb '.checkpoints[1].id')
dir_a=$(jb '.checkpoints[0].path') dir_b=$(jb '.checkpoints[1].path')
[ -n "$ck_b" ] && [ -d "$dir_a" ] && [ -d "$dir_b" ]; ok $? "two checkpoints on disk ($ck_a, $ck_b)"

eval_on() { submit "{\"type\":\"eval\",\"dataset\":\"$1\",\"checkpoint\":\"$2\",\"batch_size\":8}"; }

# ---- checkpoint weights truncated ----------------------------------------------------
truncate -s 100 "$dir_a/model.safetensors"
eval_on a "$ck_a"
is "$(wait_job "$JOB" 300)" failed "eval on a checkpoint with truncated weights fails"
api GET "/v1/jobs/$JOB"
err=$(jb '.error | if type == "object" then .message else . end')
check "the error names the damaged file ($(head -c 160 <<<"$err"))" grep -q 'model.safetensors' <<<"$err"

# ---- checkpoint directory removed ----------------------------------------------------
rm -rf "$dir_b"
eval_on a "$ck_b"
is "$(wait_job "$JOB" 300)" failed "eval on a checkpoint whose directory is gone fails"
api GET "/v1/jobs/$JOB"
err=$(jb '.error | if type == "object" then .message else . end')
check "the error says what is missing ($(head -c 160 <<<"$err"))" grep -qiE 'no such|missing|not found|cannot' <<<"$err"
expect_error 404 not_found "download of a file of the removed checkpoint" GET "/v1/checkpoints/$ck_b/files/model.safetensors"

# ---- a resident dataset's files removed: it stays resident and usable ---------------------
rm -rf "$ROOT/b"
submit "$(train_spec b 2)"
is "$(wait_job "$JOB" 300)" succeeded "a dataset whose directory was removed still trains from memory"
api GET /v1/health
is "$STATUS" 200 "daemon serving after the damage"

# ---- file names that are not UTF-8 ------------------------------------------------------
"$TRAIND_BIN" synth --out "$ROOT/u" --samples 8 --image-size "$IMG" --seed 4 >/dev/null 2>&1
mv "$ROOT/u/$(ls "$ROOT/u" | grep -m1 safetensors)" "$ROOT/u/sh"$'\xff'".safetensors"
api POST /v1/datasets "{\"name\":\"u\",\"path\":\"$ROOT/u\"}"
is "$(wait_dataset u 120)" ready "a dataset whose shard name is not UTF-8 loads"
mkdir -p "$TDIR/outside-name/d"$'\xfe'
ln -s "$TDIR/outside-name/d"$'\xfe' "$ROOT/latin1"
"$TRAIND_BIN" synth --out "$ROOT/raw"$'\xfe' --samples 8 --image-size "$IMG" --seed 4 >/dev/null 2>&1
ln -s "$ROOT/raw"$'\xfe' "$ROOT/to-latin1"
expect_error 422 unprocessable "a path that resolves to a non-UTF-8 name is refused, saying so" \
    POST /v1/datasets "{\"name\":\"raw\",\"path\":\"$ROOT/to-latin1\"}"

# ---- restart: the removed dataset fails to reload, the other one comes back ---------------
stop_daemon TERM
is "$DAEMON_RC" 0 "clean stop"
# and dataset a's first shard is truncated while the daemon is down
shard=$(ls "$ROOT/a"/*.safetensors | head -n1)
truncate -s 1000 "$shard"
truncate -s 1000 "$ROOT/u/sh"$'\xff'".safetensors"
start_daemon --dataset-root "$ROOT" || bail "daemon did not restart"
is "$(wait_dataset u 120)" failed "the dataset with the non-UTF-8 shard name, truncated, fails to reload (not stuck)"
api GET /v1/datasets/u
check "its error shows the name with '?' for the bad byte ($(jb .error | head -c 120))" grep -q 'sh?.safetensors' <<<"$(jb .error)"
st_a=$(wait_dataset a 120) st_b=$(wait_dataset b 120)
is "$st_a" failed "a dataset with a truncated shard fails to reload"
api GET /v1/datasets/a
check "its error names the shard ($(jb .error | head -c 160))" grep -q "$(basename "$shard")" <<<"$(jb .error)"
is "$st_b" failed "a dataset whose directory is gone fails to reload"
api GET /v1/datasets/b
check "its error says so ($(jb .error | head -c 160))" grep -qiE 'no such|not found|does not exist|cannot' <<<"$(jb .error)"
api GET /v1/jobs
check "every job record survived the restart" jq -e '.total >= 4' <<<"$BODY"
"$TRAIND_BIN" synth --out "$ROOT/c" --samples 16 --image-size "$IMG" --seed 3 >/dev/null 2>&1
api POST /v1/datasets "{\"name\":\"c\",\"path\":\"$ROOT/c\"}"
is "$(wait_dataset c 120)" ready "a new dataset loads beside the failed ones"
expect_error 422 unprocessable "a job on a failed dataset is refused, with the load error" POST /v1/jobs "$(train_spec a 1)"
stop_daemon TERM

# ---- checkpoints that cannot be written (files limited to 1 MB, as a full disk refuses them) --
# in the middle of a run a warning (a log event with level "warning"), and training goes on; the
# last one's failure fails the job naming its step; no directory is left and no record made
STATE0=$STATE PORT0=$PORT
STATE=$TDIR/state-fsize PORT=
fsize0=$(ulimit -S -f)
trap '' XFSZ                 # inherited: past the limit write() fails with EFBIG instead of a signal
ulimit -S -f 1024
start_daemon || bail "daemon (file size limit) did not start"
ulimit -S -f "$fsize0"
trap - XFSZ
load_synth f 16 "$IMG" 35
ok $? "dataset ready under the file size limit"
submit "$(train_spec f 6 '"checkpoint_every":2')"
is "$(wait_job "$JOB" 300)" failed "a train job whose checkpoints cannot be written fails at its last one"
api GET "/v1/jobs/$JOB"
check "its error names the last step ($(jb .error | head -c 120))" grep -q 'checkpoint at step 6' <<<"$(jb .error)"
nwarn=$(sql "SELECT count(*) FROM job_events WHERE job = '$JOB' AND type = 'log' AND json_extract(data, '\$.level') = 'warning' AND json_extract(data, '\$.message') GLOB 'warning: checkpoint at step [24] not written*'")
is "$nwarn" 2 "the checkpoints at steps 2 and 4 are warnings in its log (level warning); training went on"
api GET "/v1/jobs/$JOB/metrics?name=loss"
check "it trained all 6 steps" jq -e '[.[] | .step] | max == 6' <<<"$BODY"
api GET "/v1/checkpoints?job=$JOB"
is "$(jb '.checkpoints | length')" 0 "no checkpoint recorded"
left=$(find "$STATE/checkpoints" -mindepth 2 2>/dev/null | wc -l)
is "$left" 0 "nothing left under the checkpoint root"
check "the daemon logged them as warnings" grep -q 'WARN .*checkpoint at step 2 not written' "$DLOG"
daemon_alive; ok $? "the daemon keeps serving"
stop_daemon TERM

# ---- the database itself cannot grow (the same limit, reached by a job's events) ------------------
# the job's final state is tried again until it is recorded: once the limit is lifted the job
# ends as it did, and the next job runs; a daemon stopped while it retries stops at once, and the
# next start finds the job interrupted (as after a crash)
fill_db() {   # a train job whose events outgrow the limit; waits for the refused final state
    submit "$(train_spec f 60 '"checkpoint_every":0,"eval_every":5')"
    wait_for 300 grep -q "\[$JOB\] cannot record the final state" "$DLOG"
}
for round in lift stop; do
    STATE=$TDIR/state-dbfull-$round PORT=
    trap '' XFSZ
    ulimit -S -f 1024
    start_daemon || bail "daemon (file size limit) did not start"
    ulimit -S -f "$fsize0"
    trap - XFSZ
    load_synth f 64 "$IMG" 36
    ok $? "$round: dataset ready under the file size limit"
    fill_db
    ok $? "$round: the store refused the job's final state ($(grep -o 'cannot record the final state [a-z]*: [^;]*' "$DLOG" | head -1))"
    J0=$JOB
    nref=$(grep -c "\[$J0\] .* not recorded: " "$DLOG")
    [ "$nref" -ge 1 ] && [ "$nref" -le 3 ]
    ok $? "$round: the events it refused are logged at most once per 10 s ($nref lines)"
    if [ $round = lift ]; then
        is "$(job_state "$J0")" running "lift: meanwhile the record still says running"
        prlimit --pid "$DAEMON_PID" --fsize=unlimited:unlimited
        is "$(wait_job "$J0" 60)" failed "lift: with the limit lifted the final state is recorded (its last checkpoint failed)"
        check "lift: the daemon says after how many attempts" grep -q "\[$J0\] final state failed recorded after" "$DLOG"
        submit "$(train_spec f 2 '"checkpoint_every":0')"
        is "$(wait_job "$JOB" 120)" succeeded "lift: the next job runs and is recorded"
        stop_daemon TERM
    else
        t0=$(date +%s)
        stop_daemon TERM
        t1=$(date +%s)
        [ $((t1 - t0)) -le 10 ] && [ "$DAEMON_RC" = 0 ]
        ok $? "stop: a daemon retrying a final state stops at once ($((t1 - t0)) s, rc $DAEMON_RC)"
        start_daemon || bail "daemon did not restart"
        is "$(job_state "$J0")" interrupted "stop: the next start finds the job interrupted"
        stop_daemon TERM
    fi
done
STATE=$STATE0 PORT=$PORT0

# ---- the database replaced by garbage: refused, never overwritten -------------------------
head -c 65536 /dev/urandom >"$STATE/traind.db"
rm -f "$STATE/traind.db-wal" "$STATE/traind.db-shm"
sum0=$(sha256sum "$STATE/traind.db" | cut -d' ' -f1)
out=$(timeout 60 "$TRAIND_BIN" --state-dir "$STATE" --backend cpu --listen "127.0.0.1:$(free_port)" 2>&1)
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; ok $? "the daemon refuses to start on a garbage database (rc $rc)"
check "the message names the database ($(tail -n1 <<<"$out" | head -c 160))" grep -q 'traind.db' <<<"$out"
is "$(sha256sum "$STATE/traind.db" | cut -d' ' -f1)" "$sum0" "the damaged database is left as it was"
done_testing
