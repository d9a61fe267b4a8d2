/* gpu/stages.c — stage_run (the dispatch of gpu/stages.h) and the helpers the
 * four stage loops share (gpu/stage_common.h): PRNG, split, model opening,
 * batch label buffers, mean pose, batched evaluation. */
#include "gpu/stage_common.h"
#include "store/errbuf.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- misc -------------------------------------------------------------------------- */

void stage_split(int64_t n, const double frac[2], int64_t *begin, int64_t *end) {
    *begin = (int64_t)llround(frac[0] * (double)n);
    *end = (int64_t)llround(frac[1] * (double)n);
    if (*begin < 0) *begin = 0;
    if (*end > n) *end = n;
    if (*end < *begin) *end = *begin;
}

void stage_log(stage_ctx_t *ctx, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (ctx->on_log) ctx->on_log(ctx->ud, buf);
}


json_t *stage_real(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

/* ---- model -------------------------------------------------------------------------- */

int stage_model_open(stage_ctx_t *ctx, const dtype_plan_t *plan, const stage_model_req_t *req,
                     model_t **out, json_t **state, ckpt_meta_t *meta, char *err, size_t errlen) {
    const jobspec_t *spec = ctx->spec;
    const dataset_t *ds = ctx->ds;
    model_config_t cfg;
    int has_meta = 0;
    char e2[384];
    *out = NULL;
    if (state) *state = NULL;
    memset(meta, 0, sizeof *meta);
    const char *src = req->ckpt_dir ? req->ckpt_dir : ctx->weights_path;
    if (src) {
        if (ckpt_read_config(src, &cfg, meta, &has_meta, e2, sizeof e2))
            return errbuf_set(err, errlen, "%s", e2);
        if (!has_meta) snprintf(meta->backbone, sizeof meta->backbone, "%s", spec->model.backbone);
        if (spec->model.backbone[0] &&
            (cfg.hidden != spec->model.hidden || cfg.layers != spec->model.layers ||
             cfg.heads != spec->model.heads || cfg.registers != spec->model.registers))
            return errbuf_set(err, errlen,
                              "model.backbone %s (registers %d) does not match %s (hidden %d, %d layers, "
                              "%d heads, %d registers)", spec->model.backbone, spec->model.registers, src,
                              cfg.hidden, cfg.layers, cfg.heads, cfg.registers);
        if (has_meta && (fabsf(meta->mean[0] - ds->mean[0]) > 1e-6f || fabsf(meta->std[0] - ds->std[0]) > 1e-6f))
            stage_log(ctx, "note: the model was trained with mean/std (%.3f, %.3f, %.3f)/(%.3f, %.3f, %.3f), "
                      "the dataset uses (%.3f, %.3f, %.3f)/(%.3f, %.3f, %.3f)", meta->mean[0], meta->mean[1],
                      meta->mean[2], meta->std[0], meta->std[1], meta->std[2], ds->mean[0], ds->mean[1],
                      ds->mean[2], ds->std[0], ds->std[1], ds->std[2]);
    } else {
        if (!spec->model.backbone[0])
            return errbuf_set(err, errlen, "no model: give model.backbone, model.weights or a checkpoint");
        if (model_config_by_name(spec->model.backbone, spec->model.registers, &cfg, e2, sizeof e2))
            return errbuf_set(err, errlen, "%s", e2);
        snprintf(meta->backbone, sizeof meta->backbone, "%s", spec->model.backbone);
    }
    cfg.head_hand = 1;
    if (req->freeze_layers > cfg.layers)
        return errbuf_set(err, errlen, "model.freeze_layers %d exceeds the model's %d layers",
                          req->freeze_layers, cfg.layers);
    model_opts_t o;
    memset(&o, 0, sizeof o);
    o.image_h = ds->h;
    o.image_w = ds->w;
    o.max_batch = req->max_batch;
    o.cdt = plan->compute;
    o.grads = req->grads;
    o.optimizer = req->optimizer;
    o.freeze_layers = req->freeze_layers;
    o.want_hidden = req->want_hidden;
    model_t *m = model_create(ctx->be, &cfg, &o, e2, sizeof e2);
    if (!m) return errbuf_set(err, errlen, "%s", e2);   /* model_create names itself */
    if (req->ckpt_dir) {
        if (ckpt_load(req->ckpt_dir, m, req->load_optimizer, state, e2, sizeof e2)) {
            model_free(m);
            return errbuf_set(err, errlen, "%s", e2);
        }
    } else if (ctx->weights_path) {
        if (model_load_hf_dir(m, ctx->weights_path, e2, sizeof e2)) {
            model_free(m);
            return errbuf_set(err, errlen, "%s", e2);
        }
        if (!m->heads_loaded) model_init_heads(m, ctx->spec->seed, req->mean_pose);
    } else {
        model_init(m, ctx->spec->seed, req->mean_pose);
    }
    if (!(req->ckpt_dir && has_meta)) meta->freeze_layers = req->freeze_layers;   /* else: as trained */
    meta->head_hand = 1;
    memcpy(meta->mean, ds->mean, sizeof meta->mean);
    memcpy(meta->std, ds->std, sizeof meta->std);
    meta->image_h = ds->h;
    meta->image_w = ds->w;
    *out = m;
    return 0;
}

stage_model_req_t stage_model_req(const jobspec_t *spec, int B) {
    stage_model_req_t r;
    memset(&r, 0, sizeof r);
    r.max_batch = B;
    switch (spec->type) {
    case JOB_TRAIN:
        r.grads = 1;
        r.optimizer = 1;
        r.freeze_layers = spec->model.freeze_layers;
        break;
    case JOB_DEBUG:
        r.grads = jobspec_plan(spec).has_grads;
        break;
    case JOB_EVAL:
        break;
    case JOB_INFER:
        r.want_hidden = spec->out_patch_tokens;
        break;
    }
    return r;
}

int stage_effective_batch(const jobspec_t *spec, int64_t n_samples) {
    int64_t from = n_samples, b, e;
    switch (spec->type) {
    case JOB_TRAIN:
        stage_split(n_samples, spec->split_train, &b, &e);
        from = e - b;
        break;
    case JOB_DEBUG:
        stage_split(n_samples, spec->split_train, &b, &e);
        from = e > b ? e - b : n_samples;
        break;
    case JOB_EVAL:
        from = spec->n_ranges ? spec->n_indices : n_samples;
        break;
    case JOB_INFER:
        from = spec->n_images ? spec->n_images : spec->n_indices;
        break;
    }
    int64_t B = spec->batch_size < from ? spec->batch_size : from;
    return B < 1 ? 1 : (int)B;
}

int stage_memory_estimate(const jobspec_t *spec, const model_config_t *cfg, int image_h, int image_w,
                          stage_mem_t *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    dtype_plan_t plan = jobspec_plan(spec);
    const int B = spec->batch_size;
    stage_model_req_t req = stage_model_req(spec, B);
    model_config_t c = *cfg;
    c.head_hand = 1;
    model_opts_t o = {.image_h = image_h, .image_w = image_w, .max_batch = B, .cdt = plan.compute,
                      .grads = req.grads, .optimizer = req.optimizer, .freeze_layers = req.freeze_layers,
                      .want_hidden = req.want_hidden};
    model_mem_t mm;
    if (!model_working_bytes(&c, &o, &mm, err, errlen)) return -1;
    out->params = mm.params;
    out->grads = mm.grads;
    out->optimizer = mm.optimizer;
    out->activations = mm.activations;
    const size_t D = (size_t)c.hidden, F = D * (size_t)c.mlp_ratio;
    const size_t P = (size_t)(image_h / c.patch) * (size_t)(image_w / c.patch), T = 1 + (size_t)c.registers + P;
    const size_t img = (size_t)3 * (size_t)image_h * (size_t)image_w;
    out->batch = stage_batch_bytes(B) + stage_batch_bytes(STAGE_MEAN_POSE_CHUNK);
    if (spec->type == JOB_INFER && spec->n_images) out->batch += (size_t)B * img * dtype_size(plan.input);
    out->workspace = 2 * (size_t)B * T * (F > 3 * D ? F : 3 * D) * sizeof(float);
    out->backend = mm.total + out->batch + out->workspace;
    if (spec->type == JOB_INFER) {
        size_t n = (size_t)(spec->n_images ? spec->n_images : spec->n_indices);
        if (spec->n_images) out->host += (size_t)B * img;                       /* u8 staging */
        if (spec->out_cls) out->host += n * D * sizeof(float);
        if (spec->out_patch_tokens) out->host += n * P * D * sizeof(float) + (size_t)B * T * D * sizeof(float);
        out->host += n * 2048;   /* a prediction's JSON: 84 numbers and keys */
    }
    return 0;
}

json_t *stage_model_json(const model_t *m, const char *backbone, const char *source) {
    return json_pack("{sssisisisisisIsIsiss}", "backbone", backbone && *backbone ? backbone : "(from weights)",
                     "hidden", m->cfg.hidden, "layers", m->cfg.layers, "heads", m->cfg.heads,
                     "registers", m->cfg.registers, "patch", m->cfg.patch,
                     "params", (json_int_t)model_num_params(m), "trainable_params",
                     (json_int_t)(m->opts.grads ? model_num_trainable(m) : 0),
                     "freeze_layers", m->opts.freeze_layers, "source", source ? source : "fresh init");
}

/* ---- labels --------------------------------------------------------------------------- */

int stage_mean_pose(stage_ctx_t *ctx, int64_t begin, const int32_t *idx, int64_t n, float out[HAND_COORDS],
                    char *err, size_t errlen) {
    backend_t *be = ctx->be;
    const dataset_t *ds = ctx->ds;
    enum { CH = STAGE_MEAN_POSE_CHUNK };
    const int sharded = stage_sharded(ds);
    stage_batch_t b;
    if (stage_batch_init(&b, be, CH, err, errlen)) return -1;
    /* sums, then counts: one vector for the ranks' sum on a sharded dataset */
    double acc[HAND_COORDS + HAND_JOINTS] = {0};
    double *sum = acc, *cnt = acc + HAND_COORDS;
    int32_t *hidx = malloc(CH * sizeof(int32_t));
    if (!hidx) {
        stage_batch_free(&b);
        return errbuf_set(err, errlen, "out of memory");
    }
    for (int64_t off = 0; off < n; off += CH) {
        int c = (int)(n - off < CH ? n - off : CH), k = 0;
        for (int i = 0; i < c; i++) {
            int32_t sidx = idx ? idx[off + i] : (int32_t)(begin + off + i);
            if (!sharded || (sidx >= ds->first && sidx < ds->first + ds->held)) hidx[k++] = sidx;
        }
        if (!k) continue;
        stage_batch_set_idx(&b, ds, hidx, k);
        stage_batch_labels(&b, ds, k);
        for (int s = 0; s < k; s++) {
            if (!b.h_has[s]) continue;
            for (int j = 0; j < HAND_JOINTS; j++) {
                const float *g = b.h_joints + s * HAND_COORDS + 3 * j;
                if (!b.h_valid[s * HAND_JOINTS + j] || !isfinite(g[0]) || !isfinite(g[1]) || !isfinite(g[2])) continue;
                for (int q = 0; q < 3; q++) sum[3 * j + q] += g[q];
                cnt[j]++;
            }
        }
    }
    free(hidx);
    stage_batch_free(&b);
    if (sharded && coll_allreduce_host(ctx->coll, acc, HAND_COORDS + HAND_JOINTS, err, errlen)) return -1;
    for (int j = 0; j < HAND_JOINTS; j++)
        for (int k = 0; k < 3; k++) out[3 * j + k] = cnt[j] ? (float)(sum[3 * j + k] / cnt[j]) : 0.0f;
    return 0;
}

size_t stage_batch_bytes(int cap) {
    size_t c = (size_t)cap;
    return c * sizeof(int32_t) + c * HAND_COORDS * sizeof(float) + c * HAND_JOINTS + c +
           c * HAND_COORDS * sizeof(float) + c * HAND_JOINTS * sizeof(float) + c * sizeof(aug_sample_t);
}

int stage_batch_init(stage_batch_t *b, backend_t *be, int cap, char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    b->be = be;
    b->cap = cap;
    size_t c = (size_t)cap;
    b->d_idx = be->alloc(be, c * sizeof(int32_t));
    b->d_joints = be->alloc(be, c * HAND_COORDS * sizeof(float));
    b->d_valid = be->alloc(be, c * HAND_JOINTS);
    b->d_has = be->alloc(be, c);
    b->d_dpred = be->alloc(be, c * HAND_COORDS * sizeof(float));
    b->d_dconf = be->alloc(be, c * HAND_JOINTS * sizeof(float));
    b->h_pred = malloc(c * HAND_COORDS * sizeof(float));
    b->h_conf = malloc(c * HAND_JOINTS * sizeof(float));
    b->h_joints = malloc(c * HAND_COORDS * sizeof(float));
    b->h_valid = malloc(c * HAND_JOINTS);
    b->h_has = malloc(c);
    b->d_aug = be->alloc(be, c * sizeof(aug_sample_t));
    b->h_aug = malloc(c * sizeof(aug_sample_t));
    b->h_idx = malloc(c * sizeof(int32_t));
    if (!b->d_idx || !b->d_joints || !b->d_valid || !b->d_has || !b->d_dpred || !b->d_dconf || !b->h_pred ||
        !b->h_conf || !b->h_joints || !b->h_valid || !b->h_has || !b->d_aug || !b->h_aug || !b->h_idx) {
        stage_batch_free(b);
        return errbuf_set(err, errlen, "out of memory for batch buffers (%d samples): %s", cap, be->err);
    }
    return 0;
}

void stage_batch_free(stage_batch_t *b) {
    backend_t *be = b->be;
    if (!be) return;
    if (b->d_idx) be->free(be, b->d_idx);
    if (b->d_joints) be->free(be, b->d_joints);
    if (b->d_valid) be->free(be, b->d_valid);
    if (b->d_has) be->free(be, b->d_has);
    if (b->d_dpred) be->free(be, b->d_dpred);
    if (b->d_dconf) be->free(be, b->d_dconf);
    if (b->d_aug) be->free(be, b->d_aug);
    free(b->h_aug);
    free(b->h_idx);
    free(b->h_pred);
    free(b->h_conf);
    free(b->h_joints);
    free(b->h_valid);
    free(b->h_has);
    memset(b, 0, sizeof *b);
}

void stage_batch_set_idx(stage_batch_t *b, const dataset_t *ds, const int32_t *idx, int n) {
    assert(n >= 1 && n <= b->cap);
    if (ds->first == 0) {
        for (int i = 0; i < n; i++) assert(idx[i] >= 0 && (int64_t)idx[i] < ds->held);
        b->be->upload(b->be, b->d_idx, idx, (size_t)n * sizeof(int32_t));
        return;
    }
    for (int i = 0; i < n; i++) {   /* a shard: its arrays start at sample ds->first */
        assert(idx[i] >= ds->first && idx[i] < ds->first + ds->held);
        b->h_idx[i] = (int32_t)(idx[i] - ds->first);
    }
    b->be->upload(b->be, b->d_idx, b->h_idx, (size_t)n * sizeof(int32_t));
}

void stage_batch_labels(stage_batch_t *b, const dataset_t *ds, int n) {
    backend_t *be = b->be;
    be->gather_rows(be, b->d_joints, ds->joints, b->d_idx, n, HAND_COORDS * sizeof(float));
    be->gather_rows(be, b->d_valid, ds->joints_valid, b->d_idx, n, HAND_JOINTS);
    be->gather_rows(be, b->d_has, ds->has_hand, b->d_idx, n, 1);
    be->download(be, b->h_joints, b->d_joints, (size_t)n * HAND_COORDS * sizeof(float));
    be->download(be, b->h_valid, b->d_valid, (size_t)n * HAND_JOINTS);
    be->download(be, b->h_has, b->d_has, (size_t)n);
}

void stage_batch_augment(stage_batch_t *b, const dataset_t *ds, const jobspec_t *spec, long epoch,
                         const int32_t *idx, int n, im2col_aug_t *ia) {
    assert(n >= 1 && n <= b->cap && spec->augment.on);
    for (int i = 0; i < n; i++)
        augment_draw(&spec->augment, spec->seed, epoch, idx[i], ds->h, ds->w, ds->mean, &b->h_aug[i], NULL);
    b->be->upload(b->be, b->d_aug, b->h_aug, (size_t)n * sizeof(aug_sample_t));
    memset(ia, 0, sizeof *ia);
    ia->samples = b->d_aug;
    ia->intrinsics = ds->intrinsics;
    memcpy(ia->mean, ds->mean, sizeof ia->mean);
    memcpy(ia->std, ds->std, sizeof ia->std);
}

void stage_batch_aug_labels(stage_batch_t *b, const dataset_t *ds, int n) {
    backend_t *be = b->be;
    be->aug_joints(be, b->d_joints, ds->joints, b->d_idx, b->d_aug, n);
    be->gather_rows(be, b->d_valid, ds->joints_valid, b->d_idx, n, HAND_JOINTS);
    be->gather_rows(be, b->d_has, ds->has_hand, b->d_idx, n, 1);
}

void stage_batch_preds(stage_batch_t *b, const model_t *m, int n) {
    b->be->download(b->be, b->h_pred, m->pred, (size_t)n * HAND_COORDS * sizeof(float));
    b->be->download(b->be, b->h_conf, m->conf_logit, (size_t)n * HAND_JOINTS * sizeof(float));
}

/* ---- ranks -------------------------------------------------------------------------------- */
int stage_rank(const stage_ctx_t *ctx) { return ctx->coll ? coll_rank(ctx->coll) : 0; }
int stage_world(const stage_ctx_t *ctx) { return ctx->coll ? coll_world(ctx->coll) : 1; }
int stage_sharded(const dataset_t *ds) { return ds->held < ds->n; }

int stage_rank_part(const stage_ctx_t *ctx, int64_t begin, const int32_t *idx, int64_t n, int64_t **pos,
                    int64_t *m, int64_t **all_pos, int64_t *counts, char *err, size_t errlen) {
    const int W = stage_world(ctx), R = stage_rank(ctx);
    const dataset_t *ds = ctx->ds;
    *pos = NULL;
    *m = 0;
    if (all_pos) *all_pos = NULL;
    /* every rank's shard [first, end): its own, or exchanged */
    double bounds[2 * COLL_MAX_WORLD] = {0};
    int sharded = stage_sharded(ds);
    if (sharded) {
        bounds[2 * R] = (double)ds->first;
        bounds[2 * R + 1] = (double)(ds->first + ds->held);
        if (coll_allreduce_host(ctx->coll, bounds, 2 * (size_t)W, err, errlen)) return -1;
    }
    int64_t cap = n > 0 ? n : 1;
    int64_t *mine = malloc((size_t)cap * sizeof *mine), *all = all_pos ? malloc((size_t)cap * sizeof *all) : NULL;
    if (!mine || (all_pos && !all)) {
        free(mine);
        free(all);
        return errbuf_set(err, errlen, "out of memory for %lld positions", (long long)n);
    }
    int64_t na = 0;
    for (int r = 0; r < W; r++) {
        int64_t cr = 0;
        if (!sharded) {
            int64_t a = n * r / W, e = n * (r + 1) / W;
            for (int64_t p = a; p < e; p++) {
                if (r == R) mine[(*m)++] = p;
                if (all) all[na++] = p;
            }
            cr = e - a;
        } else {
            int64_t lo = (int64_t)bounds[2 * r], hi = (int64_t)bounds[2 * r + 1];
            for (int64_t p = 0; p < n; p++) {
                int64_t sidx = idx ? idx[p] : begin + p;
                if (sidx < lo || sidx >= hi) continue;
                if (r == R) mine[(*m)++] = p;
                if (all) all[na++] = p;
                cr++;
            }
        }
        if (counts) counts[r] = cr;
    }
    if (sharded && all_pos && na != n) {   /* the shards cover the dataset: every sample has a rank */
        free(mine);
        free(all);
        return errbuf_set(err, errlen, "%lld of %lld samples are on no rank's shard", (long long)(n - na), (long long)n);
    }
    *pos = mine;
    if (all_pos) *all_pos = all;
    return 0;
}

int stage_check_same_params(stage_ctx_t *ctx, model_t *m, long step, char *err, size_t errlen) {
    const int W = stage_world(ctx), R = stage_rank(ctx);
    if (W == 1) return 0;
    enum { K = 3 };
    double v[K * COLL_MAX_WORLD] = {0};
    backend_t *be = m->be;
    size_t nt = m->n_params - m->train_off;
    v[K * R + 0] = be->sumsq(be, m->params, m->n_params);
    v[K * R + 1] = m->adam_m && nt ? be->sumsq(be, m->adam_m, nt) : 0;
    v[K * R + 2] = m->adam_v && nt ? be->sumsq(be, m->adam_v, nt) : 0;
    if (coll_allreduce_host(ctx->coll, v, (size_t)(K * W), err, errlen)) return -1;
    for (int r = 1; r < W; r++)
        if (memcmp(&v[K * r], &v[0], K * sizeof(double)) != 0)
            return errbuf_set(err, errlen, "step %ld: the parameters of rank %d differ from rank 0's (checksums "
                              "%.17g/%.17g/%.17g vs %.17g/%.17g/%.17g): the ranks have diverged", step, r, v[K * r],
                              v[K * r + 1], v[K * r + 2], v[0], v[1], v[2]);
    return 0;
}

/* Every rank's metric accumulators summed (each rank gets the total). */
static int stage_metrics_allreduce(stage_ctx_t *ctx, metrics_acc_t *acc, char *err, size_t errlen) {
    if (stage_world(ctx) == 1) return 0;
    double v[METRICS_ACC_DOUBLES];
    metrics_acc_pack(acc, v);
    if (coll_allreduce_host(ctx->coll, v, METRICS_ACC_DOUBLES, err, errlen)) return -1;
    metrics_acc_unpack(acc, v);
    return 0;
}

/* With several ranks: whether any rank was asked to stop (all get the same answer). */
static int stage_agree_stop(stage_ctx_t *ctx, int *stop, char *err, size_t errlen) {
    double v = ctx->stop && *ctx->stop ? 1 : 0;
    if (stage_world(ctx) > 1 && coll_allreduce_host(ctx->coll, &v, 1, err, errlen)) return -1;
    *stop = v > 0;
    return 0;
}

int stage_eval_indices(stage_ctx_t *ctx, model_t *m, stage_batch_t *b, const int32_t *idx, int64_t n,
                       int bs, const float *mean_pose, int progress, int stoppable, metrics_t *out,
                       char *err, size_t errlen) {
    const int W = stage_world(ctx);
    metrics_acc_t acc;
    metrics_acc_init(&acc, mean_pose);
    if (bs > b->cap) bs = b->cap;
    if (bs > m->opts.max_batch) bs = m->opts.max_batch;
    char e2[256];
    /* this rank's samples; with several ranks all run as many rounds as the busiest */
    int64_t *pos = NULL, mine = n, counts[COLL_MAX_WORLD];
    int32_t *part = NULL;
    const int32_t *list = idx;
    if (W > 1) {
        if (stage_rank_part(ctx, 0, idx, n, &pos, &mine, NULL, counts, err, errlen)) return -1;
        part = malloc((size_t)(mine > 0 ? mine : 1) * sizeof *part);
        if (!part) { free(pos); return errbuf_set(err, errlen, "out of memory"); }
        for (int64_t i = 0; i < mine; i++) part[i] = idx[pos[i]];
        free(pos);
        list = part;
    }
    long nb = (long)((mine + bs - 1) / bs);
    for (int r = 0; W > 1 && r < W; r++)
        if ((counts[r] + bs - 1) / bs > nb) nb = (long)((counts[r] + bs - 1) / bs);
    double t0 = mono_now(), t_last = t0;
    int rc = 0;
    for (long k = 0; k < nb; k++) {
        if (stoppable) {
            int stop = 0;
            if (W > 1 ? stage_agree_stop(ctx, &stop, err, errlen) : 0) { rc = -1; break; }
            if (W == 1) stop = ctx->stop && *ctx->stop;
            if (stop) { rc = 1; break; }
        }
        int64_t off = (int64_t)k * bs;
        int c = off < mine ? (int)(mine - off < bs ? mine - off : bs) : 0;
        if (c > 0) {
            stage_batch_set_idx(b, ctx->ds, list + off, c);
            if (model_forward(m, ctx->ds->images, ctx->ds->image_dtype, b->d_idx, c, 0, e2, sizeof e2)) {
                rc = errbuf_set(err, errlen, "%s", e2);
                break;
            }
            stage_batch_preds(b, m, c);
            stage_batch_labels(b, ctx->ds, c);
            metrics_acc_add(&acc, b->h_pred, b->h_joints, b->h_valid, b->h_has, c);
        }
        double t = mono_now();
        if (progress && k == 0) stage_log(ctx, "batch 1: the first, %.2f s", t - t0);
        if (progress && ctx->on_progress && (t - t_last >= 0.5 || k + 1 == nb)) {
            int64_t done = off + c;
            stage_progress_t p = {.step = k + 1, .total_steps = nb, .epoch = 0};
            p.images_per_s = t > t0 ? (double)done * W / (t - t0) : 0;
            p.eta_s = (t - t0) / (double)(k + 1) * (double)(nb - k - 1);
            ctx->on_progress(ctx->ud, &p);
            t_last = t;
        }
    }
    free(part);
    if (rc) return rc;
    if (stage_metrics_allreduce(ctx, &acc, err, errlen)) return -1;
    metrics_acc_result(&acc, out);
    return 0;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

int stage_run(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen) {
    *result = NULL;
    if (err && errlen) err[0] = 0;
    if (!ctx || !ctx->be || !ctx->ds || !ctx->spec)
        return errbuf_set(err, errlen, "stage_run: backend, dataset and spec are required");
    const dataset_t *ds = ctx->ds;
    if (ds->n < 1 || !ds->images || !ds->joints || !ds->joints_valid || !ds->has_hand)
        return errbuf_set(err, errlen, "dataset '%s' is empty or incomplete", ctx->spec->dataset);
    if (ds->image_dtype != DT_BF16 && ds->image_dtype != DT_F32)
        return errbuf_set(err, errlen, "dataset images are %s; bf16 or fp32 expected",
                          dtype_name(ds->image_dtype));
    if (ds->first < 0 || ds->held < 1 || ds->first + ds->held > ds->n)
        return errbuf_set(err, errlen, "dataset '%s': samples [%lld, %lld) are not within its %lld", ctx->spec->dataset,
                          (long long)ds->first, (long long)(ds->first + ds->held), (long long)ds->n);
    if (stage_sharded(ds) && stage_world(ctx) == 1)
        return errbuf_set(err, errlen, "dataset '%s' is sharded (this device holds samples [%lld, %lld) of %lld): "
                          "a job on it runs on every device", ctx->spec->dataset, (long long)ds->first,
                          (long long)(ds->first + ds->held), (long long)ds->n);
    if (ctx->spec->type == JOB_DEBUG && stage_world(ctx) > 1)
        return errbuf_set(err, errlen, "debug runs on one device");
    /* a context without collectives is one rank */
    coll_t *own = NULL;
    if (!ctx->coll && !(ctx->coll = own = coll_open_single(ctx->be))) return errbuf_set(err, errlen, "out of memory");
    int rc;
    switch (ctx->spec->type) {
    case JOB_TRAIN: rc = stage_train(ctx, result, err, errlen); break;
    case JOB_EVAL: rc = stage_eval(ctx, result, err, errlen); break;
    case JOB_DEBUG: rc = stage_debug(ctx, result, err, errlen); break;
    case JOB_INFER: rc = stage_infer(ctx, result, err, errlen); break;
    default: rc = errbuf_set(err, errlen, "unknown job type %d", (int)ctx->spec->type); break;
    }
    if (own) {
        coll_close(own);
        ctx->coll = NULL;
    }
    return rc;
}

void stage_result_run_info(json_t *res, const stage_ctx_t *ctx, const model_t *m, const char *backbone,
                           const dtype_plan_t *plan, double images, double dt, double t0) {
    json_object_set_new(res, "checkpoint", ctx->checkpoint_path ? json_string(ctx->checkpoint_path) : json_null());
    json_object_set_new(res, "model", stage_model_json(m, backbone, ctx->checkpoint_path ? ctx->checkpoint_path
                                                                   : ctx->weights_path));
    json_object_set_new(res, "dtype_plan", dtype_plan_to_json(plan));
    json_object_set_new(res, "images_per_s", stage_real(dt > 0 ? images / dt : NAN));
    json_object_set_new(res, "wall_s", json_real(mono_now() - t0));
}
