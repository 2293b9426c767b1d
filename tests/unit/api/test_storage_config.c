/* Storage configuration: disk image attachments, virtio block devices, and what
 * vmk_config_validate says about them, naming the device and the path. */
#include "api/config_internal.h"
#include "vmkit.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_files.h"

struct fixture {
    char dir[64];
    char kernel[128];
    char disk[128];  /* 1 MiB */
    char odd[128];   /* 1000 bytes */
    char other[128]; /* 4 KiB */
};

static void make_sized(const char *path, off_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/var/tmp/vmkit-test-storage-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->kernel, sizeof(f->kernel), "%s/kernel.elf", f->dir);
    snprintf(f->disk, sizeof(f->disk), "%s/disk.img", f->dir);
    snprintf(f->odd, sizeof(f->odd), "%s/odd.img", f->dir);
    snprintf(f->other, sizeof(f->other), "%s/other.img", f->dir);
    tf_write_tiny_elf(f->kernel);
    make_sized(f->disk, 1 << 20);
    make_sized(f->odd, 1000);
    make_sized(f->other, 4096);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int fd = open(f->other, O_RDONLY);
    int flags = 0;
    if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_IMMUTABLE_FL)) {
        flags &= ~FS_IMMUTABLE_FL;
        ioctl(fd, FS_IOC_SETFLAGS, &flags); /* a failed test_not_writable left it set */
    }
    if (fd >= 0)
        close(fd);
    unlink(f->kernel);
    unlink(f->disk);
    unlink(f->odd);
    unlink(f->other);
    rmdir(f->dir);
    free(f);
    return 0;
}

static vmk_config *valid_config(const struct fixture *f)
{
    return tf_valid_config(f->kernel);
}

static vmk_storage_device *blk(const char *path, bool ro)
{
    vmk_storage_attachment *att = vmk_disk_image_attachment_new(path, ro);
    assert_non_null(att);
    vmk_storage_device *dev = vmk_virtio_block_device_new(att);
    assert_non_null(dev);
    return dev;
}

static void add(vmk_config *cfg, const char *path, bool ro)
{
    assert_int_equal(vmk_config_add_storage_device(cfg, blk(path, ro)), VMK_OK);
}

static void expect_valid(const vmk_config *cfg)
{
    vmk_error *err = NULL;
    vmk_result r = vmk_config_validate(cfg, &err);
    if (r != VMK_OK)
        fail_msg("unexpected: %s", vmk_error_message(err));
    assert_null(err);
}

static void test_attachment_defaults_and_copies(void **state)
{
    struct fixture *f = *state;
    char path[128];
    strcpy(path, f->disk);
    vmk_storage_attachment *att = vmk_disk_image_attachment_new(path, true);
    assert_non_null(att);
    path[0] = 'X';
    assert_string_equal(vmk_disk_image_attachment_get_path(att), f->disk);
    assert_true(vmk_disk_image_attachment_is_read_only(att));
    assert_int_equal(vmk_disk_image_attachment_get_caching_mode(att), VMK_DISK_CACHING_AUTOMATIC);
    assert_int_equal(vmk_disk_image_attachment_get_synchronization_mode(att), VMK_DISK_SYNC_FULL);
    vmk_storage_attachment_free(att);
    vmk_storage_attachment_free(NULL);
}

/* Setters store, validation judges: a missing path is the config's problem, named. */
static void test_attachment_needs_a_path(void **state)
{
    struct fixture *f = *state;
    const char *bad[] = { NULL, "" };
    for (unsigned i = 0; i < 2; i++) {
        vmk_config *cfg = valid_config(f);
        add(cfg, bad[i], false);
        EXPECT_INVALID(cfg, "storage device 1: disk image: no path");
        vmk_config_free(cfg);
    }
}

static void test_mode_setters(void **state)
{
    struct fixture *f = *state;
    vmk_storage_attachment *att = vmk_disk_image_attachment_new(f->disk, false);
    assert_int_equal(vmk_storage_attachment_get_kind(att), VMK_STORAGE_ATTACHMENT_DISK_IMAGE);
    assert_int_equal(vmk_disk_image_attachment_set_caching_mode(att, VMK_DISK_CACHING_UNCACHED),
                     VMK_OK);
    assert_int_equal(vmk_disk_image_attachment_get_caching_mode(att), VMK_DISK_CACHING_UNCACHED);
    assert_int_equal(vmk_disk_image_attachment_set_synchronization_mode(att, VMK_DISK_SYNC_NONE),
                     VMK_OK);
    assert_int_equal(vmk_disk_image_attachment_get_synchronization_mode(att), VMK_DISK_SYNC_NONE);
    assert_int_equal(vmk_disk_image_attachment_set_caching_mode(NULL, VMK_DISK_CACHING_CACHED),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_disk_image_attachment_set_synchronization_mode(NULL, VMK_DISK_SYNC_FULL),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_null(vmk_disk_image_attachment_get_path(NULL));
    /* A value outside the enum is stored; validation names it. */
    assert_int_equal(vmk_disk_image_attachment_set_caching_mode(att, (vmk_disk_caching_mode)42),
                     VMK_OK);
    assert_int_equal(
        vmk_disk_image_attachment_set_synchronization_mode(att, (vmk_disk_sync_mode)-1), VMK_OK);
    vmk_config *cfg = valid_config(f);
    vmk_storage_device *dev = vmk_virtio_block_device_new(att);
    assert_int_equal(vmk_storage_device_get_kind(dev), VMK_STORAGE_DEVICE_VIRTIO_BLOCK);
    assert_int_equal(vmk_config_add_storage_device(cfg, dev), VMK_OK);
    EXPECT_INVALID(cfg, "storage device 1: unknown caching mode 42",
                   "storage device 1: unknown synchronization mode -1");
    vmk_config_free(cfg);
}

static void test_block_device_identifier(void **state)
{
    struct fixture *f = *state;
    vmk_storage_device *dev = blk(f->disk, false);
    assert_string_equal(vmk_disk_image_attachment_get_path(vmk_storage_device_get_attachment(dev)),
                        f->disk);
    assert_null(vmk_virtio_block_device_get_identifier(dev));
    assert_int_equal(vmk_virtio_block_device_max_identifier_length(), 20);
    char id[32] = "12345678901234567890"; /* 20 bytes: the most */
    assert_int_equal(vmk_virtio_block_device_set_identifier(dev, id), VMK_OK);
    id[0] = 'X';
    assert_string_equal(vmk_virtio_block_device_get_identifier(dev), "12345678901234567890");
    assert_int_equal(vmk_virtio_block_device_set_identifier(dev, ""), VMK_OK);
    assert_null(vmk_virtio_block_device_get_identifier(dev));
    assert_int_equal(vmk_virtio_block_device_set_identifier(dev, "x y~"), VMK_OK);
    assert_int_equal(vmk_virtio_block_device_set_identifier(dev, NULL), VMK_OK);
    assert_null(vmk_virtio_block_device_get_identifier(dev));
    assert_int_equal(vmk_virtio_block_device_set_identifier(NULL, "a"), VMK_ERR_INVALID_ARGUMENT);
    vmk_storage_device_free(dev);
    vmk_storage_device_free(NULL);
    assert_null(vmk_virtio_block_device_new(NULL));

    /* Stored as given; validation judges length and bytes, naming the device. */
    static const struct {
        const char *id;
        const char *problem;
    } bad[] = {
        { "123456789012345678901", "storage device 1: identifier \"123456789012345678901\" is 21 "
                                   "bytes, at most 20 allowed" },
        { "disk\tone", "storage device 1: identifier byte 4 (0x09) is not printable ASCII" },
        { "caf\xc3\xa9", "storage device 1: identifier byte 3 (0xc3) is not printable ASCII" },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vmk_config *cfg = valid_config(f);
        dev = blk(f->disk, false);
        assert_int_equal(vmk_virtio_block_device_set_identifier(dev, bad[i].id), VMK_OK);
        assert_string_equal(vmk_virtio_block_device_get_identifier(dev), bad[i].id);
        assert_int_equal(vmk_config_add_storage_device(cfg, dev), VMK_OK);
        EXPECT_INVALID(cfg, bad[i].problem);
        vmk_config_free(cfg);
    }
}

static void test_block_device_queues(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_storage_device *dev = blk(f->disk, false);
    assert_int_equal(vmk_virtio_block_device_get_queue_count(dev), 0);
    assert_int_equal(vmk_virtio_block_device_set_queue_count(dev, 16), VMK_OK);
    assert_int_equal(vmk_virtio_block_device_get_queue_count(dev), 16);
    assert_int_equal(vmk_config_add_storage_device(cfg, dev), VMK_OK);
    expect_valid(cfg);
    dev = blk(f->other, false);
    assert_int_equal(vmk_virtio_block_device_set_queue_count(dev, 17), VMK_OK);
    assert_int_equal(vmk_config_add_storage_device(cfg, dev), VMK_OK);
    EXPECT_INVALID(cfg, "storage device 2: 17 queues, at most 16 allowed");
    assert_int_equal(vmk_virtio_block_device_set_queue_count(NULL, 1), VMK_ERR_INVALID_ARGUMENT);
    vmk_config_free(cfg);
}

/* Ownership passes on every path (ASan reports a leak otherwise). */
static void test_add_storage_devices(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    assert_int_equal(vmk_config_storage_device_count(cfg), 0);
    for (unsigned i = 0; i < 16; i++)
        add(cfg, f->disk, true);
    assert_int_equal(vmk_config_storage_device_count(cfg), 16);
    assert_int_equal(vmk_config_max_storage_device_count(), 16);
    assert_int_equal(vmk_config_add_storage_device(NULL, blk(f->disk, true)),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_storage_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_storage_device_count(NULL), 0);
    expect_valid(cfg); /* sixteen readers of one image are fine */
    for (unsigned i = 0; i < 16; i++) {
        const vmk_storage_device *d = vmk_config_get_storage_device(cfg, i);
        assert_non_null(d);
        assert_string_equal(
            vmk_disk_image_attachment_get_path(vmk_storage_device_get_attachment(d)), f->disk);
    }
    assert_null(vmk_config_get_storage_device(cfg, 16));
    assert_null(vmk_config_get_storage_device(NULL, 0));
    /* A seventeenth is stored; validation counts. */
    assert_int_equal(vmk_config_add_storage_device(cfg, blk(f->disk, true)), VMK_OK);
    assert_int_equal(vmk_config_storage_device_count(cfg), 17);
    EXPECT_INVALID(cfg, "17 storage devices, at most 16 allowed");
    vmk_config_free(cfg);
}

static void test_valid_disks(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    add(cfg, f->disk, false);
    add(cfg, f->other, true);
    expect_valid(cfg);
    vmk_config_free(cfg);
}

/* USB mass storage: a storage device of its own kind, with the attachment's checks, no
 * virtio-only settings, copied with the config, and at most four of them. */
static void test_usb_mass_storage(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_storage_device *d =
        vmk_usb_mass_storage_device_new(vmk_disk_image_attachment_new(f->disk, true));
    assert_non_null(d);
    assert_int_equal(vmk_storage_device_get_kind(d), VMK_STORAGE_DEVICE_USB_MASS_STORAGE);
    assert_int_equal(vmk_virtio_block_device_set_identifier(d, "x"), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_virtio_block_device_set_queue_count(d, 2), VMK_ERR_INVALID_ARGUMENT);
    assert_null(vmk_usb_mass_storage_device_new(NULL));
    assert_int_equal(vmk_config_add_storage_device(cfg, d), VMK_OK);
    add(cfg, f->other, false); /* and a virtio disk beside it */
    expect_valid(cfg);
    tf_expect_vm_copies(cfg); /* and frees cfg */
    /* A missing image is named like any disk's. */
    cfg = valid_config(f);
    add(cfg, f->disk, true);
    add(cfg, f->other, true);
    assert_int_equal(vmk_config_add_storage_device(
                         cfg, vmk_usb_mass_storage_device_new(
                                  vmk_disk_image_attachment_new("/no/such.iso", true))),
                     VMK_OK);
    EXPECT_INVALID(cfg, "storage device 3: disk image /no/such.iso");
    vmk_config_free(cfg);

    cfg = valid_config(f);
    assert_int_equal(vmk_config_max_usb_storage_device_count(), 4);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(
            vmk_config_add_storage_device(
                cfg, vmk_usb_mass_storage_device_new(vmk_disk_image_attachment_new(f->disk, true))),
            VMK_OK);
    EXPECT_INVALID(cfg, "5 USB mass-storage devices, at most 4 allowed");
    vmk_config_free(cfg);
}

static void test_missing_image(void **state)
{
    struct fixture *f = *state;
    char path[192];
    snprintf(path, sizeof(path), "%s/nope.img", f->dir);
    vmk_config *cfg = valid_config(f);
    add(cfg, f->disk, false);
    add(cfg, path, true);
    EXPECT_INVALID(cfg, "storage device 2: disk image", path, "does not exist");
    vmk_config_free(cfg);
}

static void test_not_a_file_or_block_device(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    add(cfg, f->dir, true);
    add(cfg, "/dev/null", true);
    EXPECT_INVALID(cfg, "storage device 1: disk image", f->dir,
                   "not a regular file or block device", "storage device 2: disk image /dev/null");
    vmk_config_free(cfg);
}

static void test_size_not_sector_multiple(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    add(cfg, f->odd, true);
    EXPECT_INVALID(cfg, "storage device 1: disk image", f->odd,
                   "size 1000 bytes is not a multiple of 512");
    vmk_config_free(cfg);
}

/* A file this process cannot write: chmod for a normal user; root needs the immutable
 * flag. */
static void test_not_writable(void **state)
{
    struct fixture *f = *state;
    bool immutable = false;
    if (geteuid() == 0) {
        int fd = open(f->other, O_RDONLY);
        int flags = 0;
        if (fd < 0 || ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0 ||
            (flags |= FS_IMMUTABLE_FL, ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0)) {
            if (fd >= 0)
                close(fd);
            skip(); /* root without the immutable flag: nothing is unwritable */
        }
        close(fd);
        immutable = true;
    } else {
        assert_int_equal(chmod(f->other, 0444), 0);
    }
    vmk_config *cfg = valid_config(f);
    add(cfg, f->other, false);
    EXPECT_INVALID(cfg, "storage device 1: disk image", f->other, "not writable",
                   "attach it read-only");
    vmk_config_free(cfg);
    cfg = valid_config(f);
    add(cfg, f->other, true);
    expect_valid(cfg);
    vmk_config_free(cfg);
    if (immutable) {
        int fd = open(f->other, O_RDONLY);
        int flags = 0;
        assert_int_equal(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
        flags &= ~FS_IMMUTABLE_FL;
        assert_int_equal(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
        close(fd);
    }
}

static void test_one_image_twice(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    add(cfg, f->disk, true);
    add(cfg, f->other, false);
    add(cfg, f->disk, false);
    EXPECT_INVALID(cfg, "storage device 3: disk image", f->disk,
                   "already used by storage device 1");
    vmk_config_free(cfg);
}

static void test_every_problem_at_once(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = vmk_config_new();
    assert_int_equal(vmk_config_set_cpu_count(cfg, 0), VMK_OK);
    add(cfg, f->odd, true);
    add(cfg, "/nonexistent/disk.img", false);
    EXPECT_INVALID(cfg, "cpu count", "no boot loader", "storage device 1", "multiple of 512",
                   "storage device 2", "/nonexistent/disk.img");
    vmk_config_free(cfg);
}

/* The copy a VM keeps is deep: it outlives the caller's objects unchanged. */
static void test_config_copy_is_deep(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_storage_device *dev = blk(f->disk, true);
    vmk_storage_attachment *att = (vmk_storage_attachment *)vmk_storage_device_get_attachment(dev);
    assert_int_equal(vmk_disk_image_attachment_set_caching_mode(att, VMK_DISK_CACHING_UNCACHED),
                     VMK_OK);
    assert_int_equal(vmk_disk_image_attachment_set_synchronization_mode(att, VMK_DISK_SYNC_FSYNC),
                     VMK_OK);
    assert_int_equal(vmk_virtio_block_device_set_identifier(dev, "serial-1"), VMK_OK);
    assert_int_equal(vmk_config_add_storage_device(cfg, dev), VMK_OK);
    vmk_config *copy = config_copy(cfg);
    assert_non_null(copy);
    vmk_config_free(cfg);
    assert_int_equal(vmk_config_storage_device_count(copy), 1);
    const vmk_storage_device *c = vmk_config_get_storage_device(copy, 0);
    const vmk_storage_attachment *ca = vmk_storage_device_get_attachment(c);
    assert_string_equal(vmk_disk_image_attachment_get_path(ca), f->disk);
    assert_true(vmk_disk_image_attachment_is_read_only(ca));
    assert_int_equal(vmk_disk_image_attachment_get_caching_mode(ca), VMK_DISK_CACHING_UNCACHED);
    assert_int_equal(vmk_disk_image_attachment_get_synchronization_mode(ca), VMK_DISK_SYNC_FSYNC);
    assert_string_equal(vmk_virtio_block_device_get_identifier(c), "serial-1");
    expect_valid(copy);
    vmk_config_free(copy);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_attachment_defaults_and_copies),
        T(test_attachment_needs_a_path),
        T(test_mode_setters),
        T(test_block_device_identifier),
        T(test_block_device_queues),
        T(test_add_storage_devices),
        T(test_valid_disks),
        T(test_usb_mass_storage),
        T(test_missing_image),
        T(test_not_a_file_or_block_device),
        T(test_size_not_sector_multiple),
        T(test_not_writable),
        T(test_one_image_twice),
        T(test_every_problem_at_once),
        T(test_config_copy_is_deep),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
