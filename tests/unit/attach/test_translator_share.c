#include "attach/translator_share.h"

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

/* A binfmts directory and interpreters of our own, as qemu-user-static lays them out. */
struct fix {
    char dir[64];
    char binfmts[96];
    char bin[96];
};

static void put(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static void add_binfmt(struct fix *f, const char *name, const char *package, const char *interp,
                       const char *magic)
{
    char path[160], text[1024];
    snprintf(path, sizeof(path), "%s/%s", f->binfmts, name);
    snprintf(text, sizeof(text),
             "package %s\ninterpreter %s\nmagic %s\noffset 0\nmask "
             "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff"
             "\\xfe\\xff\\xff\\xff\ncredentials no\nfix_binary yes\n",
             package, interp, magic);
    put(path, text, 0644);
}

#define AARCH64_MAGIC                                                                            \
    "\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00" \
    "\\xb7\\x00"

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/vmkit-translator-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->binfmts, sizeof(f->binfmts), "%s/binfmts", f->dir);
    snprintf(f->bin, sizeof(f->bin), "%s/bin", f->dir);
    assert_int_equal(mkdir(f->binfmts, 0755), 0);
    assert_int_equal(mkdir(f->bin, 0755), 0);
    char p[160], link[160];
    snprintf(p, sizeof(p), "%s/qemu-aarch64-static", f->bin);
    put(p, "#!/bin/false\n", 0755);
    /* Debian's interpreter path is a symlink to the binary: the share holds the binary. */
    snprintf(link, sizeof(link), "%s/aarch64-binfmt-P", f->dir);
    assert_int_equal(symlink(p, link), 0);
    add_binfmt(f, "qemu-aarch64", "qemu-user-static", link, AARCH64_MAGIC);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void test_interpreters_and_register_script(void **state)
{
    struct fix *f = *state;
    struct translator_share t;
    assert_int_equal(translator_share_load(&t, f->binfmts, NULL), VMK_OK);
    assert_int_equal(t.count, 2);
    assert_string_equal(t.entries[0].name, "qemu-aarch64-static");
    assert_non_null(strstr(t.entries[0].path, "/bin/qemu-aarch64-static"));
    assert_true(t.entries[0].read_only);
    assert_string_equal(t.entries[1].name, "register");
    assert_null(t.entries[1].path);
    const char *s = t.entries[1].data;
    assert_int_equal(t.entries[1].size, strlen(s));
    assert_int_equal(strncmp(s, "#!/bin/sh\n", 10), 0);
    /* One registration, with Debian's magic and mask, the binary beside the script, flag F. */
    assert_non_null(strstr(s, "reg qemu-aarch64 0 '" AARCH64_MAGIC "' '\\xff\\xff"));
    assert_non_null(strstr(s, "' qemu-aarch64-static\n"));
    assert_non_null(strstr(s, ":$1:M:$2:$3:$4:$dir/$5:F"));
    translator_share_fini(&t);
}

/* Entries of other packages, with a missing interpreter, or with fields that would break the
 * register line or the script's quoting are left out. */
static void test_unusable_entries_are_left_out(void **state)
{
    struct fix *f = *state;
    char p[160];
    snprintf(p, sizeof(p), "%s/qemu-aarch64-static", f->bin);
    add_binfmt(f, "qemu-other", "something-else", p, AARCH64_MAGIC);
    add_binfmt(f, "qemu-gone", "qemu-user-static", "/nonexistent/qemu-gone-static", AARCH64_MAGIC);
    snprintf(p, sizeof(p), "%s/qemu-evil-static", f->bin);
    put(p, "x", 0755);
    add_binfmt(f, "qemu-evil", "qemu-user-static", p, "\\x7f'; rm -rf / #");
    add_binfmt(f, "qemu-colon", "qemu-user-static", p, "\\x7f:E:");
    struct translator_share t;
    assert_int_equal(translator_share_load(&t, f->binfmts, NULL), VMK_OK);
    assert_int_equal(t.count, 2);
    assert_null(strstr(t.entries[1].data, "qemu-evil"));
    assert_null(strstr(t.entries[1].data, "qemu-gone"));
    assert_null(strstr(t.entries[1].data, "qemu-other"));
    translator_share_fini(&t);
}

static void test_not_installed(void **state)
{
    struct fix *f = *state;
    char p[160];
    snprintf(p, sizeof(p), "%s/qemu-aarch64", f->binfmts);
    assert_int_equal(unlink(p), 0);
    struct translator_share t;
    vmk_error *err = NULL;
    assert_int_equal(translator_share_load(&t, f->binfmts, &err), VMK_ERR_UNSUPPORTED);
    assert_non_null(strstr(vmk_error_message(err), "qemu-user-static"));
    vmk_error_free(err);
    assert_int_equal(translator_share_load(&t, "/nonexistent", NULL), VMK_ERR_UNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_interpreters_and_register_script, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unusable_entries_are_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_installed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
