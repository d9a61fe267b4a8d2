/* api/routes_jobs.c — /v1/jobs: submit (201; idempotent 200 with a known
 * submission_id and the same spec; 409 with another spec), list with
 * state/type/limit/offset, the job record, cancel, Server-Sent Events,
 * metric time series and the result document.
 *
 * The job body is validated by jobspec_parse (gpu/jobspec.h) inside
 * daemon_job_submit, which names the offending field; here only the JSON
 * syntax and the query parameters are checked — and, before the body is
 * parsed at all, how many JSON values it holds (api_job_body_values): jansson
 * spends ~50 bytes per value building what the validator would then refuse
 * (a 32 MiB list of 16.7M indices took 2.3 GB and 13 s to say no). */
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"
#include "store/job.h"

#define JOB_LIST_MAX 10000

size_t api_job_body_values(const char *s, size_t n, size_t max, char *field, size_t fieldlen) {
    size_t values = 0;
    int depth = 0, in_str = 0, esc = 0, key_next = 0, in_key = 0;
    char key[64] = "";
    size_t kl = 0;
    if (fieldlen) field[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            int put = 1;
            if (esc) esc = 0;
            else if (c == '\\') esc = 1, put = 0;
            else if (c == '"') in_str = 0, put = 0;
            if (in_key && put && kl + 1 < sizeof key) key[kl++] = c;
            if (in_key && !in_str) { key[kl] = 0; in_key = 0; }
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            if (depth == 1 && key_next) { in_key = 1; key_next = 0; kl = 0; }
            break;
        case '{': case '[':
            depth++;
            if (depth == 1) key_next = c == '{';
            if (depth > 1) values++;
            break;
        case '}': case ']':
            depth--;
            break;
        case ',':
            if (depth == 1) key_next = 1;
            else values++;
            break;
        default:
            break;
        }
        if (values > max) {
            if (fieldlen) snprintf(field, fieldlen, "%s", key);
            return values;
        }
    }
    return values;
}

/* Job ids are short tokens; anything else cannot name a job. */
static int job_param(api_req_t *r) {
    if (api_name_ok(r->params[0])) return 0;
    api_reply_error(r, 404, "not_found", "no job with id '%s'", r->params[0]);
    return -1;
}

void route_jobs_post(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0) return;
    char field[64];
    size_t lead = 0;
    while (r->body && lead < r->body_len &&
           (r->body[lead] == ' ' || r->body[lead] == '\t' || r->body[lead] == '\r' || r->body[lead] == '\n'))
        lead++;
    if (r->body && lead < r->body_len && r->body[lead] != '{') {   /* refused before jansson builds it */
        api_reply_error(r, 400, "bad_request", "the request body must be a JSON object");
        return;
    }
    if (r->body && api_job_body_values(r->body, r->body_len, API_JOB_VALUES_MAX, field, sizeof field) >
                       API_JOB_VALUES_MAX) {
        daemon_err_t e = {0};
        daemon_err_set(&e, 400, "invalid_field", field, "%s%sthe job spec holds more than %d JSON values: refused "
                       "before parsing%s", field, field[0] ? ": " : "", API_JOB_VALUES_MAX,
                       strcmp(field, "indices") == 0 ? " (indices takes at most 4096 entries; give runs of samples "
                                                       "as ranges [begin, end), e.g. [[0, 1000], [5000, 5100]])"
                                                     : "");
        api_reply_daemon_err(r, &e);
        return;
    }
    json_t *body = api_body_object(r);
    if (!body) return;
    daemon_err_t e = {0};
    int created = 0;
    json_t *job = daemon_job_submit(r->d, body, &created, &e);
    json_decref(body);
    if (!job) { api_reply_daemon_err(r, &e); return; }
    const char *id = json_string_value(json_object_get(job, "id"));
    if (id) snprintf(r->location, sizeof r->location, "/v1/jobs/%s", id);
    api_reply_json(r, created ? 201 : 200, job);
}

void route_jobs_list(api_req_t *r) {
    static const char *const q[] = { "state", "type", "limit", "offset", NULL };
    if (api_check_query(r, q) < 0) return;
    long long limit = 100, offset = 0;
    if (api_query_ll(r, "limit", 1, JOB_LIST_MAX, &limit) < 0) return;
    if (api_query_ll(r, "offset", 0, INT32_MAX, &offset) < 0) return;
    const char *qs = api_query(r, "state"), *qt = api_query(r, "type");
    job_state_t state = JOB_STATE_ANY;
    job_type_t type = JOB_TYPE_ANY;
    if (qs && *qs && job_state_parse(qs, &state)) {
        api_reply_error(r, 400, "invalid_field", "query parameter 'state': unknown job state '%s' (%s)", qs,
                        job_state_list());
        return;
    }
    if (qt && *qt && job_type_parse(qt, &type)) {
        api_reply_error(r, 400, "invalid_field", "query parameter 'type': unknown job type '%s' (%s)", qt,
                        job_type_list());
        return;
    }
    daemon_err_t e = {0};
    json_t *out = daemon_job_list(r->d, state, type, (int)limit, (int)offset, &e);
    if (!out) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, out);
}

void route_job_get(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || job_param(r) < 0) return;
    daemon_err_t e = {0};
    json_t *job = daemon_job_get(r->d, r->params[0], &e);
    if (!job) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, job);
}

void route_job_cancel(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || job_param(r) < 0) return;
    /* A body is optional; when given it must be an empty JSON object. */
    if (r->body_len) {
        json_t *b = api_body_object(r);
        if (!b) return;
        static const char *const none[] = { NULL };
        int bad = api_check_fields(r, b, "", none);
        json_decref(b);
        if (bad < 0) return;
    }
    daemon_err_t e = {0};
    json_t *job = daemon_job_cancel(r->d, r->params[0], &e);
    if (!job) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, job);
}

void route_job_events(api_req_t *r) {
    static const char *const q[] = { "last_event_id", NULL };
    if (api_check_query(r, q) < 0 || job_param(r) < 0) return;
    daemon_err_t e = {0};
    job_state_t state;
    if (daemon_job_state(r->d, r->params[0], &state, &e)) { api_reply_daemon_err(r, &e); return; }
    int64_t last = 0;
    const char *h = api_header(r, "Last-Event-ID");
    const char *qv = api_query(r, "last_event_id");
    if (h && *h) {
        last = sse_parse_last_id(h);
        if (last < 0) {
            api_reply_error(r, 400, "invalid_field",
                            "header 'Last-Event-ID' must be a non-negative integer, got '%s'", h);
            return;
        }
    } else if (qv && *qv) {
        last = sse_parse_last_id(qv);
        if (last < 0) {
            api_reply_error(r, 400, "invalid_field",
                            "query parameter 'last_event_id' must be a non-negative integer, "
                            "got '%s'", qv);
            return;
        }
    }
    r->status = 200;
    r->kind = API_BODY_SSE;
    snprintf(r->sse_job, sizeof r->sse_job, "%s", r->params[0]);
    r->sse_last_id = last;
}

void route_job_metrics(api_req_t *r) {
    static const char *const q[] = { "name", "since_step", NULL };
    if (api_check_query(r, q) < 0 || job_param(r) < 0) return;
    long long since = -1;
    if (api_query_ll(r, "since_step", -1, INT64_MAX, &since) < 0) return;
    const char *name = api_query(r, "name");
    if (name && !*name) name = NULL;
    daemon_err_t e = {0};
    json_t *out = daemon_job_metrics(r->d, r->params[0], name, (long)since, &e);
    if (!out) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, out);
}

void route_job_result_file(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || job_param(r) < 0) return;
    const char *name = r->params[1];
    if (!api_name_ok(name)) {
        api_reply_error(r, 404, "not_found", "no result file '%s' for job %s", name, r->params[0]);
        return;
    }
    int fd;
    daemon_err_t e = {0};
    if (daemon_job_result_file(r->d, r->params[0], name, &fd, &e) < 0) api_reply_daemon_err(r, &e);
    else api_reply_file(r, fd, name);
}

void route_job_result(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0 || job_param(r) < 0) return;
    daemon_err_t e = {0};
    json_t *out = daemon_job_result(r->d, r->params[0], &e);
    if (!out) api_reply_daemon_err(r, &e);
    else api_reply_json(r, 200, out);
}
