/* tests/unit/test_sched.c — the scheduler's queue order (priority desc, FIFO
 * within a priority) both as the pure ordering and through the store's queue
 * query; the config parser (flags, file, loopback/token rule); SHA-256 of
 * checkpoint files against the FIPS 180-4 test vectors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/residency.h"
#include "daemon/sched.h"
#include "store/sha256.h"
#include "daemon/worker.h"
#include "store/db.h"
#include "store/mono.h"
#include "tests/tap.h"

static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static void test_order(void) {
    sched_entry_t e[6] = {
        {"j-000001", 0, 1, 0}, {"j-000002", 5, 2, 1}, {"j-000003", 0, 3, 2},
        {"j-000004", 5, 4, 3}, {"j-000005", -2, 5, 4}, {"j-000006", 1, 6, 5},
    };
    sched_order(e, 6);
    const char *want[] = {"j-000002", "j-000004", "j-000006", "j-000001", "j-000003", "j-000005"};
    int good = 1;
    for (int i = 0; i < 6; i++) good &= strcmp(e[i].id, want[i]) == 0;
    ok(good, "priority desc, FIFO within a priority, negative priorities last");

    /* random queues: the order is total and stable by seq whatever the input order */
    int all_ok = 1;
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + (int)rnd(40);
        sched_entry_t q[40];
        for (int i = 0; i < n; i++) {
            snprintf(q[i].id, sizeof q[i].id, "j-%06d", i + 1);
            q[i].priority = (int)rnd(4) - 1;
            q[i].seq = i + 1;
        }
        for (int i = n - 1; i > 0; i--) {   /* shuffle */
            int k = (int)rnd((unsigned)i + 1);
            sched_entry_t t = q[i]; q[i] = q[k]; q[k] = t;
        }
        sched_order(q, n);
        for (int i = 1; i < n; i++)
            if (q[i - 1].priority < q[i].priority ||
                (q[i - 1].priority == q[i].priority && q[i - 1].seq >= q[i].seq))
                all_ok = 0;
    }
    ok(all_ok, "200 random shuffled queues come out in start order");
    sched_order(e, 0);
    ok(1, "empty queue is fine");
}

static void test_store_queue(void) {
    char dir[] = "/tmp/traind-test-sched-XXXXXX", p[256], err[256];
    if (!mkdtemp(dir)) { ok(0, "mkdtemp"); return; }
    snprintf(p, sizeof p, "%s/q.db", dir);
    store_t *s = store_open(p, err, sizeof err);
    ok(s != NULL, "store for the queue");
    if (!s) return;
    /* interleaved priorities; the store's queue order must equal sched_order's */
    int prio[12];
    sched_entry_t mine[12];
    json_t *plan = json_object();
    for (int i = 0; i < 12; i++) {
        prio[i] = (int)rnd(3);
        json_t *spec = json_pack("{s:s, s:i}", "type", "eval", "n", i), *job = NULL;
        int created;
        store_job_insert(s, JOB_EVAL, "ds", prio[i], NULL, spec, plan, &job, &created, err, sizeof err);
        snprintf(mine[i].id, sizeof mine[i].id, "%s", json_string_value(json_object_get(job, "id")));
        mine[i].priority = prio[i];
        mine[i].seq = i + 1;
        json_decref(job);
        json_decref(spec);
    }
    json_decref(plan);
    /* one job cancelled, one started: they leave the queue */
    store_job_set_state(s, mine[3].id, JOB_QUEUED, JOB_CANCELLED, NULL, err, sizeof err);
    store_job_set_state(s, mine[7].id, JOB_QUEUED, JOB_RUNNING, NULL, err, sizeof err);
    sched_order(mine, 12);
    json_t *q = NULL;
    store_jobs_queued(s, &q, err, sizeof err);
    ok(json_array_size(q) == 10, "10 jobs left in the queue");
    size_t k = 0;
    int same = 1;
    for (int i = 0; i < 12; i++) {
        if (!strcmp(mine[i].id, "j-000004") || !strcmp(mine[i].id, "j-000008")) continue;
        same &= k < json_array_size(q) &&
                strcmp(json_string_value(json_object_get(json_array_get(q, k), "id")), mine[i].id) == 0;
        k++;
    }
    ok(same, "the store's queue is in the scheduler's start order");
    json_decref(q);
    store_close(s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) diag("cannot remove %s", dir);
}

static void test_config(void) {
    daemon_cfg_t c;
    char err[512];
    int help, version;
    unsetenv("STATE_DIRECTORY");
    config_defaults(&c);
    ok(!strcmp(c.listen, "127.0.0.1:8470") && !strcmp(c.state_dir, "./traind-state") && !strcmp(c.backend, "auto") &&
       c.max_connections == 256 && c.idle_timeout_s == 120,
       "defaults");
    setenv("STATE_DIRECTORY", "/var/lib/traind:/var/lib/other", 1);
    config_defaults(&c);
    ok(!strcmp(c.state_dir, "/var/lib/traind"), "STATE_DIRECTORY (first entry) is the default state dir");
    unsetenv("STATE_DIRECTORY");

    char cf[] = "/tmp/traind-test-cfg-XXXXXX";
    int fd = mkstemp(cf);
    const char *text = "# comment\n\nlisten = 127.0.0.1:9000\nbackend = cpu\ndevices = 0,1\n"
                       "memory-reserve-gb = 2.5\ndataset-root = /tmp\nlog-level = debug\n"
                       "max-connections = 8\nidle-timeout-s = 30\n";
    ok(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "config file written");
    close(fd);
    char *argv1[] = {"--listen", "127.0.0.1:9100", "--config", cf, "--dataset-root=/", NULL};
    config_defaults(&c);
    ok(config_parse_args(&c, 5, argv1, &help, &version, err, sizeof err) == 0, "flags + file parse (%s)", err);
    ok(!strcmp(c.listen, "127.0.0.1:9100"), "a flag wins over the file whatever the order");
    ok(!strcmp(c.backend, "cpu") && c.n_devices == 2 && c.devices[1] == 1 && c.memory_reserve_gb == 2.5 &&
       c.max_connections == 8 && c.idle_timeout_s == 30, "file values applied");
    ok(c.n_roots == 2 && !strcmp(c.dataset_roots[0], "/tmp") && !strcmp(c.dataset_roots[1], "/"), "dataset roots accumulate");
    ok(config_finish(&c, err, sizeof err) == 0, "finish (%s)", err);

    char *gone[] = {"--dataset-root", "/nonexistent-traind-root", "--dataset-root", "/tmp", NULL};
    config_defaults(&c);
    ok(config_parse_args(&c, 4, gone, &help, &version, err, sizeof err) == 0 && config_finish(&c, err, sizeof err) == 0 &&
       c.n_roots == 1 && !strcmp(c.dataset_roots[0], "/tmp"), "a missing dataset root is left out, the others kept");
    char rf[] = "/tmp/traind-test-rootfile-XXXXXX";
    int rfd = mkstemp(rf);
    close(rfd);
    char *notdir[] = {"--dataset-root", rf, NULL};
    config_defaults(&c);
    config_parse_args(&c, 2, notdir, &help, &version, err, sizeof err);
    ok(rfd >= 0 && config_finish(&c, err, sizeof err) == -1 && strstr(err, "not a directory"), "a root that is a file: %s", err);
    unlink(rf);

    /* retention and the per-job memory cap */
    config_defaults(&c);
    ok(c.keep_jobs == 10000 && c.job_memory_gb == 0, "defaults: --keep-jobs 10000, --job-memory-gb 0 (no cap)");
    char *keep[] = {"--keep-jobs", "5", "--job-memory-gb=0.25", NULL};
    ok(config_parse_args(&c, 3, keep, &help, &version, err, sizeof err) == 0 && c.keep_jobs == 5 &&
       c.job_memory_gb == 0.25, "--keep-jobs 5 --job-memory-gb=0.25");
    char *keep0[] = {"--keep-jobs", "0", NULL};
    ok(config_parse_args(&c, 2, keep0, &help, &version, err, sizeof err) == 0 && c.keep_jobs == 0, "--keep-jobs 0 keeps all");
    char *keepbad[] = {"--keep-jobs", "2.5", NULL};
    ok(config_parse_args(&c, 2, keepbad, &help, &version, err, sizeof err) == -1 && strstr(err, "keep-jobs"),
       "--keep-jobs 2.5: %s", err);
    char *membad[] = {"--job-memory-gb", "-1", NULL};
    ok(config_parse_args(&c, 2, membad, &help, &version, err, sizeof err) == -1 && strstr(err, "job-memory-gb"),
       "--job-memory-gb -1: %s", err);

    char *bad1[] = {"--backend", "tpu", NULL};
    config_defaults(&c);
    ok(config_parse_args(&c, 2, bad1, &help, &version, err, sizeof err) == -1 && strstr(err, "tpu"), "bad backend: %s", err);
    char *bad2[] = {"--frobnicate", NULL};
    ok(config_parse_args(&c, 1, bad2, &help, &version, err, sizeof err) == -1 && strstr(err, "frobnicate"), "unknown flag: %s", err);
    char *bad3[] = {"--devices", "0,x", NULL};
    ok(config_parse_args(&c, 2, bad3, &help, &version, err, sizeof err) == -1, "bad device list: %s", err);
    char *bad4[] = {"--listen", NULL};
    ok(config_parse_args(&c, 1, bad4, &help, &version, err, sizeof err) == -1, "missing value: %s", err);

    /* non-loopback without a token is refused; with one it is fine */
    char *pub[] = {"--listen", "0.0.0.0:8470", NULL};
    config_defaults(&c);
    config_parse_args(&c, 2, pub, &help, &version, err, sizeof err);
    ok(config_finish(&c, err, sizeof err) == -1 && strstr(err, "token"), "non-loopback without token refused: %s", err);
    char tf[] = "/tmp/traind-test-token-XXXXXX";
    fd = mkstemp(tf);
    ok(fd >= 0 && write(fd, "s3cret-token-123\n", 17) == 17, "token file written");
    close(fd);
    snprintf(c.token_file, sizeof c.token_file, "%s", tf);
    ok(config_finish(&c, err, sizeof err) == 0 && !strcmp(c.token, "s3cret-token-123"), "with a token it listens (%s)", err);
    /* a token others can read is refused; group read (root:traind 0640) is fine */
    ok(chmod(tf, 0644) == 0 && config_finish(&c, err, sizeof err) == -1 && strstr(err, "readable by others") &&
       strstr(err, "0644") && strstr(err, "chmod 600"), "a 0644 token file is refused: %s", err);
    ok(chmod(tf, 0602) == 0 && config_finish(&c, err, sizeof err) == -1 && strstr(err, "writable by others"),
       "a token file others can write is refused: %s", err);
    ok(chmod(tf, 0640) == 0 && config_finish(&c, err, sizeof err) == 0, "a 0640 token file is accepted (%s)", err);
    char fifo[] = "/tmp/traind-test-tokfifo-XXXXXX";
    int ffd = mkstemp(fifo);
    close(ffd);
    unlink(fifo);
    snprintf(c.token_file, sizeof c.token_file, "%s", fifo);
    ok(mkfifo(fifo, 0600) == 0 && config_finish(&c, err, sizeof err) == -1 && strstr(err, "not a regular file"),
       "a FIFO as the token file is refused without blocking: %s", err);
    unlink(fifo);

    /* model roots: their own repeatable setting, resolved like the dataset roots */
    char *mr[] = {"--model-root", "/tmp", "--model-root=/nonexistent-traind-models", "--dataset-root", "/", NULL};
    config_defaults(&c);
    ok(config_parse_args(&c, 5, mr, &help, &version, err, sizeof err) == 0 && c.n_model_roots == 2,
       "model roots accumulate (%s)", err);
    char rtmp[4096];
    ok(config_finish(&c, err, sizeof err) == 0 && c.n_model_roots == 1 && realpath("/tmp", rtmp) &&
       !strcmp(c.model_roots[0], rtmp) && c.n_roots == 1, "a missing model root is left out (%s)", err);

    char *badl[] = {"--listen", "nonsense", NULL};
    config_defaults(&c);
    config_parse_args(&c, 2, badl, &help, &version, err, sizeof err);
    ok(config_finish(&c, err, sizeof err) == -1 && strstr(err, "nonsense") && !strstr(err, "token"),
       "a malformed listen address is named as such: %s", err);

    fd = open(cf, O_WRONLY | O_TRUNC);
    const char *badfile = "listen = 127.0.0.1:1\nnot a setting line\n";
    ok(fd >= 0 && write(fd, badfile, strlen(badfile)) == (ssize_t)strlen(badfile), "bad config written");
    close(fd);
    config_defaults(&c);
    ok(config_load_file(&c, cf, err, sizeof err) == -1 && strstr(err, ":2:"), "config error names the line: %s", err);
    unlink(cf);
    unlink(tf);
}

static void test_sha256(void) {
    char hex[65], err[256];
    ok(sha256_buf("abc", 3, hex, err, sizeof err) == 0 &&
       !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256(abc)");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ok(sha256_buf(m, strlen(m), hex, err, sizeof err) == 0 &&
       !strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "sha256 of the 448-bit vector");
    ok(sha256_buf("", 0, hex, err, sizeof err) == 0 &&
       !strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256 of nothing");
    char f[] = "/tmp/traind-test-sha-XXXXXX";
    int fd = mkstemp(f);
    static char mil[1000000];
    memset(mil, 'a', sizeof mil);
    ok(fd >= 0 && write(fd, mil, sizeof mil) == (ssize_t)sizeof mil, "a million 'a' written");
    close(fd);
    long long bytes = 0;
    ok(sha256_file(f, hex, &bytes, err, sizeof err) == 0 && bytes == 1000000 &&
       !strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256 of a file (1e6 x 'a')");
    unlink(f);
    ok(sha256_file("/nonexistent/x", hex, &bytes, err, sizeof err) == -1 && strstr(err, "/nonexistent/x"), "missing file: %s", err);
}

/* Dataset path confinement: realpath under a root; `..` and symlinks out are 403. */
static void test_paths(void) {
    char base[] = "/tmp/traind-test-paths-XXXXXX";
    if (!mkdtemp(base)) { ok(0, "mkdtemp"); return; }
    char root[300], inside[300], outside[300], link_out[300], link_in[300], file[300], dotdot[400], res[4096];
    snprintf(root, sizeof root, "%s/root", base);
    snprintf(inside, sizeof inside, "%s/root/ds", base);
    snprintf(outside, sizeof outside, "%s/secret", base);
    snprintf(link_out, sizeof link_out, "%s/root/escape", base);
    snprintf(link_in, sizeof link_in, "%s/root/alias", base);
    snprintf(file, sizeof file, "%s/root/file", base);
    snprintf(dotdot, sizeof dotdot, "%s/root/ds/../../secret", base);
    int setup = mkdir(root, 0755) == 0 && mkdir(inside, 0755) == 0 && mkdir(outside, 0755) == 0 &&
                symlink(outside, link_out) == 0 && symlink(inside, link_in) == 0;
    int fd = open(file, O_CREAT | O_WRONLY, 0644);
    ok(setup && fd >= 0, "path fixtures");
    close(fd);
    daemon_cfg_t c;
    config_defaults(&c);
    daemon_err_t e;
    ok(residency_check_path(&c, inside, res, sizeof res, &e) == -1 && e.status == 403, "no root configured: 403");
    snprintf(c.dataset_roots[0], sizeof c.dataset_roots[0], "%s", root);
    c.n_roots = 1;
    char rroot[4096];
    if (!realpath(root, rroot)) rroot[0] = 0;
    snprintf(c.dataset_roots[0], sizeof c.dataset_roots[0], "%s", rroot);
    ok(residency_check_path(&c, inside, res, sizeof res, &e) == 0 && strncmp(res, rroot, strlen(rroot)) == 0,
       "a directory under the root is accepted (%s)", res);
    ok(residency_check_path(&c, link_in, res, sizeof res, &e) == 0, "a symlink that stays inside is accepted");
    ok(residency_check_path(&c, outside, res, sizeof res, &e) == -1 && e.status == 403 && !strcmp(e.code, "forbidden"),
       "outside the root: 403");
    ok(residency_check_path(&c, dotdot, res, sizeof res, &e) == -1 && e.status == 403, "a .. escape: 403");
    ok(residency_check_path(&c, link_out, res, sizeof res, &e) == -1 && e.status == 403, "a symlink out: 403");
    ok(residency_check_path(&c, "/nonexistent/x", res, sizeof res, &e) == -1 && e.status == 403,
       "a missing path outside: 403 (existence not revealed)");
    char m_missing[512];
    ok(residency_check_path(&c, "/nonexistent/x", res, sizeof res, &e) == -1, "missing path refused");
    snprintf(m_missing, sizeof m_missing, "%s", strstr(e.message, " is not ") ? strstr(e.message, " is not ") : "?");
    ok(residency_check_path(&c, outside, res, sizeof res, &e) == -1 && !strcmp(strstr(e.message, " is not ") ?: "", m_missing),
       "an existing directory outside gets the same message as a missing one (%s)", e.message);
    ok(residency_check_path(&c, file, res, sizeof res, &e) == -1 && e.status == 403,
       "a file, not a directory: 403 with the same message");
    ok(residency_check_path(&c, "", res, sizeof res, &e) == -1 && e.status == 400, "empty path: 400");
    /* a root that is a prefix of a sibling's name does not cover the sibling */
    char sib[320];
    snprintf(sib, sizeof sib, "%s/rootx", base);
    ok(mkdir(sib, 0755) == 0 && residency_check_path(&c, sib, res, sizeof res, &e) == -1 && e.status == 403,
       "root/../rootx is not under root");
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0) diag("cannot remove %s", base);
}

/* The worker's failure paths report one JSON "error" line on the events fd
 * and exit 1 (the daemon turns that line into the job's error). */
static json_t *run_worker(const char *job_json, int *rc) {
    char jf[] = "/tmp/traind-test-job-XXXXXX";
    int fd = mkstemp(jf);
    if (fd < 0) return NULL;
    if (job_json && write(fd, job_json, strlen(job_json)) != (ssize_t)strlen(job_json)) { close(fd); return NULL; }
    close(fd);
    if (!job_json) unlink(jf);
    int p[2];
    if (pipe(p)) return NULL;
    char fds[16];
    snprintf(fds, sizeof fds, "%d", p[1]);
    char *argv[] = {"worker", "--job", jf, "--events-fd", fds, NULL};
    *rc = worker_main(5, argv);
    close(p[1]);
    char buf[8192];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    unlink(jf);
    buf[n > 0 ? n : 0] = 0;
    /* the last line is the verdict */
    json_t *last = NULL;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        json_decref(last);
        last = json_loads(line, 0, NULL);
    }
    return last;
}

static void test_worker_errors(void) {
    int rc = -1;
    json_t *ev = run_worker(NULL, &rc);
    ok(rc == 1 && ev && !strcmp(json_string_value(json_object_get(ev, "type")), "error") &&
       strstr(json_string_value(json_object_get(json_object_get(ev, "data"), "message")), "job file"),
       "missing job file: error event, exit 1");
    json_decref(ev);
    ev = run_worker("{\"job_id\":\"j-000009\",\"spec\":{\"type\":\"train\",\"dataset\":\"d\",\"bogus\":1}}", &rc);
    ok(rc == 1 && ev && strstr(json_string_value(json_object_get(json_object_get(ev, "data"), "message")), "bogus"),
       "invalid stored spec: the error names the field");
    json_decref(ev);
    ev = run_worker("{\"job_id\":\"j-000010\",\"backend\":\"cpu\",\"spec\":{\"type\":\"eval\",\"dataset\":\"d\"},"
                    "\"dataset\":{\"handle\":\"/traind-none\",\"bytes\":1,\"layout\":{}}}", &rc);
    ok(rc == 1 && ev && !strcmp(json_string_value(json_object_get(ev, "type")), "error"), "bad dataset share: error event (%s)",
       ev ? json_string_value(json_object_get(json_object_get(ev, "data"), "message")) : "none");
    json_decref(ev);
    char *argv[] = {"worker", "--frob", NULL};
    ok(worker_main(2, argv) == 2, "usage error: exit 2");
}

/* The daemon's waits and deadlines run on CLOCK_MONOTONIC. */
static void test_mono(void) {
    double a = mono_now(), b = mono_now();
    ok(a > 0 && b >= a, "mono_now is positive and does not go back");
    pthread_cond_t cv;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    ok(mono_cond_init(&cv) == 0, "a condition variable on the monotonic clock");
    struct timespec ts, now;
    mono_deadline(&ts, 150);
    clock_gettime(CLOCK_MONOTONIC, &now);
    double ahead = (double)(ts.tv_sec - now.tv_sec) + (double)(ts.tv_nsec - now.tv_nsec) * 1e-9;
    ok(ahead > 0.1 && ahead <= 0.15 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L,
       "mono_deadline(150 ms) is 150 ms ahead on CLOCK_MONOTONIC (%.3f s), normalized", ahead);
    double t0 = mono_now();
    pthread_mutex_lock(&mu);
    int r = 0;
    while (r == 0) r = pthread_cond_timedwait(&cv, &mu, &ts);
    pthread_mutex_unlock(&mu);
    double el = mono_now() - t0;
    ok(r == ETIMEDOUT && el >= 0.1 && el < 5.0, "a timed wait on it ends at the deadline (%.3f s)", el);
    mono_deadline(&ts, 1999);
    clock_gettime(CLOCK_MONOTONIC, &now);
    ahead = (double)(ts.tv_sec - now.tv_sec) + (double)(ts.tv_nsec - now.tv_nsec) * 1e-9;
    ok(ahead > 1.9 && ahead <= 1.999 && ts.tv_nsec < 1000000000L, "mono_deadline carries milliseconds into seconds");
    pthread_cond_destroy(&cv);
}

/* What reaches a worker's environment: its own switches and the runtime's,
 * not the daemon's secrets or systemd's notify socket. */
static void test_worker_env(void) {
    static const char *const yes[] = {"PATH=/usr/bin", "HOME=/var/lib/traind", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC",
                                      "CUDA_VISIBLE_DEVICES=0", "NVIDIA_VISIBLE_DEVICES=all", "LD_LIBRARY_PATH=/x",
                                      "ASAN_OPTIONS=a=1", "UBSAN_OPTIONS=b=1", "TRAIND_LOG_LEVEL=info",
                                      "TRAIND_TEST_FAULT=step:3", "OPENBLAS_NUM_THREADS=1", "OMP_NUM_THREADS=1",
                                      "NCCL_NVLS_ENABLE=0", "NCCL_DEBUG=INFO", NULL};
    static const char *const no[] = {"NOTIFY_SOCKET=/run/systemd/notify", "MY_API_KEY=x", "AWS_SECRET_ACCESS_KEY=y",
                                     "TRAIND_TOKEN=t", "TRAIND_TOKEN_FILE=/etc/traind/token", "WATCHDOG_USEC=1",
                                     "INVOCATION_ID=1", "CREDENTIALS_DIRECTORY=/run/c", "LD_PRELOAD=/evil.so",
                                     "PATHX=1", "LC_=1", "CUDA_", "=x", "", NULL};
    for (int i = 0; yes[i]; i++) ok(worker_env_allowed(yes[i]), "worker env keeps %s", yes[i]);
    for (int i = 0; no[i]; i++) ok(!worker_env_allowed(no[i]), "worker env drops '%s'", no[i]);
}

int main(void) {
    test_worker_env();
    test_mono();
    test_order();
    test_store_queue();
    test_config();
    test_sha256();
    test_paths();
    test_worker_errors();
    return tap_done();
}
