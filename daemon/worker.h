/* daemon/worker.h — `traind worker`: one job in its own process.
 *
 *   traind worker --job FILE [--rank R] [--events-fd N]
 *
 * FILE (written by the daemon; one per job, read by every rank) is a JSON document:
 *   {"job_id":"j-000042", "spec":{resolved spec}, "backend":"cpu", "device":0,
 *    "dataset":{"handle":"/traind-...", "bytes":N, "layout":{ds_layout_to_json},
 *               "first":F, "samples":S},
 *    "world":W, "ranks":[{"device":D, "dataset":{...}} per rank], "collective":SEGMENT|null,
 *    "checkpoint_root":DIR, "result_dir":DIR,
 *    "weights_path":DIR|null, "checkpoint_path":DIR|null}
 * "device"/"dataset" are rank 0's; rank R takes ranks[R] (a file without
 * "ranks" is one rank). A dataset share holds the samples [F, F + layout.n)
 * of a dataset of S (the whole of it unless the dataset is sharded across
 * the devices). The worker opens the backend on its device and the shared
 * dataset, joins the job's collectives (gpu/collective.h) when W > 1, runs
 * stage_run() and — rank 0 only, the other ranks send only "state" and
 * "error" — writes one JSON object per line on fd N (default 3):
 *   {"type":"state","data":{"state":"started"}}
 *   {"type":"progress","data":{"step","total_steps","epoch","images_per_s","eta_s"}}
 *   {"type":"metric","data":{"name","step","value"}}
 *   {"type":"checkpoint","data":{"step","dir","metrics"}}
 *   {"type":"log","data":{"message"}}
 *   {"type":"result","data":{...}}
 *   {"type":"error","data":{"message"}}
 * A rank that fails raises the job's abort word first, so that its peers
 * stop waiting for it.
 * Exit status: 0 done (result sent), WORKER_EXIT_STOPPED when stopped by
 * SIGTERM (a train job after writing a checkpoint), 1 failure (error sent),
 * 2 usage. The worker dies with the daemon (PR_SET_PDEATHSIG = SIGKILL).
 *
 * Test hook: env TRAIND_TEST_FAULT=step:N (or step:N@JOBID to hit one job
 * only) makes the worker (rank 0 of a multi-device job) abort (SIGABRT) when it reports step N — used by the
 * crash tests to kill a worker mid-job deterministically.
 */
#ifndef TRAIND_WORKER_H
#define TRAIND_WORKER_H

#include <sys/types.h>

#define WORKER_EXIT_STOPPED 3
#define WORKER_EVENTS_FD 3

int worker_main(int argc, char **argv);

/* Daemon side: fork + exec `exe worker --job job_file --rank R --events-fd 3` with the
 * worker's fd 3 the write end of a pipe; *events_fd gets the read end
 * (O_CLOEXEC). Call from the thread that supervises the worker and lives as
 * long as it (PR_SET_PDEATHSIG fires when the forking thread exits). Returns
 * the pid or -1 with err.
 * The worker gets fds 0-2 and the events pipe, nothing else (close_range),
 * and a minimal environment (worker_env_allowed): not the daemon's secrets,
 * not systemd's NOTIFY_SOCKET. */
pid_t worker_spawn(const char *exe, const char *job_file, int rank, int *events_fd, char *err, size_t errlen);
/* Whether the environment entry "NAME=value" goes to a worker: PATH, HOME,
 * LANG, LANGUAGE, LC_*, TZ, TMPDIR, LD_LIBRARY_PATH, CUDA_*, NVIDIA_*, NCCL_*,
 * OPENBLAS_*, OMP_*, GOTO_NUM_THREADS, ASAN_/UBSAN_/LSAN_OPTIONS, and TRAIND_*
 * (the worker's own switches) except TRAIND_TOKEN*. */
int worker_env_allowed(const char *entry);

#endif
