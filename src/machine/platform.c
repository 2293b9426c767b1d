#include "machine/platform.h"
#include "arch/x86/layout.h"
#include "attach/serial_link.h"
#include "core/error.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/uart_16550.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Static_assert(ACPI_PM_BLOCK_LEN == X86_PM_SIZE, "the FADT's PM block is the device's");
_Static_assert(ACPI_PM_S5_SLP_TYP == X86_S5_SLP_TYP, "the DSDT's \\_S5 is the device's S5");

static const struct {
    uint16_t port;
    uint8_t irq;
} com_ports[PLATFORM_SERIAL_PORTS] = {
    { X86_COM1_PORT, X86_COM1_IRQ },
    { X86_COM2_PORT, X86_COM2_IRQ },
    { X86_COM3_PORT, X86_COM1_IRQ },
    { X86_COM4_PORT, X86_COM2_IRQ },
};

static vmk_result add_range(struct bus *bus, const char *space, uint64_t base, uint64_t len,
                            const struct bus_device_ops *ops, void *dev, vmk_error **err)
{
    int r = bus_add(bus, base, len, ops, dev);
    if (r < 0)
        return vmk_fail(err, VMK_ERR_INTERNAL, -r, "%s %#llx+%#llx: cannot register: %s", space,
                        (unsigned long long)base, (unsigned long long)len, strerror(-r));
    return VMK_OK;
}

#define NEED(ptr)                                                                               \
    do {                                                                                        \
        if (!(ptr))                                                                             \
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "platform devices: out of memory"); \
    } while (0)

static size_t uart_sink(void *ctx, const uint8_t *buf, size_t len)
{
    return uart_16550_receive(ctx, buf, len);
}

static void uart_tx_space(void *ctx)
{
    uart_16550_tx_space(ctx);
}

static vmk_result create_serial_ports(struct platform *p, const struct platform_env *env,
                                      const vmk_config *cfg, vmk_error **err)
{
    unsigned n = vmk_config_serial_port_count(cfg);
    for (unsigned i = 0; i < n && i < PLATFORM_SERIAL_PORTS; i++) {
        char what[32];
        snprintf(what, sizeof(what), "serial port %u", i + 1);
        vmk_result r = serial_link_open(vmk_config_get_serial_port(cfg, i), what, env->el,
                                        env->escape, env->escape_ctx, &p->link[i], err);
        if (r != VMK_OK)
            return r;
        struct irq_line irq = kvm_vm_irq_line(env->vm, &p->irq_src[PLATFORM_IRQ_COM1 + i],
                                              PLATFORM_IRQ_COM1 + i, com_ports[i].irq);
        struct serial_output out = { .write = serial_link_write, .ctx = p->link[i] };
        NEED(p->uart[i] = uart_16550_new(&irq, &out, serial_link_rx_space, p->link[i]));
        if ((r = add_range(env->pio, "I/O ports", com_ports[i].port, 8, &uart_16550_bus_ops,
                           p->uart[i], err)))
            return r;
        struct serial_link_sink sink = { .receive = uart_sink,
                                         .tx_space = uart_tx_space,
                                         .ctx = p->uart[i] };
        if ((r = serial_link_connect(p->link[i], &sink, err)) != VMK_OK)
            return r;
    }
    return VMK_OK;
}

/* Root bus 0, its routing table, the windows on the machine's buses, and one dispatcher on
 * 0xCF8..0xCFF that also carries the reset control register at 0xCF9. */
static vmk_result create_pci(struct platform *p, const struct platform_env *env, vmk_error **err)
{
    vmk_result r;
    struct kvm_irq_routing_entry base[X86_IRQCHIP_ROUTES];
    x86_irqchip_routes(base);
    int e = kvm_irq_routes_new(env->vm->vm_fd, base, X86_IRQCHIP_ROUTES, X86_FIRST_MSI_GSI, NULL,
                               &p->routes);
    if (e < 0)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, -e, "GSI routing table: %s", strerror(-e));
    p->irq = kvm_irq_routes_ops(p->routes);
    struct pci_windows w = {
        .mmio32_base = X86_PCI_MMIO32_BASE,
        .mmio32_size = X86_PCI_MMIO32_SIZE,
        .mmio64_base = x86_pci_mmio64_base(env->ram_end),
        .mmio64_size = X86_PCI_MMIO64_SIZE,
        .io_base = X86_PCI_IO_BASE,
        .io_size = X86_PCI_IO_SIZE,
        .intx_gsi = X86_PCI_INTX_GSI,
    };
    if (env->efi) {
        w.mmio32_base = X86_EFI_PCI_MMIO32_BASE;
        w.mmio32_size = X86_EFI_PCI_MMIO32_SIZE;
        w.mmio64_base = x86_efi_pci_mmio64_base(env->ram_end);
        w.mmio64_size = x86_efi_pci_mmio64_size(env->ram_end, env->phys_bits);
        w.io_base = X86_EFI_PCI_IO_BASE;
        w.io_size = X86_EFI_PCI_IO_SIZE;
    }
    NEED(p->pci = pci_bus_new(&w));
    x86_pci_cf8_init(&p->cf8, p->pci, &acpi_pm_reset_bus_ops, p->pm);
    p->cf8_ready = true;
    if (env->efi) {
        /* The chipset's registers decide whether ECAM and the PM block answer. */
        if ((e = x86_q35_init(&p->q35, p->pci, &acpi_pm_bus_ops, p->pm)) < 0)
            return vmk_fail(err, VMK_ERR_INTERNAL, -e, "Q35 LPC bridge: %s", strerror(-e));
        if ((r = add_range(env->mmio, "MMIO", X86_EFI_ECAM_BASE, X86_PCI_ECAM_SIZE,
                           &x86_q35_ecam_ops, &p->q35, err)) ||
            (r = add_range(env->pio, "I/O ports", X86_PM_BASE, X86_PM_SIZE, &x86_q35_pm_ops,
                           &p->q35, err)))
            return r;
    } else if ((r = add_range(env->mmio, "MMIO", X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE,
                              &pci_ecam_ops, p->pci, err)) ||
               (r = add_range(env->pio, "I/O ports", X86_PM_BASE, X86_PM_SIZE, &acpi_pm_bus_ops,
                              p->pm, err))) {
        return r;
    }
    if ((r = add_range(env->pio, "I/O ports", X86_PCI_CONFIG_PORT, X86_PCI_CONFIG_LEN,
                       &x86_pci_cf8_ops, &p->cf8, err)) ||
        (r = add_range(env->pio, "I/O ports", w.io_base, w.io_size, &pci_io_window_ops, p->pci,
                       err)) ||
        (r = add_range(env->mmio, "MMIO", w.mmio32_base, w.mmio32_size, &pci_mmio32_window_ops,
                       p->pci, err)) ||
        (r = add_range(env->mmio, "MMIO", w.mmio64_base, w.mmio64_size, &pci_mmio64_window_ops,
                       p->pci, err)))
        return r;
    return VMK_OK;
}

vmk_result platform_create(struct platform *p, const struct platform_env *env,
                           const vmk_config *cfg, vmk_error **err)
{
    memset(p, 0, sizeof(*p));
    vmk_result r = create_serial_ports(p, env, cfg, err);
    if (r != VMK_OK)
        return r;
    NEED(p->i8042 = i8042_new(env->ev));
    NEED(p->rtc = cmos_rtc_new(NULL, NULL));
    struct irq_line sci =
        kvm_vm_irq_line(env->vm, &p->irq_src[PLATFORM_IRQ_SCI], PLATFORM_IRQ_SCI, X86_SCI_IRQ);
    NEED(p->pm = acpi_pm_new(&sci, env->ev, NULL, NULL));
    /* OVMF's ResetSystem powers off with SLP_TYP 0 (QEMU's chipsets' S5), not the DSDT's. */
    if (env->efi)
        acpi_pm_set_power_off_types(p->pm, 1u << 0 | 1u << ACPI_PM_S5_SLP_TYP);
    NEED(p->debug_exit = debug_exit_new(env->ev));
    struct bus *pio = env->pio;
    if ((r = add_range(pio, "I/O ports", X86_I8042_DATA_PORT, 1, &i8042_data_bus_ops, p->i8042,
                       err)) ||
        (r = add_range(pio, "I/O ports", X86_I8042_CMD_PORT, 1, &i8042_cmd_bus_ops, p->i8042,
                       err)) ||
        (r = add_range(pio, "I/O ports", X86_RTC_PORT, 2, &cmos_rtc_bus_ops, p->rtc, err)) ||
        (r = add_range(pio, "I/O ports", X86_DEBUG_EXIT_PORT, 4, &debug_exit_bus_ops, p->debug_exit,
                       err)))
        return r;
    return create_pci(p, env, err);
}

const char *platform_serial_pty_path(const struct platform *p, unsigned index)
{
    return index < PLATFORM_SERIAL_PORTS ? serial_link_pty_path(p->link[index]) : NULL;
}

void platform_press_power_button(struct platform *p)
{
    acpi_pm_press_power_button(p->pm);
}

void platform_free_pci(struct platform *p)
{
    pci_bus_free(p->pci);
    p->pci = NULL;
}

void platform_destroy(struct platform *p)
{
    platform_free_pci(p);
    if (p->cf8_ready)
        x86_pci_cf8_fini(&p->cf8);
    p->cf8_ready = false;
    kvm_irq_routes_free(p->routes);
    p->routes = NULL;
    for (unsigned i = 0; i < PLATFORM_SERIAL_PORTS; i++) {
        serial_link_close(p->link[i]);
        uart_16550_free(p->uart[i]);
        p->link[i] = NULL;
        p->uart[i] = NULL;
    }
    i8042_free(p->i8042);
    cmos_rtc_free(p->rtc);
    acpi_pm_free(p->pm);
    debug_exit_free(p->debug_exit);
    p->i8042 = NULL;
    p->rtc = NULL;
    p->pm = NULL;
    p->debug_exit = NULL;
}
