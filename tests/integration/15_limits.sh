#!/usr/bin/env bash
# tests/integration/15_limits.sh — the HTTP connection limits of SPEC §3 /
# issue 3 (--max-connections, --idle-timeout-s): an idle connection is closed
# after the timeout; connections beyond the limit are refused while the limit
# is taken, and the daemon serves again as soon as slots free up; bad values
# of both flags are refused at start with a message naming the flag.
. "$(dirname "$0")/lib.sh"

for bad in "--max-connections 0" "--max-connections 2.5" "--max-connections lots" \
           "--idle-timeout-s 0" "--idle-timeout-s -3" "--idle-timeout-s 1e9"; do
    refuses_flag "$bad"
done

start_daemon --max-connections 3 --idle-timeout-s 2 || bail "daemon did not start"
api GET /v1/health
is "$STATUS" 200 "health with the limits set"

# An idle connection (nothing sent) is closed by the server after ~2 s.
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
t0=$(date +%s.%N)
timeout 15 cat <&3 >/dev/null
t1=$(date +%s.%N)
exec 3<&-
el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
check "an idle connection is closed after the timeout (${el} s; 2 s set)" \
    awk -v e="$el" 'BEGIN{exit !(e >= 1.5 && e < 10)}'

# Hold all three slots with idle connections: a fourth client is refused.
exec 3<>"/dev/tcp/127.0.0.1/$PORT" 4<>"/dev/tcp/127.0.0.1/$PORT" 5<>"/dev/tcp/127.0.0.1/$PORT"
sleep 0.2
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL/v1/health")
[ "$code" != 200 ]; ok $? "a connection beyond --max-connections is refused (got '$code')"
exec 3<&- 4<&- 5<&-
# the slots free up (closed by us now, or by the idle timeout): served again
served=1
for _ in $(seq 1 50); do
    [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL/v1/health")" = 200 ] && { served=0; break; }
    sleep 0.1
done
ok $served "served again once the slots are free"

# Idle holders that never close are dropped by the timeout, not kept forever.
exec 3<>"/dev/tcp/127.0.0.1/$PORT" 4<>"/dev/tcp/127.0.0.1/$PORT" 5<>"/dev/tcp/127.0.0.1/$PORT"
sleep 4.5
api GET /v1/status
is "$STATUS" 200 "three idle connections held open: after the timeout a new client is served"
exec 3<&- 4<&- 5<&-

# The timeout counts inactivity, not age: a slow client whose body takes
# longer than the timeout, in pieces each sent within it, gets its answer.
code=$(python3 - "$PORT" <<'EOF'
import socket, sys, time
body = b'{"name":"slow","synthetic":{"samples":8,"image_size":28,"seed":1}}'
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (int(sys.argv[1]), len(body)) + body[:20])
time.sleep(1.2)
s.sendall(body[20:40])
time.sleep(1.2)   # 2.4 s in all: longer than the timeout, but never idle for 2 s
s.sendall(body[40:])
resp = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    resp += chunk
print(resp.split(b" ")[1].decode() if resp.startswith(b"HTTP/") else "none")
EOF
)
is "$code" 202 "a body sent in pieces over 2.4 s (timeout 2 s, never idle that long) is answered"

api GET /v1/health
is "$STATUS" 200 "still serving"
stop_daemon
is "$DAEMON_RC" 0 "clean exit"
done_testing
