/* tests/gpu/check_nvjpeg_api.c — compiled (never run) on the GPU machine by
 * tests/gpu/run_device.sh against that machine's nvjpeg.h: the declarations
 * gpu/cuda/nvjpeg_api.h makes for loading nvJPEG at run time must agree with
 * the real header (values, layout, argument lists). A mismatch fails the
 * compile. */
#include <stddef.h>
#include <nvjpeg.h>
#include "gpu/cuda/nvjpeg_api.h"

_Static_assert(NVJ_MAX_COMPONENT == NVJPEG_MAX_COMPONENT, "components");
_Static_assert((int)NVJ_STATUS_SUCCESS == (int)NVJPEG_STATUS_SUCCESS, "status");
_Static_assert((int)NVJ_BACKEND_DEFAULT == (int)NVJPEG_BACKEND_DEFAULT, "backend default");
_Static_assert((int)NVJ_BACKEND_GPU_HYBRID == (int)NVJPEG_BACKEND_GPU_HYBRID, "backend gpu hybrid");
_Static_assert((int)NVJ_BACKEND_HARDWARE == (int)NVJPEG_BACKEND_HARDWARE, "backend hardware");
_Static_assert((int)NVJ_OUTPUT_RGBI == (int)NVJPEG_OUTPUT_RGBI, "output rgbi");
_Static_assert(NVJ_FLAGS_DEFAULT == NVJPEG_FLAGS_DEFAULT, "flags");
_Static_assert(NVJ_FLAGS_BITSTREAM_STRICT == NVJPEG_FLAGS_BITSTREAM_STRICT, "strict flag");
_Static_assert(sizeof(nvj_image_t) == sizeof(nvjpegImage_t), "image size");
_Static_assert(offsetof(nvj_image_t, pitch) == offsetof(nvjpegImage_t, pitch), "image pitch");
_Static_assert(sizeof(nvjpegBackend_t) == sizeof(int) && sizeof(nvjpegOutputFormat_t) == sizeof(int) &&
               sizeof(nvjpegStatus_t) == sizeof(int), "enums are int-sized");

/* Each loaded entry point is called here with the real types: the argument
 * lists must match nvjpeg_api.h's function types one for one. */
int check(nvjpegHandle_t h, nvjpegJpegState_t s, cudaStream_t st);
int check(nvjpegHandle_t h, nvjpegJpegState_t s, cudaStream_t st) {
    nvj_create_ex_fn create_ex = 0;
    nvj_destroy_fn destroy = 0;
    nvj_state_create_fn state_create = 0;
    nvj_state_destroy_fn state_destroy = 0;
    nvj_batched_init_fn batched_init = 0;
    nvj_batched_fn batched = 0;
    const unsigned char *data[1] = {0};
    size_t lens[1] = {0};
    nvjpegImage_t img[1];
    int r = 0;
    r |= nvjpegCreateEx(NVJPEG_BACKEND_HARDWARE, NULL, NULL, NVJPEG_FLAGS_DEFAULT, &h);
    r |= create_ex(NVJ_BACKEND_HARDWARE, NULL, NULL, NVJ_FLAGS_DEFAULT, (nvj_handle_t *)&h);
    r |= nvjpegJpegStateCreate(h, &s) | state_create((nvj_handle_t)h, (nvj_state_t *)&s);
    r |= nvjpegDecodeBatchedInitialize(h, s, 1, 1, NVJPEG_OUTPUT_RGBI);
    r |= batched_init((nvj_handle_t)h, (nvj_state_t)s, 1, 1, NVJ_OUTPUT_RGBI);
    r |= nvjpegDecodeBatched(h, s, data, lens, img, st);
    r |= batched((nvj_handle_t)h, (nvj_state_t)s, data, lens, (nvj_image_t *)img, (void *)st);
    r |= nvjpegJpegStateDestroy(s) | state_destroy((nvj_state_t)s);
    r |= nvjpegDestroy(h) | destroy((nvj_handle_t)h);
    return r;
}
