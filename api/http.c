/* api/http.c — the libmicrohttpd server: start and stop; who may hold a
 * connection (a per-client limit, a deadline for receiving each request); the
 * request entry point, which applies the checks of api/auth.c (Host, Origin,
 * token) and the per-route body rules to every request, whatever its route,
 * on the headers alone, before any body byte is read; body collection;
 * routing to the handlers of routes_*.c; turning their replies into MHD
 * responses; per-status request counters (for /metrics) and one debug log
 * line per request.
 *
 * Threading: MHD's internal polling thread accepts connections and each
 * connection gets its own thread (MHD_USE_THREAD_PER_CONNECTION), so a
 * Server-Sent Events stream may block in its content reader without holding
 * up other requests. One more thread, the reaper, enforces request deadlines.
 *
 * Limits:
 *   --max-connections        simultaneous connections (MHD closes any beyond at once);
 *   --max-connections-per-ip connections of one client address (IPv6: its /64). At
 *                            the limit, the client's oldest connection that has been
 *                            receiving its request for API_EVICT_MIN_AGE_S is closed to
 *                            make room (slow or idle ones go first); if there is none
 *                            (all busy: event streams, downloads), the new one is refused.
 *                            All local clients share 127.0.0.1, so on loopback this is
 *                            one budget for every local client; closing the oldest
 *                            unfinished request keeps them served;
 *   --request-timeout-s      from accept (or the end of the previous request on a
 *                            kept-alive connection) to the last byte of the request's
 *                            body; the reaper shuts the socket down (no answer can be
 *                            sent in the middle of a request). Responses, SSE streams
 *                            included, are not timed by it;
 *   --idle-timeout-s         inactivity on a connection (an SSE stream is never idle
 *                            that long, it sends a heartbeat);
 *   bodies                   per route (route_body_limit): declared lengths over it are
 *                            413 at once, a chunked body past it is dropped (413) or,
 *                            API_BODY_DISCARD_MAX later, cut off by closing the connection.
 *
 * An answer given on the headers alone to a request that has a body makes
 * MHD close the connection once it is sent; the body is never read. */
#include <arpa/inet.h>
#include <assert.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "store/mono.h"

#define API_MAX_CODES 48

/* One accepted connection, from MHD's "started" notification to its "closed" one. */
typedef enum {
    SLOT_RECEIVING = 0,      /* a request is arriving (or awaited): the deadline runs */
    SLOT_HANDLING,           /* the request is in; answering or streaming */
    SLOT_CLOSING,            /* shut down by the reaper or for a newer connection */
} slot_phase_t;

typedef struct conn_slot {
    struct conn_slot *prev, *next;
    MHD_socket fd;
    unsigned char key[9];            /* client address: family tag + 4 (v4) or 8 (v6 /64) bytes */
    char ip[INET6_ADDRSTRLEN];       /* for log lines */
    double t0;                       /* when the current request began (mono_now) */
    slot_phase_t phase;
} conn_slot_t;

struct api_server {
    struct MHD_Daemon *mhd;
    daemon_t *d;
    char token[CFG_TOKEN_MAX];        /* "" = no authentication */
    atomic_int stopping;
    atomic_int sse_active;            /* open event streams */
    uint16_t port;
    api_boundary_t bnd;               /* port and --allow-host/--allow-origin */
    pthread_mutex_t cnt_mu;
    api_code_count_t counts[API_MAX_CODES];
    size_t ncounts;

    /* connections (conn_mu): the list, the per-client limit, the deadline reaper */
    pthread_mutex_t conn_mu;
    pthread_cond_t reap_cv;
    pthread_t reaper;
    int reaper_started, reaper_stop;
    conn_slot_t *slots;
    unsigned per_ip;
    double request_timeout_s;
    double last_limit_log;            /* rate limit of the per-client limit's log lines */
    uint64_t n_evicted, n_refused, n_expired;
};

/* Per-request state across MHD's calls of the access handler. */
typedef struct {
    char *body;
    size_t len, cap;
    size_t limit;                     /* the route's body limit */
    size_t dropped;                   /* chunked bytes past the limit, read and dropped */
    int admitted;                     /* the header checks passed */
    int replied;                      /* answered on the headers alone */
    int route;                        /* index in api_routes */
    char params[API_MAX_PARAMS][API_PARAM_MAX];
    int nparams;
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

void api_conn_counts(api_server_t *s, uint64_t *evicted, uint64_t *refused, uint64_t *expired) {
    pthread_mutex_lock(&s->conn_mu);
    *evicted = s->n_evicted;
    *refused = s->n_refused;
    *expired = s->n_expired;
    pthread_mutex_unlock(&s->conn_mu);
}

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

/* ---- connections: per-client limit and request deadline ------------------------------- */

/* The key that groups connections of one client: IPv4 address, or the /64
 * of an IPv6 one (a host owns a whole /64); IPv4-mapped IPv6 is IPv4. */
static void client_key(const struct sockaddr *sa, unsigned char key[9], char *ip, size_t iplen) {
    memset(key, 0, 9);
    if (ip && iplen) ip[0] = 0;
    if (!sa) return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        key[0] = 4;
        memcpy(key + 1, &a->sin_addr, 4);
        if (ip) inet_ntop(AF_INET, &a->sin_addr, ip, (socklen_t)iplen);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            key[0] = 4;
            memcpy(key + 1, a->sin6_addr.s6_addr + 12, 4);
            if (ip) inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, ip, (socklen_t)iplen);
        } else {
            key[0] = 6;
            memcpy(key + 1, a->sin6_addr.s6_addr, 8);
            if (ip) inet_ntop(AF_INET6, &a->sin6_addr, ip, (socklen_t)iplen);
        }
    }
}

/* Ends a connection from outside its thread: its thread sees the socket
 * closed and MHD frees it (the fd stays valid until the "closed"
 * notification, which takes conn_mu). Caller holds conn_mu. */
static void slot_shut(conn_slot_t *sl) {
    assert(sl->phase != SLOT_CLOSING);
    shutdown(sl->fd, SHUT_RDWR);
    sl->phase = SLOT_CLOSING;
}

/* MHD's accept policy: the per-client limit. Runs on the accepting thread,
 * before the connection exists (its "started" notification follows on the
 * same thread, so no other accept comes in between). */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    api_server_t *s = cls;
    unsigned char key[9];
    char ip[INET6_ADDRSTRLEN];
    (void)addrlen;
    client_key(addr, key, ip, sizeof ip);
    double now = mono_now();
    pthread_mutex_lock(&s->conn_mu);
    unsigned n = 0;
    conn_slot_t *oldest = NULL;
    for (conn_slot_t *sl = s->slots; sl; sl = sl->next) {
        if (sl->phase == SLOT_CLOSING || memcmp(sl->key, key, sizeof key)) continue;
        n++;
        if (sl->phase == SLOT_RECEIVING && now - sl->t0 >= API_EVICT_MIN_AGE_S &&
            (!oldest || sl->t0 < oldest->t0))
            oldest = sl;
    }
    enum MHD_Result ret = MHD_YES;
    const char *what = NULL;
    if (n >= s->per_ip) {
        if (oldest) {
            slot_shut(oldest);
            s->n_evicted++;
            what = "closed its oldest unfinished request for a new connection";
        } else {
            s->n_refused++;
            ret = MHD_NO;
            what = "refused a new connection (none of its connections is waiting for a request)";
        }
    }
    int say = what && now - s->last_limit_log >= 10.0;
    if (say) s->last_limit_log = now;
    uint64_t ne = s->n_evicted, nr = s->n_refused;
    pthread_mutex_unlock(&s->conn_mu);
    if (say)
        log_warn(NULL, "http: client %s holds %u connections (--max-connections-per-ip): %s "
                 "(so far: %llu closed, %llu refused)", ip, n, what, (unsigned long long)ne,
                 (unsigned long long)nr);
    return ret;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    api_server_t *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        conn_slot_t *sl = calloc(1, sizeof *sl);
        if (!sl || !fi) {
            /* untracked, it would escape the deadline: end it */
            free(sl);
            if (fi) shutdown(fi->connect_fd, SHUT_RDWR);
            log_warn(NULL, "http: out of memory for a new connection: closed");
            *socket_context = NULL;
            return;
        }
        sl->fd = fi->connect_fd;
        client_key(ai ? ai->client_addr : NULL, sl->key, sl->ip, sizeof sl->ip);
        sl->t0 = mono_now();
        sl->phase = SLOT_RECEIVING;
        pthread_mutex_lock(&s->conn_mu);
        sl->next = s->slots;
        if (s->slots) s->slots->prev = sl;
        s->slots = sl;
        pthread_mutex_unlock(&s->conn_mu);
        *socket_context = sl;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_slot_t *sl = *socket_context;
        if (!sl) return;
        pthread_mutex_lock(&s->conn_mu);
        if (sl->prev) sl->prev->next = sl->next;
        else s->slots = sl->next;
        if (sl->next) sl->next->prev = sl->prev;
        pthread_mutex_unlock(&s->conn_mu);
        free(sl);
        *socket_context = NULL;
    }
}

static conn_slot_t *slot_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

/* The request is in (or answered on its headers): its deadline stops. 0 when
 * the connection was already shut down by the reaper or for a newer one. */
static int slot_handling(api_server_t *s, struct MHD_Connection *c) {
    conn_slot_t *sl = slot_of(c);
    if (!sl) return 0;
    pthread_mutex_lock(&s->conn_mu);
    int live = sl->phase != SLOT_CLOSING;
    if (live) sl->phase = SLOT_HANDLING;
    pthread_mutex_unlock(&s->conn_mu);
    return live;
}

/* A request ended: on a kept-alive connection the next one's deadline starts now. */
static void slot_receiving(api_server_t *s, struct MHD_Connection *c) {
    conn_slot_t *sl = slot_of(c);
    if (!sl) return;
    pthread_mutex_lock(&s->conn_mu);
    if (sl->phase != SLOT_CLOSING) {
        sl->phase = SLOT_RECEIVING;
        sl->t0 = mono_now();
    }
    pthread_mutex_unlock(&s->conn_mu);
}

/* The reaper: every API_REAP_MS, shuts down the connections whose request
 * has not arrived whole within --request-timeout-s. It says so in the log at
 * once, then at most every 10 s (a client could otherwise fill the log). */
static void *reaper_main(void *arg) {
    api_server_t *s = arg;
    unsigned unlogged = 0;
    double last_log = -1e9;
    char ip[INET6_ADDRSTRLEN] = "";
    pthread_mutex_lock(&s->conn_mu);
    while (!s->reaper_stop) {
        struct timespec ts;
        mono_deadline(&ts, API_REAP_MS);
        pthread_cond_timedwait(&s->reap_cv, &s->conn_mu, &ts);
        if (s->reaper_stop) break;
        double now = mono_now();
        for (conn_slot_t *sl = s->slots; sl; sl = sl->next) {
            if (sl->phase != SLOT_RECEIVING || now - sl->t0 <= s->request_timeout_s) continue;
            if (!unlogged) snprintf(ip, sizeof ip, "%s", sl->ip);
            slot_shut(sl);
            unlogged++;
            s->n_expired++;
        }
        if (unlogged && now - last_log >= 10.0) {
            unsigned n = unlogged;
            uint64_t total = s->n_expired;
            unlogged = 0;
            last_log = now;
            pthread_mutex_unlock(&s->conn_mu);
            log_info(NULL, "http: closed %u connection%s (the first from %s) that did not send a "
                     "whole request within %g s (--request-timeout-s; %llu so far)", n,
                     n == 1 ? "" : "s", ip, s->request_timeout_s, (unsigned long long)total);
            pthread_mutex_lock(&s->conn_mu);
        }
    }
    pthread_mutex_unlock(&s->conn_mu);
    return NULL;
}

/* ---- the request entry point ------------------------------------------------------------ */

static int auth_required(const char *url) {
    return strcmp(url, "/v1/health") != 0 && strcmp(url, "/v1/health/") != 0 &&
           !api_dashboard_public(url);
}

/* The body a route takes; every route not named here takes none (GETs,
 * DELETEs, cancel, and routes added later until they are named here). */
static size_t route_body_limit(int route) {
    if (route < 0) return 0;
    if (api_routes[route].fn == route_jobs_post) return API_BODY_MAX;
    if (api_routes[route].fn == route_datasets_post) return API_DATASET_BODY_MAX;
    return 0;
}

static const char *hdr(struct MHD_Connection *c, const char *name) {
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* A body follows the headers: a Transfer-Encoding, or a Content-Length above 0. */
static int has_body(struct MHD_Connection *c, long long *declared) {
    const char *cl = hdr(c, "Content-Length");
    *declared = -1;
    if (hdr(c, "Transfer-Encoding")) return 1;
    if (cl && api_parse_ll(cl, 0, INT64_MAX, declared) == 1) return *declared > 0;
    *declared = -1;
    return 0;
}

/* The address the client connected to, as a Host would name it: "a.b.c.d" or "[v6]". */
static void local_name(struct MHD_Connection *c, char *out, size_t n) {
    out[0] = 0;
    const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (!fi || getsockname(fi->connect_fd, (struct sockaddr *)&ss, &len) < 0) return;
    char a[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET) {
        if (inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, a, sizeof a))
            snprintf(out, n, "%s", a);
    } else if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            if (inet_ntop(AF_INET, a6->s6_addr + 12, a, sizeof a)) snprintf(out, n, "%s", a);
        } else if (inet_ntop(AF_INET6, a6, a, sizeof a)) {
            snprintf(out, n, "[%s]", a);
        }
    }
}

/* The checks every request passes, on its headers alone, whatever its route:
 * Host (421), Origin (403), token (401), route (404, 405), body rules (413,
 * 415). 0, or the answer is set in r and -1. Fills cr's route and limit. */
static int admit(api_server_t *s, struct MHD_Connection *c, conn_req_t *cr, api_req_t *r,
                 const char *version) {
    const char *host = hdr(c, "Host"), *origin = hdr(c, "Origin");
    if (!host && strcmp(version, MHD_HTTP_VERSION_1_0) != 0) {
        api_reply_error(r, 400, "bad_request", "an %s request needs a Host header", version);
        return -1;
    }
    if (host) {
        char local[INET6_ADDRSTRLEN + 2];
        local_name(c, local, sizeof local);
        if (!api_host_ok(&s->bnd, host, local)) {
            int extra = local[0] && strcmp(local, "127.0.0.1") && strcmp(local, "[::1]");
            api_reply_error(r, 421, "misdirected_request",
                            "Host '%.100s' does not name this server (accepted: localhost, "
                            "127.0.0.1, [::1]%s%s, with port %u or none, and --allow-host values)",
                            host, extra ? ", " : "", extra ? local : "", (unsigned)s->port);
            return -1;
        }
    }
    if (origin && !api_origin_ok(&s->bnd, origin, host)) {
        api_reply_error(r, 403, "forbidden", "requests from origin '%.100s' are not accepted: it "
                        "is not this server's own (a page of another site?); allow it with "
                        "--allow-origin", origin);
        return -1;
    }
    if (s->token[0] && auth_required(r->path) && !api_bearer_ok(hdr(c, "Authorization"), s->token)) {
        api_reply_error(r, 401, "unauthorized", "missing or invalid bearer token "
                        "(send 'Authorization: Bearer <token>')");
        return -1;
    }
    /* MHD hands over the path already percent-decoded; the matcher decodes
     * segments itself, so a literal '%' is escaped again to keep it literal. */
    char raw[2048];
    size_t o = 0;
    for (const char *p = r->path; *p && o + 4 < sizeof raw; p++) {
        if (*p == '%') { memcpy(raw + o, "%25", 3); o += 3; }
        else raw[o++] = *p;
    }
    raw[o] = 0;
    int idx = o + 4 >= sizeof raw ? -1
            : api_route_match(api_routes, api_nroutes, r->method, raw, cr->params, &cr->nparams,
                              r->allow, sizeof r->allow);
    if (idx == -1) {
        api_reply_error(r, 404, "not_found", "no such endpoint: %s", r->path);
        return -1;
    }
    if (idx == -2) {
        api_reply_error(r, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                        r->method, r->path, r->allow);
        return -1;
    }
    cr->route = idx;
    cr->limit = route_body_limit(idx);
    const char *te = hdr(c, "Transfer-Encoding");
    if (te && strcasecmp(te, "chunked") != 0) {
        api_reply_error(r, 400, "bad_request", "Transfer-Encoding '%.60s' is not supported "
                        "(send Content-Length, or chunked)", te);
        return -1;
    }
    api_body_head_t h = {
        .method = r->method, .path = r->path, .content_type = hdr(c, "Content-Type"),
        .limit = cr->limit,
        .from_browser = origin || hdr(c, "Sec-Fetch-Site") || hdr(c, "Sec-Fetch-Mode"),
    };
    h.has_body = has_body(c, &h.declared);
    const char *code = NULL;
    char msg[512];
    int st = api_body_check(&h, &code, msg, sizeof msg);
    if (st) {
        api_reply_error(r, st, code, "%s", msg);
        return -1;
    }
    if (h.declared > 0) {   /* reserve it whole (pages are touched only as it arrives) */
        cr->body = malloc((size_t)h.declared + 1);
        if (!cr->body) {
            api_reply_error(r, 503, "unavailable", "out of memory for a body of %lld bytes",
                            h.declared);
            return -1;
        }
        cr->cap = (size_t)h.declared + 1;
    }
    cr->admitted = 1;
    return 0;
}

/* Appends a piece of the body. MHD_NO closes the connection: a chunked body
 * that went API_BODY_DISCARD_MAX past its limit, or out of memory. */
static enum MHD_Result take_body(conn_req_t *cr, const char *data, size_t n, const char *method,
                                 const char *url) {
    if (cr->dropped || cr->len + n > cr->limit) {   /* only a chunked body can get here */
        if (!cr->dropped) { free(cr->body); cr->body = NULL; cr->len = cr->cap = 0; }
        cr->dropped += n;
        if (cr->dropped <= API_BODY_DISCARD_MAX) return MHD_YES;
        log_info(NULL, "http %s %s: chunked body went %u bytes past the limit of %zu: "
                 "connection closed", method, url, API_BODY_DISCARD_MAX, cr->limit);
        return MHD_NO;
    }
    if (cr->len + n + 1 > cr->cap) {
        size_t cap = cr->cap ? cr->cap : 4096;
        while (cap < cr->len + n + 1) cap *= 2;
        if (cap > cr->limit + 1) cap = cr->limit + 1;
        char *nb = realloc(cr->body, cap);
        if (!nb) {
            log_warn(NULL, "http %s %s: out of memory for the body (%zu bytes): connection closed",
                     method, url, cap);
            return MHD_NO;
        }
        cr->body = nb;
        cr->cap = cap;
    }
    memcpy(cr->body + cr->len, data, n);
    cr->len += n;
    cr->body[cr->len] = 0;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    api_server_t *s = cls;
    conn_req_t *cr = *con_cls;
    api_req_t r;

    if (!cr) {   /* first call: the headers are in, no byte of a body has been read */
        cr = calloc(1, sizeof *cr);
        if (!cr) return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &cr->t0);
        cr->route = -1;
        *con_cls = cr;
        long long declared;
        /* Without a body the final call follows at once and does the checks
         * (an answer given now would cost the kept-alive connection). */
        if (!has_body(c, &declared)) return MHD_YES;
        req_init(&r, s, c, method, url);
        if (admit(s, c, cr, &r, version) == 0) return MHD_YES;   /* read the body */
        cr->replied = 1;
        if (!slot_handling(s, c)) { json_decref(r.json); return MHD_NO; }   /* deadline passed */
        return send_reply(s, c, &r, &cr->t0);   /* MHD closes after it; the body is never read */
    }
    if (*upload_data_size) {   /* a piece of the body */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (cr->replied) return MHD_YES;   /* MHD drops bodies of answered requests itself */
        return take_body(cr, upload_data, n, method, url);
    }
    if (cr->replied) return MHD_YES;

    /* Final call: the request is complete. */
    if (!slot_handling(s, c)) return MHD_NO;   /* its deadline passed meanwhile */
    req_init(&r, s, c, method, url);
    if (!cr->admitted && admit(s, c, cr, &r, version) < 0) return send_reply(s, c, &r, &cr->t0);
    if (cr->dropped) {
        api_reply_error(&r, 413, "too_large", "request body exceeds the limit of %zu bytes for "
                        "%s %s", cr->limit, method, url);
        return send_reply(s, c, &r, &cr->t0);
    }
    assert(cr->route >= 0 && (size_t)cr->route < api_nroutes);
    r.body = cr->body;
    r.body_len = cr->len;
    memcpy(r.params, cr->params, sizeof r.params);
    r.nparams = cr->nparams;
    api_routes[cr->route].fn(&r);
    return send_reply(s, c, &r, &cr->t0);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    api_server_t *s = cls;
    (void)toe;
    conn_req_t *cr = *con_cls;
    slot_receiving(s, c);
    if (!cr) return;
    int big = cr->cap >= API_TRIM_BYTES || cr->dropped;
    free(cr->body);
    free(cr);
    *con_cls = NULL;
    /* A large body leaves free pages in this thread's heap arena; hand them
     * back, so rejected or finished uploads do not keep the daemon large. */
    if (big) malloc_trim(0);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    /* A connection closed under a request — by its client, by the reaper, for
     * a newer connection of its client, or by take_body — is routine: one
     * line each at warn would let any client fill the log. Ours say why, in
     * aggregate. */
    if (strstr(msg, "when reading request") || strstr(msg, "closed by remote side") ||
        strstr(msg, "Application reported internal error"))
        log_debug(NULL, "http: %s", msg);
    else
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
    const daemon_cfg_t *cfg = d ? &d->cfg : NULL;
    unsigned conn_limit = cfg && cfg->max_connections > 0 ? (unsigned)cfg->max_connections : CONFIG_CONN_LIMIT;
    unsigned idle_timeout = cfg && cfg->idle_timeout_s > 0 ? (unsigned)cfg->idle_timeout_s : CONFIG_IDLE_TIMEOUT_S;
    s->per_ip = cfg && cfg->max_conn_per_ip > 0 ? (unsigned)cfg->max_conn_per_ip : CONFIG_PER_IP_LIMIT;
    s->request_timeout_s = cfg && cfg->request_timeout_s > 0 ? cfg->request_timeout_s : CONFIG_REQUEST_TIMEOUT_S;
    s->last_limit_log = -1e9;
    if (cfg) {
        s->bnd.allow_hosts = cfg->allow_hosts;
        s->bnd.n_allow_hosts = cfg->n_allow_hosts;
        s->bnd.allow_origins = cfg->allow_origins;
        s->bnd.n_allow_origins = cfg->n_allow_origins;
    }
    uint16_t port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                              : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->port = s->bnd.port = port;   /* port 0: the one bound, below */
    pthread_mutex_init(&s->cnt_mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    int rc = mono_cond_init(&s->reap_cv);
    if (rc) {
        snprintf(err, errlen, "cannot create a condition variable: %s", strerror(rc));
        pthread_mutex_destroy(&s->conn_mu);
        pthread_mutex_destroy(&s->cnt_mu);
        free(s);
        return NULL;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(flags, port, on_accept, s, on_request, s,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                              MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)",
                 listen_addr);
        goto fail;
    }
    if (!port) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
        s->port = s->bnd.port = info ? info->port : 0;
    }
    rc = pthread_create(&s->reaper, NULL, reaper_main, s);
    if (rc) {
        snprintf(err, errlen, "cannot start the request deadline thread: %s", strerror(rc));
        MHD_stop_daemon(s->mhd);
        goto fail;
    }
    s->reaper_started = 1;
    log_info(NULL, "http: listening on %s (port %u)%s; at most %u connections, %u per client, "
             "%g s to send a request", listen_addr, (unsigned)s->port,
             s->token[0] ? ", token required" : "", conn_limit, s->per_ip, s->request_timeout_s);
    return s;
fail:
    pthread_cond_destroy(&s->reap_cv);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_mutex_destroy(&s->cnt_mu);
    free(s);
    return NULL;
}

void api_stop(api_server_t *s) {
    if (!s) return;
    atomic_store(&s->stopping, 1);
    /* Let open event streams notice and end cleanly (their readers wake at
     * least every 250 ms), so clients see a complete response. */
    for (int i = 0; i < 100 && atomic_load(&s->sse_active) > 0; i++) usleep(10000);
    if (s->reaper_started) {
        pthread_mutex_lock(&s->conn_mu);
        s->reaper_stop = 1;
        pthread_cond_signal(&s->reap_cv);
        pthread_mutex_unlock(&s->conn_mu);
        pthread_join(s->reaper, NULL);
    }
    if (s->mhd) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);   /* stop accepting */
        MHD_stop_daemon(s->mhd);                      /* ends connections, joins threads */
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    assert(!s->slots);   /* every connection's "closed" notification has come */
    pthread_cond_destroy(&s->reap_cv);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_mutex_destroy(&s->cnt_mu);
    memset(s->token, 0, sizeof s->token);
    free(s);
}
