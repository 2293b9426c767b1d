/* What the unit tests make on disk and check in a config: whole files from a buffer, the
 * smallest kernel the boot loader accepts, temporary directories, a config that validates and
 * the checks on what vmk_config_validate says. Failures end the test (cmocka asserts). */
#ifndef VMK_TESTS_TEST_FILES_H
#define VMK_TESTS_TEST_FILES_H

#include "vmkit.h"

#include <stddef.h>

/* Creates (or truncates) path with len bytes of data. */
void tf_write_file(const char *path, const void *data, size_t len);
/* An ELF64 kernel with one PT_LOAD of 16 hlt bytes at 1 MiB, entry there. */
void tf_write_tiny_elf(const char *path);

/* Makes a new directory /tmp/vmkit-test-<name>-XXXXXX and puts its path in dir (size bytes):
 * 0, or -1 when it cannot. */
int tf_make_temp_dir(char *dir, size_t size, const char *name);
/* Removes dir and everything below it, as rm -rf does: 0, or -1. */
int tf_remove_tree(const char *dir);

/* A config that validates: kernel (see tf_write_tiny_elf) and 64 MiB of memory. */
vmk_config *tf_valid_config(const char *kernel);
/* Fails the test, with the message, unless cfg validates. */
void tf_expect_valid(const vmk_config *cfg);
/* Fails the test unless cfg is invalid with a message holding every one of the fragments
 * (NULL-terminated). */
void tf_expect_invalid(const vmk_config *cfg, const char *const *fragments);
#define EXPECT_INVALID(cfg, ...) tf_expect_invalid(cfg, (const char *const[]){ __VA_ARGS__, NULL })
/* Makes a VM of cfg and frees cfg (the VM's copy is its own: freeing the config first must not
 * touch it, as ASan sees), then checks the VM stopped and frees it. */
void tf_expect_vm_copies(vmk_config *cfg);

#endif
