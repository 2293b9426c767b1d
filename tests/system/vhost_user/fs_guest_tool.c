/* What a busybox guest lacks for the virtio-fs workload (tests/system/vhost_user/
 * test_vhost_user_fs.sh), built static and staged in its initramfs:
 *   fs_guest_tool as UID GID PROG [ARG...]   runs PROG with those ids and no other groups
 *   fs_guest_tool mmapw FILE BYTES           writes FILE through a shared mapping
 *   fs_guest_tool fsyncdir DIR               fsyncs a directory */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int mmapw(const char *path, size_t bytes)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
        perror(path);
        return 1;
    }
    unsigned char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (size_t i = 0; i < bytes; i++)
        p[i] = (unsigned char)(i * 7 + 3);
    if (msync(p, bytes, MS_SYNC) < 0) {
        perror("msync");
        return 1;
    }
    munmap(p, bytes);
    return close(fd) < 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "as")) {
        gid_t gid = (gid_t)atol(argv[3]);
        if (setgroups(0, NULL) || setgid(gid) || setuid((uid_t)atol(argv[2]))) {
            perror("as");
            return 1;
        }
        execvp(argv[4], argv + 4);
        perror(argv[4]);
        return 127;
    }
    if (argc == 4 && !strcmp(argv[1], "mmapw"))
        return mmapw(argv[2], (size_t)atol(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "fsyncdir")) {
        int fd = open(argv[2], O_RDONLY | O_DIRECTORY);
        if (fd < 0 || fsync(fd) < 0) {
            perror(argv[2]);
            return 1;
        }
        return close(fd) < 0;
    }
    fprintf(stderr, "usage: fs_guest_tool as UID GID PROG... | mmapw FILE BYTES | fsyncdir DIR\n");
    return 2;
}
