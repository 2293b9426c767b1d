/* The PCI root bus as a guest sees it: through ports 0xCF8/0xCFC, through ECAM, and
 * through BARs decoded on the machine's buses, with the reset register at 0xCF9 still
 * reachable through the same dispatcher. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/layout.h"
#include "arch/x86/pci_cf8.h"
#include "core/bus.h"
#include "pci/pci.h"

/* ---- a machine's worth of buses ---- */

struct cf9_probe {
    unsigned writes;
    uint8_t last;
};

static void cf9_read(void *dev, uint64_t off, void *data, unsigned size)
{
    memset(data, 0x5a, size);
}

static void cf9_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct cf9_probe *p = dev;
    assert_int_equal(off, 0);
    assert_int_equal(size, 1);
    p->writes++;
    p->last = *(const uint8_t *)data;
}

static const struct bus_device_ops cf9_ops = { .read = cf9_read, .write = cf9_write };

/* A BAR handler that remembers the last access and answers reads with the offset. */
struct bar_probe {
    unsigned reads, writes;
    uint64_t last_off;
    uint32_t last_val;
};

static void probe_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct bar_probe *p = dev;
    p->reads++;
    p->last_off = off;
    uint32_t v = 0xb0000000u | (uint32_t)off;
    memcpy(data, &v, size < 4 ? size : 4);
}

static void probe_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct bar_probe *p = dev;
    p->writes++;
    p->last_off = off;
    p->last_val = 0;
    memcpy(&p->last_val, data, size < 4 ? size : 4);
}

static const struct bus_device_ops probe_ops = { .read = probe_read, .write = probe_write };

static const struct pci_windows windows = {
    .mmio32_base = X86_PCI_MMIO32_BASE,
    .mmio32_size = X86_PCI_MMIO32_SIZE,
    .mmio64_base = 0x140000000ULL,
    .mmio64_size = X86_PCI_MMIO64_SIZE,
    .io_base = X86_PCI_IO_BASE,
    .io_size = X86_PCI_IO_SIZE,
    .intx_gsi = X86_PCI_INTX_GSI,
};

struct rig {
    struct pci_bus *pci;
    struct x86_pci_cf8 cf8;
    struct bus pio, mmio;
    struct cf9_probe cf9;
};

static int rig_setup(void **state)
{
    struct rig *r = calloc(1, sizeof(*r));
    if (!r)
        return -1;
    r->pci = pci_bus_new(&windows);
    if (!r->pci)
        return -1;
    x86_pci_cf8_init(&r->cf8, r->pci, &cf9_ops, &r->cf9);
    bus_init(&r->pio);
    bus_init(&r->mmio);
    if (bus_add(&r->pio, X86_PCI_CONFIG_PORT, X86_PCI_CONFIG_LEN, &x86_pci_cf8_ops, &r->cf8) ||
        bus_add(&r->pio, X86_PCI_IO_BASE, X86_PCI_IO_SIZE, &pci_io_window_ops, r->pci) ||
        bus_add(&r->mmio, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, &pci_ecam_ops, r->pci) ||
        bus_add(&r->mmio, windows.mmio32_base, windows.mmio32_size, &pci_mmio32_window_ops,
                r->pci) ||
        bus_add(&r->mmio, windows.mmio64_base, windows.mmio64_size, &pci_mmio64_window_ops, r->pci))
        return -1;
    *state = r;
    return 0;
}

static int rig_teardown(void **state)
{
    struct rig *r = *state;
    pci_bus_free(r->pci);
    x86_pci_cf8_fini(&r->cf8);
    bus_destroy(&r->pio);
    bus_destroy(&r->mmio);
    free(r);
    return 0;
}

static uint32_t pio_in(struct rig *r, uint16_t port, unsigned size)
{
    uint32_t v = 0;
    assert_true(bus_read(&r->pio, port, &v, size));
    return v;
}

static void pio_out(struct rig *r, uint16_t port, uint32_t v, unsigned size)
{
    assert_true(bus_write(&r->pio, port, &v, size));
}

static uint32_t cfg_addr(unsigned bus, unsigned dev, unsigned fn, unsigned reg)
{
    return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
}

/* Mechanism #1, as Linux's pci_conf1_read does it. */
static uint32_t conf1_read(struct rig *r, unsigned dev, unsigned reg, unsigned size)
{
    pio_out(r, 0xcf8, cfg_addr(0, dev, 0, reg), 4);
    return pio_in(r, (uint16_t)(0xcfc + (reg & 3)), size);
}

static void conf1_write(struct rig *r, unsigned dev, unsigned reg, uint32_t v, unsigned size)
{
    pio_out(r, 0xcf8, cfg_addr(0, dev, 0, reg), 4);
    pio_out(r, (uint16_t)(0xcfc + (reg & 3)), v, size);
}

static uint32_t ecam_read(struct rig *r, unsigned dev, unsigned fn, unsigned reg, unsigned size)
{
    uint64_t v = 0;
    assert_true(bus_read(&r->mmio, X86_PCI_ECAM_BASE + (dev << 15 | fn << 12 | reg), &v, size));
    return (uint32_t)v;
}

static uint32_t mem_read32(struct rig *r, uint64_t addr)
{
    uint32_t v = 0;
    bus_read(&r->mmio, addr, &v, 4);
    return v;
}

/* ---- tests ---- */

static void test_host_bridge_through_ports(void **state)
{
    struct rig *r = *state;
    assert_int_equal(conf1_read(r, 0, 0, 4),
                     (uint32_t)PCI_HOST_BRIDGE_DEVICE << 16 | PCI_HOST_BRIDGE_VENDOR);
    assert_int_equal(conf1_read(r, 0, 0x08, 4) >> 8, PCI_CLASS_HOST_BRIDGE);
    assert_int_equal(conf1_read(r, 0, 0x0e, 1), 0); /* type-0 header, single function */
    /* Any width at any offset of CONFIG_DATA. */
    assert_int_equal(conf1_read(r, 0, 0x02, 2), PCI_HOST_BRIDGE_DEVICE);
    assert_int_equal(conf1_read(r, 0, 0x01, 1), PCI_HOST_BRIDGE_VENDOR >> 8);
    assert_int_equal(conf1_read(r, 0, 0x0b, 1), 0x06);
    pio_out(r, 0xcf8, cfg_addr(0, 0, 0, 0), 4);
    assert_int_equal(pio_in(r, 0xcfd, 2),
                     PCI_HOST_BRIDGE_VENDOR >> 8 | (PCI_HOST_BRIDGE_DEVICE & 0xff) << 8);
    /* CONFIG_ADDRESS reads back what was latched, reserved bits clear. */
    pio_out(r, 0xcf8, 0xffffffffu, 4);
    assert_int_equal(pio_in(r, 0xcf8, 4), 0x80fffffcu);
}

static void test_absent_functions_read_ones(void **state)
{
    struct rig *r = *state;
    assert_int_equal(conf1_read(r, 1, 0, 4), 0xffffffffu); /* empty slot */
    assert_int_equal(conf1_read(r, 31, 0, 2), 0xffffu);
    pio_out(r, 0xcf8, cfg_addr(1, 0, 0, 0), 4); /* bus 1 */
    assert_int_equal(pio_in(r, 0xcfc, 4), 0xffffffffu);
    pio_out(r, 0xcf8, cfg_addr(0, 0, 3, 0), 4); /* function 3 */
    assert_int_equal(pio_in(r, 0xcfc, 4), 0xffffffffu);
    pio_out(r, 0xcf8, cfg_addr(0, 0, 0, 0) & ~0x80000000u, 4); /* enable bit clear */
    assert_int_equal(pio_in(r, 0xcfc, 4), 0xffffffffu);
    /* Writes there go nowhere (and do not crash). */
    pio_out(r, 0xcfc, 0, 4);
    assert_int_equal(conf1_read(r, 0, 0, 2), PCI_HOST_BRIDGE_VENDOR);
    assert_int_equal(ecam_read(r, 5, 0, 0, 4), 0xffffffffu);
    assert_int_equal(ecam_read(r, 0, 1, 0, 4), 0xffffffffu);
}

static void test_reset_port_shares_the_dispatcher(void **state)
{
    struct rig *r = *state;
    pio_out(r, 0xcf8, cfg_addr(0, 0, 0, 0x10), 4);
    pio_out(r, 0xcf9, 0x06, 1);
    assert_int_equal(r->cf9.writes, 1);
    assert_int_equal(r->cf9.last, 0x06);
    assert_int_equal(pio_in(r, 0xcf9, 1), 0x5a);
    /* The latch survived the reset register write. */
    assert_int_equal(pio_in(r, 0xcf8, 4), cfg_addr(0, 0, 0, 0x10));
    /* A dword write at 0xCF8 is CONFIG_ADDRESS only; narrow writes at 0xCF8/0xCFA and a
     * word at 0xCF9 go nowhere. */
    pio_out(r, 0xcf8, 0x80000006u, 4);
    pio_out(r, 0xcf8, 0x12, 1);
    pio_out(r, 0xcf8, 0x1234, 2);
    pio_out(r, 0xcfa, 0x12, 1);
    pio_out(r, 0xcf9, 0x0606, 2);
    assert_int_equal(r->cf9.writes, 1);
    assert_int_equal(pio_in(r, 0xcf8, 4), 0x80000004u);
    assert_int_equal(pio_in(r, 0xcf8, 1), 0xff);
    assert_int_equal(pio_in(r, 0xcfa, 2), 0xffff);

    /* Without a reset handler the byte is simply dropped. */
    r->cf8.cf9_ops = NULL;
    pio_out(r, 0xcf9, 0x06, 1);
    assert_int_equal(pio_in(r, 0xcf9, 1), 0xff);
    r->cf8.cf9_ops = &cf9_ops;
    assert_int_equal(r->cf9.writes, 1);
}

static void test_read_only_bits(void **state)
{
    struct rig *r = *state;
    conf1_write(r, 0, 0x00, 0x12345678u, 4); /* ids */
    conf1_write(r, 0, 0x08, 0xffffffffu, 4); /* class, revision */
    conf1_write(r, 0, 0x06, 0xffff, 2);      /* status */
    assert_int_equal(conf1_read(r, 0, 0, 4),
                     (uint32_t)PCI_HOST_BRIDGE_DEVICE << 16 | PCI_HOST_BRIDGE_VENDOR);
    assert_int_equal(conf1_read(r, 0, 0x08, 4) >> 8, PCI_CLASS_HOST_BRIDGE);
    assert_int_equal(conf1_read(r, 0, 0x06, 2), 0);
    /* Command: only the bits a device implements. */
    conf1_write(r, 0, 0x04, 0xffff, 2);
    assert_int_equal(conf1_read(r, 0, 0x04, 2), 0x0407);
    conf1_write(r, 0, 0x04, 0, 2);
    /* The host bridge has no BARs: they read 0 and stay 0. */
    conf1_write(r, 0, 0x10, 0xffffffffu, 4);
    assert_int_equal(conf1_read(r, 0, 0x10, 4), 0);
}

struct three_bar_dev {
    struct pci_device pci;
    struct bar_probe mem32, mem64, io;
};

static void three_bar_init(struct three_bar_dev *t)
{
    memset(t, 0, sizeof(*t));
    pci_device_init(&t->pci, 0x1af4, 0x1041, 0x020000, 1, 0x1af4, 0x0001);
    pci_device_set_interrupt_pin(&t->pci, 1);
    assert_int_equal(
        pci_device_add_bar(&t->pci, 0, PCI_BAR_MEM32, 0x1000, false, &probe_ops, &t->mem32), 0);
    assert_int_equal(
        pci_device_add_bar(&t->pci, 2, PCI_BAR_MEM64, 0x4000, true, &probe_ops, &t->mem64), 0);
    assert_int_equal(pci_device_add_bar(&t->pci, 4, PCI_BAR_IO, 0x20, false, &probe_ops, &t->io),
                     0);
}

static void test_bars_assigned_and_sized(void **state)
{
    struct rig *r = *state;
    struct three_bar_dev t;
    three_bar_init(&t);
    int slot = pci_bus_add_device(r->pci, &t.pci);
    assert_int_equal(slot, 1);
    assert_ptr_equal(pci_bus_device(r->pci, 1), &t.pci);
    assert_int_equal(conf1_read(r, 1, 0, 4), 0x10411af4u);

    uint64_t a0 = pci_bar_address(&t.pci, 0), a2 = pci_bar_address(&t.pci, 2);
    uint64_t a4 = pci_bar_address(&t.pci, 4);
    assert_true(a0 >= windows.mmio32_base &&
                a0 + 0x1000 <= windows.mmio32_base + windows.mmio32_size);
    assert_int_equal(a0 % 0x1000, 0);
    assert_true(a2 >= windows.mmio64_base && a2 % 0x4000 == 0);
    assert_true(a4 >= X86_PCI_IO_BASE && a4 % 0x20 == 0);
    /* Flag bits as the guest reads them. */
    assert_int_equal(conf1_read(r, 1, 0x10, 4), (uint32_t)a0);
    assert_int_equal(conf1_read(r, 1, 0x18, 4), (uint32_t)a2 | 0xc); /* 64-bit, prefetch */
    assert_int_equal(conf1_read(r, 1, 0x1c, 4), (uint32_t)(a2 >> 32));
    assert_int_equal(conf1_read(r, 1, 0x20, 4), (uint32_t)a4 | 1);
    /* The INTx line firmware would write: slot 1, pin A -> GSI 16 + (1 + 0) % 4. */
    assert_int_equal(conf1_read(r, 1, 0x3c, 2), 0x0100 | (X86_PCI_INTX_GSI + 1));

    /* Sizing: all ones in, size mask plus flags out; then restore. */
    conf1_write(r, 1, 0x10, 0xffffffffu, 4);
    assert_int_equal(conf1_read(r, 1, 0x10, 4), 0xfffff000u);
    conf1_write(r, 1, 0x18, 0xffffffffu, 4);
    conf1_write(r, 1, 0x1c, 0xffffffffu, 4);
    assert_int_equal(conf1_read(r, 1, 0x18, 4), 0xffffc00cu);
    assert_int_equal(conf1_read(r, 1, 0x1c, 4), 0xffffffffu);
    conf1_write(r, 1, 0x20, 0xffffffffu, 4);
    assert_int_equal(conf1_read(r, 1, 0x20, 4), 0xffffffe1u);
    conf1_write(r, 1, 0x10, (uint32_t)a0, 4);
    conf1_write(r, 1, 0x18, (uint32_t)a2, 4);
    conf1_write(r, 1, 0x1c, (uint32_t)(a2 >> 32), 4);
    conf1_write(r, 1, 0x20, (uint32_t)a4, 4);
    assert_int_equal(pci_bar_address(&t.pci, 2), a2);
    /* Unused BARs and the expansion ROM stay 0. */
    conf1_write(r, 1, 0x14, 0xffffffffu, 4);
    conf1_write(r, 1, 0x30, 0xffffffffu, 4);
    assert_int_equal(conf1_read(r, 1, 0x14, 4), 0);
    assert_int_equal(conf1_read(r, 1, 0x30, 4), 0);
}

static void test_bar_decoding_follows_the_guest(void **state)
{
    struct rig *r = *state;
    struct three_bar_dev t;
    three_bar_init(&t);
    assert_int_equal(pci_bus_add_device(r->pci, &t.pci), 1);
    uint64_t a0 = pci_bar_address(&t.pci, 0), a2 = pci_bar_address(&t.pci, 2);
    uint16_t a4 = (uint16_t)pci_bar_address(&t.pci, 4);

    /* Decoding off until the guest sets the command bits. */
    assert_int_equal(mem_read32(r, a0 + 8), 0xffffffffu);
    assert_int_equal(t.mem32.reads, 0);
    assert_int_equal(pio_in(r, (uint16_t)(a4 + 4), 4), 0xffffffffu);
    conf1_write(r, 1, 0x04, PCI_COMMAND_MEMORY, 2);
    assert_int_equal(mem_read32(r, a0 + 8), 0xb0000008u);
    assert_int_equal(mem_read32(r, a2 + 0x3ffc), 0xb0003ffcu);
    assert_int_equal(t.mem64.last_off, 0x3ffc);
    assert_int_equal(pio_in(r, (uint16_t)(a4 + 4), 4), 0xffffffffu); /* I/O still off */
    conf1_write(r, 1, 0x04, PCI_COMMAND_MEMORY | PCI_COMMAND_IO, 2);
    assert_int_equal(pio_in(r, (uint16_t)(a4 + 4), 4), 0xb0000004u);
    uint32_t v = 0xdeadbeef;
    assert_true(bus_write(&r->mmio, a0 + 0x10, &v, 4));
    assert_int_equal(t.mem32.writes, 1);
    assert_int_equal(t.mem32.last_off, 0x10);
    assert_int_equal(t.mem32.last_val, 0xdeadbeef);
    /* Straddling the end of a BAR reaches nobody. */
    unsigned before = t.mem32.reads;
    uint64_t q = 0;
    bus_read(&r->mmio, a0 + 0xffc, &q, 8);
    assert_int_equal(q, UINT64_MAX);
    assert_int_equal(t.mem32.reads, before);

    /* The guest moves BAR 0: the old place goes dead, the new one answers. */
    uint64_t moved = a0 + 0x100000;
    conf1_write(r, 1, 0x10, (uint32_t)moved, 4);
    assert_int_equal(mem_read32(r, a0 + 8), 0xffffffffu);
    assert_int_equal(mem_read32(r, moved + 8), 0xb0000008u);
    /* Moved through ECAM, into the 32-bit window, the 64-bit BAR follows as well. */
    uint64_t low = windows.mmio32_base + 0x200000;
    uint32_t lo32 = (uint32_t)low, zero = 0;
    assert_true(bus_write(&r->mmio, X86_PCI_ECAM_BASE + (1 << 15) + 0x18, &lo32, 4));
    assert_true(bus_write(&r->mmio, X86_PCI_ECAM_BASE + (1 << 15) + 0x1c, &zero, 4));
    assert_int_equal(ecam_read(r, 1, 0, 0x18, 4), lo32 | 0xc);
    assert_int_equal(mem_read32(r, low + 4), 0xb0000004u);
    assert_int_equal(mem_read32(r, a2 + 4), 0xffffffffu);
    /* Outside every window: not decoded (0xF0000000 is above ECAM, no window). */
    conf1_write(r, 1, 0x10, 0xf0000000u, 4);
    assert_int_equal(pci_bar_address(&t.pci, 0), 0xf0000000u);
    assert_int_equal(mem_read32(r, moved + 8), 0xffffffffu);
    /* Memory decoding off again: silence. */
    conf1_write(r, 1, 0x10, (uint32_t)a0, 4);
    assert_int_equal(mem_read32(r, a0), 0xb0000000u);
    conf1_write(r, 1, 0x04, 0, 2);
    assert_int_equal(mem_read32(r, a0), 0xffffffffu);
}

static void test_ecam(void **state)
{
    struct rig *r = *state;
    struct three_bar_dev t;
    three_bar_init(&t);
    assert_int_equal(pci_bus_add_device(r->pci, &t.pci), 1);
    t.pci.config[0x123] = 0x77; /* extended config space, beyond CF8's reach */
    assert_int_equal(ecam_read(r, 1, 0, 0x120, 4), 0x77000000u);
    assert_int_equal(ecam_read(r, 0, 0, 0, 4),
                     (uint32_t)PCI_HOST_BRIDGE_DEVICE << 16 | PCI_HOST_BRIDGE_VENDOR);
    assert_int_equal(ecam_read(r, 1, 0, 2, 2), 0x1041);
    assert_int_equal(ecam_read(r, 1, 0, 0xffe, 2), 0);
    uint64_t q = 0;
    assert_true(bus_read(&r->mmio, X86_PCI_ECAM_BASE + (1 << 15), &q, 8));
    assert_int_equal(q & 0xffffffffu, 0x10411af4u);
    /* Writes through ECAM obey the masks. */
    uint16_t cmd = 0xffff;
    assert_true(bus_write(&r->mmio, X86_PCI_ECAM_BASE + (1 << 15) + 4, &cmd, 2));
    assert_int_equal(ecam_read(r, 1, 0, 4, 2), 0x0407);
    /* Straddling a function's 4 KiB page goes nowhere. */
    assert_false(bus_read(&r->mmio, X86_PCI_ECAM_BASE + X86_PCI_ECAM_SIZE - 2, &q, 4));
}

static void test_capability_list(void **state)
{
    struct pci_device d;
    pci_device_init(&d, 0x1af4, 0x1041, 0x020000, 1, 0x1af4, 1);
    assert_int_equal(pci_config_read(&d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
    const uint8_t a[6] = { 1, 2, 3, 4, 5, 6 }, b[3] = { 7, 8, 9 };
    int ca = pci_device_add_capability(&d, PCI_CAP_ID_VENDOR, a, sizeof(a));
    int cb = pci_device_add_capability(&d, PCI_CAP_ID_MSIX, b, sizeof(b));
    assert_int_equal(ca, 0x40);
    assert_true(cb > ca + 7 && cb % 4 == 0);
    assert_int_equal(pci_config_read(&d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
    assert_int_equal(pci_config_read(&d, PCI_CAPABILITY_LIST, 1), ca);
    assert_int_equal(pci_config_read(&d, (unsigned)ca, 2), (unsigned)cb << 8 | PCI_CAP_ID_VENDOR);
    assert_int_equal(pci_config_read(&d, (unsigned)cb, 2), PCI_CAP_ID_MSIX);
    assert_int_equal(pci_config_read(&d, (unsigned)ca + 2, 4), 0x04030201u);
    /* Capability bodies are read-only unless a write mask opens them. */
    pci_config_write(&d, (unsigned)ca + 2, 0, 4);
    assert_int_equal(pci_config_read(&d, (unsigned)ca + 2, 4), 0x04030201u);
    const uint8_t open = 0xf0;
    pci_device_set_wmask(&d, (unsigned)ca + 2, &open, 1);
    pci_config_write(&d, (unsigned)ca + 2, 0xff, 1);
    assert_int_equal(pci_config_read(&d, (unsigned)ca + 2, 1), 0xf1);
    /* Space runs out before 256 bytes. */
    uint8_t big[200] = { 0 };
    assert_int_equal(pci_device_add_capability(&d, 9, big, sizeof(big)), -ENOSPC);
    int n = 0;
    while (pci_device_add_capability(&d, 9, big, 10) > 0)
        n++;
    assert_true(n > 0 && n < 20);
    assert_int_equal(pci_device_add_capability(&d, 9, NULL, 4), -EINVAL);
    assert_int_equal(pci_device_add_capability(NULL, 9, big, 4), -EINVAL);
}

static unsigned hook_calls, hook_off, hook_size;

static void hook(void *ctx, unsigned off, unsigned size)
{
    (void)ctx;
    hook_calls++;
    hook_off = off;
    hook_size = size;
}

static void test_config_hooks_and_bad_accesses(void **state)
{
    struct pci_device d;
    pci_device_init(&d, 0x1af4, 0x1041, 0x020000, 1, 0x1af4, 1);
    struct pci_config_hook h = { .written = hook, .ctx = NULL };
    hook_calls = 0;
    for (int i = 0; i < PCI_MAX_CONFIG_HOOKS; i++)
        assert_int_equal(pci_device_add_config_hook(&d, &h), 0);
    assert_int_equal(pci_device_add_config_hook(&d, &h), -ENOSPC);
    struct pci_config_hook none = { 0 };
    assert_int_equal(pci_device_add_config_hook(&d, &none), -EINVAL);
    pci_config_write(&d, 0x44, 0x1234, 2);
    assert_int_equal(hook_calls, PCI_MAX_CONFIG_HOOKS);
    assert_int_equal(hook_off, 0x44);
    assert_int_equal(hook_size, 2);
    /* Bad sizes and offsets: all ones, writes dropped, no hook. */
    hook_calls = 0;
    assert_int_equal(pci_config_read(&d, 0, 3), 0xffffffffu);
    assert_int_equal(pci_config_read(&d, 4096, 1), 0xffffffffu);
    assert_int_equal(pci_config_read(&d, 4094, 4), 0xffffffffu);
    assert_int_equal(pci_config_read(&d, UINT32_MAX, 4), 0xffffffffu);
    assert_int_equal(pci_config_read(NULL, 0, 4), 0xffffffffu);
    pci_config_write(&d, 4095, 0xffff, 2);
    pci_config_write(&d, 0, 0, 8);
    pci_config_write(NULL, 0, 0, 4);
    assert_int_equal(hook_calls, 0);
    assert_int_equal(pci_bar_address(&d, 0), 0);
    assert_int_equal(pci_bar_address(&d, 6), 0);
    assert_int_equal(pci_bar_address(NULL, 0), 0);
}

/* A reading hook runs before the read and may refresh what the guest sees. */
static void refresh(void *ctx, unsigned off, unsigned size)
{
    struct pci_device *d = ctx;
    hook_calls++;
    hook_off = off;
    hook_size = size;
    d->config[0x40] = 0x5a;
}

static void test_reading_hook(void **state)
{
    struct pci_device d;
    pci_device_init(&d, 0x1af4, 0x1041, 0x020000, 1, 0x1af4, 1);
    struct pci_config_hook h = { .reading = refresh, .ctx = &d };
    assert_int_equal(pci_device_add_config_hook(&d, &h), 0);
    hook_calls = 0;
    assert_int_equal(pci_config_read(&d, 0x40, 1), 0x5a);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(hook_off, 0x40);
    assert_int_equal(hook_size, 1);
    pci_config_write(&d, 0x44, 1, 4); /* no written callback: nothing to call */
    assert_int_equal(pci_config_read(&d, 0, 8), 0xffffffffu);
    assert_int_equal(hook_calls, 1); /* a bad access reads nothing */
}

static void test_bad_bars(void **state)
{
    struct pci_device d;
    pci_device_init(&d, 1, 2, 0, 0, 0, 0);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM32, 0x3000, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM32, 8, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM32, 0, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM32, 1ULL << 32, false, NULL, NULL),
                     -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_IO, 2, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_IO, 0x20000, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_IO, 0x20, true, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 5, PCI_BAR_MEM64, 0x1000, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 6, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_NONE, 0x1000, false, NULL, NULL), -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 0, (enum pci_bar_type)77, 0x1000, false, NULL, NULL),
                     -EINVAL);
    assert_int_equal(pci_device_add_bar(NULL, 0, PCI_BAR_MEM32, 0x1000, false, NULL, NULL),
                     -EINVAL);
    assert_int_equal(pci_device_add_bar(&d, 1, PCI_BAR_MEM64, 0x1000, false, NULL, NULL), 0);
    assert_int_equal(pci_device_add_bar(&d, 2, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), -EEXIST);
    assert_int_equal(pci_device_add_bar(&d, 1, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), -EEXIST);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM64, 0x1000, false, NULL, NULL), -EEXIST);
    assert_int_equal(pci_device_add_bar(&d, 0, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), 0);
}

static void test_bus_fills_up(void **state)
{
    struct rig *r = *state;
    static struct pci_device devs[PCI_MAX_SLOTS];
    for (unsigned i = 1; i < PCI_MAX_SLOTS; i++) {
        pci_device_init(&devs[i], 0x1af4, 0x1000, 0, 0, 0, 0);
        assert_int_equal(
            pci_device_add_bar(&devs[i], 0, PCI_BAR_MEM32, 0x1000, false, &probe_ops, NULL), 0);
        assert_int_equal(pci_bus_add_device(r->pci, &devs[i]), (int)i);
    }
    struct pci_device extra;
    pci_device_init(&extra, 0x1af4, 0x1000, 0, 0, 0, 0);
    assert_int_equal(pci_bus_add_device(r->pci, &extra), -ENOSPC);
    assert_int_equal(pci_bus_add_device(r->pci, &devs[3]), -EINVAL); /* already on the bus */
    assert_int_equal(pci_bus_add_device(NULL, &extra), -EINVAL);
    assert_int_equal(pci_bus_add_device(r->pci, NULL), -EINVAL);
    /* All BARs distinct. */
    for (unsigned i = 2; i < PCI_MAX_SLOTS; i++)
        assert_true(pci_bar_address(&devs[i], 0) >= pci_bar_address(&devs[i - 1], 0) + 0x1000);
    assert_null(pci_bus_device(r->pci, PCI_MAX_SLOTS));
}

static void test_windows_fill_up(void **state)
{
    struct pci_windows small = { .mmio32_base = 0xc0000000ULL, .mmio32_size = 0x2000 };
    struct pci_bus *b = pci_bus_new(&small);
    assert_non_null(b);
    struct pci_device d1, d2, d3;
    pci_device_init(&d1, 1, 1, 0, 0, 0, 0);
    pci_device_init(&d2, 1, 1, 0, 0, 0, 0);
    pci_device_init(&d3, 1, 1, 0, 0, 0, 0);
    assert_int_equal(pci_device_add_bar(&d1, 0, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), 0);
    assert_int_equal(pci_device_add_bar(&d2, 0, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), 0);
    assert_int_equal(pci_device_add_bar(&d2, 1, PCI_BAR_MEM32, 0x1000, false, NULL, NULL), 0);
    assert_int_equal(pci_device_add_bar(&d3, 0, PCI_BAR_IO, 0x10, false, NULL, NULL), 0);
    assert_int_equal(pci_bus_add_device(b, &d1), 1);
    assert_int_equal(pci_bus_add_device(b, &d2), -ENOSPC); /* needs 8 KiB, 4 KiB left */
    assert_int_equal(pci_bus_add_device(b, &d3), -ENOSPC); /* no I/O window */
    /* A 64-bit BAR without a 64-bit window lands in the 32-bit one. */
    struct pci_device d4;
    pci_device_init(&d4, 1, 1, 0, 0, 0, 0);
    assert_int_equal(pci_device_add_bar(&d4, 0, PCI_BAR_MEM64, 0x1000, false, NULL, NULL), 0);
    assert_int_equal(pci_bus_add_device(b, &d4), 2);
    assert_int_equal(pci_bar_address(&d4, 0), 0xc0001000ULL);
    pci_bus_free(b);

    struct pci_windows bad[] = {
        { .mmio32_base = 0xc0000000ULL, .mmio32_size = 0 },
        { .mmio32_base = UINT64_MAX - 10, .mmio32_size = 0x1000 },
        { .mmio32_base = 0xc0000000ULL,
          .mmio32_size = 0x1000,
          .mmio64_base = UINT64_MAX,
          .mmio64_size = 2 },
        { .mmio32_base = 0xc0000000ULL,
          .mmio32_size = 0x1000,
          .io_base = 0xf000,
          .io_size = 0x2000 },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(pci_bus_new(&bad[i]));
    assert_null(pci_bus_new(NULL));
    pci_bus_free(NULL);
}

static void test_mmio64_base(void **state)
{
    assert_int_equal(x86_pci_mmio64_base(0x40000000ULL), 0x100000000ULL);
    assert_int_equal(x86_pci_mmio64_base(0x100000000ULL), 0x100000000ULL);
    assert_int_equal(x86_pci_mmio64_base(0x100000001ULL), 0x140000000ULL);
    assert_int_equal(x86_pci_mmio64_base(0x240000000ULL), 0x240000000ULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_host_bridge_through_ports, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_absent_functions_read_ones, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_reset_port_shares_the_dispatcher, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(test_read_only_bits, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_bars_assigned_and_sized, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_bar_decoding_follows_the_guest, rig_setup,
                                        rig_teardown),
        cmocka_unit_test_setup_teardown(test_ecam, rig_setup, rig_teardown),
        cmocka_unit_test(test_capability_list),
        cmocka_unit_test(test_config_hooks_and_bad_accesses),
        cmocka_unit_test(test_reading_hook),
        cmocka_unit_test(test_bad_bars),
        cmocka_unit_test_setup_teardown(test_bus_fills_up, rig_setup, rig_teardown),
        cmocka_unit_test(test_windows_fill_up),
        cmocka_unit_test(test_mmio64_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
