/* gpu/checkpoint.h — writing a model into a checkpoint directory and reading
 * it back (the directory format is described in store/checkpoint.h). */
#ifndef TRAIND_GPU_CHECKPOINT_H
#define TRAIND_GPU_CHECKPOINT_H

#include <jansson.h>
#include <stddef.h>
#include "gpu/model.h"
#include "store/checkpoint.h"

/* traind's own fields in config.json ("traind": {...}). */
typedef struct {
    char backbone[32];        /* "dinov2-tiny" ... ("" = unknown, e.g. a HF dir) */
    int freeze_layers;
    int head_hand;
    float mean[3], std[3];    /* dataset normalization the model was trained with */
    int image_h, image_w;     /* working image size */
} ckpt_meta_t;

/* Save model (+ optimizer moments when m->adam_m is set) and state (may be
 * NULL: "{}") atomically as directory dir. 0, or -1 with err (the caller names
 * the checkpoint). The position table is saved at the working grid, which
 * must be square for HF. A snapshot taken and written (below). */
int ckpt_save(const char *dir, model_t *m, const ckpt_meta_t *meta, const json_t *state,
              char *err, size_t errlen);

/* A checkpoint in two halves, so the files can be written while the model
 * trains on: ckpt_snap_take copies everything a checkpoint holds into host
 * memory (the backend's downloads; on the model's thread), then
 * ckpt_snap_write writes it as directory dir, atomically, on any one thread
 * (files only: no backend, no callbacks). A snapshot keeps its host buffer
 * (the backend's staging memory) from one take to the next. 0 / -1 with err;
 * after a failed take there is nothing to write. */
typedef struct ckpt_snap ckpt_snap_t;
ckpt_snap_t *ckpt_snap_new(backend_t *be);      /* NULL only when out of memory */
int ckpt_snap_take(ckpt_snap_t *s, model_t *m, const ckpt_meta_t *meta, const json_t *state, char *err,
                   size_t errlen);
int ckpt_snap_write(ckpt_snap_t *s, const char *dir, char *err, size_t errlen);
size_t ckpt_snap_bytes(const ckpt_snap_t *s);   /* tensor bytes of the last take */
void ckpt_snap_free(ckpt_snap_t *s);            /* NULL is fine */

/* Read config.json of a checkpoint (or HF) directory: the model config and,
 * when present, traind's fields (meta may be NULL; without a "traind" object
 * meta is zeroed with mean/std = ImageNet's and *has_meta = 0). */
int ckpt_read_config(const char *dir, model_config_t *cfg, ckpt_meta_t *meta, int *has_meta,
                     char *err, size_t errlen);

/* Load a checkpoint into m (created from ckpt_read_config's config and the
 * working size): the model tensors (backbone and, when m has the hand head,
 * heads — required), optimizer moments and step when load_optimizer and m has
 * them (a missing optimizer.safetensors is then an error), and state.json into
 * *state (new reference; state may be NULL). Every file is validated; a bad
 * one gives -1 with err naming the file and the problem, never a crash. */
int ckpt_load(const char *dir, model_t *m, int load_optimizer, json_t **state,
              char *err, size_t errlen);

#endif
