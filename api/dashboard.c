/* api/dashboard.c — the web dashboard: GET / (the page) and
 * GET /assets/{name} (its scripts, style sheet, icon and the charting
 * library), answered from bytes built into the binary.
 *
 * The assets are api/dashboard/ (html, js, css, svg) plus Chart.js from
 * Debian's libjs-chart.js; the Makefile turns them into
 * build/gen/api/dashboard_assets.c (scripts/embed-assets.py), so nothing is
 * read from disk or fetched from elsewhere at run time. The page is a
 * client of the JSON API and of the event streams: it holds no data, so the
 * page and its assets are served without a token (a browser cannot attach a
 * bearer token to a navigation), while every data route it calls keeps its
 * authentication; the page asks for the token and sends it as
 * "Authorization: Bearer" itself (api/dashboard/client.js).
 *
 * Every answer carries a Content-Security-Policy that allows scripts, styles
 * and connections from this origin only (no inline script, no eval), refuses
 * framing, and an ETag (the bytes' hash) so a reload is a 304. */
#include <stdio.h>
#include <string.h>

#include "api/api_internal.h"

const char api_dashboard_csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const api_asset_t *api_dashboard_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < api_dashboard_nassets; i++)
        if (!strcmp(api_dashboard_assets[i].name, name)) return &api_dashboard_assets[i];
    return NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

const char *api_dashboard_content_type(const char *name) {
    if (ends_with(name, ".html")) return "text/html; charset=utf-8";
    if (ends_with(name, ".js")) return "text/javascript; charset=utf-8";
    if (ends_with(name, ".css")) return "text/css; charset=utf-8";
    if (ends_with(name, ".svg")) return "image/svg+xml";
    return "application/octet-stream";
}

int api_dashboard_public(const char *path) {
    if (!path) return 0;
    if (!strcmp(path, "/")) return 1;
    /* one plain name after /assets/: no '/', no leading '.', so no way out */
    return !strncmp(path, "/assets/", 8) && api_name_ok(path + 8);
}

/* 1 when the request's If-None-Match lists etag (or is "*"). */
static int not_modified(api_req_t *r, const char *etag) {
    const char *inm = api_header(r, "If-None-Match");
    if (!inm) return 0;
    size_t el = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
        size_t n = (size_t)(t - p);
        if (n >= 2 && !strncmp(p, "W/", 2)) { p += 2; n -= 2; }   /* weak compare */
        if ((n == 1 && *p == '*') || (n == el && !memcmp(p, etag, el))) return 1;
        p = e;
    }
    return 0;
}

static void reply_asset(api_req_t *r, const api_asset_t *a) {
    api_reply_header(r, "Content-Security-Policy", api_dashboard_csp);
    api_reply_header(r, "X-Frame-Options", "DENY");
    api_reply_header(r, "Referrer-Policy", "no-referrer");
    api_reply_header(r, "Cache-Control", "no-cache");
    api_reply_header(r, "ETag", a->etag);
    r->kind = API_BODY_STATIC;
    r->content_type = api_dashboard_content_type(a->name);
    if (not_modified(r, a->etag)) {
        r->status = 304;
        r->static_data = "";
        r->static_len = 0;
        return;
    }
    r->status = 200;
    r->static_data = a->data;
    r->static_len = a->len;
}

void api_dashboard_page(api_req_t *r) {
    const api_asset_t *a = api_dashboard_find("index.html");
    if (!a) {
        api_reply_error(r, 404, "not_found", "this build has no dashboard");
        return;
    }
    /* The page reads no query itself (its state is in the #fragment). */
    reply_asset(r, a);
}

void api_dashboard_asset(api_req_t *r) {
    const char *name = r->params[0];
    const api_asset_t *a = api_name_ok(name) ? api_dashboard_find(name) : NULL;
    if (!a) {
        api_reply_error(r, 404, "not_found", "no dashboard asset '%s'", name);
        api_reply_header(r, "Content-Security-Policy", api_dashboard_csp);
        return;
    }
    reply_asset(r, a);
}
