/* tests/unit/test_stages.c — the four stages on the CPU backend with a bf16
 * resident dataset (synthetic, loaded by dataset_load): train (bf16 plan), eval,
 * debug (fp32 plan) and infer run without a dtype error — the failure that
 * motivated traind — and their results carry the documented fields; a train
 * run stopped and resumed gives exactly the losses of an uninterrupted one,
 * with and without augmentation (whose validation stays un-augmented);
 * a checkpoint saved and loaded gives the eval the training run saw; infer
 * from inline u8 images equals infer from the same dataset samples; bad
 * inputs give errors, not crashes. */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/stages.h"
#include "gpu/dataset.h"
#include "store/dataset.h"
#include "store/fsutil.h"
#include "store/safetensors.h"
#include "store/synth.h"
#include "tests/tap.h"

#define NS 120       /* samples */
#define S 28         /* image size: 2x2 patches of 14 */

static backend_t *be;
static dataset_t ds;
static char root[256];

/* ---- callbacks: record what a stage reports ---- */
typedef struct {
    long step;
    char name[32];
    double value;
} rec_metric_t;

typedef struct {
    rec_metric_t *m;
    int nm, capm;
    char ckpt[8][1024];
    long ckpt_step[8];
    int nckpt, nprogress, nlog;
    long stop_at;                      /* set *stop after this step's "loss" (0: never) */
    volatile sig_atomic_t stop;
    stage_progress_t last;
    int lift_on_warning;               /* a failed checkpoint's warning restores RLIMIT_FSIZE to lift_to */
    struct rlimit lift_to;
    int nwarn;
} rec_t;

static void on_metric(void *ud, long step, const char *name, double v) {
    rec_t *r = ud;
    if (r->nm == r->capm) {
        r->capm = r->capm ? 2 * r->capm : 64;
        r->m = realloc(r->m, (size_t)r->capm * sizeof *r->m);
    }
    rec_metric_t *x = &r->m[r->nm++];
    x->step = step;
    snprintf(x->name, sizeof x->name, "%s", name);
    x->value = v;
    if (r->stop_at && step == r->stop_at && strcmp(name, "loss") == 0) r->stop = 1;
}
static void on_progress(void *ud, const stage_progress_t *p) {
    rec_t *r = ud;
    r->nprogress++;
    r->last = *p;
}
static void on_checkpoint(void *ud, long step, const char *dir, const json_t *metrics) {
    rec_t *r = ud;
    if (r->nckpt < 8) {
        snprintf(r->ckpt[r->nckpt], sizeof r->ckpt[0], "%s", dir);
        r->ckpt_step[r->nckpt] = step;
    }
    r->nckpt++;
}
static void on_log(void *ud, const char *msg) {
    rec_t *r = ud;
    r->nlog++;
    if (strstr(msg, "warning: checkpoint at step")) {
        r->nwarn++;
        if (r->lift_on_warning) setrlimit(RLIMIT_FSIZE, &r->lift_to);
    }
    diag("  log: %s", msg);
}

static int parse(const char *text, jobspec_t *js) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    char field[128], msg[256];
    if (!j) { diag("bad JSON %s", je.text); return -1; }
    int r = jobspec_parse(j, js, field, sizeof field, msg, sizeof msg);
    json_decref(j);
    if (r) diag("spec error %s: %s", field, msg);
    return r;
}

/* Runs a stage from a JSON spec; returns stage_run's code. */
static int run(const char *spec_text, const char *job, const char *ckpt, rec_t *rec, json_t **res, char *err,
               size_t errlen) {
    jobspec_t js;
    if (parse(spec_text, &js)) { snprintf(err, errlen, "spec did not parse"); return -9; }
    char croot[512], rdir[512];
    snprintf(croot, sizeof croot, "%s/ckpt", root);
    snprintf(rdir, sizeof rdir, "%s/results/%s", root, job);
    stage_ctx_t ctx = {.be = be, .ds = &ds, .spec = &js, .job_id = job, .checkpoint_root = croot,
                       .checkpoint_path = ckpt, .result_dir = rdir, .stop = &rec->stop, .ud = rec,
                       .on_progress = on_progress, .on_metric = on_metric, .on_checkpoint = on_checkpoint,
                       .on_log = on_log};
    *res = NULL;
    int r = stage_run(&ctx, res, err, errlen);
    jobspec_free(&js);
    return r;
}

static void rec_free(rec_t *r) { free(r->m); memset(r, 0, sizeof *r); }

/* losses of a run, by step */
static int losses(const rec_t *r, double *out, int max) {
    int n = 0;
    for (int i = 0; i < r->nm; i++)
        if (strcmp(r->m[i].name, "loss") == 0 && r->m[i].step >= 1 && r->m[i].step <= max) {
            out[r->m[i].step - 1] = r->m[i].value;
            n++;
        }
    return n;
}

static int has_num(const json_t *o, const char *k) { return json_is_number(json_object_get(o, k)); }
static const char *str(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

int main(void) {
    char err[1024];
    snprintf(root, sizeof root, "/tmp/traind-test-stages-XXXXXX");
    if (!mkdtemp(root)) { printf("Bail out! mkdtemp\n"); return 1; }
    be = backend_cpu_create(err, sizeof err);
    if (!be) { printf("Bail out! backend: %s\n", err); return 1; }

    /* ---- a synthetic dataset, resident as bf16 ---- */
    char dsdir[512];
    snprintf(dsdir, sizeof dsdir, "%s/ds", root);
    ok(synth_generate(dsdir, NS, S, 7, 50, NULL, err, sizeof err) == 0, "synthetic dataset written (%s)", err);
    ds_info_t info;
    ok(ds_scan(dsdir, &info, err, sizeof err) == 0, "scan (%s)", err);
    ds_layout_t lay;
    ds_layout_for(&lay, &info);
    void *base = be->alloc(be, lay.total);
    ok(base && dataset_load(be, dsdir, &info, base, &lay, NULL, NULL, NULL, NULL, err, sizeof err) == 0, "load (%s)", err);
    dataset_view(&ds, base, &lay);
    ok(ds.image_dtype == DT_BF16 && ds.n == NS && ds.h == S, "resident images are bf16 [%d,3,%d,%d]", NS, S, S);

    /* ---- train, bf16 plan ---- */
    rec_t tr = {0};
    json_t *res;
    const char *train_spec =
        "{\"type\":\"train\",\"dataset\":\"syn\",\"seed\":3,\"model\":{\"backbone\":\"dinov2-tiny\"},"
        "\"batch_size\":8,\"steps\":12,\"eval_every\":6,\"checkpoint_every\":6,"
        "\"optim\":{\"lr\":{\"backbone\":1e-3,\"heads\":1e-3},\"warmup_steps\":2}}";
    int r = run(train_spec, "j-train", NULL, &tr, &res, err, sizeof err);
    ok(r == 0 && res, "train on a bf16 dataset in the bf16 plan runs (%s)", r ? err : "ok");
    const json_t *plan = json_object_get(res, "dtype_plan");
    ok(plan && strcmp(str(plan, "encoder_input"), "bf16") == 0 && strcmp(str(plan, "master_params"), "fp32") == 0,
       "train result carries its dtype plan (bf16 compute, fp32 master)");
    ok(json_integer_value(json_object_get(res, "step")) == 12 && has_num(res, "final_loss") &&
       has_num(res, "images_per_s") && has_num(res, "best_val_mpjpe") &&
       json_is_object(json_object_get(res, "val")) && json_integer_value(json_object_get(res, "train_samples")) == 108,
       "train result: step, final loss, val metrics, best val, throughput, split sizes");
    ok(tr.nckpt == 2 && tr.ckpt_step[0] == 6 && tr.ckpt_step[1] == 12, "checkpoints at 6 and at the end (%d)", tr.nckpt);
    double l_tr[12] = {0};
    ok(losses(&tr, l_tr, 12) == 12, "a loss metric per step");
    /* lr: linear warmup over 2 steps, then cosine from the base over the remaining 10 */
    double lr_at[13] = {0};
    for (int i = 0; i < tr.nm; i++)
        if (strcmp(tr.m[i].name, "lr") == 0 && tr.m[i].step >= 1 && tr.m[i].step <= 12) lr_at[tr.m[i].step] = tr.m[i].value;
    ok(fabs(lr_at[1] - 5e-4) < 1e-9 && fabs(lr_at[2] - 1e-3) < 1e-9 && fabs(lr_at[3] - 1e-3) < 1e-9 &&
       fabs(lr_at[12] - 1e-3 * 0.5 * (1 + cos(M_PI * 0.9))) < 1e-9,
       "lr schedule: warmup then cosine (%.3g %.3g %.3g ... %.3g)", lr_at[1], lr_at[2], lr_at[3], lr_at[12]);
    int nval = 0;
    for (int i = 0; i < tr.nm; i++) nval += strcmp(tr.m[i].name, "val_mpjpe") == 0;
    ok(nval == 2, "val_mpjpe at step 6 and at the end");
    ok(tr.nprogress >= 1 && tr.last.step == 12 && tr.last.total_steps == 12 && tr.last.epoch >= 1,
       "progress reports step/total/epoch");
    double train_val = json_number_value(json_object_get(json_object_get(res, "val"), "mpjpe_mm"));
    char ckpt_final[1024];
    snprintf(ckpt_final, sizeof ckpt_final, "%s", tr.ckpt[1]);
    char p[1200];
    snprintf(p, sizeof p, "%s/state.json", ckpt_final);
    json_t *st = json_load_file(p, 0, NULL);
    ok(st && json_integer_value(json_object_get(st, "step")) == 12 &&
       json_array_size(json_object_get(st, "rng_epoch_start")) == 4 && json_object_get(st, "data_position") &&
       json_is_object(json_object_get(st, "spec")), "state.json: step, data position, RNG state, spec");
    json_decref(st);
    json_decref(res);
    rec_free(&tr);

    /* ---- eval of the saved checkpoint == the training run's final val ---- */
    rec_t ev = {0};
    r = run("{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"batch_size\":8}", "j-eval", ckpt_final,
            &ev, &res, err, sizeof err);
    ok(r == 0 && res, "eval runs (%s)", r ? err : "ok");
    ok(res && has_num(res, "mpjpe_mm") && has_num(res, "pa_mpjpe_mm") && has_num(res, "auc_0_50mm") &&
       has_num(res, "mean_predictor_mpjpe_mm") && json_array_size(json_object_get(res, "per_joint_mpjpe_mm")) == 21 &&
       has_num(json_object_get(res, "pck"), "5") && has_num(json_object_get(res, "pck"), "50"),
       "eval result: MPJPE, PA-MPJPE, PCK, AUC, per-joint, mean-predictor floor (mm)");
    ok(res && strcmp(str(json_object_get(res, "dtype_plan"), "params"), "bf16") == 0, "eval plan: bf16 params");
    double eval_val = res ? json_number_value(json_object_get(res, "mpjpe_mm")) : -1;
    ok(eval_val == train_val, "checkpoint save+load gives the identical eval (%.6f vs %.6f mm)", eval_val, train_val);
    ok(res && json_integer_value(json_object_get(res, "samples")) == 12, "eval on the checkpoint's val split (12)");
    json_decref(res);
    rec_free(&ev);
    r = run("{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"indices\":[0,5,7],"
            "\"precision\":{\"compute\":\"fp32\"}}", "j-eval2", ckpt_final, &ev, &res, err, sizeof err);
    ok(r == 0 && json_integer_value(json_object_get(res, "samples")) == 3 &&
       strcmp(str(json_object_get(res, "dtype_plan"), "matmul_inputs"), "fp32") == 0,
       "eval of explicit indices in fp32 (%s)", r ? err : "ok");
    json_decref(res);
    rec_free(&ev);

    /* ---- debug, fp32 plan, on the checkpoint and on a fresh model ---- */
    rec_t dg = {0};
    r = run("{\"type\":\"debug\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"batches\":2,\"batch_size\":4}",
            "j-debug", ckpt_final, &dg, &res, err, sizeof err);
    ok(r == 0 && res, "debug (fp32) runs on the bf16 dataset (%s)", r ? err : "ok");
    if (res) {
        const json_t *acts = json_object_get(res, "activations"), *params = json_object_get(res, "parameters");
        int has_block = 0, has_head = 0;
        for (size_t i = 0; i < json_array_size(acts); i++) {
            const json_t *a = json_array_get(acts, i);
            has_block |= strcmp(str(a, "name"), "encoder.layer.1") == 0 && has_num(a, "std") && has_num(a, "mean") &&
                         json_is_integer(json_object_get(a, "nan")) && has_num(a, "zero_fraction");
            has_head |= strncmp(str(a, "name"), "heads.hand", 10) == 0;
        }
        ok(has_block && has_head, "activation stats per block and per head");
        int grads = 0, flagged = 0;
        for (size_t i = 0; i < json_array_size(params); i++) {
            const json_t *q = json_array_get(params, i);
            grads += has_num(q, "grad_norm") && has_num(q, "weight_norm");
            flagged += str(q, "flag") != NULL;
        }
        ok(grads > 20 && flagged == (int)json_array_size(params), "weight and gradient norms per tensor, flagged (%d)",
           grads);
        const json_t *dv = json_object_get(res, "prediction_diversity");
        ok(has_num(dv, "std_mm") && str(dv, "flag"), "prediction diversity (%.2f mm, %s)",
           json_number_value(json_object_get(dv, "std_mm")), str(dv, "flag"));
        ok(strcmp(str(json_object_get(res, "dtype_plan"), "encoder_input"), "fp32") == 0 &&
           strcmp(str(json_object_get(res, "dtype_plan"), "grads"), "fp32") == 0 &&
           json_object_size(json_object_get(res, "stage_plans")) == 4, "debug plan fp32, with every stage's plan");
    }
    json_decref(res);
    rec_free(&dg);
    r = run("{\"type\":\"debug\",\"dataset\":\"syn\",\"model\":{\"backbone\":\"dinov2-tiny\",\"registers\":4},"
            "\"batches\":1,\"batch_size\":6}", "j-debug2", NULL, &dg, &res, err, sizeof err);
    ok(r == 0 && res && json_integer_value(json_object_get(res, "samples")) == 6,
       "debug of a fresh model with registers (%s)", r ? err : "ok");
    json_decref(res);
    rec_free(&dg);

    /* ---- infer: indices vs the same images inline, features inline ---- */
    rec_t in = {0};
    r = run("{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"indices\":[3,4],"
            "\"outputs\":[\"joints\",\"cls\",\"patch_tokens\"]}", "j-infer", ckpt_final, &in, &res, err, sizeof err);
    ok(r == 0 && res, "infer from indices (%s)", r ? err : "ok");
    json_t *pred0 = res ? json_incref(json_array_get(json_object_get(res, "predictions"), 0)) : NULL;
    ok(pred0 && json_array_size(json_object_get(pred0, "joints")) == 21 &&
       json_array_size(json_array_get(json_object_get(pred0, "joints"), 0)) == 3 &&
       json_array_size(json_object_get(pred0, "confidence")) == 21 &&
       json_array_size(json_object_get(pred0, "cls")) == 64 &&
       json_array_size(json_object_get(pred0, "patch_tokens")) == 4,
       "per image: joints 21x3, confidences, cls [64] and patch tokens [4][64] inline");
    double c0 = json_number_value(json_array_get(json_object_get(pred0, "confidence"), 0));
    ok(c0 > 0 && c0 < 1, "confidence is a probability (%.3f)", c0);
    ok(res && strcmp(str(json_object_get(res, "dtype_plan"), "encoder_input"), "bf16") == 0, "infer plan bf16");
    json_decref(res);
    rec_free(&in);
    /* the u8 image of sample 3, base64 — converted like the dataset was */
    {
        uint8_t img[S * S * 3];
        synth_samples(7, S, 3, 1, img, NULL, NULL, NULL, NULL);
        static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t n = sizeof img, o = 0;
        char *b64 = malloc((n + 2) / 3 * 4 + 1);
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)img[i] << 16 | (i + 1 < n ? (uint32_t)img[i + 1] << 8 : 0) | (i + 2 < n ? img[i + 2] : 0);
            b64[o++] = A[v >> 18 & 63];
            b64[o++] = A[v >> 12 & 63];
            b64[o++] = i + 1 < n ? A[v >> 6 & 63] : '=';
            b64[o++] = i + 2 < n ? A[v & 63] : '=';
        }
        b64[o] = 0;
        size_t sl = o + 256;
        char *spec = malloc(sl);
        snprintf(spec, sl, "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"images\":[{\"u8_hwc_b64\":"
                 "\"%s\",\"height\":%d,\"width\":%d}]}", b64, S, S);
        r = run(spec, "j-infer2", ckpt_final, &in, &res, err, sizeof err);
        json_t *q = res ? json_array_get(json_object_get(res, "predictions"), 0) : NULL;
        ok(r == 0 && q && !json_object_get(q, "resized_from") &&
           json_equal(json_object_get(q, "joints"), json_object_get(pred0, "joints")),
           "infer of the inline u8 image equals infer of the dataset sample (%s)", r ? err : "ok");
        json_decref(res);
        rec_free(&in);
        /* another size: resized to the dataset's (gpu/image.c), the result says from what */
        snprintf(spec, sl, "{\"type\":\"infer\",\"dataset\":\"syn\",\"images\":[{\"u8_hwc_b64\":\"AQID\","
                 "\"height\":1,\"width\":1}],\"model\":{\"backbone\":\"dinov2-tiny\"}}");
        r = run(spec, "j-infer3", NULL, &in, &res, err, sizeof err);
        q = res ? json_array_get(json_object_get(res, "predictions"), 0) : NULL;
        json_t *rf = q ? json_object_get(q, "resized_from") : NULL;
        ok(r == 0 && json_array_size(json_object_get(q, "joints")) == 21 && json_array_size(rf) == 2 &&
           json_integer_value(json_array_get(rf, 0)) == 1 && json_integer_value(json_array_get(rf, 1)) == 1,
           "an image of another size (1x1) is resized: 21 joints, resized_from [1,1] (%s)", r ? err : "ok");
        json_decref(res);
        rec_free(&in);
        free(spec);
        free(b64);
    }
    json_decref(pred0);
    /* large features go to a safetensors file */
    {
        char spec[2048];
        int o = snprintf(spec, sizeof spec, "{\"type\":\"infer\",\"dataset\":\"syn\",\"checkpoint\":\"c\","
                                            "\"outputs\":[\"patch_tokens\"],\"batch_size\":16,\"indices\":[");
        for (int i = 0; i < 80; i++) o += snprintf(spec + o, sizeof spec - (size_t)o, "%s%d", i ? "," : "", i);
        snprintf(spec + o, sizeof spec - (size_t)o, "]}");
        r = run(spec, "j-infer4", ckpt_final, &in, &res, err, sizeof err);
        const char *path = res ? str(json_object_get(res, "features"), "path") : NULL;
        ok(r == 0 && path, "80x4x64 patch tokens (80 KB) go to a file (%s)", r ? err : path);
        st_file_t *f = path ? st_open(path, err, sizeof err) : NULL;
        const st_tensor_t *t = f ? st_find(f, "patch_tokens") : NULL;
        ok(t && t->dtype == ST_F32 && t->rank == 3 && t->shape[0] == 80 && t->shape[1] == 4 && t->shape[2] == 64,
           "features.safetensors holds patch_tokens F32 [80,4,64]");
        ok(res && json_object_get(json_array_get(json_object_get(res, "predictions"), 0), "patch_tokens") == NULL,
           "and not inline");
        st_close(f);
        json_decref(res);
        rec_free(&in);
    }

    /* ---- stop + resume == uninterrupted ---- */
    const char *rs_spec =
        "{\"type\":\"train\",\"dataset\":\"syn\",\"seed\":11,\"model\":{\"backbone\":\"dinov2-tiny\"},"
        "\"batch_size\":16,\"steps\":16,\"eval_every\":0,\"checkpoint_every\":0,"
        "\"optim\":{\"lr\":{\"backbone\":2e-3,\"heads\":2e-3},\"warmup_steps\":3}}";
    rec_t full = {0}, part = {0}, rest = {0};
    r = run(rs_spec, "j-full", NULL, &full, &res, err, sizeof err);
    ok(r == 0, "uninterrupted 16 steps (2+ epochs of 108 samples) (%s)", r ? err : "ok");
    json_decref(res);
    part.stop_at = 9;
    r = run(rs_spec, "j-part", NULL, &part, &res, err, sizeof err);
    ok(r == 1 && part.nckpt == 1 && part.ckpt_step[0] == 9, "stop after step 9: returns 1 with a checkpoint");
    ok(res && json_is_true(json_object_get(res, "stopped")), "the stopped result says so");
    json_decref(res);
    char ck[1024];
    snprintf(ck, sizeof ck, "%s", part.ckpt[0]);
    r = run(rs_spec, "j-part", ck, &rest, &res, err, sizeof err);
    ok(r == 0, "resume from the step-9 checkpoint (%s)", r ? err : "ok");
    json_decref(res);
    double lf[16] = {0}, lp[16] = {0};
    int nf = losses(&full, lf, 16), np = losses(&part, lp, 16) + losses(&rest, lp, 16);
    int same = nf == 16 && np == 16;
    for (int i = 0; i < 16 && same; i++) same = lf[i] == lp[i];
    ok(same, "stopped + resumed losses are exactly the uninterrupted ones (%d/%d steps)", nf, np);
    if (!same)
        for (int i = 0; i < 16; i++) diag("  step %d: %.9g vs %.9g", i + 1, lf[i], lp[i]);
    ok(lf[15] < lf[0], "the loss went down (%.4f -> %.4f)", lf[0], lf[15]);

    /* ---- checkpoints written beside training: each holds its own step ---- */
    const char *mid_spec =
        "{\"type\":\"train\",\"dataset\":\"syn\",\"seed\":11,\"model\":{\"backbone\":\"dinov2-tiny\"},"
        "\"batch_size\":16,\"steps\":16,\"eval_every\":0,\"checkpoint_every\":4,"
        "\"optim\":{\"lr\":{\"backbone\":2e-3,\"heads\":2e-3},\"warmup_steps\":3}}";
    rec_t mid = {0}, mrest = {0};
    r = run(mid_spec, "j-mid", NULL, &mid, &res, err, sizeof err);
    ok(r == 0 && mid.nckpt == 4 && mid.ckpt_step[0] == 4 && mid.ckpt_step[1] == 8 && mid.ckpt_step[2] == 12 &&
       mid.ckpt_step[3] == 16, "checkpoints at 4, 8, 12 (beside training) and 16, reported in order (%d; %s)",
       mid.nckpt, r ? err : "ok");
    ok(res && strcmp(str(res, "checkpoint"), mid.ckpt[3]) == 0, "the result names the last one");
    json_decref(res);
    double lm[16] = {0};
    int nm = losses(&mid, lm, 16);
    same = nm == 16;
    for (int i = 0; i < 16 && same; i++) same = lf[i] == lm[i];
    ok(same, "losses with checkpoints written beside training are exactly the uninterrupted ones");
    int whole = 1;
    for (int i = 0; i < 4 && i < mid.nckpt; i++) {
        char f[1200];
        const char *names[] = {"model.safetensors", "optimizer.safetensors", "config.json", "state.json"};
        for (int k = 0; k < 4; k++) {
            snprintf(f, sizeof f, "%s/%s", mid.ckpt[i], names[k]);
            whole &= access(f, R_OK) == 0;
        }
    }
    ok(whole, "each holds its four files");
    /* resumed from step 8 under the same job: steps 12 and 16 are found written and reported again */
    snprintf(ck, sizeof ck, "%s", mid.ckpt[1]);
    r = run(mid_spec, "j-mid", ck, &mrest, &res, err, sizeof err);
    ok(r == 0 && mrest.nckpt == 2 && mrest.ckpt_step[0] == 12 && mrest.ckpt_step[1] == 16 &&
       strcmp(mrest.ckpt[0], mid.ckpt[2]) == 0, "resumed from the step-8 checkpoint: 12 and 16 kept and reported (%s)",
       r ? err : "ok");
    json_decref(res);
    double lr8[16] = {0};
    int n8 = losses(&mrest, lr8, 16);
    same = n8 == 8;
    for (int i = 8; i < 16 && same; i++) same = lr8[i] == lf[i];
    ok(same, "resumed from the checkpoint written beside training: steps 9-16 exactly the uninterrupted ones (%d)", n8);
    /* a checkpoint that cannot be written (the files limited to 1 MB): in the middle of the run
     * a warning, and the run goes on; the last one's failure fails the job */
    {
        struct rlimit old, small;
        getrlimit(RLIMIT_FSIZE, &old);
        small = old;
        small.rlim_cur = 1 << 20;
        signal(SIGXFSZ, SIG_IGN);   /* past the limit, write() fails with EFBIG */
        char jd[1024];
        /* the limit lifted when the first failure is reported: 8, 12 and 16 are written */
        rec_t once = {.lift_on_warning = 1, .lift_to = old};
        setrlimit(RLIMIT_FSIZE, &small);
        r = run(mid_spec, "j-once", NULL, &once, &res, err, sizeof err);
        setrlimit(RLIMIT_FSIZE, &old);
        ok(r == 0 && once.nwarn == 1 && once.nckpt == 3 && once.ckpt_step[0] == 8 && once.ckpt_step[2] == 16 &&
           json_integer_value(json_object_get(res, "checkpoint_failures")) == 1,
           "a checkpoint that fails beside training is a warning; the run goes on and checkpoints at 8, 12, 16 "
           "(%d warnings, %d checkpoints; %s)", once.nwarn, once.nckpt, r ? err : "ok");
        json_decref(res);
        double lo[16] = {0};
        same = losses(&once, lo, 16) == 16;
        for (int i = 0; i < 16 && same; i++) same = lo[i] == lf[i];
        ok(same, "its losses are the uninterrupted run's");
        snprintf(jd, sizeof jd, "%s/ckpt/j-once", root);
        ok(count_entries(jd) == 3, "its directory holds 8, 12 and 16 only (%d entries)", count_entries(jd));
        rec_free(&once);
        /* never lifted: three warnings, then the last one fails the job */
        rec_t bad = {0};
        setrlimit(RLIMIT_FSIZE, &small);
        r = run(mid_spec, "j-bad", NULL, &bad, &res, err, sizeof err);
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, SIG_DFL);
        ok(r == -1 && !res && strstr(err, "checkpoint at step 16") && strstr(err, "File too large") && bad.nwarn == 3 &&
           bad.nckpt == 0, "when the last one cannot be written either, the job fails naming it: %s", err);
        snprintf(jd, sizeof jd, "%s/ckpt/j-bad", root);
        ok(count_entries(jd) == 0, "and nothing is left in the job's checkpoint directory (%d entries)",
           count_entries(jd));
        rec_free(&bad);
    }
    rec_free(&mid);
    rec_free(&mrest);
    rec_free(&full);
    rec_free(&part);
    rec_free(&rest);

    /* ---- the same with augmentation: draws by (seed, epoch, sample) resume exactly ---- */
    const char *ra_spec =
        "{\"type\":\"train\",\"dataset\":\"syn\",\"seed\":11,\"model\":{\"backbone\":\"dinov2-tiny\"},"
        "\"batch_size\":16,\"steps\":16,\"eval_every\":0,\"checkpoint_every\":0,"
        "\"optim\":{\"lr\":{\"backbone\":2e-3,\"heads\":2e-3},\"warmup_steps\":3},"
        "\"augment\":{\"rotate_deg\":[-45,45],\"shift_deg\":5,\"flip\":0.5,\"zoom\":[0.9,1.1],\"brightness\":0.2,"
        "\"contrast\":0.2,\"saturation\":0.2,\"hue\":0.05,\"erase\":{\"count\":2}}}";
    rec_t afull = {0}, apart = {0}, arest = {0};
    r = run(ra_spec, "j-afull", NULL, &afull, &res, err, sizeof err);
    ok(r == 0, "augmented: uninterrupted 16 steps (%s)", r ? err : "ok");
    const json_t *aug = json_object_get(res, "augment");
    ok(json_is_object(aug) && strstr(str(aug, "camera"), "camera_intrinsics") &&
       json_real_value(json_array_get(json_object_get(aug, "rotate_deg"), 1)) == 45,
       "the train result carries the resolved augmentation beside the dtype plan");
    double aug_val = json_number_value(json_object_get(json_object_get(res, "val"), "mpjpe_mm"));
    char ack[1024];
    snprintf(ack, sizeof ack, "%s", afull.nckpt ? afull.ckpt[0] : "");
    json_decref(res);
    apart.stop_at = 9;
    r = run(ra_spec, "j-apart", NULL, &apart, &res, err, sizeof err);
    ok(r == 1 && apart.nckpt == 1 && apart.ckpt_step[0] == 9, "augmented: stop after step 9 with a checkpoint");
    json_decref(res);
    snprintf(ck, sizeof ck, "%s", apart.ckpt[0]);
    r = run(ra_spec, "j-apart", ck, &arest, &res, err, sizeof err);
    ok(r == 0, "augmented: resume from the step-9 checkpoint (%s)", r ? err : "ok");
    json_decref(res);
    double af[16] = {0}, ap[16] = {0};
    nf = losses(&afull, af, 16);
    np = losses(&apart, ap, 16) + losses(&arest, ap, 16);
    same = nf == 16 && np == 16;
    int differs = 0;
    for (int i = 0; i < 16 && same; i++) {
        same = af[i] == ap[i];
        differs += af[i] != lf[i];
    }
    ok(same, "augmented: stopped + resumed losses are exactly the uninterrupted ones (%d/%d steps)", nf, np);
    if (!same)
        for (int i = 0; i < 16; i++) diag("  step %d: %.9g vs %.9g", i + 1, af[i], ap[i]);
    ok(differs >= 15, "augmentation changed the batches: %d of 16 losses differ from the plain run's", differs);
    /* validation never augments: the eval stage (which cannot) on the final checkpoint sees the same */
    r = run("{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"batch_size\":16}", "j-aeval", ack, &ev,
            &res, err, sizeof err);
    ok(r == 0 && json_number_value(json_object_get(res, "mpjpe_mm")) == aug_val,
       "the augmented run's validation is un-augmented (eval of its checkpoint: %.6f vs %.6f mm)",
       json_number_value(json_object_get(res, "mpjpe_mm")), aug_val);
    json_decref(res);
    rec_free(&ev);
    rec_free(&afull);
    rec_free(&apart);
    rec_free(&arest);

    /* precision override trains in fp32 */
    r = run("{\"type\":\"train\",\"dataset\":\"syn\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batch_size\":8,"
            "\"steps\":2,\"precision\":{\"compute\":\"fp32\"},\"checkpoint_every\":0}", "j-fp32", NULL, &tr, &res,
            err, sizeof err);
    ok(r == 0 && strcmp(str(json_object_get(res, "dtype_plan"), "params"), "fp32") == 0,
       "train with precision.compute fp32 (%s)", r ? err : "ok");
    json_decref(res);
    rec_free(&tr);

    /* ---- errors, not crashes ---- */
    r = run("{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"indices\":[1,500]}", "j-e1", ckpt_final,
            &ev, &res, err, sizeof err);
    ok(r == -1 && !res && strstr(err, "indices[1]"), "eval index out of range: %s", err);
    rec_free(&ev);
    char nope[600];
    snprintf(nope, sizeof nope, "%s/no-such-checkpoint", root);
    r = run("{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"c\"}", "j-e2", nope, &ev, &res, err, sizeof err);
    ok(r == -1 && !res && err[0], "missing checkpoint: %s", err);
    rec_free(&ev);
    r = run("{\"type\":\"train\",\"dataset\":\"syn\",\"model\":{\"backbone\":\"dinov2-tiny\"},"
            "\"split\":{\"train\":[0,0.001],\"val\":[0.5,1]},\"steps\":1}", "j-e3", NULL, &tr, &res, err, sizeof err);
    ok(r == -1 && strstr(err, "split.train"), "an empty training split: %s", err);
    rec_free(&tr);
    r = run("{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"c\",\"model\":{\"backbone\":\"dinov2-small\"}}",
            "j-e4", ckpt_final, &ev, &res, err, sizeof err);
    ok(r == -1 && strstr(err, "does not match"), "a model spec that contradicts the checkpoint: %s", err);
    rec_free(&ev);
    r = run("{\"type\":\"train\",\"dataset\":\"syn\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batch_size\":8,"
            "\"split\":{\"train\":[0,0.5],\"val\":[0.5,1]},\"steps\":20}", "j-e5", ckpt_final, &tr, &res, err,
            sizeof err);
    ok(r == -1 && !res && strstr(err, "resume"), "resuming onto another split size is refused: %s", err);
    rec_free(&tr);

    /* an image size the patch does not divide: the model says so, once (no "model: model:") */
    int h0 = ds.h, w0 = ds.w;
    ds.h = ds.w = 30;
    r = run("{\"type\":\"train\",\"dataset\":\"syn\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"steps\":1}", "j-e6",
            NULL, &tr, &res, err, sizeof err);
    ok(r == -1 && !res && strstr(err, "model: image size 30x30") && !strstr(err, "model: model:"),
       "train on 30x30 images: %s", err);
    rec_free(&tr);
    r = run("{\"type\":\"eval\",\"dataset\":\"syn\",\"checkpoint\":\"c\"}", "j-e7", ckpt_final, &ev, &res, err, sizeof err);
    ok(r == -1 && !res && strstr(err, "model: image size 30x30") && !strstr(err, "model: model:"),
       "eval on 30x30 images: %s", err);
    rec_free(&ev);
    ds.h = h0;
    ds.w = w0;

    /* a non-finite loss skips the update (with a log line) and leaves the model finite */
    float saved[63];
    memcpy(saved, ds.joints, sizeof saved);
    for (int k = 0; k < 63; k++) ds.joints[k] = NAN;   /* sample 0 is in every full-split batch */
    int nlog0 = tr.nlog;
    r = run("{\"type\":\"train\",\"dataset\":\"syn\",\"model\":{\"backbone\":\"dinov2-tiny\"},\"batch_size\":108,"
            "\"steps\":2,\"checkpoint_every\":0}", "j-nan", NULL, &tr, &res, err, sizeof err);
    ok(r == 0 && json_integer_value(json_object_get(res, "steps_skipped")) == 2 && tr.nlog > nlog0 &&
       json_is_number(json_object_get(json_object_get(res, "val"), "mpjpe_mm")),
       "NaN labels: both updates skipped, the model stays finite (%s)", r ? err : "ok");
    json_decref(res);
    rec_free(&tr);
    memcpy(ds.joints, saved, sizeof saved);

    be->free(be, base);
    ds_info_free(&info);
    be->destroy(be);
    fs_rm_rf(root, NULL, 0);
    return tap_done();
}
