/* gpu/dataset.h — the resident dataset as the compute code sees it, and
 * putting a dataset directory (store/dataset.h) into backend memory.
 *
 * One shared allocation (backend memory: GPU memory on cuda, POSIX shared
 * memory on cpu) holds every array of a loaded dataset at fixed offsets; the
 * daemon owns it and workers open it by handle (backend_t.shared_open). The
 * layout (offsets, sizes) is computed by ds_layout() in store/dataset.c
 * and travels to workers as JSON together with the handle. */
#ifndef TRAIND_DATASET_H
#define TRAIND_DATASET_H

#include <stdint.h>
#include "gpu/backend.h"
#include "store/dataset.h"
#include "store/hand.h"
#include "store/dtype.h"


/* The arrays hold the samples [first, first + held) of a dataset of n: all
 * of them (first 0, held n) unless the dataset is sharded across devices and
 * this is one device's shard. Every array is indexed by the LOCAL index
 * (sample - first); the stages keep global sample numbers and translate them
 * where they upload a batch's indices (stage_batch_set_idx). */
typedef struct {
    int64_t n;                 /* samples of the dataset */
    int64_t first, held;       /* the samples these arrays hold: [first, first + held) */
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

/* The dataset view of a layout at base (backend memory): all of a dataset
 * of l->n samples (first 0, held n). A shard's view then sets n and first. */
void dataset_view(dataset_t *out, void *base, const ds_layout_t *l);

/* ---- loading ------------------------------------------------------------------ */
/* Progress: resident bytes written so far and in total. */
typedef void (*dataset_progress_fn)(void *ud, uint64_t bytes_done, uint64_t bytes_total);

#define DATASET_LOAD_CANCELLED (-2)

/* Load the shards of dir (as scanned into info) into the allocation at base
 * (backend memory, l->total bytes, l from ds_layout_for(info)). Streams
 * shard by shard in chunks of a bounded number of samples: a reader thread
 * fills two be->host_alloc staging buffers in turn (the image bytes of a
 * chunk with parallel preads) while the calling thread converts/uploads the
 * other one: u8 images by be->images_from_u8 (conversion on the device),
 * BF16 CHW by upload, F32 CHW by upload + be->cast; labels as fp32 (bit
 * exact); masks as u8 (all ones when the files have none). Host memory is
 * bounded by the two staging buffers (2 x 32 MB), not by the dataset.
 * Each shard is validated again when opened (a shard replaced since the
 * scan is an error). cb (may be NULL) is called after each chunk. *cancel
 * (may be NULL) is polled between chunks: DATASET_LOAD_CANCELLED. 0, or -1 with
 * err. Label values are copied bit for bit, except that a joint with a
 * non-finite coordinate (NaN/Inf: a missing annotation) becomes an invalid
 * joint (mask 0, coordinates 0) so that no loss or metric reads it; their
 * number goes to *masked_joints (may be NULL). */
int dataset_load(backend_t *be, const char *dir, const ds_info_t *info, void *base,
            const ds_layout_t *l, dataset_progress_fn cb, void *ud, volatile int *cancel,
            int64_t *masked_joints, char *err, size_t errlen);
/* The same for the open directory dirfd (kept open; dir names it in
 * messages): shards are opened beneath it (st_open_at), never through a link. */
int dataset_load_at(backend_t *be, int dirfd, const char *dir, const ds_info_t *info, void *base,
            const ds_layout_t *l, dataset_progress_fn cb, void *ud, volatile int *cancel,
            int64_t *masked_joints, char *err, size_t errlen);

/* c samples of an import (u8 [c][H][W][3] images, joints [c][21][3], valid
 * [c][21] — writable: non-finite joints become invalid, counted into
 * *masked_joints —, has_hand [c], intrinsics [c][3][3]) put at index g0 of a
 * resident layout with exactly those fields (DS_F_JOINTS_VALID |
 * DS_F_HAS_HAND | DS_F_INTRINSICS), as the loader would put them from their
 * shard: the import streams its shards to the device as it writes them.
 * 0, or -1 with err when the rows do not fit the layout. Not thread-safe
 * (one backend): the caller serializes. */
int dataset_put_rows(backend_t *be, void *base, const ds_layout_t *l, int64_t g0, int64_t c, const uint8_t *images,
                     float *joints, uint8_t *valid, const uint8_t *has_hand, const float *intrinsics,
                     int64_t *masked_joints, char *err, size_t errlen);

/* The samples [first, first + l->n) of the scanned dataset only (l laid out
 * for l->n samples): one device's shard of a dataset sharded across devices.
 * dataset_load_at is this with first 0 and l->n = info->n. */
int dataset_load_range_at(backend_t *be, int dirfd, const char *dir, const ds_info_t *info, int64_t first, void *base,
                          const ds_layout_t *l, dataset_progress_fn cb, void *ud, volatile int *cancel,
                          int64_t *masked_joints, char *err, size_t errlen);

/* Size of each of the two staging buffers (default 32 MB; at least one
 * sample is always staged; 0 restores the default). For tests that want
 * many chunks; set it before loading, not while a load runs. */
void dataset_set_stage_bytes(size_t bytes);

#endif
