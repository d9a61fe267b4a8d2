/* store/dataset.h — the on-disk dataset of SPEC §6 and its resident layout.
 *
 * On disk: a directory of safetensors shards (`*.safetensors`, name order),
 * each holding tensors with the same leading N:
 *   image              U8 [N,H,W,3] RGB, or BF16/F32 [N,3,H,W] already normalized
 *   hand_joints        F32 [N,21,3]   metres, camera frame          (required)
 *   hand_joints_valid  U8  [N,21]     optional (all ones when absent)
 *   has_hand           U8  [N]        optional (all ones when absent)
 *   camera_intrinsics  F32 [N,3,3]    optional
 *   object_poses       F32 [N,10,3,4] optional
 *   object_ids         I32 [N,10]     optional
 *   num_objects        I32 [N]        optional
 * `__metadata__` of the FIRST shard may give "mean" and "std" as JSON arrays
 * of 3 numbers (default ImageNet's 0.485,0.456,0.406 / 0.229,0.224,0.225);
 * std values must be > 0. Every shard has the same H, W and the same set of
 * fields; the image dtype may differ between shards. Tensors with other names
 * are REJECTED (a misspelt "hand_joint" must not silently train on nothing).
 *
 * Resident (gpu/dataset.h): ONE allocation in backend memory holding, at
 * 256-byte aligned offsets: images bf16 [n,3,h,w] normalized, joints f32,
 * joints_valid u8, has_hand u8, and the optional arrays the files have.
 */
#ifndef TRAIND_STORE_DATASET_H
#define TRAIND_STORE_DATASET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "gpu/backend.h"
#include "gpu/dataset.h"
#include "gpu/dtype.h"

/* Field bits (present in the files / in the layout). image and hand_joints
 * are always there and have no bit. */
#define DS_F_JOINTS_VALID  (1u << 0)
#define DS_F_HAS_HAND      (1u << 1)
#define DS_F_INTRINSICS    (1u << 2)
#define DS_F_OBJECT_POSES  (1u << 3)
#define DS_F_OBJECT_IDS    (1u << 4)
#define DS_F_NUM_OBJECTS   (1u << 5)
#define DS_F_ALL           0x3fu

#define DS_ALIGN 256
#define DS_NAME_MAX 256

typedef struct {
    char name[DS_NAME_MAX];  /* file name inside the dataset directory */
    int64_t n;               /* samples in this shard */
    dtype_t image_dtype;     /* DT_U8 (HWC) | DT_BF16 | DT_F32 (CHW) */
    uint64_t file_bytes;
} ds_shard_t;

typedef struct {
    int nshards;
    ds_shard_t *shards;      /* [nshards], owned: ds_info_free */
    int64_t n;               /* total samples */
    int h, w;
    unsigned fields;         /* DS_F_* present in the files */
    float mean[3], std[3];
    uint64_t file_bytes;     /* sum of shard sizes */
    size_t resident_bytes;   /* size of the resident allocation (ds_layout) */
} ds_info_t;

/* Read every shard's header and validate (see above). 0, or -1 with a
 * message naming the shard, the tensor and the problem. On success
 * ds_info_free releases info. */
int ds_scan(const char *dir, ds_info_t *info, char *err, size_t errlen);
void ds_info_free(ds_info_t *info);
/* Short JSON names of fields, e.g. ["image","hand_joints","has_hand"]. */
json_t *ds_fields_to_json(unsigned fields);

/* ---- resident layout ------------------------------------------------------- */
typedef struct {
    int64_t n;
    int h, w;
    unsigned fields;         /* DS_F_* stored (VALID and HAS_HAND always are) */
    float mean[3], std[3];
    size_t off_images, off_joints, off_valid, off_has_hand;       /* always present */
    size_t off_intrinsics, off_object_poses, off_object_ids, off_num_objects; /* 0 when absent */
    size_t total;            /* bytes of the allocation */
} ds_layout_t;

/* Offsets of every array for n samples of h×w; returns l->total, or 0 when
 * the sizes overflow or are invalid (n < 1, h/w < 1). mean/std are set to
 * ImageNet's; ds_layout_for takes them (and the rest) from a scan. */
size_t ds_layout(ds_layout_t *l, int64_t n, int h, int w, unsigned fields);
size_t ds_layout_for(ds_layout_t *l, const ds_info_t *info);

/* The dataset view of a layout at base (backend memory). */
void ds_view(dataset_t *out, void *base, const ds_layout_t *l);

/* The layout as JSON (numbers, offsets recomputable) and back; from_json
 * recomputes the layout from n/h/w/fields and checks the offsets agree. */
json_t *ds_layout_to_json(const ds_layout_t *l);
int ds_layout_from_json(const json_t *j, ds_layout_t *l, char *err, size_t errlen);

/* ---- loading ------------------------------------------------------------------ */
/* Progress: resident bytes written so far and in total. */
typedef void (*ds_progress_fn)(void *ud, uint64_t bytes_done, uint64_t bytes_total);

#define DS_LOAD_CANCELLED (-2)

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
 * (may be NULL) is polled between chunks: DS_LOAD_CANCELLED. 0, or -1 with
 * err. Label values are copied bit for bit, except that a joint with a
 * non-finite coordinate (NaN/Inf: a missing annotation) becomes an invalid
 * joint (mask 0, coordinates 0) so that no loss or metric reads it; their
 * number goes to *masked_joints (may be NULL). */
int ds_load(backend_t *be, const char *dir, const ds_info_t *info, void *base,
            const ds_layout_t *l, ds_progress_fn cb, void *ud, volatile int *cancel,
            int64_t *masked_joints, char *err, size_t errlen);

/* Size of each of the two staging buffers (default 32 MB; at least one
 * sample is always staged; 0 restores the default). For tests that want
 * many chunks; set it before loading, not while a load runs. */
void ds_set_stage_bytes(size_t bytes);

/* ---- writing ----------------------------------------------------------------- */
/* One shard's arrays, host memory; NULL optional arrays are not written. */
typedef struct {
    int64_t n;
    int h, w;
    dtype_t image_dtype;             /* DT_U8: image is u8 [n,h,w,3]; DT_BF16/DT_F32: [n,3,h,w] */
    const void *image;
    const float *joints;             /* [n,21,3] required */
    const uint8_t *joints_valid;     /* [n,21] */
    const uint8_t *has_hand;         /* [n] */
    const float *intrinsics;         /* [n,3,3] */
    const float *object_poses;       /* [n,10,3,4] */
    const int32_t *object_ids;       /* [n,10] */
    const int32_t *num_objects;      /* [n] */
    const float *mean, *std;         /* [3] each, written to __metadata__ when not NULL */
} ds_shard_data_t;

/* Write one shard (atomically, see st_writer_write). Arrays are referenced,
 * not copied. 0 or -1 with err. */
int ds_write_shard(const char *path, const ds_shard_data_t *d, char *err, size_t errlen);

#endif
