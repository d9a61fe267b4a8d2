/* tests/unit/test_fsutil.c — opening beneath a directory (store/fsutil.h):
 * a regular file opens; a symbolic link in the middle or at the end, `..`, an
 * absolute path, a FIFO (without blocking), a device and a directory swapped
 * for a link after it was checked are refused — each with openat2 and with
 * the per-component fallback of kernels without it. Client path confinement
 * (resolved and strict), removal and creation beneath a directory (a planted
 * link is never followed: nothing outside is touched), and the modes of
 * created files under several umasks (never wider than 0640). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/fsutil.h"
#include "store/safetensors.h"
#include "tests/tap.h"

static char base[PATH_MAX - 64];      /* the test's temporary directory */
static char root[PATH_MAX];      /* <base>/root: what is opened beneath */
static char outside[PATH_MAX];   /* <base>/outside: must never be reached */

static void put(const char *dir, const char *name, const char *text) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int exists(const char *dir, const char *name) {
    char p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Opens rel beneath root; returns the fd (closed) >= 0 as 1, or -errno. */
static int try_open(const char *rel, int kind, char *err, size_t errlen) {
    int dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd = fs_open_beneath(dfd, rel, kind, NULL, err, errlen);
    int e = errno;
    close(dfd);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    return -e;
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "not ok - blocked on a FIFO (SIGALRM watchdog)\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(2);
    _exit(1);
}

static void test_beneath(const char *mode) {
    char err[512];
    int r;
    r = try_open("sub/ok.txt", FS_REG, err, sizeof err);
    ok(r == 1, "%s: a regular file beneath opens (%s)", mode, r == 1 ? "" : err);
    r = try_open("./sub//ok.txt", FS_REG, err, sizeof err);
    ok(r == 1, "%s: '.' and repeated slashes are fine", mode);
    r = try_open("sub", FS_DIR, err, sizeof err);
    ok(r == 1, "%s: a directory beneath opens as FS_DIR", mode);
    r = try_open(".", FS_DIR, err, sizeof err);
    ok(r == 1, "%s: '.' is the directory itself", mode);
    r = try_open("link-end.txt", FS_REG, err, sizeof err);
    ok(r == -ELOOP && strstr(err, "symbolic link"), "%s: a symlink at the end is refused: %s", mode, err);
    r = try_open("link-mid/secret.txt", FS_REG, err, sizeof err);
    ok(r == -ELOOP, "%s: a symlink in the middle (to outside) is refused: %s", mode, err);
    r = try_open("link-in/ok.txt", FS_REG, err, sizeof err);
    ok(r == -ELOOP, "%s: a symlink in the middle that stays inside is refused too: %s", mode, err);
    r = try_open("sub/../sub/ok.txt", FS_REG, err, sizeof err);
    ok(r == -EXDEV && strstr(err, ".."), "%s: '..' is refused even when it stays inside: %s", mode, err);
    r = try_open("../outside/secret.txt", FS_REG, err, sizeof err);
    ok(r == -EXDEV, "%s: '..' out is refused: %s", mode, err);
    char abs[PATH_MAX * 2];
    snprintf(abs, sizeof abs, "%s/secret.txt", outside);
    r = try_open(abs, FS_REG, err, sizeof err);
    ok(r == -EXDEV, "%s: an absolute path is refused: %s", mode, err);
    r = try_open("missing.txt", FS_REG, err, sizeof err);
    ok(r == -ENOENT, "%s: a missing file: ENOENT (%s)", mode, err);
    r = try_open("sub/ok.txt", FS_DIR, err, sizeof err);
    ok(r == -ENOTDIR, "%s: a file opened as a directory: ENOTDIR (%s)", mode, err);
    r = try_open("sub", FS_REG, err, sizeof err);
    ok(r < 0 && r != -ENOENT, "%s: a directory opened as a file is refused: %s", mode, err);
    r = try_open("", FS_REG, err, sizeof err);
    ok(r < 0, "%s: an empty name is not a file", mode);

    /* a FIFO must not block the caller (the alarm ends the test if it does) */
    alarm(20);
    r = try_open("a.safetensors", FS_REG, err, sizeof err);
    alarm(0);
    ok(r == -EINVAL && strstr(err, "not a regular file"), "%s: a FIFO is refused without blocking: %s", mode, err);

    /* a device file (beneath /dev) is not a regular file */
    int fd = fs_open_under("/dev", "null", FS_REG, err, sizeof err);
    ok(fd < 0 && errno == EINVAL && strstr(err, "not a regular file"), "%s: a device is refused: %s", mode, err);
    if (fd >= 0) close(fd);

    /* a directory checked, then swapped for a symlink: the next open refuses it */
    char d1[PATH_MAX * 2], d2[PATH_MAX * 2];
    snprintf(d1, sizeof d1, "%s/swap", root);
    snprintf(d2, sizeof d2, "%s/swap.old", root);
    r = try_open("swap/ok.txt", FS_REG, err, sizeof err);
    int before = r == 1;
    int swapped = rename(d1, d2) == 0 && symlink(outside, d1) == 0;
    put(outside, "ok.txt", "outside\n");
    r = try_open("swap/ok.txt", FS_REG, err, sizeof err);
    ok(before && swapped && r == -ELOOP, "%s: a directory swapped for a symlink is refused: %s", mode, err);
    /* undo for the next mode */
    if (unlink(d1) != 0 || rename(d2, d1) != 0) diag("cannot undo the swap");
    snprintf(d1, sizeof d1, "%s/ok.txt", outside);
    unlink(d1);

    /* fs_read_file_under and st_open_in go through the same door */
    size_t len = 0;
    char *text = fs_read_file_under(root, "sub/ok.txt", 1024, &len, err, sizeof err);
    ok(text && len == 3 && !strcmp(text, "ok\n"), "%s: fs_read_file_under reads a file beneath", mode);
    free(text);
    text = fs_read_file_under(root, "link-end.txt", 1024, &len, err, sizeof err);
    ok(!text && !strstr(err, "SECRET"), "%s: fs_read_file_under refuses a link, quoting nothing: %s", mode, err);
    free(text);
    alarm(20);
    st_file_t *sf = st_open_in(root, "a.safetensors", err, sizeof err);
    alarm(0);
    ok(!sf && strstr(err, "not a regular file"), "%s: st_open_in refuses a FIFO shard without blocking: %s", mode, err);
    st_close(sf);
    sf = st_open_in(root, "link-end.txt", err, sizeof err);
    ok(!sf && strstr(err, "symbolic link") && !strstr(err, "SECRET"), "%s: st_open_in refuses a symlinked shard: %s",
       mode, err);
    st_close(sf);
}

static void test_confined(void) {
    char err[512], res[PATH_MAX];
    const char *roots[] = {root};
    char p[PATH_MAX * 2];
    int fd;
    snprintf(p, sizeof p, "%s/sub", root);
    fd = fs_open_confined(p, roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd >= 0 && !strcmp(res, p), "confined: a directory under the root (%s)", res);
    if (fd >= 0) close(fd);
    snprintf(p, sizeof p, "%s/link-in", root);
    fd = fs_open_confined(p, roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    char want[PATH_MAX * 2];
    snprintf(want, sizeof want, "%s/sub", root);
    ok(fd >= 0 && !strcmp(res, want), "confined, resolving: a link that stays inside resolves to %s", res);
    if (fd >= 0) close(fd);
    fd = fs_open_confined(p, roots, 1, FS_DIR, 0, res, sizeof res, err, sizeof err);
    ok(fd < 0 && errno == ELOOP, "confined, strict (a recorded path): the same link is refused: %s", err);
    snprintf(p, sizeof p, "%s/link-mid", root);
    fd = fs_open_confined(p, roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd < 0, "confined: a link out of the root is refused: %s", err);
    snprintf(p, sizeof p, "%s/sub/../../outside", root);
    fd = fs_open_confined(p, roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd < 0, "confined: a '..' escape is refused: %s", err);
    fd = fs_open_confined(p, roots, 1, FS_DIR, 0, res, sizeof res, err, sizeof err);
    ok(fd < 0, "confined, strict: a '..' escape is refused: %s", err);
    fd = fs_open_confined(outside, roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd < 0, "confined: an existing directory outside is refused");
    fd = fs_open_confined("/nonexistent/traind", roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd < 0, "confined: a missing path is refused");
    fd = fs_open_confined("sub", roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd < 0, "confined: a relative path is refused");
    snprintf(p, sizeof p, "%sx", root);       /* a sibling whose name starts with the root's */
    if (mkdir(p, 0700) != 0) diag("mkdir %s", p);
    fd = fs_open_confined(p, roots, 1, FS_DIR, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd < 0, "confined: <root>x is not under <root>");
    rmdir(p);
    snprintf(p, sizeof p, "%s/sub/ok.txt", root);
    fd = fs_open_confined(p, roots, 1, FS_REG, FS_CONFINE_RESOLVE, res, sizeof res, err, sizeof err);
    ok(fd >= 0, "confined: a file as FS_REG");
    if (fd >= 0) close(fd);
    fd = fs_open_confined(root, roots, 1, FS_DIR, 0, res, sizeof res, err, sizeof err);
    ok(fd >= 0, "confined: the root itself");
    if (fd >= 0) close(fd);

    ok(fs_rel_under("/a/b", "/a/b/c/d") && !strcmp(fs_rel_under("/a/b", "/a/b/c/d"), "c/d"), "rel_under: below");
    ok(fs_rel_under("/a/b/", "/a/b//c") && !strcmp(fs_rel_under("/a/b/", "/a/b//c"), "c"), "rel_under: slashes");
    ok(fs_rel_under("/a/b", "/a/b") && !*fs_rel_under("/a/b", "/a/b"), "rel_under: the dir itself is \"\"");
    ok(!fs_rel_under("/a/b", "/a/bc"), "rel_under: /a/bc is not under /a/b");
    ok(!fs_rel_under("/a/b", "/a"), "rel_under: a parent is not under");
    ok(fs_rel_under("/", "/x/y") && !strcmp(fs_rel_under("/", "/x/y"), "x/y"), "rel_under: under /");
}

static void test_rm_mkdir(void) {
    char err[512], p[PATH_MAX * 2];
    /* rm beneath: a link in the middle is not followed, nothing outside goes */
    put(outside, "victim", "keep\n");
    ok(fs_rm_rf_under(root, "link-mid/victim", err, sizeof err) == -1 && exists(outside, "victim"),
       "rm_under: a symlink on the way is not followed (%s)", err);
    ok(fs_rm_rf_under(root, "link-mid", err, sizeof err) == 0 && !exists(root, "link-mid") && exists(outside, "victim") &&
       exists(outside, "secret.txt"), "rm_under: a symlink at the end is unlinked, its target kept");
    snprintf(p, sizeof p, "%s/tree/a/b", root);
    ok(fs_mkdir_p(p, 0700, err, sizeof err) == 0, "a tree to remove");
    put(p, "f", "x");
    ok(fs_rm_rf_under(root, "tree", err, sizeof err) == 0 && !exists(root, "tree"), "rm_under: a tree goes (%s)", err);
    ok(fs_rm_rf_under(root, "tree", err, sizeof err) == 0, "rm_under: a missing path is success");
    ok(fs_rm_rf_under(root, "missing-dir/x", err, sizeof err) == 0, "rm_under: a missing parent is success");
    ok(fs_rm_rf_under(root, "", err, sizeof err) == -1 && fs_rm_rf_under(root, ".", err, sizeof err) == -1 &&
       fs_rm_rf_under(root, "sub/..", err, sizeof err) == -1 && exists(root, "sub"),
       "rm_under: '', '.' and '..' are refused");
    /* mkdir beneath: made, existing fine, a link refused */
    ok(fs_mkdir_under(root, "made/deeper", 0750, err, sizeof err) == 0 && exists(root, "made/deeper"),
       "mkdir_under makes the directories (%s)", err);
    ok(fs_mkdir_under(root, "made/deeper", 0750, err, sizeof err) == 0, "mkdir_under: existing is fine");
    snprintf(p, sizeof p, "%s/made/link", root);
    if (symlink(outside, p) != 0) diag("symlink %s", p);
    ok(fs_mkdir_under(root, "made/link/new", 0750, err, sizeof err) == -1 && !exists(outside, "new") &&
       strstr(err, "symbolic link"), "mkdir_under: a symlink on the way is refused: %s", err);
    /* the FIFO again, through the path-based readers */
    snprintf(p, sizeof p, "%s/a.safetensors", root);
    alarm(20);
    char *t = fs_read_file(p, 1024, NULL, err, sizeof err);
    st_file_t *sf = st_open(p, err, sizeof err);
    alarm(0);
    ok(!t && !sf, "fs_read_file and st_open refuse a FIFO by path without blocking: %s", err);
    free(t);
    st_close(sf);
}

static mode_t file_mode(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static void test_modes(void) {
    char err[512], p[PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/moded", root);
    static const mode_t masks[] = {0, 022, 027, 077};
    for (int i = 0; i < 4; i++) {
        mode_t old = umask(masks[i]);
        mode_t want = FS_FILE_MODE & ~masks[i];
        ok(fs_write_file_atomic(p, "x", 1, err, sizeof err) == 0 && file_mode(p) == want,
           "umask %03o: fs_write_file_atomic makes %04o (got %04o)", (unsigned)masks[i], (unsigned)want,
           (unsigned)file_mode(p));
        st_writer_t *w = st_writer_new();
        int64_t shape[1] = {2};
        float v[2] = {1, 2};
        st_writer_add(w, "t", ST_F32, 1, shape, v);
        ok(st_writer_write(w, p, err, sizeof err) == 0 && file_mode(p) == want,
           "umask %03o: st_writer_write makes %04o (got %04o)", (unsigned)masks[i], (unsigned)want,
           (unsigned)file_mode(p));
        st_writer_free(w);
        umask(old);
    }
    snprintf(p, sizeof p, "%s/tmpl-XXXXXX", root);
    int fd = fs_create_temp(p, 0600);
    ok(fd >= 0 && !strstr(p, "XXXXXX") && file_mode(p) == 0600, "fs_create_temp: %s, 0600", p);
    if (fd >= 0) close(fd);
    char q[PATH_MAX * 2];
    snprintf(q, sizeof q, "%s/bad", root);
    ok(fs_create_temp(q, 0600) == -1 && errno == EINVAL, "fs_create_temp needs a XXXXXX template");
}

int main(void) {
    signal(SIGALRM, on_alarm);
    snprintf(base, sizeof base, "%.200s/traind-test-fsutil-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(base)) {
        ok(0, "mkdtemp");
        return tap_done();
    }
    char rb[PATH_MAX];
    if (realpath(base, rb)) snprintf(base, sizeof base, "%.3000s", rb);
    snprintf(root, sizeof root, "%s/root", base);
    snprintf(outside, sizeof outside, "%s/outside", base);
    char p[PATH_MAX * 2];
    int setup = mkdir(root, 0700) == 0 && mkdir(outside, 0700) == 0;
    snprintf(p, sizeof p, "%s/sub", root);
    setup = setup && mkdir(p, 0700) == 0;
    put(p, "ok.txt", "ok\n");
    snprintf(p, sizeof p, "%s/swap", root);
    setup = setup && mkdir(p, 0700) == 0;
    put(p, "ok.txt", "ok\n");
    put(outside, "secret.txt", "SECRET-TOKEN\n");
    char t[PATH_MAX * 2];
    snprintf(t, sizeof t, "%s/secret.txt", outside);
    snprintf(p, sizeof p, "%s/link-end.txt", root);
    setup = setup && symlink(t, p) == 0;
    snprintf(p, sizeof p, "%s/link-mid", root);
    setup = setup && symlink(outside, p) == 0;
    snprintf(p, sizeof p, "%s/link-in", root);
    snprintf(t, sizeof t, "%s/sub", root);
    setup = setup && symlink(t, p) == 0;
    snprintf(p, sizeof p, "%s/a.safetensors", root);
    setup = setup && mkfifo(p, 0600) == 0;
    ok(setup, "fixtures under %s", base);

    fs_beneath_use_openat2(1);
    test_beneath("openat2");
    fs_beneath_use_openat2(0);
    test_beneath("fallback");
    fs_beneath_use_openat2(1);
    test_confined();
    fs_beneath_use_openat2(0);
    test_confined();
    fs_beneath_use_openat2(1);
    test_rm_mkdir();
    test_modes();

    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0) diag("cannot remove %s", base);
    return tap_done();
}
