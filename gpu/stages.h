/* gpu/stages.h — the four job stages (train, eval, debug, infer) as library
 * calls. A worker process (daemon/worker.c) opens the backend and the shared
 * dataset, fills a stage_ctx_t and calls stage_run(); the stage reports through
 * the callbacks (which the worker turns into JSON-line events for the daemon)
 * and returns its result document. */
#ifndef TRAIND_STAGES_H
#define TRAIND_STAGES_H

#include <jansson.h>
#include <signal.h>
#include "gpu/backend.h"
#include "gpu/collective.h"
#include "gpu/dataset.h"
#include "gpu/jobspec.h"
#include "gpu/model.h"

typedef struct {
    long step, total_steps;
    int epoch;
    double images_per_s, eta_s;
} stage_progress_t;

typedef struct {
    backend_t *be;
    const dataset_t *ds;
    const jobspec_t *spec;
    const char *job_id;
    const char *checkpoint_root;   /* <state>/checkpoints; train writes <root>/<job>/<step>/ */
    const char *weights_path;      /* resolved model.weights (HF dir or checkpoint dir), or NULL */
    const char *checkpoint_path;   /* resolved spec.checkpoint / resume dir, or NULL */
    const char *result_dir;        /* where infer writes large outputs (safetensors) */
    volatile sig_atomic_t *stop;   /* set on cancel: train checkpoints and returns */
    /* The job's collectives when it runs on several devices (one process per
     * rank; NULL: one rank). ds is then this rank's view: the whole dataset
     * (replicated) or its device's shard (gpu/dataset.h). Rank 0 reports
     * through the callbacks and writes checkpoints and results; the callbacks
     * of the other ranks may be NULL. Data parallelism, per stage:
     *   train  — each step's global batch is split across the ranks; their
     *            gradients are summed (buckets overlapped with the backward)
     *            and every rank applies the same update (stage_train.c says how
     *            the batch is drawn, replicated and sharded);
     *   eval   — each rank evaluates its part of the samples; the metric
     *            accumulators are summed;
     *   infer  — each rank infers its part; rank 0 gathers the outputs.
     * debug runs on one rank. */
    coll_t *coll;

    void *ud;
    void (*on_progress)(void *ud, const stage_progress_t *p);
    void (*on_metric)(void *ud, long step, const char *name, double value);
    /* A checkpoint was written and renamed into place at dir. metrics may be NULL. */
    void (*on_checkpoint)(void *ud, long step, const char *dir, const json_t *metrics);
    void (*on_log)(void *ud, const char *msg);
} stage_ctx_t;

/* The batch a job runs with on a dataset of n_samples: batch_size, but never
 * more than the samples one batch can draw from — train and debug: the
 * training split (debug: the whole dataset when that split is empty); eval:
 * the selected indices, or the dataset's samples for a split (the split is the
 * checkpoint's, known only when the job runs); infer: the inputs. >= 1. The
 * daemon resolves it at submission (the stored spec says the effective batch)
 * and every stage applies it again. */
int stage_effective_batch(const jobspec_t *spec, int64_t n_samples);

/* What a job allocates, in bytes, for a model of cfg at image_h x image_w with
 * spec->batch_size images per batch (the effective batch). Backend memory
 * (device memory on cuda, host memory on cpu): the model's working memory
 * (model_working_bytes with the options the stage asks for), the batch label
 * buffers (the batch's and the mean pose's chunk) and inline-image staging, and
 * a workspace allowance of two fp32
 * copies of the largest activation (CPU operand conversions, cuBLASLt/cuDNN
 * workspaces). Host memory: infer outputs held until the result is written
 * (features, predictions, image staging). */
/* What a worker's CUDA runtime takes on its device before any job memory
 * (context, cuBLAS/cuBLASLt with its workspace, cuDNN): admission adds it on
 * cuda (measured by tests/gpu/test_memory_gpu.c). */
#define STAGE_CUDA_RUNTIME_BYTES ((size_t)1 << 30)

typedef struct {
    size_t params, grads, optimizer, activations;   /* the model (model_mem_t) */
    size_t batch, workspace;                        /* stage buffers, scratch allowance */
    size_t backend;                                 /* sum of the above */
    size_t host;                                    /* host-side buffers */
} stage_mem_t;
/* 0, or -1 with err when the model options are invalid for this image size. */
int stage_memory_estimate(const jobspec_t *spec, const model_config_t *cfg, int image_h, int image_w,
                          stage_mem_t *out, char *err, size_t errlen);

/* Runs the stage for ctx->spec->type. Returns 0 and *result (new reference:
 * eval metrics, debug report, infer outputs, train summary) on success, 1 when
 * stopped by ctx->stop (train: after a checkpoint), -1 with err on failure. */
int stage_run(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen);

#endif
