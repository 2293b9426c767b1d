/* The virtio-pci transport driven through its registers the way Linux's
 * virtio_pci_modern driver does, with virtio-console behind it. */
#include "virtio/console.h"
#include "virtio/virtio_pci.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NVECTORS 8

struct fixture {
    struct test_driver t;
    struct virtio_device *dev;
    struct virtio_pci vp;
    unsigned signals[NVECTORS];
    char out[256];
    size_t out_len;
};

static void record_signal(void *ctx, uint16_t vector)
{
    struct fixture *f = ctx;
    assert_true(vector < NVECTORS);
    f->signals[vector]++;
}

static size_t port_write(void *ctx, const uint8_t *buf, size_t len)
{
    struct fixture *f = ctx;
    if (f->out_len + len <= sizeof(f->out)) {
        memcpy(f->out + f->out_len, buf, len);
        f->out_len += len;
    }
    return len;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct virtio_console_port_config port = { .is_console = true, .write = port_write, .ctx = f };
    f->dev = virtio_console_new(&port, 1);
    if (!f->dev || td_layout(&f->t, f->dev->num_queues, 64) < 0)
        return -1;
    struct virtio_pci_interrupts irq = { .signal = record_signal, .vectors = NVECTORS, .ctx = f };
    if (virtio_pci_init(&f->vp, f->dev, &f->t.gm, &irq, 0x078000) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    virtio_pci_fini(&f->vp);
    f->dev->ops->destroy(f->dev);
    td_fini(&f->t);
    free(f);
    return 0;
}

/* BAR accesses as the guest makes them. */
static uint32_t rd(struct fixture *f, uint64_t off, unsigned size)
{
    uint32_t v = 0;
    virtio_pci_bar_ops.read(&f->vp, off, &v, size);
    return le32toh(v);
}

static void wr(struct fixture *f, uint64_t off, uint64_t value, unsigned size)
{
    uint64_t v = htole64(value);
    virtio_pci_bar_ops.write(&f->vp, off, &v, size);
}

static uint8_t status(struct fixture *f)
{
    return (uint8_t)rd(f, 0x14, 1);
}

static uint64_t device_features(struct fixture *f)
{
    wr(f, 0x00, 0, 4);
    uint64_t lo = rd(f, 0x04, 4);
    wr(f, 0x00, 1, 4);
    return lo | (uint64_t)rd(f, 0x04, 4) << 32;
}

static void set_driver_features(struct fixture *f, uint64_t features)
{
    wr(f, 0x08, 0, 4);
    wr(f, 0x0c, (uint32_t)features, 4);
    wr(f, 0x08, 1, 4);
    wr(f, 0x0c, (uint32_t)(features >> 32), 4);
}

/* The rings of queue q from the fake driver's layout, vector q + 1. */
static void setup_queue(struct fixture *f, unsigned q)
{
    wr(f, 0x16, q, 2);
    assert_int_equal(rd(f, 0x18, 2), f->dev->queue_max_size);
    wr(f, 0x18, 64, 2);
    wr(f, 0x1a, q + 1, 2);
    wr(f, 0x20, f->t.q[q].desc, 8);
    wr(f, 0x28, f->t.q[q].avail, 8);
    wr(f, 0x30, f->t.q[q].used, 8);
    wr(f, 0x1c, 1, 2);
}

static void bring_up(struct fixture *f)
{
    wr(f, 0x14, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
    set_driver_features(f, device_features(f));
    wr(f, 0x14, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
    assert_true(status(f) & VIRTIO_STATUS_FEATURES_OK);
    wr(f, 0x10, 0, 2); /* config vector 0 */
    for (unsigned q = 0; q < f->dev->num_queues; q++)
        setup_queue(f, q);
    wr(f, 0x14, 0x0f, 1);
    assert_int_equal(status(f), 0x0f);
}

static void test_pci_identity_and_capabilities(void **state)
{
    struct fixture *f = *state;
    struct pci_device *p = &f->vp.pci;
    assert_int_equal(pci_config_read(p, PCI_VENDOR_ID, 2), 0x1af4);
    assert_int_equal(pci_config_read(p, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_CONSOLE);
    assert_int_equal(pci_config_read(p, PCI_REVISION_ID, 1), 1);
    assert_true(pci_config_read(p, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    /* Walk the list: common, ISR, notify (with multiplier), device config. */
    unsigned seen = 0, off = pci_config_read(p, PCI_CAPABILITY_LIST, 1);
    for (int guard = 0; off && guard < 48; guard++) {
        if (pci_config_read(p, off, 1) == PCI_CAP_ID_VENDOR) {
            unsigned type = pci_config_read(p, off + 3, 1);
            /* PCI_CFG's bar is the driver's to set; the others point at ours. */
            if (type != 5)
                assert_int_equal(pci_config_read(p, off + 4, 1), VIRTIO_PCI_BAR);
            seen |= 1u << type;
            if (type == 2) {
                assert_int_equal(pci_config_read(p, off + 2, 1), 20);
                assert_int_equal(pci_config_read(p, off + 16, 4), VIRTIO_PCI_NOTIFY_MULT);
            }
        }
        off = pci_config_read(p, off + 1, 1);
    }
    assert_int_equal(seen, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5));
}

/* Config offset of the VIRTIO_PCI_CAP_PCI_CFG capability. */
static unsigned find_pci_cfg_cap(struct pci_device *p)
{
    unsigned off = pci_config_read(p, PCI_CAPABILITY_LIST, 1);
    for (int guard = 0; off && guard < 48; guard++) {
        if (pci_config_read(p, off, 1) == PCI_CAP_ID_VENDOR && pci_config_read(p, off + 3, 1) == 5)
            return off;
        off = pci_config_read(p, off + 1, 1);
    }
    fail_msg("no PCI_CFG capability");
    return 0;
}

static void select_window(struct pci_device *p, unsigned cap, unsigned bar, uint32_t offset,
                          uint32_t length)
{
    pci_config_write(p, cap + 4, bar, 1);
    pci_config_write(p, cap + 8, offset, 4);
    pci_config_write(p, cap + 12, length, 4);
}

/* The PCI_CFG window reads and writes the BAR as the driver selects (4.1.4.9). */
static void test_pci_cfg_window(void **state)
{
    struct fixture *f = *state;
    struct pci_device *p = &f->vp.pci;
    unsigned cap = find_pci_cfg_cap(p);
    assert_int_equal(pci_config_read(p, cap + 2, 1), 20);

    select_window(p, cap, VIRTIO_PCI_BAR, 0x12, 2); /* num_queues */
    assert_int_equal(pci_config_read(p, cap + 16, 4) & 0xffff, f->dev->num_queues);
    select_window(p, cap, VIRTIO_PCI_BAR, 0x14, 1); /* device_status */
    pci_config_write(p, cap + 16, VIRTIO_STATUS_ACKNOWLEDGE, 4);
    assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE);
    wr(f, 0x14, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
    assert_int_equal(pci_config_read(p, cap + 16, 1),
                     VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);

    /* Out of the rules: another BAR, an odd length, a misaligned or too-large offset. The
     * access does nothing and pci_cfg_data keeps what the driver last put there. */
    const struct {
        unsigned bar;
        uint32_t offset, length;
    } bad[] = { { 0, 0x14, 1 },
                { VIRTIO_PCI_BAR, 0x14, 3 },
                { VIRTIO_PCI_BAR, 0x13, 2 },
                { VIRTIO_PCI_BAR, 0x14, 8 },
                { VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, 4 },
                { VIRTIO_PCI_BAR, 0xfffffffc, 4 } };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        select_window(p, cap, bad[i].bar, bad[i].offset, bad[i].length);
        pci_config_write(p, cap + 16, 0, 4); /* would reset the device */
        assert_int_equal(pci_config_read(p, cap + 16, 4), 0);
        assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    }
}

static void test_feature_negotiation(void **state)
{
    struct fixture *f = *state;
    uint64_t offered = device_features(f);
    assert_true(offered & VIRTIO_BIT(VIRTIO_F_VERSION_1));
    /* Without VERSION_1 (a legacy driver) FEATURES_OK does not stick. */
    wr(f, 0x14, 3, 1);
    set_driver_features(f, offered & ~VIRTIO_BIT(VIRTIO_F_VERSION_1));
    wr(f, 0x14, 3 | VIRTIO_STATUS_FEATURES_OK, 1);
    assert_false(status(f) & VIRTIO_STATUS_FEATURES_OK);
    /* Nor with a bit the device never offered. */
    wr(f, 0x14, 0, 1);
    wr(f, 0x14, 3, 1);
    set_driver_features(f, offered | VIRTIO_BIT(40));
    wr(f, 0x14, 3 | VIRTIO_STATUS_FEATURES_OK, 1);
    assert_false(status(f) & VIRTIO_STATUS_FEATURES_OK);
    wr(f, 0x14, 0, 1);
    wr(f, 0x14, 3, 1);
    set_driver_features(f, offered);
    wr(f, 0x14, 3 | VIRTIO_STATUS_FEATURES_OK, 1);
    assert_true(status(f) & VIRTIO_STATUS_FEATURES_OK);
    assert_int_equal(f->dev->driver_features, offered);
    /* Frozen after FEATURES_OK. */
    set_driver_features(f, 0);
    assert_int_equal(f->dev->driver_features, offered);
}

static void test_queue_registers(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(rd(f, 0x12, 2), f->dev->num_queues);
    wr(f, 0x16, 1, 2);
    wr(f, 0x18, 48, 2); /* not a power of two: ignored */
    assert_int_equal(rd(f, 0x18, 2), f->dev->queue_max_size);
    wr(f, 0x18, 32, 2);
    assert_int_equal(rd(f, 0x18, 2), 32);
    assert_int_equal(rd(f, 0x1e, 2), 1); /* notify offset = queue index */
    wr(f, 0x1a, NVECTORS + 3, 2);        /* no such vector: reads back as none */
    assert_int_equal(rd(f, 0x1a, 2), VIRTIO_MSI_NO_VECTOR);
    wr(f, 0x16, 99, 2);
    assert_int_equal(rd(f, 0x18, 2), 0); /* queue_size 0: no such queue */
    wr(f, 0x10, 2, 2);
    assert_int_equal(rd(f, 0x10, 2), 2);
}

static void test_data_path_and_interrupts(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    /* The console port transmits on queue 1; a kick is a write to its notify address. */
    uint64_t buf = td_alloc(&f->t, 8);
    memcpy(td_ptr(&f->t, buf, 8), "vmkit!\n", 7);
    struct td_buf b = { .gpa = buf, .len = 7 };
    td_add(&f->t, 1, &b, 1);
    wr(f, VIRTIO_PCI_NOTIFY_OFF + 1 * VIRTIO_PCI_NOTIFY_MULT, 1, 2);
    assert_int_equal(f->out_len, 7);
    assert_memory_equal(f->out, "vmkit!\n", 7);
    assert_true(td_used(&f->t, 1, NULL, NULL));
    assert_int_equal(f->signals[2], 1); /* queue 1's vector */
    assert_int_equal(rd(f, VIRTIO_PCI_ISR_OFF, 1), 1);
    assert_int_equal(rd(f, VIRTIO_PCI_ISR_OFF, 1), 0); /* read clears */
    /* Device config through the BAR: max_nr_ports = 1. */
    assert_int_equal(rd(f, VIRTIO_PCI_DEVICE_OFF + 4, 4), 1);
}

static void test_kick_before_driver_ok_ignored(void **state)
{
    struct fixture *f = *state;
    wr(f, 0x14, 3, 1);
    set_driver_features(f, device_features(f));
    wr(f, 0x14, 0x0b, 1);
    setup_queue(f, 1);
    uint64_t buf = td_alloc(&f->t, 4);
    struct td_buf b = { .gpa = buf, .len = 4 };
    td_add(&f->t, 1, &b, 1);
    wr(f, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
    assert_int_equal(f->out_len, 0);
}

static void test_bad_rings_need_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    wr(f, 0x16, 0, 2);
    /* Re-enabling an enabled queue changes nothing; a new layout is refused. */
    wr(f, 0x20, 0x7fff00000000ull, 8);
    assert_int_equal(rd(f, 0x20, 4), (uint32_t)f->t.q[0].desc);
    /* A broken chain on a running queue: NEEDS_RESET and a config interrupt. */
    struct td_buf b = { .gpa = 0x7fff00000000ull, .len = 16 };
    td_add(&f->t, 1, &b, 1);
    wr(f, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
    assert_true(status(f) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    assert_int_equal(f->signals[0], 1);
    assert_true(rd(f, 0x15, 1) >= 1); /* config_generation moved */
    /* Further kicks are dropped until the driver resets. */
    wr(f, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT, 1, 2);
    assert_int_equal(f->signals[0], 1);
    wr(f, 0x14, 0, 1);
    assert_int_equal(status(f), 0);
    wr(f, 0x16, 1, 2);
    assert_int_equal(rd(f, 0x1c, 2), 0); /* queues disabled by the reset */
}

static void test_queue_outside_ram_at_enable(void **state)
{
    struct fixture *f = *state;
    wr(f, 0x14, 3, 1);
    set_driver_features(f, device_features(f));
    wr(f, 0x14, 0x0b, 1);
    wr(f, 0x16, 0, 2);
    wr(f, 0x20, 0xfffffffffff0ull, 8);
    wr(f, 0x1c, 1, 2);
    assert_int_equal(rd(f, 0x1c, 2), 0);
    assert_true(status(f) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

/* Taking DRIVER_OK back is against the rules (2.1.2): the status stays, the device asks
 * for a reset, and only a reset brings it back to a fresh start. */
static void test_cleared_status_bit_needs_reset(void **state)
{
    struct fixture *f = *state;
    bring_up(f);
    unsigned config_signals = f->signals[0];
    wr(f, 0x14, 0x0f & ~VIRTIO_STATUS_DRIVER_OK, 1);
    assert_int_equal(status(f), 0x0f | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    assert_int_equal(f->signals[0], config_signals + 1); /* a config interrupt tells it */
    wr(f, 0x14, 0x0f, 1);                                /* setting it again does not re-activate */
    assert_int_equal(status(f), 0x0f | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    wr(f, 0x14, 0, 1);
    assert_int_equal(status(f), 0);
    bring_up(f);
}

static void test_odd_accesses_harmless(void **state)
{
    struct fixture *f = *state;
    /* Reads and writes of every size at every offset of the BAR never crash. */
    for (uint64_t off = 0; off < VIRTIO_PCI_BAR_SIZE; off += 1) {
        for (unsigned size = 1; size <= 8; size *= 2) {
            if (off + size > VIRTIO_PCI_BAR_SIZE)
                continue;
            uint64_t v = 0;
            virtio_pci_bar_ops.read(&f->vp, off, &v, size);
        }
    }
    for (uint64_t off = 0x3c; off < VIRTIO_PCI_BAR_SIZE; off += 4)
        wr(f, off, 0xffffffff, 4);
    assert_int_equal(f->out_len, 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_pci_identity_and_capabilities),
        T(test_feature_negotiation),
        T(test_pci_cfg_window),
        T(test_queue_registers),
        T(test_data_path_and_interrupts),
        T(test_kick_before_driver_ok_ignored),
        T(test_bad_rings_need_reset),
        T(test_queue_outside_ram_at_enable),
        T(test_cleared_status_bit_needs_reset),
        T(test_odd_accesses_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
