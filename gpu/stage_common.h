/* gpu/stage_common.h — helpers shared by the four stage loops (internal to
 * gpu/stage_*.c and gpu/stages.c; not a public interface).
 *
 * Owns: the data-order PRNG (xoshiro256** seeded by splitmix64), the
 * deterministic dataset split, opening the model a stage runs with
 * (checkpoint, HF weights or a fresh seeded init), the batch label buffers,
 * the mean pose of a sample range, batched evaluation into metrics_t, and the
 * small JSON/log/error helpers.
 *
 * Split rule (documented for users): a fraction range [a,b) of a dataset of n
 * samples is the contiguous index range [llround(a*n), llround(b*n)). Ranges
 * are contiguous, not shuffled, so a dataset stored in recording order keeps
 * whole sequences out of the training split (no near-duplicate frames leak
 * into validation); the training ORDER is shuffled per epoch.
 */
#ifndef TRAIND_STAGE_COMMON_H
#define TRAIND_STAGE_COMMON_H

#include <stdint.h>
#include "gpu/augment.h"
#include "gpu/metrics.h"
#include "store/rng.h"
#include "gpu/model.h"
#include "gpu/stages.h"
#include "gpu/checkpoint.h"
#include "store/errbuf.h"
#include "store/mono.h"

/* ---- misc ----------------------------------------------------------------------- */
void stage_split(int64_t n, const double frac[2], int64_t *begin, int64_t *end);
/* A line for the job's log (ctx->on_log). One that begins "warning: " is a
 * warning: the worker logs it at WARN and marks its event "level":"warning". */
__attribute__((format(printf, 2, 3))) void stage_log(stage_ctx_t *ctx, const char *fmt, ...);
json_t *stage_real(double x);                                    /* NaN/Inf -> null */

/* ---- model ---------------------------------------------------------------------- */
typedef struct {
    int grads, optimizer, freeze_layers, max_batch, want_hidden;
    const char *ckpt_dir;       /* load this traind checkpoint (NULL: weights or fresh init) */
    int load_optimizer;         /* with ckpt_dir: also AdamW moments and step */
    const float *mean_pose;     /* [63] host, for fresh heads (may be NULL) */
} stage_model_req_t;

/* The model a stage of spec's type asks for with batch B: train — gradients,
 * AdamW, model.freeze_layers; debug — gradients (fp32 plan); eval, infer —
 * forward only (infer: last_hidden_state when "patch_tokens" is asked for).
 * The stages and stage_memory_estimate start from it; the caller sets
 * ckpt_dir, load_optimizer and mean_pose. */
stage_model_req_t stage_model_req(const jobspec_t *spec, int B);
/* Backend bytes of stage_batch_init(cap). */
size_t stage_batch_bytes(int cap);

/* Opens the model the stage runs with: config from the checkpoint, else from
 * model.weights (ctx->weights_path), else from model.backbone; checks the spec's
 * backbone (when given) against it; loads or seeds the parameters (a fresh init
 * is never applied over loaded weights). *state gets the checkpoint's
 * state.json (may be NULL), meta traind's config fields. 0 or -1 with err. */
int stage_model_open(stage_ctx_t *ctx, const dtype_plan_t *plan, const stage_model_req_t *req,
                     model_t **out, json_t **state, ckpt_meta_t *meta, char *err, size_t errlen);
json_t *stage_model_json(const model_t *m, const char *backbone, const char *source);
/* What every eval/infer result reports about its run: checkpoint, model, dtype_plan,
 * images_per_s (images over dt seconds) and wall_s (since t0, mono_now()). */
void stage_result_run_info(json_t *res, const stage_ctx_t *ctx, const model_t *m, const char *backbone,
                           const dtype_plan_t *plan, double images, double dt, double t0);

/* Mean pose of samples idx[0..n) (idx NULL: begin..begin+n) over hands and valid
 * joints, labels downloaded in bounded chunks. On a sharded dataset each rank
 * sums the samples it holds and the sums are added over the ranks (every
 * rank gets the same mean; on a replicated one each rank reads all of them).
 * -1 with err on allocation failure or a failed collective. */
#define STAGE_MEAN_POSE_CHUNK 4096   /* labels gathered per round (a stage_batch_t of this size) */
int stage_mean_pose(stage_ctx_t *ctx, int64_t begin, const int32_t *idx, int64_t n, float out[63],
                    char *err, size_t errlen);

/* ---- batches ---------------------------------------------------------------------- */
typedef struct {
    backend_t *be;
    int cap;
    int32_t *d_idx;                 /* [cap] backend */
    float *d_joints;                /* [cap,63] backend, gathered labels */
    uint8_t *d_valid, *d_has;       /* [cap,21], [cap] backend */
    float *d_dpred, *d_dconf;       /* [cap,63], [cap,21] backend, loss gradients */
    float *h_pred, *h_conf, *h_joints;
    uint8_t *h_valid, *h_has;
    aug_sample_t *d_aug, *h_aug;    /* [cap] backend / host: the batch's augmentation (train) */
    int32_t *h_idx;                 /* [cap] host: indices translated to a shard's arrays */
} stage_batch_t;

int stage_batch_init(stage_batch_t *b, backend_t *be, int cap, char *err, size_t errlen);
void stage_batch_free(stage_batch_t *b);
/* Uploads the batch's samples idx[n] (sample numbers of the dataset) to
 * d_idx as indices into ds's arrays (sample - ds->first; each must be held). */
void stage_batch_set_idx(stage_batch_t *b, const dataset_t *ds, const int32_t *idx, int n);
/* Gathers the labels of d_idx[0..n) from the dataset to the host arrays. */
void stage_batch_labels(stage_batch_t *b, const dataset_t *ds, int n);
/* Draws the augmentation (spec->augment, spec->seed) of the samples idx[0..n)
 * (host) for epoch, uploads it to d_aug (d_idx must hold the same indices) and
 * fills *ia for model_forward_aug. */
void stage_batch_augment(stage_batch_t *b, const dataset_t *ds, const jobspec_t *spec, long epoch,
                         const int32_t *idx, int n, im2col_aug_t *ia);
/* The augmented batch's labels for hand_loss with idx NULL: d_joints = m · joints,
 * d_valid and d_has gathered by d_idx. */
void stage_batch_aug_labels(stage_batch_t *b, const dataset_t *ds, int n);
/* Downloads the model's predictions (and confidence logits) of the last forward. */
void stage_batch_preds(stage_batch_t *b, const model_t *m, int n);

/* Evaluates the model on idx[0..n) in batches of at most bs (<= the model's
 * max_batch) into *out; mean_pose (may be NULL) gives the mean-predictor floor;
 * progress: report batches done through ctx->on_progress (eval stage).
 * With several ranks each evaluates its part (stage_rank_part) and the
 * accumulators are summed: every rank gets the same *out.
 * stoppable: *ctx->stop ends it (with several ranks, agreed at every batch
 * so that all stop together); 0 (validation inside training, which agrees
 * on stopping at its steps) runs to the end.
 * Returns 0, 1 when stopped (partial result discarded), -1 with err. */
int stage_eval_indices(stage_ctx_t *ctx, model_t *m, stage_batch_t *b, const int32_t *idx, int64_t n,
                       int bs, const float *mean_pose, int progress, int stoppable, metrics_t *out,
                       char *err, size_t errlen);

/* ---- ranks (data parallelism; gpu/collective.h) --------------------------------------- */
int stage_rank(const stage_ctx_t *ctx);
int stage_world(const stage_ctx_t *ctx);
/* Whether ds holds only a shard of the dataset. */
int stage_sharded(const dataset_t *ds);
/* The part of the list idx[0..n) (idx NULL: begin, begin+1, ...) this rank
 * works on, as positions in the list, in list order: a contiguous slice
 * [n·r/W, n·(r+1)/W) on a replicated dataset, the samples it holds on a
 * sharded one. *pos malloc'd (the caller frees; may be NULL when *m = 0).
 * all_pos (may be NULL): when not NULL, *all_pos gets every rank's positions
 * concatenated in rank order (what a gather on rank 0 receives) and
 * counts[W] their numbers. 0 or -1 with err. */
int stage_rank_part(const stage_ctx_t *ctx, int64_t begin, const int32_t *idx, int64_t n, int64_t **pos,
                    int64_t *m, int64_t **all_pos, int64_t *counts, char *err, size_t errlen);
/* Every rank's parameters (fp32 master, AdamW moments) are the same bits: a
 * checksum (sums of squares, deterministic) compared across ranks. 0, or -1
 * with err naming the ranks that differ. */
int stage_check_same_params(stage_ctx_t *ctx, model_t *m, long step, char *err, size_t errlen);

/* The four stages (gpu/stage_*.c). */
int stage_train(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen);
int stage_eval(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen);
int stage_debug(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen);
int stage_infer(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen);

#endif
