#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "devices/legacy/acpi_pm.h"
#include "arch/x86/layout.h"
#include "core/bus.h"
#include "event_recorder.h"

#define PM1_STS 0
#define PM1_EN  2
#define PM1_CNT 4
#define PM_TMR  8
#define PWRBTN  0x0100
#define SLP_EN  0x2000

struct fixture {
    uint64_t now_ns;
    struct irq_record sci;
    struct event_record seen;
    struct irq_line line;
    struct machine_events ev;
    struct acpi_pm *pm;
};

static uint64_t fake_now(void *ctx)
{
    return ((struct fixture *)ctx)->now_ns;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->now_ns = 5000000000ull; /* the clock does not start at 0 */
    f->line = irq_recorder(&f->sci, X86_SCI_IRQ);
    f->ev = events_recorder(&f->seen);
    f->pm = acpi_pm_new(&f->line, &f->ev, fake_now, f);
    if (!f->pm) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    acpi_pm_free(f->pm);
    free(f);
    return 0;
}

static uint32_t rd(struct acpi_pm *pm, unsigned off, unsigned size)
{
    uint8_t d[4] = { 0 };
    acpi_pm_bus_ops.read(pm, off, d, size);
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)d[i] << (8 * i);
    return v;
}

static void wr(struct acpi_pm *pm, unsigned off, uint32_t v, unsigned size)
{
    uint8_t d[4];
    for (unsigned i = 0; i < 4; i++)
        d[i] = (uint8_t)(v >> (8 * i));
    acpi_pm_bus_ops.write(pm, off, d, size);
}

static void test_power_button_with_enable(void **state)
{
    struct fixture *f = *state;
    wr(f->pm, PM1_EN, PWRBTN, 2);
    assert_int_equal(rd(f->pm, PM1_EN, 2), PWRBTN);
    assert_false(f->sci.level);
    acpi_pm_press_power_button(f->pm);
    assert_true(f->sci.level);
    assert_int_equal(f->sci.gsi, X86_SCI_IRQ);
    assert_int_equal(f->sci.calls, 1);
    assert_int_equal(rd(f->pm, PM1_STS, 2) & PWRBTN, PWRBTN);
    /* A second press while pending: no new edge. */
    acpi_pm_press_power_button(f->pm);
    assert_int_equal(f->sci.calls, 1);

    /* Writing 0 changes nothing; writing 1 clears. */
    wr(f->pm, PM1_STS, 0, 2);
    assert_true(f->sci.level);
    wr(f->pm, PM1_STS, PWRBTN, 2);
    assert_false(f->sci.level);
    assert_int_equal(f->sci.calls, 2);
    assert_int_equal(rd(f->pm, PM1_STS, 2) & PWRBTN, 0);
    assert_int_equal(f->seen.power_offs, 0);
}

static void test_power_button_without_enable(void **state)
{
    struct fixture *f = *state;
    acpi_pm_press_power_button(f->pm);
    assert_false(f->sci.level);
    assert_int_equal(f->sci.calls, 0);
    assert_int_equal(rd(f->pm, PM1_STS, 2) & PWRBTN, PWRBTN);
    /* Enabling with the status already set raises the SCI; disabling drops it. */
    wr(f->pm, PM1_EN, PWRBTN, 2);
    assert_true(f->sci.level);
    wr(f->pm, PM1_EN, 0, 2);
    assert_false(f->sci.level);
    /* Byte-wide W1C on the high byte of status clears PWRBTN_STS. */
    wr(f->pm, PM1_STS + 1, 0x01, 1);
    assert_int_equal(rd(f->pm, PM1_STS, 2) & PWRBTN, 0);
    acpi_pm_press_power_button(NULL);
}

static void test_s5_powers_off(void **state)
{
    struct fixture *f = *state;
    wr(f->pm, PM1_CNT, (X86_S5_SLP_TYP << 10) | SLP_EN, 2);
    assert_int_equal(f->seen.power_offs, 1);
    assert_int_equal(f->seen.resets, 0);
    /* SLP_EN does not stick; SLP_TYP does; SCI_EN always reads 1. */
    uint32_t cnt = rd(f->pm, PM1_CNT, 2);
    assert_int_equal(cnt & SLP_EN, 0);
    assert_int_equal((cnt >> 10) & 7, X86_S5_SLP_TYP);
    assert_int_equal(cnt & 1, 1);
    /* Writing the same type again without SLP_EN does not power off again. */
    wr(f->pm, PM1_CNT, X86_S5_SLP_TYP << 10, 2);
    assert_int_equal(f->seen.power_offs, 1);
    /* Byte-wise: the high byte alone carries SLP_TYP and SLP_EN. */
    wr(f->pm, PM1_CNT + 1, (X86_S5_SLP_TYP << 2) | 0x20, 1);
    assert_int_equal(f->seen.power_offs, 2);
    /* A 32-bit write at +4 covering control and the gap works too. */
    wr(f->pm, PM1_CNT, (X86_S5_SLP_TYP << 10) | SLP_EN, 4);
    assert_int_equal(f->seen.power_offs, 3);
}

static void test_other_sleep_types_ignored(void **state)
{
    struct fixture *f = *state;
    for (unsigned typ = 0; typ < 8; typ++) {
        if (typ == X86_S5_SLP_TYP)
            continue;
        wr(f->pm, PM1_CNT, (typ << 10) | SLP_EN, 2);
    }
    assert_int_equal(f->seen.power_offs, 0);
    assert_int_equal(f->seen.resets, 0);
    /* Type 5 written into a byte that does not hold SLP_EN: nothing. */
    wr(f->pm, PM1_CNT + 1, X86_S5_SLP_TYP << 2, 1);
    assert_int_equal(f->seen.power_offs, 0);
    /* SLP_EN later with that type: off. */
    wr(f->pm, PM1_CNT + 1, (X86_S5_SLP_TYP << 2) | 0x20, 1);
    assert_int_equal(f->seen.power_offs, 1);
    /* SLP_EN with type 5 in the write but low byte only: SLP_EN is not in it. */
    wr(f->pm, PM1_CNT, 0xff, 1);
    assert_int_equal(f->seen.power_offs, 1);
}

/* The EFI machine adds SLP_TYP 0, what OVMF's ResetSystem writes; the others stay ignored. */
static void test_power_off_types(void **state)
{
    struct fixture *f = *state;
    wr(f->pm, PM1_CNT, SLP_EN, 2);
    assert_int_equal(f->seen.power_offs, 0);
    acpi_pm_set_power_off_types(f->pm, 1u << 0 | 1u << X86_S5_SLP_TYP);
    wr(f->pm, PM1_CNT, SLP_EN, 2);
    assert_int_equal(f->seen.power_offs, 1);
    wr(f->pm, PM1_CNT, (X86_S5_SLP_TYP << 10) | SLP_EN, 2);
    assert_int_equal(f->seen.power_offs, 2);
    wr(f->pm, PM1_CNT, (1u << 10) | SLP_EN, 2);
    assert_int_equal(f->seen.power_offs, 2);
    acpi_pm_set_power_off_types(NULL, 1);
}

static uint32_t expected_ticks(uint64_t ns)
{
    return (uint32_t)((unsigned __int128)ns * ACPI_PM_TIMER_HZ / 1000000000u);
}

static void test_timer(void **state)
{
    struct fixture *f = *state;
    uint64_t start = f->now_ns;
    assert_int_equal(rd(f->pm, PM_TMR, 4), 0);
    f->now_ns += 1000000000ull;
    assert_int_equal(rd(f->pm, PM_TMR, 4), ACPI_PM_TIMER_HZ);
    f->now_ns += 1000000ull; /* 1 ms */
    assert_int_equal(rd(f->pm, PM_TMR, 4), expected_ticks(1001000000ull));
    /* Byte and 16-bit reads see the same counter. */
    uint32_t full = rd(f->pm, PM_TMR, 4);
    uint32_t bytes = 0;
    for (unsigned i = 0; i < 4; i++)
        bytes |= rd(f->pm, PM_TMR + i, 1) << (8 * i);
    assert_int_equal(bytes, full);
    assert_int_equal(rd(f->pm, PM_TMR + 2, 2), full >> 16);

    /* Writes do not change it. */
    wr(f->pm, PM_TMR, 0, 4);
    assert_int_equal(rd(f->pm, PM_TMR, 4), full);

    /* It wraps at 32 bits: about 1200 s in. */
    uint64_t wrap_ns = ((1ull << 32) * 1000000000ull + ACPI_PM_TIMER_HZ - 1) / ACPI_PM_TIMER_HZ;
    f->now_ns = start + wrap_ns - 1000;
    uint32_t before = rd(f->pm, PM_TMR, 4);
    assert_true(before > 0xfffff000u);
    f->now_ns = start + wrap_ns + 1000000;
    uint32_t after = rd(f->pm, PM_TMR, 4);
    assert_true(after < 0x2000);
    assert_int_equal(after, expected_ticks(wrap_ns + 1000000));
    /* Days later, still the exact rate. */
    uint64_t later = 86400ull * 1000000000ull * 3 + 123456789ull;
    f->now_ns = start + later;
    assert_int_equal(rd(f->pm, PM_TMR, 4), expected_ticks(later));
}

static void test_timer_status(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f->pm, PM1_STS, 2) & 1, 0);
    /* Bit 31 flips after 2^31 ticks (600 s). */
    f->now_ns += 601ull * 1000000000ull;
    assert_int_equal(rd(f->pm, PM1_STS, 2) & 1, 1);
    wr(f->pm, PM1_STS, 1, 2);
    assert_int_equal(rd(f->pm, PM1_STS, 2) & 1, 0);
    /* TMR_STS does not drive the SCI here. */
    wr(f->pm, PM1_EN, 1, 2);
    f->now_ns += 601ull * 1000000000ull;
    assert_int_equal(rd(f->pm, PM1_STS, 2) & 1, 1);
    assert_false(f->sci.level);
}

static void test_reset_port(void **state)
{
    struct fixture *f = *state;
    uint8_t v = 0x02;
    acpi_pm_reset_bus_ops.write(f->pm, 0, &v, 1);
    assert_int_equal(f->seen.resets, 0);
    v = 0;
    acpi_pm_reset_bus_ops.read(f->pm, 0, &v, 1);
    assert_int_equal(v, 0x02);
    v = X86_RESET_VALUE;
    acpi_pm_reset_bus_ops.write(f->pm, 0, &v, 1);
    assert_int_equal(f->seen.resets, 1);
    v = 0x04;
    acpi_pm_reset_bus_ops.write(f->pm, 0, &v, 1);
    assert_int_equal(f->seen.resets, 2);
    assert_int_equal(f->seen.power_offs, 0);
    /* Outside the one-byte port: ignored. */
    v = 0x06;
    acpi_pm_reset_bus_ops.write(f->pm, 1, &v, 1);
    assert_int_equal(f->seen.resets, 2);
}

static void test_all_accesses(void **state)
{
    struct fixture *f = *state;
    const unsigned sizes[] = { 1, 2, 4, 8 };
    wr(f->pm, PM1_EN, PWRBTN, 2);
    acpi_pm_press_power_button(f->pm);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        for (unsigned off = 0; off < X86_PM_SIZE + 2; off++) {
            uint8_t d[8];
            memset(d, 0x11, sizeof(d));
            acpi_pm_bus_ops.read(f->pm, off, d, sizes[s]);
            for (unsigned b = sizes[s]; b < sizeof(d); b++)
                assert_int_equal(d[b], 0x11);
            for (unsigned b = 0; b < sizes[s]; b++) {
                if (off + b >= X86_PM_SIZE)
                    assert_int_equal(d[b], 0xff);
                else if (off + b == 6 || off + b == 7)
                    assert_int_equal(d[b], 0); /* the gap */
            }
            /* Zeros: no status cleared, no sleep; only enable/control change. */
            const uint8_t zero[8] = { 0 };
            if (off != PM1_EN && off != PM1_EN + 1 && !(off < PM1_EN && off + sizes[s] > PM1_EN))
                acpi_pm_bus_ops.write(f->pm, off, zero, sizes[s]);
        }
    }
    assert_true(f->sci.level);
    assert_int_equal(f->seen.power_offs, 0);
    /* A 4-byte read at +0 returns status and enable together. */
    uint32_t both = rd(f->pm, PM1_STS, 4);
    assert_int_equal(both & 0xffff, PWRBTN);
    assert_int_equal(both >> 16, PWRBTN);
    /* A 4-byte W1C at +0 with enable kept. */
    wr(f->pm, PM1_STS, PWRBTN | ((uint32_t)PWRBTN << 16), 4);
    assert_false(f->sci.level);
    assert_int_equal(rd(f->pm, PM1_EN, 2), PWRBTN);

    uint8_t d[4];
    acpi_pm_reset_bus_ops.read(f->pm, 0, d, 4);
    assert_int_equal(d[1], 0xff);
    acpi_pm_reset_bus_ops.read(f->pm, 3, d, 1);
    assert_int_equal(d[0], 0xff);
}

static void test_null_attachments(void **state)
{
    (void)state;
    struct acpi_pm *pm = acpi_pm_new(NULL, NULL, NULL, NULL);
    assert_non_null(pm);
    wr(pm, PM1_EN, PWRBTN, 2);
    acpi_pm_press_power_button(pm);
    wr(pm, PM1_CNT, (X86_S5_SLP_TYP << 10) | SLP_EN, 2);
    uint8_t v = 0x06;
    acpi_pm_reset_bus_ops.write(pm, 0, &v, 1);
    /* The real monotonic clock moves forward. */
    uint32_t t0 = rd(pm, PM_TMR, 4);
    struct timespec ts = { 0, 2000000 };
    nanosleep(&ts, NULL);
    uint32_t t1 = rd(pm, PM_TMR, 4);
    assert_true(t1 - t0 >= 7000); /* at least 2 ms of ticks */
    acpi_pm_free(pm);
    acpi_pm_free(NULL);
}

static void test_bus_wiring(void **state)
{
    struct fixture *f = *state;
    struct bus bus;
    bus_init(&bus);
    assert_int_equal(bus_add(&bus, X86_PM_BASE, X86_PM_SIZE, &acpi_pm_bus_ops, f->pm), 0);
    assert_int_equal(bus_add(&bus, X86_RESET_PORT, 1, &acpi_pm_reset_bus_ops, f->pm), 0);

    uint16_t en = PWRBTN;
    assert_true(bus_write(&bus, X86_PM1A_EVT_PORT + 2, &en, 2));
    acpi_pm_press_power_button(f->pm);
    assert_true(f->sci.level);
    uint16_t sts = 0;
    assert_true(bus_read(&bus, X86_PM1A_EVT_PORT, &sts, 2));
    assert_int_equal(sts & PWRBTN, PWRBTN);
    assert_true(bus_write(&bus, X86_PM1A_EVT_PORT, &sts, 2));
    assert_false(f->sci.level);

    f->now_ns += 1000000000ull;
    uint32_t tmr = 0;
    assert_true(bus_read(&bus, X86_PM_TMR_PORT, &tmr, 4));
    assert_int_equal(tmr, ACPI_PM_TIMER_HZ);

    uint16_t cnt = (X86_S5_SLP_TYP << 10) | SLP_EN;
    assert_true(bus_write(&bus, X86_PM1A_CNT_PORT, &cnt, 2));
    assert_int_equal(f->seen.power_offs, 1);

    uint8_t r = X86_RESET_VALUE;
    assert_true(bus_write(&bus, X86_RESET_PORT, &r, 1));
    assert_int_equal(f->seen.resets, 1);
    bus_destroy(&bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_power_button_with_enable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_button_without_enable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s5_powers_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_sleep_types_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_off_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_accesses, setup, teardown),
        cmocka_unit_test(test_null_attachments),
        cmocka_unit_test_setup_teardown(test_bus_wiring, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
