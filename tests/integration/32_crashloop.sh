#!/usr/bin/env bash
# tests/integration/32_crashloop.sh — "survives kill -9 at any moment", tried
# at many moments: a train job that writes a checkpoint every step runs while
# the daemon is killed with SIGKILL at random times (mid-step, mid-checkpoint,
# mid-record) and restarted, again and again. After every restart: the
# database passes integrity_check, no unfinished checkpoint directory is left,
# every recorded checkpoint is complete on disk with the recorded SHA-256 of
# each file, no job is left `running` without a worker. At the end the job has
# resumed every time under the same id, finishes at its full step count, and
# logged exactly the losses of the same job run without interruption. The job
# trains with augmentation on: its draws, by (seed, epoch, sample), resume too.
. "$(dirname "$0")/lib.sh"

KILLS=${CRASH_KILLS:-6}
STEPS=150
RANDOM=${CRASH_SEED:-4242}   # the kill times are reproducible

start_daemon || bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 32
ok $? "dataset ready"
AUG='"augment":{"rotate_deg":[-30,30],"shift_deg":4,"flip":0.5,"zoom":[0.9,1.1],"brightness":0.2,"erase":{}}'
submit "$(train_spec syn $STEPS '"checkpoint_every":1,"keep_checkpoints":3,"eval_every":50,'"$AUG")"
JOB_ID=$JOB
is "$STATUS" 201 "train job submitted (checkpoint every step)"
wait_job_state "$JOB_ID" running 120 || bail "job never ran"

# The invariants of a state dir no daemon is running on (checked between a kill
# and the restart, and after the final stop, so no live job races the check).
check_store() {   # check_store ROUND
    local round=$1
    is "$(sql 'PRAGMA integrity_check;')" ok "round $round: integrity_check"
    local bad=0 n=0 id path files name want got
    while IFS='|' read -r id path files; do
        n=$((n + 1))
        [ -d "$path" ] || { bad=$((bad + 1)); diag "  $id: $path missing"; continue; }
        while IFS=' ' read -r name want; do
            got=$(sha256sum "$path/$name" 2>/dev/null | cut -d' ' -f1)
            [ "$got" = "$want" ] || { bad=$((bad + 1)); diag "  $id/$name: sha256 $got, recorded $want"; }
        done < <(jq -r '.[] | "\(.name) \(.sha256)"' <<<"$files")
    done < <(sql "SELECT id, path, files FROM checkpoints WHERE job='$JOB_ID';")
    is "$bad" 0 "round $round: all $n recorded checkpoints complete, every file's SHA-256 as recorded"
}

for k in $(seq 1 "$KILLS"); do
    # 0.2 .. 1.5 s into the run: somewhere among steps, checkpoint writes and records
    sleep "$(awk -v r=$RANDOM 'BEGIN{printf "%.2f", 0.2 + 1.3 * r / 32767}')"
    st=$(job_state "$JOB_ID")
    [ "$st" = succeeded ] && { diag "the job finished before kill $k"; break; }
    step=$(job_step "$JOB_ID")
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
    diag "kill $k at step ${step:-?} ($st)"
    for _ in $(seq 1 100); do pgrep -f "traind worker" >/dev/null 2>&1 || break; sleep 0.1; done
    check_store "$k"
    tmps=$(find "$STATE/checkpoints" -name '.*.tmp.*' -prune)
    diag "  unfinished checkpoint directories left by the kill: $(wc -w <<<"$tmps")"
    start_daemon || bail "daemon did not restart after kill $k"
    left=0
    for t in $tmps; do [ -e "$t" ] && left=$((left + 1)); done
    is "$left" 0 "round $k: the restart removed every unfinished checkpoint directory"
    is "$(wait_dataset syn 120)" ready "round $k: the dataset is loaded again"
    for _ in $(seq 1 100); do
        st=$(job_state "$JOB_ID")
        case "$st" in running|succeeded) break ;; esac
        sleep 0.1
    done
    case "$st" in running|succeeded) ok 0 "round $k: the job is back ($st)" ;;
                  *) ok 1 "round $k: the job is back (state '$st')" ;; esac
done

is "$(wait_job "$JOB_ID" 900)" succeeded "after $KILLS kills the job finished"
api GET "/v1/jobs/$JOB_ID"
check "at its full step count, resumed from a checkpoint, same id" \
    jq -e --argjson n "$STEPS" '.progress.step == $n and (.resumed_from | type == "string")' <<<"$BODY"
# the same job never interrupted: resuming is exact, so every logged loss matches
submit "$(train_spec syn $STEPS '"checkpoint_every":1000,"eval_every":50,'"$AUG")"
REF=$JOB
is "$(wait_job "$REF" 900)" succeeded "the same job, never interrupted"
a=$(curl -s "$URL/v1/jobs/$JOB_ID/metrics?name=loss" | jq -c '[.. | objects | select(has("step") and has("value")) | [.step, .value]] | unique_by(.[0])')
b=$(curl -s "$URL/v1/jobs/$REF/metrics?name=loss" | jq -c '[.. | objects | select(has("step") and has("value")) | [.step, .value]] | unique_by(.[0])')
[ "$(jq length <<<"$a")" -gt 2 ] && [ "$a" = "$b" ]
ok $? "the killed-and-resumed run logged exactly the losses of the uninterrupted one ($(jq length <<<"$a") points)"
running=$(sql "SELECT count(*) FROM jobs WHERE state IN ('running','cancelling');")
is "$running" 0 "no job left running"
stop_daemon
is "$DAEMON_RC" 0 "clean exit"
check_store final
is "$(find "$STATE/checkpoints" -name '.*.tmp.*' | wc -l)" 0 "no unfinished checkpoint directory at the end"
orphans=0
for dir in "$STATE/checkpoints/$JOB_ID"/*/; do
    dir=${dir%/}
    [ -n "$(sql "SELECT id FROM checkpoints WHERE path='$dir';")" ] || { orphans=$((orphans + 1)); diag "  unrecorded: $dir"; }
done
is "$orphans" 0 "every checkpoint directory left on disk has its record (none orphaned by the kills)"
done_testing
