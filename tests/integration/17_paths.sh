#!/usr/bin/env bash
# tests/integration/17_paths.sh — nothing reaches past traind's boundaries
# (files and processes):
#   - model.weights outside the roots is 403 with one message whether the path
#     exists or not; inside a model root it is accepted and recorded resolved;
#     checked again when the job starts (a directory swapped for a link fails);
#   - shards that are symbolic links (to a token, /etc/passwd, a crafted file)
#     or a FIFO are refused without showing a byte of them and without
#     blocking (the daemon keeps serving); a real shard with garbage is named,
#     not quoted;
#   - a recorded dataset whose directory became a link fails to reload;
#   - links planted in the state dir (a job's results, a checkpoint's file or
#     directory) serve nothing, and deleting the checkpoint deletes nothing
#     outside;
#   - with umask 027, traind.db and checkpoint files are 0640; an existing
#     0644 database is narrowed, a state dir others can read is warned about;
#     a token file others can read is refused;
#   - a worker sees neither an fd the daemon inherited nor its secrets
#     (MY_API_KEY, NOTIFY_SOCKET).
. "$(dirname "$0")/lib.sh"

ROOT="$TDIR/root"           # --dataset-root
MROOT="$TDIR/models"        # --model-root
OUT="$TDIR/outside"         # never to be reached
mkdir -p "$ROOT" "$MROOT" "$OUT"
printf 's3cretTOKEN-%s-%s\n' "$RANDOM" "$RANDOM" >"$OUT/token"
SECRET=$(head -n1 "$OUT/token")
# a crafted "safetensors" file: a small header length, then JSON-ish garbage holding a secret
python3 - "$OUT/crafted.safetensors" <<'EOF'
import struct, sys
hdr = b'{"SECRET-CRAFTED-VALUE" oops'
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr)
EOF
printf 'fd-secret-%s\n' "$RANDOM" >"$OUT/fd-secret"
cp -r "$LIB_DIR/../fixtures/hf_tiny" "$MROOT/tiny"
cp -r "$MROOT/tiny" "$MROOT/tiny2"
ln -s "$MROOT/tiny2" "$MROOT/alias"                 # a link that stays inside the model root
cp -r "$MROOT/tiny" "$OUT/weights"                  # a complete weights dir outside every root
ln -s "$OUT/weights" "$MROOT/escape"                # a link out of the model root
"$TRAIND_BIN" synth --out "$ROOT/good" --samples 32 --image-size "$IMG" --seed 5 >/dev/null 2>&1 ||
    bail "traind synth failed"

# The daemon inherits fd 7 (a secret file), MY_API_KEY and a NOTIFY_SOCKET; files under umask 027.
umask 027
exec 7<"$OUT/fd-secret"
MY_API_KEY=key-$RANDOM NOTIFY_SOCKET="$TDIR/no-such-notify.sock" \
    start_daemon --dataset-root "$ROOT" --model-root "$MROOT" || bail "daemon did not start"
exec 7<&-
load_synth syn 64 "$IMG" 3 || bail "synthetic dataset did not load"

eval_weights() {   # eval_weights PATH -> submit an eval job from model.weights PATH
    submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"batch_size\":16,\"model\":{\"heads\":[\"hand\"],\"weights\":\"$1\"}}"
}
# the message with the path taken out (must be identical for every refused path)
msg_of() { jb .error.message | sed "s|$1|PATH|g"; }
lacks() { ! grep -qE -- "$1" <<<"$2"; }             # lacks REGEX TEXT
lacks_file() { ! grep -qE -- "$1" "$2"; }           # lacks_file REGEX FILE

# ---- model.weights: confined, one answer -----------------------------------------------
eval_weights /etc;                         is "$STATUS" 403 "weights /etc (exists, outside): 403"
m_etc=$(msg_of /etc)
eval_weights /nonexistent-traind-xyz;      is "$STATUS" 403 "weights /nonexistent (missing, outside): 403"
m_none=$(msg_of /nonexistent-traind-xyz)
eval_weights "$OUT/weights";               is "$STATUS" 403 "weights: a complete weights dir outside the roots: 403"
m_out=$(msg_of "$OUT/weights")
eval_weights "$MROOT/escape";              is "$STATUS" 403 "weights: a link out of the model root: 403"
m_esc=$(msg_of "$MROOT/escape")
eval_weights "$MROOT/missing";             is "$STATUS" 403 "weights: missing inside the model root: 403"
m_miss=$(msg_of "$MROOT/missing")
eval_weights "$MROOT/tiny/../../outside/weights"; is "$STATUS" 403 "weights: a '..' escape: 403"
m_dd=$(msg_of "$MROOT/tiny/../../outside/weights")
diag "message: $m_etc"
check "one message for every refused weights path, existing or not" \
    test "$m_etc" = "$m_none" -a "$m_etc" = "$m_out" -a "$m_etc" = "$m_esc" -a "$m_etc" = "$m_miss" -a "$m_etc" = "$m_dd"
check "the message says what is allowed" grep -q "model or dataset root" <<<"$m_etc"
check "nothing of the weights' config.json shows (num_hidden_layers)" lacks num_hidden_layers "$m_etc"
expect_error 422 unprocessable "weights: neither a checkpoint id nor an absolute path" POST /v1/jobs \
    "{\"type\":\"eval\",\"dataset\":\"syn\",\"model\":{\"heads\":[\"hand\"],\"weights\":\"etc/x\"}}"
eval_weights "$MROOT/alias"
is "$STATUS" 201 "weights through a link that stays inside the model root: accepted"
E_ALIAS=$JOB
is "$(jb .spec.model.weights)" "$(realpath "$MROOT/tiny2")" "the job records the resolved weights path"
wait_job "$E_ALIAS" 300 >/dev/null

# ---- shards: links and FIFOs refused, nothing quoted, nothing blocks ---------------------
shard_case() {   # shard_case NAME TARGET -> a dataset dir under the root whose only shard links to TARGET
    mkdir -p "$ROOT/$1"
    ln -s "$2" "$ROOT/$1/x.safetensors"
}
shard_case tok "$OUT/token"
shard_case pw /etc/passwd
shard_case craft "$OUT/crafted.safetensors"
for d in tok pw craft; do
    api POST /v1/datasets "{\"name\":\"$d\",\"path\":\"$ROOT/$d\"}"
    is "$STATUS" 422 "a shard that is a link ($d): refused"
    m=$(jb .error.message)
    check "... saying it is a link ($(head -c 150 <<<"$m"))" grep -q "symbolic link" <<<"$m"
    check "... and quoting nothing of the target" lacks "s3cretTOKEN|root:x:|SECRET|header length [0-9]" "$m"
done
mkdir -p "$ROOT/garbage"
cp "$OUT/crafted.safetensors" "$ROOT/garbage/x.safetensors"   # a real file inside the root
api POST /v1/datasets "{\"name\":\"garbage\",\"path\":\"$ROOT/garbage\"}"
m=$(jb .error.message)
is "$STATUS" 422 "a real shard with a garbage header: 422"
check "... named, at a byte offset ($(head -c 150 <<<"$m"))" grep -q "x.safetensors: header is not valid JSON (at byte" <<<"$m"
check "... not quoted" lacks SECRET "$m"
mkdir -p "$ROOT/fifo"
mkfifo "$ROOT/fifo/a.safetensors"
code=$(curl -s -m 60 -o "$TDIR/fifo.json" -w '%{http_code}' -H 'Content-Type: application/json' \
       -d "{\"name\":\"fifo\",\"path\":\"$ROOT/fifo\"}" "$URL/v1/datasets")
is "$code" 422 "a FIFO shard: refused at once (not blocking the request)"
check "... as not a regular file" grep -q "not a regular file" "$TDIR/fifo.json"
api GET /v1/health
is "$STATUS" 200 "the daemon keeps serving after the FIFO"

# ---- a train job: checkpoints for the state-dir cases, file modes under umask 027 -----------
submit "$(train_spec syn 6 '"checkpoint_every":3')"; T1=$JOB
is "$(wait_job "$T1" 300)" succeeded "a train job with checkpoints"
api GET "/v1/checkpoints?job=$T1"
CK=$(jb '.checkpoints|sort_by(.step)|last|.id'); CKP=$(jb '.checkpoints|sort_by(.step)|last|.path')
CK0=$(jb '.checkpoints|sort_by(.step)|first|.id')
[ -n "$CK" ] && [ -d "$CKP" ] || bail "no checkpoint recorded ($BODY)"
is "$(stat -c %a "$STATE/traind.db")" 640 "umask 027: traind.db is 0640"
is "$(stat -c %a "$CKP/model.safetensors")" 640 "umask 027: model.safetensors is 0640"
is "$(stat -c %a "$CKP/config.json")" 640 "umask 027: config.json is 0640"
check "no checkpoint file is group-writable or other-readable" \
    test -z "$(find "$STATE/checkpoints" -type f \( -perm -g+w -o -perm -o+r \))"

# ---- a worker's fds and environment -------------------------------------------------------
submit "$(train_spec syn 100000)"; T2=$JOB
wait_job_state "$T2" running 120 || diag "long train job not running"
wpid=
for _ in $(seq 1 300); do
    api GET /v1/status
    wpid=$(jb '.running[0].pid // empty')
    [ -n "$wpid" ] && [ "$wpid" != 0 ] && [ -r "/proc/$wpid/environ" ] && break
    sleep 0.2
done
if [ -n "$wpid" ] && [ -r "/proc/$wpid/environ" ]; then
    env_w=$(tr '\0' '\n' <"/proc/$wpid/environ")
    fds_w=$(for f in /proc/"$wpid"/fd/*; do readlink "$f"; done 2>/dev/null)
    fds_d=$(for f in /proc/"$DAEMON_PID"/fd/*; do readlink "$f"; done 2>/dev/null)
    check "the daemon itself holds the inherited fd (the test can fail)" grep -q fd-secret <<<"$fds_d"
    check "the worker does not hold it" lacks fd-secret "$fds_w"
    check "the worker has no MY_API_KEY" lacks "^MY_API_KEY=" "$env_w"
    check "the worker has no NOTIFY_SOCKET" lacks "^NOTIFY_SOCKET=" "$env_w"
    check "the worker has PATH" grep -q "^PATH=" <<<"$env_w"
    env_d=$(tr '\0' '\n' <"/proc/$DAEMON_PID/environ")
    check "the daemon itself has MY_API_KEY and NOTIFY_SOCKET (the test can fail)" \
        grep -qE "^(MY_API_KEY|NOTIFY_SOCKET)=" <<<"$env_d"
else
    ok 1 "found the running worker's pid ($wpid)"
fi

# ---- model.weights checked again when the job starts -------------------------------------
eval_weights "$MROOT/tiny"; E_LATE=$JOB
is "$STATUS" 201 "weights inside the model root: queued behind the long train job"
is "$(job_state "$E_LATE")" queued "... still queued"
mv "$MROOT/tiny" "$MROOT/tiny.real"
ln -s "$OUT/weights" "$MROOT/tiny"                  # swapped for a link out before it starts
api POST "/v1/jobs/$T2/cancel"
is "$(wait_job "$T2" 300)" cancelled "the long train job cancelled"
is "$(wait_job "$E_LATE" 300)" failed "the queued job whose weights became a link fails at its start"
api GET "/v1/jobs/$E_LATE"
check "... saying so ($(jb .error | head -c 160))" grep -q "symbolic link" <<<"$(jb .error)"
rm "$MROOT/tiny"; mv "$MROOT/tiny.real" "$MROOT/tiny"

# ---- links planted in the state dir ---------------------------------------------------------
rm -rf "$STATE/work/results/$T1"
ln -s "$OUT" "$STATE/work/results/$T1"              # results/<job> -> outside
expect_error 404 not_found "a result file through a planted directory link: 404" GET "/v1/jobs/$T1/result/files/token"
check "... nothing of the file served" lacks_file s3cretTOKEN "$TDIR/last_body"
rm "$STATE/work/results/$T1"; mkdir "$STATE/work/results/$T1"
ln -s "$OUT/token" "$STATE/work/results/$T1/features.safetensors"   # a file link
expect_error 404 not_found "a result file that is a planted link: 404" GET "/v1/jobs/$T1/result/files/features.safetensors"
check "... nothing of it served" lacks_file s3cretTOKEN "$TDIR/last_body"

mv "$CKP/config.json" "$CKP/config.json.real"
ln -s "$OUT/token" "$CKP/config.json"
expect_error 404 not_found "a checkpoint file that is a planted link: 404" GET "/v1/checkpoints/$CK/files/config.json"
check "... nothing of it served" lacks_file s3cretTOKEN "$TDIR/last_body"
rm "$CKP/config.json"; mv "$CKP/config.json.real" "$CKP/config.json"
api GET "/v1/checkpoints/$CK/files/config.json"
is "$STATUS" 200 "the real file is served again"
# the job's checkpoint directory swapped for a link to a copy outside
JOBDIR=$(dirname "$CKP")
mv "$JOBDIR" "$OUT/ckjob"
ln -s "$OUT/ckjob" "$JOBDIR"
expect_error 404 not_found "a file of a checkpoint whose job directory is a planted link: 404" \
    GET "/v1/checkpoints/$CK/files/model.safetensors"
api DELETE "/v1/checkpoints/$CK"
is "$STATUS" 200 "deleting that checkpoint deletes its record"
check "... and nothing outside (the link's target is intact)" \
    test -f "$OUT/ckjob/$(basename "$CKP")/model.safetensors"
check "the planted link itself was not followed nor removed as a directory" test -L "$JOBDIR"
rm "$JOBDIR"; mv "$OUT/ckjob" "$JOBDIR"

# ---- restart: recorded datasets checked against the roots again ----------------------------
"$TRAIND_BIN" synth --out "$ROOT/swapin" --samples 16 --image-size "$IMG" --seed 6 >/dev/null 2>&1
"$TRAIND_BIN" synth --out "$ROOT/swapout" --samples 16 --image-size "$IMG" --seed 7 >/dev/null 2>&1
for d in swapin swapout good; do
    api POST /v1/datasets "{\"name\":\"$d\",\"path\":\"$ROOT/$d\"}"
    is "$(wait_dataset "$d" 120)" ready "dataset $d loaded"
done
stop_daemon TERM
mv "$ROOT/swapin" "$ROOT/swapin.real"; ln -s "$ROOT/swapin.real" "$ROOT/swapin"     # a link inside the root
mv "$ROOT/swapout" "$OUT/swapout"; ln -s "$OUT/swapout" "$ROOT/swapout"             # a link out
chmod 644 "$STATE/traind.db"
chmod 755 "$STATE"
start_daemon --dataset-root "$ROOT" --model-root "$MROOT" || bail "daemon did not restart"
for d in swapin swapout; do
    is "$(wait_dataset "$d" 120)" failed "dataset $d, its directory swapped for a link, fails to reload"
    api GET "/v1/datasets/$d"
    check "... saying so ($(jb .error | head -c 160))" grep -q "symbolic link" <<<"$(jb .error)"
    expect_error 422 unprocessable "a job on $d is refused" POST /v1/jobs "$(train_spec "$d" 1)"
done
is "$(wait_dataset good 120)" ready "an untouched dataset reloads"
is "$(stat -c %a "$STATE/traind.db")" 640 "an existing 0644 traind.db is narrowed to 0640"
check "... with a warning" grep -q "traind.db was accessible by others" "$DLOG"
check "a state dir others can read is warned about" grep -q "state dir .* is accessible by others" "$DLOG"
stop_daemon TERM
umask 022

# ---- a token file others can read ---------------------------------------------------------
printf 'tok-%s%s\n' "$RANDOM" "$RANDOM" >"$TDIR/token"
chmod 644 "$TDIR/token"
out=$(timeout 60 "$TRAIND_BIN" --state-dir "$TDIR/state-tok" --backend cpu --listen "127.0.0.1:$(free_port)" \
      --token-file "$TDIR/token" 2>&1)
rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; ok $? "a 0644 token file: traind refuses to start (rc $rc)"
check "... saying why ($(tail -n1 <<<"$out" | head -c 160))" grep -q "readable by others (mode 0644)" <<<"$out"
check "... and what to do" grep -q "chmod 600" <<<"$out"
done_testing
