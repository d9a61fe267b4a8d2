/* api/api.h — the HTTP API of traind (SPEC §3), public entry points.
 *
 * The daemon's main.c starts the server once the store is open and stops it
 * before tearing the daemon context down:
 *
 *     char err[256];
 *     api_server_t *api = api_start(d, "127.0.0.1:8470", err, sizeof err);
 *     if (!api) { fprintf(stderr, "traind: %s\n", err); ... }
 *     ...
 *     api_stop(api);
 *
 * The server is libmicrohttpd with its own internal threads; handlers read
 * through the daemon's read-only store connections and never wait on a
 * running job or on the store's writer. Token, dataset roots, connection
 * limit, idle timeout and the other settings come from the daemon context
 * (daemon/daemon.h; d may be NULL in tests: defaults, no token).
 * The listen address is parsed by daemon/config.c (config_parse_listen), which
 * also owns its default and the limits' defaults. */
#ifndef TRAIND_API_H
#define TRAIND_API_H

#include <stddef.h>
#include <stdint.h>

struct daemon;
typedef struct api_server api_server_t;

/* Starts listening on listen_addr ("host:port", "[v6]:port", or ":port" for
 * 127.0.0.1). Returns NULL with a message in err on failure (bad address,
 * port in use, non-loopback address without a token). */
api_server_t *api_start(struct daemon *d, const char *listen_addr, char *err, size_t errlen);

/* Stops accepting, closes open connections (SSE streams end) and frees. NULL is fine. */
void api_stop(api_server_t *s);

/* The port actually bound (useful with port 0). */
uint16_t api_port(const api_server_t *s);

#endif
