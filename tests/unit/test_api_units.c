/* tests/unit/test_api_units.c — the pure parts of api/: routing table and
 * matcher (404/405/Allow, parameter decoding), the error body format, JSON
 * body and field validation, query integer parsing, resource names, token
 * comparison and bearer parsing, the Host/Origin/content-type checks and
 * the allow-host/allow-origin settings they use, Prometheus text formatting,
 * SSE framing, listen address parsing and loopback detection; the dashboard's
 * public paths, content types and built-in assets; the count of JSON values a
 * job body holds before it is parsed; and the server over loopback on the
 * paths answered before any daemon action. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "daemon/daemon.h"
#include "tests/tap.h"

static int route_of(const char *method, const char *path, char params[][API_PARAM_MAX],
                    int *np, char *allow, size_t allowlen) {
    return api_route_match(api_routes, api_nroutes, method, path, params, np, allow, allowlen);
}

static const char *pattern_of(int idx) { return idx >= 0 ? api_routes[idx].pattern : "(none)"; }

static void test_routes(void) {
    char p[API_MAX_PARAMS][API_PARAM_MAX], allow[64];
    int np = -1, idx;

    /* every route of the table is reachable by its own method and a concrete path */
    static const struct { const char *m, *path, *pattern; int np; const char *p0, *p1; } cases[] = {
        { "GET", "/v1/health", "/v1/health", 0, NULL, NULL },
        { "GET", "/v1/status", "/v1/status", 0, NULL, NULL },
        { "GET", "/metrics", "/metrics", 0, NULL, NULL },
        { "POST", "/v1/datasets", "/v1/datasets", 0, NULL, NULL },
        { "GET", "/v1/datasets", "/v1/datasets", 0, NULL, NULL },
        { "GET", "/v1/datasets/ds1", "/v1/datasets/{name}", 1, "ds1", NULL },
        { "DELETE", "/v1/datasets/ds1", "/v1/datasets/{name}", 1, "ds1", NULL },
        { "POST", "/v1/jobs", "/v1/jobs", 0, NULL, NULL },
        { "GET", "/v1/jobs", "/v1/jobs", 0, NULL, NULL },
        { "GET", "/v1/jobs/j-000001", "/v1/jobs/{id}", 1, "j-000001", NULL },
        { "POST", "/v1/jobs/j-1/cancel", "/v1/jobs/{id}/cancel", 1, "j-1", NULL },
        { "GET", "/v1/jobs/j-1/events", "/v1/jobs/{id}/events", 1, "j-1", NULL },
        { "GET", "/v1/jobs/j-1/metrics", "/v1/jobs/{id}/metrics", 1, "j-1", NULL },
        { "GET", "/v1/jobs/j-1/result", "/v1/jobs/{id}/result", 1, "j-1", NULL },
        { "GET", "/v1/jobs/j-1/result/files/features.safetensors",
          "/v1/jobs/{id}/result/files/{name}", 2, "j-1", "features.safetensors" },
        { "GET", "/v1/checkpoints", "/v1/checkpoints", 0, NULL, NULL },
        { "GET", "/v1/checkpoints/c-7", "/v1/checkpoints/{id}", 1, "c-7", NULL },
        { "DELETE", "/v1/checkpoints/c-7", "/v1/checkpoints/{id}", 1, "c-7", NULL },
        { "GET", "/v1/checkpoints/c-7/files/model.safetensors",
          "/v1/checkpoints/{id}/files/{name}", 2, "c-7", "model.safetensors" },
        { "GET", "/", "/", 0, NULL, NULL },
        { "GET", "/assets/app.js", "/assets/{name}", 1, "app.js", NULL },
        { "HEAD", "/v1/status", "/v1/status", 0, NULL, NULL },
        { "GET", "/v1/jobs/", "/v1/jobs", 0, NULL, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        idx = route_of(cases[i].m, cases[i].path, p, &np, allow, sizeof allow);
        int good = idx >= 0 && !strcmp(pattern_of(idx), cases[i].pattern) &&
                   !strcmp(api_routes[idx].method, !strcmp(cases[i].m, "HEAD") ? "GET" : cases[i].m) &&
                   np == cases[i].np &&
                   (!cases[i].p0 || !strcmp(p[0], cases[i].p0)) &&
                   (!cases[i].p1 || !strcmp(p[1], cases[i].p1));
        ok(good, "route %s %s -> %s (got %s)", cases[i].m, cases[i].path, cases[i].pattern,
           pattern_of(idx));
    }
    ok(api_nroutes == 21, "21 routes in the table (SPEC §3, result files, dashboard), got %zu", api_nroutes);

    /* 404: nothing matches */
    ok(route_of("GET", "/v1/nothing", p, &np, allow, sizeof allow) == -1, "unknown path -> 404");
    ok(route_of("GET", "/v1/jobs/j-1/unknown", p, &np, allow, sizeof allow) == -1,
       "unknown sub-resource -> 404");
    ok(route_of("GET", "/v1/jobs//events", p, &np, allow, sizeof allow) == -1,
       "empty parameter segment -> 404");
    ok(route_of("GET", "/assets/a/b.js", p, &np, allow, sizeof allow) == -1, "nested asset path -> 404");
    ok(route_of("GET", "/v1/checkpoints/c-1/files/a/b", p, &np, allow, sizeof allow) == -1,
       "file name with a '/' -> 404");
    ok(route_of("GET", "/v1/checkpoints/c-1/files/..%2Fx", p, &np, allow, sizeof allow) == -1,
       "encoded '/' in a parameter -> 404");
    ok(route_of("GET", "/v1/checkpoints/c-1/files/a%2", p, &np, allow, sizeof allow) == -1,
       "truncated percent escape -> 404");
    ok(route_of("GET", "/v1/checkpoints/c-1/files/a%zz", p, &np, allow, sizeof allow) == -1,
       "bad percent escape -> 404");
    idx = route_of("GET", "/v1/datasets/my%20set", p, &np, allow, sizeof allow);
    ok(idx >= 0 && !strcmp(p[0], "my set"), "percent-decoded parameter ('%s')", idx >= 0 ? p[0] : "");

    /* 405 with Allow */
    idx = route_of("PUT", "/v1/jobs", p, &np, allow, sizeof allow);
    ok(idx == -2, "PUT /v1/jobs -> 405");
    ok(strstr(allow, "POST") && strstr(allow, "GET") && strstr(allow, "HEAD"),
       "Allow lists POST, GET, HEAD: '%s'", allow);
    idx = route_of("POST", "/v1/datasets/x", p, &np, allow, sizeof allow);
    ok(idx == -2 && strstr(allow, "GET") && strstr(allow, "DELETE") && !strstr(allow, "POST"),
       "POST /v1/datasets/x -> 405, Allow '%s'", allow);
    idx = route_of("GET", "/v1/jobs/j-1/cancel", p, &np, allow, sizeof allow);
    ok(idx == -2 && !strcmp(allow, "POST"), "GET on cancel -> 405, Allow '%s'", allow);
    idx = route_of("DELETE", "/v1/health", p, &np, allow, sizeof allow);
    ok(idx == -2 && !strcmp(allow, "GET, HEAD"), "DELETE /v1/health -> 405, Allow '%s'", allow);

    /* a long path parameter is refused rather than truncated */
    char longp[API_PARAM_MAX + 64];
    strcpy(longp, "/v1/jobs/");
    memset(longp + 9, 'a', API_PARAM_MAX + 10);
    longp[9 + API_PARAM_MAX + 10] = 0;
    ok(route_of("GET", longp, p, &np, allow, sizeof allow) == -1, "over-long parameter -> 404");
}

static void test_errors(void) {
    json_t *b = api_error_body("not_found", "no job j-9");
    json_t *e = json_object_get(b, "error");
    ok(json_is_object(e) && json_object_size(b) == 1, "error body is {\"error\":{...}}");
    ok(!strcmp(json_string_value(json_object_get(e, "code")), "not_found") &&
       !strcmp(json_string_value(json_object_get(e, "message")), "no job j-9"),
       "error body carries code and message");
    json_decref(b);

    b = api_error_body("bad_request", "bad byte \xff here");
    ok(b && strstr(json_string_value(json_object_get(json_object_get(b, "error"), "message")),
                   "bad byte ? here"), "invalid UTF-8 in a message is replaced, not dropped");
    json_decref(b);

    static const struct { int st; const char *code; } m[] = {
        { 400, "bad_request" }, { 401, "unauthorized" }, { 403, "forbidden" },
        { 404, "not_found" }, { 405, "method_not_allowed" }, { 409, "conflict" },
        { 413, "too_large" }, { 422, "unprocessable" }, { 503, "unavailable" },
        { 507, "insufficient_storage" }, { 500, "internal" },
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        ok(!strcmp(api_error_code_for(m[i].st), m[i].code), "status %d -> code %s", m[i].st,
           m[i].code);

    api_req_t r;
    memset(&r, 0, sizeof r);
    r.fd = -1;
    api_reply_error(&r, 409, "conflict", "dataset %s is used by %d jobs", "ds", 2);
    ok(r.status == 409 && r.kind == API_BODY_JSON, "api_reply_error sets status and JSON body");
    const char *msg = json_string_value(json_object_get(json_object_get(r.json, "error"), "message"));
    ok(msg && !strcmp(msg, "dataset ds is used by 2 jobs"), "formatted message: %s", msg);
    /* a daemon action's error keeps its status, code, message and field */
    daemon_err_t de;
    memset(&de, 0, sizeof de);
    daemon_err_set(&de, 400, "invalid_field", "model.wings", "unknown field '%s'", "model.wings");
    api_reply_daemon_err(&r, &de);
    json_t *eo = json_object_get(r.json, "error");
    ok(r.status == 400 && !strcmp(json_string_value(json_object_get(eo, "code")), "invalid_field") &&
       !strcmp(json_string_value(json_object_get(eo, "field")), "model.wings") &&
       strstr(json_string_value(json_object_get(eo, "message")), "wings"),
       "daemon error -> 400 invalid_field with field");
    memset(&de, 0, sizeof de);
    de.status = 404;
    api_reply_daemon_err(&r, &de);
    eo = json_object_get(r.json, "error");
    ok(r.status == 404 && !strcmp(json_string_value(json_object_get(eo, "code")), "not_found") &&
       json_string_length(json_object_get(eo, "message")) > 0 && !json_object_get(eo, "field"),
       "daemon error without code/message gets the defaults for its status");
    memset(&de, 0, sizeof de);
    api_reply_daemon_err(&r, &de);
    ok(r.status == 500, "daemon error without a status -> 500");
    /* a second reply replaces the first without leaking */
    api_reply_json(&r, 200, json_pack("{s:s}", "status", "ok"));
    ok(r.status == 200 && json_object_get(r.json, "status"), "reply replaced");
    json_decref(r.json);
}

static api_req_t body_req(const char *body) {
    api_req_t r;
    memset(&r, 0, sizeof r);
    r.fd = -1;
    r.body = body;
    r.body_len = body ? strlen(body) : 0;
    return r;
}

static const char *err_msg(api_req_t *r) {
    return json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
}
static const char *err_code(api_req_t *r) {
    return json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
}

static void test_json_in(void) {
    api_req_t r = body_req("{\"name\": \"x\", ");
    json_t *j = api_body_object(&r);
    ok(!j && r.status == 400 && !strcmp(err_code(&r), "bad_request") &&
       strstr(err_msg(&r), "malformed JSON"), "malformed JSON -> 400 bad_request (%s)", err_msg(&r));
    json_decref(r.json);

    r = body_req("[1,2]");
    j = api_body_object(&r);
    ok(!j && r.status == 400 && strstr(err_msg(&r), "object"), "array body -> 400");
    json_decref(r.json);

    r = body_req(NULL);
    j = api_body_object(&r);
    ok(!j && r.status == 400 && strstr(err_msg(&r), "empty"), "empty body -> 400");
    json_decref(r.json);

    r = body_req("{\"a\":1,\"a\":2}");
    j = api_body_object(&r);
    ok(!j && r.status == 400, "duplicate keys -> 400");
    json_decref(r.json);

    r = body_req("{\"name\":\"ds\",\"samples\":\"12\",\"extra\":true}");
    j = api_body_object(&r);
    ok(j != NULL && r.status == 0, "object body parses");
    static const char *const allowed[] = { "name", "samples", NULL };
    ok(api_unknown_field(j, allowed) && !strcmp(api_unknown_field(j, allowed), "extra"),
       "unknown field found");
    ok(api_check_fields(&r, j, "synthetic.", allowed) < 0 && r.status == 400 &&
       !strcmp(err_code(&r), "invalid_field") && strstr(err_msg(&r), "synthetic.extra"),
       "unknown field -> 400 naming it (%s)", err_msg(&r));
    json_decref(r.json); r.json = NULL; r.status = 0;

    long long v = 7;
    ok(api_get_int(&r, j, "", "samples", 0, 1, 100, &v) < 0 && strstr(err_msg(&r), "'samples'") &&
       strstr(err_msg(&r), "integer") && v == 7, "wrong type -> 400 naming the field (%s)", err_msg(&r));
    json_decref(r.json); r.json = NULL; r.status = 0;
    ok(api_get_int(&r, j, "", "missing", 0, 1, 100, &v) < 0 && strstr(err_msg(&r), "missing field"),
       "missing required field -> 400 (%s)", err_msg(&r));
    json_decref(r.json); r.json = NULL; r.status = 0;
    ok(api_get_int(&r, j, "", "missing", 1, 1, 100, &v) == 0 && v == 7 && r.status == 0,
       "missing optional field leaves the default");
    const char *s = NULL;
    ok(api_get_string(&r, j, "", "name", 0, &s) == 0 && s && !strcmp(s, "ds"), "string member");
    ok(api_get_string(&r, j, "", "extra", 0, &s) < 0 && strstr(err_msg(&r), "must be a string"),
       "non-string -> 400");
    json_decref(r.json); r.json = NULL;
    json_decref(j);

    j = json_pack("{s:i}", "n", 1000);
    r = body_req(NULL);
    ok(api_get_int(&r, j, "x.", "n", 0, 1, 100, &v) < 0 && strstr(err_msg(&r), "x.n") &&
       strstr(err_msg(&r), "[1, 100]"), "out of range -> 400 with bounds (%s)", err_msg(&r));
    json_decref(r.json);
    json_decref(j);
}

static void test_query_and_names(void) {
    long long x = -5;
    ok(api_parse_ll(NULL, 0, 10, &x) == 0 && x == -5, "absent query leaves default");
    ok(api_parse_ll("7", 0, 10, &x) == 1 && x == 7, "7 parses");
    ok(api_parse_ll("-1", -1, 10, &x) == 1 && x == -1, "-1 parses when allowed");
    ok(api_parse_ll("11", 0, 10, &x) == -1, "above max rejected");
    ok(api_parse_ll("-1", 0, 10, &x) == -1, "below min rejected");
    ok(api_parse_ll("", 0, 10, &x) == -1, "empty rejected");
    ok(api_parse_ll("5x", 0, 10, &x) == -1, "trailing junk rejected");
    ok(api_parse_ll(" 5", 0, 10, &x) == -1, "leading space rejected");
    ok(api_parse_ll("99999999999999999999999", 0, INT64_MAX, &x) == -1, "overflow rejected");

    api_req_t r = body_req(NULL);   /* no connection: every query is absent */
    x = 3;
    ok(api_query_ll(&r, "limit", 1, 10, &x) == 0 && x == 3, "api_query_ll without the parameter");

    ok(api_name_ok("ds-1_a.b"), "plain name accepted");
    ok(!api_name_ok(""), "empty name rejected");
    ok(!api_name_ok(".hidden"), "leading dot rejected");
    ok(!api_name_ok(".."), "'..' rejected");
    ok(!api_name_ok("a/b"), "slash rejected");
    ok(!api_name_ok("a b"), "space rejected");
    char longn[200];
    memset(longn, 'a', 129); longn[129] = 0;
    ok(!api_name_ok(longn), "129-byte name rejected");
    longn[128] = 0;
    ok(api_name_ok(longn), "128-byte name accepted");
}

static void test_auth(void) {
    ok(api_token_equal("secret", 6, "secret", 6), "equal tokens");
    ok(!api_token_equal("secreT", 6, "secret", 6), "last byte differs");
    ok(!api_token_equal("Secret", 6, "secret", 6), "first byte differs");
    ok(!api_token_equal("secre", 5, "secret", 6), "prefix is not equal");
    ok(!api_token_equal("secrets", 7, "secret", 6), "longer is not equal");
    ok(!api_token_equal("", 0, "secret", 6), "empty is not equal");
    ok(api_bearer_ok("Bearer secret", "secret"), "Bearer header accepted");
    ok(api_bearer_ok("bearer   secret  ", "secret"), "scheme case-insensitive, spaces trimmed");
    ok(!api_bearer_ok("Bearer wrong", "secret"), "wrong token refused");
    ok(!api_bearer_ok("Basic c2VjcmV0", "secret"), "other scheme refused");
    ok(!api_bearer_ok("Bearersecret", "secret"), "missing space refused");
    ok(!api_bearer_ok("Bearer ", "secret"), "empty token refused");
    ok(!api_bearer_ok(NULL, "secret"), "missing header refused");
    ok(api_bearer_ok(NULL, NULL) && api_bearer_ok(NULL, ""), "no token configured: open");
}

static void test_boundaries(void) {
    char name[CFG_ALLOW_LEN], out[CFG_ALLOW_LEN], err[256];
    int port;
    ok(config_split_host("LocalHost:8470", name, sizeof name, &port) == 0 &&
       !strcmp(name, "localhost") && port == 8470, "split host: name lowercased, port");
    ok(config_split_host("[::1]", name, sizeof name, &port) == 0 && !strcmp(name, "[::1]") &&
       port == -1, "split host: bracketed IPv6 without port");
    ok(config_split_host("[::1]:80", name, sizeof name, &port) == 0 && port == 80, "split host: [v6]:port");
    static const char *const badhosts[] = { "", ":80", "a:", "a:0", "a:65536", "a:8x", "a b",
        "a/b", "[::1", "[zz]", "[]:1", "a:+80", "user@a", "a:80:80", "a:123456", NULL };
    for (const char *const *b = badhosts; *b; b++)
        ok(config_split_host(*b, name, sizeof name, &port) < 0, "split host refuses '%s'", *b);

    ok(config_norm_allow_host("Proxy.Example.COM", out, sizeof out, err, sizeof err) == 0 &&
       !strcmp(out, "proxy.example.com"), "allow-host normalized: %s", out);
    ok(config_norm_allow_host("evil.example/x", out, sizeof out, err, sizeof err) < 0 && err[0],
       "allow-host with a path refused: %s", err);
    ok(config_norm_allow_origin("HTTPS://Traind.Example.com:443/", out, sizeof out, err, sizeof err) == 0 &&
       !strcmp(out, "https://traind.example.com"), "allow-origin: default port and '/' dropped: %s", out);
    ok(config_norm_allow_origin("http://localhost:18470", out, sizeof out, err, sizeof err) == 0 &&
       !strcmp(out, "http://localhost:18470"), "allow-origin with a port kept");
    static const char *const badorigins[] = { "null", "localhost:8470", "ftp://x", "http://",
        "http://x/path", "http://user@x", "https://x:99999", "*", NULL };
    for (const char *const *b = badorigins; *b; b++)
        ok(config_norm_allow_origin(*b, out, sizeof out, err, sizeof err) < 0,
           "allow-origin refuses '%s'", *b);

    static const char hosts[][CFG_ALLOW_LEN] = { "proxy.example.com", "tunnel.local:18470" };
    static const char origins[][CFG_ALLOW_LEN] = { "https://traind.example.com" };
    api_boundary_t b = { .port = 8470, .allow_hosts = hosts, .n_allow_hosts = 2,
                         .allow_origins = origins, .n_allow_origins = 1 };
    static const struct { const char *host, *local; int want; } hc[] = {
        { "localhost:8470", NULL, 1 }, { "127.0.0.1:8470", NULL, 1 }, { "[::1]:8470", NULL, 1 },
        { "LOCALHOST:8470", NULL, 1 }, { "localhost", NULL, 1 }, { "127.0.0.1", NULL, 1 },
        { "localhost:8471", NULL, 0 }, { "evil.example", NULL, 0 }, { "evil.example:8470", NULL, 0 },
        { "localhost.:8470", NULL, 0 }, { "127.0.0.2:8470", NULL, 0 },
        { "127.0.0.2:8470", "127.0.0.2", 1 }, { "10.1.2.3:8470", "10.1.2.3", 1 },
        { "10.1.2.3:9", "10.1.2.3", 0 }, { "[fe80::1]:8470", "[fe80::1]", 1 },
        { "proxy.example.com", NULL, 1 }, { "proxy.example.com:443", NULL, 1 },
        { "tunnel.local:18470", NULL, 1 }, { "tunnel.local:8470", NULL, 0 }, { "tunnel.local", NULL, 0 },
        { "", NULL, 0 }, { "localhost:8470:1", NULL, 0 }, { "local host", NULL, 0 },
    };
    for (size_t i = 0; i < sizeof hc / sizeof hc[0]; i++)
        ok(api_host_ok(&b, hc[i].host, hc[i].local) == hc[i].want, "Host '%s' (connected to %s) -> %s",
           hc[i].host, hc[i].local ? hc[i].local : "-", hc[i].want ? "accepted" : "refused");

    static const struct { const char *origin, *host; int want; } oc[] = {
        { "http://localhost:8470", "localhost:8470", 1 },
        { "http://127.0.0.1:8470", "127.0.0.1:8470", 1 },
        { "http://127.0.0.1:8470", "localhost:8470", 0 },     /* another origin of the same server */
        { "http://localhost:3000", "localhost:8470", 0 },     /* another local web app */
        { "https://localhost:8470", "localhost:8470", 0 },    /* not this server's scheme */
        { "http://evil.example", "localhost:8470", 0 },
        { "null", "localhost:8470", 0 },
        { "https://traind.example.com", "localhost:8470", 1 },
        { "https://traind.example.com:443", "127.0.0.1:8470", 1 },
        { "https://other.example.com", "localhost:8470", 0 },
        { "http://tunnel.local:18470", "tunnel.local:18470", 1 },
        { "http://localhost", "localhost", 1 },
        { "http://localhost:8470", NULL, 0 },                 /* HTTP/1.0 without a Host */
        { "", "localhost:8470", 0 },
    };
    for (size_t i = 0; i < sizeof oc / sizeof oc[0]; i++)
        ok(api_origin_ok(&b, oc[i].origin, oc[i].host) == oc[i].want, "Origin '%s' to Host '%s' -> %s",
           oc[i].origin, oc[i].host ? oc[i].host : "-", oc[i].want ? "accepted" : "refused");

    ok(api_media_type_is("application/json", "application/json"), "media type: exact");
    ok(api_media_type_is(" Application/JSON ; charset=utf-8", "application/json"), "media type: case, parameters");
    ok(!api_media_type_is("application/jsonx", "application/json"), "media type: no prefix match");
    ok(!api_media_type_is("text/plain; x=application/json", "application/json"), "media type: not in a parameter");
    ok(!api_media_type_is(NULL, "application/json"), "media type: absent");
    ok(api_content_type_simple("text/plain;charset=UTF-8") && api_content_type_simple("multipart/form-data; boundary=x") &&
       api_content_type_simple("application/x-www-form-urlencoded"), "the three simple content types");
    ok(!api_content_type_simple("application/json") && !api_content_type_simple(NULL), "JSON and none are not simple");

    const char *code;
    char msg[512];
    api_body_head_t h = { .method = "POST", .path = "/v1/datasets", .content_type = "application/json",
                          .has_body = 1, .declared = 100, .limit = 1000 };
    ok(api_body_check(&h, &code, msg, sizeof msg) == 0, "JSON body within the limit passes");
    h.content_type = "text/plain;charset=UTF-8";
    ok(api_body_check(&h, &code, msg, sizeof msg) == 415 && !strcmp(code, "unsupported_media_type") &&
       strstr(msg, "text/plain"), "text/plain body -> 415 naming it");
    h.content_type = "application/x-www-form-urlencoded";
    ok(api_body_check(&h, &code, msg, sizeof msg) == 415, "form body -> 415");
    h.content_type = NULL;
    ok(api_body_check(&h, &code, msg, sizeof msg) == 415 && strstr(msg, "none"), "body without a type -> 415");
    h.content_type = "application/json";
    h.declared = 1001;
    ok(api_body_check(&h, &code, msg, sizeof msg) == 413 && !strcmp(code, "too_large"), "declared over the limit -> 413");
    h.declared = -1;
    ok(api_body_check(&h, &code, msg, sizeof msg) == 0, "chunked (length unknown) passes the header check");
    h.limit = 0;
    h.declared = 2;
    ok(api_body_check(&h, &code, msg, sizeof msg) == 413 && strstr(msg, "takes no request body"),
       "a body on a route that takes none -> 413");
    api_body_head_t nb = { .method = "POST", .path = "/v1/jobs/j-1/cancel", .has_body = 0, .declared = 0 };
    ok(api_body_check(&nb, &code, msg, sizeof msg) == 0, "bodyless POST without a type passes (curl -X POST)");
    nb.content_type = "application/x-www-form-urlencoded";
    ok(api_body_check(&nb, &code, msg, sizeof msg) == 0, "bodyless form-urlencoded POST from a non-browser passes (libcurl -d '')");
    nb.from_browser = 1;
    ok(api_body_check(&nb, &code, msg, sizeof msg) == 415, "... from a browser -> 415");
    nb.from_browser = 0;
    nb.content_type = "text/plain";
    ok(api_body_check(&nb, &code, msg, sizeof msg) == 415, "bodyless POST with text/plain -> 415");
    nb.content_type = "multipart/form-data; boundary=x";
    nb.method = "DELETE";
    ok(api_body_check(&nb, &code, msg, sizeof msg) == 415, "bodyless DELETE with multipart -> 415");
    nb.method = "GET";
    ok(api_body_check(&nb, &code, msg, sizeof msg) == 0, "GET with a simple type and no body passes");
    ok(api_method_safe("GET") && api_method_safe("HEAD") && api_method_safe("OPTIONS") &&
       !api_method_safe("POST") && !api_method_safe("DELETE") && !api_method_safe("PATCH") &&
       !api_method_safe("PUT"), "safe methods");
}

static void test_prom(void) {
    char out[64];
    size_t n = prom_escape("a\"b\\c\nd", out, sizeof out);
    ok(n == 10 && !strcmp(out, "a\\\"b\\\\c\\nd"), "label escaping: %s", out);
    n = prom_escape("abcdef", out, 4);
    ok(n == 6 && !strcmp(out, "abc"), "escape truncates but reports the full length");

    prom_buf_t b;
    prom_init(&b);
    prom_family(&b, "traind_jobs", "gauge", "Jobs by state.");
    const char *l1[] = { "state", "queued", NULL };
    prom_sample(&b, "traind_jobs", l1, 3);
    const char *l2[] = { "device", "0", "kind", "data\"sets", NULL };
    prom_sample(&b, "traind_gpu_memory_bytes", l2, 1.5e9);
    prom_sample(&b, "traind_images_per_second", NULL, 12.25);
    prom_sample(&b, "traind_x", NULL, 1.0 / 0.0);
    prom_sample(&b, "traind_y", NULL, 0.0 / 0.0);
    ok(!b.oom && b.buf, "buffer built");
    const char *want =
        "# HELP traind_jobs Jobs by state.\n"
        "# TYPE traind_jobs gauge\n"
        "traind_jobs{state=\"queued\"} 3\n"
        "traind_gpu_memory_bytes{device=\"0\",kind=\"data\\\"sets\"} 1500000000\n"
        "traind_images_per_second 12.25\n"
        "traind_x +Inf\n"
        "traind_y NaN\n";
    ok(b.buf && !strcmp(b.buf, want), "exposition text matches the 0.0.4 format");
    if (b.buf && strcmp(b.buf, want)) diag("got:\n%s", b.buf);
    prom_free(&b);

    /* growth across the initial capacity */
    prom_init(&b);
    for (int i = 0; i < 500; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *l[] = { "code", v, NULL };
        prom_sample(&b, "traind_http_requests_total", l, i);
    }
    ok(!b.oom && b.len > 1024 && strstr(b.buf, "traind_http_requests_total{code=\"499\"} 499\n"),
       "buffer grows (%zu bytes)", b.len);
    prom_free(&b);
}

static void test_prom_status(void) {
    json_t *st = json_loads(
        "{\"devices\":[{\"index\":0,\"memory\":{\"total\":1000,\"used\":400,\"datasets\":300}},"
        "               {\"index\":1,\"memory\":{\"total\":null,\"used\":null,\"datasets\":0}}],"
        " \"running\":[{\"id\":\"j-000001\",\"type\":\"train\",\"device\":0,\"batch_size\":32,"
        "              \"progress\":{\"step\":5,\"images_per_s\":96.0}},"
        "             {\"id\":\"j-000002\",\"type\":\"eval\",\"device\":1,\"batch_size\":8,"
        "              \"progress\":{\"images_per_s\":50.0}}]}", 0, NULL);
    prom_buf_t b;
    prom_init(&b);
    api_prom_status(&b, st);
    const char *want =
        "# HELP traind_gpu_memory_bytes Device memory in bytes: total, used, held by resident datasets.\n"
        "# TYPE traind_gpu_memory_bytes gauge\n"
        "traind_gpu_memory_bytes{device=\"0\",kind=\"total\"} 1000\n"
        "traind_gpu_memory_bytes{device=\"0\",kind=\"used\"} 400\n"
        "traind_gpu_memory_bytes{device=\"0\",kind=\"datasets\"} 300\n"
        "traind_gpu_memory_bytes{device=\"1\",kind=\"datasets\"} 0\n"
        "# HELP traind_train_steps_per_second Optimizer steps per second of running train jobs.\n"
        "# TYPE traind_train_steps_per_second gauge\n"
        "traind_train_steps_per_second{job=\"j-000001\",device=\"0\"} 3\n";
    ok(st && b.buf && !strcmp(b.buf, want),
       "status -> gpu memory by device/kind (unknown totals omitted), train steps/s = images/s / batch");
    if (b.buf && strcmp(b.buf, want)) diag("got:\n%s", b.buf);
    prom_free(&b);
    json_decref(st);
}

static void test_sse(void) {
    char buf[256];
    size_t n = sse_format_event(buf, sizeof buf, 12, "progress", "{\"step\":3}");
    ok(!strcmp(buf, "id: 12\nevent: progress\ndata: {\"step\":3}\n\n") && n == strlen(buf),
       "event framing");
    n = sse_format_event(buf, sizeof buf, 1, "log", "line1\nline2\r\nline3");
    ok(!strcmp(buf, "id: 1\nevent: log\ndata: line1\ndata: line2\ndata: line3\n\n"),
       "multi-line data becomes several data: lines");
    size_t need = sse_format_event(NULL, 0, 123456789, "state", "{\"state\":\"succeeded\"}");
    ok(need == strlen("id: 123456789\nevent: state\ndata: {\"state\":\"succeeded\"}\n\n"),
       "size query without a buffer (%zu)", need);
    char small[10];
    n = sse_format_event(small, sizeof small, 5, "metric", "{\"name\":\"loss\"}");
    ok(n > sizeof small && strlen(small) < sizeof small, "truncation reported like snprintf");
    n = sse_format_comment(buf, sizeof buf, "heartbeat");
    ok(!strcmp(buf, ": heartbeat\n\n") && n == 13, "comment framing");
    ok(sse_parse_last_id("42") == 42, "Last-Event-ID 42");
    ok(sse_parse_last_id(" 7") == 7, "Last-Event-ID with a leading space");
    ok(sse_parse_last_id("0") == 0, "Last-Event-ID 0");
    ok(sse_parse_last_id("-3") == -1, "negative Last-Event-ID rejected");
    ok(sse_parse_last_id("abc") == -1, "non-numeric Last-Event-ID rejected");
    ok(sse_parse_last_id(NULL) == -1, "absent Last-Event-ID");
}

static void test_listen(void) {
    struct sockaddr_storage ss;
    socklen_t len;
    char err[256];
    ok(config_parse_listen("127.0.0.1:8470", &ss, &len, err, sizeof err) == 0 &&
       ss.ss_family == AF_INET && ntohs(((struct sockaddr_in *)&ss)->sin_port) == 8470,
       "IPv4 host:port");
    ok(config_parse_listen("[::1]:9000", &ss, &len, err, sizeof err) == 0 &&
       ss.ss_family == AF_INET6 && ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == 9000,
       "[::1]:port");
    ok(config_parse_listen("localhost:1", &ss, &len, err, sizeof err) == 0 && ss.ss_family == AF_INET,
       "localhost");
    ok(config_parse_listen(":0", &ss, &len, err, sizeof err) == 0 && ss.ss_family == AF_INET,
       ":port means loopback");
    ok(config_parse_listen("127.0.0.1", &ss, &len, err, sizeof err) < 0 && strstr(err, "host:port"),
       "missing port rejected: %s", err);
    ok(config_parse_listen("127.0.0.1:70000", &ss, &len, err, sizeof err) < 0, "port range");
    ok(config_parse_listen("127.0.0.1:x", &ss, &len, err, sizeof err) < 0, "non-numeric port");
    ok(config_parse_listen("::1:80", &ss, &len, err, sizeof err) < 0, "bare IPv6 needs brackets");
    ok(config_parse_listen("[::1:80", &ss, &len, err, sizeof err) < 0, "unclosed bracket");
    ok(config_parse_listen("example.com:80", &ss, &len, err, sizeof err) < 0, "names are not resolved");
    ok(config_parse_listen("", &ss, &len, err, sizeof err) < 0, "empty");

    ok(config_listen_is_loopback("127.0.0.1:8470"), "127.0.0.1 is loopback");
    ok(config_listen_is_loopback("127.1.2.3:1"), "127/8 is loopback");
    ok(config_listen_is_loopback("[::1]:1"), "::1 is loopback");
    ok(config_listen_is_loopback("localhost:1"), "localhost is loopback");
    ok(!config_listen_is_loopback("0.0.0.0:8470"), "0.0.0.0 is not loopback");
    ok(!config_listen_is_loopback("[::]:8470"), ":: is not loopback");
    ok(!config_listen_is_loopback("10.0.0.1:8470"), "10.0.0.1 is not loopback");
    ok(!config_listen_is_loopback("garbage"), "unparsable is not loopback");
}

/* One HTTP exchange over loopback; returns the whole response (malloc'd). */
static char *http_raw(uint16_t port, const char *req) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { if (fd >= 0) close(fd); return NULL; }
    struct timeval tv = { .tv_sec = 20 };   /* a server that waits for more never hangs the test */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t n = strlen(req), off = 0;
    while (off < n) {   /* the server may answer and close before all is sent */
        ssize_t w = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) { cap *= 2; buf = realloc(buf, cap); }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
    }
    buf[len] = 0;
    close(fd);
    return buf;
}

/* POST /v1/datasets with a chunked body of nchunks chunks of `chunk` spaces; the answer
 * (http_raw's; the caller frees it). */
static char *chunked_dataset_post(uint16_t port, const char *auth, size_t chunk, size_t nchunks) {
    size_t total = 512 + nchunks * (chunk + 16);
    char *big = malloc(total);
    if (!big) return NULL;
    size_t o = (size_t)snprintf(big, total, "POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\n%s"
                                "Content-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", auth);
    for (size_t i = 0; i < nchunks; i++) {
        o += (size_t)snprintf(big + o, total - o, "%zx\r\n", chunk);
        memset(big + o, ' ', chunk);
        o += chunk;
        memcpy(big + o, "\r\n", 2);
        o += 2;
    }
    snprintf(big + o, total - o, "0\r\n\r\n");
    char *r = http_raw(port, big);
    free(big);
    return r;
}

static int http_status(const char *resp) {
    int st = 0;
    if (resp && sscanf(resp, "HTTP/1.%*d %d", &st) != 1) st = 0;
    return st;
}

static const char *http_body(const char *resp) {
    const char *b = resp ? strstr(resp, "\r\n\r\n") : NULL;
    return b ? b + 4 : "";
}

/* The server machinery over loopback, on the paths that are answered
 * before any daemon action is needed (health, auth, routing, limits,
 * request validation), with a daemon context that only carries a token. */
static void test_server(void) {
    char err[256];
    daemon_t *d = calloc(1, sizeof *d);
    ok(api_start(d, "0.0.0.0:0", err, sizeof err) == NULL && strstr(err, "token"),
       "no token: non-loopback listen refused (%s)", err);
    ok(api_start(d, "127.0.0.1:notaport", err, sizeof err) == NULL, "bad listen address refused");
    snprintf(d->cfg.token, sizeof d->cfg.token, "s3cret");
    api_server_t *s = api_start(d, "127.0.0.1:0", err, sizeof err);
    ok(s != NULL && api_port(s) > 0, "server listens on an ephemeral port (%u) %s", api_port(s),
       s ? "" : err);
    if (!s) { free(d); return; }
    uint16_t port = api_port(s);
    const char *auth = "Authorization: Bearer s3cret\r\n";
    char req[1024];
    char *r;

    r = http_raw(port, "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 200 && strstr(r, "Content-Type: application/json") &&
       strstr(http_body(r), "{\"status\":\"ok\"}"), "GET /v1/health without a token -> 200 ok");
    free(r);

    r = http_raw(port, "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 401 && strstr(http_body(r), "\"unauthorized\"") &&
       strstr(r, "WWW-Authenticate: Bearer"), "GET /v1/status without a token -> 401");
    free(r);
    r = http_raw(port, "GET /v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer s3cre\r\n"
                       "Connection: close\r\n\r\n");
    ok(http_status(r) == 401, "wrong token -> 401");
    free(r);

    snprintf(req, sizeof req, "GET /v1/nothing HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 404 && strstr(http_body(r), "\"not_found\""), "unknown path -> 404 JSON");
    free(r);

    snprintf(req, sizeof req, "PUT /v1/jobs HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: 0\r\n"
             "Connection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 405 && strstr(r, "Allow: POST, GET, HEAD") &&
       strstr(http_body(r), "\"method_not_allowed\""), "PUT /v1/jobs -> 405 with Allow");
    free(r);

    snprintf(req, sizeof req, "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: 104857600\r\n"
             "Content-Type: application/json\r\nConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 413 && strstr(http_body(r), "\"too_large\""),
       "declared 100 MiB body -> 413 before it is read");
    free(r);

    /* a chunked body a little over its route's limit is read, dropped and refused */
    r = chunked_dataset_post(port, auth, 16 << 10, API_DATASET_BODY_MAX / (16 << 10) + 2);
    ok(r && http_status(r) == 413 && strstr(http_body(r), "\"too_large\""),
       "chunked dataset body over %u bytes -> 413", API_DATASET_BODY_MAX);
    free(r);
    /* one far over it is cut off: the connection closes before it is all sent */
    r = chunked_dataset_post(port, auth, 1 << 20, 8);
    ok(r && http_status(r) == 0, "chunked dataset body of 8 MiB: connection closed at the "
       "limit + %u bytes, no answer", API_BODY_DISCARD_MAX);
    free(r);
    r = http_raw(port, "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 200, "still serving after the cut-off");
    free(r);

    /* the boundary checks, on every route, before a body byte is read */
    r = http_raw(port, "GET /v1/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 421 && strstr(http_body(r), "\"misdirected_request\""),
       "foreign Host on /v1/health -> 421");
    free(r);
    snprintf(req, sizeof req, "DELETE /v1/datasets/a HTTP/1.1\r\nHost: evil.example:%u\r\n%s"
             "Connection: close\r\n\r\n", port, auth);
    r = http_raw(port, req);
    ok(http_status(r) == 421, "foreign Host with the right port on DELETE -> 421");
    free(r);
    snprintf(req, sizeof req, "GET /v1/jobs/j-1/events HTTP/1.1\r\nHost: localhost:%u\r\n%s"
             "Origin: http://evil.example\r\nConnection: close\r\n\r\n", port, auth);
    r = http_raw(port, req);
    ok(http_status(r) == 403 && strstr(http_body(r), "evil.example"),
       "foreign Origin on the event stream -> 403 naming it");
    free(r);
    snprintf(req, sizeof req, "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%s"
             "Origin: http://127.0.0.1:%u\r\nContent-Type: application/json\r\nContent-Length: 1\r\n"
             "Connection: close\r\n\r\n{", port, auth, port);
    r = http_raw(port, req);
    ok(http_status(r) == 400 && strstr(http_body(r), "malformed JSON"),
       "own Origin and Host pass the checks: the handler answers (%d)", http_status(r));
    free(r);
    snprintf(req, sizeof req, "POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\n%s"
             "Content-Type: text/plain\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 415 && strstr(http_body(r), "\"unsupported_media_type\""),
       "text/plain body -> 415 on the headers alone (no body sent)");
    free(r);
    snprintf(req, sizeof req, "POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\n%s"
             "Content-Type: application/json\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 413, "declared dataset body over %u bytes -> 413 on the headers alone",
       API_DATASET_BODY_MAX);
    free(r);
    r = http_raw(port, "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       "Content-Length: 60000000\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 401, "no token, 60 MB body declared: 401 on the headers alone (no body sent)");
    free(r);
    snprintf(req, sizeof req, "POST /v1/jobs/j-1/cancel HTTP/1.1\r\nHost: localhost\r\n%s"
             "Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 415, "bodyless POST with text/plain -> 415");
    free(r);
    snprintf(req, sizeof req, "POST /v1/jobs/j-1/cancel HTTP/1.1\r\nHost: localhost\r\n%s"
             "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 413, "a body on cancel (takes none) -> 413");
    free(r);
    r = http_raw(port, "GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 400, "HTTP/1.1 without a Host -> 400");
    free(r);
    r = http_raw(port, "GET /v1/health HTTP/1.0\r\n\r\n");
    ok(http_status(r) == 200, "HTTP/1.0 without a Host -> 200");
    free(r);

    const char *badjson = "{\"type\":";
    snprintf(req, sizeof req, "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %zu\r\n"
             "Content-Type: application/json\r\nConnection: close\r\n\r\n%s", auth,
             strlen(badjson), badjson);
    r = http_raw(port, req);
    ok(http_status(r) == 400 && strstr(http_body(r), "malformed JSON"), "malformed job JSON -> 400");
    free(r);

    const char *dsbody = "{\"name\":\"a\",\"synthetic\":{\"samples\":4,\"image_size\":28,\"sharp\":1}}";
    snprintf(req, sizeof req, "POST /v1/datasets HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %zu\r\n"
             "Content-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n%s", auth,
             strlen(dsbody), dsbody);
    r = http_raw(port, req);
    ok(http_status(r) == 400 && strstr(http_body(r), "synthetic.sharp") &&
       strstr(http_body(r), "\"invalid_field\""), "unknown nested dataset field -> 400 naming it");
    free(r);

    snprintf(req, sizeof req, "GET /v1/jobs?limit=abc HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 400 && strstr(http_body(r), "limit"), "limit=abc -> 400 naming it");
    free(r);
    snprintf(req, sizeof req, "GET /v1/jobs?colour=red HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 400 && strstr(http_body(r), "colour"), "unknown query parameter -> 400 naming it");
    free(r);
    snprintf(req, sizeof req, "GET /v1/jobs?state=sleeping HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 400 && strstr(http_body(r), "sleeping"), "unknown state filter -> 400");
    free(r);
    snprintf(req, sizeof req, "GET /v1/checkpoints/c-1/files/..%%2F..%%2Ftraind.db HTTP/1.1\r\nHost: localhost\r\n%s"
             "Connection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 404, "encoded path escape in a file name -> 404");
    free(r);
    snprintf(req, sizeof req, "GET /v1/datasets/.hidden HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n", auth);
    r = http_raw(port, req);
    ok(http_status(r) == 404, "impossible dataset name -> 404");
    free(r);

    api_code_count_t c[16];
    size_t n = api_request_counts(s, c, 16);
    uint64_t n200 = 0, n401 = 0, n400 = 0, n413 = 0, n415 = 0, n421 = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].code == 200) n200 = c[i].n;
        if (c[i].code == 401) n401 = c[i].n;
        if (c[i].code == 400) n400 = c[i].n;
        if (c[i].code == 413) n413 = c[i].n;
        if (c[i].code == 415) n415 = c[i].n;
        if (c[i].code == 421) n421 = c[i].n;
    }
    ok(n200 == 3 && n401 == 3 && n400 == 7 && n413 == 4 && n415 == 2 && n421 == 2,
       "requests counted by status (200:%llu 401:%llu 400:%llu 413:%llu 415:%llu 421:%llu)",
       (unsigned long long)n200, (unsigned long long)n401, (unsigned long long)n400,
       (unsigned long long)n413, (unsigned long long)n415, (unsigned long long)n421);

    /* the dashboard: public page and assets, data routes still closed */
    r = http_raw(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 200 && strstr(r, "Content-Type: text/html; charset=utf-8") &&
       strstr(r, "Content-Security-Policy: default-src 'none'; script-src 'self';") &&
       strstr(r, "X-Content-Type-Options: nosniff") && strstr(http_body(r), "<!doctype html>"),
       "GET / without a token -> 200 the page, with CSP and nosniff");
    const char *et = r ? strstr(r, "ETag: ") : NULL;
    char etag[64] = "";
    if (et) sscanf(et + 6, "%63[^\r]", etag);
    free(r);
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: W/\"zz\", %s\r\n"
             "Connection: close\r\n\r\n", etag);
    r = http_raw(port, req);
    ok(etag[0] == '"' && http_status(r) == 304 && !*http_body(r), "If-None-Match with its ETag %s -> 304", etag);
    free(r);
    r = http_raw(port, "GET /assets/chart.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 200 && strstr(r, "Content-Type: text/javascript") && strstr(http_body(r), "Chart.js"),
       "GET /assets/chart.min.js without a token -> 200 Chart.js");
    free(r);
    r = http_raw(port, "GET /assets/../v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 401, "GET /assets/../v1/status without a token -> 401");
    free(r);
    r = http_raw(port, "GET /assets/none.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    ok(http_status(r) == 404 && strstr(http_body(r), "\"not_found\""), "unknown asset -> 404 JSON");
    free(r);
    api_stop(s);
    free(d);
}

/* The dashboard's pure parts and the assets built into the binary. */
static void test_dashboard(void) {
    static const struct { const char *path; int pub; } paths[] = {
        { "/", 1 }, { "/assets/app.js", 1 }, { "/assets/chart.min.js", 1 },
        { "/assets/", 0 }, { "/assets/../v1/status", 0 }, { "/assets/a/b", 0 },
        { "/assets/.hidden", 0 }, { "/v1/status", 0 }, { "//", 0 }, { "/index.html", 0 },
        { "/assetsx/app.js", 0 }, { "", 0 },
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        ok(api_dashboard_public(paths[i].path) == paths[i].pub, "'%s' is %s", paths[i].path,
           paths[i].pub ? "public" : "not public");
    ok(!api_dashboard_public(NULL), "NULL path is not public");

    ok(!strcmp(api_dashboard_content_type("index.html"), "text/html; charset=utf-8") &&
       !strcmp(api_dashboard_content_type("app.js"), "text/javascript; charset=utf-8") &&
       !strcmp(api_dashboard_content_type("style.css"), "text/css; charset=utf-8") &&
       !strcmp(api_dashboard_content_type("favicon.svg"), "image/svg+xml") &&
       !strcmp(api_dashboard_content_type("x.bin"), "application/octet-stream"),
       "content types by extension");

    static const char *const want[] = { "index.html", "app.js", "client.js", "ui.js", "style.css",
                                        "favicon.svg", "chart.min.js" };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const api_asset_t *a = api_dashboard_find(want[i]);
        ok(a && a->len > 0 && a->data[a->len] == 0 && a->etag[0] == '"' &&
           a->etag[strlen(a->etag) - 1] == '"', "built-in asset %s (%zu bytes, ETag %s)", want[i],
           a ? a->len : 0, a ? a->etag : "-");
    }
    ok(api_dashboard_find("nothing.js") == NULL && api_dashboard_find(NULL) == NULL, "unknown asset -> NULL");

    /* every <script> of the page loads a file: no inline script for the CSP to refuse */
    const api_asset_t *page = api_dashboard_find("index.html");
    int inline_scripts = 0, scripts = 0;
    for (const char *p = page ? (const char *)page->data : ""; (p = strstr(p, "<script")); p++) {
        const char *end = strchr(p, '>'), *src = strstr(p, " src=");
        scripts++;
        if (!end || !src || src > end) inline_scripts++;
    }
    ok(scripts == 4 && inline_scripts == 0, "the page has 4 scripts, none inline (%d, %d)", scripts, inline_scripts);
    ok(!strstr(api_dashboard_csp, "unsafe") && strstr(api_dashboard_csp, "script-src 'self'") &&
       strstr(api_dashboard_csp, "frame-ancestors 'none'"), "CSP: no unsafe-*, scripts from self, no framing");
}

static void test_body_values(void) {
    char field[64];
    const char *small = "{\"type\":\"infer\",\"indices\":[1,2,[3,4]],\"model\":{\"backbone\":\"x\"}}";
    size_t n = api_job_body_values(small, strlen(small), 100, field, sizeof field);
    ok(n == 6 && field[0] == 0, "a small spec: 6 values below the top level (%zu), under the limit", n);
    /* commas, brackets and escaped quotes inside strings are not structure */
    const char *str = "{\"a\":\"x,[y],{z}\\\",\",\"b\":[1,2]}";
    n = api_job_body_values(str, strlen(str), 100, field, sizeof field);
    ok(n == 2, "strings (with an escaped quote) hold no values (%zu)", n);
    /* past the limit: stops and names the top-level key it was counting under */
    size_t cap = 1 << 20, o = 0;
    char *big = malloc(cap);
    o += (size_t)snprintf(big + o, cap - o, "{\"type\":\"eval\",\"ind\\\"ices\":[[0,1]],\"indices\":[");
    for (int i = 0; i < 70000 && o + 8 < cap; i++) o += (size_t)snprintf(big + o, cap - o, "%s%d", i ? "," : "", i % 10);
    o += (size_t)snprintf(big + o, cap - o, "]}");
    n = api_job_body_values(big, o, API_JOB_VALUES_MAX, field, sizeof field);
    ok(n == API_JOB_VALUES_MAX + 1 && !strcmp(field, "indices"),
       "70000 indices: stops at %d and names 'indices' ('%s')", API_JOB_VALUES_MAX + 1, field);
    n = api_job_body_values(big, o, 1000000, field, sizeof field);
    ok(n > 70000 && n < 70010, "without a limit it counts them all (%zu)", n);
    free(big);
    /* a legal spec at the validator's own limits stays far below: 4096 ranges, 256 images */
    cap = 4 << 20;
    big = malloc(cap);
    o = (size_t)snprintf(big, cap, "{\"type\":\"infer\",\"indices\":[");
    for (int i = 0; i < 4096; i++) o += (size_t)snprintf(big + o, cap - o, "%s[%d,%d]", i ? "," : "", i, i + 1);
    o += (size_t)snprintf(big + o, cap - o, "],\"images\":[");
    for (int i = 0; i < 256; i++)
        o += (size_t)snprintf(big + o, cap - o, "%s{\"u8_hwc_b64\":\"AQID\",\"height\":1,\"width\":1,\"sha256\":\"ab\"}",
                              i ? "," : "");
    o += (size_t)snprintf(big + o, cap - o, "]}");
    n = api_job_body_values(big, o, API_JOB_VALUES_MAX, field, sizeof field);
    ok(n < API_JOB_VALUES_MAX / 4, "4096 ranges and 256 images: %zu values, well under %d", n, API_JOB_VALUES_MAX);
    free(big);
}

int main(void) {
    test_body_values();
    test_routes();
    test_errors();
    test_json_in();
    test_query_and_names();
    test_auth();
    test_boundaries();
    test_prom();
    test_prom_status();
    test_sse();
    test_listen();
    test_server();
    test_dashboard();
    return tap_done();
}
