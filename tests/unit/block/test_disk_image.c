/* Disk image attachments: the host side of a block device. Each test checks what
 * lands in (or comes out of) the file through a descriptor of its own. */
#include "block/disk_image.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define IMG_SIZE (1u << 20)

struct fixture {
    char dir[64];
    char img[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    /* /var/tmp rather than /tmp: it is more often a disk file system with O_DIRECT. */
    strcpy(f->dir, "/var/tmp/vmkit-test-disk-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->img, sizeof(f->img), "%s/disk.img", f->dir);
    int fd = open(f->img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, IMG_SIZE) != 0)
        return -1;
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->img);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + seed);
}

/* The file's bytes at off, through a fresh descriptor. */
static void read_file(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void write_file(const char *path, uint64_t off, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* Extent-tree blocks count in st_blocks too: a split extent can cost the file a block
 * of metadata, so allocation checks allow this much slack. */
#define META_SLACK (64u << 10)

static uint64_t allocated(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

static struct disk_image *open_ok(const char *path, bool ro, vmk_disk_caching_mode c,
                                  vmk_disk_sync_mode s)
{
    struct disk_image *img = NULL;
    vmk_error *err = NULL;
    vmk_result r = disk_image_open(path, ro, c, s, &img, &err);
    if (r != VMK_OK)
        fail_msg("open %s: %s", path, vmk_error_message(err));
    assert_non_null(img);
    return img;
}

static void expect_open_error(const char *path, bool ro, vmk_result code, const char *fragment)
{
    struct disk_image *img = (struct disk_image *)1;
    vmk_error *err = NULL;
    assert_int_equal(
        disk_image_open(path, ro, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL, &img, &err), code);
    assert_null(img);
    const char *msg = vmk_error_message(err);
    if (!strstr(msg, path) || !strstr(msg, fragment))
        fail_msg("message '%s' lacks '%s' or '%s'", msg, path, fragment);
    vmk_error_free(err);
}

static void test_open_errors_name_the_path(void **state)
{
    struct fixture *f = *state;
    char path[192];
    snprintf(path, sizeof(path), "%s/missing.img", f->dir);
    expect_open_error(path, false, VMK_ERR_IO, "does not exist");
    expect_open_error(f->dir, true, VMK_ERR_INVALID_CONFIG, "not a regular file or block device");
    snprintf(path, sizeof(path), "%s/odd.img", f->dir);
    uint8_t junk[1000] = { 0 };
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    expect_open_error(path, false, VMK_ERR_INVALID_CONFIG, "1000 bytes is not a multiple of 512");
    unlink(path);

    struct disk_image *img = NULL;
    vmk_error *err = NULL;
    assert_int_equal(
        disk_image_open(NULL, false, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL, &img, &err),
        VMK_ERR_INVALID_CONFIG);
    assert_null(img);
    assert_non_null(strstr(vmk_error_message(err), "no path"));
    vmk_error_free(err);
    disk_image_close(NULL);
}

static void test_geometry(void **state)
{
    struct fixture *f = *state;
    struct disk_image *img = open_ok(f->img, false, VMK_DISK_CACHING_AUTOMATIC, VMK_DISK_SYNC_FULL);
    const struct block_backend *be = disk_image_backend(img);
    assert_int_equal(be->size, IMG_SIZE);
    assert_int_equal(be->block_size, 512);
    assert_false(be->read_only);
    assert_true(be->can_discard);
    assert_true(be->can_write_zeroes);
    assert_false(disk_image_is_direct(img));
    disk_image_close(img);
}

/* Scattered guest buffers land contiguously in the file and come back the same. */
static void round_trip(const char *path, struct disk_image *img, uint64_t off, size_t a, size_t b,
                       size_t skew)
{
    const struct block_backend *be = disk_image_backend(img);
    uint8_t *mem = aligned_alloc(4096, 3 * 65536);
    assert_non_null(mem);
    uint8_t *src1 = mem + skew, *src2 = mem + 65536 + skew;
    pattern(src1, a, 1);
    pattern(src2, b, 2);
    struct iovec w[2] = { { src1, a }, { src2, b } };
    assert_int_equal(be->write(be->ctx, off, w, 2), 0);

    uint8_t *file = malloc(a + b);
    read_file(path, off, file, a + b);
    assert_memory_equal(file, src1, a);
    assert_memory_equal(file + a, src2, b);

    uint8_t *dst = mem + 2 * 65536 + skew;
    memset(dst, 0xee, a + b);
    struct iovec r[2] = { { dst, b }, { dst + b, a } };
    assert_int_equal(be->read(be->ctx, off, r, 2), 0);
    assert_memory_equal(dst, file, a + b);
    free(file);
    free(mem);
}

static void test_cached_round_trip(void **state)
{
    struct fixture *f = *state;
    struct disk_image *img = open_ok(f->img, false, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL);
    round_trip(f->img, img, 4096, 4096, 8192, 0);
    round_trip(f->img, img, 512 * 3, 512, 1024, 17);
    /* The last sector of the disk. */
    round_trip(f->img, img, IMG_SIZE - 1024, 512, 512, 0);
    disk_image_close(img);
}

/* UNCACHED: aligned buffers go straight through O_DIRECT; unaligned buffers through
 * the bounce buffer; unaligned offsets through the cached descriptor. All must land. */
static void test_uncached_round_trip(void **state)
{
    struct fixture *f = *state;
    struct disk_image *img = open_ok(f->img, false, VMK_DISK_CACHING_UNCACHED, VMK_DISK_SYNC_FULL);
    if (!disk_image_is_direct(img)) {
        print_message("# %s does not take O_DIRECT: testing the cached fallback only\n", f->dir);
    } else {
        print_message("# O_DIRECT in use\n");
    }
    round_trip(f->img, img, 8192, 4096, 8192, 0);   /* aligned */
    round_trip(f->img, img, 16384, 4096, 4096, 8);  /* buffers off by 8 bytes: bounce */
    round_trip(f->img, img, 512 * 5, 512, 1536, 0); /* offset not block-aligned */
    round_trip(f->img, img, 65536, 40960, 4096, 3); /* bigger, bounced */
    disk_image_close(img);
}

static void test_read_only(void **state)
{
    struct fixture *f = *state;
    uint8_t before[4096], after[4096], buf[4096];
    pattern(before, sizeof(before), 9);
    write_file(f->img, 0, before, sizeof(before));
    struct disk_image *img = open_ok(f->img, true, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL);
    const struct block_backend *be = disk_image_backend(img);
    assert_true(be->read_only);
    assert_false(be->can_discard);
    assert_false(be->can_write_zeroes);
    memset(buf, 0, sizeof(buf));
    struct iovec v = { buf, sizeof(buf) };
    assert_int_equal(be->write(be->ctx, 0, &v, 1), -EROFS);
    assert_int_equal(be->discard(be->ctx, 0, 4096), -EROFS);
    assert_int_equal(be->write_zeroes(be->ctx, 0, 4096, true), -EROFS);
    assert_int_equal(be->flush(be->ctx), 0);
    assert_int_equal(be->read(be->ctx, 0, &v, 1), 0);
    assert_memory_equal(buf, before, sizeof(buf));
    read_file(f->img, 0, after, sizeof(after));
    assert_memory_equal(after, before, sizeof(after));
    disk_image_close(img);
}

static void test_flush_modes(void **state)
{
    struct fixture *f = *state;
    static const vmk_disk_sync_mode modes[] = { VMK_DISK_SYNC_FULL, VMK_DISK_SYNC_FSYNC,
                                                VMK_DISK_SYNC_NONE };
    for (unsigned i = 0; i < 3; i++) {
        struct disk_image *img = open_ok(f->img, false, VMK_DISK_CACHING_CACHED, modes[i]);
        const struct block_backend *be = disk_image_backend(img);
        uint8_t buf[512];
        pattern(buf, sizeof(buf), (unsigned)i);
        struct iovec v = { buf, sizeof(buf) };
        assert_int_equal(be->write(be->ctx, 512 * i, &v, 1), 0);
        assert_int_equal(be->flush(be->ctx), 0);
        disk_image_close(img);
        uint8_t back[512];
        read_file(f->img, 512 * i, back, sizeof(back));
        assert_memory_equal(back, buf, sizeof(buf));
    }
}

static void fill_file(const char *path)
{
    uint8_t *data = malloc(IMG_SIZE);
    memset(data, 0xab, IMG_SIZE);
    write_file(path, 0, data, IMG_SIZE);
    free(data);
    int fd = open(path, O_RDWR);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != v)
            return false;
    }
    return true;
}

static void test_discard_deallocates(void **state)
{
    struct fixture *f = *state;
    fill_file(f->img);
    uint64_t before = allocated(f->img);
    assert_true(before >= IMG_SIZE);
    struct disk_image *img = open_ok(f->img, false, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL);
    const struct block_backend *be = disk_image_backend(img);
    assert_int_equal(be->discard(be->ctx, 0, IMG_SIZE / 2), 0);
    disk_image_close(img);
    assert_true(allocated(f->img) <= before - IMG_SIZE / 2 + META_SLACK);
    struct stat st;
    assert_int_equal(stat(f->img, &st), 0);
    assert_int_equal(st.st_size, IMG_SIZE); /* the disk keeps its size */
    uint8_t *back = malloc(IMG_SIZE);
    read_file(f->img, 0, back, IMG_SIZE);
    assert_true(all_bytes(back + IMG_SIZE / 2, IMG_SIZE / 2, 0xab));
    free(back);
}

static void test_write_zeroes(void **state)
{
    struct fixture *f = *state;
    fill_file(f->img);
    uint64_t before = allocated(f->img);
    struct disk_image *img = open_ok(f->img, false, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL);
    const struct block_backend *be = disk_image_backend(img);
    /* Without unmap the range is zero and still allocated. */
    assert_int_equal(be->write_zeroes(be->ctx, 4096, 8192, false), 0);
    /* With unmap it may be deallocated (and on this file system is). */
    assert_int_equal(be->write_zeroes(be->ctx, 65536, 65536, true), 0);
    /* A range that is not block-aligned still reads back as zeroes. */
    assert_int_equal(be->write_zeroes(be->ctx, 512 * 301, 512 * 3, false), 0);
    disk_image_close(img);

    uint8_t *back = malloc(IMG_SIZE);
    read_file(f->img, 0, back, IMG_SIZE);
    assert_true(all_bytes(back, 4096, 0xab));
    assert_true(all_bytes(back + 4096, 8192, 0));
    assert_true(all_bytes(back + 12288, 65536 - 12288, 0xab));
    assert_true(all_bytes(back + 65536, 65536, 0));
    assert_true(all_bytes(back + 131072, 512 * 301 - 131072, 0xab));
    assert_true(all_bytes(back + 512 * 301, 512 * 3, 0));
    assert_true(all_bytes(back + 512 * 304, IMG_SIZE - 512 * 304, 0xab));
    free(back);
    uint64_t now = allocated(f->img);
    assert_true(now <= before - 65536 + META_SLACK); /* the unmapped range */
    assert_true(now >= before - 65536 - 8192);       /* not the zeroed, not unmapped ones */
}

/* A file truncated behind the image's back: reads past the new end fail, never hang
 * or return garbage. */
static void test_file_shrank(void **state)
{
    struct fixture *f = *state;
    struct disk_image *img = open_ok(f->img, false, VMK_DISK_CACHING_CACHED, VMK_DISK_SYNC_FULL);
    const struct block_backend *be = disk_image_backend(img);
    assert_int_equal(truncate(f->img, 4096), 0);
    uint8_t buf[4096];
    struct iovec v = { buf, sizeof(buf) };
    assert_int_equal(be->read(be->ctx, 8192, &v, 1), -EIO);
    disk_image_close(img);
}

/* One probe for validation and start: what it found, and the open descriptor it hands back. */
static void test_probe(void **state)
{
    struct fixture *f = *state;
    struct disk_image_info a, b;
    int fd = -1, fd2 = -1;
    assert_int_equal(disk_image_probe(f->img, true, &a, &fd, NULL), VMK_OK);
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(a.size, IMG_SIZE);
    assert_int_equal(a.block_size, 512);
    assert_false(a.is_blkdev);
    char other[192];
    snprintf(other, sizeof(other), "%s/other.img", f->dir);
    int ofd = open(other, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_int_equal(ftruncate(ofd, 4096), 0);
    close(ofd);
    assert_int_equal(disk_image_probe(other, false, &b, &fd2, NULL), VMK_OK);
    assert_false(disk_image_same(&a, &b));
    close(fd2);
    assert_int_equal(disk_image_probe(f->img, false, &b, &fd2, NULL), VMK_OK);
    assert_true(disk_image_same(&a, &b));
    close(fd2);
    close(fd);
    unlink(other);
    vmk_error *err = NULL;
    assert_int_equal(disk_image_probe("", false, &a, &fd, &err), VMK_ERR_INVALID_CONFIG);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(vmk_error_message(err), "no path"));
    vmk_error_free(err);
}

static void expect_lock_refused(const char *path, bool ro)
{
    struct disk_image *img = NULL;
    vmk_error *err = NULL;
    assert_int_equal(
        disk_image_open(path, ro, VMK_DISK_CACHING_AUTOMATIC, VMK_DISK_SYNC_FULL, &img, &err),
        VMK_ERR_IO);
    assert_null(img);
    const char *msg = vmk_error_message(err);
    if (!strstr(msg, path) || !strstr(msg, ro ? "shared (read) lock" : "exclusive (write) lock") ||
        !strstr(msg, "another program holds a lock"))
        fail_msg("unexpected message: %s", msg);
    assert_int_equal(vmk_error_errno(err) == EAGAIN || vmk_error_errno(err) == EACCES, 1);
    vmk_error_free(err);
}

/* A writer holds the image alone; readers share it; the lock goes with the image. */
static void test_lock(void **state)
{
    struct fixture *f = *state;
    struct disk_image *w = open_ok(f->img, false, VMK_DISK_CACHING_AUTOMATIC, VMK_DISK_SYNC_FULL);
    expect_lock_refused(f->img, false);
    expect_lock_refused(f->img, true);
    disk_image_close(w);
    struct disk_image *r1 = open_ok(f->img, true, VMK_DISK_CACHING_AUTOMATIC, VMK_DISK_SYNC_FULL);
    struct disk_image *r2 = open_ok(f->img, true, VMK_DISK_CACHING_UNCACHED, VMK_DISK_SYNC_FULL);
    expect_lock_refused(f->img, false);
    disk_image_close(r1);
    expect_lock_refused(f->img, false);
    disk_image_close(r2);
    w = open_ok(f->img, false, VMK_DISK_CACHING_UNCACHED, VMK_DISK_SYNC_FULL);
    disk_image_close(w);
}

/* Another program's byte-range lock (QEMU locks single bytes of its images) keeps a writer
 * out: the whole-image lock conflicts with any of them. */
static void test_lock_against_another_program(void **state)
{
    struct fixture *f = *state;
    int fd = open(f->img, O_RDONLY);
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };
    assert_int_equal(fcntl(fd, F_OFD_SETLK, &fl), 0);
    expect_lock_refused(f->img, false);
    struct disk_image *r = open_ok(f->img, true, VMK_DISK_CACHING_AUTOMATIC, VMK_DISK_SYNC_FULL);
    disk_image_close(r);
    close(fd);
    r = open_ok(f->img, false, VMK_DISK_CACHING_AUTOMATIC, VMK_DISK_SYNC_FULL);
    disk_image_close(r);
}

/* The image is opened once: an uncached image reopens that file through /proc/self/fd, so a
 * file put at the path after the open is never written. */
static void test_opened_once(void **state)
{
    struct fixture *f = *state;
    for (unsigned uncached = 0; uncached < 2; uncached++) {
        struct disk_image *img =
            open_ok(f->img, false, uncached ? VMK_DISK_CACHING_UNCACHED : VMK_DISK_CACHING_CACHED,
                    VMK_DISK_SYNC_FULL);
        char moved[192];
        snprintf(moved, sizeof(moved), "%s/moved.img", f->dir);
        assert_int_equal(rename(f->img, moved), 0);
        int fd = open(f->img, O_RDWR | O_CREAT | O_TRUNC, 0644);
        assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
        close(fd);
        const struct block_backend *be = disk_image_backend(img);
        uint8_t *buf = aligned_alloc(4096, 4096);
        pattern(buf, 4096, 40 + uncached);
        struct iovec v = { buf, 4096 };
        assert_int_equal(be->write(be->ctx, 8192, &v, 1), 0);
        assert_int_equal(be->flush(be->ctx), 0);
        uint8_t got[4096], zero[4096] = { 0 };
        read_file(moved, 8192, got, sizeof(got));
        assert_memory_equal(got, buf, sizeof(got));
        read_file(f->img, 8192, got, sizeof(got));
        assert_memory_equal(got, zero, sizeof(got));
        disk_image_close(img);
        free(buf);
        assert_int_equal(rename(moved, f->img), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_errors_name_the_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_geometry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uncached_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_deallocates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_shrank, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_against_another_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opened_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
