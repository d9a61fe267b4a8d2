/* tests/gpu/test_ops_gpu.c — every op of the CUDA backend against the CPU
 * reference backend (gpu/backend_cpu.c) on random inputs, at several shapes
 * (DINOv2-large-like: T=257, D=1024, NH=16, HS=64; small and odd sizes), in
 * fp32 and bf16. Outputs are poisoned (all-ones bytes: NaN in f32 and bf16)
 * before each GPU run, so an unwritten element fails; NaN never passes.
 * Error measure: ||gpu - cpu|| / ||cpu||; fp32 <= 1e-5, bf16 <= 2e-2.
 * Also: CUDA IPC (export here, open in an exec'd child process), allocation
 * failure, determinism of sumsq, the augmented gather and its label transform
 * (gpu/augment_math.h; bf16 within one rounding step), the three attention paths (default: bf16
 * forward through cuDNN's fused attention where cuDNN loads; TRAIND_ATTENTION=own:
 * traind's fused kernels only; TRAIND_ATTENTION=cublas).
 *
 * Needs a CUDA device; without one it prints a TAP skip. Helper mode:
 *   test_ops_gpu --ipc-child HANDLE BYTES SEED   (opens HANDLE, checks bytes) */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "gpu/augment.h"
#include "gpu/backend.h"
#include "tests/tap.h"

static backend_t *C, *G;   /* cpu reference, cuda under test */

/* ---- random data -------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float *randf(size_t n, float lo, float hi) {
    float *a = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)urand();
    return a;
}
/* host buffer of n elements of dt holding the values of f (rounded for bf16) */
static void *as_dt(const float *f, dtype_t dt, size_t n) {
    if (dt == DT_F32) {
        float *a = malloc(n * 4 + 4);
        memcpy(a, f, n * 4);
        return a;
    }
    bf16 *a = malloc(n * 2 + 4);
    for (size_t i = 0; i < n; i++) a[i] = f32_to_bf16(f[i]);
    return a;
}

/* ---- device helpers ------------------------------------------------------------- */

static void *gdup(const void *host, size_t bytes) {
    void *p = G->alloc(G, bytes);
    if (!p) { fprintf(stderr, "gpu alloc: %s\n", G->err); exit(2); }
    G->upload(G, p, host, bytes);
    return p;
}
static void *gpoison(size_t bytes) {
    void *h = malloc(bytes + 1);
    memset(h, 0xff, bytes);
    void *p = gdup(h, bytes);
    free(h);
    return p;
}
/* device buffer (dt) -> new host f32 array */
static float *fetch(const void *dev, dtype_t dt, size_t n) {
    size_t es = dtype_size(dt);
    void *raw = malloc(n * es + 4);
    G->download(G, raw, dev, n * es);
    float *f = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) f[i] = dt == DT_BF16 ? bf16_to_f32(((bf16 *)raw)[i]) : ((float *)raw)[i];
    free(raw);
    return f;
}
static float *host_f32(const void *h, dtype_t dt, size_t n) {
    float *f = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) f[i] = dt == DT_BF16 ? bf16_to_f32(((const bf16 *)h)[i]) : ((const float *)h)[i];
    return f;
}
static double tol_of(dtype_t dt) { return dt == DT_BF16 ? 2e-2 : 1e-5; }

/* ||got - want|| / ||want||; any NaN/Inf in got where want is finite fails. */
static int check(const char *what, const float *got, const float *want, size_t n, double tol) {
    double num = 0, den = 0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) && isfinite(want[i])) { if (!bad++) first_bad = i; continue; }
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int r = ok(bad == 0 && rel <= tol, "%s: rel err %.3g (tol %.0e), n=%zu", what, rel, tol, n);
    if (bad) diag("  %zu non-finite outputs, first at %zu", bad, first_bad);
    return r;
}
static int check_dev(const char *what, const void *dev, dtype_t gdt, const void *cpu_host, dtype_t cdt_,
                     size_t n, double tol) {
    float *g = fetch(dev, gdt, n), *c = host_f32(cpu_host, cdt_, n);
    int r = check(what, g, c, n, tol);
    free(g);
    free(c);
    return r;
}

/* ---- ops ---------------------------------------------------------------------------- */

/* off: the operands start `off` elements into their allocations (the model's
 * flat parameter buffer aligns tensors to 16 elements only). */
static void t_matmul_off(int M, int N, int K, dtype_t cdt, dtype_t odt, int with_bias, int off) {
    char nm[160];
    snprintf(nm, sizeof nm, "matmul M=%d N=%d K=%d %s->%s%s%s", M, N, K, dtype_name(cdt), dtype_name(odt),
             with_bias ? " +bias" : "", off ? " (offset operands)" : "");
    float *fi = randf((size_t)M * K, -1, 1), *fw = randf((size_t)N * K, -0.1f, 0.1f), *fb = randf(N, -1, 1);
    void *hi = as_dt(fi, cdt, (size_t)M * K), *hw = as_dt(fw, cdt, (size_t)N * K);
    size_t es = dtype_size(cdt), os = dtype_size(odt);
    /* forward */
    void *co = malloc((size_t)M * N * os + 4);
    C->matmul_fwd(C, co, odt, hi, hw, with_bias ? fb : NULL, cdt, M, N, K);
    char *gi0 = gpoison(((size_t)M * K + off) * es), *gw0 = gpoison(((size_t)N * K + off) * es);
    char *gb0 = gpoison((N + off) * 4), *go0 = gpoison(((size_t)M * N + off) * os);
    void *gi = gi0 + off * es, *gw = gw0 + off * es, *gb = gb0 + off * 4, *go = go0 + off * os;
    G->upload(G, gi, hi, (size_t)M * K * es);
    G->upload(G, gw, hw, (size_t)N * K * es);
    G->upload(G, gb, fb, N * 4);
    G->matmul_fwd(G, go, odt, gi, gw, with_bias ? gb : NULL, cdt, M, N, K);
    char w[200];
    snprintf(w, sizeof w, "%s fwd", nm);
    check_dev(w, go, odt, co, odt, (size_t)M * N, tol_of(cdt == DT_BF16 || odt == DT_BF16 ? DT_BF16 : DT_F32));
    /* backward: dinp (=), dw and dbias (+= onto random values) */
    float *dout = randf((size_t)M * N, -1, 1);
    float *dw0 = randf((size_t)N * K, -1, 1), *db0 = randf(N, -1, 1);
    float *cdi = malloc((size_t)M * K * 4), *cdw = malloc((size_t)N * K * 4), *cdb = malloc(N * 4);
    memcpy(cdw, dw0, (size_t)N * K * 4);
    memcpy(cdb, db0, N * 4);
    C->matmul_bwd(C, cdi, cdw, cdb, dout, DT_F32, hi, hw, cdt, M, N, K);
    void *gdo = gdup(dout, (size_t)M * N * 4), *gdi = gpoison((size_t)M * K * 4);
    void *gdw = gdup(dw0, (size_t)N * K * 4), *gdb = gdup(db0, N * 4);
    G->matmul_bwd(G, gdi, gdw, gdb, gdo, DT_F32, gi, gw, cdt, M, N, K);
    snprintf(w, sizeof w, "%s bwd dinp", nm);
    check_dev(w, gdi, DT_F32, cdi, DT_F32, (size_t)M * K, tol_of(cdt));
    snprintf(w, sizeof w, "%s bwd dw+=", nm);
    check_dev(w, gdw, DT_F32, cdw, DT_F32, (size_t)N * K, tol_of(cdt));
    snprintf(w, sizeof w, "%s bwd dbias+=", nm);
    check_dev(w, gdb, DT_F32, cdb, DT_F32, N, 1e-5);
    /* dinp only (dw, dbias NULL) must work too */
    G->matmul_bwd(G, gdi, NULL, NULL, gdo, DT_F32, gi, gw, cdt, M, N, K);
    snprintf(w, sizeof w, "%s bwd dinp only", nm);
    check_dev(w, gdi, DT_F32, cdi, DT_F32, (size_t)M * K, tol_of(cdt));
    if (cdt == DT_BF16) {
        /* dout already bf16 (made so by the op before): the same products as an f32
         * dout, which this backend rounds to bf16 itself — bitwise */
        void *hdo = as_dt(dout, DT_BF16, (size_t)M * N);
        void *gdo16 = gdup(hdo, (size_t)M * N * 2), *gdi2 = gpoison((size_t)M * K * 4);
        void *gdw2 = gdup(dw0, (size_t)N * K * 4), *gdw1 = gdup(dw0, (size_t)N * K * 4);
        G->matmul_bwd(G, gdi, gdw1, NULL, gdo, DT_F32, gi, gw, cdt, M, N, K);
        G->matmul_bwd(G, gdi2, gdw2, NULL, gdo16, DT_BF16, gi, gw, cdt, M, N, K);
        float *a1 = malloc((size_t)M * K * 4), *a2 = malloc((size_t)M * K * 4);
        float *w1 = malloc((size_t)N * K * 4), *w2 = malloc((size_t)N * K * 4);
        G->download(G, a1, gdi, (size_t)M * K * 4);
        G->download(G, a2, gdi2, (size_t)M * K * 4);
        G->download(G, w1, gdw1, (size_t)N * K * 4);
        G->download(G, w2, gdw2, (size_t)N * K * 4);
        ok(!memcmp(a1, a2, (size_t)M * K * 4) && !memcmp(w1, w2, (size_t)N * K * 4),
           "%s bwd with a bf16 dout = with its f32 dout, bitwise", nm);
        G->free(G, gdo16); G->free(G, gdi2); G->free(G, gdw2); G->free(G, gdw1);
        free(hdo); free(a1); free(a2); free(w1); free(w2);
    }
    G->free(G, gi0); G->free(G, gw0); G->free(G, gb0); G->free(G, go0); G->free(G, gdo);
    G->free(G, gdi); G->free(G, gdw); G->free(G, gdb);
    free(fi); free(fw); free(fb); free(hi); free(hw); free(co); free(dout); free(dw0); free(db0);
    free(cdi); free(cdw); free(cdb);
}

static void t_matmul(int M, int N, int K, dtype_t cdt, dtype_t odt, int with_bias) {
    t_matmul_off(M, N, K, cdt, odt, with_bias, 0);
}

/* The MLP's first product with its bias and GELU (matmul_gelu_fwd) against the
 * CPU reference (the product rounded to odt, then the GELU), twice, and exactly
 * as the GPU's own matmul_fwd + gelu_fwd. off: operands `off` elements into their
 * buffers (16: the model's alignment; 1: one element off). */
static void t_matmul_gelu(int M, int N, int K, dtype_t cdt, int off) {
    float *fi = randf((size_t)M * K, -1, 1), *fw = randf((size_t)N * K, -0.1f, 0.1f), *fb = randf(N, -1, 1);
    void *hi = as_dt(fi, cdt, (size_t)M * K), *hw = as_dt(fw, cdt, (size_t)N * K);
    size_t es = dtype_size(cdt), MN = (size_t)M * N;
    void *co = malloc(MN * es + 4), *ct = malloc(MN * es + 4);
    C->matmul_gelu_fwd(C, co, cdt, ct, hi, hw, fb, cdt, M, N, K);
    /* the reference is what it says: the product, then the GELU */
    void *r1 = malloc(MN * es + 4), *r2 = malloc(MN * es + 4);
    C->matmul_fwd(C, r1, cdt, hi, hw, fb, cdt, M, N, K);
    C->gelu_fwd(C, r2, cdt, r1, cdt, MN);
    ok(!memcmp(co, r2, MN * es), "matmul_gelu M=%d N=%d K=%d %s: the CPU op = matmul_fwd then gelu_fwd, bitwise",
       M, N, K, dtype_name(cdt));
    char *gi0 = gpoison(((size_t)M * K + off) * es), *gw0 = gpoison(((size_t)N * K + off) * es);
    char *gb0 = gpoison((N + off) * 4), *go0 = gpoison((MN + off) * es), *gt = gpoison(MN * es);
    void *gi = gi0 + off * es, *gw = gw0 + off * es, *gb = gb0 + off * 4, *go = go0 + off * es;
    G->upload(G, gi, hi, (size_t)M * K * es);
    G->upload(G, gw, hw, (size_t)N * K * es);
    G->upload(G, gb, fb, N * 4);
    for (int rep = 0; rep < 2; rep++) {
        G->matmul_gelu_fwd(G, go, cdt, gt, gi, gw, gb, cdt, M, N, K);
        char w[200];
        snprintf(w, sizeof w, "matmul_gelu M=%d N=%d K=%d %s%s, call %d", M, N, K, dtype_name(cdt),
                 off ? " (offset operands)" : "", rep + 1);
        check_dev(w, go, cdt, co, cdt, MN, cdt == DT_BF16 ? 1e-2 : 1e-5);
    }
    void *gp = gpoison(MN * es), *gq = gpoison(MN * es);
    G->matmul_fwd(G, gp, cdt, gi, gw, gb, cdt, M, N, K);
    G->gelu_fwd(G, gq, cdt, gp, cdt, MN);
    uint8_t *a = malloc(MN * es), *bb = malloc(MN * es);
    G->download(G, a, go, MN * es);
    G->download(G, bb, gq, MN * es);
    ok(!memcmp(a, bb, MN * es), "matmul_gelu M=%d N=%d K=%d %s = matmul_fwd + gelu_fwd, bitwise", M, N, K,
       dtype_name(cdt));
    free(a); free(bb);
    G->free(G, gp); G->free(G, gq);
    G->free(G, gi0); G->free(G, gw0); G->free(G, gb0); G->free(G, go0); G->free(G, gt);
    free(fi); free(fw); free(fb); free(hi); free(hw); free(co); free(ct); free(r1); free(r2);
}

/* The backward through fc2's input product and GELU' (matmul_dgelu): g and the
 * bias gradient (+= onto random values) against the CPU reference, twice, and
 * exactly as the GPU's own matmul_bwd + gelu_bwd. */
static void t_matmul_dgelu(int M, int N, int K, dtype_t cdt, int off) {
    size_t es = dtype_size(cdt), MK = (size_t)M * K;
    float *fd = randf((size_t)M * N, -1, 1), *fw = randf((size_t)N * K, -0.1f, 0.1f), *fx = randf(MK, -3, 3);
    float *db0 = randf(K, -1, 1);
    void *hd = as_dt(fd, cdt, (size_t)M * N), *hw = as_dt(fw, cdt, (size_t)N * K), *hx = as_dt(fx, cdt, MK);
    void *cg = malloc(MK * es + 4);
    float *ct = malloc(MK * 4 + 4), *cdb = malloc(K * 4 + 4);
    memcpy(cdb, db0, K * 4);
    C->matmul_dgelu(C, cg, cdt, cdb, ct, hd, hw, hx, cdt, M, N, K);
    char *gd0 = gpoison(((size_t)M * N + off) * es), *gw0 = gpoison(((size_t)N * K + off) * es);
    char *gx0 = gpoison((MK + off) * es), *gg0 = gpoison((MK + off) * es);
    void *gd = gd0 + off * es, *gw = gw0 + off * es, *gx = gx0 + off * es, *gg = gg0 + off * es;
    void *gt = gpoison(MK * 4);
    G->upload(G, gd, hd, (size_t)M * N * es);
    G->upload(G, gw, hw, (size_t)N * K * es);
    G->upload(G, gx, hx, MK * es);
    for (int rep = 0; rep < 2; rep++) {
        void *gdb = gdup(db0, K * 4);
        G->matmul_dgelu(G, gg, cdt, gdb, gt, gd, gw, gx, cdt, M, N, K);
        char w[200];
        snprintf(w, sizeof w, "matmul_dgelu M=%d N=%d K=%d %s%s, call %d", M, N, K, dtype_name(cdt),
                 off ? " (offset operands)" : "", rep + 1);
        check_dev(w, gg, cdt, cg, cdt, MK, cdt == DT_BF16 ? 1e-2 : 1e-5);
        snprintf(w, sizeof w, "matmul_dgelu M=%d N=%d K=%d %s, call %d: dbias+=", M, N, K, dtype_name(cdt), rep + 1);
        check_dev(w, gdb, DT_F32, cdb, DT_F32, K, cdt == DT_BF16 ? 1e-2 : 1e-5);
        G->free(G, gdb);
    }
    /* fp32: the composition of the two ops, bit for bit (bf16 rounds the product to bf16
     * on the way, which matmul_bwd's f32 output does not: checked against the CPU above) */
    if (cdt == DT_F32) {
        void *gp = gpoison(MK * 4), *gq = gpoison(MK * es), *gdb1 = gdup(db0, K * 4), *gdb2 = gdup(db0, K * 4);
        G->matmul_dgelu(G, gg, cdt, gdb1, gt, gd, gw, gx, cdt, M, N, K);
        G->matmul_bwd(G, gp, NULL, NULL, gd, cdt, NULL, gw, cdt, M, N, K);
        G->gelu_bwd(G, gq, cdt, gdb2, gp, gx, cdt, M, K);
        uint8_t *a = malloc(MK * es), *bb = malloc(MK * es);
        float *d1 = malloc(K * 4), *d2 = malloc(K * 4);
        G->download(G, a, gg, MK * es);
        G->download(G, bb, gq, MK * es);
        G->download(G, d1, gdb1, K * 4);
        G->download(G, d2, gdb2, K * 4);
        ok(!memcmp(a, bb, MK * es) && !memcmp(d1, d2, K * 4),
           "matmul_dgelu M=%d N=%d K=%d %s = matmul_bwd + gelu_bwd, bitwise", M, N, K, dtype_name(cdt));
        free(a); free(bb); free(d1); free(d2);
        G->free(G, gp); G->free(G, gq); G->free(G, gdb1); G->free(G, gdb2);
    }
    G->free(G, gd0); G->free(G, gw0); G->free(G, gx0); G->free(G, gg0); G->free(G, gt);
    free(fd); free(fw); free(fx); free(db0); free(hd); free(hw); free(hx); free(cg); free(ct); free(cdb);
}

static void t_layernorm(int N, int Cc, dtype_t odt) {
    char w[160];
    size_t n = (size_t)N * Cc;
    float *x = randf(n, -2, 3), *wt = randf(Cc, 0.5f, 1.5f), *bs = randf(Cc, -0.5f, 0.5f);
    size_t os = dtype_size(odt);
    void *co = malloc(n * os);
    float *cm = malloc(N * 4), *cr = malloc(N * 4);
    C->layernorm_fwd(C, co, odt, cm, cr, x, wt, bs, N, Cc, 1e-6f);
    void *gx = gdup(x, n * 4), *gw = gdup(wt, Cc * 4), *gb = gdup(bs, Cc * 4);
    void *go = gpoison(n * os), *gm = gpoison(N * 4), *gr = gpoison(N * 4);
    G->layernorm_fwd(G, go, odt, gm, gr, gx, gw, gb, N, Cc, 1e-6f);
    snprintf(w, sizeof w, "layernorm fwd N=%d C=%d ->%s", N, Cc, dtype_name(odt));
    check_dev(w, go, odt, co, odt, n, tol_of(odt));
    snprintf(w, sizeof w, "layernorm fwd mean/rstd N=%d C=%d", N, Cc);
    float *gmh = fetch(gm, DT_F32, N), *grh = fetch(gr, DT_F32, N);
    int good = 1;
    for (int i = 0; i < N; i++)
        if (!(fabsf(gmh[i] - cm[i]) <= 1e-5f * (1 + fabsf(cm[i])) && fabsf(grh[i] - cr[i]) <= 1e-5f * fabsf(cr[i])))
            good = 0;
    ok(good, "%s", w);
    /* backward: dinp accumulates */
    float *dout = randf(n, -1, 1), *d0 = randf(n, -1, 1), *dw0 = randf(Cc, -1, 1), *db0 = randf(Cc, -1, 1);
    float *cdi = malloc(n * 4), *cdw = malloc(Cc * 4), *cdb = malloc(Cc * 4);
    memcpy(cdi, d0, n * 4); memcpy(cdw, dw0, Cc * 4); memcpy(cdb, db0, Cc * 4);
    C->layernorm_bwd(C, cdi, cdw, cdb, dout, x, NULL, DT_F32, NULL, wt, cm, cr, N, Cc);
    void *gdo = gdup(dout, n * 4), *gdi = gdup(d0, n * 4), *gdw = gdup(dw0, Cc * 4), *gdb = gdup(db0, Cc * 4);
    /* the GPU reads its own mean/rstd: equal to the CPU's within rounding */
    void *gcm = gdup(cm, N * 4), *gcr = gdup(cr, N * 4);
    G->layernorm_bwd(G, gdi, gdw, gdb, gdo, gx, NULL, DT_F32, NULL, gw, gcm, gcr, N, Cc);
    snprintf(w, sizeof w, "layernorm bwd dinp+= N=%d C=%d", N, Cc);
    check_dev(w, gdi, DT_F32, cdi, DT_F32, n, 1e-5);
    snprintf(w, sizeof w, "layernorm bwd dw+= N=%d C=%d", N, Cc);
    check_dev(w, gdw, DT_F32, cdw, DT_F32, Cc, 1e-5);
    snprintf(w, sizeof w, "layernorm bwd db+= N=%d C=%d", N, Cc);
    check_dev(w, gdb, DT_F32, cdb, DT_F32, Cc, 1e-5);
    /* the residual form (input x = res + gamma * xs, xs in bf16, given as its
     * terms): against the CPU's residual form, and bitwise against the GPU's
     * plain form on the sum its layerscale_fwd makes (the forward's x_mid) */
    float *res = randf(n, -2, 2), *xs = randf(n, -1, 1), *gam = randf(Cc, -0.5f, 0.5f);
    void *xsb = as_dt(xs, DT_BF16, n);
    /* the statistics are the sum's, as the forward saved them (the CPU's
     * backward refines a mean that is not its input's; the GPU's does not) */
    float *sum = malloc(n * 4), *sm = malloc(N * 4), *sr = malloc(N * 4);
    void *sln = malloc(n * 4);
    C->layerscale_fwd(C, sum, res, xsb, DT_BF16, gam, N, Cc);
    C->layernorm_fwd(C, sln, DT_F32, sm, sr, sum, wt, bs, N, Cc, 1e-6f);
    float *rdi = malloc(n * 4), *rdw = malloc(Cc * 4), *rdb = malloc(Cc * 4);
    memcpy(rdi, d0, n * 4); memcpy(rdw, dw0, Cc * 4); memcpy(rdb, db0, Cc * 4);
    C->layernorm_bwd(C, rdi, rdw, rdb, dout, res, xsb, DT_BF16, gam, wt, sm, sr, N, Cc);
    void *gres = gdup(res, n * 4), *gxs = gdup(xsb, n * 2), *ggam = gdup(gam, Cc * 4), *gsum = gpoison(n * 4);
    G->upload(G, gcm, sm, N * 4);
    G->upload(G, gcr, sr, N * 4);
    void *gri = gdup(d0, n * 4), *grw = gdup(dw0, Cc * 4), *grb = gdup(db0, Cc * 4);
    void *gpi = gdup(d0, n * 4), *gpw = gdup(dw0, Cc * 4), *gpb = gdup(db0, Cc * 4);
    G->layernorm_bwd(G, gri, grw, grb, gdo, gres, gxs, DT_BF16, ggam, gw, gcm, gcr, N, Cc);
    snprintf(w, sizeof w, "layernorm bwd residual form dinp+= N=%d C=%d", N, Cc);
    check_dev(w, gri, DT_F32, rdi, DT_F32, n, 1e-5);
    snprintf(w, sizeof w, "layernorm bwd residual form dw+=, db+= N=%d C=%d", N, Cc);
    check_dev(w, grw, DT_F32, rdw, DT_F32, Cc, 1e-5);
    check_dev(w, grb, DT_F32, rdb, DT_F32, Cc, 1e-5);
    G->layerscale_fwd(G, gsum, gres, gxs, DT_BF16, ggam, N, Cc);
    G->layernorm_bwd(G, gpi, gpw, gpb, gdo, gsum, NULL, DT_F32, NULL, gw, gcm, gcr, N, Cc);
    float *a1 = fetch(gri, DT_F32, n), *a2 = fetch(gpi, DT_F32, n);
    float *w1 = fetch(grw, DT_F32, Cc), *w2 = fetch(gpw, DT_F32, Cc);
    ok(memcmp(a1, a2, n * 4) == 0 && memcmp(w1, w2, Cc * 4) == 0,
       "layernorm bwd residual form N=%d C=%d == plain form on layerscale_fwd's sum, bitwise", N, Cc);
    G->free(G, gres); G->free(G, gxs); G->free(G, ggam); G->free(G, gsum);
    G->free(G, gri); G->free(G, grw); G->free(G, grb); G->free(G, gpi); G->free(G, gpw); G->free(G, gpb);
    free(sum); free(sm); free(sr); free(sln);
    free(res); free(xs); free(gam); free(xsb); free(rdi); free(rdw); free(rdb); free(a1); free(a2); free(w1); free(w2);
    G->free(G, gx); G->free(G, gw); G->free(G, gb); G->free(G, go); G->free(G, gm); G->free(G, gr);
    G->free(G, gdo); G->free(G, gdi); G->free(G, gdw); G->free(G, gdb); G->free(G, gcm); G->free(G, gcr);
    free(x); free(wt); free(bs); free(co); free(cm); free(cr); free(gmh); free(grh);
    free(dout); free(d0); free(dw0); free(db0); free(cdi); free(cdw); free(cdb);
}

static void t_attention(backend_t *g, const char *impl, int Bn, int T, int NH, int HS, dtype_t cdt) {
    backend_t *save = G;
    G = g;
    char w[200];
    size_t nq = (size_t)Bn * T * 3 * NH * HS, no = (size_t)Bn * T * NH * HS, nl = (size_t)Bn * NH * T;
    float *fq = randf(nq, -2, 2);
    void *hq = as_dt(fq, cdt, nq);
    size_t es = dtype_size(cdt);
    void *co = malloc(no * es);
    float *cl = malloc(nl * 4);
    C->attention_fwd(C, co, cl, hq, cdt, Bn, T, NH, HS);
    void *gq = gdup(hq, nq * es), *go = gpoison(no * es), *gl = gpoison(nl * 4);
    G->attention_fwd(G, go, gl, gq, cdt, Bn, T, NH, HS);
    snprintf(w, sizeof w, "attention[%s] fwd Bn=%d T=%d NH=%d HS=%d %s", impl, Bn, T, NH, HS, dtype_name(cdt));
    check_dev(w, go, cdt, co, cdt, no, tol_of(cdt));
    snprintf(w, sizeof w, "attention[%s] lse Bn=%d T=%d NH=%d HS=%d %s", impl, Bn, T, NH, HS, dtype_name(cdt));
    check_dev(w, gl, DT_F32, cl, DT_F32, nl, 1e-5);
    /* lse may be NULL (inference) */
    void *go2 = gpoison(no * es);
    G->attention_fwd(G, go2, NULL, gq, cdt, Bn, T, NH, HS);
    snprintf(w, sizeof w, "attention[%s] fwd without lse Bn=%d T=%d %s", impl, Bn, T, dtype_name(cdt));
    check_dev(w, go2, cdt, co, cdt, no, tol_of(cdt));
    /* backward: both read the CPU's out and lse, so only the backward differs */
    float *dout = randf(no, -1, 1), *cdq = malloc(nq * 4);
    C->attention_bwd(C, cdq, DT_F32, NULL, dout, hq, co, cl, cdt, Bn, T, NH, HS);
    void *gdo = gdup(dout, no * 4), *gco = gdup(co, no * es), *gcl = gdup(cl, nl * 4), *gdq = gpoison(nq * 4);
    G->attention_bwd(G, gdq, DT_F32, NULL, gdo, gq, gco, gcl, cdt, Bn, T, NH, HS);
    snprintf(w, sizeof w, "attention[%s] bwd Bn=%d T=%d NH=%d HS=%d %s", impl, Bn, T, NH, HS, dtype_name(cdt));
    double tb = cdt == DT_BF16 ? 2e-2 : 2e-5;
    check_dev(w, gdq, DT_F32, cdq, DT_F32, nq, tb);
    /* stored in bf16 with the q/k/v bias gradients (the training path at bf16):
     * the GPU's bf16 store is the rounding of its own f32 result, bit for bit, and
     * dbias += the column sums of that result (against a double sum of it, and
     * against the CPU's) */
    size_t ld3 = (size_t)3 * NH * HS, rows = (size_t)Bn * T;
    float *bias0 = randf(ld3, -1, 1), *cb = malloc(ld3 * 4);
    memcpy(cb, bias0, ld3 * 4);
    C->attention_bwd(C, cdq, DT_F32, cb, dout, hq, co, cl, cdt, Bn, T, NH, HS);
    void *gdq16 = gpoison(nq * 2), *gbias = gdup(bias0, ld3 * 4);
    G->attention_bwd(G, gdq16, DT_BF16, gbias, gdo, gq, gco, gcl, cdt, Bn, T, NH, HS);
    float *g32 = fetch(gdq, DT_F32, nq), *g16 = fetch(gdq16, DT_BF16, nq), *gbh = fetch(gbias, DT_F32, ld3);
    size_t bad = 0;
    for (size_t i = 0; i < nq; i++) bad += f32_to_bf16(g32[i]) != f32_to_bf16(g16[i]);
    ok(bad == 0, "attention[%s] bwd stored bf16 Bn=%d T=%d %s: the rounding of the f32 result (%zu of %zu differ)",
       impl, Bn, T, dtype_name(cdt), bad, nq);
    double worst = 0;
    for (size_t j = 0; j < ld3; j++) {
        double s = bias0[j];
        for (size_t r = 0; r < rows; r++) s += g32[r * ld3 + j];
        worst = fmax(worst, fabs(gbh[j] - s) / fmax(1.0, fabs(s)));
    }
    ok(worst <= 1e-5, "attention[%s] bwd dbias += column sums of dqkv Bn=%d T=%d %s (worst rel err %.1e)", impl, Bn,
       T, dtype_name(cdt), worst);
    snprintf(w, sizeof w, "attention[%s] bwd dbias Bn=%d T=%d %s against the CPU", impl, Bn, T, dtype_name(cdt));
    check_dev(w, gbias, DT_F32, cb, DT_F32, ld3, tb);
    G->free(G, gdq16); G->free(G, gbias);
    free(bias0); free(cb); free(g32); free(g16); free(gbh);
    G->free(G, gq); G->free(G, go); G->free(G, gl); G->free(G, go2); G->free(G, gdo); G->free(G, gco);
    G->free(G, gcl); G->free(G, gdq);
    free(fq); free(hq); free(co); free(cl); free(dout); free(cdq);
    G = save;
}

static void t_gelu(size_t n, dtype_t idt, dtype_t odt) {
    char w[120];
    float *f = randf(n, -5, 5);
    void *hi = as_dt(f, idt, n);
    void *co = malloc(n * dtype_size(odt));
    C->gelu_fwd(C, co, odt, hi, idt, n);
    void *gi = gdup(hi, n * dtype_size(idt)), *go = gpoison(n * dtype_size(odt));
    G->gelu_fwd(G, go, odt, gi, idt, n);
    snprintf(w, sizeof w, "gelu fwd n=%zu %s->%s", n, dtype_name(idt), dtype_name(odt));
    check_dev(w, go, odt, co, odt, n, odt == DT_BF16 ? 2e-2 : 1e-5);
    float *dout = randf(n, -1, 1), *cd = malloc(n * 4);
    C->gelu_bwd(C, cd, DT_F32, NULL, dout, hi, idt, 1, (int)n);
    void *gd = gdup(dout, n * 4), *gdi = gpoison(n * 4);
    G->gelu_bwd(G, gdi, DT_F32, NULL, gd, gi, idt, 1, (int)n);
    snprintf(w, sizeof w, "gelu bwd n=%zu %s", n, dtype_name(idt));
    check_dev(w, gdi, DT_F32, cd, DT_F32, n, 1e-5);
    G->free(G, gi); G->free(G, go); G->free(G, gd); G->free(G, gdi);
    free(f); free(hi); free(co); free(dout); free(cd);
}

static void t_layerscale(int N, int Cc, dtype_t xdt) {
    char w[120];
    size_t n = (size_t)N * Cc;
    float *res = randf(n, -1, 1), *fx = randf(n, -1, 1), *gam = randf(Cc, -0.5f, 0.5f);
    void *hx = as_dt(fx, xdt, n);
    float *co = malloc(n * 4);
    C->layerscale_fwd(C, co, res, hx, xdt, gam, N, Cc);
    void *gr = gdup(res, n * 4), *gx = gdup(hx, n * dtype_size(xdt)), *gg = gdup(gam, Cc * 4);
    void *go = gpoison(n * 4);
    G->layerscale_fwd(G, go, gr, gx, xdt, gg, N, Cc);
    snprintf(w, sizeof w, "layerscale fwd N=%d C=%d x %s", N, Cc, dtype_name(xdt));
    check_dev(w, go, DT_F32, co, DT_F32, n, 1e-5);
    G->layerscale_fwd(G, gr, gr, gx, xdt, gg, N, Cc);   /* out aliases res */
    snprintf(w, sizeof w, "layerscale fwd in place N=%d C=%d", N, Cc);
    check_dev(w, gr, DT_F32, co, DT_F32, n, 1e-5);
    float *dout = randf(n, -1, 1), *dg0 = randf(Cc, -1, 1), *cdx = malloc(n * 4), *cdg = malloc(Cc * 4);
    memcpy(cdg, dg0, Cc * 4);
    C->layerscale_bwd(C, cdx, DT_F32, cdg, NULL, dout, hx, xdt, gam, N, Cc);
    void *gd = gdup(dout, n * 4), *gdx = gpoison(n * 4), *gdg = gdup(dg0, Cc * 4);
    G->layerscale_bwd(G, gdx, DT_F32, gdg, NULL, gd, gx, xdt, gg, N, Cc);
    snprintf(w, sizeof w, "layerscale bwd dx N=%d C=%d", N, Cc);
    check_dev(w, gdx, DT_F32, cdx, DT_F32, n, 1e-5);
    snprintf(w, sizeof w, "layerscale bwd dgamma+= N=%d C=%d", N, Cc);
    check_dev(w, gdg, DT_F32, cdg, DT_F32, Cc, 1e-5);
    G->free(G, gr); G->free(G, gx); G->free(G, gg); G->free(G, go); G->free(G, gd); G->free(G, gdx); G->free(G, gdg);
    free(res); free(fx); free(gam); free(hx); free(co); free(dout); free(dg0); free(cdx); free(cdg);
}

/* The backward epilogues as the model calls them: GELU' and LayerScale over
 * [M,N], the gradient stored in ddt (bf16: the products' operand), the bias
 * gradient (and LayerScale's dgamma) summed in the same pass, onto random
 * values; M past one chunk of rows, N odd (scalar path) or a multiple of 8. */
static void t_bwd_epilogue(int M, int N, dtype_t xdt, dtype_t ddt) {
    char w[140];
    size_t n = (size_t)M * N;
    float *fx = randf(n, -4, 4), *dout = randf(n, -1, 1), *gam = randf(N, -0.5f, 0.5f);
    float *db0 = randf(N, -1, 1), *dg0 = randf(N, -1, 1);
    void *hx = as_dt(fx, xdt, n);
    void *cg = malloc(n * dtype_size(ddt));
    float *cdb = malloc(N * 4), *cdg = malloc(N * 4);
    void *gx = gdup(hx, n * dtype_size(xdt)), *gd = gdup(dout, n * 4), *gg = gdup(gam, N * 4);
    void *gg_out = gpoison(n * dtype_size(ddt)), *gdb = gdup(db0, N * 4), *gdg = gdup(dg0, N * 4);
    const double tg = ddt == DT_BF16 ? 8e-3 : 1e-5, tsum = 1e-4;
    for (int op = 0; op < 2; op++) {
        memcpy(cdb, db0, N * 4);
        memcpy(cdg, dg0, N * 4);
        G->upload(G, gdb, db0, N * 4);
        G->upload(G, gdg, dg0, N * 4);
        const char *on = op == 0 ? "gelu bwd" : "layerscale bwd";
        if (op == 0) {
            C->gelu_bwd(C, cg, ddt, cdb, dout, hx, xdt, M, N);
            G->gelu_bwd(G, gg_out, ddt, gdb, gd, gx, xdt, M, N);
        } else {
            C->layerscale_bwd(C, cg, ddt, cdg, cdb, dout, hx, xdt, gam, M, N);
            G->layerscale_bwd(G, gg_out, ddt, gdg, gdb, gd, gx, xdt, gg, M, N);
        }
        snprintf(w, sizeof w, "%s [%d,%d] x %s -> %s", on, M, N, dtype_name(xdt), dtype_name(ddt));
        check_dev(w, gg_out, ddt, cg, ddt, n, tg);
        snprintf(w, sizeof w, "%s [%d,%d] dbias+= (column sums)", on, M, N);
        check_dev(w, gdb, DT_F32, cdb, DT_F32, N, tsum);
        if (op == 1) {
            snprintf(w, sizeof w, "%s [%d,%d] dgamma+=", on, M, N);
            check_dev(w, gdg, DT_F32, cdg, DT_F32, N, tsum);
        }
    }
    G->free(G, gx); G->free(G, gd); G->free(G, gg); G->free(G, gg_out); G->free(G, gdb); G->free(G, gdg);
    free(fx); free(dout); free(gam); free(db0); free(dg0); free(hx); free(cg); free(cdb); free(cdg);
}

/* Fused residual + LayerScale + LayerNorm forward against the CPU's. */
static void t_ls_ln(int N, int Cc, dtype_t xdt, dtype_t odt) {
    char w[140];
    size_t n = (size_t)N * Cc;
    float *res = randf(n, -2, 2), *fx = randf(n, -1, 1), *gam = randf(Cc, -0.5f, 0.5f);
    float *lw = randf(Cc, 0.5f, 1.5f), *lb = randf(Cc, -1, 1);
    void *hx = as_dt(fx, xdt, n);
    float *co = malloc(n * 4), *cm = malloc(N * 4), *cr = malloc(N * 4);
    void *cl = malloc(n * dtype_size(odt));
    C->layerscale_layernorm_fwd(C, co, res, hx, xdt, gam, cl, odt, cm, cr, lw, lb, N, Cc, 1e-6f);
    void *gr = gdup(res, n * 4), *gx = gdup(hx, n * dtype_size(xdt)), *gg = gdup(gam, Cc * 4);
    void *gw = gdup(lw, Cc * 4), *gb = gdup(lb, Cc * 4);
    void *go = gpoison(n * 4), *gl = gpoison(n * dtype_size(odt)), *gm = gpoison(N * 4), *gs = gpoison(N * 4);
    G->layerscale_layernorm_fwd(G, go, gr, gx, xdt, gg, gl, odt, gm, gs, gw, gb, N, Cc, 1e-6f);
    snprintf(w, sizeof w, "layerscale+layernorm fwd out N=%d C=%d x %s", N, Cc, dtype_name(xdt));
    check_dev(w, go, DT_F32, co, DT_F32, n, 1e-5);
    snprintf(w, sizeof w, "layerscale+layernorm fwd ln N=%d C=%d x %s -> %s", N, Cc, dtype_name(xdt), dtype_name(odt));
    check_dev(w, gl, odt, cl, odt, n, tol_of(odt));
    snprintf(w, sizeof w, "layerscale+layernorm fwd mean/rstd N=%d C=%d", N, Cc);
    check_dev(w, gm, DT_F32, cm, DT_F32, N, 1e-5);
    check_dev(w, gs, DT_F32, cr, DT_F32, N, 1e-5);
    void *gl2 = gpoison(n * dtype_size(odt));
    G->layerscale_layernorm_fwd(G, gr, gr, gx, xdt, gg, gl2, odt, NULL, NULL, gw, gb, N, Cc, 1e-6f);  /* in place */
    snprintf(w, sizeof w, "layerscale+layernorm fwd in place N=%d C=%d", N, Cc);
    check_dev(w, gr, DT_F32, co, DT_F32, n, 1e-5);
    check_dev(w, gl2, odt, cl, odt, n, tol_of(odt));
    G->free(G, gr); G->free(G, gx); G->free(G, gg); G->free(G, gw); G->free(G, gb); G->free(G, go);
    G->free(G, gl); G->free(G, gm); G->free(G, gs); G->free(G, gl2);
    free(res); free(fx); free(gam); free(lw); free(lb); free(hx); free(co); free(cm); free(cr); free(cl);
}

static void t_embed(int Bn, int P, int R, int D) {
    char w[120];
    int T = 1 + R + P;
    size_t nx = (size_t)Bn * T * D, np = (size_t)Bn * P * D;
    float *pt = randf(np, -1, 1), *cls = randf(D, -1, 1), *reg = randf((size_t)(R ? R : 1) * D, -1, 1);
    float *pos = randf((size_t)(1 + P) * D, -1, 1), *cx = malloc(nx * 4);
    C->embed_fwd(C, cx, pt, cls, R ? reg : NULL, pos, Bn, P, R, D);
    void *gp = gdup(pt, np * 4), *gc = gdup(cls, D * 4), *gr = gdup(reg, (size_t)(R ? R : 1) * D * 4);
    void *gpos = gdup(pos, (size_t)(1 + P) * D * 4), *gx = gpoison(nx * 4);
    G->embed_fwd(G, gx, gp, gc, R ? gr : NULL, gpos, Bn, P, R, D);
    snprintf(w, sizeof w, "embed fwd Bn=%d P=%d R=%d D=%d", Bn, P, R, D);
    check_dev(w, gx, DT_F32, cx, DT_F32, nx, 1e-6);
    float *dx = randf(nx, -1, 1), *dpt = malloc(np * 4);
    float *dc0 = randf(D, -1, 1), *dr0 = randf((size_t)(R ? R : 1) * D, -1, 1), *dp0 = randf((size_t)(1 + P) * D, -1, 1);
    float *cdc = malloc(D * 4), *cdr = malloc((size_t)(R ? R : 1) * D * 4), *cdp = malloc((size_t)(1 + P) * D * 4);
    memcpy(cdc, dc0, D * 4); memcpy(cdr, dr0, (size_t)(R ? R : 1) * D * 4); memcpy(cdp, dp0, (size_t)(1 + P) * D * 4);
    C->embed_bwd(C, dpt, cdc, R ? cdr : NULL, cdp, dx, Bn, P, R, D);
    void *gdx = gdup(dx, nx * 4), *gdpt = gpoison(np * 4), *gdc = gdup(dc0, D * 4);
    void *gdr = gdup(dr0, (size_t)(R ? R : 1) * D * 4), *gdp = gdup(dp0, (size_t)(1 + P) * D * 4);
    G->embed_bwd(G, gdpt, gdc, R ? gdr : NULL, gdp, gdx, Bn, P, R, D);
    snprintf(w, sizeof w, "embed bwd dpatches Bn=%d P=%d R=%d", Bn, P, R);
    check_dev(w, gdpt, DT_F32, dpt, DT_F32, np, 1e-6);
    snprintf(w, sizeof w, "embed bwd dcls+= Bn=%d", Bn);
    check_dev(w, gdc, DT_F32, cdc, DT_F32, D, 1e-5);
    if (R) {
        snprintf(w, sizeof w, "embed bwd dreg+= R=%d", R);
        check_dev(w, gdr, DT_F32, cdr, DT_F32, (size_t)R * D, 1e-5);
    }
    snprintf(w, sizeof w, "embed bwd dpos+= P=%d", P);
    check_dev(w, gdp, DT_F32, cdp, DT_F32, (size_t)(1 + P) * D, 1e-5);
    G->free(G, gp); G->free(G, gc); G->free(G, gr); G->free(G, gpos); G->free(G, gx);
    G->free(G, gdx); G->free(G, gdpt); G->free(G, gdc); G->free(G, gdr); G->free(G, gdp);
    free(pt); free(cls); free(reg); free(pos); free(cx); free(dx); free(dpt); free(dc0); free(dr0); free(dp0);
    free(cdc); free(cdr); free(cdp);
}

static void t_tokens(int Bn, int T, int D, int t, dtype_t dt) {
    char w[120];
    size_t nx = (size_t)Bn * T * D, no = (size_t)Bn * D;
    float *fx = randf(nx, -1, 1);
    void *hx = as_dt(fx, dt, nx), *co = malloc(no * dtype_size(dt));
    C->token_slice(C, co, hx, dt, Bn, T, D, t);
    void *gx = gdup(hx, nx * dtype_size(dt)), *go = gpoison(no * dtype_size(dt));
    G->token_slice(G, go, gx, dt, Bn, T, D, t);
    snprintf(w, sizeof w, "token_slice Bn=%d T=%d D=%d t=%d %s", Bn, T, D, t, dtype_name(dt));
    check_dev(w, go, dt, co, dt, no, 0);
    float *dx = randf(nx, -1, 1), *dout = randf(no, -1, 1);
    float *cdx = malloc(nx * 4);
    memcpy(cdx, dx, nx * 4);
    C->token_scatter_add(C, cdx, dout, Bn, T, D, t);
    void *gdx = gdup(dx, nx * 4), *gdo = gdup(dout, no * 4);
    G->token_scatter_add(G, gdx, gdo, Bn, T, D, t);
    snprintf(w, sizeof w, "token_scatter_add Bn=%d T=%d D=%d t=%d", Bn, T, D, t);
    check_dev(w, gdx, DT_F32, cdx, DT_F32, nx, 0);
    G->free(G, gx); G->free(G, go); G->free(G, gdx); G->free(G, gdo);
    free(fx); free(hx); free(co); free(dx); free(dout); free(cdx);
}

static void t_im2col(int N, int Bn, int H, int W, int p, dtype_t idt, dtype_t cdt, int use_idx) {
    char w[160];
    size_t ni = (size_t)N * 3 * H * W;
    float *f = randf(ni, -2, 2);
    void *hi = as_dt(f, idt, ni);
    int32_t *idx = malloc(Bn * 4);
    for (int i = 0; i < Bn; i++) idx[i] = (int32_t)(urand() * N) % N;
    size_t no = (size_t)Bn * (H / p) * (W / p) * 3 * p * p;
    void *co = malloc(no * dtype_size(cdt));
    C->im2col(C, co, cdt, hi, idt, use_idx ? idx : NULL, Bn, H, W, p, NULL);
    void *gi = gdup(hi, ni * dtype_size(idt)), *gidx = gdup(idx, Bn * 4), *go = gpoison(no * dtype_size(cdt));
    G->im2col(G, go, cdt, gi, idt, use_idx ? gidx : NULL, Bn, H, W, p, NULL);
    snprintf(w, sizeof w, "im2col N=%d Bn=%d %dx%d p=%d %s->%s%s", N, Bn, H, W, p, dtype_name(idt), dtype_name(cdt),
             use_idx ? " idx" : "");
    check_dev(w, go, cdt, co, cdt, no, 0);
    G->free(G, gi); G->free(G, gidx); G->free(G, go);
    free(f); free(hi); free(idx); free(co);
}

/* The augmented gather (gpu/augment_math.h) against the CPU reference: random
 * normalized images, per-image pinhole intrinsics (or the assumed camera),
 * each sample's record drawn by augment_draw from spec a. Both backends run
 * the same functions with the same rounding (no FMA contraction in
 * gpu/cuda/images.cu, none possible on x86-64-v2), so the batches are equal
 * bit for bit, in fp32 and bf16. (With contraction the sampling positions
 * moved by float ulps and, on these white-noise images, values by ~1e-4.) */
static void t_im2col_aug(const char *what, const augment_spec_t *a, int N, int Bn, int H, int W, int p,
                         dtype_t idt, dtype_t cdt, int use_idx, int use_K) {
    char w[256];
    size_t ni = (size_t)N * 3 * H * W;
    float *f = randf(ni, -2, 2);
    void *hi = as_dt(f, idt, ni);
    int32_t *idx = malloc(Bn * 4);
    for (int i = 0; i < Bn; i++) idx[i] = (int32_t)(urand() * N) % N;
    float *K = malloc((size_t)N * 9 * sizeof(float));
    for (int i = 0; i < N; i++) {
        float fx = W * (0.8f + 0.7f * (float)urand()), fy = fx * (0.95f + 0.1f * (float)urand());
        float k[9] = {fx, 0, W * (0.45f + 0.1f * (float)urand()), 0, fy, H * (0.45f + 0.1f * (float)urand()), 0, 0, 1};
        memcpy(K + i * 9, k, sizeof k);
    }
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    aug_sample_t *aug = malloc((size_t)Bn * sizeof(aug_sample_t));
    for (int i = 0; i < Bn; i++)
        augment_draw(a, 77, 3, use_idx ? idx[i] : i, H, W, mean, &aug[i], NULL);
    size_t no = (size_t)Bn * (H / p) * (W / p) * 3 * p * p;
    void *co = malloc(no * dtype_size(cdt));
    im2col_aug_t ca = {.samples = aug, .intrinsics = use_K ? K : NULL};
    memcpy(ca.mean, mean, sizeof mean);
    memcpy(ca.std, sd, sizeof sd);
    C->im2col(C, co, cdt, hi, idt, use_idx ? idx : NULL, Bn, H, W, p, &ca);
    void *gi = gdup(hi, ni * dtype_size(idt)), *gidx = gdup(idx, Bn * 4), *go = gpoison(no * dtype_size(cdt));
    void *gaug = gdup(aug, (size_t)Bn * sizeof(aug_sample_t)), *gK = gdup(K, (size_t)N * 9 * sizeof(float));
    im2col_aug_t ga = ca;
    ga.samples = gaug;
    ga.intrinsics = use_K ? gK : NULL;
    G->im2col(G, go, cdt, gi, idt, use_idx ? gidx : NULL, Bn, H, W, p, &ga);
    snprintf(w, sizeof w, "im2col+augment %s N=%d Bn=%d %dx%d p=%d %s->%s%s, %s camera", what, N, Bn, H, W, p,
             dtype_name(idt), dtype_name(cdt), use_idx ? " idx" : "", use_K ? "dataset" : "assumed");
    check_dev(w, go, cdt, co, cdt, no, 0);   /* bit for bit: gpu/cuda/images.cu has no FMA contraction */
    /* the labels: aug_joints */
    float *joints = randf((size_t)N * 63, -0.2f, 0.6f), *cj = malloc((size_t)Bn * 63 * sizeof(float));
    C->aug_joints(C, cj, joints, use_idx ? idx : NULL, aug, Bn);
    void *gj = gdup(joints, (size_t)N * 63 * sizeof(float)), *gjo = gpoison((size_t)Bn * 63 * sizeof(float));
    G->aug_joints(G, gjo, gj, use_idx ? gidx : NULL, gaug, Bn);
    snprintf(w, sizeof w, "aug_joints %s Bn=%d%s", what, Bn, use_idx ? " idx" : "");
    check_dev(w, gjo, DT_F32, cj, DT_F32, (size_t)Bn * 63, 1e-6);
    G->free(G, gi); G->free(G, gidx); G->free(G, go); G->free(G, gaug); G->free(G, gK); G->free(G, gj);
    G->free(G, gjo);
    free(f); free(hi); free(idx); free(K); free(aug); free(co); free(joints); free(cj);
}

static void t_images_u8(int n, int H, int W, dtype_t ddt) {
    char w[120];
    size_t nb = (size_t)n * H * W * 3, no = (size_t)n * 3 * H * W;
    uint8_t *u = malloc(nb);
    for (size_t i = 0; i < nb; i++) u[i] = (uint8_t)(urand() * 256);
    float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    void *co = malloc(no * dtype_size(ddt));
    C->images_from_u8(C, co, ddt, u, n, H, W, mean, sd);
    void *go = gpoison(no * dtype_size(ddt));
    G->images_from_u8(G, go, ddt, u, n, H, W, mean, sd);
    snprintf(w, sizeof w, "images_from_u8 n=%d %dx%d ->%s (pageable source)", n, H, W, dtype_name(ddt));
    check_dev(w, go, ddt, co, ddt, no, 1e-6);
    /* from pinned staging memory */
    uint8_t *pin = G->host_alloc(G, nb);
    ok(pin != NULL, "host_alloc %zu bytes pinned", nb);
    if (pin) {
        memcpy(pin, u, nb);
        void *go2 = gpoison(no * dtype_size(ddt));
        G->images_from_u8(G, go2, ddt, pin, n, H, W, mean, sd);
        snprintf(w, sizeof w, "images_from_u8 n=%d %dx%d ->%s (pinned source)", n, H, W, dtype_name(ddt));
        check_dev(w, go2, ddt, co, ddt, no, 1e-6);
        G->free(G, go2);
        G->host_free(G, pin);
    }
    G->free(G, go);
    free(u); free(co);
}

static void t_cast_gather(size_t n) {
    float *f = randf(n, -100, 100);
    bf16 *cb = malloc(n * 2);
    C->cast(C, cb, DT_BF16, f, DT_F32, n);
    void *gf = gdup(f, n * 4), *gb = gpoison(n * 2), *gf2 = gpoison(n * 4);
    G->cast(G, gb, DT_BF16, gf, DT_F32, n);
    bf16 *hb = malloc(n * 2);
    G->download(G, hb, gb, n * 2);
    ok(memcmp(hb, cb, n * 2) == 0, "cast f32->bf16 n=%zu bit-exact (round to nearest even)", n);
    G->cast(G, gf2, DT_F32, gb, DT_BF16, n);
    float *cf = malloc(n * 4);
    C->cast(C, cf, DT_F32, cb, DT_BF16, n);
    float *hf = malloc(n * 4);
    G->download(G, hf, gf2, n * 4);
    ok(memcmp(hf, cf, n * 4) == 0, "cast bf16->f32 n=%zu bit-exact", n);
    /* gather_rows: rows of odd byte length and of whole words */
    int rows = 37;
    size_t rb[2] = {7, 4 * 99};
    for (int k = 0; k < 2; k++) {
        size_t total = rb[k] * 50;
        uint8_t *src = malloc(total), *cd = malloc(rows * rb[k]), *gd = malloc(rows * rb[k]);
        for (size_t i = 0; i < total; i++) src[i] = (uint8_t)(urand() * 256);
        int32_t idx[37];
        for (int i = 0; i < rows; i++) idx[i] = (int32_t)(urand() * 50) % 50;
        C->gather_rows(C, cd, src, idx, rows, rb[k]);
        void *gs = gdup(src, total), *gi = gdup(idx, sizeof idx), *go = gpoison(rows * rb[k]);
        G->gather_rows(G, go, gs, gi, rows, rb[k]);
        G->download(G, gd, go, rows * rb[k]);
        ok(memcmp(gd, cd, rows * rb[k]) == 0, "gather_rows %d rows of %zu bytes", rows, rb[k]);
        G->free(G, gs); G->free(G, gi); G->free(G, go);
        free(src); free(cd); free(gd);
    }
    G->free(G, gf); G->free(G, gb); G->free(G, gf2);
    free(f); free(cb); free(hb); free(cf); free(hf);
}

static void t_hand_loss(int Bn, int N, int with_masks) {
    char w[120];
    float *pred = randf((size_t)Bn * 63, -0.2f, 0.2f), *conf = randf((size_t)Bn * 21, -3, 3);
    float *joints = randf((size_t)N * 63, -0.2f, 0.2f);
    uint8_t *valid = malloc((size_t)N * 21), *has = malloc(N);
    for (int i = 0; i < N * 21; i++) valid[i] = urand() < 0.85;
    for (int i = 0; i < N; i++) has[i] = urand() < 0.8;
    int32_t *idx = malloc(Bn * 4);
    for (int i = 0; i < Bn; i++) idx[i] = (int32_t)(urand() * N) % N;
    hand_loss_t cl, gl;
    float *cdp = malloc((size_t)Bn * 63 * 4), *cdc = malloc((size_t)Bn * 21 * 4);
    C->hand_loss(C, &cl, cdp, cdc, pred, conf, joints, with_masks ? valid : NULL, with_masks ? has : NULL, idx, Bn, NULL);
    void *gp = gdup(pred, (size_t)Bn * 63 * 4), *gc = gdup(conf, (size_t)Bn * 21 * 4), *gj = gdup(joints, (size_t)N * 63 * 4);
    void *gv = gdup(valid, (size_t)N * 21), *gh = gdup(has, N), *gi = gdup(idx, Bn * 4);
    void *gdp = gpoison((size_t)Bn * 63 * 4), *gdc = gpoison((size_t)Bn * 21 * 4);
    G->hand_loss(G, &gl, gdp, gdc, gp, gc, gj, with_masks ? gv : NULL, with_masks ? gh : NULL, gi, Bn, NULL);
    snprintf(w, sizeof w, "hand_loss Bn=%d%s terms", Bn, with_masks ? " masked" : "");
    int good = cl.valid == gl.valid && fabsf(gl.total - cl.total) <= 1e-5f * fabsf(cl.total) &&
               fabsf(gl.joint - cl.joint) <= 1e-5f * fabsf(cl.joint) && fabsf(gl.pair - cl.pair) <= 1e-5f * fabsf(cl.pair) &&
               fabsf(gl.conf - cl.conf) <= 1e-5f * fabsf(cl.conf) && isfinite(gl.total);
    ok(good, "%s", w);
    if (!good) diag("  gpu %g %g %g %g %g cpu %g %g %g %g %g", gl.total, gl.joint, gl.pair, gl.conf, gl.valid,
                    cl.total, cl.joint, cl.pair, cl.conf, cl.valid);
    snprintf(w, sizeof w, "hand_loss Bn=%d%s dpred", Bn, with_masks ? " masked" : "");
    check_dev(w, gdp, DT_F32, cdp, DT_F32, (size_t)Bn * 63, 1e-5);
    snprintf(w, sizeof w, "hand_loss Bn=%d%s dconf", Bn, with_masks ? " masked" : "");
    check_dev(w, gdc, DT_F32, cdc, DT_F32, (size_t)Bn * 21, 1e-5);
    /* a data-parallel rank's call: the normalizers of a larger global batch (here 2.5x this one's) */
    hand_norm_t nrm = {0, 0, 0};
    for (int i = 0; i < Bn; i++)
        if (!with_masks || has[idx[i]]) hand_norm_add(&nrm, with_masks ? valid + (size_t)idx[i] * 21 : NULL);
    nrm.sw *= 2.5; nrm.nj *= 2.5; nrm.npair *= 2.5;
    C->hand_loss(C, &cl, cdp, cdc, pred, conf, joints, with_masks ? valid : NULL, with_masks ? has : NULL, idx, Bn, &nrm);
    G->hand_loss(G, &gl, gdp, gdc, gp, gc, gj, with_masks ? gv : NULL, with_masks ? gh : NULL, gi, Bn, &nrm);
    snprintf(w, sizeof w, "hand_loss Bn=%d%s with global normalizers: terms", Bn, with_masks ? " masked" : "");
    ok(cl.valid == gl.valid && fabsf(gl.total - cl.total) <= 1e-5f * fabsf(cl.total) && isfinite(gl.total), "%s", w);
    snprintf(w, sizeof w, "hand_loss Bn=%d%s with global normalizers: dpred", Bn, with_masks ? " masked" : "");
    check_dev(w, gdp, DT_F32, cdp, DT_F32, (size_t)Bn * 63, 1e-5);
    G->free(G, gp); G->free(G, gc); G->free(G, gj); G->free(G, gv); G->free(G, gh); G->free(G, gi);
    G->free(G, gdp); G->free(G, gdc);
    free(pred); free(conf); free(joints); free(valid); free(has); free(idx); free(cdp); free(cdc);
}

static void t_reductions(size_t n) {
    float *x = randf(n, -3, 3);
    if (n > 10) { x[3] = NAN; x[5] = INFINITY; x[7] = 0.0f; x[9] = -INFINITY; }
    void *gx = gdup(x, n * 4);
    /* sumsq over finite data only (NaN would poison it on both) */
    float *y = randf(n, -3, 3);
    void *gy = gdup(y, n * 4);
    double cs = C->sumsq(C, y, n), gs1 = G->sumsq(G, gy, n), gs2 = G->sumsq(G, gy, n);
    ok(fabs(gs1 - cs) <= 1e-9 * cs, "sumsq n=%zu: gpu %.15g cpu %.15g", n, gs1, cs);
    ok(gs1 == gs2, "sumsq n=%zu deterministic (two runs bit-equal)", n);
    double cst[7], gst[7];
    for (int k = 0; k < 2; k++) {
        dtype_t dt = k ? DT_BF16 : DT_F32;
        void *hx = as_dt(x, dt, n), *g = gdup(hx, n * dtype_size(dt));
        C->stats(C, cst, hx, dt, n);
        G->stats(G, gst, g, dt, n);
        int good = 1;
        for (int i = 0; i < 7; i++)
            if (!(fabs(gst[i] - cst[i]) <= 1e-9 * fmax(1.0, fabs(cst[i])))) good = 0;
        ok(good, "stats n=%zu %s (sum, sumsq, min, max, nan, inf, zero)", n, dtype_name(dt));
        if (!good) diag("  gpu %g %g %g %g %g %g %g / cpu %g %g %g %g %g %g %g", gst[0], gst[1], gst[2], gst[3],
                        gst[4], gst[5], gst[6], cst[0], cst[1], cst[2], cst[3], cst[4], cst[5], cst[6]);
        G->free(G, g);
        free(hx);
    }
    float s = 0.37f;
    C->scale(C, y, s, n);
    G->scale(G, gy, s, n);
    check_dev("scale", gy, DT_F32, y, DT_F32, n, 0);
    G->free(G, gx); G->free(G, gy);
    free(x); free(y);
}

static void t_adamw(dtype_t cdt) {
    /* runs with gaps between them (elements outside every run stay as they are) */
    adamw_seg_t segs[4] = {{0, 1000, 1e-3f, 0.01f}, {1000, 7, 1e-3f, 0.0f}, {1100, 70000, 1e-5f, 0.01f},
                           {71200, 4096, 2e-4f, 0.0f}};
    size_t n = 71200 + 4096 + 13;
    float *p = randf(n, -1, 1), *g = randf(n, -1, 1), *m = randf(n, -0.1f, 0.1f), *v = randf(n, 0, 0.01f);
    float *cp = malloc(n * 4), *cm = malloc(n * 4), *cv = malloc(n * 4);
    memcpy(cp, p, n * 4); memcpy(cm, m, n * 4); memcpy(cv, v, n * 4);
    size_t es = dtype_size(cdt);
    void *cpc = malloc(n * es);
    memset(cpc, 0, n * es);
    void *gp = gdup(p, n * 4), *gg = gdup(g, n * 4), *gm = gdup(m, n * 4), *gv = gdup(v, n * 4);
    void *gpc = gdup(cpc, n * es);
    for (int t = 1; t <= 3; t++) {
        C->adamw(C, cp, cpc, cdt, g, cm, cv, segs, 4, 0.9f, 0.999f, 1e-8f, t, 0.5f);
        G->adamw(G, gp, gpc, cdt, gg, gm, gv, segs, 4, 0.9f, 0.999f, 1e-8f, t, 0.5f);
    }
    char w[80];
    snprintf(w, sizeof w, "adamw params (3 steps, working copy %s)", dtype_name(cdt));
    check_dev(w, gp, DT_F32, cp, DT_F32, n, 1e-6);
    check_dev("adamw m", gm, DT_F32, cm, DT_F32, n, 1e-6);
    check_dev("adamw v", gv, DT_F32, cv, DT_F32, n, 1e-6);
    snprintf(w, sizeof w, "adamw working copy %s", dtype_name(cdt));
    check_dev(w, gpc, cdt, cpc, cdt, n, cdt == DT_BF16 ? 4e-3 : 1e-6);
    G->free(G, gp); G->free(G, gg); G->free(G, gm); G->free(G, gv); G->free(G, gpc);
    free(p); free(g); free(m); free(v); free(cp); free(cm); free(cv); free(cpc);
}

/* ---- timings (TEST_BENCH=1): not tests, printed as diagnostics ------------------- */

#include <time.h>
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench_attention(backend_t *g, const char *impl, int Bn, int T, int NH, int HS, dtype_t cdt) {
    size_t nq = (size_t)Bn * T * 3 * NH * HS, no = (size_t)Bn * T * NH * HS, nl = (size_t)Bn * NH * T;
    size_t es = dtype_size(cdt);
    float *f = randf(nq, -2, 2);
    void *h = as_dt(f, cdt, nq);
    backend_t *save = G;
    G = g;
    void *q = gdup(h, nq * es), *o = gpoison(no * es), *l = gpoison(nl * 4);
    float *fd = randf(no, -1, 1);
    void *d = gdup(fd, no * 4), *dq = gpoison(nq * 4);
    int it = 10;
    g->attention_fwd(g, o, l, q, cdt, Bn, T, NH, HS);
    g->attention_bwd(g, dq, DT_F32, NULL, d, q, o, l, cdt, Bn, T, NH, HS);
    g->sync(g);
    double t0 = now_s();
    for (int i = 0; i < it; i++) g->attention_fwd(g, o, l, q, cdt, Bn, T, NH, HS);
    g->sync(g);
    double t1 = now_s();
    for (int i = 0; i < it; i++) g->attention_bwd(g, dq, DT_F32, NULL, d, q, o, l, cdt, Bn, T, NH, HS);
    g->sync(g);
    double t2 = now_s();
    double fl = 4.0 * Bn * NH * (double)T * T * HS;
    diag("bench attention[%s] Bn=%d T=%d NH=%d HS=%d %s: fwd %.3f ms (%.1f TFLOP/s), bwd %.3f ms (%.1f TFLOP/s)",
         impl, Bn, T, NH, HS, dtype_name(cdt), (t1 - t0) / it * 1e3, fl / ((t1 - t0) / it) / 1e12,
         (t2 - t1) / it * 1e3, 2.5 * fl / ((t2 - t1) / it) / 1e12);
    g->free(g, q); g->free(g, o); g->free(g, l); g->free(g, d); g->free(g, dq);
    G = save;
    free(f); free(h); free(fd);
}

static void bench_matmul(int M, int N, int K, dtype_t cdt) {
    size_t es = dtype_size(cdt);
    void *a = gpoison((size_t)M * K * es), *w = gpoison((size_t)N * K * es), *o = gpoison((size_t)M * N * 4);
    float *fa = randf((size_t)M * K, -1, 1), *fw = randf((size_t)N * K, -1, 1);
    void *ha = as_dt(fa, cdt, (size_t)M * K), *hw = as_dt(fw, cdt, (size_t)N * K);
    G->upload(G, a, ha, (size_t)M * K * es);
    G->upload(G, w, hw, (size_t)N * K * es);
    int it = 20;
    G->matmul_fwd(G, o, DT_F32, a, w, NULL, cdt, M, N, K);
    G->sync(G);
    double t0 = now_s();
    for (int i = 0; i < it; i++) G->matmul_fwd(G, o, DT_F32, a, w, NULL, cdt, M, N, K);
    G->sync(G);
    double t = (now_s() - t0) / it;
    diag("bench matmul M=%d N=%d K=%d %s: %.3f ms, %.1f TFLOP/s", M, N, K, dtype_name(cdt), t * 1e3,
         2.0 * M * N * K / t / 1e12);
    G->free(G, a); G->free(G, w); G->free(G, o);
    free(fa); free(fw); free(ha); free(hw);
}

/* ---- memory, IPC ------------------------------------------------------------------- */

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}
static void fill_pattern(uint8_t *p, size_t n, unsigned seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; p[i] = (uint8_t)(s >> 24); }
}

static int ipc_child(const char *handle, size_t bytes, unsigned seed) {
    char err[256];
    if (bytes == 0) { fprintf(stderr, "child: zero bytes\n"); return 2; }
    backend_t *b = backend_cuda_create(0, err, sizeof err);
    if (!b) { fprintf(stderr, "child: %s\n", err); return 3; }
    uint8_t *dev = b->shared_open(b, handle, bytes);
    if (!dev) { fprintf(stderr, "child: shared_open: %s\n", b->err); b->destroy(b); return 4; }
    uint8_t *h = malloc(bytes), *want = malloc(bytes);
    if (!h || !want) { fprintf(stderr, "child: out of memory\n"); return 2; }
    b->download(b, h, dev, bytes);
    fill_pattern(want, bytes, seed);
    int same = memcmp(h, want, bytes) == 0;
    /* write back a marker the parent checks: the first byte inverted */
    uint8_t first = want[0];
    uint8_t mark = (uint8_t)~first;
    b->upload(b, dev, &mark, 1);
    b->sync(b);
    b->shared_close(b, dev, bytes);
    b->destroy(b);
    free(h); free(want);
    return same ? 0 : 5;
}

static void t_memory(const char *self) {
    size_t fr = 0, tot = 0;
    int mi = G->mem_info(G, &fr, &tot);
    ok(mi == 0 && tot > 0 && fr <= tot, "mem_info: %zu of %zu bytes free", fr, tot);
    void *huge = G->alloc(G, (size_t)1 << 50);
    ok(huge == NULL && strlen(G->err) > 0, "alloc of 1 PiB fails cleanly: %s", G->err);
    void *small = G->alloc(G, 1024);
    ok(small != NULL, "backend usable after a failed allocation");
    G->free(G, small);
    ok(G->shared_open(G, "not-a-handle", 16) == NULL && strlen(G->err) > 0, "shared_open rejects garbage: %s", G->err);
    ok(G->shared_open(G, "cudaipc:0:zz", 16) == NULL, "shared_open rejects a short handle: %s", G->err);

    size_t bytes = (size_t)3 << 20 | 123;
    char handle[BACKEND_HANDLE_MAX];
    uint8_t *dev = G->shared_alloc(G, bytes, handle);
    ok(dev != NULL, "shared_alloc %zu bytes: handle %.24s...", bytes, handle);
    if (!dev) return;
    uint8_t *h = malloc(bytes);
    unsigned seed = 77;
    fill_pattern(h, bytes, seed);
    G->upload(G, dev, h, bytes);
    G->sync(G);
    char sbytes[32], sseed[16];
    snprintf(sbytes, sizeof sbytes, "%zu", bytes);
    snprintf(sseed, sizeof sseed, "%u", seed);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "--ipc-child", handle, sbytes, sseed, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "IPC: a child process opened the handle and read the same bytes (exit %d)",
       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    uint8_t first = 0;
    G->download(G, &first, dev, 1);
    uint8_t want_mark = (uint8_t)~h[0];
    ok(first == want_mark, "IPC: the child's write is visible to the owner");
    uint8_t *back = malloc(bytes);
    G->download(G, back, dev, bytes);
    ok(fnv(back + 1, bytes - 1) == fnv(h + 1, bytes - 1), "IPC: the rest of the shared bytes intact");
    G->shared_free(G, dev, bytes, handle);
    free(h); free(back);
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--ipc-child") == 0)
        return ipc_child(argv[2], strtoull(argv[3], NULL, 10), (unsigned)strtoul(argv[4], NULL, 10));
    char err[256];
    C = backend_cpu_create(err, sizeof err);
    if (!C) { printf("Bail out! cpu backend: %s\n", err); return 1; }
#ifndef TRAIND_CUDA
    printf("1..0 # SKIP built without CUDA\n");
    C->destroy(C);
    return 0;
#else
    unsetenv("TRAIND_ATTENTION");
    G = backend_cuda_create(0, err, sizeof err);
    if (!G) { printf("1..0 # SKIP no CUDA device: %s\n", err); C->destroy(C); return 0; }
    setenv("TRAIND_ATTENTION", "cublas", 1);
    backend_t *Gcublas = backend_cuda_create(0, err, sizeof err);
    setenv("TRAIND_ATTENTION", "own", 1);
    backend_t *Gown = backend_cuda_create(0, err, sizeof err);
    unsetenv("TRAIND_ATTENTION");
    if (!Gcublas || !Gown) { printf("Bail out! second cuda backend: %s\n", err); return 1; }
    diag("device: %s", G->device_name(G));
    const char *quick = getenv("TEST_QUICK"), *bench = getenv("TEST_BENCH");
    dtype_t dts[2] = {DT_F32, DT_BF16};
    if (bench && strcmp(bench, "only") == 0) goto benches;   /* TEST_BENCH=only: the timings alone */

    t_memory("/proc/self/exe");
    t_cast_gather(100003);   /* scalar kernels */
    t_cast_gather(100000);   /* 8-wide kernels */
    t_images_u8(3, 224, 224, DT_BF16);
    t_images_u8(2, 17, 31, DT_F32);
    t_images_u8(70, 224, 224, DT_BF16);   /* more than one staging chunk */
    t_im2col(5, 3, 224, 224, 14, DT_BF16, DT_BF16, 1);
    t_im2col(5, 3, 224, 224, 14, DT_BF16, DT_F32, 1);
    t_im2col(4, 4, 30, 44, 14, DT_F32, DT_F32, 0);
    t_im2col(4, 2, 28, 28, 14, DT_F32, DT_BF16, 1);
    {
        /* every kind at once, at the train benchmark's shape and at odd ones */
        augment_spec_t all = {.on = 1, .rotate_deg = {-180, 180}, .shift_deg = 10, .flip = 0.5, .zoom = {0.7, 1.4},
                              .brightness = 0.4, .contrast = 0.4, .saturation = 0.4, .hue = 0.1, .erase_count = 3,
                              .erase_p = 0.7, .erase_area = {0.01, 0.1}, .erase_aspect = {0.3, 3.3}};
        augment_spec_t geo = {.on = 1, .rotate_deg = {-30, 30}, .shift_deg = 5, .flip = 0.5, .zoom = {0.9, 1.1}};
        augment_spec_t none = {.on = 1, .zoom = {1, 1}};   /* on, every kind the identity: plain copies */
        t_im2col_aug("all kinds", &all, 40, 32, 224, 224, 14, DT_BF16, DT_BF16, 1, 1);
        t_im2col_aug("all kinds", &all, 40, 32, 224, 224, 14, DT_BF16, DT_F32, 1, 1);
        t_im2col_aug("all kinds", &all, 6, 6, 224, 224, 14, DT_BF16, DT_F32, 0, 0);
        t_im2col_aug("geometry", &geo, 7, 5, 30, 44, 14, DT_F32, DT_F32, 1, 1);
        t_im2col_aug("geometry", &geo, 7, 5, 30, 44, 14, DT_F32, DT_BF16, 1, 0);
        t_im2col_aug("identity", &none, 5, 3, 56, 56, 14, DT_BF16, DT_BF16, 1, 1);
    }

    for (int k = 0; k < 2; k++) {
        dtype_t cdt = dts[k];
        t_matmul(2 * 257, 3 * 1024, 1024, cdt, cdt, 1);          /* qkv projection, large */
        t_matmul(2 * 257, 1024, 4096, cdt, DT_F32, 1);           /* fc2 into the fp32 stream */
        t_matmul(2 * 256, 1024, 588, cdt, DT_F32, 1);            /* patch embedding */
        t_matmul(37, 19, 23, cdt, cdt, 1);                       /* odd */
        t_matmul(5, 63, 512, cdt, DT_F32, 0);                    /* head, no bias */
        t_matmul(33, 17, 9, cdt, cdt == DT_F32 ? DT_BF16 : DT_F32, 1);
        t_matmul_off(514, 768, 384, cdt, cdt, 1, 16);   /* model-like 16-element offsets */
        t_matmul_off(65, 40, 24, cdt, DT_F32, 1, 1);     /* one element off: minimal alignment */
    }
    t_matmul_gelu(8 * 257, 4096, 1024, DT_BF16, 0);   /* fc1 of dinov2-large, 8 images */
    t_matmul_gelu(2 * 257, 4096, 1024, DT_BF16, 16);  /* at the model's 16-element alignment */
    t_matmul_gelu(3 * 257, 1536, 384, DT_BF16, 0);    /* dinov2-small */
    t_matmul_gelu(37, 24, 16, DT_BF16, 0);            /* small, odd M */
    t_matmul_gelu(65, 40, 24, DT_BF16, 1);            /* one element off */
    t_matmul_gelu(33, 20, 12, DT_BF16, 0);            /* N, K not multiples of 8 */
    t_matmul_gelu(2 * 257, 4096, 1024, DT_F32, 0);    /* fp32 */
    t_matmul_dgelu(8 * 257, 1024, 4096, DT_BF16, 0);  /* fc2's input gradient, dinov2-large, 8 images */
    t_matmul_dgelu(2 * 257, 1024, 4096, DT_BF16, 16);
    t_matmul_dgelu(3 * 257, 384, 1536, DT_BF16, 0);   /* dinov2-small */
    t_matmul_dgelu(37, 16, 24, DT_BF16, 0);
    t_matmul_dgelu(65, 24, 40, DT_BF16, 1);           /* one element off */
    t_matmul_dgelu(33, 12, 20, DT_BF16, 0);           /* N, K not multiples of 8 */
    t_matmul_dgelu(2 * 257, 1024, 4096, DT_F32, 0);   /* fp32 */
    t_layernorm(2 * 257, 1024, DT_BF16);
    t_layernorm(2 * 257, 1024, DT_F32);
    t_layernorm(37, 77, DT_F32);
    t_layernorm(3, 2000, DT_BF16);
    t_layernorm(5, 384, DT_BF16);   /* 8-wide path, 3 float4 per lane */
    t_layernorm(9, 768, DT_F32);
    for (int k = 0; k < 2; k++) {
        dtype_t cdt = dts[k];
        /* default (bf16 forward through cuDNN where it loads), own fused kernels, cuBLAS */
        backend_t *impls[3] = {G, Gown, Gcublas};
        const char *names[3] = {"default", "own", "cublas"};
        for (int im = 0; im < 3; im++) {
            t_attention(impls[im], names[im], 2, 257, 16, 64, cdt);
            t_attention(impls[im], names[im], 3, 50, 2, 32, cdt);
            t_attention(impls[im], names[im], 1, 7, 3, 64, cdt);
            t_attention(impls[im], names[im], 2, 65, 2, 40, cdt);   /* HS outside the fused set: fallback */
            if (!quick) t_attention(impls[im], names[im], 1, 261, 4, 64, cdt);
        }
    }
    /* T a multiple of 8 and of the 64-row tiles, and one past a tile */
    t_attention(G, "default", 2, 256, 4, 64, DT_BF16);
    t_attention(G, "default", 3, 64, 2, 64, DT_BF16);
    t_attention(G, "default", 1, 129, 2, 64, DT_BF16);
    /* the own forward at its key-tile edges: a last tile taking up to 16 keys more (80, 144,
     * 257), one key past that (81), a single short tile (16, 1), 8 keys over (200) */
    {
        static const int Ts[8] = {257, 80, 81, 16, 144, 129, 1, 200};
        for (int i = 0; i < (quick ? 3 : 8); i++) t_attention(Gown, "own", 2, Ts[i], 4, 64, DT_BF16);
    }
    /* the cuDNN path with its tail rows split off (automatic only at large batch x heads) */
    setenv("TRAIND_CUDNN_SPLIT", "1", 1);
    t_attention(G, "default, split", 2, 257, 16, 64, DT_BF16);   /* 1 tail row */
    t_attention(G, "default, split", 1, 261, 4, 64, DT_BF16);    /* 5 tail rows (4 registers) */
    unsetenv("TRAIND_CUDNN_SPLIT");
    t_gelu(2 * 257 * 4096 + 5, DT_BF16, DT_BF16);   /* scalar kernels */
    t_gelu(2 * 257 * 4096, DT_BF16, DT_BF16);       /* 8-wide kernels */
    t_gelu(4096, DT_F32, DT_F32);
    t_gelu(4096, DT_BF16, DT_F32);
    t_gelu(1001, DT_F32, DT_F32);
    t_gelu(1001, DT_F32, DT_BF16);
    t_gelu(999, DT_BF16, DT_F32);
    t_layerscale(2 * 257, 1024, DT_BF16);
    t_layerscale(2 * 257, 1024, DT_F32);
    t_layerscale(7, 13, DT_F32);
    t_bwd_epilogue(2 * 257, 1024, DT_BF16, DT_BF16);
    t_bwd_epilogue(600, 4096, DT_BF16, DT_BF16);
    t_bwd_epilogue(2 * 257, 1024, DT_F32, DT_F32);
    t_bwd_epilogue(300, 37, DT_F32, DT_BF16);
    t_bwd_epilogue(5, 8, DT_BF16, DT_F32);
    t_ls_ln(2 * 257, 1024, DT_BF16, DT_BF16);   /* the model's use: fused 8-row-per-block kernel */
    t_ls_ln(2 * 257, 1024, DT_F32, DT_F32);
    t_ls_ln(5, 384, DT_BF16, DT_F32);
    t_ls_ln(9, 768, DT_F32, DT_BF16);
    t_ls_ln(7, 13, DT_F32, DT_F32);             /* odd C: the two ops one after the other */
    t_embed(2, 256, 0, 1024);
    t_embed(3, 16, 4, 64);
    t_embed(1, 5, 0, 7);
    t_tokens(4, 257, 1024, 0, DT_F32);
    t_tokens(3, 21, 13, 5, DT_BF16);
    t_hand_loss(32, 100, 1);
    t_hand_loss(300, 500, 1);
    t_hand_loss(7, 7, 0);
    t_reductions(1);
    t_reductions(1000);
    t_reductions(10000019);
    t_adamw(DT_BF16);
    t_adamw(DT_F32);

benches:
    if (bench) {
        for (int k = 0; k < 2; k++) {
            bench_attention(G, "default", 32, 257, 16, 64, dts[k]);
            bench_attention(Gown, "own", 32, 257, 16, 64, dts[k]);
            bench_attention(Gcublas, "cublas", 32, 257, 16, 64, dts[k]);
        }
        bench_attention(G, "default", 256, 257, 16, 64, DT_BF16);   /* eval b256 */
        bench_attention(Gown, "own", 256, 257, 16, 64, DT_BF16);
        bench_attention(G, "default", 256, 256, 16, 64, DT_BF16);   /* T a multiple of the tiles */
        bench_attention(Gown, "own", 256, 256, 16, 64, DT_BF16);
        bench_attention(Gown, "own", 128, 257, 16, 64, DT_BF16);   /* train b128 */
        bench_attention(G, "default", 128, 257, 16, 64, DT_BF16);
        setenv("TRAIND_CUDNN_SPLIT", "0", 1);   /* cuDNN on all T rows, no tail kernel */
        bench_attention(G, "default, no split", 32, 257, 16, 64, DT_BF16);
        bench_attention(G, "default, no split", 256, 257, 16, 64, DT_BF16);
        setenv("TRAIND_CUDNN_SPLIT", "1", 1);   /* cuDNN on T-1 query rows + the tail kernel */
        bench_attention(G, "default, split", 32, 257, 16, 64, DT_BF16);
        bench_attention(G, "default, split", 256, 257, 16, 64, DT_BF16);
        unsetenv("TRAIND_CUDNN_SPLIT");
        setenv("TRAIND_CUDNN_AUTOTUNE", "1", 1);   /* read when a plan is built */
        backend_t *Gt = backend_cuda_create(0, err, sizeof err);
        if (Gt) {
            bench_attention(Gt, "default+autotune", 32, 257, 16, 64, DT_BF16);
            bench_attention(Gt, "default+autotune", 256, 257, 16, 64, DT_BF16);
            Gt->destroy(Gt);
        }
        unsetenv("TRAIND_CUDNN_AUTOTUNE");
        bench_matmul(32 * 257, 3 * 1024, 1024, DT_BF16);
        bench_matmul(32 * 257, 4096, 1024, DT_BF16);
        bench_matmul(8192, 8192, 8192, DT_BF16);
        bench_matmul(4096, 4096, 4096, DT_F32);
    }

    Gcublas->destroy(Gcublas);
    Gown->destroy(Gown);
    G->destroy(G);
    C->destroy(C);
    return tap_done();
#endif
}
