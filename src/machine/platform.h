/* The PC platform of a vmkit machine: the legacy devices at the places arch/x86/layout.h
 * gives them (COM1-COM4 with their serial links, the i8042, the CMOS RTC, the ACPI PM block
 * and reset register, the debug-exit port), and PCI root bus 0 with its windows, ECAM, the
 * 0xCF8 window and the GSI routing table its MSI-X vectors use. */
#ifndef VMK_MACHINE_PLATFORM_H
#define VMK_MACHINE_PLATFORM_H

#include "arch/x86/kvm_setup.h"
#include "arch/x86/pci_cf8.h"
#include "arch/x86/q35.h"
#include "core/bus.h"
#include "core/event_loop.h"
#include "core/machine_events.h"
#include "kvm/irq_routes.h"
#include "kvm/vm.h"
#include "pci/pci.h"
#include "vmkit.h"

#define PLATFORM_SERIAL_PORTS 4 /* COM1..COM4 */

enum {
    PLATFORM_IRQ_SCI = 0,
    PLATFORM_IRQ_COM1 = 1, /* COM1..COM4 are sources 1..4 */
    PLATFORM_IRQ_SOURCES = PLATFORM_IRQ_COM1 + PLATFORM_SERIAL_PORTS,
};

struct platform {
    struct kvm_irq_source irq_src[PLATFORM_IRQ_SOURCES];
    struct uart_16550 *uart[PLATFORM_SERIAL_PORTS];
    struct serial_link *link[PLATFORM_SERIAL_PORTS];
    struct i8042 *i8042;
    struct cmos_rtc *rtc;
    struct acpi_pm *pm;
    struct debug_exit *debug_exit;
    struct kvm_irq_routes *routes;
    struct irq_routing_ops irq; /* backed by routes */
    struct pci_bus *pci;
    struct x86_pci_cf8 cf8;
    bool cf8_ready;
    struct x86_q35 q35; /* the EFI machine's chipset registers */
};

/* Where the platform puts things, and whom it tells. */
struct platform_env {
    struct kvm_vm *vm;
    struct bus *pio, *mmio;
    struct event_loop *el;           /* serial input runs here */
    const struct machine_events *ev; /* power off, reset, debug exit */
    void (*escape)(void *ctx);       /* Ctrl-A x on a terminal port */
    void *escape_ctx;
    uint64_t ram_end;   /* the 64-bit PCI window starts above it */
    unsigned phys_bits; /* the guest's physical address width (the EFI machine's window) */
    /* The EFI machine: Q35's identity (host bridge, LPC bridge with PMBASE) and the layout
     * OVMF assumes (arch/x86/layout.h); else vmkit's generic host bridge. */
    bool efi;
};

/* Builds the platform for cfg's serial ports. On failure, platform_destroy what is left. */
vmk_result platform_create(struct platform *p, const struct platform_env *env,
                           const vmk_config *cfg, vmk_error **err)
    __attribute__((warn_unused_result));
/* Serial port index's pty path, or NULL. */
const char *platform_serial_pty_path(const struct platform *p, unsigned index);
void platform_press_power_button(struct platform *p);
/* Lets go of the PCI functions on the bus (first, before they are freed) and frees it. */
void platform_free_pci(struct platform *p);
/* The rest, once no vCPU runs. */
void platform_destroy(struct platform *p);

#endif
