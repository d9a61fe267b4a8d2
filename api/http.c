/* api/http.c — the libmicrohttpd server: listen address parsing, start and
 * stop, per-request body collection with a size limit, authentication,
 * routing to the handlers of routes_*.c, turning their replies into MHD
 * responses, per-status request counters (for /metrics) and one debug log
 * line per request.
 *
 * Threading: MHD's internal polling thread accepts connections and each
 * connection gets its own thread (MHD_USE_THREAD_PER_CONNECTION), so a
 * Server-Sent Events stream may block in its content reader without holding
 * up other requests. Limits: --max-connections simultaneous connections
 * (default CONFIG_CONN_LIMIT; MHD closes any beyond it at once), --idle-timeout-s
 * of inactivity per connection (default CONFIG_IDLE_TIMEOUT_S; an SSE stream is
 * never idle that long, it sends a heartbeat), API_BODY_MAX bytes of request
 * body (413). */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"
#include "daemon/log.h"

#define API_MAX_CODES 48

struct api_server {
    struct MHD_Daemon *mhd;
    daemon_t *d;
    char token[CFG_TOKEN_MAX];        /* "" = no authentication */
    atomic_int stopping;
    atomic_int sse_active;            /* open event streams */
    uint16_t port;
    pthread_mutex_t cnt_mu;
    api_code_count_t counts[API_MAX_CODES];
    size_t ncounts;
};

/* Per-request state across MHD's calls of the access handler. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_large;
    struct timespec t0;
} conn_req_t;

/* ---- counters ----------------------------------------------------------------- */

static void count_status(api_server_t *s, int code) {
    pthread_mutex_lock(&s->cnt_mu);
    size_t i;
    for (i = 0; i < s->ncounts; i++)
        if (s->counts[i].code == code) break;
    if (i == s->ncounts && s->ncounts < API_MAX_CODES) {
        /* keep sorted by code for a stable exposition */
        size_t j = s->ncounts++;
        while (j > 0 && s->counts[j - 1].code > code) { s->counts[j] = s->counts[j - 1]; j--; }
        s->counts[j].code = code;
        s->counts[j].n = 0;
        i = j;
    }
    if (i < s->ncounts) s->counts[i].n++;
    pthread_mutex_unlock(&s->cnt_mu);
}

size_t api_request_counts(api_server_t *s, api_code_count_t *out, size_t max) {
    pthread_mutex_lock(&s->cnt_mu);
    size_t n = s->ncounts < max ? s->ncounts : max;
    memcpy(out, s->counts, n * sizeof *out);
    pthread_mutex_unlock(&s->cnt_mu);
    return n;
}

int api_stopping(api_server_t *s) { return atomic_load(&s->stopping); }

void api_sse_count(api_server_t *s, int delta) { atomic_fetch_add(&s->sse_active, delta); }

uint16_t api_port(const api_server_t *s) { return s ? s->port : 0; }

/* ---- request access ------------------------------------------------------------ */

const char *api_query(api_req_t *r, const char *key) {
    if (!r->conn) return NULL;
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *api_header(api_req_t *r, const char *key) {
    if (!r->conn) return NULL;
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

struct query_check { const char *const *allowed; const char *bad; };

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value) {
    struct query_check *q = cls;
    (void)kind; (void)value;
    for (const char *const *a = q->allowed; *a; a++)
        if (!strcmp(*a, key)) return MHD_YES;
    q->bad = key;
    return MHD_NO;
}

int api_check_query(api_req_t *r, const char *const *allowed) {
    if (!r->conn) return 0;
    struct query_check q = { allowed, NULL };
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_iter, &q);
    if (!q.bad) return 0;
    api_reply_error(r, 400, "invalid_field", "unknown query parameter '%s'", q.bad);
    return -1;
}

/* ---- responses ----------------------------------------------------------------- */

static struct MHD_Response *json_response(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *b = realloc(s, n + 2);
    if (!b) { free(s); return NULL; }
    b[n] = '\n'; b[n + 1] = 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(n + 1, b, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(b); return NULL; }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return resp;
}

static double ms_since(const struct timespec *t0) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Builds and queues the response for r; frees r's reply parts. */
static enum MHD_Result send_reply(api_server_t *s, struct MHD_Connection *c, api_req_t *r,
                                  const struct timespec *t0) {
    struct MHD_Response *resp = NULL;
    if (r->kind == API_BODY_NONE)
        api_reply_error(r, 500, "internal", "the handler produced no response");
    switch (r->kind) {
    case API_BODY_JSON:
        resp = json_response(r->json);
        break;
    case API_BODY_TEXT:
        resp = MHD_create_response_from_buffer(r->text_len, r->text, MHD_RESPMEM_MUST_FREE);
        if (resp) {
            r->text = NULL;   /* MHD owns it now */
            MHD_add_response_header(resp, "Content-Type", r->content_type);
        }
        break;
    case API_BODY_FILE:
        resp = MHD_create_response_from_fd64(r->fd_size, r->fd);
        if (resp) {
            r->fd = -1;       /* MHD closes it */
            MHD_add_response_header(resp, "Content-Type", r->content_type);
            if (r->filename[0]) {
                char cd[320];
                snprintf(cd, sizeof cd, "attachment; filename=\"%s\"", r->filename);
                MHD_add_response_header(resp, "Content-Disposition", cd);
            }
        }
        break;
    case API_BODY_SSE:
        resp = sse_response(r);
        break;
    case API_BODY_STATIC:
        resp = MHD_create_response_from_buffer(r->static_len, (void *)r->static_data,
                                               MHD_RESPMEM_PERSISTENT);
        if (resp) MHD_add_response_header(resp, "Content-Type", r->content_type);
        break;
    case API_BODY_NONE:
        break;
    }
    if (!resp) {   /* out of memory: a static answer */
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
        r->status = 500;
        resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "application/json");
    }
    if (r->allow[0]) MHD_add_response_header(resp, "Allow", r->allow);
    if (r->location[0]) MHD_add_response_header(resp, "Location", r->location);
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"traind\"");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (int i = 0; i < r->nxhdr; i++) MHD_add_response_header(resp, r->xhdr[i][0], r->xhdr[i][1]);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    count_status(s, r->status);
    log_debug(r->kind == API_BODY_SSE ? r->sse_job : NULL, "http %s %s -> %d %s (%.2f ms)",
              r->method, r->path, r->status, api_status_text(r->status), ms_since(t0));
    json_decref(r->json); r->json = NULL;
    free(r->text); r->text = NULL;
    if (r->fd >= 0) { close(r->fd); r->fd = -1; }
    return ret;
}

static void req_init(api_req_t *r, api_server_t *s, struct MHD_Connection *c,
                     const char *method, const char *url) {
    memset(r, 0, sizeof *r);
    r->srv = s;
    r->d = s->d;
    r->conn = c;
    r->method = method;
    r->path = url;
    r->fd = -1;
}

static int auth_required(const char *url) {
    return strcmp(url, "/v1/health") != 0 && strcmp(url, "/v1/health/") != 0 &&
           !api_dashboard_public(url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    api_server_t *s = cls;
    conn_req_t *cr = *con_cls;
    (void)version;

    if (!cr) {   /* first call: headers only */
        cr = calloc(1, sizeof *cr);
        if (!cr) return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &cr->t0);
        *con_cls = cr;
        /* A declared body far beyond the limit is refused before it is read
         * (curl's "Expect: 100-continue" then never sends it). */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        long long declared;
        if (cl && api_parse_ll(cl, 0, INT64_MAX, &declared) == 1 && declared > API_BODY_MAX) {
            api_req_t r;
            req_init(&r, s, c, method, url);
            if (s->token[0] && auth_required(url) &&
                !api_bearer_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                               s->token))
                api_reply_error(&r, 401, "unauthorized", "missing or invalid bearer token");
            else
                api_reply_error(&r, 413, "too_large",
                                "request body of %lld bytes exceeds the limit of %u bytes",
                                declared, API_BODY_MAX);
            cr->too_large = 2;   /* replied */
            return send_reply(s, c, &r, &cr->t0);
        }
        return MHD_YES;
    }

    if (*upload_data_size) {   /* body data */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cr->too_large) return MHD_YES;   /* discard */
        if (cr->len + n > API_BODY_MAX) {
            cr->too_large = 1;
            free(cr->body); cr->body = NULL; cr->len = cr->cap = 0;
            return MHD_YES;
        }
        if (cr->len + n + 1 > cr->cap) {
            size_t cap = cr->cap ? cr->cap : 4096;
            while (cap < cr->len + n + 1) cap *= 2;
            char *nb = realloc(cr->body, cap);
            if (!nb) { cr->too_large = 1; free(cr->body); cr->body = NULL; cr->len = cr->cap = 0;
                       return MHD_YES; }
            cr->body = nb; cr->cap = cap;
        }
        memcpy(cr->body + cr->len, upload_data, n);
        cr->len += n;
        cr->body[cr->len] = 0;
        return MHD_YES;
    }
    if (cr->too_large == 2) return MHD_YES;   /* the early reply is queued */

    /* Final call: the request is complete. */
    api_req_t r;
    req_init(&r, s, c, method, url);
    r.body = cr->body;
    r.body_len = cr->len;

    if (s->token[0] && auth_required(url) &&
        !api_bearer_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
                       s->token)) {
        api_reply_error(&r, 401, "unauthorized", "missing or invalid bearer token "
                        "(send 'Authorization: Bearer <token>')");
        return send_reply(s, c, &r, &cr->t0);
    }
    if (cr->too_large) {
        api_reply_error(&r, 413, "too_large", "request body exceeds the limit of %u bytes",
                        API_BODY_MAX);
        return send_reply(s, c, &r, &cr->t0);
    }
    /* MHD hands over the path already percent-decoded; the matcher decodes
     * segments itself, so a literal '%' is escaped again to keep it literal. */
    char raw[2048];
    size_t o = 0;
    for (const char *p = url; *p && o + 4 < sizeof raw; p++) {
        if (*p == '%') { memcpy(raw + o, "%25", 3); o += 3; }
        else raw[o++] = *p;
    }
    raw[o] = 0;
    int idx = o + 4 >= sizeof raw ? -1
            : api_route_match(api_routes, api_nroutes, method, raw, r.params, &r.nparams,
                              r.allow, sizeof r.allow);
    if (idx == -1) {
        api_reply_error(&r, 404, "not_found", "no such endpoint: %s", url);
    } else if (idx == -2) {
        api_reply_error(&r, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                        method, url, r.allow);
    } else {
        api_routes[idx].fn(&r);
    }
    return send_reply(s, c, &r, &cr->t0);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)c; (void)toe;
    conn_req_t *cr = *con_cls;
    if (!cr) return;
    free(cr->body);
    free(cr);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    log_warn(NULL, "http: %s", msg);
}

/* ---- start / stop ---------------------------------------------------------------- */

api_server_t *api_start(struct daemon *d, const char *listen_addr, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!listen_addr || !*listen_addr) listen_addr = CONFIG_DEFAULT_LISTEN;
    if (config_parse_listen(listen_addr, &ss, &sslen, err, errlen) < 0) return NULL;
    const char *token = d ? daemon_token(d) : NULL;
    if ((!token || !*token) && !config_listen_is_loopback(listen_addr)) {
        snprintf(err, errlen, "refusing to listen on non-loopback address %s without a token "
                 "(set --token-file)", listen_addr);
        return NULL;
    }
    if (token && strlen(token) >= CFG_TOKEN_MAX) {
        snprintf(err, errlen, "token too long");
        return NULL;
    }
    api_server_t *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, errlen, "out of memory"); return NULL; }
    s->d = d;
    if (token) snprintf(s->token, sizeof s->token, "%s", token);
    pthread_mutex_init(&s->cnt_mu, NULL);

    unsigned conn_limit = d && d->cfg.max_connections > 0 ? (unsigned)d->cfg.max_connections : CONFIG_CONN_LIMIT;
    unsigned idle_timeout = d && d->cfg.idle_timeout_s > 0 ? (unsigned)d->cfg.idle_timeout_s : CONFIG_IDLE_TIMEOUT_S;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                              : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->mhd = MHD_start_daemon(flags, port, NULL, NULL, on_request, s,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                              MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)",
                 listen_addr);
        pthread_mutex_destroy(&s->cnt_mu);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : port;
    log_info(NULL, "http: listening on %s (port %u)%s", listen_addr, (unsigned)s->port,
             s->token[0] ? ", token required" : "");
    return s;
}

void api_stop(api_server_t *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    /* Let open event streams notice and end cleanly (their readers wake at
     * least every 250 ms), so clients see a complete response. */
    for (int i = 0; i < 100 && atomic_load(&s->sse_active) > 0; i++) usleep(10000);
    if (s->mhd) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);   /* stop accepting */
        MHD_stop_daemon(s->mhd);                      /* ends connections, joins threads */
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    pthread_mutex_destroy(&s->cnt_mu);
    memset(s->token, 0, sizeof s->token);
    free(s);
}
