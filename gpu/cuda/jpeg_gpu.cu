/* gpu/cuda/jpeg_gpu.cu — the importer's GPU JPEG decoder (gpu/jpeg_gpu.h):
 * nvJPEG's batched decode (the hardware JPEG engines of A100/H100-class
 * cards, or nvJPEG's CUDA decoder) into device memory, then gpu/image.h's
 * resize as a kernel, then the S x S frames back to the host.
 *
 * Owns: loading nvJPEG (dlopen of libnvjpeg.so.13/.12, declarations in
 * gpu/cuda/nvjpeg_api.h), its handle, one decode state + stream + buffers per
 * calling thread, and the resize kernel.
 *
 * The resize computes what image_resizer_run computes, bit for bit: the same
 * taps and weights (double arithmetic, each operation correctly rounded on
 * both sides), the vertical pass first (w0*s0, then += wt*st, in order), the
 * horizontal pass from 0 in tap order, rounding by (int)(a + 0.5f) and
 * clamping; this file is built with --fmad=false (Makefile) so that no
 * multiply-add is contracted. test_ops_gpu compares the two exactly.
 *
 * Failures here never end the process (the import runs inside the daemon):
 * every call is checked and reported through err. */
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dlfcn.h>
#include <pthread.h>
#include <cuda_runtime.h>

extern "C" {
#include "gpu/jpeg_gpu.h"
#include "store/errbuf.h"
}
#include "gpu/cuda/nvjpeg_api.h"

#define JG_BLOCK 256
#define JG_MAX_SMEM (200 * 1024)   /* dynamic shared memory of one block, at most */

/* ---- the resize kernel ------------------------------------------------------------ */

typedef struct {
    const uint8_t *src;    /* the region's top-left pixel, device */
    long long stride;      /* bytes between source rows */
    int rw, rh;            /* region size */
    uint8_t *dst;          /* device u8 [S][S][3] */
} jg_param_t;

__device__ static double jg_tri(double x) {
    x = fabs(x);
    return x < 1 ? 1 - x : 0;
}

/* The taps of output index i on an axis of `in` source pixels and `out`
 * outputs, as image_axis_init computes them: source lo..hi with weights
 * tri((j - c) / fs) / sum, or the nearest pixel alone (nearest = 1). */
typedef struct {
    double c, fs, sum;
    int lo, hi, nearest;
} jg_taps_t;

__device__ static jg_taps_t jg_taps(int in, int out, int i) {
    jg_taps_t t;
    double scale = (double)in / out;
    t.fs = scale > 1 ? scale : 1;
    t.c = (i + 0.5) * scale - 0.5;
    t.lo = (int)floor(t.c - t.fs) + 1;
    t.hi = (int)ceil(t.c + t.fs) - 1;
    if (t.lo < 0) t.lo = 0;
    if (t.hi > in - 1) t.hi = in - 1;
    t.sum = 0;
    for (int j = t.lo; j <= t.hi; j++) t.sum += jg_tri((j - t.c) / t.fs);
    t.nearest = !(t.sum > 0);
    if (t.nearest) {
        int j = (int)floor(t.c + 0.5);
        t.lo = t.hi = j < 0 ? 0 : j > in - 1 ? in - 1 : j;
    }
    return t;
}

__device__ static float jg_weight(const jg_taps_t *t, int j) {
    return t->nearest ? 1.0f : (float)(jg_tri((j - t->c) / t->fs) / t->sum);
}

/* One block per (output row y, frame): the vertical pass of row y into shared
 * memory ([rw*3] floats), then the horizontal pass, a thread per output x.
 * smem: [rw*3] row floats, then [kv] vertical weights. */
__global__ void jg_resize_kernel(const jg_param_t *par, int S) {
    extern __shared__ float jg_smem[];
    const jg_param_t p = par[blockIdx.y];
    const int y = blockIdx.x, n3 = p.rw * 3;
    float *row = jg_smem, *wv = jg_smem + n3;
    __shared__ jg_taps_t ty;
    if (threadIdx.x == 0) ty = jg_taps(p.rh, S, y);
    __syncthreads();
    const int cnt = ty.hi - ty.lo + 1;
    for (int t = threadIdx.x; t < cnt; t += blockDim.x) wv[t] = jg_weight(&ty, ty.lo + t);
    __syncthreads();
    for (int j = threadIdx.x; j < n3; j += blockDim.x) {
        const uint8_t *s = p.src + (long long)ty.lo * p.stride + j;
        float a = wv[0] * (float)s[0];
        for (int t = 1; t < cnt; t++) a += wv[t] * (float)s[(long long)t * p.stride];
        row[j] = a;
    }
    __syncthreads();
    uint8_t *d = p.dst + (size_t)y * S * 3;
    for (int x = threadIdx.x; x < S; x += blockDim.x) {
        jg_taps_t tx = jg_taps(p.rw, S, x);
        float a0 = 0, a1 = 0, a2 = 0;
        for (int j = tx.lo; j <= tx.hi; j++) {
            float w = jg_weight(&tx, j);
            a0 += w * row[j * 3];
            a1 += w * row[j * 3 + 1];
            a2 += w * row[j * 3 + 2];
        }
        float a[3] = {a0, a1, a2};
        for (int c = 0; c < 3; c++) {
            int v = (int)(a[c] + 0.5f);
            d[x * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

/* ---- nvJPEG, loaded ---------------------------------------------------------------- */

typedef struct {
    void *lib;
    nvj_create_ex_fn create_ex;
    nvj_destroy_fn destroy;
    nvj_state_create_fn state_create;
    nvj_state_destroy_fn state_destroy;
    nvj_batched_init_fn batched_init;
    nvj_batched_fn batched;
} jg_nvjpeg_t;

static int jg_load(jg_nvjpeg_t *nv, char *why, size_t len) {
    static const char *const names[] = {"libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so",
                                        "/usr/local/cuda/lib64/libnvjpeg.so.13",
                                        "/usr/local/cuda/lib64/libnvjpeg.so.12"};
    memset(nv, 0, sizeof *nv);
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !nv->lib; i++)
        nv->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!nv->lib) return errbuf_set(why, len, "nvJPEG is not installed (libnvjpeg.so.13 or .12 not found)");
#define JG_SYM(field, name)                                                                   \
    if (!(*(void **)&nv->field = dlsym(nv->lib, name))) {                                     \
        dlclose(nv->lib);                                                                     \
        nv->lib = NULL;                                                                       \
        return errbuf_set(why, len, "nvJPEG lacks %s", name);                                 \
    }
    JG_SYM(create_ex, "nvjpegCreateEx")
    JG_SYM(destroy, "nvjpegDestroy")
    JG_SYM(state_create, "nvjpegJpegStateCreate")
    JG_SYM(state_destroy, "nvjpegJpegStateDestroy")
    JG_SYM(batched_init, "nvjpegDecodeBatchedInitialize")
    JG_SYM(batched, "nvjpegDecodeBatched")
#undef JG_SYM
    return 0;
}

/* ---- the decoder ------------------------------------------------------------------- */

typedef struct {                 /* one calling thread's */
    nvj_state_t state;
    int init_n;                  /* the batch size the state was initialized for (0: none) */
    cudaStream_t stream;
    uint8_t *dimg;               /* full-size decoded frames, device */
    size_t dimg_cap;
    uint8_t *dout, *hout;        /* resized frames, device and pinned host [n][S][S][3] */
    size_t dout_cap, hout_cap;
    jg_param_t *dpar, *hpar;     /* resize parameters, device and pinned host [batch] */
    nvj_image_t *dest;           /* [batch] */
    const unsigned char **data;  /* [batch] */
    size_t *lens;                /* [batch] */
    int *idx;                    /* [batch]: which frame each decoded image is */
    const uint8_t **src;         /* [batch]: its full-size pixels, device */
    size_t *stride;              /* [batch]: their row stride in bytes */
    double spent[3];             /* seconds: in nvJPEG's calls, the resize and copy back waited for, copying out */
} jg_thread_t;

static double jg_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {                 /* a pinned block of the host_alloc pool */
    void *p;
    size_t bytes;
    int used;
} jg_block_t;

typedef struct {
    jpeg_gpu_t pub;
    jg_nvjpeg_t nv;
    nvj_handle_t h;
    jg_thread_t *th;
    char name[64];
    pthread_mutex_t pool_mu;
    jg_block_t pool[JPEG_GPU_HOST_BLOCKS];
    int pool_n;
} jg_t;

static int jg_cuda(cudaError_t e, const char *what, char *err, size_t errlen) {
    if (e == cudaSuccess) return 0;
    return errbuf_set(err, errlen, "GPU JPEG decoder: %s: %s", what, cudaGetErrorString(e));
}

/* Grows a device (pinned: host) buffer to n bytes. 0 or -1 with err. */
static int jg_grow(void **p, size_t *cap, size_t n, int pinned, char *err, size_t errlen) {
    if (n <= *cap) return 0;
    if (*p) pinned ? cudaFreeHost(*p) : cudaFree(*p);
    *p = NULL;
    *cap = 0;
    cudaError_t e = pinned ? cudaMallocHost(p, n) : cudaMalloc(p, n);
    if (jg_cuda(e, pinned ? "pinned memory" : "device memory", err, errlen)) {
        *p = NULL;
        return -1;
    }
    *cap = n;
    return 0;
}

static void jg_trim(jpeg_gpu_t *g) {
    jg_t *j = (jg_t *)g->impl;
    if (cudaSetDevice(g->device) != cudaSuccess) return;
    for (int t = 0; t < g->threads; t++) {
        jg_thread_t *s = &j->th[t];
        cudaStreamSynchronize(s->stream);
        cudaFree(s->dimg);
        cudaFree(s->dout);
        cudaFreeHost(s->hout);
        s->dimg = s->dout = s->hout = NULL;
        s->dimg_cap = s->dout_cap = s->hout_cap = 0;
    }
}

/* The host_alloc pool: a free block large enough, else a new one pinned. */
static void *jg_host_alloc(jpeg_gpu_t *g, size_t bytes) {
    jg_t *j = (jg_t *)g->impl;
    void *p = NULL;
    pthread_mutex_lock(&j->pool_mu);
    for (int i = 0; i < j->pool_n && !p; i++)
        if (!j->pool[i].used && j->pool[i].bytes >= bytes) {
            j->pool[i].used = 1;
            p = j->pool[i].p;
        }
    if (!p && j->pool_n < JPEG_GPU_HOST_BLOCKS && cudaSetDevice(g->device) == cudaSuccess) {
        size_t b = bytes > JPEG_GPU_HOST_BLOCK ? bytes : JPEG_GPU_HOST_BLOCK;
        if (cudaHostAlloc(&p, b, cudaHostAllocPortable) == cudaSuccess)
            j->pool[j->pool_n++] = (jg_block_t){p, b, 1};
        else {
            cudaGetLastError();   /* not sticky; the importer falls back to malloc */
            p = NULL;
        }
    }
    pthread_mutex_unlock(&j->pool_mu);
    return p;
}

static void jg_host_free(jpeg_gpu_t *g, void *p) {
    jg_t *j = (jg_t *)g->impl;
    if (!p) return;
    pthread_mutex_lock(&j->pool_mu);
    int found = 0;
    for (int i = 0; i < j->pool_n && !found; i++)
        if (j->pool[i].p == p) {
            assert(j->pool[i].used);
            j->pool[i].used = 0;
            found = 1;
        }
    assert(found);   /* only blocks of this pool come back */
    pthread_mutex_unlock(&j->pool_mu);
}

static void jg_spent(jpeg_gpu_t *g, double out[3]) {
    jg_t *j = (jg_t *)g->impl;
    out[0] = out[1] = out[2] = 0;
    for (int t = 0; t < g->threads; t++)
        for (int k = 0; k < 3; k++) out[k] += j->th[t].spent[k];
}

static void jg_close(jpeg_gpu_t *g) {
    if (!g) return;
    jg_t *j = (jg_t *)g->impl;
    cudaSetDevice(g->device);
    for (int t = 0; j->th && t < g->threads; t++) {
        jg_thread_t *s = &j->th[t];
        if (s->stream) cudaStreamSynchronize(s->stream);
        if (s->state) j->nv.state_destroy(s->state);
        if (s->stream) cudaStreamDestroy(s->stream);
        cudaFree(s->dimg);
        cudaFree(s->dout);
        cudaFreeHost(s->hout);
        cudaFree(s->dpar);
        cudaFreeHost(s->hpar);
        free(s->dest);
        free(s->data);
        free(s->lens);
        free(s->idx);
        free(s->src);
        free(s->stride);
    }
    free(j->th);
    for (int i = 0; i < j->pool_n; i++) {
        assert(!j->pool[i].used);   /* every import handed its slots back */
        cudaFreeHost(j->pool[i].p);
    }
    pthread_mutex_destroy(&j->pool_mu);
    if (j->h) j->nv.destroy(j->h);
    if (j->nv.lib) dlclose(j->nv.lib);
    free(j);
}

/* Dynamic shared memory the resize kernel needs for this frame's region:
 * its row ([rw*3] floats) and the vertical weights (at most kv). */
static size_t jg_smem_bytes(const jpeg_gpu_frame_t *x, int S) {
    double fs = (double)x->rh / S;
    size_t kv = (size_t)ceil(2 * (fs > 1 ? fs : 1)) + 1;
    return ((size_t)x->rw * 3 + kv) * sizeof(float);
}

/* The resize of frames idx[0..m) whose source pixels are at s->src[q]
 * (device, row stride s->stride[q]), then the copy back. 0 or -1 with err. */
static int jg_resize_run(jg_thread_t *s, jpeg_gpu_frame_t *f, int m, int S, char *err, size_t errlen) {
    const uint8_t *const *src = s->src;
    const size_t *stride = s->stride;
    const size_t fb = (size_t)S * S * 3;
    size_t smem = 0;
    for (int q = 0; q < m; q++) {
        const jpeg_gpu_frame_t *x = &f[s->idx[q]];
        size_t need = jg_smem_bytes(x, S);
        if (need > smem) smem = need;
        s->hpar[q] = (jg_param_t){src[q] + (size_t)x->y0 * stride[q] + (size_t)x->x0 * 3, (long long)stride[q],
                                  x->rw, x->rh, s->dout + (size_t)q * fb};
    }
    if (jg_cuda(cudaMemcpyAsync(s->dpar, s->hpar, (size_t)m * sizeof(jg_param_t), cudaMemcpyHostToDevice, s->stream),
                "copy", err, errlen))
        return -1;
    const double t0 = jg_now();
    jg_resize_kernel<<<dim3((unsigned)S, (unsigned)m), JG_BLOCK, smem, s->stream>>>(s->dpar, S);
    if (jg_cuda(cudaGetLastError(), "resize kernel", err, errlen)) return -1;
    /* back to the host: straight into pinned destinations (the importer's slots), a run of frames
     * whose destinations follow one another in one copy; the others through hout */
    int via_hout = 0;
    for (int q = 0; q < m;) {
        const jpeg_gpu_frame_t *x = &f[s->idx[q]];
        if (!x->pinned) {
            via_hout = 1;
            q++;
            continue;
        }
        int e = q + 1;
        while (e < m && f[s->idx[e]].pinned && f[s->idx[e]].dst == x->dst + (size_t)(e - q) * fb) e++;
        if (jg_cuda(cudaMemcpyAsync(x->dst, s->dout + (size_t)q * fb, (size_t)(e - q) * fb, cudaMemcpyDeviceToHost,
                                    s->stream), "copy", err, errlen)) {
            cudaStreamSynchronize(s->stream);   /* no copy still writing into a slot the importer hands back */
            return -1;
        }
        q = e;
    }
    if (via_hout && jg_cuda(cudaMemcpyAsync(s->hout, s->dout, (size_t)m * fb, cudaMemcpyDeviceToHost, s->stream),
                            "copy", err, errlen)) {
        cudaStreamSynchronize(s->stream);
        return -1;
    }
    if (jg_cuda(cudaStreamSynchronize(s->stream), "resize", err, errlen)) return -1;
    const double t1 = jg_now();
    for (int q = 0; q < m; q++) {
        jpeg_gpu_frame_t *x = &f[s->idx[q]];
        if (!x->pinned) memcpy(x->dst, s->hout + (size_t)q * fb, fb);
        x->ok = 1;
    }
    s->spent[1] += t1 - t0;
    s->spent[2] += jg_now() - t1;
    return 0;
}

/* Can this frame's region be resized by one block (its row in shared memory)? */
static int jg_fits(const jpeg_gpu_frame_t *x, int S) {
    return x->rw >= 1 && x->rh >= 1 && x->x0 >= 0 && x->y0 >= 0 && x->x0 + x->rw <= x->w && x->y0 + x->rh <= x->h &&
           jg_smem_bytes(x, S) <= JG_MAX_SMEM;
}

/* What a call does first: checks its arguments, binds the device, picks the
 * frames that fit (s->idx[0..*m); the others are refused) and grows caller
 * t's buffers for them. Caller t's state, or NULL with *m = -1 and err. */
static jg_thread_t *jg_begin(jpeg_gpu_t *g, int t, int n, jpeg_gpu_frame_t *f, int S, int *m, char *err,
                             size_t errlen) {
    jg_t *j = (jg_t *)g->impl;
    *m = -1;
    if (t < 0 || t >= g->threads || n < 0 || n > g->batch) {
        errbuf_set(err, errlen, "GPU JPEG decoder: caller %d of %d, %d frames of at most %d", t, g->threads, n,
                   g->batch);
        return NULL;
    }
    jg_thread_t *s = &j->th[t];
    if (jg_cuda(cudaSetDevice(g->device), "device", err, errlen)) return NULL;
    int k = 0;
    size_t pixels = 0, fb = (size_t)S * S * 3;
    for (int i = 0; i < n; i++) {
        f[i].ok = 0;
        if (!jg_fits(&f[i], S)) continue;
        s->idx[k++] = i;
        pixels += (size_t)f[i].w * f[i].h;
    }
    if (k > 0 && (jg_grow((void **)&s->dimg, &s->dimg_cap, pixels * 3, 0, err, errlen) ||
                  jg_grow((void **)&s->dout, &s->dout_cap, (size_t)k * fb, 0, err, errlen) ||
                  jg_grow((void **)&s->hout, &s->hout_cap, (size_t)k * fb, 1, err, errlen)))
        return NULL;
    for (size_t q = 0, off = 0; q < (size_t)k; q++) {   /* the full-size frames, one after another in dimg */
        const jpeg_gpu_frame_t *x = &f[s->idx[q]];
        s->src[q] = s->dimg + off;
        s->stride[q] = (size_t)x->w * 3;
        off += (size_t)x->w * x->h * 3;
    }
    *m = k;
    return s;
}

static int jg_decode(jpeg_gpu_t *g, int t, int n, jpeg_gpu_frame_t *f, int S, char *err, size_t errlen) {
    jg_t *j = (jg_t *)g->impl;
    int m;
    const double t0 = jg_now();
    jg_thread_t *s = jg_begin(g, t, n, f, S, &m, err, errlen);
    if (m <= 0) return m;
    for (int q = 0; q < m; q++) {
        s->data[q] = f[s->idx[q]].data;
        s->lens[q] = f[s->idx[q]].len;
        memset(&s->dest[q], 0, sizeof s->dest[q]);
        s->dest[q].channel[0] = (unsigned char *)s->src[q];
        s->dest[q].pitch[0] = s->stride[q];
    }
    if (s->init_n != m) {
        int st = j->nv.batched_init(j->h, s->state, m, 1, NVJ_OUTPUT_RGBI);
        if (st != NVJ_STATUS_SUCCESS)
            return errbuf_set(err, errlen, "GPU JPEG decoder: nvjpegDecodeBatchedInitialize(%d): status %d", m, st);
        s->init_n = m;
    }
    int st = j->nv.batched(j->h, s->state, s->data, s->lens, s->dest, s->stream);
    s->spent[0] += jg_now() - t0;
    if (st != NVJ_STATUS_SUCCESS) {
        /* a frame nvJPEG refuses: the whole batch goes to the CPU decoder, which
         * names the bad frame; a device fault shows in the stream */
        s->init_n = 0;
        cudaError_t e = cudaStreamSynchronize(s->stream);
        if (e == cudaSuccess) e = cudaGetLastError();
        return jg_cuda(e, "nvjpegDecodeBatched", err, errlen);
    }
    return jg_resize_run(s, f, m, S, err, errlen);
}

static int jg_resize(jpeg_gpu_t *g, int t, int n, jpeg_gpu_frame_t *f, const uint8_t *const *host_src, int S,
                     char *err, size_t errlen) {
    int m;
    jg_thread_t *s = jg_begin(g, t, n, f, S, &m, err, errlen);
    if (m <= 0) return m;
    for (int q = 0; q < m; q++)
        if (jg_cuda(cudaMemcpyAsync((void *)s->src[q], host_src[s->idx[q]], s->stride[q] * f[s->idx[q]].h,
                                    cudaMemcpyHostToDevice, s->stream), "copy", err, errlen))
            return -1;
    return jg_resize_run(s, f, m, S, err, errlen);
}

extern "C" jpeg_gpu_t *jpeg_gpu_cuda_open(int device, const char *backend, int threads, int batch, char *why,
                                          size_t len) {
    if (!backend || !backend[0]) backend = "auto";
    int want_hw = strcmp(backend, "auto") == 0 || strcmp(backend, "hardware") == 0;
    int want_cuda = strcmp(backend, "auto") == 0 || strcmp(backend, "cuda") == 0;
    if (!want_hw && !want_cuda) {
        errbuf_set(why, len, "unknown GPU JPEG backend \"%s\" (expected auto, hardware or cuda)", backend);
        return NULL;
    }
    if (threads < 1 || threads > 64 || batch < 1 || batch > 4096) {
        errbuf_set(why, len, "GPU JPEG decoder: %d threads, batch %d (1..64, 1..4096)", threads, batch);
        return NULL;
    }
    jg_t *j = (jg_t *)calloc(1, sizeof *j);
    if (!j) {
        errbuf_set(why, len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&j->pool_mu, NULL);
    jpeg_gpu_t *g = &j->pub;
    g->device = device;
    g->threads = threads;
    g->batch = batch;
    g->decode = jg_decode;
    g->resize = jg_resize;
    g->trim = jg_trim;
    g->spent = jg_spent;
    g->host_alloc = jg_host_alloc;
    g->host_free = jg_host_free;
    g->close = jg_close;
    g->impl = j;
    /* the kernel may use up to JG_MAX_SMEM (jg_fits), set once: callers at once would race on a per-call value */
    if (jg_load(&j->nv, why, len) || jg_cuda(cudaSetDevice(device), "device", why, len) ||
        jg_cuda(cudaFuncSetAttribute(jg_resize_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, JG_MAX_SMEM),
                "shared memory", why, len)) {
        jg_close(g);
        return NULL;
    }
    /* strict: nvJPEG refuses the bitstream errors it checks for (the batch goes to the CPU decoder,
     * which names the frame) — not every corruption: on the H100 a file with 64 bytes of its entropy
     * data overwritten still decodes, so imgdec_jpeg_plain's marker check stands before this; a
     * library that refuses the flag gets a handle without it, said in the name */
    int st = -1;
    for (int k = 0; k < 4 && st != NVJ_STATUS_SUCCESS; k++) {
        int hw = k < 2, strict = k % 2 == 0;
        if ((hw && !want_hw) || (!hw && !want_cuda)) continue;
        j->h = NULL;
        st = j->nv.create_ex(hw ? NVJ_BACKEND_HARDWARE : NVJ_BACKEND_GPU_HYBRID, NULL, NULL,
                             strict ? NVJ_FLAGS_BITSTREAM_STRICT : NVJ_FLAGS_DEFAULT, &j->h);
        if (st == NVJ_STATUS_SUCCESS)
            snprintf(j->name, sizeof j->name, "nvjpeg %s%s", hw ? "hardware" : "cuda", strict ? "" : " (not strict)");
    }
    if (st != NVJ_STATUS_SUCCESS) {
        j->h = NULL;
        errbuf_set(why, len, "nvJPEG refused the %s decoder on device %d (status %d)", backend, device, st);
        jg_close(g);
        return NULL;
    }
    g->name = j->name;
    j->th = (jg_thread_t *)calloc((size_t)threads, sizeof *j->th);
    if (!j->th) {
        errbuf_set(why, len, "out of memory");
        jg_close(g);
        return NULL;
    }
    for (int t = 0; t < threads; t++) {
        jg_thread_t *s = &j->th[t];
        size_t pb = (size_t)batch * sizeof(jg_param_t);
        s->dest = (nvj_image_t *)calloc((size_t)batch, sizeof *s->dest);
        s->data = (const unsigned char **)calloc((size_t)batch, sizeof *s->data);
        s->lens = (size_t *)calloc((size_t)batch, sizeof *s->lens);
        s->idx = (int *)calloc((size_t)batch, sizeof *s->idx);
        s->src = (const uint8_t **)calloc((size_t)batch, sizeof *s->src);
        s->stride = (size_t *)calloc((size_t)batch, sizeof *s->stride);
        if (!s->dest || !s->data || !s->lens || !s->idx || !s->src || !s->stride) {
            errbuf_set(why, len, "out of memory");
            jg_close(g);
            return NULL;
        }
        if (j->nv.state_create(j->h, &s->state) != NVJ_STATUS_SUCCESS) {
            s->state = NULL;
            errbuf_set(why, len, "nvJPEG: cannot create a decode state");
            jg_close(g);
            return NULL;
        }
        /* initialized for a full batch now, the size most calls have (another size initializes again) */
        if (j->nv.batched_init(j->h, s->state, batch, 1, NVJ_OUTPUT_RGBI) == NVJ_STATUS_SUCCESS) s->init_n = batch;
        if (jg_cuda(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "stream", why, len) ||
            jg_cuda(cudaMalloc((void **)&s->dpar, pb), "device memory", why, len) ||
            jg_cuda(cudaMallocHost((void **)&s->hpar, pb), "pinned memory", why, len)) {
            jg_close(g);
            return NULL;
        }
    }
    return g;
}
