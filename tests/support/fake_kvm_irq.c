/* The fake KVM interrupt routing of fake_kvm_irq.h. */
#include "fake_kvm_irq.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

static int fake_alloc(void *ctx, unsigned *gsi)
{
    struct fake_kvm *k = ctx;
    if (k->allocated - k->freed >= k->max_gsis)
        return -ENOSPC;
    for (unsigned g = 24; g < FAKE_GSIS; g++) {
        if (!k->used[g]) {
            k->used[g] = true;
            k->allocated++;
            *gsi = g;
            return 0;
        }
    }
    return -ENOSPC;
}

static void fake_free(void *ctx, unsigned gsi)
{
    struct fake_kvm *k = ctx;
    assert_true(gsi < FAKE_GSIS && k->used[gsi]);
    assert_int_equal(k->fd_of[gsi], -1); /* detached before its GSI goes */
    k->used[gsi] = false;
    k->routed[gsi] = false;
    k->freed++;
}

static int fake_route(void *ctx, unsigned gsi, uint64_t address, uint32_t data)
{
    struct fake_kvm *k = ctx;
    assert_true(gsi < FAKE_GSIS && k->used[gsi]);
    k->route_calls++;
    if (k->fail_route)
        return -EINVAL;
    k->routed[gsi] = true;
    k->address[gsi] = address;
    k->data[gsi] = data;
    return 0;
}

static int fake_irqfd(void *ctx, int fd, unsigned gsi, bool assign)
{
    struct fake_kvm *k = ctx;
    assert_true(gsi < FAKE_GSIS && k->used[gsi]);
    k->irqfd_calls++;
    if (k->fail_irqfd)
        return -ENOMEM;
    if (assign) {
        assert_int_equal(k->fd_of[gsi], -1);
        assert_true(k->routed[gsi]); /* routed before it can fire */
        k->fd_of[gsi] = fd;
        /* KVM consumes what was pending when the irqfd is attached. */
        uint64_t n;
        if (read(fd, &n, sizeof(n)) == sizeof(n))
            k->data[gsi] |= 0x80000000u; /* marks "delivered on attach" for the test */
    } else {
        assert_int_equal(k->fd_of[gsi], fd);
        k->fd_of[gsi] = -1;
    }
    return 0;
}

struct irq_routing_ops fake_kvm_ops(struct fake_kvm *k)
{
    memset(k, 0, sizeof(*k));
    k->max_gsis = FAKE_GSIS - 24;
    for (unsigned g = 0; g < FAKE_GSIS; g++)
        k->fd_of[g] = -1;
    return (struct irq_routing_ops){ .gsi_alloc = fake_alloc,
                                     .gsi_free = fake_free,
                                     .msi_route = fake_route,
                                     .irqfd = fake_irqfd,
                                     .ctx = k };
}
