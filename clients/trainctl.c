/* clients/trainctl.c — the command-line client of traind (SPEC §7).
 *
 * Talks to the daemon's HTTP API (SPEC §3) with libcurl and jansson; owns
 * nothing but the terminal. Commands:
 *
 *   status                                  daemon, devices, datasets, running jobs
 *   datasets                                list datasets
 *   datasets show NAME                      one dataset
 *   datasets load NAME --path DIR | --synthetic N,S,SEED [--wait]
 *   datasets import NAME MANIFEST [--image-size S] [--resize stretch|crop] [--on-error fail|skip] [--wait]
 *   datasets rm NAME                        evict
 *   submit [-f job.json|-] [flags] [--watch]   submit a job (flags build/override the spec)
 *   jobs [--state S] [--type T] [--limit N] [--offset N]
 *   show ID                                 the whole job record
 *   result ID                               eval metrics / debug report / infer outputs
 *   watch ID                                live progress from the event stream
 *   cancel ID
 *   metrics ID [--name NAME] [--since-step N]
 *   checkpoints [--job ID]                  (or: checkpoints show CKPT)
 *   download CKPT NAME [-o FILE]
 *
 * Global options (before or after the command): --url URL, --token TOKEN,
 * --token-file FILE, --json (raw API output), --quiet. Environment:
 * TRAIND_URL (default http://127.0.0.1:8470), TRAIND_TOKEN, TRAIND_TOKEN_FILE.
 *
 * Exit status: 0 success; 1 the API answered with an error (its code and
 * message are printed) or the watched job failed; 2 usage error; 3 the
 * watched job was cancelled; 4 the daemon could not be reached.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TC_EXIT_OK 0
#define TC_EXIT_API 1
#define TC_EXIT_USAGE 2
#define TC_EXIT_CANCELLED 3
#define TC_EXIT_CONN 4

#define TC_DEFAULT_URL "http://127.0.0.1:8470"

/* ---- global options ------------------------------------------------------ */

static struct {
    char url[1024];
    char token[1024];
    int json;          /* raw output */
    int quiet;
} g_opt;

static void tc_die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void tc_die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trainctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see trainctl --help)\n");
    va_end(ap);
    exit(TC_EXIT_USAGE);
}

static void tc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tc_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trainctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* Reads the first line of a token file into g_opt.token. 0 or -1. */
static int tc_read_token_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        tc_err("cannot read token file %s: %s", path, strerror(errno));
        return -1;
    }
    char buf[sizeof g_opt.token];
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = 0;
    if (!n) {
        tc_err("token file %s is empty", path);
        return -1;
    }
    snprintf(g_opt.token, sizeof g_opt.token, "%s", buf);
    return 0;
}

/* ---- HTTP ----------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} tc_buf_t;

static size_t tc_buf_write(char *ptr, size_t size, size_t nmemb, void *ud) {
    tc_buf_t *b = ud;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return 0;   /* curl reports a write error */
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = 0;
    return n;
}

typedef struct {
    long status;       /* HTTP status, 0 when the request did not complete */
    json_t *body;      /* parsed JSON body or NULL */
    char *raw;         /* raw body (owned), NUL-terminated */
    size_t raw_len;
    char curl_err[CURL_ERROR_SIZE];
} tc_resp_t;

static void tc_resp_free(tc_resp_t *r) {
    json_decref(r->body);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

static struct curl_slist *tc_headers(struct curl_slist *h, int json_body) {
    if (g_opt.token[0]) {
        char auth[sizeof g_opt.token + 32];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", g_opt.token);
        h = curl_slist_append(h, auth);
    }
    if (json_body) h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    return h;
}

static void tc_url(char *out, size_t n, const char *path) {
    snprintf(out, n, "%s%s", g_opt.url, path);
}

/* One request. body may be NULL. Returns 0 when an HTTP answer arrived
 * (whatever its status), -1 when the daemon could not be reached. */
static int tc_request(const char *method, const char *path, const json_t *body, tc_resp_t *r) {
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(r->curl_err, sizeof r->curl_err, "curl_easy_init failed");
        return -1;
    }
    char url[2048];
    tc_url(url, sizeof url, path);
    char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *h = tc_headers(NULL, payload != NULL);
    tc_buf_t b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tc_buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (payload) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    } else if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
    CURLcode rc = curl_easy_perform(c);
    int ret = 0;
    if (rc != CURLE_OK) {
        if (!r->curl_err[0]) snprintf(r->curl_err, sizeof r->curl_err, "%s", curl_easy_strerror(rc));
        ret = -1;
        free(b.data);
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        r->raw = b.data ? b.data : strdup("");
        r->raw_len = b.len;
        if (r->raw_len) r->body = json_loadb(r->raw, r->raw_len, 0, NULL);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(payload);
    return ret;
}

/* Prints the API's error ({"error":{"code","message"}}) or a transport error;
 * returns the exit code to use. */
static int tc_report_error(const char *what, int rc, const tc_resp_t *r) {
    if (rc < 0) {
        tc_err("%s: cannot reach traind at %s: %s", what, g_opt.url, r->curl_err);
        return TC_EXIT_CONN;
    }
    json_t *e = r->body ? json_object_get(r->body, "error") : NULL;
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code || msg)
        tc_err("%s: HTTP %ld %s: %s", what, r->status, code ? code : "error", msg ? msg : "");
    else
        tc_err("%s: HTTP %ld: %.300s", what, r->status, r->raw ? r->raw : "");
    return TC_EXIT_API;
}

/* Request that must succeed with a 2xx and a JSON body. Returns the body (new
 * reference) and *status, or NULL after printing the error (*exitcode set). */
static json_t *tc_call(const char *what, const char *method, const char *path, const json_t *body,
                       long *status, int *exitcode) {
    tc_resp_t r;
    int rc = tc_request(method, path, body, &r);
    if (rc < 0 || r.status < 200 || r.status >= 300) {
        *exitcode = tc_report_error(what, rc, &r);
        tc_resp_free(&r);
        return NULL;
    }
    if (status) *status = r.status;
    json_t *j = r.body ? json_incref(r.body) : json_object();
    tc_resp_free(&r);
    *exitcode = TC_EXIT_OK;
    return j;
}

static void tc_print_json(const json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
}

/* Escapes s for a URL path segment or query value into out. */
static void tc_escape(char *out, size_t n, const char *s) {
    char *e = curl_easy_escape(NULL, s, 0);
    snprintf(out, n, "%s", e ? e : "");
    curl_free(e);
}

/* GET <collection>/<id> and print the record as JSON. */
static int tc_show(const char *collection, const char *id, const char *noun) {
    char esc[512], path[700];
    int ec;
    tc_escape(esc, sizeof esc, id);
    snprintf(path, sizeof path, "%s/%s", collection, esc);
    json_t *j = tc_call(noun, "GET", path, NULL, NULL, &ec);
    if (!j) return ec;
    tc_print_json(j);
    json_decref(j);
    return 0;
}

/* DELETE <collection>/<id>; prints the record (--json) or "<noun> <id> <done>". */
static int tc_delete(const char *collection, const char *id, const char *noun, const char *done) {
    char esc[512], path[700], what[64];
    int ec;
    tc_escape(esc, sizeof esc, id);
    snprintf(path, sizeof path, "%s/%s", collection, esc);
    snprintf(what, sizeof what, "delete %s", noun);
    json_t *j = tc_call(what, "DELETE", path, NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) tc_print_json(j);
    else if (!g_opt.quiet) printf("%s %s %s\n", noun, id, done);
    json_decref(j);
    return 0;
}

/* ---- small formatting helpers --------------------------------------------- */

static const char *js(const json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

static int jhas_num(const json_t *o, const char *k) { return json_is_number(json_object_get(o, k)); }
static double jnum(const json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void tc_fmt_bytes(char *out, size_t n, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) { b /= 1024; i++; }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

static void tc_fmt_dur(char *out, size_t n, double s) {
    if (!isfinite(s) || s < 0) { snprintf(out, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

/* Any scalar as short text (for tables). */
static void tc_fmt_scalar(char *out, size_t n, const json_t *v) {
    if (!v || json_is_null(v)) snprintf(out, n, "-");
    else if (json_is_string(v)) snprintf(out, n, "%s", json_string_value(v));
    else if (json_is_integer(v)) snprintf(out, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(out, n, "%.6g", json_real_value(v));
    else if (json_is_true(v)) snprintf(out, n, "true");
    else if (json_is_false(v)) snprintf(out, n, "false");
    else {
        char *s = json_dumps(v, JSON_COMPACT);
        snprintf(out, n, "%s", s ? s : "?");
        free(s);
    }
}

/* The progress object of a job record ("progress":{...}) or the record itself. */
static const json_t *tc_progress_of(const json_t *job) {
    const json_t *p = json_object_get(job, "progress");
    return json_is_object(p) ? p : job;
}

/* A list response may be a bare array or {"jobs":[...]} / {"items":[...]}. */
static const json_t *tc_list_of(const json_t *j, const char *key) {
    if (json_is_array(j)) return j;
    const json_t *a = json_object_get(j, key);
    if (json_is_array(a)) return a;
    a = json_object_get(j, "items");
    if (json_is_array(a)) return a;
    a = json_object_get(j, "data");
    return json_is_array(a) ? a : NULL;
}

/* ---- argument parsing ----------------------------------------------------- */

typedef struct {
    int argc;
    char **argv;
    int i;
} tc_args_t;

/* Global options may appear anywhere; this consumes them. Returns 1 when
 * argv[i] was a global option. */
static int tc_global_opt(tc_args_t *a) {
    const char *s = a->argv[a->i];
    const char *val = NULL;
    #define TC_NEEDVAL(name) do { if (a->i + 1 >= a->argc) tc_die_usage("%s needs a value", name); \
                                   val = a->argv[++a->i]; } while (0)
    if (!strcmp(s, "--url")) { TC_NEEDVAL(s); snprintf(g_opt.url, sizeof g_opt.url, "%s", val); }
    else if (!strncmp(s, "--url=", 6)) snprintf(g_opt.url, sizeof g_opt.url, "%s", s + 6);
    else if (!strcmp(s, "--token")) { TC_NEEDVAL(s); snprintf(g_opt.token, sizeof g_opt.token, "%s", val); }
    else if (!strncmp(s, "--token=", 8)) snprintf(g_opt.token, sizeof g_opt.token, "%s", s + 8);
    else if (!strcmp(s, "--token-file")) { TC_NEEDVAL(s); if (tc_read_token_file(val)) exit(TC_EXIT_USAGE); }
    else if (!strncmp(s, "--token-file=", 13)) { if (tc_read_token_file(s + 13)) exit(TC_EXIT_USAGE); }
    else if (!strcmp(s, "--json")) g_opt.json = 1;
    else if (!strcmp(s, "--quiet") || !strcmp(s, "-q")) g_opt.quiet = 1;
    else return 0;
    #undef TC_NEEDVAL
    return 1;
}

/* Collected per-command arguments after global options are stripped. */
typedef struct {
    int n;
    char **v;
} tc_argv_t;

static const char *tc_flagval(tc_argv_t *av, int *i, const char *flag) {
    if (*i + 1 >= av->n) tc_die_usage("%s needs a value", flag);
    return av->v[++*i];
}

static long tc_parse_long(const char *s, const char *what) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) tc_die_usage("%s: not an integer: '%s'", what, s);
    return v;
}

static double tc_parse_double(const char *s, const char *what) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) tc_die_usage("%s: not a number: '%s'", what, s);
    return v;
}

/* ---- status ---------------------------------------------------------------- */

static int cmd_status(tc_argv_t *av) {
    if (av->n) tc_die_usage("status takes no arguments");
    int ec;
    json_t *j = tc_call("status", "GET", "/v1/status", NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) { tc_print_json(j); json_decref(j); return 0; }

    char up[32];
    tc_fmt_dur(up, sizeof up, jnum(j, "uptime_s") ? jnum(j, "uptime_s") : jnum(j, "uptime"));
    printf("traind %s  backend %s  uptime %s  queue %lld\n", js(j, "version"), js(j, "backend"), up,
           (long long)json_integer_value(json_object_get(j, "queue_length")));
    const json_t *devs = json_object_get(j, "devices");
    size_t i;
    const json_t *d;
    if (json_is_array(devs) && json_array_size(devs)) {
        printf("\n%-4s %-28s %12s %12s %12s\n", "DEV", "NAME", "TOTAL", "USED", "DATASETS");
        json_array_foreach(devs, i, d) {
            char t[32], u[32], ds[32];
            const json_t *m = json_object_get(d, "memory");
            if (!json_is_object(m)) m = d;
            tc_fmt_bytes(t, sizeof t, jnum(m, "total") + jnum(m, "total_bytes"));
            tc_fmt_bytes(u, sizeof u, jnum(m, "used") + jnum(m, "used_bytes"));
            tc_fmt_bytes(ds, sizeof ds, jnum(m, "datasets") + jnum(m, "datasets_bytes") + jnum(m, "by_datasets"));
            printf("%-4lld %-28.28s %12s %12s %12s\n", (long long)json_integer_value(json_object_get(d, "index")),
                   js(d, "name"), t, u, ds);
        }
    }
    const json_t *dss = json_object_get(j, "datasets");
    if (!dss) dss = json_object_get(j, "resident_datasets");
    if (json_is_array(dss) && json_array_size(dss)) {
        printf("\n%-24s %-8s %12s\n", "DATASET", "STATE", "RESIDENT");
        json_array_foreach(dss, i, d) {
            if (json_is_string(d)) { printf("%-24s\n", json_string_value(d)); continue; }
            char b[32];
            tc_fmt_bytes(b, sizeof b, jnum(d, "bytes"));
            printf("%-24.24s %-8s %12s\n", js(d, "name"), js(d, "state"), b);
        }
    }
    const json_t *jobs = json_object_get(j, "running_jobs");
    if (!jobs) jobs = json_object_get(j, "running");
    if (json_is_array(jobs) && json_array_size(jobs)) {
        printf("\n%-16s %-6s %-6s %14s %10s %8s\n", "RUNNING", "TYPE", "DEVICE", "STEP", "IMG/S", "ETA");
        json_array_foreach(jobs, i, d) {
            const json_t *p = tc_progress_of(d);
            char stepbuf[32], eta[32];
            snprintf(stepbuf, sizeof stepbuf, "%lld/%lld", (long long)json_integer_value(json_object_get(p, "step")),
                     (long long)json_integer_value(json_object_get(p, "total_steps")));
            tc_fmt_dur(eta, sizeof eta, jhas_num(p, "eta_s") ? jnum(p, "eta_s") : -1);
            char dev[16];
            tc_fmt_scalar(dev, sizeof dev, json_object_get(d, "device"));
            printf("%-16.16s %-6s %-6s %14s %10.1f %8s\n", js(d, "id"), js(d, "type"), dev, stepbuf,
                   jnum(p, "images_per_s"), eta);
        }
    } else {
        printf("\nno running jobs\n");
    }
    json_decref(j);
    return 0;
}

/* ---- datasets -------------------------------------------------------------- */

static void tc_dataset_row(const json_t *d) {
    char bytes[32];
    double b = jnum(d, "bytes");
    const json_t *bpd = json_object_get(d, "bytes_per_device");
    if (!b && json_is_object(bpd)) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)bpd, k, v) b += json_number_value(v);
    } else if (!b && json_is_array(bpd)) {
        size_t i;
        const json_t *v;
        json_array_foreach(bpd, i, v) b += json_is_number(v) ? json_number_value(v) : jnum(v, "bytes");
    }
    tc_fmt_bytes(bytes, sizeof bytes, b);
    char prog[48] = "";
    const json_t *lp = json_object_get(d, "load");
    if (!json_is_object(lp)) lp = d;
    if (!strcmp(js(d, "state"), "loading")) {
        double f = jhas_num(lp, "progress") ? jnum(lp, "progress") : jnum(lp, "load_progress");
        snprintf(prog, sizeof prog, "%.0f%% %.2f GB/s", f <= 1 ? f * 100 : f,
                 jnum(lp, "gb_per_s") + jnum(lp, "load_gbps") + jnum(lp, "gbps"));
    } else if (jhas_num(lp, "gb_per_s") || jhas_num(lp, "load_gbps")) {
        snprintf(prog, sizeof prog, "%.2f GB/s", jnum(lp, "gb_per_s") + jnum(lp, "load_gbps"));
    }
    printf("%-24.24s %-8s %10lld %12s  %s", js(d, "name"), js(d, "state"),
           (long long)json_integer_value(json_object_get(d, "samples")), bytes, prog);
    if (!strcmp(js(d, "state"), "failed")) printf("  error: %s", js(d, "error"));
    printf("\n");
}

static double tc_now(void);

/* Waits until the dataset is ready or failed. With a bar (imports), shows on
 * stderr: [#####.....] 1234/20000 62% | decoding | 812 img/s, then the load
 * (a line every 2 s when stderr is not a terminal). */
static int tc_wait_dataset(const char *name, int bar) {
    char esc[512], path[700];
    tc_escape(esc, sizeof esc, name);
    snprintf(path, sizeof path, "/v1/datasets/%s", esc);
    int tty = isatty(2), shown = 0;
    double last = 0;
    for (;;) {
        int ec;
        json_t *d = tc_call("dataset", "GET", path, NULL, NULL, &ec);
        if (!d) return ec;
        const char *st = js(d, "state");
        int done = !strcmp(st, "ready") || !strcmp(st, "failed");
        double now = tc_now();
        if (bar && (done || now - last >= (tty ? 0.2 : 2.0))) {
            last = now;
            const char *phase = js(d, "phase");
            double f = jnum(d, "progress");
            if (f < 0) f = 0;
            if (f > 1 || done) f = done && !strcmp(st, "ready") ? 1 : f > 1 ? 1 : f;
            char b[31], what[128];
            int fill = (int)(f * 30 + 0.5);
            for (int i = 0; i < 30; i++) b[i] = i < fill ? '#' : '.';
            b[30] = 0;
            const json_t *dec = json_object_get(d, "decoding");
            if (!strcmp(phase, "decoding") && json_is_object(dec))
                snprintf(what, sizeof what, "%lld/%lld %3.0f%% | decoding | %.0f img/s%s",
                         (long long)json_integer_value(json_object_get(dec, "done")),
                         (long long)json_integer_value(json_object_get(dec, "frames")), f * 100, jnum(d, "images_per_s"),
                         json_integer_value(json_object_get(dec, "skipped")) ? " | some frames skipped" : "");
            else if (!strcmp(phase, "loading"))
                snprintf(what, sizeof what, "%3.0f%% | loading | %.2f GB/s", f * 100, jnum(d, "gb_per_s"));
            else
                snprintf(what, sizeof what, "%3.0f%% | %s", f * 100, done ? st : phase[0] ? phase : st);
            fprintf(stderr, "%s[%s] %s%s", tty ? "\r\033[K" : "", b, what, tty ? "" : "\n");
            fflush(stderr);
            shown = tty;
        }
        if (done) {
            if (shown) fputc('\n', stderr);
            if (g_opt.json) tc_print_json(d);
            else tc_dataset_row(d);
            const json_t *imp = json_object_get(d, "import");
            if (!g_opt.json && json_is_object(imp)) {
                const char *dec = json_string_value(json_object_get(imp, "decoder"));
                printf("import: %lld of %lld frames%s, %lld skipped, %.0f images/s",
                       (long long)json_integer_value(json_object_get(imp, "imported")),
                       (long long)json_integer_value(json_object_get(imp, "frames")),
                       json_is_true(json_object_get(imp, "cache_hit")) ? " (from the cache)" : "",
                       (long long)json_integer_value(json_object_get(imp, "skipped")),
                       jnum(imp, "images_per_s"));
                if (dec && strcmp(dec, "cpu") != 0)   /* a GPU decoder beside the CPU's */
                    printf(", %lld decoded by %s", (long long)json_integer_value(json_object_get(imp, "gpu_frames")),
                           dec);
                printf("\n");
                size_t i;
                const json_t *r;
                json_array_foreach(json_object_get(imp, "skip_reasons"), i, r) printf("  skipped: %s\n", json_string_value(r));
            }
            int failed = !strcmp(st, "failed");
            json_decref(d);
            return failed ? TC_EXIT_API : 0;
        }
        json_decref(d);
        usleep(200 * 1000);
    }
}

/* POST /v1/datasets with req (taken): then waits (with a progress bar for an
 * import) or prints the new record. The exit status. */
static int tc_dataset_post(const char *what, json_t *req, const char *name, int wait, int importing) {
    int ec;
    json_t *d = tc_call(what, "POST", "/v1/datasets", req, NULL, &ec);
    json_decref(req);
    if (!d) return ec;
    if (wait) {
        json_decref(d);
        return tc_wait_dataset(name, importing);
    }
    if (g_opt.json) tc_print_json(d);
    else if (!g_opt.quiet) printf("dataset %s: %s (trainctl datasets show %s)\n", name, js(d, "state"), name);
    json_decref(d);
    return 0;
}

/* A path the daemon resolves itself: a relative one is made absolute here. */
static json_t *tc_abs_path(const char *p) {
    char abs[4096];
    if (p[0] != '/' && getcwd(abs, sizeof abs - 1)) {
        size_t l = strlen(abs);
        snprintf(abs + l, sizeof abs - l, "/%s", p);
        return json_string(abs);
    }
    return json_string(p);
}

static int cmd_datasets(tc_argv_t *av) {
    int ec;
    if (av->n == 0) {
        json_t *j = tc_call("datasets", "GET", "/v1/datasets", NULL, NULL, &ec);
        if (!j) return ec;
        if (g_opt.json) { tc_print_json(j); json_decref(j); return 0; }
        const json_t *list = tc_list_of(j, "datasets");
        printf("%-24s %-8s %10s %12s  %s\n", "NAME", "STATE", "SAMPLES", "BYTES", "LOAD");
        size_t i;
        const json_t *d;
        if (list) json_array_foreach(list, i, d) tc_dataset_row(d);
        json_decref(j);
        return 0;
    }
    const char *sub = av->v[0];
    if (!strcmp(sub, "show")) {
        if (av->n != 2) tc_die_usage("usage: datasets show NAME");
        return tc_show("/v1/datasets", av->v[1], "dataset");
    }
    if (!strcmp(sub, "rm") || !strcmp(sub, "delete")) {
        if (av->n != 2) tc_die_usage("usage: datasets rm NAME");
        return tc_delete("/v1/datasets", av->v[1], "dataset", "evicted");
    }
    if (!strcmp(sub, "load")) {
        if (av->n < 2 || av->v[1][0] == '-') tc_die_usage("usage: datasets load NAME --path DIR | --synthetic N,S,SEED");
        const char *name = av->v[1], *dir = NULL, *syn = NULL;
        int wait = 0;
        for (int i = 2; i < av->n; i++) {
            if (!strcmp(av->v[i], "--path")) dir = tc_flagval(av, &i, "--path");
            else if (!strcmp(av->v[i], "--synthetic")) syn = tc_flagval(av, &i, "--synthetic");
            else if (!strcmp(av->v[i], "--wait")) wait = 1;
            else tc_die_usage("datasets load: unknown argument '%s'", av->v[i]);
        }
        if (!!dir == !!syn) tc_die_usage("datasets load: give exactly one of --path DIR or --synthetic N,S,SEED");
        json_t *req = json_pack("{s:s}", "name", name);
        if (dir) {
            json_object_set_new(req, "path", tc_abs_path(dir));
        } else {
            long long n, s, seed;
            char extra;
            if (sscanf(syn, "%lld,%lld,%lld%c", &n, &s, &seed, &extra) != 3)
                tc_die_usage("--synthetic wants N,S,SEED (samples, image size, seed), got '%s'", syn);
            json_object_set_new(req, "synthetic", json_pack("{s:I,s:I,s:I}", "samples", (json_int_t)n,
                                                             "image_size", (json_int_t)s, "seed", (json_int_t)seed));
        }
        return tc_dataset_post("load dataset", req, name, wait, 0);
    }
    if (!strcmp(sub, "import")) {
        const char *usage = "usage: datasets import NAME MANIFEST [--image-size S] [--resize stretch|crop] "
                            "[--on-error fail|skip] [--wait]";
        if (av->n < 3 || av->v[1][0] == '-' || av->v[2][0] == '-') tc_die_usage("%s", usage);
        const char *name = av->v[1], *manifest = av->v[2], *resize = NULL, *on_error = NULL;
        long long size = -1;
        int wait = 0;
        for (int i = 3; i < av->n; i++) {
            if (!strcmp(av->v[i], "--image-size")) {
                const char *v = tc_flagval(av, &i, "--image-size");
                char *end;
                size = strtoll(v, &end, 10);
                if (end == v || *end || size < 14 || size > 4096)
                    tc_die_usage("--image-size wants an integer in 14..4096, got '%s'", v);
            } else if (!strcmp(av->v[i], "--resize")) resize = tc_flagval(av, &i, "--resize");
            else if (!strcmp(av->v[i], "--on-error")) on_error = tc_flagval(av, &i, "--on-error");
            else if (!strcmp(av->v[i], "--wait")) wait = 1;
            else tc_die_usage("datasets import: unknown argument '%s'", av->v[i]);
        }
        json_t *imp = json_pack("{s:o}", "manifest", tc_abs_path(manifest));
        if (size > 0) json_object_set_new(imp, "image_size", json_integer(size));
        if (resize) json_object_set_new(imp, "resize", json_string(resize));
        if (on_error) json_object_set_new(imp, "on_error", json_string(on_error));
        json_t *req = json_pack("{s:s, s:o}", "name", name, "import", imp);
        return tc_dataset_post("import dataset", req, name, wait, 1);
    }
    tc_die_usage("datasets: unknown subcommand '%s' (load, import, rm, show)", sub);
}

/* ---- jobs ------------------------------------------------------------------ */

static void tc_job_row(const json_t *jb) {
    const json_t *p = tc_progress_of(jb);
    char stepbuf[40];
    long long st = json_integer_value(json_object_get(p, "step"));
    long long tot = json_integer_value(json_object_get(p, "total_steps"));
    if (tot) snprintf(stepbuf, sizeof stepbuf, "%lld/%lld", st, tot);
    else snprintf(stepbuf, sizeof stepbuf, "-");
    printf("%-16.16s %-6s %-11s %4lld %-16.16s %14s  %s\n", js(jb, "id"), js(jb, "type"), js(jb, "state"),
           (long long)json_integer_value(json_object_get(jb, "priority")), js(jb, "dataset"), stepbuf,
           json_is_string(json_object_get(jb, "created_at")) ? js(jb, "created_at") : js(jb, "created"));
}

static int cmd_jobs(tc_argv_t *av) {
    char q[1024] = "";
    size_t ql = 0;
    for (int i = 0; i < av->n; i++) {
        const char *key = NULL;
        if (!strcmp(av->v[i], "--state")) key = "state";
        else if (!strcmp(av->v[i], "--type")) key = "type";
        else if (!strcmp(av->v[i], "--limit")) key = "limit";
        else if (!strcmp(av->v[i], "--offset")) key = "offset";
        else tc_die_usage("jobs: unknown argument '%s'", av->v[i]);
        char flag[16];
        snprintf(flag, sizeof flag, "--%s", key);
        const char *val = tc_flagval(av, &i, flag);
        char esc[256];
        tc_escape(esc, sizeof esc, val);
        ql += snprintf(q + ql, sizeof q - ql, "%c%s=%s", ql ? '&' : '?', key, esc);
        if (ql >= sizeof q) tc_die_usage("jobs: query too long");
    }
    char path[1200];
    snprintf(path, sizeof path, "/v1/jobs%s", q);
    int ec;
    json_t *j = tc_call("jobs", "GET", path, NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) { tc_print_json(j); json_decref(j); return 0; }
    const json_t *list = tc_list_of(j, "jobs");
    printf("%-16s %-6s %-11s %4s %-16s %14s  %s\n", "ID", "TYPE", "STATE", "PRIO", "DATASET", "STEP", "CREATED");
    size_t i;
    const json_t *jb;
    if (list) json_array_foreach(list, i, jb) tc_job_row(jb);
    json_decref(j);
    return 0;
}

static int tc_job_path(char *out, size_t n, const char *id, const char *suffix) {
    char esc[512];
    tc_escape(esc, sizeof esc, id);
    return snprintf(out, n, "/v1/jobs/%s%s", esc, suffix);
}

static void tc_print_kv_obj(const char *indent, const json_t *o) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        char s[256];
        if (json_is_object(v) && json_object_get(v, "value")) v = json_object_get(v, "value");
        tc_fmt_scalar(s, sizeof s, v);
        printf("%s%-22s %s\n", indent, k, s);
    }
}

static int cmd_show(tc_argv_t *av) {
    if (av->n != 1) tc_die_usage("usage: show JOB_ID");
    char path[700];
    tc_job_path(path, sizeof path, av->v[0], "");
    int ec;
    json_t *j = tc_call("show", "GET", path, NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) { tc_print_json(j); json_decref(j); return 0; }
    printf("job        %s\n", js(j, "id"));
    printf("type       %s\n", js(j, "type"));
    printf("state      %s\n", js(j, "state"));
    printf("dataset    %s\n", js(j, "dataset"));
    printf("priority   %lld\n", (long long)json_integer_value(json_object_get(j, "priority")));
    const json_t *p = tc_progress_of(j);
    if (jhas_num(p, "total_steps")) {
        char eta[32];
        tc_fmt_dur(eta, sizeof eta, jhas_num(p, "eta_s") ? jnum(p, "eta_s") : -1);
        printf("progress   step %lld/%lld  epoch %lld  %.1f img/s  ETA %s\n",
               (long long)json_integer_value(json_object_get(p, "step")),
               (long long)json_integer_value(json_object_get(p, "total_steps")),
               (long long)json_integer_value(json_object_get(p, "epoch")), jnum(p, "images_per_s"), eta);
    }
    const char *tk[] = {"created_at", "started_at", "finished_at", "created", "started", "finished"};
    for (size_t i = 0; i < sizeof tk / sizeof tk[0]; i++) {
        const json_t *v = json_object_get(j, tk[i]);
        if (v && !json_is_null(v)) {
            char s[64];
            tc_fmt_scalar(s, sizeof s, v);
            printf("%-10s %s\n", tk[i], s);
        }
    }
    if (json_is_string(json_object_get(j, "resumed_from"))) printf("resumed    from %s\n", js(j, "resumed_from"));
    if (json_is_string(json_object_get(j, "error"))) printf("error      %s\n", js(j, "error"));
    const json_t *plan = json_object_get(j, "plan");
    if (!plan) plan = json_object_get(j, "dtype_plan");
    if (json_is_object(plan)) { printf("dtype plan\n"); tc_print_kv_obj("  ", plan); }
    const json_t *m = json_object_get(j, "metrics");
    if (!m) m = json_object_get(j, "latest_metrics");
    if (json_is_object(m) && json_object_size(m)) { printf("latest metrics\n"); tc_print_kv_obj("  ", m); }
    const json_t *res = json_object_get(j, "result");
    if (res && !json_is_null(res)) printf("result     available (trainctl result %s)\n", js(j, "id"));
    json_decref(j);
    return 0;
}

/* Eval results as a human table; anything else as JSON. */
static void tc_print_result(const json_t *r) {
    const json_t *res = json_object_get(r, "result");
    if (json_is_object(res)) r = res;
    if (!jhas_num(r, "mpjpe_mm") && !jhas_num(r, "mpjpe")) { tc_print_json(r); return; }
    double mp = jhas_num(r, "mpjpe_mm") ? jnum(r, "mpjpe_mm") : jnum(r, "mpjpe");
    printf("samples               %lld\n", (long long)json_integer_value(json_object_get(r, "samples")));
    printf("MPJPE                 %8.2f mm\n", mp);
    const char *pa[] = {"pa_mpjpe_mm", "pa_mpjpe"};
    for (int i = 0; i < 2; i++)
        if (jhas_num(r, pa[i])) { printf("PA-MPJPE              %8.2f mm\n", jnum(r, pa[i])); break; }
    const char *mean[] = {"mean_predictor_mpjpe_mm", "mean_predictor_mpjpe", "baseline_mpjpe_mm"};
    for (int i = 0; i < 3; i++)
        if (jhas_num(r, mean[i])) {
            double b = jnum(r, mean[i]);
            if (mp < b) printf("mean predictor MPJPE  %8.2f mm  (the model's error is %.2fx of it)\n", b, b > 0 ? mp / b : 0);
            else printf("mean predictor MPJPE  %8.2f mm  (the model does not beat it)\n", b);
            break;
        }
    const char *auc[] = {"auc_0_50mm", "auc", "auc_0_50"};
    for (int i = 0; i < 3; i++)
        if (jhas_num(r, auc[i])) { printf("AUC 0-50 mm           %8.3f\n", jnum(r, auc[i])); break; }
    const json_t *pck = json_object_get(r, "pck");
    const json_t *thr = json_object_get(r, "pck_thresholds_mm");
    if (json_is_object(pck) && json_is_array(thr)) {
        printf("PCK                  ");   /* in threshold order */
        size_t i;
        const json_t *t;
        json_array_foreach(thr, i, t) {
            char k[32];
            snprintf(k, sizeof k, "%g", json_number_value(t));
            printf(" %smm:%.3f", k, json_number_value(json_object_get(pck, k)));
        }
        printf("\n");
    } else if (json_is_object(pck)) {
        printf("PCK                  ");
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)pck, k, v) printf(" %s:%.3f", k, json_number_value(v));
        printf("\n");
    } else if (json_is_array(pck)) {
        printf("PCK                  ");
        size_t i;
        const json_t *v;
        json_array_foreach(pck, i, v) {
            if (json_is_number(v) && json_is_number(json_array_get(thr, i)))
                printf(" %gmm:%.3f", json_number_value(json_array_get(thr, i)), json_number_value(v));
            else if (json_is_number(v)) printf(" %.3f", json_number_value(v));
            else printf(" %gmm:%.3f", jnum(v, "threshold_mm"), jnum(v, "value"));
        }
        printf("\n");
    }
    const json_t *pj = json_object_get(r, "per_joint_mpjpe_mm");
    if (!pj) pj = json_object_get(r, "per_joint_mpjpe");
    if (json_is_array(pj)) {
        printf("per-joint MPJPE (mm) ");
        size_t i;
        const json_t *v;
        json_array_foreach(pj, i, v) printf("%s%.1f", i ? " " : " ", json_number_value(v));
        printf("\n");
    }
}

static int cmd_result(tc_argv_t *av) {
    if (av->n != 1) tc_die_usage("usage: result JOB_ID");
    char path[700];
    tc_job_path(path, sizeof path, av->v[0], "/result");
    int ec;
    json_t *j = tc_call("result", "GET", path, NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) tc_print_json(j);
    else tc_print_result(j);
    json_decref(j);
    return 0;
}

static int cmd_cancel(tc_argv_t *av) {
    if (av->n != 1) tc_die_usage("usage: cancel JOB_ID");
    char path[700];
    tc_job_path(path, sizeof path, av->v[0], "/cancel");
    int ec;
    json_t *j = tc_call("cancel", "POST", path, NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) tc_print_json(j);
    else if (!g_opt.quiet) printf("%s: %s\n", av->v[0], js(j, "state"));
    json_decref(j);
    return 0;
}

static int cmd_metrics(tc_argv_t *av) {
    if (av->n < 1 || av->v[0][0] == '-') tc_die_usage("usage: metrics JOB_ID [--name NAME] [--since-step N]");
    char q[600] = "";
    size_t ql = 0;
    for (int i = 1; i < av->n; i++) {
        const char *key = NULL;
        if (!strcmp(av->v[i], "--name")) key = "name";
        else if (!strcmp(av->v[i], "--since-step")) key = "since_step";
        else tc_die_usage("metrics: unknown argument '%s'", av->v[i]);
        const char *val = tc_flagval(av, &i, av->v[i]);
        char esc[256];
        tc_escape(esc, sizeof esc, val);
        ql += snprintf(q + ql, sizeof q - ql, "%c%s=%s", ql ? '&' : '?', key, esc);
        if (ql >= sizeof q) tc_die_usage("metrics: query too long");
    }
    char path[1400];
    int n = tc_job_path(path, sizeof path, av->v[0], "/metrics");
    snprintf(path + n, sizeof path - n, "%s", q);
    int ec;
    json_t *j = tc_call("metrics", "GET", path, NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) { tc_print_json(j); json_decref(j); return 0; }
    const json_t *list = tc_list_of(j, "metrics");
    if (!list) list = tc_list_of(j, "series");
    printf("%-20s %8s %14s  %s\n", "NAME", "STEP", "VALUE", "TIME");
    size_t i;
    const json_t *m;
    const char *filter_name = NULL;
    for (int k = 1; k + 1 < av->n; k++) if (!strcmp(av->v[k], "--name")) filter_name = av->v[k + 1];
    if (list) json_array_foreach(list, i, m) {
        char t[64];
        tc_fmt_scalar(t, sizeof t, json_object_get(m, "time"));
        const char *nm = json_is_string(json_object_get(m, "name")) ? js(m, "name") : (filter_name ? filter_name : "-");
        printf("%-20.20s %8lld %14.6g  %s\n", nm, (long long)json_integer_value(json_object_get(m, "step")),
               jnum(m, "value"), t);
    }
    json_decref(j);
    return 0;
}

static int cmd_checkpoints(tc_argv_t *av) {
    int ec;
    if (av->n >= 1 && !strcmp(av->v[0], "show")) {
        if (av->n != 2) tc_die_usage("usage: checkpoints show CKPT_ID");
        return tc_show("/v1/checkpoints", av->v[1], "checkpoint");
    }
    if (av->n >= 1 && !strcmp(av->v[0], "rm")) {
        if (av->n != 2) tc_die_usage("usage: checkpoints rm CKPT_ID");
        return tc_delete("/v1/checkpoints", av->v[1], "checkpoint", "deleted");
    }
    char path[700] = "/v1/checkpoints";
    for (int i = 0; i < av->n; i++) {
        if (!strcmp(av->v[i], "--job")) {
            char esc[512];
            tc_escape(esc, sizeof esc, tc_flagval(av, &i, "--job"));
            snprintf(path, sizeof path, "/v1/checkpoints?job=%s", esc);
        } else {
            tc_die_usage("checkpoints: unknown argument '%s'", av->v[i]);
        }
    }
    json_t *j = tc_call("checkpoints", "GET", path, NULL, NULL, &ec);
    if (!j) return ec;
    if (g_opt.json) { tc_print_json(j); json_decref(j); return 0; }
    const json_t *list = tc_list_of(j, "checkpoints");
    printf("%-20s %-16s %8s %12s  %-16s %s\n", "ID", "JOB", "STEP", "BYTES", "SHA256", "PATH");
    size_t i;
    const json_t *c;
    if (list) json_array_foreach(list, i, c) {
        char b[32], id[64];
        tc_fmt_bytes(b, sizeof b, jnum(c, "bytes"));
        tc_fmt_scalar(id, sizeof id, json_object_get(c, "id"));
        printf("%-20.20s %-16.16s %8lld %12s  %-16.16s %s\n", id, js(c, "job"),
               (long long)json_integer_value(json_object_get(c, "step")), b, js(c, "sha256"), js(c, "path"));
    }
    json_decref(j);
    return 0;
}

static int cmd_download(tc_argv_t *av) {
    const char *ck = NULL, *name = NULL, *out = NULL;
    for (int i = 0; i < av->n; i++) {
        if (!strcmp(av->v[i], "-o") || !strcmp(av->v[i], "--output")) out = tc_flagval(av, &i, "-o");
        else if (!ck) ck = av->v[i];
        else if (!name) name = av->v[i];
        else tc_die_usage("download: unexpected argument '%s'", av->v[i]);
    }
    if (!ck || !name) tc_die_usage("usage: download CKPT_ID FILE_NAME [-o OUT]");
    if (!out) out = name;
    char e1[512], e2[512], path[1200], url[2400];
    tc_escape(e1, sizeof e1, ck);
    tc_escape(e2, sizeof e2, name);
    snprintf(path, sizeof path, "/v1/checkpoints/%s/files/%s", e1, e2);
    tc_url(url, sizeof url, path);

    /* Write to OUT.part and rename on success, so a failed download leaves
     * no half file under the final name. */
    char part[4200];
    snprintf(part, sizeof part, "%s.part", out);
    FILE *f = fopen(part, "wb");
    if (!f) { tc_err("download: cannot create %s: %s", part, strerror(errno)); return TC_EXIT_API; }
    CURL *c = curl_easy_init();
    if (!c) { fclose(f); unlink(part); tc_err("download: curl_easy_init failed"); return TC_EXIT_CONN; }
    struct curl_slist *h = tc_headers(NULL, 0);
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);   /* default writer: fwrite */
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_off_t got = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &got);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    int werr = fclose(f);
    if (rc != CURLE_OK) {
        unlink(part);
        tc_err("download: cannot reach traind at %s: %s", g_opt.url, cerr[0] ? cerr : curl_easy_strerror(rc));
        return TC_EXIT_CONN;
    }
    if (status != 200) {
        /* The body is the API's JSON error; read it back for the message. */
        tc_resp_t r = {0};
        r.status = status;
        FILE *rf = fopen(part, "rb");
        if (rf) {
            tc_buf_t b = {0};
            char tmp[4096];
            size_t n;
            while ((n = fread(tmp, 1, sizeof tmp, rf)) > 0 && b.len < 65536) tc_buf_write(tmp, 1, n, &b);
            fclose(rf);
            r.raw = b.data;
            r.raw_len = b.len;
            if (b.len) r.body = json_loadb(b.data, b.len, 0, NULL);
        }
        unlink(part);
        int ec = tc_report_error("download", 0, &r);
        tc_resp_free(&r);
        return ec;
    }
    if (werr) { unlink(part); tc_err("download: writing %s failed", part); return TC_EXIT_API; }
    if (rename(part, out)) {
        tc_err("download: cannot rename %s to %s: %s", part, out, strerror(errno));
        unlink(part);
        return TC_EXIT_API;
    }
    if (!g_opt.quiet) fprintf(stderr, "downloaded %s (%lld bytes)\n", out, (long long)got);
    return 0;
}

/* ---- submit ---------------------------------------------------------------- */

/* Sets a dotted key ("optim.lr.heads") in obj, creating objects on the way. */
static void tc_set_path(json_t *obj, const char *dotted, json_t *val) {
    char key[256];
    snprintf(key, sizeof key, "%s", dotted);
    char *s = key, *dot;
    while ((dot = strchr(s, '.'))) {
        *dot = 0;
        json_t *sub = json_object_get(obj, s);
        if (!json_is_object(sub)) {
            sub = json_object();
            json_object_set_new(obj, s, sub);
        }
        obj = sub;
        s = dot + 1;
    }
    json_object_set_new(obj, s, val);
}

/* "1,2,5" or "0-9" or a mix → JSON array of ints. */
static json_t *tc_parse_indices(const char *s) {
    json_t *a = json_array();
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long lo = strtol(p, &end, 10);
        if (end == p || errno) { json_decref(a); tc_die_usage("--indices: bad list '%s'", s); }
        long hi = lo;
        p = end;
        if (*p == '-') {
            const char *q = p + 1;
            hi = strtol(q, &end, 10);
            if (end == q || hi < lo || hi - lo > 10000000) { json_decref(a); tc_die_usage("--indices: bad range in '%s'", s); }
            p = end;
        }
        for (long v = lo; v <= hi; v++) json_array_append_new(a, json_integer(v));
        if (*p == ',') p++;
        else if (*p) { json_decref(a); tc_die_usage("--indices: bad list '%s'", s); }
    }
    return a;
}

static int cmd_watch_id(const char *id);

static int cmd_submit(tc_argv_t *av) {
    json_t *spec = NULL;
    int watch = 0;
    /* First pass: -f FILE is the base spec; flags override. */
    for (int i = 0; i < av->n; i++) {
        if (!strcmp(av->v[i], "-f") || !strcmp(av->v[i], "--file")) {
            const char *fn = tc_flagval(av, &i, "-f");
            json_error_t je;
            json_t *j = !strcmp(fn, "-") ? json_loadf(stdin, 0, &je) : json_load_file(fn, 0, &je);
            if (!j) {
                json_decref(spec);
                tc_die_usage("submit: %s: line %d: %s", fn, je.line, je.text);
            }
            if (!json_is_object(j)) {
                json_decref(j);
                json_decref(spec);
                tc_die_usage("submit: %s: the job spec must be a JSON object", fn);
            }
            json_decref(spec);
            spec = j;
        }
    }
    if (!spec) spec = json_object();
    for (int i = 0; i < av->n; i++) {
        const char *f = av->v[i];
        #define V() tc_flagval(av, &i, f)
        if (!strcmp(f, "-f") || !strcmp(f, "--file")) { i++; continue; }
        else if (!strcmp(f, "--watch")) watch = 1;
        else if (!strcmp(f, "--type")) tc_set_path(spec, "type", json_string(V()));
        else if (!strcmp(f, "--dataset")) tc_set_path(spec, "dataset", json_string(V()));
        else if (!strcmp(f, "--priority")) tc_set_path(spec, "priority", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--seed")) tc_set_path(spec, "seed", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--submission-id")) tc_set_path(spec, "submission_id", json_string(V()));
        else if (!strcmp(f, "--precision")) tc_set_path(spec, "precision.compute", json_string(V()));
        else if (!strcmp(f, "--backbone")) tc_set_path(spec, "model.backbone", json_string(V()));
        else if (!strcmp(f, "--registers")) tc_set_path(spec, "model.registers", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--weights")) tc_set_path(spec, "model.weights", json_string(V()));
        else if (!strcmp(f, "--freeze-layers")) tc_set_path(spec, "model.freeze_layers", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--batch-size")) tc_set_path(spec, "batch_size", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--steps")) tc_set_path(spec, "steps", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--epochs")) tc_set_path(spec, "epochs", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--lr-backbone")) tc_set_path(spec, "optim.lr.backbone", json_real(tc_parse_double(V(), f)));
        else if (!strcmp(f, "--lr-heads")) tc_set_path(spec, "optim.lr.heads", json_real(tc_parse_double(V(), f)));
        else if (!strcmp(f, "--weight-decay")) tc_set_path(spec, "optim.weight_decay", json_real(tc_parse_double(V(), f)));
        else if (!strcmp(f, "--warmup-steps")) tc_set_path(spec, "optim.warmup_steps", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--schedule")) tc_set_path(spec, "optim.schedule", json_string(V()));
        else if (!strcmp(f, "--eval-every")) tc_set_path(spec, "eval_every", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--checkpoint-every")) tc_set_path(spec, "checkpoint_every", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--keep-checkpoints")) tc_set_path(spec, "keep_checkpoints", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--resume-from")) tc_set_path(spec, "resume_from", json_string(V()));
        else if (!strcmp(f, "--checkpoint")) tc_set_path(spec, "checkpoint", json_string(V()));
        else if (!strcmp(f, "--batches")) tc_set_path(spec, "batches", json_integer(tc_parse_long(V(), f)));
        else if (!strcmp(f, "--indices")) tc_set_path(spec, "indices", tc_parse_indices(V()));
        else if (!strcmp(f, "--split")) {
            /* train: "0.8,0.9" → train [0,0.8], val [0.8,... ] is ambiguous; take "train|val" for eval. */
            tc_set_path(spec, "split", json_string(V()));
        } else if (!strcmp(f, "--set")) {
            /* --set key.path=JSON (value parsed as JSON, else taken as a string) */
            const char *kv = V();
            const char *eq = strchr(kv, '=');
            if (!eq || eq == kv) { json_decref(spec); tc_die_usage("--set wants KEY=VALUE, got '%s'", kv); }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
            tc_set_path(spec, key, v ? v : json_string(eq + 1));
        } else {
            json_decref(spec);
            tc_die_usage("submit: unknown argument '%s'", f);
        }
        #undef V
    }
    if (!json_object_get(spec, "type")) { json_decref(spec); tc_die_usage("submit: no job type (--type train|eval|debug|infer or -f job.json)"); }
    if (!json_object_get(spec, "dataset")) { json_decref(spec); tc_die_usage("submit: no dataset (--dataset NAME)"); }
    int ec;
    long status = 0;
    json_t *j = tc_call("submit", "POST", "/v1/jobs", spec, &status, &ec);
    json_decref(spec);
    if (!j) return ec;
    char id[256];
    tc_fmt_scalar(id, sizeof id, json_object_get(j, "id"));
    if (g_opt.json) tc_print_json(j);
    else if (g_opt.quiet) printf("%s\n", id);
    else printf("%s %s (%s)\n", status == 200 ? "existing job" : "submitted", id, js(j, "state"));
    json_decref(j);
    if (watch) {
        fflush(stdout);
        return cmd_watch_id(id);
    }
    return 0;
}

/* ---- watch (SSE) ------------------------------------------------------------ */

typedef struct {
    tc_buf_t line;          /* partial line */
    char ev_type[64];       /* current event's fields */
    tc_buf_t ev_data;
    char ev_id[64];
    char last_id[64];       /* last dispatched id (for Last-Event-ID) */
    char state[32];         /* latest job state seen */
    int terminal;
    long step, total;
    int epoch;
    double ips, eta;
    char loss_name[64];
    double loss;
    int have_loss;
    int tty;
    double last_print;
    long events;
    int bar_shown;
} tc_watch_t;

static double tc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int tc_state_terminal(const char *s) {
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

static void tc_watch_bar(tc_watch_t *w, int force) {
    double now = tc_now();
    if (!force && !w->tty && now - w->last_print < 2.0) return;
    if (!force && w->tty && now - w->last_print < 0.1) return;
    w->last_print = now;
    char eta[32], bar[41];
    tc_fmt_dur(eta, sizeof eta, w->eta);
    int width = 30;
    double frac = w->total > 0 ? (double)w->step / (double)w->total : 0;
    if (frac > 1) frac = 1;
    int fill = (int)(frac * width + 0.5);
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    char loss[96] = "";
    if (w->have_loss) snprintf(loss, sizeof loss, " | %s %.4g", w->loss_name, w->loss);
    fprintf(stderr, "%s[%s] %ld/%ld %3.0f%% | ep %d | %.1f img/s | ETA %s%s%s", w->tty ? "\r\033[K" : "", bar,
            w->step, w->total, frac * 100, w->epoch, w->ips, eta, loss, w->tty ? "" : "\n");
    fflush(stderr);
    w->bar_shown = w->tty;
}

static void tc_watch_line_break(tc_watch_t *w) {
    if (w->bar_shown) { fputc('\n', stderr); w->bar_shown = 0; }
}

/* Per-step training telemetry (loss terms, learning rates, gradient norm):
 * too frequent for a line each; `trainctl metrics` has the series. */
static int tc_metric_per_step(const char *nm) {
    return !strncmp(nm, "loss", 4) || !strncmp(nm, "lr", 2) || !strncmp(nm, "grad_norm", 9);
}

static void tc_watch_dispatch(tc_watch_t *w) {
    if (w->ev_id[0]) snprintf(w->last_id, sizeof w->last_id, "%s", w->ev_id);
    if (!w->ev_data.len && !w->ev_type[0]) return;
    w->events++;
    const char *type = w->ev_type[0] ? w->ev_type : "message";
    json_t *d = w->ev_data.len ? json_loadb(w->ev_data.data, w->ev_data.len, 0, NULL) : NULL;
    if (g_opt.json) {
        printf("{\"id\":%s%s%s,\"event\":\"%s\",\"data\":%s}\n", w->ev_id[0] ? "\"" : "", w->ev_id[0] ? w->ev_id : "null",
               w->ev_id[0] ? "\"" : "", type, w->ev_data.len && d ? w->ev_data.data : "null");
        fflush(stdout);
    }
    /* Payloads may be flat or wrap the object: {"progress":{...}}. */
    const json_t *o = d;
    if (json_is_object(d) && json_is_object(json_object_get(d, type))) o = json_object_get(d, type);
    if (!strcmp(type, "state") && o) {
        const char *s = json_is_string(o) ? json_string_value(o) : json_string_value(json_object_get(o, "state"));
        if (s) {
            snprintf(w->state, sizeof w->state, "%s", s);
            if (!g_opt.json) {
                tc_watch_line_break(w);
                const char *err = json_string_value(json_object_get(o, "error"));
                if (!err) err = json_string_value(json_object_get(o, "reason"));
                fprintf(stderr, "state: %s%s%s\n", s, err ? " — " : "", err ? err : "");
            }
            if (tc_state_terminal(s)) w->terminal = 1;
        }
    } else if (!strcmp(type, "progress") && json_is_object(o)) {
        if (jhas_num(o, "step")) w->step = (long)jnum(o, "step");
        if (jhas_num(o, "total_steps")) w->total = (long)jnum(o, "total_steps");
        if (jhas_num(o, "epoch")) w->epoch = (int)jnum(o, "epoch");
        if (jhas_num(o, "images_per_s")) w->ips = jnum(o, "images_per_s");
        w->eta = jhas_num(o, "eta_s") ? jnum(o, "eta_s") : -1;
        if (!g_opt.json) tc_watch_bar(w, w->total && w->step >= w->total);
    } else if (!strcmp(type, "metric") && json_is_object(o)) {
        const char *nm = json_string_value(json_object_get(o, "name"));
        if (nm && jhas_num(o, "value")) {
            /* The bar shows the training loss; other metrics get a line. */
            if (!strcmp(nm, "loss") || !strcmp(nm, "train_loss") || !strcmp(nm, "train/loss")) {
                snprintf(w->loss_name, sizeof w->loss_name, "%s", nm);
                w->loss = jnum(o, "value");
                w->have_loss = 1;
            } else if (!g_opt.json && !tc_metric_per_step(nm)) {
                tc_watch_line_break(w);
                fprintf(stderr, "metric %s = %.6g (step %lld)\n", nm, jnum(o, "value"),
                        (long long)json_integer_value(json_object_get(o, "step")));
            }
        }
    } else if (!strcmp(type, "checkpoint") && !g_opt.json) {
        tc_watch_line_break(w);
        char id[64];
        tc_fmt_scalar(id, sizeof id, json_object_get(o, "id"));
        fprintf(stderr, "checkpoint %s at step %lld\n", id, (long long)json_integer_value(json_object_get(o, "step")));
    } else if (!strcmp(type, "log") && !g_opt.json) {
        tc_watch_line_break(w);
        const char *m = json_is_string(o) ? json_string_value(o) : json_string_value(json_object_get(o, "message"));
        if (!m) m = json_string_value(json_object_get(o, "msg"));
        fprintf(stderr, "log: %s\n", m ? m : (w->ev_data.data ? w->ev_data.data : ""));
    }
    json_decref(d);
}

static void tc_watch_field(tc_watch_t *w, char *line) {
    if (!line[0]) {  /* blank line: dispatch */
        tc_watch_dispatch(w);
        w->ev_type[0] = 0;
        w->ev_id[0] = 0;
        w->ev_data.len = 0;
        if (w->ev_data.data) w->ev_data.data[0] = 0;
        return;
    }
    if (line[0] == ':') return;  /* comment / heartbeat */
    char *colon = strchr(line, ':');
    const char *val = "";
    if (colon) {
        *colon = 0;
        val = colon + 1;
        if (*val == ' ') val++;
    }
    if (!strcmp(line, "event")) snprintf(w->ev_type, sizeof w->ev_type, "%s", val);
    else if (!strcmp(line, "id")) snprintf(w->ev_id, sizeof w->ev_id, "%s", val);
    else if (!strcmp(line, "data")) {
        if (w->ev_data.len) tc_buf_write("\n", 1, 1, &w->ev_data);
        tc_buf_write((char *)val, 1, strlen(val), &w->ev_data);
    }
}

static size_t tc_watch_write(char *ptr, size_t size, size_t nmemb, void *ud) {
    tc_watch_t *w = ud;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        char ch = ptr[i];
        if (ch == '\n') {
            if (w->line.len && w->line.data[w->line.len - 1] == '\r') w->line.data[--w->line.len] = 0;
            if (!w->line.data) tc_buf_write("", 1, 0, &w->line);
            if (!w->line.data) return 0;
            w->line.data[w->line.len] = 0;
            tc_watch_field(w, w->line.data);
            w->line.len = 0;
            if (w->terminal) {
                /* Let the stream end by itself; the server closes after the terminal state. */
            }
        } else {
            if (tc_buf_write(&ch, 1, 1, &w->line) != 1) return 0;
        }
    }
    return n;
}

/* Fetches the job's state over plain GET (after a stream ends without a
 * terminal event, e.g. when the daemon restarted). 1 terminal, 0 not, -1 unreachable, -2 gone. */
static int tc_watch_poll_state(const char *id, tc_watch_t *w) {
    char path[700];
    tc_job_path(path, sizeof path, id, "");
    tc_resp_t r;
    int rc = tc_request("GET", path, NULL, &r);
    int ret = -1;
    if (rc == 0 && r.status == 200 && r.body) {
        const char *s = json_string_value(json_object_get(r.body, "state"));
        if (s) snprintf(w->state, sizeof w->state, "%s", s);
        ret = s && tc_state_terminal(s);
    } else if (rc == 0 && r.status == 404) {
        ret = -2;
    }
    tc_resp_free(&r);
    return ret;
}

static int cmd_watch_id(const char *id) {
    tc_watch_t w;
    memset(&w, 0, sizeof w);
    w.tty = isatty(2);
    w.eta = -1;
    char path[700], url[2400];
    tc_job_path(path, sizeof path, id, "/events");
    tc_url(url, sizeof url, path);
    double down_since = 0;
    int ret = TC_EXIT_API;
    for (;;) {
        CURL *c = curl_easy_init();
        if (!c) { tc_err("watch: curl_easy_init failed"); return TC_EXIT_CONN; }
        struct curl_slist *h = tc_headers(NULL, 0);
        h = curl_slist_append(h, "Accept: text/event-stream");
        if (w.last_id[0]) {
            char hdr[128];
            snprintf(hdr, sizeof hdr, "Last-Event-ID: %s", w.last_id);
            h = curl_slist_append(h, hdr);
        }
        char cerr[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tc_watch_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        /* No overall timeout: a stream lives as long as the job; but a
         * silent, dead connection (no heartbeat for 60 s) is dropped. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        w.line.len = 0;
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        if (w.line.len) w.line.len = 0;  /* drop a torn line; the event is resent after reconnect */
        w.ev_type[0] = 0; w.ev_id[0] = 0; w.ev_data.len = 0;

        if (rc == CURLE_OK && status >= 400) {
            /* Error answer (its JSON body went through the SSE parser as junk). Ask again for the message. */
            tc_resp_t r;
            int rr = tc_request("GET", path, NULL, &r);
            ret = tc_report_error("watch", rr, &r);
            tc_resp_free(&r);
            if (status == 503 && down_since == 0) down_since = tc_now();
            if (status != 503 || tc_now() - down_since > 120) break;
            sleep(1);
            continue;
        }
        if (w.terminal) {
            ret = !strcmp(w.state, "succeeded") ? TC_EXIT_OK : !strcmp(w.state, "cancelled") ? TC_EXIT_CANCELLED : TC_EXIT_API;
            break;
        }
        /* The stream ended without the terminal state: the daemon went
         * away, restarted, or the connection dropped. Check, then reconnect
         * with Last-Event-ID so no event is missed. */
        int t = tc_watch_poll_state(id, &w);
        if (t == -2) { tc_watch_line_break(&w); tc_err("watch: job %s no longer exists", id); ret = TC_EXIT_API; break; }
        if (t < 0) {
            if (down_since == 0) {
                down_since = tc_now();
                if (!g_opt.json && !g_opt.quiet) {
                    tc_watch_line_break(&w);
                    fprintf(stderr, "lost traind (%s); reconnecting after event %s\n",
                            cerr[0] ? cerr : curl_easy_strerror(rc), w.last_id[0] ? w.last_id : "-");
                }
            }
            if (tc_now() - down_since > 120) {
                tc_watch_line_break(&w);
                tc_err("watch: lost traind at %s for 120 s (%s)", g_opt.url, cerr[0] ? cerr : curl_easy_strerror(rc));
                ret = TC_EXIT_CONN;
                break;
            }
        } else {
            down_since = 0;
        }
        if (!g_opt.json && !g_opt.quiet && t >= 0) {
            tc_watch_line_break(&w);
            fprintf(stderr, "stream ended (job %s); reconnecting after event %s\n", w.state[0] ? w.state : "?",
                    w.last_id[0] ? w.last_id : "-");
        }
        usleep(t < 0 ? 1000 * 1000 : 200 * 1000);
    }
    tc_watch_line_break(&w);
    if (!g_opt.json && !g_opt.quiet && w.terminal) fprintf(stderr, "job %s %s\n", id, w.state);
    free(w.line.data);
    free(w.ev_data.data);
    return ret;
}

static int cmd_watch(tc_argv_t *av) {
    if (av->n != 1) tc_die_usage("usage: watch JOB_ID");
    return cmd_watch_id(av->v[0]);
}

/* ---- main ------------------------------------------------------------------ */

static void tc_usage(FILE *f) {
    fprintf(f,
        "usage: trainctl [--url URL] [--token T | --token-file F] [--json] [--quiet] COMMAND ...\n"
        "\n"
        "commands:\n"
        "  status                                   daemon, devices, datasets, running jobs\n"
        "  datasets                                 list datasets\n"
        "  datasets show NAME\n"
        "  datasets load NAME --path DIR | --synthetic N,S,SEED  [--wait]\n"
        "  datasets import NAME MANIFEST [--image-size S] [--resize stretch|crop] [--on-error fail|skip] [--wait]\n"
        "                                           JPEG/PNG frames + labels (JSON Lines or FreiHAND); --wait\n"
        "                                           shows a progress bar (decoding, then loading)\n"
        "  datasets rm NAME\n"
        "  submit [-f job.json|-] [--type T] [--dataset D] [--backbone B] [--steps N] [--epochs N]\n"
        "         [--batch-size N] [--priority P] [--seed S] [--submission-id ID] [--precision fp32|bf16]\n"
        "         [--weights W] [--freeze-layers K] [--registers R] [--lr-backbone X] [--lr-heads X]\n"
        "         [--weight-decay X] [--warmup-steps N] [--schedule cosine|constant] [--eval-every N]\n"
        "         [--checkpoint-every N] [--keep-checkpoints K] [--resume-from CKPT] [--checkpoint CKPT]\n"
        "         [--batches N] [--indices 0-9,12] [--split val|train] [--set key.path=JSON] [--watch]\n"
        "  jobs [--state S] [--type T] [--limit N] [--offset N]\n"
        "  show JOB                                 the job record\n"
        "  result JOB                               eval metrics, debug report or infer outputs\n"
        "  watch JOB                                live progress until the job ends\n"
        "  cancel JOB\n"
        "  metrics JOB [--name NAME] [--since-step N]\n"
        "  checkpoints [--job JOB] | checkpoints show CKPT | checkpoints rm CKPT\n"
        "  download CKPT FILE [-o OUT]\n"
        "\n"
        "environment: TRAIND_URL (default " TC_DEFAULT_URL "), TRAIND_TOKEN, TRAIND_TOKEN_FILE\n"
        "exit status: 0 ok; 1 API error or job failed; 2 usage; 3 job cancelled; 4 daemon unreachable\n");
}

int main(int argc, char **argv) {
    const char *env = getenv("TRAIND_URL");
    snprintf(g_opt.url, sizeof g_opt.url, "%s", env && *env ? env : TC_DEFAULT_URL);
    env = getenv("TRAIND_TOKEN");
    if (env && *env) snprintf(g_opt.token, sizeof g_opt.token, "%s", env);
    else if ((env = getenv("TRAIND_TOKEN_FILE")) && *env && tc_read_token_file(env)) return TC_EXIT_USAGE;

    /* Split argv: global options anywhere, the first other word is the command. */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) { tc_err("out of memory"); return TC_EXIT_API; }
    int nrest = 0;
    tc_args_t a = {argc, argv, 1};
    for (; a.i < argc; a.i++) {
        if (!strcmp(argv[a.i], "--help") || !strcmp(argv[a.i], "-h")) { tc_usage(stdout); free(rest); return 0; }
        if (!strcmp(argv[a.i], "--")) { while (++a.i < argc) rest[nrest++] = argv[a.i]; break; }
        if (!tc_global_opt(&a)) rest[nrest++] = argv[a.i];
    }
    if (!nrest) { tc_usage(stderr); free(rest); return TC_EXIT_USAGE; }
    size_t ul = strlen(g_opt.url);
    while (ul && g_opt.url[ul - 1] == '/') g_opt.url[--ul] = 0;
    if (!strstr(g_opt.url, "://")) {
        char tmp[sizeof g_opt.url];
        snprintf(tmp, sizeof tmp, "http://%.1000s", g_opt.url);
        snprintf(g_opt.url, sizeof g_opt.url, "%s", tmp);
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT)) { tc_err("curl_global_init failed"); free(rest); return TC_EXIT_CONN; }
    const char *cmd = rest[0];
    tc_argv_t av = {nrest - 1, rest + 1};
    int rc;
    if (!strcmp(cmd, "status")) rc = cmd_status(&av);
    else if (!strcmp(cmd, "datasets") || !strcmp(cmd, "dataset")) rc = cmd_datasets(&av);
    else if (!strcmp(cmd, "submit")) rc = cmd_submit(&av);
    else if (!strcmp(cmd, "jobs")) rc = cmd_jobs(&av);
    else if (!strcmp(cmd, "show")) rc = cmd_show(&av);
    else if (!strcmp(cmd, "result")) rc = cmd_result(&av);
    else if (!strcmp(cmd, "watch")) rc = cmd_watch(&av);
    else if (!strcmp(cmd, "cancel")) rc = cmd_cancel(&av);
    else if (!strcmp(cmd, "metrics")) rc = cmd_metrics(&av);
    else if (!strcmp(cmd, "checkpoints")) rc = cmd_checkpoints(&av);
    else if (!strcmp(cmd, "download")) rc = cmd_download(&av);
    else if (!strcmp(cmd, "help")) { tc_usage(stdout); rc = 0; }
    else { free(rest); curl_global_cleanup(); tc_die_usage("unknown command '%s'", cmd); }
    free(rest);
    curl_global_cleanup();
    return rc;
}
