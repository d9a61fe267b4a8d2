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
#include "daemon/config.h"

struct MHD_Connection;
struct MHD_Response;

/* ---- limits ------------------------------------------------------------- */
/* Request bodies, per route (http.c); a route not named there takes none. */
#define API_BODY_MAX        (64u << 20)  /* POST /v1/jobs (inline images): 413 beyond */
#define API_JOB_VALUES_MAX  65536        /* JSON values in a job spec, counted before parsing */
#define API_DATASET_BODY_MAX (64u << 10) /* POST /v1/datasets */
/* A chunked body past its route's limit is read on and dropped (then 413) for
 * at most this many more bytes; beyond, the connection is closed. */
#define API_BODY_DISCARD_MAX (1u << 20)
/* After a request whose body buffer reached this size, free heap is handed
 * back to the system (malloc_trim). */
#define API_TRIM_BYTES      (1u << 20)
/* At --max-connections-per-ip, a client's oldest connection still receiving
 * its request is closed for a new one, if it has been at it this long. */
#define API_EVICT_MIN_AGE_S 1.0
#define API_REAP_MS         250          /* how often request deadlines are checked */
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
    API_BODY_STATIC,    /* static_data/static_len, not owned (built-in bytes), content_type */
} api_body_kind_t;

#define API_XHDR_MAX 10   /* extra response headers of one reply */

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
    const void *static_data;          /* API_BODY_STATIC */
    size_t static_len;
    const char *xhdr[API_XHDR_MAX][2];   /* extra headers: name, value (static strings) */
    int nxhdr;
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
/* Streams the open regular file fd (taken: closed with the reply; opened by
 * the daemon beneath its directory) as name; 404 when it is not one. */
void api_reply_file(api_req_t *r, int fd, const char *name);
__attribute__((format(printf, 4, 5)))
void api_reply_error(api_req_t *r, int status, const char *code, const char *fmt, ...);
/* Replies with a daemon action's error (status, code, message, and "field"
 * when set). */
void api_reply_daemon_err(api_req_t *r, const void *daemon_err);
/* Adds a response header (name and value must outlive the request: string
 * literals or built-in data); beyond API_XHDR_MAX it is dropped. */
void api_reply_header(api_req_t *r, const char *name, const char *value);
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

/* ---- who may make a request (auth.c) --------------------------------------- */
/* Constant-time equality of two byte strings (time depends on lengths only). */
int api_token_equal(const char *a, size_t alen, const char *b, size_t blen);
/* 1 when header is "Bearer <token>" for the configured token. */
int api_bearer_ok(const char *authorization_header, const char *token);

/* What names this server besides its loopback names and the address connected to. */
typedef struct {
    uint16_t port;                                  /* the port bound */
    const char (*allow_hosts)[CFG_ALLOW_LEN];       /* --allow-host, normalized by config.c */
    int n_allow_hosts;
    const char (*allow_origins)[CFG_ALLOW_LEN];     /* --allow-origin, normalized by config.c */
    int n_allow_origins;
} api_boundary_t;
/* 1 when the Host header value names this server: localhost, 127.0.0.1,
 * [::1] or `local` (the address connected to: "a.b.c.d" or "[v6]", may be
 * NULL), with b->port or no port; or an allow_hosts entry ("name" matches
 * any port, "name:port" that one). Pure. */
int api_host_ok(const api_boundary_t *b, const char *host, const char *local);
/* 1 when the Origin header value is an allow_origins entry, or the origin of
 * this server as the request addressed it: "http://" + host (the request's
 * Host, already accepted by api_host_ok; NULL when absent). "null" and
 * malformed values are refused. Pure. */
int api_origin_ok(const api_boundary_t *b, const char *origin, const char *host);
/* 1 when the Content-Type value ct (may be NULL) is the media type `type`,
 * case-insensitively, whatever its parameters. Pure. */
int api_media_type_is(const char *ct, const char *type);
/* 1 for the content types a browser sends cross-site without a preflight:
 * text/plain, application/x-www-form-urlencoded, multipart/form-data. Pure. */
int api_content_type_simple(const char *ct);
/* 1 for GET, HEAD and OPTIONS. Pure. */
int api_method_safe(const char *method);

/* What a request's headers say about its body, and what its route takes. */
typedef struct {
    const char *method, *path;
    const char *content_type;     /* NULL when absent */
    int has_body;                 /* Content-Length > 0, or a Transfer-Encoding */
    long long declared;           /* Content-Length; -1 when absent (chunked) */
    size_t limit;                 /* the route's body limit; 0: it takes none */
    int from_browser;             /* an Origin or Sec-Fetch-* header is present */
} api_body_head_t;
/* The body rules, on the headers alone: a body on a route that takes none
 * (413), a body that is not application/json (415), a declared length over
 * the limit (413), a state-changing request without a body that carries a
 * simple content type (415; an empty form-urlencoded one from a non-browser
 * passes). 0 when the body may be read, else the status with *code and msg
 * set. Pure. */
int api_body_check(const api_body_head_t *h, const char **code, char *msg, size_t msglen);

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
/* Connections ended before their request was in, since the start: closed for
 * a newer one at --max-connections-per-ip, refused at it, closed by
 * --request-timeout-s. */
void api_conn_counts(api_server_t *s, uint64_t *evicted, uint64_t *refused, uint64_t *expired);
/* 1 once api_stop has begun (SSE streams end). */
int api_stopping(api_server_t *s);
/* Open event streams (+1 when one starts, -1 when it is freed). */
void api_sse_count(api_server_t *s, int delta);

/* ---- the web dashboard (dashboard.c; assets generated at build time) ----- */
typedef struct {
    const char *name;                 /* "app.js": served as /assets/app.js */
    const unsigned char *data;        /* NUL-terminated, len bytes before the NUL */
    size_t len;
    const char *etag;                 /* quoted hash of the bytes, "\"…\"" */
} api_asset_t;

/* build/gen/api/dashboard_assets.c (scripts/embed-assets.py). */
extern const api_asset_t api_dashboard_assets[];
extern const size_t api_dashboard_nassets;

/* The built-in asset named name, or NULL. Pure. */
const api_asset_t *api_dashboard_find(const char *name);
/* Content-Type for an asset name by its extension. Pure. */
const char *api_dashboard_content_type(const char *name);
/* 1 for the paths served without a token: "/" and "/assets/<name>" (no
 * data in them); 0 for everything else, "/assets/../x" included. Pure. */
int api_dashboard_public(const char *path);
/* The Content-Security-Policy every dashboard answer carries. */
extern const char api_dashboard_csp[];
/* JSON values (array elements and object members below the top level) in the
 * body s[n], counted without parsing (commas and opening brackets outside
 * strings); stops past max and names in field the top-level key it was
 * counting under. Not a validator: jansson parses the body afterwards. Pure. */
size_t api_job_body_values(const char *s, size_t n, size_t max, char *field, size_t fieldlen);

/* ---- handlers ------------------------------------------------------------ */
void api_dashboard_page(api_req_t *r);
void api_dashboard_asset(api_req_t *r);
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
