/* api/routes_status.c — GET /v1/health, GET /v1/status and GET /metrics.
 *
 * /metrics is the Prometheus text exposition (format 0.0.4): the daemon's own
 * families (jobs by state, step counters, images/s, device memory, dataset
 * bytes; daemon_metrics_text), then the families the API derives from the
 * status document (traind_gpu_memory_bytes{device,kind},
 * traind_train_steps_per_second{job,device}) and the API's counters:
 * requests by status, traind_http_requests_total{code="…"}, and connections
 * it ended before their request was in, traind_http_connections_dropped_total{reason="…"}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"
#include "store/job.h"

void route_health(api_req_t *r) {
    api_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void route_status(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0) return;
    json_t *st = daemon_status(r->d);
    if (!st) {
        api_reply_error(r, 500, "internal", "cannot build the status document");
        return;
    }
    api_reply_json(r, 200, st);
}

/* Appends the HTTP request counters to b. */
void api_prom_http(api_server_t *s, prom_buf_t *b) {
    api_code_count_t c[64];
    size_t n = api_request_counts(s, c, 64);
    prom_family(b, "traind_http_requests_total", "counter",
                "HTTP requests answered, by status code.");
    for (size_t i = 0; i < n; i++) {
        char code[16];
        snprintf(code, sizeof code, "%d", c[i].code);
        const char *labels[] = { "code", code, NULL };
        prom_sample(b, "traind_http_requests_total", labels, (double)c[i].n);
    }
    uint64_t evicted, refused, expired;
    api_conn_counts(s, &evicted, &refused, &expired);
    prom_family(b, "traind_http_connections_dropped_total", "counter",
                "Connections ended by the server before their request was in: request_timeout "
                "(--request-timeout-s), per_client_closed (oldest unfinished request of a client at "
                "--max-connections-per-ip), per_client_refused (refused at that limit).");
    static const char *const reasons[] = { "request_timeout", "per_client_closed", "per_client_refused" };
    const uint64_t v[] = { expired, evicted, refused };
    for (size_t i = 0; i < 3; i++) {
        const char *labels[] = { "reason", reasons[i], NULL };
        prom_sample(b, "traind_http_connections_dropped_total", labels, (double)v[i]);
    }
}

void api_prom_status(prom_buf_t *b, const json_t *status) {
    size_t i;
    json_t *dev, *run;
    prom_family(b, "traind_gpu_memory_bytes", "gauge",
                "Device memory in bytes: total, used, held by resident datasets.");
    json_array_foreach(json_object_get(status, "devices"), i, dev) {
        char idx[16];
        snprintf(idx, sizeof idx, "%lld", (long long)json_integer_value(json_object_get(dev, "index")));
        json_t *mem = json_object_get(dev, "memory");
        static const char *const kinds[] = { "total", "used", "datasets" };
        for (size_t k = 0; k < 3; k++) {
            json_t *v = json_object_get(mem, kinds[k]);
            if (!json_is_number(v)) continue;
            const char *labels[] = { "device", idx, "kind", kinds[k], NULL };
            prom_sample(b, "traind_gpu_memory_bytes", labels, json_number_value(v));
        }
    }
    prom_family(b, "traind_train_steps_per_second", "gauge",
                "Optimizer steps per second of running train jobs.");
    json_array_foreach(json_object_get(status, "running"), i, run) {
        job_type_t type;
        int train = job_type_parse(json_string_value(json_object_get(run, "type")), &type) == 0 && type == JOB_TRAIN;
        const char *id = json_string_value(json_object_get(run, "id"));
        double ips = json_number_value(json_object_get(json_object_get(run, "progress"),
                                                       "images_per_s"));
        double bs = json_number_value(json_object_get(run, "batch_size"));
        if (!id || !train || bs <= 0) continue;
        char devs[16];
        snprintf(devs, sizeof devs, "%lld", (long long)json_integer_value(json_object_get(run, "device")));
        const char *labels[] = { "job", id, "device", devs, NULL };
        prom_sample(b, "traind_train_steps_per_second", labels, ips / bs);
    }
}

void route_metrics(api_req_t *r) {
    static const char *const q[] = { NULL };
    if (api_check_query(r, q) < 0) return;
    char *own = daemon_metrics_text(r->d);
    if (!own) {
        api_reply_error(r, 500, "internal", "cannot build the metrics exposition");
        return;
    }
    prom_buf_t b;
    prom_init(&b);
    size_t ol = strlen(own);
    prom_family(&b, "traind_up", "gauge", "1 while the daemon serves.");
    prom_sample(&b, "traind_up", NULL, 1);
    json_t *st = daemon_status(r->d);   /* running[] carries each job's batch_size */
    if (st) api_prom_status(&b, st);
    json_decref(st);
    api_prom_http(r->srv, &b);
    if (b.oom) { free(own); prom_free(&b); api_reply_error(r, 500, "internal", "out of memory"); return; }
    char *text = malloc(ol + (ol && own[ol - 1] != '\n') + b.len + 1);
    if (!text) { free(own); prom_free(&b); api_reply_error(r, 500, "internal", "out of memory"); return; }
    memcpy(text, own, ol);
    size_t n = ol;
    if (ol && own[ol - 1] != '\n') text[n++] = '\n';
    memcpy(text + n, b.buf, b.len);
    n += b.len;
    text[n] = 0;
    free(own);
    prom_free(&b);
    r->status = 200;
    r->kind = API_BODY_TEXT;
    r->text = text;
    r->text_len = n;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
