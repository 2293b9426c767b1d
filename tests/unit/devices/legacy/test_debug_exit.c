#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/legacy/debug_exit.h"
#include "arch/x86/layout.h"
#include "core/bus.h"
#include "event_recorder.h"

struct fixture {
    struct event_record seen;
    struct machine_events ev;
    struct debug_exit *d;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->ev = events_recorder(&f->seen);
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
    const uint8_t z[4] = { 0 };
    const uint8_t w[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    const struct {
        unsigned offset, size;
        const uint8_t *data;
        uint32_t want;
    } writes[] = {
        { 0, 1, b, 0x78 },
        { 0, 2, b, 0x5678 },
        { 0, 4, b, 0x12345678 },
        /* Zero is a value too (a test that passed). */
        { 0, 4, z, 0 },
        /* Other offsets inside the port pass the value unshifted. */
        { 2, 2, b, 0x5678 },
        /* An 8-byte write passes its low 32 bits. */
        { 0, 8, w, 0x04030201 },
    };
    for (unsigned i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        debug_exit_bus_ops.write(f->d, writes[i].offset, writes[i].data, writes[i].size);
        assert_int_equal(f->seen.debug_exits, i + 1);
        assert_int_equal(f->seen.code, writes[i].want);
    }
    assert_int_equal(f->seen.resets + f->seen.power_offs, 0);
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
    assert_int_equal(f->seen.debug_exits, 0);
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
    assert_int_equal(f->seen.code, 0x31);
    uint32_t v32 = 0xdeadbeef;
    assert_true(bus_write(&bus, X86_DEBUG_EXIT_PORT, &v32, 4));
    assert_int_equal(f->seen.code, 0xdeadbeef);
    assert_int_equal(f->seen.debug_exits, 2);
    v32 = 0;
    assert_true(bus_read(&bus, X86_DEBUG_EXIT_PORT, &v32, 4));
    assert_int_equal(v32, 0xffffffff);
    /* The port before it is not ours. */
    assert_false(bus_write(&bus, X86_DEBUG_EXIT_PORT - 1, &v8, 1));
    assert_int_equal(f->seen.debug_exits, 2);
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
