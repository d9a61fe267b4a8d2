/* api/json_io.c — JSON in and out for the HTTP API: the error format
 * {"error":{"code":…,"message":…}} (SPEC §3), reading a request body as a
 * JSON object, typed member access that answers 400 naming the field, query
 * integer parsing and resource-name checks. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"
#include "store/errbuf.h"

static void reply_reset(api_req_t *r) {
    json_decref(r->json); r->json = NULL;
    free(r->text); r->text = NULL; r->text_len = 0;
    if (r->kind == API_BODY_FILE && r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->kind = API_BODY_NONE;
    r->content_type = NULL;
}

void api_reply_json(api_req_t *r, int status, json_t *body) {
    reply_reset(r);
    r->status = status;
    if (!body) {   /* allocation failure while building the answer */
        r->status = 500;
        body = api_error_body("internal", "out of memory building the response");
    }
    r->kind = API_BODY_JSON;
    r->json = body;
    r->content_type = "application/json";
}

void api_reply_header(api_req_t *r, const char *name, const char *value) {
    if (r->nxhdr >= API_XHDR_MAX) return;
    r->xhdr[r->nxhdr][0] = name;
    r->xhdr[r->nxhdr][1] = value;
    r->nxhdr++;
}

static const char *content_type_for(const char *name) {
    size_t n = strlen(name);
    if (n >= 5 && !strcmp(name + n - 5, ".json")) return "application/json";
    return "application/octet-stream";
}

void api_reply_file(api_req_t *r, int fd, const char *name) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        api_reply_error(r, 404, "not_found", "no file '%s'", name);
        return;
    }
    reply_reset(r);
    r->status = 200;
    r->kind = API_BODY_FILE;
    r->fd = fd;
    r->fd_size = (uint64_t)st.st_size;
    r->content_type = content_type_for(name);
    snprintf(r->filename, sizeof r->filename, "%s", name);
}

json_t *api_error_body(const char *code, const char *msg) {
    return json_pack("{s:{s:s,s:o}}", "error", "code", code, "message",
                     errbuf_json_string(msg));
}

void api_reply_error(api_req_t *r, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_reply_json(r, status, api_error_body(code ? code : api_error_code_for(status), msg));
}

const char *api_error_code_for(int status) {
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "too_large";
    case 415: return "unsupported_media_type";
    case 421: return "misdirected_request";
    case 422: return "unprocessable";
    case 503: return "unavailable";
    case 507: return "insufficient_storage";
    default:  return status >= 500 ? "internal" : "bad_request";
    }
}

const char *api_status_text(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Entity";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default:  return "";
    }
}

json_t *api_body_object(api_req_t *r) {
    if (!r->body || r->body_len == 0) {
        api_reply_error(r, 400, "bad_request", "request body is empty; a JSON object is expected");
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        api_reply_error(r, 400, "bad_request", "malformed JSON at line %d, column %d: %s",
                        e.line, e.column, e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        api_reply_error(r, 400, "bad_request", "the request body must be a JSON object");
        return NULL;
    }
    return j;
}

const char *api_unknown_field(const json_t *obj, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int known = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, key)) { known = 1; break; }
        if (!known) return key;
    }
    return NULL;
}

int api_check_fields(api_req_t *r, const json_t *obj, const char *prefix,
                     const char *const *allowed) {
    const char *k = api_unknown_field(obj, allowed);
    if (!k) return 0;
    api_reply_error(r, 400, "invalid_field", "unknown field '%s%s'", prefix ? prefix : "", k);
    return -1;
}

int api_get_string(api_req_t *r, const json_t *obj, const char *prefix, const char *key,
                   int opt, const char **out) {
    json_t *v = json_object_get(obj, key);
    const char *p = prefix ? prefix : "";
    if (!v || json_is_null(v)) {
        if (opt) return 0;
        api_reply_error(r, 400, "invalid_field", "missing field '%s%s' (a string)", p, key);
        return -1;
    }
    if (!json_is_string(v)) {
        api_reply_error(r, 400, "invalid_field", "field '%s%s' must be a string", p, key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int api_get_int(api_req_t *r, const json_t *obj, const char *prefix, const char *key,
                int opt, long long min, long long max, long long *out) {
    json_t *v = json_object_get(obj, key);
    const char *p = prefix ? prefix : "";
    if (!v || json_is_null(v)) {
        if (opt) return 0;
        api_reply_error(r, 400, "invalid_field", "missing field '%s%s' (an integer)", p, key);
        return -1;
    }
    if (!json_is_integer(v)) {
        api_reply_error(r, 400, "invalid_field", "field '%s%s' must be an integer", p, key);
        return -1;
    }
    long long x = json_integer_value(v);
    if (x < min || x > max) {
        api_reply_error(r, 400, "invalid_field", "field '%s%s' must be in [%lld, %lld], got %lld",
                        p, key, min, max, x);
        return -1;
    }
    *out = x;
    return 0;
}

int api_parse_ll(const char *s, long long min, long long max, long long *out) {
    if (!s) return 0;
    if (!*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (errno || *end || x < min || x > max) return -1;
    *out = x;
    return 1;
}

int api_query_ll(api_req_t *r, const char *key, long long min, long long max, long long *out) {
    const char *s = api_query(r, key);
    int rc = api_parse_ll(s, min, max, out);
    if (rc < 0) {
        api_reply_error(r, 400, "invalid_field",
                        "query parameter '%s' must be an integer in [%lld, %lld], got '%s'",
                        key, min, max, s);
        return -1;
    }
    return 0;
}

int api_name_ok(const char *s) {
    if (!s || !*s || *s == '.') return 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '.' || c == '_' || c == '-')) return 0;
    }
    return n <= 128;
}

void api_reply_daemon_err(api_req_t *r, const void *ep) {
    const daemon_err_t *e = ep;
    int status = e->status >= 400 && e->status <= 599 ? e->status : 500;
    const char *code = e->code[0] ? e->code : api_error_code_for(status);
    const char *msg = e->message[0] ? e->message : api_status_text(status);
    json_t *body = api_error_body(code, msg);
    if (body && e->field[0])
        json_object_set_new(json_object_get(body, "error"), "field", json_string(e->field));
    api_reply_json(r, status, body);
}
