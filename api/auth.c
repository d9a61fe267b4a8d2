/* api/auth.c — who may make a request (SPEC §3, issue 13): the bearer token,
 * the Host a request names, the browser Origin it comes from, and the
 * content-type and size rules on its body. These are pure functions of the
 * headers; api/http.c applies them to every request, whatever its route, on
 * the headers alone, before any body byte is read.
 *
 * Token: with a token configured, every path but /v1/health and the
 * dashboard's page and static assets (/, /assets/<name>: they hold no data;
 * api_dashboard_public) needs "Authorization: Bearer <token>". The
 * comparison takes a time that depends on the lengths only, never on where
 * the first differing byte is.
 *
 * Host (DNS rebinding): a page of evil.example whose name is re-pointed at
 * 127.0.0.1 makes the browser send "Host: evil.example". Accepted are
 * localhost, 127.0.0.1, [::1] and the address the client connected to, each
 * with the daemon's port or without a port (the name is what a rebinding
 * attack cannot forge; clients omit the port only for port 80), and the
 * --allow-host values ("name" for any port, "name:port" for that one).
 *
 * Origin (cross-site requests): a browser names the page's origin on every
 * request that is not a plain GET/HEAD, and on cross-origin reads. Accepted
 * are the origin the request was itself sent to — http:// plus its (already
 * accepted) Host — and the --allow-origin values; anything else, "null"
 * included, is refused.
 *
 * Bodies: a body must be "Content-Type: application/json" (parameters such as
 * charset are ignored), so the simple-request types a page may send
 * cross-site without asking (text/plain, application/x-www-form-urlencoded,
 * multipart/form-data) never reach a handler; a state-changing request with
 * no body must not carry one of those either — except an empty
 * application/x-www-form-urlencoded one from a non-browser (what libcurl
 * sends for `-d ''`, e.g. trainctl's cancel), recognised by the absence of
 * the Origin and Sec-Fetch-* headers that every current browser adds. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "daemon/config.h"

int api_token_equal(const char *a, size_t alen, const char *b, size_t blen) {
    /* Walk the full length of b (the secret) whatever a is; the difference
     * accumulates so no branch depends on the contents. */
    volatile unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0;
        diff |= (unsigned char)(x ^ (unsigned char)b[i]);
    }
    return diff == 0;
}

int api_bearer_ok(const char *h, const char *token) {
    if (!token || !*token) return 1;          /* no token configured */
    if (!h) return 0;
    while (*h == ' ' || *h == '\t') h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return 0;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    return api_token_equal(h, n, token, strlen(token));
}

/* ---- Host and Origin ---------------------------------------------------------- */

int api_host_ok(const api_boundary_t *b, const char *host, const char *local) {
    char name[CFG_ALLOW_LEN];
    int port;
    if (!host || config_split_host(host, name, sizeof name, &port)) return 0;
    int own = !strcmp(name, "localhost") || !strcmp(name, "127.0.0.1") || !strcmp(name, "[::1]") ||
              (local && *local && !strcmp(name, local));
    if (own && (port < 0 || port == b->port)) return 1;
    for (int i = 0; i < b->n_allow_hosts; i++) {
        char an[CFG_ALLOW_LEN];
        int ap;
        if (config_split_host(b->allow_hosts[i], an, sizeof an, &ap)) continue;
        if (!strcmp(name, an) && (ap < 0 || ap == port)) return 1;
    }
    return 0;
}

int api_origin_ok(const api_boundary_t *b, const char *origin, const char *host) {
    char norm[CFG_ALLOW_LEN], err[256];
    if (!origin || config_norm_allow_origin(origin, norm, sizeof norm, err, sizeof err)) return 0;
    for (int i = 0; i < b->n_allow_origins; i++)
        if (!strcmp(norm, b->allow_origins[i])) return 1;
    /* same origin: the scheme this server speaks and the authority the
     * request was sent to (80 is http's default, absent in an origin) */
    char name[CFG_ALLOW_LEN], self[CFG_ALLOW_LEN + 32];
    int port;
    if (!host || config_split_host(host, name, sizeof name, &port)) return 0;
    if (port < 0 || port == 80) snprintf(self, sizeof self, "http://%s", name);
    else snprintf(self, sizeof self, "http://%s:%d", name, port);
    return !strcmp(norm, self);
}

/* ---- content types and bodies ---------------------------------------------------- */

int api_media_type_is(const char *ct, const char *type) {
    if (!ct) return 0;
    while (*ct == ' ' || *ct == '\t') ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) n--;
    return n == strlen(type) && !strncasecmp(ct, type, n);
}

int api_content_type_simple(const char *ct) {
    return api_media_type_is(ct, "text/plain") ||
           api_media_type_is(ct, "application/x-www-form-urlencoded") ||
           api_media_type_is(ct, "multipart/form-data");
}

int api_method_safe(const char *m) {
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS");
}

int api_body_check(const api_body_head_t *h, const char **code, char *msg, size_t msglen) {
    const char *ct = h->content_type;
    if (h->has_body) {
        if (h->limit == 0) {
            *code = "too_large";
            snprintf(msg, msglen, "%s %.200s takes no request body", h->method, h->path);
            return 413;
        }
        if (!api_media_type_is(ct, "application/json")) {
            *code = "unsupported_media_type";
            snprintf(msg, msglen, "the request body must be JSON sent with 'Content-Type: "
                     "application/json' (got %s%.100s%s)", ct ? "'" : "", ct ? ct : "none",
                     ct ? "'" : "");
            return 415;
        }
        if (h->declared >= 0 && (unsigned long long)h->declared > h->limit) {
            *code = "too_large";
            snprintf(msg, msglen, "request body of %lld bytes exceeds the limit of %zu bytes for "
                     "%s %.200s", h->declared, h->limit, h->method, h->path);
            return 413;
        }
        return 0;
    }
    if (api_method_safe(h->method) || !api_content_type_simple(ct)) return 0;
    if (api_media_type_is(ct, "application/x-www-form-urlencoded") && !h->from_browser) return 0;
    *code = "unsupported_media_type";
    snprintf(msg, msglen, "a %s without a body must not carry 'Content-Type: %.100s' (what a "
             "browser form or a no-cors fetch sends); send no Content-Type or application/json",
             h->method, ct);
    return 415;
}
