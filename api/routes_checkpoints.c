/* api/routes_checkpoints.c — /v1/checkpoints: list (?job=), one record,
 * file download (streamed from the file descriptor the daemon opened beneath
 * the checkpoint root; only plain names of the checkpoint's own files), delete (409 while a queued job needs it). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"

static int ckpt_param(api_req_t *r) {
    if (api_name_ok(r->params[0])) return 0;
    api_reply_error(r, 404, "not_found", "no checkpoint with id '%s'", r->params[0]);
    return -1;
}

void route_checkpoints_list(api_req_t *r) {
    static const char *const q[] = { "job", NULL };
    if (api_check_query(r, q) < 0) return;
    const char *job = api_query(r, "job");
    if (job && !*job) job = NULL;
    daemon_err_t e = {0};
    json_t *out = daemon_checkpoint_list(r->d, job, &e);
    if (!out) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, out);
}

void route_checkpoint_get(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || ckpt_param(r) < 0) return;
    daemon_err_t e = {0};
    json_t *out = daemon_checkpoint_get(r->d, r->params[0], &e);
    if (!out) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, out);
}

void route_checkpoint_delete(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || ckpt_param(r) < 0) return;
    daemon_err_t e = {0};
    if (daemon_checkpoint_delete(r->d, r->params[0], &e) < 0) {
        api_reply_daemon_err(r, &e);
        return;
    }
    api_reply_json(r, 200, json_pack("{s:s,s:b}", "id", r->params[0], "deleted", 1));
}

void route_checkpoint_file(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || ckpt_param(r) < 0) return;
    const char *name = r->params[1];
    if (!api_name_ok(name)) {
        api_reply_error(r, 404, "not_found", "no file '%s' in checkpoint %s", name, r->params[0]);
        return;
    }
    int fd;
    daemon_err_t e = {0};
    if (daemon_checkpoint_file(r->d, r->params[0], name, &fd, &e) < 0) {
        api_reply_daemon_err(r, &e);
        return;
    }
    api_reply_file(r, fd, name);
}
