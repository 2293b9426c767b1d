#include "test_files.h"

#include <elf.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

void tf_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

void tf_write_tiny_elf(const char *path)
{
    uint8_t img[sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + 16] = { 0 };
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_EXEC;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_entry = 0x100000;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 1;
    Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(Elf64_Ehdr));
    ph->p_type = PT_LOAD;
    ph->p_flags = PF_R | PF_X;
    ph->p_offset = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
    ph->p_vaddr = ph->p_paddr = 0x100000;
    ph->p_filesz = ph->p_memsz = 16;
    ph->p_align = 16;
    memset(img + ph->p_offset, 0xf4, 16); /* hlt */
    tf_write_file(path, img, sizeof(img));
}

int tf_make_temp_dir(char *dir, size_t size, const char *name)
{
    int n = snprintf(dir, size, "/tmp/vmkit-test-%s-XXXXXX", name);
    return n > 0 && (size_t)n < size && mkdtemp(dir) ? 0 : -1;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

int tf_remove_tree(const char *dir)
{
    /* Depth first, so a directory is empty when its turn comes; links are not followed. */
    return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

vmk_config *tf_valid_config(const char *kernel)
{
    vmk_config *cfg = vmk_config_new();
    assert_non_null(cfg);
    assert_int_equal(vmk_config_set_boot_loader(cfg, vmk_linux_boot_loader_new(kernel)), VMK_OK);
    assert_int_equal(vmk_config_set_memory_size(cfg, 64ULL << 20), VMK_OK);
    return cfg;
}

void tf_expect_valid(const vmk_config *cfg)
{
    vmk_error *err = NULL;
    if (vmk_config_validate(cfg, &err) != VMK_OK)
        fail_msg("validation failed: %s", err ? vmk_error_message(err) : "?");
}

void tf_expect_invalid(const vmk_config *cfg, const char *const *fragments)
{
    vmk_error *err = NULL;
    assert_int_equal(vmk_config_validate(cfg, &err), VMK_ERR_INVALID_CONFIG);
    assert_non_null(err);
    assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_CONFIG);
    const char *msg = vmk_error_message(err);
    for (; *fragments; fragments++) {
        if (!strstr(msg, *fragments))
            fail_msg("message '%s' lacks '%s'", msg, *fragments);
    }
    vmk_error_free(err);
}

void tf_expect_vm_copies(vmk_config *cfg)
{
    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    assert_non_null(vm);
    assert_null(err);
    vmk_config_free(cfg);
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    vmk_vm_free(vm);
}
