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
 * Writing and reading the files is gpu/checkpoint.c's (it needs the model);
 * this file owns the directories as a format: where they are and what a
 * crash can leave of them.
 * Saving writes everything into "<parent>/.<base>.tmp.XXXXXX", fsyncs every
 * file, renames the directory into place and fsyncs the parent (store/fsutil.h):
 * a crash leaves either no checkpoint or a complete one.
 */
#ifndef TRAIND_CHECKPOINT_H
#define TRAIND_CHECKPOINT_H

#include <stddef.h>

/* Removes what a crash during ckpt_save can leave: the temporary directories
 * (<root>/<job>/.<step>.tmp.XXXXXX) that were never renamed into place, of
 * one job, or of every job when job is NULL. Only where no one is writing:
 * the daemon calls it at start (holding the state dir's lock) and when a
 * job's worker has ended. Returns how many were removed, or -1 with err. */
int ckpt_sweep_tmp(const char *root, const char *job, char *err, size_t errlen);

#endif
