/* fs_syscall_floor — the host CPU that the system calls of one `lookup` operation of
 * bench/vhost_user_fs.sh cost by themselves, with no server around them: what any virtio-fs
 * back end that keeps the rules pays at least. A LOOKUP of a name whose inode the
 * server knows already resolves it (openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
 * RESOLVE_NO_SYMLINKS, O_PATH), stats the result to find the inode by (st_dev, st_ino),
 * closes the new descriptor (the inode has one), and the GETATTR after it stats the inode.
 *
 *   cc -O2 -o /tmp/fs_syscall_floor bench/fs_syscall_floor.c && /tmp/fs_syscall_floor DIR
 *
 * DIR (use one in /dev/shm, as the benchmark's share is) gets 1000 empty files f0000..f0999
 * in DIR/floor; the program prints the process CPU time per operation, over 400000. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FILES 1000
#define OPS   400000

static int die(const char *what)
{
    fprintf(stderr, "fs_syscall_floor: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fs_syscall_floor DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/floor", argv[1]);
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return die(path);
    int dir = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return die(path);
    for (int i = 0; i < FILES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%04d", i);
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return die(name);
        close(fd);
    }
    int known = openat(dir, "f0000", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (known < 0)
        return die("f0000");
    struct open_how how = { .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                            .resolve =
                                RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS };
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (int i = 0; i < OPS; i++) {
        char name[16];
        snprintf(name, sizeof(name), "f%04d", i % FILES);
        int fd = (int)syscall(SYS_openat2, dir, name, &how, sizeof(how));
        if (fd < 0)
            return die("openat2");
        struct stat st;
        if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ||
            fstatat(known, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
            return die("fstatat");
        close(fd);
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / OPS / 1e3;
    printf("lookup's system calls: %.2f us of CPU per operation\n", us);
    return 0;
}
