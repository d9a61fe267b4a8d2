/* gpu/stage_debug.c — the debug stage (SPEC §4 debug): a report computed in
 * fp32 (unless precision.compute overrides) on `batches` batches drawn by a
 * seeded permutation of the training split:
 *   - activations per block and head (the model's stats hook): mean, std, min,
 *     max, NaN and Inf counts, zero fraction (over all batches);
 *   - per parameter tensor: weight norm and the norm of the gradient of the
 *     mean batch loss from one fp32 backward per batch (no frozen layers here,
 *     so vanishing gradients in early blocks show), flagged "vanishing"
 *     (< 1e-7) or "exploding" (> 1e2), and whether training freezes it;
 *   - prediction diversity: std of the predicted joints across the samples
 *     (mean over the 63 coordinates, mm): "collapsed" below 1 mm, "low" below
 *     10 mm, else "ok"; the same statistic of the ground truth for scale;
 *   - the loss terms, and the dtype plan of every stage for this spec.
 */
#include "gpu/stage_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEBUG_VANISHING 1e-7
#define DEBUG_EXPLODING 1e2

typedef struct {
    char name[MODEL_NAME_MAX];
    double sum, sumsq, min, max, nan, inf, zero, count;
} act_stat_t;

typedef struct {
    backend_t *be;
    act_stat_t *v;
    int n, cap;
    int oom;
} act_acc_t;

static void on_stats(void *ud, const char *name, const void *x, dtype_t dt, size_t n) {
    act_acc_t *a = ud;
    act_stat_t *s = NULL;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->v[i].name, name) == 0) { s = &a->v[i]; break; }
    if (!s) {
        if (a->n == a->cap) {
            int nc = a->cap ? a->cap * 2 : 32;
            act_stat_t *nv = realloc(a->v, (size_t)nc * sizeof *nv);
            if (!nv) { a->oom = 1; return; }
            a->v = nv;
            a->cap = nc;
        }
        s = &a->v[a->n++];
        memset(s, 0, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", name);
        s->min = INFINITY;
        s->max = -INFINITY;
    }
    double o[7];
    a->be->stats(a->be, o, x, dt, n);
    s->sum += o[0];
    s->sumsq += o[1];
    if (o[2] < s->min) s->min = o[2];
    if (o[3] > s->max) s->max = o[3];
    s->nan += o[4];
    s->inf += o[5];
    s->zero += o[6];
    s->count += (double)n;
}

/* Would training with freeze_layers K freeze this tensor? */
static int frozen_in_training(const char *name, int K) {
    if (K <= 0) return 0;
    if (strncmp(name, "embeddings.", 11) == 0) return 1;
    int i;
    if (sscanf(name, "encoder.layer.%d.", &i) == 1) return i < K;
    return 0;
}

static const char *grad_flag(double g) {
    if (!isfinite(g)) return "non_finite";
    if (g < DEBUG_VANISHING) return "vanishing";
    if (g > DEBUG_EXPLODING) return "exploding";
    return "ok";
}

/* std across samples per coordinate, averaged over the 63 coordinates, in mm;
 * rows with use[i] == 0 are skipped (use may be NULL). */
static double diversity_mm(const float *x, const uint8_t *use, int64_t n) {
    double tot = 0;
    for (int k = 0; k < HAND_COORDS; k++) {
        double s = 0, ss = 0;
        int64_t c = 0;
        for (int64_t i = 0; i < n; i++) {
            if (use && !use[i]) continue;
            double v = x[i * HAND_COORDS + k];
            s += v;
            ss += v * v;
            c++;
        }
        if (c < 2) return NAN;
        double mean = s / c, var = ss / c - mean * mean;
        tot += sqrt(var > 0 ? var : 0);
    }
    return 1000.0 * tot / 63.0;
}

int stage_debug(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen) {
    const jobspec_t *spec = ctx->spec;
    const dataset_t *ds = ctx->ds;
    backend_t *be = ctx->be;
    dtype_plan_t plan = jobspec_plan(spec);
    int rc = -1, B = stage_effective_batch(spec, ds->n);
    model_t *m = NULL;
    json_t *state = NULL;
    int32_t *perm = NULL;
    float *preds = NULL, *gts = NULL;
    uint8_t *has = NULL;
    act_acc_t acc = {.be = be};
    stage_batch_t b;
    memset(&b, 0, sizeof b);
    ckpt_meta_t meta;
    char e2[256];
    double t0 = mono_now();

    int64_t tb, te;
    stage_split(ds->n, spec->split_train, &tb, &te);
    if (te <= tb) { tb = 0; te = ds->n; }
    int64_t nt = te - tb;
    float mean_pose[HAND_COORDS];
    if (stage_mean_pose(ctx, tb, NULL, nt, mean_pose, err, errlen)) return -1;
    stage_model_req_t req = stage_model_req(spec, B);
    req.ckpt_dir = ctx->checkpoint_path;
    req.mean_pose = mean_pose;
    if (stage_model_open(ctx, &plan, &req, &m, &state, &meta, err, errlen)) return -1;
    int train_freeze = ctx->checkpoint_path ? meta.freeze_layers : spec->model.freeze_layers;

    rng_t rng;
    rng_seed(&rng, spec->seed ^ 0x6465627567ull);
    perm = malloc((size_t)nt * sizeof(int32_t));
    if (!perm) { errbuf_set(err, errlen, "out of memory"); goto done; }
    for (int64_t i = 0; i < nt; i++) perm[i] = (int32_t)(tb + i);
    rng_permute(&rng, perm, nt);
    int64_t want = (int64_t)spec->batches * B, n = want < nt ? want : nt;
    int nb = (int)((n + B - 1) / B);
    if (n < want)
        stage_log(ctx, "debug: the training split has %lld samples; %d batches instead of %d", (long long)nt, nb,
                  spec->batches);
    preds = malloc((size_t)n * HAND_COORDS * sizeof(float));
    gts = malloc((size_t)n * HAND_COORDS * sizeof(float));
    has = malloc((size_t)n);
    if (!preds || !gts || !has) { errbuf_set(err, errlen, "out of memory"); goto done; }
    if (stage_batch_init(&b, be, B, err, errlen)) goto done;

    model_set_stats_hook(m, on_stats, &acc);
    if (m->grads) model_zero_grad(m);
    double l_tot = 0, l_joint = 0, l_pair = 0, l_conf = 0;
    for (int k = 0; k < nb; k++) {
        int64_t off = (int64_t)k * B;
        int c = (int)(n - off < B ? n - off : B);
        stage_batch_set_idx(&b, ds, perm + off, c);
        if (model_forward(m, ds->images, ds->image_dtype, b.d_idx, c, 0, e2, sizeof e2)) {
            errbuf_set(err, errlen, "%s", e2);
            goto done;
        }
        hand_loss_t hl;
        be->hand_loss(be, &hl, b.d_dpred, b.d_dconf, m->pred, m->conf_logit, ds->joints, ds->joints_valid,
                      ds->has_hand, b.d_idx, c, NULL);
        if (m->grads) model_backward(m, b.d_dpred, b.d_dconf);
        l_tot += hl.total / nb;
        l_joint += hl.joint / nb;
        l_pair += hl.pair / nb;
        l_conf += hl.conf / nb;
        stage_batch_preds(&b, m, c);
        stage_batch_labels(&b, ds, c);
        memcpy(preds + off * HAND_COORDS, b.h_pred, (size_t)c * HAND_COORDS * sizeof(float));
        memcpy(gts + off * HAND_COORDS, b.h_joints, (size_t)c * HAND_COORDS * sizeof(float));
        memcpy(has + off, b.h_has, (size_t)c);
        if (ctx->on_progress) {
            stage_progress_t p = {.step = k + 1, .total_steps = nb, .epoch = 0};
            ctx->on_progress(ctx->ud, &p);
        }
    }
    model_set_stats_hook(m, NULL, NULL);
    if (acc.oom) { errbuf_set(err, errlen, "out of memory collecting activation statistics"); goto done; }

    json_t *res = json_object();
    /* activations */
    json_t *acts = json_array();
    for (int i = 0; i < acc.n; i++) {
        act_stat_t *s = &acc.v[i];
        double fin = s->count - s->nan - s->inf, mean = fin > 0 ? s->sum / fin : NAN;
        double var = fin > 0 ? s->sumsq / fin - mean * mean : NAN;
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(s->name));
        json_object_set_new(o, "mean", stage_real(mean));
        json_object_set_new(o, "std", stage_real(isfinite(var) ? sqrt(var > 0 ? var : 0) : NAN));
        json_object_set_new(o, "min", stage_real(fin > 0 ? s->min : NAN));
        json_object_set_new(o, "max", stage_real(fin > 0 ? s->max : NAN));
        json_object_set_new(o, "nan", json_integer((json_int_t)s->nan));
        json_object_set_new(o, "inf", json_integer((json_int_t)s->inf));
        json_object_set_new(o, "zero_fraction", stage_real(s->count > 0 ? s->zero / s->count : NAN));
        json_object_set_new(o, "elements", json_integer((json_int_t)s->count));
        json_array_append_new(acts, o);
    }
    json_object_set_new(res, "activations", acts);

    /* parameters */
    json_t *params = json_array();
    int n_vanish = 0, n_explode = 0;
    double gsum = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_param_t *t = &m->table[i];
        double w = sqrt(be->sumsq(be, m->params + t->off, t->n));
        float *g = model_param_grad(m, i);
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(t->name));
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "weight_norm", stage_real(w));
        if (g) {
            double g2 = be->sumsq(be, g, t->n);
            gsum += g2;
            double gn = sqrt(g2) / nb;
            const char *f = grad_flag(gn);
            if (strcmp(f, "vanishing") == 0) n_vanish++;
            if (strcmp(f, "exploding") == 0 || strcmp(f, "non_finite") == 0) n_explode++;
            json_object_set_new(o, "grad_norm", stage_real(gn));
            json_object_set_new(o, "flag", json_string(f));
        } else {
            json_object_set_new(o, "grad_norm", json_null());
            json_object_set_new(o, "flag", json_string("no_grad"));
        }
        json_object_set_new(o, "frozen_in_training", json_boolean(frozen_in_training(t->name, train_freeze)));
        json_array_append_new(params, o);
    }
    json_object_set_new(res, "parameters", params);
    json_object_set_new(res, "grad_norm_total", m->grads ? stage_real(sqrt(gsum) / nb) : json_null());
    json_object_set_new(res, "tensors_vanishing", json_integer(n_vanish));
    json_object_set_new(res, "tensors_exploding", json_integer(n_explode));
    json_object_set_new(res, "thresholds", json_pack("{sfsf}", "vanishing", DEBUG_VANISHING, "exploding",
                                                     DEBUG_EXPLODING));

    /* prediction diversity */
    double div = diversity_mm(preds, NULL, n), gdiv = diversity_mm(gts, has, n);
    const char *flag = !isfinite(div) ? "unknown" : div < 1.0 ? "collapsed" : div < 10.0 ? "low" : "ok";
    json_object_set_new(res, "prediction_diversity",
                        json_pack("{sosossso}", "std_mm", stage_real(div), "target_std_mm", stage_real(gdiv),
                                  "flag", flag, "samples", json_integer(n)));
    if (strcmp(flag, "collapsed") == 0)
        stage_log(ctx, "debug: predictions collapsed (std %.3f mm across %lld samples)", div, (long long)n);

    json_object_set_new(res, "loss", json_pack("{sosososo}", "total", stage_real(l_tot), "joint", stage_real(l_joint),
                                               "pair", stage_real(l_pair), "conf", stage_real(l_conf)));
    json_object_set_new(res, "batches", json_integer(nb));
    json_object_set_new(res, "batch_size", json_integer(B));
    json_object_set_new(res, "samples", json_integer(n));
    json_object_set_new(res, "model", stage_model_json(m, meta.backbone, ctx->checkpoint_path ? ctx->checkpoint_path
                                                                          : ctx->weights_path));
    json_object_set_new(res, "dtype_plan", dtype_plan_to_json(&plan));
    json_t *plans = json_object();
    jobspec_t tmp = *spec;
    for (int t = JOB_TRAIN; t <= JOB_INFER; t++) {
        tmp.type = (job_type_t)t;
        dtype_plan_t p = t == JOB_DEBUG ? plan : jobspec_plan(&tmp);
        json_object_set_new(plans, job_type_name((job_type_t)t), dtype_plan_to_json(&p));
    }
    json_object_set_new(res, "stage_plans", plans);
    json_object_set_new(res, "wall_s", json_real(mono_now() - t0));
    *result = res;
    rc = 0;
done:
    if (m) model_set_stats_hook(m, NULL, NULL);
    free(acc.v);
    stage_batch_free(&b);
    free(perm);
    free(preds);
    free(gts);
    free(has);
    json_decref(state);
    model_free(m);
    return rc;
}
