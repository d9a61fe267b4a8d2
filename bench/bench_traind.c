/* bench/bench_traind.c — traind's side of the SPEC §8 benchmarks.
 *
 * Measures, on one backend (cuda on the GPU machine; cpu at tiny sizes for
 * debugging), what bench/torch_ref.py measures for PyTorch, and prints one
 * `RESULT {json}` line per measurement in the same shape (bench, impl, size,
 * batch, image, step_s, images_per_s, peak_mem_gb, gb_per_s, ...), so that
 * bench/compare.py can put both side by side:
 *
 *   bench_traind [--backend cuda|cpu] [--device N] train --size large --batch 32
 *                [--image 224] [--freeze 12] [--warmup 5] [--iters 20] [--phase-iters 5]
 *   bench_traind ... eval --size large --batch 256 [--image 224]
 *   bench_traind ... load --gb 4 [--image 224] [--dir DIR] [--reps 3] [--keep]
 *
 * train: the model/stage API used directly, the way gpu/stage_train.c runs a
 *   step: bf16 plan (fp32 master, bf16 working copy, fp32 grads), the frozen
 *   prefix (embeddings + blocks 0..freeze-1), hand head; images from a
 *   backend-resident bf16 dataset (store/dataset.h layout, max(4·batch, 512)
 *   random samples) gathered by a random index per step. One step = forward
 *   (gather + conversion fused into im2col) → hand_loss → zero grads →
 *   backward → global grad norm (sumsq) + clip → AdamW (master + working
 *   copy). Warm-up steps, then the median of timed steps (backend sync +
 *   monotonic clock around each step). A second, instrumented pass syncs
 *   between the phases to say where the time goes (forward / loss / backward /
 *   grad norm / optimizer). The model is freshly initialized at the working
 *   grid: traind interpolates a 518-px position table ONCE when it loads
 *   weights (gpu/model.c), so the per-step work is the same as with an
 *   interpolated table, whereas HF interpolates on every forward.
 *   --profile N: N more steps with every op timed apart (sync around each
 *   call; matrix products per shape with their TFLOP/s) and the bf16 matrix
 *   ceiling measured on 8192^3 (cuda): a `RESULT {"bench":"profile",...}` line.
 * --augment (train): then the same number of plain and augmented steps
 *   interleaved on the same model (the augmented ones as gpu/stage_train.c
 *   runs them: per-sample draw on the host, upload, augmented gather,
 *   transformed labels; every kind on, per-sample intrinsics): a
 *   `RESULT {"bench":"augment_cost",...}` line with both medians and the cost
 *   in percent (instead of the "train" line); the profile steps (--profile)
 *   then run augmented.
 * eval: forward of the eval plan (bf16 parameters, no gradients) at the batch.
 * peak_mem_gb: the largest drop of the backend's free memory (mem_info)
 *   from before the dataset and model were allocated to any point after a
 *   step: the resident samples, parameters, gradients, moments, activations
 *   and workspaces (torch_ref reports max_memory_allocated, which counts its
 *   resident samples, parameters, activations and workspaces too).
 * load: writes a dataset of random U8 [N,H,W,3] shards (ds_write_shard; the
 *   bytes need not be a picture to time the loader), reads every file once to
 *   warm the page cache, then times ds_scan + dataset_load into backend memory
 *   (the allocation is timed apart) and reports GB/s of resident bf16 bytes.
 *   The directory is removed at the end unless --keep.
 *
 * FLOP counts (tflops fields) are the matrix products and attention of the
 * model: per block and token 24·D² (qkv, proj, fc1, fc2 at 2 FLOP per MAC)
 * plus 4·T·D for attention; backward counts 2× forward for the trainable
 * blocks (input and weight gradients) and nothing for the frozen prefix.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpu/augment.h"
#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/model.h"
#include "store/dataset.h"

typedef struct {
    const char *backend;
    int device;
    const char *what;          /* train | eval | load */
    char size[32];             /* tiny | small | base | large */
    int batch, image, freeze, warmup, iters, phase_iters, reps, keep, profile, augment;
    long samples;              /* resident samples for train/eval (0 = default) */
    double gb;
    const char *dir;
    unsigned long long seed;
} bench_opts_t;

/* ---- small helpers --------------------------------------------------------- */

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_median(double *v, int n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* xorshift64*: fast bytes for random images (not for statistics). */
static uint64_t bench_rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double bench_rng_uniform(uint64_t *s) { return (double)(bench_rng_next(s) >> 11) * 0x1.0p-53; }

static void bench_fill_bytes(uint8_t *p, size_t n, uint64_t *s) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = bench_rng_next(s);
        memcpy(p + i, &r, 8);
    }
    for (; i < n; i++) p[i] = (uint8_t)bench_rng_next(s);
}

/* joints [n,21,3]: U(0,0.2) m around (0,0,0.5), as torch_ref's resident_data */
static void bench_fill_joints(float *j, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n * HAND_JOINTS; i++) {
        j[3 * i + 0] = (float)(bench_rng_uniform(s) * 0.2);
        j[3 * i + 1] = (float)(bench_rng_uniform(s) * 0.2);
        j[3 * i + 2] = (float)(bench_rng_uniform(s) * 0.2 + 0.5);
    }
}

static void bench_result(json_t *r) {
    char *s = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (s) {
        printf("RESULT %s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(r);
}

static void bench_mem_track(backend_t *be, size_t free0, size_t *peak) {
    size_t fr = 0, tot = 0;
    if (be->mem_info(be, &fr, &tot) == 0 && free0 > fr && free0 - fr > *peak) *peak = free0 - fr;
}

/* FLOPs of one image through the backbone + hand head, forward. */
static double bench_block_flops(const model_t *m) {
    const double D = m->cfg.hidden, T = m->T, F = (double)m->cfg.hidden * m->cfg.mlp_ratio;
    return T * (2.0 * (3 * D * D + D * D + 2 * D * F)) + 4.0 * T * T * D;
}
static double bench_fwd_flops(const model_t *m) {
    const double D = m->cfg.hidden, P = m->P, p = m->cfg.patch;
    double f = 2.0 * P * D * 3 * p * p;                             /* patch projection */
    f += m->cfg.layers * bench_block_flops(m);
    f += 2.0 * D * (m->cfg.joints_hidden + m->cfg.conf_hidden) +
         2.0 * (m->cfg.joints_hidden * 63.0 + m->cfg.conf_hidden * 21.0);
    return f;
}

/* ---- the resident sample set (train/eval) ------------------------------------ */

typedef struct {
    ds_layout_t l;
    void *base;
    dataset_t ds;
} bench_data_t;

/* n random samples of H×W resident in backend memory: images bf16 normalized
 * from random u8 on the device (images_from_u8), joints as torch_ref, masks 1. */
static int bench_data_make(backend_t *be, bench_data_t *d, int64_t n, int H, int W, uint64_t seed,
                           int intrinsics, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    if (!ds_layout(&d->l, n, H, W, DS_F_JOINTS_VALID | DS_F_HAS_HAND | (intrinsics ? DS_F_INTRINSICS : 0))) {
        snprintf(err, errlen, "bad dataset size %lld x %dx%d", (long long)n, H, W);
        return -1;
    }
    d->base = be->alloc(be, d->l.total);
    if (!d->base) {
        snprintf(err, errlen, "cannot allocate %.2f GB for the resident samples: %s", d->l.total / 1e9, be->err);
        return -1;
    }
    dataset_view(&d->ds, d->base, &d->l);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    const int64_t chunk = 64;
    const size_t img = (size_t)H * W * 3, row = (size_t)3 * H * W * dtype_size(d->ds.image_dtype);
    uint8_t *u8 = malloc((size_t)chunk * img);
    float *j = malloc((size_t)n * HAND_JOINTS * 3 * sizeof(float));
    uint8_t *ones = malloc((size_t)n * HAND_JOINTS);
    if (!u8 || !j || !ones) {
        free(u8); free(j); free(ones);
        be->free(be, d->base);
        d->base = NULL;
        snprintf(err, errlen, "out of host memory for the sample set");
        return -1;
    }
    for (int64_t i = 0; i < n; i += chunk) {
        int c = (int)(n - i < chunk ? n - i : chunk);
        bench_fill_bytes(u8, (size_t)c * img, &s);
        be->images_from_u8(be, (char *)d->ds.images + (size_t)i * row, d->ds.image_dtype, u8, c, H, W,
                           d->l.mean, d->l.std);
    }
    bench_fill_joints(j, (size_t)n, &s);
    memset(ones, 1, (size_t)n * HAND_JOINTS);
    be->upload(be, d->ds.joints, j, (size_t)n * HAND_JOINTS * 3 * sizeof(float));
    be->upload(be, d->ds.joints_valid, ones, (size_t)n * HAND_JOINTS);
    be->upload(be, d->ds.has_hand, ones, (size_t)n);
    float *K = intrinsics ? malloc((size_t)n * 9 * sizeof(float)) : NULL;
    if (K) {   /* a pinhole camera per sample, as synthetic datasets have */
        const float k[9] = {1.1f * W, 0, 0.5f * W, 0, 1.1f * W, 0.5f * H, 0, 0, 1};
        for (int64_t i = 0; i < n; i++) memcpy(K + i * 9, k, sizeof k);
        be->upload(be, d->ds.intrinsics, K, (size_t)n * 9 * sizeof(float));
        free(K);
    } else if (intrinsics) {
        be->free(be, d->base);
        d->base = NULL;
        snprintf(err, errlen, "out of host memory for the intrinsics");
        return -1;
    }
    be->sync(be);
    free(u8); free(j); free(ones);
    return 0;
}

static void bench_data_free(backend_t *be, bench_data_t *d) {
    if (d->base) be->free(be, d->base);
    d->base = NULL;
}

static model_t *bench_model(backend_t *be, const bench_opts_t *o, int train, char *err, size_t errlen) {
    char name[48];
    model_config_t cfg;
    snprintf(name, sizeof name, "dinov2-%s", o->size);
    if (model_config_by_name(name, 0, &cfg, err, errlen)) return NULL;
    model_opts_t mo = {.image_h = o->image, .image_w = o->image, .max_batch = o->batch, .cdt = DT_BF16,
                       .grads = train, .optimizer = train, .freeze_layers = train ? o->freeze : 0,
                       .want_hidden = 0};
    model_t *m = model_create(be, &cfg, &mo, err, errlen);
    if (!m) return NULL;
    model_init(m, o->seed, NULL);
    return m;
}

static void bench_random_idx(int32_t *idx, int n, int64_t N, uint64_t *s) {
    for (int i = 0; i < n; i++) idx[i] = (int32_t)(bench_rng_next(s) % (uint64_t)N);
}

static json_t *bench_common(const bench_opts_t *o, backend_t *be, const char *bench) {
    json_t *r = json_object();
    json_object_set_new(r, "bench", json_string(bench));
    json_object_set_new(r, "impl", json_string("traind"));
    json_object_set_new(r, "backend", json_string(be->name));
    json_object_set_new(r, "gpu", json_string(be->device_name(be)));
    if (strcmp(bench, "load") != 0) {
        json_object_set_new(r, "size", json_string(o->size));
        json_object_set_new(r, "batch", json_integer(o->batch));
    }
    json_object_set_new(r, "image", json_integer(o->image));
    return r;
}


/* ---- per-op profile ----------------------------------------------------------------
 * The backend is a table of function pointers: bench_prof_install() swaps the
 * compute ops for wrappers that synchronize before and after each call and
 * add the host-clock time to a row per op (matrix products per shape, with
 * their FLOPs). The syncs cost ~10 us a call, so the sum exceeds an
 * unprofiled step somewhat; the shares are what it is for. Installed only for
 * the profiled steps, after the timed ones. */

#define PROF_ROWS 96

typedef struct {
    char name[64];
    long calls;
    double sec, flops;
} prof_row_t;

static backend_t bench_orig;              /* the backend's own table */
static prof_row_t bench_rows[PROF_ROWS];
static int bench_nrows;
static int bench_prof_on;

static prof_row_t *bench_prof_row(const char *name) {
    for (int i = 0; i < bench_nrows; i++)
        if (!strcmp(bench_rows[i].name, name)) return &bench_rows[i];
    prof_row_t *r = &bench_rows[bench_nrows < PROF_ROWS ? bench_nrows++ : PROF_ROWS - 1];
    if (!r->name[0]) snprintf(r->name, sizeof r->name, "%s", name);
    return r;
}

#define PROF_BEGIN(b) double pt0 = 0; if (bench_prof_on) { bench_orig.sync(b); pt0 = bench_now(); }
#define PROF_END(b, nm, fl) if (bench_prof_on) { bench_orig.sync(b); prof_row_t *pr = bench_prof_row(nm); \
        pr->calls++; pr->sec += bench_now() - pt0; pr->flops += (fl); }

static void pw_im2col(backend_t *b, void *out, dtype_t cdt, const void *images, dtype_t idt,
                      const int32_t *idx, int Bn, int H, int W, int p, const im2col_aug_t *aug) {
    PROF_BEGIN(b) bench_orig.im2col(b, out, cdt, images, idt, idx, Bn, H, W, p, aug);
    PROF_END(b, aug ? "im2col (gather + augment + bf16)" : "im2col (gather + bf16)", 0)
}
static void pw_aug_joints(backend_t *b, float *out, const float *joints, const int32_t *idx,
                          const aug_sample_t *aug, int Bn) {
    PROF_BEGIN(b) bench_orig.aug_joints(b, out, joints, idx, aug, Bn);
    PROF_END(b, "aug_joints", 0)
}
static void pw_gather_rows(backend_t *b, void *dst, const void *src, const int32_t *idx, int n, size_t row_bytes) {
    PROF_BEGIN(b) bench_orig.gather_rows(b, dst, src, idx, n, row_bytes);
    PROF_END(b, "gather_rows", 0)
}
static void pw_matmul_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, const void *w,
                          const float *bias, dtype_t cdt, int M, int N, int K) {
    char nm[64];
    snprintf(nm, sizeof nm, "matmul_fwd %dx%dx%d", M, N, K);
    PROF_BEGIN(b) bench_orig.matmul_fwd(b, out, odt, inp, w, bias, cdt, M, N, K);
    PROF_END(b, nm, 2.0 * M * N * K)
}
static void pw_matmul_gelu_fwd(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                               const float *bias, dtype_t cdt, int M, int N, int K) {
    char nm[64];
    snprintf(nm, sizeof nm, "matmul_gelu_fwd %dx%dx%d", M, N, K);
    PROF_BEGIN(b) bench_orig.matmul_gelu_fwd(b, out, odt, tmp, inp, w, bias, cdt, M, N, K);
    PROF_END(b, nm, 2.0 * M * N * K)
}
static void pw_matmul_dgelu(backend_t *b, void *g, dtype_t gdt, float *dbias, float *tmp, const void *dout,
                            const void *w, const void *x, dtype_t cdt, int M, int N, int K) {
    char nm[64];
    snprintf(nm, sizeof nm, "matmul_dgelu %dx%dx%d", M, N, K);
    PROF_BEGIN(b) bench_orig.matmul_dgelu(b, g, gdt, dbias, tmp, dout, w, x, cdt, M, N, K);
    PROF_END(b, nm, 2.0 * M * N * K)
}
static void pw_matmul_bwd(backend_t *b, float *dinp, float *dw, float *dbias, const void *dout, dtype_t gdt,
                          const void *inp, const void *w, dtype_t cdt, int M, int N, int K) {
    char nm[64];
    snprintf(nm, sizeof nm, "matmul_bwd %dx%dx%d%s%s", M, N, K, dinp ? " dX" : "", dw ? " dW" : "");
    PROF_BEGIN(b) bench_orig.matmul_bwd(b, dinp, dw, dbias, dout, gdt, inp, w, cdt, M, N, K);
    PROF_END(b, nm, 2.0 * M * N * K * ((dinp != NULL) + (dw != NULL)))
}
static void pw_layernorm_fwd(backend_t *b, void *out, dtype_t odt, float *mean, float *rstd,
                             const float *inp, const float *w, const float *bias, int N, int C, float eps) {
    PROF_BEGIN(b) bench_orig.layernorm_fwd(b, out, odt, mean, rstd, inp, w, bias, N, C, eps);
    PROF_END(b, "layernorm_fwd", 0)
}
static void pw_layernorm_bwd(backend_t *b, float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const void *x, dtype_t xdt, const float *gamma, const float *w,
                             const float *mean, const float *rstd, int N, int C) {
    PROF_BEGIN(b) bench_orig.layernorm_bwd(b, dinp, dw, db, dout, inp, x, xdt, gamma, w, mean, rstd, N, C);
    PROF_END(b, "layernorm_bwd", 0)
}
static void pw_attention_fwd(backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                             int Bn, int T, int NH, int HS) {
    PROF_BEGIN(b) bench_orig.attention_fwd(b, out, lse, qkv, cdt, Bn, T, NH, HS);
    PROF_END(b, "attention_fwd", 4.0 * Bn * NH * (double)T * T * HS)
}
static void pw_attention_bwd(backend_t *b, void *dqkv, dtype_t ddt, float *dbias, const float *dout, const void *qkv,
                             const void *out, const float *lse, dtype_t cdt, int Bn, int T, int NH, int HS) {
    PROF_BEGIN(b) bench_orig.attention_bwd(b, dqkv, ddt, dbias, dout, qkv, out, lse, cdt, Bn, T, NH, HS);
    PROF_END(b, "attention_bwd", 10.0 * Bn * NH * (double)T * T * HS)   /* QK^T again + 4 products */
}
static void pw_gelu_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n) {
    PROF_BEGIN(b) bench_orig.gelu_fwd(b, out, odt, inp, idt, n);
    PROF_END(b, "gelu_fwd", 0)
}
static void pw_gelu_bwd(backend_t *b, void *dinp, dtype_t ddt, float *dbias, const float *dout, const void *inp,
                        dtype_t idt, int M, int N) {
    PROF_BEGIN(b) bench_orig.gelu_bwd(b, dinp, ddt, dbias, dout, inp, idt, M, N);
    PROF_END(b, "gelu_bwd", 0)
}
static void pw_layerscale_fwd(backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                              const float *gamma, int N, int C) {
    PROF_BEGIN(b) bench_orig.layerscale_fwd(b, out, res, x, xdt, gamma, N, C);
    PROF_END(b, "layerscale_fwd", 0)
}
static void pw_layerscale_bwd(backend_t *b, void *dx, dtype_t ddt, float *dgamma, float *dbias, const float *dout,
                              const void *x, dtype_t xdt, const float *gamma, int N, int C) {
    PROF_BEGIN(b) bench_orig.layerscale_bwd(b, dx, ddt, dgamma, dbias, dout, x, xdt, gamma, N, C);
    PROF_END(b, "layerscale_bwd", 0)
}
static void pw_embed_fwd(backend_t *b, float *x, const float *patches, const float *cls, const float *reg,
                         const float *pos, int Bn, int P, int R, int D) {
    PROF_BEGIN(b) bench_orig.embed_fwd(b, x, patches, cls, reg, pos, Bn, P, R, D);
    PROF_END(b, "embed_fwd", 0)
}
static void pw_token_slice(backend_t *b, void *out, const void *x, dtype_t dt, int Bn, int T, int D, int t) {
    PROF_BEGIN(b) bench_orig.token_slice(b, out, x, dt, Bn, T, D, t);
    PROF_END(b, "token_slice", 0)
}
static void pw_token_scatter_add(backend_t *b, float *dx, const float *dout, int Bn, int T, int D, int t) {
    PROF_BEGIN(b) bench_orig.token_scatter_add(b, dx, dout, Bn, T, D, t);
    PROF_END(b, "token_scatter_add", 0)
}
static void pw_cast(backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n) {
    PROF_BEGIN(b) bench_orig.cast(b, dst, ddt, src, sdt, n);
    PROF_END(b, "cast", 0)
}
static void pw_zero(backend_t *b, void *p, size_t bytes) {
    PROF_BEGIN(b) bench_orig.zero(b, p, bytes);
    PROF_END(b, "zero (grads)", 0)
}
static void pw_copy(backend_t *b, void *dst, const void *src, size_t bytes) {
    PROF_BEGIN(b) bench_orig.copy(b, dst, src, bytes);
    PROF_END(b, "copy", 0)
}
static void pw_hand_loss(backend_t *b, hand_loss_t *host_out, float *dpred, float *dconf, const float *pred,
                         const float *conf_logit, const float *joints, const uint8_t *valid,
                         const uint8_t *has_hand, const int32_t *idx, int Bn, const hand_norm_t *norm) {
    PROF_BEGIN(b) bench_orig.hand_loss(b, host_out, dpred, dconf, pred, conf_logit, joints, valid, has_hand, idx, Bn, norm);
    PROF_END(b, "hand_loss (+ host copy)", 0)
}
static double pw_sumsq(backend_t *b, const float *x, size_t n) {
    PROF_BEGIN(b) double r = bench_orig.sumsq(b, x, n);
    PROF_END(b, "sumsq (grad norm, + host copy)", 0)
    return r;
}
static void pw_scale(backend_t *b, float *x, float sc, size_t n) {
    PROF_BEGIN(b) bench_orig.scale(b, x, sc, n);
    PROF_END(b, "scale", 0)
}
static void pw_adamw(backend_t *b, float *params, void *pc, dtype_t cdt, const float *grads, float *m, float *v,
                     const adamw_seg_t *segs, int nsegs, float beta1, float beta2, float eps, int t, float gscale) {
    PROF_BEGIN(b) bench_orig.adamw(b, params, pc, cdt, grads, m, v, segs, nsegs, beta1, beta2, eps, t, gscale);
    PROF_END(b, "adamw (+ working copy)", 0)
}
static void pw_upload(backend_t *b, void *dst, const void *src, size_t bytes) {
    PROF_BEGIN(b) bench_orig.upload(b, dst, src, bytes);
    PROF_END(b, "upload (batch indices)", 0)
}

static void bench_prof_install(backend_t *be) {
    bench_orig = *be;
    be->im2col = pw_im2col;
    be->aug_joints = pw_aug_joints;
    be->gather_rows = pw_gather_rows;
    be->matmul_fwd = pw_matmul_fwd;
    be->matmul_gelu_fwd = pw_matmul_gelu_fwd;
    be->matmul_dgelu = pw_matmul_dgelu;
    be->matmul_bwd = pw_matmul_bwd;
    be->layernorm_fwd = pw_layernorm_fwd;
    be->layernorm_bwd = pw_layernorm_bwd;
    be->attention_fwd = pw_attention_fwd;
    be->attention_bwd = pw_attention_bwd;
    be->gelu_fwd = pw_gelu_fwd;
    be->gelu_bwd = pw_gelu_bwd;
    be->layerscale_fwd = pw_layerscale_fwd;
    be->layerscale_bwd = pw_layerscale_bwd;
    be->embed_fwd = pw_embed_fwd;
    be->token_slice = pw_token_slice;
    be->token_scatter_add = pw_token_scatter_add;
    be->cast = pw_cast;
    be->zero = pw_zero;
    be->copy = pw_copy;
    be->hand_loss = pw_hand_loss;
    be->sumsq = pw_sumsq;
    be->scale = pw_scale;
    be->adamw = pw_adamw;
    be->upload = pw_upload;
    bench_nrows = 0;
    memset(bench_rows, 0, sizeof bench_rows);
    bench_prof_on = 1;
}

static void bench_prof_remove(backend_t *be) {
    bench_prof_on = 0;
    *be = bench_orig;
}

static int bench_cmp_row(const void *a, const void *b) {
    double x = ((const prof_row_t *)a)->sec, y = ((const prof_row_t *)b)->sec;
    return (x < y) - (x > y);
}

/* Matrix-unit ceiling as the backend reaches it: median of bf16 M=N=K products. */
static double bench_matmul_ceiling(backend_t *be, int n) {
    size_t el = (size_t)n * n;
    void *a = be->alloc(be, el * 2), *w = be->alloc(be, el * 2), *o = be->alloc(be, el * 2);
    double res = NAN;
    if (a && w && o) {
        be->zero(be, a, el * 2);   /* values do not matter much for the rate; zeros run a bit faster */
        be->zero(be, w, el * 2);
        double t[7];
        for (int i = 0; i < 9; i++) {
            be->sync(be);
            double t0 = bench_now();
            be->matmul_fwd(be, o, DT_BF16, a, w, NULL, DT_BF16, n, n, n);
            be->sync(be);
            if (i >= 2) t[i - 2] = bench_now() - t0;
        }
        res = 2.0 * n * (double)n * n / bench_median(t, 7) / 1e12;
    }
    if (a) be->free(be, a);
    if (w) be->free(be, w);
    if (o) be->free(be, o);
    return res;
}

/* Emits the profile of `steps` steps (rows sorted by time) as a RESULT line. */
static void bench_prof_report(const bench_opts_t *o, backend_t *be, int steps, double step_s, double ceiling) {
    qsort(bench_rows, (size_t)bench_nrows, sizeof *bench_rows, bench_cmp_row);
    json_t *r = bench_common(o, be, "profile");
    json_t *ops = json_array();
    double tot = 0, mm_s = 0, mm_f = 0;
    for (int i = 0; i < bench_nrows; i++) {
        const prof_row_t *pr = &bench_rows[i];
        tot += pr->sec;
        if (!strncmp(pr->name, "matmul", 6)) { mm_s += pr->sec; mm_f += pr->flops; }
        json_t *e = json_pack("{s:s, s:f, s:f}", "op", pr->name, "calls_per_step", (double)pr->calls / steps,
                              "ms_per_step", 1e3 * pr->sec / steps);
        if (pr->flops > 0) json_object_set_new(e, "tflops", json_real(pr->flops / pr->sec / 1e12));
        json_array_append_new(ops, e);
    }
    json_object_set_new(r, "steps", json_integer(steps));
    json_object_set_new(r, "sum_ms_per_step", json_real(1e3 * tot / steps));
    json_object_set_new(r, "step_ms_unprofiled", json_real(1e3 * step_s));
    json_object_set_new(r, "matmul_ms_per_step", json_real(1e3 * mm_s / steps));
    json_object_set_new(r, "matmul_tflops", json_real(mm_s > 0 ? mm_f / mm_s / 1e12 : 0));
    if (isfinite(ceiling)) json_object_set_new(r, "matmul_ceiling_tflops", json_real(ceiling));
    json_object_set_new(r, "ops", ops);
    bench_result(r);
}

/* ---- train ---------------------------------------------------------------------- */

typedef struct {
    model_t *m;
    const dataset_t *ds;
    int32_t *d_idx, *h_idx;
    float *d_dpred, *d_dconf;
    uint64_t rng;
    hand_loss_t hl;
    double grad_norm;
    /* augmentation (--augment): drawn per step as gpu/stage_train.c does */
    int aug;
    long step;
    aug_sample_t *h_aug, *d_aug;
    float *d_joints;
    uint8_t *d_valid, *d_has;
} train_ctx_t;

/* What --augment trains with: every kind on, at typical strengths. */
static const augment_spec_t bench_augment = {
    .on = 1, .rotate_deg = {-30, 30}, .shift_deg = 5, .flip = 0.5, .zoom = {0.9, 1.1}, .brightness = 0.3,
    .contrast = 0.3, .saturation = 0.3, .hue = 0.05, .erase_count = 1, .erase_p = 0.5, .erase_area = {0.02, 0.2},
    .erase_aspect = {0.3, 3.3}};

/* One full step; ph (may be NULL) gets the phase times (sync after each). */
static int bench_train_step(backend_t *be, train_ctx_t *t, int B, double ph[5], char *err, size_t errlen) {
    bench_random_idx(t->h_idx, B, t->ds->n, &t->rng);
    be->upload(be, t->d_idx, t->h_idx, (size_t)B * sizeof(int32_t));
    double t0 = ph ? bench_now() : 0;
    im2col_aug_t ia = {0};
    t->step++;
    if (t->aug) {
        for (int i = 0; i < B; i++)
            augment_draw(&bench_augment, 1, t->step, t->h_idx[i], t->ds->h, t->ds->w, t->ds->mean, &t->h_aug[i], NULL);
        be->upload(be, t->d_aug, t->h_aug, (size_t)B * sizeof(aug_sample_t));
        ia.samples = t->d_aug;
        ia.intrinsics = t->ds->intrinsics;
        memcpy(ia.mean, t->ds->mean, sizeof ia.mean);
        memcpy(ia.std, t->ds->std, sizeof ia.std);
    }
    if (model_forward_aug(t->m, t->ds->images, t->ds->image_dtype, t->d_idx, B, t->aug ? &ia : NULL, 0, err, errlen))
        return -1;
    if (ph) { be->sync(be); ph[0] = bench_now() - t0; t0 = bench_now(); }
    if (t->aug) {
        be->aug_joints(be, t->d_joints, t->ds->joints, t->d_idx, t->d_aug, B);
        be->gather_rows(be, t->d_valid, t->ds->joints_valid, t->d_idx, B, HAND_JOINTS);
        be->gather_rows(be, t->d_has, t->ds->has_hand, t->d_idx, B, 1);
        be->hand_loss(be, &t->hl, t->d_dpred, t->d_dconf, t->m->pred, t->m->conf_logit, t->d_joints, t->d_valid,
                      t->d_has, NULL, B, NULL);
    } else {
        be->hand_loss(be, &t->hl, t->d_dpred, t->d_dconf, t->m->pred, t->m->conf_logit, t->ds->joints,
                      t->ds->joints_valid, t->ds->has_hand, t->d_idx, B, NULL);
    }
    if (ph) { ph[1] = bench_now() - t0; t0 = bench_now(); }
    model_zero_grad(t->m);
    model_backward(t->m, t->d_dpred, t->d_dconf);
    if (ph) { be->sync(be); ph[2] = bench_now() - t0; t0 = bench_now(); }
    t->grad_norm = sqrt(model_grad_sumsq(t->m));
    if (ph) { ph[3] = bench_now() - t0; t0 = bench_now(); }
    float gscale = 1.0f;
    if (isfinite(t->grad_norm) && t->grad_norm > 1.0) gscale = (float)(1.0 / t->grad_norm);
    if (isfinite(t->grad_norm) && isfinite(t->hl.total))
        model_adamw_step(t->m, 1e-5f, 1e-3f, 0.01f, 0.9f, 0.999f, 1e-8f, gscale);
    be->sync(be);
    if (ph) ph[4] = bench_now() - t0;
    return 0;
}

static int bench_train(backend_t *be, const bench_opts_t *o, char *err, size_t errlen) {
    const int B = o->batch;
    size_t free0 = 0, tot = 0, peak = 0;
    if (be->mem_info(be, &free0, &tot)) { snprintf(err, errlen, "mem_info: %s", be->err); return -1; }
    int64_t N = o->samples > 0 ? o->samples : (4 * B > 512 ? 4 * B : 512);
    bench_data_t d;
    if (bench_data_make(be, &d, N, o->image, o->image, o->seed, o->augment, err, errlen)) return -1;
    int rc = -1;
    train_ctx_t t = {0};
    double *times = NULL, *ph_all = NULL;
    t.ds = &d.ds;
    t.rng = o->seed ^ 0x5851F42D4C957F2Dull;
    double tc0 = bench_now();
    t.m = bench_model(be, o, 1, err, errlen);
    if (!t.m) goto done;
    be->sync(be);
    double create_s = bench_now() - tc0;
    t.d_idx = be->alloc(be, (size_t)B * sizeof(int32_t));
    t.d_dpred = be->alloc(be, (size_t)B * HAND_COORDS * sizeof(float));
    t.d_dconf = be->alloc(be, (size_t)B * MODEL_CONF_OUT * sizeof(float));
    t.h_idx = malloc((size_t)B * sizeof(int32_t));
    t.d_aug = be->alloc(be, (size_t)B * sizeof(aug_sample_t));
    t.h_aug = malloc((size_t)B * sizeof(aug_sample_t));
    t.d_joints = be->alloc(be, (size_t)B * HAND_COORDS * sizeof(float));
    t.d_valid = be->alloc(be, (size_t)B * HAND_JOINTS);
    t.d_has = be->alloc(be, (size_t)B);
    times = malloc((size_t)(o->iters > 0 ? o->iters : 1) * sizeof(double));
    ph_all = malloc((size_t)5 * (o->phase_iters > 0 ? o->phase_iters : 1) * sizeof(double));
    if (!t.d_idx || !t.d_dpred || !t.d_dconf || !t.h_idx || !t.d_aug || !t.h_aug || !t.d_joints || !t.d_valid ||
        !t.d_has || !times || !ph_all) {
        snprintf(err, errlen, "out of memory for the batch buffers: %s", be->err);
        goto done;
    }
    double tf0 = bench_now();
    if (bench_train_step(be, &t, B, NULL, err, errlen)) goto done;
    double first_s = bench_now() - tf0;
    bench_mem_track(be, free0, &peak);
    for (int i = 1; i < o->warmup; i++) {
        if (bench_train_step(be, &t, B, NULL, err, errlen)) goto done;
        bench_mem_track(be, free0, &peak);
    }
    for (int i = 0; i < o->iters; i++) {
        double t0 = bench_now();
        if (bench_train_step(be, &t, B, NULL, err, errlen)) goto done;
        times[i] = bench_now() - t0;
        bench_mem_track(be, free0, &peak);
    }
    /* instrumented steps: where the time goes */
    for (int i = 0; i < o->phase_iters; i++)
        if (bench_train_step(be, &t, B, ph_all + 5 * i, err, errlen)) goto done;
    double ph_med[5], v[64];
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < o->phase_iters; i++) v[i] = ph_all[5 * i + k];
        ph_med[k] = bench_median(v, o->phase_iters);
    }
    double step_s = bench_median(times, o->iters);
    double fwd = bench_fwd_flops(t.m);
    double train_flops = B * (fwd + 2.0 * (t.m->cfg.layers - o->freeze) * bench_block_flops(t.m));
    json_t *r = bench_common(o, be, "train");
    json_object_set_new(r, "freeze", json_integer(o->freeze));
    json_object_set_new(r, "step_s", json_real(step_s));
    json_object_set_new(r, "images_per_s", json_real(B / step_s));
    json_object_set_new(r, "first_step_s", json_real(first_s));
    json_object_set_new(r, "model_create_s", json_real(create_s));
    json_object_set_new(r, "peak_mem_gb", json_real(peak / 1e9));
    json_object_set_new(r, "tflops", json_real(train_flops / step_s / 1e12));
    json_object_set_new(r, "loss", json_real(isfinite(t.hl.total) ? t.hl.total : -1));
    json_object_set_new(r, "grad_norm", json_real(isfinite(t.grad_norm) ? t.grad_norm : -1));
    json_object_set_new(r, "params", json_integer((json_int_t)model_num_params(t.m)));
    json_object_set_new(r, "trainable", json_integer((json_int_t)model_num_trainable(t.m)));
    json_object_set_new(r, "samples", json_integer(N));
    json_object_set_new(r, "iters", json_integer(o->iters));
    json_t *ph = json_object();
    static const char *phase_names[5] = {"forward_s", "loss_s", "backward_s", "grad_norm_s", "adamw_s"};
    for (int k = 0; k < 5; k++) json_object_set_new(ph, phase_names[k], json_real(ph_med[k]));
    json_object_set_new(ph, "forward_tflops", json_real(B * fwd / ph_med[0] / 1e12));
    json_object_set_new(ph, "backward_tflops",
                        json_real(B * 2.0 * (t.m->cfg.layers - o->freeze) * bench_block_flops(t.m) / ph_med[2] / 1e12));
    json_object_set_new(r, "phases", ph);
    if (o->augment) json_decref(r);   /* the augment_cost line below carries the plain timing */
    else bench_result(r);
    if (o->augment) {
        /* the cost of augmentation: plain and augmented steps interleaved on
         * the same model (drift and clocks affect both alike), medians */
        double *ta = malloc((size_t)o->iters * sizeof(double)), *tp = malloc((size_t)o->iters * sizeof(double));
        if (!ta || !tp) {
            free(ta);
            free(tp);
            snprintf(err, errlen, "out of memory");
            goto done;
        }
        int fail = 0;
        for (int i = 0; i < 2 && !fail; i++) {   /* warm the augmented path */
            t.aug = 1;
            fail = bench_train_step(be, &t, B, NULL, err, errlen);
        }
        for (int i = 0; i < o->iters && !fail; i++) {
            for (int a = 0; a < 2 && !fail; a++) {
                t.aug = (i + a) % 2;   /* alternate which goes first */
                double t0 = bench_now();
                fail = bench_train_step(be, &t, B, NULL, err, errlen);
                (t.aug ? ta : tp)[i] = bench_now() - t0;
            }
        }
        t.aug = 0;
        if (!fail) {
            double sp = bench_median(tp, o->iters), sa = bench_median(ta, o->iters);
            json_t *ra = bench_common(o, be, "augment_cost");
            json_object_set_new(ra, "freeze", json_integer(o->freeze));
            json_object_set_new(ra, "step_s_plain", json_real(sp));
            json_object_set_new(ra, "step_s_augment", json_real(sa));
            json_object_set_new(ra, "cost_pct", json_real(100.0 * (sa - sp) / sp));
            json_object_set_new(ra, "iters", json_integer(o->iters));
            json_object_set_new(ra, "augment", json_string("rotate_deg [-30,30], shift_deg 5, flip 0.5, zoom "
                                                           "[0.9,1.1], brightness/contrast/saturation 0.3, hue "
                                                           "0.05, erase 1 x p 0.5; per-sample intrinsics"));
            bench_result(ra);
        }
        free(ta);
        free(tp);
        if (fail) goto done;
    }
    if (o->profile > 0) {
        double ceiling = strcmp(be->name, "cuda") ? NAN : bench_matmul_ceiling(be, 8192);
        t.aug = o->augment;   /* with --augment the profile shows the augmented gather */
        bench_prof_install(be);
        for (int i = 0; i < o->profile; i++) {
            if (bench_train_step(be, &t, B, NULL, err, errlen)) { bench_prof_remove(be); goto done; }
        }
        bench_prof_remove(be);
        bench_prof_report(o, be, o->profile, step_s, ceiling);
    }
    rc = 0;
done:
    if (t.d_idx) be->free(be, t.d_idx);
    if (t.d_dpred) be->free(be, t.d_dpred);
    if (t.d_dconf) be->free(be, t.d_dconf);
    if (t.d_aug) be->free(be, t.d_aug);
    if (t.d_joints) be->free(be, t.d_joints);
    if (t.d_valid) be->free(be, t.d_valid);
    if (t.d_has) be->free(be, t.d_has);
    free(t.h_aug);
    free(t.h_idx);
    free(times);
    free(ph_all);
    model_free(t.m);
    bench_data_free(be, &d);
    return rc;
}

/* ---- eval ------------------------------------------------------------------------ */

static int bench_eval(backend_t *be, const bench_opts_t *o, char *err, size_t errlen) {
    const int B = o->batch;
    size_t free0 = 0, tot = 0, peak = 0;
    if (be->mem_info(be, &free0, &tot)) { snprintf(err, errlen, "mem_info: %s", be->err); return -1; }
    int64_t N = o->samples > 0 ? o->samples : (2 * B > 512 ? 2 * B : 512);
    bench_data_t d;
    if (bench_data_make(be, &d, N, o->image, o->image, o->seed, 0, err, errlen)) return -1;
    int rc = -1;
    model_t *m = bench_model(be, o, 0, err, errlen);
    int32_t *d_idx = be->alloc(be, (size_t)B * sizeof(int32_t));
    int32_t *h_idx = malloc((size_t)B * sizeof(int32_t));
    double *times = malloc((size_t)(o->iters > 0 ? o->iters : 1) * sizeof(double));
    uint64_t s = o->seed ^ 0x2545F4914F6CDD1Dull;
    if (!m) goto done;
    if (!d_idx || !h_idx || !times) { snprintf(err, errlen, "out of memory for the batch buffers"); goto done; }
    for (int i = 0; i < o->warmup + o->iters; i++) {
        bench_random_idx(h_idx, B, N, &s);
        double t0 = bench_now();
        be->upload(be, d_idx, h_idx, (size_t)B * sizeof(int32_t));
        if (model_forward(m, d.ds.images, d.ds.image_dtype, d_idx, B, 0, err, errlen)) goto done;
        be->sync(be);
        if (i >= o->warmup) times[i - o->warmup] = bench_now() - t0;
        bench_mem_track(be, free0, &peak);
    }
    double step_s = bench_median(times, o->iters);
    json_t *r = bench_common(o, be, "eval");
    json_object_set_new(r, "step_s", json_real(step_s));
    json_object_set_new(r, "images_per_s", json_real(B / step_s));
    json_object_set_new(r, "peak_mem_gb", json_real(peak / 1e9));
    json_object_set_new(r, "tflops", json_real(B * bench_fwd_flops(m) / step_s / 1e12));
    json_object_set_new(r, "samples", json_integer(N));
    json_object_set_new(r, "iters", json_integer(o->iters));
    bench_result(r);
    rc = 0;
done:
    if (d_idx) be->free(be, d_idx);
    free(h_idx);
    free(times);
    model_free(m);
    bench_data_free(be, &d);
    return rc;
}

/* ---- load -------------------------------------------------------------------------- */

static int bench_rm_dir(const char *dir) {
    DIR *dh = opendir(dir);
    if (!dh) return -1;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(dh))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p) unlink(p);
    }
    closedir(dh);
    return rmdir(dir);
}

/* Reads every shard once (page cache); returns bytes read or -1. */
static long long bench_warm_files(const char *dir, const ds_info_t *info, char *err, size_t errlen) {
    size_t cap = 16u << 20;
    char *buf = malloc(cap);
    if (!buf) { snprintf(err, errlen, "out of memory"); return -1; }
    long long total = 0;
    char p[4096];
    for (int i = 0; i < info->nshards; i++) {
        if (snprintf(p, sizeof p, "%s/%s", dir, info->shards[i].name) >= (int)sizeof p) {
            snprintf(err, errlen, "dataset path too long");
            free(buf);
            return -1;
        }
        int fd = open(p, O_RDONLY);
        if (fd < 0) { snprintf(err, errlen, "%.900s: %s", p, strerror(errno)); free(buf); return -1; }
        ssize_t r;
        while ((r = read(fd, buf, cap)) > 0) total += r;
        close(fd);
        if (r < 0) { snprintf(err, errlen, "%.900s: read: %s", p, strerror(errno)); free(buf); return -1; }
    }
    free(buf);
    return total;
}

static int bench_load(backend_t *be, const bench_opts_t *o, char *err, size_t errlen) {
    const int H = o->image, W = o->image;
    const size_t row_bf16 = (size_t)3 * H * W * 2, img_u8 = (size_t)H * W * 3;
    int64_t n = (int64_t)(o->gb * 1e9 / (double)row_bf16);
    if (n < 1) n = 1;
    int64_t per_shard = (int64_t)((256u << 20) / img_u8);   /* ~256 MB of u8 per shard */
    if (per_shard < 1) per_shard = 1;
    if (per_shard > n) per_shard = n;

    char dir[4096];
    if (o->dir) {
        snprintf(dir, sizeof dir, "%s", o->dir);
        if (mkdir(dir, 0755) && errno != EEXIST) {
            snprintf(err, errlen, "%.900s: %s", dir, strerror(errno));
            return -1;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/traind-bench-load.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(dir)) { snprintf(err, errlen, "mkdtemp %.900s: %s", dir, strerror(errno)); return -1; }
    }
    int rc = -1;
    uint8_t *img = malloc((size_t)per_shard * img_u8);
    float *joints = malloc((size_t)per_shard * HAND_JOINTS * 3 * sizeof(float));
    double *t_scan = calloc((size_t)(o->reps > 0 ? o->reps : 1), sizeof(double));
    double *t_load = calloc((size_t)(o->reps > 0 ? o->reps : 1), sizeof(double));
    double *t_tot = calloc((size_t)(o->reps > 0 ? o->reps : 1), sizeof(double));
    double *t_alloc = calloc((size_t)(o->reps > 0 ? o->reps : 1), sizeof(double));
    ds_info_t info;
    memset(&info, 0, sizeof info);
    int have_info = 0;
    if (!img || !joints || !t_scan || !t_load || !t_tot || !t_alloc) {
        snprintf(err, errlen, "out of host memory for a %lld-sample shard", (long long)per_shard);
        goto done;
    }
    uint64_t s = o->seed * 0x9E3779B97F4A7C15ull + 7;
    bench_fill_bytes(img, (size_t)per_shard * img_u8, &s);
    bench_fill_joints(joints, (size_t)per_shard, &s);
    double tw0 = bench_now();
    for (int64_t i = 0, k = 0; i < n; i += per_shard, k++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/shard-%05lld.safetensors", dir, (long long)k);
        ds_shard_data_t sd = {.n = n - i < per_shard ? n - i : per_shard, .h = H, .w = W, .image_dtype = DT_U8,
                              .image = img, .joints = joints};
        img[0] = (uint8_t)k;   /* shards differ */
        if (ds_write_shard(path, &sd, err, errlen)) goto done;
    }
    double write_s = bench_now() - tw0;
    if (ds_scan(dir, &info, err, errlen)) goto done;
    have_info = 1;
    double tr0 = bench_now();
    long long warm_bytes = bench_warm_files(dir, &info, err, errlen);
    if (warm_bytes < 0) goto done;
    double warm_s = bench_now() - tr0;

    size_t resident = 0;
    for (int r = 0; r < o->reps; r++) {
        ds_info_t in2;
        ds_layout_t l;
        double t0 = bench_now();
        if (ds_scan(dir, &in2, err, errlen)) goto done;
        double t1 = bench_now();
        if (!ds_layout_for(&l, &in2)) { ds_info_free(&in2); snprintf(err, errlen, "layout overflow"); goto done; }
        void *base = be->alloc(be, l.total);
        if (!base) {
            ds_info_free(&in2);
            snprintf(err, errlen, "cannot allocate %.2f GB resident: %s", l.total / 1e9, be->err);
            goto done;
        }
        be->sync(be);
        double t2 = bench_now();
        int lr = dataset_load(be, dir, &in2, base, &l, NULL, NULL, NULL, NULL, err, errlen);
        be->sync(be);
        double t3 = bench_now();
        be->free(be, base);
        ds_info_free(&in2);
        if (lr) goto done;
        resident = l.total;
        t_scan[r] = t1 - t0;
        t_alloc[r] = t2 - t1;
        t_load[r] = t3 - t2;
        t_tot[r] = (t1 - t0) + (t3 - t2);
    }
    double best = INFINITY;
    for (int r = 0; r < o->reps; r++) best = t_tot[r] < best ? t_tot[r] : best;
    double sec = bench_median(t_tot, o->reps);
    json_t *res = bench_common(o, be, "load");
    json_object_set_new(res, "samples", json_integer(n));
    json_object_set_new(res, "shards", json_integer(info.nshards));
    json_object_set_new(res, "gb", json_real(resident / 1e9));
    json_object_set_new(res, "file_gb", json_real((double)info.file_bytes / 1e9));
    json_object_set_new(res, "seconds", json_real(sec));
    json_object_set_new(res, "gb_per_s", json_real(resident / 1e9 / sec));
    json_object_set_new(res, "best_gb_per_s", json_real(resident / 1e9 / best));
    json_object_set_new(res, "scan_s", json_real(bench_median(t_scan, o->reps)));
    json_object_set_new(res, "load_s", json_real(bench_median(t_load, o->reps)));
    json_object_set_new(res, "alloc_s", json_real(bench_median(t_alloc, o->reps)));
    json_object_set_new(res, "write_s", json_real(write_s));
    json_object_set_new(res, "warm_read_gb_per_s", json_real(warm_bytes / 1e9 / warm_s));
    json_object_set_new(res, "reps", json_integer(o->reps));
    bench_result(res);
    rc = 0;
done:
    if (have_info) ds_info_free(&info);
    free(img); free(joints); free(t_scan); free(t_load); free(t_tot); free(t_alloc);
    if (!o->keep) bench_rm_dir(dir);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------- */

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: bench_traind [--backend cuda|cpu|auto] [--device N] WHAT [options]\n"
            "  train  --size large --batch 32 [--image 224] [--freeze 12] [--warmup 5] [--iters 20]\n"
            "         [--phase-iters 5] [--samples N] [--profile STEPS] [--augment]\n"
            "  eval   --size large --batch 256 [--image 224] [--warmup 5] [--iters 20] [--samples N]\n"
            "  load   --gb 4 [--image 224] [--dir DIR] [--reps 3] [--keep]\n"
            "prints one line `RESULT {json}` per measurement\n");
}

int main(int argc, char **argv) {
    bench_opts_t o = {.backend = "cuda", .device = 0, .batch = 32, .image = 224, .freeze = 12, .warmup = 5,
                      .iters = 20, .phase_iters = 5, .reps = 3, .gb = 4.0, .seed = 0};
    snprintf(o.size, sizeof o.size, "large");
    int batch_set = 0;
    static const struct option lo[] = {
        {"backend", required_argument, 0, 'b'}, {"device", required_argument, 0, 'd'},
        {"size", required_argument, 0, 's'},    {"batch", required_argument, 0, 'B'},
        {"image", required_argument, 0, 'i'},   {"freeze", required_argument, 0, 'f'},
        {"warmup", required_argument, 0, 'w'},  {"iters", required_argument, 0, 'n'},
        {"phase-iters", required_argument, 0, 'p'}, {"reps", required_argument, 0, 'r'},
        {"gb", required_argument, 0, 'g'},      {"dir", required_argument, 0, 'D'},
        {"keep", no_argument, 0, 'k'},          {"samples", required_argument, 0, 'S'},
        {"seed", required_argument, 0, 'e'},    {"profile", required_argument, 0, 'P'},
        {"augment", no_argument, 0, 'A'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    char *end;
    /* flags may come before and after WHAT: GNU getopt permutes */
    int li = -1;
    while ((c = getopt_long(argc, argv, "h", lo, &li)) != -1) {
        long v = 0;
        if (c == 'b' || c == 's' || c == 'D' || c == 'k' || c == 'h' || c == 'g' || c == 'e' || c == 'A') {
            /* non-integer options */
        } else if (c != '?') {
            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || *end || v < 0 || v > 1000000) {
                fprintf(stderr, "bench_traind: --%s wants a non-negative integer, got '%s'\n",
                        li >= 0 ? lo[li].name : "?", optarg);
                return 2;
            }
        }
        switch (c) {
        case 'b': o.backend = optarg; break;
        case 'd': o.device = (int)v; break;
        case 's': snprintf(o.size, sizeof o.size, "%s", optarg); break;
        case 'B': o.batch = (int)v; batch_set = 1; break;
        case 'i': o.image = (int)v; break;
        case 'f': o.freeze = (int)v; break;
        case 'w': o.warmup = (int)v; break;
        case 'n': o.iters = (int)v; break;
        case 'p': o.phase_iters = (int)v; break;
        case 'r': o.reps = (int)v; break;
        case 'S': o.samples = v; break;
        case 'P': o.profile = (int)v; break;
        case 'g':
            o.gb = strtod(optarg, &end);
            if (*end || !(o.gb > 0) || o.gb > 1e4) { fprintf(stderr, "bench_traind: bad --gb '%s'\n", optarg); return 2; }
            break;
        case 'e':
            errno = 0;
            o.seed = strtoull(optarg, &end, 10);
            if (errno || *end) { fprintf(stderr, "bench_traind: bad --seed '%s'\n", optarg); return 2; }
            break;
        case 'D': o.dir = optarg; break;
        case 'k': o.keep = 1; break;
        case 'A': o.augment = 1; break;
        case 'h': bench_usage(stdout); return 0;
        default: bench_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) { bench_usage(stderr); return 2; }
    o.what = argv[optind];
    if (strcmp(o.what, "train") && strcmp(o.what, "eval") && strcmp(o.what, "load")) {
        fprintf(stderr, "bench_traind: unknown benchmark '%s'\n", o.what);
        bench_usage(stderr);
        return 2;
    }
    if (!batch_set && !strcmp(o.what, "eval")) o.batch = 256;
    if (o.batch < 1 || o.image < 14 || o.iters < 1 || o.reps < 1 || o.phase_iters < 1 || o.phase_iters > 64) {
        fprintf(stderr, "bench_traind: need --batch >= 1, --image >= 14, --iters >= 1, --reps >= 1, "
                        "1 <= --phase-iters <= 64\n");
        return 2;
    }
    if (o.warmup < 1) o.warmup = 1;

    char err[1024];
    backend_t *be = backend_open(o.backend, o.device, err, sizeof err);
    if (!be) { fprintf(stderr, "bench_traind: backend %s: %s\n", o.backend, err); return 1; }
    fprintf(stderr, "bench_traind: %s on %s (%s)\n", o.what, be->device_name(be), be->name);
    int rc;
    err[0] = '\0';
    if (!strcmp(o.what, "train")) rc = bench_train(be, &o, err, sizeof err);
    else if (!strcmp(o.what, "eval")) rc = bench_eval(be, &o, err, sizeof err);
    else rc = bench_load(be, &o, err, sizeof err);
    if (rc) fprintf(stderr, "bench_traind: %s: %s\n", o.what, err);
    be->destroy(be);
    return rc ? 1 : 0;
}
