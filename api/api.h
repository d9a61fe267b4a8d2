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
 *
 * The helpers below are also used by the daemon (refusing a non-loopback
 * listen address without a token) and by tests. */
#ifndef TRAIND_API_H
#define TRAIND_API_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct daemon;
typedef struct api_server api_server_t;

#define API_DEFAULT_LISTEN "127.0.0.1:8470"
/* Defaults of --max-connections and --idle-timeout-s (daemon/config.h). */
#define API_CONN_LIMIT      256          /* simultaneous connections; more are refused */
#define API_IDLE_TIMEOUT_S  120          /* an idle connection is closed after this */

/* Starts listening on listen_addr ("host:port", "[v6]:port", or ":port" for
 * 127.0.0.1). Returns NULL with a message in err on failure (bad address,
 * port in use, non-loopback address without a token). */
api_server_t *api_start(struct daemon *d, const char *listen_addr, char *err, size_t errlen);

/* Stops accepting, closes open connections (SSE streams end) and frees. NULL is fine. */
void api_stop(api_server_t *s);

/* The port actually bound (useful with port 0). */
uint16_t api_port(const api_server_t *s);

/* Parses a listen address into *ss (IPv4 or IPv6, numeric hosts and
 * "localhost"). 0 on success, -1 with a message. */
int api_parse_listen(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen,
                     char *err, size_t errlen);

/* 1 when the address parses and is a loopback address (127.0.0.0/8, ::1). */
int api_listen_is_loopback(const char *addr);

#endif
