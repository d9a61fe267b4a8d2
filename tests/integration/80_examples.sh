#!/usr/bin/env bash
# tests/integration/80_examples.sh — runs the curl walk-through
# (clients/examples.sh, shown in the README) against a real daemon, with and
# without a token, so the documented commands stay true.
. "$(dirname "$0")/lib.sh"

start_daemon || bail "daemon did not start"
TRAIND_URL=$URL timeout 600 "$ROOT/clients/examples.sh" >"$TDIR/ex.out" 2>&1
ok $? "clients/examples.sh runs to the end" || tail -n 30 "$TDIR/ex.out" | sed 's/^/# /'
check "it printed the eval metrics" grep -q 'mpjpe' "$TDIR/ex.out"
check "it showed a JSON error naming the unknown field" grep -q 'stpes' "$TDIR/ex.out"
check "it evicted the dataset (200 or 204)" grep -qE '^20[04]$' "$TDIR/ex.out"
check "daemon still serving" daemon_alive
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0"

printf 'ex-token-%s\n' "$RANDOM" >"$TDIR/token"
chmod 600 "$TDIR/token"   # traind refuses a token file others can read
STATE="$TDIR/state2" PORT=$(free_port)
start_daemon --token-file "$TDIR/token" || bail "daemon with token did not start"
TRAIND_URL=$URL TRAIND_TOKEN=$(head -n1 "$TDIR/token") EXAMPLE_DATASET=tok timeout 600 "$ROOT/clients/examples.sh" >"$TDIR/ex2.out" 2>&1
ok $? "clients/examples.sh with TRAIND_TOKEN" || tail -n 30 "$TDIR/ex2.out" | sed 's/^/# /'
stop_daemon TERM
done_testing
