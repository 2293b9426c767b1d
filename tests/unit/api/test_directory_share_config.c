/* Directory sharing's configuration objects: shared directories, shares, the virtio file
 * system device, and what vmk_config_validate says about them. */
#include "vmkit.h"
#include "api/config_internal.h"

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

#include "test_files.h"

struct fixture {
    char dir[64];    /* a directory to share */
    char sub[96];    /* another one, inside it */
    char file[96];   /* a regular file: not shareable */
    char kernel[96]; /* a kernel for a config that validates */
    char bin[96];    /* a fake /usr/bin */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || tf_make_temp_dir(f->dir, sizeof(f->dir), "fs") < 0)
        return -1;
    snprintf(f->sub, sizeof(f->sub), "%s/sub", f->dir);
    snprintf(f->file, sizeof(f->file), "%s/file", f->dir);
    snprintf(f->kernel, sizeof(f->kernel), "%s/kernel.elf", f->dir);
    snprintf(f->bin, sizeof(f->bin), "%s/bin", f->dir);
    if (mkdir(f->sub, 0755) < 0 || mkdir(f->bin, 0755) < 0)
        return -1;
    tf_write_file(f->file, "x", 1);
    tf_write_tiny_elf(f->kernel);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = tf_remove_tree(f->dir);
    free(f);
    return rc;
}

/* A device sharing path alone under tag. */
static vmk_directory_sharing_device *single(const char *tag, const char *path, bool read_only)
{
    vmk_directory_sharing_device *dev = vmk_virtio_file_system_device_new(tag);
    assert_non_null(dev);
    vmk_directory_share *share =
        vmk_single_directory_share_new(vmk_shared_directory_new(path, read_only));
    assert_non_null(share);
    assert_int_equal(vmk_virtio_file_system_device_set_share(dev, share), VMK_OK);
    return dev;
}

static void test_shared_directory(void **state)
{
    (void)state;
    vmk_shared_directory *d = vmk_shared_directory_new("/srv/data", true);
    assert_non_null(d);
    assert_string_equal(vmk_shared_directory_get_path(d), "/srv/data");
    assert_true(vmk_shared_directory_is_read_only(d));
    vmk_shared_directory_free(d);
    char path[] = "/srv/x";
    d = vmk_shared_directory_new(path, false);
    path[1] = 'X'; /* the object holds its own copy */
    assert_string_equal(vmk_shared_directory_get_path(d), "/srv/x");
    assert_false(vmk_shared_directory_is_read_only(d));
    vmk_shared_directory_free(d);
    assert_null(vmk_shared_directory_get_path(NULL));
    assert_false(vmk_shared_directory_is_read_only(NULL));
    vmk_shared_directory_free(NULL);
}

static void test_single_share(void **state)
{
    (void)state;
    assert_null(vmk_single_directory_share_new(NULL));
    vmk_directory_share *s = vmk_single_directory_share_new(vmk_shared_directory_new("/a", false));
    assert_non_null(s);
    assert_int_equal(vmk_directory_share_get_kind(s), VMK_DIRECTORY_SHARE_SINGLE);
    assert_int_equal(vmk_directory_share_directory_count(s), 1);
    const char *name = "x";
    const vmk_shared_directory *d = vmk_directory_share_get_directory(s, 0, &name);
    assert_non_null(d);
    assert_null(name);
    assert_string_equal(vmk_shared_directory_get_path(d), "/a");
    assert_null(vmk_directory_share_get_directory(s, 1, &name));
    assert_ptr_equal(vmk_directory_share_get_directory(s, 0, NULL), d);
    /* Only a multiple share takes more (and the directory given is freed: ASan). */
    vmk_error *err = NULL;
    assert_int_equal(vmk_multiple_directory_share_add_directory(
                         s, "b", vmk_shared_directory_new("/b", false), &err),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vmk_error_message(err), "multiple directory share"));
    vmk_error_free(err);
    assert_int_equal(vmk_directory_share_directory_count(s), 1);
    vmk_directory_share_free(s);
    vmk_directory_share_free(NULL);
    assert_int_equal(vmk_directory_share_directory_count(NULL), 0);
    assert_null(vmk_directory_share_get_directory(NULL, 0, NULL));
}

/* Adds name -> /d to share: the result, and the message (when it fails) holds fragment. */
static void add_named(vmk_directory_share *share, const char *name, vmk_result want,
                      const char *fragment)
{
    vmk_error *err = NULL;
    vmk_result r = vmk_multiple_directory_share_add_directory(
        share, name, vmk_shared_directory_new("/d", true), &err);
    assert_int_equal(r, want);
    if (want == VMK_OK) {
        assert_null(err);
        return;
    }
    assert_non_null(err);
    assert_int_equal(vmk_error_code(err), want);
    if (!strstr(vmk_error_message(err), fragment))
        fail_msg("message '%s' lacks '%s'", vmk_error_message(err), fragment);
    vmk_error_free(err);
}

static void test_multiple_share_names(void **state)
{
    (void)state;
    vmk_directory_share *s = vmk_multiple_directory_share_new();
    assert_non_null(s);
    assert_int_equal(vmk_directory_share_get_kind(s), VMK_DIRECTORY_SHARE_MULTIPLE);
    assert_int_equal(vmk_directory_share_directory_count(s), 0);
    add_named(s, "docs", VMK_OK, NULL);
    add_named(s, "...", VMK_OK, NULL); /* only "." and ".." name the mount's own */
    char longest[256];
    memset(longest, 'n', 255);
    longest[255] = 0;
    add_named(s, longest, VMK_OK, NULL);
    add_named(s, "", VMK_ERR_INVALID_ARGUMENT, "name is empty");
    add_named(s, NULL, VMK_ERR_INVALID_ARGUMENT, "name is empty");
    add_named(s, "a/b", VMK_ERR_INVALID_ARGUMENT, "\"a/b\" holds a '/'");
    add_named(s, ".", VMK_ERR_INVALID_ARGUMENT, "\".\" is not allowed");
    add_named(s, "..", VMK_ERR_INVALID_ARGUMENT, "\"..\" is not allowed");
    char too_long[257];
    memset(too_long, 'n', 256);
    too_long[256] = 0;
    add_named(s, too_long, VMK_ERR_INVALID_ARGUMENT, "256 bytes, at most 255");
    add_named(s, "docs", VMK_ERR_INVALID_ARGUMENT, "\"docs\" is already used by directory 1");
    assert_int_equal(vmk_directory_share_directory_count(s), 3);
    const char *name = NULL;
    const vmk_shared_directory *d = vmk_directory_share_get_directory(s, 1, &name);
    assert_string_equal(name, "...");
    assert_string_equal(vmk_shared_directory_get_path(d), "/d");
    assert_true(vmk_shared_directory_is_read_only(d));
    assert_null(vmk_directory_share_get_directory(s, 3, &name));
    assert_null(name);

    /* NULL arguments: the directory is still taken (ASan), err may be NULL. */
    assert_int_equal(vmk_multiple_directory_share_add_directory(
                         NULL, "x", vmk_shared_directory_new("/x", false), NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_multiple_directory_share_add_directory(s, "x", NULL, NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    vmk_directory_share_free(s);
}

static void test_translator(void **state)
{
    struct fixture *f = *state;
    /* A directory without qemu-*-static executables: not installed. */
    assert_false(linux_translator_installed_in(f->bin));
    assert_false(linux_translator_installed_in("/nonexistent-vmkit-dir"));
    char path[160];
    snprintf(path, sizeof(path), "%s/qemu-aarch64-static", f->bin);
    tf_write_file(path, "#!", 2);
    chmod(path, 0644);
    assert_false(linux_translator_installed_in(f->bin)); /* not executable */
    snprintf(path, sizeof(path), "%s/qemu-aarch64", f->bin);
    tf_write_file(path, "#!", 2);
    chmod(path, 0755);
    assert_false(linux_translator_installed_in(f->bin)); /* not the static one */
    snprintf(path, sizeof(path), "%s/qemu-riscv64-static", f->bin);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_false(linux_translator_installed_in(f->bin)); /* not a regular file */
    snprintf(path, sizeof(path), "%s/qemu-arm-static", f->bin);
    tf_write_file(path, "#!", 2);
    chmod(path, 0755);
    assert_true(linux_translator_installed_in(f->bin));

    /* This host: the share exists exactly when the interpreters do. */
    bool installed = vmk_linux_translator_availability() == VMK_TRANSLATOR_INSTALLED;
    assert_int_equal(installed, linux_translator_installed_in("/usr/bin"));
    vmk_error *err = NULL;
    vmk_directory_share *s = vmk_linux_translator_directory_share_new(&err);
    vmk_config *cfg = tf_valid_config(f->kernel);
    vmk_directory_sharing_device *dev = vmk_virtio_file_system_device_new("rosetta");
    if (installed) {
        assert_non_null(s);
        assert_null(err);
        assert_int_equal(vmk_directory_share_get_kind(s), VMK_DIRECTORY_SHARE_LINUX_TRANSLATOR);
        assert_int_equal(vmk_directory_share_directory_count(s), 0);
        assert_null(vmk_directory_share_get_directory(s, 0, NULL));
        assert_int_equal(vmk_virtio_file_system_device_set_share(dev, s), VMK_OK);
        assert_int_equal(vmk_config_add_directory_sharing_device(cfg, dev), VMK_OK);
        tf_expect_valid(cfg);
    } else {
        assert_null(s);
        assert_non_null(err);
        assert_int_equal(vmk_error_code(err), VMK_ERR_UNSUPPORTED);
        assert_non_null(strstr(vmk_error_message(err), "qemu-user-static"));
        vmk_error_free(err);
        assert_null(vmk_linux_translator_directory_share_new(NULL));
        /* A translator share made where it was installed is judged here. */
        vmk_directory_share *fake = calloc(1, sizeof(*fake));
        fake->kind = VMK_DIRECTORY_SHARE_LINUX_TRANSLATOR;
        assert_int_equal(vmk_virtio_file_system_device_set_share(dev, fake), VMK_OK);
        assert_int_equal(vmk_config_add_directory_sharing_device(cfg, dev), VMK_OK);
        EXPECT_INVALID(cfg, "directory sharing device 1: the Linux translator share needs",
                       "qemu-user-static");
    }
    vmk_config_free(cfg);
}

static void test_device_setters_getters(void **state)
{
    (void)state;
    vmk_directory_sharing_device *dev = vmk_virtio_file_system_device_new("data");
    assert_non_null(dev);
    assert_string_equal(vmk_virtio_file_system_device_get_tag(dev), "data");
    assert_null(vmk_virtio_file_system_device_get_share(dev));
    assert_int_equal(vmk_virtio_file_system_device_get_cache_mode(dev), VMK_FILE_SYSTEM_CACHE_AUTO);
    uint32_t uid = 7, gid = 7;
    assert_int_equal(vmk_virtio_file_system_device_get_ownership(dev, &uid, &gid),
                     VMK_FILE_SYSTEM_OWNERSHIP_IDENTITY);
    assert_int_equal(uid, 0);
    assert_int_equal(gid, 0);
    assert_int_equal(vmk_virtio_file_system_device_get_request_queue_count(dev), 1);

    assert_int_equal(vmk_virtio_file_system_device_set_cache_mode(dev, VMK_FILE_SYSTEM_CACHE_NEVER),
                     VMK_OK);
    assert_int_equal(vmk_virtio_file_system_device_get_cache_mode(dev),
                     VMK_FILE_SYSTEM_CACHE_NEVER);
    assert_int_equal(vmk_virtio_file_system_device_set_ownership(
                         dev, VMK_FILE_SYSTEM_OWNERSHIP_SQUASH, 1000, 100),
                     VMK_OK);
    assert_int_equal(vmk_virtio_file_system_device_get_ownership(dev, &uid, &gid),
                     VMK_FILE_SYSTEM_OWNERSHIP_SQUASH);
    assert_int_equal(uid, 1000);
    assert_int_equal(gid, 100);
    assert_int_equal(vmk_virtio_file_system_device_get_ownership(dev, NULL, NULL),
                     VMK_FILE_SYSTEM_OWNERSHIP_SQUASH);
    assert_int_equal(vmk_virtio_file_system_device_set_request_queue_count(dev, 4), VMK_OK);
    assert_int_equal(vmk_virtio_file_system_device_get_request_queue_count(dev), 4);

    /* set_share takes the share and frees the one before (ASan). */
    vmk_directory_share *a = vmk_single_directory_share_new(vmk_shared_directory_new("/a", false));
    vmk_directory_share *b = vmk_multiple_directory_share_new();
    assert_int_equal(vmk_virtio_file_system_device_set_share(dev, a), VMK_OK);
    assert_ptr_equal(vmk_virtio_file_system_device_get_share(dev), a);
    assert_int_equal(vmk_virtio_file_system_device_set_share(dev, b), VMK_OK);
    assert_ptr_equal(vmk_virtio_file_system_device_get_share(dev), b);
    assert_int_equal(vmk_virtio_file_system_device_set_share(dev, NULL), VMK_OK);
    assert_null(vmk_virtio_file_system_device_get_share(dev));
    vmk_directory_sharing_device_free(dev);

    /* NULL objects. */
    assert_int_equal(
        vmk_virtio_file_system_device_set_share(NULL, vmk_multiple_directory_share_new()),
        VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_virtio_file_system_device_set_cache_mode(NULL, VMK_FILE_SYSTEM_CACHE_AUTO),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        vmk_virtio_file_system_device_set_ownership(NULL, VMK_FILE_SYSTEM_OWNERSHIP_SQUASH, 0, 0),
        VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_virtio_file_system_device_set_request_queue_count(NULL, 1),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_null(vmk_virtio_file_system_device_get_tag(NULL));
    assert_null(vmk_virtio_file_system_device_get_share(NULL));
    assert_int_equal(vmk_virtio_file_system_device_get_request_queue_count(NULL), 0);
    vmk_directory_sharing_device_free(NULL);
    assert_int_equal(vmk_config_add_directory_sharing_device(NULL, single("t", "/x", false)),
                     VMK_ERR_INVALID_ARGUMENT);
    vmk_config *cfg = vmk_config_new();
    assert_int_equal(vmk_config_add_directory_sharing_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_directory_sharing_device_count(cfg), 0);
    vmk_config_free(cfg);
    assert_int_equal(vmk_config_directory_sharing_device_count(NULL), 0);
    assert_null(vmk_config_get_directory_sharing_device(NULL, 0));
}

static void expect_tag(const char *tag, bool ok, const char *fragment)
{
    vmk_error *err = NULL;
    vmk_result r = vmk_virtio_file_system_device_validate_tag(tag, &err);
    if (ok) {
        assert_int_equal(r, VMK_OK);
        assert_null(err);
        return;
    }
    assert_int_equal(r, VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(err);
    if (!strstr(vmk_error_message(err), fragment))
        fail_msg("message '%s' lacks '%s'", vmk_error_message(err), fragment);
    vmk_error_free(err);
}

static void test_tags(void **state)
{
    (void)state;
    char t35[36], t36[37];
    memset(t35, 'a', 35);
    t35[35] = 0;
    memset(t36, 'a', 36);
    t36[36] = 0;
    expect_tag("data", true, NULL);
    expect_tag(VMK_VIRTIO_FS_AUTOMOUNT_TAG, true, NULL);
    expect_tag("a b~!", true, NULL);
    expect_tag(t35, true, NULL);
    expect_tag(t36, false, "36 bytes, at most 35");
    expect_tag("", false, "tag is empty");
    expect_tag(NULL, false, "tag is empty");
    expect_tag("a\tb", false, "byte 0x09 at offset 1");
    expect_tag("caf\xc3\xa9", false, "byte 0xc3 at offset 3");
    assert_int_equal(vmk_virtio_file_system_device_validate_tag("\x7f", NULL),
                     VMK_ERR_INVALID_ARGUMENT);
}

static void test_validate(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = tf_valid_config(f->kernel);
    assert_int_equal(vmk_config_max_directory_sharing_device_count(), 8);
    assert_int_equal(vmk_config_directory_sharing_device_count(cfg), 0);
    assert_int_equal(vmk_config_add_directory_sharing_device(cfg, single("one", f->dir, false)),
                     VMK_OK);
    vmk_directory_sharing_device *multi = vmk_virtio_file_system_device_new("two");
    vmk_directory_share *share = vmk_multiple_directory_share_new();
    assert_int_equal(vmk_multiple_directory_share_add_directory(
                         share, "top", vmk_shared_directory_new(f->dir, true), NULL),
                     VMK_OK);
    assert_int_equal(vmk_multiple_directory_share_add_directory(
                         share, "sub", vmk_shared_directory_new(f->sub, false), NULL),
                     VMK_OK);
    assert_int_equal(vmk_virtio_file_system_device_set_share(multi, share), VMK_OK);
    assert_int_equal(vmk_config_add_directory_sharing_device(cfg, multi), VMK_OK);
    assert_int_equal(vmk_config_directory_sharing_device_count(cfg), 2);
    assert_ptr_equal(vmk_config_get_directory_sharing_device(cfg, 1), multi);
    assert_null(vmk_config_get_directory_sharing_device(cfg, 2));
    tf_expect_valid(cfg);
    vmk_config_free(cfg);

    /* Every problem at once, each naming its device. */
    cfg = tf_valid_config(f->kernel);
    char t36[37];
    memset(t36, 't', 36);
    t36[36] = 0;
    vmk_config_add_directory_sharing_device(cfg, single("same", f->dir, false));             /* 1 */
    vmk_config_add_directory_sharing_device(cfg, single("same", f->sub, true));              /* 2 */
    vmk_config_add_directory_sharing_device(cfg, vmk_virtio_file_system_device_new("bare")); /* 3 */
    vmk_config_add_directory_sharing_device(cfg, single("file", f->file, false));            /* 4 */
    vmk_config_add_directory_sharing_device(cfg, single("gone", "/nonexistent-vmkit", false));
    vmk_config_add_directory_sharing_device(cfg, single(t36, f->dir, false));         /* 6 */
    vmk_directory_sharing_device *empty = vmk_virtio_file_system_device_new("empty"); /* 7 */
    vmk_virtio_file_system_device_set_share(empty, vmk_multiple_directory_share_new());
    vmk_config_add_directory_sharing_device(cfg, empty);
    vmk_directory_sharing_device *odd = single(NULL, f->dir, false); /* 8 */
    vmk_virtio_file_system_device_set_cache_mode(odd, (vmk_file_system_cache_mode)7);
    vmk_virtio_file_system_device_set_ownership(odd, (vmk_file_system_ownership)5, 0, 0);
    vmk_virtio_file_system_device_set_request_queue_count(odd, 9);
    vmk_config_add_directory_sharing_device(cfg, odd);
    vmk_directory_sharing_device *zero = single("zero", "", false); /* 9 */
    vmk_virtio_file_system_device_set_request_queue_count(zero, 0);
    vmk_config_add_directory_sharing_device(cfg, zero);
    char named[160];
    snprintf(named, sizeof(named), "shared directory \"f\" %s: not a directory", f->file);
    vmk_directory_sharing_device *mf = vmk_virtio_file_system_device_new("mf"); /* 10 */
    vmk_directory_share *ms = vmk_multiple_directory_share_new();
    vmk_multiple_directory_share_add_directory(ms, "f", vmk_shared_directory_new(f->file, 0), NULL);
    vmk_virtio_file_system_device_set_share(mf, ms);
    vmk_config_add_directory_sharing_device(cfg, mf);
    char file_msg[160];
    snprintf(file_msg, sizeof(file_msg),
             "directory sharing device 4: shared directory %s: not a "
             "directory",
             f->file);
    EXPECT_INVALID(cfg, "10 directory sharing devices, at most 8 allowed",
                   "directory sharing device 2: tag \"same\" is used by directory sharing device 1",
                   "directory sharing device 3: no directory share", file_msg,
                   "directory sharing device 5: shared directory /nonexistent-vmkit: No such file",
                   "directory sharing device 6: tag \"tttt", "36 bytes, at most 35",
                   "directory sharing device 7: the multiple directory share has no directories",
                   "directory sharing device 8: no tag", "device 8: unknown cache mode 7",
                   "device 8: unknown ownership mode 5",
                   "device 8: request queue count 9 is out of range [1, 8]",
                   "directory sharing device 9: shared directory has no path",
                   "device 9: request queue count 0", named);
    vmk_config_free(cfg);

    /* Exactly 8 fit. */
    cfg = tf_valid_config(f->kernel);
    for (int i = 0; i < 8; i++) {
        char tag[8];
        snprintf(tag, sizeof(tag), "t%d", i);
        assert_int_equal(vmk_config_add_directory_sharing_device(cfg, single(tag, f->dir, i & 1)),
                         VMK_OK);
    }
    tf_expect_valid(cfg);
    vmk_config_add_directory_sharing_device(cfg, single("t8", f->dir, false));
    EXPECT_INVALID(cfg, "9 directory sharing devices, at most 8 allowed");
    vmk_config_free(cfg);
}

static void test_copy(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = tf_valid_config(f->kernel);
    vmk_directory_sharing_device *dev = single("one", f->dir, true);
    vmk_virtio_file_system_device_set_cache_mode(dev, VMK_FILE_SYSTEM_CACHE_ALWAYS);
    vmk_virtio_file_system_device_set_ownership(dev, VMK_FILE_SYSTEM_OWNERSHIP_SQUASH, 5, 6);
    vmk_virtio_file_system_device_set_request_queue_count(dev, 3);
    vmk_config_add_directory_sharing_device(cfg, dev);
    vmk_directory_sharing_device *multi = vmk_virtio_file_system_device_new("two");
    vmk_directory_share *share = vmk_multiple_directory_share_new();
    vmk_multiple_directory_share_add_directory(share, "a", vmk_shared_directory_new(f->dir, 0),
                                               NULL);
    vmk_multiple_directory_share_add_directory(share, "b", vmk_shared_directory_new(f->sub, 1),
                                               NULL);
    vmk_virtio_file_system_device_set_share(multi, share);
    vmk_config_add_directory_sharing_device(cfg, multi);
    vmk_config_add_directory_sharing_device(cfg, vmk_virtio_file_system_device_new("bare"));

    vmk_config *c = config_copy(cfg);
    assert_non_null(c);
    vmk_config_free(cfg); /* the copy is its own (ASan) */
    assert_int_equal(vmk_config_directory_sharing_device_count(c), 3);
    const vmk_directory_sharing_device *d = vmk_config_get_directory_sharing_device(c, 0);
    assert_string_equal(vmk_virtio_file_system_device_get_tag(d), "one");
    assert_int_equal(vmk_virtio_file_system_device_get_cache_mode(d), VMK_FILE_SYSTEM_CACHE_ALWAYS);
    uint32_t uid, gid;
    assert_int_equal(vmk_virtio_file_system_device_get_ownership(d, &uid, &gid),
                     VMK_FILE_SYSTEM_OWNERSHIP_SQUASH);
    assert_int_equal(uid, 5);
    assert_int_equal(gid, 6);
    assert_int_equal(vmk_virtio_file_system_device_get_request_queue_count(d), 3);
    const vmk_directory_share *s = vmk_virtio_file_system_device_get_share(d);
    assert_int_equal(vmk_directory_share_get_kind(s), VMK_DIRECTORY_SHARE_SINGLE);
    const vmk_shared_directory *sd = vmk_directory_share_get_directory(s, 0, NULL);
    assert_string_equal(vmk_shared_directory_get_path(sd), f->dir);
    assert_true(vmk_shared_directory_is_read_only(sd));

    d = vmk_config_get_directory_sharing_device(c, 1);
    s = vmk_virtio_file_system_device_get_share(d);
    assert_int_equal(vmk_directory_share_get_kind(s), VMK_DIRECTORY_SHARE_MULTIPLE);
    assert_int_equal(vmk_directory_share_directory_count(s), 2);
    const char *name = NULL;
    sd = vmk_directory_share_get_directory(s, 1, &name);
    assert_string_equal(name, "b");
    assert_string_equal(vmk_shared_directory_get_path(sd), f->sub);
    assert_true(vmk_shared_directory_is_read_only(sd));
    assert_null(
        vmk_virtio_file_system_device_get_share(vmk_config_get_directory_sharing_device(c, 2)));
    vmk_config_free(c);

    /* vmk_vm_new copies a valid config with directory sharing devices. */
    cfg = tf_valid_config(f->kernel);
    vmk_config_add_directory_sharing_device(cfg, single("one", f->dir, false));
    tf_expect_vm_copies(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_directory),
        cmocka_unit_test(test_single_share),
        cmocka_unit_test(test_multiple_share_names),
        cmocka_unit_test_setup_teardown(test_translator, setup, teardown),
        cmocka_unit_test(test_device_setters_getters),
        cmocka_unit_test(test_tags),
        cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
