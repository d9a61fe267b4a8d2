/* daemon/config.h — traind's configuration: command-line flags and the
 * `key = value` config file (same names as the long flags, without "--").
 *
 *   listen = 127.0.0.1:8470        state-dir = /var/lib/traind
 *   backend = auto|cpu|cuda        token-file = /etc/traind/token
 *   dataset-root = /data           (repeatable)
 *   devices = 0,1                  memory-reserve-gb = 2
 *   log-level = debug|info|warn|error
 *   cancel-grace-s = 60            (SIGKILL a cancelled worker after this)
 *   max-connections = 256          idle-timeout-s = 120   (HTTP limits)
 *   keep-jobs = 10000              (ended jobs kept; older ones are deleted)
 *   job-memory-gb = 0              (most memory one job may use; 0 = the device's room)
 *
 * Flags override the file; --config FILE is read first wherever it appears. */
#ifndef TRAIND_CONFIG_H
#define TRAIND_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>

#define CFG_MAX_ROOTS 16
#define CFG_MAX_DEVICES 16
#define CFG_TOKEN_MAX 256

#define CONFIG_DEFAULT_LISTEN "127.0.0.1:8470"
#define CONFIG_CONN_LIMIT      256   /* --max-connections: simultaneous connections; more are refused */
#define CONFIG_IDLE_TIMEOUT_S  120   /* --idle-timeout-s: an idle connection is closed after this */
#define CONFIG_KEEP_JOBS     10000   /* --keep-jobs: ended jobs kept (0 = all) */

typedef struct {
    char listen[256];                       /* host:port; default 127.0.0.1:8470 */
    char state_dir[PATH_MAX];               /* $STATE_DIRECTORY or ./traind-state */
    char backend[16];                       /* auto|cpu|cuda */
    char token_file[PATH_MAX];
    char token[CFG_TOKEN_MAX];              /* read from token_file; "" = no auth */
    char dataset_roots[CFG_MAX_ROOTS][PATH_MAX];   /* realpath'd */
    int n_roots;
    int devices[CFG_MAX_DEVICES];
    int n_devices;                          /* 0 = device 0 only */
    double memory_reserve_gb;               /* per device, kept free for jobs */
    int log_level;                          /* LOG_DEBUG..LOG_ERROR (daemon/log.h) */
    double cancel_grace_s;                  /* default 60 */
    int max_connections;                    /* simultaneous HTTP connections; default 256 */
    int idle_timeout_s;                     /* an idle HTTP connection is closed after it; default 120 */
    int keep_jobs;                          /* ended jobs kept in the store; default 10000, 0 = all */
    double job_memory_gb;                   /* most memory one job may use per device; 0 = no cap */
    char config_file[PATH_MAX];
} daemon_cfg_t;

void config_defaults(daemon_cfg_t *c);
/* Applies one setting by name (flag name without dashes). 0 or -1 + err. */
int config_set(daemon_cfg_t *c, const char *key, const char *value, char *err, size_t errlen);
/* Reads a `key = value` file ('#' comments, blank lines). 0 or -1 + err (with line number). */
int config_load_file(daemon_cfg_t *c, const char *path, char *err, size_t errlen);
/* Parses the daemon's argv (after the program name). Sets *help / *version when
 * asked. 0 or -1 + err. */
int config_parse_args(daemon_cfg_t *c, int argc, char **argv, int *help, int *version,
                      char *err, size_t errlen);
/* Final checks and derived values: reads the token file, realpaths the roots,
 * refuses a non-loopback listen address without a token. 0 or -1 + err. */
int config_finish(daemon_cfg_t *c, char *err, size_t errlen);
/* Parses a listen address ("host:port", "[v6]:port", ":port" for 127.0.0.1;
 * numeric hosts and "localhost") into *ss. 0, or -1 with a message. */
int config_parse_listen(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen,
                        char *err, size_t errlen);
/* 1 when the address parses and is a loopback address (127.0.0.0/8, ::1). */
int config_listen_is_loopback(const char *listen);
void config_usage(FILE *f);

#endif
