#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/debug_exit.h"
#include "arch/x86/layout.h"
#include "core/bus.h"

struct fixture {
    unsigned calls;
    uint32_t last;
    unsigned resets, power_offs;
    struct machine_events ev;
    struct debug_exit *d;
};

static void on_debug_exit(void *ctx, uint32_t code)
{
    struct fixture *f = ctx;
    f->calls++;
    f->last = code;
}

static void on_reset(void *ctx)
{
    ((struct fixture *)ctx)->resets++;
}

static void on_power_off(void *ctx)
{
    ((struct fixture *)ctx)->power_offs++;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->ev = (struct machine_events){
        .power_off = on_power_off, .reset = on_reset, .debug_exit = on_debug_exit, .ctx = f
    };
    f->d = debug_exit_new(&f->ev);
    if (!f->d) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    debug_exit_free(f->d);
    free(f);
    return 0;
}

static void test_value_per_size(void **state)
{
    struct fixture *f = *state;
    const uint8_t b[4] = { 0x78, 0x56, 0x34, 0x12 };
    debug_exit_bus_ops.write(f->d, 0, b, 1);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->last, 0x78);
    debug_exit_bus_ops.write(f->d, 0, b, 2);
    assert_int_equal(f->calls, 2);
    assert_int_equal(f->last, 0x5678);
    debug_exit_bus_ops.write(f->d, 0, b, 4);
    assert_int_equal(f->calls, 3);
    assert_int_equal(f->last, 0x12345678);
    /* Zero is a value too (a test that passed). */
    const uint8_t z[4] = { 0 };
    debug_exit_bus_ops.write(f->d, 0, z, 4);
    assert_int_equal(f->calls, 4);
    assert_int_equal(f->last, 0);
    /* Other offsets inside the port pass the value unshifted. */
    debug_exit_bus_ops.write(f->d, 2, b, 2);
    assert_int_equal(f->calls, 5);
    assert_int_equal(f->last, 0x5678);
    /* An 8-byte write passes its low 32 bits. */
    const uint8_t w[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    debug_exit_bus_ops.write(f->d, 0, w, 8);
    assert_int_equal(f->last, 0x04030201);
    assert_int_equal(f->resets + f->power_offs, 0);
}

static void test_reads(void **state)
{
    struct fixture *f = *state;
    const unsigned sizes[] = { 1, 2, 4, 8 };
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint8_t d[8];
        memset(d, 0x11, sizeof(d));
        debug_exit_bus_ops.read(f->d, 0, d, sizes[s]);
        for (unsigned i = 0; i < sizeof(d); i++)
            assert_int_equal(d[i], i < sizes[s] ? 0xff : 0x11);
    }
    assert_int_equal(f->calls, 0);
}

static void test_no_callback(void **state)
{
    (void)state;
    const uint8_t b[4] = { 1, 0, 0, 0 };
    struct debug_exit *d = debug_exit_new(NULL);
    assert_non_null(d);
    debug_exit_bus_ops.write(d, 0, b, 4);
    debug_exit_free(d);
    struct machine_events none = { 0 };
    d = debug_exit_new(&none);
    assert_non_null(d);
    debug_exit_bus_ops.write(d, 0, b, 1);
    debug_exit_free(d);
    debug_exit_free(NULL);
}

static void test_bus_wiring(void **state)
{
    struct fixture *f = *state;
    struct bus bus;
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, X86_DEBUG_EXIT_PORT, 4, &debug_exit_bus_ops, f->d), 0);
    uint8_t v8 = 0x31;
    assert_true(bus_write(&bus, X86_DEBUG_EXIT_PORT, &v8, 1));
    assert_int_equal(f->last, 0x31);
    uint32_t v32 = 0xdeadbeef;
    assert_true(bus_write(&bus, X86_DEBUG_EXIT_PORT, &v32, 4));
    assert_int_equal(f->last, 0xdeadbeef);
    assert_int_equal(f->calls, 2);
    v32 = 0;
    assert_true(bus_read(&bus, X86_DEBUG_EXIT_PORT, &v32, 4));
    assert_int_equal(v32, 0xffffffff);
    /* The port before it is not ours. */
    assert_false(bus_write(&bus, X86_DEBUG_EXIT_PORT - 1, &v8, 1));
    assert_int_equal(f->calls, 2);
    bus_destroy(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_value_per_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads, setup, teardown),
        cmocka_unit_test(test_no_callback),
        cmocka_unit_test_setup_teardown(test_bus_wiring, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
