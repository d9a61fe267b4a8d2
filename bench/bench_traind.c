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
 * eval: forward of the eval plan (bf16 parameters, no gradients) at the batch.
 * peak_mem_gb: the largest drop of the backend's free memory (mem_info)
 *   from before the dataset and model were allocated to any point after a
 *   step: the resident samples, parameters, gradients, moments, activations
 *   and workspaces (torch_ref reports max_memory_allocated, which counts its
 *   resident samples, parameters, activations and workspaces too).
 * load: writes a dataset of random U8 [N,H,W,3] shards (ds_write_shard; the
 *   bytes need not be a picture to time the loader), reads every file once to
 *   warm the page cache, then times ds_scan + ds_load into backend memory
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

#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/model.h"
#include "store/dataset.h"

typedef struct {
    const char *backend;
    int device;
    const char *what;          /* train | eval | load */
    char size[32];             /* tiny | small | base | large */
    int batch, image, freeze, warmup, iters, phase_iters, reps, keep;
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
    for (size_t i = 0; i < n * DS_JOINTS; i++) {
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
                           char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    if (!ds_layout(&d->l, n, H, W, DS_F_JOINTS_VALID | DS_F_HAS_HAND)) {
        snprintf(err, errlen, "bad dataset size %lld x %dx%d", (long long)n, H, W);
        return -1;
    }
    d->base = be->alloc(be, d->l.total);
    if (!d->base) {
        snprintf(err, errlen, "cannot allocate %.2f GB for the resident samples: %s", d->l.total / 1e9, be->err);
        return -1;
    }
    ds_view(&d->ds, d->base, &d->l);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    const int64_t chunk = 64;
    const size_t img = (size_t)H * W * 3, row = (size_t)3 * H * W * dtype_size(d->ds.image_dtype);
    uint8_t *u8 = malloc((size_t)chunk * img);
    float *j = malloc((size_t)n * DS_JOINTS * 3 * sizeof(float));
    uint8_t *ones = malloc((size_t)n * DS_JOINTS);
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
    memset(ones, 1, (size_t)n * DS_JOINTS);
    be->upload(be, d->ds.joints, j, (size_t)n * DS_JOINTS * 3 * sizeof(float));
    be->upload(be, d->ds.joints_valid, ones, (size_t)n * DS_JOINTS);
    be->upload(be, d->ds.has_hand, ones, (size_t)n);
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

/* ---- train ---------------------------------------------------------------------- */

typedef struct {
    model_t *m;
    const dataset_t *ds;
    int32_t *d_idx, *h_idx;
    float *d_dpred, *d_dconf;
    uint64_t rng;
    hand_loss_t hl;
    double grad_norm;
} train_ctx_t;

/* One full step; ph (may be NULL) gets the phase times (sync after each). */
static int bench_train_step(backend_t *be, train_ctx_t *t, int B, double ph[5], char *err, size_t errlen) {
    bench_random_idx(t->h_idx, B, t->ds->n, &t->rng);
    be->upload(be, t->d_idx, t->h_idx, (size_t)B * sizeof(int32_t));
    double t0 = ph ? bench_now() : 0;
    if (model_forward(t->m, t->ds->images, t->ds->image_dtype, t->d_idx, B, 0, err, errlen)) return -1;
    if (ph) { be->sync(be); ph[0] = bench_now() - t0; t0 = bench_now(); }
    be->hand_loss(be, &t->hl, t->d_dpred, t->d_dconf, t->m->pred, t->m->conf_logit, t->ds->joints,
                  t->ds->joints_valid, t->ds->has_hand, t->d_idx, B);
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
    if (bench_data_make(be, &d, N, o->image, o->image, o->seed, err, errlen)) return -1;
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
    t.d_dpred = be->alloc(be, (size_t)B * MODEL_JOINTS_OUT * sizeof(float));
    t.d_dconf = be->alloc(be, (size_t)B * MODEL_CONF_OUT * sizeof(float));
    t.h_idx = malloc((size_t)B * sizeof(int32_t));
    times = malloc((size_t)(o->iters > 0 ? o->iters : 1) * sizeof(double));
    ph_all = malloc((size_t)5 * (o->phase_iters > 0 ? o->phase_iters : 1) * sizeof(double));
    if (!t.d_idx || !t.d_dpred || !t.d_dconf || !t.h_idx || !times || !ph_all) {
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
    bench_result(r);
    rc = 0;
done:
    if (t.d_idx) be->free(be, t.d_idx);
    if (t.d_dpred) be->free(be, t.d_dpred);
    if (t.d_dconf) be->free(be, t.d_dconf);
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
    if (bench_data_make(be, &d, N, o->image, o->image, o->seed, err, errlen)) return -1;
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
    float *joints = malloc((size_t)per_shard * DS_JOINTS * 3 * sizeof(float));
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
        int lr = ds_load(be, dir, &in2, base, &l, NULL, NULL, NULL, err, errlen);
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
            "         [--phase-iters 5] [--samples N]\n"
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
        {"seed", required_argument, 0, 'e'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    char *end;
    /* flags may come before and after WHAT: GNU getopt permutes */
    int li = -1;
    while ((c = getopt_long(argc, argv, "h", lo, &li)) != -1) {
        long v = 0;
        if (c == 'b' || c == 's' || c == 'D' || c == 'k' || c == 'h' || c == 'g' || c == 'e') {
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
