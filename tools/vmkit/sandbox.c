/* serve-device's sandbox (sandbox.h). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>

/* What the vhost-user server and the FUSE server call, and glibc under them; nothing that makes
 * a process, a network socket or a mount. Everything else fails with EPERM. */
static const char *const allowed[] = {
    /* memory, threads, time, signals */
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "futex",
    "set_robust_list",
    "rseq",
    "sched_yield",
    "sched_getaffinity",
    "getpid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "rt_sigreturn",
    "rt_sigprocmask",
    "rt_sigaction",
    "sigaltstack", /* the sanitizers set each thread's up, and tear it down */
    "tgkill",
    "exit",
    "exit_group",
    "restart_syscall",
    "getrandom",
    /* the event loop and the vhost-user socket */
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "eventfd2",
    "poll",
    "ppoll",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "shutdown",
    "getsockopt",
    "fcntl",
    "dup",
    "dup3",
    "close",
    "read",
    "write",
    "readv",
    "writev",
    /* the file system, always relative to an fd the server holds */
    "openat",
    "openat2",
    "newfstatat",
    "fstat",
    "statx",
    "fstatfs",
    "getdents64",
    "lseek",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fallocate",
    "copy_file_range",
    "mkdirat",
    "mknodat",
    "symlinkat",
    "linkat",
    "unlinkat",
    "renameat",
    "renameat2",
    "readlinkat",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "utimensat",
    "fgetxattr",
    "fsetxattr",
    "fremovexattr",
    "flistxattr",
    "flock",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "getgroups",
    "umask",
    /* glibc asks whether stderr is a terminal before it writes a log line */
    "ioctl",
};

static int install_filter(char *msg, size_t len)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx) {
        snprintf(msg, len, "sandbox: seccomp_init failed");
        return -1;
    }
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); /* every thread, not only this one */
#if SCMP_VER_MAJOR > 2 || (SCMP_VER_MAJOR == 2 && SCMP_VER_MINOR >= 5)
    /* A binary tree of the syscall numbers, not a list of ~100 comparisons run on every
     * syscall. Linux 5.11 and later cache "always allowed" numbers and skip the filter for
     * them anyway; older ones run it. Refused by an older libseccomp: the list still works. */
    if (r == 0)
        (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
#endif
    for (size_t i = 0; r == 0 && i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr != __NR_SCMP_ERROR)
            r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    if (r < 0) {
        snprintf(msg, len, "sandbox: cannot load the seccomp filter: %s", strerror(-r));
        return -1;
    }
    return 0;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

int sandbox_prepare(enum cli_fs_sandbox mode, char *msg, size_t len)
{
    if (mode == CLI_FS_SANDBOX_NONE || mode == CLI_FS_SANDBOX_CHROOT)
        return 0;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int flags = CLONE_NEWNS | (uid ? CLONE_NEWUSER : 0);
    if (unshare(flags) < 0) {
        snprintf(msg, len,
                 "sandbox: cannot make a %s namespace: %s (--sandbox chroot as root, or "
                 "--sandbox none, unsafe)",
                 uid ? "user and mount" : "mount", strerror(errno));
        return -1;
    }
    if (uid) {
        /* Ourselves as root of the new user namespace: chroot is allowed there, and files
         * are still created as our user on the host. */
        char map[64];
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)uid);
        int ok = write_file("/proc/self/setgroups", "deny") == 0 &&
                 write_file("/proc/self/uid_map", map) == 0;
        snprintf(map, sizeof(map), "0 %u 1\n", (unsigned)gid);
        if (!ok || write_file("/proc/self/gid_map", map) < 0) {
            snprintf(msg, len, "sandbox: cannot map our ids in the user namespace: %s",
                     strerror(errno));
            return -1;
        }
    }
    /* Nothing we do in here propagates back to the host's mounts. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        snprintf(msg, len, "sandbox: cannot make our mounts private: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int sandbox_enter(enum cli_fs_sandbox mode, const char *dir, char *msg, size_t len)
{
    if (mode == CLI_FS_SANDBOX_NONE)
        return 0;
    if (chroot(dir) < 0 || chdir("/") < 0) {
        snprintf(msg, len, "sandbox: cannot chroot to %s: %s%s", dir, strerror(errno),
                 errno == EPERM ? " (--sandbox namespace, or --sandbox none, unsafe)" : "");
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        snprintf(msg, len, "sandbox: cannot set no_new_privs: %s", strerror(errno));
        return -1;
    }
    return install_filter(msg, len);
}
