/* gpu/jobspec.h — a job as submitted (SPEC §4), parsed and validated.
 *
 * jobspec_parse() is the one validator: the API calls it on POST /v1/jobs
 * (and answers 400 naming `field` on failure), the worker calls it again on
 * the stored spec. Unknown fields are rejected. Defaults are filled in, so a
 * parsed spec is complete; jobspec_to_json() gives the resolved form that is
 * stored in the job record. The dtype plan (SPEC §5) is resolved from the
 * type and `precision` by jobspec_plan(). What one job may ask for is bounded
 * (JS_MAX_*, below): `indices` as at most 4096 entries, each an index or a
 * range [begin, end); at most 256 inline images (rules in jobspec.c). */
#ifndef TRAIND_JOBSPEC_H
#define TRAIND_JOBSPEC_H

#include <jansson.h>
#include <stdint.h>
#include "store/dtype.h"
#include "store/job.h"

#define JS_NAME_MAX 128
#define JS_PATH_MAX 1024

/* What one job may ask for (SPEC §3: every request's cost is bounded before
 * it is paid). Beyond them the spec is refused with 400 naming the field. */
#define JS_MAX_BATCH 4096              /* batch_size */
#define JS_MAX_INDEX_ENTRIES 4096      /* entries of `indices` (indices or [begin, end) ranges) */
#define JS_MAX_INDEX_SAMPLES (1 << 24) /* samples `indices` may select in all (eval) */
#define JS_MAX_INFER_SAMPLES 16384     /* samples one infer job may run on (indices or images) */
#define JS_MAX_IMAGES 256              /* inline infer images */
#define JS_MAX_IMAGE_SIDE 4096         /* height, width of an inline image */
#define JS_MAX_DEVICES 16              /* devices of one data-parallel job (train, eval, infer) */
#define JS_MAX_DEVICE_INDEX 1023       /* a device index in a `devices` list */

typedef struct { int64_t begin, end; } js_range_t;   /* samples [begin, end) */

typedef struct {
    char backbone[32];          /* dinov2-tiny|small|base|large */
    int hidden, layers, heads;  /* from the backbone name (or the weights' config) */
    int registers;              /* 0 or 4 */
    char weights[JS_PATH_MAX];  /* HF dir or traind checkpoint id; "" = random init */
    int freeze_layers;          /* K: patch/pos/cls/reg + blocks 0..K-1 frozen */
    int head_hand;              /* heads: ["hand"] */
} model_spec_t;

typedef struct {
    double lr_backbone, lr_heads;   /* 1e-5, 1e-3 */
    double weight_decay;            /* 0.01, matrices only */
    double beta1, beta2, eps;       /* 0.9, 0.999, 1e-8 */
    double clip_grad_norm;          /* 1.0; 0 disables */
    int warmup_steps;               /* 0 */
    int schedule_cosine;            /* 1 = cosine (default), 0 = constant */
} optim_spec_t;

/* Train-time augmentation (`"augment"`, off when absent). Every kind is off
 * (the identity) unless its field is given; gpu/augment.h says what each does
 * to the image and to the joints. Ranges are validated by jobspec_parse. */
typedef struct {
    int on;                         /* "augment" given */
    double rotate_deg[2];           /* in-plane camera roll, uniform in [lo, hi] degrees */
    double shift_deg;               /* camera pan/tilt, each uniform in [-x, x] degrees */
    double flip;                    /* probability of a mirror image (x -> -x) */
    double zoom[2];                 /* magnification about the principal point, log-uniform */
    double brightness, contrast, saturation;   /* factors uniform in [1-x, 1+x] */
    double hue;                     /* hue rotation uniform in [-x, x] turns */
    int erase_count;                /* 0: no erasing; else up to this many rectangles */
    double erase_p;                 /* probability of each rectangle */
    double erase_area[2];           /* fraction of the image area, uniform */
    double erase_aspect[2];         /* width/height, log-uniform */
} augment_spec_t;

/* Per-stage dtype plan (SPEC §5). */
typedef struct {
    dtype_t input;       /* encoder input as read from the dataset batch */
    dtype_t compute;     /* matrix math inputs (accumulate is always fp32) */
    dtype_t norms;       /* always DT_F32 */
    dtype_t params;      /* working parameters the matmuls read */
    dtype_t master;      /* master parameters (train) */
    dtype_t grads;       /* DT_F32 (train, debug); meaningless otherwise */
    int has_grads;
} dtype_plan_t;

typedef struct {
    job_type_t type;
    char dataset[JS_NAME_MAX];
    int priority;
    char submission_id[JS_NAME_MAX];
    uint64_t seed;
    char precision_compute[8];   /* "", "fp32" or "bf16" */
    model_spec_t model;
    /* train, eval, infer: `devices`, a count N or a list of the daemon's device
     * indices; one worker process (rank) per device (gpu/collective.h). */
    int devices;                     /* ranks: 1 (default) .. JS_MAX_DEVICES */
    int device_list[JS_MAX_DEVICES]; /* the listed devices, rank order, when n_device_list > 0 */
    int n_device_list;
    int devices_given;               /* the spec named `devices` (an explicit 1 is kept, not expanded) */

    /* train */
    double split_train[2], split_val[2];   /* fractions [a,b) of the dataset */
    int batch_size;
    int epochs;                  /* 0 when steps is given */
    long steps;                  /* 0 when epochs is given */
    optim_spec_t optim;
    long eval_every, checkpoint_every;
    int keep_checkpoints;
    char resume_from[JS_NAME_MAX];   /* checkpoint id */
    augment_spec_t augment;

    /* eval / debug / infer */
    char checkpoint[JS_NAME_MAX];    /* checkpoint id ("" = fresh init / model.weights) */
    int split_is_val;                /* eval: 1 = the val split (default), 0 = train split */
    /* eval/infer `indices`: entries in order, each a sample range [begin, end)
     * (a plain index i is [i, i+1)); n_indices = samples selected in all */
    js_range_t *ranges; int n_ranges;
    int64_t n_indices;
    int batches;                     /* debug */
    /* infer inline images: u8 HWC, owned, with the SHA-256 of each one's bytes */
    int n_images;
    uint8_t **images; int *image_h, *image_w;
    char (*image_sha256)[65];
    int out_cls, out_patch_tokens;   /* infer "outputs" */
} jobspec_t;

/* 0 on success; -1 with the offending field's dotted path (e.g. "optim.lr.heads")
 * and a human message. The caller frees with jobspec_free(). */
int jobspec_parse(const json_t *in, jobspec_t *out, char *field, size_t fieldlen,
                  char *msg, size_t msglen);
void jobspec_free(jobspec_t *js);
/* The samples `indices` selects, in order, checked against a dataset of
 * n_samples: 0 with a malloc'd list (*n entries; the caller frees), or -1 with
 * a message naming the entry ("indices[3] = [5000, 5100) is out of range ...").
 * jobspec_indices_check is the same check without the list. */
int jobspec_indices_expand(const jobspec_t *js, int64_t n_samples, int32_t **out, int64_t *n,
                           char *err, size_t errlen);
int jobspec_indices_check(const jobspec_t *js, int64_t n_samples, char *field, size_t fieldlen,
                          char *err, size_t errlen);
json_t *jobspec_to_json(const jobspec_t *js);        /* resolved spec, new reference */
dtype_plan_t jobspec_plan(const jobspec_t *js);
json_t *dtype_plan_to_json(const dtype_plan_t *p);   /* {"encoder_input":"bf16",...} */
/* The resolved augmentation for the job record, beside the dtype plan (NULL
 * when the job does not augment). camera: how the geometric kinds get the
 * intrinsics — 1: the dataset's camera_intrinsics, 0: assumed (focal length =
 * image width, principal point at the centre; width/height of the images when
 * known, else 0), -1: not known yet (the dataset is still loading). */
json_t *augment_plan_to_json(const jobspec_t *js, int camera, int width, int height);

#endif
