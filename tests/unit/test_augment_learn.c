/* tests/unit/test_augment_learn.c — evidence that augmentation helps: a
 * domain shift made with the renderer. The training frames are synthetic right
 * hands as `traind synth` makes them (in-plane angle within ±46°); the
 * validation frames are other samples of the same generator seen through
 * another camera view (store/synth.h synth_samples_view): rolled by any angle
 * in [-180°, 180°] and mirrored (a left hand) half of the time. dinov2-tiny is
 * trained twice from the same seed, without and with
 * "augment":{"rotate_deg":[-180,180],"flip":0.5}; the val MPJPE (the train
 * stage's final validation, on the shifted frames) must be clearly lower with
 * augmentation. A third shard of unshifted frames gives the in-domain MPJPE of
 * both models (eval stage), to show what augmentation costs there.
 *
 * The defaults are what CI runs (small: 600 samples of 42 px, 500 steps,
 * about 40 s of CPU under ASan, and a looser bar: 0.9); the README's numbers
 * come from a larger run
 * through the environment: TRAIND_AUGL_TRAIN (samples), _VAL, _IMAGE, _STEPS,
 * _BATCH, _LR, _ASSERT (the fraction of the plain run's val MPJPE the
 * augmented one must stay below). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/stages.h"
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
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    char last_ckpt[1024];
} rec_t;
static void on_checkpoint(void *ud, long step, const char *dir, const json_t *m) {
    rec_t *r = ud;
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", dir);
}

/* Writes one shard of samples [first, first+n) of seed 5 seen through view (NULL: as generated). */
static int write_shard(const char *dir, const char *name, int S, int64_t first, int64_t n, const synth_view_t *view,
                       char *err, size_t errlen) {
    uint8_t *img = malloc((size_t)n * S * S * 3), *valid = malloc((size_t)n * 21), *hh = malloc((size_t)n);
    float *j = malloc((size_t)n * 63 * sizeof(float)), *K = malloc((size_t)n * 9 * sizeof(float));
    int rc = -1;
    if (img && valid && hh && j && K) {
        synth_samples_view(5, S, first, n, view, img, j, valid, hh, K);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        ds_shard_data_t sd = {.n = n, .h = S, .w = S, .image_dtype = DT_U8, .image = img, .joints = j,
                              .joints_valid = valid, .has_hand = hh, .intrinsics = K};
        rc = ds_write_shard(path, &sd, err, errlen);
    }
    free(img);
    free(valid);
    free(hh);
    free(j);
    free(K);
    return rc;
}

int main(void) {
    long ntr = env_long("TRAIND_AUGL_TRAIN", 600), nva = env_long("TRAIND_AUGL_VAL", 100),
         S = env_long("TRAIND_AUGL_IMAGE", 42), steps = env_long("TRAIND_AUGL_STEPS", 500),
         B = env_long("TRAIND_AUGL_BATCH", 16);
    double lr = env_double("TRAIND_AUGL_LR", 2e-3), must = env_double("TRAIND_AUGL_ASSERT", 0.9);
    char err[1024], root[256];
    snprintf(root, sizeof root, "/tmp/traind-test-auglearn-XXXXXX");
    if (!mkdtemp(root)) { printf("Bail out! mkdtemp\n"); return 1; }
    backend_t *be = backend_cpu_create(err, sizeof err);
    if (!be) { printf("Bail out! backend: %s\n", err); return 1; }

    /* train: samples [0, ntr); val: samples [ntr, ntr+nva) rolled and mirrored;
     * in-domain: samples [ntr+nva, ntr+2nva) as generated */
    char dsdir[512];
    snprintf(dsdir, sizeof dsdir, "%s/ds", root);
    mkdir(dsdir, 0755);
    synth_view_t shifted = {.roll_deg = {(float)env_double("TRAIND_AUGL_ROLL_LO", 90),
                                         (float)env_double("TRAIND_AUGL_ROLL_HI", 270)},
                            .mirror = (float)env_double("TRAIND_AUGL_MIRROR", 0.5)};
    int w1 = write_shard(dsdir, "a-train.safetensors", (int)S, 0, ntr, NULL, err, sizeof err);
    int w2 = w1 ? -1 : write_shard(dsdir, "b-val-shifted.safetensors", (int)S, ntr, nva, &shifted, err, sizeof err);
    int w3 = w2 ? -1 : write_shard(dsdir, "c-val-plain.safetensors", (int)S, ntr + nva, nva, NULL, err, sizeof err);
    ok(w1 == 0 && w2 == 0 && w3 == 0, "train / shifted val / plain val shards written (%s)", w3 ? err : "ok");
    ds_info_t info;
    ds_layout_t lay;
    dataset_t ds;
    int r = ds_scan(dsdir, &info, err, sizeof err);
    void *base = NULL;
    if (r == 0 && ds_layout_for(&lay, &info)) base = be->alloc(be, lay.total);
    ok(base && dataset_load(be, dsdir, &info, base, &lay, NULL, NULL, NULL, NULL, err, sizeof err) == 0,
       "loaded as bf16 (%s)", base ? err : "no allocation");
    if (!base) return tap_done();
    dataset_view(&ds, base, &lay);
    double N = (double)(ntr + 2 * nva), f1 = (double)ntr / N, f2 = (double)(ntr + nva) / N;

    const char *augs[2] = {"", ",\"augment\":{\"rotate_deg\":[-180,180],\"flip\":0.5}"};
    double val[2] = {NAN, NAN}, indomain[2] = {NAN, NAN}, secs[2] = {0, 0};
    for (int a = 0; a < 2; a++) {
        char spec[1024], croot[600], job[32];
        snprintf(job, sizeof job, "run%d", a);
        snprintf(croot, sizeof croot, "%s/ckpt", root);
        snprintf(spec, sizeof spec,
                 "{\"type\":\"train\",\"dataset\":\"shift\",\"seed\":1,\"model\":{\"backbone\":\"dinov2-tiny\"},"
                 "\"split\":{\"train\":[0,%.17g],\"val\":[%.17g,%.17g]},\"batch_size\":%ld,\"steps\":%ld,"
                 "\"eval_every\":0,\"checkpoint_every\":0,\"optim\":{\"lr\":{\"backbone\":%g,\"heads\":%g},"
                 "\"warmup_steps\":%ld}%s}",
                 f1, f1, f2, B, steps, lr, lr, steps / 20, augs[a]);
        json_t *sj = json_loads(spec, 0, NULL);
        jobspec_t js;
        char field[128], msg[256];
        ok(sj && jobspec_parse(sj, &js, field, sizeof field, msg, sizeof msg) == 0, "%s spec parses (%s)",
           a ? "augmented" : "plain", sj ? msg : "bad JSON");
        json_decref(sj);
        rec_t rec = {{0}};
        stage_ctx_t ctx = {.be = be, .ds = &ds, .spec = &js, .job_id = job, .checkpoint_root = croot, .ud = &rec,
                           .on_checkpoint = on_checkpoint};
        json_t *res = NULL;
        double t0 = now();
        r = stage_run(&ctx, &res, err, sizeof err);
        secs[a] = now() - t0;
        jobspec_free(&js);
        json_t *v = json_object_get(res, "val");
        ok(r == 0 && json_is_number(json_object_get(v, "mpjpe_mm")), "%s run trained (%s)",
           a ? "augmented" : "plain", r ? err : "ok");
        val[a] = json_number_value(json_object_get(v, "mpjpe_mm"));
        if (a == 1) {
            json_t *ap = json_object_get(res, "augment");
            ok(json_is_object(ap) && strstr(json_string_value(json_object_get(ap, "camera")), "camera_intrinsics"),
               "the result reports the resolved augmentation and its camera");
        }
        json_decref(res);

        /* in-domain frames through the eval stage */
        char espec[256];
        snprintf(espec, sizeof espec, "{\"type\":\"eval\",\"dataset\":\"shift\",\"checkpoint\":\"c\",\"indices\":[");
        char *ebuf = malloc(sizeof espec + (size_t)nva * 12);
        int o = sprintf(ebuf, "%s", espec);
        for (long i = 0; i < nva; i++) o += sprintf(ebuf + o, "%s%ld", i ? "," : "", ntr + nva + i);
        sprintf(ebuf + o, "]}");
        sj = json_loads(ebuf, 0, NULL);
        free(ebuf);
        if (sj && jobspec_parse(sj, &js, field, sizeof field, msg, sizeof msg) == 0) {
            stage_ctx_t ectx = {.be = be, .ds = &ds, .spec = &js, .job_id = "eval", .checkpoint_path = rec.last_ckpt};
            if (stage_run(&ectx, &res, err, sizeof err) == 0) {
                indomain[a] = json_number_value(json_object_get(res, "mpjpe_mm"));
                json_decref(res);
            }
            jobspec_free(&js);
        }
        json_decref(sj);
    }
    diag("dinov2-tiny, %ld train samples %ldx%ld, batch %ld, %ld steps, lr %g (CPU backend)", ntr, S, S, B, steps, lr);
    diag("val on frames rolled by [%g, %g] deg and mirrored with p %g: MPJPE %.1f mm without augmentation, %.1f mm "
         "with", shifted.roll_deg[0], shifted.roll_deg[1], shifted.mirror, val[0], val[1]);
    diag("in-domain frames: MPJPE %.1f mm without, %.1f mm with; train time %.1f s / %.1f s", indomain[0],
         indomain[1], secs[0], secs[1]);
    ok(isfinite(val[0]) && isfinite(val[1]) && val[1] < must * val[0],
       "augmentation helps under the shift: %.1f mm < %.2f x %.1f mm", val[1], must, val[0]);

    be->free(be, base);
    ds_info_free(&info);
    be->destroy(be);
    fs_rm_rf(root, NULL, 0);
    return tap_done();
}
