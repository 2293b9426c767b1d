#include "kvm/vm.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#define KVM_API_EXPECTED 12

static vmk_result kvm_check(int r, vmk_error **err, const char *what)
{
    if (r < 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "%s failed: %s", what, strerror(errno));
    return VMK_OK;
}

bool kvm_vm_has_cap(const struct kvm_vm *vm, int cap)
{
    return ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, cap) > 0;
}

vmk_result kvm_vm_open(struct kvm_vm *vm, unsigned vcpus, vmk_error **err)
{
    memset(vm, 0, sizeof(*vm));
    vm->kvm_fd = vm->vm_fd = -1;
    pthread_mutex_init(&vm->irq_lock, NULL);
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0)
        return vmk_fail(err, errno == ENOENT ? VMK_ERR_UNSUPPORTED : VMK_ERR_KVM, errno,
                        "cannot open /dev/kvm: %s", strerror(errno));
    int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
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
        { KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
        { KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
        if (!kvm_vm_has_cap(vm, caps[i].cap))
            return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "this host's KVM lacks %s", caps[i].name);
    int max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max_vcpus > 0 && vcpus > (unsigned)max_vcpus)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "%u vCPUs asked for, this host's KVM allows %d", vcpus, max_vcpus);
    int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0)
        return vmk_fail(err, VMK_ERR_KVM, errno, "KVM_GET_VCPU_MMAP_SIZE failed: %s",
                        strerror(errno));
    vm->run_size = (size_t)run_size;
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    return kvm_check(vm->vm_fd, err, "KVM_CREATE_VM");
}

vmk_result kvm_vm_set_memory(struct kvm_vm *vm, unsigned slot, uint64_t gpa, uint64_t size,
                             void *host, bool read_only, vmk_error **err)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot,
        .flags = read_only ? KVM_MEM_READONLY : 0,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uintptr_t)host,
    };
    return kvm_check(ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region), err,
                     "KVM_SET_USER_MEMORY_REGION");
}

vmk_result kvm_vm_add_memory(struct kvm_vm *vm, unsigned slot, uint64_t gpa, uint64_t size,
                             void *host, vmk_error **err)
{
    return kvm_vm_set_memory(vm, slot, gpa, size, host, false, err);
}

static void set_irq_level(void *ctx, unsigned gsi, bool level)
{
    struct kvm_irq_source *src = ctx;
    struct kvm_vm *vm = src->vm;
    if (gsi >= KVM_VM_IRQ_LINES)
        return;
    pthread_mutex_lock(&vm->irq_lock);
    uint32_t before = vm->irq_sources[gsi];
    if (level)
        vm->irq_sources[gsi] |= src->bit;
    else
        vm->irq_sources[gsi] &= ~src->bit;
    if ((before != 0) != (vm->irq_sources[gsi] != 0)) {
        struct kvm_irq_level irq = { .irq = gsi, .level = vm->irq_sources[gsi] != 0 };
        ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
    }
    pthread_mutex_unlock(&vm->irq_lock);
}

struct irq_line kvm_vm_irq_line(struct kvm_vm *vm, struct kvm_irq_source *src, unsigned bit,
                                unsigned gsi)
{
    *src = (struct kvm_irq_source){ .vm = vm, .bit = 1u << (bit & 31) };
    return (struct irq_line){ .set_level = set_irq_level, .ctx = src, .gsi = gsi };
}

void kvm_vm_close(struct kvm_vm *vm)
{
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vm->vm_fd = vm->kvm_fd = -1;
    pthread_mutex_destroy(&vm->irq_lock);
}
