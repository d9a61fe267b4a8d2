#!/usr/bin/env bash
# tests/integration/lib.sh — shared helpers of the end-to-end tests. Sourced by
# the numbered test scripts; prove runs every tests/integration/*.sh, so run by
# itself this file prints an empty TAP plan marked SKIP.
#
# Each test script: source this, call start_daemon (own temp dir, free port on
# 127.0.0.1, --backend cpu, waits for /v1/health), talk to it with api/jq, and
# finish with done_testing. A trap stops every daemon it started and removes
# the temp dir, whatever happens.
#
#   ok COND_STATUS "name"         (use: check CMD...; or ok $? name)
#   check "name" CMD ARGS...      ok if CMD succeeds
#   is GOT WANT "name"
#   api METHOD PATH [BODY|@FILE] [extra curl args]   -> $STATUS, $BODY (and $TDIR/last_body)
#   jb FILTER                     jq -r FILTER on $BODY
#   expect_error STATUS CODE "name" METHOD PATH [BODY]   4xx JSON error checks
#                                 (STATUS and CODE are regex alternatives: '404|422')
#   wait_dataset NAME [TIMEOUT]   until ready/failed; prints the state
#   wait_job ID [TIMEOUT]         until a terminal state; prints it
#   wait_for TIMEOUT CMD...       polls CMD every 0.2 s
#   sql "SELECT ..."              sqlite3 on the daemon's traind.db (read-only)
#
# Environment: TRAIND_BIN, TRAINCTL_BIN (the Makefile passes the sanitizer
# builds; defaults: build/test then build/release).

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    echo "1..0 # SKIP helper library, sourced by the other integration tests"
    exit 0
fi

set -u
LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$LIB_DIR/../.." && pwd)

pick_bin() {   # pick_bin VAR name
    local var=$1 name=$2 v
    v=${!var:-}
    if [ -z "$v" ]; then
        for cand in "$ROOT/build/test/$name" "$ROOT/build/release/$name"; do
            [ -x "$cand" ] && { v=$cand; break; }
        done
    fi
    printf '%s' "$v"
}
TRAIND_BIN=$(pick_bin TRAIND_BIN traind)
TRAINCTL_BIN=$(pick_bin TRAINCTL_BIN trainctl)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# Small, fast settings for the CPU backend under ASan on 2 cores.
IMG=${TEST_IMAGE_SIZE:-28}
NSAMP=${TEST_SAMPLES:-96}

TDIR=$(mktemp -d "${TMPDIR:-/tmp}/traind-it.XXXXXX")
_tap_n=0
_tap_failed=0
_daemons=()          # pids of every daemon started (stopped by the trap)
_bg_pids=()          # other background helpers

ok() {   # ok STATUS NAME  (STATUS 0 = pass); with TAP_TODO set: a known bug, TAP "# TODO <reason>"
    local st=$1; shift
    _tap_n=$((_tap_n + 1))
    local todo=${TAP_TODO:+ # TODO $TAP_TODO}
    if [ "$st" -eq 0 ]; then
        echo "ok $_tap_n - $*$todo"
    else
        echo "not ok $_tap_n - $*$todo"
        [ -n "$todo" ] || _tap_failed=$((_tap_failed + 1))
    fi
    return "$st"
}
check() { local name=$1; shift; "$@" >/dev/null 2>&1; ok $? "$name"; }
# refuses_flag "--flag value": traind exits non-zero on it, naming the flag (a TAP point)
refuses_flag() {
    local out rc flag=${1%% *}
    # shellcheck disable=SC2086
    out=$("$TRAIND_BIN" --state-dir "$TDIR/never" --backend cpu $1 2>&1)
    rc=$?
    if [ "$rc" -ne 0 ] && grep -q -- "${flag#--}" <<<"$out"; then ok 0 "$1 refused, naming the flag"
    else ok 1 "$1 refused, naming the flag"; diag "rc $rc: $out"; fi
}
is() {
    if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; diag "  got '$1', want '$2'" | tee /dev/stderr; return 1; fi
}
diag() { printf '%s\n' "$@" | sed 's/^/# /'; }
skip() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP $*"; }
bail() { echo "Bail out! $*"; exit 255; }

done_testing() {
    # No sanitizer report from the daemons or their workers (their stderr is in the logs).
    local f bad=""
    for f in "$TDIR"/daemon*.log; do
        [ -f "$f" ] || continue
        grep -qE 'ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:' "$f" && bad="$bad $(basename "$f")"
    done
    ok "$([ -z "$bad" ]; echo $?)" "no sanitizer report in the daemon logs${bad:+ (see$bad)}"
    echo "1..$_tap_n"
    [ "$_tap_failed" -eq 0 ]
    exit $?
}

_cleanup() {
    local rc=$?
    local p
    for p in "${_bg_pids[@]}"; do
        for c in $(pgrep -P "$p" 2>/dev/null); do pkill -P "$c" 2>/dev/null; kill "$c" 2>/dev/null; done
        kill "$p" 2>/dev/null
    done
    for p in "${_daemons[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null
            for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$p" 2>/dev/null
        fi
        kill_workers_of "$p"
    done
    if [ "$_tap_failed" -ne 0 ] || [ "$rc" -ne 0 ]; then
        # to stderr, so that prove shows it without -v (CI logs)
        local f
        for f in "$TDIR"/daemon*.log; do
            [ -f "$f" ] || continue
            diag "---- last lines of $(basename "$f") ----" >&2
            tail -n 40 "$f" | sed 's/^/# /' >&2
        done
    fi
    if [ -n "${TRAIND_KEEP_TDIR:-}" ]; then diag "kept $TDIR" >&2; else rm -rf "$TDIR"; fi
    # shm segments a killed daemon could not unlink (CPU backend residency)
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# Workers never outlive their daemon (SPEC §3); the trap still makes sure.
kill_workers_of() {
    local dpid=$1 w
    for w in $(pgrep -P "$dpid" 2>/dev/null); do kill -KILL "$w" 2>/dev/null; done
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# start_daemon [extra traind args...]
#   Sets DAEMON_PID, PORT, URL, STATE (state dir), DLOG. Reuses STATE and PORT
#   when they are already set (a restart on the same state dir).
start_daemon() {
    [ -x "$TRAIND_BIN" ] || bail "traind binary not found (TRAIND_BIN=$TRAIND_BIN); run make test-build"
    STATE=${STATE:-$TDIR/state}
    PORT=${PORT:-$(free_port)}
    URL="http://127.0.0.1:$PORT"
    mkdir -p "$STATE"
    _ndaemon=$(( ${_ndaemon:-0} + 1 ))
    DLOG="$TDIR/daemon$_ndaemon.log"
    "$TRAIND_BIN" --state-dir "$STATE" --backend cpu --listen "127.0.0.1:$PORT" "$@" >"$DLOG" 2>&1 &
    DAEMON_PID=$!
    _daemons+=("$DAEMON_PID")
    local i
    for i in $(seq 1 300); do
        if curl -sf -m 2 "$URL/v1/health" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            diag "traind exited during start-up:"; tail -n 20 "$DLOG" | sed 's/^/# /'
            return 1
        fi
        sleep 0.2
    done
    diag "traind did not answer /v1/health within 60 s"
    return 1
}

# stop_daemon [SIGNAL] — default TERM; waits (up to 120 s) and sets DAEMON_RC.
stop_daemon() {
    local sig=${1:-TERM}
    DAEMON_RC=
    [ -n "${DAEMON_PID:-}" ] || return 0
    kill -"$sig" "$DAEMON_PID" 2>/dev/null
    local i
    for i in $(seq 1 1200); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        diag "traind did not exit within 120 s of SIG$sig; killing it"
        kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_RC=$?
    DAEMON_PID=
    return 0
}

# api METHOD PATH [BODY] [curl args...]; BODY "" = none, "@file" = from file.
# Sets STATUS and BODY. Uses $TOKEN when set.
api() {
    local method=$1 path=$2 body=${3-}
    shift 2; [ $# -gt 0 ] && shift
    local args=(-s -m 60 -o "$TDIR/last_body" -w '%{http_code}' -X "$method")
    [ -n "${TOKEN:-}" ] && args+=(-H "Authorization: Bearer $TOKEN")
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    STATUS=$(curl "${args[@]}" "$@" "$URL$path")
    [ -n "$STATUS" ] || STATUS=000
    BODY=$(tr -d '\000' <"$TDIR/last_body" 2>/dev/null)   # binary bodies: compare last_body itself
}
jb() { printf '%s' "$BODY" | jq -r "$@" 2>/dev/null; }

# expect_error STATUS CODE NAME METHOD PATH [BODY] [curl args...]
#   checks: status, JSON body with error.code == CODE and a non-empty message
#   (CODE may be "a|b" for either).
expect_error() {
    local want=$1 code=$2 name=$3; shift 3
    api "$@"
    local got_code msg
    got_code=$(jb '.error.code // empty')
    msg=$(jb '.error.message // empty')
    if [[ "$STATUS" =~ ^($want)$ ]] && [ -n "$got_code" ] && [[ "$got_code" =~ ^($code)$ ]] && [ -n "$msg" ]; then
        ok 0 "$name -> $STATUS $got_code"
    else
        ok 1 "$name"
        diag "  $1 $2: got HTTP $STATUS body: $(printf '%s' "$BODY" | head -c 300)" "  want HTTP $want code $code" | tee /dev/stderr
    fi
}

wait_for() {   # wait_for TIMEOUT_S CMD...
    local t=$1; shift
    local n=$((t * 5)) i
    for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.2; done
    return 1
}

dataset_state() { api GET "/v1/datasets/$1"; jb .state; }
wait_dataset() {   # wait_dataset NAME [TIMEOUT] -> prints final state
    local name=$1 t=${2:-120} st=
    local n=$((t * 5)) i
    for i in $(seq 1 "$n"); do
        st=$(dataset_state "$name")
        case "$st" in ready|failed) break ;; esac
        sleep 0.2
    done
    if [ "$st" != ready ]; then
        diag "dataset $name: state '$st' (waited up to ${t}s): $(curl -s -m 5 "$URL/v1/datasets/$name" | head -c 600)" >&2
        [ -n "${DLOG:-}" ] && tail -n 15 "$DLOG" | sed 's/^/# daemon: /' >&2
    fi
    printf '%s' "$st"
}

job_state() { api GET "/v1/jobs/$1"; jb .state; }
is_terminal() { case "$1" in succeeded|failed|cancelled) return 0 ;; esac; return 1; }
wait_job() {   # wait_job ID [TIMEOUT] -> prints final state
    local id=$1 t=${2:-300} st=
    local n=$((t * 5)) i
    for i in $(seq 1 "$n"); do
        st=$(job_state "$id")
        is_terminal "$st" && break
        sleep 0.2
    done
    printf '%s' "$st"
}
wait_job_state() {   # wait_job_state ID STATE TIMEOUT -> 0 when reached
    local id=$1 want=$2 t=${3:-60}
    wait_for "$t" _job_in_state "$id" "$want"
}
_job_in_state() { [ "$(job_state "$1")" = "$2" ]; }
job_step() { api GET "/v1/jobs/$1"; jb '.progress.step // 0'; }
_job_step_ge() { [ "$(job_step "$1")" -ge "$2" ] 2>/dev/null; }

# submit BODY -> sets JOB (the new job's id, empty on failure), STATUS and BODY.
# (Not for $(...): the variables would stay in the subshell.)
submit() { api POST /v1/jobs "$1"; JOB=$(jb '.id // empty'); }

# load_synth NAME [SAMPLES] [SIZE] [SEED] -> 0 when ready
load_synth() {
    local name=$1 n=${2:-$NSAMP} s=${3:-$IMG} seed=${4:-7}
    api POST /v1/datasets "{\"name\":\"$name\",\"synthetic\":{\"samples\":$n,\"image_size\":$s,\"seed\":$seed}}"
    [ "$STATUS" = 202 ] || { diag "load $name: HTTP $STATUS $BODY"; return 1; }
    [ "$(wait_dataset "$name" 180)" = ready ]
}

# Job specs used across the tests (dinov2-tiny, tiny images, few steps).
train_spec() {   # train_spec DATASET STEPS [extra json fields without braces]
    local ds=$1 steps=$2 extra=${3:-}
    printf '{"type":"train","dataset":"%s","model":{"backbone":"dinov2-tiny","heads":["hand"]},"batch_size":8,"steps":%s,"seed":1%s}' \
        "$ds" "$steps" "${extra:+,$extra}"
}

# losses JOB -> [[step, loss], ...] (one per step)
losses() { curl -s "$URL/v1/jobs/$1/metrics?name=loss" | jq -c '[.[] | [.step, .value]] | unique_by(.[0])'; }
# same_predictions RESULT_A RESULT_B — two infer results: the same indices in the same order, and
# the same joints, confidence and cls up to 1e-5 (another split over ranks takes other paths
# through the matrix products)
# need_mkframes — MKFRAMES: tests/tools/mkframes (MKFRAMES_BIN, else the test or release build), or bail
need_mkframes() {
    MKFRAMES=${MKFRAMES_BIN:-}
    local c
    for c in "$ROOT/build/test/tools/mkframes" "$ROOT/build/release/tools/mkframes"; do
        [ -z "$MKFRAMES" ] && [ -x "$c" ] && MKFRAMES=$c
    done
    [ -x "$MKFRAMES" ] || bail "mkframes not found (make test-build)"
}

same_predictions() {
    jq -en --argjson a "$1" --argjson b "$2" \
       '$a.count == $b.count and $a.count > 0 and ([$a.predictions[].index] == [$b.predictions[].index]) and
        ([range($a.count) as $i | ([$a.predictions[$i].joints, $a.predictions[$i].confidence, $a.predictions[$i].cls] | flatten) as $x
          | ([$b.predictions[$i].joints, $b.predictions[$i].confidence, $b.predictions[$i].cls] | flatten) as $y
          | ($x | length) == ($y | length) and ([range($x|length) | (($x[.] - $y[.]) | fabs) <= 1e-5 * (($x[.] | fabs) + 1)] | all)] | all)'
}

# killed_resumes JOB REF STEPS DEVICES_JQ [start_daemon args...] — once JOB has a checkpoint,
# SIGKILL the daemon (its workers die with it) and start it again with the args: JOB resumes
# (its record says so, its devices pass DEVICES_JQ) and logs exactly REF's losses over STEPS steps.
_has_ckpt() { api GET "/v1/checkpoints?job=$1"; [ "$(jb '.checkpoints | length')" -ge 1 ]; }
killed_resumes() {
    local job=$1 ref=$2 steps=$3 devs=$4 a b; shift 4
    wait_for 300 _has_ckpt "$job"
    ok $? "the run to be killed recorded a checkpoint"
    stop_daemon KILL
    check "its workers died with the daemon" wait_for 30 bash -c "! pgrep -f '[t]raind worker --job $STATE' >/dev/null"
    start_daemon "$@" || bail "daemon did not restart"
    is "$(wait_job "$job" 600)" succeeded "after the restart the job resumed and finished"
    api GET "/v1/jobs/$job"
    check "its record says it resumed, on the same devices ($devs)" jq -e "(.resumed_from | type == \"string\") and ($devs)" <<<"$BODY"
    a=$(losses "$job"); b=$(losses "$ref")
    check "the resumed run logged exactly the uninterrupted run's losses ($(jq length <<<"$a") steps)" \
        test "$(jq length <<<"$a")" = "$steps" -a "$a" = "$b"
}

sql() { sqlite3 -readonly -batch -noheader -cmd ".timeout 5000" "$STATE/traind.db" "$@"; }

# Runs "$@" (a trainctl invocation) against the daemon; never hangs a test
# (exit 124 after 10 minutes).
tctl() { timeout 600 "$TRAINCTL_BIN" --url "$URL" ${TOKEN:+--token "$TOKEN"} "$@"; }

# Fails the whole script early when the daemon is gone.
daemon_alive() { [ -n "${DAEMON_PID:-}" ] && kill -0 "$DAEMON_PID" 2>/dev/null && curl -sf -m 5 "$URL/v1/health" >/dev/null; }
