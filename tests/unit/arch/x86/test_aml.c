/* The AML builder: encodings checked byte for byte against the ACPI spec. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/aml.h"

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static void expect_bytes(const struct aml_buf *b, const uint8_t *want, size_t n)
{
    assert_int_equal(aml_status(b), 0);
    assert_int_equal(b->len, n);
    assert_memory_equal(b->data, want, n);
}

static void expect_at(const uint8_t *got, const uint8_t *want, size_t n)
{
    assert_memory_equal(got, want, n);
}

static void expect_pkg_length(uint32_t value, const uint8_t *want, size_t n)
{
    uint8_t out[4] = { 0 };
    assert_int_equal(aml_encode_pkg_length(out, value), n);
    assert_memory_equal(out, want, n);
}

static void test_pkg_length_encoding(void **state)
{
    expect_pkg_length(0, BYTES(0x00));
    expect_pkg_length(63, BYTES(0x3F));
    expect_pkg_length(64, BYTES(0x40, 0x04));
    expect_pkg_length(0x1234 & 0xFFF, BYTES(0x44, 0x23));
    expect_pkg_length(4095, BYTES(0x4F, 0xFF));
    expect_pkg_length(4096, BYTES(0x80, 0x00, 0x01));
    expect_pkg_length(0xFFFFF, BYTES(0x8F, 0xFF, 0xFF));
    expect_pkg_length(1u << 20, BYTES(0xC0, 0x00, 0x00, 0x01));
    expect_pkg_length(AML_PKG_LENGTH_MAX, BYTES(0xCF, 0xFF, 0xFF, 0xFF));
    uint8_t out[4];
    assert_int_equal(aml_encode_pkg_length(out, AML_PKG_LENGTH_MAX + 1), 0);
    assert_int_equal(aml_encode_pkg_length(out, UINT32_MAX), 0);
}

/* Scope(\_SB) { body } with body - 5 bytes of filler after the 5-byte name: the
 * PkgLength counts itself, so it grows a byte exactly where the total crosses a limit. */
static void check_scope_pkg_length(size_t body, const uint8_t *want_pkg, size_t pkg_n)
{
    struct aml_buf b;
    aml_init(&b);
    uint8_t *filler = calloc(1, body);
    assert_non_null(filler);
    struct aml_mark m = aml_scope_begin(&b, "\\_SB");
    aml_append(&b, filler, body - 5);
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), 0);
    assert_int_equal(b.len, 1 + pkg_n + body);
    assert_int_equal(b.data[0], 0x10);
    assert_memory_equal(b.data + 1, want_pkg, pkg_n);
    assert_memory_equal(b.data + 1 + pkg_n, "\\_SB_", 5);
    free(filler);
    aml_free(&b);
}

static void test_pkg_length_in_terms(void **state)
{
    check_scope_pkg_length(62, BYTES(0x3F));                         /* 62 + 1 = 63: one byte */
    check_scope_pkg_length(63, BYTES(0x41, 0x04));                   /* 63 + 2 = 65 */
    check_scope_pkg_length(4093, BYTES(0x4F, 0xFF));                 /* 4093 + 2 = 4095 */
    check_scope_pkg_length(4094, BYTES(0x81, 0x00, 0x01));           /* 4094 + 3 = 4097 */
    check_scope_pkg_length((1u << 20) - 4, BYTES(0x8F, 0xFF, 0xFF)); /* 0xFFFFF */
    check_scope_pkg_length((1u << 20) - 3, BYTES(0xC1, 0x00, 0x00, 0x01)); /* + 4 */
    check_scope_pkg_length(1u << 20, BYTES(0xC4, 0x00, 0x00, 0x01));
}

static void test_eisaid(void **state)
{
    uint32_t v = 0;
    assert_int_equal(aml_eisaid_value("PNP0501", &v), 0);
    assert_int_equal(v, 0x0105D041);
    assert_int_equal(aml_eisaid_value("PNP0B00", &v), 0);
    assert_int_equal(v, 0x000BD041);
    assert_int_equal(aml_eisaid_value("PNP0C0C", &v), 0);
    assert_int_equal(v, 0x0C0CD041);

    struct aml_buf b;
    aml_init(&b);
    aml_eisaid(&b, "PNP0501");
    expect_bytes(&b, BYTES(0x0C, 0x41, 0xD0, 0x05, 0x01));
    aml_free(&b);

    const char *bad[] = { "pnp0501", "PNP050",  "PNP05011", "PNP05G1",
                          "PNP05a1", "1NP0501", "",         "P@P0501" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(aml_eisaid_value(bad[i], &v), -EINVAL);
        aml_init(&b);
        aml_eisaid(&b, bad[i]);
        assert_int_equal(aml_status(&b), -EINVAL);
        aml_free(&b);
    }
    assert_int_equal(aml_eisaid_value(NULL, &v), -EINVAL);
    assert_int_equal(aml_eisaid_value("PNP0501", NULL), -EINVAL);
    aml_init(&b);
    aml_eisaid(&b, NULL);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);
}

static void expect_integer(uint64_t value, const uint8_t *want, size_t n)
{
    struct aml_buf b;
    aml_init(&b);
    aml_integer(&b, value);
    expect_bytes(&b, want, n);
    aml_free(&b);
}

static void test_integer_shortest_form(void **state)
{
    expect_integer(0, BYTES(0x00));
    expect_integer(1, BYTES(0x01));
    expect_integer(2, BYTES(0x0A, 0x02));
    expect_integer(0xFF, BYTES(0x0A, 0xFF));
    expect_integer(0x100, BYTES(0x0B, 0x00, 0x01));
    expect_integer(0xFFFF, BYTES(0x0B, 0xFF, 0xFF));
    expect_integer(0x10000, BYTES(0x0C, 0x00, 0x00, 0x01, 0x00));
    expect_integer(0xFFFFFFFF, BYTES(0x0C, 0xFF, 0xFF, 0xFF, 0xFF));
    expect_integer(0x100000000ULL, BYTES(0x0E, 0, 0, 0, 0, 1, 0, 0, 0));
    expect_integer(0x0123456789ABCDEFULL,
                   BYTES(0x0E, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01));
    expect_integer(UINT64_MAX, BYTES(0x0E, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF));
}

static void expect_name(const char *path, const uint8_t *want, size_t n)
{
    struct aml_buf b;
    aml_init(&b);
    aml_name_string(&b, path);
    expect_bytes(&b, want, n);
    aml_free(&b);
}

static void test_name_strings(void **state)
{
    expect_name("_S5", BYTES('_', 'S', '5', '_'));
    expect_name("A", BYTES('A', '_', '_', '_'));
    expect_name("COM1", BYTES('C', 'O', 'M', '1'));
    expect_name("\\_S5", BYTES('\\', '_', 'S', '5', '_'));
    expect_name("\\", BYTES('\\', 0x00));
    expect_name("^^X1", BYTES('^', '^', 'X', '1', '_', '_'));
    expect_name("\\_SB.COM1", BYTES('\\', 0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'));
    expect_name("_SB.PCI0.ISA",
                BYTES(0x2F, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I', 'S', 'A', '_'));

    const char *bad[] = { "",         "1ABC", "ABCDE", "a",    "_SB.", ".X",
                          "\\_SB..X", "A-B",  "\\^A",  "^\\A", "A B",  "_S\xc3" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct aml_buf b;
        aml_init(&b);
        aml_name_string(&b, bad[i]);
        assert_int_equal(aml_status(&b), -EINVAL);
        assert_int_equal(b.len, 0);
        aml_free(&b);
    }
    struct aml_buf b;
    aml_init(&b);
    aml_name_string(&b, NULL);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);
}

static void test_name_and_string(void **state)
{
    struct aml_buf b;
    aml_init(&b);
    aml_name(&b, "_UID");
    aml_integer(&b, 1);
    aml_name(&b, "STR");
    aml_string(&b, "ab");
    expect_bytes(
        &b, BYTES(0x08, '_', 'U', 'I', 'D', 0x01, 0x08, 'S', 'T', 'R', '_', 0x0D, 'a', 'b', 0x00));
    aml_free(&b);

    aml_init(&b);
    aml_string(&b, "caf\xc3\xa9");
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);
    aml_init(&b);
    aml_string(&b, NULL);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);
}

static void test_nested_scopes(void **state)
{
    /* Scope(\_SB) { Device(COM1) { Name(_UID, One) } } */
    struct aml_buf b;
    aml_init(&b);
    struct aml_mark sb = aml_scope_begin(&b, "\\_SB");
    struct aml_mark dev = aml_device_begin(&b, "COM1");
    aml_name(&b, "_UID");
    aml_integer(&b, 1);
    aml_end(&b, dev);
    aml_end(&b, sb);
    /* Device body: name 4 + Name term 6 = 10, PkgLength 11. Scope body: name 5 +
     * device 2 + 1 + 10 = 18, PkgLength 19. */
    expect_bytes(&b, BYTES(0x10, 19, '\\', '_', 'S', 'B', '_', 0x5B, 0x82, 11, 'C', 'O', 'M', '1',
                           0x08, '_', 'U', 'I', 'D', 0x01));
    aml_free(&b);

    /* An inner term that grows to a 2-byte PkgLength makes the outer one count it. */
    aml_init(&b);
    sb = aml_scope_begin(&b, "\\_SB");
    dev = aml_device_begin(&b, "DEV");
    uint8_t filler[100] = { 0 };
    aml_append(&b, filler, sizeof(filler));
    aml_end(&b, dev);
    aml_end(&b, sb);
    assert_int_equal(aml_status(&b), 0);
    /* Device: 4 + 100 = 104 + 2 = 106 (0x6A). Scope: 5 + 2 + 2 + 104 = 113 + 2 = 115. */
    assert_int_equal(b.len, 1 + 2 + 113);
    expect_at(b.data, BYTES(0x10, 0x43, 0x07));
    expect_at(b.data + 8, BYTES(0x5B, 0x82, 0x4A, 0x06, 'D', 'E', 'V', '_'));
    aml_free(&b);
}

static void test_method_and_package(void **state)
{
    struct aml_buf b;
    aml_init(&b);
    struct aml_mark m = aml_method_begin(&b, "_STA", 0, false);
    aml_return_integer(&b, 0x0F);
    aml_end(&b, m);
    expect_bytes(&b, BYTES(0x14, 9, '_', 'S', 'T', 'A', 0x00, 0xA4, 0x0A, 0x0F));
    aml_free(&b);

    aml_init(&b);
    m = aml_method_begin(&b, "FOO", 7, true);
    aml_end(&b, m);
    expect_bytes(&b, BYTES(0x14, 6, 'F', 'O', 'O', '_', 0x0F));
    aml_free(&b);

    aml_init(&b);
    m = aml_method_begin(&b, "FOO", 8, false);
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    /* Name(\_S5, Package(4){5, 5, 0, 0}) */
    aml_init(&b);
    aml_name(&b, "\\_S5");
    m = aml_package_begin(&b, 4);
    aml_integer(&b, 5);
    aml_integer(&b, 5);
    aml_integer(&b, 0);
    aml_integer(&b, 0);
    aml_end(&b, m);
    expect_bytes(&b, BYTES(0x08, '\\', '_', 'S', '5', '_', 0x12, 8, 4, 0x0A, 5, 0x0A, 5, 0, 0));
    aml_free(&b);

    aml_init(&b);
    m = aml_package_begin(&b, 256);
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);
}

static void test_buffer_and_resources(void **state)
{
    struct aml_buf b;
    aml_init(&b);
    aml_buffer(&b, BYTES(1, 2, 3));
    aml_buffer(&b, NULL, 0);
    expect_bytes(&b, BYTES(0x11, 6, 0x0A, 3, 1, 2, 3, 0x11, 2, 0x00));
    aml_free(&b);

    /* ResourceTemplate() { IO(Decode16, 0x3F8, 0x3F8, 1, 8) IRQNoFlags() {4} } */
    aml_init(&b);
    struct aml_mark m = aml_resource_template_begin(&b);
    aml_res_io(&b, true, 0x3F8, 0x3F8, 1, 8);
    aml_res_irq_noflags(&b, 4);
    aml_end(&b, m);
    expect_bytes(&b, BYTES(0x11, 16, 0x0A, 13, 0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22,
                           0x10, 0x00, 0x79, 0x00));
    aml_free(&b);

    aml_init(&b);
    m = aml_resource_template_begin(&b);
    aml_res_io(&b, false, 0x70, 0x70, 1, 2);
    aml_res_irq_noflags(&b, 15);
    aml_end(&b, m);
    expect_bytes(&b, BYTES(0x11, 16, 0x0A, 13, 0x47, 0x00, 0x70, 0x00, 0x70, 0x00, 0x01, 0x02, 0x22,
                           0x00, 0x80, 0x79, 0x00));
    aml_free(&b);
}

static void test_resources_reject_bad_input(void **state)
{
    struct aml_buf b;

    aml_init(&b); /* IRQ out of range */
    struct aml_mark m = aml_resource_template_begin(&b);
    aml_res_irq_noflags(&b, 16);
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* min above max */
    m = aml_resource_template_begin(&b);
    aml_res_io(&b, true, 0x3F9, 0x3F8, 1, 8);
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* a descriptor outside a template */
    aml_res_irq_noflags(&b, 4);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* ...or inside a Scope */
    m = aml_scope_begin(&b, "\\_SB");
    aml_res_io(&b, true, 0x70, 0x70, 1, 2);
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* a term inside a template */
    m = aml_resource_template_begin(&b);
    aml_integer(&b, 5);
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);
}

static void test_nesting_errors(void **state)
{
    struct aml_buf b;

    aml_init(&b); /* never closed */
    (void)aml_scope_begin(&b, "\\_SB");
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* closed out of order */
    struct aml_mark outer = aml_scope_begin(&b, "\\_SB");
    struct aml_mark inner = aml_device_begin(&b, "DEV");
    aml_end(&b, outer);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_end(&b, inner);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* closed twice */
    outer = aml_scope_begin(&b, "\\_SB");
    aml_end(&b, outer);
    aml_end(&b, outer);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* too deep */
    struct aml_mark marks[AML_MAX_DEPTH + 1];
    for (int i = 0; i <= AML_MAX_DEPTH; i++)
        marks[i] = aml_scope_begin(&b, "S");
    for (int i = AML_MAX_DEPTH; i >= 0; i--)
        aml_end(&b, marks[i]);
    assert_int_equal(aml_status(&b), -EINVAL);
    aml_free(&b);

    aml_init(&b); /* exactly as deep as allowed */
    for (int i = 0; i < AML_MAX_DEPTH; i++)
        marks[i] = aml_scope_begin(&b, "S");
    for (int i = AML_MAX_DEPTH - 1; i >= 0; i--)
        aml_end(&b, marks[i]);
    assert_int_equal(aml_status(&b), 0);
    aml_free(&b);
}

static void test_errors_are_sticky(void **state)
{
    struct aml_buf b;
    aml_init(&b);
    aml_integer(&b, 2);
    aml_name_string(&b, "bad");
    size_t len = b.len;
    aml_integer(&b, 7);
    aml_name(&b, "GOOD");
    struct aml_mark m = aml_scope_begin(&b, "\\_SB");
    aml_end(&b, m);
    assert_int_equal(aml_status(&b), -EINVAL);
    assert_int_equal(b.len, len);
    aml_free(&b);
    /* aml_free leaves a buffer that can be used again. */
    aml_integer(&b, 0);
    expect_bytes(&b, BYTES(0x00));
    aml_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkg_length_encoding),
        cmocka_unit_test(test_pkg_length_in_terms),
        cmocka_unit_test(test_eisaid),
        cmocka_unit_test(test_integer_shortest_form),
        cmocka_unit_test(test_name_strings),
        cmocka_unit_test(test_name_and_string),
        cmocka_unit_test(test_nested_scopes),
        cmocka_unit_test(test_method_and_package),
        cmocka_unit_test(test_buffer_and_resources),
        cmocka_unit_test(test_resources_reject_bad_input),
        cmocka_unit_test(test_nesting_errors),
        cmocka_unit_test(test_errors_are_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
