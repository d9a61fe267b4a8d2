/* gpu/cuda/nvjpeg_api.h — the part of nvJPEG's C API that jpeg_gpu.cu calls,
 * declared here because nvJPEG is loaded at run time (dlopen): the build
 * machine need not have its header, and a machine without the library still
 * runs traind (the importer decodes on the CPU). The values and layouts are
 * nvjpeg.h's; tests/gpu/check_nvjpeg_api.c, compiled on the GPU machine
 * against the real header, asserts that they agree.
 *
 * Types are prefixed nvj_ so that both headers can be included together.
 * Enumerations are passed as int (the enums of nvjpeg.h are int-sized). */
#ifndef TRAIND_NVJPEG_API_H
#define TRAIND_NVJPEG_API_H

#include <stddef.h>

#define NVJ_MAX_COMPONENT 4

enum {
    NVJ_STATUS_SUCCESS = 0,
    NVJ_BACKEND_DEFAULT = 0,
    NVJ_BACKEND_GPU_HYBRID = 2,
    NVJ_BACKEND_HARDWARE = 3,
    NVJ_OUTPUT_RGBI = 5,
    NVJ_FLAGS_DEFAULT = 0,
    NVJ_FLAGS_BITSTREAM_STRICT = 1 << 2,   /* refuse a bitstream with errors instead of decoding past them */
};

typedef struct {
    unsigned char *channel[NVJ_MAX_COMPONENT];
    size_t pitch[NVJ_MAX_COMPONENT];
} nvj_image_t;

typedef struct nvj_handle_s *nvj_handle_t;   /* nvjpegHandle_t */
typedef struct nvj_state_s *nvj_state_t;     /* nvjpegJpegState_t */

/* nvjpegCreateEx(backend, dev_allocator, pinned_allocator, flags, &handle) */
typedef int (*nvj_create_ex_fn)(int backend, void *dev_allocator, void *pinned_allocator, unsigned int flags,
                                nvj_handle_t *handle);
typedef int (*nvj_destroy_fn)(nvj_handle_t handle);
typedef int (*nvj_state_create_fn)(nvj_handle_t handle, nvj_state_t *state);
typedef int (*nvj_state_destroy_fn)(nvj_state_t state);
/* nvjpegDecodeBatchedInitialize(handle, state, batch_size, max_cpu_threads, output_format) */
typedef int (*nvj_batched_init_fn)(nvj_handle_t handle, nvj_state_t state, int batch_size, int max_cpu_threads,
                                   int output_format);
/* nvjpegDecodeBatched(handle, state, data[], lengths[], destinations[], stream): batch_size images */
typedef int (*nvj_batched_fn)(nvj_handle_t handle, nvj_state_t state, const unsigned char *const *data,
                              const size_t *lengths, nvj_image_t *destinations, void *stream);

#endif
