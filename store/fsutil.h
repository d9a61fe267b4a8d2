/* store/fsutil.h — small, careful filesystem helpers: directory creation,
 * crash-safe (atomic) file and directory replacement, recursive removal, and
 * opening files beneath a directory without leaving it (client paths
 * confined to configured roots, files beneath the state dir).
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

/* Modes of what traind creates, further narrowed by the umask (never widened):
 * files 0640, directories 0750. Temporary directories (mkdtemp) are 0700. */
#define FS_FILE_MODE 0640
#define FS_DIR_MODE  0750

/* mkdir -p with the given mode (e.g. FS_DIR_MODE); existing directories are fine,
 * an existing non-directory on the path is an error. */
int fs_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen);

/* fsync a directory (after creating, removing or renaming entries in it). */
int fs_fsync_dir(const char *dir, char *err, size_t errlen);

/* fsync a regular file by path. */
int fs_fsync_file(const char *path, char *err, size_t errlen);

/* Write path atomically: a temporary file "<dir>/.<name>.tmp.XXXXXX" in the
 * same directory, written, fsynced, renamed over path, directory fsynced.
 * The file is created FS_FILE_MODE less the umask. On failure the temporary
 * file is removed. */
int fs_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Read a whole file into a fresh NUL-terminated buffer (free() it); files
 * larger than maxlen and anything but a regular file (a FIFO never blocks)
 * are refused. *len (may be NULL) gets the size. NULL on error. */
char *fs_read_file(const char *path, size_t maxlen, size_t *len, char *err, size_t errlen);
/* The same for the regular file `name` beneath directory dir (fs_open_under:
 * no symbolic link is followed). */
char *fs_read_file_under(const char *dir, const char *name, size_t maxlen, size_t *len, char *err, size_t errlen);

/* Create a new file from a template ending in "XXXXXX" (replaced, as
 * mkostemp does) with O_CREAT|O_EXCL|O_NOFOLLOW, read-write, O_CLOEXEC, with
 * `mode` less the umask (mkostemp always gives 0600 and ignores it). The fd,
 * or -1 with errno set. */
int fs_create_temp(char *tmpl, mode_t mode);

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

/* ---- beneath a directory ----------------------------------------------------
 * Nothing a client names and nothing found in the state dir may lead outside
 * the directory it belongs to: a file is opened beneath a directory fd with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
 * (Linux >= 5.6), or, where openat2 is missing (ENOSYS) or refused (EPERM
 * from a seccomp filter), one openat(O_NOFOLLOW) per component. No symbolic
 * link is followed anywhere on the way, `..` and absolute paths are refused,
 * and nothing swapped in between a check and the open can redirect it: the
 * check IS the open. */
enum { FS_REG = 1, FS_DIR = 2 };

/* Opens rel beneath the directory dirfd, read-only and O_CLOEXEC. rel is
 * relative ('/'-separated; empty and "." components are skipped; a ".."
 * component is refused; "" or "." is dirfd itself, FS_DIR only). kind FS_REG:
 * a regular file — opened O_NONBLOCK so that a FIFO or a device never blocks,
 * fstat'ed, then made blocking again; FS_DIR: a directory (readable, for
 * readdir). Returns the fd, or -1 with errno (ELOOP: a symbolic link on the
 * way; EXDEV: `..` or an absolute path; EINVAL: not a regular file; ENOENT,
 * ENOTDIR, EACCES, ...) and a message naming shown (rel when NULL). */
int fs_open_beneath(int dirfd, const char *rel, int kind, const char *shown, char *err, size_t errlen);
/* The same beneath the directory at path dir, which is itself opened as any
 * path (the caller vouches for it: a configured root, the state dir). */
int fs_open_under(const char *dir, const char *rel, int kind, char *err, size_t errlen);
/* mkdir -p of rel beneath dir (mode less the umask) without following a
 * symbolic link: an existing symlink on the way is an error (ELOOP). */
int fs_mkdir_under(const char *dir, const char *rel, mode_t mode, char *err, size_t errlen);
/* rm -rf of rel beneath dir: the directories on the way are opened as
 * fs_open_beneath does, the last component is removed as fs_rm_rf does (a
 * symbolic link is unlinked, never followed). rel must name something below
 * dir (not "" or "."). A missing path is success. */
int fs_rm_rf_under(const char *dir, const char *rel, char *err, size_t errlen);
/* The part of path below dir ("a/b" for dir "/x" and path "/x/a/b"; "" for
 * path == dir), or NULL when path does not lie lexically at or below dir. */
const char *fs_rel_under(const char *dir, const char *path);

/* Client path confinement. path must be absolute and lie at or beneath one of
 * roots[0..nroots) (themselves resolved paths, e.g. config's realpath'd
 * roots). With FS_CONFINE_RESOLVE, path is first resolved (realpath, so a
 * symbolic link that stays inside a root is fine) and the result must lie
 * beneath a root; without it, path must already be such a path (what was
 * recorded: checked again at every later use). Either way the resolved path
 * is then opened beneath its root with fs_open_beneath, as kind. Returns the
 * fd with the resolved path in resolved (may be NULL), or -1 with the reason
 * in err — for the log only: the caller answers every failure (outside the
 * roots, missing, wrong kind, a link on the way) with one message, so that
 * its answers do not tell which paths exist outside the roots. */
#define FS_CONFINE_RESOLVE 1
int fs_open_confined(const char *path, const char *const *roots, int nroots, int kind, int flags,
                     char *resolved, size_t rlen, char *err, size_t errlen);

/* Tests: 0 makes fs_open_beneath use its per-component fallback as on a
 * kernel without openat2; 1 (the default) uses openat2 where it works. */
void fs_beneath_use_openat2(int on);

#endif
