/* tests/unit/test_ops_cpu.c — the CPU backend (gpu/backend_cpu.c) against
 * mathematics: every backward against central finite differences in double
 * precision, forwards against naive double-precision formulas, bf16 rounding
 * exactly where a bf16 store happens, and the data, optimizer, statistics and
 * shared-memory ops against hand-computed values.
 *
 * Reusable pieces (top of the file):
 *   fd_check()        analytic gradient vs central differences of a scalar
 *                     objective, plus proof that a corrupted gradient (scaled
 *                     by 1.1, one sign flipped, indices shifted by one) fails
 *                     the very same comparison;
 *   obj_dot()         the objective sum(out * R) summed in double;
 *   check_close()     float results vs double references with a per-element
 *                     tolerance;
 *   check_bf16_of()   a bf16 output equals f32_to_bf16 of the fp32 result.
 * Buffers are exact-size mallocs in a small arena freed after each test, so
 * ASan catches any access past a buffer and any leak. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "tests/tap.h"

static backend_t *be;

/* ---- arena and random numbers ------------------------------------------------ */

#define ARENA_MAX 256
static void *arena[ARENA_MAX];
static int arena_n;

/* Exact-size malloc rather than be->alloc (which rounds up to 64 bytes), so
 * that ASan sees any read or write one element past a buffer; on the cpu
 * backend, backend memory is host memory. */
static void *talloc(size_t bytes) {
    if (arena_n == ARENA_MAX) {
        fprintf(stderr, "test arena full\n");
        exit(2);
    }
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "malloc %zu failed\n", bytes);
        exit(2);
    }
    arena[arena_n++] = p;
    return p;
}
static float *tf(size_t n) { return talloc(n * sizeof(float)); }
static bf16 *th(size_t n) { return talloc(n * sizeof(bf16)); }
static void tfree_all(void) {
    while (arena_n > 0) free(arena[--arena_n]);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* [0,1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)urand(); }
static float *rfill(float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = frand(lo, hi);
    return x;
}
static float *rnew(size_t n, float lo, float hi) { return rfill(tf(n), n, lo, hi); }
static float *copy_of(const float *x, size_t n) {
    float *y = tf(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}
static void round_bf16_inplace(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
}
static bf16 *to_bf16(const float *x, size_t n) {
    bf16 *h = th(n);
    for (size_t i = 0; i < n; i++) h[i] = f32_to_bf16(x[i]);
    return h;
}

/* ---- reusable checks ------------------------------------------------------------ */

/* sum(out * R) in double: the scalar objective whose gradient w.r.t. out is R. */
static double obj_dot(const float *out, const float *R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}

typedef double (*objective_fn)(void *ctx);

#define FD_MAXPTS 400

/* Relative max error of a[at[k]] against fd[k]: max_k |a - fd| / max_k |fd|. */
static double fd_err(const float *a, const size_t *at, const double *fd, int npts, int shift) {
    double mx = 0, e = 0;
    for (int k = 0; k < npts; k++) mx = fmax(mx, fabs(fd[k]));
    for (int k = 0; k < npts; k++) {
        double av = a[at[(k + shift) % npts]];
        double d = fabs(av - fd[k]);
        if (!(d == d)) return INFINITY;
        e = fmax(e, d);
    }
    return e / fmax(mx, 1e-30);
}

/* Checks grad[n] = d f / d x at up to FD_MAXPTS indices spread over [0,n)
 * (skip[i] != 0 excludes index i) against central differences with step h.
 * The step actually taken is (float)(x+h) - (float)(x-h), so the quotient is
 * exact for the fp32 points evaluated. Passes when the relative max error is
 * <= tol, and also demands that three corruptions of the analytic gradient
 * fail the same test, which shows the tolerance catches a wrong factor, sign
 * or index. */
static void fd_check(const char *name, objective_fn f, void *ctx, float *x, size_t n,
                     const float *grad, double h, double tol, const uint8_t *skip) {
    static size_t at[FD_MAXPTS];
    static double fd[FD_MAXPTS];
    int npts = 0, skipped = 0;
    size_t stride = n <= FD_MAXPTS ? 1 : (n + FD_MAXPTS - 1) / FD_MAXPTS;
    for (size_t i = (size_t)(urand() * (double)stride); i < n && npts < FD_MAXPTS; i += stride) {
        if (skip && skip[i]) { skipped++; continue; }
        float x0 = x[i];
        float xp = (float)((double)x0 + h), xm = (float)((double)x0 - h);
        x[i] = xp;
        double fp = f(ctx);
        x[i] = xm;
        double fm = f(ctx);
        x[i] = x0;
        at[npts] = i;
        fd[npts] = (fp - fm) / ((double)xp - (double)xm);
        npts++;
    }
    if (npts < 2) {
        ok(0, "%s: too few finite-difference points (%d)", name, npts);
        return;
    }
    double e = fd_err(grad, at, fd, npts, 0);
    ok(e <= tol, "%s: gradient vs central differences, rel err %.2e <= %.0e (%d points%s)", name, e, tol,
       npts, skipped ? ", some skipped at kinks" : "");

    /* corruptions: x1.1; the largest element's sign flipped; indices shifted by one */
    float *bad = malloc(n * sizeof(float));
    if (!bad) exit(2);
    memcpy(bad, grad, n * sizeof(float));
    for (int k = 0; k < npts; k++) bad[at[k]] = grad[at[k]] * 1.1f;
    double e_scale = fd_err(bad, at, fd, npts, 0);
    memcpy(bad, grad, n * sizeof(float));
    int kmax = 0;
    for (int k = 1; k < npts; k++)
        if (fabs(fd[k]) > fabs(fd[kmax])) kmax = k;
    bad[at[kmax]] = -bad[at[kmax]];
    double e_flip = fd_err(bad, at, fd, npts, 0);
    double e_shift = fd_err(grad, at, fd, npts, 1);
    free(bad);
    ok(e_scale > tol && e_flip > tol && e_shift > tol,
       "%s: corrupted gradients fail the same check (x1.1: %.2e, sign: %.2e, shift: %.2e)", name, e_scale,
       e_flip, e_shift);
}

/* got[i] (float) vs want[i] (double): |got - want| <= tol * scale[i] (scale NULL: max(1,|want|)). */
static void check_close(const char *name, const float *got, const double *want, const double *scale,
                        size_t n, double tol) {
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double s = scale ? scale[i] : fmax(1.0, fabs(want[i]));
        double e = fabs((double)got[i] - want[i]) / s;
        if (!(e <= worst)) { worst = e; wi = i; }
    }
    ok(worst <= tol, "%s: matches the double-precision formula (worst rel err %.2e <= %.0e)", name, worst, tol);
    if (!(worst <= tol)) diag("  at %zu: got %.9g want %.9g", wi, got[wi], want[wi]);
}

/* A bf16 output equals f32_to_bf16 of the fp32 result, bit for bit. */
static void check_bf16_of(const char *name, const bf16 *got, const float *f32, size_t n) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != f32_to_bf16(f32[i]) && !bad++) first = i;
    ok(bad == 0, "%s: bf16 output is f32_to_bf16 of the fp32 result (%zu of %zu differ)", name, bad, n);
    if (bad) diag("  first at %zu: got 0x%04x want 0x%04x", first, got[first], f32_to_bf16(f32[first]));
}

/* ---- matmul ----------------------------------------------------------------------- */

typedef struct {
    int M, N, K;
    float *inp, *w, *bias, *out, *R;
} mm_ctx;

static double mm_obj(void *p) {
    mm_ctx *c = p;
    be->matmul_fwd(be, c->out, DT_F32, c->inp, c->w, c->bias, DT_F32, c->M, c->N, c->K);
    return obj_dot(c->out, c->R, (size_t)c->M * c->N);
}

static void test_matmul(void) {
    const int M = 37, N = 29, K = 53;
    float *inp = rnew((size_t)M * K, -1, 1), *w = rnew((size_t)N * K, -1, 1), *bias = rnew(N, -1, 1);
    float *out = tf((size_t)M * N);
    be->matmul_fwd(be, out, DT_F32, inp, w, bias, DT_F32, M, N, K);
    double *want = calloc((size_t)M * N, sizeof(double)), *scale = calloc((size_t)M * N, sizeof(double));
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = bias[n], a = fabs(bias[n]);
            for (int k = 0; k < K; k++) {
                s += (double)inp[m * K + k] * w[n * K + k];
                a += fabs((double)inp[m * K + k] * w[n * K + k]);
            }
            want[m * N + n] = s;
            scale[m * N + n] = a;
        }
    check_close("matmul_fwd fp32 with bias", out, want, scale, (size_t)M * N, 1e-6);
    be->matmul_fwd(be, out, DT_F32, inp, w, NULL, DT_F32, M, N, K);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) want[m * N + n] -= bias[n];
    check_close("matmul_fwd fp32 without bias", out, want, scale, (size_t)M * N, 1e-6);

    /* bf16: inputs read exactly, fp32 accumulation, one rounding of the output */
    float *ir = copy_of(inp, (size_t)M * K), *wr = copy_of(w, (size_t)N * K);
    round_bf16_inplace(ir, (size_t)M * K);
    round_bf16_inplace(wr, (size_t)N * K);
    bf16 *ih = to_bf16(ir, (size_t)M * K), *wh = to_bf16(wr, (size_t)N * K);
    float *ref = tf((size_t)M * N), *o32 = tf((size_t)M * N);
    bf16 *o16 = th((size_t)M * N);
    be->matmul_fwd(be, ref, DT_F32, ir, wr, bias, DT_F32, M, N, K);
    be->matmul_fwd(be, o16, DT_BF16, ih, wh, bias, DT_BF16, M, N, K);
    be->matmul_fwd(be, o32, DT_F32, ih, wh, bias, DT_BF16, M, N, K);
    check_bf16_of("matmul_fwd bf16 -> bf16", o16, ref, (size_t)M * N);
    ok(memcmp(o32, ref, (size_t)M * N * sizeof(float)) == 0, "matmul_fwd bf16 inputs -> fp32 output is the fp32 product of the bf16 values");

    /* backward by finite differences (small shapes) */
    for (int with_bias = 1; with_bias >= 0; with_bias--) {
        mm_ctx c = {.M = 5, .N = 4, .K = 6};
        size_t mk = (size_t)c.M * c.K, nk = (size_t)c.N * c.K, mn = (size_t)c.M * c.N;
        c.inp = rnew(mk, -1, 1);
        c.w = rnew(nk, -1, 1);
        c.bias = with_bias ? rnew(c.N, -1, 1) : NULL;
        c.out = tf(mn);
        c.R = rnew(mn, -1, 1);
        float *dinp = rnew(mk, 50, 60);            /* overwritten */
        float *dw0 = rnew(nk, -1, 1), *dw = copy_of(dw0, nk);   /* accumulated */
        float *db0 = rnew(c.N, -1, 1), *db = copy_of(db0, c.N);
        be->matmul_bwd(be, dinp, dw, with_bias ? db : NULL, c.R, DT_F32, c.inp, c.w, DT_F32, c.M, c.N, c.K);
        for (size_t i = 0; i < nk; i++) dw[i] -= dw0[i];
        for (int i = 0; i < c.N; i++) db[i] -= db0[i];
        char nm[96];
        snprintf(nm, sizeof nm, "matmul_bwd dinp (%s bias)", with_bias ? "with" : "without");
        fd_check(nm, mm_obj, &c, c.inp, mk, dinp, 1e-2, 1e-3, NULL);
        snprintf(nm, sizeof nm, "matmul_bwd dw += (%s bias)", with_bias ? "with" : "without");
        fd_check(nm, mm_obj, &c, c.w, nk, dw, 1e-2, 1e-3, NULL);
        if (with_bias) fd_check("matmul_bwd dbias +=", mm_obj, &c, c.bias, c.N, db, 1e-2, 1e-3, NULL);
    }
    /* bf16 backward reads the same values as fp32: bf16 operands (x, w) first, then a bf16
     * gradient (already the products' operand) as well; each case against the one before */
    {
        int m2 = 6, n2 = 5, k2 = 7;
        float *x = rnew((size_t)m2 * k2, -1, 1), *ww = rnew((size_t)n2 * k2, -1, 1), *g = rnew((size_t)m2 * n2, -1, 1);
        round_bf16_inplace(x, (size_t)m2 * k2);
        round_bf16_inplace(ww, (size_t)n2 * k2);
        round_bf16_inplace(g, (size_t)m2 * n2);
        const void *xs[2] = {x, to_bf16(x, (size_t)m2 * k2)}, *ws[2] = {ww, to_bf16(ww, (size_t)n2 * k2)};
        const void *gs[2] = {g, to_bf16(g, (size_t)m2 * n2)};
        static const char *const what[2] = {"matmul_bwd with bf16 operands equals fp32 on the same values",
                                            "matmul_bwd with a bf16 dout equals fp32 dout on the same values"};
        float *da[2] = {tf((size_t)m2 * k2), tf((size_t)m2 * k2)}, *dw2[2] = {tf((size_t)n2 * k2), tf((size_t)n2 * k2)};
        for (int c = 0; c < 2; c++) {   /* c 0: f32 all vs bf16 operands; c 1: bf16 operands vs + bf16 dout */
            for (int v = 0; v < 2; v++) {
                int bo = c == 0 ? v : 1, bg = c == 1 && v == 1;
                be->zero(be, dw2[v], (size_t)n2 * k2 * 4);
                be->matmul_bwd(be, da[v], dw2[v], NULL, gs[bg], bg ? DT_BF16 : DT_F32, xs[bo], ws[bo],
                               bo ? DT_BF16 : DT_F32, m2, n2, k2);
            }
            ok(memcmp(da[0], da[1], (size_t)m2 * k2 * 4) == 0 && memcmp(dw2[0], dw2[1], (size_t)n2 * k2 * 4) == 0,
               "%s", what[c]);
        }
    }
    free(want);
    free(scale);
    tfree_all();
}

/* ---- layernorm ----------------------------------------------------------------------- */

typedef struct {
    int N, C;
    float *inp, *w, *b, *out, *R;
} ln_ctx;

static double ln_obj(void *p) {
    ln_ctx *c = p;
    be->layernorm_fwd(be, c->out, DT_F32, NULL, NULL, c->inp, c->w, c->b, c->N, c->C, 1e-6f);
    return obj_dot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_layernorm(void) {
    const int N = 9, C = 48;
    const float eps = 1e-6f;
    float *inp = rnew((size_t)N * C, -2, 3), *w = rnew(C, 0.5f, 1.5f), *b = rnew(C, -1, 1);
    float *out = tf((size_t)N * C), *mean = tf(N), *rstd = tf(N);
    be->layernorm_fwd(be, out, DT_F32, mean, rstd, inp, w, b, N, C, eps);
    double *want = calloc((size_t)N * C, sizeof(double)), wm[9], wr[9];
    for (int i = 0; i < N; i++) {
        double s = 0, v = 0;
        for (int j = 0; j < C; j++) s += inp[i * C + j];
        s /= C;
        for (int j = 0; j < C; j++) v += (inp[i * C + j] - s) * (inp[i * C + j] - s);
        v /= C;                                  /* biased, as PyTorch */
        wm[i] = s;
        wr[i] = 1 / sqrt(v + eps);
        for (int j = 0; j < C; j++) want[i * C + j] = (inp[i * C + j] - s) * wr[i] * w[j] + b[j];
    }
    check_close("layernorm_fwd", out, want, NULL, (size_t)N * C, 2e-6);
    check_close("layernorm_fwd mean", mean, wm, NULL, N, 1e-6);
    float rr[9];
    double one[9];
    for (int i = 0; i < N; i++) { rr[i] = (float)(rstd[i] / wr[i]); one[i] = 1; }
    check_close("layernorm_fwd rstd", rr, one, NULL, N, 1e-6);

    bf16 *o16 = th((size_t)N * C);
    be->layernorm_fwd(be, o16, DT_BF16, NULL, NULL, inp, w, b, N, C, eps);
    check_bf16_of("layernorm_fwd -> bf16", o16, out, (size_t)N * C);

    /* a large common offset (1e3 + noise of 1e-2): the variance does not cancel away */
    for (int i = 0; i < N * C; i++) inp[i] = 1000.0f + frand(-0.01f, 0.01f);
    be->layernorm_fwd(be, out, DT_F32, mean, rstd, inp, w, b, N, C, eps);
    for (int i = 0; i < N; i++) {
        double s = 0, v = 0;
        for (int j = 0; j < C; j++) s += inp[i * C + j];
        s /= C;
        for (int j = 0; j < C; j++) v += (inp[i * C + j] - s) * (inp[i * C + j] - s);
        double r = 1 / sqrt(v / C + eps);
        for (int j = 0; j < C; j++) want[i * C + j] = (inp[i * C + j] - s) * r * w[j] + b[j];
    }
    check_close("layernorm_fwd with a large offset", out, want, NULL, (size_t)N * C, 1e-5);

    ln_ctx c = {.N = 4, .C = 16};
    size_t nc = (size_t)c.N * c.C;
    c.inp = rnew(nc, -1, 2);
    c.w = rnew(c.C, 0.5f, 1.5f);
    c.b = rnew(c.C, -1, 1);
    c.out = tf(nc);
    c.R = rnew(nc, -1, 1);
    float *m4 = tf(c.N), *r4 = tf(c.N);
    be->layernorm_fwd(be, c.out, DT_F32, m4, r4, c.inp, c.w, c.b, c.N, c.C, 1e-6f);
    float *di0 = rnew(nc, -1, 1), *di = copy_of(di0, nc);
    float *dw0 = rnew(c.C, -1, 1), *dw = copy_of(dw0, c.C), *db0 = rnew(c.C, -1, 1), *db = copy_of(db0, c.C);
    be->layernorm_bwd(be, di, dw, db, c.R, c.inp, NULL, DT_F32, NULL, c.w, m4, r4, c.N, c.C);
    for (size_t i = 0; i < nc; i++) di[i] -= di0[i];
    for (int i = 0; i < c.C; i++) { dw[i] -= dw0[i]; db[i] -= db0[i]; }
    fd_check("layernorm_bwd dinp +=", ln_obj, &c, c.inp, nc, di, 1e-2, 1e-2, NULL);
    fd_check("layernorm_bwd dw +=", ln_obj, &c, c.w, c.C, dw, 1e-2, 1e-2, NULL);
    fd_check("layernorm_bwd db +=", ln_obj, &c, c.b, c.C, db, 1e-2, 1e-2, NULL);
    /* again on rows with a common offset of 300 */
    for (size_t i = 0; i < nc; i++) c.inp[i] = 300.0f + frand(-1, 1);
    be->layernorm_fwd(be, c.out, DT_F32, m4, r4, c.inp, c.w, c.b, c.N, c.C, 1e-6f);
    be->zero(be, di, nc * 4);
    be->layernorm_bwd(be, di, NULL, NULL, c.R, c.inp, NULL, DT_F32, NULL, c.w, m4, r4, c.N, c.C);
    fd_check("layernorm_bwd dinp with an offset of 300 (dw, db NULL)", ln_obj, &c, c.inp, nc, di, 1e-2, 1e-2, NULL);
    /* the residual form: input res + gamma * x given as its terms == the plain
     * form on the sum layerscale_fwd makes, to the bit (x in f32 and bf16) */
    for (int xb = 0; xb < 2; xb++) {
        dtype_t xdt = xb ? DT_BF16 : DT_F32;
        float *res = rnew(nc, -1, 2), *xs = rnew(nc, -3, 3), *gam = rnew(c.C, -0.5f, 0.5f), *sum = tf(nc);
        const void *xv = xb ? (const void *)to_bf16(xs, nc) : xs;
        be->layerscale_fwd(be, sum, res, xv, xdt, gam, c.N, c.C);
        be->layernorm_fwd(be, c.out, DT_F32, m4, r4, sum, c.w, c.b, c.N, c.C, 1e-6f);
        float *da = copy_of(di0, nc), *dwa = copy_of(dw0, c.C), *dba = copy_of(db0, c.C);
        float *dr = copy_of(di0, nc), *dwr = copy_of(dw0, c.C), *dbr = copy_of(db0, c.C);
        be->layernorm_bwd(be, da, dwa, dba, c.R, sum, NULL, DT_F32, NULL, c.w, m4, r4, c.N, c.C);
        be->layernorm_bwd(be, dr, dwr, dbr, c.R, res, xv, xdt, gam, c.w, m4, r4, c.N, c.C);
        ok(memcmp(da, dr, nc * 4) == 0 && memcmp(dwa, dwr, (size_t)c.C * 4) == 0 &&
           memcmp(dba, dbr, (size_t)c.C * 4) == 0,
           "layernorm_bwd residual form (x %s) == plain form on layerscale_fwd's sum, bitwise", dtype_name(xdt));
    }
    free(want);
    tfree_all();
}

/* ---- attention ------------------------------------------------------------------------- */

typedef struct {
    int Bn, T, NH, HS;
    float *qkv, *out, *lse, *R;
} at_ctx;

static double at_obj(void *p) {
    at_ctx *c = p;
    be->attention_fwd(be, c->out, c->lse, c->qkv, DT_F32, c->Bn, c->T, c->NH, c->HS);
    return obj_dot(c->out, c->R, (size_t)c->Bn * c->T * c->NH * c->HS);
}

/* out and lse in double: plain softmax(Q K^T / sqrt(HS)) V. */
static void attention_naive(double *out, double *lse, const float *qkv, int Bn, int T, int NH, int HS) {
    double *s = malloc((size_t)T * sizeof(double));
    if (!s) exit(2);
    for (int b = 0; b < Bn; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = qkv + (((size_t)b * T + t) * 3 * NH + h) * HS;
                double mx = -INFINITY, sum = 0;
                for (int u = 0; u < T; u++) {
                    const float *k = qkv + (((size_t)b * T + u) * 3 * NH + NH + h) * HS;
                    double d = 0;
                    for (int e = 0; e < HS; e++) d += (double)q[e] * k[e];
                    s[u] = d / sqrt((double)HS);
                    mx = fmax(mx, s[u]);
                }
                for (int u = 0; u < T; u++) sum += exp(s[u] - mx);
                lse[((size_t)b * NH + h) * T + t] = mx + log(sum);
                for (int e = 0; e < HS; e++) {
                    double o = 0;
                    for (int u = 0; u < T; u++)
                        o += exp(s[u] - mx) / sum * qkv[(((size_t)b * T + u) * 3 * NH + 2 * NH + h) * HS + e];
                    out[(((size_t)b * T + t) * NH + h) * HS + e] = o;
                }
            }
    free(s);
}

static void test_attention(void) {
    static const int cfg[][4] = {{2, 3, 1, 4}, {1, 7, 2, 8}, {2, 17, 2, 16}, {1, 5, 3, 6}};
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        at_ctx c = {.Bn = cfg[ci][0], .T = cfg[ci][1], .NH = cfg[ci][2], .HS = cfg[ci][3]};
        size_t nq = (size_t)c.Bn * c.T * 3 * c.NH * c.HS, no = (size_t)c.Bn * c.T * c.NH * c.HS;
        size_t nl = (size_t)c.Bn * c.NH * c.T;
        char nm[128], tag[48];
        snprintf(tag, sizeof tag, "Bn=%d T=%d NH=%d HS=%d", c.Bn, c.T, c.NH, c.HS);
        c.qkv = rnew(nq, -1.5f, 1.5f);
        c.out = tf(no);
        c.lse = tf(nl);
        c.R = rnew(no, -1, 1);
        be->attention_fwd(be, c.out, c.lse, c.qkv, DT_F32, c.Bn, c.T, c.NH, c.HS);
        double *wo = calloc(no, sizeof(double)), *wl = calloc(nl, sizeof(double));
        attention_naive(wo, wl, c.qkv, c.Bn, c.T, c.NH, c.HS);
        snprintf(nm, sizeof nm, "attention_fwd out %s", tag);
        check_close(nm, c.out, wo, NULL, no, 2e-6);
        snprintf(nm, sizeof nm, "attention_fwd lse %s", tag);
        check_close(nm, c.lse, wl, NULL, nl, 2e-6);
        float *o2 = tf(no);
        be->attention_fwd(be, o2, NULL, c.qkv, DT_F32, c.Bn, c.T, c.NH, c.HS);
        snprintf(nm, sizeof nm, "attention_fwd without lse gives the same output %s", tag);
        ok(memcmp(o2, c.out, no * 4) == 0, "%s", nm);

        /* bf16: same as fp32 on the rounded qkv, then one rounding */
        float *qr = copy_of(c.qkv, nq), *ref = tf(no), *lref = tf(nl), *l16 = tf(nl);
        round_bf16_inplace(qr, nq);
        bf16 *qh = to_bf16(qr, nq), *oh = th(no);
        be->attention_fwd(be, ref, lref, qr, DT_F32, c.Bn, c.T, c.NH, c.HS);
        be->attention_fwd(be, oh, l16, qh, DT_BF16, c.Bn, c.T, c.NH, c.HS);
        snprintf(nm, sizeof nm, "attention_fwd bf16 %s", tag);
        check_bf16_of(nm, oh, ref, no);
        snprintf(nm, sizeof nm, "attention_fwd bf16 lse is the fp32 lse of the bf16 values %s", tag);
        ok(memcmp(l16, lref, nl * 4) == 0, "%s", nm);

        be->attention_fwd(be, c.out, c.lse, c.qkv, DT_F32, c.Bn, c.T, c.NH, c.HS);
        float *dq = rnew(nq, 50, 60);   /* overwritten */
        be->attention_bwd(be, dq, DT_F32, NULL, c.R, c.qkv, c.out, c.lse, DT_F32, c.Bn, c.T, c.NH, c.HS);
        snprintf(nm, sizeof nm, "attention_bwd dqkv %s", tag);
        fd_check(nm, at_obj, &c, c.qkv, nq, dq, 1e-3, 1e-2, NULL);

        /* bf16 backward = fp32 backward on the same values */
        float *d16 = tf(nq), *d32 = tf(nq);
        be->attention_bwd(be, d32, DT_F32, NULL, c.R, qr, ref, lref, DT_F32, c.Bn, c.T, c.NH, c.HS);
        be->attention_bwd(be, d16, DT_F32, NULL, c.R, qh, oh, l16, DT_BF16, c.Bn, c.T, c.NH, c.HS);
        snprintf(nm, sizeof nm, "attention_bwd bf16 equals fp32 on the same values %s", tag);
        ok(memcmp(d16, d32, nq * 4) == 0, "%s", nm);
        /* stored in bf16 with the bias gradients: the rounding of the f32 result, and
         * dbias += its column sums over the tokens */
        {
            const size_t ld3 = (size_t)3 * c.NH * c.HS, rows = (size_t)c.Bn * c.T;
            bf16 *g16 = th(nq);
            float *bias0 = rnew(ld3, -1, 1), *bias = copy_of(bias0, ld3);
            be->attention_bwd(be, g16, DT_BF16, bias, c.R, qh, oh, l16, DT_BF16, c.Bn, c.T, c.NH, c.HS);
            snprintf(nm, sizeof nm, "attention_bwd stored bf16 %s", tag);
            check_bf16_of(nm, g16, d32, nq);
            double worst = 0;
            for (size_t j = 0; j < ld3; j++) {
                double s = bias0[j];
                for (size_t r = 0; r < rows; r++) s += d32[r * ld3 + j];
                worst = fmax(worst, fabs(bias[j] - s) / fmax(1.0, fabs(s)));
            }
            ok(worst <= 1e-5, "attention_bwd dbias += column sums of dqkv %s (worst rel err %.1e)", tag, worst);
        }
        free(wo);
        free(wl);
        tfree_all();
    }
    /* large scores (|S| ~ 1e3): the stable softmax neither overflows nor loses the result */
    {
        const int Bn = 1, T = 9, NH = 2, HS = 8;
        size_t nq = (size_t)Bn * T * 3 * NH * HS, no = (size_t)Bn * T * NH * HS, nl = (size_t)Bn * NH * T;
        float *qkv = rnew(nq, -12, 12), *out = tf(no), *lse = tf(nl);
        be->attention_fwd(be, out, lse, qkv, DT_F32, Bn, T, NH, HS);
        double *wo = calloc(no, sizeof(double)), *wl = calloc(nl, sizeof(double));
        attention_naive(wo, wl, qkv, Bn, T, NH, HS);
        /* fp32 scores of size ~4e2 carry rounding of a few 1e-5 (ulp 3e-5) into exp(S - lse):
         * 1e-4 is that precision; an unstable softmax is off by inf, NaN or the whole value */
        check_close("attention_fwd with scores ~1e3 (stable softmax)", out, wo, NULL, no, 1e-4);
        check_close("attention_fwd lse with scores ~1e3", lse, wl, NULL, nl, 1e-6);
        float *dq = tf(nq), *R = rnew(no, -1, 1);
        be->attention_bwd(be, dq, DT_F32, NULL, R, qkv, out, lse, DT_F32, Bn, T, NH, HS);
        int fin = 1;
        for (size_t i = 0; i < nq; i++) fin &= isfinite(dq[i]);
        ok(fin, "attention_bwd with scores ~1e3 stays finite");
        free(wo);
        free(wl);
        tfree_all();
    }
}

/* ---- GELU, LayerScale ---------------------------------------------------------------- */

typedef struct {
    size_t n;
    float *inp, *out, *R;
} gelu_ctx;

static double gelu_obj(void *p) {
    gelu_ctx *c = p;
    be->gelu_fwd(be, c->out, DT_F32, c->inp, DT_F32, c->n);
    return obj_dot(c->out, c->R, c->n);
}

static void test_gelu(void) {
    const size_t n = 1201;
    float *x = tf(n), *y = tf(n);
    double *want = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = -6.0f + 12.0f * (float)i / (float)(n - 1);
    be->gelu_fwd(be, y, DT_F32, x, DT_F32, n);
    for (size_t i = 0; i < n; i++) want[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
    check_close("gelu_fwd vs 0.5 x (1 + erf(x/sqrt2))", y, want, NULL, n, 1e-6);

    float *xr = copy_of(x, n);
    round_bf16_inplace(xr, n);
    bf16 *xh = to_bf16(xr, n), *yh = th(n);
    float *yr = tf(n), *yf = tf(n);
    be->gelu_fwd(be, yr, DT_F32, xr, DT_F32, n);
    be->gelu_fwd(be, yh, DT_BF16, xh, DT_BF16, n);
    check_bf16_of("gelu_fwd bf16 -> bf16", yh, yr, n);
    be->gelu_fwd(be, yf, DT_F32, xh, DT_BF16, n);
    ok(memcmp(yf, yr, n * 4) == 0, "gelu_fwd bf16 -> fp32 is exact on the bf16 values");
    be->gelu_fwd(be, xr, DT_F32, xr, DT_F32, n);
    ok(memcmp(xr, yr, n * 4) == 0, "gelu_fwd in place");

    gelu_ctx c = {.n = 300};
    c.inp = rnew(c.n, -4, 4);
    c.out = tf(c.n);
    c.R = rnew(c.n, -1, 1);
    float *d = rnew(c.n, 50, 60);
    be->gelu_bwd(be, d, DT_F32, NULL, c.R, c.inp, DT_F32, 1, (int)c.n);
    fd_check("gelu_bwd", gelu_obj, &c, c.inp, c.n, d, 1e-3, 1e-3, NULL);
    float *d2 = tf(c.n), *ir = copy_of(c.inp, c.n);
    round_bf16_inplace(ir, c.n);
    bf16 *ih = to_bf16(ir, c.n);
    be->gelu_bwd(be, d, DT_F32, NULL, c.R, ir, DT_F32, 1, (int)c.n);
    be->gelu_bwd(be, d2, DT_F32, NULL, c.R, ih, DT_BF16, 1, (int)c.n);
    ok(memcmp(d, d2, c.n * 4) == 0, "gelu_bwd reads bf16 input exactly");
    /* as [M,N] = [20,15]: the bf16 store is the rounding of the f32 values, and
     * dbias += their column sums */
    {
        const int M = 20, N = 15;
        float *db0 = rnew(N, -1, 1), *db = copy_of(db0, N);
        bf16 *dh = calloc((size_t)M * N, sizeof(bf16));
        be->gelu_bwd(be, dh, DT_BF16, db, c.R, ir, DT_F32, M, N);
        int same = 1;
        for (size_t i = 0; i < c.n; i++) same &= dh[i] == f32_to_bf16(d[i]);
        ok(same, "gelu_bwd stores bf16 as the rounding of its f32 values");
        double worst = 0;
        for (int j = 0; j < N; j++) {
            double want_j = db0[j];
            for (int i = 0; i < M; i++) want_j += d[i * N + j];
            worst = fmax(worst, fabs(db[j] - want_j));
        }
        ok(worst < 1e-5, "gelu_bwd dbias += column sums of the gradient (worst %.2g)", worst);
        free(dh);
    }
    free(want);
    tfree_all();
}

typedef struct {
    int N, C;
    float *res, *x, *gamma, *out, *R;
} ls_ctx;

static double ls_obj(void *p) {
    ls_ctx *c = p;
    be->layerscale_fwd(be, c->out, c->res, c->x, DT_F32, c->gamma, c->N, c->C);
    return obj_dot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_layerscale(void) {
    ls_ctx c = {.N = 6, .C = 10};
    size_t nc = (size_t)c.N * c.C;
    c.res = rnew(nc, -1, 1);
    c.x = rnew(nc, -1, 1);
    c.gamma = rnew(c.C, -1, 1);
    c.out = tf(nc);
    c.R = rnew(nc, -1, 1);
    be->layerscale_fwd(be, c.out, c.res, c.x, DT_F32, c.gamma, c.N, c.C);
    int exact = 1;
    for (int i = 0; i < c.N; i++)
        for (int j = 0; j < c.C; j++)
            exact &= c.out[i * c.C + j] == c.res[i * c.C + j] + c.gamma[j] * c.x[i * c.C + j];
    ok(exact, "layerscale_fwd = res + gamma * x");
    float *alias = copy_of(c.res, nc);
    be->layerscale_fwd(be, alias, alias, c.x, DT_F32, c.gamma, c.N, c.C);
    ok(memcmp(alias, c.out, nc * 4) == 0, "layerscale_fwd with out aliasing res");
    float *xr = copy_of(c.x, nc), *o1 = tf(nc), *o2 = tf(nc);
    round_bf16_inplace(xr, nc);
    bf16 *xh = to_bf16(xr, nc);
    be->layerscale_fwd(be, o1, c.res, xr, DT_F32, c.gamma, c.N, c.C);
    be->layerscale_fwd(be, o2, c.res, xh, DT_BF16, c.gamma, c.N, c.C);
    ok(memcmp(o1, o2, nc * 4) == 0, "layerscale_fwd reads a bf16 x exactly");

    float *dx = rnew(nc, 50, 60), *dg0 = rnew(c.C, -1, 1), *dg = copy_of(dg0, c.C);
    float *dbs0 = rnew(c.C, -1, 1), *dbs = copy_of(dbs0, c.C);
    be->layerscale_bwd(be, dx, DT_F32, dg, dbs, c.R, c.x, DT_F32, c.gamma, c.N, c.C);
    for (int j = 0; j < c.C; j++) dg[j] -= dg0[j];
    fd_check("layerscale_bwd dx", ls_obj, &c, c.x, nc, dx, 1e-2, 1e-3, NULL);
    fd_check("layerscale_bwd dgamma +=", ls_obj, &c, c.gamma, c.C, dg, 1e-2, 1e-3, NULL);
    {
        double worst = 0;
        for (int j = 0; j < c.C; j++) {
            double want_j = dbs0[j];
            for (int i = 0; i < c.N; i++) want_j += dx[i * c.C + j];
            worst = fmax(worst, fabs(dbs[j] - want_j));
        }
        ok(worst < 1e-5, "layerscale_bwd dbias += column sums of dx (worst %.2g)", worst);
        bf16 *dxh = calloc(nc, sizeof(bf16));
        be->layerscale_bwd(be, dxh, DT_BF16, NULL, NULL, c.R, c.x, DT_F32, c.gamma, c.N, c.C);
        int same = 1;
        for (size_t i = 0; i < nc; i++) same &= dxh[i] == f32_to_bf16(dx[i]);
        ok(same, "layerscale_bwd stores bf16 dx as the rounding of its f32 values");
        free(dxh);
    }
    fd_check("layerscale residual gradient is dout", ls_obj, &c, c.res, nc, c.R, 1e-2, 1e-3, NULL);
    tfree_all();
}

/* Fused residual + LayerScale + LayerNorm: out exactly as layerscale_fwd, ln
 * against LayerNorm of out computed here in double; out may alias res. */
static void test_layerscale_layernorm(void) {
    const int N = 7, C = 40;
    const float eps = 1e-6f;
    size_t nc = (size_t)N * C;
    float *res = rnew(nc, -2, 2), *x = rnew(nc, -1, 1), *gam = rnew(C, -0.5f, 0.5f);
    float *w = rnew(C, 0.5f, 1.5f), *b = rnew(C, -1, 1);
    float *out = tf(nc), *ln = tf(nc), *mean = tf(N), *rstd = tf(N);
    be->layerscale_layernorm_fwd(be, out, res, x, DT_F32, gam, ln, DT_F32, mean, rstd, w, b, N, C, eps);
    int exact = 1;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++) exact &= out[i * C + j] == res[i * C + j] + gam[j] * x[i * C + j];
    ok(exact, "layerscale_layernorm_fwd: out = res + gamma * x");
    double *want = calloc(nc, sizeof(double)), wm[7];
    for (int i = 0; i < N; i++) {
        double s = 0, v = 0;
        for (int j = 0; j < C; j++) s += out[i * C + j];
        s /= C;
        for (int j = 0; j < C; j++) v += (out[i * C + j] - s) * (out[i * C + j] - s);
        double r = 1 / sqrt(v / C + eps);
        wm[i] = s;
        for (int j = 0; j < C; j++) want[i * C + j] = (out[i * C + j] - s) * r * w[j] + b[j];
    }
    check_close("layerscale_layernorm_fwd: ln = LN(out)", ln, want, NULL, nc, 2e-6);
    check_close("layerscale_layernorm_fwd: mean", mean, wm, NULL, N, 1e-6);
    bf16 *l16 = th(nc);
    float *alias = copy_of(res, nc);
    be->layerscale_layernorm_fwd(be, alias, alias, x, DT_F32, gam, l16, DT_BF16, NULL, NULL, w, b, N, C, eps);
    ok(memcmp(alias, out, nc * 4) == 0, "layerscale_layernorm_fwd with out aliasing res");
    check_bf16_of("layerscale_layernorm_fwd: ln -> bf16", l16, ln, nc);
    free(want);
    tfree_all();
}

/* ---- token assembly, slice and scatter ---------------------------------------------- */

typedef struct {
    int Bn, P, R, D;
    float *patches, *cls, *reg, *pos, *x, *Rw;
} em_ctx;

static double em_obj(void *p) {
    em_ctx *c = p;
    be->embed_fwd(be, c->x, c->patches, c->cls, c->reg, c->pos, c->Bn, c->P, c->R, c->D);
    return obj_dot(c->x, c->Rw, (size_t)c->Bn * (1 + c->R + c->P) * c->D);
}

static void test_embed(void) {
    for (int R = 0; R <= 4; R += 4) {
        em_ctx c = {.Bn = 3, .P = 5, .R = R, .D = 7};
        int T = 1 + R + c.P;
        size_t np = (size_t)c.Bn * c.P * c.D, nx = (size_t)c.Bn * T * c.D, npos = (size_t)(1 + c.P) * c.D;
        c.patches = rnew(np, -1, 1);
        c.cls = rnew(c.D, -1, 1);
        c.reg = R ? rnew((size_t)R * c.D, -1, 1) : NULL;
        c.pos = rnew(npos, -1, 1);
        c.x = tf(nx);
        c.Rw = rnew(nx, -1, 1);
        be->embed_fwd(be, c.x, c.patches, c.cls, c.reg, c.pos, c.Bn, c.P, c.R, c.D);
        int exact = 1;
        for (int b = 0; b < c.Bn; b++)
            for (int d = 0; d < c.D; d++) {
                const float *xb = c.x + (size_t)b * T * c.D;
                exact &= xb[d] == c.cls[d] + c.pos[d];
                for (int r = 0; r < R; r++) exact &= xb[(1 + r) * c.D + d] == c.reg[r * c.D + d];
                for (int i = 0; i < c.P; i++)
                    exact &= xb[(1 + R + i) * c.D + d] == c.patches[((size_t)b * c.P + i) * c.D + d] + c.pos[(1 + i) * c.D + d];
            }
        ok(exact, "embed_fwd layout with R=%d (cls+pos0, registers without position, patches+pos)", R);
        float *dp = rnew(np, 50, 60), *dc0 = rnew(c.D, -1, 1), *dc = copy_of(dc0, c.D);
        float *dpos0 = rnew(npos, -1, 1), *dpos = copy_of(dpos0, npos);
        float *dr0 = R ? rnew((size_t)R * c.D, -1, 1) : NULL, *dr = R ? copy_of(dr0, (size_t)R * c.D) : NULL;
        be->embed_bwd(be, dp, dc, dr, dpos, c.Rw, c.Bn, c.P, c.R, c.D);
        for (int d = 0; d < c.D; d++) dc[d] -= dc0[d];
        for (size_t i = 0; i < npos; i++) dpos[i] -= dpos0[i];
        for (int i = 0; R && i < R * c.D; i++) dr[i] -= dr0[i];
        char nm[64];
        snprintf(nm, sizeof nm, "embed_bwd dpatches (R=%d)", R);
        fd_check(nm, em_obj, &c, c.patches, np, dp, 1e-2, 1e-3, NULL);
        snprintf(nm, sizeof nm, "embed_bwd dcls += (R=%d)", R);
        fd_check(nm, em_obj, &c, c.cls, c.D, dc, 1e-2, 1e-3, NULL);
        snprintf(nm, sizeof nm, "embed_bwd dpos += (R=%d)", R);
        fd_check(nm, em_obj, &c, c.pos, npos, dpos, 1e-2, 1e-3, NULL);
        if (R) fd_check("embed_bwd dreg += (R=4)", em_obj, &c, c.reg, (size_t)R * c.D, dr, 1e-2, 1e-3, NULL);
        /* NULL parameter gradients (frozen embeddings) are allowed */
        float *dp2 = tf(np);
        be->embed_bwd(be, dp2, NULL, NULL, NULL, c.Rw, c.Bn, c.P, c.R, c.D);
        ok(memcmp(dp2, dp, np * 4) == 0, "embed_bwd with frozen cls/reg/pos (R=%d)", R);
        tfree_all();
    }
}

typedef struct {
    int Bn, T, D, t;
    float *x, *out, *R;
} sl_ctx;

static double sl_obj(void *p) {
    sl_ctx *c = p;
    be->token_slice(be, c->out, c->x, DT_F32, c->Bn, c->T, c->D, c->t);
    return obj_dot(c->out, c->R, (size_t)c->Bn * c->D);
}

static void test_token_slice(void) {
    sl_ctx c = {.Bn = 3, .T = 6, .D = 5, .t = 2};
    size_t nx = (size_t)c.Bn * c.T * c.D;
    c.x = rnew(nx, -1, 1);
    c.out = tf((size_t)c.Bn * c.D);
    c.R = rnew((size_t)c.Bn * c.D, -1, 1);
    float *dx0 = rnew(nx, -1, 1), *dx = copy_of(dx0, nx);
    be->token_scatter_add(be, dx, c.R, c.Bn, c.T, c.D, c.t);
    for (size_t i = 0; i < nx; i++) dx[i] -= dx0[i];
    fd_check("token_scatter_add is the adjoint of token_slice (+=)", sl_obj, &c, c.x, nx, dx, 1e-2, 1e-3, NULL);
    bf16 *xh = to_bf16(c.x, nx), *oh = th((size_t)c.Bn * c.D);
    be->token_slice(be, oh, xh, DT_BF16, c.Bn, c.T, c.D, 0);
    int same = 1;
    for (int b = 0; b < c.Bn; b++)
        for (int d = 0; d < c.D; d++) same &= oh[b * c.D + d] == xh[(size_t)b * c.T * c.D + d];
    ok(same, "token_slice of bf16 rows (CLS token)");
    tfree_all();
}

/* ---- im2col + matmul: the patch embedding (a strided Conv2d) ------------------------- */

typedef struct {
    int Bn, H, W, p, D, P, N;
    float *img, *cols, *w, *bias, *out, *R;
    int32_t *idx;
} pe_ctx;

static double pe_obj(void *q) {
    pe_ctx *c = q;
    int kk = 3 * c->p * c->p;
    be->im2col(be, c->cols, DT_F32, c->img, DT_F32, c->idx, c->Bn, c->H, c->W, c->p, NULL);
    be->matmul_fwd(be, c->out, DT_F32, c->cols, c->w, c->bias, DT_F32, c->Bn * c->P, c->D, kk);
    return obj_dot(c->out, c->R, (size_t)c->Bn * c->P * c->D);
}

static void test_patch_embed(void) {
    pe_ctx c = {.Bn = 2, .H = 11, .W = 8, .p = 3, .D = 5, .N = 4};
    int Hp = c.H / c.p, Wp = c.W / c.p, kk = 3 * c.p * c.p;
    c.P = Hp * Wp;
    size_t nimg = (size_t)c.N * 3 * c.H * c.W, ncols = (size_t)c.Bn * c.P * kk, nout = (size_t)c.Bn * c.P * c.D;
    c.img = rnew(nimg, -2, 2);
    c.cols = tf(ncols);
    c.w = rnew((size_t)c.D * kk, -1, 1);
    c.bias = rnew(c.D, -1, 1);
    c.out = tf(nout);
    c.R = rnew(nout, -1, 1);
    c.idx = talloc(sizeof(int32_t) * c.Bn);
    c.idx[0] = 3;
    c.idx[1] = 1;
    pe_obj(&c);
    /* naive strided convolution in double: weight [D,3,p,p], stride p, no padding */
    double *want = calloc(nout, sizeof(double));
    for (int b = 0; b < c.Bn; b++)
        for (int py = 0; py < Hp; py++)
            for (int px = 0; px < Wp; px++)
                for (int d = 0; d < c.D; d++) {
                    double s = c.bias[d];
                    for (int ch = 0; ch < 3; ch++)
                        for (int ky = 0; ky < c.p; ky++)
                            for (int kx = 0; kx < c.p; kx++)
                                s += (double)c.img[(((size_t)c.idx[b] * 3 + ch) * c.H + py * c.p + ky) * c.W + px * c.p + kx] *
                                     c.w[((d * 3 + ch) * c.p + ky) * c.p + kx];
                    want[(((size_t)b * Hp + py) * Wp + px) * c.D + d] = s;
                }
    check_close("im2col+matmul = strided Conv2d (gathered batch, H,W not multiples of p)", c.out, want, NULL, nout, 1e-5);
    free(want);

    /* dtype conversion fused into im2col */
    float *ir = copy_of(c.img, nimg), *cr = tf(ncols), *cf = tf(ncols);
    round_bf16_inplace(ir, nimg);
    bf16 *ih = to_bf16(ir, nimg), *ch = th(ncols);
    be->im2col(be, cr, DT_F32, ir, DT_F32, c.idx, c.Bn, c.H, c.W, c.p, NULL);
    be->im2col(be, cf, DT_F32, ih, DT_BF16, c.idx, c.Bn, c.H, c.W, c.p, NULL);
    ok(memcmp(cr, cf, ncols * 4) == 0, "im2col bf16 images -> fp32 columns exact");
    be->im2col(be, ch, DT_BF16, c.img, DT_F32, c.idx, c.Bn, c.H, c.W, c.p, NULL);
    be->im2col(be, cr, DT_F32, c.img, DT_F32, c.idx, c.Bn, c.H, c.W, c.p, NULL);
    check_bf16_of("im2col fp32 images -> bf16 columns", ch, cr, ncols);
    float *cn = tf(ncols);
    be->im2col(be, cn, DT_F32, c.img + (size_t)c.idx[0] * 3 * c.H * c.W, DT_F32, NULL, 1, c.H, c.W, c.p, NULL);
    ok(memcmp(cn, cr, (size_t)c.P * kk * 4) == 0, "im2col with idx NULL takes the images as the batch");

    /* gradients of the patch embedding parameters */
    pe_obj(&c);
    be->im2col(be, c.cols, DT_F32, c.img, DT_F32, c.idx, c.Bn, c.H, c.W, c.p, NULL);
    float *dw = tf((size_t)c.D * kk), *db = tf(c.D);
    be->zero(be, dw, (size_t)c.D * kk * 4);
    be->zero(be, db, (size_t)c.D * 4);
    be->matmul_bwd(be, NULL, dw, db, c.R, DT_F32, c.cols, c.w, DT_F32, c.Bn * c.P, c.D, kk);
    fd_check("patch embedding dweight (im2col+matmul)", pe_obj, &c, c.w, (size_t)c.D * kk, dw, 1e-2, 1e-3, NULL);
    fd_check("patch embedding dbias", pe_obj, &c, c.bias, c.D, db, 1e-2, 1e-3, NULL);
    tfree_all();
}

/* ---- hand loss --------------------------------------------------------------------------- */

#define HJ 21
typedef struct {
    int Bn;
    float *pred, *conf, *joints;
    uint8_t *valid, *has;
    int32_t *idx;
    int which;   /* 0: joint + 0.3 pair (what dpred differentiates); 1: total */
} hl_ctx;

static double hl_obj(void *p) {
    hl_ctx *c = p;
    hand_loss_t o;
    be->hand_loss(be, &o, NULL, NULL, c->pred, c->conf, c->joints, c->valid, c->has, c->idx, c->Bn, NULL);
    return c->which == 0 ? (double)o.joint + 0.3 * (double)o.pair : (double)o.total;
}

static void test_hand_loss(void) {
    /* a hand-computed case: one sample, joints 0 and 4 valid */
    {
        float *pred = tf(63), *conf = tf(21), *gt = tf(63), *dp = tf(63), *dc = tf(21);
        uint8_t *valid = talloc(21);
        memset(valid, 0, 21);
        valid[0] = valid[4] = 1;
        for (int i = 0; i < 63; i++) gt[i] = frand(-0.1f, 0.1f);
        gt[0] = 0; gt[1] = 0; gt[2] = 0.5f;
        gt[12] = 0.1f; gt[13] = 0; gt[14] = 0.5f;
        memcpy(pred, gt, 63 * 4);
        pred[12] = 0.13f; pred[13] = 0.04f;
        for (int j = 0; j < 21; j++) conf[j] = 0;
        hand_loss_t o;
        be->hand_loss(be, &o, dp, dc, pred, conf, gt, valid, NULL, NULL, 1, NULL);
        double e4 = sqrt(pow((double)0.13f - (double)0.1f, 2) + pow((double)0.04f, 2));
        double joint = (1 * 1e-6 + 10 * e4) / 11;
        double dpn = sqrt(pow((double)0.13f, 2) + pow((double)0.04f, 2)), dg = (double)0.1f;
        double pair = fabs(dpn - dg), conf_l = log(2.0);
        is_close(o.joint, joint, 1e-6, "hand_loss joint: fingertip 4 weighted 10 against wrist 1");
        is_close(o.pair, pair, 1e-6, "hand_loss pair: |d_pred - d_gt| of the one valid pair");
        is_close(o.conf, conf_l, 1e-6, "hand_loss conf: BCE of logit 0 is log 2");
        is_close(o.total, joint + 0.3 * pair + 0.1 * conf_l, 1e-6, "hand_loss total = joint + 0.3 pair + 0.1 conf");
        is_close(o.valid, 2, 0, "hand_loss counts valid joints");
        double y4 = exp(-e4 / 0.02);
        is_close(dc[4], 0.1 * (0.5 - y4) / 2, 1e-6, "hand_loss dconf = 0.1 (sigmoid - exp(-e/20mm)) / valid");
        int zero = 1;
        for (int j = 0; j < 21; j++)
            if (j != 0 && j != 4) {
                zero &= dc[j] == 0;
                for (int k = 0; k < 3; k++) zero &= dp[j * 3 + k] == 0;
            }
        ok(zero, "hand_loss gradients of invalid joints are exactly 0");
        tfree_all();
    }
    /* a batch with masked samples and joints, by finite differences */
    {
        hl_ctx c = {.Bn = 5};
        const int N = 7;
        c.pred = tf((size_t)c.Bn * 63);
        c.conf = rnew((size_t)c.Bn * 21, -2, 2);
        c.joints = tf((size_t)N * 63);
        c.valid = talloc((size_t)N * 21);
        c.has = talloc(N);
        c.idx = talloc(sizeof(int32_t) * c.Bn);
        memset(c.valid, 1, (size_t)N * 21);
        memset(c.has, 1, N);
        int32_t idx[5] = {3, 0, 6, 2, 5};
        memcpy(c.idx, idx, sizeof idx);
        c.has[2] = 0;                                        /* batch row 3 has no hand */
        c.valid[0 * 21 + 4] = c.valid[0 * 21 + 7] = 0;      /* batch row 1 */
        c.valid[6 * 21 + 20] = 0;                            /* batch row 2 */
        for (int s = 0; s < N; s++) {
            float cx = frand(-0.2f, 0.2f), cy = frand(-0.2f, 0.2f), cz = frand(0.4f, 0.8f);
            for (int j = 0; j < 21; j++) {
                c.joints[s * 63 + j * 3 + 0] = cx + frand(-0.08f, 0.08f);
                c.joints[s * 63 + j * 3 + 1] = cy + frand(-0.08f, 0.08f);
                c.joints[s * 63 + j * 3 + 2] = cz + frand(-0.08f, 0.08f);
            }
        }
        for (int b = 0; b < c.Bn; b++)
            for (int i = 0; i < 63; i++) c.pred[b * 63 + i] = c.joints[idx[b] * 63 + i] + frand(-0.05f, 0.05f);
        float *dp = rnew((size_t)c.Bn * 63, 50, 60), *dc = rnew((size_t)c.Bn * 21, 50, 60);
        hand_loss_t o;
        be->hand_loss(be, &o, dp, dc, c.pred, c.conf, c.joints, c.valid, c.has, c.idx, c.Bn, NULL);
        is_close(o.valid, 4 * 21 - 3, 0, "hand_loss valid joints with masks");
        int masked_zero = 1;
        for (int i = 0; i < 63; i++) masked_zero &= dp[3 * 63 + i] == 0;
        for (int j = 0; j < 21; j++) masked_zero &= dc[3 * 21 + j] == 0;
        for (int k = 0; k < 3; k++) masked_zero &= dp[1 * 63 + 4 * 3 + k] == 0 && dp[1 * 63 + 7 * 3 + k] == 0 && dp[2 * 63 + 20 * 3 + k] == 0;
        masked_zero &= dc[1 * 21 + 4] == 0 && dc[1 * 21 + 7] == 0 && dc[2 * 21 + 20] == 0;
        ok(masked_zero, "hand_loss: masked samples and joints get exactly zero gradient");

        /* data parallelism: the batch split across two "ranks" (rows 0-1 and 2-4), each
         * normalized by the whole batch's hand_norm_t: their terms and gradients sum to the
         * whole batch's (up to float order) */
        {
            hand_norm_t nrm = {0, 0, 0};
            for (int b = 0; b < c.Bn; b++)
                if (c.has[idx[b]]) hand_norm_add(&nrm, c.valid + (size_t)idx[b] * 21);
            float *dp2 = rnew((size_t)c.Bn * 63, 50, 60), *dc2 = rnew((size_t)c.Bn * 21, 50, 60);
            hand_loss_t a, bb;
            be->hand_loss(be, &a, dp2, dc2, c.pred, c.conf, c.joints, c.valid, c.has, c.idx, 2, &nrm);
            be->hand_loss(be, &bb, dp2 + 2 * 63, dc2 + 2 * 21, c.pred + 2 * 63, c.conf + 2 * 21, c.joints, c.valid,
                          c.has, c.idx + 2, 3, &nrm);
            double dmax = 0;
            for (int i = 0; i < c.Bn * 63; i++) dmax = fmax(dmax, fabs(dp2[i] - dp[i]));
            for (int i = 0; i < c.Bn * 21; i++) dmax = fmax(dmax, fabs(dc2[i] - dc[i]));
            ok(nrm.nj == 4 * 21 - 3 && fabs(a.total + bb.total - o.total) < 1e-6 &&
               fabs(a.joint + bb.joint - o.joint) < 1e-6 && fabs(a.pair + bb.pair - o.pair) < 1e-6 &&
               fabs(a.conf + bb.conf - o.conf) < 1e-6 && a.valid + bb.valid == o.valid && dmax < 1e-7,
               "hand_loss with the global batch's normalizers: two halves sum to the whole (terms %.3g + %.3g = "
               "%.3g; gradients within %.2g)", a.total, bb.total, o.total, dmax);
            hand_loss_t z;
            be->hand_loss(be, &z, dp2, dc2, c.pred + 3 * 63, c.conf + 3 * 21, c.joints, c.valid, c.has, c.idx + 3, 1,
                          &nrm);   /* batch row 3: no hand */
            int zero = z.total == 0 && z.valid == 0;
            for (int i = 0; i < 63; i++) zero &= dp2[i] == 0;
            ok(zero, "hand_loss: a rank whose samples have no hand contributes zero under the global normalizers");
        }

        /* skip coordinates whose perturbation could cross a kink of |d_pred - d_gt| */
        const double h = 1e-4;
        uint8_t *skip = calloc((size_t)c.Bn * 63, 1);
        for (int b = 0; b < c.Bn; b++) {
            int s = idx[b];
            for (int i = 0; i < 21; i++)
                for (int j = 0; j < 21; j++) {
                    if (i == j || !c.valid[s * 21 + i] || !c.valid[s * 21 + j]) continue;
                    double p2 = 0, q2 = 0;
                    for (int k = 0; k < 3; k++) {
                        double a = (double)c.pred[b * 63 + i * 3 + k] - c.pred[b * 63 + j * 3 + k];
                        double g = (double)c.joints[s * 63 + i * 3 + k] - c.joints[s * 63 + j * 3 + k];
                        p2 += a * a;
                        q2 += g * g;
                    }
                    if (fabs(sqrt(p2) - sqrt(q2)) < 3 * h)
                        for (int k = 0; k < 3; k++) skip[b * 63 + i * 3 + k] = 1;
                }
        }
        c.which = 0;
        fd_check("hand_loss dpred (joint + 0.3 pair; the conf target is detached)", hl_obj, &c, c.pred,
                 (size_t)c.Bn * 63, dp, h, 1e-2, skip);
        c.which = 1;
        fd_check("hand_loss dconf_logit (total)", hl_obj, &c, c.conf, (size_t)c.Bn * 21, dc, 1e-2, 1e-2, NULL);
        free(skip);

        /* prediction exactly on the labels: finite loss and gradients (eps inside the sqrt) */
        for (int b = 0; b < c.Bn; b++) memcpy(c.pred + b * 63, c.joints + idx[b] * 63, 63 * 4);
        be->hand_loss(be, &o, dp, dc, c.pred, c.conf, c.joints, c.valid, c.has, c.idx, c.Bn, NULL);
        int fin = isfinite(o.total) && o.joint < 1e-5f && o.pair < 1e-5f;
        for (int i = 0; i < c.Bn * 63; i++) fin &= isfinite(dp[i]);
        ok(fin, "hand_loss at pred == labels: joint %.2g pair %.2g, gradients finite", o.joint, o.pair);

        /* no valid joint at all: zeros, no NaN */
        memset(c.has, 0, N);
        be->hand_loss(be, &o, dp, dc, c.pred, c.conf, c.joints, c.valid, c.has, c.idx, c.Bn, NULL);
        int zeros = o.total == 0 && o.joint == 0 && o.pair == 0 && o.conf == 0 && o.valid == 0;
        for (int i = 0; i < c.Bn * 63; i++) zeros &= dp[i] == 0;
        for (int i = 0; i < c.Bn * 21; i++) zeros &= dc[i] == 0;
        ok(zeros, "hand_loss with no valid joint: every term and gradient is 0");
        tfree_all();
    }
}

/* ---- optimizer and reductions --------------------------------------------------------- */

static void test_adamw(void) {
    const size_t n = 8;
    float *p = rnew(n, -1, 1), *g = rnew(n, -1, 1), *m = rnew(n, -0.1f, 0.1f), *v = rnew(n, 0, 0.01f);
    float *p0 = copy_of(p, n), *m0 = copy_of(m, n), *v0 = copy_of(v, n);
    bf16 *pc = th(n);
    for (size_t i = 0; i < n; i++) pc[i] = 0x1234;
    adamw_seg_t segs[2] = {{.off = 0, .n = 3, .lr = 1e-2f, .wd = 0.1f}, {.off = 5, .n = 2, .lr = 1e-3f, .wd = 0}};
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, gs = 0.5f;
    const int t = 3;
    be->adamw(be, p, pc, DT_BF16, g, m, v, segs, 2, b1, b2, eps, t, gs);
    int in_seg[8] = {1, 1, 1, 0, 0, 1, 1, 0};
    double lr[8] = {1e-2, 1e-2, 1e-2, 0, 0, 1e-3, 1e-3, 0}, wd[8] = {0.1, 0.1, 0.1, 0, 0, 0, 0, 0};
    int good = 1, untouched = 1, pc_ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (!in_seg[i]) {
            untouched &= p[i] == p0[i] && m[i] == m0[i] && v[i] == v0[i] && pc[i] == 0x1234;
            continue;
        }
        double gg = (double)g[i] * gs;
        double mm = b1 * (double)m0[i] + (1 - (double)b1) * gg;
        double vv = b2 * (double)v0[i] + (1 - (double)b2) * gg * gg;
        double mh = mm / (1 - pow(b1, t)), vh = vv / (1 - pow(b2, t));
        double pw = p0[i] - lr[i] * (mh / (sqrt(vh) + eps) + wd[i] * p0[i]);
        good &= fabs(p[i] - pw) <= 1e-6 * fmax(1, fabs(pw)) && fabs(m[i] - mm) <= 1e-6 * fabs(mm) + 1e-9 &&
                fabs(v[i] - vv) <= 1e-6 * fabs(vv) + 1e-12;
        pc_ok &= pc[i] == f32_to_bf16(p[i]);
    }
    ok(good, "adamw step 3 with two groups and gscale matches the hand-computed update");
    ok(untouched, "adamw leaves elements outside the segments alone");
    ok(pc_ok, "adamw writes the bf16 working copy as f32_to_bf16 of the master");

    /* first step from zero moments: the update is lr * (sign(g) + wd * p) up to eps */
    float q[2] = {0.5f, -2.0f}, gq[2] = {3.0f, -0.25f}, mq[2] = {0, 0}, vq[2] = {0, 0}, qc[2];
    adamw_seg_t s1 = {.off = 0, .n = 2, .lr = 0.1f, .wd = 0.01f};
    be->adamw(be, q, qc, DT_F32, gq, mq, vq, &s1, 1, 0.9f, 0.999f, 1e-8f, 1, 1.0f);
    is_close(q[0], 0.5 - 0.1 * (1 + 0.01 * 0.5), 1e-6, "adamw t=1: p -= lr (mhat/sqrt(vhat) + wd p), positive g");
    is_close(q[1], -2.0 - 0.1 * (-1 + 0.01 * -2.0), 1e-6, "adamw t=1: negative g");
    ok(qc[0] == q[0] && qc[1] == q[1], "adamw fp32 working copy equals the master");
    tfree_all();
}

static void test_sumsq_scale(void) {
    const size_t n = 100003;
    float *x = rnew(n + 1, -3, 3);
    double s1 = be->sumsq(be, x, n), s2 = be->sumsq(be, x, n);
    float *y = tf(n + 1);
    memcpy(y + 1, x, n * 4);      /* another alignment, same values */
    double s3 = be->sumsq(be, y + 1, n);
    ok(memcmp(&s1, &s2, 8) == 0 && memcmp(&s1, &s3, 8) == 0, "sumsq is bitwise deterministic (repeat, other alignment)");
    long double ref = 0;
    for (size_t i = 0; i < n; i++) ref += (long double)x[i] * x[i];
    is_close(s1, (double)ref, 1e-12, "sumsq accumulates in double");
    is_close(be->sumsq(be, x, 0), 0, 0, "sumsq of nothing is 0");
    float z[3] = {1.5f, -2, 4};
    be->scale(be, z, 0.5f, 3);
    ok(z[0] == 0.75f && z[1] == -1 && z[2] == 2, "scale multiplies in place");
    tfree_all();
}

static void test_stats(void) {
    float v[10] = {1.5f, -2, 0, -0.0f, NAN, INFINITY, -INFINITY, 3, NAN, 0};
    double o[7];
    be->stats(be, o, v, DT_F32, 10);
    ok(o[0] == 2.5 && o[1] == 15.25 && o[2] == -2 && o[3] == 3 && o[4] == 2 && o[5] == 2 && o[6] == 3,
       "stats fp32: sum %g sumsq %g min %g max %g nan %g inf %g zero %g", o[0], o[1], o[2], o[3], o[4], o[5], o[6]);
    bf16 h[10];
    for (int i = 0; i < 10; i++) h[i] = f32_to_bf16(v[i]);
    double oh[7];
    be->stats(be, oh, h, DT_BF16, 10);
    ok(memcmp(o, oh, sizeof o) == 0, "stats bf16 equals fp32 on exactly representable values");
    float nn[3] = {NAN, NAN, INFINITY};
    be->stats(be, o, nn, DT_F32, 3);
    ok(o[0] == 0 && o[2] == 0 && o[3] == 0 && o[4] == 2 && o[5] == 1 && o[6] == 0,
       "stats without a finite value: min = max = 0, counts right");
}

/* ---- data ops --------------------------------------------------------------------------- */

static void test_images_from_u8(void) {
    const int n = 2, H = 3, W = 4;
    size_t npx = (size_t)n * H * W;
    uint8_t *src = talloc(npx * 3);
    for (size_t i = 0; i < npx * 3; i++) src[i] = (uint8_t)(i * 37 + 11);
    src[0] = 255;               /* image 0, pixel (0,0), red   */
    src[1] = 0;                 /*                       green */
    src[3 * (W + 1) + 2] = 51;  /* image 0, pixel (1,1), blue  */
    const float mean[3] = {0.5f, 0.25f, 0.0f}, sd[3] = {0.25f, 0.5f, 1.0f};
    float *d = tf(npx * 3);
    bf16 *dh = th(npx * 3);
    be->images_from_u8(be, d, DT_F32, src, n, H, W, mean, sd);
    be->images_from_u8(be, dh, DT_BF16, src, n, H, W, mean, sd);
    int exact = 1;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    uint8_t u = src[(((size_t)i * H + y) * W + x) * 3 + c];
                    float want = ((float)u / 255.0f - mean[c]) / sd[c];
                    exact &= d[(((size_t)i * 3 + c) * H + y) * W + x] == want;
                }
    ok(exact, "images_from_u8 fp32: (u/255 - mean)/std per channel, HWC -> CHW");
    ok(d[0] == 2.0f && d[(size_t)1 * H * W] == -0.5f && d[(size_t)2 * H * W + W + 1] == 0.2f,
       "images_from_u8 exact values (255 -> 2, 0 -> -0.5, 51 -> 0.2)");
    check_bf16_of("images_from_u8 bf16", dh, d, npx * 3);
    tfree_all();
}

static void test_bf16_rounding(void) {
    static const struct { uint32_t in; uint16_t out; const char *what; } cases[] = {
        {0x3f800000u, 0x3f80, "1.0 exact"},
        {0x3f808000u, 0x3f80, "tie to even (down)"},
        {0x3f818000u, 0x3f82, "tie to even (up)"},
        {0x3f808001u, 0x3f81, "above the tie rounds up"},
        {0x3f807fffu, 0x3f80, "below the tie rounds down"},
        {0xbf818000u, 0xbf82, "negative tie to even"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX rounds to +Inf"},
        {0x7f800000u, 0x7f80, "+Inf"},
        {0xff800000u, 0xff80, "-Inf"},
        {0x00018000u, 0x0002, "subnormal tie to even"},
        {0x80000000u, 0x8000, "-0"},
    };
    int all = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float f;
        memcpy(&f, &cases[i].in, 4);
        bf16 r = f32_to_bf16(f);
        if (r != cases[i].out) {
            all = 0;
            diag("  %s: 0x%08x -> 0x%04x, want 0x%04x", cases[i].what, cases[i].in, r, cases[i].out);
        }
    }
    ok(all, "f32_to_bf16 rounds to nearest even (ties, overflow, Inf, subnormals, -0)");
    uint32_t nans[3] = {0x7fc00000u, 0x7f800001u, 0xffffffffu};
    int nan_ok = 1;
    for (int i = 0; i < 3; i++) {
        float f;
        memcpy(&f, &nans[i], 4);
        nan_ok &= isnan(bf16_to_f32(f32_to_bf16(f)));
    }
    ok(nan_ok, "f32_to_bf16 keeps NaN a NaN (quiet, signalling with low payload, negative)");

    /* cast round trips through the backend */
    const size_t n = 65536;
    bf16 *all16 = th(n), *back = th(n);
    float *f = tf(n);
    for (size_t i = 0; i < n; i++) all16[i] = (bf16)i;
    be->cast(be, f, DT_F32, all16, DT_BF16, n);
    be->cast(be, back, DT_BF16, f, DT_F32, n);
    int rt = 1;
    for (size_t i = 0; i < n; i++) {
        int isn = isnan(bf16_to_f32(all16[i]));
        rt &= isn ? isnan(bf16_to_f32(back[i])) : back[i] == all16[i];
    }
    ok(rt, "cast bf16 -> fp32 -> bf16 is the identity on all 65536 values (NaN stays NaN)");
    float *x = rnew(1000, -1e4f, 1e4f), *y = tf(1000);
    bf16 *xh = th(1000);
    be->cast(be, xh, DT_BF16, x, DT_F32, 1000);
    be->cast(be, y, DT_F32, xh, DT_BF16, 1000);
    int rn = 1;
    for (int i = 0; i < 1000; i++) rn &= y[i] == bf16_round(x[i]);
    ok(rn, "cast fp32 -> bf16 -> fp32 equals bf16_round");
    float *z = tf(1000);
    be->cast(be, z, DT_F32, x, DT_F32, 1000);
    bf16 *zh = th(1000);
    be->cast(be, zh, DT_BF16, xh, DT_BF16, 1000);
    ok(memcmp(z, x, 4000) == 0 && memcmp(zh, xh, 2000) == 0, "cast to the same dtype copies");
    tfree_all();
}

static void test_gather_copy(void) {
    const size_t row = 12;
    uint8_t *src = talloc(4 * row), *dst = talloc(4 * row);
    for (size_t i = 0; i < 4 * row; i++) src[i] = (uint8_t)(i * 7 + 1);
    int32_t *idx = talloc(4 * sizeof(int32_t));
    idx[0] = 2; idx[1] = 0; idx[2] = 2; idx[3] = 3;
    be->gather_rows(be, dst, src, idx, 4, row);
    int g = 1;
    for (int i = 0; i < 4; i++) g &= memcmp(dst + i * row, src + idx[i] * row, row) == 0;
    ok(g, "gather_rows copies whole rows by index (repeats allowed)");
    uint8_t host[48];
    be->download(be, host, dst, 48);
    be->zero(be, dst, 48);
    int zero = 1;
    for (int i = 0; i < 48; i++) zero &= dst[i] == 0;
    be->upload(be, dst, host, 48);
    be->copy(be, src, dst, 48);
    be->sync(be);
    ok(zero && memcmp(src, host, 48) == 0, "upload/download/copy/zero move bytes");
    tfree_all();
}

/* Empty and degenerate shapes: no access, no crash, and the sums of nothing. */
static void test_empty_shapes(void) {
    float *bias = rnew(3, -1, 1), *out = rnew(6, 5, 6), *dinp = rnew(4, 5, 6), *db = tf(3);
    float one[1] = {1};
    be->matmul_fwd(be, out, DT_F32, one, one, bias, DT_F32, 2, 3, 0);
    ok(out[0] == bias[0] && out[5] == bias[2], "matmul_fwd with K=0 is the bias");
    be->matmul_bwd(be, dinp, NULL, NULL, one, DT_F32, one, one, DT_F32, 2, 0, 2);
    ok(dinp[0] == 0 && dinp[3] == 0, "matmul_bwd with N=0 gives dinp = 0");
    be->zero(be, db, 12);
    be->matmul_bwd(be, NULL, NULL, db, one, DT_F32, one, one, DT_F32, 0, 3, 2);
    ok(db[0] == 0 && db[2] == 0, "matmul_bwd with M=0 adds nothing");
    be->matmul_fwd(be, out, DT_F32, one, one, NULL, DT_F32, 0, 3, 4);
    be->attention_fwd(be, out, NULL, one, DT_F32, 0, 3, 1, 1);
    be->layernorm_fwd(be, out, DT_F32, NULL, NULL, one, one, one, 0, 4, 1e-6f);
    be->gelu_fwd(be, out, DT_BF16, one, DT_F32, 0);
    hand_loss_t o = {.total = 7};
    be->hand_loss(be, &o, out, NULL, one, one, one, NULL, NULL, NULL, 0, NULL);
    ok(o.total == 0 && o.valid == 0, "hand_loss of an empty batch is 0");
    double st[7];
    be->stats(be, st, one, DT_F32, 0);
    ok(st[0] == 0 && st[2] == 0 && st[3] == 0 && st[4] == 0, "stats of nothing");
    tfree_all();
}

/* ---- memory, sharing, backend selection ---------------------------------------------- */

static void test_memory_and_sharing(void) {
    size_t fr = 0, tot = 0;
    int mi = be->mem_info(be, &fr, &tot);
    ok(mi == 0 && tot > 0 && fr <= tot, "mem_info: %zu of %zu bytes available", fr, tot);
    const char *dn = be->device_name(be);
    ok(dn && dn[0], "device_name: \"%s\"", dn ? dn : "(null)");
    void *a = be->alloc(be, 1000), *h = be->host_alloc(be, 3);
    ok(a && h && ((uintptr_t)a % 64) == 0 && ((uintptr_t)h % 64) == 0, "alloc and host_alloc are 64-byte aligned");
    be->free(be, a);
    be->host_free(be, h);

    const size_t n = 1 << 16;
    char handle[BACKEND_HANDLE_MAX];
    uint32_t *p = be->shared_alloc(be, n * 4, handle);
    ok(p != NULL, "shared_alloc of %zu bytes (handle %s)", n * 4, p ? handle : be->err);
    if (!p) return;
    char handle2[BACKEND_HANDLE_MAX];
    void *p2 = be->shared_alloc(be, 64, handle2);
    ok(p2 && strcmp(handle, handle2) != 0, "two shared allocations get distinct handles");
    if (p2) be->shared_free(be, p2, 64, handle2);
    for (size_t i = 0; i < n; i++) p[i] = (uint32_t)(i * 2654435761u);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        uint32_t *q = be->shared_open(be, handle, n * 4);
        int code = 0;
        if (!q) code = 3;
        for (size_t i = 0; !code && i < n; i++)
            if (q[i] != (uint32_t)(i * 2654435761u)) code = 4;
        if (!code) {
            for (size_t i = 0; i < n; i++) q[i] = ~q[i];
            be->shared_close(be, q, n * 4);
        }
        _exit(code);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    ok(pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "a forked child opens the handle and sees the same bytes (exit %d)",
       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    int back = 1;
    for (size_t i = 0; i < n; i++) back &= p[i] == ~(uint32_t)(i * 2654435761u);
    ok(back, "the child's writes are visible to the owner");
    ok(be->shared_open(be, handle, n * 8) == NULL && strstr(be->err, "expected") != NULL,
       "shared_open of more bytes than exist fails: %s", be->err);
    be->shared_free(be, p, n * 4, handle);
    ok(be->shared_open(be, handle, n * 4) == NULL && be->err[0], "after shared_free the handle is gone: %s", be->err);
    ok(be->shared_open(be, "../etc/passwd", 16) == NULL && be->err[0], "a malformed handle is refused: %s", be->err);
    ok(be->shared_alloc(be, 0, handle) == NULL && be->err[0], "shared_alloc of 0 bytes is refused: %s", be->err);
    /* more than /dev/shm holds: an error now, not a SIGBUS on first touch */
    struct statvfs vs;
    if (statvfs("/dev/shm", &vs) == 0 && vs.f_blocks > 0) {
        size_t big = (size_t)vs.f_blocks * vs.f_frsize + ((size_t)1 << 30);
        void *q = be->shared_alloc(be, big, handle);
        ok(q == NULL && be->err[0], "shared_alloc beyond /dev/shm's size fails cleanly: %s", q ? "(allocated)" : be->err);
        if (q) be->shared_free(be, q, big, handle);
    }
}

static void test_backend_open(void) {
    char err[BACKEND_ERR_MAX];
    backend_t *b = backend_open("cpu", 0, err, sizeof err);
    ok(b && strcmp(b->name, "cpu") == 0, "backend_open(\"cpu\")");
    if (b) b->destroy(b);
    b = backend_open("auto", 0, err, sizeof err);
    ok(b != NULL, "backend_open(\"auto\") gives a backend (%s)", b ? b->name : err);
    if (b) b->destroy(b);
    b = backend_open("tpu", 0, err, sizeof err);
    ok(!b && strstr(err, "tpu"), "backend_open of an unknown name fails: %s", err);
#ifndef TRAIND_CUDA
    b = backend_open("cuda", 0, err, sizeof err);
    ok(!b && err[0], "backend_open(\"cuda\") without CUDA fails cleanly: %s", err);
#endif
}

/* ---- the MLP's fused ops: matmul_gelu_fwd, matmul_dgelu ------------------------- */

/* The objective through fc2 and the GELU before it: sum(R * (gelu(x + bias) @ w^T)),
 * x [M,K], bias [K], w [N,K]: its gradient w.r.t. x (and bias, summed over rows) is
 * matmul_dgelu(dout = R, w, x + bias). */
typedef struct {
    int M, N, K;
    float *x, *bias, *w, *R, *pre, *act, *out;
} mg_ctx;

static double mg_obj(void *p) {
    mg_ctx *c = p;
    for (int m = 0; m < c->M; m++)
        for (int k = 0; k < c->K; k++) c->pre[m * c->K + k] = c->x[m * c->K + k] + c->bias[k];
    be->gelu_fwd(be, c->act, DT_F32, c->pre, DT_F32, (size_t)c->M * c->K);
    be->matmul_fwd(be, c->out, DT_F32, c->act, c->w, NULL, DT_F32, c->M, c->N, c->K);
    return obj_dot(c->out, c->R, (size_t)c->M * c->N);
}

static void test_matmul_gelu(void) {
    /* forward: the product, then the GELU, into tmp and out — the same bits as the two ops */
    const int M = 19, N = 24, K = 33;
    float *inp = rnew((size_t)M * K, -1, 1), *w = rnew((size_t)N * K, -0.5f, 0.5f), *bias = rnew(N, -1, 1);
    float *tmp = tf((size_t)M * N), *out = tf((size_t)M * N), *r1 = tf((size_t)M * N), *r2 = tf((size_t)M * N);
    be->matmul_gelu_fwd(be, out, DT_F32, tmp, inp, w, bias, DT_F32, M, N, K);
    be->matmul_fwd(be, r1, DT_F32, inp, w, bias, DT_F32, M, N, K);
    be->gelu_fwd(be, r2, DT_F32, r1, DT_F32, (size_t)M * N);
    ok(!memcmp(out, r2, (size_t)M * N * 4) && !memcmp(tmp, r1, (size_t)M * N * 4),
       "matmul_gelu_fwd fp32 = matmul_fwd into tmp, then gelu_fwd, bitwise");
    bf16 *ih = to_bf16(inp, (size_t)M * K), *wh = to_bf16(w, (size_t)N * K);
    bf16 *o16 = th((size_t)M * N), *t16 = th((size_t)M * N), *q1 = th((size_t)M * N), *q2 = th((size_t)M * N);
    be->matmul_gelu_fwd(be, o16, DT_BF16, t16, ih, wh, bias, DT_BF16, M, N, K);
    be->matmul_fwd(be, q1, DT_BF16, ih, wh, bias, DT_BF16, M, N, K);
    be->gelu_fwd(be, q2, DT_BF16, q1, DT_BF16, (size_t)M * N);
    ok(!memcmp(o16, q2, (size_t)M * N * 2), "matmul_gelu_fwd bf16 = matmul_fwd (rounded) then gelu_fwd, bitwise");

    /* backward: g = (dout @ w) * gelu'(x) and the bias gradient, against central differences */
    mg_ctx c = {.M = 5, .N = 4, .K = 7};
    size_t mk = (size_t)c.M * c.K, mn = (size_t)c.M * c.N;
    c.x = rnew(mk, -2, 2);
    c.bias = rnew(c.K, -0.5f, 0.5f);
    c.w = rnew((size_t)c.N * c.K, -1, 1);
    c.R = rnew(mn, -1, 1);
    c.pre = tf(mk);
    c.act = tf(mk);
    c.out = tf(mn);
    mg_obj(&c);   /* pre = x + bias */
    float *g = rnew(mk, 50, 60), *t = rnew(mk, 50, 60);   /* overwritten */
    float *db0 = rnew(c.K, -1, 1), *db = copy_of(db0, c.K);  /* accumulated */
    float *xpre = copy_of(c.pre, mk);
    be->matmul_dgelu(be, g, DT_F32, db, t, c.R, c.w, xpre, DT_F32, c.M, c.N, c.K);
    for (int k = 0; k < c.K; k++) db[k] -= db0[k];
    fd_check("matmul_dgelu g = d/dx of sum(R * (gelu(x) @ w^T))", mg_obj, &c, c.x, mk, g, 1e-2, 2e-3, NULL);
    fd_check("matmul_dgelu dbias += (the bias before the GELU)", mg_obj, &c, c.bias, c.K, db, 1e-2, 2e-3, NULL);
    /* bf16 operands, bf16 g: the fp32 values of the bf16 operands, the product rounded to
     * bf16 (autocast's linear output), then GELU' in fp32 and g rounded once */
    bf16 *dh = to_bf16(c.R, mn), *wh2 = to_bf16(c.w, (size_t)c.N * c.K), *xh = to_bf16(xpre, mk), *g16 = th(mk);
    float *dr = copy_of(c.R, mn), *wr = copy_of(c.w, (size_t)c.N * c.K), *xr = copy_of(xpre, mk);
    round_bf16_inplace(dr, mn);
    round_bf16_inplace(wr, (size_t)c.N * c.K);
    round_bf16_inplace(xr, mk);
    float *gref = tf(mk), *db1 = copy_of(db0, c.K), *db2 = copy_of(db0, c.K);
    be->matmul_dgelu(be, g16, DT_BF16, db1, t, dh, wh2, xh, DT_BF16, c.M, c.N, c.K);
    float *p = tf(mk);
    be->matmul_bwd(be, p, NULL, NULL, dr, DT_F32, NULL, wr, DT_F32, c.M, c.N, c.K);
    round_bf16_inplace(p, mk);
    be->gelu_bwd(be, gref, DT_F32, db2, p, xr, DT_F32, c.M, c.K);
    check_bf16_of("matmul_dgelu bf16 g", g16, gref, mk);
    ok(!memcmp(db1, db2, (size_t)c.K * 4), "matmul_dgelu bf16: the bias gradient of the f32 values, as fp32's");
}

int main(void) {
    char err[BACKEND_ERR_MAX];
    be = backend_cpu_create(err, sizeof err);
    if (!be) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    test_bf16_rounding();
    test_matmul();
    test_layernorm();
    test_attention();
    test_gelu();
    test_matmul_gelu();
    test_layerscale();
    test_layerscale_layernorm();
    test_embed();
    test_token_slice();
    test_patch_embed();
    test_hand_loss();
    test_adamw();
    test_sumsq_scale();
    test_stats();
    test_images_from_u8();
    test_gather_copy();
    test_empty_shapes();
    test_memory_and_sharing();
    test_backend_open();
    be->destroy(be);
    return tap_done();
}
