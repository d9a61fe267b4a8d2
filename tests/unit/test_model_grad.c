/* tests/unit/test_model_grad.c — the whole model's parameter gradients
 * (dinov2-tiny at 28x28, fp32, CPU backend) against central finite
 * differences of the loss, for the heads and backbone tensors from the
 * patch embedding to the final LayerNorm, with and without registers and
 * frozen blocks; frozen parameters get no gradient and no update; AdamW
 * segments cover exactly the trainable parameters with the right lr/wd.
 *
 * Loss: L = joint + 0.3 * pair (backend hand_loss, whose dpred is their
 * gradient; the confidence term's target is detached there, so the
 * confidence head is probed with a fixed linear functional instead:
 * + sum(conf_logit * r), dconf = r). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gpu/backend.h"
#include "gpu/model.h"
#include "tests/tap.h"

#define B 3
#define IMG 28

typedef struct {
    backend_t *be;
    model_t *m;
    float *imgs;        /* backend [B,3,IMG,IMG] f32 */
    float *joints;      /* backend [B,21,3] */
    float *dpred, *dconf;
    float r[B * MODEL_CONF_OUT];
} ctx_t;

static uint64_t rs = 0x1234567;
static double urand(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static double nrand(void) {
    double u1 = urand() + 1e-12, u2 = urand();
    return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* Gives every tensor a scale where the network is far from linear (as the HF fixtures do). */
static void randomize(model_t *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *p = &m->table[i];
        float *h = malloc(p->n * sizeof *h);
        const char *nm = p->name;
        size_t L = strlen(nm);
        for (size_t k = 0; k < p->n; k++) {
            double r = nrand(), v;
            if (L > 7 && strcmp(nm + L - 7, "lambda1") == 0) v = 0.5 + 0.25 * r;
            else if (strstr(nm, "norm") && strcmp(nm + L - 6, "weight") == 0) v = 1.0 + 0.1 * r;
            else if (strcmp(nm + L - 4, "bias") == 0) v = 0.05 * r;
            else if (strstr(nm, "embeddings") && !strstr(nm, "patch")) v = 0.5 * r;
            else v = r / sqrt((double)(p->n / (size_t)p->shape[0]));
            h[k] = (float)v;
        }
        if (strcmp(nm, "heads.hand.joints.fc2.bias") == 0)
            for (size_t k = 0; k < p->n; k++) h[k] += (k % 3 == 2) ? 0.5f : 0.0f;   /* in front of the camera */
        model_param_upload(m, i, h);
        free(h);
    }
    model_sync_working_copy(m);
}

static double loss(ctx_t *c, int with_grads) {
    char err[256];
    model_t *m = c->m;
    backend_t *be = c->be;
    if (model_forward(m, c->imgs, DT_F32, NULL, B, 0, err, sizeof err) < 0) {
        diag("%s", err);
        return NAN;
    }
    hand_loss_t hl;
    be->hand_loss(be, &hl, with_grads ? c->dpred : NULL, NULL, m->pred, m->conf_logit, c->joints,
                  NULL, NULL, NULL, B, NULL);
    float conf[B * MODEL_CONF_OUT];
    be->download(be, conf, m->conf_logit, sizeof conf);
    double l = (double)hl.joint + 0.3 * (double)hl.pair;
    for (int i = 0; i < B * MODEL_CONF_OUT; i++) l += (double)conf[i] * c->r[i];
    if (with_grads) {
        be->upload(be, c->dconf, c->r, sizeof c->r);
        model_backward(m, c->dpred, c->dconf);
    }
    return l;
}

/* Directional derivative along a random +-1 direction over tensor `name`. */
static void check_tensor(ctx_t *c, const char *name, const float *grad_host_all) {
    model_t *m = c->m;
    int i = model_find_param(m, name);
    if (!ok(i >= 0, "%s exists", name)) return;
    const model_param_t *p = &m->table[i];
    const float *g = grad_host_all + (p->off - m->train_off);
    float *th = malloc(p->n * sizeof *th), *tp = malloc(p->n * sizeof *tp);
    signed char *v = malloc(p->n);
    model_param_download(m, i, th);
    double an = 0, gn = 0;
    for (size_t k = 0; k < p->n; k++) {
        v[k] = urand() < 0.5 ? -1 : 1;
        an += (double)g[k] * v[k];
        gn += (double)g[k] * g[k];
    }
    const double h = 2e-3;
    for (size_t k = 0; k < p->n; k++) tp[k] = th[k] + (float)(h * v[k]);
    model_param_upload(m, i, tp);
    double lp = loss(c, 0);
    for (size_t k = 0; k < p->n; k++) tp[k] = th[k] - (float)(h * v[k]);
    model_param_upload(m, i, tp);
    double lm = loss(c, 0);
    model_param_upload(m, i, th);
    /* the perturbation actually applied, in fp32 */
    double hp = 0;
    for (size_t k = 0; k < p->n; k++) hp += ((double)(th[k] + (float)(h * v[k])) - (double)(th[k] - (float)(h * v[k]))) * v[k];
    hp /= (double)p->n;
    double fd = (lp - lm) / hp;   /* hp: the mean two-sided step (about 2h) */
    double err = fabs(fd - an), scale = fabs(an) + 1e-3 * sqrt(gn);
    ok(sqrt(gn) > 0 && err <= 1e-2 * scale + 1e-7, "grad %s: directional %.6g vs finite difference %.6g (|g| %.3g)",
       name, an, fd, sqrt(gn));
    free(th); free(tp); free(v);
}

static void run_config(backend_t *be, int registers, int freeze, const char **names, int nn) {
    char err[512];
    model_config_t cfg;
    model_config_by_name("dinov2-tiny", registers, &cfg, err, sizeof err);
    model_opts_t mo = {.image_h = IMG, .image_w = IMG, .max_batch = B, .cdt = DT_F32, .grads = 1,
                       .optimizer = 1, .freeze_layers = freeze};
    ctx_t c = {.be = be};
    c.m = model_create(be, &cfg, &mo, err, sizeof err);
    if (!ok(c.m != NULL, "tiny model (registers %d, freeze %d)", registers, freeze)) { diag("%s", err); return; }
    model_t *m = c.m;
    model_init(m, 7, NULL);
    randomize(m);
    float himg[B * 3 * IMG * IMG], hj[B * 63];
    for (size_t k = 0; k < sizeof himg / sizeof himg[0]; k++) himg[k] = (float)nrand();
    for (int k = 0; k < B * 63; k++) hj[k] = (float)(0.1 * nrand() + (k % 3 == 2 ? 0.5 : 0.0));
    for (int k = 0; k < B * MODEL_CONF_OUT; k++) c.r[k] = (float)(0.1 * nrand());
    c.imgs = be->alloc(be, sizeof himg);
    c.joints = be->alloc(be, sizeof hj);
    c.dpred = be->alloc(be, B * 63 * 4);
    c.dconf = be->alloc(be, B * MODEL_CONF_OUT * 4);
    be->upload(be, c.imgs, himg, sizeof himg);
    be->upload(be, c.joints, hj, sizeof hj);

    /* the frozen prefix and the trainable suffix */
    int prefix_ok = 1, seen_trainable = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *p = &m->table[i];
        if (!p->frozen) seen_trainable = 1;
        if (p->frozen && seen_trainable) prefix_ok = 0;
        if (p->frozen != (p->off < m->train_off)) prefix_ok = 0;
        if (p->frozen && model_param_grad(m, i) != NULL) prefix_ok = 0;
        int should_freeze = freeze > 0 && (strncmp(p->name, "embeddings.", 11) == 0 ||
                            (strncmp(p->name, "encoder.layer.", 14) == 0 && atoi(p->name + 14) < freeze));
        if (p->frozen != should_freeze) { prefix_ok = 0; diag("%s frozen=%d", p->name, p->frozen); }
    }
    ok(prefix_ok, "freeze %d: frozen tensors are exactly embeddings + blocks < %d, a prefix without gradients",
       freeze, freeze);
    /* q, k, v adjacent: one [3D, D] matrix and one [3D] bias */
    int iq = model_find_param(m, "encoder.layer.1.attention.attention.query.weight");
    int ik = model_find_param(m, "encoder.layer.1.attention.attention.key.weight");
    int iv = model_find_param(m, "encoder.layer.1.attention.attention.value.weight");
    int ibq = model_find_param(m, "encoder.layer.1.attention.attention.query.bias");
    int ibv = model_find_param(m, "encoder.layer.1.attention.attention.value.bias");
    ok(m->table[ik].off == m->table[iq].off + 64 * 64 && m->table[iv].off == m->table[ik].off + 64 * 64 &&
       m->table[ibv].off == m->table[ibq].off + 128, "q/k/v weights and biases are contiguous");

    model_zero_grad(m);
    double l0 = loss(&c, 1);
    ok(isfinite(l0), "loss %.6f", l0);
    size_t nt = m->n_params - m->train_off;
    float *g = malloc(nt * sizeof *g);
    be->download(be, g, m->grads, nt * 4);
    for (int k = 0; k < nn; k++) check_tensor(&c, names[k], g);

    /* accumulation: a second backward doubles the gradients */
    loss(&c, 1);
    float *g2 = malloc(nt * sizeof *g2);
    be->download(be, g2, m->grads, nt * 4);
    double md = 0;
    for (size_t k = 0; k < nt; k++) {
        double d = fabs((double)g2[k] - 2.0 * g[k]);
        if (d > md) md = d;
    }
    ok(md <= 1e-5, "gradients accumulate across backward calls (max dev %.3g)", md);
    model_zero_grad(m);
    ok(model_grad_sumsq(m) == 0.0, "model_zero_grad clears the gradients");

    /* AdamW segments: exactly the trainable tensors, lr per group, wd on matrices only */
    int ns = 0;
    adamw_seg_t *segs = malloc((size_t)model_adamw_max_segments(m) * sizeof *segs);
    model_adamw_segments(m, 1e-5f, 1e-3f, 0.01f, segs, &ns);
    int cover_ok = ns > 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *p = &m->table[i];
        if (p->frozen) continue;
        size_t lo = p->off - m->train_off;
        int found = 0;
        for (int s = 0; s < ns; s++) {
            if (lo >= segs[s].off && lo + p->n <= segs[s].off + segs[s].n) {
                found = 1;
                float lr = p->group == MODEL_GROUP_HEADS ? 1e-3f : 1e-5f, wd = p->is_matrix ? 0.01f : 0.0f;
                if (segs[s].lr != lr || segs[s].wd != wd) { cover_ok = 0; diag("%s: lr %g wd %g", p->name, segs[s].lr, segs[s].wd); }
            }
        }
        if (!found) { cover_ok = 0; diag("%s not covered", p->name); }
    }
    for (int s = 0; s < ns; s++)
        if (segs[s].off + segs[s].n > nt) cover_ok = 0;
    ok(cover_ok, "adamw segments (%d) cover the trainable tensors with lr/wd per group and kind", ns);
    free(segs);

    /* one AdamW step changes trainable parameters only */
    float *before = malloc(m->n_params * 4), *after = malloc(m->n_params * 4);
    be->download(be, before, m->params, m->n_params * 4);
    loss(&c, 1);
    model_adamw_step(m, 1e-3f, 1e-3f, 0.01f, 0.9f, 0.999f, 1e-8f, 1.0f);
    be->download(be, after, m->params, m->n_params * 4);
    size_t changed_frozen = 0, changed_train = 0;
    for (size_t k = 0; k < m->n_params; k++) {
        if (before[k] != after[k]) {
            if (k < m->train_off) changed_frozen++;
            else changed_train++;
        }
    }
    ok(changed_frozen == 0 && changed_train > 0 && m->adam_step == 1,
       "AdamW step: %zu trainable values moved, %zu frozen ones", changed_train, changed_frozen);
    free(before); free(after);
    free(g); free(g2);
    be->free(be, c.imgs); be->free(be, c.joints); be->free(be, c.dpred); be->free(be, c.dconf);
    model_free(m);
}

/* The bf16 plan (bf16 working copy, bf16 activations, fp32 gradients) gives
 * the fp32 gradients within bf16 accuracy, and its AdamW step refreshes the
 * bf16 working copy from the fp32 master. */
static void check_bf16(backend_t *be) {
    char err[512];
    model_config_t cfg;
    model_config_by_name("dinov2-tiny", 4, &cfg, err, sizeof err);
    ctx_t c[2];
    float *g[2];
    size_t nt = 0;
    float himg[B * 3 * IMG * IMG], hj[B * 63], r[B * MODEL_CONF_OUT];
    for (size_t k = 0; k < sizeof himg / sizeof himg[0]; k++) himg[k] = (float)nrand();
    for (int k = 0; k < B * 63; k++) hj[k] = (float)(0.1 * nrand() + (k % 3 == 2 ? 0.5 : 0.0));
    for (int k = 0; k < B * MODEL_CONF_OUT; k++) r[k] = (float)(0.1 * nrand());
    for (int v = 0; v < 2; v++) {
        model_opts_t mo = {.image_h = IMG, .image_w = IMG, .max_batch = B, .cdt = v ? DT_BF16 : DT_F32,
                           .grads = 1, .optimizer = 1, .freeze_layers = 0};
        memset(&c[v], 0, sizeof c[v]);
        c[v].be = be;
        c[v].m = model_create(be, &cfg, &mo, err, sizeof err);
        if (!ok(c[v].m != NULL, "model %s", v ? "bf16" : "fp32")) return;
        memcpy(c[v].r, r, sizeof r);
        c[v].imgs = be->alloc(be, sizeof himg);
        c[v].joints = be->alloc(be, sizeof hj);
        c[v].dpred = be->alloc(be, B * 63 * 4);
        c[v].dconf = be->alloc(be, B * MODEL_CONF_OUT * 4);
        be->upload(be, c[v].imgs, himg, sizeof himg);
        be->upload(be, c[v].joints, hj, sizeof hj);
    }
    rs = 0xabcdef;
    model_init(c[0].m, 3, NULL);
    randomize(c[0].m);
    /* same master parameters in both */
    float *p = malloc(c[0].m->n_params * 4);
    be->download(be, p, c[0].m->params, c[0].m->n_params * 4);
    be->upload(be, c[1].m->params, p, c[0].m->n_params * 4);
    model_sync_working_copy(c[1].m);
    for (int v = 0; v < 2; v++) {
        model_zero_grad(c[v].m);
        loss(&c[v], 1);
        nt = c[v].m->n_params - c[v].m->train_off;
        g[v] = malloc(nt * 4);
        be->download(be, g[v], c[v].m->grads, nt * 4);
    }
    int worst = -1;
    double worst_e = 0;
    for (int i = 0; i < c[0].m->n_tensors; i++) {
        const model_param_t *t = &c[0].m->table[i];
        /* no gradient by construction: the mask token is unused; a key bias shifts every
         * attention logit of a query alike, which the softmax ignores */
        if (strcmp(t->name, "embeddings.mask_token") == 0 || strstr(t->name, "key.bias")) continue;
        double num = 0, den = 0;
        for (size_t k = 0; k < t->n; k++) {
            double d = (double)g[1][t->off + k] - g[0][t->off + k];
            num += d * d;
            den += (double)g[0][t->off + k] * g[0][t->off + k];
        }
        double e = sqrt(num / (den + 1e-30));
        if (e > worst_e) { worst_e = e; worst = i; }
    }
    ok(worst_e < 0.05, "bf16 plan gradients within 5%% of fp32 for every tensor (worst %.3g: %s)", worst_e,
       worst >= 0 ? c[0].m->table[worst].name : "-");
    /* AdamW in the bf16 plan: the working copy is the bf16 rounding of the master */
    model_adamw_step(c[1].m, 1e-3f, 1e-3f, 0.01f, 0.9f, 0.999f, 1e-8f, 1.0f);
    size_t np = c[1].m->n_params;
    uint16_t *wcpy = malloc(np * 2);
    be->download(be, p, c[1].m->params, np * 4);
    be->download(be, wcpy, c[1].m->params_c, np * 2);
    size_t bad = 0;
    for (size_t k = 0; k < np; k++) if (wcpy[k] != f32_to_bf16(p[k])) bad++;
    ok(bad == 0, "bf16 working copy follows the fp32 master after AdamW (%zu mismatches)", bad);
    free(wcpy);
    free(p);
    for (int v = 0; v < 2; v++) {
        free(g[v]);
        be->free(be, c[v].imgs); be->free(be, c[v].joints); be->free(be, c[v].dpred); be->free(be, c[v].dconf);
        model_free(c[v].m);
    }
}

/* A batch smaller than max_batch uses the same buffers' prefixes: gradients equal
 * those of a model sized exactly for it. */
/* A random batch of 2 (images, joints with z near 0.5) and room for the loss
 * gradients, in backend memory. */
typedef struct {
    float *imgs, *joints, *dpred, *dconf;
} batch2_t;

static batch2_t batch2_new(backend_t *be) {
    float himg[2 * 3 * IMG * IMG], hj[2 * 63];
    for (size_t k = 0; k < sizeof himg / sizeof himg[0]; k++) himg[k] = (float)nrand();
    for (int k = 0; k < 2 * 63; k++) hj[k] = (float)(0.1 * nrand() + (k % 3 == 2 ? 0.5 : 0.0));
    batch2_t b = {be->alloc(be, sizeof himg), be->alloc(be, sizeof hj), be->alloc(be, 2 * 63 * 4),
                  be->alloc(be, 2 * 21 * 4)};
    be->upload(be, b.imgs, himg, sizeof himg);
    be->upload(be, b.joints, hj, sizeof hj);
    return b;
}

static void check_partial_batch(backend_t *be) {
    char err[512];
    model_config_t cfg;
    model_config_by_name("dinov2-tiny", 0, &cfg, err, sizeof err);
    model_t *m[2];
    float *g[2];
    batch2_t bt = batch2_new(be);
    float *imgs = bt.imgs, *joints = bt.joints, *dpred = bt.dpred, *dconf = bt.dconf;
    size_t nt = 0;
    for (int v = 0; v < 2; v++) {
        model_opts_t mo = {.image_h = IMG, .image_w = IMG, .max_batch = v ? 2 : 5, .cdt = DT_F32, .grads = 1,
                           .freeze_layers = 1};
        m[v] = model_create(be, &cfg, &mo, err, sizeof err);
        model_init(m[v], 11, NULL);
        if (v == 0) { rs = 0x77; randomize(m[0]); }
        else {
            float *p = malloc(m[0]->n_params * 4);
            be->download(be, p, m[0]->params, m[0]->n_params * 4);
            be->upload(be, m[1]->params, p, m[0]->n_params * 4);
            model_sync_working_copy(m[1]);
            free(p);
        }
        model_zero_grad(m[v]);
        model_forward(m[v], imgs, DT_F32, NULL, 2, 0, err, sizeof err);
        hand_loss_t hl;
        be->hand_loss(be, &hl, dpred, dconf, m[v]->pred, m[v]->conf_logit, joints, NULL, NULL, NULL, 2, NULL);
        model_backward(m[v], dpred, dconf);
        nt = m[v]->n_params - m[v]->train_off;
        g[v] = malloc(nt * 4);
        be->download(be, g[v], m[v]->grads, nt * 4);
    }
    ok(memcmp(g[0], g[1], nt * 4) == 0 && model_grad_sumsq(m[0]) > 0,
       "batch 2 in a model sized for 5 gives the gradients of a model sized for 2");
    char e2[256];
    ok(model_forward(m[1], imgs, DT_F32, NULL, 3, 0, e2, sizeof e2) < 0 && strstr(e2, "batch"),
       "a batch above max_batch is refused (%s)", e2);
    for (int v = 0; v < 2; v++) { free(g[v]); model_free(m[v]); }
    be->free(be, imgs); be->free(be, joints); be->free(be, dpred); be->free(be, dconf);
}

/* The gradient hook (model_set_grad_hook, what data parallelism launches its
 * buckets from): called from the end of the buffer towards its start, ending
 * at 0, and every gradient at or above `from` already holds its final value. */
typedef struct {
    model_t *m;
    size_t n, from[64];
    float *snap[64];
    int calls;
} hook_rec_t;

static void on_grads(void *ud, size_t from) {
    hook_rec_t *h = ud;
    if (h->calls >= 64) return;
    h->from[h->calls] = from;
    h->snap[h->calls] = malloc((h->n - from + 1) * 4);
    h->m->be->download(h->m->be, h->snap[h->calls], h->m->grads + from, (h->n - from) * 4);
    h->calls++;
}

static void check_grad_hook(backend_t *be, int freeze) {
    char err[512];
    model_config_t cfg;
    model_config_by_name("dinov2-tiny", 0, &cfg, err, sizeof err);
    model_opts_t mo = {.image_h = IMG, .image_w = IMG, .max_batch = 2, .cdt = DT_F32, .grads = 1, .freeze_layers = freeze};
    model_t *m = model_create(be, &cfg, &mo, err, sizeof err);
    model_init(m, 5, NULL);
    batch2_t bt = batch2_new(be);
    float *imgs = bt.imgs, *joints = bt.joints, *dpred = bt.dpred, *dconf = bt.dconf;
    hook_rec_t h = {.m = m, .n = m->n_params - m->train_off};
    model_set_grad_hook(m, on_grads, &h);
    model_zero_grad(m);
    model_forward(m, imgs, DT_F32, NULL, 2, 0, err, sizeof err);
    hand_loss_t hl;
    be->hand_loss(be, &hl, dpred, dconf, m->pred, m->conf_logit, joints, NULL, NULL, NULL, 2, NULL);
    model_backward(m, dpred, dconf);
    float *fin = malloc(h.n * 4);
    be->download(be, fin, m->grads, h.n * 4);
    int order = h.calls >= 2 && h.from[h.calls - 1] == 0 && h.from[0] > 0, final = 1;
    for (int k = 0; k < h.calls; k++) {
        if (k && h.from[k] > h.from[k - 1]) order = 0;
        final &= memcmp(h.snap[k], fin + h.from[k], (h.n - h.from[k]) * 4) == 0;
        free(h.snap[k]);
    }
    ok(order && final && h.calls == cfg.layers - freeze + 2,
       "grad hook (freeze %d): %d calls from the end down to 0, each gradient final when announced", freeze, h.calls);
    free(fin);
    model_free(m);
    be->free(be, imgs); be->free(be, joints); be->free(be, dpred); be->free(be, dconf);
}

int main(void) {
    char err[256];
    backend_t *be = backend_cpu_create(err, sizeof err);
    if (!ok(be != NULL, "cpu backend")) return tap_done();

    const char *all[] = {
        "heads.hand.joints.fc2.weight", "heads.hand.joints.fc2.bias", "heads.hand.joints.fc1.weight",
        "heads.hand.joints.fc1.bias", "heads.hand.conf.fc2.weight", "heads.hand.conf.fc2.bias",
        "heads.hand.conf.fc1.weight", "layernorm.weight", "layernorm.bias",
        "encoder.layer.1.layer_scale2.lambda1", "encoder.layer.1.mlp.fc2.weight", "encoder.layer.1.mlp.fc1.bias",
        "encoder.layer.1.norm2.weight", "encoder.layer.1.attention.output.dense.weight",
        "encoder.layer.1.attention.attention.query.weight", "encoder.layer.1.attention.attention.key.weight",
        "encoder.layer.1.attention.attention.value.bias", "encoder.layer.1.layer_scale1.lambda1",
        "encoder.layer.0.norm1.weight", "encoder.layer.0.norm1.bias", "encoder.layer.0.mlp.fc1.weight",
        "embeddings.patch_embeddings.projection.weight", "embeddings.patch_embeddings.projection.bias",
        "embeddings.position_embeddings", "embeddings.cls_token", "embeddings.register_tokens",
    };
    run_config(be, 4, 0, all, 26);
    const char *f1[] = {"heads.hand.joints.fc1.weight", "layernorm.weight", "encoder.layer.1.mlp.fc1.weight",
                        "encoder.layer.1.attention.attention.key.weight", "encoder.layer.1.norm1.bias"};
    run_config(be, 0, 1, f1, 5);
    const char *f2[] = {"heads.hand.conf.fc1.weight", "heads.hand.joints.fc1.bias", "layernorm.weight", "layernorm.bias"};
    run_config(be, 0, 2, f2, 4);
    check_bf16(be);
    check_partial_batch(be);
    check_grad_hook(be, 0);
    check_grad_hook(be, 1);
    be->destroy(be);
    return tap_done();
}
