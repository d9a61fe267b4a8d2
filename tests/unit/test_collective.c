/* tests/unit/test_collective.c — the cpu collectives (gpu/collective.h) with
 * real processes: 2 and 3 ranks forked from here, each on its own CPU
 * backend, meeting through a segment made by coll_segment_create as the
 * daemon makes it.
 *
 * Sums against a serial sum in rank order (bit for bit: the same order),
 * every rank with the same bits, buffers over one chunk (several rounds),
 * host doubles, broadcast, gather of unequal parts, gradient buckets launched
 * from the end as a backward would, and failure: a rank that exits before a
 * barrier, an abort raised from outside (the daemon's), a rank's own abort,
 * the timeout, a segment of the wrong kind or size, a rank joining twice.
 * No rank ever hangs: each child has an alarm.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "gpu/collective.h"
#include "tests/tap.h"

static char seg[COLL_NAME_MAX];

/* A child's verdict goes back as its exit status: 0 ok, else the failed check's number. */
typedef int (*rank_fn)(coll_t *c, int rank, int world, void *ud);

/* The value rank r contributes at element i (exactly representable sums are not needed:
 * the reference sums in the same order). */
static float val(int r, size_t i) {
    uint32_t x = (uint32_t)(i * 2654435761u) ^ (uint32_t)(r * 40503u + 17u);
    x ^= x >> 13;
    return (float)((double)(x % 200001u) / 1000.0 - 100.0) * (r + 1) * 0.37f;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Forks world ranks running fn; returns how many exited 0; statuses in st. */
static int run_ranks(int world, rank_fn fn, void *ud, int open_it, int st[COLL_MAX_WORLD], int hashfd) {
    pid_t pid[COLL_MAX_WORLD];
    for (int r = 0; r < world; r++) {
        pid[r] = fork();
        if (pid[r] == 0) {
            alarm(60);
            char err[512];
            backend_t *be = backend_open("cpu", 0, err, sizeof err);
            if (!be) _exit(90);
            coll_t *c = NULL;
            if (open_it) {
                c = coll_open(be, seg, r, world, err, sizeof err);
                if (!c) {
                    fprintf(stderr, "rank %d: %s\n", r, err);
                    _exit(91);
                }
            }
            (void)hashfd;
            int rc = fn(c, r, world, ud);
            coll_close(c);
            be->destroy(be);
            _exit(rc);
        }
    }
    int good = 0;
    for (int r = 0; r < world; r++) {
        int s = 0;
        waitpid(pid[r], &s, 0);
        st[r] = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
        good += st[r] == 0;
    }
    return good;
}

static int new_segment(int world, const char *job) {
    char err[256];
    if (coll_segment_create("cpu", world, job, seg, err, sizeof err)) {
        diag("segment: %s", err);
        return -1;
    }
    return 0;
}

/* ---- sums ----------------------------------------------------------------------------- */
static int pipe_w = -1;   /* children write their result hashes here */

static int fn_sums(coll_t *c, int rank, int world, void *ud) {
    char err[512];
    static const size_t sizes[] = {1, 7, 1000, COLL_CPU_CHUNK + 12345, 2 * COLL_CPU_CHUNK + 3};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        float *x = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
        if (!x || !want) return 2;
        for (size_t i = 0; i < n; i++) {
            x[i] = val(rank, i);
            float s = val(0, i);
            for (int r = 1; r < world; r++) s += val(r, i);
            want[i] = s;
        }
        if (coll_allreduce(c, x, n, err, sizeof err) || coll_wait(c, err, sizeof err)) {
            fprintf(stderr, "rank %d: %s\n", rank, err);
            return 3;
        }
        if (memcmp(x, want, n * sizeof(float)) != 0) return 4;
        uint64_t h = hash_bytes(x, n * sizeof(float));
        if (write(pipe_w, &h, sizeof h) != sizeof h) return 5;
        free(x);
        free(want);
    }
    /* host doubles, more than one round */
    size_t nh = COLL_HOST_MAX + 5;
    double *d = malloc(nh * sizeof(double));
    for (size_t i = 0; i < nh; i++) d[i] = rank * 1000.0 + (double)i * 0.5;
    if (coll_allreduce_host(c, d, nh, err, sizeof err)) return 6;
    for (size_t i = 0; i < nh; i++) {
        double s = 0;
        for (int r = 0; r < world; r++) s += r * 1000.0 + (double)i * 0.5;
        if (d[i] != s) return 7;
    }
    free(d);
    /* broadcast from the last rank, over a chunk */
    size_t nb = COLL_CPU_CHUNK * sizeof(float) + 99;
    unsigned char *b = malloc(nb);
    for (size_t i = 0; i < nb; i++) b[i] = rank == world - 1 ? (unsigned char)(i * 7 + 3) : 0xEE;
    if (coll_broadcast(c, b, nb, world - 1, err, sizeof err)) return 8;
    for (size_t i = 0; i < nb; i++)
        if (b[i] != (unsigned char)(i * 7 + 3)) return 9;
    free(b);
    /* gather of unequal parts (one empty, one over a chunk) onto rank 0 */
    size_t bytes[COLL_MAX_WORLD], total = 0;
    for (int r = 0; r < world; r++) {
        bytes[r] = r == 1 ? 0 : r == 2 ? COLL_CPU_CHUNK * sizeof(float) + 5 : 1000 + (size_t)r;
        total += bytes[r];
    }
    unsigned char *mine = malloc(bytes[rank] + 1), *all = rank == 0 ? malloc(total) : NULL;
    for (size_t i = 0; i < bytes[rank]; i++) mine[i] = (unsigned char)(rank * 31 + i);
    if (coll_gather_host(c, mine, bytes, all, err, sizeof err)) return 10;
    if (rank == 0) {
        size_t at = 0;
        for (int r = 0; r < world; r++)
            for (size_t i = 0; i < bytes[r]; i++, at++)
                if (all[at] != (unsigned char)(r * 31 + i)) return 11;
    }
    free(mine);
    free(all);
    /* buckets: 10 "blocks" finishing from the end, 1 MB buckets over 3.3 M floats */
    size_t ng = 3300000;
    float *g = malloc(ng * sizeof(float));
    for (size_t i = 0; i < ng; i++) g[i] = val(rank, i + 5);
    coll_buckets_begin(c, g, ng);
    for (int blk = 9; blk >= 0; blk--) coll_buckets_ready(c, ng / 10 * (size_t)blk);
    if (coll_buckets_finish(c, err, sizeof err)) return 12;
    int launched = coll_buckets_launched(c);
    size_t per = (size_t)(1024 * 1024 / sizeof(float));
    if (launched != (int)((ng + per - 1) / per)) return 13;
    for (size_t i = 0; i < ng; i++) {
        float s = val(0, i + 5);
        for (int r = 1; r < world; r++) s += val(r, i + 5);
        if (g[i] != s) return 14;
    }
    free(g);
    if (coll_barrier(c, err, sizeof err)) return 15;
    (void)ud;
    return 0;
}

static void test_sums(int world) {
    if (new_segment(world, "j-sums")) { ok(0, "segment"); return; }
    int p[2];
    if (pipe(p)) { ok(0, "pipe"); return; }
    pipe_w = p[1];
    setenv("TRAIND_COLL_BUCKET_MB", "1", 1);
    int st[COLL_MAX_WORLD];
    int good = run_ranks(world, fn_sums, NULL, 1, st, p[1]);
    unsetenv("TRAIND_COLL_BUCKET_MB");
    close(p[1]);
    ok(good == world, "%d ranks: sums bit for bit the serial sum in rank order (up to 2 chunks), host doubles, "
       "broadcast, gather of unequal parts, 13 buckets launched from the end (statuses %d %d %d)", world, st[0], st[1],
       world > 2 ? st[2] : 0);
    uint64_t h[64];
    ssize_t n = read(p[0], h, sizeof h);
    close(p[0]);
    int same = n == (ssize_t)(5 * world * sizeof(uint64_t));
    /* each rank wrote its 5 hashes in order; the writes interleave, so compare as multisets per size:
     * every hash must occur exactly `world` times */
    for (int i = 0; same && i < (int)(n / 8); i++) {
        int cnt = 0;
        for (int k = 0; k < (int)(n / 8); k++) cnt += h[k] == h[i];
        same &= cnt == world;
    }
    ok(same, "%d ranks: every rank holds the same bits after each sum", world);
    coll_segment_unlink(seg);
}

/* ---- failures ------------------------------------------------------------------------- */
static int fn_one_dies(coll_t *c, int rank, int world, void *ud) {
    char err[512];
    if (rank == 2) _exit(7);   /* dies before the barrier */
    int rc = coll_barrier(c, err, sizeof err);
    if (rc == 0) return 20;
    return strstr(err, "rank 2") && strstr(err, "exited") ? 0 : 21;
}

static int fn_wait_abort(coll_t *c, int rank, int world, void *ud) {
    char err[512];
    if (rank == 1) { sleep(30); return 0; }   /* never arrives: killed by the parent */
    float x[4] = {1, 2, 3, 4};
    int rc = coll_allreduce(c, x, 4, err, sizeof err);
    if (rc == 0) return 30;
    return strstr(err, "rank 1 was killed by the daemon") ? 0 : 31;
}

static int fn_self_abort(coll_t *c, int rank, int world, void *ud) {
    char err[512];
    if (rank == 0) {
        coll_abort(c, "checkpoint write failed: No space left on device");
        return 0;
    }
    double d = 1;
    int rc = coll_allreduce_host(c, &d, 1, err, sizeof err);
    if (rc == 0) return 40;
    return strstr(err, "rank 0 failed: checkpoint write failed") ? 0 : 41;
}

static int fn_timeout(coll_t *c, int rank, int world, void *ud) {
    char err[512];
    if (rank == 1) { sleep(2); return 0; }
    int rc = coll_barrier(c, err, sizeof err);
    if (rc == 0) return 50;
    return strstr(err, "TRAIND_COLL_TIMEOUT_S") ? 0 : 51;
}

static int fn_noop(coll_t *c, int rank, int world, void *ud) { return 0; }

static void test_failures(void) {
    int st[COLL_MAX_WORLD];
    /* a rank dies (exit 7) before a barrier: the others notice it (zombie or gone) */
    new_segment(3, "j-dies");
    int good = run_ranks(3, fn_one_dies, NULL, 1, st, -1);
    ok(good == 2 && st[2] == 7, "a rank that exits is noticed by the others, whose barrier fails naming it "
       "(statuses %d %d %d)", st[0], st[1], st[2]);
    coll_segment_unlink(seg);

    /* the daemon's abort while a rank never arrives */
    new_segment(3, "j-abort");
    pid_t pid[3];
    for (int r = 0; r < 3; r++) {
        pid[r] = fork();
        if (pid[r] == 0) {
            alarm(60);
            char err[512];
            backend_t *be = backend_open("cpu", 0, err, sizeof err);
            coll_t *c = coll_open(be, seg, r, 3, err, sizeof err);
            if (!c) _exit(91);
            _exit(fn_wait_abort(c, r, 3, NULL));
        }
    }
    usleep(300 * 1000);
    coll_segment_abort(seg, "rank 1 was killed by the daemon");
    int s0 = 0, s2 = 0, s1 = 0;
    waitpid(pid[0], &s0, 0);
    waitpid(pid[2], &s2, 0);
    kill(pid[1], SIGKILL);
    waitpid(pid[1], &s1, 0);
    ok(WIFEXITED(s0) && WEXITSTATUS(s0) == 0 && WIFEXITED(s2) && WEXITSTATUS(s2) == 0,
       "an abort from outside (the daemon's) ends the waiting ranks' collectives with its reason");
    coll_segment_unlink(seg);

    /* a rank's own abort */
    new_segment(2, "j-self");
    good = run_ranks(2, fn_self_abort, NULL, 1, st, -1);
    ok(good == 2, "coll_abort of one rank fails the others' collectives with its message (%d %d)", st[0], st[1]);
    coll_segment_unlink(seg);

    /* the timeout */
    new_segment(2, "j-timeout");
    setenv("TRAIND_COLL_TIMEOUT_S", "1", 1);
    good = run_ranks(2, fn_timeout, NULL, 1, st, -1);
    unsetenv("TRAIND_COLL_TIMEOUT_S");
    ok(st[0] == 0, "a rank that waits past TRAIND_COLL_TIMEOUT_S gives up with that message (%d)", st[0]);
    coll_segment_unlink(seg);

    /* opening wrong */
    char err[512];
    backend_t *be = backend_open("cpu", 0, err, sizeof err);
    new_segment(2, "j-open");
    coll_t *c = coll_open(be, seg, 0, 3, err, sizeof err);
    ok(!c && strstr(err, "not a cpu segment of 3 ranks"), "a segment of another world size is refused: %s", err);
    c = coll_open(be, "/nonexistent-traind", 0, 2, err, sizeof err);
    ok(!c && strstr(err, "bad segment name"), "a name that is not traind's is refused");
    c = coll_open(be, "/traind-1-coll-none", 0, 2, err, sizeof err);
    ok(!c && strstr(err, "shm_open"), "a missing segment is refused: %s", err);
    c = coll_open(be, seg, 2, 2, err, sizeof err);
    ok(!c && strstr(err, "rank 2 of 2"), "a rank out of range is refused");
    /* rank 0 joins from a child that then waits (never completing the barrier), so its pid stays
     * registered; joining as rank 0 again is refused */
    pid_t ch = fork();
    if (ch == 0) {
        alarm(20);
        char e2[256];
        backend_t *b2 = backend_open("cpu", 0, e2, sizeof e2);
        coll_open(b2, seg, 0, 2, e2, sizeof e2);   /* blocks until aborted */
        _exit(0);
    }
    usleep(300 * 1000);
    c = coll_open(be, seg, 0, 2, err, sizeof err);
    ok(!c && strstr(err, "rank 0 has joined already"), "a rank that joins twice is refused: %s", err);
    coll_segment_abort(seg, "test over");
    waitpid(ch, NULL, 0);
    coll_segment_unlink(seg);
    ok(coll_segment_create("cpu", 1, "j", seg, err, sizeof err) == -1 && strstr(err, "2.."),
       "a segment for one rank is refused (a job of one needs none)");
    /* a world of one: no segment, every call succeeds */
    c = coll_open(be, NULL, 0, 1, err, sizeof err);
    float x[3] = {1, 2, 3};
    double d = 5;
    size_t bytes[1] = {12};
    float out[3];
    ok(c && coll_world(c) == 1 && coll_allreduce(c, x, 3, err, sizeof err) == 0 && x[2] == 3 &&
       coll_allreduce_host(c, &d, 1, err, sizeof err) == 0 && d == 5 &&
       coll_gather_host(c, x, bytes, out, err, sizeof err) == 0 && out[1] == 2 &&
       coll_barrier(c, err, sizeof err) == 0 && coll_broadcast(c, x, 12, 0, err, sizeof err) == 0,
       "a world of one: every collective is the identity");
    coll_close(c);
    be->destroy(be);
    (void)fn_noop;
}

int main(void) {
    test_sums(2);
    test_sums(3);
    test_failures();
    return tap_done();
}
