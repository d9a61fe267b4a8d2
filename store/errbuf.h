/* store/errbuf.h — the project's one way of reporting an ordinary failure:
 * a human message in a caller-provided buffer (err, errlen), and -1; and the
 * one way such a message becomes JSON.
 *
 * A message names its subject once. A function whose messages already say
 * what failed (model_create's "model: …", backend_open's "cuda: …",
 * synth_generate's "synth: …", a file's path) is passed on as it is; a caller
 * adds only what the callee cannot know (the step, the job, the checkpoint),
 * so no message reads "model: model: …". */
#ifndef TRAIND_ERRBUF_H
#define TRAIND_ERRBUF_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>

/* Formats into err (when err && errlen) and returns -1. */
__attribute__((format(printf, 3, 4)))
int errbuf_set(char *err, size_t errlen, const char *fmt, ...);
int errbuf_vset(char *err, size_t errlen, const char *fmt, va_list ap);

/* A message as a JSON string, whatever bytes it holds: json_string() refuses
 * invalid UTF-8 (a file name on disk, a raw URL), so each byte that does not
 * start a valid UTF-8 sequence becomes '?'. NULL only when out of memory. */
json_t *errbuf_json_string(const char *s);

#endif
