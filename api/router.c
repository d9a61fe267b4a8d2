/* api/router.c — the routing table of SPEC §3 and the matcher.
 *
 * A pattern is a path whose segments are literals or {name} placeholders; a
 * placeholder matches one non-empty segment, percent-decoded, that contains
 * no '/' after decoding. A path that matches some pattern but none with the
 * request's method is a 405 with an Allow header listing the methods that
 * would have matched; no match at all is a 404. HEAD is answered like GET. */
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"

const api_route_t api_routes[] = {
    { "GET",    "/v1/health",                          route_health },
    { "GET",    "/v1/status",                          route_status },
    { "GET",    "/metrics",                            route_metrics },
    { "POST",   "/v1/datasets",                        route_datasets_post },
    { "GET",    "/v1/datasets",                        route_datasets_list },
    { "GET",    "/v1/datasets/{name}",                 route_dataset_get },
    { "DELETE", "/v1/datasets/{name}",                 route_dataset_delete },
    { "POST",   "/v1/jobs",                            route_jobs_post },
    { "GET",    "/v1/jobs",                            route_jobs_list },
    { "GET",    "/v1/jobs/{id}",                       route_job_get },
    { "POST",   "/v1/jobs/{id}/cancel",                route_job_cancel },
    { "GET",    "/v1/jobs/{id}/events",                route_job_events },
    { "GET",    "/v1/jobs/{id}/metrics",               route_job_metrics },
    { "GET",    "/v1/jobs/{id}/result",                route_job_result },
    { "GET",    "/v1/jobs/{id}/result/files/{name}",   route_job_result_file },
    { "GET",    "/v1/checkpoints",                     route_checkpoints_list },
    { "GET",    "/v1/checkpoints/{id}",                route_checkpoint_get },
    { "DELETE", "/v1/checkpoints/{id}",                route_checkpoint_delete },
    { "GET",    "/v1/checkpoints/{id}/files/{name}",   route_checkpoint_file },
    { "GET",    "/",                                   api_dashboard_page },
    { "GET",    "/assets/{name}",                      api_dashboard_asset },
};
const size_t api_nroutes = sizeof api_routes / sizeof api_routes[0];

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes seg[0..n) into out; 0 on success, -1 when malformed, too long,
 * empty, or decoding to a '/' or NUL. */
static int decode_segment(const char *seg, size_t n, char *out) {
    size_t o = 0;
    if (n == 0) return -1;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)seg[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;   /* two hex digits must follow */
            int h = hexval(seg[i + 1]), l = hexval(seg[i + 2]);
            if (h < 0 || l < 0) return -1;
            c = h * 16 + l;
            i += 2;
        }
        if (c == '/' || c == 0) return -1;
        if (o + 1 >= API_PARAM_MAX) return -1;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

/* 1 when path matches pattern, filling params. */
static int match_one(const char *pattern, const char *path, char params[][API_PARAM_MAX],
                     int *nparams) {
    const char *p = pattern, *q = path;
    int np = 0;
    while (*p && *q) {
        if (*p != '/' || *q != '/') return 0;
        p++; q++;
        const char *pe = strchr(p, '/'); if (!pe) pe = p + strlen(p);
        const char *qe = strchr(q, '/'); if (!qe) qe = q + strlen(q);
        size_t pl = (size_t)(pe - p), ql = (size_t)(qe - q);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (np >= API_MAX_PARAMS) return 0;
            if (decode_segment(q, ql, params[np]) < 0) return 0;
            np++;
        } else if (pl != ql || memcmp(p, q, pl) != 0) {
            return 0;
        }
        p = pe; q = qe;
    }
    if (*p || *q) return 0;
    *nparams = np;
    return 1;
}

int api_route_match(const api_route_t *routes, size_t n, const char *method, const char *path,
                    char params[][API_PARAM_MAX], int *nparams, char *allow, size_t allowlen) {
    char tmp[API_MAX_PARAMS][API_PARAM_MAX];
    int ntmp = 0, path_matched = 0;
    const char *m = !strcmp(method, "HEAD") ? "GET" : method;
    if (allow && allowlen) allow[0] = 0;
    /* A trailing slash is tolerated ("/v1/jobs/" is "/v1/jobs"). */
    char norm[2048];
    size_t pl = strlen(path);
    if (pl >= sizeof norm) return -1;
    memcpy(norm, path, pl + 1);
    if (pl > 1 && norm[pl - 1] == '/') norm[pl - 1] = 0;

    for (size_t i = 0; i < n; i++) {
        if (!match_one(routes[i].pattern, norm, tmp, &ntmp)) continue;
        if (!strcmp(routes[i].method, m)) {
            memcpy(params, tmp, sizeof tmp);
            *nparams = ntmp;
            return (int)i;
        }
        if (allow && allowlen && !strstr(allow, routes[i].method)) {
            size_t used = strlen(allow);
            snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", routes[i].method);
        }
        path_matched = 1;
    }
    if (!path_matched) return -1;
    /* GET routes also answer HEAD. */
    if (allow && allowlen && strstr(allow, "GET") && !strstr(allow, "HEAD")) {
        size_t used = strlen(allow);
        snprintf(allow + used, allowlen - used, ", HEAD");
    }
    return -2;
}
