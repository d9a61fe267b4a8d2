#!/usr/bin/env bash
# tests/integration/30_lifecycle.sh — job lifecycle against a real daemon:
# queue order by priority (higher first, FIFO within a priority), cancel of a
# queued job and of a running one (which leaves a checkpoint), eviction refused
# while jobs use a dataset, `kill -9` of a worker mid-job (job failed, dataset
# still ready, the next job runs), `kill -9` of the daemon mid-training and a
# restart on the same state dir (no corruption; the job resumes from its
# checkpoint under the same id and finishes; the dataset is loaded again).
. "$(dirname "$0")/lib.sh"

# A train job long enough to be caught mid-run on any machine; these are
# cancelled or killed, never waited for.
LONG=1000000
start_daemon || bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 21
ok $? "dataset ready"

started_at() { api GET "/v1/jobs/$1"; jb '.started_at // empty'; }
worker_pid() {   # from the job record, else the daemon's only child
    api GET "/v1/jobs/$1"
    local p
    p=$(jb '.worker_pid // empty')
    [ -n "$p" ] || p=$(pgrep -P "$DAEMON_PID" | head -n1)
    printf '%s' "$p"
}

# ---- priority order and cancel ---------------------------------------------------------
submit "$(train_spec syn $LONG '"checkpoint_every":1000000')"; blk=$JOB
is "$STATUS" 201 "blocking train job submitted"
wait_job_state "$blk" running 60
ok $? "blocking job is running"
wait_for 60 _job_step_ge "$blk" 1
ok $? "blocking job makes progress"

dbg() { printf '{"type":"debug","dataset":"syn","batches":1,"batch_size":4,"priority":%s,"model":{"backbone":"dinov2-tiny","heads":["hand"]}}' "$1"; }
submit "$(dbg 0)"; q1=$JOB; submit "$(dbg 5)"; q2=$JOB; submit "$(dbg 5)"; q3=$JOB; submit "$(dbg 1)"; q4=$JOB
submit "$(dbg 9)"; q5=$JOB
check "five jobs queued behind it" test -n "$q1" -a -n "$q2" -a -n "$q3" -a -n "$q4" -a -n "$q5"
is "$(job_state "$q1")" queued "a submitted job waits while the device is busy"
api GET /v1/status
is "$(jb .queue_length)" 5 "status: queue length 5"
check "status: the running job with its progress" \
    jq -e --arg id "$blk" '[.running[]|select(.id==$id)]|length==1 and (.[0].progress.step>=1)' <<<"$BODY"

expect_error 409 conflict "evicting a dataset used by queued/running jobs" DELETE /v1/datasets/syn
api GET /metrics
check "metrics: one running job" grep -q '^traind_jobs{state="running"} 1' <<<"$BODY"
check "metrics: 5 queued jobs" grep -q '^traind_jobs{state="queued"} 5' <<<"$BODY"
check "metrics: images/s of the running job" grep -qE '^traind_images_per_second(\{[^}]*\})? [0-9.e+]+' <<<"$BODY"
check "metrics: train step rate" grep -qE '^traind_train_steps_per_second(\{[^}]*\})? [0-9.e+]+' <<<"$BODY"

api POST "/v1/jobs/$q5/cancel"
is "$STATUS" 200 "cancel a queued job -> 200"
is "$(job_state "$q5")" cancelled "queued job is dropped at once (cancelled)"
check "cancelled queued job never started" test -z "$(started_at "$q5")"
api GET /v1/status
is "$(jb .queue_length)" 4 "queue length 4 after the cancel"

step_before=$(job_step "$blk")
api POST "/v1/jobs/$blk/cancel"
is "$STATUS" 200 "cancel the running job -> 200 at once"
check "running job moves through cancelling" jq -e '.state=="cancelling" or .state=="cancelled"' <<<"$BODY"
is "$(wait_job "$blk" 120)" cancelled "running job ends cancelled"
api GET "/v1/checkpoints?job=$blk"
check "the cancelled train job left a checkpoint at or after step $step_before" \
    jq -e --argjson s "$step_before" '[.checkpoints[].step]|max>=$s' <<<"$BODY"
ckp=$(jb '.checkpoints|max_by(.step)|.path')
check "its files are complete" test -s "$ckp/model.safetensors" -a -s "$ckp/state.json" -a -s "$ckp/optimizer.safetensors"
api GET "/v1/jobs/$blk/events"
check "events show running -> cancelling -> cancelled" \
    bash -c 'grep -o "\"state\": *\"[a-z]*\"" <<<"$1" | tr -d " " | tr "\n" , | grep -q "running.*cancelling.*cancelled"' _ "$BODY"

for q in "$q1" "$q2" "$q3" "$q4"; do
    is "$(wait_job "$q" 300)" succeeded "queued job $q ran"
done
order=$(for q in "$q1" "$q2" "$q3" "$q4"; do printf '%s %s\n' "$(started_at "$q")" "$q"; done | sort | awk '{print $2}' | tr '\n' ' ')
is "$order" "$q2 $q3 $q4 $q1 " "start order: priority 5 (FIFO), then 1, then 0"
check "sqlite agrees on the start order" \
    test "$(sql "SELECT group_concat(id,' ') FROM (SELECT id FROM jobs WHERE id IN ('$q1','$q2','$q3','$q4') ORDER BY started, seq);") " = "$order"

# ---- kill -9 of a worker mid-job ----------------------------------------------------------
submit "$(train_spec syn $LONG '"checkpoint_every":1000000')"; vic=$JOB
wait_job_state "$vic" running 60 && wait_for 60 _job_step_ge "$vic" 1
ok $? "victim job running"
ckid=$(sql "SELECT id FROM checkpoints WHERE path='$ckp';")
submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"$ckid\",\"batch_size\":16}"; ev=$JOB
is "$(job_state "$ev")" queued "an eval job of the cancelled job's checkpoint $ckid waits"
expect_error 409 conflict "deleting a checkpoint a queued job needs" DELETE "/v1/checkpoints/$ckid"
wpid=$(worker_pid "$vic")
check "worker pid known ($wpid), a child of the daemon" test "$(ps -o ppid= -p "$wpid" 2>/dev/null | tr -d ' ')" = "$DAEMON_PID"
# as if the worker died writing a checkpoint: its unfinished directory
mkdir -p "$STATE/checkpoints/$vic/.5.tmp.QwErTy"
echo partial >"$STATE/checkpoints/$vic/.5.tmp.QwErTy/model.safetensors"
kill -KILL "$wpid"
is "$(wait_job "$vic" 60)" failed "job of the killed worker failed"
check "the dead worker's unfinished checkpoint directory is removed" test ! -e "$STATE/checkpoints/$vic/.5.tmp.QwErTy"
api GET "/v1/jobs/$vic"
check "its error names the signal ($(jb .error))" grep -qiE 'signal 9|SIGKILL|killed' <<<"$(jb .error)"
is "$(dataset_state syn)" ready "the dataset is still resident and ready"
submit "$(dbg 0)"; nxt=$JOB
is "$(wait_job "$ev" 300)" succeeded "the next job runs (the queued eval)"
is "$(wait_job "$nxt" 300)" succeeded "and the one after it"
check "daemon still serving" daemon_alive

# ---- kill -9 of the daemon mid-training, restart, resume -----------------------------------
# Steps: enough that the run is still going after its first checkpoint.
RSTEPS=${TEST_RESUME_STEPS:-400}
RCK=${TEST_RESUME_CKPT:-20}
submit "$(train_spec syn "$RSTEPS" "\"checkpoint_every\":$RCK,\"submission_id\":\"resume-me\"")"; rj=$JOB
is "$STATUS" 201 "long train job submitted"
has_ckpt() { api GET "/v1/checkpoints?job=$rj"; [ "$(jb '.checkpoints|length')" -ge 1 ] 2>/dev/null; }
wait_for 300 has_ckpt
ok $? "first checkpoint recorded"
wpid=$(worker_pid "$rj")
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
killed_step=$(sql "SELECT json_extract(progress,'$.step') FROM jobs WHERE id='$rj';")
ck_before=$(sql "SELECT max(step) FROM checkpoints WHERE job='$rj';")
check "job was mid-run when the daemon died (step $killed_step of $RSTEPS)" test "${killed_step:-0}" -lt "$RSTEPS"
gone() { ! kill -0 "$wpid" 2>/dev/null; }
wait_for 10 gone
ok $? "the worker did not outlive its daemon"
check "sqlite: integrity_check after kill -9" test "$(sql 'PRAGMA integrity_check;')" = ok
is "$(sql "SELECT state FROM jobs WHERE id='$rj';")" running "store still says running (as the daemon died)"

# what a death in the middle of writing a checkpoint leaves: a temporary
# directory never renamed into place, and the worker's job file
mkdir -p "$STATE/checkpoints/$rj/.999.tmp.AbCdEf" "$STATE/work/jobs"
head -c 4096 /dev/urandom >"$STATE/checkpoints/$rj/.999.tmp.AbCdEf/model.safetensors"
echo '{}' >"$STATE/work/jobs/j-999999.json"
# and a checkpoint directory older than the newest record, without a record (a
# crash between pruning's record delete and its file delete)
mkdir -p "$STATE/checkpoints/$rj/0"
echo stale >"$STATE/checkpoints/$rj/0/model.safetensors"

DAEMON_PID=
restart_t=$(date +%s.%N)
start_daemon || bail "daemon did not restart"
ok 0 "daemon restarted on the same state dir"
check "the unfinished checkpoint directory is removed at start" test ! -e "$STATE/checkpoints/$rj/.999.tmp.AbCdEf"
check "and the removal is logged" grep -q 'removed 1 unfinished checkpoint directory' "$DLOG"
check "a dead worker's job file is removed at start" test ! -e "$STATE/work/jobs/j-999999.json"
check "an unrecorded checkpoint directory older than the newest record is removed at start" \
    test ! -e "$STATE/checkpoints/$rj/0"
is "$(wait_dataset syn 120)" ready "the dataset is loaded again after the restart"
is "$(wait_job "$rj" 900)" succeeded "the interrupted job resumed and finished"
api GET "/v1/jobs/$rj"
check "same id, resumed_from its checkpoint" jq -e '.resumed_from|type=="string" and startswith("c-")' <<<"$BODY"
check "finished at the full step count" jq -e --argjson n "$RSTEPS" '.progress.step==$n' <<<"$BODY"
api GET "/v1/jobs/$rj/events"
check "its events record the interruption" grep -q interrupted <<<"$BODY"
first=$(sql "SELECT min(step) FROM metrics WHERE job='$rj' AND name='loss' AND time > $restart_t;")
is "$first" $((ck_before + 1)) "the resumed run's first step follows its checkpoint (step $ck_before)"
diffs=$(sql "SELECT count(*) FROM metrics a JOIN metrics b ON a.job=b.job AND a.name=b.name AND a.step=b.step AND a.rowid<b.rowid
             WHERE a.job='$rj' AND a.name='loss' AND abs(a.value-b.value) > 1e-6*max(1,abs(a.value));")
redone=$(sql "SELECT count(*) FROM metrics a JOIN metrics b ON a.job=b.job AND a.name=b.name AND a.step=b.step AND a.rowid<b.rowid
              WHERE a.job='$rj' AND a.name='loss';")
is "$diffs" 0 "steps trained again after the resume have the same loss as before the kill ($redone redone)"
api POST /v1/jobs "$(train_spec syn "$RSTEPS" "\"checkpoint_every\":$RCK,\"submission_id\":\"resume-me\"")"
is "$STATUS" 200 "idempotent resubmission after restart returns the existing job"
is "$(jb .id)" "$rj" "... with the same id"
check "sqlite: one job row for the submission id" test "$(sql "SELECT count(*) FROM jobs WHERE submission_id='resume-me';")" = 1
check "sqlite: integrity_check ok" test "$(sql 'PRAGMA integrity_check;')" = ok
files_match_records() {   # every file of every checkpoint of job $1 has its recorded sha256
    local c f want n=0
    api GET "/v1/checkpoints?job=$1"
    for c in $(jb '.checkpoints[].id'); do
        api GET "/v1/checkpoints/$c"
        local dir; dir=$(jb .path)
        for f in $(jb '.files[].name'); do
            want=$(jb --arg f "$f" '.files[]|select(.name==$f)|.sha256')
            [ "$(sha256sum "$dir/$f" | cut -d' ' -f1)" = "$want" ] || { diag "  $c/$f differs from its record"; return 1; }
            n=$((n + 1))
        done
    done
    [ "$n" -gt 0 ]
}
check "no torn checkpoint: every file matches its recorded sha256" files_match_records "$rj"

stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0 after SIGTERM"
done_testing
