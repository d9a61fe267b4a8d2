/* tests/unit/test_train.c — learning for real: dinov2-tiny trained from
 * scratch on a synthetic dataset (store/synth.h: joints drawn as coloured
 * discs) through the train stage, then evaluated through the eval stage on the
 * held-out val split, must reach an MPJPE below half the mean predictor's.
 * Prints the timing and the MPJPEs as TAP diag lines (for the README).
 *
 * The run can be changed for experiments through the environment
 * (TRAIND_TRAIN_SAMPLES, _IMAGE, _STEPS, _BATCH, _LR, _LR_BACKBONE, _REGISTERS,
 * _PRECISION=fp32, _VERBOSE=1); the defaults are what CI runs, sized for < 3
 * minutes on 2 cores under ASan. The per-axis hand-centroid error line shows
 * where the remaining error is (image position x/y vs depth z). */
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
#include "store/fsutil.h"
#include "store/synth.h"
#include "tests/tap.h"

static long env_long(const char *k, long def) {
    const char *v = getenv(k);
    return v && *v ? strtol(v, NULL, 10) : def;
}
static double env_double(const char *k, double def) {
    const char *v = getenv(k);
    return v && *v ? strtod(v, NULL) : def;
}

typedef struct {
    char last_ckpt[1024];
    double first_loss, last_loss;
    long last_step;
} rec_t;

static void on_metric(void *ud, long step, const char *name, double v) {
    rec_t *r = ud;
    if (strcmp(name, "loss") == 0) {
        if (r->last_step == 0) r->first_loss = v;   /* the first loss reported */
        r->last_loss = v;
        r->last_step = step;
    }
    if (strcmp(name, "val_mpjpe") == 0) diag("  step %ld: val MPJPE %.1f mm", step, v);
    if (getenv("TRAIND_TRAIN_VERBOSE") && step % 50 == 0 && (strcmp(name, "loss") == 0 || strcmp(name, "grad_norm") == 0 || strcmp(name, "loss_joint") == 0))
        diag("  step %ld: %s %.5f", step, name, v);
}
static void on_checkpoint(void *ud, long step, const char *dir, const json_t *m) {
    rec_t *r = ud;
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", dir);
}

#define LEARN_MUST 0.8   /* val MPJPE must end below this fraction of the mean predictor's */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void) {
    long n = env_long("TRAIND_TRAIN_SAMPLES", 2000), S = env_long("TRAIND_TRAIN_IMAGE", 84),
         steps = env_long("TRAIND_TRAIN_STEPS", 2500), B = env_long("TRAIND_TRAIN_BATCH", 8);
    double lr = env_double("TRAIND_TRAIN_LR", 2e-3);
    const char *prec = getenv("TRAIND_TRAIN_PRECISION");   /* "", "fp32" */
    char err[1024], root[256];
    snprintf(root, sizeof root, "/tmp/traind-test-train-XXXXXX");
    if (!mkdtemp(root)) { printf("Bail out! mkdtemp\n"); return 1; }
    backend_t *be = backend_cpu_create(err, sizeof err);
    if (!be) { printf("Bail out! backend: %s\n", err); return 1; }

    double t0 = now();
    char dsdir[512];
    snprintf(dsdir, sizeof dsdir, "%s/ds", root);
    ok(synth_generate(dsdir, n, (int)S, 2024, 0, NULL, err, sizeof err) == 0, "synthetic dataset: %ld samples %ldx%ld",
       n, S, S);
    ds_info_t info;
    ds_layout_t lay;
    dataset_t ds;
    int r = ds_scan(dsdir, &info, err, sizeof err);
    ds_layout_for(&lay, &info);
    void *base = r == 0 ? be->alloc(be, lay.total) : NULL;
    ok(base && dataset_load(be, dsdir, &info, base, &lay, NULL, NULL, NULL, NULL, err, sizeof err) == 0, "loaded as bf16 (%s)",
       err);
    if (!base) return tap_done();
    dataset_view(&ds, base, &lay);
    double t_data = now() - t0;

    /* ---- train ---- */
    char spec_text[1024], croot[512];
    snprintf(spec_text, sizeof spec_text,
             "{\"type\":\"train\",\"dataset\":\"synth\",\"seed\":1,\"model\":{\"backbone\":\"dinov2-tiny\",\"registers\":%ld},"
             "\"batch_size\":%ld,\"steps\":%ld,\"eval_every\":%ld,\"checkpoint_every\":0,"
             "\"optim\":{\"lr\":{\"backbone\":%g,\"heads\":%g},\"warmup_steps\":%ld,\"schedule\":\"cosine\","
             "\"weight_decay\":0.01,\"clip_grad_norm\":1.0}%s%s%s}",
             env_long("TRAIND_TRAIN_REGISTERS", 0), B, steps, steps / 3 > 0 ? steps / 3 : 1, env_double("TRAIND_TRAIN_LR_BACKBONE", lr), lr, steps / 20, prec && *prec ? ",\"precision\":{\"compute\":\"" : "",
             prec && *prec ? prec : "", prec && *prec ? "\"}" : "");
    snprintf(croot, sizeof croot, "%s/ckpt", root);
    json_t *sj = json_loads(spec_text, 0, NULL);
    jobspec_t js;
    char field[128], msg[256];
    ok(sj && jobspec_parse(sj, &js, field, sizeof field, msg, sizeof msg) == 0, "train spec parses (%s)", msg);
    json_decref(sj);
    rec_t rec = {0};
    stage_ctx_t ctx = {.be = be, .ds = &ds, .spec = &js, .job_id = "learn", .checkpoint_root = croot,
                       .ud = &rec, .on_metric = on_metric, .on_checkpoint = on_checkpoint};
    json_t *res = NULL;
    double t1 = now();
    r = stage_run(&ctx, &res, err, sizeof err);
    double t_train = now() - t1;
    ok(r == 0 && res, "train ran (%s)", r ? err : "ok");
    jobspec_free(&js);
    double ips = res ? json_number_value(json_object_get(res, "images_per_s")) : 0;
    json_decref(res);
    ok(rec.last_step == steps && rec.last_loss < rec.first_loss, "loss fell: %.4f -> %.4f over %ld steps",
       rec.first_loss, rec.last_loss, rec.last_step);

    /* ---- eval the saved checkpoint through the eval stage ---- */
    sj = json_loads("{\"type\":\"eval\",\"dataset\":\"synth\",\"checkpoint\":\"final\",\"split\":\"val\"}", 0, NULL);
    ok(jobspec_parse(sj, &js, field, sizeof field, msg, sizeof msg) == 0, "eval spec parses");
    json_decref(sj);
    stage_ctx_t ectx = {.be = be, .ds = &ds, .spec = &js, .job_id = "learn-eval", .checkpoint_path = rec.last_ckpt};
    double t2 = now();
    r = stage_run(&ectx, &res, err, sizeof err);
    double t_eval = now() - t2;
    jobspec_free(&js);
    ok(r == 0 && res, "eval ran (%s)", r ? err : "ok");
    double mpjpe = res ? json_number_value(json_object_get(res, "mpjpe_mm")) : 1e9;
    double floor_mm = res ? json_number_value(json_object_get(res, "mean_predictor_mpjpe_mm")) : 0;
    double pa = res ? json_number_value(json_object_get(res, "pa_mpjpe_mm")) : 0;
    double auc = res ? json_number_value(json_object_get(res, "auc_0_50mm")) : 0;
    long nval = res ? (long)json_integer_value(json_object_get(res, "samples")) : 0;
    json_decref(res);
    /* where the error is: hand-centroid error per axis over the val split (infer stage) */
    {
        int64_t vb = (int64_t)llround(0.9 * (double)ds.n), nv = ds.n - vb;
        char *ispec = malloc(64 + (size_t)nv * 12);
        int o = sprintf(ispec, "{\"type\":\"infer\",\"dataset\":\"synth\",\"checkpoint\":\"final\",\"indices\":[");
        for (int64_t i = 0; i < nv; i++) o += sprintf(ispec + o, "%s%lld", i ? "," : "", (long long)(vb + i));
        sprintf(ispec + o, "]}");
        sj = json_loads(ispec, 0, NULL);
        free(ispec);
        int pr = jobspec_parse(sj, &js, field, sizeof field, msg, sizeof msg);
        json_decref(sj);
        json_t *ires = NULL;
        stage_ctx_t ictx = {.be = be, .ds = &ds, .spec = &js, .checkpoint_path = rec.last_ckpt};
        if (pr == 0 && stage_run(&ictx, &ires, err, sizeof err) == 0) {
            float *gt = malloc((size_t)nv * 63 * sizeof(float));
            uint8_t *hh = malloc((size_t)nv);
            be->download(be, gt, ds.joints + vb * 63, (size_t)nv * 63 * sizeof(float));
            be->download(be, hh, ds.has_hand + vb, (size_t)nv);
            double e[3] = {0};
            long c = 0;
            const json_t *preds = json_object_get(ires, "predictions");
            for (int64_t i = 0; i < nv; i++) {
                if (!hh[i]) continue;
                const json_t *jt = json_object_get(json_array_get(preds, (size_t)i), "joints");
                for (int k = 0; k < 3; k++) {
                    double pc = 0, gc = 0;
                    for (int q = 0; q < 21; q++) {
                        pc += json_number_value(json_array_get(json_array_get(jt, (size_t)q), (size_t)k)) / 21;
                        gc += gt[i * 63 + 3 * q + k] / 21;
                    }
                    e[k] += fabs(pc - gc);
                }
                c++;
            }
            if (c) diag("hand centroid mean abs error: x %.1f mm, y %.1f mm, z %.1f mm", 1000 * e[0] / c,
                        1000 * e[1] / c, 1000 * e[2] / c);
            free(gt);
            free(hh);
        }
        json_decref(ires);
        if (pr == 0) jobspec_free(&js);
    }
    ok(floor_mm > 30, "the task is not trivial: mean predictor %.1f mm", floor_mm);
    /* Real learning that must happen: depth and pose are learned well within
     * the budget, so the error falls clearly below the mean predictor's. */
    ok(mpjpe < LEARN_MUST * floor_mm, "learned: val MPJPE %.1f mm < %.2f x the mean predictor's %.1f mm", mpjpe,
       LEARN_MUST, floor_mm);
    /* The target of issue 2: below half the floor. It needs the hand's image
     * position (x/y), which a from-scratch model gets from its position table:
     * model_init starts it as the 2-D sine-cosine code of the patch grid. */
    ok(mpjpe < 0.5 * floor_mm, "val MPJPE %.1f mm < half the mean predictor's %.1f mm", mpjpe, floor_mm);
    diag("dinov2-tiny, %ld synthetic samples %ldx%ld, batch %ld, %ld steps, lr %g, bf16 plan, CPU backend",
         n, S, S, B, steps, lr);
    diag("val (%ld samples): MPJPE %.1f mm, PA-MPJPE %.1f mm, AUC %.3f; mean predictor %.1f mm", nval, mpjpe, pa,
         auc, floor_mm);
    diag("time: data %.1f s, train %.1f s (%.0f images/s), eval %.1f s, total %.1f s", t_data, t_train, ips, t_eval,
         now() - t0);

    be->free(be, base);
    ds_info_free(&info);
    be->destroy(be);
    fs_rm_rf(root, NULL, 0);
    return tap_done();
}
