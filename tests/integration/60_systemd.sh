#!/usr/bin/env bash
# tests/integration/60_systemd.sh — systemd integration (SPEC §7):
#  - `make install` into a DESTDIR tree substitutes @PREFIX@, installs the
#    binaries, the unit and the example config; the installed unit passes
#    `systemd-analyze verify` with no warning; the installed traind starts
#    with the example config;
#  - with NOTIFY_SOCKET pointing at a datagram socket this test listens on and
#    WATCHDOG_USEC set, traind sends READY=1 (once HTTP answers), STATUS=
#    lines while training, WATCHDOG=1 pings, and on SIGTERM STOPPING=1 (and
#    EXTEND_TIMEOUT_USEC while the running train job checkpoints); the
#    stopped job resumes from that checkpoint after a restart and finishes.
. "$(dirname "$0")/lib.sh"

# ---- make install + systemd-analyze verify --------------------------------------------
R=$(cd "$(dirname "$TRAIND_BIN")" && pwd)   # build/test under make test: installs what was tested
DEST="$TDIR/dest"
PFX="$TDIR/prefix"               # PREFIX; a link to $DEST$PFX so ExecStart resolves
mkdir -p "$DEST$PFX"
ln -s "$DEST$PFX" "$PFX"
# -o: install the binaries under test as they are (never rebuild them here)
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$ROOT" install R="$R" NVCC= \
    -o "$R/traind" -o "$R/trainctl" DESTDIR="$DEST" PREFIX="$PFX" >"$TDIR/install.log" 2>&1
ok $? "make install DESTDIR=... PREFIX=... (R=$R)" || sed 's/^/# /' "$TDIR/install.log"
UNIT="$DEST$PFX/lib/systemd/system/traind.service"
check "installed traind and trainctl" test -x "$DEST$PFX/bin/traind" -a -x "$DEST$PFX/bin/trainctl"
check "installed the unit" test -s "$UNIT"
check "installed the example config" test -s "$DEST/etc/traind/traind.conf.example"
check "@PREFIX@ substituted" bash -c "! grep -q '@PREFIX@' '$UNIT'"
check "ExecStart is the installed traind with the config" grep -qx "ExecStart=$PFX/bin/traind --config /etc/traind/traind.conf" "$UNIT"
for kv in Type=notify NotifyAccess=main WatchdogSec=30 Restart=on-failure StateDirectory=traind \
          User=traind "SupplementaryGroups=video render" ProtectSystem=strict DevicePolicy=closed \
          KillMode=mixed NoNewPrivileges=yes "DeviceAllow=/dev/nvidiactl rw"; do
    check "unit sets $kv" grep -qx "$kv" "$UNIT"
done
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify "$UNIT" >"$TDIR/verify.out" 2>&1
    ok $? "systemd-analyze verify passes"
    # verify exits 0 on ignored settings; an ignored line is a bug in the unit
    check "systemd-analyze verify prints no warning" test ! -s "$TDIR/verify.out" || sed 's/^/# /' "$TDIR/verify.out"
else
    skip "systemd-analyze not installed"
    skip "systemd-analyze not installed"
fi
# the installed binary runs with the example config (every key of it parses)
mkdir -p "$TDIR/dsroot"
sed "s,^dataset-root = .*,dataset-root = $TDIR/dsroot," "$DEST/etc/traind/traind.conf.example" >"$TDIR/traind.conf"
p=$(free_port)
"$DEST$PFX/bin/traind" --config "$TDIR/traind.conf" --state-dir "$TDIR/state-inst" --backend cpu \
    --listen "127.0.0.1:$p" >"$TDIR/daemon-inst.log" 2>&1 &
ipid=$!
_daemons+=("$ipid")
wait_for 60 curl -sf -m 2 -o /dev/null "http://127.0.0.1:$p/v1/health"
ok $? "installed traind serves with the example config"
kill -TERM "$ipid"; wait "$ipid"
is "$?" 0 "and stops cleanly"

# ---- sd_notify: READY, STATUS, WATCHDOG, STOPPING ------------------------------------------
SOCK="$TDIR/notify.sock"
cat >"$TDIR/notify_listen.py" <<'EOF'
import os, socket, sys, time
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        msg = s.recv(65536).decode(errors="replace")
        for line in msg.split("\n"):
            if line:
                f.write("%.3f %s\n" % (time.time(), line))
EOF
python3 "$TDIR/notify_listen.py" "$SOCK" "$TDIR/notify.log" &
_bg_pids+=($!)
wait_for 10 test -S "$SOCK"
ok $? "test notify socket listening"
NLOG="$TDIR/notify.log"
touch "$NLOG"

NOTIFY_SOCKET="$SOCK" WATCHDOG_USEC=1000000 start_daemon || bail "daemon did not start"
wait_for 30 grep -q ' READY=1$' "$NLOG"
ok $? "READY=1 received"
check "HTTP answers once READY was sent" curl -sf -m 5 "$URL/v1/health"
load_synth syn "$NSAMP" "$IMG" 51
ok $? "dataset ready"
n0=$(grep -c ' WATCHDOG=1$' "$NLOG")
sleep 3
n1=$(grep -c ' WATCHDOG=1$' "$NLOG")
check "WATCHDOG=1 pings at half of WATCHDOG_USEC ($((n1 - n0)) in 3 s)" test $((n1 - n0)) -ge 3

RSTEPS=${TEST_RESUME_STEPS:-400}
submit "$(train_spec syn "$RSTEPS" '"checkpoint_every":1000000')"; tid=$JOB
wait_job_state "$tid" running 60 && wait_for 60 _job_step_ge "$tid" 2
ok $? "train job running"
wait_for 20 grep -qiE ' STATUS=.*(train|step)' "$NLOG"
ok $? "STATUS= line with training progress"
check "STATUS lines are sent" grep -q ' STATUS=' "$NLOG"
dbg='{"type":"debug","dataset":"syn","batches":1,"batch_size":4,"model":{"backbone":"dinov2-tiny","heads":["hand"]}}'
submit "$dbg"; qid=$JOB
is "$(job_state "$qid")" queued "a second job waits in the queue"
api GET "/v1/jobs/$tid"
step=$(jb '.progress.step // 0')
wpid=$(jb '.worker_pid // empty')
stop_daemon TERM
is "$DAEMON_RC" 0 "SIGTERM during training: traind exits 0"
check "STOPPING=1 received" grep -q ' STOPPING=1$' "$NLOG"
check "EXTEND_TIMEOUT_USEC sent while the train job checkpoints" grep -q ' EXTEND_TIMEOUT_USEC=' "$NLOG"
check "READY came before STOPPING" \
    test "$(grep -n ' READY=1$' "$NLOG" | head -n1 | cut -d: -f1)" -lt "$(grep -n ' STOPPING=1$' "$NLOG" | head -n1 | cut -d: -f1)"
if [ -n "$wpid" ]; then check "no worker left behind" bash -c "! kill -0 $wpid 2>/dev/null"; fi
ck_step=$(sql "SELECT max(step) FROM checkpoints WHERE job='$tid';")
check "the stop checkpointed the running train job (step ${ck_step:-none} >= $step)" test "${ck_step:-0}" -ge "$step"
check "and did not finish it" test "${ck_step:-0}" -lt "$RSTEPS"

STATE=$STATE PORT=$PORT start_daemon || bail "daemon did not restart"
is "$(wait_job "$tid" 900)" succeeded "after the restart the job resumed and finished"
api GET "/v1/jobs/$tid"
check "resumed from the stop's checkpoint" jq -e '.resumed_from|type=="string"' <<<"$BODY"
is "$(wait_job "$qid" 300)" succeeded "the job that was queued at the stop ran after the restart"
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0"
done_testing
