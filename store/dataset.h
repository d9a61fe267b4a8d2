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
 * Resident: ONE allocation in backend memory holding, at
 * 256-byte aligned offsets: images bf16 [n,3,h,w] normalized, joints f32,
 * joints_valid u8, has_hand u8, and the optional arrays the files have.
 * This file owns the format (scan, validation, layout arithmetic, writing);
 * putting the shards into backend memory is gpu/dataset.c's (dataset_load).
 */
#ifndef TRAIND_STORE_DATASET_H
#define TRAIND_STORE_DATASET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "store/dtype.h"
#include "store/hand.h"
#include "store/safetensors.h"

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

/* Optional label arrays: name, bit, dtype, per-sample shape (after N). */
typedef struct {
    const char *name;
    unsigned bit;
    st_dtype_t dtype;
    int rank;              /* of the per-sample shape */
    int64_t dims[3];
    size_t row_bytes;      /* bytes per sample */
} ds_field_t;

#define DS_NFIELDS 7   /* hand_joints (bit 0 here means "required") + 6 optional */
extern const ds_field_t ds_fields[DS_NFIELDS];

/* What one shard holds, as ds_check_shard found it. */
typedef struct {
    int64_t n;
    int h, w;
    dtype_t image_dtype;
    unsigned fields;
    int has_mean, has_std;
    float mean[3], std[3];
} ds_shape_t;

/* Validate one opened shard against the format above (tensor names, dtypes,
 * shapes, leading N, metadata): 0 with *s filled, or -1 with err naming the
 * file, the tensor and the problem. */
int ds_check_shard(st_file_t *f, ds_shape_t *s, char *err, size_t errlen);

/* Read every shard's header and validate (see above). 0, or -1 with a
 * message naming the shard, the tensor and the problem. On success
 * ds_info_free releases info. Shards are opened beneath the directory
 * (st_open_at): a shard that is a symbolic link, a FIFO or a device is an
 * error, never followed or waited on. */
int ds_scan(const char *dir, ds_info_t *info, char *err, size_t errlen);
/* The same for the open directory dirfd (kept open; dir names it in messages). */
int ds_scan_at(int dirfd, const char *dir, ds_info_t *info, char *err, size_t errlen);
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

/* The layout as JSON (numbers, offsets recomputable) and back; from_json
 * recomputes the layout from n/h/w/fields and checks the offsets agree. */
json_t *ds_layout_to_json(const ds_layout_t *l);
int ds_layout_from_json(const json_t *j, ds_layout_t *l, char *err, size_t errlen);

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
