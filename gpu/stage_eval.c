/* gpu/stage_eval.c — the eval stage (SPEC §4 eval).
 *
 * Samples: explicit `indices`, or the `split` ("val" default, or "train") of
 * the training job that wrote the checkpoint (its state.json spec; without
 * one, the default 0.9/0.1 split), as contiguous ranges (stage_common.h).
 * The mean predictor is the mean pose of that training split, evaluated on
 * the same samples. Batched forward in the eval plan (bf16 params and matmuls
 * unless precision.compute says fp32); metrics in mm (gpu/metrics.h).
 * On several devices batch_size is the global batch; each rank evaluates its
 * part of the samples (a slice of the list, or those its shard holds) and the
 * metric accumulators are summed (stage_eval_indices); rank 0 reports.
 */
#include "gpu/stage_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The split fractions of the training job recorded in a checkpoint's state. */
static void split_from_state(const json_t *state, double tr[2], double va[2]) {
    json_t *sp = json_object_get(json_object_get(state, "spec"), "split");
    json_t *t = json_object_get(sp, "train"), *v = json_object_get(sp, "val");
    if (json_array_size(t) == 2 && json_array_size(v) == 2 && json_is_number(json_array_get(t, 0)) &&
        json_is_number(json_array_get(t, 1)) && json_is_number(json_array_get(v, 0)) &&
        json_is_number(json_array_get(v, 1))) {
        tr[0] = json_number_value(json_array_get(t, 0));
        tr[1] = json_number_value(json_array_get(t, 1));
        va[0] = json_number_value(json_array_get(v, 0));
        va[1] = json_number_value(json_array_get(v, 1));
    }
}

int stage_eval(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen) {
    const double t_enter = mono_now();
    const jobspec_t *spec = ctx->spec;
    const dataset_t *ds = ctx->ds;
    dtype_plan_t plan = jobspec_plan(spec);
    int rc = -1, B = stage_effective_batch(spec, ds->n), W = stage_world(ctx);
    if (W > 1) B = (B + W - 1) / W;   /* batch_size is the global batch: each rank runs its share */
    model_t *m = NULL;
    json_t *state = NULL;
    int32_t *idx = NULL;
    int64_t n = 0;
    stage_batch_t b;
    memset(&b, 0, sizeof b);
    ckpt_meta_t meta;
    double t0 = mono_now();

    /* the model first: the checkpoint's state says which split it trained on */
    float mean_pose[HAND_COORDS];
    stage_model_req_t req = stage_model_req(spec, B);
    req.ckpt_dir = ctx->checkpoint_path;
    /* a fresh or weights-only model starts its heads at the default split's mean pose */
    double tr[2] = {spec->split_train[0], spec->split_train[1]}, va[2] = {spec->split_val[0], spec->split_val[1]};
    int64_t tb, te, vb, ve;
    if (!ctx->checkpoint_path) {
        stage_split(ds->n, tr, &tb, &te);
        if (te > tb && stage_mean_pose(ctx, tb, NULL, te - tb, mean_pose, err, errlen)) return -1;
        req.mean_pose = te > tb ? mean_pose : NULL;
    }
    if (stage_model_open(ctx, &plan, &req, &m, &state, &meta, err, errlen)) return -1;
    if (state) split_from_state(state, tr, va);
    stage_split(ds->n, tr, &tb, &te);
    stage_split(ds->n, va, &vb, &ve);

    const char *what;
    if (spec->n_ranges) {
        what = "indices";
        if (jobspec_indices_expand(spec, ds->n, &idx, &n, err, errlen)) goto done;
    } else {
        what = spec->split_is_val ? "val" : "train";
        int64_t a = spec->split_is_val ? vb : tb, e = spec->split_is_val ? ve : te;
        n = e - a;
        if (n < 1) {
            errbuf_set(err, errlen, "the %s split [%g, %g) of dataset '%s' (%lld samples) is empty", what,
                       spec->split_is_val ? va[0] : tr[0], spec->split_is_val ? va[1] : tr[1], spec->dataset,
                       (long long)ds->n);
            goto done;
        }
        idx = malloc((size_t)n * sizeof(int32_t));
        if (!idx) { errbuf_set(err, errlen, "out of memory"); goto done; }
        for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)(a + i);
    }
    const float *mp = NULL;
    if (te > tb) {
        if (stage_mean_pose(ctx, tb, NULL, te - tb, mean_pose, err, errlen)) goto done;
        mp = mean_pose;
    }
    if (stage_batch_init(&b, ctx->be, B, err, errlen)) goto done;
    stage_log(ctx, "eval: %lld samples (%s) in batches of %d, compute %s; set up in %.2f s", (long long)n, what, B,
              dtype_name(plan.compute), mono_now() - t_enter);
    metrics_t mt;
    double t1 = mono_now();
    int r = stage_eval_indices(ctx, m, &b, idx, n, B, mp, 1, 1, &mt, err, errlen);
    if (r < 0) goto done;
    if (r == 1) {
        errbuf_set(err, errlen, "eval cancelled");
        rc = 1;
        goto done;
    }
    double dt = mono_now() - t1;
    json_t *res = metrics_to_json(&mt);
    json_object_set_new(res, "samples_from", json_string(what));
    if (!spec->n_ranges) json_object_set_new(res, "range", json_pack("[II]", (json_int_t)idx[0], (json_int_t)(idx[0] + n)));
    json_object_set_new(res, "mean_pose_from", te > tb ? json_pack("[II]", (json_int_t)tb, (json_int_t)te) : json_null());
    stage_result_run_info(res, ctx, m, meta.backbone, &plan, n, dt, t0);
    if (ctx->on_metric) {
        ctx->on_metric(ctx->ud, 0, "mpjpe", mt.mpjpe);
        ctx->on_metric(ctx->ud, 0, "pa_mpjpe", mt.pa_mpjpe);
        ctx->on_metric(ctx->ud, 0, "auc", mt.auc);
        ctx->on_metric(ctx->ud, 0, "mean_predictor_mpjpe", mt.mean_pred_mpjpe);
    }
    *result = res;
    rc = 0;
done:
    stage_batch_free(&b);
    free(idx);
    json_decref(state);
    model_free(m);
    return rc;
}
