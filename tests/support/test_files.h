/* Files the unit tests make: whole files from a buffer, and the smallest kernel the boot
 * loader accepts. Failures end the test (cmocka asserts). */
#ifndef VMK_TESTS_TEST_FILES_H
#define VMK_TESTS_TEST_FILES_H

#include <stddef.h>

/* Creates (or truncates) path with len bytes of data. */
void tf_write_file(const char *path, const void *data, size_t len);
/* An ELF64 kernel with one PT_LOAD of 16 hlt bytes at 1 MiB, entry there. */
void tf_write_tiny_elf(const char *path);

#endif
