/* Configuration objects and vmk_config_validate: every problem it can find before
 * start is reported, with the path or value that caused it. */
#include "vmkit.h"

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

#include "fd_count.h"
#include "test_files.h"

struct fixture {
    char dir[64];
    char kernel[128];
    char initrd[128];
    char junk[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/vmkit-test-config-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->kernel, sizeof(f->kernel), "%s/kernel.elf", f->dir);
    snprintf(f->initrd, sizeof(f->initrd), "%s/initrd.img", f->dir);
    snprintf(f->junk, sizeof(f->junk), "%s/junk.bin", f->dir);
    tf_write_tiny_elf(f->kernel);
    tf_write_file(f->initrd, "initrd-bytes", 12);
    static const uint8_t gzip_magic[64] = { 0x1f, 0x8b, 0x08 };
    tf_write_file(f->junk, gzip_magic, sizeof(gzip_magic));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->kernel);
    unlink(f->initrd);
    unlink(f->junk);
    rmdir(f->dir);
    free(f);
    return 0;
}

static vmk_config *valid_config(const struct fixture *f)
{
    vmk_config *cfg = vmk_config_new();
    assert_non_null(cfg);
    vmk_boot_loader *bl = vmk_linux_boot_loader_new(f->kernel);
    assert_int_equal(vmk_linux_boot_loader_set_initrd(bl, f->initrd), VMK_OK);
    assert_int_equal(vmk_linux_boot_loader_set_command_line(bl, "console=ttyS0"), VMK_OK);
    assert_int_equal(vmk_config_set_boot_loader(cfg, bl), VMK_OK);
    assert_int_equal(vmk_config_set_memory_size(cfg, 64ULL << 20), VMK_OK);
    return cfg;
}

static void test_defaults_and_limits(void **state)
{
    vmk_config *cfg = vmk_config_new();
    assert_int_equal(vmk_config_get_cpu_count(cfg), 1);
    assert_int_equal(vmk_config_get_memory_size(cfg), 512ULL << 20);
    assert_int_equal(vmk_config_min_cpu_count(), 1);
    assert_true(vmk_config_max_cpu_count() >= 64);
    assert_true(vmk_config_min_memory_size() <= (16ULL << 20));
    assert_true(vmk_config_max_memory_size() >= (64ULL << 30));
    assert_null(vmk_config_get_boot_loader(cfg));
    vmk_config_free(cfg);
    vmk_config_free(NULL);
    vmk_boot_loader_free(NULL);
    vmk_serial_attachment_free(NULL);
    vmk_error_free(NULL);
}

static void test_valid_config_passes(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_error *err = NULL;
    assert_int_equal(vmk_config_validate(cfg, &err), VMK_OK);
    assert_null(err);
    vmk_config_free(cfg);
}

static void test_no_boot_loader(void **state)
{
    vmk_config *cfg = vmk_config_new();
    EXPECT_INVALID(cfg, "no boot loader");
    vmk_config_free(cfg);
}

static void test_cpu_count_out_of_range(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_config_set_cpu_count(cfg, 0);
    EXPECT_INVALID(cfg, "cpu count 0");
    vmk_config_set_cpu_count(cfg, vmk_config_max_cpu_count() + 1);
    EXPECT_INVALID(cfg, "cpu count", "out of range");
    vmk_config_set_cpu_count(cfg, vmk_config_max_cpu_count());
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    vmk_config_free(cfg);
}

static void test_memory_out_of_range(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_config_set_memory_size(cfg, vmk_config_min_memory_size() - (1 << 20));
    EXPECT_INVALID(cfg, "memory size", "out of range");
    vmk_config_set_memory_size(cfg, vmk_config_max_memory_size() + (1ULL << 20));
    EXPECT_INVALID(cfg, "memory size", "out of range");
    vmk_config_set_memory_size(cfg, (64ULL << 20) + 4096);
    EXPECT_INVALID(cfg, "not a multiple of 1 MiB");
    vmk_config_free(cfg);
}

static void test_missing_kernel_names_path(void **state)
{
    vmk_config *cfg = vmk_config_new();
    vmk_config_set_boot_loader(cfg, vmk_linux_boot_loader_new("/nonexistent/vmlinuz"));
    EXPECT_INVALID(cfg, "kernel /nonexistent/vmlinuz", "No such file");
    vmk_config_set_boot_loader(cfg, vmk_linux_boot_loader_new(NULL));
    EXPECT_INVALID(cfg, "no kernel path");
    vmk_config_set_boot_loader(cfg, vmk_linux_boot_loader_new("/tmp"));
    EXPECT_INVALID(cfg, "kernel /tmp", "not a regular file");
    vmk_config_free(cfg);
}

static void test_kernel_of_wrong_format(void **state)
{
    const struct fixture *f = *state;
    vmk_config *cfg = vmk_config_new();
    vmk_config_set_boot_loader(cfg, vmk_linux_boot_loader_new(f->junk));
    EXPECT_INVALID(cfg, f->junk, "gzip");
    vmk_config_free(cfg);
}

static void test_missing_initrd_names_path(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_boot_loader *bl = vmk_linux_boot_loader_new(((struct fixture *)*state)->kernel);
    vmk_linux_boot_loader_set_initrd(bl, "/nonexistent/initrd.img");
    vmk_config_set_boot_loader(cfg, bl);
    EXPECT_INVALID(cfg, "initrd /nonexistent/initrd.img", "cannot open");
    vmk_config_free(cfg);
}

static void test_initrd_too_large(void **state)
{
    const struct fixture *f = *state;
    char big[160];
    snprintf(big, sizeof(big), "%s/big.img", f->dir);
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 40LL << 20), 0); /* sparse: costs no disk */
    close(fd);
    vmk_config *cfg = valid_config(f);
    vmk_boot_loader *bl = vmk_linux_boot_loader_new(f->kernel);
    vmk_linux_boot_loader_set_initrd(bl, big);
    vmk_config_set_boot_loader(cfg, bl);
    vmk_config_set_memory_size(cfg, 32ULL << 20);
    EXPECT_INVALID(cfg, "initrd", big, "do not fit");
    vmk_config_set_memory_size(cfg, 128ULL << 20);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    vmk_config_free(cfg);
    unlink(big);
}

static void test_command_line_too_long(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_boot_loader *bl = vmk_linux_boot_loader_new(((struct fixture *)*state)->kernel);
    char *line = malloc(70000);
    memset(line, 'a', 69999);
    line[69999] = 0;
    vmk_linux_boot_loader_set_command_line(bl, line);
    free(line);
    vmk_config_set_boot_loader(cfg, bl);
    EXPECT_INVALID(cfg, "command line", "69999 bytes");
    vmk_config_free(cfg);
}

static void test_every_problem_reported_at_once(void **state)
{
    vmk_config *cfg = vmk_config_new();
    vmk_config_set_cpu_count(cfg, 0);
    vmk_config_set_memory_size(cfg, 0);
    vmk_boot_loader *bl = vmk_linux_boot_loader_new("/nonexistent/k");
    vmk_linux_boot_loader_set_initrd(bl, "/nonexistent/i");
    vmk_config_set_boot_loader(cfg, bl);
    EXPECT_INVALID(cfg, "cpu count", "memory size", "/nonexistent/k", "/nonexistent/i");
    vmk_config_free(cfg);
}

static void test_serial_ports(void **state)
{
    vmk_config *cfg = valid_config(*state);
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            vmk_config_add_serial_port(cfg, vmk_file_serial_attachment_new("/tmp/x", false)),
            VMK_OK);
    assert_int_equal(vmk_config_serial_port_count(cfg), 4);
    assert_int_equal(vmk_config_max_serial_port_count(), 4);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    /* A fifth is stored; validation counts (and the config frees it: no leak under ASan). */
    assert_int_equal(vmk_config_add_serial_port(cfg, vmk_fd_serial_attachment_new(0, 1)), VMK_OK);
    assert_int_equal(vmk_config_serial_port_count(cfg), 5);
    EXPECT_INVALID(cfg, "5 serial ports, at most 4 allowed");
    assert_int_equal(vmk_config_add_serial_port(NULL, vmk_fd_serial_attachment_new(0, 1)),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_serial_port(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    vmk_config_free(cfg);

    cfg = valid_config(*state);
    vmk_config_add_serial_port(cfg, vmk_fd_serial_attachment_new(987, 988));
    EXPECT_INVALID(cfg, "serial port 1", "read fd 987 is not open");
    vmk_config_free(cfg);

    cfg = valid_config(*state);
    vmk_config_add_serial_port(cfg, vmk_file_serial_attachment_new(NULL, false));
    EXPECT_INVALID(cfg, "serial port 1", "without a path");
    vmk_config_free(cfg);
}

/* A pty attachment is inert data: the pty is made when a VM starts (test_vm_tiny). */
static void test_pty_serial_attachment(void **state)
{
    int fds_before = fd_count();
    vmk_config *cfg = valid_config(*state);
    assert_int_equal(vmk_config_add_serial_port(cfg, vmk_pty_serial_attachment_new()), VMK_OK);
    vmk_console_device *dev = vmk_virtio_console_device_new();
    assert_int_equal(
        vmk_virtio_console_device_add_port(dev, "p", false, vmk_pty_serial_attachment_new()),
        VMK_OK);
    assert_int_equal(vmk_config_add_console_device(cfg, dev), VMK_OK);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    assert_int_equal(fd_count(), fds_before);

    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    assert_non_null(vm);
    vmk_config_free(cfg);
    /* Not started: no pty yet. */
    assert_null(vmk_vm_copy_serial_port_pty_path(vm, 0));
    assert_null(vmk_vm_copy_console_port_pty_path(vm, 0));
    assert_null(vmk_vm_copy_serial_port_pty_path(vm, 1000));
    assert_null(vmk_vm_copy_serial_port_pty_path(NULL, 0));
    vmk_vm_free(vm);
}

static void test_socket_serial_attachment(void **state)
{
    struct fixture *f = *state;
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/console.sock", f->dir);
    vmk_config *cfg = valid_config(f);
    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(sock);
    assert_int_equal(vmk_config_add_serial_port(cfg, att), VMK_OK);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK); /* nothing made before start */
    vmk_config_free(cfg);

    char long_path[160] = "/tmp/";
    memset(long_path + 5, 'y', 110);
    cfg = valid_config(f);
    vmk_config_add_serial_port(cfg, vmk_socket_serial_attachment_new(NULL));
    vmk_config_add_serial_port(cfg, vmk_socket_serial_attachment_new(""));
    vmk_config_add_serial_port(cfg, vmk_socket_serial_attachment_new(long_path));
    vmk_config_add_serial_port(cfg, vmk_socket_serial_attachment_new(f->initrd));
    EXPECT_INVALID(cfg, "serial port 1: socket attachment without a path",
                   "serial port 2: socket attachment without a path", "serial port 3", long_path,
                   "115 bytes, at most 107", "serial port 4", f->initrd, "not a socket");
    vmk_config_free(cfg);
    /* The file at the path is left alone. */
    struct stat st;
    assert_int_equal(stat(f->initrd, &st), 0);
    assert_int_equal(st.st_size, 12);

    /* Two ports cannot listen on one path. */
    cfg = valid_config(f);
    vmk_config_add_serial_port(cfg, vmk_socket_serial_attachment_new(sock));
    vmk_console_device *dev = vmk_virtio_console_device_new();
    vmk_virtio_console_device_add_port(dev, NULL, false, vmk_socket_serial_attachment_new("/x"));
    vmk_virtio_console_device_add_port(dev, NULL, false, vmk_socket_serial_attachment_new(sock));
    vmk_config_add_console_device(cfg, dev);
    EXPECT_INVALID(cfg, "console port 2: socket path", sock, "already used by serial port 1");
    vmk_config_free(cfg);
}

static void test_entropy_device(void **state)
{
    vmk_config *cfg = valid_config(*state);
    assert_int_equal(vmk_config_entropy_device_count(cfg), 0);
    vmk_entropy_device *dev = vmk_virtio_entropy_device_new();
    assert_non_null(dev);
    assert_int_equal(vmk_config_add_entropy_device(cfg, dev), VMK_OK);
    assert_int_equal(vmk_config_entropy_device_count(cfg), 1);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    assert_int_equal(vmk_entropy_device_get_kind(vmk_config_get_entropy_device(cfg, 0)),
                     VMK_ENTROPY_DEVICE_VIRTIO);
    assert_int_equal(vmk_virtio_entropy_device_get_rate(vmk_config_get_entropy_device(cfg, 0)),
                     1u << 20);
    /* A second is stored; validation counts. */
    assert_int_equal(vmk_config_add_entropy_device(cfg, vmk_virtio_entropy_device_new()), VMK_OK);
    assert_int_equal(vmk_config_entropy_device_count(cfg), 2);
    EXPECT_INVALID(cfg, "2 entropy devices, at most 1 allowed");
    vmk_config_free(cfg); /* frees the devices */

    /* The rate: stored as given, judged by validation. */
    cfg = valid_config(*state);
    dev = vmk_virtio_entropy_device_new();
    assert_int_equal(vmk_virtio_entropy_device_set_rate(dev, 0), VMK_OK);
    assert_int_equal(vmk_config_add_entropy_device(cfg, dev), VMK_OK);
    EXPECT_INVALID(cfg, "entropy device 1: rate 0 bytes/s is out of range [1, 4294967296]");
    assert_int_equal(vmk_virtio_entropy_device_set_rate(dev, vmk_virtio_entropy_device_max_rate()),
                     VMK_OK);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    assert_int_equal(vmk_virtio_entropy_device_set_rate(NULL, 1), VMK_ERR_INVALID_ARGUMENT);
    vmk_config_free(cfg);

    /* Bad arguments: a NULL config frees the device; a NULL device is refused. */
    assert_int_equal(vmk_config_add_entropy_device(NULL, vmk_virtio_entropy_device_new()),
                     VMK_ERR_INVALID_ARGUMENT);
    cfg = vmk_config_new();
    assert_int_equal(vmk_config_add_entropy_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_entropy_device_count(cfg), 0);
    assert_int_equal(vmk_config_entropy_device_count(NULL), 0);
    vmk_config_free(cfg);
    vmk_entropy_device_free(NULL);
}

static void test_memory_balloon_device(void **state)
{
    vmk_config *cfg = valid_config(*state);
    assert_int_equal(vmk_config_max_memory_balloon_device_count(), 1);
    assert_int_equal(vmk_config_memory_balloon_device_count(cfg), 0);
    vmk_memory_balloon_device *dev = vmk_virtio_traditional_memory_balloon_device_new();
    assert_non_null(dev);
    assert_int_equal(vmk_memory_balloon_device_get_kind(dev),
                     VMK_MEMORY_BALLOON_DEVICE_VIRTIO_TRADITIONAL);
    /* Off unless asked for. */
    assert_false(vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(dev));
    assert_false(vmk_virtio_traditional_memory_balloon_device_get_free_page_reporting(dev));
    assert_int_equal(vmk_virtio_traditional_memory_balloon_device_set_deflate_on_oom(dev, true),
                     VMK_OK);
    assert_int_equal(
        vmk_virtio_traditional_memory_balloon_device_set_free_page_reporting(dev, true), VMK_OK);
    assert_int_equal(vmk_config_add_memory_balloon_device(cfg, dev), VMK_OK);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    const vmk_memory_balloon_device *got = vmk_config_get_memory_balloon_device(cfg, 0);
    assert_true(vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(got));
    assert_true(vmk_virtio_traditional_memory_balloon_device_get_free_page_reporting(got));
    assert_null(vmk_config_get_memory_balloon_device(cfg, 1));
    /* A second is stored; validation counts. */
    assert_int_equal(vmk_config_add_memory_balloon_device(
                         cfg, vmk_virtio_traditional_memory_balloon_device_new()),
                     VMK_OK);
    EXPECT_INVALID(cfg, "2 memory balloon devices, at most 1 allowed");
    vmk_config_free(cfg);

    /* Bad arguments: a NULL config frees the device; a NULL device is refused. */
    assert_int_equal(vmk_config_add_memory_balloon_device(
                         NULL, vmk_virtio_traditional_memory_balloon_device_new()),
                     VMK_ERR_INVALID_ARGUMENT);
    cfg = vmk_config_new();
    assert_int_equal(vmk_config_add_memory_balloon_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_memory_balloon_device_count(NULL), 0);
    assert_int_equal(vmk_virtio_traditional_memory_balloon_device_set_deflate_on_oom(NULL, true),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        vmk_virtio_traditional_memory_balloon_device_set_free_page_reporting(NULL, true),
        VMK_ERR_INVALID_ARGUMENT);
    assert_false(vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(NULL));
    vmk_config_free(cfg);
    vmk_memory_balloon_device_free(NULL);
}

static void test_socket_device(void **state)
{
    vmk_config *cfg = valid_config(*state);
    assert_int_equal(vmk_config_max_socket_device_count(), 1);
    vmk_socket_device *dev = vmk_virtio_socket_device_new();
    assert_non_null(dev);
    assert_int_equal(vmk_socket_device_get_kind(dev), VMK_SOCKET_DEVICE_VIRTIO);
    assert_int_equal(vmk_virtio_socket_device_get_guest_cid(dev), 3);
    assert_null(vmk_virtio_socket_device_get_unix_socket_path(dev));
    assert_int_equal(vmk_virtio_socket_device_set_unix_socket_path(dev, "/run/v.sock"), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(dev, 2222, "/run/ssh.sock", true), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(dev, 2222, "/run/app.sock", false), VMK_OK);
    assert_int_equal(vmk_config_add_socket_device(cfg, dev), VMK_OK);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    const vmk_socket_device *got = vmk_config_get_socket_device(cfg, 0);
    assert_string_equal(vmk_virtio_socket_device_get_unix_socket_path(got), "/run/v.sock");
    assert_int_equal(vmk_virtio_socket_device_port_count(got), 2);
    uint32_t port = 0;
    const char *path = NULL;
    bool listen = false;
    assert_int_equal(vmk_virtio_socket_device_get_port(got, 0, &port, &path, &listen), VMK_OK);
    assert_int_equal(port, 2222);
    assert_string_equal(path, "/run/ssh.sock");
    assert_true(listen);
    assert_int_equal(vmk_virtio_socket_device_get_port(got, 2, &port, &path, &listen),
                     VMK_ERR_INVALID_ARGUMENT);

    /* Each rule, named. */
    assert_int_equal(vmk_virtio_socket_device_set_guest_cid(dev, 2), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(dev, 0, "/run/zero.sock", false), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(dev, 2222, "/run/again.sock", true), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(dev, 7, "/run/ssh.sock", true), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(dev, 8, "/run/v.sock", true), VMK_OK);
    assert_int_equal(vmk_virtio_socket_device_add_port(dev, 9, "", false), VMK_OK);
    EXPECT_INVALID(cfg, "socket device 1: guest CID 2 is out of range [3, 4294967294]",
                   "socket device 1: port 0 is out of range", "port 2222 is mapped twice (listen)",
                   "port 7: socket path /run/ssh.sock is already used by port 2222",
                   "port 8: socket path /run/v.sock is already the device's unix socket path",
                   "port 9: socket path '' is empty");
    vmk_config_free(cfg);

    cfg = valid_config(*state);
    dev = vmk_virtio_socket_device_new();
    char longpath[120];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = 0;
    longpath[100] = 0; /* 100 bytes: a socket address, but not with "_4294967294" */
    assert_int_equal(vmk_virtio_socket_device_set_unix_socket_path(dev, longpath), VMK_OK);
    assert_int_equal(vmk_config_add_socket_device(cfg, dev), VMK_OK);
    assert_int_equal(vmk_config_add_socket_device(cfg, vmk_virtio_socket_device_new()), VMK_OK);
    EXPECT_INVALID(cfg, "2 socket devices, at most 1 allowed", "is empty or longer than 96 bytes");
    vmk_config_free(cfg);

    assert_int_equal(vmk_config_add_socket_device(NULL, vmk_virtio_socket_device_new()),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_virtio_socket_device_add_port(NULL, 1, "/x", false),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_socket_device_count(NULL), 0);
    vmk_socket_device_free(NULL);
}

static void test_vm_new_copies_entropy_device(void **state)
{
    vmk_config *cfg = valid_config(*state);
    assert_int_equal(vmk_config_add_entropy_device(cfg, vmk_virtio_entropy_device_new()), VMK_OK);
    tf_expect_vm_copies(cfg);
}

static vmk_serial_attachment *file_att(void)
{
    return vmk_file_serial_attachment_new("/tmp/vport", false);
}

static void test_console_device(void **state)
{
    vmk_config *cfg = valid_config(*state);
    assert_int_equal(vmk_config_console_device_count(cfg), 0);
    vmk_console_device *dev = vmk_virtio_console_device_new();
    assert_non_null(dev);
    assert_int_equal(vmk_virtio_console_device_port_count(dev), 0);
    assert_int_equal(vmk_virtio_console_device_add_port(dev, "org.vmkit.a", true, file_att()),
                     VMK_OK);
    for (int i = 1; i < 16; i++)
        assert_int_equal(vmk_virtio_console_device_add_port(dev, NULL, false, file_att()), VMK_OK);
    assert_int_equal(vmk_virtio_console_device_port_count(dev), 16);
    assert_int_equal(vmk_virtio_console_device_max_port_count(), 16);
    assert_int_equal(vmk_config_add_console_device(cfg, dev), VMK_OK);
    assert_int_equal(vmk_config_console_device_count(cfg), 1);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    /* A seventeenth port and a second console port are stored; validation judges. */
    assert_int_equal(vmk_virtio_console_device_add_port(dev, "b", true, file_att()), VMK_OK);
    EXPECT_INVALID(cfg, "console device 1: 17 ports, at most 16 allowed",
                   "console port 17: only one port can be the console (console port 1 is)");
    /* So is a second device. */
    vmk_console_device *dev2 = vmk_virtio_console_device_new();
    vmk_virtio_console_device_add_port(dev2, NULL, false, file_att());
    assert_int_equal(vmk_config_add_console_device(cfg, dev2), VMK_OK);
    EXPECT_INVALID(cfg, "2 console devices, at most 1 allowed");
    vmk_config_free(cfg);

    /* NULL arguments: whatever is passed is freed. */
    assert_int_equal(vmk_virtio_console_device_add_port(NULL, "x", false, file_att()),
                     VMK_ERR_INVALID_ARGUMENT);
    dev = vmk_virtio_console_device_new();
    assert_int_equal(vmk_virtio_console_device_add_port(dev, "x", false, NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_virtio_console_device_port_count(dev), 0);
    assert_int_equal(vmk_config_add_console_device(NULL, dev), VMK_ERR_INVALID_ARGUMENT);
    cfg = vmk_config_new();
    assert_int_equal(vmk_config_add_console_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_console_device_count(NULL), 0);
    assert_int_equal(vmk_virtio_console_device_port_count(NULL), 0);
    vmk_config_free(cfg);
    vmk_console_device_free(NULL);
}

static void test_console_device_invalid(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_config_add_console_device(cfg, vmk_virtio_console_device_new());
    EXPECT_INVALID(cfg, "console device 1: no ports");
    vmk_config_free(cfg);

    char long_name[300];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    cfg = valid_config(*state);
    vmk_console_device *dev = vmk_virtio_console_device_new();
    vmk_virtio_console_device_add_port(dev, "ok", false, file_att());
    vmk_virtio_console_device_add_port(dev, long_name, false, file_att());
    vmk_virtio_console_device_add_port(dev, "tab\there", false, file_att());
    vmk_virtio_console_device_add_port(dev, "", false, file_att());
    vmk_virtio_console_device_add_port(dev, "ok", false, file_att());
    vmk_virtio_console_device_add_port(dev, NULL, false, vmk_fd_serial_attachment_new(987, -1));
    vmk_virtio_console_device_add_port(dev, NULL, true, vmk_file_serial_attachment_new(NULL, 0));
    vmk_config_add_console_device(cfg, dev);
    EXPECT_INVALID(cfg, "console port 2: name \"nnnn", "299 bytes, at most 255",
                   "console port 3: name byte 3 (0x09) is not printable",
                   "console port 4: empty name",
                   "console port 5: name \"ok\" is already used by console port 1",
                   "console port 6: read fd 987 is not open",
                   "console port 7: file attachment without a path");
    vmk_error *err = NULL;
    vmk_config_validate(cfg, &err);
    assert_null(strstr(vmk_error_message(err), "console port 1:"));
    vmk_error_free(err);
    vmk_config_free(cfg);

    /* 255 bytes is the limit, and allowed. */
    long_name[255] = 0;
    cfg = valid_config(*state);
    dev = vmk_virtio_console_device_new();
    vmk_virtio_console_device_add_port(dev, long_name, false, file_att());
    vmk_config_add_console_device(cfg, dev);
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_OK);
    vmk_config_free(cfg);
}

static void test_vm_new_copies_console_device(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_console_device *dev = vmk_virtio_console_device_new();
    char name[16] = "org.vmkit.x";
    vmk_virtio_console_device_add_port(dev, name, true, file_att());
    vmk_virtio_console_device_add_port(dev, NULL, false, vmk_fd_serial_attachment_new(0, 1));
    strcpy(name, "changed");
    assert_int_equal(vmk_config_add_console_device(cfg, dev), VMK_OK);
    tf_expect_vm_copies(cfg);
}

static void test_setters_copy_strings(void **state)
{
    char path[32] = "/boot/vmlinuz";
    vmk_boot_loader *bl = vmk_linux_boot_loader_new(path);
    char cmd[32] = "console=ttyS0";
    vmk_linux_boot_loader_set_command_line(bl, cmd);
    strcpy(path, "changed");
    strcpy(cmd, "changed");
    assert_string_equal(vmk_linux_boot_loader_get_kernel(bl), "/boot/vmlinuz");
    assert_string_equal(vmk_linux_boot_loader_get_command_line(bl), "console=ttyS0");
    assert_null(vmk_linux_boot_loader_get_initrd(bl));
    vmk_boot_loader_free(bl);
}

static void test_null_arguments(void **state)
{
    assert_int_equal(vmk_config_set_cpu_count(NULL, 1), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_set_memory_size(NULL, 1), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_set_boot_loader(NULL, vmk_linux_boot_loader_new("/x")),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_linux_boot_loader_set_initrd(NULL, "/x"), VMK_ERR_INVALID_ARGUMENT);
    vmk_error *err = NULL;
    assert_int_equal(vmk_config_validate(NULL, &err), VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(err);
    vmk_error_free(err);
}

static void test_vm_new_rejects_invalid_config(void **state)
{
    vmk_config *cfg = vmk_config_new();
    vmk_error *err = NULL;
    assert_null(vmk_vm_new(cfg, &err));
    assert_non_null(err);
    assert_non_null(strstr(vmk_error_message(err), "no boot loader"));
    vmk_error_free(err);
    vmk_config_free(cfg);
}

static void test_vm_new_copies_config(void **state)
{
    vmk_config *cfg = valid_config(*state);
    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    assert_non_null(vm);
    vmk_config_free(cfg); /* the VM keeps its own copy */
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    assert_true(vmk_vm_can_start(vm));
    assert_false(vmk_vm_can_pause(vm));
    assert_false(vmk_vm_can_resume(vm));
    assert_false(vmk_vm_can_stop(vm));
    assert_false(vmk_vm_can_request_stop(vm));
    assert_int_equal(vmk_vm_pause(vm, &err), VMK_ERR_INVALID_STATE);
    assert_non_null(strstr(vmk_error_message(err), "stopped"));
    vmk_error_free(err);
    assert_int_equal(vmk_vm_wait(vm, 0), VMK_OK);
    assert_int_equal(vmk_vm_get_debug_exit_code(vm), -1);
    vmk_vm_free(vm);
    vmk_vm_free(NULL);
}

/* Appends one line describing att (what a program printing a config back would say). */
static void describe_attachment(char *out, size_t len, const char *what,
                                const vmk_serial_attachment *att)
{
    size_t n = strlen(out);
    switch (vmk_serial_attachment_get_kind(att)) {
    case VMK_SERIAL_ATTACHMENT_FILE:
        snprintf(out + n, len - n, "%s file %s%s\n", what, vmk_serial_attachment_get_path(att),
                 vmk_serial_attachment_is_append(att) ? " append" : "");
        break;
    case VMK_SERIAL_ATTACHMENT_FD:
        snprintf(out + n, len - n, "%s fds %d %d\n", what, vmk_serial_attachment_get_read_fd(att),
                 vmk_serial_attachment_get_write_fd(att));
        break;
    case VMK_SERIAL_ATTACHMENT_PTY: snprintf(out + n, len - n, "%s pty\n", what); break;
    case VMK_SERIAL_ATTACHMENT_SOCKET:
        snprintf(out + n, len - n, "%s socket %s\n", what, vmk_serial_attachment_get_path(att));
        break;
    }
}

/* Everything a config holds can be walked through the public getters and printed back. */
static void test_walk_config(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_config_set_cpu_count(cfg, 3);
    vmk_config_add_serial_port(cfg, vmk_file_serial_attachment_new("/tmp/com1.log", true));
    vmk_config_add_serial_port(cfg, vmk_fd_serial_attachment_new(0, 1));
    vmk_config_add_serial_port(cfg, vmk_pty_serial_attachment_new());
    vmk_config_add_serial_port(cfg, vmk_socket_serial_attachment_new("/tmp/com4.sock"));
    vmk_storage_attachment *att = vmk_disk_image_attachment_new(f->initrd, true);
    vmk_disk_image_attachment_set_caching_mode(att, VMK_DISK_CACHING_UNCACHED);
    vmk_disk_image_attachment_set_synchronization_mode(att, VMK_DISK_SYNC_NONE);
    vmk_storage_device *disk = vmk_virtio_block_device_new(att);
    vmk_virtio_block_device_set_identifier(disk, "disk-0");
    vmk_virtio_block_device_set_queue_count(disk, 2);
    vmk_config_add_storage_device(cfg, disk);
    vmk_entropy_device *rng = vmk_virtio_entropy_device_new();
    vmk_virtio_entropy_device_set_rate(rng, 4096);
    vmk_config_add_entropy_device(cfg, rng);
    vmk_console_device *con = vmk_virtio_console_device_new();
    vmk_virtio_console_device_add_port(con, "org.a", true, vmk_pty_serial_attachment_new());
    vmk_virtio_console_device_add_port(con, NULL, false,
                                       vmk_file_serial_attachment_new("/tmp/p2", false));
    vmk_config_add_console_device(cfg, con);

    char out[2048] = "";
    size_t n;
    const vmk_boot_loader *bl = vmk_config_get_boot_loader(cfg);
    snprintf(out, sizeof(out), "cpus %u memory %llu kernel %s cmdline %s\n",
             vmk_config_get_cpu_count(cfg),
             (unsigned long long)(vmk_config_get_memory_size(cfg) >> 20),
             strrchr(vmk_linux_boot_loader_get_kernel(bl), '/') + 1,
             vmk_linux_boot_loader_get_command_line(bl));
    for (unsigned i = 0; i < vmk_config_serial_port_count(cfg); i++) {
        char what[32];
        snprintf(what, sizeof(what), "serial %u", i);
        describe_attachment(out, sizeof(out), what, vmk_config_get_serial_port(cfg, i));
    }
    for (unsigned i = 0; i < vmk_config_storage_device_count(cfg); i++) {
        const vmk_storage_device *d = vmk_config_get_storage_device(cfg, i);
        const vmk_storage_attachment *a = vmk_storage_device_get_attachment(d);
        n = strlen(out);
        snprintf(out + n, sizeof(out) - n, "disk %d %d %s ro=%d cache=%d sync=%d id=%s q=%u\n",
                 vmk_storage_device_get_kind(d), vmk_storage_attachment_get_kind(a),
                 strrchr(vmk_disk_image_attachment_get_path(a), '/') + 1,
                 vmk_disk_image_attachment_is_read_only(a),
                 vmk_disk_image_attachment_get_caching_mode(a),
                 vmk_disk_image_attachment_get_synchronization_mode(a),
                 vmk_virtio_block_device_get_identifier(d),
                 vmk_virtio_block_device_get_queue_count(d));
    }
    for (unsigned i = 0; i < vmk_config_entropy_device_count(cfg); i++) {
        const vmk_entropy_device *d = vmk_config_get_entropy_device(cfg, i);
        n = strlen(out);
        snprintf(out + n, sizeof(out) - n, "rng %d %llu\n", vmk_entropy_device_get_kind(d),
                 (unsigned long long)vmk_virtio_entropy_device_get_rate(d));
    }
    for (unsigned i = 0; i < vmk_config_console_device_count(cfg); i++) {
        const vmk_console_device *d = vmk_config_get_console_device(cfg, i);
        for (unsigned p = 0; p < vmk_virtio_console_device_port_count(d); p++) {
            char what[64];
            const char *name = vmk_virtio_console_device_get_port_name(d, p);
            snprintf(what, sizeof(what), "console %d port %u %s%s", vmk_console_device_get_kind(d),
                     p, name ? name : "-",
                     vmk_virtio_console_device_port_is_console(d, p) ? " hvc0" : "");
            describe_attachment(out, sizeof(out), what,
                                vmk_virtio_console_device_get_port_attachment(d, p));
        }
    }
    assert_string_equal(out, "cpus 3 memory 64 kernel kernel.elf cmdline console=ttyS0\n"
                             "serial 0 file /tmp/com1.log append\n"
                             "serial 1 fds 0 1\n"
                             "serial 2 pty\n"
                             "serial 3 socket /tmp/com4.sock\n"
                             "disk 0 0 initrd.img ro=1 cache=2 sync=2 id=disk-0 q=2\n"
                             "rng 0 4096\n"
                             "console 0 port 0 org.a hvc0 pty\n"
                             "console 0 port 1 - file /tmp/p2\n");
    /* Past the end, and NULL objects, read as nothing. */
    assert_null(vmk_config_get_serial_port(cfg, 4));
    assert_null(vmk_config_get_entropy_device(cfg, 1));
    assert_null(vmk_config_get_console_device(cfg, 1));
    assert_null(vmk_virtio_console_device_get_port_attachment(con, 2));
    assert_null(vmk_virtio_console_device_get_port_name(con, 2));
    assert_false(vmk_virtio_console_device_port_is_console(con, 2));
    assert_null(vmk_serial_attachment_get_path(NULL));
    assert_int_equal(vmk_serial_attachment_get_read_fd(vmk_config_get_serial_port(cfg, 0)), -1);
    assert_false(vmk_serial_attachment_is_append(vmk_config_get_serial_port(cfg, 3)));
    vmk_config_free(cfg);
}

static void test_error_strings(void **state)
{
    for (int r = VMK_OK; r <= VMK_ERR_INTERNAL; r++)
        assert_non_null(vmk_result_string((vmk_result)r));
    assert_string_equal(vmk_result_string((vmk_result)999), "unknown result code");
    assert_int_equal(vmk_version_number(), VMK_VERSION_NUM);
    assert_string_equal(vmk_version_string(), VMK_VERSION_STRING);
    assert_string_equal(vmk_vm_state_string(VMK_STATE_PAUSED), "paused");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_limits),
        cmocka_unit_test(test_valid_config_passes),
        cmocka_unit_test(test_no_boot_loader),
        cmocka_unit_test(test_cpu_count_out_of_range),
        cmocka_unit_test(test_memory_out_of_range),
        cmocka_unit_test(test_missing_kernel_names_path),
        cmocka_unit_test(test_kernel_of_wrong_format),
        cmocka_unit_test(test_missing_initrd_names_path),
        cmocka_unit_test(test_initrd_too_large),
        cmocka_unit_test(test_command_line_too_long),
        cmocka_unit_test(test_every_problem_reported_at_once),
        cmocka_unit_test(test_serial_ports),
        cmocka_unit_test(test_pty_serial_attachment),
        cmocka_unit_test(test_socket_serial_attachment),
        cmocka_unit_test(test_entropy_device),
        cmocka_unit_test(test_memory_balloon_device),
        cmocka_unit_test(test_socket_device),
        cmocka_unit_test(test_vm_new_copies_entropy_device),
        cmocka_unit_test(test_console_device),
        cmocka_unit_test(test_console_device_invalid),
        cmocka_unit_test(test_vm_new_copies_console_device),
        cmocka_unit_test(test_setters_copy_strings),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_vm_new_rejects_invalid_config),
        cmocka_unit_test(test_vm_new_copies_config),
        cmocka_unit_test_setup_teardown(test_walk_config, setup, teardown),
        cmocka_unit_test(test_error_strings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
