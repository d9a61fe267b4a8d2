/* store/checkpoint.h — traind checkpoint directories (SPEC §6).
 *
 * A checkpoint is a directory holding:
 *   model.safetensors      fp32; backbone under the exact HF Dinov2Model names,
 *                          heads under "heads." (loads in transformers as is)
 *   config.json            a transformers Dinov2Config (image_size = the working
 *                          size, so the saved position table matches it) plus a
 *                          "traind" object with traind's own fields
 *   optimizer.safetensors  fp32 AdamW moments "m.<name>", "v.<name>" of the
 *                          trainable parameters; __metadata__ {"step": "<n>"}
 *                          (absent when the model has no optimizer state)
 *   state.json             the caller's document (step, epoch, data position,
 *                          RNG state, spec)
 * Saving writes everything into "<parent>/.<base>.tmp.XXXXXX", fsyncs every
 * file, renames the directory into place and fsyncs the parent (store/fsutil.h):
 * a crash leaves either no checkpoint or a complete one.
 */
#ifndef TRAIND_CHECKPOINT_H
#define TRAIND_CHECKPOINT_H

#include <jansson.h>
#include <stddef.h>
#include "gpu/model.h"

/* traind's own fields in config.json ("traind": {...}). */
typedef struct {
    char backbone[32];        /* "dinov2-tiny" ... ("" = unknown, e.g. a HF dir) */
    int freeze_layers;
    int head_hand;
    float mean[3], std[3];    /* dataset normalization the model was trained with */
    int image_h, image_w;     /* working image size */
} ckpt_meta_t;

/* Save model (+ optimizer moments when m->adam_m is set) and state (may be
 * NULL: "{}") atomically as directory dir. 0, or -1 with err. The position
 * table is saved at the working grid, which must be square for HF. */
int ckpt_save(const char *dir, model_t *m, const ckpt_meta_t *meta, const json_t *state,
              char *err, size_t errlen);

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

/* Removes what a crash during ckpt_save can leave: the temporary directories
 * (<root>/<job>/.<step>.tmp.XXXXXX) that were never renamed into place, of
 * one job, or of every job when job is NULL. Only where no one is writing:
 * the daemon calls it at start (holding the state dir's lock) and when a
 * job's worker has ended. Returns how many were removed, or -1 with err. */
int ckpt_sweep_tmp(const char *root, const char *job, char *err, size_t errlen);

#endif
