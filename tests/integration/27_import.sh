#!/usr/bin/env bash
# tests/integration/27_import.sh — importing JPEG/PNG frames through the API
# (POST /v1/datasets {"import":…}): a good import becomes a ready dataset
# with its import record; progress (phase "decoding", fraction, images/s)
# while it runs; the same manifest under another name and after a restart
# (manifest gone) comes from the cache; DELETE cancels an import in the
# middle and leaves nothing; every kind of bad input fails the dataset with
# a message naming the manifest line and/or the file (and leaves nothing
# behind) or, with on_error "skip", is skipped and counted; request errors
# (403 outside the roots the same whether or not the file exists, 422, 400);
# `trainctl datasets import --wait`; `traind import` offline; and a train
# job on an imported dataset learns (val MPJPE below half the mean
# predictor's). Frames come from tests/tools/mkframes (the synthetic
# renderer's hands at W x H with a known K).
. "$(dirname "$0")/lib.sh"

need_mkframes

R="$TDIR/root"        # the dataset root
OUTSIDE="$TDIR/outside"
mkdir -p "$R" "$OUTSIDE"
"$MKFRAMES" --out "$R/good" --frames 40 --width 96 --height 72 --quality 90 --threads 2 || bail "mkframes"
"$MKFRAMES" --out "$R/png" --frames 8 --width 96 --height 72 --format png --threads 2 || bail "mkframes png"
"$MKFRAMES" --out "$R/tiny" --frames 1 --width 10 --height 10 --threads 1 || bail "mkframes tiny"
"$MKFRAMES" --out "$OUTSIDE/fr" --frames 1 --width 96 --height 72 --threads 1 || bail "mkframes outside"
GOOD="$R/good/manifest.jsonl"
LINE=$(head -n 1 "$GOOD")                 # a good manifest line (image img/000000.jpg)

start_daemon --dataset-root "$R" || bail "daemon did not start"
imp() {   # imp NAME MANIFEST [extra import fields] -> POST (image_size $IMG unless given)
    local size="\"image_size\":$IMG,"
    [[ ${3:-} == *image_size* ]] && size=""
    api POST /v1/datasets "{\"name\":\"$1\",\"import\":{$size\"manifest\":\"$2\"${3:+,$3}}}"
}
imports_left() { ls -A "$STATE/imports" 2>/dev/null | grep -c . ; }

# ---- a good import -----------------------------------------------------------------------
imp good "$GOOD" '"resize":"crop"'
is "$STATUS" 202 "import requested (202)"
check "the record names the resolved manifest and the defaults" \
    jq -e ".source.import.manifest==\"$GOOD\" and .source.import.resize==\"crop\" and .source.import.on_error==\"fail\"" <<<"$BODY"
is "$(wait_dataset good 120)" ready "the imported dataset is ready"
api GET /v1/datasets/good
check "40 samples of ${IMG}x$IMG with intrinsics" \
    jq -e ".samples==40 and .image_size==[$IMG,$IMG] and (.fields|index(\"camera_intrinsics\")!=null)" <<<"$BODY"
check "the import record: 40 of 40 frames, none skipped, a cache key, the time before decoding" \
    jq -e '.import.imported==40 and .import.frames==40 and .import.skipped==0 and (.import.key|length)==64 and .import.cache_hit==false and .import.prepare_s>0 and .import.prepare_s<.import.decode_s+60' <<<"$BODY"
check "decoded on the CPU (the cpu backend has no GPU decoder): decoder \"cpu\", gpu_frames 0" \
    jq -e '.import.decoder=="cpu" and .import.gpu_frames==0' <<<"$BODY"
KEY=$(jb .import.key)
check "the cache is <state>/imports/<key>, nothing else there" test "$(ls -A "$STATE/imports")" = "$KEY"
grep -q "dataset good: its 40 frames went to the device as they were decoded" "$DLOG"
ok $? "on_error fail, one device: the frames went to the device as the shards were written (no second read)"

imp png "$R/png/manifest.jsonl"
is "$(wait_dataset png 120)" ready "a PNG manifest imports too (stretch)"
api GET /v1/datasets/png
CACHES=$(printf '%s\n%s\n' "$KEY" "$(jb .import.key)" | sort | tr '\n' ' ')
caches() { ls -A "$STATE/imports" | sort | tr '\n' ' '; }

# ---- the same manifest: the cache ------------------------------------------------------------
imp good2 "$GOOD" '"resize":"crop"'
is "$(wait_dataset good2 60)" ready "the same manifest under another name"
api GET /v1/datasets/good2
check "it came from the cache (same key, cache_hit)" jq -e ".import.cache_hit==true and .import.key==\"$KEY\" and .samples==40" <<<"$BODY"
grep -q "dataset good2: import cache hit" "$DLOG"
ok $? "the daemon logged the cache hit (no decoding)"

# ---- restart: the records come back from the cache, without the manifest -------------------
stop_daemon
is "$DAEMON_RC" 0 "daemon stopped"
mv "$GOOD" "$GOOD.away"
# --import-decoder: a bad value stops the start with a clear message; a GPU
# decoder on the cpu backend is said in the log and the CPU decodes
"$TRAIND_BIN" --state-dir "$TDIR/bad-state" --backend cpu --import-decoder nvjpeg >"$TDIR/bad-flag.log" 2>&1
rc=$?
check "--import-decoder nvjpeg: refused (exit $rc): $(head -c 200 "$TDIR/bad-flag.log")" \
    grep -q "import-decoder: 'nvjpeg' is not auto, cpu, hardware or cuda" "$TDIR/bad-flag.log"
start_daemon --dataset-root "$R" --import-decoder hardware || bail "daemon did not restart"
is "$(wait_dataset good 120)" ready "after a restart the import is loaded again with its manifest gone"
is "$(wait_dataset good2 120)" ready "and the other name too"
api GET /v1/datasets/good
check "same samples and key" jq -e ".samples==40 and .import.key==\"$KEY\"" <<<"$BODY"
mv "$GOOD.away" "$GOOD"

# ---- progress, and DELETE in the middle of an import -------------------------------------------
BIG="$R/good/big.jsonl"
for i in $(seq 1 100); do cat "$GOOD"; done >"$BIG"      # 4000 frames
imp big "$BIG" '"image_size":112'
is "$STATUS" 202 "a large import requested"
wait_for 60 sh -c "curl -s '$URL/v1/datasets/big' | jq -e '.phase==\"decoding\" and .progress>0 and .progress<1 and .images_per_s>0 and .decoding.frames==4000' >/dev/null"
ok $? "while it runs: phase decoding, progress in (0,1), images/s, frames"
grep -q "import-decoder hardware needs the cuda backend; decoding on the CPU only" "$DLOG"
ok $? "--import-decoder hardware on the cpu backend: said in the log when decoding starts, the CPU decodes"
check "the daemon answers meanwhile" curl -sf -m 5 "$URL/v1/status"
t0=$(date +%s.%N)
api DELETE /v1/datasets/big
t1=$(date +%s.%N)
is "$STATUS" 200 "DELETE in the middle of the import"
el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b - a}')
check "it returned promptly (${el} s)" awk -v e="$el" 'BEGIN{exit !(e < 20)}'
expect_error 404 not_found "the dataset is gone" GET /v1/datasets/big
check "no temporary or partial import left ($(caches))" test "$(caches)" = "$CACHES"
grep -q "dataset big: load cancelled" "$DLOG"
ok $? "the daemon logged the cancel"

# ---- bad input: each fails its dataset naming the line and/or the file -----------------------------
B="$R/bad"
mkdir -p "$B"
cp "$R/good/img/000000.jpg" "$B/ok.jpg"
sz=$(stat -c %s "$B/ok.jpg")
head -c $((sz / 2)) "$B/ok.jpg" >"$B/trunc.jpg"
cp "$B/ok.jpg" "$B/corrupt.jpg"
printf '\377\377\377\377\377\377\377\377\377\377\377\377\377\377\377\377' |
    dd of="$B/corrupt.jpg" bs=1 seek=$((sz / 2)) conv=notrunc status=none
psz=$(stat -c %s "$R/png/img/000000.png")
head -c $((psz / 2)) "$R/png/img/000000.png" >"$B/trunc.png"
cp "$R/tiny/img/000000.jpg" "$B/tiny.jpg"
echo "not an image" >"$B/text.jpg"
ln -sf "$OUTSIDE/fr/img/000000.jpg" "$B/link.jpg"
with_image() { jq -c --arg i "$1" '.image=$i' <<<"$LINE"; }
# name|manifest line|what the error must contain
cases=(
    "missing|$(with_image missing.jpg)|missing.jpg: no such file"
    "truncjpeg|$(with_image trunc.jpg)|corrupt or truncated JPEG"
    "corruptjpeg|$(with_image corrupt.jpg)|JPEG"
    "truncpng|$(with_image trunc.png)|corrupt or truncated PNG"
    "tiny|$(with_image tiny.jpg)|smaller than 14 px"
    "notimage|$(with_image text.jpg)|not a JPEG or PNG file"
    "joints|$(jq -c '.image="ok.jpg" | .joints_3d |= .[0:20]' <<<"$LINE")|joints_3d has 20 joints, expected 21"
    "nan|$(jq -c '.image="ok.jpg"' <<<"$LINE" | sed 's/"joints_3d":\[\[[^,]*,/"joints_3d":[[NaN,/')|NaN and Infinity are not JSON numbers"
    "inf|$(jq -c '.image="ok.jpg"' <<<"$LINE" | sed 's/"joints_3d":\[\[[^,]*,/"joints_3d":[[1e999,/')|not valid JSON"
    "singular|$(jq -c '.image="ok.jpg" | .K=[[0,0,0],[0,0,0],[0,0,1]]' <<<"$LINE")|K is singular"
    "malformed|$(jq -c '.image="ok.jpg"' <<<"$LINE" | head -c 80)|not valid JSON"
    "unknown|$(jq -c '.image="ok.jpg" | .joint_3d=1' <<<"$LINE")|unknown field 'joint_3d'"
    "outside|$(with_image ../../outside/fr/img/000000.jpg)|is not under a dataset root"
    "outsidemissing|$(with_image ../../outside/nothing.jpg)|is not under a dataset root"
    "symlink|$(with_image link.jpg)|is not under a dataset root"
    "utf8|$(jq -c '.image="ok.jpg"' <<<"$LINE" | sed 's/ok.jpg/ok\xff.jpg/')|unable to decode byte 0xff"
)
for c in "${cases[@]}"; do
    IFS='|' read -r name line want <<<"$c"
    { printf '%s\n' "$(jq -c '.image="ok.jpg"' <<<"$LINE")"; printf '%s\n' "$line"; } >"$B/$name.jsonl"
    imp "bad-$name" "$B/$name.jsonl"
    if [ "$STATUS" != 202 ]; then ok 1 "bad input $name: request refused ($STATUS $BODY)"; continue; fi
    st=$(wait_dataset "bad-$name" 60 2>/dev/null)
    api GET "/v1/datasets/bad-$name"
    err=$(jb .error)
    if [ "$st" = failed ] && [[ $err == *"$name.jsonl line 2"* ]] && [[ $err == *"$want"* ]]; then
        ok 0 "bad input '$name' fails the import naming the line: $err"
    else
        ok 1 "bad input '$name': state $st, error: $err (want '$name.jsonl line 2' and '$want')"
    fi
done
api GET /v1/datasets/bad-outside
e1=$(jb .error | sed -e 's|outside/fr/img/000000.jpg|X|g' -e 's|outside.jsonl|M|')
api GET /v1/datasets/bad-outsidemissing
e2=$(jb .error | sed -e 's|outside/nothing.jpg|X|g' -e 's|outsidemissing.jsonl|M|')
is "$e1" "$e2" "a file outside the roots and a missing one there are refused with the same words"
check "failed imports left nothing behind in the cache ($(caches))" test "$(caches)" = "$CACHES"
check "the daemon kept serving" curl -sf -m 5 "$URL/v1/health"

# on_error skip: every bad line above between two good ones
{
    jq -c '.image="ok.jpg"' <<<"$LINE"
    for c in "${cases[@]}"; do IFS='|' read -r name line want <<<"$c"; printf '%s\n' "$line"; done
    jq -c '.image="ok.jpg"' <<<"$LINE"
} >"$B/all.jsonl"
imp skipper "$B/all.jsonl" '"on_error":"skip"'
is "$(wait_dataset skipper 60)" ready "on_error skip: the good frames are imported"
! grep -q "dataset skipper: its .* went to the device" "$DLOG"
ok $? "on_error skip: loaded from the written shards (rows move by the frames skipped)"
api GET /v1/datasets/skipper
check "2 samples, ${#cases[@]} skipped, the first 5 reasons in line order" \
    jq -e ".samples==2 and .import.skipped==${#cases[@]} and (.import.skip_reasons|length)==5 and
          (.import.skip_reasons[0]|test(\"all.jsonl line 2 \")) and (.import.skip_reasons[4]|test(\"all.jsonl line 6 \"))" <<<"$BODY"
printf '%s\n' "$(with_image missing.jpg)" >"$B/onlybad.jsonl"
imp onlybad "$B/onlybad.jsonl" '"on_error":"skip"'
st=$(wait_dataset onlybad 60 2>/dev/null)
api GET /v1/datasets/onlybad
check "only bad frames, skipping: failed, 'no frame could be imported'" \
    jq -e '.state=="failed" and (.error|test("no frame could be imported"))' <<<"$BODY"

# ---- request errors ------------------------------------------------------------------------------
expect_error 403 forbidden "a manifest outside the roots" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$OUTSIDE/fr/manifest.jsonl\"}}"
m1=$(jb .error.message | sed "s|$OUTSIDE/fr/manifest.jsonl||")
expect_error 403 forbidden "a missing manifest outside the roots" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$OUTSIDE/nothing.jsonl\"}}"
m2=$(jb .error.message | sed "s|$OUTSIDE/nothing.jsonl||")
is "$m1" "$m2" "the same message whether or not it exists"
expect_error 403 forbidden "a .. escape" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$R/../outside/fr/manifest.jsonl\"}}"
expect_error 422 unprocessable "a missing manifest under a root" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$R/nothing.jsonl\"}}"
expect_error 400 invalid_field "resize must be stretch or crop" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$GOOD\",\"resize\":\"zoom\"}}"
expect_error 400 invalid_field "on_error must be fail or skip" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$GOOD\",\"on_error\":\"ignore\"}}"
expect_error 400 invalid_field "image_size below a patch" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$GOOD\",\"image_size\":13}}"
expect_error 400 invalid_field "an unknown import field" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$GOOD\",\"size\":28}}"
expect_error 400 invalid_field "import and path together" POST /v1/datasets \
    "{\"name\":\"x\",\"path\":\"$R\",\"import\":{\"manifest\":\"$GOOD\"}}"
expect_error 400 invalid_field "no manifest" POST /v1/datasets "{\"name\":\"x\",\"import\":{}}"
mkdir -p "$R/$(printf 'n\377')" && cp "$GOOD" "$R/$(printf 'n\377')/m.jsonl" && ln -sfn "$R/$(printf 'n\377')" "$R/latin"
expect_error 422 unprocessable "a manifest whose resolved name is not UTF-8" POST /v1/datasets \
    "{\"name\":\"x\",\"import\":{\"manifest\":\"$R/latin/m.jsonl\"}}"
expect_error 409 conflict "the name of an existing dataset" POST /v1/datasets \
    "{\"name\":\"good\",\"import\":{\"manifest\":\"$GOOD\"}}"

# ---- trainctl and traind import --------------------------------------------------------------------
tctl datasets import viactl "$GOOD" --image-size "$IMG" --resize crop --wait >"$TDIR/ctl.out" 2>"$TDIR/ctl.err"
is "$?" 0 "trainctl datasets import --wait"
check "it printed the dataset and the import summary" grep -q "import: 40 of 40 frames (from the cache), 0 skipped" "$TDIR/ctl.out"
check "and a progress bar on stderr" grep -q '\[##############################\] 100%' "$TDIR/ctl.err"
tctl datasets import ctlbad "$B/missing.jsonl" --wait >"$TDIR/ctl.out" 2>&1
is "$?" 1 "trainctl: a failed import exits 1"
check "with the error" grep -q "missing.jpg: no such file" "$TDIR/ctl.out"

"$TRAIND_BIN" import --manifest "$GOOD" --out "$R/offline" --image-size "$IMG" --resize crop >"$TDIR/off.out" 2>&1
is "$?" 0 "traind import (no daemon)"
check "it says what it did" grep -q "imported 40 of 40 frames (0 skipped) as ${IMG}x$IMG (crop)" "$TDIR/off.out"
api POST /v1/datasets "{\"name\":\"offline\",\"path\":\"$R/offline\"}"
is "$(wait_dataset offline 60)" ready "its directory loads as a path dataset"
"$TRAIND_BIN" import --manifest "$B/missing.jsonl" --out "$R/offline2" --image-size "$IMG" >"$TDIR/off.out" 2>&1
is "$?" 1 "traind import of a bad manifest exits 1"
check "naming the line, leaving no directory" sh -c "grep -q 'missing.jsonl line 2' '$TDIR/off.out' && ! test -e '$R/offline2'"
# --decoder: auto without a GPU decoder falls back to the CPU; hardware is refused there; a bad value too
"$TRAIND_BIN" import --manifest "$GOOD" --out "$R/offline3" --image-size "$IMG" --decoder auto >"$TDIR/off.out" 2>&1
is "$?" 0 "traind import --decoder auto (no GPU decoder here)"
check "it says the CPU decoded" grep -q "decoder cpu, 0 frames on it" "$TDIR/off.out"
"$TRAIND_BIN" import --manifest "$GOOD" --out "$R/offline4" --image-size "$IMG" --decoder hardware >"$TDIR/off.out" 2>&1
rc=$?
check "traind import --decoder hardware without one: exit 1 ($rc), saying why, no directory" \
    sh -c "[ $rc = 1 ] && grep -q 'traind import: --decoder hardware: ' '$TDIR/off.out' && ! test -e '$R/offline4'"
"$TRAIND_BIN" import --manifest "$GOOD" --out "$R/offline4" --image-size "$IMG" --decoder gpu >"$TDIR/off.out" 2>&1
rc=$?
check "traind import --decoder gpu: exit 2 ($rc), naming the choices" \
    sh -c "[ $rc = 2 ] && grep -q 'must be cpu, auto, hardware or cuda' '$TDIR/off.out'"

# ---- a train job on an imported dataset learns ----------------------------------------------------------
LN=${TEST_IMPORT_LEARN_FRAMES:-2000}
LSTEPS=${TEST_IMPORT_LEARN_STEPS:-2500}
t_gen=$SECONDS
"$MKFRAMES" --out "$R/learn" --frames "$LN" --width 112 --height 84 --quality 90 --seed 7 --shared-k --units mm --threads 2 ||
    bail "mkframes learn"
t_imp=$SECONDS
imp learn "$R/learn/manifest.jsonl" '"image_size":56,"resize":"crop"'
is "$(wait_dataset learn 300)" ready "$LN frames of 112x84 (shared K, millimetres) imported at 56 (crop)"
submit "{\"type\":\"train\",\"dataset\":\"learn\",\"seed\":1,\"model\":{\"backbone\":\"dinov2-tiny\",\"heads\":[\"hand\"]},
         \"batch_size\":8,\"steps\":$LSTEPS,\"eval_every\":$LSTEPS,\"checkpoint_every\":$LSTEPS,
         \"optim\":{\"lr\":{\"backbone\":0.002,\"heads\":0.002},\"warmup_steps\":$((LSTEPS / 20)),\"schedule\":\"cosine\"}}"
tid=$JOB
t_train=$SECONDS
is "$(wait_job "$tid" 1200)" succeeded "train dinov2-tiny on the imported frames ($LSTEPS steps)"
api GET "/v1/checkpoints?job=$tid"
ck=$(jb '.checkpoints[-1].id')
submit "{\"type\":\"eval\",\"dataset\":\"learn\",\"checkpoint\":\"$ck\",\"split\":\"val\"}"
eid=$JOB
is "$(wait_job "$eid" 300)" succeeded "evaluate it on the held-out split"
api GET "/v1/jobs/$eid/result"
mp=$(jb .mpjpe_mm)
mean=$(jb .mean_predictor_mpjpe_mm)
check "learned: val MPJPE $mp mm < half the mean predictor's $mean mm" \
    awk -v a="$mp" -v b="$mean" 'BEGIN{exit !(a > 0 && b > 30 && a < 0.5 * b)}'
diag "imported-frames learning: val MPJPE $mp mm, mean predictor $mean mm ($LN frames, $LSTEPS steps);" \
     "  frames written in $((t_imp - t_gen)) s, imported in $((t_train - t_imp)) s, trained and evaluated in $((SECONDS - t_train)) s"
done_testing
