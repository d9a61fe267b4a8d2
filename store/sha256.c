/* store/sha256.c — SHA-256 through GnuTLS (see sha256.h). */
#include "store/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/errbuf.h"

static void sha256_hex(const uint8_t d[32], char hex[65]) {
    static const char x[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) { hex[2 * i] = x[d[i] >> 4]; hex[2 * i + 1] = x[d[i] & 15]; }
    hex[64] = 0;
}

int sha256_buf(const void *data, size_t n, char hex[65], char *err, size_t errlen) {
    uint8_t d[32];
    int r = gnutls_hash_fast(GNUTLS_DIG_SHA256, data, n, d);
    if (r < 0) return errbuf_set(err, errlen, "sha256: %s", gnutls_strerror(r));
    sha256_hex(d, hex);
    return 0;
}

int sha256_file(const char *path, char hex[65], long long *bytes, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errbuf_set(err, errlen, "%s: %s", path, strerror(errno));
    gnutls_hash_hd_t h;
    int r = gnutls_hash_init(&h, GNUTLS_DIG_SHA256);
    if (r < 0) {
        close(fd);
        return errbuf_set(err, errlen, "%s: sha256: %s", path, gnutls_strerror(r));
    }
    static __thread uint8_t buf[1 << 16];
    long long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (n > 0 && (r = gnutls_hash(h, buf, (size_t)n)) < 0)) {
            int e = errno;
            uint8_t scratch[32];
            gnutls_hash_deinit(h, scratch);
            close(fd);
            return errbuf_set(err, errlen, "%s: %s", path, n < 0 ? strerror(e) : gnutls_strerror(r));
        }
        if (n == 0) break;
        total += n;
    }
    close(fd);
    uint8_t d[32];
    gnutls_hash_deinit(h, d);
    sha256_hex(d, hex);
    if (bytes) *bytes = total;
    return 0;
}
