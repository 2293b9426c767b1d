#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "devices/legacy/cmos_rtc.h"
#include "arch/x86/layout.h"
#include "core/bus.h"

enum {
    SEC = 0x00,
    ALARM_SEC = 0x01,
    MIN = 0x02,
    HOUR = 0x04,
    WDAY = 0x06,
    MDAY = 0x07,
    MON = 0x08,
    YEAR = 0x09,
    REG_A = 0x0a,
    REG_B = 0x0b,
    REG_C = 0x0c,
    REG_D = 0x0d,
    CENTURY = 0x32
};

#define T_2026_11_25_134507 ((time_t)1795614307) /* a Wednesday */

struct fixture {
    time_t now;
    struct cmos_rtc *rtc;
};

static time_t fake_now(void *ctx)
{
    return ((struct fixture *)ctx)->now;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->now = T_2026_11_25_134507;
    f->rtc = cmos_rtc_new(fake_now, f);
    if (!f->rtc) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cmos_rtc_free(f->rtc);
    free(f);
    return 0;
}

static uint8_t rd(struct cmos_rtc *rtc, uint8_t idx)
{
    uint8_t v = 0;
    cmos_rtc_bus_ops.write(rtc, 0, &idx, 1);
    cmos_rtc_bus_ops.read(rtc, 1, &v, 1);
    return v;
}

static void wr(struct cmos_rtc *rtc, uint8_t idx, uint8_t v)
{
    cmos_rtc_bus_ops.write(rtc, 0, &idx, 1);
    cmos_rtc_bus_ops.write(rtc, 1, &v, 1);
}

static void test_fixed_time_bcd(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f->rtc, REG_B), 0x02);
    assert_int_equal(rd(f->rtc, SEC), 0x07);
    assert_int_equal(rd(f->rtc, MIN), 0x45);
    assert_int_equal(rd(f->rtc, HOUR), 0x13);
    assert_int_equal(rd(f->rtc, WDAY), 0x04); /* Wednesday, Sunday = 1 */
    assert_int_equal(rd(f->rtc, MDAY), 0x25);
    assert_int_equal(rd(f->rtc, MON), 0x11);
    assert_int_equal(rd(f->rtc, YEAR), 0x26);
    assert_int_equal(rd(f->rtc, CENTURY), 0x20);

    /* The clock follows the host. */
    f->now += 61;
    assert_int_equal(rd(f->rtc, SEC), 0x08);
    assert_int_equal(rd(f->rtc, MIN), 0x46);
}

static void test_fixed_time_binary(void **state)
{
    struct fixture *f = *state;
    wr(f->rtc, REG_B, 0x06); /* binary, 24h */
    assert_int_equal(rd(f->rtc, SEC), 7);
    assert_int_equal(rd(f->rtc, MIN), 45);
    assert_int_equal(rd(f->rtc, HOUR), 13);
    assert_int_equal(rd(f->rtc, WDAY), 4);
    assert_int_equal(rd(f->rtc, MDAY), 25);
    assert_int_equal(rd(f->rtc, MON), 11);
    assert_int_equal(rd(f->rtc, YEAR), 26);
    assert_int_equal(rd(f->rtc, CENTURY), 20);
}

static void test_twelve_hour(void **state)
{
    struct fixture *f = *state;
    wr(f->rtc, REG_B, 0x00);                  /* BCD, 12h */
    assert_int_equal(rd(f->rtc, HOUR), 0x81); /* 1 PM */
    wr(f->rtc, REG_B, 0x04);                  /* binary, 12h */
    assert_int_equal(rd(f->rtc, HOUR), 0x81);

    f->now = T_2026_11_25_134507 - 13 * 3600 - 15 * 60; /* 00:30:07 */
    wr(f->rtc, REG_B, 0x00);
    assert_int_equal(rd(f->rtc, HOUR), 0x12); /* 12 AM */
    f->now += 12 * 3600;                      /* 12:30:07 */
    assert_int_equal(rd(f->rtc, HOUR), 0x92); /* 12 PM */
    f->now -= 3 * 3600;                       /* 09:30:07 */
    assert_int_equal(rd(f->rtc, HOUR), 0x09);
    f->now += 14 * 3600; /* 23:30:07 */
    assert_int_equal(rd(f->rtc, HOUR), 0x91);
    wr(f->rtc, REG_B, 0x02);
    assert_int_equal(rd(f->rtc, HOUR), 0x23);
}

static void test_status_registers(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f->rtc, REG_A), 0x26);
    assert_int_equal(rd(f->rtc, REG_C), 0x00);
    assert_int_equal(rd(f->rtc, REG_D), 0x80);
    /* UIP cannot be written; C and D are read-only. */
    wr(f->rtc, REG_A, 0xa6);
    assert_int_equal(rd(f->rtc, REG_A), 0x26);
    wr(f->rtc, REG_C, 0xff);
    wr(f->rtc, REG_D, 0x00);
    assert_int_equal(rd(f->rtc, REG_C), 0x00);
    assert_int_equal(rd(f->rtc, REG_D), 0x80);
    /* The NMI-mask bit of the index is ignored. */
    assert_int_equal(rd(f->rtc, 0x80 | SEC), 0x07);
    assert_int_equal(rd(f->rtc, 0x80 | REG_D), 0x80);
    /* The index port reads as nothing. */
    uint8_t v = 0;
    cmos_rtc_bus_ops.read(f->rtc, 0, &v, 1);
    assert_int_equal(v, 0xff);
}

static void test_ram(void **state)
{
    struct fixture *f = *state;
    for (unsigned i = 0x0e; i < 0x80; i++) {
        if (i == CENTURY)
            continue;
        wr(f->rtc, (uint8_t)i, (uint8_t)(i ^ 0xa5));
    }
    for (unsigned i = 0x0e; i < 0x80; i++) {
        if (i == CENTURY)
            continue;
        assert_int_equal(rd(f->rtc, (uint8_t)i), (uint8_t)(i ^ 0xa5));
    }
    /* Bit 7 of the index does not reach a second bank. */
    wr(f->rtc, 0x80 | 0x40, 0x77);
    assert_int_equal(rd(f->rtc, 0x40), 0x77);
    /* Alarm registers are storage too. */
    wr(f->rtc, ALARM_SEC, 0x30);
    assert_int_equal(rd(f->rtc, ALARM_SEC), 0x30);
    /* The time did not move. */
    assert_int_equal(rd(f->rtc, SEC), 0x07);
    assert_int_equal(rd(f->rtc, YEAR), 0x26);
}

static void test_guest_sets_time(void **state)
{
    struct fixture *f = *state;
    /* Linux's mc146818_set_time: SET, write the fields, clear SET. */
    wr(f->rtc, REG_B, 0x82);
    wr(f->rtc, YEAR, 0x30);
    wr(f->rtc, MON, 0x01);
    wr(f->rtc, MDAY, 0x02);
    wr(f->rtc, HOUR, 0x03);
    wr(f->rtc, MIN, 0x04);
    wr(f->rtc, SEC, 0x05);
    wr(f->rtc, CENTURY, 0x20);
    /* While SET is on the clock stands still and reads what was written. */
    f->now += 100;
    assert_int_equal(rd(f->rtc, SEC), 0x05);
    assert_int_equal(rd(f->rtc, YEAR), 0x30);
    wr(f->rtc, REG_B, 0x02);

    assert_int_equal(rd(f->rtc, SEC), 0x05);
    assert_int_equal(rd(f->rtc, MIN), 0x04);
    assert_int_equal(rd(f->rtc, HOUR), 0x03);
    assert_int_equal(rd(f->rtc, MDAY), 0x02);
    assert_int_equal(rd(f->rtc, MON), 0x01);
    assert_int_equal(rd(f->rtc, YEAR), 0x30);
    assert_int_equal(rd(f->rtc, CENTURY), 0x20);
    assert_int_equal(rd(f->rtc, WDAY), 0x04); /* 2030-01-02 is a Wednesday */
    /* And it runs on from there. */
    f->now += 10;
    assert_int_equal(rd(f->rtc, SEC), 0x15);

    /* A single field written without SET keeps the others. */
    wr(f->rtc, MIN, 0x59);
    assert_int_equal(rd(f->rtc, MIN), 0x59);
    assert_int_equal(rd(f->rtc, HOUR), 0x03);
    assert_int_equal(rd(f->rtc, SEC), 0x15);
    assert_int_equal(rd(f->rtc, YEAR), 0x30);
}

static void test_guest_sets_time_binary_12h(void **state)
{
    struct fixture *f = *state;
    wr(f->rtc, REG_B, 0x84);     /* SET, binary, 12h */
    wr(f->rtc, HOUR, 0x80 | 11); /* 11 PM */
    wr(f->rtc, MIN, 58);
    wr(f->rtc, SEC, 30);
    wr(f->rtc, MDAY, 31);
    wr(f->rtc, MON, 12);
    wr(f->rtc, YEAR, 99);
    wr(f->rtc, CENTURY, 19);
    wr(f->rtc, REG_B, 0x04);
    f->now += 100; /* across midnight and the century */
    wr(f->rtc, REG_B, 0x06);
    assert_int_equal(rd(f->rtc, HOUR), 0);
    assert_int_equal(rd(f->rtc, MIN), 0);
    assert_int_equal(rd(f->rtc, SEC), 10);
    assert_int_equal(rd(f->rtc, MDAY), 1);
    assert_int_equal(rd(f->rtc, MON), 1);
    assert_int_equal(rd(f->rtc, YEAR), 0);
    assert_int_equal(rd(f->rtc, CENTURY), 20);
}

static void test_garbage_time(void **state)
{
    struct fixture *f = *state;
    const uint8_t regs[] = { SEC, MIN, HOUR, WDAY, MDAY, MON, YEAR, CENTURY };
    const uint8_t modes[] = { 0x02, 0x00, 0x04, 0x06 };
    for (size_t m = 0; m < sizeof(modes); m++) {
        for (unsigned v = 0; v < 256; v += 17) {
            wr(f->rtc, REG_B, 0x80 | modes[m]);
            for (size_t r = 0; r < sizeof(regs); r++)
                wr(f->rtc, regs[r], (uint8_t)v);
            wr(f->rtc, REG_B, modes[m]);
            for (size_t r = 0; r < sizeof(regs); r++)
                rd(f->rtc, regs[r]);
            /* Without SET too. */
            wr(f->rtc, regs[v % sizeof(regs)], (uint8_t)v);
        }
    }
    /* Still a valid BCD clock. */
    wr(f->rtc, REG_B, 0x02);
    uint8_t s = rd(f->rtc, SEC);
    assert_true((s & 0x0f) <= 9 && (s >> 4) <= 5);
    uint8_t mon = rd(f->rtc, MON);
    assert_true(mon >= 0x01 && mon <= 0x12);
}

static void test_all_accesses(void **state)
{
    struct fixture *f = *state;
    const unsigned sizes[] = { 1, 2, 4, 8 };
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (unsigned off = 0; off < 4; off++) {
            uint8_t d[8];
            memset(d, 0x11, sizeof(d));
            cmos_rtc_bus_ops.read(f->rtc, off, d, sizes[s]);
            for (unsigned b = 1; b < sizes[s]; b++)
                assert_int_equal(d[b], 0xff);
            for (unsigned b = sizes[s]; b < sizeof(d); b++)
                assert_int_equal(d[b], 0x11);
            const uint8_t w[8] = { 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47 };
            cmos_rtc_bus_ops.write(f->rtc, off, w, sizes[s]);
        }
    }
    /* A 16-bit write to the index port sets the index from its low byte. */
    const uint8_t w2[2] = { 0x50, 0x00 };
    cmos_rtc_bus_ops.write(f->rtc, 0, w2, 2);
    uint8_t v = 0x3c;
    cmos_rtc_bus_ops.write(f->rtc, 1, &v, 1);
    assert_int_equal(rd(f->rtc, 0x50), 0x3c);
}

static void test_host_clock(void **state)
{
    (void)state;
    struct cmos_rtc *rtc = cmos_rtc_new(NULL, NULL);
    assert_non_null(rtc);
    time_t before = time(NULL);
    uint8_t year = rd(rtc, YEAR);
    time_t after = time(NULL);
    struct tm tb, ta;
    assert_non_null(gmtime_r(&before, &tb));
    assert_non_null(gmtime_r(&after, &ta));
    int y = (year >> 4) * 10 + (year & 0x0f);
    /* Either side of a new year starting between the calls. */
    assert_true(y == tb.tm_year % 100 || y == ta.tm_year % 100);
    assert_int_equal(rd(rtc, CENTURY), 0x20);
    cmos_rtc_free(rtc);
    cmos_rtc_free(NULL);
}

static void test_bus_wiring(void **state)
{
    struct fixture *f = *state;
    struct bus bus;
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, X86_RTC_PORT, 2, &cmos_rtc_bus_ops, f->rtc), 0);
    uint8_t v = 0x80 | MIN; /* as Linux writes it, NMI bit and all */
    assert_true(bus_write(&bus, X86_RTC_PORT, &v, 1));
    assert_true(bus_read(&bus, X86_RTC_PORT + 1, &v, 1));
    assert_int_equal(v, 0x45);
    v = 0x20;
    assert_true(bus_write(&bus, X86_RTC_PORT, &v, 1));
    v = 0xab;
    assert_true(bus_write(&bus, X86_RTC_PORT + 1, &v, 1));
    assert_int_equal(rd(f->rtc, 0x20), 0xab);
    bus_destroy(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fixed_time_bcd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_time_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twelve_hour, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_registers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_sets_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_sets_time_binary_12h, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_accesses, setup, teardown),
        cmocka_unit_test(test_host_clock),
        cmocka_unit_test_setup_teardown(test_bus_wiring, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
