/* store/checkpoint.c — checkpoint directories on disk (see store/checkpoint.h):
 * what a crash can leave of them and its removal. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "store/checkpoint.h"
#include "store/errbuf.h"
#include "store/fsutil.h"

/* ---- crash leftovers ------------------------------------------------------------ */
static int ckpt_is_tmp_name(const char *name) {
    return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}

/* The temporary directories directly inside one job's checkpoint directory,
 * opened beneath root: a symbolic link planted there is not followed. */
static int ckpt_sweep_job_dir(const char *root, const char *job, char *err, size_t errlen) {
    int fd = fs_open_under(root, job, FS_DIR, NULL, 0);
    DIR *jd = fd >= 0 ? fdopendir(fd) : NULL;
    if (!jd) {                                /* no checkpoints, a link, or not a directory: nothing of ours */
        if (fd >= 0) close(fd);
        return 0;
    }
    int removed = 0, rc = 0;
    struct dirent *ce;
    while (rc == 0 && (ce = readdir(jd)) != NULL) {
        if (!ckpt_is_tmp_name(ce->d_name)) continue;
        char rel[600];
        if (snprintf(rel, sizeof rel, "%s/%s", job, ce->d_name) >= (int)sizeof rel) continue;
        if (fs_rm_rf_under(root, rel, err, errlen) != 0) rc = -1;
        else removed++;
    }
    closedir(jd);
    return rc ? -1 : removed;
}

int ckpt_sweep_tmp(const char *root, const char *job, char *err, size_t errlen) {
    if (job) {
        if (!*job || strchr(job, '/') || job[0] == '.') return errbuf_set(err, errlen, "bad job id '%s'", job);
        return ckpt_sweep_job_dir(root, job, err, errlen);
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
        int n = ckpt_sweep_job_dir(root, je->d_name, err, errlen);
        if (n < 0) { removed = -1; break; }
        removed += n;
    }
    closedir(d);
    return removed;
}
