#include "virtio/virtqueue.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

/* The split ring as the spec lays it out in guest RAM (§2.7.5, §2.7.6, §2.7.8). */
struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail_ring {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[]; /* num entries, then used_event with event_idx */
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used_ring {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[]; /* num entries, then avail_event with event_idx */
};

_Static_assert(sizeof(struct virtq_desc) == VIRTQ_DESC_SIZE, "descriptor layout");
_Static_assert(sizeof(struct virtq_used_elem) == 8, "used element layout");

/* A descriptor copied out of guest RAM once; only the copy is checked and used, so
 * the guest rewriting it meanwhile changes nothing. */
struct desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

static int mark_broken(struct virtq *q, const char *why)
{
    q->broken = true;
    q->broken_reason = why;
    return -EIO;
}

static void load_desc(const uint8_t *p, struct desc *d)
{
    if (((uintptr_t)p & 7) == 0) {
        const struct virtq_desc *g = (const struct virtq_desc *)p;
        d->addr = le64toh(__atomic_load_n(&g->addr, __ATOMIC_RELAXED));
        d->len = le32toh(__atomic_load_n(&g->len, __ATOMIC_RELAXED));
        d->flags = le16toh(__atomic_load_n(&g->flags, __ATOMIC_RELAXED));
        d->next = le16toh(__atomic_load_n(&g->next, __ATOMIC_RELAXED));
        return;
    }
    /* The spec asks no alignment of an indirect table; byte loads are always aligned. */
    uint8_t b[VIRTQ_DESC_SIZE];
    for (unsigned i = 0; i < sizeof(b); i++)
        b[i] = __atomic_load_n(&p[i], __ATOMIC_RELAXED);
    struct virtq_desc raw;
    memcpy(&raw, b, sizeof(raw));
    d->addr = le64toh(raw.addr);
    d->len = le32toh(raw.len);
    d->flags = le16toh(raw.flags);
    d->next = le16toh(raw.next);
}

/* Reads avail->idx; the acquire orders every later read of ring entries and
 * descriptors after it (pairs with the driver's barrier before publishing idx). */
static int refresh_avail(struct virtq *q)
{
    uint16_t idx = le16toh(__atomic_load_n(&q->avail->idx, __ATOMIC_ACQUIRE));
    if ((uint16_t)(idx - q->last_avail_idx) > q->num)
        return mark_broken(q, "avail idx is more than the queue size ahead of the device");
    q->shadow_avail_idx = idx;
    return 0;
}

static const uint16_t *used_event(const struct virtq *q)
{
    return &q->avail->ring[q->num];
}

static uint16_t *avail_event(const struct virtq *q)
{
    return (uint16_t *)&q->used->ring[q->num];
}

int virtq_enable(struct virtq *q)
{
    uint16_t n = q->size;
    if (!q->gm || n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
        return -EINVAL;
    if (q->desc_addr % VIRTQ_DESC_ALIGN || q->avail_addr % VIRTQ_AVAIL_ALIGN ||
        q->used_addr % VIRTQ_USED_ALIGN)
        return -EINVAL;
    const void *desc = gm_ptr(q->gm, q->desc_addr, VIRTQ_DESC_BYTES(n));
    const void *avail = gm_ptr(q->gm, q->avail_addr, VIRTQ_AVAIL_BYTES(n, q->event_idx));
    void *used = gm_ptr(q->gm, q->used_addr, VIRTQ_USED_BYTES(n, q->event_idx));
    if (!desc || !avail || !used)
        return -EINVAL;
    /* Atomic accesses need the host addresses aligned too (a region's host mapping
     * is normally page-aligned, so this only catches odd test or vhost-user tables). */
    if ((uintptr_t)desc % VIRTQ_DESC_ALIGN || (uintptr_t)avail % VIRTQ_AVAIL_ALIGN ||
        (uintptr_t)used % VIRTQ_USED_ALIGN)
        return -EINVAL;

    q->num = n;
    q->has_event_idx = q->event_idx;
    q->has_indirect = q->indirect;
    q->desc = desc;
    q->avail = avail;
    q->used = used;
    q->enabled = true;
    q->broken = false;
    q->broken_reason = NULL;
    q->notify_enabled = true;
    q->signalled_valid = false;
    q->last_avail_idx = 0;
    q->shadow_avail_idx = 0;
    q->used_idx = 0;
    q->signalled_used = 0;
    q->inflight = 0;
    q->gen++;
    return 0;
}

void virtq_disable(struct virtq *q)
{
    q->enabled = false;
    q->broken = false;
    q->broken_reason = NULL;
    q->desc = NULL;
    q->avail = NULL;
    q->used = NULL;
    q->inflight = 0;
    q->gen++;
}

int virtq_set_base(struct virtq *q, uint16_t idx)
{
    if (!q->enabled || q->inflight)
        return -EINVAL;
    q->last_avail_idx = idx;
    q->shadow_avail_idx = idx;
    q->used_idx = idx;
    q->signalled_used = idx;
    q->signalled_valid = false;
    return 0;
}

static int unpop(struct virtq *q, uint16_t head, uint32_t gen)
{
    if (!q->enabled || q->broken || gen != q->gen || q->inflight == 0)
        return -EINVAL;
    uint16_t slot = (uint16_t)(q->last_avail_idx - 1) & (q->num - 1);
    if (le16toh(__atomic_load_n(&q->avail->ring[slot], __ATOMIC_RELAXED)) != head)
        return -EINVAL;
    q->last_avail_idx--;
    q->inflight--;
    return 0;
}

int virtq_unpop(struct virtq *q, const struct virtq_elem *e)
{
    return unpop(q, e->head, e->gen);
}

int virtq_unpop_refs(struct virtq *q, const struct virtq_ref *refs, unsigned n)
{
    /* All or nothing: check every slot first (the driver may have rewritten one). */
    if (!q->enabled || q->broken || n > q->inflight)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        uint16_t slot = (uint16_t)(q->last_avail_idx - n + i) & (q->num - 1);
        if (refs[i].gen != q->gen ||
            le16toh(__atomic_load_n(&q->avail->ring[slot], __ATOMIC_RELAXED)) != refs[i].head)
            return -EINVAL;
    }
    q->last_avail_idx = (uint16_t)(q->last_avail_idx - n);
    q->inflight -= n;
    return 0;
}

uint16_t virtq_get_base(const struct virtq *q)
{
    return q->last_avail_idx;
}

bool virtq_is_broken(const struct virtq *q)
{
    return q->broken;
}

const char *virtq_broken_reason(const struct virtq *q)
{
    return q->broken_reason;
}

/* Walks the chain at head into e. Every descriptor that describes a buffer costs one
 * unit of a time-to-live, so a loop ends in -EIO: num for the ring's own descriptors,
 * and for an indirect table its entry count (at most VIRTQ_MAX_IOV). A table may be
 * longer than the ring: Linux sizes them by the device's seg_max, and a vhost-user
 * front end may give the ring fewer entries than the device assumed (QEMU's and
 * libvhost-user's back ends accept such tables too). The one descriptor that points
 * to a table is free, as at most one per chain is allowed. */
static int walk_chain(struct virtq *q, uint16_t head, struct virtq_elem *e)
{
    const uint8_t *table = (const uint8_t *)q->desc;
    uint32_t count = q->num; /* entries in the current table */
    uint32_t idx = head;
    uint32_t ttl = q->num;
    bool in_indirect = false, seen_write = false;
    unsigned n = 0;

    for (;;) {
        struct desc d;
        load_desc(table + (size_t)idx * VIRTQ_DESC_SIZE, &d);

        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!q->has_indirect)
                return mark_broken(q, "INDIRECT descriptor, but indirect descriptors were "
                                      "not negotiated");
            if (in_indirect)
                return mark_broken(q, "INDIRECT descriptor inside an indirect table");
            if (d.flags & VIRTQ_DESC_F_NEXT)
                return mark_broken(q, "descriptor has both INDIRECT and NEXT");
            if (d.len == 0 || d.len % VIRTQ_DESC_SIZE)
                return mark_broken(q, "indirect table length is not a non-zero multiple of 16");
            const uint8_t *t = gm_ptr(q->gm, d.addr, d.len);
            if (!t)
                return mark_broken(q, "indirect table is not wholly inside guest RAM");
            count = d.len / VIRTQ_DESC_SIZE;
            if (count > VIRTQ_MAX_IOV)
                return mark_broken(q, "indirect table has more than VIRTQ_MAX_IOV entries");
            table = t;
            ttl = count;
            idx = 0;
            in_indirect = true;
            continue;
        }

        if (ttl == 0)
            return mark_broken(q, in_indirect
                                      ? "indirect table walk longer than the table (a loop?)"
                                      : "descriptor chain longer than the queue size (a loop?)");
        ttl--;
        bool write = d.flags & VIRTQ_DESC_F_WRITE;
        if (!write && seen_write)
            return mark_broken(q, "device-readable descriptor after a device-writable one");
        seen_write |= write;
        if (d.len > 0) {
            void *p = gm_ptr(q->gm, d.addr, d.len);
            if (!p)
                return mark_broken(q, "buffer is not wholly inside one guest RAM region");
            if (n == VIRTQ_MAX_IOV)
                return mark_broken(q, "chain has more than VIRTQ_MAX_IOV buffers");
            e->iov[n].iov_base = p;
            e->iov[n].iov_len = d.len;
            n++;
            /* No overflow: at most VIRTQ_MAX_IOV buffers below 2^32 bytes each. */
            if (write) {
                e->in_num++;
                e->in_len += d.len;
            } else {
                e->out_num++;
                e->out_len += d.len;
            }
        }
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        if (d.next >= count)
            return mark_broken(q, "NEXT index beyond the descriptor table");
        idx = d.next;
    }
}

/* 1 when a chain is available, -EIO when the ring broke; 0 when none is, having asked for a
 * kick at the next one. */
static int avail_or_arm(struct virtq *q)
{
    if (q->last_avail_idx != q->shadow_avail_idx)
        return 1;
    if (refresh_avail(q) < 0)
        return -EIO;
    if (q->last_avail_idx == q->shadow_avail_idx && q->has_event_idx && q->notify_enabled) {
        /* Ask for a kick at the next buffer, then look once more: a driver that
         * published meanwhile may have read the old avail_event and not kicked. */
        __atomic_store_n(avail_event(q), htole16(q->last_avail_idx), __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (refresh_avail(q) < 0)
            return -EIO;
    }
    return q->last_avail_idx != q->shadow_avail_idx;
}

bool virtq_has_avail(struct virtq *q)
{
    if (q->broken)
        return true; /* the next pop reports it */
    return q->enabled && avail_or_arm(q) != 0;
}

int virtq_pop(struct virtq *q, struct virtq_elem *e)
{
    e->out_num = e->in_num = 0;
    e->out_len = e->in_len = 0;
    if (q->broken)
        return -EIO;
    if (!q->enabled)
        return 0;
    int avail = avail_or_arm(q);
    if (avail <= 0)
        return avail;
    /* A driver has at most num chains outstanding; more means it re-offered heads the
     * device still holds. Refusing bounds what a device keeps per queue. */
    if (q->inflight >= q->num)
        return mark_broken(q, "more chains in flight than the queue size");

    uint16_t slot = q->last_avail_idx & (q->num - 1);
    uint16_t head = le16toh(__atomic_load_n(&q->avail->ring[slot], __ATOMIC_RELAXED));
    if (head >= q->num)
        return mark_broken(q, "avail ring entry names a head beyond the queue size");
    int r = walk_chain(q, head, e);
    if (r < 0) {
        e->out_num = e->in_num = 0;
        e->out_len = e->in_len = 0;
        return r;
    }
    e->head = head;
    e->gen = q->gen;
    q->last_avail_idx++;
    q->inflight++;
    return 1;
}

int virtq_push_refs(struct virtq *q, const struct virtq_ref *refs, unsigned n)
{
    if (q->broken)
        return -EIO;
    if (!q->enabled || n == 0)
        return 0;
    for (unsigned i = 0; i < n; i++)
        if (refs[i].gen != q->gen)
            return 0; /* popped before a reset: the driver no longer expects them */
    if (n > q->inflight)
        return mark_broken(q, "device pushed more elements than it popped");
    for (unsigned i = 0; i < n; i++) {
        if (refs[i].head >= q->num)
            return mark_broken(q, "device pushed more elements than it popped");
        if (refs[i].written > refs[i].in_len)
            return mark_broken(q, "device claims more bytes written than the chain holds");
    }
    uint16_t old = q->used_idx;
    for (unsigned i = 0; i < n; i++) {
        struct virtq_used_elem *u = &q->used->ring[(uint16_t)(old + i) & (q->num - 1)];
        __atomic_store_n(&u->id, htole32(refs[i].head), __ATOMIC_RELAXED);
        __atomic_store_n(&u->len, htole32(refs[i].written), __ATOMIC_RELAXED);
    }
    q->used_idx = (uint16_t)(old + n);
    q->inflight -= n;
    /* The elements must be visible before the index that publishes them. */
    __atomic_store_n(&q->used->idx, htole16(q->used_idx), __ATOMIC_RELEASE);
    /* After 2^15 pushes without a notify check, signalled_used no longer tells
     * before from after: notify unconditionally next time. */
    if ((int16_t)(uint16_t)(q->used_idx - q->signalled_used) < (uint16_t)(q->used_idx - old))
        q->signalled_valid = false;
    return 0;
}

int virtq_push(struct virtq *q, const struct virtq_elem *e, uint32_t written)
{
    struct virtq_ref ref = virtq_elem_ref(e, written);
    return virtq_push_refs(q, &ref, 1);
}

bool virtq_should_notify(struct virtq *q)
{
    if (q->broken || !q->enabled)
        return false;
    /* Our used->idx store must be visible before we read the driver's suppression
     * state; the driver orders its side the same way, so one of us sees the other. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!q->has_event_idx) {
        uint16_t flags = le16toh(__atomic_load_n(&q->avail->flags, __ATOMIC_RELAXED));
        return !(flags & VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
    uint16_t event = le16toh(__atomic_load_n(used_event(q), __ATOMIC_RELAXED));
    uint16_t old = q->signalled_used, now = q->used_idx;
    bool valid = q->signalled_valid;
    q->signalled_used = now;
    q->signalled_valid = true;
    /* Notify when used_event lies in [old, now), modulo 2^16 (vring_need_event). */
    return !valid || (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

bool virtq_set_notification(struct virtq *q, bool enable)
{
    if (q->broken || !q->enabled)
        return false;
    q->notify_enabled = enable;
    if (!q->has_event_idx) {
        __atomic_store_n(&q->used->flags, htole16(enable ? 0 : VIRTQ_USED_F_NO_NOTIFY),
                         __ATOMIC_RELAXED);
    } else if (enable) {
        __atomic_store_n(avail_event(q), htole16(q->last_avail_idx), __ATOMIC_RELAXED);
    }
    if (!enable)
        return false;
    /* Store, then load: without the fence the driver could publish a buffer, read
     * the old suppression state and skip the kick while we read the old idx. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (refresh_avail(q) < 0)
        return true; /* the next pop reports it */
    return q->shadow_avail_idx != q->last_avail_idx;
}

/* Copies between a buffer and iovecs: into them from src when src is set, else out of
 * them into dst. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t offset, uint8_t *dst,
                       const uint8_t *src, size_t len)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        size_t l = iov[i].iov_len;
        if (offset >= l) {
            offset -= l;
            continue;
        }
        size_t chunk = l - offset;
        if (chunk > len - done)
            chunk = len - done;
        uint8_t *p = (uint8_t *)iov[i].iov_base + offset;
        if (src)
            memcpy(p, src + done, chunk);
        else
            memcpy(dst + done, p, chunk);
        done += chunk;
        offset = 0;
    }
    return done;
}

size_t virtq_elem_read(const struct virtq_elem *e, size_t offset, void *buf, size_t len)
{
    if (!buf || e->out_num > VIRTQ_MAX_IOV)
        return 0;
    return iov_copy(e->iov, e->out_num, offset, buf, NULL, len);
}

size_t virtq_elem_write(const struct virtq_elem *e, size_t offset, const void *buf, size_t len)
{
    if (!buf || e->out_num > VIRTQ_MAX_IOV || e->in_num > VIRTQ_MAX_IOV - e->out_num)
        return 0;
    return iov_copy(e->iov + e->out_num, e->in_num, offset, NULL, buf, len);
}
