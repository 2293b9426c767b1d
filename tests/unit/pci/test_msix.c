/* MSI-X as the guest drives it (capability in config space, table and PBA in a BAR),
 * checked against a fake KVM that records routes and irqfds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <cmocka.h>

#include "fake_kvm_irq.h"
#include "pci/msix.h"
#include "pci/pci.h"

/* ---- a fake KVM ---- */

/* ---- a device with MSI-X in BAR 1 ---- */

#define NVEC      5
#define TABLE_OFF 0x0
#define PBA_OFF   0x800

struct rig {
    struct fake_kvm k;
    struct irq_routing_ops ops;
    struct pci_device d;
    struct msix *x;
    unsigned cap;
};

static int rig_setup(void **state)
{
    struct rig *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->ops = fake_kvm_ops(&r->k);
    pci_device_init(&r->d, 0x1af4, 0x1041, 0x020000, 1, 0x1af4, 1);
    if (pci_device_add_bar(&r->d, 1, PCI_BAR_MEM32, 0x1000, false, &msix_bar_ops, NULL) ||
        msix_new(&r->d, NVEC, 1, TABLE_OFF, PBA_OFF, &r->ops, &r->x))
        return -1;
    r->d.bars[1].dev = r->x;
    r->cap = msix_cap_offset(r->x);
    *state = r;
    return 0;
}

static int rig_teardown(void **state)
{
    struct rig *r = *state;
    msix_free(r->x);
    assert_int_equal(r->k.allocated, r->k.freed);
    free(r);
    return 0;
}

static uint32_t bar_rd(struct rig *r, uint64_t off)
{
    uint32_t v = 0;
    msix_bar_ops.read(r->x, off, &v, 4);
    return v;
}

static void bar_wr(struct rig *r, uint64_t off, uint32_t v)
{
    msix_bar_ops.write(r->x, off, &v, 4);
}

static void program(struct rig *r, unsigned vec, uint64_t addr, uint32_t data)
{
    bar_wr(r, TABLE_OFF + vec * 16, (uint32_t)addr);
    bar_wr(r, TABLE_OFF + vec * 16 + 4, (uint32_t)(addr >> 32));
    bar_wr(r, TABLE_OFF + vec * 16 + 8, data);
}

static void set_mask(struct rig *r, unsigned vec, bool masked)
{
    bar_wr(r, TABLE_OFF + vec * 16 + 12, masked);
}

static void set_control(struct rig *r, uint16_t ctrl)
{
    pci_config_write(&r->d, r->cap + 2, ctrl, 2);
}

static int gsi_fd(struct rig *r, unsigned vec, unsigned *gsi)
{
    /* The fake hands out GSIs in order from 24. */
    *gsi = 24 + vec;
    return r->k.fd_of[*gsi];
}

static void test_capability(void **state)
{
    struct rig *r = *state;
    assert_int_equal(pci_config_read(&r->d, PCI_CAPABILITY_LIST, 1), r->cap);
    assert_int_equal(pci_config_read(&r->d, r->cap, 1), PCI_CAP_ID_MSIX);
    assert_int_equal(pci_config_read(&r->d, r->cap + 2, 2), NVEC - 1);
    assert_int_equal(pci_config_read(&r->d, r->cap + 4, 4), TABLE_OFF | 1);
    assert_int_equal(pci_config_read(&r->d, r->cap + 8, 4), PBA_OFF | 1);
    /* Only enable and function mask are writable. */
    set_control(r, 0xffff);
    assert_int_equal(pci_config_read(&r->d, r->cap + 2, 2), 0xc000 | (NVEC - 1));
    assert_false(msix_enabled(r->x)); /* function masked */
    set_control(r, MSIX_CTRL_ENABLE);
    assert_true(msix_enabled(r->x));
    pci_config_write(&r->d, r->cap + 4, 0xffffffffu, 4);
    assert_int_equal(pci_config_read(&r->d, r->cap + 4, 4), TABLE_OFF | 1);
    /* Every vector starts masked; nothing pending. */
    for (unsigned v = 0; v < NVEC; v++)
        assert_int_equal(bar_rd(r, TABLE_OFF + v * 16 + 12), 1);
    assert_int_equal(bar_rd(r, PBA_OFF), 0);
    assert_int_equal(r->k.route_calls, 0);
    assert_int_equal(r->k.allocated, NVEC);
}

static void test_unmask_routes_and_attaches(void **state)
{
    struct rig *r = *state;
    unsigned gsi;
    program(r, 2, 0xfee01000ULL, 0x4041);
    set_mask(r, 2, false);
    /* MSI-X still disabled: nothing reaches KVM. */
    assert_int_equal(r->k.route_calls, 0);
    assert_int_equal(gsi_fd(r, 2, &gsi), -1);
    set_control(r, MSIX_CTRL_ENABLE);
    assert_int_equal(gsi_fd(r, 2, &gsi), msix_vector_fd(r->x, 2));
    assert_true(r->k.routed[gsi]);
    assert_int_equal(r->k.address[gsi], 0xfee01000ULL);
    assert_int_equal(r->k.data[gsi], 0x4041);
    /* Only vector 2 is unmasked. */
    for (unsigned v = 0; v < NVEC; v++)
        if (v != 2)
            assert_int_equal(r->k.fd_of[24 + v], -1);
    /* The table reads back what the guest wrote. */
    assert_int_equal(bar_rd(r, TABLE_OFF + 32), 0xfee01000u);
    assert_int_equal(bar_rd(r, TABLE_OFF + 36), 0);
    assert_int_equal(bar_rd(r, TABLE_OFF + 40), 0x4041);
    assert_int_equal(bar_rd(r, TABLE_OFF + 44), 0);
    uint64_t q = 0;
    msix_bar_ops.read(r->x, TABLE_OFF + 40, &q, 8);
    assert_int_equal(q, 0x4041);

    /* A new data value while unmasked re-routes; the same value does not. */
    unsigned calls = r->k.route_calls;
    bar_wr(r, TABLE_OFF + 40, 0x4042);
    assert_int_equal(r->k.data[gsi], 0x4042);
    assert_int_equal(r->k.route_calls, calls + 1);
    bar_wr(r, TABLE_OFF + 40, 0x4042);
    assert_int_equal(r->k.route_calls, calls + 1);
    /* An 8-byte write of the address works too. */
    uint64_t addr = 0xfee02000ULL;
    msix_bar_ops.write(r->x, TABLE_OFF + 32, &addr, 8);
    assert_int_equal(r->k.address[gsi], 0xfee02000ULL);

    /* Disabling MSI-X or masking the function detaches. */
    set_control(r, MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK);
    assert_int_equal(gsi_fd(r, 2, &gsi), -1);
    set_control(r, MSIX_CTRL_ENABLE);
    assert_int_equal(gsi_fd(r, 2, &gsi), msix_vector_fd(r->x, 2));
    set_control(r, 0);
    assert_int_equal(gsi_fd(r, 2, &gsi), -1);
}

static void test_masked_vector_pends_and_fires_on_unmask(void **state)
{
    struct rig *r = *state;
    unsigned gsi;
    set_control(r, MSIX_CTRL_ENABLE);
    program(r, 4, 0xfee00000ULL, 0x30);
    assert_false(msix_pending(r->x, 4));
    assert_int_equal(msix_notify(r->x, 4), 0);
    assert_true(msix_pending(r->x, 4));
    assert_int_equal(bar_rd(r, PBA_OFF), 1u << 4);
    assert_int_equal(gsi_fd(r, 4, &gsi), -1);
    /* Unmask: attached, and the pending signal goes to KVM at once. */
    set_mask(r, 4, false);
    assert_int_equal(gsi_fd(r, 4, &gsi), msix_vector_fd(r->x, 4));
    assert_int_equal(r->k.data[gsi], 0x80000030u);
    assert_false(msix_pending(r->x, 4));
    assert_int_equal(bar_rd(r, PBA_OFF), 0);
    /* Re-masking detaches again. */
    set_mask(r, 4, true);
    assert_int_equal(gsi_fd(r, 4, &gsi), -1);
    /* Reserved vector-control bits read 0. */
    bar_wr(r, TABLE_OFF + 4 * 16 + 12, 0xfffffffeu);
    assert_int_equal(bar_rd(r, TABLE_OFF + 4 * 16 + 12), 0);
}

static void test_bad_messages_and_accesses(void **state)
{
    struct rig *r = *state;
    unsigned gsi;
    set_control(r, MSIX_CTRL_ENABLE);
    /* An address outside the APIC window would be a DMA write to RAM: not delivered. */
    program(r, 0, 0x1000, 0x30);
    set_mask(r, 0, false);
    assert_int_equal(gsi_fd(r, 0, &gsi), -1);
    program(r, 0, 0x1fee00000ULL, 0x30);
    assert_int_equal(gsi_fd(r, 0, &gsi), -1);
    program(r, 0, 0xfee00000ULL, 0x30);
    assert_int_equal(gsi_fd(r, 0, &gsi), msix_vector_fd(r->x, 0));

    /* Byte, word and unaligned writes to the table are dropped. */
    uint8_t b = 0x55;
    uint16_t w = 0x5555;
    msix_bar_ops.write(r->x, TABLE_OFF + 8, &b, 1);
    msix_bar_ops.write(r->x, TABLE_OFF + 8, &w, 2);
    uint32_t d = 0x55555555;
    msix_bar_ops.write(r->x, TABLE_OFF + 9, &d, 4);
    uint64_t q = 0x5555555555555555ULL;
    msix_bar_ops.write(r->x, TABLE_OFF + 4, &q, 8);
    assert_int_equal(bar_rd(r, TABLE_OFF + 8), 0x30);
    assert_int_equal(bar_rd(r, TABLE_OFF + 4), 0);
    /* The PBA ignores writes; byte reads work; reads outside table/PBA are all ones. */
    bar_wr(r, PBA_OFF, 0xffffffffu);
    assert_int_equal(bar_rd(r, PBA_OFF), 0);
    uint8_t rb = 0;
    msix_bar_ops.read(r->x, TABLE_OFF + 8, &rb, 1);
    assert_int_equal(rb, 0x30);
    assert_int_equal(bar_rd(r, TABLE_OFF + NVEC * 16), 0xffffffffu);
    assert_int_equal(bar_rd(r, 0xffc), 0xffffffffu);
    assert_int_equal(bar_rd(r, PBA_OFF + 8), 0xffffffffu);
    q = 0;
    msix_bar_ops.read(r->x, TABLE_OFF + 12, &q, 8); /* crosses a qword: refused */
    assert_int_equal(q, UINT64_MAX);
    assert_false(msix_bar_read(r->x, 0x900, &q, 4));
    assert_false(msix_bar_write(r->x, 0x900, &q, 4));

    /* Out-of-range vectors. */
    assert_int_equal(msix_notify(r->x, NVEC), -EINVAL);
    assert_int_equal(msix_notify(NULL, 0), -EINVAL);
    assert_int_equal(msix_vector_fd(r->x, NVEC), -1);
    assert_false(msix_pending(r->x, NVEC));
    assert_false(msix_enabled(NULL));
}

static void test_kvm_failures_leave_vector_undelivered(void **state)
{
    struct rig *r = *state;
    unsigned gsi;
    set_control(r, MSIX_CTRL_ENABLE);
    r->k.fail_route = true;
    program(r, 1, 0xfee00000ULL, 0x31);
    set_mask(r, 1, false);
    assert_int_equal(gsi_fd(r, 1, &gsi), -1);
    r->k.fail_route = false;
    r->k.fail_irqfd = true;
    set_mask(r, 1, true);
    set_mask(r, 1, false);
    assert_int_equal(gsi_fd(r, 1, &gsi), -1);
    assert_true(r->k.routed[gsi]);
    r->k.fail_irqfd = false;
    /* The next change retries. */
    set_mask(r, 1, true);
    set_mask(r, 1, false);
    assert_int_equal(gsi_fd(r, 1, &gsi), msix_vector_fd(r->x, 1));
}

static void test_new_rejects_bad_arguments(void **state)
{
    struct fake_kvm k;
    struct irq_routing_ops ops = fake_kvm_ops(&k);
    struct pci_device d;
    pci_device_init(&d, 1, 2, 0, 0, 0, 0);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), 0);
    assert_int_equal(pci_device_add_bar(&d, 1, PCI_BAR_IO, 0x100, false, NULL, NULL), 0);
    struct msix *x = NULL;
    assert_int_equal(msix_new(&d, 0, 0, 0, 0x800, &ops, &x), -EINVAL);
    assert_int_equal(msix_new(&d, 2049, 0, 0, 0x800, &ops, &x), -EINVAL);
    assert_int_equal(msix_new(&d, 4, 2, 0, 0x800, &ops, &x), -EINVAL); /* no BAR 2 */
    assert_int_equal(msix_new(&d, 4, 1, 0, 0x80, &ops, &x), -EINVAL);  /* an I/O BAR */
    assert_int_equal(msix_new(&d, 4, 6, 0, 0x800, &ops, &x), -EINVAL);
    assert_int_equal(msix_new(&d, 4, 0, 4, 0x800, &ops, &x), -EINVAL); /* misaligned */
    assert_int_equal(msix_new(&d, 4, 0, 0, 0x804, &ops, &x), -EINVAL);
    assert_int_equal(msix_new(&d, 4, 0, 0, 0x30, &ops, &x), -EINVAL);    /* overlap */
    assert_int_equal(msix_new(&d, 256, 0, 0, 0x800, &ops, &x), -EINVAL); /* table > BAR */
    assert_int_equal(msix_new(&d, 4, 0, 0, 0xffc, &ops, &x), -EINVAL);   /* PBA past end */
    assert_int_equal(msix_new(&d, 4, 0, 0xfffffff8u, 0x800, &ops, &x), -EINVAL);
    assert_int_equal(msix_new(NULL, 4, 0, 0, 0x800, &ops, &x), -EINVAL);
    assert_int_equal(msix_new(&d, 4, 0, 0, 0x800, NULL, &x), -EINVAL);
    assert_int_equal(msix_new(&d, 4, 0, 0, 0x800, &ops, NULL), -EINVAL);
    struct irq_routing_ops partial = ops;
    partial.irqfd = NULL;
    assert_int_equal(msix_new(&d, 4, 0, 0, 0x800, &partial, &x), -EINVAL);
    assert_null(x);
    assert_int_equal(k.allocated, 0);
    /* Not enough GSIs: fails cleanly, giving back what it took. */
    k.max_gsis = 3;
    assert_int_equal(msix_new(&d, 4, 0, 0, 0x800, &ops, &x), -ENOSPC);
    assert_int_equal(k.allocated, 3);
    assert_int_equal(k.freed, 3);
    assert_int_equal(pci_config_read(&d, PCI_CAPABILITY_LIST, 1), 0);
    k.max_gsis = 40;
    assert_int_equal(msix_new(&d, 4, 0, 0, 0x800, &ops, &x), 0);
    msix_free(x);
    msix_free(NULL);
}

/* Through the bus: the BAR decoded by the host bridge reaches the MSI-X table. */
static void test_through_the_bus(void **state)
{
    struct fake_kvm k;
    struct irq_routing_ops ops = fake_kvm_ops(&k);
    struct pci_windows w = { .mmio32_base = 0xc0000000ULL, .mmio32_size = 0x100000 };
    struct pci_bus *b = pci_bus_new(&w);
    assert_non_null(b);
    struct pci_device d;
    struct msix *x;
    pci_device_init(&d, 1, 2, 0, 0, 0, 0);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM32, 0x4000, false, &msix_bar_ops, NULL),
                     0);
    assert_int_equal(msix_new(&d, 2, 0, 0x2000, 0x3000, &ops, &x), 0);
    d.bars[0].dev = x;
    assert_int_equal(pci_bus_add_device(b, &d), 1);
    uint64_t bar = pci_bar_address(&d, 0);
    pci_config_write(&d, PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    pci_config_write(&d, msix_cap_offset(x) + 2, MSIX_CTRL_ENABLE, 2);
    uint32_t v = 0xfee00000u;
    pci_mmio32_window_ops.write(b, bar - w.mmio32_base + 0x2010, &v, 4);
    v = 0x55;
    pci_mmio32_window_ops.write(b, bar - w.mmio32_base + 0x2018, &v, 4);
    v = 0;
    pci_mmio32_window_ops.write(b, bar - w.mmio32_base + 0x201c, &v, 4);
    assert_int_equal(k.fd_of[25], msix_vector_fd(x, 1));
    assert_int_equal(k.data[25], 0x55);
    uint32_t rd = 0;
    pci_mmio32_window_ops.read(b, bar - w.mmio32_base + 0x2018, &rd, 4);
    assert_int_equal(rd, 0x55);
    pci_bus_free(b);
    msix_free(x);
    assert_int_equal(k.allocated, k.freed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capability, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_unmask_routes_and_attaches, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_masked_vector_pends_and_fires_on_unmask, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(test_bad_messages_and_accesses, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_kvm_failures_leave_vector_undelivered, rig_setup,
                                        rig_teardown),
        cmocka_unit_test(test_new_rejects_bad_arguments),
        cmocka_unit_test(test_through_the_bus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
