/* api/prom.c — Prometheus text exposition format 0.0.4 for GET /metrics:
 * a growing text buffer with HELP/TYPE family headers and labelled samples.
 * Label values are escaped (backslash, double quote, newline); values are
 * printed with %.17g (NaN and ±Inf in Prometheus' spelling). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"

void prom_init(prom_buf_t *b) { memset(b, 0, sizeof *b); }

void prom_free(prom_buf_t *b) { free(b->buf); memset(b, 0, sizeof *b); }

static void prom_put(prom_buf_t *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (b->len + n + 1 > cap) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) { b->oom = 1; return; }
        b->buf = nb; b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void prom_puts(prom_buf_t *b, const char *s) { prom_put(b, s, strlen(s)); }

void prom_family(prom_buf_t *b, const char *name, const char *type, const char *help) {
    prom_puts(b, "# HELP "); prom_puts(b, name); prom_puts(b, " ");
    /* HELP text escapes backslash and newline */
    for (const char *p = help; *p; p++) {
        if (*p == '\\') prom_puts(b, "\\\\");
        else if (*p == '\n') prom_puts(b, "\\n");
        else prom_put(b, p, 1);
    }
    prom_puts(b, "\n# TYPE "); prom_puts(b, name); prom_puts(b, " ");
    prom_puts(b, type); prom_puts(b, "\n");
}

size_t prom_escape(const char *in, char *out, size_t outlen) {
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        const char *rep = NULL;
        char one[2] = { *p, 0 };
        if (*p == '\\') rep = "\\\\";
        else if (*p == '"') rep = "\\\"";
        else if (*p == '\n') rep = "\\n";
        else rep = one;
        for (const char *r = rep; *r; r++, n++)
            if (n + 1 < outlen) out[n] = *r;
    }
    if (outlen) out[n < outlen ? n : outlen - 1] = 0;
    return n;
}

void prom_sample(prom_buf_t *b, const char *name, const char *const *labels, double value) {
    prom_puts(b, name);
    if (labels && labels[0]) {
        prom_puts(b, "{");
        for (int i = 0; labels[i] && labels[i + 1]; i += 2) {
            if (i) prom_puts(b, ",");
            prom_puts(b, labels[i]);
            prom_puts(b, "=\"");
            size_t need = prom_escape(labels[i + 1], NULL, 0);
            char stackbuf[256];
            char *esc = need < sizeof stackbuf ? stackbuf : malloc(need + 1);
            if (!esc) { b->oom = 1; return; }
            prom_escape(labels[i + 1], esc, need + 1);
            prom_put(b, esc, need);
            if (esc != stackbuf) free(esc);
            prom_puts(b, "\"");
        }
        prom_puts(b, "}");
    }
    char num[64];
    if (isnan(value)) snprintf(num, sizeof num, "NaN");
    else if (isinf(value)) snprintf(num, sizeof num, value > 0 ? "+Inf" : "-Inf");
    else if (value == floor(value) && fabs(value) < 1e15) snprintf(num, sizeof num, "%.0f", value);
    else snprintf(num, sizeof num, "%.17g", value);
    prom_puts(b, " ");
    prom_puts(b, num);
    prom_puts(b, "\n");
}
