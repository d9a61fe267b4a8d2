/* api/api_internal.h — what the files of api/ share among themselves (and
 * with tests/unit/test_api_units.c): the request/response context handed to
 * route handlers, the routing table, the error format, query parsing, token
 * comparison, Prometheus text formatting and Server-Sent Events framing.
 * Nothing here is used outside api/ and the unit test. */
#ifndef TRAIND_API_INTERNAL_H
#define TRAIND_API_INTERNAL_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

struct MHD_Connection;
struct MHD_Response;

/* ---- limits ------------------------------------------------------------- */
#define API_BODY_MAX        (64u << 20)  /* request bodies (inline images): 413 beyond */
#define API_JOB_VALUES_MAX  65536        /* JSON values in a job spec, counted before parsing */
#define API_SSE_HEARTBEAT_MS 10000       /* comment line on an idle event stream */
#define API_MAX_PARAMS      3            /* {name} segments in one route */
#define API_PARAM_MAX       256          /* bytes of one path segment */

/* ---- requests and responses -------------------------------------------- */
typedef struct api_req api_req_t;
typedef void (*api_handler_fn)(api_req_t *r);

/* What a handler builds. Exactly one kind of body is set by the api_reply_*
 * helpers; http.c turns it into an MHD response. */
typedef enum {
    API_BODY_NONE = 0,
    API_BODY_JSON,      /* json (owned) */
    API_BODY_TEXT,      /* text/text_len (owned, malloc'd), content_type */
    API_BODY_FILE,      /* fd (owned) of fd_size bytes, content_type, filename */
    API_BODY_SSE,       /* an event stream for sse_job (see sse.c) */
} api_body_kind_t;

struct api_req {
    api_server_t *srv;
    struct daemon *d;
    struct MHD_Connection *conn;      /* NULL in unit tests */
    const char *method;               /* "GET", ... */
    const char *path;                 /* without the query */
    char params[API_MAX_PARAMS][API_PARAM_MAX];   /* decoded {name} segments */
    int nparams;
    const char *body;                 /* request body (NUL-terminated), may be NULL */
    size_t body_len;

    /* response */
    int status;
    api_body_kind_t kind;
    json_t *json;
    char *text; size_t text_len;
    const char *content_type;
    int fd; uint64_t fd_size;
    char filename[256];
    char allow[64];                   /* Allow header for 405 */
    char location[300];               /* Location header (201) */
    char sse_job[API_PARAM_MAX];      /* API_BODY_SSE: job id */
    int64_t sse_last_id;              /* API_BODY_SSE: resume after this event id */
};

/* Query argument (decoded) or NULL. Unit tests without a connection get NULL. */
const char *api_query(api_req_t *r, const char *key);
/* Every query parameter must be in the NULL-terminated list; else replies
 * 400 invalid_field naming it and returns -1. */
int api_check_query(api_req_t *r, const char *const *allowed);
/* Request header or NULL. */
const char *api_header(api_req_t *r, const char *key);

/* ---- replies (json_io.c) ------------------------------------------------- */
void api_reply_json(api_req_t *r, int status, json_t *body);   /* steals body */
/* Streams the regular file at path (opened O_NOFOLLOW) as name; 404 otherwise. */
void api_reply_file(api_req_t *r, const char *path, const char *name);
__attribute__((format(printf, 4, 5)))
void api_reply_error(api_req_t *r, int status, const char *code, const char *fmt, ...);
/* Replies with a daemon action's error (status, code, message, and "field"
 * when set). */
void api_reply_daemon_err(api_req_t *r, const void *daemon_err);
/* {"error":{"code":code,"message":msg}}, new reference */
json_t *api_error_body(const char *code, const char *msg);
/* The SPEC's default code for an HTTP status ("not_found" for 404, ...). */
const char *api_error_code_for(int status);
/* Reason phrase for the log. */
const char *api_status_text(int status);

/* Parses the request body as a JSON object. On failure replies 400
 * bad_request (malformed JSON, with line/column, or not an object) and
 * returns NULL. */
json_t *api_body_object(api_req_t *r);

/* Validation helpers: each returns 0 or replies 400 and returns -1.
 * api_check_fields: every key of obj must be in the NULL-terminated list;
 * the message names the first unknown field (with prefix, e.g. "synthetic."). */
int api_check_fields(api_req_t *r, const json_t *obj, const char *prefix,
                     const char *const *allowed);
/* Pure form for tests: returns the first unknown key or NULL. */
const char *api_unknown_field(const json_t *obj, const char *const *allowed);
/* Required/optional typed members. `opt` = 1 leaves *out unchanged when absent. */
int api_get_string(api_req_t *r, const json_t *obj, const char *prefix, const char *key,
                   int opt, const char **out);
int api_get_int(api_req_t *r, const json_t *obj, const char *prefix, const char *key,
                int opt, long long min, long long max, long long *out);

/* Query parsing: integer in [min,max]. 0 when absent (leaves *out), 1 when
 * parsed, -1 when malformed or out of range. Pure. */
int api_parse_ll(const char *s, long long min, long long max, long long *out);
/* Reads query `key` into *out with api_parse_ll; on error replies 400
 * invalid_field naming the parameter and returns -1. */
int api_query_ll(api_req_t *r, const char *key, long long min, long long max, long long *out);

/* A resource name as used in paths (dataset names, checkpoint file names):
 * 1..128 bytes of [A-Za-z0-9._-], not starting with '.'. Pure. */
int api_name_ok(const char *s);

/* ---- routing (router.c) ------------------------------------------------- */
typedef struct {
    const char *method;
    const char *pattern;          /* "/v1/jobs/{id}/events" */
    api_handler_fn fn;
} api_route_t;

extern const api_route_t api_routes[];
extern const size_t api_nroutes;

/* Matches method+path against routes[0..n). Returns the route index with the
 * decoded parameters in params/nparams; -1 when no pattern matches the path
 * (404); -2 when the path matches but not the method (405), with the allowed
 * methods ("GET, DELETE") in allow. Pure. */
int api_route_match(const api_route_t *routes, size_t n, const char *method, const char *path,
                    char params[][API_PARAM_MAX], int *nparams, char *allow, size_t allowlen);

/* ---- auth (auth.c) ------------------------------------------------------- */
/* Constant-time equality of two byte strings (time depends on lengths only). */
int api_token_equal(const char *a, size_t alen, const char *b, size_t blen);
/* 1 when header is "Bearer <token>" for the configured token. */
int api_bearer_ok(const char *authorization_header, const char *token);

/* ---- Prometheus text format 0.0.4 (prom.c) ------------------------------ */
typedef struct {
    char *buf; size_t len, cap;
    int oom;
} prom_buf_t;

void prom_init(prom_buf_t *b);
void prom_free(prom_buf_t *b);
/* "# HELP name help\n# TYPE name type\n" */
void prom_family(prom_buf_t *b, const char *name, const char *type, const char *help);
/* name{k1="v1",k2="v2"} value\n ; labels is a NULL-terminated key,value,... list (or NULL) */
void prom_sample(prom_buf_t *b, const char *name, const char *const *labels, double value);
/* Label value escaping (\\, \", \n) into out; returns the needed length. Pure. */
size_t prom_escape(const char *in, char *out, size_t outlen);

/* The HTTP request counters as a Prometheus family (routes_status.c). */
void api_prom_http(api_server_t *s, prom_buf_t *b);
/* traind_gpu_memory_bytes{device,kind} from status.devices[].memory and
 * traind_train_steps_per_second{job,device} = images_per_s / batch_size of
 * the running train jobs (status.running[] with "batch_size" added). Pure. */
void api_prom_status(prom_buf_t *b, const json_t *status);

/* ---- Server-Sent Events framing (sse.c) --------------------------------- */
/* Formats one event: "id: <id>\nevent: <type>\ndata: <line>\n...\n\n" (data
 * split on newlines). Returns bytes written (without NUL), or the size that
 * would be needed when it does not fit (like snprintf). Pure. */
size_t sse_format_event(char *out, size_t outlen, int64_t id, const char *type, const char *data);
/* ": <text>\n\n" */
size_t sse_format_comment(char *out, size_t outlen, const char *text);
/* Parses a Last-Event-ID value: a non-negative integer. -1 when absent/invalid. Pure. */
int64_t sse_parse_last_id(const char *s);
/* Builds the MHD response for r (kind API_BODY_SSE). NULL on allocation failure. */
struct MHD_Response *sse_response(api_req_t *r);

/* ---- server internals (http.c) ------------------------------------------ */
/* Requests answered, by status code, for /metrics. */
typedef struct { int code; uint64_t n; } api_code_count_t;
/* Copies up to max (code,count) pairs; returns how many. */
size_t api_request_counts(api_server_t *s, api_code_count_t *out, size_t max);
/* 1 once api_stop has begun (SSE streams end). */
int api_stopping(api_server_t *s);
/* Open event streams (+1 when one starts, -1 when it is freed). */
void api_sse_count(api_server_t *s, int delta);

/* JSON values (array elements and object members below the top level) in the
 * body s[n], counted without parsing (commas and opening brackets outside
 * strings); stops past max and names in field the top-level key it was
 * counting under. Not a validator: jansson parses the body afterwards. Pure. */
size_t api_job_body_values(const char *s, size_t n, size_t max, char *field, size_t fieldlen);

/* ---- handlers ------------------------------------------------------------ */
void route_health(api_req_t *r);
void route_status(api_req_t *r);
void route_metrics(api_req_t *r);
void route_datasets_post(api_req_t *r);
void route_datasets_list(api_req_t *r);
void route_dataset_get(api_req_t *r);
void route_dataset_delete(api_req_t *r);
void route_jobs_post(api_req_t *r);
void route_jobs_list(api_req_t *r);
void route_job_get(api_req_t *r);
void route_job_cancel(api_req_t *r);
void route_job_events(api_req_t *r);
void route_job_metrics(api_req_t *r);
void route_job_result(api_req_t *r);
void route_job_result_file(api_req_t *r);
void route_checkpoints_list(api_req_t *r);
void route_checkpoint_get(api_req_t *r);
void route_checkpoint_file(api_req_t *r);
void route_checkpoint_delete(api_req_t *r);

#endif
