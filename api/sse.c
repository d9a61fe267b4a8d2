/* api/sse.c — GET /v1/jobs/{id}/events as Server-Sent Events.
 *
 * Framing: each stored job event becomes
 *     id: <event id>\nevent: <type>\ndata: <compact JSON of the event's data>\n\n
 * ids are the store's per-job event ids (increasing from 1), so a client that
 * reconnects with `Last-Event-ID: N` (or ?last_event_id=N) gets exactly the
 * events after N. An idle stream gets a comment line (": heartbeat") every
 * API_SSE_HEARTBEAT_MS so proxies and clients see it alive. The stream ends
 * after the event that puts the job into a final state (succeeded, failed,
 * cancelled), or at once when the job is already final and nothing newer is
 * left to send, or when the server stops.
 *
 * The response is an MHD content-reader callback, sent without chunked
 * encoding and closed at the end (clients read until EOF). The server runs one thread
 * per connection, so the callback may block: it waits on the daemon's event
 * notification (daemon_event_wait) in short slices, checking for shutdown.
 * A poll reads the job's state and the events after the last id — never the
 * job record, whose spec may be megabytes (inline images). */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"
#include "store/job.h"

#define SSE_SLICE_MS 250
#define SSE_BATCH 256
#define SSE_COALESCE_MS 50

size_t sse_format_event(char *out, size_t outlen, int64_t id, const char *type, const char *data) {
    size_t n = 0;
#define PUT(s, l) do { size_t _l = (l); if (n + _l < outlen) memcpy(out + n, (s), _l); n += _l; } while (0)
    char idb[32];
    int il = snprintf(idb, sizeof idb, "%lld", (long long)id);
    PUT("id: ", 4); PUT(idb, (size_t)il);
    PUT("\nevent: ", 8); PUT(type, strlen(type)); PUT("\n", 1);
    const char *p = data ? data : "";
    for (;;) {   /* one data: line per line of data */
        const char *nl = strpbrk(p, "\r\n");
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        PUT("data: ", 6); PUT(p, l); PUT("\n", 1);
        if (!nl) break;
        p = nl + 1;
        if (nl[0] == '\r' && nl[1] == '\n') p++;
    }
    PUT("\n", 1);
#undef PUT
    if (outlen) out[n < outlen ? n : outlen - 1] = 0;
    return n;
}

size_t sse_format_comment(char *out, size_t outlen, const char *text) {
    int n = snprintf(out, outlen, ": %s\n\n", text);
    return n < 0 ? 0 : (size_t)n;
}

int64_t sse_parse_last_id(const char *s) {
    long long x;
    if (!s) return -1;
    while (*s == ' ') s++;
    if (api_parse_ll(s, 0, INT64_MAX, &x) != 1) return -1;
    return x;
}

/* ---- the stream ------------------------------------------------------------ */

typedef struct {
    api_server_t *srv;
    daemon_t *d;
    char job[API_PARAM_MAX];
    long long last_id;
    unsigned long long seq;
    char *pend; size_t pend_len, pend_off, pend_cap;
    int done;                  /* the final event is queued in pend */
    int more;                  /* the last read returned a full batch */
    int dirty;                 /* notified since the last read */
    int started;
    struct timespec last_out, last_poll;
} sse_stream_t;

static double since_ms(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) * 1e3 + (double)(now.tv_nsec - t->tv_nsec) / 1e6;
}

static int pend_append(sse_stream_t *s, const char *buf, size_t n) {
    if (s->pend_len + n > s->pend_cap) {
        size_t cap = s->pend_cap ? s->pend_cap : 4096;
        while (cap < s->pend_len + n) cap *= 2;
        char *nb = realloc(s->pend, cap);
        if (!nb) return -1;
        s->pend = nb; s->pend_cap = cap;
    }
    memcpy(s->pend + s->pend_len, buf, n);
    s->pend_len += n;
    return 0;
}

static int state_is_final_event(const json_t *ev) {
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type || strcmp(type, "state") != 0) return 0;
    job_state_t st;
    return job_state_parse(json_string_value(json_object_get(json_object_get(ev, "data"), "state")), &st) == 0 &&
           job_state_final(st);
}

/* Appends one event to the pending bytes. */
static int pend_event(sse_stream_t *s, const json_t *ev) {
    json_int_t id = json_integer_value(json_object_get(ev, "id"));
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *data = json_object_get(ev, "data");
    char *dj = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
    if (!dj) return -1;
    size_t need = sse_format_event(NULL, 0, id, type ? type : "message", dj);
    char *buf = malloc(need + 1);
    if (!buf) { free(dj); return -1; }
    sse_format_event(buf, need + 1, id, type ? type : "message", dj);
    int rc = pend_append(s, buf, need);
    free(buf); free(dj);
    if (rc == 0) s->last_id = id;
    return rc;
}

/* Reads what is new; sets s->done when the stream should end after pend.
 * Returns -1 on a failure that ends the stream. */
static int sse_poll(sse_stream_t *s) {
    daemon_err_t e = {0};
    /* Job state first, then events: the final state's event is appended in
     * the same transaction as the state change, so if the state read is final
     * the events read afterwards include that event. */
    job_state_t st;
    if (daemon_job_state(s->d, s->job, &st, &e)) return -1;   /* the state only, never the spec */
    int final = job_state_terminal(st);

    json_t *evs = daemon_job_events(s->d, s->job, s->last_id, SSE_BATCH, &e);
    if (!evs) return -1;
    size_t i, n = json_array_size(evs);
    json_t *ev;
    json_array_foreach(evs, i, ev) {
        if (pend_event(s, ev) < 0) { json_decref(evs); return -1; }
        if (state_is_final_event(ev)) { s->done = 1; break; }
    }
    json_decref(evs);
    /* The state was final before the events were read, so a short batch
     * holds everything there will ever be. */
    if (final && n < SSE_BATCH) s->done = 1;
    s->more = !s->done && n == SSE_BATCH;
    s->dirty = 0;
    clock_gettime(CLOCK_MONOTONIC, &s->last_poll);
    return 0;
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    sse_stream_t *s = cls;
    (void)pos;
    for (;;) {
        if (s->pend_off < s->pend_len) {
            size_t n = s->pend_len - s->pend_off;
            if (n > max) n = max;
            memcpy(buf, s->pend + s->pend_off, n);
            s->pend_off += n;
            if (s->pend_off == s->pend_len) s->pend_off = s->pend_len = 0;
            clock_gettime(CLOCK_MONOTONIC, &s->last_out);
            return (ssize_t)n;
        }
        if (s->done || api_stopping(s->srv)) return MHD_CONTENT_READER_END_OF_STREAM;

        if (!s->started) {
            s->started = 1;
            s->seq = daemon_event_seq(s->d);
            if (sse_poll(s) < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
            if (s->pend_len == 0 && !s->done) {
                /* Nothing to replay: send a comment so the client sees the
                 * stream open (headers and first bytes) at once. */
                char c[64];
                size_t n = sse_format_comment(c, sizeof c, "stream open");
                if (pend_append(s, c, n) < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            continue;
        }
        if (s->more) {   /* a backlog longer than one batch: no waiting */
            if (sse_poll(s) < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        /* Wait for anything new, in slices. A notification is for any job's
         * event, so reads are coalesced: at most one per SSE_COALESCE_MS, and
         * one a second regardless (robust against a missed wake-up). */
        int tmo = SSE_SLICE_MS;
        if (s->dirty) {
            double el = since_ms(&s->last_poll);
            tmo = el >= SSE_COALESCE_MS ? 0 : (int)(SSE_COALESCE_MS - el) + 1;
        }
        int w = tmo > 0 ? daemon_event_wait(s->d, &s->seq, tmo) : 0;
        if (w < 0 || api_stopping(s->srv)) return MHD_CONTENT_READER_END_OF_STREAM;
        if (w > 0) s->dirty = 1;
        double el = since_ms(&s->last_poll);
        if ((s->dirty && el >= SSE_COALESCE_MS) || el >= 1000) {
            if (sse_poll(s) < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (s->pend_len == 0 && !s->done && since_ms(&s->last_out) >= API_SSE_HEARTBEAT_MS) {
            char c[64];
            size_t n = sse_format_comment(c, sizeof c, "heartbeat");
            if (pend_append(s, c, n) < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void sse_free(void *cls) {
    sse_stream_t *s = cls;
    if (!s) return;
    if (s->srv) api_sse_count(s->srv, -1);
    free(s->pend);
    free(s);
}

struct MHD_Response *sse_response(api_req_t *r) {
    sse_stream_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->srv = r->srv;
    s->d = r->d;
    snprintf(s->job, sizeof s->job, "%s", r->sse_job);
    s->last_id = r->sse_last_id > 0 ? r->sse_last_id : 0;
    clock_gettime(CLOCK_MONOTONIC, &s->last_out);
    s->last_poll = s->last_out;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                                                  sse_reader, s, sse_free);
    api_sse_count(s->srv, +1);
    if (!resp) { sse_free(s); return NULL; }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    /* The body is the raw event stream, ended by closing the connection: no
     * chunked framing, so line-reading clients see exactly the SSE text and
     * an EOF after the final event. */
    MHD_set_response_options(resp, MHD_RF_HTTP_VERSION_1_0_ONLY, MHD_RO_END);
    return resp;
}
