/* gpu/jpeg_gpu.h — decoding JPEG frames on a GPU for the importer
 * (gpu/import.c); the CUDA backend's is gpu/cuda/jpeg_gpu.cu (nvJPEG, loaded
 * at run time: the hardware JPEG engines where the card has them).
 *
 * The importer hands a decoder batches of whole files that
 * imgdec_jpeg_plain accepts (baseline YCbCr, one scan, no rotation); each is
 * decoded at full size on the device, its region (x0, y0, rw, rh) resized to
 * S x S with gpu/image.h's filter — the same weights and the same float
 * operations in the same order as image_resizer_run, so resizing the same
 * pixels gives the same bytes — and copied back as u8 [S][S][3] into dst.
 * Frames the decoder refuses (ok = 0) go to the CPU decoder, which names
 * what is wrong with them; only a failure of the device itself fails a batch.
 */
#ifndef TRAIND_JPEG_GPU_H
#define TRAIND_JPEG_GPU_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *data;     /* the whole file (host memory) */
    size_t len;
    int w, h;                /* its size (imgdec_jpeg_plain) */
    int x0, y0, rw, rh;      /* the region resized: within w x h */
    uint8_t *dst;            /* host u8 [S][S][3] */
    int pinned;              /* dst lies in memory from host_alloc: copied back straight into it */
    int ok;                  /* out: 1 decoded into dst, 0 refused (dst untouched) */
} jpeg_gpu_frame_t;

#define JPEG_GPU_HOST_BLOCK ((size_t)64 << 20)
#define JPEG_GPU_HOST_BLOCKS 16

typedef struct jpeg_gpu jpeg_gpu_t;
struct jpeg_gpu {
    const char *name;        /* e.g. "nvjpeg hardware" */
    int device;
    int threads;             /* callers at once: each passes its own t in 0..threads-1 */
    int batch;               /* frames a call, at most */
    /* Decodes n (1..batch) frames as above. 0 (every frame's ok set), or -1 with
     * err when the device failed (the import fails). */
    int (*decode)(jpeg_gpu_t *g, int t, int n, jpeg_gpu_frame_t *f, int S, char *err, size_t errlen);
    /* The second half alone: n u8 images src[i] [h][w][3] (host) resized on the
     * device, regions as above, into dst (the same bytes as image_resizer_run). */
    int (*resize)(jpeg_gpu_t *g, int t, int n, jpeg_gpu_frame_t *f, const uint8_t *const *src, int S, char *err,
                  size_t errlen);
    /* Gives back the buffers the calls grew (device and pinned memory, ~70 MB a
     * caller at 640x480, batch 64) while keeping the decoder open: the daemon
     * calls it after each import, so a running job does not share the device
     * with idle import buffers. The host_alloc pool stays. May be NULL. */
    void (*trim)(jpeg_gpu_t *g);
    /* Pinned host memory for the importer's shard slots, so that frames are
     * copied back straight into their slot (pinned = 1) and a slot's device
     * put needs no staging copy: blocks of at least JPEG_GPU_HOST_BLOCK bytes,
     * kept in a pool of at most JPEG_GPU_HOST_BLOCKS for the next import when
     * host_free hands them back (pinning takes time in proportion to the bytes), given back to
     * the system at close. NULL when the pool is full or pinning fails (the
     * importer then uses malloc). Both may be NULL. Thread-safe. */
    void *(*host_alloc)(jpeg_gpu_t *g, size_t bytes);
    void (*host_free)(jpeg_gpu_t *g, void *p);
    /* The callers' seconds so far, summed (for the log; read with no call in flight):
     * [0] in nvJPEG's calls (parsing, handing to the engines, and whatever it waits
     * for), [1] waiting for the resize and the copy back, [2] copying frames out to
     * dst. May be NULL. */
    void (*spent)(jpeg_gpu_t *g, double out[3]);
    void (*close)(jpeg_gpu_t *g);
    void *impl;
};

/* The CUDA backend's decoder on device `device` (gpu/cuda/jpeg_gpu.cu):
 * NULL with why when the build has no CUDA, nvJPEG cannot be loaded
 * (libnvjpeg.so.13/.12) or the device refuses it. backend "auto" tries the
 * hardware engines first, then nvJPEG's CUDA decoder; "hardware" or "cuda"
 * asks for one. */
jpeg_gpu_t *jpeg_gpu_open(int device, const char *backend, int threads, int batch, char *why, size_t len);

#endif
