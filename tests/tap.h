/* tests/tap.h — a minimal TAP producer for the C tests (read by `prove`).
 *
 *   ok(cond, "name %d", i);        one test point
 *   is_close(a, b, tol, "name");   |a-b| <= tol*max(1,|b|)
 *   diag("text");                  a '#' line
 *   return tap_done();             plan line and exit status
 *   count_entries(dir);            entries of a directory but . and .. (0 when unreadable)
 */
#ifndef TRAIND_TAP_H
#define TRAIND_TAP_H

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

__attribute__((format(printf, 2, 3), unused))
static int ok(int cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++tap_n);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (!cond) tap_failed++;
    return cond;
}

__attribute__((format(printf, 1, 2), unused))
static void diag(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

__attribute__((unused))
static int is_close(double a, double b, double tol, const char *name) {
    double m = fabs(b) > 1 ? fabs(b) : 1;
    int r = ok(isfinite(a) && fabs(a - b) <= tol * m, "%s", name);
    if (!r) diag("  got %.9g, want %.9g (tol %.3g)", a, b, tol);
    return r;
}

__attribute__((unused))
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    if (d) closedir(d);
    return n;
}

__attribute__((unused))
static int tap_done(void) {
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
