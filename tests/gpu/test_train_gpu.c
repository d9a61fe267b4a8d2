/* tests/gpu/test_train_gpu.c — the same training run on the GPU and on the CPU
 * reference backend: dinov2-tiny from scratch on one synthetic dataset
 * (store/synth.h), the same spec and seed (bf16 plan on the bf16 resident
 * dataset), through the train and eval stages on each backend.
 *
 * Checks: the step-1 losses agree (same weights, same batch: only rounding
 * differs, <= 2e-2); the loss curves follow each other — the curve cut into
 * 10 windows, each window's mean loss on the GPU within 20% of the CPU's (two
 * bf16 runs drift apart step by step, so the comparison is of the smoothed
 * curve, not of single steps); both runs learn (last window below the first)
 * and both beat the mean predictor on the held-out split, the GPU's val MPJPE
 * within 25% of the CPU's.
 * Timings and MPJPEs are printed as diag lines. TAP; skips without a device.
 * Size through the environment: TRAIND_TRAIN_SAMPLES, _IMAGE, _STEPS, _BATCH. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/stages.h"
#include "gpu/dataset.h"
#include "store/dataset.h"
#include "store/synth.h"
#include "tests/tap.h"

#define TT_MAX_STEPS 20000

typedef struct {
    double *loss;   /* [steps + 1], NAN where not logged */
    long steps;
    char last_ckpt[1024];
} run_rec_t;

static long env_long(const char *k, long def) {
    const char *v = getenv(k);
    return v && *v ? strtol(v, NULL, 10) : def;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void tt_metric(void *ud, long step, const char *name, double v) {
    run_rec_t *r = ud;
    if (strcmp(name, "loss") == 0 && step >= 0 && step <= r->steps) r->loss[step] = v;
}
static void tt_checkpoint(void *ud, long step, const char *dir, const json_t *m) {
    run_rec_t *r = ud;
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", dir);
}

/* Loads the dataset on be, trains, evaluates the last checkpoint on the val
 * split. 0 and *mpjpe, *floor_mm, or -1 with err. */
static int tt_run(backend_t *be, const char *dsdir, const char *root, const char *spec_text, run_rec_t *rec,
                  double *mpjpe, double *floor_mm, double *secs, char *err, size_t errlen) {
    ds_info_t info;
    ds_layout_t lay;
    dataset_t ds;
    if (ds_scan(dsdir, &info, err, errlen)) return -1;
    ds_layout_for(&lay, &info);
    void *base = be->alloc(be, lay.total);
    if (!base) { snprintf(err, errlen, "%s", be->err); ds_info_free(&info); return -1; }
    int rc = -1;
    json_t *res = NULL;
    jobspec_t js;
    char field[128], msg[256], croot[1200];
    if (dataset_load(be, dsdir, &info, base, &lay, NULL, NULL, NULL, NULL, err, errlen)) goto out;
    dataset_view(&ds, base, &lay);
    json_t *sj = json_loads(spec_text, 0, NULL);
    if (!sj || jobspec_parse(sj, &js, field, sizeof field, msg, sizeof msg)) {
        snprintf(err, errlen, "spec: %s %s", field, msg);
        json_decref(sj);
        goto out;
    }
    json_decref(sj);
    snprintf(croot, sizeof croot, "%s/ckpt-%s", root, be->name);
    stage_ctx_t ctx = {.be = be, .ds = &ds, .spec = &js, .job_id = "curve", .checkpoint_root = croot,
                       .ud = rec, .on_metric = tt_metric, .on_checkpoint = tt_checkpoint};
    double t0 = now_s();
    int r = stage_run(&ctx, &res, err, errlen);
    *secs = now_s() - t0;
    jobspec_free(&js);
    json_decref(res);
    res = NULL;
    if (r != 0) goto out;
    sj = json_loads("{\"type\":\"eval\",\"dataset\":\"synth\",\"checkpoint\":\"final\",\"split\":\"val\"}", 0, NULL);
    if (jobspec_parse(sj, &js, field, sizeof field, msg, sizeof msg)) {
        snprintf(err, errlen, "eval spec: %s %s", field, msg);
        json_decref(sj);
        goto out;
    }
    json_decref(sj);
    stage_ctx_t ectx = {.be = be, .ds = &ds, .spec = &js, .job_id = "curve-eval", .checkpoint_path = rec->last_ckpt};
    r = stage_run(&ectx, &res, err, errlen);
    jobspec_free(&js);
    if (r != 0 || !res) goto out;
    *mpjpe = json_number_value(json_object_get(res, "mpjpe_mm"));
    *floor_mm = json_number_value(json_object_get(res, "mean_predictor_mpjpe_mm"));
    rc = 0;
out:
    json_decref(res);
    be->free(be, base);
    ds_info_free(&info);
    return rc;
}

/* mean loss over steps [a, b] that were logged */
static double window_mean(const run_rec_t *r, long a, long b) {
    double s = 0;
    long n = 0;
    for (long i = a; i <= b && i <= r->steps; i++)
        if (isfinite(r->loss[i])) { s += r->loss[i]; n++; }
    return n ? s / n : NAN;
}

int main(void) {
    char err[1024];
    backend_t *cpu = backend_cpu_create(err, sizeof err);
    if (!cpu) { printf("Bail out! %s\n", err); return 1; }
#ifndef TRAIND_CUDA
    printf("1..0 # SKIP built without CUDA\n");
    cpu->destroy(cpu);
    return 0;
#else
    backend_t *gpu = backend_cuda_create(0, err, sizeof err);
    if (!gpu) { printf("1..0 # SKIP no CUDA device: %s\n", err); cpu->destroy(cpu); return 0; }
    long n = env_long("TRAIND_TRAIN_SAMPLES", 2000), S = env_long("TRAIND_TRAIN_IMAGE", 56);
    long steps = env_long("TRAIND_TRAIN_STEPS", 600), B = env_long("TRAIND_TRAIN_BATCH", 32);
    if (steps < 10 || steps > TT_MAX_STEPS) steps = 600;
    char root[] = "/tmp/traind-test-train-gpu-XXXXXX";
    if (!mkdtemp(root)) { printf("Bail out! mkdtemp\n"); return 1; }
    char dsdir[256];
    snprintf(dsdir, sizeof dsdir, "%s/ds", root);
    if (!ok(synth_generate(dsdir, n, (int)S, 2024, 0, NULL, err, sizeof err) == 0, "synthetic dataset: %ld samples %ldx%ld",
            n, S, S)) {
        diag("  %s", err);
        return tap_done();
    }
    char spec[1024];
    snprintf(spec, sizeof spec,
             "{\"type\":\"train\",\"dataset\":\"synth\",\"seed\":1,\"model\":{\"backbone\":\"dinov2-tiny\"},"
             "\"batch_size\":%ld,\"steps\":%ld,\"eval_every\":%ld,\"checkpoint_every\":0,"
             "\"optim\":{\"lr\":{\"backbone\":0.001,\"heads\":0.001},\"warmup_steps\":%ld,\"schedule\":\"cosine\","
             "\"weight_decay\":0.01,\"clip_grad_norm\":1.0}}",
             B, steps, steps, steps / 20);
    run_rec_t rc_ = {0}, rg = {0};
    rc_.steps = rg.steps = steps;
    rc_.loss = malloc((steps + 1) * sizeof(double));
    rg.loss = malloc((steps + 1) * sizeof(double));
    for (long i = 0; i <= steps; i++) rc_.loss[i] = rg.loss[i] = NAN;
    double mp_c = 0, fl_c = 0, t_c = 0, mp_g = 0, fl_g = 0, t_g = 0;
    int r_g = tt_run(gpu, dsdir, root, spec, &rg, &mp_g, &fl_g, &t_g, err, sizeof err);
    if (!ok(r_g == 0, "GPU: train %ld steps + eval", steps)) diag("  %s", err);
    int r_c = tt_run(cpu, dsdir, root, spec, &rc_, &mp_c, &fl_c, &t_c, err, sizeof err);
    if (!ok(r_c == 0, "CPU: train %ld steps + eval", steps)) diag("  %s", err);
    if (r_g == 0 && r_c == 0) {
        double d1 = fabs(rg.loss[1] - rc_.loss[1]) / fabs(rc_.loss[1]);
        ok(isfinite(d1) && d1 <= 2e-2, "step-1 loss: GPU %.6f, CPU %.6f (rel %.2g)", rg.loss[1], rc_.loss[1], d1);
        long w = steps / 10;
        double worst = 0;
        int good = 1;
        for (int k = 0; k < 10; k++) {
            long a = 1 + k * w, b = (k == 9) ? steps : (k + 1) * w;
            double mg = window_mean(&rg, a, b), mc = window_mean(&rc_, a, b), d = fabs(mg - mc) / fabs(mc);
            diag("  steps %4ld-%4ld: mean loss GPU %.4f, CPU %.4f (%.1f%%)", a, b, mg, mc, 100 * d);
            if (!(isfinite(d) && d <= 0.2)) good = 0;
            if (d > worst || !isfinite(d)) worst = d;
        }
        ok(good, "loss curves follow each other: every tenth of the run within 20%% (worst %.1f%%)", 100 * worst);
        double g0 = window_mean(&rg, 1, w), g9 = window_mean(&rg, steps - w + 1, steps);
        double c0 = window_mean(&rc_, 1, w), c9 = window_mean(&rc_, steps - w + 1, steps);
        ok(g9 < g0 && c9 < c0, "both learn: loss %.4f -> %.4f (GPU), %.4f -> %.4f (CPU)", g0, g9, c0, c9);
        ok(fl_g > 30 && mp_g < fl_g, "GPU beats the mean predictor: val MPJPE %.1f mm < %.1f mm", mp_g, fl_g);
        ok(mp_c < fl_c, "CPU beats the mean predictor: val MPJPE %.1f mm < %.1f mm", mp_c, fl_c);
        ok(fabs(mp_g - mp_c) <= 0.25 * mp_c, "val MPJPE GPU %.1f mm within 25%% of CPU %.1f mm", mp_g, mp_c);
        diag("dinov2-tiny, %ld samples %ldx%ld, batch %ld, %ld steps, bf16 plan: train GPU %.1f s, CPU %.1f s", n, S,
             S, B, steps, t_g, t_c);
    }
    free(rc_.loss);
    free(rg.loss);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) diag("could not remove %s", root);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return tap_done();
#endif
}
