/* gpu/stage_infer.c — the infer stage (SPEC §4 infer).
 *
 * Inputs: dataset `indices`, or inline u8 HWC RGB `images` of any size. The
 * model runs at the dataset's image size: an inline image of another size is
 * resized on the host to the dataset's h x w (gpu/image.c: bilinear up,
 * anti-aliased triangle down) and its result entry says "resized_from":
 * [H, W]; an image of the right size is used byte for byte. Each batch is
 * converted on the backend with be->images_from_u8 using the dataset's
 * mean/std, straight into the plan's input dtype.
 *
 * Outputs per image: joints [21][3] in metres (camera frame) and confidences
 * (sigmoid of the confidence head), fp32. Optional features: "cls" (the
 * pooler output: final LayerNorm of the CLS token, [D]) and "patch_tokens"
 * (last_hidden_state without CLS and registers, [P,D]). Features over 64 KB
 * in total go to <result_dir>/features.safetensors (F32 "cls" [n,D],
 * "patch_tokens" [n,P,D]; the result names the file), smaller ones are
 * inline.
 *
 * On several devices batch_size is the global batch; each rank infers its
 * part of the inputs (a contiguous slice of the list, or on a sharded
 * dataset the indices its shard holds), rank 0 gathers every rank's outputs
 * (coll_gather_host), puts them back in input order and writes the result.
 */
#include "gpu/image.h"
#include "gpu/stage_common.h"
#include "store/fsutil.h"
#include "store/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFER_INLINE_MAX (64 * 1024)

static json_t *float_array(const float *x, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, stage_real(x[i]));
    return a;
}

/* Rows of `rows` floats each: out[pos[k]] = in[k] for the k-th gathered row. */
static void infer_scatter(float *out, const float *in, const int64_t *pos, int64_t n, size_t rows) {
    for (int64_t k = 0; k < n; k++) memcpy(out + (size_t)pos[k] * rows, in + (size_t)k * rows, rows * sizeof(float));
}

int stage_infer(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen) {
    const jobspec_t *spec = ctx->spec;
    const dataset_t *ds = ctx->ds;
    backend_t *be = ctx->be;
    dtype_plan_t plan = jobspec_plan(spec);
    const int W = stage_world(ctx), R = stage_rank(ctx);
    int rc = -1, B = stage_effective_batch(spec, ctx->ds->n);
    if (W > 1) B = (B + W - 1) / W;   /* batch_size is the global batch: each rank runs its share */
    model_t *m = NULL;
    json_t *state = NULL, *preds = NULL;
    float *cls = NULL, *patches = NULL, *hid = NULL, *pred = NULL, *conf = NULL;
    float *g_buf = NULL;
    void *d_img = NULL;
    uint8_t *h_img = NULL;
    int64_t *pos = NULL, *all_pos = NULL, counts[COLL_MAX_WORLD];
    stage_batch_t b;
    memset(&b, 0, sizeof b);
    ckpt_meta_t meta;
    char e2[512];
    double t0 = mono_now();
    int from_images = spec->n_images > 0;
    int64_t n = from_images ? spec->n_images : spec->n_indices, mine = 0;
    int32_t *idx = NULL, *part = NULL;
    if (n < 1) return errbuf_set(err, errlen, "infer needs indices or images");

    /* validate inputs before any allocation of consequence (inline images of
     * any size are valid: they are resized in the batch loop) */
    if (!from_images && jobspec_indices_expand(spec, ds->n, &idx, &n, err, errlen)) return -1;

    /* this rank's inputs (positions in the list) and every rank's, in rank order */
    if (from_images || !stage_sharded(ds)) {
        pos = malloc((size_t)n * sizeof *pos);
        all_pos = malloc((size_t)n * sizeof *all_pos);
        if (!pos || !all_pos) { errbuf_set(err, errlen, "out of memory"); goto done; }
        for (int r = 0; r < W; r++) {
            int64_t a = n * r / W, e = n * (r + 1) / W;
            counts[r] = e - a;
            if (r == R) {
                for (int64_t p = a; p < e; p++) pos[p - a] = p;
                mine = e - a;
            }
        }
        for (int64_t p = 0; p < n; p++) all_pos[p] = p;
    } else if (stage_rank_part(ctx, 0, idx, n, &pos, &mine, &all_pos, counts, err, errlen)) {
        goto done;
    }
    if (!from_images) {
        part = malloc((size_t)(mine > 0 ? mine : 1) * sizeof *part);
        if (!part) { errbuf_set(err, errlen, "out of memory"); goto done; }
        for (int64_t i = 0; i < mine; i++) part[i] = idx[pos[i]];
    }

    int want_hidden = spec->out_patch_tokens;
    float mean_pose[HAND_COORDS], *mp = NULL;
    if (!ctx->checkpoint_path) {   /* fresh heads start at the default training split's mean pose */
        int64_t tb, te;
        stage_split(ds->n, spec->split_train, &tb, &te);
        if (te > tb) {
            if (stage_mean_pose(ctx, tb, NULL, te - tb, mean_pose, err, errlen)) goto done;
            mp = mean_pose;
        }
    }
    stage_model_req_t req = stage_model_req(spec, B);
    req.ckpt_dir = ctx->checkpoint_path;
    req.mean_pose = mp;
    if (stage_model_open(ctx, &plan, &req, &m, &state, &meta, err, errlen)) goto done;
    int D = m->cfg.hidden, P = m->P, R_ = m->cfg.registers, T = m->T;
    if (stage_batch_init(&b, be, B, err, errlen)) goto done;
    size_t img_elems = (size_t)3 * ds->h * ds->w;
    if (from_images) {
        d_img = be->alloc(be, (size_t)B * img_elems * dtype_size(plan.input));
        h_img = malloc((size_t)B * img_elems);
        if (!d_img || !h_img) { errbuf_set(err, errlen, "out of memory for the image batch"); goto done; }
    }
    size_t feat_bytes = ((spec->out_cls ? (size_t)D : 0) + (spec->out_patch_tokens ? (size_t)P * D : 0)) *
                        sizeof(float) * (size_t)n;
    int feat_file = feat_bytes > INFER_INLINE_MAX;
    if (feat_file && !ctx->result_dir) {
        errbuf_set(err, errlen, "infer: %zu bytes of features need a result directory", feat_bytes);
        goto done;
    }
    /* this rank's outputs, rows in its input order (rank 0's arrays are sized for all n:
     * they receive everyone's) */
    int64_t rows = R == 0 ? n : (mine > 0 ? mine : 1);
    pred = malloc((size_t)rows * HAND_COORDS * sizeof(float));
    conf = malloc((size_t)rows * HAND_JOINTS * sizeof(float));
    if (spec->out_cls) cls = malloc((size_t)rows * D * sizeof(float));
    if (spec->out_patch_tokens) {
        patches = malloc((size_t)rows * P * D * sizeof(float));
        hid = malloc((size_t)B * T * D * sizeof(float));
    }
    if (!pred || !conf || (spec->out_cls && !cls) || (spec->out_patch_tokens && (!patches || !hid))) {
        errbuf_set(err, errlen, "out of memory for %zu bytes of features", feat_bytes);
        goto done;
    }

    /* every rank runs as many rounds as the busiest (several ranks agree on stopping in each) */
    long nb = (long)((mine + B - 1) / B);
    for (int r = 0; r < W; r++)
        if ((counts[r] + B - 1) / B > nb) nb = (long)((counts[r] + B - 1) / B);
    double t1 = mono_now();
    for (long k = 0; k < nb; k++) {
        int stop = ctx->stop && *ctx->stop;
        if (W > 1) {
            double v = stop;
            if (coll_allreduce_host(ctx->coll, &v, 1, err, errlen)) goto done;
            stop = v > 0;
        }
        if (stop) { errbuf_set(err, errlen, "infer cancelled"); rc = 1; goto done; }
        int64_t off = (int64_t)k * B;
        int c = off < mine ? (int)(mine - off < B ? mine - off : B) : 0;
        if (c == 0) continue;
        int r;
        if (from_images) {
            for (int i = 0; i < c; i++) {
                int64_t kk = pos[off + i];
                uint8_t *dst = h_img + (size_t)i * img_elems;   /* u8 [h][w][3] */
                if (spec->image_h[kk] == ds->h && spec->image_w[kk] == ds->w) {
                    memcpy(dst, spec->images[kk], img_elems);
                } else if (image_resize_u8(spec->images[kk], spec->image_h[kk], spec->image_w[kk], dst, ds->h, ds->w,
                                           e2, sizeof e2)) {
                    errbuf_set(err, errlen, "images[%lld]: %s", (long long)kk, e2);
                    goto done;
                }
            }
            be->images_from_u8(be, d_img, plan.input, h_img, c, ds->h, ds->w, ds->mean, ds->std);
            r = model_forward(m, d_img, plan.input, NULL, c, want_hidden, e2, sizeof e2);
        } else {
            stage_batch_set_idx(&b, ds, part + off, c);
            r = model_forward(m, ds->images, ds->image_dtype, b.d_idx, c, want_hidden, e2, sizeof e2);
        }
        if (r) { errbuf_set(err, errlen, "%s", e2); goto done; }
        be->download(be, pred + (size_t)off * HAND_COORDS, m->pred, (size_t)c * HAND_COORDS * sizeof(float));
        be->download(be, conf + (size_t)off * HAND_JOINTS, m->conf_logit, (size_t)c * HAND_JOINTS * sizeof(float));
        if (cls) be->download(be, cls + (size_t)off * D, m->pooler, (size_t)c * D * sizeof(float));
        if (patches) {
            be->download(be, hid, m->hidden, (size_t)c * T * D * sizeof(float));
            for (int i = 0; i < c; i++)
                memcpy(patches + ((size_t)(off + i) * P) * D, hid + ((size_t)i * T + 1 + R_) * D,
                       (size_t)P * D * sizeof(float));
        }
        if (ctx->on_progress) {
            double t = mono_now();
            stage_progress_t p = {.step = k + 1, .total_steps = nb, .epoch = 0};
            p.images_per_s = t > t1 ? (double)(off + c) * W / (t - t1) : 0;
            ctx->on_progress(ctx->ud, &p);
        }
    }
    double dt = mono_now() - t1;

    /* rank 0 gathers every rank's rows (in rank order), then puts them in input order */
    if (W > 1) {
        size_t rowf[4] = {HAND_COORDS, HAND_JOINTS, cls ? (size_t)D : 0, patches ? (size_t)P * D : 0};
        float *arr[4] = {pred, conf, cls, patches};
        size_t most = 0;
        for (int q = 0; q < 4; q++) most = rowf[q] > most ? rowf[q] : most;
        if (R == 0 && !(g_buf = malloc((size_t)n * most * sizeof(float)))) {
            errbuf_set(err, errlen, "out of memory gathering the outputs");
            coll_abort(ctx->coll, err);
            goto done;
        }
        for (int q = 0; q < 4; q++) {
            if (!rowf[q]) continue;
            size_t bytes[COLL_MAX_WORLD];
            for (int r = 0; r < W; r++) bytes[r] = (size_t)counts[r] * rowf[q] * sizeof(float);
            if (coll_gather_host(ctx->coll, arr[q], bytes, g_buf, err, errlen)) goto done;
            if (R == 0) infer_scatter(arr[q], g_buf, all_pos, n, rowf[q]);
        }
        if (R != 0) {   /* rank 0 reports */
            *result = json_pack("{s:i}", "rank", R);
            rc = 0;
            goto done;
        }
    }

    preds = json_array();
    for (int64_t i = 0; i < n; i++) {
        json_t *o = json_object();
        if (from_images) {
            json_object_set_new(o, "image", json_integer(i));
            if (spec->image_h[i] != ds->h || spec->image_w[i] != ds->w)
                json_object_set_new(o, "resized_from", json_pack("[ii]", spec->image_h[i], spec->image_w[i]));
        } else {
            json_object_set_new(o, "index", json_integer(idx[i]));
        }
        json_t *jt = json_array();
        for (int j = 0; j < HAND_JOINTS; j++) json_array_append_new(jt, float_array(pred + (size_t)i * HAND_COORDS + 3 * j, 3));
        json_object_set_new(o, "joints", jt);
        float cf[HAND_JOINTS];
        for (int j = 0; j < HAND_JOINTS; j++) cf[j] = 1.0f / (1.0f + expf(-conf[(size_t)i * HAND_JOINTS + j]));
        json_object_set_new(o, "confidence", float_array(cf, HAND_JOINTS));
        if (!feat_file) {
            if (cls) json_object_set_new(o, "cls", float_array(cls + (size_t)i * D, (size_t)D));
            if (patches) {
                json_t *pt = json_array();
                for (int p = 0; p < P; p++)
                    json_array_append_new(pt, float_array(patches + ((size_t)i * P + p) * D, (size_t)D));
                json_object_set_new(o, "patch_tokens", pt);
            }
        }
        json_array_append_new(preds, o);
    }

    json_t *res = json_object();
    json_object_set_new(res, "count", json_integer(n));
    json_object_set_new(res, "predictions", preds);
    preds = NULL;
    json_object_set_new(res, "units", json_pack("{ssss}", "joints", "m (camera frame)", "confidence",
                                                "sigmoid probability"));
    if (feat_file && (cls || patches)) {
        char path[1024];
        if (fs_mkdir_p(ctx->result_dir, FS_DIR_MODE, e2, sizeof e2)) {
            json_decref(res);
            errbuf_set(err, errlen, "infer: %s", e2);
            goto done;
        }
        snprintf(path, sizeof path, "%s/features.safetensors", ctx->result_dir);
        st_writer_t *w = st_writer_new();
        json_t *tens = json_object();
        if (w && cls) {
            int64_t sh[2] = {n, D};
            st_writer_add_ref(w, "cls", ST_F32, 2, sh, cls);
            json_object_set_new(tens, "cls", json_pack("[II]", (json_int_t)n, (json_int_t)D));
        }
        if (w && patches) {
            int64_t sh[3] = {n, P, D};
            st_writer_add_ref(w, "patch_tokens", ST_F32, 3, sh, patches);
            json_object_set_new(tens, "patch_tokens", json_pack("[III]", (json_int_t)n, (json_int_t)P, (json_int_t)D));
        }
        int wr = w ? st_writer_write(w, path, e2, sizeof e2) : -1;
        if (!w) snprintf(e2, sizeof e2, "out of memory");
        st_writer_free(w);
        if (wr) {
            json_decref(tens);
            json_decref(res);
            errbuf_set(err, errlen, "infer: writing %s: %s", path, e2);
            goto done;
        }
        json_object_set_new(res, "features", json_pack("{sssssosI}", "file", "features.safetensors", "path", path,
                                                       "tensors", tens, "bytes", (json_int_t)feat_bytes));
    } else if (cls || patches) {
        json_object_set_new(res, "features", json_pack("{ss}", "inline", "per prediction"));
    }
    stage_result_run_info(res, ctx, m, meta.backbone, &plan, n, dt, t0);
    if (W > 1) json_object_set_new(res, "data_parallel", json_pack("{s:i}", "devices", W));
    *result = res;
    rc = 0;
done:
    json_decref(preds);
    free(idx);
    free(part);
    free(pos);
    free(all_pos);
    free(g_buf);
    if (d_img) be->free(be, d_img);
    free(h_img);
    free(pred);
    free(conf);
    free(cls);
    free(patches);
    free(hid);
    stage_batch_free(&b);
    json_decref(state);
    model_free(m);
    return rc;
}
