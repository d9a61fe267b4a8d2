#!/usr/bin/env bash
# tests/integration/25_datasets.sh — a dataset's life while it is still being
# made: DELETE of a synthetic dataset in the middle of its generation returns
# promptly (the generator stops at the next shard), leaves no files and no
# shared memory behind, and the name can be used again at once; a daemon
# stopped (SIGTERM) in the middle of a generation exits promptly and cleanly,
# and its restart makes the dataset again from the start.
. "$(dirname "$0")/lib.sh"

# big enough that generating it takes seconds (several 64 MB shards)
BIG='{"name":"big","synthetic":{"samples":8000,"image_size":112,"seed":1}}'
shm_segments() { ls /dev/shm 2>/dev/null | grep -c "^traind-$DAEMON_PID-" ; }

start_daemon || bail "daemon did not start"
api POST /v1/datasets "$BIG"
is "$STATUS" 202 "a large synthetic dataset is requested"
wait_for 60 sh -c "curl -s '$URL/v1/datasets/big' | grep -q '\"phase\": *\"generating\"'"
ok $? "it is being generated"
t0=$(date +%s.%N)
api DELETE /v1/datasets/big
t1=$(date +%s.%N)
el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
is "$STATUS" 200 "DELETE in the middle of the generation"
check "it returned promptly (${el} s)" awk -v e="$el" 'BEGIN{exit !(e < 20)}'
msg=$(grep -o 'synth: cancelled after [0-9]* of [0-9]* shards' "$DLOG" | tail -n1)
check "the generator stopped at a shard boundary, before the end ($msg)" \
    awk -v m="$msg" 'BEGIN{split(m, w, " "); exit !(w[4] != "" && w[4] + 0 < w[6] + 0)}'
expect_error 404 not_found "the dataset is gone" GET /v1/datasets/big
check "no generated files left" sh -c "! ls '$STATE'/work/synthetic/big* >/dev/null 2>&1 || [ -z \"\$(ls -A '$STATE'/work/synthetic/big* 2>/dev/null)\" ]"
is "$(shm_segments)" 0 "no shared memory left"
api POST /v1/datasets "{\"name\":\"big\",\"synthetic\":{\"samples\":16,\"image_size\":$IMG,\"seed\":2}}"
is "$STATUS" 202 "the name can be used again at once"
is "$(wait_dataset big 120)" ready "and the new dataset of that name loads"
api DELETE /v1/datasets/big
is "$STATUS" 200 "deleted again"

# SIGTERM in the middle of a generation
api POST /v1/datasets "$BIG"
wait_for 60 sh -c "curl -s '$URL/v1/datasets/big' | grep -q '\"phase\": *\"generating\"'"
ok $? "generating again"
pid_before=$DAEMON_PID
t0=$(date +%s.%N)
stop_daemon TERM
t1=$(date +%s.%N)
el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
is "$DAEMON_RC" 0 "SIGTERM in the middle of a generation: clean exit"
check "promptly (${el} s)" awk -v e="$el" 'BEGIN{exit !(e < 30)}'
check "the stopped daemon left no shared memory" sh -c "! ls /dev/shm 2>/dev/null | grep -q '^traind-$pid_before-'"
start_daemon || bail "daemon did not restart"
st=$(wait_dataset big 600)
is "$st" ready "after the restart the dataset is made again from the start and loads"
api GET /v1/datasets/big
is "$(jb .samples)" 8000 "with all its samples"
stop_daemon
is "$DAEMON_RC" 0 "clean exit"
done_testing
