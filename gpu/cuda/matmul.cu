/* gpu/cuda/matmul.cu — matrix products through cuBLASLt, and column sums.
 *
 * Row-major products are mapped onto cuBLASLt's column-major ones: a row-major
 * X[R,C] is a column-major X^T with leading dimension C. So
 *   out[M,N] = inp[M,K] @ w[N,K]^T   is  out^T[N,M] = op_T(w^T[K,N]) * inp^T[K,M]
 * and so on below. fp32 products use CUBLAS_COMPUTE_32F (never tf32), bf16
 * products bf16 inputs with fp32 accumulation (CUBLAS_COMPUTE_32F). The bias
 * of the forward product is the BIAS epilogue (fp32 bias added to the fp32
 * accumulator before the output is rounded: exactly the op for fp32
 * outputs; for bf16 outputs cuBLASLt wants a bf16 bias, so the bias is
 * rounded to bf16 first, as PyTorch autocast does). Descriptors,
 * layouts and the chosen algorithm are cached per shape. */
#include <cstring>
#include "gpu/cuda/cuda_common.h"

void cu_lt_init(backend_t *b) {
    cu_impl_t *c = cu_impl(b);
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    const char *tune = getenv("TRAIND_LT_AUTOTUNE");
    c->lt_tune = tune && strcmp(tune, "0") != 0;
}

static void cu_lt_plan_release(cu_lt_plan_t *p) {
    if (!p->valid) return;
    cublasLtMatmulDescDestroy(p->desc);
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->lc);
    p->valid = 0;
}

void cu_lt_destroy(backend_t *b) {
    cu_impl_t *c = cu_impl(b);
    for (int i = 0; i < CU_LT_CACHE; i++) cu_lt_plan_release(&c->plans[i]);
    if (c->lt) cublasLtDestroy(c->lt);
    c->lt = NULL;
}

static cudaDataType_t cu_dt(dtype_t dt) { return dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* Autotuning (TRAIND_LT_AUTOTUNE=1): time the heuristic's first candidates on
 * the call's real inputs into a scratch output (beta 0) and keep the fastest.
 * Off by default: the heuristic's choice is the same in every process, so
 * results are bitwise repeatable run to run; a tuned choice may differ. */
static cublasLtMatmulAlgo_t cu_lt_tune(backend_t *b, cu_lt_plan_t *p, const cublasLtMatmulHeuristicResult_t *res,
                                       int found, const void *A, const void *B, const float *bias, size_t dbytes) {
    cu_impl_t *c = cu_impl(b);
    void *D = NULL;
    if (cudaMalloc(&D, dbytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return res[0].algo;
    }
    if (bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    cudaEvent_t e0, e1;
    CU_CHECK(cudaEventCreate(&e0));
    CU_CHECK(cudaEventCreate(&e1));
    float alpha = 1.0f, beta = 0.0f, best = 1e30f;
    int bi = 0;
    for (int i = 0; i < found; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        if (cublasLtMatmul(c->lt, p->desc, &alpha, A, p->la, B, p->lb, &beta, D, p->lc, D, p->lc, &res[i].algo,
                           c->lt_ws, CU_LT_WORKSPACE, c->stream) != CUBLAS_STATUS_SUCCESS)
            continue;
        CU_CHECK(cudaEventRecord(e0, c->stream));
        for (int r = 0; r < 3; r++)
            CUBLAS_CHECK(cublasLtMatmul(c->lt, p->desc, &alpha, A, p->la, B, p->lb, &beta, D, p->lc, D, p->lc,
                                        &res[i].algo, c->lt_ws, CU_LT_WORKSPACE, c->stream));
        CU_CHECK(cudaEventRecord(e1, c->stream));
        CU_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CU_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (ms < best) { best = ms; bi = i; }
    }
    CU_CHECK(cudaEventDestroy(e0));
    CU_CHECK(cudaEventDestroy(e1));
    CU_CHECK(cudaFree(D));
    return res[bi].algo;
}

/* D[m,n] (col-major, ld ldc) = alpha * op(A) op(B) + beta * C, C == D.
 * A, B of type ab; D of type dt; bias (length m, fp32 or for a bf16 D bf16) via the epilogue. */
/* Alignment of a pointer in bytes (a power of two, at most 256): cuBLASLt's
 * heuristic assumes 256 unless told, and parameter tensors in the model's flat
 * buffer are only 16-element aligned. */
static int cu_align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int al = 256;
    while (al > 1 && a % (uintptr_t)al) al >>= 1;
    return al;
}

static void cu_lt_matmul(backend_t *b, int transa, int transb, int m, int n, int k,
                         const void *A, int lda, const void *B, int ldb, void *D, int ldc,
                         dtype_t ab, dtype_t dt, const float *bias, int beta1) {
    cu_impl_t *c = cu_impl(b);
    int epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    int alA = cu_align_of(A), alB = cu_align_of(B), alD = cu_align_of(D), alE = bias ? cu_align_of(bias) : 256;
    cu_lt_plan_t *p = NULL, *lru = &c->plans[0];
    for (int i = 0; i < CU_LT_CACHE; i++) {
        cu_lt_plan_t *q = &c->plans[i];
        if (q->valid && q->transa == transa && q->transb == transb && q->m == m && q->n == n &&
            q->k == k && q->lda == lda && q->ldb == ldb && q->ldc == ldc && q->atype == (int)ab &&
            q->dtype_ == (int)dt && q->epilogue == epi && q->beta1 == beta1 && q->al[0] == alA &&
            q->al[1] == alB && q->al[2] == alD && q->al[3] == alE) {
            p = q;
            break;
        }
        if (!q->valid || q->last_use < lru->last_use) lru = q;
    }
    if (!p) {
        p = lru;
        cu_lt_plan_release(p);
        p->transa = transa; p->transb = transb; p->m = m; p->n = n; p->k = k;
        p->lda = lda; p->ldb = ldb; p->ldc = ldc; p->atype = ab; p->dtype_ = dt;
        p->epilogue = epi; p->beta1 = beta1;
        p->al[0] = alA; p->al[1] = alB; p->al[2] = alD; p->al[3] = alE;
        cublasOperation_t ta = transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = transb ? CUBLAS_OP_T : CUBLAS_OP_N;
        CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        cublasLtEpilogue_t e = (cublasLtEpilogue_t)epi;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
        if (bias) {
            cudaDataType_t bt = dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;   /* bias type = output type */
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
            /* placeholder pointer for the heuristic; the real one is set per call */
            CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        }
        cudaDataType_t at = cu_dt(ab), dct = cu_dt(dt);
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->la, at, transa ? k : m, transa ? m : k, lda));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lb, at, transb ? n : k, transb ? k : n, ldb));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->lc, dct, m, n, ldc));
        cublasLtMatmulPreference_t pref;
        CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws = CU_LT_WORKSPACE;
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        uint32_t a32[4] = {(uint32_t)alA, (uint32_t)alB, (uint32_t)alD, (uint32_t)alE};
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a32[0], 4));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &a32[1], 4));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &a32[2], 4));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &a32[2], 4));
        cublasLtMatmulHeuristicResult_t res[CU_LT_TUNE];
        int found = 0;
        cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->lc, p->lc,
                                                           pref, c->lt_tune ? CU_LT_TUNE : 1, res, &found);
        cublasLtMatmulPreferenceDestroy(pref);
        if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
            fprintf(stderr, "traind: cuBLASLt has no algorithm for %c%c m=%d n=%d k=%d %s->%s%s: %s\n",
                    transa ? 'T' : 'N', transb ? 'T' : 'N', m, n, k, dtype_name(ab), dtype_name(dt),
                    bias ? " +bias" : "", cublasGetStatusString(st));
            exit(EXIT_FAILURE);
        }
        p->algo = res[0].algo;
        if (found > 1 && (double)m * n * k >= (double)(1 << 28))
            p->algo = cu_lt_tune(b, p, res, found, A, B, bias, (size_t)ldc * n * dtype_size(dt));
        p->valid = 1;
    }
    p->last_use = ++c->plan_clock;
    if (bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    float alpha = 1.0f, beta = beta1 ? 1.0f : 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(c->lt, p->desc, &alpha, A, p->la, B, p->lb, &beta, D, p->lc, D, p->lc,
                                &p->algo, c->lt_ws, CU_LT_WORKSPACE, c->stream));
}

void cu_matmul_fwd(backend_t *b, void *out, dtype_t odt, const void *inp, const void *w,
                   const float *bias, dtype_t cdt, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    CU_ASSERT(K > 0, "K=%d", K);
    if (odt == DT_BF16 && cdt == DT_F32) {
        /* fp32 inputs with a bf16 output (cuBLASLt has no such kernel):
         * accumulate and add the bias in fp32, then round once */
        float *tmp = (float *)cu_scratch(b, 0, (size_t)M * N * sizeof(float));
        cu_lt_matmul(b, 1, 0, N, M, K, w, K, inp, K, tmp, N, cdt, DT_F32, bias, 0);
        cu_cast(b, out, DT_BF16, tmp, DT_F32, (size_t)M * N);
        return;
    }
    if (odt == DT_BF16 && bias) {
        /* bf16 in, bf16 out: cuBLASLt's bias epilogue takes a bf16 bias here, so
         * the bias is rounded to bf16 first — what PyTorch autocast does with
         * F.linear; the sum itself stays in fp32 and is rounded once */
        void *bb = cu_scratch(b, 0, (size_t)N * 2);
        cu_cast(b, bb, DT_BF16, bias, DT_F32, (size_t)N);
        cu_lt_matmul(b, 1, 0, N, M, K, w, K, inp, K, out, N, cdt, odt, (const float *)bb, 0);
        return;
    }
    cu_lt_matmul(b, 1, 0, N, M, K, w, K, inp, K, out, N, cdt, odt, bias, 0);
}

/* acc[c] += sum_n a[n,c] * x[n,c], deterministic: rows are cut into fixed
 * chunks of CU_COLSUM_ROWS; a block of 32 columns x 16 row-lanes sums one
 * chunk (each lane a fixed stride of rows, lanes added in order) into
 * part[chunk, c]; a second kernel adds the chunks in order. With g16, a is
 * also stored rounded to bf16 on the way (one read of dout for both the bias
 * gradient and the bf16 operand of the products). */

__global__ void cu_colsum_part_kernel(float *part, __nv_bfloat16 *g16, const void *a, dtype_t adt, const void *x,
                                      dtype_t xdt, int N, int C) {
    __shared__ float sh[16][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * CU_COLSUM_ROWS, r1 = min(N, r0 + CU_COLSUM_ROWS);
    float s = 0.0f;
    if (col < C) {
        for (int n = r0 + threadIdx.y; n < r1; n += 16) {
            size_t i = (size_t)n * C + col;
            float v = cu_ld(a, adt, i);
            if (g16) g16[i] = __float2bfloat16_rn(v);
            if (x) v *= cu_ld(x, xdt, i);
            s += v;
        }
    }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        float t = 0.0f;
        for (int j = 0; j < 16; j++) t += sh[j][threadIdx.x];
        part[(size_t)blockIdx.y * C + col] = t;
    }
}

__global__ void cu_colsum_final_kernel(float *acc, const float *part, int nchunk, int C) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= C) return;
    float t = 0.0f;
    for (int j = 0; j < nchunk; j++) t += part[(size_t)j * C + col];
    acc[col] += t;
}

void cu_colsum_finish(backend_t *b, float *acc, const float *part, int nchunk, int C) {
    cu_colsum_final_kernel<<<(C + 127) / 128, 128, 0, cu_impl(b)->stream>>>(acc, part, nchunk, C);
    CU_LAUNCH_CHECK();
}

/* The two passes: partial sums of each chunk (a also stored as bf16 into g16
 * when not NULL), then the chunks added in order into acc. */
static void cu_colsum_run(backend_t *b, float *acc, __nv_bfloat16 *g16, const void *a, dtype_t adt, const void *x,
                          dtype_t xdt, int N, int C) {
    int nchunk = (N + CU_COLSUM_ROWS - 1) / CU_COLSUM_ROWS;
    CU_ASSERT(nchunk <= 65535, "N=%d", N);
    float *part = (float *)cu_scratch(b, 3, (size_t)nchunk * C * sizeof(float));
    dim3 blk(32, 16), grid((C + 31) / 32, nchunk);
    cu_colsum_part_kernel<<<grid, blk, 0, cu_impl(b)->stream>>>(part, g16, a, adt, x, xdt, N, C);
    CU_LAUNCH_CHECK();
    cu_colsum_finish(b, acc, part, nchunk, C);
}

void cu_store_colsum(backend_t *b, void *dst, dtype_t ddt, float *acc, const float *src, int M, int N) {
    if (M <= 0 || N <= 0) return;
    if (ddt == DT_BF16 && acc) {   /* one pass over src for both */
        cu_colsum_run(b, acc, (__nv_bfloat16 *)dst, src, DT_F32, NULL, DT_F32, M, N);
        return;
    }
    if (acc) cu_colsum(b, acc, src, NULL, DT_F32, M, N);
    if (ddt != DT_F32 || dst != src) cu_cast(b, dst, ddt, src, DT_F32, (size_t)M * N);
}

void cu_colsum(backend_t *b, float *acc, const float *a, const void *x, dtype_t xdt, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cu_colsum_run(b, acc, NULL, a, DT_F32, x, xdt, N, C);
}

void cu_colsum_dt(backend_t *b, float *acc, const void *a, dtype_t adt, int N, int C) {
    if (N <= 0 || C <= 0) return;
    cu_colsum_run(b, acc, NULL, a, adt, NULL, DT_F32, N, C);
}

void cu_matmul_bwd(backend_t *b, float *dinp, float *dw, float *dbias, const void *dout_g, dtype_t gdt,
                   const void *inp, const void *w, dtype_t cdt, int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    CU_ASSERT(gdt == DT_F32 || (gdt == DT_BF16 && cdt == DT_BF16 && !dbias), "gdt=%s cdt=%s dbias=%p",
              dtype_name(gdt), dtype_name(cdt), (void *)dbias);
    const float *dout = (const float *)dout_g;   /* when gdt is f32 */
    const void *g = dout_g;
    if (gdt == DT_BF16) {
        /* already the bf16 operand; its producer summed the bias gradient */
    } else if (cdt == DT_BF16 && (dinp || dw) && dbias) {
        /* bias gradient and the bf16 copy of dout in one pass over dout */
        void *gb = cu_scratch(b, 0, (size_t)M * N * 2);
        cu_store_colsum(b, gb, DT_BF16, dbias, dout, M, N);
        g = gb;
        dbias = NULL;   /* done */
    } else if (cdt == DT_BF16 && (dinp || dw)) {
        /* autocast: the bf16 products read dout rounded to bf16 */
        void *gb = cu_scratch(b, 0, (size_t)M * N * 2);
        cu_cast(b, gb, DT_BF16, dout, DT_F32, (size_t)M * N);
        g = gb;
    }
    /* dinp[M,K] = dout[M,N] @ w[N,K]:  dinp^T[K,M] = w^T[K,N] * dout^T[N,M] */
    if (dinp) cu_lt_matmul(b, 0, 0, K, M, N, w, K, g, N, dinp, K, cdt, DT_F32, NULL, 0);
    /* dw[N,K] += dout^T[N,M] @ inp[M,K]:  dw^T[K,N] += inp^T[K,M] * (dout^T[N,M])^T */
    if (dw) cu_lt_matmul(b, 0, 1, K, N, M, inp, K, g, N, dw, K, cdt, DT_F32, NULL, 1);
    if (dbias) cu_colsum(b, dbias, dout, NULL, DT_F32, M, N);
}

/* ---- the MLP's product + GELU, forward and backward ------------------------------------
 * Two passes each, the reference's order (cuDNN graphs with the erf GELU in the
 * product's epilogue were timed on an H100: a tie, its products slower than
 * cuBLASLt's by what the epilogue saves — bench/RESULTS.md, ninth session). */

/* out[M,N] (odt) = gelu(inp[M,K] @ w[N,K]^T + bias[N]); tmp[M,N] (odt) holds the product. */
void cu_matmul_gelu_fwd(backend_t *b, void *out, dtype_t odt, void *tmp, const void *inp, const void *w,
                        const float *bias, dtype_t cdt, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    CU_ASSERT(K > 0 && tmp, "K=%d tmp=%p", K, tmp);
    cu_matmul_fwd(b, tmp, odt, inp, w, bias, cdt, M, N, K);
    cu_gelu_fwd(b, out, odt, tmp, odt, (size_t)M * N);
}

/* g[M,K] (gdt) = (dout[M,N] @ w[N,K]) * gelu'(x[M,K]); dbias[K] += sum_m g (the f32
 * values); tmp[M,K] f32 holds the product. */
void cu_matmul_dgelu(backend_t *b, void *g, dtype_t gdt, float *dbias, float *tmp, const void *dout, const void *w,
                     const void *x, dtype_t cdt, int M, int N, int K) {
    if (M <= 0 || K <= 0) return;
    CU_ASSERT(N > 0 && tmp, "N=%d tmp=%p", N, tmp);
    if (cdt == DT_BF16) {
        /* the product rounded to bf16 (PyTorch autocast's order: the linear's
         * bf16 output, then GELU's backward), half the bytes of an f32 tmp
         * written and read: d tmp[M,K] = dout[M,N] @ w[N,K] */
        cu_lt_matmul(b, 0, 0, K, M, N, w, K, dout, N, tmp, K, cdt, DT_BF16, NULL, 0);
        cu_gelu_bwd(b, g, gdt, dbias, tmp, DT_BF16, x, cdt, M, K);
        return;
    }
    cu_matmul_bwd(b, tmp, NULL, NULL, dout, cdt, NULL, w, cdt, M, N, K);
    cu_gelu_bwd(b, g, gdt, dbias, tmp, DT_F32, x, cdt, M, K);
}
