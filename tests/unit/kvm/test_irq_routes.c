/* A VM's GSI routing table (src/kvm/irq_routes.c) with x86's wired routes, checked against a
 * fake ioctl: every commit repeats the wired routes, MSI routes come and go, irqfd and
 * ioeventfd requests are well formed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>

#include <cmocka.h>

#include "arch/x86/kvm_setup.h"
#include "kvm/irq_routes.h"

struct fake_ioctl {
    unsigned calls;
    unsigned long last_req;
    int fail_errno;
    struct kvm_irq_routing_entry entries[64];
    unsigned nr;
    struct kvm_irqfd irqfd;
    struct kvm_ioeventfd ioeventfd;
};

static struct fake_ioctl *fio; /* the fake's state: ioctl_fn has no context pointer */

static int fake_ioctl_fn(int fd, unsigned long req, void *arg)
{
    assert_int_equal(fd, 77);
    fio->calls++;
    fio->last_req = req;
    if (fio->fail_errno) {
        errno = fio->fail_errno;
        return -1;
    }
    if (req == KVM_SET_GSI_ROUTING) {
        const struct kvm_irq_routing *t = arg;
        assert_true(t->nr <= 64);
        fio->nr = t->nr;
        memcpy(fio->entries, t->entries, t->nr * sizeof(t->entries[0]));
    } else if (req == KVM_IRQFD) {
        fio->irqfd = *(const struct kvm_irqfd *)arg;
    } else if (req == KVM_IOEVENTFD) {
        fio->ioeventfd = *(const struct kvm_ioeventfd *)arg;
    } else {
        fail_msg("unexpected ioctl %#lx", req);
    }
    return 0;
}

static const struct kvm_irq_routing_entry *find_entry(unsigned gsi, unsigned type, unsigned chip)
{
    for (unsigned i = 0; i < fio->nr; i++) {
        const struct kvm_irq_routing_entry *e = &fio->entries[i];
        if (e->gsi == gsi && e->type == type &&
            (type != KVM_IRQ_ROUTING_IRQCHIP || e->u.irqchip.irqchip == chip))
            return e;
    }
    return NULL;
}

static void test_routing_table_keeps_defaults(void **state)
{
    struct fake_ioctl f = { 0 };
    fio = &f;
    struct kvm_irq_routes *routes;
    struct kvm_irq_routing_entry base[X86_IRQCHIP_ROUTES];
    x86_irqchip_routes(base);
    assert_int_equal(
        kvm_irq_routes_new(77, base, X86_IRQCHIP_ROUTES, X86_FIRST_MSI_GSI, fake_ioctl_fn, &routes),
        0);
    struct irq_routing_ops ops = kvm_irq_routes_ops(routes);
    unsigned g1, g2;
    assert_int_equal(ops.gsi_alloc(ops.ctx, &g1), 0);
    assert_int_equal(ops.gsi_alloc(ops.ctx, &g2), 0);
    assert_true(g1 >= 24 && g2 >= 24 && g1 != g2);
    assert_int_equal(f.calls, 0); /* allocation alone commits nothing */

    assert_int_equal(ops.msi_route(ops.ctx, g2, 0xfee00000ULL, 0x41), 0);
    assert_int_equal(f.last_req, KVM_SET_GSI_ROUTING);
    assert_int_equal(f.nr, 41);
    for (unsigned gsi = 0; gsi < 24; gsi++) {
        const struct kvm_irq_routing_entry *io =
            find_entry(gsi, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQCHIP_IOAPIC);
        assert_non_null(io);
        assert_int_equal(io->u.irqchip.pin, gsi);
        const struct kvm_irq_routing_entry *pic = find_entry(
            gsi, KVM_IRQ_ROUTING_IRQCHIP, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
        if (gsi < 16) {
            assert_non_null(pic);
            assert_int_equal(pic->u.irqchip.pin, gsi % 8);
        } else {
            assert_null(pic);
        }
    }
    const struct kvm_irq_routing_entry *m = find_entry(g2, KVM_IRQ_ROUTING_MSI, 0);
    assert_non_null(m);
    assert_int_equal(m->u.msi.address_lo, 0xfee00000u);
    assert_int_equal(m->u.msi.address_hi, 0);
    assert_int_equal(m->u.msi.data, 0x41);
    assert_null(find_entry(g1, KVM_IRQ_ROUTING_MSI, 0)); /* never routed */

    /* A refused commit leaves the previous route in place. */
    f.fail_errno = EINVAL;
    assert_int_equal(ops.msi_route(ops.ctx, g2, 0xfee00000ULL, 0x99), -EINVAL);
    f.fail_errno = 0;
    assert_int_equal(ops.msi_route(ops.ctx, g1, 0xfee00000ULL, 0x42), 0);
    assert_int_equal(f.nr, 42);
    assert_int_equal(find_entry(g2, KVM_IRQ_ROUTING_MSI, 0)->u.msi.data, 0x41);
    /* Freeing a routed GSI drops its route. */
    ops.gsi_free(ops.ctx, g2);
    assert_int_equal(f.nr, 41);
    assert_null(find_entry(g2, KVM_IRQ_ROUTING_MSI, 0));
    /* Unknown GSIs are refused. */
    assert_int_equal(ops.msi_route(ops.ctx, 5, 0xfee00000ULL, 0), -EINVAL);
    assert_int_equal(ops.msi_route(ops.ctx, g2, 0xfee00000ULL, 0), -EINVAL);
    assert_int_equal(ops.msi_route(ops.ctx, 100000, 0xfee00000ULL, 0), -EINVAL);
    ops.gsi_free(ops.ctx, 3); /* harmless */

    /* irqfd and ioeventfd requests. */
    assert_int_equal(ops.irqfd(ops.ctx, 9, g1, true), 0);
    assert_int_equal(f.last_req, KVM_IRQFD);
    assert_int_equal(f.irqfd.fd, 9);
    assert_int_equal(f.irqfd.gsi, g1);
    assert_int_equal(f.irqfd.flags, 0);
    assert_int_equal(ops.irqfd(ops.ctx, 9, g1, false), 0);
    assert_int_equal(f.irqfd.flags, KVM_IRQFD_FLAG_DEASSIGN);
    assert_int_equal(ops.ioeventfd(ops.ctx, 0xc0003000ULL, 2, 11, true), 0);
    assert_int_equal(f.last_req, KVM_IOEVENTFD);
    assert_int_equal(f.ioeventfd.addr, 0xc0003000ULL);
    assert_int_equal(f.ioeventfd.len, 2);
    assert_int_equal(f.ioeventfd.fd, 11);
    assert_int_equal(f.ioeventfd.flags, 0); /* MMIO, no datamatch */
    assert_int_equal(ops.ioeventfd(ops.ctx, 0xc0003000ULL, 2, 11, false), 0);
    assert_int_equal(f.ioeventfd.flags, KVM_IOEVENTFD_FLAG_DEASSIGN);
    unsigned calls = f.calls;
    assert_int_equal(ops.ioeventfd(ops.ctx, 0xc0003000ULL, 3, 11, true), -EINVAL);
    assert_int_equal(f.calls, calls);
    f.fail_errno = EBADF;
    assert_int_equal(ops.irqfd(ops.ctx, 9, g1, true), -EBADF);
    f.fail_errno = 0;
    kvm_irq_routes_free(routes);
    kvm_irq_routes_free(NULL);
}

static void test_routing_table_runs_out(void **state)
{
    struct fake_ioctl f = { 0 };
    fio = &f;
    struct kvm_irq_routes *routes;
    struct kvm_irq_routing_entry base[X86_IRQCHIP_ROUTES];
    x86_irqchip_routes(base);
    assert_int_equal(
        kvm_irq_routes_new(77, base, X86_IRQCHIP_ROUTES, X86_FIRST_MSI_GSI, fake_ioctl_fn, &routes),
        0);
    struct irq_routing_ops ops = kvm_irq_routes_ops(routes);
    unsigned gsi = 0, last = 0;
    for (unsigned i = 0; i < KVM_IRQ_ROUTES_MAX_MSI; i++) {
        assert_int_equal(ops.gsi_alloc(ops.ctx, &gsi), 0);
        assert_true(gsi > last || i == 0);
        last = gsi;
    }
    assert_int_equal(ops.gsi_alloc(ops.ctx, &gsi), -ENOSPC);
    ops.gsi_free(ops.ctx, 30);
    assert_int_equal(ops.gsi_alloc(ops.ctx, &gsi), 0);
    assert_int_equal(gsi, 30);
    kvm_irq_routes_free(routes);
}

static void test_bad_arguments(void **state)
{
    struct kvm_irq_routes *routes;
    struct kvm_irq_routing_entry base[65] = { 0 };
    assert_int_equal(kvm_irq_routes_new(77, base, 65, 24, fake_ioctl_fn, &routes), -EINVAL);
    assert_int_equal(kvm_irq_routes_new(77, NULL, 1, 24, fake_ioctl_fn, &routes), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_table_keeps_defaults),
        cmocka_unit_test(test_routing_table_runs_out),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
