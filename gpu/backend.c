/* gpu/backend.c — choosing a compute backend by name, and the hand loss's
 * normalizers of a batch on the host (hand_norm_add, as the backends count them).
 *
 * Owns backend_open(): "cpu" (always built), "cuda" (only in builds with
 * TRAIND_CUDA, through backend_cuda_create of gpu/cuda/), and "auto", which
 * takes the CUDA device when one is usable and falls back to the CPU. The
 * backends themselves live in gpu/backend_cpu.c and gpu/cuda/. Also the
 * importer's GPU JPEG decoder by the same rule (jpeg_gpu_open). */
#include <stdio.h>
#include <string.h>
#include "gpu/backend.h"
#include "gpu/jpeg_gpu.h"
#include "store/hand.h"

void hand_norm_add(hand_norm_t *n, const uint8_t *valid) {
    int nv = 0;
    for (int j = 0; j < HAND_JOINTS; j++) {
        if (valid && !valid[j]) continue;
        nv++;
        n->sw += hand_joint_weight(j);
    }
    n->nj += nv;
    n->npair += (double)nv * (nv - 1) / 2;
}

backend_t *backend_open(const char *name, int device, char *err, size_t errlen) {
    char dummy[BACKEND_ERR_MAX];
    if (!err || errlen == 0) { err = dummy; errlen = sizeof dummy; }
    err[0] = '\0';
    if (!name || !name[0]) name = "auto";

    if (strcmp(name, "cpu") == 0) return backend_cpu_create(err, errlen);

    if (strcmp(name, "cuda") == 0) {
        if (device < 0) {
            snprintf(err, errlen, "backend cuda: invalid device index %d", device);
            return NULL;
        }
#ifdef TRAIND_CUDA
        return backend_cuda_create(device, err, errlen);
#else
        snprintf(err, errlen, "backend cuda: this traind was built without CUDA (no nvcc at build time)");
        return NULL;
#endif
    }

    if (strcmp(name, "auto") == 0) {
#ifdef TRAIND_CUDA
        char cerr[BACKEND_ERR_MAX];
        backend_t *b = backend_cuda_create(device < 0 ? 0 : device, cerr, sizeof cerr);
        if (b) return b;
        /* No usable GPU: the CPU backend serves; the reason stays in err
         * only if the CPU backend fails too. */
        b = backend_cpu_create(err, errlen);
        if (!b) {
            size_t used = strlen(err);
            if (used + 1 < errlen) snprintf(err + used, errlen - used, " (%s)", cerr);   /* "cuda: ..." */
        }
        return b;
#else
        return backend_cpu_create(err, errlen);
#endif
    }

    snprintf(err, errlen, "unknown backend \"%s\" (expected cpu, cuda or auto)", name);
    return NULL;
}

#ifdef TRAIND_CUDA
jpeg_gpu_t *jpeg_gpu_cuda_open(int device, const char *backend, int threads, int batch, char *why, size_t len);
#endif

jpeg_gpu_t *jpeg_gpu_open(int device, const char *backend, int threads, int batch, char *why, size_t len) {
#ifdef TRAIND_CUDA
    return jpeg_gpu_cuda_open(device, backend, threads, batch, why, len);
#else
    (void)device, (void)backend, (void)threads, (void)batch;
    snprintf(why, len, "this traind was built without CUDA (no nvcc at build time)");
    return NULL;
#endif
}
