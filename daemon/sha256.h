/* daemon/sha256.h — SHA-256 (FIPS 180-4) of buffers and files, for the
 * checksums recorded with checkpoints. Small and dependency-free. */
#ifndef TRAIND_SHA256_H
#define TRAIND_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;          /* bytes hashed so far */
    uint8_t buf[64];
    size_t nbuf;
} sha256_t;

void sha256_init(sha256_t *c);
void sha256_update(sha256_t *c, const void *data, size_t n);
void sha256_final(sha256_t *c, uint8_t out[32]);
void sha256_hex(const uint8_t d[32], char hex[65]);
/* Hash a file: 0 with hex digest and size, or -1 with err. */
int sha256_file(const char *path, char hex[65], long long *bytes, char *err, size_t errlen);

#endif
