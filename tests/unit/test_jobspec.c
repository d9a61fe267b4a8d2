/* tests/unit/test_jobspec.c — job spec parsing (SPEC §4): valid specs of every
 * type with their defaults, every kind of invalid field (named by its dotted
 * path), base64 images, the round trip through jobspec_to_json, and the dtype
 * plans of SPEC §5; the bounds on a job's inputs (index entries as indices or
 * [begin, end) ranges, at most 4096 of them; 256 inline images, each with a
 * checked sha256) and the expansion of ranges into sample lists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpu/jobspec.h"
#include "tests/tap.h"

static int parse_str(const char *text, jobspec_t *js, char *field, char *msg) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) {
        diag("bad test JSON: %s: %s", text, je.text);
        return -2;
    }
    int r = jobspec_parse(j, js, field, 128, msg, 256);
    json_decref(j);
    return r;
}

/* Expect failure naming `want_field`. */
static void bad(const char *text, const char *want_field) {
    jobspec_t js;
    char field[128], msg[256];
    int r = parse_str(text, &js, field, msg);
    ok(r == -1 && strcmp(field, want_field) == 0 && msg[0], "rejects %s -> field '%s'", text, want_field);
    if (r != -1 || strcmp(field, want_field) != 0) diag("  got r=%d field='%s' msg='%s'", r, field, msg);
    if (r == 0) jobspec_free(&js);
}

/* Round trip: parse(to_json(js)) == js (compared through to_json and key fields). */
static void round_trip(const char *text) {
    jobspec_t a, b;
    char field[128], msg[256];
    if (parse_str(text, &a, field, msg) != 0) {
        ok(0, "round trip parse %s (%s: %s)", text, field, msg);
        return;
    }
    json_t *ja = jobspec_to_json(&a);
    int r = jobspec_parse(ja, &b, field, sizeof field, msg, sizeof msg);
    ok(r == 0, "resolved spec parses again (%s)", r ? msg : "ok");
    if (r == 0) {
        json_t *jb = jobspec_to_json(&b);
        int eq = json_equal(ja, jb);
        eq = eq && a.type == b.type && a.seed == b.seed && a.batch_size == b.batch_size &&
             a.steps == b.steps && a.epochs == b.epochs && a.n_indices == b.n_indices &&
             a.n_images == b.n_images && memcmp(&a.optim, &b.optim, sizeof a.optim) == 0 &&
             memcmp(&a.model, &b.model, sizeof a.model) == 0 && memcmp(&a.augment, &b.augment, sizeof a.augment) == 0 &&
             a.split_train[0] == b.split_train[0] && a.split_val[1] == b.split_val[1];
        eq = eq && a.n_ranges == b.n_ranges;
        for (int i = 0; eq && i < a.n_ranges; i++)
            eq = a.ranges[i].begin == b.ranges[i].begin && a.ranges[i].end == b.ranges[i].end;
        for (int i = 0; eq && i < a.n_images; i++)
            eq = a.image_h[i] == b.image_h[i] && a.image_w[i] == b.image_w[i] &&
                 memcmp(a.images[i], b.images[i], (size_t)a.image_h[i] * a.image_w[i] * 3) == 0;
        ok(eq, "round trip is equal: %s", text);
        if (!eq) {
            char *s1 = json_dumps(ja, JSON_SORT_KEYS), *s2 = json_dumps(jb, JSON_SORT_KEYS);
            diag("  %s\n#  %s", s1, s2);
            free(s1);
            free(s2);
        }
        json_decref(jb);
        jobspec_free(&b);
    }
    json_decref(ja);
    jobspec_free(&a);
}

/* A spec of type whose indices are n entries: 0..n-1, or the ranges [2i, 2i+2) (malloc'd text). */
static char *indices_spec(const char *type, int n, int ranges) {
    size_t cap = (size_t)n * 24 + 256, o = 0;
    char *s = malloc(cap);
    o += (size_t)snprintf(s + o, cap - o, "{\"type\":\"%s\",\"dataset\":\"d\",\"indices\":[", type);
    for (int i = 0; i < n; i++) {
        if (ranges) o += (size_t)snprintf(s + o, cap - o, "%s[%d,%d]", i ? "," : "", 2 * i, 2 * i + 2);
        else o += (size_t)snprintf(s + o, cap - o, "%s%d", i ? "," : "", i);
    }
    snprintf(s + o, cap - o, "]}");
    return s;
}

/* `devices` (train, eval, infer): a count or a list of distinct indices; omitted when not given
 * (an explicit 1 is kept: a sharded dataset refuses it rather than expanding it). */
static void test_devices(void) {
    jobspec_t js;
    char field[128], msg[256];
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\"}", &js, field, msg) == 0 && js.devices == 1 &&
       js.n_device_list == 0, "devices defaults to 1");
    json_t *j = jobspec_to_json(&js);
    ok(!json_object_get(j, "devices") && !js.devices_given, "a job without devices: its resolved spec has none");
    json_decref(j);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":1}", &js, field, msg) == 0 && js.devices == 1 &&
       js.devices_given, "devices: 1 is recorded as given");
    j = jobspec_to_json(&js);
    ok(json_integer_value(json_object_get(j, "devices")) == 1, "an explicit \"devices\": 1 stays in the resolved spec");
    json_decref(j);
    jobspec_free(&js);
    round_trip("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[0],\"devices\":1}");
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":3}", &js, field, msg) == 0 &&
       js.devices == 3 && js.n_device_list == 0, "devices: 3");
    j = jobspec_to_json(&js);
    ok(json_integer_value(json_object_get(j, "devices")) == 3, "resolved spec keeps the count");
    json_decref(j);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[0],\"devices\":[2,0]}", &js, field, msg) == 0 &&
       js.devices == 2 && js.n_device_list == 2 && js.device_list[0] == 2 && js.device_list[1] == 0,
       "devices: [2, 0] (rank order kept)");
    j = jobspec_to_json(&js);
    ok(json_array_size(json_object_get(j, "devices")) == 2 &&
       json_integer_value(json_array_get(json_object_get(j, "devices"), 0)) == 2, "resolved spec keeps the list");
    json_decref(j);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"eval\",\"dataset\":\"d\",\"devices\":16}", &js, field, msg) == 0, "eval takes devices");
    jobspec_free(&js);
    round_trip("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":[1,3,0]}");
    round_trip("{\"type\":\"eval\",\"dataset\":\"d\",\"devices\":2}");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":0}", "devices");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":17}", "devices");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":2.5}", "devices");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":\"all\"}", "devices");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":[]}", "devices");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":[0,1,0]}", "devices[2]");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":[0,-1]}", "devices[1]");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":[\"0\"]}", "devices[0]");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":[1024]}", "devices[0]");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"devices\":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}", "devices");
    bad("{\"type\":\"debug\",\"dataset\":\"d\",\"devices\":2}", "devices");
}

static void test_bounds(void) {
    jobspec_t js;
    char field[128], msg[256];

    /* ranges [begin, end) next to plain indices, in order, duplicates kept */
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[7,[2,5],[0,1],7]}", &js, field, msg) == 0,
       "indices mix indices and ranges (%s)", msg);
    ok(js.n_ranges == 4 && js.n_indices == 6 && js.ranges[1].begin == 2 && js.ranges[1].end == 5,
       "4 entries select 6 samples");
    int32_t *idx = NULL;
    int64_t n = 0;
    char err[256];
    ok(jobspec_indices_expand(&js, 10, &idx, &n, err, sizeof err) == 0 && n == 6 && idx[0] == 7 && idx[1] == 2 &&
       idx[2] == 3 && idx[3] == 4 && idx[4] == 0 && idx[5] == 7, "expanded in order: 7 2 3 4 0 7");
    free(idx);
    ok(jobspec_indices_expand(&js, 7, &idx, &n, err, sizeof err) == -1 && !idx && strstr(err, "indices[0] = 7") &&
       strstr(err, "7 samples"), "an index past the dataset names the entry: %s", err);
    ok(jobspec_indices_check(&js, 4, field, sizeof field, err, sizeof err) == -1 && !strcmp(field, "indices[0]"),
       "check names indices[0] for a 4-sample dataset");
    ok(jobspec_indices_check(&js, 8, field, sizeof field, err, sizeof err) == 0, "all exist in 8 samples");
    json_t *j = jobspec_to_json(&js);
    char *t = json_dumps(json_object_get(j, "indices"), JSON_COMPACT);
    ok(t && !strcmp(t, "[7,[2,5],0,7]"), "resolved form keeps ranges; a one-sample range prints as its index (%s)", t);
    free(t);
    json_decref(j);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[5,100]]}", &js, field, msg) == 0 &&
       jobspec_indices_check(&js, 99, field, sizeof field, err, sizeof err) == -1 && strstr(err, "[5, 100)"),
       "a range ending past the dataset is refused: %s", err);
    jobspec_free(&js);
    round_trip("{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"c\",\"indices\":[[0,1000],[5000,5100],3]}");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[5,5]]}", "indices[0]");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[1,[9,3]]}", "indices[1]");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[1,2,3]]}", "indices[0]");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[-1,2]]}", "indices[0]");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[0,2147483649]]}", "indices[0]");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[{\"range\":[0,2]}]}", "indices[0]");
    /* the one range that reaches INT32_MAX */
    ok(parse_str("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[2147483640,2147483648]]}", &js, field,
                 msg) == 0 && js.n_indices == 8, "a range may end at 2^31 (%s)", msg);
    jobspec_free(&js);

    /* explicit lists: 4096 entries pass, 4097 do not, and the message says what to do */
    char *s = indices_spec("eval", JS_MAX_INDEX_ENTRIES, 0);
    ok(parse_str(s, &js, field, msg) == 0 && js.n_indices == JS_MAX_INDEX_ENTRIES, "4096 indices accepted");
    jobspec_free(&js);
    free(s);
    s = indices_spec("eval", JS_MAX_INDEX_ENTRIES + 1, 0);
    ok(parse_str(s, &js, field, msg) == -1 && !strcmp(field, "indices") && strstr(msg, "4097 entries") &&
       strstr(msg, "at most 4096") && strstr(msg, "[begin, end)"), "4097 indices refused: %s", msg);
    free(s);
    /* totals: an infer job runs on at most 16384 samples, an eval job selects at most 2^24 */
    s = indices_spec("infer", 8192, 1);   /* 8192 ranges of 2 */
    ok(parse_str(s, &js, field, msg) == -1 && !strcmp(field, "indices"), "8192 range entries are refused too");
    free(s);
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[[0,16384]]}", &js, field, msg) == 0 &&
       js.n_indices == JS_MAX_INFER_SAMPLES, "infer: 16384 samples by one range (%s)", msg);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[[0,16384],0]}", &js, field, msg) == -1 &&
       !strcmp(field, "indices") && strstr(msg, "16385 samples") && strstr(msg, "at most 16384"),
       "infer: 16385 samples refused: %s", msg);
    ok(parse_str("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[0,16777216]]}", &js, field, msg) == 0,
       "eval: 2^24 samples by a range");
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[[0,16777216],1]}", &js, field, msg) == -1 &&
       !strcmp(field, "indices"), "eval: one more is refused: %s", msg);

    /* inline images: 256 at most; each one's sha256 is computed, given back, and checked when sent */
    size_t cap = 300 * 64 + 128, o = 0;
    s = malloc(cap);
    o += (size_t)snprintf(s + o, cap - o, "{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[");
    for (int i = 0; i < JS_MAX_IMAGES + 1; i++)
        o += (size_t)snprintf(s + o, cap - o, "%s{\"u8_hwc_b64\":\"AQID\",\"height\":1,\"width\":1}", i ? "," : "");
    snprintf(s + o, cap - o, "]}");
    ok(parse_str(s, &js, field, msg) == -1 && !strcmp(field, "images") && strstr(msg, "257 entries") &&
       strstr(msg, "at most 256"), "257 inline images refused: %s", msg);
    free(s);
    const char *sha = "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81";   /* sha256 of 01 02 03 */
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"height\":1,"
                 "\"width\":1}]}", &js, field, msg) == 0 && !strcmp(js.image_sha256[0], sha),
       "the pixels' sha256 is computed");
    j = jobspec_to_json(&js);
    ok(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(j, "images"), 0), "sha256")), sha),
       "and given in the resolved spec");
    json_decref(j);
    jobspec_free(&js);
    char buf[512];
    snprintf(buf, sizeof buf, "{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\","
             "\"height\":1,\"width\":1,\"sha256\":\"%s\"}]}", sha);
    ok(parse_str(buf, &js, field, msg) == 0, "a matching sha256 is accepted (%s)", msg);
    jobspec_free(&js);
    round_trip(buf);
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"height\":1,\"width\":1,"
        "\"sha256\":\"039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb82\"}]}", "images[0].sha256");
}

int main(void) {
    jobspec_t js;
    char field[128], msg[256];

    /* ---- a minimal train job gets every default ---- */
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d1\"}", &js, field, msg) == 0, "minimal train parses");
    ok(js.type == JOB_TRAIN && strcmp(js.dataset, "d1") == 0, "type and dataset");
    ok(strcmp(js.model.backbone, "dinov2-small") == 0 && js.model.hidden == 384 && js.model.layers == 12 &&
       js.model.heads == 6 && js.model.head_hand == 1, "default backbone dinov2-small with its dims");
    ok(js.epochs == 1 && js.steps == 0, "default one epoch");
    ok(js.split_train[0] == 0 && js.split_train[1] == 0.9 && js.split_val[0] == 0.9 && js.split_val[1] == 1.0,
       "default split 0.9/0.1");
    ok(js.optim.lr_backbone == 1e-5 && js.optim.lr_heads == 1e-3 && js.optim.weight_decay == 0.01 &&
       js.optim.beta1 == 0.9 && js.optim.beta2 == 0.999 && js.optim.eps == 1e-8 &&
       js.optim.clip_grad_norm == 1.0 && js.optim.schedule_cosine == 1, "default AdamW settings");
    ok(js.batch_size == 32, "default train batch 32");
    dtype_plan_t p = jobspec_plan(&js);
    ok(p.input == DT_BF16 && p.compute == DT_BF16 && p.norms == DT_F32 && p.params == DT_BF16 &&
       p.master == DT_F32 && p.grads == DT_F32 && p.has_grads, "train plan: bf16 compute, fp32 master/grads");
    json_t *pj = dtype_plan_to_json(&p);
    ok(pj && strcmp(json_string_value(json_object_get(pj, "encoder_input")), "bf16") == 0 &&
       strcmp(json_string_value(json_object_get(pj, "grads")), "fp32") == 0, "plan JSON names dtypes");
    json_decref(pj);
    jobspec_free(&js);

    /* ---- a full train job ---- */
    const char *full =
        "{\"type\":\"train\",\"dataset\":\"dex\",\"priority\":5,\"submission_id\":\"s-1\","
        "\"precision\":{\"compute\":\"fp32\"},\"seed\":42,"
        "\"model\":{\"backbone\":\"dinov2-large\",\"registers\":4,\"weights\":\"/w/dinov2\","
        "\"freeze_layers\":12,\"heads\":[\"hand\"]},"
        "\"split\":{\"train\":[0,0.8],\"val\":[0.8,1]},\"batch_size\":128,\"steps\":5000,"
        "\"optim\":{\"lr\":{\"backbone\":2e-5,\"heads\":5e-4},\"weight_decay\":0.05,\"betas\":[0.85,0.99],"
        "\"eps\":1e-6,\"clip_grad_norm\":0,\"warmup_steps\":100,\"schedule\":\"constant\"},"
        "\"eval_every\":250,\"checkpoint_every\":500,\"keep_checkpoints\":2,\"resume_from\":\"c-7\"}";
    ok(parse_str(full, &js, field, msg) == 0, "full train parses (%s)", msg);
    ok(js.priority == 5 && js.seed == 42 && js.model.registers == 4 && js.model.freeze_layers == 12 &&
       js.model.layers == 24 && js.batch_size == 128 && js.steps == 5000 && js.epochs == 0 &&
       js.optim.lr_backbone == 2e-5 && js.optim.beta1 == 0.85 && js.optim.warmup_steps == 100 &&
       js.optim.schedule_cosine == 0 && js.optim.clip_grad_norm == 0 && js.eval_every == 250 &&
       js.checkpoint_every == 500 && js.keep_checkpoints == 2 && strcmp(js.resume_from, "c-7") == 0 &&
       strcmp(js.submission_id, "s-1") == 0 && strcmp(js.model.weights, "/w/dinov2") == 0,
       "full train fields");
    p = jobspec_plan(&js);
    ok(p.compute == DT_F32 && p.params == DT_F32 && p.input == DT_F32 && p.master == DT_F32,
       "precision.compute fp32 overrides the train plan");
    jobspec_free(&js);
    round_trip(full);
    round_trip("{\"type\":\"train\",\"dataset\":\"d\",\"epochs\":3}");

    /* ---- augment (train) ---- */
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\"}", &js, field, msg) == 0 && !js.augment.on,
       "augment is off by default");
    ok(augment_plan_to_json(&js, 1, 64, 64) == NULL, "no augmentation: nothing in the plan");
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\",\"augment\":{}}", &js, field, msg) == 0 && js.augment.on &&
       js.augment.rotate_deg[0] == 0 && js.augment.rotate_deg[1] == 0 && js.augment.shift_deg == 0 &&
       js.augment.flip == 0 && js.augment.zoom[0] == 1 && js.augment.zoom[1] == 1 && js.augment.brightness == 0 &&
       js.augment.hue == 0 && js.augment.erase_count == 0, "augment {}: on, every kind the identity");
    jobspec_free(&js);
    const char *aug_full =
        "{\"type\":\"train\",\"dataset\":\"d\",\"augment\":{\"rotate_deg\":[-30,45],\"shift_deg\":5,\"flip\":0.5,"
        "\"zoom\":[0.8,1.25],\"brightness\":0.2,\"contrast\":0.3,\"saturation\":0.4,\"hue\":0.05,"
        "\"erase\":{\"count\":2,\"p\":0.25,\"area\":[0.01,0.1],\"aspect\":[0.5,2]}}}";
    ok(parse_str(aug_full, &js, field, msg) == 0, "full augment parses (%s)", msg);
    ok(js.augment.rotate_deg[0] == -30 && js.augment.rotate_deg[1] == 45 && js.augment.shift_deg == 5 &&
       js.augment.flip == 0.5 && js.augment.zoom[0] == 0.8 && js.augment.zoom[1] == 1.25 &&
       js.augment.brightness == 0.2 && js.augment.contrast == 0.3 && js.augment.saturation == 0.4 &&
       js.augment.hue == 0.05 && js.augment.erase_count == 2 && js.augment.erase_p == 0.25 &&
       js.augment.erase_area[1] == 0.1 && js.augment.erase_aspect[0] == 0.5, "augment fields");
    json_t *ap = augment_plan_to_json(&js, 0, 96, 64);
    const char *cam = json_string_value(json_object_get(ap, "camera"));
    ok(ap && cam && strstr(cam, "no camera_intrinsics") && strstr(cam, "96 px") && strstr(cam, "(48, 32)") &&
       json_real_value(json_array_get(json_object_get(ap, "rotate_deg"), 1)) == 45,
       "plan: the resolved augmentation, and the assumed camera said so: %s", cam ? cam : "?");
    json_decref(ap);
    ap = augment_plan_to_json(&js, 1, 96, 64);
    ok(ap && strstr(json_string_value(json_object_get(ap, "camera")), "dataset's camera_intrinsics"),
       "plan: the dataset's intrinsics");
    json_decref(ap);
    ap = augment_plan_to_json(&js, -1, 0, 0);
    ok(ap && strstr(json_string_value(json_object_get(ap, "camera")), "still loading"), "plan: camera not known yet");
    json_decref(ap);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\",\"augment\":{\"brightness\":0.3}}", &js, field, msg) == 0,
       "photometric only parses");
    ap = augment_plan_to_json(&js, 0, 64, 64);
    ok(ap && strstr(json_string_value(json_object_get(ap, "camera")), "not used"),
       "photometric only: no camera needed");
    json_decref(ap);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\",\"augment\":{\"erase\":{}}}", &js, field, msg) == 0 &&
       js.augment.erase_count == 1 && js.augment.erase_p == 0.5 && js.augment.erase_area[0] == 0.02 &&
       js.augment.erase_area[1] == 0.2 && js.augment.erase_aspect[0] == 0.3 && js.augment.erase_aspect[1] == 3.3,
       "erase {}: one rectangle, p 0.5, 2-20 %% of the image, aspect 0.3-3.3");
    jobspec_free(&js);
    round_trip(aug_full);
    round_trip("{\"type\":\"train\",\"dataset\":\"d\",\"augment\":{}}");
    round_trip("{\"type\":\"train\",\"dataset\":\"d\",\"augment\":{\"flip\":1,\"erase\":{\"count\":4}}}");
    const char *T = "{\"type\":\"train\",\"dataset\":\"d\",\"augment\":";
    const struct { const char *body, *field; } augbad[] = {
        {"[]}", "augment"},
        {"{\"rotate\":[0,1]}}", "augment.rotate"},
        {"{\"rotate_deg\":30}}", "augment.rotate_deg"},
        {"{\"rotate_deg\":[-30]}}", "augment.rotate_deg"},
        {"{\"rotate_deg\":[30,-30]}}", "augment.rotate_deg"},
        {"{\"rotate_deg\":[-181,0]}}", "augment.rotate_deg"},
        {"{\"rotate_deg\":[0,\"9\"]}}", "augment.rotate_deg"},
        {"{\"shift_deg\":-1}}", "augment.shift_deg"},
        {"{\"shift_deg\":31}}", "augment.shift_deg"},
        {"{\"shift_deg\":[0,5]}}", "augment.shift_deg"},
        {"{\"flip\":1.5}}", "augment.flip"},
        {"{\"flip\":true}}", "augment.flip"},
        {"{\"zoom\":[0,1]}}", "augment.zoom"},
        {"{\"zoom\":[0.9,2.5]}}", "augment.zoom"},
        {"{\"zoom\":[1.2,1.1]}}", "augment.zoom"},
        {"{\"brightness\":-0.1}}", "augment.brightness"},
        {"{\"contrast\":1.01}}", "augment.contrast"},
        {"{\"saturation\":\"x\"}}", "augment.saturation"},
        {"{\"hue\":0.6}}", "augment.hue"},
        {"{\"erase\":true}}", "augment.erase"},
        {"{\"erase\":{\"count\":0}}}", "augment.erase.count"},
        {"{\"erase\":{\"count\":5}}}", "augment.erase.count"},
        {"{\"erase\":{\"count\":1.5}}}", "augment.erase.count"},
        {"{\"erase\":{\"p\":2}}}", "augment.erase.p"},
        {"{\"erase\":{\"area\":[0,0.1]}}}", "augment.erase.area"},
        {"{\"erase\":{\"area\":[0.1,0.6]}}}", "augment.erase.area"},
        {"{\"erase\":{\"aspect\":[0.05,1]}}}", "augment.erase.aspect"},
        {"{\"erase\":{\"aspect\":[2,1]}}}", "augment.erase.aspect"},
        {"{\"erase\":{\"colour\":0}}}", "augment.erase.colour"},
    };
    for (size_t i = 0; i < sizeof augbad / sizeof augbad[0]; i++) {
        char t[512];
        snprintf(t, sizeof t, "%s%s", T, augbad[i].body);
        bad(t, augbad[i].field);
    }
    ok(parse_str("{\"type\":\"train\",\"dataset\":\"d\",\"augment\":{\"zoom\":[0.9,3]}}", &js, field, msg) == -1 &&
       strstr(msg, "augment.zoom[1] = 3") && strstr(msg, "[0.5, 2]"), "range errors name the element and the range: %s", msg);
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"augment\":{}}", "augment");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[0],\"augment\":{}}", "augment");
    bad("{\"type\":\"debug\",\"dataset\":\"d\",\"augment\":{}}", "augment");

    /* ---- eval / debug / infer ---- */
    ok(parse_str("{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"c-1\"}", &js, field, msg) == 0,
       "eval parses");
    ok(js.split_is_val == 1 && js.batch_size == 64 && js.model.backbone[0] == 0,
       "eval defaults: val split, batch 64, model from the checkpoint");
    p = jobspec_plan(&js);
    ok(p.compute == DT_BF16 && p.params == DT_BF16 && !p.has_grads, "eval plan: bf16 params, no grads");
    jobspec_free(&js);
    round_trip("{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"c-1\",\"split\":\"train\"}");
    round_trip("{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"c-1\",\"indices\":[3,1,2],\"batch_size\":2}");

    ok(parse_str("{\"type\":\"debug\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batches\":3}",
                 &js, field, msg) == 0, "debug parses");
    p = jobspec_plan(&js);
    ok(p.input == DT_F32 && p.compute == DT_F32 && p.params == DT_F32 && p.grads == DT_F32 && p.has_grads &&
       js.batches == 3 && js.model.hidden == 64, "debug plan: all fp32");
    jobspec_free(&js);
    round_trip("{\"type\":\"debug\",\"dataset\":\"d\",\"checkpoint\":\"c\",\"batches\":2,\"batch_size\":4}");

    /* infer with an inline 2x2 image: 12 bytes = 16 base64 chars */
    const uint8_t px[12] = {0, 1, 2, 250, 251, 252, 7, 8, 9, 100, 200, 255};
    const char *b64 = "AAEC+vv8BwgJZMj/";
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"c\",\"images\":[{\"u8_hwc_b64\":\"%s\","
             "\"height\":2,\"width\":2}],\"outputs\":[\"joints\",\"cls\"]}", b64);
    ok(parse_str(buf, &js, field, msg) == 0, "infer with an image parses (%s)", msg);
    ok(js.n_images == 1 && js.image_h[0] == 2 && js.image_w[0] == 2 && memcmp(js.images[0], px, 12) == 0,
       "base64 image decoded exactly");
    ok(js.out_cls == 1 && js.out_patch_tokens == 0, "outputs");
    p = jobspec_plan(&js);
    ok(p.compute == DT_BF16 && !p.has_grads, "infer plan: bf16");
    jobspec_free(&js);
    round_trip(buf);
    /* unpadded base64 of 1 byte ("AQ") and 2 bytes ("AQI") lengths: 3 bytes need none */
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"height\":1,"
                 "\"width\":1}],\"precision\":{\"compute\":\"fp32\"}}", &js, field, msg) == 0 &&
       js.images[0][0] == 1 && js.images[0][1] == 2 && js.images[0][2] == 3, "1x1 image");
    p = jobspec_plan(&js);
    ok(p.compute == DT_F32 && p.params == DT_F32, "infer fp32 on request");
    jobspec_free(&js);
    /* base64 as encoders write it: wrapped lines, or the padding left out */
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\\nBAUG\",\"height\":2,"
                 "\"width\":1}]}", &js, field, msg) == 0 && js.images[0][3] == 4 && js.images[0][5] == 6,
       "base64 wrapped over two lines (%s)", msg);
    jobspec_free(&js);
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQIDBAU\",\"height\":1,"
                 "\"width\":1}]}", &js, field, msg) == -1 && strstr(msg, "decodes to 5 bytes"),
       "unpadded base64 (5 bytes) decodes, and its size is checked: %s", msg);
    ok(parse_str("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AR==\",\"height\":1,"
                 "\"width\":1}]}", &js, field, msg) == -1 && strstr(msg, "base64"),
       "non-canonical base64 (trailing bits) refused: %s", msg);
    round_trip("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[0,5],\"outputs\":[\"patch_tokens\"]}");

    /* ---- invalid: every kind ---- */
    bad("[1,2]", "");
    bad("{\"dataset\":\"d\"}", "type");
    bad("{\"type\":\"fit\",\"dataset\":\"d\"}", "type");
    bad("{\"type\":3,\"dataset\":\"d\"}", "type");
    bad("{\"type\":\"train\"}", "dataset");
    bad("{\"type\":\"train\",\"dataset\":\"\"}", "dataset");
    bad("{\"type\":\"train\",\"dataset\":7}", "dataset");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"bogus\":1}", "bogus");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"epochs\":1}", "epochs");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"checkpoint\":\"c\"}", "checkpoint");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"priority\":\"high\"}", "priority");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"seed\":-1}", "seed");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"seed\":1.5}", "seed");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"precision\":{\"compute\":\"fp16\"}}", "precision.compute");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"precision\":{\"dtype\":\"fp32\"}}", "precision.dtype");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"precision\":\"fp32\"}", "precision");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"backbone\":\"vit-b\"}}", "model.backbone");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"registers\":2}}", "model.registers");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\",\"freeze_layers\":3}}",
        "model.freeze_layers");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"freeze_layers\":-1}}", "model.freeze_layers");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"heads\":[\"tail\"]}}", "model.heads[0]");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"heads\":[]}}", "model.heads");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"heads\":\"hand\"}}", "model.heads");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"model\":{\"depth\":3}}", "model.depth");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"split\":{\"train\":[0,1.2],\"val\":[0.9,1]}}", "split.train");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"split\":{\"train\":[-0.1,0.5],\"val\":[0.9,1]}}", "split.train");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"split\":{\"train\":[0,0.95],\"val\":[0.9,1]}}", "split");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"split\":{\"train\":[0,0.9],\"val\":[0.95,0.95]}}", "split.val");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"split\":{\"train\":[0.5]}}", "split.train");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"split\":{\"test\":[0,1]}}", "split.test");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"batch_size\":0}", "batch_size");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"batch_size\":4097}", "batch_size");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"batch_size\":8.5}", "batch_size");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"epochs\":2,\"steps\":10}", "steps");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"steps\":0}", "steps");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"epochs\":0}", "epochs");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"lr\":{\"heads\":-1}}}", "optim.lr.heads");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"lr\":{\"backbone\":\"x\"}}}", "optim.lr.backbone");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"lr\":{\"neck\":1}}}", "optim.lr.neck");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"lr\":0.1}}", "optim.lr");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"weight_decay\":2}}", "optim.weight_decay");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"betas\":[0.9,1.0]}}", "optim.betas");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"betas\":[0.9]}}", "optim.betas");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"eps\":0}}", "optim.eps");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"clip_grad_norm\":-1}}", "optim.clip_grad_norm");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"warmup_steps\":-5}}", "optim.warmup_steps");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"schedule\":\"linear\"}}", "optim.schedule");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"optim\":{\"momentum\":0.9}}", "optim.momentum");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"eval_every\":-1}", "eval_every");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"keep_checkpoints\":\"all\"}", "keep_checkpoints");
    bad("{\"type\":\"train\",\"dataset\":\"d\",\"resume_from\":\"\"}", "resume_from");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"split\":\"test\"}", "split");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"split\":\"val\",\"indices\":[1]}", "indices");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[]}", "indices");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[1,-2]}", "indices[1]");
    bad("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[1,\"2\"]}", "indices[1]");
    bad("{\"type\":\"debug\",\"dataset\":\"d\",\"batches\":0}", "batches");
    bad("{\"type\":\"debug\",\"dataset\":\"d\",\"indices\":[0]}", "indices");
    bad("{\"type\":\"infer\",\"dataset\":\"d\"}", "indices");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[0],\"images\":[]}", "images");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[0],\"outputs\":[\"depth\"]}", "outputs[0]");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"indices\":[0],\"outputs\":[\"cls\",\"cls\"]}", "outputs[1]");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"height\":2,\"width\":1}]}",
        "images[0].u8_hwc_b64");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQ*D\",\"height\":1,\"width\":1}]}",
        "images[0].u8_hwc_b64");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQIDB\",\"height\":1,\"width\":1}]}",
        "images[0].u8_hwc_b64");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"width\":1}]}",
        "images[0].height");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"height\":1,\"width\":0}]}",
        "images[0].width");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"u8_hwc_b64\":\"AQID\",\"height\":1,\"width\":1,"
        "\"channels\":3}]}", "images[0].channels");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[{\"height\":1,\"width\":1}]}", "images[0].u8_hwc_b64");
    bad("{\"type\":\"infer\",\"dataset\":\"d\",\"images\":[7]}", "images[0]");

    /* a failed parse leaves nothing to free and a later free is harmless */
    ok(parse_str("{\"type\":\"eval\",\"dataset\":\"d\",\"indices\":[1,2,-3]}", &js, field, msg) == -1 &&
       js.ranges == NULL, "failed parse frees what it allocated");
    jobspec_free(&js);
    ok(strcmp(job_type_name(JOB_INFER), "infer") == 0 && strcmp(job_type_name(JOB_TRAIN), "train") == 0,
       "job_type_name");
    test_bounds();
    test_devices();
    return tap_done();
}
