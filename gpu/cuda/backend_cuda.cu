/* gpu/cuda/backend_cuda.cu — the CUDA backend: lifetime, memory, sharing
 * between processes (CUDA IPC), the data ops, and the op table.
 *
 * One backend = one device + one stream; every op is enqueued on that stream.
 * Functions returning a host value synchronize. Ordinary failures (allocation,
 * IPC) return NULL / -1 with a message in b->err; a failing CUDA call inside an
 * op exits the process with the call site (see cuda_common.h).
 *
 * Environment: TRAIND_ATTENTION=cublas selects the unfused attention fallback
 * (cuBLAS batched products + softmax kernel) instead of the fused kernels;
 * TRAIND_ATTENTION=own keeps the bf16 forward on traind's own fused kernel
 * rather than cuDNN's fused attention (sdpa_cudnn.cu, the default where
 * cuDNN loads);
 * TRAIND_LT_AUTOTUNE=1 times cuBLASLt candidates per shape (matmul.cu);
 * TRAIND_TEST_GPU_FAULT=FILE is a test hook that makes one process fault on
 * the GPU (cuda_common.h). */
#include <dlfcn.h>
#include <cstring>
#include <cstdarg>
#include <algorithm>
#include <unistd.h>
#include "gpu/cuda/cuda_common.h"

static void cu_seterr(backend_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, sizeof b->err, fmt, ap);
    va_end(ap);
}

void *cu_dlopen_lib(const char *env, const char *soname, const char *pkg, char *why, size_t whylen) {
    const char *path = getenv(env);
    if (path && path[0]) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) snprintf(why, whylen, "%s=%s: %s", env, path, dlerror());
        return h;
    }
    static const char *const dirs[] = {
        "", "/usr/local/cuda/lib64/", "/usr/local/cuda/lib/", "/usr/lib/x86_64-linux-gnu/",
        "/usr/local/lib/python3.12/dist-packages/nvidia/%s/lib/", "/usr/lib/python3/dist-packages/nvidia/%s/lib/",
    };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char dir[256], full[512];
        snprintf(dir, sizeof dir, dirs[i], pkg);
        snprintf(full, sizeof full, "%s%s", dir, soname);
        void *h = dlopen(full, RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    snprintf(why, whylen, "%s not found (set %s): %s", soname, env, dlerror());
    return NULL;
}

float cu_time_ms(backend_t *b, int (*run)(backend_t *b, void *ctx), void *ctx) {
    cudaStream_t st = cu_impl(b)->stream;
    if (run(b, ctx)) return 1e30f;   /* warm-up */
    cudaEvent_t e0, e1;
    CU_CHECK(cudaEventCreate(&e0));
    CU_CHECK(cudaEventCreate(&e1));
    CU_CHECK(cudaEventRecord(e0, st));
    int ok = 1;
    for (int r = 0; r < 3 && ok; r++) ok = run(b, ctx) == 0;
    CU_CHECK(cudaEventRecord(e1, st));
    CU_CHECK(cudaEventSynchronize(e1));
    float ms = 1e30f;
    if (ok) {
        CU_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        ms /= 3;
    }
    CU_CHECK(cudaEventDestroy(e0));
    CU_CHECK(cudaEventDestroy(e1));
    return ms;
}

void *cu_scratch(backend_t *b, int slot, size_t bytes) {
    cu_impl_t *c = cu_impl(b);
    CU_ASSERT(slot >= 0 && slot < CU_NSCRATCH, "slot %d", slot);
    if (c->scratch_size[slot] >= bytes && c->scratch[slot]) return c->scratch[slot];
    size_t want = std::max(bytes, c->scratch_size[slot] * 5 / 4);
    want = (want + 255) & ~(size_t)255;
    if (c->scratch[slot]) CU_CHECK(cudaFree(c->scratch[slot]));   /* synchronizes */
    c->scratch[slot] = NULL;
    c->scratch_size[slot] = 0;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, want);
    if (e != cudaSuccess) {
        fprintf(stderr, "traind: cuda backend: cannot allocate %zu bytes of scratch on device %d: %s\n",
                want, c->device, cudaGetErrorString(e));
        exit(EXIT_FAILURE);
    }
    c->scratch[slot] = p;
    c->scratch_size[slot] = want;
    return p;
}

/* ---- test hook: a real GPU fault (see cuda_common.h) ------------------------- */

__global__ void cu_fault_kernel(int *bad) { bad[threadIdx.x] = 1; }

void cu_fault_check(backend_t *b) {
    cu_impl_t *c = cu_impl(b);
    if (unlink(c->fault_path) != 0) return;   /* not armed, or another process took it */
    fprintf(stderr, "traind: TRAIND_TEST_GPU_FAULT: faulting on device %d now\n", c->device);
    cu_fault_kernel<<<1, 32, 0, c->stream>>>((int *)(uintptr_t)0x10);
    CU_LAUNCH_CHECK();
    CU_CHECK(cudaStreamSynchronize(c->stream));   /* reports the illegal address and exits */
}

/* ---- lifetime and memory ----------------------------------------------------- */

static void cu_destroy(backend_t *b) {
    if (!b) return;
    cu_impl_t *c = cu_impl(b);
    if (c) {
        cudaSetDevice(c->device);
        cudaStreamSynchronize(c->stream);
        cu_lt_destroy(b);
        cu_sdpa_destroy(b);
        cu_dnn_destroy(b);
        if (c->blas) cublasDestroy(c->blas);
        for (int i = 0; i < CU_NSCRATCH; i++) if (c->scratch[i]) cudaFree(c->scratch[i]);
        for (int i = 0; i < 2; i++) {
            if (c->staging[i]) cudaFreeHost(c->staging[i]);
            if (c->dstage[i]) cudaFree(c->dstage[i]);
            if (c->staging_free[i]) cudaEventDestroy(c->staging_free[i]);
        }
        if (c->red_dev) cudaFree(c->red_dev);
        if (c->red_host) cudaFreeHost(c->red_host);
        if (c->lt_ws) cudaFree(c->lt_ws);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(b);
}

static void *cu_alloc(backend_t *b, size_t bytes) {
    cu_enter(b);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        cu_seterr(b, "cuda: cannot allocate %zu bytes on device %d (%zu of %zu bytes free): %s",
                  bytes, cu_impl(b)->device, fr, tot, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void cu_free(backend_t *b, void *p) {
    if (!p) return;
    cu_enter(b);
    CU_CHECK(cudaFree(p));
}

static void *cu_host_alloc(backend_t *b, size_t bytes) {
    cu_enter(b);
    void *p = NULL;
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 64);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        cu_seterr(b, "cuda: cannot allocate %zu bytes of pinned host memory: %s", bytes,
                  cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void cu_host_free(backend_t *b, void *p) {
    if (!p) return;
    cu_enter(b);
    CU_CHECK(cudaFreeHost(p));
}

/* Synchronous: returns when the bytes are on the device, so host_src (pageable
 * or pinned staging the caller refills next) may be reused at once. Bulk
 * u8 image data goes through images_from_u8, which overlaps its copies. */
static void cu_upload(backend_t *b, void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    cu_enter(b);
    cu_impl_t *c = cu_impl(b);
    CU_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    CU_CHECK(cudaStreamSynchronize(c->stream));
}

static void cu_download(backend_t *b, void *host_dst, const void *src, size_t bytes) {
    cu_enter(b);
    cu_impl_t *c = cu_impl(b);
    if (bytes) CU_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CU_CHECK(cudaStreamSynchronize(c->stream));
}

static void cu_copy(backend_t *b, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    cu_enter(b);
    CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu_impl(b)->stream));
}

static void cu_zero(backend_t *b, void *p, size_t bytes) {
    if (!bytes) return;
    cu_enter(b);
    CU_CHECK(cudaMemsetAsync(p, 0, bytes, cu_impl(b)->stream));
}

static void cu_sync(backend_t *b) {
    cu_enter(b);
    CU_CHECK(cudaStreamSynchronize(cu_impl(b)->stream));
}

static int cu_mem_info(backend_t *b, size_t *free_bytes, size_t *total_bytes) {
    cu_enter(b);
    size_t f = 0, t = 0;
    cudaError_t e = cudaMemGetInfo(&f, &t);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        cu_seterr(b, "cuda: cudaMemGetInfo: %s", cudaGetErrorString(e));
        return -1;
    }
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
    return 0;
}

static const char *cu_device_name(backend_t *b) { return cu_impl(b)->name; }

/* ---- memory shared between processes (CUDA IPC) ----------------------------------
 * Handle text: "cudaipc:<device>:<128 hex digits of cudaIpcMemHandle_t>". */

#define CU_IPC_PREFIX "cudaipc:"

static void *cu_shared_alloc(backend_t *b, size_t bytes, char handle[BACKEND_HANDLE_MAX]) {
    void *p = cu_alloc(b, bytes);
    if (!p) return NULL;
    cudaIpcMemHandle_t h;
    cudaError_t e = cudaIpcGetMemHandle(&h, p);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        cu_seterr(b, "cuda: cudaIpcGetMemHandle: %s", cudaGetErrorString(e));
        cudaFree(p);
        return NULL;
    }
    static_assert(sizeof h.reserved * 2 + 32 < BACKEND_HANDLE_MAX, "handle text fits");
    int n = snprintf(handle, BACKEND_HANDLE_MAX, CU_IPC_PREFIX "%d:", cu_impl(b)->device);
    for (size_t i = 0; i < sizeof h.reserved; i++)
        n += snprintf(handle + n, BACKEND_HANDLE_MAX - n, "%02x", (unsigned char)h.reserved[i]);
    return p;
}

static void cu_shared_free(backend_t *b, void *p, size_t bytes, const char *handle) {
    cu_free(b, p);
}

static int cu_hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void *cu_shared_open(backend_t *b, const char *handle, size_t bytes) {
    cu_impl_t *c = cu_impl(b);
    if (!handle || strncmp(handle, CU_IPC_PREFIX, strlen(CU_IPC_PREFIX)) != 0) {
        cu_seterr(b, "cuda: not a CUDA IPC handle: '%.40s'", handle ? handle : "(null)");
        return NULL;
    }
    const char *s = handle + strlen(CU_IPC_PREFIX);
    char *end = NULL;
    long dev = strtol(s, &end, 10);
    if (end == s || *end != ':') {
        cu_seterr(b, "cuda: malformed IPC handle (device)");
        return NULL;
    }
    if (dev != c->device) {
        cu_seterr(b, "cuda: IPC handle is for device %ld, this backend drives device %d", dev, c->device);
        return NULL;
    }
    s = end + 1;
    cudaIpcMemHandle_t h;
    if (strlen(s) != 2 * sizeof h.reserved) {
        cu_seterr(b, "cuda: malformed IPC handle (length %zu, want %zu hex digits)", strlen(s),
                  2 * sizeof h.reserved);
        return NULL;
    }
    for (size_t i = 0; i < sizeof h.reserved; i++) {
        int hi = cu_hexval(s[2 * i]), lo = cu_hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            cu_seterr(b, "cuda: malformed IPC handle (not hex)");
            return NULL;
        }
        h.reserved[i] = (char)(hi << 4 | lo);
    }
    cu_enter(b);
    void *p = NULL;
    cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        cu_seterr(b, "cuda: cudaIpcOpenMemHandle: %s", cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void cu_shared_close(backend_t *b, void *p, size_t bytes) {
    if (!p) return;
    cu_enter(b);
    CU_CHECK(cudaStreamSynchronize(cu_impl(b)->stream));
    CU_CHECK(cudaIpcCloseMemHandle(p));
}

/* ---- data --------------------------------------------------------------------- */

/* Host u8 images -> pinned staging (two buffers, reused once the event says
 * the previous copy out of it finished) -> device staging -> normalize kernel
 * writing dst. Whole images per chunk. If host_src is itself pinned it is
 * copied from directly. Returns once host_src may be reused. */
static void cu_images_from_u8(backend_t *b, void *dst, dtype_t ddt, const uint8_t *host_src,
                              int n, int H, int W, const float mean[3], const float std_[3]) {
    if (n <= 0) return;
    cu_enter(b);
    cu_impl_t *c = cu_impl(b);
    size_t img = (size_t)H * W * 3;
    CU_ASSERT(img > 0, "image size %dx%d", H, W);
    size_t per = CU_STAGING_BYTES / img;
    if (per == 0) per = 1;
    size_t chunk_bytes = per * img;
    if (c->staging_size < chunk_bytes) {
        /* first use, or one image larger than the staging size: (re)allocate */
        size_t want = std::max((size_t)CU_STAGING_BYTES, chunk_bytes);
        CU_CHECK(cudaStreamSynchronize(c->stream));
        for (int i = 0; i < 2; i++) {
            if (c->staging[i]) CU_CHECK(cudaFreeHost(c->staging[i]));
            if (c->dstage[i]) CU_CHECK(cudaFree(c->dstage[i]));
            c->staging[i] = NULL;
            c->dstage[i] = NULL;
            if (cudaMallocHost((void **)&c->staging[i], want) != cudaSuccess ||
                cudaMalloc((void **)&c->dstage[i], want) != cudaSuccess) {
                fprintf(stderr, "traind: cuda backend: cannot allocate %zu bytes of image staging\n", want);
                exit(EXIT_FAILURE);
            }
        }
        c->staging_size = want;
    }
    cudaPointerAttributes attr;
    bool pinned = cudaPointerGetAttributes(&attr, host_src) == cudaSuccess &&
                  attr.type == cudaMemoryTypeHost;
    (void)cudaGetLastError();
    size_t done = 0;
    int k = 0;
    while (done < (size_t)n) {
        size_t cnt = std::min(per, (size_t)n - done);
        const uint8_t *src = host_src + done * img;
        CU_CHECK(cudaEventSynchronize(c->staging_free[k]));   /* buffer k no longer read */
        if (!pinned) {
            memcpy(c->staging[k], src, cnt * img);
            src = c->staging[k];
        }
        CU_CHECK(cudaMemcpyAsync(c->dstage[k], src, cnt * img, cudaMemcpyHostToDevice, c->stream));
        size_t out_off = done * 3 * (size_t)H * W * dtype_size(ddt);
        cu_u8_normalize(b, (char *)dst + out_off, ddt, c->dstage[k], cnt, H, W, mean, std_);
        CU_CHECK(cudaEventRecord(c->staging_free[k], c->stream));
        done += cnt;
        k ^= 1;
    }
    if (pinned) CU_CHECK(cudaStreamSynchronize(c->stream));  /* caller's buffer read */
}

__global__ void cu_gather_rows_kernel(char *dst, const char *src, const int32_t *idx,
                                      size_t row_bytes, int vec4) {
    int r = blockIdx.x;
    const char *s = src + (size_t)idx[r] * row_bytes;
    char *d = dst + (size_t)r * row_bytes;
    if (vec4) {
        size_t nw = row_bytes / 4;
        for (size_t i = threadIdx.x; i < nw; i += blockDim.x)
            ((uint32_t *)d)[i] = ((const uint32_t *)s)[i];
    } else {
        for (size_t i = threadIdx.x; i < row_bytes; i += blockDim.x) d[i] = s[i];
    }
}

static void cu_gather_rows(backend_t *b, void *dst, const void *src, const int32_t *idx,
                           int n, size_t row_bytes) {
    if (n <= 0 || row_bytes == 0) return;
    cu_enter(b);
    int vec4 = row_bytes % 4 == 0 && (uintptr_t)dst % 4 == 0 && (uintptr_t)src % 4 == 0;
    cu_gather_rows_kernel<<<n, 256, 0, cu_impl(b)->stream>>>((char *)dst, (const char *)src, idx,
                                                             row_bytes, vec4);
    CU_LAUNCH_CHECK();
}

/* ---- op table wrappers (make the device current first) --------------------------- */

#define CU_WRAP(name, params, args) static void name##_op params { cu_enter(b); cu_##name args; }

CU_WRAP(cast, (backend_t *b, void *dst, dtype_t ddt, const void *src, dtype_t sdt, size_t n),
        (b, dst, ddt, src, sdt, n))
CU_WRAP(im2col, (backend_t *b, void *out, dtype_t cdt, const void *images, dtype_t idt,
                 const int32_t *idx, int Bn, int H, int W, int p, const im2col_aug_t *aug),
        (b, out, cdt, images, idt, idx, Bn, H, W, p, aug))
CU_WRAP(aug_joints, (backend_t *b, float *out, const float *joints, const int32_t *idx, const aug_sample_t *aug,
                     int Bn), (b, out, joints, idx, aug, Bn))
static void matmul_fwd_op(backend_t *b, void *out, dtype_t odt, const void *inp, const void *w,
                          const float *bias, dtype_t cdt, int M, int N, int K) {
    cu_enter(b);
    cu_impl_t *c = cu_impl(b);
    if (c->fault_path[0] && ++c->fault_ops == CU_FAULT_AFTER) cu_fault_check(b);
    cu_matmul_fwd(b, out, odt, inp, w, bias, cdt, M, N, K);
}
static void matmul_gelu_fwd_op(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                               const float *bias, dtype_t cdt, int M, int N, int K) {
    cu_enter(b);
    cu_impl_t *c = cu_impl(b);
    if (c->fault_path[0] && ++c->fault_ops == CU_FAULT_AFTER) cu_fault_check(b);
    cu_matmul_gelu_fwd(b, out, odt, tmp, inp, w, bias, cdt, M, N, K);
}
CU_WRAP(matmul_dgelu, (backend_t *b, void *g, dtype_t gdt, float *dbias, float *tmp, const void *dout,
                       const void *w, const void *x, dtype_t cdt, int M, int N, int K),
        (b, g, gdt, dbias, tmp, dout, w, x, cdt, M, N, K))
CU_WRAP(matmul_bwd, (backend_t *b, float *dinp, float *dw, float *dbias, const void *dout, dtype_t gdt,
                     const void *inp, const void *w, dtype_t cdt, int M, int N, int K),
        (b, dinp, dw, dbias, dout, gdt, inp, w, cdt, M, N, K))
CU_WRAP(layernorm_fwd, (backend_t *b, void *out, dtype_t odt, float *mean, float *rstd,
                        const float *inp, const float *w, const float *bias, int N, int C, float eps),
        (b, out, odt, mean, rstd, inp, w, bias, N, C, eps))
CU_WRAP(layernorm_bwd, (backend_t *b, float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const void *x, dtype_t xdt, const float *gamma,
                        const float *w, const float *mean, const float *rstd, int N, int C),
        (b, dinp, dw, db, dout, inp, x, xdt, gamma, w, mean, rstd, N, C))
CU_WRAP(attention_fwd, (backend_t *b, void *out, float *lse, const void *qkv, dtype_t cdt,
                        int Bn, int T, int NH, int HS), (b, out, lse, qkv, cdt, Bn, T, NH, HS))
CU_WRAP(attention_bwd, (backend_t *b, void *dqkv, dtype_t ddt, float *dbias, const float *dout, const void *qkv,
                        const void *out, const float *lse, dtype_t cdt, int Bn, int T, int NH, int HS),
        (b, dqkv, ddt, dbias, dout, qkv, out, lse, cdt, Bn, T, NH, HS))
CU_WRAP(gelu_fwd, (backend_t *b, void *out, dtype_t odt, const void *inp, dtype_t idt, size_t n),
        (b, out, odt, inp, idt, n))
CU_WRAP(gelu_bwd, (backend_t *b, void *dinp, dtype_t ddt, float *dbias, const float *dout, const void *inp,
                   dtype_t idt, int M, int N), (b, dinp, ddt, dbias, dout, DT_F32, inp, idt, M, N))
CU_WRAP(layerscale_fwd, (backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                         const float *gamma, int N, int C), (b, out, res, x, xdt, gamma, N, C))
CU_WRAP(layerscale_layernorm_fwd, (backend_t *b, float *out, const float *res, const void *x, dtype_t xdt,
                                   const float *gamma, void *ln, dtype_t odt, float *mean, float *rstd,
                                   const float *w, const float *bias, int N, int C, float eps),
        (b, out, res, x, xdt, gamma, ln, odt, mean, rstd, w, bias, N, C, eps))
CU_WRAP(layerscale_bwd, (backend_t *b, void *dx, dtype_t ddt, float *dgamma, float *dbias, const float *dout,
                         const void *x, dtype_t xdt, const float *gamma, int N, int C),
        (b, dx, ddt, dgamma, dbias, dout, x, xdt, gamma, N, C))
CU_WRAP(embed_fwd, (backend_t *b, float *x, const float *patches, const float *cls, const float *reg,
                    const float *pos, int Bn, int P, int R, int D), (b, x, patches, cls, reg, pos, Bn, P, R, D))
CU_WRAP(embed_bwd, (backend_t *b, float *dpatches, float *dcls, float *dreg, float *dpos,
                    const float *dx, int Bn, int P, int R, int D), (b, dpatches, dcls, dreg, dpos, dx, Bn, P, R, D))
CU_WRAP(token_slice, (backend_t *b, void *out, const void *x, dtype_t dt, int Bn, int T, int D, int t),
        (b, out, x, dt, Bn, T, D, t))
CU_WRAP(token_scatter_add, (backend_t *b, float *dx, const float *dout, int Bn, int T, int D, int t),
        (b, dx, dout, Bn, T, D, t))
CU_WRAP(hand_loss, (backend_t *b, hand_loss_t *host_out, float *dpred, float *dconf, const float *pred,
                    const float *conf_logit, const float *joints, const uint8_t *valid,
                    const uint8_t *has_hand, const int32_t *idx, int Bn, const hand_norm_t *norm),
        (b, host_out, dpred, dconf, pred, conf_logit, joints, valid, has_hand, idx, Bn, norm))
CU_WRAP(scale, (backend_t *b, float *x, float s, size_t n), (b, x, s, n))
CU_WRAP(adamw, (backend_t *b, float *params, void *pc, dtype_t cdt, const float *grads, float *m,
                float *v, const adamw_seg_t *segs, int nsegs, float beta1, float beta2, float eps,
                int t, float gscale), (b, params, pc, cdt, grads, m, v, segs, nsegs, beta1, beta2, eps, t, gscale))
CU_WRAP(stats, (backend_t *b, double out[7], const void *x, dtype_t dt, size_t n), (b, out, x, dt, n))

static double cu_sumsq_op(backend_t *b, const float *x, size_t n) {
    cu_enter(b);
    return cu_sumsq(b, x, n);
}

/* ---- creation -------------------------------------------------------------------- */

extern "C" backend_t *backend_cuda_create(int device, char *err, size_t errlen) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        snprintf(err, errlen, "cuda: no usable device (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        (void)cudaGetLastError();
        return NULL;
    }
    if (device < 0 || device >= count) {
        snprintf(err, errlen, "cuda: device %d does not exist (%d devices)", device, count);
        return NULL;
    }
    e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaFree(0);   /* create the context now */
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cuda: cannot initialize device %d: %s", device, cudaGetErrorString(e));
        (void)cudaGetLastError();
        return NULL;
    }
    cudaDeviceProp prop;
    CU_CHECK(cudaGetDeviceProperties(&prop, device));
    if (prop.major < 9) {
        snprintf(err, errlen, "cuda: device %d (%s) has compute capability %d.%d; this build needs 9.0 (Hopper)",
                 device, prop.name, prop.major, prop.minor);
        return NULL;
    }

    backend_t *b = (backend_t *)calloc(1, sizeof *b);
    cu_impl_t *c = (cu_impl_t *)calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        snprintf(err, errlen, "cuda: out of host memory");
        return NULL;
    }
    b->impl = c;
    b->name = "cuda";
    b->device = device;
    c->device = device;
    snprintf(c->name, sizeof c->name, "%s", prop.name);

    CU_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&c->blas));
    CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    CUBLAS_CHECK(cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH));   /* no tf32 for fp32 */
    for (int i = 0; i < 2; i++)
        CU_CHECK(cudaEventCreateWithFlags(&c->staging_free[i], cudaEventDisableTiming));
    if (cudaMalloc((void **)&c->red_dev, CU_RED_BLOCKS * 8 * sizeof(double)) != cudaSuccess ||
        cudaMallocHost((void **)&c->red_host, 16 * sizeof(double)) != cudaSuccess ||
        cudaMalloc(&c->lt_ws, CU_LT_WORKSPACE) != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(err, errlen, "cuda: cannot allocate the backend's working memory on device %d", device);
        cu_destroy(b);
        return NULL;
    }
    CUBLAS_CHECK(cublasSetWorkspace(c->blas, c->lt_ws, CU_LT_WORKSPACE));
    cu_lt_init(b);
    const char *fp = getenv("TRAIND_TEST_GPU_FAULT");
    if (fp && fp[0]) snprintf(c->fault_path, sizeof c->fault_path, "%s", fp);
    const char *am = getenv("TRAIND_ATTENTION");
    c->attn_mode = (am && strcmp(am, "cublas") == 0) ? CU_ATTN_CUBLAS : CU_ATTN_FUSED;
    c->attn_cudnn = !(am && (strcmp(am, "own") == 0 || strcmp(am, "cublas") == 0));

    b->destroy = cu_destroy;
    b->alloc = cu_alloc;
    b->free = cu_free;
    b->host_alloc = cu_host_alloc;
    b->host_free = cu_host_free;
    b->upload = cu_upload;
    b->download = cu_download;
    b->copy = cu_copy;
    b->zero = cu_zero;
    b->sync = cu_sync;
    b->mem_info = cu_mem_info;
    b->device_name = cu_device_name;
    b->shared_alloc = cu_shared_alloc;
    b->shared_free = cu_shared_free;
    b->shared_open = cu_shared_open;
    b->shared_close = cu_shared_close;
    b->images_from_u8 = cu_images_from_u8;
    b->cast = cast_op;
    b->gather_rows = cu_gather_rows;
    b->im2col = im2col_op;
    b->aug_joints = aug_joints_op;
    b->matmul_fwd = matmul_fwd_op;
    b->matmul_gelu_fwd = matmul_gelu_fwd_op;
    b->matmul_dgelu = matmul_dgelu_op;
    b->matmul_bwd = matmul_bwd_op;
    b->layernorm_fwd = layernorm_fwd_op;
    b->layernorm_bwd = layernorm_bwd_op;
    b->attention_fwd = attention_fwd_op;
    b->attention_bwd = attention_bwd_op;
    b->gelu_fwd = gelu_fwd_op;
    b->gelu_bwd = gelu_bwd_op;
    b->layerscale_fwd = layerscale_fwd_op;
    b->layerscale_layernorm_fwd = layerscale_layernorm_fwd_op;
    b->layerscale_bwd = layerscale_bwd_op;
    b->embed_fwd = embed_fwd_op;
    b->embed_bwd = embed_bwd_op;
    b->token_slice = token_slice_op;
    b->token_scatter_add = token_scatter_add_op;
    b->hand_loss = hand_loss_op;
    b->sumsq = cu_sumsq_op;
    b->scale = scale_op;
    b->adamw = adamw_op;
    b->stats = stats_op;
    return b;
}
