/* gpu/model.h — the DINOv2 backbone and the hand head, written once against
 * backend_t (gpu/backend.h), and its parameters.
 *
 * Owns: the model configuration (named backbones, HF config.json), the flat
 * parameter layout with exact HF `Dinov2Model` tensor names, the buffers
 * (fp32 master parameters, the compute-dtype working copy, gradients, AdamW
 * moments, activations for a maximum batch), seeded initialization, loading of
 * HF checkpoint directories (with position-embedding interpolation exactly as
 * transformers does it), forward, backward and the AdamW segment table.
 *
 * Data flow (B = batch, P = patches, R = registers, T = 1+R+P, D = hidden):
 *   images[N,3,H,W] (bf16|f32, by idx) --im2col--> cols[B*P,3*p*p] (cdt)
 *   --patch matmul--> patches[B*P,D] f32 --embed--> x[B,T,D] f32 (residual)
 *   per block: LN1 -> qkv[B,T,3,NH,HS] -> attention -> proj -> x += ls1*.
 *              LN2 -> fc1[B,T,4D] -> GELU -> fc2 -> x += ls2*.
 *   final LN -> last_hidden_state[B,T,D] (only when asked), pooler = LN(x[:,0])
 *   heads (hand): pooler -> fc1 512 -> GELU -> fc2 63 = pred[B,63] (metres)
 *                 pooler -> fc1 256 -> GELU -> fc2 21 = conf_logit[B,21]
 *
 * Parameter layout: ONE fp32 buffer `params` in table order (below); the
 * working copy `params_c` (compute dtype, same element offsets; equal to
 * `params` when cdt is fp32). Table order is: embeddings (cls_token,
 * mask_token, position_embeddings, register_tokens, patch projection weight,
 * bias), blocks 0..L-1, final layernorm, heads. Within a block the query,
 * key, value weights are adjacent (one [3D,D] matrix) and so are their biases
 * ([3D]). Frozen parameters (freeze_layers K >= 1: embeddings and blocks
 * 0..K-1) form a prefix [0, train_off); the trainable ones the suffix
 * [train_off, n_params). Gradients and AdamW moments exist for the suffix
 * only: grads[i - train_off] is the gradient of params[i].
 *
 * The position table is kept at the WORKING grid (image_h/p x image_w/p):
 * loading interpolates a table of another size once, at load time.
 */
#ifndef TRAIND_MODEL_H
#define TRAIND_MODEL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "gpu/backend.h"
#include "store/hand.h"

#define MODEL_NAME_MAX 96
#define MODEL_CONF_OUT 21
#define MODEL_JOINTS_HIDDEN 512
#define MODEL_CONF_HIDDEN 256

typedef struct {
    int hidden;              /* D */
    int layers;              /* L */
    int heads;               /* NH (attention heads) */
    int mlp_ratio;           /* 4 */
    int patch;               /* 14 */
    int registers;           /* 0 | 4 */
    float layer_norm_eps;    /* 1e-6 for dinov2 */
    int image_size;          /* side in pixels of the position table in the source
                                (config.json image_size); informational after load */
    float layerscale_value;  /* initial LayerScale (1.0) */
    int head_hand;           /* 1: hand head present (joints + confidence) */
    int joints_hidden;       /* 512 */
    int conf_hidden;         /* 256 */
    float initializer_range; /* std of the fresh trunc-normal init (HF config field; 0.02,
                                larger for the narrow dinov2-tiny) */
} model_config_t;

/* "dinov2-tiny" (64/2/2), "dinov2-small" (384/12/6), "dinov2-base" (768/12/12),
 * "dinov2-large" (1024/24/16); registers 0 or 4. head_hand = 1. initializer_range
 * 0.02 (HF), 0.05 for the narrow tiny.
 * 0, or -1 with err for an unknown name or register count. */
int model_config_by_name(const char *name, int registers, model_config_t *cfg,
                         char *err, size_t errlen);

/* From a parsed HF config.json ("dinov2" or "dinov2_with_registers"); rejects
 * anything traind does not implement (hidden_act other than "gelu", SwiGLU,
 * qkv_bias false, num_channels != 3, ...) with a message naming the field.
 * head_hand is left 1 (the caller may clear it). */
int model_config_from_hf_json(const json_t *j, model_config_t *cfg, char *err, size_t errlen);
/* Reads <dir>/config.json and calls model_config_from_hf_json. */
int model_config_from_hf_dir(const char *dir, model_config_t *cfg, char *err, size_t errlen);

typedef enum { MODEL_GROUP_BACKBONE = 0, MODEL_GROUP_HEADS = 1 } model_group_t;

typedef struct {
    char name[MODEL_NAME_MAX];   /* HF name, e.g. "encoder.layer.3.mlp.fc1.weight" */
    int ndim;
    int64_t shape[4];
    size_t off;                  /* element offset into params / params_c */
    size_t n;                    /* elements */
    int is_matrix;               /* weight decay applies (patch proj, q/k/v/o, fc1/fc2, head fc weights) */
    model_group_t group;
    int frozen;                  /* 1: in the frozen prefix, no gradient */
} model_param_t;

typedef struct {
    int image_h, image_w;        /* working image size (multiples of the patch) */
    int max_batch;               /* largest Bn model_forward accepts */
    dtype_t cdt;                 /* compute dtype (dtype_plan_t.compute): DT_F32 | DT_BF16 */
    int grads;                   /* allocate gradients and training activations */
    int optimizer;               /* allocate AdamW moments m, v (needs grads) */
    int freeze_layers;           /* K: 0..layers */
    int want_hidden;             /* allocate last_hidden_state [max_batch,T,D] */
} model_opts_t;

/* Called during model_forward for activation statistics (debug stage):
 * name is "embeddings", "encoder.layer.{i}" (residual stream after block i),
 * "layernorm" (pooler [B,D]), "heads.hand.joints.fc1" (post-GELU),
 * "heads.hand.joints" (pred), "heads.hand.conf.fc1", "heads.hand.conf" (logits).
 * x is backend memory of n elements in dt, valid during the call. */
typedef void (*model_stats_fn)(void *ud, const char *name, const void *x, dtype_t dt, size_t n);

/* Called by model_backward as gradients become final, from the end of
 * m->grads towards its start: every gradient at index >= from (an index of
 * m->grads) holds its value for this backward (the heads and the final
 * LayerNorm first, then each block from the last, the embeddings last;
 * from = 0 once everything is). The work that computed them is queued on the
 * backend before the call. Data parallelism launches its gradient buckets
 * from here (gpu/collective.h). */
typedef void (*model_grad_fn)(void *ud, size_t from);

typedef struct model model_t;
struct model {
    backend_t *be;
    model_config_t cfg;
    model_opts_t opts;
    int gh, gw;                  /* working patch grid */
    int P, T;                    /* patches, tokens per image (1+R+P) */

    model_param_t *table;        /* [n_tensors] */
    int n_tensors;
    size_t n_params;             /* buffer elements: every tensor plus zero alignment padding */
    size_t train_off;            /* first trainable element; n_params - train_off trainable */
    int first_trainable_block;   /* = freeze_layers */

    float *params;               /* [n_params] fp32 master (backend memory) */
    void *params_c;              /* [n_params] in cdt (== params when fp32) */
    float *grads;                /* [n_params - train_off] or NULL */
    float *adam_m, *adam_v;      /* [n_params - train_off] or NULL */
    long adam_step;              /* AdamW steps taken (restored from checkpoints) */
    int heads_loaded;            /* set by model_load_hf_dir when heads.* came from the file */

    /* outputs of the last model_forward (backend memory, fp32) */
    float *pred;                 /* [Bn,63] joints (m)          (head_hand) */
    float *conf_logit;           /* [Bn,21] confidence logits   (head_hand) */
    float *pooler;               /* [Bn,D] final LN of the CLS token */
    float *hidden;               /* [Bn,T,D] last_hidden_state, or NULL unless want_hidden */
    int last_B;

    model_stats_fn stats_fn;
    void *stats_ud;
    model_grad_fn grad_fn;
    void *grad_ud;

    void *priv;                  /* activations and scratch (model.c) */
};

/* Allocate a model (parameters uninitialized: call model_init or a loader).
 * NULL with err on a bad option (image size not a multiple of the patch,
 * freeze_layers out of range, cdt not f32/bf16) or an allocation failure. */
model_t *model_create(backend_t *be, const model_config_t *cfg, const model_opts_t *opts,
                      char *err, size_t errlen);
void model_free(model_t *m);                      /* NULL is fine */

/* The backend memory model_create(cfg, opts) allocates, by part, computed by
 * the same code that sizes the allocations (nothing is allocated): fp32 master
 * parameters plus the compute-dtype working copy, fp32 gradients and the two
 * AdamW moments of the trainable parameters, and the activations and scratch
 * for opts->max_batch images (kept per trainable block when opts->grads).
 * Returns the total, or 0 with err when model_create would refuse the options. */
typedef struct {
    size_t params, grads, optimizer, activations;
    size_t total;
} model_mem_t;
size_t model_working_bytes(const model_config_t *cfg, const model_opts_t *opts, model_mem_t *parts,
                           char *err, size_t errlen);

/* Seeded fresh initialization of EVERYTHING (HF-like: trunc-normal with std
 * cfg.initializer_range for linear/conv weights and cls/register tokens, a
 * zero mask token, zero biases, LN 1/0, LayerScale = layerscale_value; the
 * position table is the 2-D sine-cosine code of the working patch grid); mean_joints[63] (host, may be NULL) is
 * the joint head's final bias, so training starts at the mean predictor.
 * Syncs the working copy. Never call it after loading weights. */
void model_init(model_t *m, uint64_t seed, const float *mean_joints);
/* The same for the heads only (a pretrained backbone + fresh heads). */
void model_init_heads(model_t *m, uint64_t seed, const float *mean_joints);

/* Load a HF DINOv2 directory (config.json + model.safetensors), or a traind
 * checkpoint directory, into the backbone (F32 or BF16 tensors). The config
 * must match m->cfg (hidden, layers, heads, mlp_ratio, patch, registers;
 * layer_norm_eps and image_size are taken from the file); every
 * backbone tensor must be present with its HF shape; the position table is
 * interpolated to the working grid as transformers does. heads.* tensors, when
 * present (traind checkpoints), are loaded too and set m->heads_loaded.
 * Syncs the working copy. 0, or -1 with err naming the file/tensor; every tensor is
 * validated before any parameter is written (only an I/O error while reading can
 * leave the model partly loaded). */
int model_load_hf_dir(model_t *m, const char *dir, char *err, size_t errlen);

/* Host-side loading and saving of individual tensors by table entry
 * (used by store/checkpoint.c). */
int model_find_param(const model_t *m, const char *name);    /* table index or -1 */
void model_param_upload(model_t *m, int i, const float *host);   /* params only; call sync after */
void model_param_download(model_t *m, int i, float *host);
void model_sync_working_copy(model_t *m);                    /* params_c = cast(params) */

/* Forward for Bn images. images: backend memory [N,3,H,W] in idt (bf16|f32),
 * gathered by idx (backend memory [Bn]; NULL: images ARE the batch), H,W =
 * the working size. want_hidden: also fill m->hidden (needs opts.want_hidden).
 * With opts.grads the activations for model_backward are kept.
 * 0, or -1 with err (Bn out of range, want_hidden without the buffer). */
int model_forward(model_t *m, const void *images, dtype_t idt, const int32_t *idx, int Bn,
                  int want_hidden, char *err, size_t errlen);
/* The same with the batch augmented in the gather (backend.h im2col; aug NULL:
 * model_forward). Only the train stage passes one. */
int model_forward_aug(model_t *m, const void *images, dtype_t idt, const int32_t *idx, int Bn,
                      const im2col_aug_t *aug, int want_hidden, char *err, size_t errlen);

/* Backward of the last forward from dpred[Bn,63] and dconf[Bn,21] (fp32,
 * backend memory, e.g. from backend hand_loss; dconf may be NULL). Gradients
 * ACCUMULATE into m->grads; stops at the first trainable block (no gradient
 * into frozen parameters or the images). Needs opts.grads and head_hand. */
void model_backward(model_t *m, const float *dpred, const float *dconf);
void model_zero_grad(model_t *m);
double model_grad_sumsq(model_t *m);                  /* over all trainable grads */

/* Gradient of table entry i (backend memory, n elements), NULL when frozen or no grads. */
float *model_param_grad(model_t *m, int i);

/* AdamW runs over the TRAINABLE region, offsets relative to train_off (i.e.
 * for adamw(be, params + train_off, params_c + train_off, ..., grads, m, v)):
 * backbone runs get lr_backbone, head runs lr_heads, matrices wd, vectors 0.
 * segs must hold model_adamw_max_segments(m) entries; *n gets the count. */
int model_adamw_max_segments(const model_t *m);
void model_adamw_segments(const model_t *m, float lr_backbone, float lr_heads, float wd,
                          adamw_seg_t *segs, int *n);
/* One AdamW step over the trainable parameters (needs opts.optimizer):
 * increments adam_step, updates master and working copy. gscale multiplies the
 * gradients (clipping). */
void model_adamw_step(model_t *m, float lr_backbone, float lr_heads, float wd,
                      float beta1, float beta2, float eps, float gscale);

void model_set_stats_hook(model_t *m, model_stats_fn fn, void *ud);
void model_set_grad_hook(model_t *m, model_grad_fn fn, void *ud);   /* fn NULL: none */

/* Element counts, e.g. for reports. */
size_t model_num_params(const model_t *m);
size_t model_num_trainable(const model_t *m);

#endif
