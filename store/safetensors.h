/* store/safetensors.h — safetensors reader and writer.
 *
 * File format (https://huggingface.co/docs/safetensors):
 *   u64 little-endian N | N bytes of JSON header | data area
 * The header is a JSON object: "__metadata__" (optional, string -> string)
 * and, per tensor, {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
 * with offsets relative to the start of the data area.
 *
 * The reader validates everything before handing out a single tensor:
 *   - header length: >= 2, <= ST_MAX_HEADER and <= file size - 8;
 *   - the header is a JSON object (jansson), __metadata__ maps strings to strings;
 *   - dtype names are known, rank <= ST_MAX_RANK, dims >= 0 and integral;
 *   - nbytes = dtype size * product(shape) without overflow, == e - b;
 *   - the tensors' byte ranges, sorted, tile the data area exactly: no
 *     overlap, no gap, the last one ends at the end of the file;
 *   - names are unique (jansson itself keeps only the last of duplicate keys,
 *     so duplicates are detected with JSON_REJECT_DUPLICATES).
 * A bad file gives NULL and a message naming the file, the tensor and the
 * problem, e.g. `x.safetensors: tensor "a.weight": data_offsets [0,12] hold
 * 12 bytes but F32 [2,2] needs 16`.
 *
 * Data is read with pread (st_read / st_read_range), so a big tensor can be
 * streamed in chunks with bounded host memory; nothing is mmapped. The read
 * functions change no state: several threads may read one open file at once.
 */
#ifndef TRAIND_SAFETENSORS_H
#define TRAIND_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "store/dtype.h"

#define ST_MAX_RANK 8
#define ST_MAX_HEADER (100u * 1024u * 1024u)   /* 100 MB, as the reference implementation */
#define ST_ALIGN 8                             /* writer: data offsets are multiples of 8 */

typedef enum {
    ST_BOOL = 0, ST_U8, ST_I8, ST_F8_E4M3, ST_F8_E5M2,   /* 1 byte  */
    ST_U16, ST_I16, ST_F16, ST_BF16,                      /* 2 bytes */
    ST_U32, ST_I32, ST_F32,                               /* 4 bytes */
    ST_U64, ST_I64, ST_F64,                               /* 8 bytes */
    ST_NDTYPES
} st_dtype_t;

typedef struct {
    const char *name;          /* owned by the st_file_t / st_writer_t */
    st_dtype_t dtype;
    int rank;                  /* 0..ST_MAX_RANK (rank 0 = scalar, numel 1) */
    int64_t shape[ST_MAX_RANK];
    int64_t numel;             /* product of shape */
    size_t nbytes;             /* numel * st_dtype_size(dtype) */
    uint64_t offset;           /* absolute byte offset of the data in the file */
} st_tensor_t;

/* dtype helpers. st_dtype_from_name returns -1 for an unknown name. */
const char *st_dtype_name(st_dtype_t dt);          /* "F32", "BF16", ... */
int st_dtype_from_name(const char *name);
size_t st_dtype_size(st_dtype_t dt);
/* traind dtype of a safetensors dtype (F32, BF16, U8, I32); -1 when none. */
int st_dtype_to_dt(st_dtype_t dt);
st_dtype_t st_dtype_from_dt(dtype_t dt);

/* ---- reader ----------------------------------------------------------------- */
typedef struct st_file st_file_t;

/* Open and validate. NULL on any problem, with the message in err. Only a
 * regular file is read (a FIFO or a device is refused without blocking), and
 * no message quotes the file's bytes (not even the 8-byte header length). */
st_file_t *st_open(const char *path, char *err, size_t errlen);
/* The same for the file `name` inside directory `dir`, opened beneath it
 * (fs_open_under: a symbolic link is refused, never followed). */
st_file_t *st_open_in(const char *dir, const char *name, char *err, size_t errlen);
/* The same beneath the open directory dirfd (fs_open_beneath); dir is the
 * directory's path, for messages. */
st_file_t *st_open_at(int dirfd, const char *name, const char *dir, char *err, size_t errlen);
/* "[2,3,4]": a shape for messages (truncated to len). */
void st_shape_str(char *buf, size_t len, int rank, const int64_t *shape);
void st_close(st_file_t *f);                       /* NULL is fine */

const char *st_path(const st_file_t *f);
uint64_t st_file_size(const st_file_t *f);
uint64_t st_data_start(const st_file_t *f);        /* 8 + header length */

/* Tensors in order of their data offsets (i.e. file order). */
int st_count(const st_file_t *f);
const st_tensor_t *st_get(const st_file_t *f, int i);          /* NULL when out of range */
const st_tensor_t *st_find(const st_file_t *f, const char *name); /* NULL when absent */

/* __metadata__: value for key or NULL; and iteration in key order. */
const char *st_meta(const st_file_t *f, const char *key);
int st_meta_count(const st_file_t *f);
const char *st_meta_key(const st_file_t *f, int i);
const char *st_meta_value(const st_file_t *f, int i);

/* Read a whole tensor (t->nbytes bytes) into host memory dst; or a byte range
 * [byte_off, byte_off+nbytes) of it. 0 on success, -1 with err on an I/O
 * error, a range outside the tensor or a file that shrank. */
int st_read(st_file_t *f, const st_tensor_t *t, void *dst, char *err, size_t errlen);
int st_read_range(st_file_t *f, const st_tensor_t *t, uint64_t byte_off, size_t nbytes,
                  void *dst, char *err, size_t errlen);

/* Read a floating tensor (F32, F16, BF16, F64) converted to fp32: dst[numel].
 * Errors for other dtypes. Used for weights that may be stored in half precision. */
int st_read_f32(st_file_t *f, const st_tensor_t *t, float *dst, char *err, size_t errlen);

/* ---- writer ----------------------------------------------------------------- */
typedef struct st_writer st_writer_t;

st_writer_t *st_writer_new(void);                  /* NULL only when out of memory */
void st_writer_free(st_writer_t *w);               /* NULL is fine */

/* Add a tensor; st_writer_add COPIES data (nbytes = size*numel; data may be
 * NULL only when numel == 0), st_writer_add_ref only REFERENCES it: the caller
 * keeps it alive and unchanged until st_writer_write returns (for large
 * checkpoints). Returns 0, or -1 for a duplicate or empty name, a name
 * starting with "__", rank > 8, a negative dim, an overflowing size or out of
 * memory; the first such error is remembered and st_writer_write reports it. */
int st_writer_add(st_writer_t *w, const char *name, st_dtype_t dt, int rank,
                  const int64_t *shape, const void *data);
int st_writer_add_ref(st_writer_t *w, const char *name, st_dtype_t dt, int rank,
                      const int64_t *shape, const void *data);
/* __metadata__ entry (string -> string); a second call with the same key replaces it. */
int st_writer_meta(st_writer_t *w, const char *key, const char *value);
const char *st_writer_error(const st_writer_t *w); /* "" when none */

/* Write the file: tensors sorted by name in the header, data 8-byte aligned
 * (the header is padded with spaces), written to a temporary file in the same
 * directory, fsynced, renamed over path, and the directory fsynced. A crash
 * leaves either the old file or the new one. 0 or -1 with err. */
int st_writer_write(st_writer_t *w, const char *path, char *err, size_t errlen);

#endif
