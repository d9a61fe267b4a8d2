/* daemon/config.h — traind's configuration: command-line flags and the
 * `key = value` config file (same names as the long flags, without "--").
 *
 *   listen = 127.0.0.1:8470        state-dir = /var/lib/traind
 *   backend = auto|cpu|cuda        token-file = /etc/traind/token
 *   dataset-root = /data           (repeatable)
 *   model-root = /models           (repeatable; model.weights may also lie under a dataset-root)
 *   devices = 0,1                  memory-reserve-gb = 2
 *   log-level = debug|info|warn|error
 *   cancel-grace-s = 60            (SIGKILL a cancelled worker after this)
 *   max-connections = 256          idle-timeout-s = 120   (HTTP limits)
 *   max-connections-per-ip = 128   request-timeout-s = 30
 *   allow-host = traind.example.com        (repeatable; name or name:port)
 *   allow-origin = https://traind.example.com   (repeatable)
 *   keep-jobs = 10000              (ended jobs kept; older ones are deleted)
 *   job-memory-gb = 0              (most memory one job may use; 0 = the device's room)
 *   cpu-device-memory-gb = 0       (cpu backend: dataset bytes one virtual device may hold)
 *   import-decoder = auto|cpu|hardware|cuda   (JPEG decoding of imports: gpu/jpeg_gpu.h)
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
#define CONFIG_PER_IP_LIMIT    128   /* --max-connections-per-ip: connections of one client address */
#define CONFIG_REQUEST_TIMEOUT_S 30  /* --request-timeout-s: a request must arrive whole within this */
#define CFG_MAX_ALLOW          16    /* --allow-host / --allow-origin entries of each kind */
#define CFG_ALLOW_LEN          256   /* bytes of one entry */
#define CONFIG_KEEP_JOBS     10000   /* --keep-jobs: ended jobs kept (0 = all) */

typedef struct {
    char listen[256];                       /* host:port; default 127.0.0.1:8470 */
    char state_dir[PATH_MAX];               /* $STATE_DIRECTORY or ./traind-state */
    char backend[16];                       /* auto|cpu|cuda */
    char import_decoder[16];                /* auto|cpu|hardware|cuda: nvJPEG beside the CPU decoders */
    char token_file[PATH_MAX];
    char token[CFG_TOKEN_MAX];              /* read from token_file; "" = no auth */
    char dataset_roots[CFG_MAX_ROOTS][PATH_MAX];   /* realpath'd */
    int n_roots;
    char model_roots[CFG_MAX_ROOTS][PATH_MAX];     /* realpath'd */
    int n_model_roots;
    int devices[CFG_MAX_DEVICES];
    int n_devices;                          /* 0 = device 0 only */
    double memory_reserve_gb;               /* per device, kept free for jobs */
    int log_level;                          /* LOG_DEBUG..LOG_ERROR (daemon/log.h) */
    double cancel_grace_s;                  /* default 60 */
    int max_connections;                    /* simultaneous HTTP connections; default 256 */
    int idle_timeout_s;                     /* an idle HTTP connection is closed after it; default 120 */
    int max_conn_per_ip;                    /* connections of one client address; default 128 */
    int request_timeout_s;                  /* headers and body must arrive within it; default 30 */
    char allow_hosts[CFG_MAX_ALLOW][CFG_ALLOW_LEN];    /* extra Host values: "name" or "name:port", lowercase */
    int n_allow_hosts;
    char allow_origins[CFG_MAX_ALLOW][CFG_ALLOW_LEN];  /* extra Origins: "scheme://host[:port]", lowercase */
    int n_allow_origins;
    int keep_jobs;                          /* ended jobs kept in the store; default 10000, 0 = all */
    double job_memory_gb;                   /* most memory one job may use per device; 0 = no cap */
    double cpu_device_memory_gb;            /* cpu backend: resident dataset bytes per virtual device; 0 = no cap */
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
/* Final checks and derived values: reads the token file (refused when others
 * may read or write it: its mode must not give "other" any of rw), realpaths
 * the roots, refuses a non-loopback listen address without a token. 0 or -1 + err. */
int config_finish(daemon_cfg_t *c, char *err, size_t errlen);
/* Parses a listen address ("host:port", "[v6]:port", ":port" for 127.0.0.1;
 * numeric hosts and "localhost") into *ss. 0, or -1 with a message. */
int config_parse_listen(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen,
                        char *err, size_t errlen);
/* 1 when the address parses and is a loopback address (127.0.0.0/8, ::1). */
int config_listen_is_loopback(const char *listen);
/* Splits "name", "name:port", "[v6]" or "[v6]:port" (a Host header, an
 * --allow-host value, the authority of an origin) into the lowercased name
 * (IPv6 kept in brackets) and the port (-1 when absent). The name is a DNS
 * name or IPv4 address ([a-z0-9._-], at most 253 bytes) or a valid bracketed
 * IPv6 address; the port is 1..65535 in decimal. 0, or -1 when malformed. */
int config_split_host(const char *v, char *name, size_t namelen, int *port);
/* Checks and normalizes an --allow-host value into out: a DNS name or IPv4
 * address, or a bracketed IPv6 address, with an optional ":port" (1..65535);
 * lowercased. 0, or -1 with a message. */
int config_norm_allow_host(const char *v, char *out, size_t outlen, char *err, size_t errlen);
/* Checks and normalizes an --allow-origin value into out: "http://" or
 * "https://", a host as for --allow-host, an optional port; no path (one
 * trailing '/' is dropped); lowercased; a port that is the scheme's default
 * is dropped, as browsers serialize origins. 0, or -1 with a message. */
int config_norm_allow_origin(const char *v, char *out, size_t outlen, char *err, size_t errlen);
void config_usage(FILE *f);

#endif
