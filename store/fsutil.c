/* store/fsutil.c — directory creation, crash-safe file/directory replacement,
 * recursive removal (see fsutil.h for the guarantees). */
#define _GNU_SOURCE
#include "store/fsutil.h"
#include "store/errbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_join(char *out, size_t outlen, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] != '/';
    int r = snprintf(out, outlen, "%s%s%s", dir, slash ? "/" : "", name);
    return (r < 0 || (size_t)r >= outlen) ? -1 : 0;
}

/* Split path into parent directory and base name (copies). */
static int fs_split(const char *path, char *parent, size_t plen, char *base, size_t blen) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;          /* ignore trailing slashes */
    size_t i = n;
    while (i > 0 && path[i - 1] != '/') i--;
    if (i == n) return -1;                              /* empty base name */
    size_t bl = n - i;
    if (bl + 1 > blen) return -1;
    memcpy(base, path + i, bl);
    base[bl] = 0;
    if (i == 0) {
        if (plen < 2) return -1;
        strcpy(parent, ".");
    } else {
        size_t pl = i > 1 ? i - 1 : 1;                  /* keep "/" for root */
        if (pl + 1 > plen) return -1;
        memcpy(parent, path, pl);
        parent[pl] = 0;
    }
    return 0;
}

int fs_mkdir_p(const char *path, mode_t mode, char *err, size_t errlen) {
    size_t n = strlen(path);
    if (n == 0) return errbuf_set(err, errlen, "mkdir: empty path");
    char *p = strdup(path);
    if (!p) return errbuf_set(err, errlen, "mkdir %s: out of memory", path);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0) continue;
        char c = p[i];
        p[i] = 0;
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            int e = errno;
            errbuf_set(err, errlen, "mkdir %s: %s", p, strerror(e));
            free(p);
            return -1;
        }
        p[i] = c;
    }
    struct stat st;
    int r = stat(path, &st);
    free(p);
    if (r != 0) return errbuf_set(err, errlen, "mkdir %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return errbuf_set(err, errlen, "mkdir %s: exists and is not a directory", path);
    return 0;
}

int fs_fsync_dir(const char *dir, char *err, size_t errlen) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errbuf_set(err, errlen, "open directory %s: %s", dir, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        return errbuf_set(err, errlen, "fsync directory %s: %s", dir, strerror(e));
    }
    close(fd);
    return 0;
}

int fs_fsync_file(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errbuf_set(err, errlen, "open %s: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return errbuf_set(err, errlen, "fsync %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

int fs_write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    char parent[4096], base[1024], tmp[8192];
    if (fs_split(path, parent, sizeof parent, base, sizeof base) != 0)
        return errbuf_set(err, errlen, "write %s: bad path", path);
    if (snprintf(tmp, sizeof tmp, "%s/.%s.tmp.XXXXXX", parent, base) >= (int)sizeof tmp)
        return errbuf_set(err, errlen, "write %s: path too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return errbuf_set(err, errlen, "create temporary file for %s: %s", path, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return errbuf_set(err, errlen, "write %s: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return errbuf_set(err, errlen, "fsync %s: %s", tmp, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return errbuf_set(err, errlen, "close %s: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return errbuf_set(err, errlen, "rename %s -> %s: %s", tmp, path, strerror(e));
    }
    return fs_fsync_dir(parent, err, errlen);
}

char *fs_read_file(const char *path, size_t maxlen, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errbuf_set(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errbuf_set(err, errlen, "%s: not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > maxlen) {
        close(fd);
        errbuf_set(err, errlen, "%s: %lld bytes, more than the limit of %zu", path, (long long)st.st_size, maxlen);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        errbuf_set(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            free(buf);
            errbuf_set(err, errlen, "read %s: %s", path, strerror(e));
            return NULL;
        }
        if (r == 0) break;                 /* shrank while reading */
        got += (size_t)r;
    }
    close(fd);
    buf[got] = 0;
    if (len) *len = got;
    return buf;
}

int fs_make_tmpdir_for(const char *finaldir, char *out, size_t outlen, char *err, size_t errlen) {
    char parent[4096], base[1024];
    if (fs_split(finaldir, parent, sizeof parent, base, sizeof base) != 0)
        return errbuf_set(err, errlen, "temporary directory for %s: bad path", finaldir);
    if (fs_mkdir_p(parent, 0755, err, errlen) != 0) return -1;
    int r = snprintf(out, outlen, "%s/.%s.tmp.XXXXXX", parent, base);
    if (r < 0 || (size_t)r >= outlen) return errbuf_set(err, errlen, "temporary directory for %s: path too long", finaldir);
    if (!mkdtemp(out)) return errbuf_set(err, errlen, "mkdtemp %s: %s", out, strerror(errno));
    return 0;
}

/* fsync every regular file directly inside dir. */
static int fs_fsync_entries(const char *dir, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return errbuf_set(err, errlen, "open directory %s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0))) continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = errbuf_set(err, errlen, "stat %s/%s: %s", dir, de->d_name, strerror(errno));
            break;
        }
        if (!S_ISREG(st.st_mode)) continue;
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fsync(fd) != 0) rc = errbuf_set(err, errlen, "fsync %s/%s: %s", dir, de->d_name, strerror(errno));
        if (fd >= 0) close(fd);
    }
    closedir(d);
    return rc;
}

int fs_rename_dir_atomic(const char *tmpdir, const char *finaldir, char *err, size_t errlen) {
    char parent[4096], base[1024];
    if (fs_split(finaldir, parent, sizeof parent, base, sizeof base) != 0)
        return errbuf_set(err, errlen, "rename to %s: bad path", finaldir);
    if (fs_fsync_entries(tmpdir, err, errlen) != 0) return -1;
    if (fs_fsync_dir(tmpdir, err, errlen) != 0) return -1;
    if (renameat2(AT_FDCWD, tmpdir, AT_FDCWD, finaldir, RENAME_NOREPLACE) == 0)
        return fs_fsync_dir(parent, err, errlen);
    if (errno != EEXIST && errno != ENOTEMPTY && errno != EINVAL && errno != ENOSYS)
        return errbuf_set(err, errlen, "rename %s -> %s: %s", tmpdir, finaldir, strerror(errno));
    if (errno == EINVAL || errno == ENOSYS) {
        /* filesystem without renameat2 flags: plain rename works when the
         * target is absent or an empty directory */
        if (rename(tmpdir, finaldir) == 0) return fs_fsync_dir(parent, err, errlen);
        if (errno != EEXIST && errno != ENOTEMPTY)
            return errbuf_set(err, errlen, "rename %s -> %s: %s", tmpdir, finaldir, strerror(errno));
    }
    /* finaldir exists: swap both names atomically, then remove the old content
     * (which now lives under the temporary name). */
    if (renameat2(AT_FDCWD, tmpdir, AT_FDCWD, finaldir, RENAME_EXCHANGE) != 0)
        return errbuf_set(err, errlen, "replace %s with %s: %s", finaldir, tmpdir, strerror(errno));
    if (fs_fsync_dir(parent, err, errlen) != 0) return -1;
    return fs_rm_rf(tmpdir, err, errlen);
}

static int fs_rm_at(int dfd, const char *name, const char *shown, char *err, size_t errlen) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return 0;
        return errbuf_set(err, errlen, "stat %s: %s", shown, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT)
            return errbuf_set(err, errlen, "remove %s: %s", shown, strerror(errno));
        return 0;
    }
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errbuf_set(err, errlen, "open directory %s: %s", shown, strerror(errno));
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return errbuf_set(err, errlen, "open directory %s: %s", shown, strerror(errno));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && (de->d_name[1] == 0 || (de->d_name[1] == '.' && de->d_name[2] == 0))) continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", shown, de->d_name);
        rc = fs_rm_at(dirfd(d), de->d_name, sub, err, errlen);
    }
    closedir(d);
    if (rc != 0) return rc;
    if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
        return errbuf_set(err, errlen, "remove directory %s: %s", shown, strerror(errno));
    return 0;
}

int fs_rm_rf(const char *path, char *err, size_t errlen) {
    if (!path[0]) return errbuf_set(err, errlen, "rm: empty path");
    return fs_rm_at(AT_FDCWD, path, path, err, errlen);
}

int64_t fs_file_size(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) != 0) return errbuf_set(err, errlen, "stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return errbuf_set(err, errlen, "%s: not a regular file", path);
    return (int64_t)st.st_size;
}
