#include "kvm/irq_routes.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

struct msi_route {
    bool used, routed;
    uint64_t address;
    uint32_t data;
};

#define MAX_BASE_ROUTES 64

struct kvm_irq_routes {
    int vm_fd;
    unsigned first_msi_gsi;
    unsigned nbase;
    struct kvm_irq_routing_entry base[MAX_BASE_ROUTES];
    int (*ioctl_fn)(int fd, unsigned long req, void *arg);
    pthread_mutex_t lock;
    struct msi_route msi[KVM_IRQ_ROUTES_MAX_MSI];
    struct kvm_irq_routing *table; /* scratch for commits */
};

static int sys_ioctl(int fd, unsigned long req, void *arg)
{
    return ioctl(fd, req, arg);
}

static int call(struct kvm_irq_routes *r, unsigned long req, void *arg)
{
    return r->ioctl_fn(r->vm_fd, req, arg) < 0 ? -errno : 0;
}

int kvm_irq_routes_new(int vm_fd, const struct kvm_irq_routing_entry *base, unsigned nbase,
                       unsigned first_msi_gsi,
                       int (*ioctl_fn)(int fd, unsigned long req, void *arg),
                       struct kvm_irq_routes **out)
{
    if (nbase > MAX_BASE_ROUTES || (nbase && !base))
        return -EINVAL;
    struct kvm_irq_routes *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->first_msi_gsi = first_msi_gsi;
    r->nbase = nbase;
    if (nbase)
        memcpy(r->base, base, nbase * sizeof(*base));
    r->table = calloc(1, sizeof(*r->table) + (nbase + KVM_IRQ_ROUTES_MAX_MSI) *
                                                 sizeof(struct kvm_irq_routing_entry));
    if (!r->table || pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r->table);
        free(r);
        return -ENOMEM;
    }
    r->vm_fd = vm_fd;
    r->ioctl_fn = ioctl_fn ? ioctl_fn : sys_ioctl;
    *out = r;
    return 0;
}

void kvm_irq_routes_free(struct kvm_irq_routes *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r->table);
    free(r);
}

/* KVM_SET_GSI_ROUTING replaces the whole table, so each commit repeats the wired routes,
 * then adds every MSI route. Lock held. */
static int commit(struct kvm_irq_routes *r)
{
    struct kvm_irq_routing_entry *e = r->table->entries;
    memcpy(e, r->base, r->nbase * sizeof(*e));
    unsigned n = r->nbase;
    for (unsigned i = 0; i < KVM_IRQ_ROUTES_MAX_MSI; i++) {
        const struct msi_route *m = &r->msi[i];
        if (!m->used || !m->routed)
            continue;
        memset(&e[n], 0, sizeof(e[n]));
        e[n].gsi = r->first_msi_gsi + i;
        e[n].type = KVM_IRQ_ROUTING_MSI;
        e[n].u.msi.address_lo = (uint32_t)m->address;
        e[n].u.msi.address_hi = (uint32_t)(m->address >> 32);
        e[n].u.msi.data = m->data;
        n++;
    }
    r->table->nr = n;
    r->table->flags = 0;
    return call(r, KVM_SET_GSI_ROUTING, r->table);
}

static int routes_gsi_alloc(void *ctx, unsigned *gsi)
{
    struct kvm_irq_routes *r = ctx;
    int ret = -ENOSPC;
    pthread_mutex_lock(&r->lock);
    for (unsigned i = 0; i < KVM_IRQ_ROUTES_MAX_MSI; i++) {
        if (!r->msi[i].used) {
            r->msi[i] = (struct msi_route){ .used = true };
            *gsi = r->first_msi_gsi + i;
            ret = 0;
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return ret;
}

static struct msi_route *route_of(struct kvm_irq_routes *r, unsigned gsi)
{
    if (gsi < r->first_msi_gsi || gsi - r->first_msi_gsi >= KVM_IRQ_ROUTES_MAX_MSI)
        return NULL;
    struct msi_route *m = &r->msi[gsi - r->first_msi_gsi];
    return m->used ? m : NULL;
}

static void routes_gsi_free(void *ctx, unsigned gsi)
{
    struct kvm_irq_routes *r = ctx;
    pthread_mutex_lock(&r->lock);
    struct msi_route *m = route_of(r, gsi);
    if (m) {
        bool was_routed = m->routed;
        *m = (struct msi_route){ 0 };
        if (was_routed)
            (void)commit(r); /* a stale route harms nobody: its GSI has no irqfd now */
    }
    pthread_mutex_unlock(&r->lock);
}

static int routes_msi_route(void *ctx, unsigned gsi, uint64_t address, uint32_t data)
{
    struct kvm_irq_routes *r = ctx;
    pthread_mutex_lock(&r->lock);
    struct msi_route *m = route_of(r, gsi);
    int ret = -EINVAL;
    if (m) {
        struct msi_route old = *m;
        m->routed = true;
        m->address = address;
        m->data = data;
        ret = commit(r);
        if (ret < 0)
            *m = old;
    }
    pthread_mutex_unlock(&r->lock);
    return ret;
}

static int routes_irqfd(void *ctx, int fd, unsigned gsi, bool assign)
{
    struct kvm_irq_routes *r = ctx;
    struct kvm_irqfd req = { .fd = (uint32_t)fd,
                             .gsi = gsi,
                             .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
    return call(r, KVM_IRQFD, &req);
}

static int routes_ioeventfd(void *ctx, uint64_t addr, unsigned len, int fd, bool assign)
{
    struct kvm_irq_routes *r = ctx;
    if (len != 0 && len != 1 && len != 2 && len != 4 && len != 8)
        return -EINVAL;
    struct kvm_ioeventfd req = {
        .addr = addr, .len = len, .fd = fd, .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN
    };
    return call(r, KVM_IOEVENTFD, &req);
}

struct irq_routing_ops kvm_irq_routes_ops(struct kvm_irq_routes *r)
{
    return (struct irq_routing_ops){
        .gsi_alloc = routes_gsi_alloc,
        .gsi_free = routes_gsi_free,
        .msi_route = routes_msi_route,
        .irqfd = routes_irqfd,
        .ioeventfd = routes_ioeventfd,
        .ctx = r,
    };
}
