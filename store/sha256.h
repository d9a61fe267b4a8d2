/* store/sha256.h — SHA-256 of buffers and files, for the checksums recorded
 * with checkpoints. The digest is GnuTLS's (gnutls_hash, already a dependency
 * through libmicrohttpd); this module only adds reading files and hex. */
#ifndef TRAIND_SHA256_H
#define TRAIND_SHA256_H

#include <stddef.h>

/* Hash a buffer: 0 with the lowercase hex digest, or -1 with err. */
int sha256_buf(const void *data, size_t n, char hex[65], char *err, size_t errlen);
/* Hash a file: 0 with the hex digest and its size, or -1 with err naming the file. */
int sha256_file(const char *path, char hex[65], long long *bytes, char *err, size_t errlen);

#endif
