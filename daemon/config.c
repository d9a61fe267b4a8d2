/* daemon/config.c — flags and the `key = value` config file (see config.h). */
#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "daemon/log.h"
#include "store/errbuf.h"

void config_defaults(daemon_cfg_t *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "%s", CONFIG_DEFAULT_LISTEN);
    const char *sd = getenv("STATE_DIRECTORY");   /* systemd: may be a ':'-separated list */
    if (sd && *sd) {
        size_t n = strcspn(sd, ":");
        snprintf(c->state_dir, sizeof c->state_dir, "%.*s", (int)n, sd);
    } else {
        snprintf(c->state_dir, sizeof c->state_dir, "./traind-state");
    }
    snprintf(c->backend, sizeof c->backend, "auto");
    snprintf(c->import_decoder, sizeof c->import_decoder, "auto");
    c->log_level = LOG_INFO;
    c->cancel_grace_s = 60;
    c->max_connections = CONFIG_CONN_LIMIT;
    c->idle_timeout_s = CONFIG_IDLE_TIMEOUT_S;
    c->max_conn_per_ip = CONFIG_PER_IP_LIMIT;
    c->request_timeout_s = CONFIG_REQUEST_TIMEOUT_S;
    c->keep_jobs = CONFIG_KEEP_JOBS;
}

static int parse_double(const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) return -1;
    *out = x;
    return 0;
}

int config_set(daemon_cfg_t *c, const char *key, const char *v, char *err, size_t errlen) {
#define COPY(dst) do { if (snprintf(dst, sizeof dst, "%s", v) >= (int)sizeof dst) \
        return errbuf_set(err, errlen, "%s: value too long", key); } while (0)
    if (!strcmp(key, "listen")) COPY(c->listen);
    else if (!strcmp(key, "state-dir")) COPY(c->state_dir);
    else if (!strcmp(key, "backend")) {
        if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
            return errbuf_set(err, errlen, "backend: '%s' is not cpu, cuda or auto", v);
        COPY(c->backend);
    } else if (!strcmp(key, "import-decoder")) {
        if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "hardware") && strcmp(v, "cuda"))
            return errbuf_set(err, errlen, "import-decoder: '%s' is not auto, cpu, hardware or cuda", v);
        COPY(c->import_decoder);
    } else if (!strcmp(key, "token-file")) COPY(c->token_file);
    else if (!strcmp(key, "dataset-root")) {
        if (c->n_roots >= CFG_MAX_ROOTS) return errbuf_set(err, errlen, "dataset-root: at most %d", CFG_MAX_ROOTS);
        if (!*v) return errbuf_set(err, errlen, "dataset-root: empty path");
        COPY(c->dataset_roots[c->n_roots]);
        c->n_roots++;
    } else if (!strcmp(key, "model-root")) {
        if (c->n_model_roots >= CFG_MAX_ROOTS) return errbuf_set(err, errlen, "model-root: at most %d", CFG_MAX_ROOTS);
        if (!*v) return errbuf_set(err, errlen, "model-root: empty path");
        COPY(c->model_roots[c->n_model_roots]);
        c->n_model_roots++;
    } else if (!strcmp(key, "devices")) {
        c->n_devices = 0;
        const char *p = v;
        while (*p) {
            char *end;
            errno = 0;
            long d = strtol(p, &end, 10);
            if (errno || end == p || d < 0 || d > 255 || (*end && *end != ','))
                return errbuf_set(err, errlen, "devices: '%s' is not a list like 0,1", v);
            if (c->n_devices >= CFG_MAX_DEVICES) return errbuf_set(err, errlen, "devices: at most %d", CFG_MAX_DEVICES);
            for (int i = 0; i < c->n_devices; i++)
                if (c->devices[i] == d) return errbuf_set(err, errlen, "devices: %ld listed twice", d);
            c->devices[c->n_devices++] = (int)d;
            p = *end ? end + 1 : end;
        }
        if (!c->n_devices) return errbuf_set(err, errlen, "devices: empty list");
    } else if (!strcmp(key, "memory-reserve-gb")) {
        if (parse_double(v, 0, 1e6, &c->memory_reserve_gb))
            return errbuf_set(err, errlen, "memory-reserve-gb: '%s' is not a number >= 0", v);
    } else if (!strcmp(key, "log-level")) {
        int l = log_level_parse(v);
        if (l < 0) return errbuf_set(err, errlen, "log-level: '%s' is not debug, info, warn or error", v);
        c->log_level = l;
    } else if (!strcmp(key, "cancel-grace-s")) {
        if (parse_double(v, 0.1, 86400, &c->cancel_grace_s))
            return errbuf_set(err, errlen, "cancel-grace-s: '%s' is not a number of seconds", v);
    } else if (!strcmp(key, "max-connections")) {
        double x;
        if (parse_double(v, 1, 100000, &x) || x != (int)x)
            return errbuf_set(err, errlen, "max-connections: '%s' is not a whole number in 1..100000", v);
        c->max_connections = (int)x;
    } else if (!strcmp(key, "idle-timeout-s")) {
        double x;
        if (parse_double(v, 1, 86400, &x) || x != (int)x)
            return errbuf_set(err, errlen, "idle-timeout-s: '%s' is not a whole number of seconds in 1..86400", v);
        c->idle_timeout_s = (int)x;
    } else if (!strcmp(key, "max-connections-per-ip")) {
        double x;
        if (parse_double(v, 1, 100000, &x) || x != (int)x)
            return errbuf_set(err, errlen, "max-connections-per-ip: '%s' is not a whole number in 1..100000", v);
        c->max_conn_per_ip = (int)x;
    } else if (!strcmp(key, "request-timeout-s")) {
        double x;
        if (parse_double(v, 1, 86400, &x) || x != (int)x)
            return errbuf_set(err, errlen, "request-timeout-s: '%s' is not a whole number of seconds in 1..86400", v);
        c->request_timeout_s = (int)x;
    } else if (!strcmp(key, "allow-host")) {
        char e2[256];
        if (c->n_allow_hosts >= CFG_MAX_ALLOW) return errbuf_set(err, errlen, "allow-host: at most %d", CFG_MAX_ALLOW);
        if (config_norm_allow_host(v, c->allow_hosts[c->n_allow_hosts], CFG_ALLOW_LEN, e2, sizeof e2))
            return errbuf_set(err, errlen, "allow-host: %s", e2);
        c->n_allow_hosts++;
    } else if (!strcmp(key, "allow-origin")) {
        char e2[256];
        if (c->n_allow_origins >= CFG_MAX_ALLOW) return errbuf_set(err, errlen, "allow-origin: at most %d", CFG_MAX_ALLOW);
        if (config_norm_allow_origin(v, c->allow_origins[c->n_allow_origins], CFG_ALLOW_LEN, e2, sizeof e2))
            return errbuf_set(err, errlen, "allow-origin: %s", e2);
        c->n_allow_origins++;
    } else if (!strcmp(key, "keep-jobs")) {
        double x;
        if (parse_double(v, 0, 1e9, &x) || x != (int)x)
            return errbuf_set(err, errlen, "keep-jobs: '%s' is not a whole number in 0..1000000000 (0 keeps all)", v);
        c->keep_jobs = (int)x;
    } else if (!strcmp(key, "cpu-device-memory-gb")) {
        if (parse_double(v, 0, 1e6, &c->cpu_device_memory_gb))
            return errbuf_set(err, errlen, "cpu-device-memory-gb: '%s' is not a number >= 0 (0 = no cap)", v);
    } else if (!strcmp(key, "job-memory-gb")) {
        if (parse_double(v, 0, 1e6, &c->job_memory_gb))
            return errbuf_set(err, errlen, "job-memory-gb: '%s' is not a number >= 0 (0 = no cap)", v);
    } else if (!strcmp(key, "config")) COPY(c->config_file);
    else return errbuf_set(err, errlen, "unknown setting '%s'", key);
    return 0;
#undef COPY
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    return s;
}

int config_load_file(daemon_cfg_t *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return errbuf_set(err, errlen, "config %s: %s", path, strerror(errno));
    char line[4096], e2[512];
    int ln = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (!strchr(line, '\n') && !feof(f)) { rc = errbuf_set(err, errlen, "%s:%d: line too long", path, ln); break; }
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';') continue;
        char *eq = strchr(s, '=');
        if (!eq) { rc = errbuf_set(err, errlen, "%s:%d: expected 'key = value'", path, ln); break; }
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        if (strlen(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[strlen(v) - 1] == v[0]) {
            v[strlen(v) - 1] = 0;
            v++;
        }
        if (!strcmp(k, "config")) { rc = errbuf_set(err, errlen, "%s:%d: 'config' cannot be nested", path, ln); break; }
        if (config_set(c, k, v, e2, sizeof e2)) { rc = errbuf_set(err, errlen, "%s:%d: %s", path, ln, e2); break; }
    }
    fclose(f);
    return rc;
}

static const char *const flag_names[] = {
    "listen", "state-dir", "backend", "token-file", "dataset-root", "model-root", "devices",
    "memory-reserve-gb", "log-level", "cancel-grace-s", "max-connections", "idle-timeout-s",
    "max-connections-per-ip", "request-timeout-s", "allow-host", "allow-origin", "keep-jobs",
    "job-memory-gb", "cpu-device-memory-gb", "import-decoder", "config",
};

int config_parse_args(daemon_cfg_t *c, int argc, char **argv, int *help, int *version,
                      char *err, size_t errlen) {
    *help = *version = 0;
    /* --config first, so flags override the file wherever they appear */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            if (i + 1 >= argc) return errbuf_set(err, errlen, "--config needs a file");
            if (config_load_file(c, argv[i + 1], err, errlen)) return -1;
            snprintf(c->config_file, sizeof c->config_file, "%s", argv[i + 1]);
        } else if (!strncmp(a, "--config=", 9)) {
            if (config_load_file(c, a + 9, err, errlen)) return -1;
            snprintf(c->config_file, sizeof c->config_file, "%s", a + 9);
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { *help = 1; continue; }
        if (!strcmp(a, "--version") || !strcmp(a, "-V")) { *version = 1; continue; }
        if (strncmp(a, "--", 2) != 0) return errbuf_set(err, errlen, "unexpected argument '%s'", a);
        char key[64];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - a - 2), a + 2);
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a + 2);
        }
        int known = 0;
        for (size_t k = 0; k < sizeof flag_names / sizeof flag_names[0]; k++) known |= !strcmp(key, flag_names[k]);
        if (!known) return errbuf_set(err, errlen, "unknown option '%s' (see --help)", a);
        if (!val) {
            if (i + 1 >= argc) return errbuf_set(err, errlen, "option --%s needs a value", key);
            val = argv[++i];
        }
        if (!strcmp(key, "config")) continue;
        if (config_set(c, key, val, err, errlen)) return -1;
    }
    return 0;
}

int config_parse_listen(const char *addr, struct sockaddr_storage *ss, socklen_t *sslen,
                     char *err, size_t errlen) {
    char host[256];
    const char *port;
    if (!addr || !*addr) { snprintf(err, errlen, "empty listen address"); return -1; }
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - addr - 1) >= sizeof host) {
            snprintf(err, errlen, "listen address '%s': expected [IPv6]:port", addr);
            return -1;
        }
        memcpy(host, addr + 1, (size_t)(rb - addr - 1));
        host[rb - addr - 1] = 0;
        port = rb + 2;
    } else {
        const char *colon = strrchr(addr, ':');
        if (!colon || strchr(addr, ':') != colon || (size_t)(colon - addr) >= sizeof host) {
            snprintf(err, errlen, "listen address '%s': expected host:port (IPv6 as [addr]:port)",
                     addr);
            return -1;
        }
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
        port = colon + 1;
    }
    char *pend;
    errno = 0;
    long p = (*port >= '0' && *port <= '9') ? strtol(port, &pend, 10) : -1;
    if (p < 0 || errno || *pend || p > 65535) {
        snprintf(err, errlen, "listen address '%s': port must be a number in 0..65535", addr);
        return -1;
    }
    if (!*host || !strcmp(host, "localhost")) snprintf(host, sizeof host, "127.0.0.1");

    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
        *sslen = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
        *sslen = sizeof *v6;
        return 0;
    }
    snprintf(err, errlen, "listen address '%s': host '%s' is not a numeric IPv4/IPv6 address "
             "or localhost", addr, host);
    return -1;
}

int config_listen_is_loopback(const char *addr) {
    struct sockaddr_storage ss;
    socklen_t len;
    char err[256];
    if (config_parse_listen(addr, &ss, &len, err, sizeof err) < 0) return 0;
    if (ss.ss_family == AF_INET) {
        uint32_t a = ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr);
        return (a >> 24) == 127;
    }
    const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a6)) return 1;
    if (IN6_IS_ADDR_V4MAPPED(a6)) return a6->s6_addr[12] == 127;
    return 0;
}

/* Realpaths the roots of one kind in place. A root that does not exist (yet)
 * is left out with a warning, so the example configuration starts; a root
 * that exists but is not a directory is an error. */
static int config_resolve_roots(const char *what, char roots[][PATH_MAX], int *n, char *err, size_t errlen) {
    int kept = 0;
    for (int i = 0; i < *n; i++) {
        char rp[PATH_MAX];
        if (!realpath(roots[i], rp)) {
            if (errno != ENOENT) return errbuf_set(err, errlen, "%s %s: %s", what, roots[i], strerror(errno));
            log_warn(NULL, "%s %s does not exist: ignored", what, roots[i]);
            continue;
        }
        struct stat st;
        if (stat(rp, &st) || !S_ISDIR(st.st_mode)) return errbuf_set(err, errlen, "%s %s: not a directory", what, rp);
        snprintf(roots[kept++], PATH_MAX, "%s", rp);
    }
    *n = kept;
    return 0;
}

int config_split_host(const char *v, char *name, size_t namelen, int *port) {
    const char *end;                          /* one past the name */
    if (!v || !namelen) return -1;
    if (v[0] == '[') {
        const char *rb = strchr(v, ']');
        if (!rb) return -1;
        char a[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        size_t n = (size_t)(rb - v - 1);
        if (n == 0 || n >= sizeof a) return -1;
        memcpy(a, v + 1, n);
        a[n] = 0;
        if (inet_pton(AF_INET6, a, &a6) != 1) return -1;
        end = rb + 1;
    } else {
        end = v;
        while (*end && *end != ':') {
            unsigned char ch = (unsigned char)*end;
            if (!(isalnum(ch) || ch == '.' || ch == '-' || ch == '_')) return -1;
            end++;
        }
        if (end == v || end - v > 253) return -1;
    }
    size_t n = (size_t)(end - v);
    if (n >= namelen) return -1;
    for (size_t i = 0; i < n; i++) name[i] = (char)tolower((unsigned char)v[i]);
    name[n] = 0;
    *port = -1;
    if (!*end) return 0;
    if (*end != ':') return -1;
    const char *p = end + 1;
    long x = 0;
    if (!*p || strlen(p) > 5) return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        x = x * 10 + (*p - '0');
    }
    if (x < 1 || x > 65535) return -1;
    *port = (int)x;
    return 0;
}

int config_norm_allow_host(const char *v, char *out, size_t outlen, char *err, size_t errlen) {
    char name[CFG_ALLOW_LEN];
    int port;
    if (config_split_host(v, name, sizeof name, &port))
        return errbuf_set(err, errlen, "'%s' is not a host name, IPv4 address or [IPv6] address "
                          "with an optional :port (1..65535)", v);
    int n = port < 0 ? snprintf(out, outlen, "%s", name) : snprintf(out, outlen, "%s:%d", name, port);
    if (n < 0 || (size_t)n >= outlen) return errbuf_set(err, errlen, "'%s' is too long", v);
    return 0;
}

int config_norm_allow_origin(const char *v, char *out, size_t outlen, char *err, size_t errlen) {
    const char *scheme = NULL;
    int defport = 0;
    if (!strncasecmp(v, "http://", 7)) { scheme = "http"; defport = 80; }
    else if (!strncasecmp(v, "https://", 8)) { scheme = "https"; defport = 443; }
    if (!scheme)
        return errbuf_set(err, errlen, "'%s' is not an origin like http://host:port or https://host", v);
    const char *auth = v + strlen(scheme) + 3;
    char a[CFG_ALLOW_LEN], name[CFG_ALLOW_LEN];
    size_t n = strlen(auth);
    if (n && auth[n - 1] == '/') n--;          /* "https://x/" is the origin "https://x" */
    if (n >= sizeof a) return errbuf_set(err, errlen, "'%s' is too long", v);
    memcpy(a, auth, n);
    a[n] = 0;
    int port;
    if (config_split_host(a, name, sizeof name, &port))
        return errbuf_set(err, errlen, "'%s' is not an origin like http://host:port or https://host "
                          "(no path, no user)", v);
    if (port == defport) port = -1;
    int w = port < 0 ? snprintf(out, outlen, "%s://%s", scheme, name)
                     : snprintf(out, outlen, "%s://%s:%d", scheme, name, port);
    if (w < 0 || (size_t)w >= outlen) return errbuf_set(err, errlen, "'%s' is too long", v);
    return 0;
}

int config_finish(daemon_cfg_t *c, char *err, size_t errlen) {
    c->token[0] = 0;
    if (c->token_file[0]) {
        /* O_NONBLOCK: a FIFO named as the token file must not hang the start */
        int fd = open(c->token_file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) return errbuf_set(err, errlen, "token-file %s: %s", c->token_file, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return errbuf_set(err, errlen, "token-file %s: not a regular file", c->token_file);
        }
        /* a token others can read is no secret (group read is fine: root:traind 0640) */
        if (st.st_mode & (S_IROTH | S_IWOTH)) {
            close(fd);
            return errbuf_set(err, errlen, "token-file %s is %s by others (mode %04o); chmod 600 it (or 640 with "
                              "group traind)", c->token_file, (st.st_mode & S_IROTH) ? "readable" : "writable",
                              (unsigned)(st.st_mode & 07777));
        }
        char buf[CFG_TOKEN_MAX + 2];
        ssize_t n;
        do n = read(fd, buf, sizeof buf - 1); while (n < 0 && errno == EINTR);
        int e = errno;
        close(fd);
        if (n < 0) return errbuf_set(err, errlen, "token-file %s: %s", c->token_file, strerror(e));
        buf[n] = 0;
        char *t = trim(buf);
        if (strlen(t) >= CFG_TOKEN_MAX) return errbuf_set(err, errlen, "token-file %s: token longer than %d bytes", c->token_file, CFG_TOKEN_MAX - 1);
        if (strlen(t) < 8) return errbuf_set(err, errlen, "token-file %s: token shorter than 8 characters", c->token_file);
        for (char *p = t; *p; p++)
            if (!isgraph((unsigned char)*p)) return errbuf_set(err, errlen, "token-file %s: the token must be one word of printable characters", c->token_file);
        snprintf(c->token, sizeof c->token, "%s", t);
    }
    struct sockaddr_storage ss;
    socklen_t sslen;
    char lerr[256];
    if (config_parse_listen(c->listen, &ss, &sslen, lerr, sizeof lerr))
        return errbuf_set(err, errlen, "%s", lerr);   /* names the address */
    if (!config_listen_is_loopback(c->listen) && !c->token[0])
        return errbuf_set(err, errlen, "refusing to listen on non-loopback address %s without a token (--token-file)", c->listen);
    if (config_resolve_roots("dataset-root", c->dataset_roots, &c->n_roots, err, errlen) ||
        config_resolve_roots("model-root", c->model_roots, &c->n_model_roots, err, errlen))
        return -1;
    if (!c->n_devices) { c->devices[0] = 0; c->n_devices = 1; }
    log_set_level(c->log_level);
    return 0;
}

void config_usage(FILE *f) {
    fprintf(f,
        "usage: traind [options]            run the daemon\n"
        "       traind worker --job FILE ...   run one job (started by the daemon)\n"
        "       traind synth --out DIR --samples N --image-size S --seed K\n"
        "       traind import --manifest FILE --out DIR --image-size S [--resize stretch|crop] [--on-error fail|skip]\n"
        "       traind forward --weights DIR --input IN --out OUT [--precision fp32|bf16] [--backend cpu|cuda]\n"
        "       traind --version | --help\n"
        "\n"
        "options (also `key = value` lines in --config FILE; flags win):\n"
        "  --listen HOST:PORT       HTTP address (default %s); non-loopback needs a token\n"
        "  --state-dir DIR          database and checkpoints ($STATE_DIRECTORY, else ./traind-state)\n"
        "  --backend cpu|cuda|auto  compute backend (default auto)\n"
        "  --token-file FILE        bearer token for every path but /v1/health\n"
        "  --dataset-root DIR       dataset paths must lie under it (repeatable)\n"
        "  --model-root DIR         model.weights may lie under it, or under a dataset root (repeatable)\n"
        "  --devices 0,1            devices to use (one running job per device; a job may take\n"
        "                           several); on the cpu backend each listed number is a virtual\n"
        "                           device (a process per rank, datasets in shared memory)\n"
        "  --memory-reserve-gb G    per-device memory kept free for jobs (default 0)\n"
        "  --log-level L            debug|info|warn|error (default info)\n"
        "  --cancel-grace-s S       SIGKILL a cancelled worker after S seconds (default 60)\n"
        "  --max-connections N      simultaneous HTTP connections; more are refused (default %d)\n"
        "  --idle-timeout-s S       close an HTTP connection idle for S seconds (default %d)\n"
        "  --max-connections-per-ip N  connections of one client address (default %d); at the\n"
        "                           limit its oldest still-unfinished request is closed\n"
        "  --request-timeout-s S    a request's headers and body must arrive within S seconds\n"
        "                           of its start, or the connection is closed (default %d)\n"
        "  --allow-host HOST[:PORT] also accept this Host header (a reverse proxy's name;\n"
        "                           repeatable); localhost, 127.0.0.1, [::1] and the address\n"
        "                           connected to are always accepted (with the daemon's port)\n"
        "  --allow-origin ORIGIN    also accept requests from this browser origin, e.g.\n"
        "                           https://traind.example.com (repeatable)\n"
        "  --keep-jobs N            ended jobs kept with their events and metrics; older ones are\n"
        "                           deleted unless a checkpoint belongs to them (default %d, 0 = all)\n"
        "  --job-memory-gb G        most memory one job may use on a device; a job estimated above\n"
        "                           it (or above the device's room) is refused (default 0 = no cap)\n"
        "  --cpu-device-memory-gb G cpu backend: resident dataset bytes each virtual device may hold,\n"
        "                           standing in for a GPU's memory (sharding without GPUs; default\n"
        "                           0 = the host's memory, which all virtual devices share)\n"
        "  --import-decoder D       JPEG decoding of dataset imports: auto (nvJPEG on the first\n"
        "                           device beside the CPU decoders when the cuda backend has it),\n"
        "                           hardware or cuda (that nvJPEG decoder), cpu (CPU only)\n"
        "  --config FILE            read settings from FILE\n",
        CONFIG_DEFAULT_LISTEN, CONFIG_CONN_LIMIT, CONFIG_IDLE_TIMEOUT_S, CONFIG_PER_IP_LIMIT,
        CONFIG_REQUEST_TIMEOUT_S, CONFIG_KEEP_JOBS);
}
