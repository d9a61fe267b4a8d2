/* gpu/jobspec.c — parse, validate, default and print the job spec of SPEC §4,
 * and resolve the per-stage dtype plan of SPEC §5.
 *
 * Owns: jobspec_parse / jobspec_free / jobspec_to_json / jobspec_plan /
 * dtype_plan_to_json, and the base64 glue (GnuTLS's codec) for
 * inline infer images.
 *
 * Rules (documented here because the API answers with them):
 * - Every object is checked for unknown keys; the error names the dotted path
 *   ("optim.lr.heads", "images[2].width"). Fields of another job type count as
 *   unknown ("epochs" in an eval job is rejected).
 * - Numbers: integer fields must be JSON integers; real fields accept any
 *   JSON number. Ranges are checked and named.
 * - Defaults: priority 0, seed 0, model.backbone "dinov2-small", registers 0,
 *   freeze_layers 0, heads ["hand"], split train [0,0.9) val [0.9,1.0),
 *   batch_size 32 (train) / 64 (eval) / 8 (debug) / 16 (infer), epochs 1 when
 *   neither epochs nor steps is given, AdamW lr backbone 1e-5 heads 1e-3,
 *   weight_decay 0.01, betas [0.9,0.999], eps 1e-8, clip_grad_norm 1.0,
 *   warmup_steps 0, schedule cosine, eval_every 1000, checkpoint_every 1000
 *   (0 disables the periodic one; both also run at the end), keep_checkpoints 3
 *   (0 keeps all), eval split "val", debug batches 1, infer outputs ["joints"].
 * - eval/debug/infer: when "model" is absent and a checkpoint is given, the
 *   model comes from the checkpoint; the parsed spec then has model.backbone ""
 *   and jobspec_to_json omits "model".
 * - infer: exactly one of "indices" and "images"; joints and confidences are
 *   always produced, "outputs" may add "cls" and "patch_tokens".
 * - train "augment" (its own section below): off when absent; inside it every
 *   kind is off unless named.
 * - devices (train, eval, infer): a count N in [1, 16] or a list of 1..16
 *   distinct device indices (the daemon's, as --devices numbers them) in rank
 *   order; default 1. Whether the daemon has them is the daemon's to check
 *   (daemon/admit.c). The resolved spec omits it when it is 1.
 * - indices (eval, infer): an array of at most JS_MAX_INDEX_ENTRIES (4096)
 *   entries, each a sample index i or a range [begin, end) (end exclusive,
 *   like the split fractions and Python's range): [0, 5, [100, 200]] selects
 *   0, 5 and 100..199, in that order; duplicates are allowed. A range of one
 *   sample prints back as its index. In all an eval job selects at most
 *   JS_MAX_INDEX_SAMPLES and an infer job JS_MAX_INFER_SAMPLES samples.
 *   Whether they exist in the dataset is checked at submission (when its size
 *   is known) and by the stage (jobspec_indices_expand).
 * - images (infer): at most JS_MAX_IMAGES (256), each at most 4096 on a side;
 *   the resolved spec gives every image's "sha256" (of its u8 bytes), which a
 *   client may also send (it must match). Once the job has ended the daemon
 *   drops the pixels from the stored spec and keeps height, width and sha256.
 */
#include "gpu/jobspec.h"
#include "store/sha256.h"

#include <ctype.h>
#include <gnutls/gnutls.h>
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- base64 (RFC 4648): GnuTLS's codec ---------------------------------------- */

/* Decodes s[len] (whitespace ignored; padding may be left out, as some
 * encoders do: it is added). Returns a malloc'd buffer and its size in
 * *outlen, or NULL with a message. */
static uint8_t *b64_decode(const char *s, size_t len, size_t *outlen, char *msg, size_t msglen) {
    size_t sig = 0;
    int padded = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') continue;
        sig++;
        padded |= s[i] == '=';
    }
    if (sig % 4 == 1 || (padded && sig % 4)) {
        snprintf(msg, msglen, "base64 length %zu is not a valid encoding", sig);
        return NULL;
    }
    size_t pad = padded ? 0 : (4 - sig % 4) % 4;
    if (len > (size_t)UINT_MAX - 4) {
        snprintf(msg, msglen, "base64 text of %zu bytes is too long", len);
        return NULL;
    }
    char *tmp = NULL;
    if (pad) {
        tmp = malloc(len + pad);
        if (!tmp) { snprintf(msg, msglen, "out of memory decoding base64"); return NULL; }
        memcpy(tmp, s, len);
        memset(tmp + len, '=', pad);
    }
    gnutls_datum_t in = {(unsigned char *)(tmp ? tmp : s), (unsigned)(len + pad)}, out = {NULL, 0};
    int r = gnutls_base64_decode2(&in, &out);
    free(tmp);
    if (r < 0) {
        snprintf(msg, msglen, "not valid base64 (%s)", gnutls_strerror(r));
        return NULL;
    }
    uint8_t *p = malloc(out.size ? out.size : 1);   /* owned by the spec, freed with free() */
    if (p && out.size) memcpy(p, out.data, out.size);
    gnutls_free(out.data);
    if (!p) { snprintf(msg, msglen, "out of memory decoding base64"); return NULL; }
    *outlen = out.size;
    return p;
}

/* n bytes as padded base64 (malloc'd, NUL-terminated), NULL when out of memory. */
static char *b64_encode(const uint8_t *p, size_t n) {
    if (n > UINT_MAX / 2) return NULL;
    gnutls_datum_t in = {(unsigned char *)p, (unsigned)n}, out = {NULL, 0};
    if (gnutls_base64_encode2(&in, &out) < 0) return NULL;
    char *s = malloc((size_t)out.size + 1);
    if (s) {
        memcpy(s, out.data, out.size);
        s[out.size] = 0;
    }
    gnutls_free(out.data);
    return s;
}

/* ---- parse context ------------------------------------------------------------ */

typedef struct {
    char *field; size_t fieldlen;
    char *msg; size_t msglen;
} pctx_t;

__attribute__((format(printf, 3, 4)))
static int fail(pctx_t *c, const char *field, const char *fmt, ...) {
    if (c->field && c->fieldlen) snprintf(c->field, c->fieldlen, "%s", field);
    if (c->msg && c->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->msg, c->msglen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void path_join(char *out, size_t n, const char *prefix, const char *key) {
    if (prefix && *prefix) snprintf(out, n, "%s.%s", prefix, key);
    else snprintf(out, n, "%s", key);
}

/* Rejects keys of obj that are not in allowed (NULL-terminated). */
static int check_keys(pctx_t *c, const json_t *obj, const char *prefix, const char *const *allowed) {
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        int found = 0;
        for (int i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0) { found = 1; break; }
        if (!found) {
            char p[256];
            path_join(p, sizeof p, prefix, key);
            return fail(c, p, "unknown field '%s'", p);
        }
    }
    return 0;
}

/* Integer field. Absent: *out untouched (the default), returns 0. */
static int get_long(pctx_t *c, const json_t *obj, const char *prefix, const char *key,
                    long long lo, long long hi, long long *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    char p[256];
    path_join(p, sizeof p, prefix, key);
    if (!json_is_integer(v)) return fail(c, p, "%s must be an integer", p);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return fail(c, p, "%s = %lld is out of range [%lld, %lld]", p, x, lo, hi);
    *out = x;
    return 0;
}

static int get_int(pctx_t *c, const json_t *obj, const char *prefix, const char *key,
                   long long lo, long long hi, int *out) {
    long long x = *out;
    if (get_long(c, obj, prefix, key, lo, hi, &x)) return -1;
    *out = (int)x;
    return 0;
}

static int get_num(pctx_t *c, const json_t *obj, const char *prefix, const char *key,
                   double lo, double hi, int lo_open, int hi_open, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    char p[256];
    path_join(p, sizeof p, prefix, key);
    if (!json_is_number(v)) return fail(c, p, "%s must be a number", p);
    double x = json_number_value(v);
    if (!isfinite(x) || (lo_open ? x <= lo : x < lo) || (hi_open ? x >= hi : x > hi))
        return fail(c, p, "%s = %g is out of range %c%g, %g%c", p, x, lo_open ? '(' : '[', lo, hi,
                    hi_open ? ')' : ']');
    *out = x;
    return 0;
}

/* String field copied into out[outlen]; returns 1 when present, 0 absent, -1 error. */
static int get_str(pctx_t *c, const json_t *obj, const char *prefix, const char *key,
                   char *out, size_t outlen, int allow_empty) {
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    char p[256];
    path_join(p, sizeof p, prefix, key);
    if (!json_is_string(v)) return fail(c, p, "%s must be a string", p);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n != strlen(s)) return fail(c, p, "%s contains a NUL character", p);
    if (n == 0 && !allow_empty) return fail(c, p, "%s must not be empty", p);
    if (n >= outlen) return fail(c, p, "%s is too long (%zu bytes, at most %zu)", p, n, outlen - 1);
    memcpy(out, s, n + 1);
    return 1;
}

static int get_object(pctx_t *c, const json_t *obj, const char *key, const char *path, json_t **out) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v) return 0;
    if (!json_is_object(v)) return fail(c, path, "%s must be an object", path);
    *out = v;
    return 1;
}

/* ---- model --------------------------------------------------------------------- */

static const struct { const char *name; int hidden, layers, heads; } js_backbones[] = {
    {"dinov2-tiny", 64, 2, 2},
    {"dinov2-small", 384, 12, 6},
    {"dinov2-base", 768, 12, 12},
    {"dinov2-large", 1024, 24, 16},
};

static int set_backbone(model_spec_t *m, const char *name) {
    for (size_t i = 0; i < sizeof js_backbones / sizeof js_backbones[0]; i++) {
        if (strcmp(js_backbones[i].name, name) == 0) {
            snprintf(m->backbone, sizeof m->backbone, "%s", name);
            m->hidden = js_backbones[i].hidden;
            m->layers = js_backbones[i].layers;
            m->heads = js_backbones[i].heads;
            return 0;
        }
    }
    return -1;
}

static int parse_model(pctx_t *c, const json_t *mo, model_spec_t *m) {
    static const char *const keys[] = {"backbone", "registers", "weights", "freeze_layers", "heads", NULL};
    if (check_keys(c, mo, "model", keys)) return -1;
    char name[64] = "dinov2-small";
    if (get_str(c, mo, "model", "backbone", name, sizeof name, 0) < 0) return -1;
    if (set_backbone(m, name))
        return fail(c, "model.backbone",
                    "model.backbone '%s' is not one of dinov2-tiny, dinov2-small, dinov2-base, dinov2-large",
                    name);
    m->registers = 0;
    if (get_int(c, mo, "model", "registers", 0, 4, &m->registers)) return -1;
    if (m->registers != 0 && m->registers != 4)
        return fail(c, "model.registers", "model.registers must be 0 or 4 (got %d)", m->registers);
    if (get_str(c, mo, "model", "weights", m->weights, sizeof m->weights, 0) < 0) return -1;
    m->freeze_layers = 0;
    if (get_int(c, mo, "model", "freeze_layers", 0, m->layers, &m->freeze_layers)) return -1;
    m->head_hand = 1;
    json_t *h = json_object_get(mo, "heads");
    if (h) {
        if (!json_is_array(h)) return fail(c, "model.heads", "model.heads must be an array of strings");
        m->head_hand = 0;
        size_t i;
        json_t *e;
        json_array_foreach(h, i, e) {
            char p[64];
            snprintf(p, sizeof p, "model.heads[%zu]", i);
            if (!json_is_string(e)) return fail(c, p, "%s must be a string", p);
            const char *s = json_string_value(e);
            if (strcmp(s, "hand") == 0) {
                if (m->head_hand) return fail(c, p, "%s: head 'hand' is listed twice", p);
                m->head_hand = 1;
            } else if (strcmp(s, "object") == 0) {
                return fail(c, p, "%s: the 'object' head is not supported yet", p);
            } else {
                return fail(c, p, "%s: unknown head '%s' (known: hand)", p, s);
            }
        }
        if (!m->head_hand) return fail(c, "model.heads", "model.heads must contain \"hand\"");
    }
    return 0;
}

/* ---- augment (train) ----------------------------------------------------------------
 * "augment": {"rotate_deg":[lo,hi], "shift_deg":x, "flip":p, "zoom":[lo,hi],
 *             "brightness":x, "contrast":x, "saturation":x, "hue":x,
 *             "erase":{"count":n, "p":p, "area":[lo,hi], "aspect":[lo,hi]}}
 * What each kind does: gpu/augment.h. A kind that is not named is the
 * identity; "erase" given without its fields means one rectangle with
 * probability 0.5 of 2-20 % of the image, aspect 0.3-3.3. */

#define AUG_ROTATE_MAX 180.0   /* degrees either way */
#define AUG_SHIFT_MAX 30.0     /* degrees of pan/tilt */
#define AUG_ZOOM_MIN 0.5
#define AUG_ZOOM_MAX 2.0
#define AUG_ERASE_MAX 4        /* = AUG_MAX_ERASE of gpu/augment.h */

/* [lo, hi] with min <= lo <= hi <= max (min excluded when min_open). Absent: 0. */
static int get_range(pctx_t *c, const json_t *o, const char *prefix, const char *key, double min, double max,
                     int min_open, double out[2]) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    char p[96];
    path_join(p, sizeof p, prefix, key);
    if (!json_is_array(v) || json_array_size(v) != 2)
        return fail(c, p, "%s must be an array of two numbers [min, max]", p);
    double r[2];
    for (int i = 0; i < 2; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_number(e)) return fail(c, p, "%s[%d] must be a number", p, i);
        r[i] = json_number_value(e);
        if (!isfinite(r[i]) || (min_open ? r[i] <= min : r[i] < min) || r[i] > max)
            return fail(c, p, "%s[%d] = %g is out of range %c%g, %g]", p, i, r[i], min_open ? '(' : '[', min, max);
    }
    if (r[0] > r[1]) return fail(c, p, "%s: min %g is above max %g", p, r[0], r[1]);
    out[0] = r[0];
    out[1] = r[1];
    return 0;
}

static int parse_augment(pctx_t *c, const json_t *o, augment_spec_t *a) {
    static const char *const keys[] = {"rotate_deg", "shift_deg", "flip", "zoom", "brightness", "contrast",
                                       "saturation", "hue", "erase", NULL};
    if (check_keys(c, o, "augment", keys)) return -1;
    memset(a, 0, sizeof *a);
    a->on = 1;
    a->zoom[0] = a->zoom[1] = 1.0;
    if (get_range(c, o, "augment", "rotate_deg", -AUG_ROTATE_MAX, AUG_ROTATE_MAX, 0, a->rotate_deg)) return -1;
    if (get_num(c, o, "augment", "shift_deg", 0, AUG_SHIFT_MAX, 0, 0, &a->shift_deg)) return -1;
    if (get_num(c, o, "augment", "flip", 0, 1, 0, 0, &a->flip)) return -1;
    if (get_range(c, o, "augment", "zoom", AUG_ZOOM_MIN, AUG_ZOOM_MAX, 0, a->zoom)) return -1;
    if (get_num(c, o, "augment", "brightness", 0, 1, 0, 0, &a->brightness)) return -1;
    if (get_num(c, o, "augment", "contrast", 0, 1, 0, 0, &a->contrast)) return -1;
    if (get_num(c, o, "augment", "saturation", 0, 1, 0, 0, &a->saturation)) return -1;
    if (get_num(c, o, "augment", "hue", 0, 0.5, 0, 0, &a->hue)) return -1;
    json_t *er;
    if (get_object(c, o, "erase", "augment.erase", &er) < 0) return -1;
    if (er) {
        static const char *const ekeys[] = {"count", "p", "area", "aspect", NULL};
        if (check_keys(c, er, "augment.erase", ekeys)) return -1;
        a->erase_count = 1;
        a->erase_p = 0.5;
        a->erase_area[0] = 0.02;
        a->erase_area[1] = 0.2;
        a->erase_aspect[0] = 0.3;
        a->erase_aspect[1] = 3.3;
        if (get_int(c, er, "augment.erase", "count", 1, AUG_ERASE_MAX, &a->erase_count)) return -1;
        if (get_num(c, er, "augment.erase", "p", 0, 1, 0, 0, &a->erase_p)) return -1;
        if (get_range(c, er, "augment.erase", "area", 0, 0.5, 1, a->erase_area)) return -1;
        if (get_range(c, er, "augment.erase", "aspect", 0.1, 10, 0, a->erase_aspect)) return -1;
    }
    return 0;
}

static json_t *augment_to_json(const augment_spec_t *a) {
    json_t *o = json_pack("{s:[f,f], s:f, s:f, s:[f,f], s:f, s:f, s:f, s:f}", "rotate_deg", a->rotate_deg[0],
                          a->rotate_deg[1], "shift_deg", a->shift_deg, "flip", a->flip, "zoom", a->zoom[0],
                          a->zoom[1], "brightness", a->brightness, "contrast", a->contrast, "saturation",
                          a->saturation, "hue", a->hue);
    if (o && a->erase_count > 0)
        json_object_set_new(o, "erase", json_pack("{s:i, s:f, s:[f,f], s:[f,f]}", "count", a->erase_count, "p",
                                                  a->erase_p, "area", a->erase_area[0], a->erase_area[1],
                                                  "aspect", a->erase_aspect[0], a->erase_aspect[1]));
    return o;
}

json_t *augment_plan_to_json(const jobspec_t *js, int camera, int width, int height) {
    const augment_spec_t *a = &js->augment;
    if (js->type != JOB_TRAIN || !a->on) return NULL;
    json_t *o = augment_to_json(a);
    if (!o) return NULL;
    int geometric = a->rotate_deg[0] != 0 || a->rotate_deg[1] != 0 || a->shift_deg > 0 || a->flip > 0 ||
                    a->zoom[0] != 1 || a->zoom[1] != 1;
    char cam[320];
    if (!geometric)
        snprintf(cam, sizeof cam, "not used (no geometric augmentation)");
    else if (camera > 0)
        snprintf(cam, sizeof cam, "the dataset's camera_intrinsics of each sample");
    else if (camera == 0 && width > 0 && height > 0)
        snprintf(cam, sizeof cam, "assumed (the dataset has no camera_intrinsics): focal length = image width "
                 "= %d px, principal point at the image centre (%g, %g)", width, width / 2.0, height / 2.0);
    else if (camera == 0)
        snprintf(cam, sizeof cam, "assumed (the dataset has no camera_intrinsics): focal length = image width, "
                 "principal point at the image centre");
    else
        snprintf(cam, sizeof cam, "the dataset's camera_intrinsics when it has them, else assumed: focal length "
                 "= image width, principal point at the image centre (the dataset is still loading)");
    json_object_set_new(o, "camera", json_string(cam));
    json_object_set_new(o, "drawn_from", json_string("seed, epoch and sample index (a resumed run draws the same)"));
    json_object_set_new(o, "applied_to", json_string("training batches only, in the gather (im2col); labels "
                                                     "transformed by the same camera-frame matrix"));
    return o;
}

/* ---- type-specific parts ---------------------------------------------------------- */

static int parse_range(pctx_t *c, const json_t *o, const char *key, double out[2]) {
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    char p[64];
    snprintf(p, sizeof p, "split.%s", key);
    if (!json_is_array(v) || json_array_size(v) != 2)
        return fail(c, p, "%s must be an array of two fractions [begin, end]", p);
    double r[2];
    for (int i = 0; i < 2; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_number(e)) return fail(c, p, "%s[%d] must be a number", p, i);
        r[i] = json_number_value(e);
        if (!isfinite(r[i]) || r[i] < 0 || r[i] > 1)
            return fail(c, p, "%s[%d] = %g is not a fraction in [0, 1]", p, i, r[i]);
    }
    if (!(r[0] < r[1])) return fail(c, p, "%s is empty: begin %g must be below end %g", p, r[0], r[1]);
    out[0] = r[0];
    out[1] = r[1];
    return 0;
}

static int parse_optim(pctx_t *c, const json_t *o, optim_spec_t *op) {
    static const char *const keys[] = {"lr", "weight_decay", "betas", "eps", "clip_grad_norm",
                                       "warmup_steps", "schedule", NULL};
    if (check_keys(c, o, "optim", keys)) return -1;
    json_t *lr;
    int r = get_object(c, o, "lr", "optim.lr", &lr);
    if (r < 0) return -1;
    if (lr) {
        static const char *const lkeys[] = {"backbone", "heads", NULL};
        if (check_keys(c, lr, "optim.lr", lkeys)) return -1;
        if (get_num(c, lr, "optim.lr", "backbone", 0, 10, 0, 0, &op->lr_backbone)) return -1;
        if (get_num(c, lr, "optim.lr", "heads", 0, 10, 0, 0, &op->lr_heads)) return -1;
    }
    if (get_num(c, o, "optim", "weight_decay", 0, 1, 0, 0, &op->weight_decay)) return -1;
    json_t *b = json_object_get(o, "betas");
    if (b) {
        if (!json_is_array(b) || json_array_size(b) != 2)
            return fail(c, "optim.betas", "optim.betas must be an array of two numbers [beta1, beta2]");
        double bb[2];
        for (int i = 0; i < 2; i++) {
            json_t *e = json_array_get(b, (size_t)i);
            if (!json_is_number(e)) return fail(c, "optim.betas", "optim.betas[%d] must be a number", i);
            bb[i] = json_number_value(e);
            if (!isfinite(bb[i]) || bb[i] < 0 || bb[i] >= 1)
                return fail(c, "optim.betas", "optim.betas[%d] = %g is out of range [0, 1)", i, bb[i]);
        }
        op->beta1 = bb[0];
        op->beta2 = bb[1];
    }
    if (get_num(c, o, "optim", "eps", 0, 1, 1, 0, &op->eps)) return -1;
    if (get_num(c, o, "optim", "clip_grad_norm", 0, 1e6, 0, 0, &op->clip_grad_norm)) return -1;
    if (get_int(c, o, "optim", "warmup_steps", 0, 1000000000, &op->warmup_steps)) return -1;
    char sched[16] = "";
    int sr = get_str(c, o, "optim", "schedule", sched, sizeof sched, 0);
    if (sr < 0) {
        /* too long or wrong type: keep the message */
        return -1;
    }
    if (sr == 1) {
        if (strcmp(sched, "cosine") == 0) op->schedule_cosine = 1;
        else if (strcmp(sched, "constant") == 0) op->schedule_cosine = 0;
        else return fail(c, "optim.schedule", "optim.schedule must be \"cosine\" or \"constant\"");
    }
    return 0;
}

/* One `indices` entry: an index i (-> [i, i+1)) or a range [begin, end). */
static int parse_index_entry(pctx_t *c, const json_t *e, const char *p, js_range_t *r) {
    const long long maxi = INT32_MAX;
    if (json_is_integer(e)) {
        long long x = json_integer_value(e);
        if (x < 0 || x > maxi) return fail(c, p, "%s = %lld is not a sample index (0 .. %lld)", p, x, maxi);
        r->begin = x;
        r->end = x + 1;
        return 0;
    }
    if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_integer(json_array_get(e, 0)) ||
        !json_is_integer(json_array_get(e, 1)))
        return fail(c, p, "%s must be a sample index or a range [begin, end) of two integers", p);
    long long a = json_integer_value(json_array_get(e, 0)), b = json_integer_value(json_array_get(e, 1));
    if (a < 0 || a > maxi || b < 0 || b > maxi + 1)
        return fail(c, p, "%s = [%lld, %lld] is not a range of sample indices (0 .. %lld)", p, a, b, maxi);
    if (b <= a)
        return fail(c, p, "%s = [%lld, %lld] selects no sample: a range is [begin, end) with end > begin", p, a, b);
    r->begin = a;
    r->end = b;
    return 0;
}

static int parse_indices(pctx_t *c, const json_t *v, jobspec_t *js) {
    if (!json_is_array(v))
        return fail(c, "indices", "indices must be an array of sample indices and [begin, end) ranges");
    size_t n = json_array_size(v);
    if (n == 0) return fail(c, "indices", "indices must not be empty");
    if (n > JS_MAX_INDEX_ENTRIES)
        return fail(c, "indices", "indices has %zu entries; at most %d are accepted (give runs of samples as "
                    "ranges [begin, end), e.g. [[0, 1000], [5000, 5100]])", n, JS_MAX_INDEX_ENTRIES);
    js->ranges = malloc(n * sizeof *js->ranges);
    if (!js->ranges) return fail(c, "indices", "out of memory");
    js->n_ranges = (int)n;
    size_t i;
    json_t *e;
    int64_t total = 0;
    json_array_foreach(v, i, e) {
        char p[48];
        snprintf(p, sizeof p, "indices[%zu]", i);
        if (parse_index_entry(c, e, p, &js->ranges[i])) return -1;
        total += js->ranges[i].end - js->ranges[i].begin;   /* <= 4096 * 2^31: no overflow */
    }
    int64_t cap = js->type == JOB_INFER ? JS_MAX_INFER_SAMPLES : JS_MAX_INDEX_SAMPLES;
    if (total > cap)
        return fail(c, "indices", "indices select %lld samples; %s job takes at most %lld%s", (long long)total,
                    js->type == JOB_INFER ? "an infer" : "an eval", (long long)cap,
                    js->type == JOB_INFER ? " (split a larger run into several jobs)" : " (use a split)");
    js->n_indices = total;
    return 0;
}

static int range_str(const js_range_t *r, char *out, size_t n) {
    return r->end - r->begin == 1 ? snprintf(out, n, "%lld", (long long)r->begin)
                                  : snprintf(out, n, "[%lld, %lld)", (long long)r->begin, (long long)r->end);
}

int jobspec_indices_check(const jobspec_t *js, int64_t n_samples, char *field, size_t fieldlen, char *err,
                          size_t errlen) {
    for (int i = 0; i < js->n_ranges; i++) {
        if (js->ranges[i].end <= n_samples) continue;
        char r[64];
        range_str(&js->ranges[i], r, sizeof r);
        if (field && fieldlen) snprintf(field, fieldlen, "indices[%d]", i);
        snprintf(err, errlen, "indices[%d] = %s is out of range: dataset '%s' has %lld samples", i, r, js->dataset,
                 (long long)n_samples);
        return -1;
    }
    return 0;
}

int jobspec_indices_expand(const jobspec_t *js, int64_t n_samples, int32_t **out, int64_t *n, char *err,
                           size_t errlen) {
    *out = NULL;
    *n = 0;
    if (jobspec_indices_check(js, n_samples, NULL, 0, err, errlen)) return -1;
    if (js->n_indices < 1) { snprintf(err, errlen, "indices select no sample"); return -1; }
    int32_t *idx = malloc((size_t)js->n_indices * sizeof *idx);
    if (!idx) {
        snprintf(err, errlen, "out of memory for %lld sample indices", (long long)js->n_indices);
        return -1;
    }
    int64_t k = 0;
    for (int i = 0; i < js->n_ranges; i++)
        for (int64_t x = js->ranges[i].begin; x < js->ranges[i].end; x++) idx[k++] = (int32_t)x;
    assert(k == js->n_indices);
    *out = idx;
    *n = k;
    return 0;
}

static int parse_images(pctx_t *c, const json_t *v, jobspec_t *js) {
    if (!json_is_array(v)) return fail(c, "images", "images must be an array of {u8_hwc_b64, height, width}");
    size_t n = json_array_size(v);
    if (n == 0) return fail(c, "images", "images must not be empty");
    if (n > JS_MAX_IMAGES)
        return fail(c, "images", "images has %zu entries; at most %d inline images are accepted (submit several "
                    "infer jobs)", n, JS_MAX_IMAGES);
    js->images = calloc(n, sizeof *js->images);
    js->image_h = calloc(n, sizeof(int));
    js->image_w = calloc(n, sizeof(int));
    js->image_sha256 = calloc(n, sizeof *js->image_sha256);
    if (!js->images || !js->image_h || !js->image_w || !js->image_sha256) return fail(c, "images", "out of memory");
    js->n_images = (int)n;
    static const char *const keys[] = {"u8_hwc_b64", "height", "width", "sha256", NULL};
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char p[48];
        snprintf(p, sizeof p, "images[%zu]", i);
        if (!json_is_object(e)) return fail(c, p, "%s must be an object {u8_hwc_b64, height, width}", p);
        if (check_keys(c, e, p, keys)) return -1;
        int h = 0, w = 0;
        if (get_int(c, e, p, "height", 1, JS_MAX_IMAGE_SIDE, &h)) return -1;
        if (get_int(c, e, p, "width", 1, JS_MAX_IMAGE_SIDE, &w)) return -1;
        char fp[80];
        if (!h) { snprintf(fp, sizeof fp, "%s.height", p); return fail(c, fp, "%s is required", fp); }
        if (!w) { snprintf(fp, sizeof fp, "%s.width", p); return fail(c, fp, "%s is required", fp); }
        snprintf(fp, sizeof fp, "%s.u8_hwc_b64", p);
        json_t *b = json_object_get(e, "u8_hwc_b64");
        if (!b) return fail(c, fp, "%s is required", fp);
        if (!json_is_string(b)) return fail(c, fp, "%s must be a base64 string", fp);
        char m[160];
        size_t got = 0;
        uint8_t *px = b64_decode(json_string_value(b), json_string_length(b), &got, m, sizeof m);
        if (!px) return fail(c, fp, "%s: %s", fp, m);
        size_t want = (size_t)h * (size_t)w * 3;
        if (got != want) {
            free(px);
            return fail(c, fp, "%s decodes to %zu bytes, expected height*width*3 = %zu", fp, got, want);
        }
        js->images[i] = px;
        js->image_h[i] = h;
        js->image_w[i] = w;
        if (sha256_buf(px, got, js->image_sha256[i], m, sizeof m)) return fail(c, fp, "%s: %s", fp, m);
        char want_sha[65];
        snprintf(fp, sizeof fp, "%s.sha256", p);
        int sr = get_str(c, e, p, "sha256", want_sha, sizeof want_sha, 0);
        if (sr < 0) return -1;
        if (sr == 1) {
            for (char *q = want_sha; *q; q++) *q = (char)tolower((unsigned char)*q);
            if (strcmp(want_sha, js->image_sha256[i]) != 0)
                return fail(c, fp, "%s = %s does not match the SHA-256 of the decoded bytes (%s)", fp, want_sha,
                            js->image_sha256[i]);
        }
    }
    return 0;
}

static int parse_outputs(pctx_t *c, const json_t *v, jobspec_t *js) {
    if (!json_is_array(v)) return fail(c, "outputs", "outputs must be an array of \"joints\", \"cls\", \"patch_tokens\"");
    size_t i;
    json_t *e;
    int seen_joints = 0;
    json_array_foreach(v, i, e) {
        char p[48];
        snprintf(p, sizeof p, "outputs[%zu]", i);
        if (!json_is_string(e)) return fail(c, p, "%s must be a string", p);
        const char *s = json_string_value(e);
        int *flag = NULL;
        if (strcmp(s, "joints") == 0) flag = &seen_joints;
        else if (strcmp(s, "cls") == 0) flag = &js->out_cls;
        else if (strcmp(s, "patch_tokens") == 0) flag = &js->out_patch_tokens;
        else return fail(c, p, "%s: unknown output '%s' (known: joints, cls, patch_tokens)", p, s);
        if (*flag) return fail(c, p, "%s: '%s' is listed twice", p, s);
        *flag = 1;
    }
    return 0;
}

/* "devices": N or [d0, d1, ...] (distinct). */
static int parse_devices(pctx_t *c, const json_t *v, jobspec_t *js) {
    js->devices_given = 1;
    if (json_is_integer(v)) {
        long long n = json_integer_value(v);
        if (n < 1 || n > JS_MAX_DEVICES) return fail(c, "devices", "devices must be in [1, %d] (got %lld)", JS_MAX_DEVICES, n);
        js->devices = (int)n;
        return 0;
    }
    if (!json_is_array(v))
        return fail(c, "devices", "devices must be a count or a list of device indices, e.g. 2 or [0, 1]");
    size_t n = json_array_size(v);
    if (n < 1 || n > JS_MAX_DEVICES) return fail(c, "devices", "devices lists 1 to %d devices (got %zu)", JS_MAX_DEVICES, n);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        char f[32];
        snprintf(f, sizeof f, "devices[%zu]", i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > JS_MAX_DEVICE_INDEX)
            return fail(c, f, "%s must be a device index in [0, %d]", f, JS_MAX_DEVICE_INDEX);
        int d = (int)json_integer_value(e);
        for (size_t k = 0; k < i; k++)
            if (js->device_list[k] == d) return fail(c, f, "%s: device %d is listed twice", f, d);
        js->device_list[i] = d;
    }
    js->devices = (int)n;
    js->n_device_list = (int)n;
    return 0;
}

static void defaults(jobspec_t *js, job_type_t t) {
    memset(js, 0, sizeof *js);
    js->type = t;
    js->devices = 1;
    set_backbone(&js->model, "dinov2-small");
    js->model.head_hand = 1;
    js->split_train[0] = 0.0; js->split_train[1] = 0.9;
    js->split_val[0] = 0.9;   js->split_val[1] = 1.0;
    js->batch_size = t == JOB_TRAIN ? 32 : t == JOB_EVAL ? 64 : t == JOB_DEBUG ? 8 : 16;
    js->optim.lr_backbone = 1e-5;
    js->optim.lr_heads = 1e-3;
    js->optim.weight_decay = 0.01;
    js->optim.beta1 = 0.9;
    js->optim.beta2 = 0.999;
    js->optim.eps = 1e-8;
    js->optim.clip_grad_norm = 1.0;
    js->optim.warmup_steps = 0;
    js->optim.schedule_cosine = 1;
    js->eval_every = 1000;
    js->checkpoint_every = 1000;
    js->keep_checkpoints = 3;
    js->split_is_val = 1;
    js->batches = 1;
}

static int parse_body(pctx_t *c, const json_t *in, jobspec_t *js) {
    if (!json_is_object(in)) return fail(c, "", "the job spec must be a JSON object");
    json_t *tv = json_object_get(in, "type");
    if (!tv) return fail(c, "type", "type is required (%s)", job_type_list());
    if (!json_is_string(tv)) return fail(c, "type", "type must be a string");
    const char *ts = json_string_value(tv);
    job_type_t t;
    if (job_type_parse(ts, &t)) return fail(c, "type", "type '%s' is not one of %s", ts, job_type_list());
    defaults(js, t);

    static const char *const k_train[] = {"type", "dataset", "priority", "submission_id", "precision", "seed",
        "model", "split", "batch_size", "epochs", "steps", "optim", "eval_every", "checkpoint_every",
        "keep_checkpoints", "resume_from", "augment", "devices", NULL};
    static const char *const k_eval[] = {"type", "dataset", "priority", "submission_id", "precision", "seed",
        "model", "checkpoint", "split", "indices", "batch_size", "devices", NULL};
    static const char *const k_debug[] = {"type", "dataset", "priority", "submission_id", "precision", "seed",
        "model", "checkpoint", "batches", "batch_size", NULL};
    static const char *const k_infer[] = {"type", "dataset", "priority", "submission_id", "precision", "seed",
        "model", "checkpoint", "indices", "images", "outputs", "batch_size", "devices", NULL};
    const char *const *keys = t == JOB_TRAIN ? k_train : t == JOB_EVAL ? k_eval : t == JOB_DEBUG ? k_debug : k_infer;
    if (check_keys(c, in, "", keys)) return -1;

    /* common */
    int r = get_str(c, in, "", "dataset", js->dataset, sizeof js->dataset, 0);
    if (r < 0) return -1;
    if (r == 0) return fail(c, "dataset", "dataset is required");
    if (get_int(c, in, "", "priority", -1000000, 1000000, &js->priority)) return -1;
    if (get_str(c, in, "", "submission_id", js->submission_id, sizeof js->submission_id, 0) < 0) return -1;
    json_t *sv = json_object_get(in, "seed");
    if (sv) {
        if (!json_is_integer(sv) || json_integer_value(sv) < 0)
            return fail(c, "seed", "seed must be a non-negative integer");
        js->seed = (uint64_t)json_integer_value(sv);
    }
    json_t *pr;
    if (get_object(c, in, "precision", "precision", &pr) < 0) return -1;
    if (pr) {
        static const char *const pk[] = {"compute", NULL};
        if (check_keys(c, pr, "precision", pk)) return -1;
        if (get_str(c, pr, "precision", "compute", js->precision_compute, sizeof js->precision_compute, 0) < 0)
            return -1;
        if (js->precision_compute[0] && strcmp(js->precision_compute, "fp32") != 0 &&
            strcmp(js->precision_compute, "bf16") != 0)
            return fail(c, "precision.compute", "precision.compute must be \"fp32\" or \"bf16\"");
    }

    /* checkpoint (eval/debug/infer) */
    if (t != JOB_TRAIN)
        if (get_str(c, in, "", "checkpoint", js->checkpoint, sizeof js->checkpoint, 0) < 0) return -1;

    json_t *mo;
    if (get_object(c, in, "model", "model", &mo) < 0) return -1;
    if (mo) {
        if (parse_model(c, mo, &js->model)) return -1;
    } else if (t != JOB_TRAIN && js->checkpoint[0]) {
        js->model.backbone[0] = 0;   /* from the checkpoint */
        js->model.hidden = js->model.layers = js->model.heads = 0;
    }

    if (get_int(c, in, "", "batch_size", 1, JS_MAX_BATCH, &js->batch_size)) return -1;
    json_t *dv = json_object_get(in, "devices");   /* only in the types that list it (check_keys) */
    if (dv && parse_devices(c, dv, js)) return -1;

    switch (t) {
    case JOB_TRAIN: {
        json_t *sp;
        if (get_object(c, in, "split", "split", &sp) < 0) return -1;
        if (sp) {
            static const char *const sk[] = {"train", "val", NULL};
            if (check_keys(c, sp, "split", sk)) return -1;
            if (parse_range(c, sp, "train", js->split_train)) return -1;
            if (parse_range(c, sp, "val", js->split_val)) return -1;
        }
        if (js->split_train[1] > js->split_val[0] && js->split_val[1] > js->split_train[0])
            return fail(c, "split", "split.train [%g, %g) and split.val [%g, %g) overlap", js->split_train[0],
                        js->split_train[1], js->split_val[0], js->split_val[1]);
        int has_e = json_object_get(in, "epochs") != NULL, has_s = json_object_get(in, "steps") != NULL;
        if (has_e && has_s) return fail(c, "steps", "give either epochs or steps, not both");
        long long steps = 0;
        if (get_int(c, in, "", "epochs", 1, 1000000, &js->epochs)) return -1;
        if (get_long(c, in, "", "steps", 1, 1000000000000LL, &steps)) return -1;
        js->steps = (long)steps;
        if (!has_e && !has_s) js->epochs = 1;
        json_t *op;
        if (get_object(c, in, "optim", "optim", &op) < 0) return -1;
        if (op && parse_optim(c, op, &js->optim)) return -1;
        long long x = js->eval_every;
        if (get_long(c, in, "", "eval_every", 0, 1000000000000LL, &x)) return -1;
        js->eval_every = (long)x;
        x = js->checkpoint_every;
        if (get_long(c, in, "", "checkpoint_every", 0, 1000000000000LL, &x)) return -1;
        js->checkpoint_every = (long)x;
        if (get_int(c, in, "", "keep_checkpoints", 0, 1000000, &js->keep_checkpoints)) return -1;
        if (get_str(c, in, "", "resume_from", js->resume_from, sizeof js->resume_from, 0) < 0) return -1;
        json_t *au;
        if (get_object(c, in, "augment", "augment", &au) < 0) return -1;
        if (au && parse_augment(c, au, &js->augment)) return -1;
        break;
    }
    case JOB_EVAL: {
        json_t *sp = json_object_get(in, "split"), *ix = json_object_get(in, "indices");
        if (sp && ix) return fail(c, "indices", "give either split or indices, not both");
        if (sp) {
            if (!json_is_string(sp)) return fail(c, "split", "split must be \"val\" or \"train\"");
            const char *s = json_string_value(sp);
            if (strcmp(s, "val") == 0) js->split_is_val = 1;
            else if (strcmp(s, "train") == 0) js->split_is_val = 0;
            else return fail(c, "split", "split must be \"val\" or \"train\" (got '%s')", s);
        }
        if (ix && parse_indices(c, ix, js)) return -1;
        break;
    }
    case JOB_DEBUG:
        if (get_int(c, in, "", "batches", 1, 10000, &js->batches)) return -1;
        break;
    case JOB_INFER: {
        json_t *ix = json_object_get(in, "indices"), *im = json_object_get(in, "images");
        if (ix && im) return fail(c, "images", "give either indices or images, not both");
        if (!ix && !im) return fail(c, "indices", "infer needs indices or images");
        if (ix && parse_indices(c, ix, js)) return -1;
        if (im && parse_images(c, im, js)) return -1;
        json_t *ou = json_object_get(in, "outputs");
        if (ou && parse_outputs(c, ou, js)) return -1;
        break;
    }
    }
    return 0;
}

int jobspec_parse(const json_t *in, jobspec_t *out, char *field, size_t fieldlen, char *msg, size_t msglen) {
    pctx_t c = {field, fieldlen, msg, msglen};
    if (field && fieldlen) field[0] = 0;
    if (msg && msglen) msg[0] = 0;
    memset(out, 0, sizeof *out);
    if (parse_body(&c, in, out)) {
        jobspec_free(out);
        return -1;
    }
    return 0;
}

void jobspec_free(jobspec_t *js) {
    if (!js) return;
    free(js->ranges);
    if (js->images)
        for (int i = 0; i < js->n_images; i++) free(js->images[i]);
    free(js->images);
    free(js->image_h);
    free(js->image_w);
    free(js->image_sha256);
    js->ranges = NULL;
    js->images = NULL;
    js->image_h = js->image_w = NULL;
    js->image_sha256 = NULL;
    js->n_ranges = js->n_images = 0;
    js->n_indices = 0;
}

/* ---- printing -------------------------------------------------------------------- */

static json_t *pair(double a, double b) {
    return json_pack("[ff]", a, b);
}

/* Canonical form: a one-sample range prints as its index. */
static json_t *indices_json(const jobspec_t *js) {
    json_t *a = json_array();
    for (int i = 0; i < js->n_ranges; i++) {
        const js_range_t *r = &js->ranges[i];
        json_array_append_new(a, r->end - r->begin == 1 ? json_integer(r->begin)
                                                        : json_pack("[II]", (json_int_t)r->begin, (json_int_t)r->end));
    }
    return a;
}

json_t *jobspec_to_json(const jobspec_t *js) {
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(job_type_name(js->type)));
    json_object_set_new(o, "dataset", json_string(js->dataset));
    json_object_set_new(o, "priority", json_integer(js->priority));
    if (js->submission_id[0]) json_object_set_new(o, "submission_id", json_string(js->submission_id));
    json_object_set_new(o, "seed", json_integer((json_int_t)js->seed));
    if (js->precision_compute[0])
        json_object_set_new(o, "precision", json_pack("{ss}", "compute", js->precision_compute));
    if (js->model.backbone[0]) {
        json_t *m = json_object();
        json_object_set_new(m, "backbone", json_string(js->model.backbone));
        json_object_set_new(m, "registers", json_integer(js->model.registers));
        if (js->model.weights[0]) json_object_set_new(m, "weights", json_string(js->model.weights));
        json_object_set_new(m, "freeze_layers", json_integer(js->model.freeze_layers));
        json_t *h = json_array();
        if (js->model.head_hand) json_array_append_new(h, json_string("hand"));
        json_object_set_new(m, "heads", h);
        json_object_set_new(o, "model", m);
    }
    json_object_set_new(o, "batch_size", json_integer(js->batch_size));
    if (js->n_device_list) {
        json_t *a = json_array();
        for (int i = 0; i < js->n_device_list; i++) json_array_append_new(a, json_integer(js->device_list[i]));
        json_object_set_new(o, "devices", a);
    } else if (js->devices > 1 || js->devices_given) {
        json_object_set_new(o, "devices", json_integer(js->devices));
    }
    if (js->type != JOB_TRAIN && js->checkpoint[0])
        json_object_set_new(o, "checkpoint", json_string(js->checkpoint));

    switch (js->type) {
    case JOB_TRAIN: {
        json_object_set_new(o, "split", json_pack("{soso}", "train", pair(js->split_train[0], js->split_train[1]),
                                                  "val", pair(js->split_val[0], js->split_val[1])));
        if (js->steps) json_object_set_new(o, "steps", json_integer(js->steps));
        else json_object_set_new(o, "epochs", json_integer(js->epochs));
        const optim_spec_t *op = &js->optim;
        json_object_set_new(o, "optim", json_pack("{s{sfsf}sfs[ff]sfsfsiss}",
            "lr", "backbone", op->lr_backbone, "heads", op->lr_heads,
            "weight_decay", op->weight_decay,
            "betas", op->beta1, op->beta2,
            "eps", op->eps,
            "clip_grad_norm", op->clip_grad_norm,
            "warmup_steps", op->warmup_steps,
            "schedule", op->schedule_cosine ? "cosine" : "constant"));
        json_object_set_new(o, "eval_every", json_integer(js->eval_every));
        json_object_set_new(o, "checkpoint_every", json_integer(js->checkpoint_every));
        json_object_set_new(o, "keep_checkpoints", json_integer(js->keep_checkpoints));
        if (js->resume_from[0]) json_object_set_new(o, "resume_from", json_string(js->resume_from));
        if (js->augment.on) json_object_set_new(o, "augment", augment_to_json(&js->augment));
        break;
    }
    case JOB_EVAL:
        if (js->n_ranges) json_object_set_new(o, "indices", indices_json(js));
        else json_object_set_new(o, "split", json_string(js->split_is_val ? "val" : "train"));
        break;
    case JOB_DEBUG:
        json_object_set_new(o, "batches", json_integer(js->batches));
        break;
    case JOB_INFER: {
        if (js->n_ranges) json_object_set_new(o, "indices", indices_json(js));
        if (js->n_images) {
            json_t *a = json_array();
            for (int i = 0; i < js->n_images; i++) {
                char *s = b64_encode(js->images[i], (size_t)js->image_h[i] * (size_t)js->image_w[i] * 3);
                json_array_append_new(a, json_pack("{sssisiss}", "u8_hwc_b64", s ? s : "", "height",
                                                   js->image_h[i], "width", js->image_w[i], "sha256",
                                                   js->image_sha256[i]));
                free(s);
            }
            json_object_set_new(o, "images", a);
        }
        json_t *ou = json_array();
        json_array_append_new(ou, json_string("joints"));
        if (js->out_cls) json_array_append_new(ou, json_string("cls"));
        if (js->out_patch_tokens) json_array_append_new(ou, json_string("patch_tokens"));
        json_object_set_new(o, "outputs", ou);
        break;
    }
    }
    return o;
}

/* ---- dtype plan (SPEC §5) ------------------------------------------------------- */

dtype_plan_t jobspec_plan(const jobspec_t *js) {
    dtype_plan_t p;
    memset(&p, 0, sizeof p);
    p.norms = DT_F32;
    p.grads = DT_F32;
    switch (js->type) {
    case JOB_TRAIN:
        p.compute = DT_BF16; p.master = DT_F32; p.has_grads = 1;
        break;
    case JOB_EVAL:
        p.compute = DT_BF16; p.has_grads = 0;
        break;
    case JOB_DEBUG:
        p.compute = DT_F32; p.master = DT_F32; p.has_grads = 1;
        break;
    case JOB_INFER:
        p.compute = DT_BF16; p.has_grads = 0;
        break;
    }
    if (strcmp(js->precision_compute, "fp32") == 0) p.compute = DT_F32;
    else if (strcmp(js->precision_compute, "bf16") == 0) p.compute = DT_BF16;
    /* The encoder sees the batch in the compute dtype (converted per batch
     * inside im2col), the matmuls read parameters in it. */
    p.input = p.compute;
    p.params = p.compute;
    if (!p.has_grads) p.master = p.params;   /* no optimizer: the working copy is the only copy */
    return p;
}

json_t *dtype_plan_to_json(const dtype_plan_t *p) {
    json_t *o = json_object();
    json_object_set_new(o, "dataset_images", json_string("bf16"));
    json_object_set_new(o, "encoder_input", json_string(dtype_name(p->input)));
    json_object_set_new(o, "matmul_inputs", json_string(dtype_name(p->compute)));
    json_object_set_new(o, "accumulate", json_string("fp32"));
    json_object_set_new(o, "norms_softmax_losses", json_string(dtype_name(p->norms)));
    json_object_set_new(o, "params", json_string(dtype_name(p->params)));
    json_object_set_new(o, "master_params", p->has_grads ? json_string(dtype_name(p->master)) : json_null());
    json_object_set_new(o, "grads", p->has_grads ? json_string(dtype_name(p->grads)) : json_null());
    json_object_set_new(o, "outputs", json_string("fp32"));
    return o;
}
