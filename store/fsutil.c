/* store/fsutil.c — directory creation, crash-safe file/directory replacement,
 * recursive removal, opening beneath a directory and client path confinement
 * (see fsutil.h for the guarantees). */
#define _GNU_SOURCE
#include "store/fsutil.h"
#include "store/errbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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
    int fd = fs_create_temp(tmp, FS_FILE_MODE);
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
    if (fsync(fd) != 0) {
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

int fs_create_temp(char *tmpl, mode_t mode) {
    static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t n = strlen(tmpl);
    if (n < 6 || strcmp(tmpl + n - 6, "XXXXXX") != 0) {
        errno = EINVAL;
        return -1;
    }
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned char r[6];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
            /* no entropy source: a counter still makes names unique, O_EXCL makes them safe */
            static atomic_uint ctr;
            unsigned v = atomic_fetch_add(&ctr, 1) ^ (unsigned)getpid() ^ (unsigned)attempt * 2654435761u;
            for (int i = 0; i < 6; i++) r[i] = (unsigned char)(v >> (i * 5));
        }
        for (int i = 0; i < 6; i++) tmpl[n - 6 + i] = set[r[i] % (sizeof set - 1)];
        int fd = open(tmpl, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    errno = EEXIST;
    return -1;
}

/* Reads the open regular file fd (closed here) whole. */
static char *fs_read_fd(int fd, const char *shown, size_t maxlen, size_t *len, char *err, size_t errlen) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errbuf_set(err, errlen, "%s: not a regular file", shown);
        return NULL;
    }
    if ((uint64_t)st.st_size > maxlen) {
        close(fd);
        errbuf_set(err, errlen, "%s: %lld bytes, more than the limit of %zu", shown, (long long)st.st_size, maxlen);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        errbuf_set(err, errlen, "%s: out of memory", shown);
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
            errbuf_set(err, errlen, "read %s: %s", shown, strerror(e));
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

/* O_NONBLOCK off again on a file opened with it (for its fstat check). */
static int fs_make_blocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

char *fs_read_file(const char *path, size_t maxlen, size_t *len, char *err, size_t errlen) {
    /* O_NONBLOCK: a FIFO at path must not block the caller; fs_read_fd refuses it */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        errbuf_set(err, errlen, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fs_make_blocking(fd) != 0) {
        int e = errno;
        close(fd);
        errbuf_set(err, errlen, "open %s: %s", path, strerror(e));
        return NULL;
    }
    return fs_read_fd(fd, path, maxlen, len, err, errlen);
}

char *fs_read_file_under(const char *dir, const char *name, size_t maxlen, size_t *len, char *err, size_t errlen) {
    char shown[4096];
    if (fs_join(shown, sizeof shown, dir, name) != 0) {
        errbuf_set(err, errlen, "%s/%s: path too long", dir, name);
        return NULL;
    }
    int fd = fs_open_under(dir, name, FS_REG, err, errlen);
    return fd < 0 ? NULL : fs_read_fd(fd, shown, maxlen, len, err, errlen);
}

int fs_make_tmpdir_for(const char *finaldir, char *out, size_t outlen, char *err, size_t errlen) {
    char parent[4096], base[1024];
    if (fs_split(finaldir, parent, sizeof parent, base, sizeof base) != 0)
        return errbuf_set(err, errlen, "temporary directory for %s: bad path", finaldir);
    if (fs_mkdir_p(parent, FS_DIR_MODE, err, errlen) != 0) return -1;
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

/* ---- beneath a directory ------------------------------------------------------- */
static atomic_int fs_openat2_ok = 1;    /* 0 after ENOSYS, or when a test turns it off */

void fs_beneath_use_openat2(int on) { atomic_store(&fs_openat2_ok, on ? 1 : 0); }

/* Is component c (length n) ".."? */
static int fs_is_dotdot(const char *c, size_t n) { return n == 2 && c[0] == '.' && c[1] == '.'; }

/* The fallback: one openat(O_NOFOLLOW) per component; directories on the way
 * as O_PATH (search permission is enough), the last with flags. */
static int fs_walk_beneath(int dirfd, const char *rel, int flags) {
    int cur = dirfd, owned = 0;
    const char *p = rel;
    for (;;) {
        while (*p == '/') p++;
        size_t n = strcspn(p, "/");
        const char *next = p + n;
        while (*next == '/') next++;
        int last = *next == 0;
        char comp[NAME_MAX + 1];
        if (n > NAME_MAX) {
            if (owned) close(cur);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(comp, p, n);
        comp[n] = 0;
        if (n == 0 || (n == 1 && comp[0] == '.')) {      /* only for "" or "." alone, see the caller */
            if (last) {
                int fd = openat(cur, ".", flags);
                int e = errno;
                if (owned) close(cur);
                errno = e;
                return fd;
            }
            p = next;
            continue;
        }
        int fd = openat(cur, comp, last ? flags : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        if (fd < 0 && (e == ENOTDIR || e == ELOOP)) {
            /* O_NOFOLLOW|O_DIRECTORY on a symlink says ENOTDIR: name it a link */
            struct stat st;
            if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) e = ELOOP;
        }
        if (owned) close(cur);
        if (fd < 0) {
            errno = e;
            return -1;
        }
        if (last) return fd;
        cur = fd;
        owned = 1;
        p = next;
    }
}

int fs_open_beneath(int dirfd, const char *rel, int kind, const char *shown, char *err, size_t errlen) {
    if (!shown) shown = rel;
    if (rel[0] == '/') {
        errno = EXDEV;
        return errbuf_set(err, errlen, "%s: an absolute path is not allowed here", shown);
    }
    int only_dots = 1;      /* "", ".", "./." ...: the directory itself */
    for (const char *p = rel; *p;) {
        size_t n = strcspn(p, "/");
        if (fs_is_dotdot(p, n)) {
            errno = EXDEV;
            return errbuf_set(err, errlen, "%s: '..' is not allowed", shown);
        }
        if (n && !(n == 1 && p[0] == '.')) only_dots = 0;
        p += n;
        while (*p == '/') p++;
    }
    if (only_dots && kind != FS_DIR) {
        errno = EISDIR;
        return errbuf_set(err, errlen, "%s: is a directory", shown);
    }
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | (kind == FS_DIR ? O_DIRECTORY : O_NONBLOCK);
    int fd = -1, e = 0;
    if (only_dots) {
        fd = openat(dirfd, ".", flags);
        e = errno;
    } else {
        int walk = 1;
        if (atomic_load(&fs_openat2_ok)) {
            /* without O_NOFOLLOW: RESOLVE_NO_SYMLINKS covers the last component too, and says
             * ELOOP where O_NOFOLLOW|O_DIRECTORY would say ENOTDIR */
            struct open_how how = {.flags = (uint64_t)(flags & ~O_NOFOLLOW),
                                   .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
            /* EAGAIN: a concurrent rename or mount; the kernel asks for a retry */
            for (int tries = 0; tries < 16; tries++) {
                fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
                e = errno;
                if (fd >= 0 || e != EAGAIN) break;
            }
            walk = fd < 0 && (e == ENOSYS || e == EPERM);
            if (fd < 0 && e == ENOSYS) atomic_store(&fs_openat2_ok, 0);
        }
        if (walk) {
            fd = fs_walk_beneath(dirfd, rel, flags);
            e = errno;
        }
    }
    if (fd < 0) {
        errno = e;
        if (e == ELOOP) errbuf_set(err, errlen, "%s: a symbolic link is on the way (not followed)", shown);
        else if (e == EXDEV) errbuf_set(err, errlen, "%s: leads outside its directory", shown);
        else if (e == ENOENT) errbuf_set(err, errlen, "%s: no such file or directory", shown);
        else errbuf_set(err, errlen, "%s: %s", shown, strerror(e));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        errno = e;
        return errbuf_set(err, errlen, "%s: %s", shown, strerror(e));
    }
    if (kind == FS_REG && !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return errbuf_set(err, errlen, "%s: not a regular file", shown);
    }
    if (kind == FS_DIR && !S_ISDIR(st.st_mode)) {     /* O_DIRECTORY makes this unreachable */
        close(fd);
        errno = ENOTDIR;
        return errbuf_set(err, errlen, "%s: not a directory", shown);
    }
    if (kind == FS_REG && fs_make_blocking(fd) != 0) {
        e = errno;
        close(fd);
        errno = e;
        return errbuf_set(err, errlen, "%s: %s", shown, strerror(e));
    }
    return fd;
}

int fs_open_under(const char *dir, const char *rel, int kind, char *err, size_t errlen) {
    char shown[4096];
    if (fs_join(shown, sizeof shown, dir, rel) != 0) {
        errno = ENAMETOOLONG;
        return errbuf_set(err, errlen, "%s/%s: path too long", dir, rel);
    }
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {   /* named by the whole path: "<dir>/config.json: No such file or directory" */
        int e = errno;
        errbuf_set(err, errlen, "%s: %s", shown, strerror(e));
        errno = e;
        return -1;
    }
    int fd = fs_open_beneath(dfd, rel, kind, shown, err, errlen);
    int e = errno;
    close(dfd);
    errno = e;
    return fd;
}

int fs_mkdir_under(const char *dir, const char *rel, mode_t mode, char *err, size_t errlen) {
    if (rel[0] == '/') return errbuf_set(err, errlen, "%s: '%s' is not a relative path", dir, rel);
    int cur = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0) return errbuf_set(err, errlen, "%s: %s", dir, strerror(errno));
    const char *p = rel;
    int rc = 0;
    while (*p && rc == 0) {
        size_t n = strcspn(p, "/");
        char comp[NAME_MAX + 1];
        if (n > NAME_MAX || fs_is_dotdot(p, n)) {
            rc = errbuf_set(err, errlen, "%s/%s: bad path", dir, rel);
            break;
        }
        memcpy(comp, p, n);
        comp[n] = 0;
        p += n;
        while (*p == '/') p++;
        if (n == 0 || (n == 1 && comp[0] == '.')) continue;
        if (mkdirat(cur, comp, mode) != 0 && errno != EEXIST) {
            rc = errbuf_set(err, errlen, "mkdir %s/%s: %s", dir, rel, strerror(errno));
            break;
        }
        int fd = fs_open_beneath(cur, comp, FS_DIR, comp, NULL, 0);
        if (fd < 0) {
            rc = errbuf_set(err, errlen, "mkdir %s/%s: '%s' %s", dir, rel, comp,
                            errno == ELOOP ? "is a symbolic link (not followed)" : strerror(errno));
            break;
        }
        close(cur);
        cur = fd;
    }
    close(cur);
    return rc;
}

int fs_rm_rf_under(const char *dir, const char *rel, char *err, size_t errlen) {
    char parent[4096], base[NAME_MAX + 1], shown[4096];
    if (fs_join(shown, sizeof shown, dir, rel) != 0) return errbuf_set(err, errlen, "%s/%s: path too long", dir, rel);
    size_t n = strlen(rel);
    while (n > 0 && rel[n - 1] == '/') n--;
    size_t i = n;
    while (i > 0 && rel[i - 1] != '/') i--;
    if (n - i == 0 || n - i > NAME_MAX || (n - i == 1 && rel[i] == '.') || fs_is_dotdot(rel + i, n - i) ||
        i >= sizeof parent)
        return errbuf_set(err, errlen, "remove %s: bad path", shown);
    memcpy(base, rel + i, n - i);
    base[n - i] = 0;
    memcpy(parent, rel, i);
    parent[i] = 0;
    int pfd = fs_open_under(dir, i ? parent : ".", FS_DIR, err, errlen);
    if (pfd < 0) return errno == ENOENT ? 0 : -1;
    int rc = fs_rm_at(pfd, base, shown, err, errlen);
    close(pfd);
    return rc;
}

const char *fs_rel_under(const char *dir, const char *path) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n == 1 && dir[0] == '/') n = 0;            /* the root directory: every absolute path */
    if (strncmp(path, dir, n) != 0) return NULL;
    const char *rest = path + n;
    if (*rest == 0) return rest;
    if (*rest != '/') return NULL;
    while (*rest == '/') rest++;
    return rest;
}

int fs_open_confined(const char *path, const char *const *roots, int nroots, int kind, int flags,
                     char *resolved, size_t rlen, char *err, size_t errlen) {
    char rp[PATH_MAX];
    if (!path || path[0] != '/') {
        errno = EXDEV;
        return errbuf_set(err, errlen, "%s: not an absolute path", path ? path : "(null)");
    }
    if (flags & FS_CONFINE_RESOLVE) {
        if (!realpath(path, rp)) return errbuf_set(err, errlen, "%s: %s", path, strerror(errno));
    } else if (snprintf(rp, sizeof rp, "%s", path) >= (int)sizeof rp) {
        errno = ENAMETOOLONG;
        return errbuf_set(err, errlen, "%s: path too long", path);
    }
    errno = EXDEV;
    errbuf_set(err, errlen, "%s: not under a configured root", rp);
    for (int i = 0; i < nroots; i++) {
        const char *rel = fs_rel_under(roots[i], rp);
        if (!rel) continue;
        int dfd = open(roots[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            errbuf_set(err, errlen, "root %s: %s", roots[i], strerror(errno));
            continue;
        }
        int fd = fs_open_beneath(dfd, *rel ? rel : ".", kind, rp, err, errlen);
        int e = errno;
        close(dfd);
        if (fd >= 0) {
            if (resolved && snprintf(resolved, rlen, "%s", rp) >= (int)rlen) {
                close(fd);
                errno = ENAMETOOLONG;
                return errbuf_set(err, errlen, "%s: path too long", rp);
            }
            return fd;
        }
        errno = e;
    }
    return -1;
}
