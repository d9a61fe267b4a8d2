/* daemon/worker.c — `traind worker` (one job per process) and its spawning
 * from the daemon (see worker.h for the protocol). */
#define _GNU_SOURCE
#include "daemon/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "daemon/log.h"
#include "gpu/backend.h"
#include "gpu/collective.h"
#include "gpu/jobspec.h"
#include "gpu/stages.h"
#include "gpu/dataset.h"
#include "store/dataset.h"
#include "store/errbuf.h"
#include "store/fsutil.h"
#include "store/mono.h"

/* ---- daemon side ---------------------------------------------------------------- */
int worker_env_allowed(const char *entry) {
    static const char *const exact[] = {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH",
                                        "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "GOTO_NUM_THREADS", NULL};
    static const char *const prefix[] = {"LC_", "CUDA_", "NVIDIA_", "NCCL_", "OPENBLAS_", "OMP_", "TRAIND_", NULL};
    size_t n = strcspn(entry, "=");
    if (!entry[n] || n == 0) return 0;
    /* TRAIND_TOKEN, TRAIND_TOKEN_FILE: trainctl's credentials, never a worker's business */
    if (n >= 12 && !strncmp(entry, "TRAIND_TOKEN", 12)) return 0;
    for (int i = 0; exact[i]; i++)
        if (strlen(exact[i]) == n && !strncmp(entry, exact[i], n)) return 1;
    for (int i = 0; prefix[i]; i++)
        if (!strncmp(entry, prefix[i], strlen(prefix[i])) && n > strlen(prefix[i])) return 1;
    return 0;
}

pid_t worker_spawn(const char *exe, const char *job_file, int rank, int *events_fd, char *err, size_t errlen) {
    /* the environment, built before fork (the child may only make async-signal-safe calls) */
    extern char **environ;
    size_t ne = 0;
    for (char **e = environ; e && *e; e++) ne++;
    char **envp = calloc(ne + 1, sizeof *envp);
    if (!envp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (worker_env_allowed(*e)) envp[k++] = *e;
    envp[k] = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC)) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        free(envp);
        return -1;
    }
    char rank_s[16];
    snprintf(rank_s, sizeof rank_s, "%d", rank);
    char *const argv[] = {(char *)"traind", (char *)"worker", (char *)"--job", (char *)job_file, (char *)"--rank",
                          rank_s, (char *)"--events-fd", (char *)"3", NULL};
    long om = sysconf(_SC_OPEN_MAX);
    int max_fd = om > 0 && om < 1048576 ? (int)om : 1048576;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        free(envp);
        return -1;
    }
    if (pid == 0) {
        /* child: async-signal-safe calls only until exec */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);       /* the daemon died before prctl */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        if (p[1] == WORKER_EVENTS_FD) {
            int fl = fcntl(p[1], F_GETFD);
            fcntl(p[1], F_SETFD, fl & ~FD_CLOEXEC);
        } else if (dup2(p[1], WORKER_EVENTS_FD) < 0) {
            _exit(127);
        }
        /* nothing else of the daemon's: every fd above the events pipe is closed, whatever
         * the daemon inherited or opened without O_CLOEXEC (a kernel without close_range:
         * one close per possible fd) */
        if (close_range(WORKER_EVENTS_FD + 1, ~0u, 0) != 0)
            for (int fd = WORKER_EVENTS_FD + 1; fd < max_fd; fd++) close(fd);
        setpgid(0, 0);   /* a terminal's ^C goes to the daemon, which stops workers itself */
        execve(exe, argv, envp);
        _exit(127);
    }
    free(envp);
    close(p[1]);
    *events_fd = p[0];
    return pid;
}

/* ---- worker side -------------------------------------------------------------------- */
static volatile sig_atomic_t w_stop;
static int w_fd = WORKER_EVENTS_FD;
static char w_job[64];
static long w_fault_step = -1;
static int w_rank;                 /* this worker's rank; only rank 0 reports for the job */
static coll_t *w_coll;             /* the job's collectives, once joined */

static void on_term(int sig) { (void)sig; w_stop = 1; }

static void emit(const char *type, json_t *data) {   /* steals data */
    if (w_rank != 0 && strcmp(type, "error") != 0 && strcmp(type, "state") != 0) {
        json_decref(data);   /* rank 0 speaks for the job */
        return;
    }
    json_t *o = json_pack("{s:s, s:o}", "type", type, "data", data ? data : json_object());
    char *line = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(o);
    if (!line) return;
    size_t n = strlen(line);
    line[n] = '\n';      /* replaces the NUL; we write n+1 bytes */
    const char *p = line;
    size_t left = n + 1;
    while (left) {
        ssize_t w = write(w_fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;      /* the daemon is gone: PDEATHSIG ends us */
        }
        p += w;
        left -= (size_t)w;
    }
    free(line);
}

static void cb_progress(void *ud, const stage_progress_t *p) {
    emit("progress", json_pack("{s:I, s:I, s:i, s:f, s:f}", "step", (json_int_t)p->step, "total_steps",
                               (json_int_t)p->total_steps, "epoch", p->epoch, "images_per_s",
                               isfinite(p->images_per_s) ? p->images_per_s : 0.0, "eta_s",
                               isfinite(p->eta_s) ? p->eta_s : 0.0));
    if (w_fault_step >= 0 && p->step >= w_fault_step && w_rank == 0) {
        log_error(w_job, "TRAIND_TEST_FAULT: aborting at step %ld", p->step);
        signal(SIGABRT, SIG_DFL);
        abort();
    }
}

static void cb_metric(void *ud, long step, const char *name, double value) {
    emit("metric", json_pack("{s:s, s:I, s:o}", "name", name, "step", (json_int_t)step, "value",
                             isfinite(value) ? json_real(value) : json_null()));
}

static void cb_checkpoint(void *ud, long step, const char *dir, const json_t *metrics) {
    emit("checkpoint", json_pack("{s:I, s:o, s:o}", "step", (json_int_t)step, "dir", errbuf_json_string(dir),
                                 "metrics", metrics ? json_deep_copy(metrics) : json_null()));
}

static void cb_log(void *ud, const char *msg) {
    int warning = strncmp(msg, "warning: ", 9) == 0;   /* a stage's warning */
    json_t *ev = json_pack("{s:o}", "message", errbuf_json_string(msg));
    if (warning) json_object_set_new(ev, "level", json_string("warning"));
    emit("log", ev);
    if (w_rank != 0) log_debug(w_job, "rank %d: %s", w_rank, msg);
    else if (warning) log_warn(w_job, "%s", msg + 9);
    else log_info(w_job, "%s", msg);
}

static void fault_setup(void) {
    const char *f = getenv("TRAIND_TEST_FAULT");
    if (!f || strncmp(f, "step:", 5) != 0) return;
    char *end;
    long n = strtol(f + 5, &end, 10);
    if (end == f + 5 || n < 0) return;
    if (*end == '@' && strcmp(end + 1, w_job) != 0) return;
    if (*end && *end != '@') return;
    w_fault_step = n;
}

__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_error(w_job[0] ? w_job : NULL, "worker%s: %s", w_rank ? " (rank)" : "", msg);
    coll_abort(w_coll, msg);   /* the other ranks stop waiting for this one */
    emit("error", json_pack("{s:o}", "message", errbuf_json_string(msg)));
    return 1;
}

static const char *opt_str(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

int worker_main(int argc, char **argv) {
    const char *job_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--job") && i + 1 < argc) job_file = argv[++i];
        else if (!strcmp(argv[i], "--events-fd") && i + 1 < argc) w_fd = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rank") && i + 1 < argc) w_rank = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: traind worker --job FILE [--rank R] [--events-fd N]\n");
            return 2;
        }
    }
    const double t_w0 = mono_now();   /* start-up phases, for the log line below */
    if (!job_file || w_fd < 0 || w_rank < 0 || w_rank >= COLL_MAX_WORLD) {
        fprintf(stderr, "usage: traind worker --job FILE [--rank R] [--events-fd N]\n");
        return 2;
    }
    if (fcntl(w_fd, F_GETFD) < 0) {
        fprintf(stderr, "traind worker: events fd %d is not open (this command is started by the daemon)\n", w_fd);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    const char *lvl = getenv("TRAIND_LOG_LEVEL");
    if (lvl && log_level_parse(lvl) >= 0) log_set_level(log_level_parse(lvl));

    json_error_t jerr;
    json_t *job = json_load_file(job_file, 0, &jerr);
    if (!job) return fail("job file %s: %s (line %d)", job_file, jerr.text, jerr.line);
    snprintf(w_job, sizeof w_job, "%s", opt_str(job, "job_id") ? opt_str(job, "job_id") : "?");
    fault_setup();
    emit("state", json_pack("{s:s, s:i}", "state", "started", "pid", (int)getpid()));

    int rc = 1;
    jobspec_t spec;
    memset(&spec, 0, sizeof spec);
    backend_t *be = NULL;
    void *base = NULL;
    size_t bytes = 0;
    char field[128], msg[512], err[1024];
    if (jobspec_parse(json_object_get(job, "spec"), &spec, field, sizeof field, msg, sizeof msg)) {
        rc = fail("stored spec invalid at %s: %s", field, msg);
        json_decref(job);
        return rc;
    }
    const char *bname = opt_str(job, "backend");
    int world = json_is_integer(json_object_get(job, "world")) ? (int)json_integer_value(json_object_get(job, "world")) : 1;
    const json_t *ranks = json_object_get(job, "ranks");
    if (world < 1 || world > COLL_MAX_WORLD || w_rank >= world || (ranks && json_array_size(ranks) != (size_t)world)) {
        rc = fail("job file: rank %d of %d ranks", w_rank, world);
        goto out;
    }
    const json_t *me = ranks ? json_array_get(ranks, (size_t)w_rank) : job;
    int device = (int)json_integer_value(json_object_get(me, "device"));
    be = backend_open(bname ? bname : "cpu", device, err, sizeof err);
    if (!be) { rc = fail("%s", err); goto out; }   /* backend_open names the backend */
    const double t_be = mono_now();
    if (!strcmp(be->name, "cpu")) backend_cpu_share_cores(world);   /* the ranks share the host's cores */
    w_coll = world > 1 ? coll_open(be, opt_str(job, "collective"), w_rank, world, err, sizeof err) : coll_open_single(be);
    if (!w_coll) { rc = fail("rank %d of %d: %s", w_rank, world, err); goto out; }
    const json_t *dsj = json_object_get(me, "dataset");
    ds_layout_t layout;
    if (ds_layout_from_json(json_object_get(dsj, "layout"), &layout, err, sizeof err)) {
        rc = fail("%s", err);
        goto out;
    }
    bytes = (size_t)json_integer_value(json_object_get(dsj, "bytes"));
    const char *handle = opt_str(dsj, "handle");
    if (!handle || bytes != layout.total) { rc = fail("dataset share: bad handle or size"); goto out; }
    int64_t first = json_integer_value(json_object_get(dsj, "first"));
    int64_t total = json_is_integer(json_object_get(dsj, "samples")) ? json_integer_value(json_object_get(dsj, "samples"))
                                                                       : layout.n;
    if (first < 0 || total < layout.n || first > total - layout.n) { rc = fail("dataset share: bad shard bounds"); goto out; }
    base = be->shared_open(be, handle, bytes);
    if (!base) { rc = fail("cannot open the resident dataset: %s", be->err); goto out; }
    const double t_ds = mono_now();
    dataset_t ds;
    dataset_view(&ds, base, &layout);
    ds.n = total;          /* the dataset's samples; this share holds [first, first + held) */
    ds.first = first;

    stage_ctx_t ctx = {
        .be = be, .ds = &ds, .spec = &spec, .job_id = w_job,
        .checkpoint_root = opt_str(job, "checkpoint_root"),
        .weights_path = opt_str(job, "weights_path"),
        .checkpoint_path = opt_str(job, "checkpoint_path"),
        .result_dir = opt_str(job, "result_dir"),
        .stop = &w_stop, .ud = NULL, .coll = w_coll,
        .on_progress = cb_progress, .on_metric = cb_metric,
        .on_checkpoint = cb_checkpoint, .on_log = cb_log,
    };
    if (ctx.result_dir && fs_mkdir_p(ctx.result_dir, FS_DIR_MODE, err, sizeof err)) { rc = fail("%s", err); goto out; }
    if (world > 1)
        log_info(w_job, "worker %d: rank %d of %d, %s on %s device %d, dataset %lld samples %dx%d (holding %lld from %lld); "
                 "backend %.2f s, dataset opened %.2f s", (int)getpid(), w_rank, world, job_type_name(spec.type), be->name,
                 device, (long long)ds.n, ds.h, ds.w, (long long)ds.held, (long long)ds.first, t_be - t_w0, t_ds - t_be);
    else
        log_info(w_job, "worker %d: %s on %s device %d, dataset %lld samples %dx%d; backend %.2f s, dataset opened %.2f s",
                 (int)getpid(), job_type_name(spec.type), be->name, device, (long long)ds.n, ds.h, ds.w, t_be - t_w0,
                 t_ds - t_be);
    json_t *result = NULL;
    err[0] = 0;
    int s = stage_run(&ctx, &result, err, sizeof err);
    if (s == 0) {
        emit("result", result ? result : json_object());
        rc = 0;
    } else if (s == 1) {
        if (result) emit("result", result);
        log_info(w_job, "worker: stopped on request");
        rc = WORKER_EXIT_STOPPED;
    } else {
        json_decref(result);
        rc = fail("%s", err[0] ? err : "stage failed");
    }
out:
    coll_close(w_coll);
    w_coll = NULL;
    if (base) be->shared_close(be, base, bytes);
    if (be) be->destroy(be);
    jobspec_free(&spec);
    json_decref(job);
    return rc;
}
