/* store/fsutil.h — small, careful filesystem helpers: directory creation,
 * crash-safe (atomic) file and directory replacement, recursive removal.
 *
 * "Atomic" here means: after a crash at any point, a reader finds either the
 * complete old content or the complete new content at the final path, never a
 * torn mix. Data is fsynced before the rename and the parent directory is
 * fsynced after it, so the rename itself is durable.
 *
 * Every function returns 0 on success and -1 on failure with a message in
 * err (naming the path and strerror(errno)); err may be NULL.
 */
#ifndef TRAIND_FSUTIL_H
#define TRAIND_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* mkdir -p with the given mode (e.g. 0755); existing directories are fine,
 * an existing non-directory on the path is an error. */
int fs_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen);

/* fsync a directory (after creating, removing or renaming entries in it). */
int fs_fsync_dir(const char *dir, char *err, size_t errlen);

/* fsync a regular file by path. */
int fs_fsync_file(const char *path, char *err, size_t errlen);

/* Write path atomically: a temporary file "<dir>/.<name>.tmp.XXXXXX" in the
 * same directory, written, fsynced, renamed over path, directory fsynced.
 * The file gets mode 0644. On failure the temporary file is removed. */
int fs_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Read a whole file into a fresh NUL-terminated buffer (free() it); files
 * larger than maxlen are refused. *len (may be NULL) gets the size. NULL on error. */
char *fs_read_file(const char *path, size_t maxlen, size_t *len, char *err, size_t errlen);

/* Create a fresh, empty temporary directory next to finaldir (same parent,
 * hence same filesystem): "<parent>/.<base>.tmp.XXXXXX", written into out.
 * The parent is created (fs_mkdir_p) when missing. */
int fs_make_tmpdir_for(const char *finaldir, char *out, size_t outlen, char *err, size_t errlen);

/* Move a fully written temporary directory into place: fsync every regular
 * file directly inside tmpdir and tmpdir itself, rename tmpdir to finaldir,
 * fsync the parent. When finaldir already exists it is replaced atomically
 * (renameat2 RENAME_EXCHANGE) and the old content is then removed. tmpdir and
 * finaldir must be on one filesystem (use fs_make_tmpdir_for). */
int fs_rename_dir_atomic(const char *tmpdir, const char *finaldir, char *err, size_t errlen);

/* rm -rf: removes a file or a directory tree without following symlinks.
 * A missing path is success. */
int fs_rm_rf(const char *path, char *err, size_t errlen);

/* Size of a regular file in bytes, or -1 with err. */
int64_t fs_file_size(const char *path, char *err, size_t errlen);

/* Join dir and name with one '/' into out; -1 when it does not fit. */
int fs_join(char *out, size_t outlen, const char *dir, const char *name);

#endif
