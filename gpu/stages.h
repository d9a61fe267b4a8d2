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
#include "gpu/dataset.h"
#include "gpu/jobspec.h"

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

    void *ud;
    void (*on_progress)(void *ud, const stage_progress_t *p);
    void (*on_metric)(void *ud, long step, const char *name, double value);
    /* A checkpoint was written and renamed into place at dir. metrics may be NULL. */
    void (*on_checkpoint)(void *ud, long step, const char *dir, const json_t *metrics);
    void (*on_log)(void *ud, const char *msg);
} stage_ctx_t;

/* Runs the stage for ctx->spec->type. Returns 0 and *result (new reference:
 * eval metrics, debug report, infer outputs, train summary) on success, 1 when
 * stopped by ctx->stop (train: after a checkpoint), -1 with err on failure. */
int stage_run(stage_ctx_t *ctx, json_t **result, char *err, size_t errlen);

#endif
