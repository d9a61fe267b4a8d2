/* daemon/retain.c — the job table's retention policy (see retain.h). */
#include "daemon/retain.h"

#include <stdio.h>
#include <string.h>

#include "daemon/log.h"
#include "store/fsutil.h"

/* Job ids come from the store ("j-000042"); anything else is not a path part. */
static int id_ok(const char *id) {
    if (!id || !id[0] || id[0] == '.' || strlen(id) > 64) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_'))
            return 0;
    return 1;
}

void retain_jobs(daemon_t *d, const char *ended) {
    char err[512];
    int stripped = 0;
    if (store_job_strip_images(d->store, ended, &stripped, err, sizeof err))
        log_warn(ended, "retention: cannot drop inline images from the stored spec: %s", err);
    else if (stripped && !ended)
        log_info(NULL, "retention: dropped the inline images of %d ended infer job(s) from their specs", stripped);
    if (d->cfg.keep_jobs <= 0) return;
    json_t *gone = NULL;
    if (store_jobs_prune(d->store, d->cfg.keep_jobs, &gone, err, sizeof err))
        log_warn(NULL, "retention: pruning ended jobs: %s", err);
    size_t i;
    json_t *v;
    json_array_foreach(gone, i, v) {
        const char *id = json_string_value(v);
        if (!id_ok(id)) continue;
        char path[PATH_MAX + 96];
        snprintf(path, sizeof path, "%s/results/%s", d->work_root, id);
        if (fs_rm_rf(path, err, sizeof err)) log_warn(id, "retention: %s", err);
        /* no checkpoint record belongs to a pruned job: a directory left is stray */
        snprintf(path, sizeof path, "%s/%s", d->checkpoint_root, id);
        if (fs_rm_rf(path, err, sizeof err)) log_warn(id, "retention: %s", err);
    }
    if (json_array_size(gone))
        log_info(NULL, "retention: deleted %zu ended job(s) beyond --keep-jobs %d (oldest %s)", json_array_size(gone),
                 d->cfg.keep_jobs, json_string_value(json_array_get(gone, 0)));
    json_decref(gone);
}
