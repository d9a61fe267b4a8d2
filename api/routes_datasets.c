/* api/routes_datasets.c — /v1/datasets: load (POST, 202, background: a
 * shard directory, a synthetic dataset, or an import of JPEG/PNG frames),
 * list, get, delete (evict; 409 while a queued or running job uses it; an
 * import in progress is cancelled).
 *
 * The request shape is checked here (unknown fields, types, name syntax,
 * exactly one of path/synthetic/import), so a malformed request is answered
 * before the daemon is asked; the daemon then checks what needs its state:
 * dataset root confinement (403), name taken (409), memory (507). */
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"

/* Shape of a load request. 0, or replied 400 and -1. */
static int dataset_body_check(api_req_t *r, const json_t *body) {
    static const char *const top[] = { "name", "path", "synthetic", "import", NULL };
    static const char *const syn[] = { "samples", "image_size", "seed", NULL };
    static const char *const imp[] = { "manifest", "image_size", "resize", "on_error", NULL };
    if (api_check_fields(r, body, "", top) < 0) return -1;
    const char *name = NULL, *path = NULL;
    if (api_get_string(r, body, "", "name", 0, &name) < 0) return -1;
    if (!api_name_ok(name)) {
        api_reply_error(r, 400, "invalid_field", "field 'name' must be 1-128 characters of "
                        "[A-Za-z0-9._-] not starting with '.', got '%s'", name);
        return -1;
    }
    if (api_get_string(r, body, "", "path", 1, &path) < 0) return -1;
    json_t *synth = json_object_get(body, "synthetic"), *import = json_object_get(body, "import");
    if (synth && json_is_null(synth)) synth = NULL;
    if (import && json_is_null(import)) import = NULL;
    int given = (path != NULL) + (synth != NULL) + (import != NULL);
    if (given == 0) {
        api_reply_error(r, 400, "invalid_field", "one of 'path' (a dataset directory), 'synthetic' or 'import' "
                        "(JPEG/PNG frames of a manifest) is required");
        return -1;
    }
    if (given > 1) {
        api_reply_error(r, 400, "invalid_field", "give only one of 'path', 'synthetic' and 'import'");
        return -1;
    }
    if (import) {
        if (!json_is_object(import)) {
            api_reply_error(r, 400, "invalid_field", "field 'import' must be an object");
            return -1;
        }
        if (api_check_fields(r, import, "import.", imp) < 0) return -1;
        const char *s = NULL;
        long long v;
        if (api_get_string(r, import, "import.", "manifest", 0, &s) < 0) return -1;
        if (!*s) {
            api_reply_error(r, 400, "invalid_field", "field 'import.manifest' must not be empty");
            return -1;
        }
        if (api_get_int(r, import, "import.", "image_size", 1, 14, 4096, &v) < 0) return -1;
        s = NULL;
        if (api_get_string(r, import, "import.", "resize", 1, &s) < 0) return -1;
        if (s && strcmp(s, "stretch") && strcmp(s, "crop")) {
            api_reply_error(r, 400, "invalid_field", "field 'import.resize' must be \"stretch\" or \"crop\"");
            return -1;
        }
        s = NULL;
        if (api_get_string(r, import, "import.", "on_error", 1, &s) < 0) return -1;
        if (s && strcmp(s, "fail") && strcmp(s, "skip")) {
            api_reply_error(r, 400, "invalid_field", "field 'import.on_error' must be \"fail\" or \"skip\"");
            return -1;
        }
    }
    if (path && !*path) {
        api_reply_error(r, 400, "invalid_field", "field 'path' must not be empty");
        return -1;
    }
    if (synth) {
        if (!json_is_object(synth)) {
            api_reply_error(r, 400, "invalid_field", "field 'synthetic' must be an object");
            return -1;
        }
        if (api_check_fields(r, synth, "synthetic.", syn) < 0) return -1;
        long long v;
        if (api_get_int(r, synth, "synthetic.", "samples", 0, 1, 100000000LL, &v) < 0) return -1;
        if (api_get_int(r, synth, "synthetic.", "image_size", 0, 14, 4096, &v) < 0) return -1;
        if (api_get_int(r, synth, "synthetic.", "seed", 1, 0, INT64_MAX, &v) < 0) return -1;
    }
    return 0;
}

void route_datasets_post(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0) return;
    json_t *body = api_body_object(r);
    if (!body) return;
    if (dataset_body_check(r, body) < 0) { json_decref(body); return; }
    daemon_err_t e = {0};
    json_t *ds = daemon_dataset_load(r->d, body, &e);
    if (!ds) {
        api_reply_daemon_err(r, &e);
    } else {
        snprintf(r->location, sizeof r->location, "/v1/datasets/%s",
                 json_string_value(json_object_get(body, "name")));
        api_reply_json(r, 202, ds);
    }
    json_decref(body);
}

void route_datasets_list(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0) return;
    daemon_err_t e = {0};
    json_t *out = daemon_dataset_list(r->d, &e);
    if (!out) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, out);
}

/* 0 when the path parameter is a possible dataset name, else replies 404. */
static int name_param(api_req_t *r) {
    if (api_name_ok(r->params[0])) return 0;
    api_reply_error(r, 404, "not_found", "no dataset named '%s'", r->params[0]);
    return -1;
}

void route_dataset_get(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || name_param(r) < 0) return;
    daemon_err_t e = {0};
    json_t *ds = daemon_dataset_get(r->d, r->params[0], &e);
    if (!ds) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, ds);
}

void route_dataset_delete(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || name_param(r) < 0) return;
    daemon_err_t e = {0};
    if (daemon_dataset_delete(r->d, r->params[0], &e) < 0) {
        api_reply_daemon_err(r, &e);
        return;
    }
    api_reply_json(r, 200, json_pack("{s:s,s:b}", "name", r->params[0], "deleted", 1));
}
