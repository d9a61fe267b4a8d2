/* tests/unit/test_model_hf.c — the CPU forward against Hugging Face
 * transformers' Dinov2Model / Dinov2WithRegistersModel (fixtures in
 * tests/fixtures/hf_*, made by tests/hf/make_fixtures.py): fp32 within a
 * relative error of 1e-5, the bf16 plan (bf16 input and compute) within 2e-2;
 * through model_load_hf_dir + model_forward, with a batch gathered by index,
 * and through `traind forward`'s library path and flag parsing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "gpu/backend.h"
#include "gpu/forward.h"
#include "gpu/model.h"
#include "store/safetensors.h"
#include "tests/tap.h"

#ifndef FIXTURES
#define FIXTURES "tests/fixtures"
#endif

/* Reads tensor name of file path as fp32 (malloc'd); shape into sh (rank <= 4). */
static float *read_tensor(const char *path, const char *name, int64_t sh[4], int *rank) {
    char err[512];
    st_file_t *f = st_open(path, err, sizeof err);
    if (!f) { diag("%s", err); return NULL; }
    const st_tensor_t *t = st_find(f, name);
    float *d = NULL;
    if (t) {
        d = malloc((size_t)t->numel * sizeof *d);
        if (d && st_read_f32(f, t, d, err, sizeof err) < 0) { diag("%s", err); free(d); d = NULL; }
        for (int i = 0; i < t->rank && i < 4; i++) sh[i] = t->shape[i];
        *rank = t->rank;
    } else {
        diag("%s: no tensor %s", path, name);
    }
    st_close(f);
    return d;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) + 1e-30);
}

/* Runs one fixture through the model API in the given compute dtype; the batch
 * is gathered in reverse order through idx to exercise the fused gather. */
static void check_fixture(backend_t *be, const char *name, dtype_t cdt, double tol) {
    char dir[512], io[600];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES, name);
    snprintf(io, sizeof io, "%s/io.safetensors", dir);
    int64_t psh[4] = {0}, hsh[4] = {0}, osh[4] = {0};
    int r1 = 0, r2 = 0, r3 = 0;
    float *px = read_tensor(io, "pixel_values", psh, &r1);
    float *ref_h = read_tensor(io, "last_hidden_state", hsh, &r2);
    float *ref_p = read_tensor(io, "pooler_output", osh, &r3);
    if (!ok(px && ref_h && ref_p && r1 == 4, "%s: fixture readable", name)) goto done;
    const int B = (int)psh[0], H = (int)psh[2], W = (int)psh[3];
    if (!ok(B >= 1 && B <= 64, "%s: batch %d", name, B)) goto done;

    char err[1024] = "";
    model_config_t cfg;
    if (!ok(model_config_from_hf_dir(dir, &cfg, err, sizeof err) == 0, "%s: config.json parsed", name)) {
        diag("%s", err);
        goto done;
    }
    cfg.head_hand = 0;
    model_opts_t mo = {.image_h = H, .image_w = W, .max_batch = B, .cdt = cdt, .want_hidden = 1};
    model_t *m = model_create(be, &cfg, &mo, err, sizeof err);
    if (!ok(m != NULL, "%s: model created", name)) { diag("%s", err); goto done; }
    ok(m->T == (int)hsh[1], "%s: %d tokens (HF %lld)", name, m->T, (long long)hsh[1]);
    if (!ok(model_load_hf_dir(m, dir, err, sizeof err) == 0, "%s: weights loaded", name)) {
        diag("%s", err);
        model_free(m);
        goto done;
    }
    /* images in the stage's input dtype: bf16 for the bf16 plan (as the resident dataset) */
    const size_t img = (size_t)3 * H * W;
    void *dimg = be->alloc(be, (size_t)B * img * 4);
    float *dpx = be->alloc(be, (size_t)B * img * 4);
    int32_t *didx = be->alloc(be, (size_t)B * sizeof(int32_t));
    int32_t hidx[64];
    for (int i = 0; i < B; i++) hidx[i] = B - 1 - i;
    be->upload(be, dpx, px, (size_t)B * img * 4);
    be->cast(be, dimg, cdt, dpx, DT_F32, (size_t)B * img);
    be->upload(be, didx, hidx, (size_t)B * sizeof(int32_t));
    int rc = model_forward(m, dimg, cdt, didx, B, 1, err, sizeof err);
    ok(rc == 0, "%s: forward ran", name);
    const size_t T = (size_t)m->T, D = (size_t)cfg.hidden;
    float *h = malloc((size_t)B * T * D * sizeof *h), *pl = malloc((size_t)B * D * sizeof *pl);
    be->download(be, h, m->hidden, (size_t)B * T * D * 4);
    be->download(be, pl, m->pooler, (size_t)B * D * 4);
    /* output row i is fixture image B-1-i */
    float *hr = calloc((size_t)B * T * D, sizeof *hr), *pr = calloc((size_t)B * D, sizeof *pr);
    for (int i = 0; i < B; i++) {
        memcpy(hr + (size_t)i * T * D, ref_h + (size_t)hidx[i] * T * D, T * D * sizeof *hr);
        memcpy(pr + (size_t)i * D, ref_p + (size_t)hidx[i] * D, D * sizeof *pr);
    }
    double eh = rel_err(h, hr, (size_t)B * T * D), ep = rel_err(pl, pr, (size_t)B * D);
    ok(eh <= tol, "%s %s: last_hidden_state relative error %.3g <= %.0e", name, dtype_name(cdt), eh, tol);
    ok(ep <= tol, "%s %s: pooler_output relative error %.3g <= %.0e", name, dtype_name(cdt), ep, tol);
    /* the pooler is the final LN of the CLS token: identical to last_hidden_state[:,0] */
    int same = 1;
    for (int i = 0; i < B; i++)
        for (size_t d = 0; d < D; d++)
            if (pl[(size_t)i * D + d] != h[(size_t)i * T * D + d]) same = 0;
    ok(same, "%s %s: pooler_output == last_hidden_state[:,0]", name, dtype_name(cdt));
    free(h); free(pl); free(hr); free(pr);
    be->free(be, dimg);
    be->free(be, dpx);
    be->free(be, didx);
    model_free(m);
done:
    free(px);
    free(ref_h);
    free(ref_p);
}

/* `traind forward` library path and its flag parsing. */
static void check_forward_cmd(const char *name, const char *prec, double tol) {
    char dir[512], io[600], out[600];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES, name);
    snprintf(io, sizeof io, "%s/io.safetensors", dir);
    snprintf(out, sizeof out, "/tmp/traind_test_forward_%d_%s_%s.safetensors", (int)getpid(), name, prec);
    char *argv[] = {"forward", "--weights", dir, "--input", io, "--out", out, "--precision", (char *)prec,
                    "--backend", "cpu", "--batch", "1", NULL};
    int rc = forward_main(13, argv);
    if (!ok(rc == 0, "traind forward %s %s: exit 0", name, prec)) return;
    int64_t s1[4], s2[4];
    int r1, r2;
    float *h = read_tensor(out, "last_hidden_state", s1, &r1), *ref = read_tensor(io, "last_hidden_state", s2, &r2);
    if (ok(h && ref && r1 == 3 && s1[0] == s2[0] && s1[1] == s2[1] && s1[2] == s2[2],
           "traind forward %s: last_hidden_state F32 [%lld,%lld,%lld]", name, (long long)s2[0], (long long)s2[1],
           (long long)s2[2])) {
        double e = rel_err(h, ref, (size_t)(s2[0] * s2[1] * s2[2]));
        ok(e <= tol, "traind forward %s %s: relative error %.3g <= %.0e", name, prec, e, tol);
    }
    free(h);
    free(ref);
    float *p = read_tensor(out, "pooler_output", s1, &r1), *pref = read_tensor(io, "pooler_output", s2, &r2);
    if (ok(p && pref && r1 == 2 && s1[0] == s2[0] && s1[1] == s2[1], "traind forward %s: pooler_output", name)) {
        double e = rel_err(p, pref, (size_t)(s2[0] * s2[1]));
        ok(e <= tol, "traind forward %s %s: pooler relative error %.3g <= %.0e", name, prec, e, tol);
    }
    free(p);
    free(pref);
    unlink(out);
}

static void check_forward_errors(void) {
    char dir[512], io[600];
    snprintf(dir, sizeof dir, "%s/hf_tiny", FIXTURES);
    snprintf(io, sizeof io, "%s/io.safetensors", dir);
    char err[1024];
    forward_opts_t o = {.weights = dir, .input = io, .out = "/tmp/traind_test_fwd_never.safetensors",
                        .precision = "fp16", .backend = "cpu"};
    ok(forward_run(&o, err, sizeof err) < 0 && strstr(err, "precision"), "forward: bad precision rejected (%s)", err);
    o.precision = "fp32";
    o.backend = "tpu";
    ok(forward_run(&o, err, sizeof err) < 0 && strstr(err, "backend"), "forward: bad backend rejected (%s)", err);
    o.backend = "cpu";
    o.weights = "/nonexistent/weights";
    ok(forward_run(&o, err, sizeof err) < 0 && strstr(err, "config.json"), "forward: missing weights dir (%s)", err);
    o.weights = dir;
    o.input = "/nonexistent/in.safetensors";
    ok(forward_run(&o, err, sizeof err) < 0 && strstr(err, "in.safetensors"), "forward: missing input (%s)", err);
    /* input without pixel_values: the model file itself */
    char mf[600];
    snprintf(mf, sizeof mf, "%s/model.safetensors", dir);
    o.input = mf;
    ok(forward_run(&o, err, sizeof err) < 0 && strstr(err, "pixel_values"), "forward: no pixel_values (%s)", err);
    ok(access("/tmp/traind_test_fwd_never.safetensors", F_OK) != 0, "forward: nothing written on failure");

    char *a1[] = {"forward", "--weights", dir, "--bogus", NULL};
    ok(forward_main(4, a1) == 2, "forward: unknown flag is a usage error");
    char *a2[] = {"forward", "--weights", dir, NULL};
    ok(forward_main(3, a2) == 2, "forward: missing --input/--out is a usage error");
    char *a3[] = {"forward", "--weights", NULL};
    ok(forward_main(2, a3) == 2, "forward: flag without value is a usage error");
    char *a4[] = {"forward", "--weights", dir, "--input", io, "--out", "/tmp/x.safetensors", "--device", "-1", NULL};
    ok(forward_main(9, a4) == 2, "forward: bad --device is a usage error");
}

int main(void) {
    char err[256];
    backend_t *be = backend_cpu_create(err, sizeof err);
    if (!ok(be != NULL, "cpu backend")) { diag("%s", err); return tap_done(); }
    const char *fx[] = {"hf_tiny", "hf_tiny_interp", "hf_tiny_reg", "hf_tiny_518"};
    for (int i = 0; i < 4; i++) {
        check_fixture(be, fx[i], DT_F32, 1e-5);
        check_fixture(be, fx[i], DT_BF16, 2e-2);
    }
    be->destroy(be);
    check_forward_cmd("hf_tiny_reg", "fp32", 1e-5);
    check_forward_cmd("hf_tiny_interp", "bf16", 2e-2);
    check_forward_errors();
    return tap_done();
}
