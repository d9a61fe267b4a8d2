/* gpu/stage_train.c — the train stage (SPEC §4 train).
 *
 * Data: split.train / split.val are contiguous index ranges (stage_common.h).
 * Order: a permutation of the training range per epoch, drawn with
 * xoshiro256** from the state the generator had when the epoch began; that
 * state, the epoch and the position in the permutation go into state.json, so
 * a resumed run regenerates the same permutation and continues at the same
 * sample. Batches are batch_size samples; an epoch's last batch may be
 * smaller (nothing is dropped). steps, or epochs × ceil(n_train/batch_size).
 *
 * Augmentation (spec "augment", gpu/augment.h): each sample's transform is
 * drawn on the host from (seed, epoch, sample), applied in the gather, and the
 * loss reads the batch's transformed labels; validation never augments.
 *
 * Step: forward (plan compute dtype) → hand_loss → backward → global grad
 * norm (backend sumsq) → skip the update with a log line when it is not
 * finite, else clip (scale clip/norm) → AdamW with per-group lr: linear warmup
 * over warmup_steps, then cosine from the base lr (update t of T:
 * 0.5·(1+cos(π·(t−1−W)/(T−W)))) or constant.
 *
 * Several devices (ctx->coll, W ranks; one process each): batch_size is the
 * GLOBAL batch. Rank 0's parameters are broadcast at the start, so every rank
 * starts from the same bits. Each step:
 *   1. the ranks agree on stopping (a cancel reaches them at different
 *      moments) and sum the loss's normalizers over the global batch (the sum
 *      of the valid joints' weights, the valid joints and pairs), so that each
 *      rank's loss terms and gradients are its share of the GLOBAL batch's;
 *   2. each rank runs forward and backward on its samples; the gradients are
 *      summed over the ranks in buckets of TRAIND_COLL_BUCKET_MB (25) as the
 *      backward finishes them (model_set_grad_hook: the heads' buckets travel
 *      while the blocks below are still being differentiated);
 *   3. the loss terms are summed; every rank computes the same norm from the
 *      same summed gradients and applies the same AdamW update.
 * So the ranks stay identical; at every checkpoint a checksum of each rank's
 * parameters and moments is compared (a difference fails the job), and rank 0
 * writes the checkpoint, the events and the result.
 * Which samples a rank takes:
 *   replicated dataset — the global batch is exactly the one-device job's
 *     (the same permutation, epoch and position; state.json is the same), and
 *     rank r takes the slice [Bn·r/W, Bn·(r+1)/W) of it: the losses are the
 *     one-device job's up to float summation order, and a checkpoint resumes
 *     on any number of devices with the same data order;
 *   sharded dataset — rank r draws only from the training samples its device
 *     holds (its shard ∩ the training split), B·(r+1)/W − B·r/W of them per
 *     step, from its own endless stream: the concatenation of permutations of
 *     those samples, permutation e seeded by (seed, r, e) alone. The position
 *     in the stream is step × that count, so step alone says where every rank
 *     is: resuming needs no more than the step (state.json records the world
 *     size and each rank's training samples; a resume on another layout is
 *     refused). The reported epoch is step·B / n_train. The sample order thus
 *     differs from a one-device job's (each rank shuffles its own shard).
 *
 * Events: metrics loss, loss_joint, loss_pair, loss_conf, lr (heads),
 * lr_backbone, grad_norm (every step up to 2000 steps, else at step 1, every
 * total/2000 and the last), val_mpjpe, val_pa_mpjpe, val_auc, val_mean_predictor_mpjpe
 * (mm) at every eval_every and at the end; progress at most twice a second;
 * checkpoints every checkpoint_every (written beside training: see save_ckpt),
 * at the end, and when *ctx->stop is set (the step in flight finishes, a
 * checkpoint is written in place, return 1). Resume:
 * ctx->checkpoint_path (for train the resume_from / requeue checkpoint).
 */
#include "gpu/stage_common.h"
#include "store/fsutil.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A checkpoint being written by a thread of its own (see save_ckpt). */
typedef struct {
    pthread_t th;
    int active;                     /* started, not yet joined */
    atomic_int done;                /* set by the thread when it returns */
    ckpt_snap_t *snap;              /* the run's one snapshot (its host buffer kept between checkpoints) */
    json_t *metrics;                /* for on_checkpoint (NULL: none) */
    char dir[1024];
    long step;
    double snap_s, write_s;         /* copying out (training thread), writing (its thread) */
    int rc;
    char err[512];
} ckpt_bg_t;

typedef struct {
    stage_ctx_t *ctx;
    model_t *m;
    ckpt_meta_t meta;
    stage_batch_t b;
    int64_t tr_b, tr_e, va_b, va_e, n_train, n_val;
    int32_t *perm;                  /* [n_train] dataset indices of this epoch's order */
    int32_t *val_idx;               /* [n_val] */
    rng_t rng, epoch_rng;     /* generator now / at the start of the epoch */
    int epoch;                      /* 0-based */
    int64_t pos;                    /* samples of this epoch consumed */
    long step, total, last_ckpt_step, best_step;
    double best_val;
    float mean_pose[HAND_COORDS];
    json_t *last_val;               /* metrics JSON of the last eval */
    char last_ckpt_dir[1024];       /* the last checkpoint reported */
    ckpt_bg_t bg;                   /* the checkpoint being written beside training */
    int ckpt_failures;              /* checkpoints not written (warned; the run went on) */
    int ending;                     /* the run failed: no more steps */
    /* data parallelism */
    int W, R, sharded;
    int local_B;                    /* sharded: samples this rank takes per step */
    int64_t lt_b, lt_e, n_local;    /* sharded: this rank's training samples [lt_b, lt_e) */
    int64_t rank_train[COLL_MAX_WORLD];   /* sharded: every rank's n_local */
    int32_t *lperm;                 /* sharded: permutation of the local training samples for lperm_epoch */
    int64_t lperm_epoch;
    int32_t *lbatch;                /* sharded: this step's samples */
} train_t;

static float lr_factor(const jobspec_t *s, long t, long total) {
    const optim_spec_t *o = &s->optim;
    if (o->warmup_steps > 0 && t <= o->warmup_steps) return (float)t / (float)o->warmup_steps;
    if (!o->schedule_cosine) return 1.0f;
    long span = total - o->warmup_steps;
    if (span < 1) span = 1;
    double p = (double)(t - 1 - o->warmup_steps) / (double)span;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    return (float)(0.5 * (1.0 + cos(M_PI * p)));
}

static void new_epoch_order(train_t *T) {
    for (int64_t i = 0; i < T->n_train; i++) T->perm[i] = (int32_t)(T->tr_b + i);
    T->epoch_rng = T->rng;
    rng_permute(&T->rng, T->perm, T->n_train);
}

static json_t *state_json(const train_t *T) {
    const stage_ctx_t *ctx = T->ctx;
    json_t *s = json_object();
    json_object_set_new(s, "version", json_integer(1));
    json_object_set_new(s, "job", json_string(ctx->job_id ? ctx->job_id : ""));
    json_object_set_new(s, "step", json_integer(T->step));
    json_object_set_new(s, "total_steps", json_integer(T->total));
    json_object_set_new(s, "epoch", json_integer(T->epoch));
    json_object_set_new(s, "data_position", json_integer(T->pos));
    json_object_set_new(s, "rng_epoch_start", rng_to_json(&T->epoch_rng));
    json_object_set_new(s, "n_train", json_integer(T->n_train));
    json_object_set_new(s, "train_range", json_pack("[II]", (json_int_t)T->tr_b, (json_int_t)T->tr_e));
    json_object_set_new(s, "val_range", json_pack("[II]", (json_int_t)T->va_b, (json_int_t)T->va_e));
    json_object_set_new(s, "adam_step", json_integer(T->m->adam_step));
    json_object_set_new(s, "best_val_mpjpe", stage_real(T->best_val));
    json_object_set_new(s, "best_step", json_integer(T->best_step));
    json_object_set_new(s, "dataset", json_pack("{sssIsisi}", "name", ctx->spec->dataset, "samples",
                                                (json_int_t)ctx->ds->n, "height", ctx->ds->h, "width",
                                                ctx->ds->w));
    json_object_set_new(s, "spec", jobspec_to_json(ctx->spec));
    json_object_set_new(s, "world", json_integer(T->W));
    if (T->sharded) {   /* the data order is a function of the step and this layout */
        json_t *a = json_array();
        for (int r = 0; r < T->W; r++) json_array_append_new(a, json_integer(T->rank_train[r]));
        json_object_set_new(s, "data_order", json_pack("{s:s, s:o}", "sharded", "per-rank streams", "rank_train", a));
    }
    return s;
}

static int restore_state(train_t *T, const json_t *st, char *err, size_t errlen) {
    if (!json_is_object(st)) return errbuf_set(err, errlen, "resume: state.json is not an object");
    json_t *step = json_object_get(st, "step"), *ep = json_object_get(st, "epoch"),
           *pos = json_object_get(st, "data_position"), *nt = json_object_get(st, "n_train");
    if (!json_is_integer(step) || !json_is_integer(ep) || !json_is_integer(pos) || !json_is_integer(nt))
        return errbuf_set(err, errlen, "resume: state.json lacks step/epoch/data_position/n_train");
    if (json_integer_value(nt) != T->n_train)
        return errbuf_set(err, errlen,
                          "resume: the checkpoint's training split has %lld samples, this job's has %lld "
                          "(another dataset or split: use model.weights to start from it instead)",
                          (long long)json_integer_value(nt), (long long)T->n_train);
    if (rng_from_json(json_object_get(st, "rng_epoch_start"), &T->rng))
        return errbuf_set(err, errlen, "resume: state.json has no valid rng_epoch_start");
    T->step = (long)json_integer_value(step);
    T->epoch = (int)json_integer_value(ep);
    T->pos = json_integer_value(pos);
    if (T->step < 0 || T->epoch < 0 || T->pos < 0 || T->pos > T->n_train)
        return errbuf_set(err, errlen, "resume: state.json has an out-of-range step/epoch/position");
    json_t *bv = json_object_get(st, "best_val_mpjpe"), *bs = json_object_get(st, "best_step");
    T->best_val = json_is_number(bv) ? json_number_value(bv) : NAN;
    T->best_step = json_is_integer(bs) ? (long)json_integer_value(bs) : -1;
    /* a sharded run's order is its layout's: the same world and shards, or none */
    const json_t *order = json_object_get(st, "data_order"), *rt = json_object_get(order, "rank_train");
    int was_sharded = json_is_object(order);
    if (was_sharded != T->sharded)
        return errbuf_set(err, errlen, "resume: the checkpoint was written by a job on a %s dataset, this one's is %s "
                          "(the data order cannot continue)", was_sharded ? "sharded" : "replicated",
                          T->sharded ? "sharded" : "replicated");
    if (T->sharded) {
        int same = json_array_size(rt) == (size_t)T->W;
        for (int r = 0; same && r < T->W; r++) same = json_integer_value(json_array_get(rt, (size_t)r)) == T->rank_train[r];
        if (!same)
            return errbuf_set(err, errlen, "resume: the checkpoint's job drew from %zu shards of other sizes than this "
                              "job's %d (the same dataset on the same number of devices is needed)",
                              json_array_size(rt), T->W);
    }
    new_epoch_order(T);   /* the same permutation the interrupted run was in */
    return 0;
}

/* Sharded: permutation e of this rank's training samples, seeded by (seed, rank, e). */
static void local_order(train_t *T, int64_t e) {
    if (T->lperm_epoch == e) return;
    for (int64_t i = 0; i < T->n_local; i++) T->lperm[i] = (int32_t)(T->lt_b + i);
    rng_t r;
    rng_seed_stream(&r, T->ctx->spec->seed ^ 0x7261696e64617461ull ^ ((uint64_t)T->R << 48), (uint64_t)e);
    rng_permute(&r, T->lperm, T->n_local);
    T->lperm_epoch = e;
}

/* Sharded: this rank's samples of step `step` (0-based) into T->lbatch; their count. */
static int sharded_batch(train_t *T, long step) {
    if (T->n_local < 1) return 0;
    int64_t q0 = (int64_t)step * T->local_B;
    for (int i = 0; i < T->local_B; i++) {
        int64_t q = q0 + i;
        local_order(T, q / T->n_local);
        T->lbatch[i] = T->lperm[q % T->n_local];
    }
    return T->local_B;
}

static void grads_ready(void *ud, size_t from) { coll_buckets_ready(ud, from); }

static int run_val(train_t *T, char *err, size_t errlen) {
    stage_ctx_t *ctx = T->ctx;
    if (T->n_val < 1) return 0;
    metrics_t mt;
    int r = stage_eval_indices(ctx, T->m, &T->b, T->val_idx, T->n_val, T->m->opts.max_batch, T->mean_pose, 0,
                               T->W == 1, &mt, err, errlen);
    if (r) return r;
    if (ctx->on_metric) {
        ctx->on_metric(ctx->ud, T->step, "val_mpjpe", mt.mpjpe);
        ctx->on_metric(ctx->ud, T->step, "val_pa_mpjpe", mt.pa_mpjpe);
        ctx->on_metric(ctx->ud, T->step, "val_auc", mt.auc);
        ctx->on_metric(ctx->ud, T->step, "val_mean_predictor_mpjpe", mt.mean_pred_mpjpe);
    }
    stage_log(ctx, "step %ld: val MPJPE %.2f mm, PA-MPJPE %.2f mm, AUC %.3f (mean predictor %.2f mm)", T->step,
              mt.mpjpe, mt.pa_mpjpe, mt.auc, mt.mean_pred_mpjpe);
    if (isfinite(mt.mpjpe) && (!isfinite(T->best_val) || mt.mpjpe < T->best_val)) {
        T->best_val = mt.mpjpe;
        T->best_step = T->step;
    }
    json_decref(T->last_val);
    T->last_val = metrics_to_json(&mt);
    json_object_set_new(T->last_val, "step", json_integer(T->step));
    return 0;
}

/* ---- checkpoints ----------------------------------------------------------------
 * A checkpoint in the middle of a run is copied out on the training thread
 * (ckpt_snap_take: the downloads) and written by a thread of its own while
 * training goes on (ckpt_snap_write: files, fsyncs, the rename); it is
 * reported (on_checkpoint, from the training thread) once it is in place:
 * at the first step after that, at the next checkpoint, or at the end. At
 * most one is in flight, so one snapshot serves the run, its host buffer
 * allocated at the first checkpoint and freed at the end. The last one (end
 * of the run, stop) is written in place, so the result names a written
 * checkpoint. */

/* Tells the daemon about checkpoint dir of step (written, renamed into place). */
static void ckpt_report(train_t *T, long step, const char *dir, const json_t *metrics) {
    snprintf(T->last_ckpt_dir, sizeof T->last_ckpt_dir, "%s", dir);
    if (T->ctx->on_checkpoint) T->ctx->on_checkpoint(T->ctx->ud, step, dir, metrics);
}

static void *ckpt_bg_main(void *arg) {
    ckpt_bg_t *g = arg;
    double t0 = mono_now();
    g->rc = ckpt_snap_write(g->snap, g->dir, g->err, sizeof g->err);
    g->write_s = mono_now() - t0;
    atomic_store(&g->done, 1);
    return NULL;
}

/* A checkpoint of step that could not be written (why). In the middle of a
 * run that is a warning: the run goes on and the next checkpoint tries again
 * (a disk that filled up for a while should not cost days of training). The
 * last one's failure fails the job: -1 with err. */
static int ckpt_failed(train_t *T, long step, const char *why, int final, char *err, size_t errlen) {
    if (T->last_ckpt_step == step) T->last_ckpt_step = -1;   /* the last one tries this step again */
    T->ckpt_failures++;
    if (final) return errbuf_set(err, errlen, "checkpoint at step %ld: %s", step, why);
    if (T->ending) {
        stage_log(T->ctx, "warning: checkpoint at step %ld not written: %s", step, why);
        return 0;
    }
    long next = step + T->ctx->spec->checkpoint_every;
    char when[48] = "at the end";
    if (next < T->total) snprintf(when, sizeof when, "at step %ld", next);
    stage_log(T->ctx, "warning: checkpoint at step %ld not written: %s; training goes on (the next one %s)", step,
              why, when);
    return 0;
}

/* Joins the checkpoint in flight, if any (when wait, or when it is written
 * already) and reports it, or warns that it failed. */
static void ckpt_bg_finish(train_t *T, int wait) {
    ckpt_bg_t *g = &T->bg;
    if (!g->active || (!wait && !atomic_load(&g->done))) return;
    pthread_join(g->th, NULL);
    g->active = 0;
    if (g->rc) {
        ckpt_failed(T, g->step, g->err, 0, NULL, 0);
    } else {
        stage_log(T->ctx, "step %ld: checkpoint %s (%.1f MB copied out in %.2f s, written beside training in %.2f s)",
                  g->step, g->dir, ckpt_snap_bytes(g->snap) / 1e6, g->snap_s, g->write_s);
        ckpt_report(T, g->step, g->dir, g->metrics);
    }
    json_decref(g->metrics);
    g->metrics = NULL;
}

/* Checkpoints the current step; the last one (final) in place, the others
 * beside training. -1 with err only for the last one's failure and for
 * ranks that disagree. */
static int save_ckpt(train_t *T, int with_val, int final, char *err, size_t errlen) {
    stage_ctx_t *ctx = T->ctx;
    if (!ctx->checkpoint_root) {
        stage_log(ctx, "step %ld: no checkpoint root configured; checkpoint skipped", T->step);
        return 0;
    }
    /* the one in flight first: reports stay in step order */
    ckpt_bg_finish(T, 1);
    if (T->step == T->last_ckpt_step) return 0;
    /* every rank must hold the same parameters; rank 0 writes them */
    if (stage_check_same_params(ctx, T->m, T->step, err, errlen)) return -1;
    if (T->R != 0) {
        T->last_ckpt_step = T->step;
        return 0;
    }
    char dir[1024];
    int w = snprintf(dir, sizeof dir, "%s/%s/%ld", ctx->checkpoint_root, ctx->job_id ? ctx->job_id : "job",
                     T->step);
    if (w < 0 || (size_t)w >= sizeof dir) return errbuf_set(err, errlen, "checkpoint path too long");
    json_t *mj = NULL;
    if (with_val && T->last_val) {
        mj = json_object();
        json_object_set(mj, "val_mpjpe", json_object_get(T->last_val, "mpjpe_mm"));
        json_object_set(mj, "val_pa_mpjpe", json_object_get(T->last_val, "pa_mpjpe_mm"));
        json_object_set(mj, "val_auc", json_object_get(T->last_val, "auc_0_50mm"));
    }
    T->last_ckpt_step = T->step;
    struct stat st;
    if (stat(dir, &st) == 0) {
        /* written (renamed into place, so complete) by an earlier run of this job
         * at this very step; resuming is exact, so it holds what we would write.
         * It is reported like a new one: if that run died before the daemon
         * recorded it, it is recorded now (and pruned like any other). */
        stage_log(ctx, "step %ld: checkpoint %s exists already (an earlier run of this job); kept", T->step, dir);
        ckpt_report(T, T->step, dir, mj);
        json_decref(mj);
        return 0;
    }
    char parent[1024], e2[512];
    snprintf(parent, sizeof parent, "%s/%s", ctx->checkpoint_root, ctx->job_id ? ctx->job_id : "job");
    ckpt_bg_t *g = &T->bg;
    double t0 = mono_now();
    int took = -1;
    if (!g->snap && !(g->snap = ckpt_snap_new(T->m->be))) {
        snprintf(e2, sizeof e2, "out of memory");
    } else if (fs_mkdir_p(parent, FS_DIR_MODE, e2, sizeof e2) == 0) {
        json_t *state = state_json(T);
        took = ckpt_snap_take(g->snap, T->m, &T->meta, state, e2, sizeof e2);
        json_decref(state);
    }
    if (took) {
        json_decref(mj);
        return ckpt_failed(T, T->step, e2, final, err, errlen);
    }
    g->metrics = mj;
    g->step = T->step;
    g->snap_s = mono_now() - t0;
    snprintf(g->dir, sizeof g->dir, "%s", dir);
    atomic_store(&g->done, 0);
    if (!final && pthread_create(&g->th, NULL, ckpt_bg_main, g) == 0) {
        g->active = 1;
        return 0;
    }
    /* in place: the last one, or no thread to be had */
    g->rc = ckpt_snap_write(g->snap, dir, g->err, sizeof g->err);
    int rc = g->rc ? ckpt_failed(T, T->step, g->err, final, err, errlen) : 0;
    if (!g->rc) {
        stage_log(ctx, "step %ld: checkpoint %s (%.1f MB in %.2f s)", T->step, dir, ckpt_snap_bytes(g->snap) / 1e6,
                  mono_now() - t0);
        ckpt_report(T, T->step, dir, mj);
    }
    json_decref(mj);
    g->metrics = NULL;
    return rc;
}

int stage_train(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen) {
    const double t_enter = mono_now();
    const jobspec_t *spec = ctx->spec;
    const dataset_t *ds = ctx->ds;
    backend_t *be = ctx->be;
    dtype_plan_t plan = jobspec_plan(spec);
    train_t T;
    memset(&T, 0, sizeof T);
    T.ctx = ctx;
    T.best_val = NAN;
    T.best_step = -1;
    T.last_ckpt_step = -1;
    T.W = stage_world(ctx);
    T.R = stage_rank(ctx);
    T.sharded = stage_sharded(ds);
    T.lperm_epoch = -1;
    int rc = -1;
    char e2[512];
    json_t *aug_plan = NULL;   /* the resolved augmentation (NULL: none) */

    stage_split(ds->n, spec->split_train, &T.tr_b, &T.tr_e);
    stage_split(ds->n, spec->split_val, &T.va_b, &T.va_e);
    T.n_train = T.tr_e - T.tr_b;
    T.n_val = T.va_e - T.va_b;
    if (T.n_train < 1)
        return errbuf_set(err, errlen, "split.train [%g, %g) selects no samples of dataset '%s' (%lld samples)",
                          spec->split_train[0], spec->split_train[1], spec->dataset, (long long)ds->n);
    if (T.n_val < 1) stage_log(ctx, "split.val selects no samples: no validation");
    int B = stage_effective_batch(spec, ds->n);
    if (B < spec->batch_size)
        stage_log(ctx, "batch_size %d is more than the %lld samples of the training split: the effective batch is %d",
                  spec->batch_size, (long long)T.n_train, B);
    long per_epoch = (long)((T.n_train + B - 1) / B);
    T.total = spec->steps ? spec->steps : (long)spec->epochs * per_epoch;
    /* the most samples this rank runs at once: its share of a global batch */
    int Bl = T.W > 1 ? (B + T.W - 1) / T.W : B;
    if (T.sharded) {
        T.local_B = (int)((int64_t)B * (T.R + 1) / T.W - (int64_t)B * T.R / T.W);
        T.lt_b = T.tr_b > ds->first ? T.tr_b : ds->first;
        T.lt_e = T.tr_e < ds->first + ds->held ? T.tr_e : ds->first + ds->held;
        T.n_local = T.lt_e > T.lt_b ? T.lt_e - T.lt_b : 0;
        double v[COLL_MAX_WORLD] = {0};
        v[T.R] = (double)T.n_local;
        if (coll_allreduce_host(ctx->coll, v, (size_t)T.W, err, errlen)) return -1;
        for (int r = 0; r < T.W; r++) T.rank_train[r] = (int64_t)v[r];
        if (T.n_local < 1)
            stage_log(ctx, "rank %d holds no training samples (its shard is [%lld, %lld)): the global batch is %d "
                      "smaller", T.R, (long long)ds->first, (long long)(ds->first + ds->held), T.local_B);
    }

    T.perm = malloc((size_t)T.n_train * sizeof(int32_t));
    T.val_idx = malloc((size_t)(T.n_val > 0 ? T.n_val : 1) * sizeof(int32_t));
    T.lperm = T.sharded ? malloc((size_t)(T.n_local > 0 ? T.n_local : 1) * sizeof(int32_t)) : NULL;
    T.lbatch = T.sharded ? malloc((size_t)(T.local_B > 0 ? T.local_B : 1) * sizeof(int32_t)) : NULL;
    if (!T.perm || !T.val_idx || (T.sharded && (!T.lperm || !T.lbatch))) {
        errbuf_set(err, errlen, "out of memory for the data order (%lld samples)", (long long)T.n_train);
        goto done;
    }
    for (int64_t i = 0; i < T.n_val; i++) T.val_idx[i] = (int32_t)(T.va_b + i);
    aug_plan = augment_plan_to_json(spec, ds->intrinsics != NULL, ds->w, ds->h);
    if (aug_plan) {
        if (augment_is_geometric(&spec->augment) &&
            augment_check_intrinsics(be, ds, T.tr_b, T.tr_e, err, errlen))
            goto done;
        char *txt = json_dumps(aug_plan, JSON_COMPACT | JSON_REAL_PRECISION(6));
        stage_log(ctx, "augment: %s", txt ? txt : "?");
        free(txt);
    }
    if (stage_mean_pose(ctx, T.tr_b, NULL, T.n_train, T.mean_pose, err, errlen)) goto done;
    if (stage_batch_init(&T.b, be, Bl, err, errlen)) goto done;

    stage_model_req_t req = stage_model_req(spec, Bl);
    req.ckpt_dir = ctx->checkpoint_path;
    req.load_optimizer = 1;
    req.mean_pose = T.mean_pose;
    json_t *state = NULL;
    if (stage_model_open(ctx, &plan, &req, &T.m, &state, &T.meta, err, errlen)) goto done;
    T.meta.freeze_layers = spec->model.freeze_layers;
    if (T.W > 1) {
        /* one starting point for all: rank 0's parameters (a checkpoint is the same file
         * everywhere; a fresh init is seeded alike, but the bits are what must agree) */
        if (coll_broadcast(ctx->coll, T.m->params, T.m->n_params * sizeof(float), 0, err, errlen)) {
            json_decref(state);
            goto done;
        }
        model_sync_working_copy(T.m);
        model_set_grad_hook(T.m, grads_ready, ctx->coll);
    }
    if (ctx->checkpoint_path) {
        int r = restore_state(&T, state, err, errlen);
        json_decref(state);
        if (r) goto done;
        T.last_ckpt_step = T.step;
        stage_log(ctx, "resumed from %s at step %ld (epoch %d, position %lld)", ctx->checkpoint_path, T.step,
                  T.epoch + 1, (long long)T.pos);
    } else {
        json_decref(state);
        rng_seed(&T.rng, spec->seed ^ 0x7261696e64617461ull);   /* "raindata": data stream */
        new_epoch_order(&T);
    }
    stage_log(ctx, "train: %s, %zu parameters (%zu trainable), %lld train / %lld val samples, batch %d, %ld steps, "
              "compute %s; set up in %.2f s", T.meta.backbone, model_num_params(T.m), model_num_trainable(T.m),
              (long long)T.n_train, (long long)T.n_val, B, T.total, dtype_name(plan.compute), mono_now() - t_enter);
    if (T.W > 1)
        stage_log(ctx, "data parallel on %d devices (%s dataset): %d samples per device per step at most, gradients "
                  "summed in buckets during the backward", T.W, T.sharded ? "sharded" : "replicated",
                  T.sharded ? T.local_B : Bl);

    long metric_every = T.total > 2000 ? T.total / 2000 : 1;
    double t_start = mono_now(), t_train = 0, t_last_progress = 0;
    long steps_run = 0, images_run = 0, skipped = 0;
    hand_loss_t hl = {0};
    double grad_norm = 0;
    int stopped = 0;
    float mb = 0, mh = 0;
    const size_t n_grads = T.m->n_params - T.m->train_off;

    while (T.step < T.total) {
        if (T.W == 1 && ctx->stop && *ctx->stop) { stopped = 1; break; }
        if (!T.sharded && T.pos >= T.n_train) {
            T.epoch++;
            T.pos = 0;
            new_epoch_order(&T);
        }
        if (T.sharded) T.epoch = (int)((int64_t)T.step * B / T.n_train);
        double t0 = mono_now();
        /* this step: the global batch's Bn samples, of which this rank runs c from `mine` */
        int Bn, c;
        const int32_t *mine;
        if (T.sharded) {
            Bn = B;
            c = sharded_batch(&T, T.step);
            mine = T.lbatch;
        } else {
            Bn = (int)(T.n_train - T.pos < B ? T.n_train - T.pos : B);
            int64_t a = (int64_t)Bn * T.R / T.W, e = (int64_t)Bn * (T.R + 1) / T.W;
            mine = T.perm + T.pos + a;
            c = (int)(e - a);
        }
        hand_norm_t norm = {0, 0, 0};
        if (T.W > 1) {
            /* agree on stopping; the global batch's loss normalizers */
            if (c > 0) {
                stage_batch_set_idx(&T.b, ds, mine, c);
                stage_batch_labels(&T.b, ds, c);
                for (int i = 0; i < c; i++)
                    if (T.b.h_has[i]) hand_norm_add(&norm, T.b.h_valid + (size_t)i * HAND_JOINTS);
            }
            double v[4] = {ctx->stop && *ctx->stop ? 1 : 0, norm.sw, norm.nj, norm.npair};
            if (coll_allreduce_host(ctx->coll, v, 4, err, errlen)) goto done;
            if (v[0] > 0) { stopped = 1; break; }
            norm = (hand_norm_t){v[1], v[2], v[3]};
        }
        memset(&hl, 0, sizeof hl);
        model_zero_grad(T.m);
        if (T.W > 1) coll_buckets_begin(ctx->coll, T.m->grads, n_grads);
        if (c > 0) {
            stage_batch_set_idx(&T.b, ds, mine, c);
            im2col_aug_t ia;
            if (spec->augment.on) stage_batch_augment(&T.b, ds, spec, T.epoch, mine, c, &ia);
            if (model_forward_aug(T.m, ds->images, ds->image_dtype, T.b.d_idx, c, spec->augment.on ? &ia : NULL, 0,
                                  e2, sizeof e2)) {
                errbuf_set(err, errlen, "step %ld: %s", T.step + 1, e2);
                goto done;
            }
            const hand_norm_t *np = T.W > 1 ? &norm : NULL;
            if (spec->augment.on) {
                /* the labels moved with the images: the batch's own transformed copy */
                stage_batch_aug_labels(&T.b, ds, c);
                be->hand_loss(be, &hl, T.b.d_dpred, T.b.d_dconf, T.m->pred, T.m->conf_logit, T.b.d_joints,
                              T.b.d_valid, T.b.d_has, NULL, c, np);
            } else {
                be->hand_loss(be, &hl, T.b.d_dpred, T.b.d_dconf, T.m->pred, T.m->conf_logit, ds->joints,
                              ds->joints_valid, ds->has_hand, T.b.d_idx, c, np);
            }
            model_backward(T.m, T.b.d_dpred, T.b.d_dconf);
        }
        if (T.W > 1) {
            /* the rest of the gradient buckets; the global loss terms */
            if (coll_buckets_finish(ctx->coll, err, errlen)) goto done;
            double v[4] = {hl.total, hl.joint, hl.pair, hl.conf};
            if (coll_allreduce_host(ctx->coll, v, 4, err, errlen)) goto done;
            hl.total = (float)v[0];
            hl.joint = (float)v[1];
            hl.pair = (float)v[2];
            hl.conf = (float)v[3];
        }
        grad_norm = sqrt(model_grad_sumsq(T.m));
        long t = T.step + 1;
        float f = lr_factor(spec, t, T.total);
        mb = (float)spec->optim.lr_backbone * f;
        mh = (float)spec->optim.lr_heads * f;
        if (!isfinite(grad_norm) || !isfinite(hl.total)) {
            skipped++;
            stage_log(ctx, "step %ld: gradient norm %g / loss %g not finite; update skipped", t, grad_norm,
                      (double)hl.total);
        } else {
            float gscale = 1.0f;
            if (spec->optim.clip_grad_norm > 0 && grad_norm > spec->optim.clip_grad_norm)
                gscale = (float)(spec->optim.clip_grad_norm / grad_norm);
            model_adamw_step(T.m, mb, mh, (float)spec->optim.weight_decay, (float)spec->optim.beta1,
                             (float)spec->optim.beta2, (float)spec->optim.eps, gscale);
        }
        if (!T.sharded) T.pos += Bn;
        T.step = t;
        steps_run++;
        images_run += Bn;
        double t1 = mono_now();
        t_train += t1 - t0;
        if (steps_run == 1) stage_log(ctx, "step %ld: the run's first, %.2f s", t, t1 - t0);

        if (ctx->on_metric && (t % metric_every == 0 || t == 1 || t == T.total)) {
            ctx->on_metric(ctx->ud, t, "loss", hl.total);
            ctx->on_metric(ctx->ud, t, "loss_joint", hl.joint);
            ctx->on_metric(ctx->ud, t, "loss_pair", hl.pair);
            ctx->on_metric(ctx->ud, t, "loss_conf", hl.conf);
            ctx->on_metric(ctx->ud, t, "lr", mh);
            ctx->on_metric(ctx->ud, t, "lr_backbone", mb);
            ctx->on_metric(ctx->ud, t, "grad_norm", grad_norm);
        }
        if (ctx->on_progress && (t1 - t_last_progress >= 0.5 || t == T.total || steps_run == 1)) {
            stage_progress_t p = {.step = t, .total_steps = T.total, .epoch = T.epoch + 1};
            p.images_per_s = t_train > 0 ? images_run / t_train : 0;
            p.eta_s = steps_run > 0 ? (t_train / steps_run) * (double)(T.total - t) : 0;
            ctx->on_progress(ctx->ud, &p);
            t_last_progress = t1;
        }
        if (t < T.total && spec->eval_every > 0 && t % spec->eval_every == 0) {
            int r = run_val(&T, err, errlen);
            if (r < 0) goto done;
            if (r == 1) { stopped = 1; break; }
        }
        if (t < T.total && spec->checkpoint_every > 0 && t % spec->checkpoint_every == 0) {
            int with_val = spec->eval_every > 0 && t % spec->eval_every == 0;
            if (save_ckpt(&T, with_val, 0, err, errlen)) goto done;
        }
        ckpt_bg_finish(&T, 0);
    }

    if (!stopped) {
        int r = run_val(&T, err, errlen);
        if (r < 0) goto done;
        if (r == 1) stopped = 1;
    }
    if (save_ckpt(&T, !stopped, 1, err, errlen)) goto done;
    if (stopped) stage_log(ctx, "stopped at step %ld; checkpointed", T.step);

    json_t *res = json_object();
    json_object_set_new(res, "stopped", json_boolean(stopped));
    json_object_set_new(res, "step", json_integer(T.step));
    json_object_set_new(res, "total_steps", json_integer(T.total));
    json_object_set_new(res, "epoch", json_integer(T.epoch + 1));
    json_object_set_new(res, "steps_skipped", json_integer(skipped));
    json_object_set_new(res, "final_loss", stage_real(steps_run ? hl.total : NAN));
    json_object_set_new(res, "final_grad_norm", stage_real(steps_run ? grad_norm : NAN));
    json_object_set_new(res, "train_samples", json_integer(T.n_train));
    json_object_set_new(res, "val_samples", json_integer(T.n_val));
    json_object_set_new(res, "val", T.last_val ? json_incref(T.last_val) : json_null());
    json_object_set_new(res, "best_val_mpjpe", stage_real(T.best_val));
    json_object_set_new(res, "best_step", json_integer(T.best_step));
    json_object_set_new(res, "checkpoint", T.last_ckpt_dir[0] ? json_string(T.last_ckpt_dir) : json_null());
    json_object_set_new(res, "checkpoint_failures", json_integer(T.ckpt_failures));
    json_object_set_new(res, "images_per_s", stage_real(t_train > 0 ? images_run / t_train : NAN));
    json_object_set_new(res, "wall_s", json_real(mono_now() - t_start));
    json_object_set_new(res, "model", stage_model_json(T.m, T.meta.backbone,
                                                       ctx->checkpoint_path ? ctx->checkpoint_path
                                                       : ctx->weights_path ? ctx->weights_path : NULL));
    json_object_set_new(res, "dtype_plan", dtype_plan_to_json(&plan));
    json_object_set_new(res, "augment", aug_plan ? json_incref(aug_plan) : json_null());
    if (T.W > 1)
        json_object_set_new(res, "data_parallel", json_pack("{s:i, s:s, s:i}", "devices", T.W, "dataset",
                                                            T.sharded ? "sharded" : "replicated", "global_batch", B));
    *result = res;
    rc = stopped ? 1 : 0;
done:
    T.ending = 1;
    ckpt_bg_finish(&T, 1);   /* failed with one in flight: it is still a checkpoint of this run */
    ckpt_snap_free(T.bg.snap);
    json_decref(aug_plan);
    json_decref(T.last_val);
    model_free(T.m);
    stage_batch_free(&T.b);
    free(T.perm);
    free(T.val_idx);
    free(T.lperm);
    free(T.lbatch);
    return rc;
}
