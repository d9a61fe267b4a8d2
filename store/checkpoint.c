/* store/checkpoint.c — checkpoint directories on disk (see store/checkpoint.h):
 * what a crash can leave of them and its removal. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "store/checkpoint.h"
#include "store/errbuf.h"
#include "store/fsutil.h"

/* ---- crash leftovers ------------------------------------------------------------ */
static int ckpt_is_tmp_name(const char *name) {
    return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}

/* The temporary directories directly inside one job's checkpoint directory. */
static int ckpt_sweep_job_dir(const char *jobdir, char *err, size_t errlen) {
    DIR *jd = opendir(jobdir);
    if (!jd) return 0;                        /* no checkpoints, or not a directory: nothing of ours */
    int removed = 0, rc = 0;
    struct dirent *ce;
    while (rc == 0 && (ce = readdir(jd)) != NULL) {
        if (!ckpt_is_tmp_name(ce->d_name)) continue;
        char tmp[4096];
        if (fs_join(tmp, sizeof tmp, jobdir, ce->d_name) != 0) continue;
        if (fs_rm_rf(tmp, err, errlen) != 0) rc = -1;
        else removed++;
    }
    closedir(jd);
    return rc ? -1 : removed;
}

int ckpt_sweep_tmp(const char *root, const char *job, char *err, size_t errlen) {
    char jobdir[4096];
    if (job) {
        if (!*job || strchr(job, '/') || job[0] == '.') return errbuf_set(err, errlen, "bad job id '%s'", job);
        if (fs_join(jobdir, sizeof jobdir, root, job) != 0) return errbuf_set(err, errlen, "%s: path too long", root);
        return ckpt_sweep_job_dir(jobdir, err, errlen);
    }
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT) return 0;
        return errbuf_set(err, errlen, "open %s: %s", root, strerror(errno));
    }
    int removed = 0;
    struct dirent *je;
    while ((je = readdir(d)) != NULL) {
        if (je->d_name[0] == '.') continue;   /* ".", "..", and nothing of ours */
        if (fs_join(jobdir, sizeof jobdir, root, je->d_name) != 0) continue;
        int n = ckpt_sweep_job_dir(jobdir, err, errlen);
        if (n < 0) { removed = -1; break; }
        removed += n;
    }
    closedir(d);
    return removed;
}
