/* store/checkpoint.h — traind checkpoint directories (SPEC §6) and their
 * lifecycle: recording, checksums, pruning, deletion and what a crash leaves.
 *
 * A checkpoint is a directory <root>/<job>/<step> holding:
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
 * this module owns the directories and their records in the store (root is
 * <state>/checkpoints, resolved): nothing else in traind creates, removes or
 * records one.
 *
 * Crash safety — the invariants, and what the sweeps remove:
 *  1. Whole or absent. The worker (ckpt_snap_write, beside training or in
 *     place) writes into
 *     "<root>/<job>/.<step>.tmp.XXXXXX", fsyncs every file, renames the
 *     directory to <root>/<job>/<step> and fsyncs the parent (store/fsutil.h);
 *     only then does it report the checkpoint to the daemon.
 *  2. Files before the record. ckpt_record records a directory (one durable
 *     transaction, with the SHA-256 of every file) only after that report, and
 *     only when it resolves under root: a record always names a complete
 *     directory whose files match their sums.
 *  3. The record before the files. ckpt_prune and ckpt_delete delete the
 *     record (durably) first and the files after it: a crash in between leaves
 *     files without a record, never a record without its files.
 *  4. What a crash can leave, and what happens to it:
 *     - ".<step>.tmp.*" directories (death during a save): incomplete by
 *       construction. ckpt_sweep_tmp removes them at start (every job, under
 *       the state dir's lock, before any worker runs) and when a job's worker
 *       has ended (that job's; no one else writes there).
 *     - an unrecorded <step> directory older than its job's newest record
 *       (death between a prune's or delete's two halves): no run reads it
 *       again — a resumed run starts after the newest record — so
 *       ckpt_sweep_pruned removes it at start.
 *     - an unrecorded <step> directory at or after the newest record's step
 *       (death between the worker's rename and the record, or in the middle
 *       of deleting a job's newest checkpoint): kept. A requeued train job
 *       resumes from its newest record, reaches that step again, keeps the
 *       existing directory and reports it, and ckpt_record gives it its one
 *       record (same job and path: no second record). Directories of a job
 *       with no record at all are kept likewise: nothing tells them apart.
 *  5. In use. Pruning never removes a checkpoint that a queued, running or
 *     cancelling job needs (spec.checkpoint, spec.resume_from,
 *     spec.model.weights, resume_checkpoint) — except the pruning job's own
 *     resume checkpoint, which it has loaded already; deletion refuses one in
 *     use (STORE_CONFLICT).
 * Files are removed only at paths strictly under root (ckpt_path_under),
 * whatever a record says.
 */
#ifndef TRAIND_CHECKPOINT_H
#define TRAIND_CHECKPOINT_H

#include <jansson.h>
#include <stddef.h>

#include "store/db.h"

/* 1 when path lies strictly inside root ("<root>/…"); both already resolved
 * (absolute, no symlinks, no ".."), as root and recorded paths are. */
int ckpt_path_under(const char *root, const char *path);

/* Records the checkpoint directory dir that job's worker wrote at step (see 2
 * above): dir is resolved and must lie under root; every regular file in it
 * is hashed (sorted by name: "files" [{"name","bytes","sha256"}], "sha256" =
 * model.safetensors's, "bytes" = the sum) and the record inserted with metrics
 * (may be NULL) by store_checkpoint_insert, which keeps one record per job and
 * path. *rec gets the record. A file that cannot be read is left out of the
 * record with a message in warn (warn[0] == 0 when none). Returns STORE_OK or
 * a STORE_* code with err (nothing recorded). */
int ckpt_record(store_t *s, const char *root, const char *job, const char *dir, long step,
                const json_t *metrics, json_t **rec, char *warn, size_t warnlen, char *err, size_t errlen);

/* keep_checkpoints = keep for job (keep <= 0: nothing pruned): every checkpoint
 * but the newest keep by step and the best by val MPJPE — metrics "val_mpjpe",
 * or "mpjpe" when newest_metrics (the metrics of the checkpoint just recorded;
 * may be NULL) have only that — is removed, record first (see 3, 5 above).
 * *pruned gets the array of removed ids. STORE_OK or a code with err. */
int ckpt_prune(store_t *s, const char *root, const char *job, int keep, const json_t *newest_metrics,
               json_t **pruned, char *err, size_t errlen);

/* DELETE /v1/checkpoints/{id}: STORE_NOTFOUND (no such checkpoint),
 * STORE_CONFLICT (a queued or running job needs it), STORE_ERR, each with err;
 * else the record is deleted, then the files (see 3 above); files that could
 * not be removed leave a message in warn (warn[0] == 0 when none). *rec (may
 * be NULL) gets the deleted record. */
int ckpt_delete(store_t *s, const char *root, const char *id, json_t **rec, char *warn, size_t warnlen,
                char *err, size_t errlen);

/* Removes the temporary directories a crash during ckpt_save can leave
 * (<root>/<job>/.<step>.tmp.XXXXXX), of one job, or of every job when job is
 * NULL (see 4 above). Only where no one is writing: the daemon calls it at
 * start (holding the state dir's lock) and when a job's worker has ended.
 * Returns how many were removed, or -1 with err. */
int ckpt_sweep_tmp(const char *root, const char *job, char *err, size_t errlen);

/* At start: removes the unrecorded <root>/<job>/<step> directories older than
 * their job's newest record (see 4 above). Returns how many were removed; a
 * directory that could not be removed leaves a message in warn (warn[0] == 0
 * when none). */
int ckpt_sweep_pruned(store_t *s, const char *root, char *warn, size_t warnlen);

#endif
