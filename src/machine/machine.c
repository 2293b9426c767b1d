/* Builds an x86-64 machine on KVM from a validated config and runs its vCPUs. */
#include "machine/machine.h"
#include "arch/x86/acpi.h"
#include "devices/legacy/acpi_pm.h"
#include "arch/x86/boot_linux.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "arch/x86/layout.h"
#include "arch/x86/long_mode.h"
#include "machine/virtio_pci_function.h"
#include "block/disk_image.h"
#include "virtio/blk.h"
#include "virtio/rng.h"
#include "devices/legacy/uart_16550.h"
#include "machine/console_ports.h"
#include "attach/serial_link.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define KVM_API_EXPECTED 12
#define IRQ_GSI_COUNT    24

/* The irq_line context of one interrupt source: shared ISA lines (COM1/COM3)
 * are the OR of their sources. */
struct irq_source {
    struct kvm_machine *m;
    uint32_t bit;
};

enum {
    IRQ_SRC_SCI = 0,
    IRQ_SRC_COM0 = 1, /* COM1..COM4 use bits 1..4 */
    IRQ_SRC_COUNT = IRQ_SRC_COM0 + VMK_MAX_SERIAL_PORTS,
};

struct platform_devices {
    struct irq_source irq_src[IRQ_SRC_COUNT];
    struct uart_16550 *uart[VMK_MAX_SERIAL_PORTS];
    struct serial_link *link[VMK_MAX_SERIAL_PORTS];
    unsigned uart_count;
    struct i8042 *i8042;
    struct cmos_rtc *rtc;
    struct acpi_pm *pm;
    struct debug_exit *debug_exit;
    struct machine_virtio
        *virtio[VMK_MAX_STORAGE_DEVICES + VMK_MAX_ENTROPY_DEVICES + VMK_MAX_CONSOLE_DEVICES];
    unsigned virtio_count;
    struct disk_image *images[VMK_MAX_STORAGE_DEVICES];
    struct console_ports *console_ports[VMK_MAX_CONSOLE_DEVICES];
};

static const struct {
    uint16_t port;
    uint8_t irq;
} com_ports[VMK_MAX_SERIAL_PORTS] = {
    { X86_COM1_PORT, X86_COM1_IRQ },
    { X86_COM2_PORT, X86_COM2_IRQ },
    { X86_COM3_PORT, X86_COM1_IRQ },
    { X86_COM4_PORT, X86_COM2_IRQ },
};

static void kick_handler(int sig)
{
    (void)sig;
}

static void set_irq_level(void *ctx, unsigned gsi, bool level)
{
    struct irq_source *src = ctx;
    struct kvm_machine *m = src->m;
    if (gsi >= IRQ_GSI_COUNT)
        return;
    pthread_mutex_lock(&m->irq_lock);
    uint32_t before = m->irq_sources[gsi];
    if (level)
        m->irq_sources[gsi] |= src->bit;
    else
        m->irq_sources[gsi] &= ~src->bit;
    if ((before != 0) != (m->irq_sources[gsi] != 0)) {
        struct kvm_irq_level irq = { .irq = gsi, .level = m->irq_sources[gsi] != 0 };
        ioctl(m->vm_fd, KVM_IRQ_LINE, &irq);
    }
    pthread_mutex_unlock(&m->irq_lock);
}

static struct irq_line irq_line_for(struct kvm_machine *m, unsigned src, unsigned gsi)
{
    m->dev->irq_src[src] = (struct irq_source){ .m = m, .bit = 1u << src };
    return (
        struct irq_line){ .set_level = set_irq_level, .ctx = &m->dev->irq_src[src], .gsi = gsi };
}

void machine_end(struct kvm_machine *m, enum machine_end why, uint32_t code, vmk_error *err)
{
    bool expected = false;
    if (!atomic_compare_exchange_strong(&m->ended, &expected, true)) {
        vmk_error_free(err);
        return;
    }
    pthread_mutex_lock(&m->lock);
    m->quit = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    machine_kick_all(m);
    m->owner.ended(m->owner.ctx, why, code, err);
}

static void on_power_off(void *ctx)
{
    machine_end(ctx, MACHINE_END_POWER_OFF, 0, NULL);
}

static void on_reset(void *ctx)
{
    machine_end(ctx, MACHINE_END_RESET, 0, NULL);
}

static void on_debug_exit(void *ctx, uint32_t code)
{
    machine_end(ctx, MACHINE_END_DEBUG_EXIT, code, NULL);
}

static void on_escape(void *ctx)
{
    machine_end(ctx, MACHINE_END_ESCAPE, 0, NULL);
}

static size_t uart_sink(void *ctx, const uint8_t *buf, size_t len)
{
    return uart_16550_receive(ctx, buf, len);
}

static vmk_result add_pio(struct kvm_machine *m, uint16_t port, uint16_t len,
                          const struct bus_device_ops *ops, void *dev, vmk_error **err)
{
    int r = bus_add(&m->pio, port, len, ops, dev);
    if (r < 0)
        return vmk_fail(err, VMK_ERR_INTERNAL, -r, "I/O ports %#x+%u: cannot register: %s", port,
                        len, strerror(-r));
    return VMK_OK;
}

#define NEED(ptr)                                                                               \
    do {                                                                                        \
        if (!(ptr))                                                                             \
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "platform devices: out of memory"); \
    } while (0)

static vmk_result create_serial_ports(struct kvm_machine *m, const vmk_config *cfg,
                                      struct event_loop *el, vmk_error **err)
{
    struct platform_devices *d = m->dev;
    for (unsigned i = 0; i < cfg->serial_count; i++) {
        char what[32];
        snprintf(what, sizeof(what), "serial port %u", i + 1);
        vmk_result r = serial_link_open(cfg->serial[i], what, el, on_escape, m, &d->link[i], err);
        if (r != VMK_OK)
            return r;
        struct irq_line irq = irq_line_for(m, IRQ_SRC_COM0 + i, com_ports[i].irq);
        struct serial_output out = { .write = serial_link_write, .ctx = d->link[i] };
        NEED(d->uart[i] = uart_16550_new(&irq, &out, serial_link_rx_space, d->link[i]));
        d->uart_count = i + 1;
        r = add_pio(m, com_ports[i].port, 8, &uart_16550_bus_ops, d->uart[i], err);
        if (r != VMK_OK)
            return r;
        struct serial_link_sink sink = { .receive = uart_sink, .ctx = d->uart[i] };
        if ((r = serial_link_connect(d->link[i], &sink, err)) != VMK_OK)
            return r;
    }
    return VMK_OK;
}

static uint64_t ram_end(const struct guest_memory *gm)
{
    uint64_t end = 0;
    for (unsigned i = 0; i < gm->nregions; i++)
        if (gm->regions[i].gpa + gm->regions[i].size > end)
            end = gm->regions[i].gpa + gm->regions[i].size;
    return end;
}

static vmk_result add_mmio(struct kvm_machine *m, uint64_t base, uint64_t len,
                           const struct bus_device_ops *ops, void *dev, vmk_error **err)
{
    int r = bus_add(&m->mmio, base, len, ops, dev);
    if (r < 0)
        return vmk_fail(err, VMK_ERR_INTERNAL, -r, "MMIO %#llx+%#llx: cannot register: %s",
                        (unsigned long long)base, (unsigned long long)len, strerror(-r));
    return VMK_OK;
}

/* The PCI root bus, its routing table, and one dispatcher on 0xCF8..0xCFF that also
 * carries the reset control register at 0xCF9 (the chipset decodes them together). */
static vmk_result create_pci(struct kvm_machine *m, vmk_error **err)
{
    int e = kvm_irq_routes_new(m->vm_fd, NULL, &m->irq_routes);
    if (e < 0)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, -e, "GSI routing table: %s", strerror(-e));
    m->irq_ops = kvm_irq_routes_ops(m->irq_routes);
    struct pci_windows w = {
        .mmio32_base = X86_PCI_MMIO32_BASE,
        .mmio32_size = X86_PCI_MMIO32_SIZE,
        .mmio64_base = x86_pci_mmio64_base(ram_end(&m->gm)),
        .mmio64_size = X86_PCI_MMIO64_SIZE,
        .io_base = X86_PCI_IO_BASE,
        .io_size = X86_PCI_IO_SIZE,
    };
    NEED(m->pci = pci_bus_new(&w));
    pci_bus_set_cf9(m->pci, &acpi_pm_reset_bus_ops, m->dev->pm);
    vmk_result r;
    if ((r = add_pio(m, X86_PCI_CONFIG_PORT, X86_PCI_CONFIG_LEN, &pci_config_port_ops, m->pci,
                     err)) ||
        (r = add_pio(m, X86_PCI_IO_BASE, X86_PCI_IO_SIZE, &pci_io_window_ops, m->pci, err)) ||
        (r = add_mmio(m, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, &pci_ecam_ops, m->pci, err)) ||
        (r = add_mmio(m, w.mmio32_base, w.mmio32_size, &pci_mmio32_window_ops, m->pci, err)) ||
        (r = add_mmio(m, w.mmio64_base, w.mmio64_size, &pci_mmio64_window_ops, m->pci, err)))
        return r;
    return VMK_OK;
}

int machine_add_pci_device(struct kvm_machine *m, struct pci_device *d)
{
    if (!m || !m->pci)
        return -EINVAL;
    return pci_bus_add_device(m->pci, d);
}

/* Block devices: one virtio-blk PCI function per disk image, a queue per vCPU (at
 * most BLK_MAX_QUEUES). */
#define BLK_MAX_QUEUES 8
static vmk_result create_storage(struct kvm_machine *m, const vmk_config *cfg, vmk_error **err)
{
    struct platform_devices *d = m->dev;
    unsigned queues = m->vcpu_count < BLK_MAX_QUEUES ? m->vcpu_count : BLK_MAX_QUEUES;
    for (unsigned i = 0; i < cfg->storage_count; i++) {
        const vmk_storage_device *sd = cfg->storage[i];
        vmk_result r = disk_image_open_attachment(sd->att, &d->images[i], err);
        if (r != VMK_OK)
            return r;
        struct virtio_device *blk =
            virtio_blk_new(disk_image_backend(d->images[i]), sd->identifier, queues, err);
        if (!blk)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "storage device %u: out of memory",
                            i + 1);
        /* Class 01 80 00: other mass storage, as virtio-blk reports it. */
        if ((r = machine_virtio_add(m, blk, 0x018000, &d->virtio[d->virtio_count], err)))
            return r;
        d->virtio_count++;
    }
    return VMK_OK;
}

/* The entropy device: one virtio-rng PCI function whose rate-limit timer runs on el. */
static vmk_result create_entropy(struct kvm_machine *m, const vmk_config *cfg,
                                 struct event_loop *el, vmk_error **err)
{
    struct platform_devices *d = m->dev;
    for (unsigned i = 0; i < cfg->entropy_count; i++) {
        struct virtio_device *rng =
            virtio_rng_new(el, VIRTIO_RNG_DEFAULT_RATE, VIRTIO_RNG_DEFAULT_BURST);
        if (!rng)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM,
                            "entropy device %u: out of memory or file descriptors", i + 1);
        /* Class 00 ff 00: unclassified, as QEMU's virtio-rng-pci reports it. */
        vmk_result r = machine_virtio_add(m, rng, 0x00ff00, &d->virtio[d->virtio_count], err);
        if (r)
            return r;
        d->virtio_count++;
    }
    return VMK_OK;
}

/* The console device: its ports' links (console_ports.h) joined to one
 * virtio-console PCI function. */
static vmk_result create_console(struct kvm_machine *m, const vmk_config *cfg,
                                 struct event_loop *el, vmk_error **err)
{
    struct platform_devices *d = m->dev;
    for (unsigned c = 0; c < cfg->console_count; c++) {
        struct virtio_device *con;
        vmk_result r =
            console_ports_open(cfg->console[c], el, on_escape, m, &d->console_ports[c], &con, err);
        if (r != VMK_OK)
            return r;
        /* Class 07 80 00: other communication controller, as QEMU's virtio-serial-pci
         * reports it. */
        if ((r = machine_virtio_add(m, con, 0x078000, &d->virtio[d->virtio_count], err)))
            return r;
        d->virtio_count++;
        if ((r = console_ports_connect(d->console_ports[c], err)) != VMK_OK)
            return r;
    }
    return VMK_OK;
}

const char *kvm_machine_pty_path(const struct kvm_machine *m, bool console, unsigned index)
{
    const struct platform_devices *d = m->dev;
    if (!d)
        return NULL;
    if (console)
        return console_ports_pty_path(d->console_ports[0], index);
    return index < VMK_MAX_SERIAL_PORTS ? serial_link_pty_path(d->link[index]) : NULL;
}

static vmk_result create_devices(struct kvm_machine *m, const vmk_config *cfg,
                                 struct event_loop *el, vmk_error **err)
{
    NEED(m->dev = calloc(1, sizeof(*m->dev)));
    struct platform_devices *d = m->dev;
    vmk_result r = create_serial_ports(m, cfg, el, err);
    if (r != VMK_OK)
        return r;
    NEED(d->i8042 = i8042_new(&m->events));
    NEED(d->rtc = cmos_rtc_new(NULL, NULL));
    struct irq_line sci = irq_line_for(m, IRQ_SRC_SCI, X86_SCI_IRQ);
    NEED(d->pm = acpi_pm_new(&sci, &m->events, NULL, NULL));
    NEED(d->debug_exit = debug_exit_new(&m->events));
    if ((r = add_pio(m, X86_I8042_DATA_PORT, 1, &i8042_data_bus_ops, d->i8042, err)) ||
        (r = add_pio(m, X86_I8042_CMD_PORT, 1, &i8042_cmd_bus_ops, d->i8042, err)) ||
        (r = add_pio(m, X86_RTC_PORT, 2, &cmos_rtc_bus_ops, d->rtc, err)) ||
        (r = add_pio(m, X86_PM_BASE, X86_PM_SIZE, &acpi_pm_bus_ops, d->pm, err)) ||
        (r = add_pio(m, X86_DEBUG_EXIT_PORT, 4, &debug_exit_bus_ops, d->debug_exit, err)))
        return r;
    if ((r = create_pci(m, err)) || (r = create_storage(m, cfg, err)))
        return r;
    if ((r = create_entropy(m, cfg, el, err)))
        return r;
    return create_console(m, cfg, el, err);
}

static void destroy_devices(struct kvm_machine *m)
{
    struct platform_devices *d = m->dev;
    if (!d)
        return;
    for (unsigned i = 0; i < VMK_MAX_SERIAL_PORTS; i++) {
        serial_link_close(d->link[i]);
        uart_16550_free(d->uart[i]);
    }
    for (unsigned i = 0; i < d->virtio_count; i++)
        machine_virtio_free(d->virtio[i]);
    /* After the device: its reset may still write to a port's link. */
    for (unsigned i = 0; i < VMK_MAX_CONSOLE_DEVICES; i++)
        console_ports_close(d->console_ports[i]);
    for (unsigned i = 0; i < VMK_MAX_STORAGE_DEVICES; i++)
        disk_image_close(d->images[i]);
    i8042_free(d->i8042);
    cmos_rtc_free(d->rtc);
    acpi_pm_free(d->pm);
    debug_exit_free(d->debug_exit);
    free(d);
    m->dev = NULL;
}

static vmk_result kvm_ioctl_check(int r, vmk_error **err, const char *what)
{
    if (r < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "%s failed: %s", what, strerror(errno));
    return VMK_OK;
}

static vmk_result open_kvm(struct kvm_machine *m, vmk_error **err)
{
    m->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (m->kvm_fd < 0)
        return vmk_fail(err, errno == ENOENT ? VMK_ERR_UNSUPPORTED : VMK_ERR_KVM, errno,
                        "cannot open /dev/kvm: %s", strerror(errno));
    int api = ioctl(m->kvm_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_EXPECTED)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "/dev/kvm speaks API version %d, need %d", api,
                        KVM_API_EXPECTED);
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        { KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
        { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
        { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
        { KVM_CAP_PIT2, "KVM_CAP_PIT2" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
        if (ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
            return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "this host's KVM lacks %s", caps[i].name);
    int max_vcpus = ioctl(m->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max_vcpus > 0 && m->vcpu_count > (unsigned)max_vcpus)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "%u vCPUs asked for, this host's KVM allows %d", m->vcpu_count, max_vcpus);
    int run_size = ioctl(m->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "KVM_GET_VCPU_MMAP_SIZE failed: %s",
                        strerror(errno));
    m->run_size = (size_t)run_size;
    int r = x86_cpuid_init(&m->cpuid, m->kvm_fd);
    if (r < 0)
        return vmk_fail(err, VMK_ERR_KVM, -r, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(-r));
    return VMK_OK;
}

static vmk_result create_vm(struct kvm_machine *m, uint64_t memory_size, vmk_error **err)
{
    vmk_result r;
    m->vm_fd = ioctl(m->kvm_fd, KVM_CREATE_VM, 0);
    if ((r = kvm_ioctl_check(m->vm_fd, err, "KVM_CREATE_VM")))
        return r;
    /* Intel needs these three pages for real-mode emulation; AMD ignores them. */
    if ((r = kvm_ioctl_check(ioctl(m->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_KVM_TSS_ADDR),
                             err, "KVM_SET_TSS_ADDR")))
        return r;
    uint64_t identity = X86_KVM_IDENTITY_MAP_ADDR;
    if ((r = kvm_ioctl_check(ioctl(m->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity), err,
                             "KVM_SET_IDENTITY_MAP_ADDR")))
        return r;
    if ((r = kvm_ioctl_check(ioctl(m->vm_fd, KVM_CREATE_IRQCHIP, 0), err, "KVM_CREATE_IRQCHIP")))
        return r;
    struct kvm_pit_config pit = { .flags = 0 };
    if ((r = kvm_ioctl_check(ioctl(m->vm_fd, KVM_CREATE_PIT2, &pit), err, "KVM_CREATE_PIT2")))
        return r;

    int e = guest_memory_init(&m->gm, memory_size);
    if (e < 0)
        return vmk_fail(err, e == -ENOMEM ? VMK_ERR_NO_MEMORY : VMK_ERR_IO, -e,
                        "guest memory (%llu MiB): %s", (unsigned long long)(memory_size >> 20),
                        strerror(-e));
    for (unsigned i = 0; i < m->gm.nregions; i++) {
        struct kvm_userspace_memory_region region = {
            .slot = i,
            .guest_phys_addr = m->gm.regions[i].gpa,
            .memory_size = m->gm.regions[i].size,
            .userspace_addr = (uintptr_t)m->gm.regions[i].host,
        };
        if ((r = kvm_ioctl_check(ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &region), err,
                                 "KVM_SET_USER_MEMORY_REGION")))
            return r;
    }
    return VMK_OK;
}

static vmk_result load_guest(struct kvm_machine *m, const vmk_config *cfg,
                             struct linux_boot_entry *entry, vmk_error **err)
{
    uint8_t *acpi = gm_ptr(&m->gm, X86_ACPI_ADDR, X86_ACPI_MAX);
    if (!acpi)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "guest memory too small for ACPI tables");
    const struct pci_windows *w = pci_bus_windows(m->pci);
    struct acpi_pci_info pci = {
        .ecam_base = X86_PCI_ECAM_BASE,
        .mmio32_base = w->mmio32_base,
        .mmio32_size = w->mmio32_size,
        .mmio64_base = w->mmio64_base,
        .mmio64_size = w->mmio64_size,
        .io_base = w->io_base,
        .io_size = w->io_size,
    };
    struct acpi_platform_info info = { .cpu_count = m->vcpu_count,
                                       .serial_count = cfg->serial_count,
                                       .pci = &pci };
    size_t used;
    vmk_result r = acpi_build_tables(&info, acpi, X86_ACPI_MAX, X86_ACPI_ADDR, &used, err);
    if (r != VMK_OK)
        return r;
    const vmk_boot_loader *bl = cfg->boot_loader;
    struct linux_boot_request req = {
        .kernel_path = bl->kernel,
        .initrd_path = bl->initrd,
        .cmdline = bl->cmdline,
        .rsdp_addr = X86_ACPI_ADDR,
    };
    if ((r = linux_boot_load(&m->gm, &req, entry, err)) != VMK_OK)
        return r;
    if (x86_long_mode_tables(&m->gm) < 0)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "guest memory too small for page tables");
    return VMK_OK;
}

static vmk_result create_vcpus(struct kvm_machine *m, const struct linux_boot_entry *entry,
                               vmk_error **err)
{
    m->vcpus = calloc(m->vcpu_count, sizeof(*m->vcpus));
    if (!m->vcpus)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "vCPUs: out of memory");
    for (unsigned i = 0; i < m->vcpu_count; i++)
        m->vcpus[i].fd = -1;
    for (unsigned i = 0; i < m->vcpu_count; i++) {
        vmk_result r = vcpu_create(m, i, &m->vcpus[i], err);
        if (r != VMK_OK)
            return r;
    }
    /* Only the boot CPU gets a state: the others wait, in the in-kernel LAPIC, for the
     * INIT/SIPI the guest sends them. */
    return vcpu_set_boot_state(&m->vcpus[0], entry->rip, entry->rsi, err);
}

vmk_result kvm_machine_create(const vmk_config *cfg, struct event_loop *el,
                              const struct machine_owner *owner, struct kvm_machine **out,
                              vmk_error **err)
{
    struct kvm_machine *m = calloc(1, sizeof(*m));
    if (!m)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "machine: out of memory");
    m->kvm_fd = m->vm_fd = -1;
    m->gm.memfd = -1;
    m->owner = *owner;
    m->el = el;
    m->vcpu_count = cfg->cpu_count;
    m->pvm_host = vmk_host_probe() == VMK_HOST_PVM;
    m->events = (struct machine_events){
        .power_off = on_power_off, .reset = on_reset, .debug_exit = on_debug_exit, .ctx = m
    };
    m->kick_signal = SIGRTMIN + 4;
    atomic_init(&m->ended, false);
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->irq_lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    bus_init(&m->pio);
    bus_init(&m->mmio);

    /* The kick only has to interrupt KVM_RUN; its handler does nothing. */
    struct sigaction sa = { .sa_handler = kick_handler };
    sigemptyset(&sa.sa_mask);
    sigaction(m->kick_signal, &sa, NULL);

    struct linux_boot_entry entry;
    vmk_result r;
    if ((r = open_kvm(m, err)) || (r = create_vm(m, cfg->memory_size, err)) ||
        (r = create_devices(m, cfg, el, err)) || (r = load_guest(m, cfg, &entry, err)) ||
        (r = create_vcpus(m, &entry, err))) {
        kvm_machine_destroy(m);
        return r;
    }
    *out = m;
    return VMK_OK;
}

vmk_result kvm_machine_start(struct kvm_machine *m, vmk_error **err)
{
    for (unsigned i = 0; i < m->vcpu_count; i++) {
        struct vcpu *v = &m->vcpus[i];
        int e = pthread_create(&v->thread, NULL, vcpu_thread_main, v);
        if (e)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, e, "vCPU %u: cannot start thread: %s", i,
                            strerror(e));
        v->thread_started = true;
    }
    return VMK_OK;
}

static unsigned running_threads(const struct kvm_machine *m)
{
    unsigned n = 0;
    for (unsigned i = 0; i < m->vcpu_count; i++)
        n += m->vcpus[i].thread_started;
    return n;
}

void kvm_machine_pause(struct kvm_machine *m)
{
    pthread_mutex_lock(&m->lock);
    m->pause_requested = true;
    pthread_mutex_unlock(&m->lock);
    machine_kick_all(m);
    unsigned threads = running_threads(m);
    pthread_mutex_lock(&m->lock);
    while (m->paused_count + m->exited_count < threads)
        pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
}

void kvm_machine_resume(struct kvm_machine *m)
{
    pthread_mutex_lock(&m->lock);
    m->pause_requested = false;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

void kvm_machine_press_power_button(struct kvm_machine *m)
{
    acpi_pm_press_power_button(m->dev->pm);
}

void kvm_machine_destroy(struct kvm_machine *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->quit = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (m->vcpus) {
        machine_kick_all(m);
        for (unsigned i = 0; i < m->vcpu_count; i++)
            if (m->vcpus[i].thread_started)
                pthread_join(m->vcpus[i].thread, NULL);
        for (unsigned i = 0; i < m->vcpu_count; i++)
            if (m->vcpus[i].m)
                vcpu_destroy(&m->vcpus[i]);
        free(m->vcpus);
    }
    /* The bus first: it lets go of the PCI functions the devices embed. */
    pci_bus_free(m->pci);
    m->pci = NULL;
    destroy_devices(m);
    kvm_irq_routes_free(m->irq_routes);
    bus_destroy(&m->pio);
    bus_destroy(&m->mmio);
    if (m->vm_fd >= 0)
        close(m->vm_fd);
    guest_memory_destroy(&m->gm);
    x86_cpuid_destroy(&m->cpuid);
    if (m->kvm_fd >= 0)
        close(m->kvm_fd);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->irq_lock);
    pthread_cond_destroy(&m->cond);
    free(m);
}
