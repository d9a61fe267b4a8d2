/* gpu/dataset.h — the resident dataset as the compute code sees it.
 *
 * One shared allocation (backend memory: GPU memory on cuda, POSIX shared
 * memory on cpu) holds every array of a loaded dataset at fixed offsets; the
 * daemon owns it and workers open it by handle (backend_t.shared_open). The
 * layout (offsets, sizes) is computed by dataset_layout() in store/dataset.c
 * and travels to workers as JSON together with the handle. */
#ifndef TRAIND_DATASET_H
#define TRAIND_DATASET_H

#include <stdint.h>
#include "gpu/dtype.h"

#define DS_JOINTS 21
#define DS_MAX_OBJECTS 10

typedef struct {
    int64_t n;                 /* samples */
    int h, w;                  /* image size */
    float mean[3], std[3];     /* normalization the images were stored with */
    dtype_t image_dtype;       /* DT_BF16 (always, for resident datasets) */
    void *images;              /* [n,3,h,w] normalized */
    float *joints;             /* [n,21,3] metres, camera frame */
    uint8_t *joints_valid;     /* [n,21] (1 = valid); all ones when the file had none */
    uint8_t *has_hand;         /* [n]; all ones when the file had none */
    float *intrinsics;         /* [n,3,3] or NULL */
    float *object_poses;       /* [n,10,3,4] or NULL */
    int32_t *object_ids;       /* [n,10] or NULL */
    int32_t *num_objects;      /* [n] or NULL */
} dataset_t;

#endif
