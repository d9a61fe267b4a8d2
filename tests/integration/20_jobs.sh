#!/usr/bin/env bash
# tests/integration/20_jobs.sh — the four job types (train, eval, debug, infer)
# through the API on a synthetic dataset, with the results fetched from the API
# checked against the records in SQLite (sqlite3 CLI on traind.db), and a
# trained checkpoint downloaded through the API and loaded back: as the
# `model.weights` of a new eval job (same metrics as evaluating the checkpoint
# by id) and by `traind forward`; a job on images the patch size does not
# divide is refused at submission (422 naming the dataset and its size).
. "$(dirname "$0")/lib.sh"

ROOTS="$TDIR/roots"
mkdir -p "$ROOTS"
start_daemon --dataset-root "$ROOTS" || bail "daemon did not start"
load_synth syn "$NSAMP" "$IMG" 11
ok $? "synthetic dataset loaded"

# safetensors header as JSON (python3, no third-party modules)
st_header() {
    python3 - "$1" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    print(json.dumps(json.loads(f.read(n))))
EOF
}
# every F32 tensor of a safetensors file is finite -> exit 0
st_finite() {
    python3 - "$1" <<'EOF'
import json, math, struct, sys
from array import array
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); base = 8 + n
for k, v in hdr.items():
    if k == "__metadata__" or v["dtype"] != "F32":
        continue
    a = array("f"); a.frombytes(raw[base + v["data_offsets"][0]: base + v["data_offsets"][1]])
    if not all(math.isfinite(x) for x in a):
        sys.exit(1)
EOF
}

# ---- train ---------------------------------------------------------------------------
submit "$(train_spec syn 30 '"checkpoint_every":10,"eval_every":10,"keep_checkpoints":5,"optim":{"lr":{"backbone":0.0001,"heads":0.001},"warmup_steps":2}')"; tid=$JOB
is "$STATUS" 201 "train job submitted"
is "$(wait_job "$tid" 600)" succeeded "train job succeeded"
api GET "/v1/jobs/$tid"
TRAIN_REC=$BODY
check "train: progress 30/30" jq -e '.progress.step==30 and .progress.total_steps==30' <<<"$TRAIN_REC"
check "train: images/s reported" jq -e '.progress.images_per_s>0' <<<"$TRAIN_REC"
check "train: latest metrics include a finite loss" \
    jq -e '[.metrics|to_entries[]|select(.key|test("loss"))|.value|(if type=="object" then .value else . end)]|length>0 and all(.[]; type=="number")' <<<"$TRAIN_REC"
check "train: plan is bf16 input, fp32 master and gradients" \
    jq -e '.plan|tostring|test("bf16") and test("fp32")' <<<"$TRAIN_REC"

# augmentation: resolved beside the dtype plan (with the camera it uses), in the spec and the result
submit "$(train_spec syn 4 '"checkpoint_every":0,"eval_every":0,"augment":{"rotate_deg":[-20,20],"flip":0.5,"hue":0.05}')"; aid=$JOB
is "$STATUS" 201 "augmented train job submitted"
check "augment: the record's plan shows the resolved augmentation and the dataset's intrinsics" \
    jq -e '.plan.augment.rotate_deg == [-20,20] and .plan.augment.flip == 0.5 and .plan.augment.zoom == [1,1] and (.plan.augment.camera|test("camera_intrinsics")) and .plan.encoder_input == "bf16"' <<<"$BODY"
is "$(wait_job "$aid" 600)" succeeded "augmented train job succeeded"
api GET "/v1/jobs/$aid"
check "augment: the resolved spec and the result carry it" \
    jq -e '.spec.augment.hue == 0.05 and (.result.augment.camera|test("camera_intrinsics"))' <<<"$BODY"
expect_error 400 invalid_field "augment: a range out of bounds is refused" \
    POST /v1/jobs "$(train_spec syn 4 '"augment":{"zoom":[0.9,3]}')"
check "augment: the error names the field" jq -e '.error.message|test("augment.zoom")' <<<"$BODY"
expect_error 400 invalid_field "augment: eval jobs never augment" \
    POST /v1/jobs '{"type":"eval","dataset":"syn","augment":{}}'

# SQLite consistency: the job row, the metric series, the checkpoints.
is "$(sql "SELECT state FROM jobs WHERE id='$tid';")" succeeded "sqlite: job row says succeeded"
api GET "/v1/jobs/$tid/metrics"
api_n=$(jb 'length')
lossname=$(jb '[.[].name|select(test("loss"))][0] // "loss"')
db_n=$(sql "SELECT count(*) FROM metrics WHERE job='$tid';")
is "$api_n" "$db_n" "sqlite: every metric point of the API is a row ($db_n)"
api GET "/v1/jobs/$tid/metrics?name=$lossname"
api_last=$(jb '.[-1].value')
db_last=$(sql "SELECT value FROM metrics WHERE job='$tid' AND name='$lossname' ORDER BY step DESC LIMIT 1;")
check "sqlite: last $lossname value equal ($api_last vs $db_last)" \
    python3 -c "import sys; a,b=float('$api_last'),float('$db_last'); sys.exit(abs(a-b)>1e-9*max(1,abs(b)))"
api GET "/v1/checkpoints?job=$tid"
CKPTS=$BODY
api_ck=$(jb '[.checkpoints[].id]|sort|join(",")')
db_ck=$(sql "SELECT group_concat(id, ',') FROM (SELECT id FROM checkpoints WHERE job='$tid' ORDER BY id);")
is "$api_ck" "$db_ck" "sqlite: checkpoint records match the API"
ck=$(jq -r '.checkpoints|max_by(.step)|.id' <<<"$CKPTS")
ck_step=$(jq -r '.checkpoints|max_by(.step)|.step' <<<"$CKPTS")
ck_path=$(jq -r '.checkpoints|max_by(.step)|.path' <<<"$CKPTS")
is "$ck_step" 30 "the last checkpoint is at the final step"
for f in model.safetensors config.json optimizer.safetensors state.json; do
    check "checkpoint dir has $f" test -s "$ck_path/$f"
done
check "checkpoint lies under <state>/checkpoints/<job>/<step>" test "$ck_path" -ef "$STATE/checkpoints/$tid/30"
hf_names_ok() {
    st_header "$1" | jq -e 'keys as $k | ($k|index("embeddings.patch_embeddings.projection.weight")!=null)
        and ($k|index("embeddings.cls_token")!=null) and ($k|index("encoder.layer.1.mlp.fc2.bias")!=null)
        and ($k|index("encoder.layer.0.layer_scale1.lambda1")!=null) and ($k|index("layernorm.weight")!=null)
        and ($k|map(select(startswith("heads.")))|length>0)' >/dev/null
}
check "model.safetensors: HF Dinov2Model names and heads.*" hf_names_ok "$ck_path/model.safetensors"
check "state.json records step 30" jq -e '.step==30' "$ck_path/state.json"

# ---- eval ------------------------------------------------------------------------------
submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"batch_size\":16}"; eid=$JOB
is "$STATUS" 201 "eval job submitted"
is "$(wait_job "$eid" 300)" succeeded "eval job succeeded"
api GET "/v1/jobs/$eid/result"
EVAL=$BODY
check "eval: MPJPE, PA-MPJPE, AUC, mean-predictor floor (mm)" \
    jq -e '[paths(numbers)|map(tostring)|join(".")]|tostring|test("mpjpe") and test("pa_mpjpe") and test("auc") and test("mean")' <<<"$EVAL"
check "eval: PCK at 7 thresholds" jq -e '[..|objects|.pck?|select(.)]|.[0]|length==7' <<<"$EVAL"
check "eval: 21 per-joint MPJPE values" jq -e '[..|arrays|select(length==21)]|length>=1' <<<"$EVAL"
check "eval: every number finite and MPJPE in a sane range (mm)" \
    jq -e '([..|numbers]|all(. == . and . < 1e7)) and ([..|objects|to_entries[]|select(.key|test("^mpjpe"))|.value|numbers][0] > 0.1)' <<<"$EVAL"
db_res=$(sql "SELECT result FROM jobs WHERE id='$eid';")
check "sqlite: stored result equals the API's" \
    bash -c 'diff <(jq -S . <<<"$1") <(jq -S "if has(\"result\") and (keys|length)<=3 then .result else . end" <<<"$2")' _ "$db_res" "$EVAL"
api GET "/v1/jobs/$eid"
check "eval: plan is bf16 input and parameters" jq -e '.plan|tostring|test("bf16")' <<<"$BODY"

# ---- debug -----------------------------------------------------------------------------
submit "{\"type\":\"debug\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"batches\":1,\"batch_size\":8}"; did=$JOB
is "$STATUS" 201 "debug job submitted"
is "$(wait_job "$did" 300)" succeeded "debug job succeeded"
api GET "/v1/jobs/$did/result"
DEBUG=$BODY
check "debug: activation statistics (mean/std/min/max, nan/inf, zero fraction)" \
    jq -e 'tostring|test("mean") and test("std") and test("nan") and test("inf") and test("zero")' <<<"$DEBUG"
check "debug: weight and gradient norms" jq -e 'tostring|test("grad") and test("norm")' <<<"$DEBUG"
check "debug: prediction diversity" jq -e 'tostring|test("divers")' <<<"$DEBUG"
check "debug: ran in fp32" jq -e 'tostring|test("fp32")' <<<"$DEBUG"
check "debug: no NaN/Inf in a healthy model" \
    jq -e '[..|objects|to_entries[]|select(.key|test("^(nan|inf)";"i"))|.value|numbers]|length>0 and all(.==0)' <<<"$DEBUG"
is "$(sql "SELECT state FROM jobs WHERE id='$did';")" succeeded "sqlite: debug job row"

# ---- infer -------------------------------------------------------------------------------
submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"indices\":[0,1,2]}"; iid=$JOB
is "$STATUS" 201 "infer job (dataset indices) submitted"
is "$(wait_job "$iid" 300)" succeeded "infer job succeeded"
api GET "/v1/jobs/$iid/result"
INFER=$BODY
check "infer: 3 outputs of 21x3 joints and 21 confidences" \
    jq -e '[..|objects|select(has("joints") and (.joints|type=="array"))]|length==3 and all(.[]; (.joints|flatten|length)==63 and (.confidence // .confidences|flatten|length)==21)' <<<"$INFER"
check "infer: confidences are in [0,1]" \
    jq -e '[..|objects|select(has("joints") and (.joints|type=="array"))|(.confidence // .confidences)|flatten[]]|all(.>=0 and .<=1)' <<<"$INFER"
rand_b64() {   # rand_b64 H W SEED: base64 of a random u8 HWC RGB image
    python3 -c "import base64,random; random.seed($3); print(base64.b64encode(bytes(random.randrange(256) for _ in range($1*$2*3))).decode())"
}
b64=$(rand_b64 "$IMG" "$IMG" 1)
submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"images\":[{\"u8_hwc_b64\":\"$b64\",\"height\":$IMG,\"width\":$IMG}],\"outputs\":[\"cls\"]}"; iid2=$JOB
is "$STATUS" 201 "infer job (inline image, cls features) submitted"
is "$(wait_job "$iid2" 300)" succeeded "inline infer succeeded"
api GET "/v1/jobs/$iid2/result"
check "inline infer: one prediction and CLS features (64 = dinov2-tiny hidden)" \
    jq -e '([..|objects|select(has("joints") and (.joints|type=="array"))]|length==1) and (tostring|test("cls"))' <<<"$BODY"
# an inline image of another size is resized to the dataset's (13 wide, 9 high here)
b64r=$(rand_b64 9 13 2)
submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"images\":[{\"u8_hwc_b64\":\"$b64r\",\"height\":9,\"width\":13}]}"; iidr=$JOB
is "$STATUS" 201 "infer job (inline 13x9 image, not the dataset's size) submitted"
is "$(wait_job "$iidr" 300)" succeeded "inline infer of a 13x9 image succeeded"
api GET "/v1/jobs/$iidr/result"
check "inline 13x9 infer: one prediction of 21 joints, resized_from [9,13] (height first)" \
    jq -e '[..|objects|select(has("joints") and (.joints|type=="array"))] as $p | ($p|length)==1 and ($p[0].joints|length)==21 and $p[0].resized_from==[9,13]' <<<"$BODY"
# large outputs go to a safetensors file fetched through the result (SPEC §4)
# (80 images x 4 patches x 64 floats = 80 KB of patch tokens: over the 64 KB inline limit)
idx80=$(seq -s, 0 79)
submit "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"indices\":[$idx80],\"outputs\":[\"patch_tokens\"]}"; iid3=$JOB
is "$(wait_job "$iid3" 300)" succeeded "infer with patch tokens succeeded"
api GET "/v1/jobs/$iid3/result"
furl=$(jb '.features.url // empty')
is "$furl" "/v1/jobs/$iid3/result/files/features.safetensors" "infer: the features file has a download url"
api GET "$furl"
is "$STATUS" 200 "infer: features file downloads"
check "infer: the downloaded features are a safetensors file with patch tokens" \
    python3 -c "import json,struct,sys; b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n]); assert any('patch' in k for k in h if k!='__metadata__'), h" "$TDIR/last_body"
expect_error 404 not_found "infer: unknown result file" GET "/v1/jobs/$iid3/result/files/nope.safetensors"
expect_error 404 not_found "infer: result file names cannot climb" GET "/v1/jobs/$iid3/result/files/..%2Ftraind.db"
expect_error 400 'invalid_field|bad_request' "infer: image bytes do not match height x width" \
    POST /v1/jobs "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"images\":[{\"u8_hwc_b64\":\"AAAA\",\"height\":$IMG,\"width\":$IMG}]}"
expect_error 400 'invalid_field|bad_request' "infer: invalid base64" \
    POST /v1/jobs "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"$ck\",\"images\":[{\"u8_hwc_b64\":\"@@@@\",\"height\":1,\"width\":1}]}"

# ---- download the checkpoint and load it back ---------------------------------------------
DL="$ROOTS/downloaded"
mkdir -p "$DL"
api GET "/v1/checkpoints/$ck"
files=$(jb '[.files[]?.name]|join(" ")')
[ -n "$files" ] || files="model.safetensors config.json"
for f in $files; do
    code=$(curl -s -o "$DL/$f" -w '%{http_code}' "$URL/v1/checkpoints/$ck/files/$f")
    is "$code" 200 "download $f"
    want=$(jb --arg f "$f" '.files[]?|select(.name==$f)|.sha256')
    if [ -n "$want" ]; then
        is "$(sha256sum "$DL/$f" | cut -d' ' -f1)" "$want" "sha256 of downloaded $f matches the record"
    fi
    check "downloaded $f is byte-identical to the checkpoint's" cmp -s "$DL/$f" "$ck_path/$f"
done
check "downloaded model.safetensors is a valid safetensors file" st_header "$DL/model.safetensors"

# (a) a new eval job with model.weights = the downloaded directory
submit "{\"type\":\"eval\",\"dataset\":\"syn\",\"batch_size\":16,\"model\":{\"backbone\":\"dinov2-tiny\",\"heads\":[\"hand\"],\"weights\":\"$DL\"}}"; wid=$JOB
is "$STATUS" 201 "eval with model.weights=downloaded dir submitted"
is "$(wait_job "$wid" 300)" succeeded "eval from downloaded weights succeeded"
api GET "/v1/jobs/$wid/result"
m1=$(jq -c '[..|objects|to_entries[]|select(.key|test("^mpjpe"))|.value|numbers][0]' <<<"$EVAL")
m2=$(jb -c '[..|objects|to_entries[]|select(.key|test("^mpjpe"))|.value|numbers][0]')
check "downloaded weights give the same MPJPE as the checkpoint ($m1 vs $m2)" \
    python3 -c "import sys; a,b=float('$m1'),float('$m2'); sys.exit(abs(a-b)>1e-6*max(1,abs(a)))"

# (b) traind forward on the downloaded directory, HF output names
python3 - "$TDIR/in.safetensors" "$IMG" <<'EOF'
import json, random, struct, sys
from array import array
path, s = sys.argv[1], int(sys.argv[2])
random.seed(3)
a = array("f", (random.gauss(0, 1) for _ in range(2 * 3 * s * s)))
hdr = json.dumps({"pixel_values": {"dtype": "F32", "shape": [2, 3, s, s], "data_offsets": [0, len(a) * 4]}}).encode()
hdr += b" " * ((8 - len(hdr) % 8) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hdr))); f.write(hdr); f.write(a.tobytes())
EOF
"$TRAIND_BIN" forward --weights "$DL" --input "$TDIR/in.safetensors" --out "$TDIR/out.safetensors" --precision fp32 --backend cpu >"$TDIR/fwd.log" 2>&1
ok $? "traind forward runs the downloaded checkpoint"
np=$(( (IMG / 14) * (IMG / 14) + 1 ))
check "forward: last_hidden_state [2,$np,64] and pooler_output [2,64]" \
    jq -e --argjson t "$np" '.last_hidden_state.shape==[2,$t,64] and .pooler_output.shape==[2,64]' <<<"$(st_header "$TDIR/out.safetensors")"
check "forward outputs are finite" st_finite "$TDIR/out.safetensors"
"$TRAIND_BIN" forward --weights "$ck_path" --input "$TDIR/in.safetensors" --out "$TDIR/out2.safetensors" --precision fp32 --backend cpu >/dev/null 2>&1
check "forward on the daemon's checkpoint dir gives identical bytes" cmp -s "$TDIR/out.safetensors" "$TDIR/out2.safetensors"

# ---- resume_from: a new train job continues from the checkpoint ----------------------------
submit "$(train_spec syn 40 "\"resume_from\":\"$ck\",\"checkpoint_every\":10")"; rid=$JOB
is "$STATUS" 201 "train with resume_from submitted"
is "$(wait_job "$rid" 600)" succeeded "resumed train succeeded"
api GET "/v1/jobs/$rid/metrics?name=$lossname"
check "resumed run starts after step 30" jq -e 'length>0 and (.[0].step>30)' <<<"$BODY"

# ---- keep_checkpoints: the last K plus the best by val MPJPE survive -----------------------
submit "$(train_spec syn 30 '"checkpoint_every":5,"eval_every":5,"keep_checkpoints":2,"optim":{"lr":{"backbone":0.0001,"heads":0.001}}')"; kid=$JOB
is "$(wait_job "$kid" 600)" succeeded "train with keep_checkpoints 2 succeeded"
api GET "/v1/jobs/$kid/metrics?name=val_mpjpe"
best=$(jb 'min_by(.value)|.step')
check "val MPJPE recorded at every checkpoint step" jq -e '[.[].step]==[5,10,15,20,25,30]' <<<"$BODY"
want=$(printf '%s\n' 25 30 "$best" | sort -n -u | tr '\n' ' ')
api GET "/v1/checkpoints?job=$kid"
got=$(jb '[.checkpoints[].step]|sort|map(tostring)|join(" ")')
is "$got " "$want" "kept checkpoints: steps 25, 30 and the best ($best)"
kept_dirs=$(cd "$STATE/checkpoints/$kid" && ls | sort -n | tr '\n' ' ')
is "$kept_dirs" "$want" "pruned checkpoint directories are gone from disk"
is "$(sql "SELECT count(*) FROM checkpoints WHERE job='$kid';")" "$(jb '.checkpoints|length')" "sqlite: pruned records are gone"

# ---- images the patch (14) does not divide: refused at submission, not by the worker ---------
load_synth odd 16 30 3
ok $? "a 30x30 synthetic dataset loads (a dataset of any size may)"
for spec in "$(train_spec odd 2)" \
            '{"type":"infer","dataset":"odd","model":{"backbone":"dinov2-tiny"},"indices":[0]}'; do
    api POST /v1/jobs "$spec"
    is "$STATUS" 422 "$(jq -r .type <<<"$spec"): a job on 30x30 images is refused at submission"
    check "... naming the dataset and its size: $(jb .error.message)" \
        jq -e '.error.field=="dataset" and (.error.message|test("dataset .odd.") and test("30x30") and test("14"))' <<<"$BODY"
done
# one read from disk is refused while it may still be loading: its size is recorded at the request
"$TRAIND_BIN" synth --out "$ROOTS/odd30" --samples 8 --image-size 30 --seed 4 >/dev/null
api POST /v1/datasets "{\"name\":\"odddisk\",\"path\":\"$ROOTS/odd30\"}"
is "$(jb -c .image_size)" "[30,30]" "a dataset read from disk has its image size in the record at once"
submit "$(train_spec odddisk 2)"
is "$STATUS" 422 "a job on it is refused: $(jb .error.message)"
is "$(sql "SELECT count(*) FROM jobs WHERE dataset IN ('odd', 'odddisk');")" 0 "sqlite: no refused job was recorded"

# ---- all job records agree with SQLite -------------------------------------------------------
api GET "/v1/jobs?limit=100"
api_states=$(jb '[.jobs[]|"\(.id)=\(.state)"]|sort|join(" ")')
db_states=$(sql "SELECT group_concat(s, ' ') FROM (SELECT id||'='||state AS s FROM jobs ORDER BY s);")
is "$api_states" "$db_states" "sqlite: every job's state matches the API"
check "sqlite: integrity_check ok" test "$(sql 'PRAGMA integrity_check;')" = ok
check "sqlite: WAL mode" test "$(sql 'PRAGMA journal_mode;')" = wal
check "sqlite: schema version set" test "$(sql 'PRAGMA user_version;')" -ge 1

check "daemon still serving" daemon_alive
stop_daemon TERM
is "$DAEMON_RC" 0 "traind exits 0 after SIGTERM"
done_testing
