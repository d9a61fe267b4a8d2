/* tests/unit/test_jobspec_fuzz.c — job specs as a client could get them
 * wrong: valid specs of every type, mutated at random paths (a key removed,
 * a value of another type or an extreme value, an unknown key added, arrays
 * emptied or grown, deep nesting), thousands of times from a fixed seed.
 * Whatever comes in, the validator must (under ASan/UBSan) not crash, and
 * either reject with a field path and a message, or accept a spec that obeys
 * the invariants the stages rely on and survives the round trip through
 * jobspec_to_json unchanged. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/jobspec.h"
#include "tests/tap.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static int pick(int n) { return (int)(rnd() % (uint32_t)n); }

static const char *const bases[] = {
    "{\"type\":\"train\",\"dataset\":\"dex\",\"priority\":5,\"submission_id\":\"s-1\","
    "\"precision\":{\"compute\":\"fp32\"},\"seed\":42,"
    "\"model\":{\"backbone\":\"dinov2-large\",\"registers\":4,\"freeze_layers\":12,\"heads\":[\"hand\"]},"
    "\"split\":{\"train\":[0,0.8],\"val\":[0.8,1]},\"batch_size\":128,\"steps\":5000,"
    "\"optim\":{\"lr\":{\"backbone\":2e-5,\"heads\":5e-4},\"weight_decay\":0.05,\"betas\":[0.85,0.99],"
    "\"eps\":1e-6,\"clip_grad_norm\":0,\"warmup_steps\":100,\"schedule\":\"constant\"},"
    "\"eval_every\":250,\"checkpoint_every\":500,\"keep_checkpoints\":2}",
    "{\"type\":\"train\",\"dataset\":\"d\",\"epochs\":3,\"model\":{\"backbone\":\"dinov2-tiny\"}}",
    "{\"type\":\"train\",\"dataset\":\"d\",\"steps\":9,\"augment\":{\"rotate_deg\":[-30,30],\"shift_deg\":5,"
    "\"flip\":0.5,\"zoom\":[0.9,1.1],\"brightness\":0.2,\"contrast\":0.2,\"saturation\":0.2,\"hue\":0.05,"
    "\"erase\":{\"count\":2,\"p\":0.5,\"area\":[0.02,0.2],\"aspect\":[0.3,3.3]}}}",
    "{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"c-1\",\"indices\":[3,1,2],\"batch_size\":2}",
    "{\"type\":\"eval\",\"dataset\":\"d\",\"checkpoint\":\"c-1\",\"split\":\"train\"}",
    "{\"type\":\"debug\",\"dataset\":\"d\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batches\":3}",
    "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"c-2\",\"indices\":[0,5],\"outputs\":[\"cls\",\"patch_tokens\"]}",
    "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"c-2\",\"indices\":[[0,16],5,[100,200]]}",
    /* one 2x1 RGB image: 6 bytes */
    "{\"type\":\"infer\",\"dataset\":\"d\",\"checkpoint\":\"c-2\","
    "\"images\":[{\"u8_hwc_b64\":\"AQIDBAUG\",\"height\":2,\"width\":1}],\"precision\":{\"compute\":\"fp32\"}}",
};

/* Every (container, key or index) place of j, depth first. */
typedef struct {
    json_t *parent;
    const char *key;   /* NULL: array index */
    size_t index;
} place_t;

static void places(json_t *j, place_t *out, int *n, int cap) {
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            if (*n < cap) out[(*n)++] = (place_t){j, k, 0};
            places(v, out, n, cap);
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            if (*n < cap) out[(*n)++] = (place_t){j, NULL, i};
            places(v, out, n, cap);
        }
    }
}

static json_t *random_value(int depth) {
    static char big[5000];
    if (!big[0]) memset(big, 'x', sizeof big - 1);
    switch (pick(depth > 3 ? 16 : 18)) {
    case 0: return json_null();
    case 1: return json_true();
    case 2: return json_false();
    case 3: return json_integer(0);
    case 4: return json_integer(-1);
    case 5: return json_integer(INT64_MAX);
    case 6: return json_integer(INT64_MIN);
    case 7: return json_integer((json_int_t)1 << 31);
    case 8: return json_real(1e308);
    case 9: return json_real(-0.5);
    case 10: return json_real(1e-300);
    case 11: return json_string("");
    case 12: return json_string("dinov2-large");
    case 13: return json_string(big);
    case 14: return json_string("c-1\n\"; DROP TABLE jobs");
    case 15: return json_array();
    case 16: {
        json_t *a = json_array();
        int n = pick(4);
        for (int i = 0; i < n; i++) json_array_append_new(a, random_value(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        json_object_set_new(o, pick(2) ? "type" : "zz", random_value(depth + 1));
        return o;
    }
    }
}

static void mutate(json_t *root) {
    place_t pl[256];
    int n = 0;
    places(root, pl, &n, 256);
    if (n == 0) return;
    place_t p = pl[pick(n)];
    int op = pick(5);
    if (p.key) {
        if (op == 0) json_object_del(p.parent, p.key);
        else if (op == 1) json_object_set_new(p.parent, "unknown_field", random_value(0));
        else json_object_set_new(p.parent, p.key, random_value(0));
    } else {
        if (op == 0) json_array_remove(p.parent, p.index);
        else if (op == 1) json_array_append_new(p.parent, random_value(0));
        else if (op == 2) json_array_clear(p.parent);
        else json_array_set_new(p.parent, p.index, random_value(0));
    }
}

/* Invariants the stages rely on; NULL when all hold, else which one failed. */
static const char *invariant(const jobspec_t *js) {
    if (js->type < JOB_TRAIN || js->type > JOB_INFER) return "type";
    if (!js->dataset[0]) return "dataset";
    if (js->batch_size < 1) return "batch_size";
    if (js->type == JOB_TRAIN) {
        if ((js->steps > 0) == (js->epochs > 0)) return "exactly one of steps/epochs";
        if (!(js->split_train[0] >= 0 && js->split_train[0] < js->split_train[1] && js->split_train[1] <= 1))
            return "split.train";
        if (!(js->split_val[0] >= 0 && js->split_val[0] <= js->split_val[1] && js->split_val[1] <= 1))
            return "split.val";
        if (!(js->optim.lr_backbone >= 0 && js->optim.lr_heads >= 0 && isfinite(js->optim.lr_heads))) return "lr";
        if (!(js->optim.beta1 >= 0 && js->optim.beta1 < 1 && js->optim.beta2 >= 0 && js->optim.beta2 < 1))
            return "betas";
        if (!(js->optim.eps > 0) || !(js->optim.clip_grad_norm >= 0)) return "eps/clip";
        const augment_spec_t *a = &js->augment;
        if (a->on && !(a->rotate_deg[0] >= -180 && a->rotate_deg[0] <= a->rotate_deg[1] && a->rotate_deg[1] <= 180))
            return "augment.rotate_deg";
        if (a->on && (!(a->shift_deg >= 0 && a->shift_deg <= 30) || !(a->flip >= 0 && a->flip <= 1)))
            return "augment.shift/flip";
        if (a->on && !(a->zoom[0] >= 0.5 && a->zoom[0] <= a->zoom[1] && a->zoom[1] <= 2)) return "augment.zoom";
        if (a->on && !(a->brightness >= 0 && a->brightness <= 1 && a->contrast >= 0 && a->contrast <= 1 &&
                       a->saturation >= 0 && a->saturation <= 1 && a->hue >= 0 && a->hue <= 0.5))
            return "augment photometric";
        if (a->erase_count < 0 || a->erase_count > 4) return "augment.erase.count";
        if (a->erase_count && !(a->erase_p >= 0 && a->erase_p <= 1 && a->erase_area[0] > 0 &&
                                a->erase_area[0] <= a->erase_area[1] && a->erase_area[1] <= 0.5 &&
                                a->erase_aspect[0] >= 0.1 && a->erase_aspect[0] <= a->erase_aspect[1] &&
                                a->erase_aspect[1] <= 10))
            return "augment.erase";
    } else if (js->augment.on) {
        return "augment outside train";
    }
    if (js->type == JOB_INFER && js->n_images == 0 && js->n_indices == 0) return "infer inputs";
    int64_t total = 0;
    for (int i = 0; i < js->n_ranges; i++) {
        if (js->ranges[i].begin < 0 || js->ranges[i].end <= js->ranges[i].begin || js->ranges[i].end > 2147483648LL)
            return "indices";
        total += js->ranges[i].end - js->ranges[i].begin;
    }
    if (total != js->n_indices || js->n_ranges > JS_MAX_INDEX_ENTRIES) return "indices count";
    if (js->type == JOB_INFER && (js->n_indices > JS_MAX_INFER_SAMPLES || js->n_images > JS_MAX_IMAGES))
        return "infer inputs bound";
    for (int i = 0; i < js->n_images; i++)
        if (js->image_h[i] < 1 || js->image_w[i] < 1 || !js->images[i]) return "images";
    if (js->model.freeze_layers < 0 || (js->model.layers && js->model.freeze_layers > js->model.layers))
        return "freeze_layers";
    return NULL;
}

int main(void) {
    const int rounds = 20000;
    int accepted = 0, rejected = 0, bad_reject = 0, bad_inv = 0, bad_trip = 0;
    const char *first_inv = NULL;
    char first_trip[512] = "", first_rej[1024] = "";
    size_t nb = sizeof bases / sizeof bases[0];
    for (size_t b = 0; b < nb; b++) {
        json_error_t je;
        json_t *j = json_loads(bases[b], 0, &je);
        jobspec_t js;
        char field[128], msg[256];
        int r = j ? jobspec_parse(j, &js, field, sizeof field, msg, sizeof msg) : -2;
        ok(r == 0, "base spec %zu is valid (%s)", b, r == 0 ? "ok" : r == -2 ? je.text : msg);
        if (r == 0) jobspec_free(&js);
        json_decref(j);
    }
    for (int it = 0; it < rounds; it++) {
        json_t *j = json_loads(bases[it % nb], 0, NULL);
        int k = 1 + pick(3);
        for (int m = 0; m < k; m++) mutate(j);
        jobspec_t js;
        char field[128] = "", msg[256] = "";
        int r = jobspec_parse(j, &js, field, sizeof field, msg, sizeof msg);
        if (r != 0) {
            rejected++;
            if (r != -1 || !msg[0] || !field[0]) {
                if (!bad_reject++) {
                    char *t = json_dumps(j, JSON_COMPACT);
                    snprintf(first_rej, sizeof first_rej, "r=%d field='%s' msg='%s' spec=%.300s", r, field, msg, t);
                    free(t);
                }
            }
        } else {
            accepted++;
            const char *why = invariant(&js);
            if (why && !bad_inv++) first_inv = why;
            json_t *a = jobspec_to_json(&js);
            jobspec_t js2;
            char f2[128], m2[256];
            int r2 = jobspec_parse(a, &js2, f2, sizeof f2, m2, sizeof m2);
            json_t *b2 = r2 == 0 ? jobspec_to_json(&js2) : NULL;
            if (r2 != 0 || !json_equal(a, b2)) {
                if (!bad_trip++) snprintf(first_trip, sizeof first_trip, "r2=%d %s: %s", r2, f2, m2);
            }
            json_decref(b2);
            if (r2 == 0) jobspec_free(&js2);
            json_decref(a);
            jobspec_free(&js);
        }
        json_decref(j);
    }
    diag("%d mutated specs: %d accepted, %d rejected", rounds, accepted, rejected);
    ok(accepted > 0 && rejected > rounds / 2, "the mutations reach both outcomes (%d accepted, %d rejected)",
       accepted, rejected);
    ok(bad_reject == 0, "every rejection names a field and says why (%d without%s%s)", bad_reject,
       bad_reject ? ": " : "", first_rej);
    ok(bad_inv == 0, "every accepted spec keeps the stages' invariants (%d broke %s)", bad_inv,
       first_inv ? first_inv : "none");
    ok(bad_trip == 0, "every accepted spec survives jobspec_to_json -> parse unchanged (%d did not%s%s)", bad_trip,
       bad_trip ? ": " : "", first_trip);
    return tap_done();
}
