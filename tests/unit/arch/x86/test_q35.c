/* The Q35 identity of the EFI machine as OVMF's PlatformPei programs it: the host bridge and
 * LPC ids, PCIEXBAR switching the ECAM window on at 0xB0000000, PMBASE + ACPI_CNTL switching
 * the ACPI PM block on at 0x600, and both staying off for any other value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>

#include <cmocka.h>

#include "arch/x86/layout.h"
#include "arch/x86/q35.h"

struct fixture {
    struct pci_bus *bus;
    struct x86_q35 q;
    unsigned pm_reads, pm_writes;
};

static void fake_pm_read(void *dev, uint64_t off, void *data, unsigned size)
{
    struct fixture *f = dev;
    f->pm_reads++;
    memset(data, 0x12, size);
}

static void fake_pm_write(void *dev, uint64_t off, const void *data, unsigned size)
{
    struct fixture *f = dev;
    f->pm_writes++;
}

static const struct bus_device_ops fake_pm = { .read = fake_pm_read, .write = fake_pm_write };

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct pci_windows w = {
        .mmio32_base = X86_EFI_PCI_MMIO32_BASE,
        .mmio32_size = X86_EFI_PCI_MMIO32_SIZE,
        .io_base = X86_EFI_PCI_IO_BASE,
        .io_size = X86_EFI_PCI_IO_SIZE,
        .intx_gsi = 16,
    };
    if (!f || !(f->bus = pci_bus_new(&w)) || x86_q35_init(&f->q, f->bus, &fake_pm, f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pci_bus_free(f->bus);
    free(f);
    return 0;
}

static uint32_t ecam_read32(struct fixture *f, uint64_t off)
{
    uint8_t b[4];
    x86_q35_ecam_ops.read(&f->q, off, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void identity(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(pci_bus_config_read(f->bus, 0, 0, 0, 0, 4), 0x29c08086);
    assert_int_equal(pci_bus_config_read(f->bus, 0, 0x1f, 0, 0, 4), 0x29188086);
    assert_int_equal(pci_bus_config_read(f->bus, 0, 0x1f, 0, 0x0a, 2), 0x0601); /* ISA bridge */
    /* PMBASE reads back with its I/O bit; the routing bytes start disabled. */
    assert_int_equal(pci_bus_config_read(f->bus, 0, 0x1f, 0, Q35_LPC_PMBASE, 4), 1);
    assert_int_equal(pci_bus_config_read(f->bus, 0, 0x1f, 0, 0x60, 1), 0x80);
    /* Other devices still go to the first free slot. */
    struct pci_device d;
    pci_device_init(&d, 0x1af4, 0x1042, 0x010000, 1, 0x1af4, 2);
    assert_int_equal(pci_bus_add_device(f->bus, &d), 1);
    struct pci_device e;
    pci_device_init(&e, 0x1af4, 0x1042, 0x010000, 1, 0x1af4, 2);
    assert_int_equal(pci_bus_add_device_at(f->bus, &e, 0x1f), -EEXIST);
}

static void pciexbar(void **state)
{
    struct fixture *f = *state;
    /* Off until the firmware enables it. */
    assert_int_equal(ecam_read32(f, 0), 0xffffffff);
    /* OVMF's sequence: low 0, high, then low with base and enable (256 MiB). */
    pci_bus_config_write(f->bus, 0, 0, 0, Q35_PCIEXBAR, 0, 4);
    pci_bus_config_write(f->bus, 0, 0, 0, Q35_PCIEXBAR + 4, 0, 4);
    assert_int_equal(ecam_read32(f, 0), 0xffffffff);
    pci_bus_config_write(f->bus, 0, 0, 0, Q35_PCIEXBAR, (uint32_t)X86_EFI_ECAM_BASE | 1, 4);
    assert_int_equal(pci_bus_config_read(f->bus, 0, 0, 0, Q35_PCIEXBAR, 4),
                     (uint32_t)X86_EFI_ECAM_BASE | 1);
    assert_int_equal(ecam_read32(f, 0), 0x29c08086);
    assert_int_equal(ecam_read32(f, 0x1f << 15), 0x29188086);
    /* Elsewhere: vmkit cannot move the window, so it stops answering. */
    pci_bus_config_write(f->bus, 0, 0, 0, Q35_PCIEXBAR, 0xe0000001, 4);
    assert_int_equal(ecam_read32(f, 0), 0xffffffff);
    pci_bus_config_write(f->bus, 0, 0, 0, Q35_PCIEXBAR, (uint32_t)X86_EFI_ECAM_BASE | 1, 4);
    pci_bus_config_write(f->bus, 0, 0, 0, Q35_PCIEXBAR + 4, 1, 4);
    assert_int_equal(ecam_read32(f, 0), 0xffffffff);
}

static void pm_block(void **state)
{
    struct fixture *f = *state;
    uint8_t b[4];
    x86_q35_pm_ops.read(&f->q, 8, b, 4);
    assert_int_equal(f->pm_reads, 0);
    assert_int_equal(b[0], 0xff);
    /* PMBASE alone is not enough: ACPI_CNTL.ACPI_EN too. */
    pci_bus_config_write(f->bus, 0, 0x1f, 0, Q35_LPC_PMBASE, X86_PM_BASE, 4);
    assert_int_equal(pci_bus_config_read(f->bus, 0, 0x1f, 0, Q35_LPC_PMBASE, 4), X86_PM_BASE | 1);
    x86_q35_pm_ops.read(&f->q, 8, b, 4);
    assert_int_equal(f->pm_reads, 0);
    pci_bus_config_write(f->bus, 0, 0x1f, 0, Q35_LPC_ACPI_CNTL, Q35_ACPI_EN, 1);
    x86_q35_pm_ops.read(&f->q, 8, b, 4);
    assert_int_equal(f->pm_reads, 1);
    assert_int_equal(b[0], 0x12);
    x86_q35_pm_ops.write(&f->q, 4, b, 2);
    assert_int_equal(f->pm_writes, 1);
    /* Another base: the block at 0x600 goes quiet. */
    pci_bus_config_write(f->bus, 0, 0x1f, 0, Q35_LPC_PMBASE, 0xb000, 4);
    x86_q35_pm_ops.write(&f->q, 4, b, 2);
    x86_q35_pm_ops.read(&f->q, 8, b, 4);
    assert_int_equal(f->pm_writes, 1);
    assert_int_equal(f->pm_reads, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(identity, setup, teardown),
        cmocka_unit_test_setup_teardown(pciexbar, setup, teardown),
        cmocka_unit_test_setup_teardown(pm_block, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
