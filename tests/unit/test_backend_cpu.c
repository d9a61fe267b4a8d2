/* tests/unit/test_backend_cpu.c — the CPU backend's view of memory: the cgroup
 * limit over the daemon (v2 and v1 layouts, nested cgroups, page cache counted
 * as room, shmem not) on fake cgroup trees, and mem_info on this machine. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/backend.h"
#include "tests/tap.h"

static char root[256];

static void put(const char *rel, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) { *s = 0; mkdir(p, 0700); *s = '/'; }
    FILE *f = fopen(p, "w");
    if (!f) { perror(p); exit(1); }
    fputs(text, f);
    fclose(f);
}

static char *path(const char *rel) {
    static char p[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof p[i], "%s/%s", root, rel);
    return p[i];
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/traind-cg.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    const unsigned long long G = 1ull << 30, M = 1ull << 20;
    unsigned long long lim = 0, room = 0;
    char buf[256];

    /* v2: the service's cgroup at its limit with 3 GiB of page cache and 1 GiB of shmem */
    put("proc_v2", "0::/system.slice/traind.service\n");
    snprintf(buf, sizeof buf, "%llu\n", 8 * G);
    put("cg/system.slice/traind.service/memory.max", buf);
    put("cg/system.slice/traind.service/memory.current", buf);
    snprintf(buf, sizeof buf, "anon %llu\nfile %llu\nkernel %llu\nshmem %llu\n", 4 * G, 4 * G, 100 * M, 1 * G);
    put("cg/system.slice/traind.service/memory.stat", buf);
    put("cg/system.slice/memory.max", "max\n");
    ok(backend_cpu_cgroup_room(path("cg"), path("proc_v2"), &lim, &room) == 1, "v2: a limit is found");
    ok(lim == 8 * G, "v2: the limit is memory.max");
    ok(room == 3 * G, "v2: reclaimable page cache (file - shmem) counts as room: %llu", room);

    /* an ancestor's tighter limit wins */
    snprintf(buf, sizeof buf, "%llu\n", 6 * G);
    put("cg/system.slice/memory.max", buf);
    snprintf(buf, sizeof buf, "%llu\n", 5 * G);
    put("cg/system.slice/memory.current", buf);
    put("cg/system.slice/memory.stat", "file 0\nshmem 0\n");
    backend_cpu_cgroup_room(path("cg"), path("proc_v2"), &lim, &room);
    ok(lim == 6 * G && room == 1 * G, "v2: the tightest ancestor wins (limit %llu room %llu)", lim, room);

    /* usage above the limit never gives negative room */
    snprintf(buf, sizeof buf, "%llu\n", 7 * G);
    put("cg/system.slice/memory.current", buf);
    backend_cpu_cgroup_room(path("cg"), path("proc_v2"), &lim, &room);
    ok(room == 0, "v2: no room when usage passes the limit");

    /* inside a cgroup namespace: "0::/" and the mount itself has the limit */
    put("proc_ns", "0::/\n");
    snprintf(buf, sizeof buf, "%llu\n", 2 * G);
    put("ns/memory.max", buf);
    snprintf(buf, sizeof buf, "%llu\n", 1 * G);
    put("ns/memory.current", buf);
    backend_cpu_cgroup_room(path("ns"), path("proc_ns"), &lim, &room);
    ok(lim == 2 * G && room == 1 * G, "v2 namespace: the mount's own limit");

    /* no limit anywhere */
    put("proc_free", "0::/user.slice\n");
    put("free/user.slice/memory.max", "max\n");
    ok(backend_cpu_cgroup_room(path("free"), path("proc_free"), &lim, &room) == 0, "v2: 'max' is no limit");
    ok(backend_cpu_cgroup_room(path("nothing"), path("no-such-file"), &lim, &room) == 0,
       "no cgroup files: no limit, no error");

    /* v1 (hybrid: the memory hierarchy is where the limit is) */
    put("proc_v1", "12:cpu,cpuacct:/x\n11:memory:/docker/abc\n0::/docker/abc\n");
    snprintf(buf, sizeof buf, "%llu\n", 4 * G);
    put("v1/memory/docker/abc/memory.limit_in_bytes", buf);
    put("v1/memory/docker/abc/memory.usage_in_bytes", buf);
    snprintf(buf, sizeof buf, "cache %llu\nshmem %llu\ntotal_cache %llu\ntotal_shmem %llu\n", G, 0ull, 2 * G, 512 * M);
    put("v1/memory/docker/abc/memory.stat", buf);
    ok(backend_cpu_cgroup_room(path("v1"), path("proc_v1"), &lim, &room) == 1, "v1: a limit is found");
    ok(lim == 4 * G && room == 2 * G - 512 * M, "v1: total_cache - total_shmem counts as room (%llu)", room);

    /* mem_info on this machine: sane numbers */
    char err[256];
    backend_t *b = backend_cpu_create(err, sizeof err);
    ok(b != NULL, "cpu backend opens");
    size_t fr = 0, tot = 0;
    ok(b->mem_info(b, &fr, &tot) == 0, "mem_info succeeds");
    ok(tot > 0 && fr <= tot, "mem_info: 0 < free (%zu) <= total (%zu)", fr, tot);
    b->destroy(b);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) diag("could not remove %s", root);
    return tap_done();
}
