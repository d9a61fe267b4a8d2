/* api/auth.c — bearer-token authentication (SPEC §3): with a token
 * configured, every path but /v1/health and the dashboard's page and static
 * assets (/, /assets/<name>: they hold no data; api_dashboard_public) needs
 * "Authorization: Bearer <token>".
 * The comparison takes a time that depends on the lengths only, never on
 * where the first differing byte is. */
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"

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
