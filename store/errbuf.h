/* store/errbuf.h — the project's one way of reporting an ordinary failure:
 * a human message in a caller-provided buffer (err, errlen), and -1. */
#ifndef TRAIND_ERRBUF_H
#define TRAIND_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>

/* Formats into err (when err && errlen) and returns -1. */
__attribute__((format(printf, 3, 4)))
int errbuf_set(char *err, size_t errlen, const char *fmt, ...);
int errbuf_vset(char *err, size_t errlen, const char *fmt, va_list ap);

#endif
