/* The EFI boot loader and variable store objects: create (from OVMF's template, whole or not at
 * all, never over an existing file unless allowed), open, kinds, copies, and validation of the
 * firmware and the store. The template and firmware are Debian's ovmf package's: without it the
 * cases that need them are skipped. */
#include "vmkit.h"

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

static char dir[] = "/tmp/vmkit-efi-XXXXXX";

static int make_dir(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/vmkit-efi-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *path_in(const char *name)
{
    static char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The error's message holds frag. */
static void expect_message(const vmk_error *e, const char *frag)
{
    assert_non_null(e);
    if (!strstr(vmk_error_message(e), frag)) {
        print_error("'%s' does not hold '%s'\n", vmk_error_message(e), frag);
        fail();
    }
}

/* A config with this boot loader validates, or names frag among its problems. */
static void expect_validation(vmk_boot_loader *bl, const char *frag)
{
    vmk_config *cfg = vmk_config_new();
    assert_int_equal(vmk_config_set_boot_loader(cfg, bl), VMK_OK);
    vmk_error *e = NULL;
    vmk_result r = vmk_config_validate(cfg, &e);
    if (!frag) {
        if (r != VMK_OK)
            print_error("unexpected: %s\n", vmk_error_message(e));
        assert_int_equal(r, VMK_OK);
    } else {
        assert_int_equal(r, VMK_ERR_INVALID_CONFIG);
        expect_message(e, frag);
    }
    vmk_error_free(e);
    vmk_config_free(cfg);
}

static void test_kinds_and_setters(void **state)
{
    (void)state;
    vmk_boot_loader *efi = vmk_efi_boot_loader_new();
    vmk_boot_loader *lin = vmk_linux_boot_loader_new("/k");
    assert_int_equal(vmk_boot_loader_get_kind(efi), VMK_BOOT_LOADER_EFI);
    assert_int_equal(vmk_boot_loader_get_kind(lin), VMK_BOOT_LOADER_LINUX);
    /* Each kind's setters refuse the other kind. */
    assert_int_equal(vmk_linux_boot_loader_set_initrd(efi, "/i"), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_linux_boot_loader_set_command_line(efi, "x"), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_efi_boot_loader_set_firmware(lin, "/fw"), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_efi_boot_loader_set_variable_store(lin, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_null(vmk_linux_boot_loader_get_kernel(efi));
    assert_null(vmk_efi_boot_loader_get_variable_store(lin));
    assert_int_equal(vmk_efi_boot_loader_set_firmware(efi, "/my/fw.fd"), VMK_OK);
    assert_string_equal(vmk_efi_boot_loader_get_firmware(efi), "/my/fw.fd");
    vmk_boot_loader_free(efi);
    vmk_boot_loader_free(lin);
    vmk_boot_loader_free(NULL);
    vmk_efi_variable_store_free(NULL);
}

static void test_open_and_create_errors(void **state)
{
    (void)state;
    vmk_error *e = NULL;
    assert_null(vmk_efi_variable_store_open(path_in("missing.fd"), &e));
    expect_message(e, "missing.fd");
    vmk_error_free(e), e = NULL;
    assert_null(vmk_efi_variable_store_open("", &e));
    assert_int_equal(vmk_error_code(e), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(e), e = NULL;
    /* An existing file is not replaced unless allowed; it is left as it was. */
    tf_write_file(path_in("taken.fd"), "keep", 4);
    assert_null(vmk_efi_variable_store_create(path_in("taken.fd"), false, &e));
    expect_message(e, "already exists");
    vmk_error_free(e), e = NULL;
    assert_int_equal(file_size(path_in("taken.fd")), 4);
    /* A directory that does not exist: an error naming the store, nothing left behind. */
    if (vmk_efi_default_variable_template_path()) {
        assert_null(vmk_efi_variable_store_create(path_in("no/such/dir.fd"), true, &e));
        expect_message(e, "no/such/dir.fd");
        vmk_error_free(e);
    }
}

static void test_create_validate_and_copy(void **state)
{
    (void)state;
    const char *tmpl = vmk_efi_default_variable_template_path();
    if (!tmpl || !vmk_efi_default_firmware_path())
        skip(); /* apt-get install ovmf */
    vmk_error *e = NULL;
    vmk_efi_variable_store *s = vmk_efi_variable_store_create(path_in("vars.fd"), false, &e);
    assert_non_null(s);
    assert_string_equal(vmk_efi_variable_store_get_path(s), path_in("vars.fd"));
    assert_int_equal(file_size(path_in("vars.fd")), file_size(tmpl));
    /* Nothing else in the directory: the temporary file was renamed into place. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    vmk_boot_loader *bl = vmk_efi_boot_loader_new();
    assert_int_equal(vmk_efi_boot_loader_set_variable_store(bl, s), VMK_OK);
    assert_string_equal(vmk_efi_boot_loader_get_firmware(bl), vmk_efi_default_firmware_path());

    /* The config copies the boot loader: the copy keeps kind, store and firmware. */
    vmk_config *cfg = vmk_config_new();
    assert_int_equal(vmk_config_set_boot_loader(cfg, bl), VMK_OK);
    assert_int_equal(vmk_config_validate(cfg, &e), VMK_OK);
    vmk_vm *vm = vmk_vm_new(cfg, NULL);
    vmk_config_free(cfg);
    vmk_vm_free(vm);

    /* Overwriting is allowed when asked: the file is the template again. */
    tf_write_file(path_in("vars.fd"), "x", 1);
    s = vmk_efi_variable_store_create(path_in("vars.fd"), true, &e);
    assert_non_null(s);
    assert_int_equal(file_size(path_in("vars.fd")), file_size(tmpl));
    vmk_efi_variable_store_free(s);
}

static void test_validation_errors(void **state)
{
    (void)state;
    if (!vmk_efi_default_variable_template_path() || !vmk_efi_default_firmware_path())
        skip(); /* apt-get install ovmf */
    vmk_error *e = NULL;
    /* No store. */
    expect_validation(vmk_efi_boot_loader_new(), "no variable store");
    /* A store that is no firmware volume. */
    char junk[4096] = { 0 };
    tf_write_file(path_in("junk.fd"), junk, sizeof(junk));
    vmk_boot_loader *bl = vmk_efi_boot_loader_new();
    vmk_efi_boot_loader_set_variable_store(bl, vmk_efi_variable_store_open(path_in("junk.fd"), &e));
    expect_validation(bl, "not a variable store");
    /* A store of the wrong size for the firmware (the 4 MiB store with the 2 MiB code). */
    vmk_efi_variable_store *s = vmk_efi_variable_store_create(path_in("v4.fd"), false, &e);
    assert_non_null(s);
    bl = vmk_efi_boot_loader_new();
    vmk_efi_boot_loader_set_variable_store(bl, s);
    if (access("/usr/share/OVMF/OVMF_CODE.fd", R_OK) == 0) {
        vmk_efi_boot_loader_set_firmware(bl, "/usr/share/OVMF/OVMF_CODE.fd");
        expect_validation(bl, "leaves 131072 for its variables");
        bl = vmk_efi_boot_loader_new();
        vmk_efi_boot_loader_set_variable_store(bl,
                                               vmk_efi_variable_store_open(path_in("v4.fd"), &e));
    }
    /* Firmware that is not a firmware volume, or missing. */
    vmk_efi_boot_loader_set_firmware(bl, path_in("junk.fd"));
    expect_validation(bl, "not a firmware volume");
    bl = vmk_efi_boot_loader_new();
    vmk_efi_boot_loader_set_variable_store(bl, vmk_efi_variable_store_open(path_in("v4.fd"), &e));
    vmk_efi_boot_loader_set_firmware(bl, path_in("nofw.fd"));
    expect_validation(bl, "nofw.fd: cannot read");
    /* A store that cannot be written (not for root, who may write anything: checked by mode). */
    if (geteuid() != 0) {
        chmod(path_in("v4.fd"), 0400);
        bl = vmk_efi_boot_loader_new();
        vmk_efi_boot_loader_set_variable_store(bl,
                                               vmk_efi_variable_store_open(path_in("v4.fd"), &e));
        expect_validation(bl, "not writable");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_and_setters),
        cmocka_unit_test_setup_teardown(test_open_and_create_errors, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_create_validate_and_copy, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_validation_errors, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
