#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "devices/legacy/i8042.h"
#include "arch/x86/layout.h"
#include "core/bus.h"
#include "event_recorder.h"

#define STS_OBF     0x01
#define STS_IBF     0x02
#define STS_SYS     0x04
#define STS_CMD     0x08
#define STS_UNLOCK  0x10
#define STS_AUX     0x20
#define STS_TIMEOUT 0x40

struct fixture {
    struct event_record seen;
    struct machine_events ev;
    struct i8042 *k;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->ev = events_recorder(&f->seen);
    f->k = i8042_new(&f->ev);
    if (!f->k) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    i8042_free(f->k);
    free(f);
    return 0;
}

static uint8_t status(struct i8042 *k)
{
    uint8_t v = 0;
    i8042_cmd_bus_ops.read(k, 0, &v, 1);
    return v;
}

static uint8_t data_in(struct i8042 *k)
{
    uint8_t v = 0;
    i8042_data_bus_ops.read(k, 0, &v, 1);
    return v;
}

static void cmd(struct i8042 *k, uint8_t c)
{
    i8042_cmd_bus_ops.write(k, 0, &c, 1);
}

static void data_out(struct i8042 *k, uint8_t v)
{
    i8042_data_bus_ops.write(k, 0, &v, 1);
}

/* Sends a command and reads its one-byte answer, checking OBF on the way. */
static uint8_t query(struct i8042 *k, uint8_t c)
{
    cmd(k, c);
    assert_true(status(k) & STS_OBF);
    uint8_t v = data_in(k);
    assert_false(status(k) & STS_OBF);
    return v;
}

static void test_self_test(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(query(f->k, 0xaa), 0x55);
    /* Linux retries a few times; every try answers the same. */
    assert_int_equal(query(f->k, 0xaa), 0x55);
}

static void test_command_byte_round_trip(void **state)
{
    struct fixture *f = *state;
    uint8_t ctr = query(f->k, 0x20);
    assert_true(ctr & 0x04); /* system flag */
    cmd(f->k, 0x60);
    assert_false(status(f->k) & STS_OBF);
    data_out(f->k, 0x47);
    assert_false(status(f->k) & STS_OBF); /* no answer, no stray byte */
    assert_int_equal(query(f->k, 0x20), 0x47);
    /* Reading twice gives the same value (Linux wants a stable CTR). */
    assert_int_equal(query(f->k, 0x20), 0x47);

    /* Enable/disable commands flip the CTR bits Linux checks. */
    cmd(f->k, 0xa7);
    assert_int_equal(query(f->k, 0x20) & 0x20, 0x20);
    cmd(f->k, 0xa8);
    assert_int_equal(query(f->k, 0x20) & 0x20, 0);
    cmd(f->k, 0xad);
    assert_int_equal(query(f->k, 0x20) & 0x10, 0x10);
    cmd(f->k, 0xae);
    assert_int_equal(query(f->k, 0x20) & 0x10, 0);

    /* The rest of the internal RAM round-trips too. */
    cmd(f->k, 0x65);
    data_out(f->k, 0x99);
    assert_int_equal(query(f->k, 0x25), 0x99);
    assert_int_equal(f->seen.resets, 0);
}

static void test_reset_command(void **state)
{
    struct fixture *f = *state;
    cmd(f->k, 0xfe);
    assert_int_equal(f->seen.resets, 1);
    assert_int_equal(f->seen.power_offs, 0);
    /* Pulse commands with bit 0 set do not reset; others with it clear do. */
    cmd(f->k, 0xff);
    cmd(f->k, 0xf1);
    cmd(f->k, 0xfd);
    assert_int_equal(f->seen.resets, 1);
    cmd(f->k, 0xf0);
    assert_int_equal(f->seen.resets, 2);
    cmd(f->k, 0xfa);
    assert_int_equal(f->seen.resets, 3);
}

static void test_output_port_reset(void **state)
{
    struct fixture *f = *state;
    uint8_t out = query(f->k, 0xd0);
    assert_int_equal(out & 0x01, 0x01);
    /* Setting A20 with the reset line high: nothing happens. */
    cmd(f->k, 0xd1);
    data_out(f->k, 0xdf);
    assert_int_equal(f->seen.resets, 0);
    assert_int_equal(query(f->k, 0xd0), 0xdf);
    /* Bit 0 clear pulses reset. */
    cmd(f->k, 0xd1);
    data_out(f->k, 0xde);
    assert_int_equal(f->seen.resets, 1);
    /* The data byte after it is a plain keyboard byte again, not another reset. */
    data_out(f->k, 0xde);
    assert_int_equal(f->seen.resets, 1);
}

static void test_status_bits(void **state)
{
    struct fixture *f = *state;
    uint8_t s = status(f->k);
    assert_int_equal(s & (STS_OBF | STS_IBF), 0);
    assert_true(s & STS_SYS);
    assert_true(s & STS_UNLOCK);
    cmd(f->k, 0xaa);
    s = status(f->k);
    assert_true(s & STS_OBF);
    assert_true(s & STS_CMD); /* last write went to the command port */
    assert_false(s & STS_AUX);
    data_in(f->k);
    data_out(f->k, 0xf4); /* to the absent keyboard */
    s = status(f->k);
    assert_false(s & STS_CMD);
    assert_false(s & STS_IBF);
    /* The system flag follows the command byte. */
    cmd(f->k, 0x60);
    data_out(f->k, 0x00);
    assert_false(status(f->k) & STS_SYS);
}

static void test_absent_devices(void **state)
{
    struct fixture *f = *state;
    /* A keyboard command times out with 0xff, so polling drivers give up. */
    data_out(f->k, 0xf2);
    uint8_t s = status(f->k);
    assert_true(s & STS_OBF);
    assert_true(s & STS_TIMEOUT);
    assert_false(s & STS_AUX);
    assert_int_equal(data_in(f->k), 0xff);
    assert_false(status(f->k) & (STS_OBF | STS_TIMEOUT));

    /* Same for the mouse, flagged as AUX. */
    cmd(f->k, 0xd4);
    data_out(f->k, 0xf2);
    s = status(f->k);
    assert_int_equal(s & (STS_OBF | STS_TIMEOUT | STS_AUX), STS_OBF | STS_TIMEOUT | STS_AUX);
    assert_int_equal(data_in(f->k), 0xff);

    /* Linux's AUX probe: the loop answer lacks the AUX flag ("auxerr")... */
    cmd(f->k, 0xd3);
    data_out(f->k, 0x5a);
    s = status(f->k);
    assert_true(s & STS_OBF);
    assert_false(s & STS_AUX);
    /* ...and the interface test then reports an error code Linux rejects. */
    uint8_t aux = query(f->k, 0xa9);
    assert_true(aux != 0x00 && aux != 0xfa && aux != 0xff);
    uint8_t kbd = query(f->k, 0xab);
    assert_true(kbd != 0x00);

    /* Writing the keyboard output buffer shows the byte as keyboard data. */
    cmd(f->k, 0xd2);
    data_out(f->k, 0x1c);
    s = status(f->k);
    assert_true(s & STS_OBF);
    assert_false(s & (STS_AUX | STS_TIMEOUT));
    assert_int_equal(data_in(f->k), 0x1c);
    /* An empty buffer reads its last byte again. */
    assert_int_equal(data_in(f->k), 0x1c);
    assert_int_equal(f->seen.resets, 0);
}

static void test_unknown_commands(void **state)
{
    struct fixture *f = *state;
    uint8_t ctr = query(f->k, 0x20);
    for (unsigned c = 0; c < 0xf0; c++) {
        if (c == 0xd1)
            continue;
        cmd(f->k, (uint8_t)c);
        data_out(f->k, 0x00); /* whatever it might have waited for */
        data_in(f->k);
        status(f->k);
    }
    assert_int_equal(f->seen.resets, 0);
    /* The controller still works afterwards. */
    cmd(f->k, 0x60);
    data_out(f->k, ctr);
    assert_int_equal(query(f->k, 0x20), ctr);
    assert_int_equal(query(f->k, 0xaa), 0x55);
    /* A command cancels a pending data byte: the next data byte is not a CTR. */
    cmd(f->k, 0x60);
    cmd(f->k, 0xaa);
    data_in(f->k);
    data_out(f->k, 0x00);
    data_in(f->k);
    assert_int_equal(query(f->k, 0x20), ctr);
}

static void test_odd_accesses(void **state)
{
    struct fixture *f = *state;
    const unsigned sizes[] = { 1, 2, 4, 8 };
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (unsigned off = 0; off < 3; off++) {
            uint8_t d[8];
            memset(d, 0x11, sizeof(d));
            i8042_cmd_bus_ops.read(f->k, off, d, sizes[s]);
            for (unsigned b = 1; b < sizes[s]; b++)
                assert_int_equal(d[b], 0xff);
            for (unsigned b = sizes[s]; b < sizeof(d); b++)
                assert_int_equal(d[b], 0x11);
            if (off)
                assert_int_equal(d[0], 0xff);
            i8042_data_bus_ops.read(f->k, off, d, sizes[s]);
            const uint8_t w[8] = { 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe };
            if (off) {
                /* Out of the port's one byte: ignored, so no reset. */
                i8042_cmd_bus_ops.write(f->k, off, w, sizes[s]);
                i8042_data_bus_ops.write(f->k, off, w, sizes[s]);
            }
        }
    }
    assert_int_equal(f->seen.resets, 0);
}

static void test_null_events(void **state)
{
    (void)state;
    struct i8042 *k = i8042_new(NULL);
    assert_non_null(k);
    cmd(k, 0xfe);
    cmd(k, 0xd1);
    data_out(k, 0x00);
    i8042_free(k);

    struct machine_events none = { 0 };
    k = i8042_new(&none);
    assert_non_null(k);
    cmd(k, 0xfe);
    i8042_free(k);
    i8042_free(NULL);
}

static void test_bus_wiring(void **state)
{
    struct fixture *f = *state;
    struct bus bus;
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, X86_I8042_DATA_PORT, 1, &i8042_data_bus_ops, f->k), 0);
    assert_int_equal(bus_add(&bus, X86_I8042_CMD_PORT, 1, &i8042_cmd_bus_ops, f->k), 0);

    uint8_t v = 0xaa;
    assert_true(bus_write(&bus, X86_I8042_CMD_PORT, &v, 1));
    assert_true(bus_read(&bus, X86_I8042_CMD_PORT, &v, 1));
    assert_true(v & STS_OBF);
    assert_true(bus_read(&bus, X86_I8042_DATA_PORT, &v, 1));
    assert_int_equal(v, 0x55);

    /* Linux's reboot=kbd: wait for IBF clear, then 0xfe to port 0x64. */
    assert_true(bus_read(&bus, X86_I8042_CMD_PORT, &v, 1));
    assert_false(v & STS_IBF);
    v = 0xfe;
    assert_true(bus_write(&bus, X86_I8042_CMD_PORT, &v, 1));
    assert_int_equal(f->seen.resets, 1);
    bus_destroy(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_self_test, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_byte_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_port_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absent_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_accesses, setup, teardown),
        cmocka_unit_test(test_null_events),
        cmocka_unit_test_setup_teardown(test_bus_wiring, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
