/* The machine builder: config -> running machine. It knows no device kind: the platform
 * (platform.c) places the PC's legacy devices, and every other device comes from a row of the
 * device table (device_table.c), put on PCI as a virtio function. */
#include "machine/machine.h"
#include "machine/usb_bus.h"
#include "arch/x86/acpi.h"
#include "arch/x86/boot_linux.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/kvm_setup.h"
#include "arch/x86/layout.h"
#include "arch/x86/long_mode.h"
#include "core/error.h"
#include "core/guest_memory.h"
#include "kvm/vcpus.h"
#include "kvm/vm.h"
#include "machine/firmware.h"
#include "machine/platform.h"
#include "machine/virtio_pci_function.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct machine {
    struct kvm_vm vm;
    bool vm_open;
    struct guest_memory gm;
    struct bus pio;
    struct bus mmio;
    struct x86_cpuid cpuid;
    struct platform platform;
    bool efi; /* firmware boots the guest: the EFI machine */
    struct machine_firmware firmware;
    struct machine_owner owner;
    struct machine_events events;
    struct event_loop *el;
    atomic_bool ended; /* the first terminal event wins */
    unsigned vcpu_count;
    struct kvm_vcpus *vcpus;
    /* The devices of the device table, each a PCI function. */
    struct device_instance *devices;
    struct virtio_pci_function **functions;
    unsigned device_count;
    struct usb_bus *usb; /* NULL: no USB controller */
};

static const char pvm_hint[] =
    "; this host's /dev/kvm is kvm_pvm, which emulates guest kernel code and cannot run some "
    "instructions (FPU save/restore, cmpxchg16b, real mode): use a host with hardware "
    "virtualization";

int machine_kick_signal(void)
{
    return kvm_vcpus_kick_signal();
}

static void machine_end(struct machine *m, enum machine_end why, uint32_t code, vmk_error *err)
{
    bool expected = false;
    if (!atomic_compare_exchange_strong(&m->ended, &expected, true)) {
        vmk_error_free(err);
        return;
    }
    if (m->vcpus)
        kvm_vcpus_quit(m->vcpus);
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

static void on_vcpu_stopped(void *ctx, enum kvm_vcpu_stop why, vmk_error *err)
{
    static const enum machine_end ends[] = {
        [KVM_VCPU_STOP_POWER_OFF] = MACHINE_END_POWER_OFF,
        [KVM_VCPU_STOP_RESET] = MACHINE_END_RESET,
        [KVM_VCPU_STOP_FAULT] = MACHINE_END_FAULT,
    };
    machine_end(ctx, ends[why], 0, err);
}

static uint64_t ram_end(const struct guest_memory *gm)
{
    uint64_t end = 0;
    for (unsigned i = 0; i < gm->nregions; i++)
        if (gm->regions[i].gpa + gm->regions[i].size > end)
            end = gm->regions[i].gpa + gm->regions[i].size;
    return end;
}

/* A Linux kernel cannot run where kernel-mode guest code is emulated: say so at once instead of
 * spinning. (Small ELF guests that keep clear of the FPU do run there.) */
static vmk_result refuse_on_pvm(const vmk_config *cfg, vmk_error **err)
{
    if (vmk_boot_loader_get_kind(vmk_config_get_boot_loader(cfg)) == VMK_BOOT_LOADER_EFI)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "EFI boot loader: this host's /dev/kvm is kvm_pvm (no hardware "
                        "virtualization): it emulates guest kernel code and cannot run "
                        "firmware (real mode, FPU state); use a host with Intel VMX or AMD SVM "
                        "(bare metal or nested)");
    const char *kernel = vmk_linux_boot_loader_get_kernel(vmk_config_get_boot_loader(cfg));
    struct linux_kernel_info info;
    if (!kernel || linux_kernel_probe(kernel, &info, NULL) != VMK_OK ||
        info.format != LINUX_KERNEL_BZIMAGE)
        return VMK_OK;
    return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                    "kernel %s is a Linux bzImage, and this host's /dev/kvm is kvm_pvm (no "
                    "hardware virtualization): it emulates guest kernel code and cannot save FPU "
                    "state, so a Linux kernel cannot boot here; use a host with Intel VMX or AMD "
                    "SVM (bare metal or nested)",
                    kernel);
}

static vmk_result create_memory(struct machine *m, uint64_t size, vmk_error **err)
{
    /* The EFI machine's 32-bit hole starts at OVMF's ECAM base (arch/x86/layout.h). */
    int e =
        guest_memory_init_split(&m->gm, size, m->efi ? X86_EFI_LOW_RAM_LIMIT : GM_LOW_RAM_LIMIT);
    if (e < 0)
        return vmk_fail(err, e == -ENOMEM ? VMK_ERR_NO_MEMORY : VMK_ERR_IO, -e,
                        "guest memory (%llu MiB): %s", (unsigned long long)(size >> 20),
                        strerror(-e));
    for (unsigned i = 0; i < m->gm.nregions; i++) {
        const struct guest_region *g = &m->gm.regions[i];
        vmk_result r = kvm_vm_add_memory(&m->vm, i, g->gpa, g->size, g->host, err);
        if (r != VMK_OK)
            return r;
    }
    return VMK_OK;
}

/* Every row of the device table: each device of that kind in the config, opened and put on
 * the bus as a virtio-pci function. */
static vmk_result create_devices(struct machine *m, const vmk_config *cfg, vmk_error **err)
{
    unsigned total = 0;
    for (const struct device_kind *const *k = device_table; *k; k++)
        total += (*k)->count(cfg);
    m->devices = calloc(total ? total : 1, sizeof(*m->devices));
    m->functions = calloc(total ? total : 1, sizeof(*m->functions));
    if (!m->devices || !m->functions)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "devices: out of memory");
    struct device_host_env host = {
        .el = m->el,
        .vcpu_count = m->vcpu_count,
        .escape = on_escape,
        .escape_ctx = m,
        .attachment_changed = m->owner.attachment_changed,
        .attachment_ctx = m->owner.ctx,
        .socket_listener = m->owner.socket_listener,
        .socket_listener_ctx = m->owner.ctx,
        .display_sink = m->owner.display_sink,
    };
    struct pci_function_env pci = {
        .gm = &m->gm, .el = m->el, .irq = m->platform.irq, .bus = m->platform.pci
    };
    for (const struct device_kind *const *k = device_table; *k; k++) {
        for (unsigned i = 0; i < (*k)->count(cfg); i++) {
            struct device_instance *inst = &m->devices[m->device_count];
            *inst = (struct device_instance){ .kind = *k, .index = i };
            vmk_result r = (*k)->open(&host, cfg, i, inst, err);
            if (r != VMK_OK)
                return r;
            m->device_count++;
            r = virtio_pci_function_new(&pci, inst->dev, (*k)->pci_class,
                                        &m->functions[m->device_count - 1], err);
            if (r == VMK_OK && (*k)->connect)
                r = (*k)->connect(inst, err);
            if (r != VMK_OK)
                return r;
        }
    }
    return VMK_OK;
}

/* What the ACPI tables say about the platform; the caller owns pci. */
static void acpi_info(const struct machine *m, const vmk_config *cfg, struct acpi_pci_info *pci,
                      struct acpi_platform_info *info)
{
    const struct pci_windows *w = pci_bus_windows(m->platform.pci);
    *pci = (struct acpi_pci_info){
        .ecam_base = m->efi ? X86_EFI_ECAM_BASE : X86_PCI_ECAM_BASE,
        .mmio32_base = w->mmio32_base,
        .mmio32_size = w->mmio32_size,
        .mmio64_base = w->mmio64_base,
        .mmio64_size = w->mmio64_size,
        .io_base = w->io_base,
        .io_size = w->io_size,
    };
    unsigned serial = vmk_config_serial_port_count(cfg);
    *info = (struct acpi_platform_info){
        .cpu_count = m->vcpu_count,
        .serial_count = serial < PLATFORM_SERIAL_PORTS ? serial : PLATFORM_SERIAL_PORTS,
        .pci = pci,
    };
}

/* The EFI machine loads nothing: the firmware's flash and fw_cfg (with the ACPI tables, which
 * the firmware places) are all the guest gets. */
static vmk_result load_firmware(struct machine *m, const vmk_config *cfg, vmk_error **err)
{
    struct acpi_pci_info pci;
    struct acpi_platform_info info;
    acpi_info(m, cfg, &pci, &info);
    struct machine_firmware_env env = {
        .vm = &m->vm,
        .pio = &m->pio,
        .mmio = &m->mmio,
        .gm = &m->gm,
        .cpu_count = m->vcpu_count,
        .acpi = &info,
    };
    return machine_firmware_create(&m->firmware, &env, vmk_config_get_boot_loader(cfg), err);
}

static vmk_result load_guest(struct machine *m, const vmk_config *cfg,
                             struct linux_boot_entry *entry, vmk_error **err)
{
    if (m->efi)
        return load_firmware(m, cfg, err);
    uint8_t *acpi = gm_ptr(&m->gm, X86_ACPI_ADDR, X86_ACPI_MAX);
    if (!acpi)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "guest memory too small for ACPI tables");
    struct acpi_pci_info pci;
    struct acpi_platform_info info;
    acpi_info(m, cfg, &pci, &info);
    size_t used;
    vmk_result r = acpi_build_tables(&info, acpi, X86_ACPI_MAX, X86_ACPI_ADDR, &used, err);
    if (r != VMK_OK)
        return r;
    const vmk_boot_loader *bl = vmk_config_get_boot_loader(cfg);
    struct linux_boot_request req = {
        .kernel_path = vmk_linux_boot_loader_get_kernel(bl),
        .initrd_path = vmk_linux_boot_loader_get_initrd(bl),
        .cmdline = vmk_linux_boot_loader_get_command_line(bl),
        .rsdp_addr = X86_ACPI_ADDR,
    };
    if ((r = linux_boot_load(&m->gm, &req, entry, err)) != VMK_OK)
        return r;
    if (x86_long_mode_tables(&m->gm) < 0)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "guest memory too small for page tables");
    return VMK_OK;
}

static vmk_result create_vcpus(struct machine *m, bool pvm_host,
                               const struct linux_boot_entry *entry, vmk_error **err)
{
    struct kvm_vcpu_exits exits = {
        .pio = &m->pio,
        .mmio = &m->mmio,
        .stopped = on_vcpu_stopped,
        .fault_hint = pvm_host ? pvm_hint : NULL,
        .ctx = m,
    };
    vmk_result r = kvm_vcpus_create(&m->vm, m->vcpu_count, &exits, &m->vcpus, err);
    for (unsigned i = 0; r == VMK_OK && i < m->vcpu_count; i++)
        r = x86_kvm_vcpu_init(kvm_vcpus_fd(m->vcpus, i), &m->cpuid, i, m->vcpu_count, m->efi, err);
    /* Only the boot CPU gets a state: the others wait, in the in-kernel LAPIC, for the
     * INIT/SIPI the guest sends them. Firmware starts where KVM's reset leaves the boot CPU:
     * real mode at the reset vector (0xFFFFFFF0, in the code flash). */
    if (r == VMK_OK && !m->efi)
        r = x86_kvm_vcpu_boot(kvm_vcpus_fd(m->vcpus, 0), entry->rip, entry->rsi, err);
    return r;
}

vmk_result machine_create(const vmk_config *cfg, struct event_loop *el,
                          const struct machine_owner *owner, struct machine **out, vmk_error **err)
{
    *out = NULL;
    bool pvm_host = vmk_host_probe() == VMK_HOST_PVM;
    vmk_result r;
    if (pvm_host && (r = refuse_on_pvm(cfg, err)) != VMK_OK)
        return r;
    struct machine *m = calloc(1, sizeof(*m));
    if (!m)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "machine: out of memory");
    m->gm.memfd = -1;
    m->owner = *owner;
    m->el = el;
    m->vcpu_count = vmk_config_get_cpu_count(cfg);
    m->efi = vmk_boot_loader_get_kind(vmk_config_get_boot_loader(cfg)) == VMK_BOOT_LOADER_EFI;
    m->events = (struct machine_events){
        .power_off = on_power_off, .reset = on_reset, .debug_exit = on_debug_exit, .ctx = m
    };
    atomic_init(&m->ended, false);
    bus_init(&m->pio);
    bus_init(&m->mmio);

    struct linux_boot_entry entry = { 0 };
    r = kvm_vm_open(&m->vm, m->vcpu_count, err);
    m->vm_open = true; /* whatever it opened before failing, kvm_vm_close closes */
    if (r != VMK_OK)
        goto fail;
    int e;
    if ((r = x86_kvm_vm_init(m->vm.kvm_fd, m->vm.vm_fd, err)) != VMK_OK)
        goto fail;
    if ((e = x86_cpuid_init(&m->cpuid, m->vm.kvm_fd)) < 0) {
        r = vmk_fail(err, VMK_ERR_KVM, -e, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(-e));
        goto fail;
    }
    if ((r = create_memory(m, vmk_config_get_memory_size(cfg), err)) != VMK_OK)
        goto fail;
    struct platform_env penv = {
        .vm = &m->vm,
        .pio = &m->pio,
        .mmio = &m->mmio,
        .el = el,
        .ev = &m->events,
        .escape = on_escape,
        .escape_ctx = m,
        .ram_end = ram_end(&m->gm),
        .phys_bits = x86_cpuid_phys_bits(&m->cpuid),
        .efi = m->efi,
    };
    if ((r = platform_create(&m->platform, &penv, cfg, err)) != VMK_OK ||
        (r = create_devices(m, cfg, err)) != VMK_OK ||
        (usb_bus_wanted(cfg) && (r = usb_bus_create(&m->gm, &m->platform.irq, m->platform.pci, cfg,
                                                    &m->usb, err)) != VMK_OK) ||
        (r = load_guest(m, cfg, &entry, err)) || (r = create_vcpus(m, pvm_host, &entry, err)))
        goto fail;
    *out = m;
    return VMK_OK;
fail:
    machine_destroy(m);
    return r;
}

vmk_result machine_start(struct machine *m, vmk_error **err)
{
    return kvm_vcpus_start(m->vcpus, err);
}

void machine_pause(struct machine *m)
{
    kvm_vcpus_pause(m->vcpus);
}

void machine_resume(struct machine *m)
{
    kvm_vcpus_resume(m->vcpus);
}

vmk_result machine_usb_attach(struct machine *m, const vmk_storage_device *dev, unsigned *port,
                              vmk_error **err)
{
    if (!m->usb)
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0,
                        "USB: the VM has no USB controller (vmk_config_set_usb_controller)");
    return usb_bus_attach(m->usb, dev, port, err);
}

vmk_result machine_usb_detach(struct machine *m, unsigned port, vmk_error **err)
{
    if (!m->usb)
        return vmk_fail(err, VMK_ERR_INVALID_STATE, 0, "USB: the VM has no USB controller");
    return usb_bus_detach(m->usb, port, err);
}

vmk_result machine_usb_send_key(struct machine *m, uint16_t code, bool pressed, vmk_error **err)
{
    if (!m->usb)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "input: the VM has no USB keyboard");
    return usb_bus_send_key(m->usb, code, pressed, err);
}

void machine_press_power_button(struct machine *m)
{
    platform_press_power_button(&m->platform);
}

const char *machine_serial_pty_path(const struct machine *m, unsigned index)
{
    return m ? platform_serial_pty_path(&m->platform, index) : NULL;
}

struct device_instance *machine_device(const struct machine *m, const struct device_kind *kind,
                                       unsigned device)
{
    for (unsigned i = 0; m && i < m->device_count; i++)
        if (m->devices[i].kind == kind && m->devices[i].index == device)
            return &m->devices[i];
    return NULL;
}

const char *machine_device_pty_path(const struct machine *m, const struct device_kind *kind,
                                    unsigned device, unsigned port)
{
    const struct device_instance *inst = machine_device(m, kind, device);
    return inst && kind->pty_path ? kind->pty_path(inst, port) : NULL;
}

uint32_t machine_device_guest_ipv4(const struct machine *m, const struct device_kind *kind,
                                   unsigned device)
{
    const struct device_instance *inst = machine_device(m, kind, device);
    return inst && kind->guest_ipv4 ? kind->guest_ipv4(inst) : 0;
}

vmk_result machine_device_port_forward(struct machine *m, const struct device_kind *kind,
                                       unsigned device, bool add, bool udp,
                                       const char *host_address, unsigned host_port,
                                       unsigned guest_port, vmk_error **err)
{
    struct device_instance *inst = machine_device(m, kind, device);
    if (!inst || !kind->port_forward)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s %u: no such device", kind->name,
                        device + 1);
    return kind->port_forward(inst, add, udp, host_address, host_port, guest_port, err);
}

void machine_destroy(struct machine *m)
{
    if (!m)
        return;
    kvm_vcpus_free(m->vcpus); /* joins them: nothing runs guest code or exits any more */
    m->vcpus = NULL;
    platform_free_pci(&m->platform); /* lets go of the functions it decodes */
    usb_bus_free(m->usb);
    for (unsigned i = m->device_count; i-- > 0;) {
        virtio_pci_function_free(m->functions[i]); /* resets the device */
        m->devices[i].kind->close(&m->devices[i]);
    }
    free(m->functions);
    free(m->devices);
    platform_destroy(&m->platform);
    bus_destroy(&m->pio);
    bus_destroy(&m->mmio);
    if (m->vm_open)
        kvm_vm_close(&m->vm);
    machine_firmware_destroy(&m->firmware); /* its flash arrays were memory slots until now */
    guest_memory_destroy(&m->gm);
    x86_cpuid_destroy(&m->cpuid);
    free(m);
}
