/* What a busybox guest lacks for the virtio-fs workload (tests/system/vhost_user/
 * test_vhost_user_fs.sh), built static and staged in its initramfs:
 *   fs_guest_tool as UID GID PROG [ARG...]   runs PROG with those ids and no other groups
 *   fs_guest_tool mmapw FILE BYTES           writes FILE through a shared mapping
 *   fs_guest_tool fsyncdir DIR               fsyncs a directory
 *   fs_guest_tool rwverify FILE BLOCKS       writes 4 KiB blocks of FILE in a shuffled order,
 *                                            each twice (the second pass wins), fsyncs, reads
 *                                            every block back and checks it (fio's verify, in
 *                                            small): block i holds the 32-bit words i*2654435761+k */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <stdint.h>
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

static void fill(uint32_t *b, uint32_t block, uint32_t pass)
{
    for (uint32_t k = 0; k < 1024; k++)
        b[k] = block * 2654435761u + k + pass * 7919u;
}

static int rwverify(const char *path, uint32_t blocks)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    uint32_t *order = calloc(blocks, sizeof(*order));
    if (fd < 0 || !order) {
        perror(path);
        return 1;
    }
    uint32_t b[1024];
    for (uint32_t pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < blocks; i++)
            order[i] = i;
        uint32_t x = 12345 + pass;
        for (uint32_t i = blocks - 1; i > 0; i--) { /* Fisher-Yates with a fixed LCG */
            x = x * 1103515245u + 12345u;
            uint32_t j = (x >> 8) % (i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (uint32_t i = 0; i < blocks; i++) {
            fill(b, order[i], pass);
            if (pwrite(fd, b, sizeof(b), (off_t)order[i] * sizeof(b)) != (ssize_t)sizeof(b)) {
                perror("pwrite");
                return 1;
            }
        }
    }
    if (fsync(fd) < 0) {
        perror("fsync");
        return 1;
    }
    uint32_t want[1024], bad = 0;
    for (uint32_t i = 0; i < blocks; i++) {
        fill(want, i, 1);
        if (pread(fd, b, sizeof(b), (off_t)i * sizeof(b)) != (ssize_t)sizeof(b) ||
            memcmp(b, want, sizeof(b)))
            bad++;
    }
    free(order);
    close(fd);
    printf("%u bad blocks of %u\n", bad, blocks);
    return bad != 0;
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
    if (argc == 4 && !strcmp(argv[1], "rwverify"))
        return rwverify(argv[2], (uint32_t)atol(argv[3]));
    fprintf(stderr, "usage: fs_guest_tool as UID GID PROG... | mmapw FILE BYTES | fsyncdir DIR |"
                    " rwverify FILE BLOCKS\n");
    return 2;
}
