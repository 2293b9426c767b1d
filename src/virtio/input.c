#include "virtio/input.h"
#include "core/error.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The UAPI calls its little-endian wire event virtio_input_event, the name input.h gives the
 * host's: rename the UAPI one while it is included. */
#define virtio_input_event virtio_input_wire_event
#include <linux/virtio_input.h>
#undef virtio_input_event
#include <linux/input.h> /* BUS_VIRTUAL, and the event codes */

#define BITMAP_BYTES   128 /* u.bitmap: codes 0..1023 */
#define EVENT_BYTES    8   /* struct virtio_input_wire_event */
/* Identity (ID_DEVIDS). No USB or PS/2 vendor fits a virtual device, so the ids are
 * virtio's own: vendor 0x1af4 and product 0x1052, the PCI vendor and device ids virtio 1.2
 * §4.1.2 gives virtio-input (0x1040 + 18); the version tells the keyboard and the tablet
 * apart, as the name does. */
#define DEVIDS_VENDOR  0x1af4
#define DEVIDS_PRODUCT (0x1040 + VIRTIO_ID_INPUT)
#define NAME_MAX_LEN   128
/* A partly delivered frame stays whole (the guest has begun reading it), so the pending
 * store holds MAX_PENDING plus its rest: at most MAX_PENDING / 2 events besides the new
 * frame of at most MAX_PENDING / 2 + 1. */
#define STORE_SIZE     (VIRTIO_INPUT_MAX_PENDING + 1)

_Static_assert(sizeof(struct virtio_input_config) == VIRTIO_INPUT_CFG_SIZE, "config layout");
_Static_assert(sizeof(struct virtio_input_wire_event) == EVENT_BYTES, "event layout");
_Static_assert(EV_MAX < 32 && KEY_MAX < BITMAP_BYTES * 8, "bitmaps");

struct virtio_input {
    struct virtio_device dev; /* first: the transport sees only this */
    enum virtio_input_kind kind;
    char name[NAME_MAX_LEN];
    uint8_t name_len;
    uint8_t bits[EV_MAX + 1][BITMAP_BYTES]; /* EV_BITS per event type; EV_SYN stays empty */
    pthread_mutex_t lock;                   /* everything below and the queues */
    uint8_t select, subsel;                 /* as the driver last wrote them */
    bool active;                            /* between activate and reset */
    bool failed;                            /* the driver broke §5.8: serve nothing until reset */
    bool mid_frame;        /* the guest got part of the first pending frame, not its SYN_REPORT */
    unsigned start, count; /* pending events: store[start .. start + count) */
    struct virtio_input_event store[STORE_SIZE];
    struct virtq_ref refs[VIRTIO_INPUT_QUEUE_SIZE]; /* a batch, published together */
    struct virtq_elem elem;
};

static struct virtio_input *to_input(struct virtio_device *d)
{
    return (struct virtio_input *)d;
}

static void set_bit_in(uint8_t *map, unsigned bit)
{
    map[bit / 8] |= (uint8_t)(1u << (bit % 8));
}

static bool declares(const struct virtio_input *in, uint16_t type, uint16_t code)
{
    if (type > EV_MAX || code >= BITMAP_BYTES * 8)
        return false;
    return in->bits[type][code / 8] & (1u << (code % 8));
}

/* What EV_BITS declares (§5.8.4; codes from <linux/input-event-codes.h>). A keyboard has the
 * keys of a PC keyboard (the keyboard block below BTN_MISC, KEY_ESC..KEY_MICMUTE), its three
 * LEDs and autorepeat. The tablet is an absolute pointer with mouse buttons and wheels, not a
 * touchscreen (no BTN_TOUCH, no INPUT_PROP_DIRECT): guests then move a cursor with it. */
static void declare_bits(struct virtio_input *in)
{
    if (in->kind == VIRTIO_INPUT_KEYBOARD) {
        for (unsigned k = KEY_ESC; k <= KEY_MICMUTE; k++)
            set_bit_in(in->bits[EV_KEY], k);
        set_bit_in(in->bits[EV_LED], LED_NUML);
        set_bit_in(in->bits[EV_LED], LED_CAPSL);
        set_bit_in(in->bits[EV_LED], LED_SCROLLL);
        /* A non-empty EV_REP is what makes Linux repeat held keys itself. */
        set_bit_in(in->bits[EV_REP], REP_DELAY);
        set_bit_in(in->bits[EV_REP], REP_PERIOD);
        return;
    }
    static const uint16_t buttons[] = { BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA };
    for (unsigned i = 0; i < sizeof(buttons) / sizeof(buttons[0]); i++)
        set_bit_in(in->bits[EV_KEY], buttons[i]);
    set_bit_in(in->bits[EV_ABS], ABS_X);
    set_bit_in(in->bits[EV_ABS], ABS_Y);
    set_bit_in(in->bits[EV_REL], REL_HWHEEL);
    set_bit_in(in->bits[EV_REL], REL_WHEEL);
}

/* The configuration the driver's select and subsel pick (§5.8.4); size 0 for anything this
 * device does not have, serial numbers included. */
static void build_config(const struct virtio_input *in, struct virtio_input_config *c)
{
    memset(c, 0, sizeof(*c));
    c->select = in->select;
    c->subsel = in->subsel;
    switch (in->select) {
    case VIRTIO_INPUT_CFG_ID_NAME:
        if (in->subsel == 0) {
            memcpy(c->u.string, in->name, in->name_len);
            c->size = in->name_len;
        }
        break;
    case VIRTIO_INPUT_CFG_ID_DEVIDS:
        if (in->subsel == 0) {
            c->u.ids.bustype = htole16(BUS_VIRTUAL);
            c->u.ids.vendor = htole16(DEVIDS_VENDOR);
            c->u.ids.product = htole16(DEVIDS_PRODUCT);
            c->u.ids.version = htole16(in->kind == VIRTIO_INPUT_KEYBOARD ? 1 : 2);
            c->size = sizeof(c->u.ids);
        }
        break;
    case VIRTIO_INPUT_CFG_EV_BITS:
        if (in->subsel <= EV_MAX) {
            const uint8_t *map = in->bits[in->subsel];
            unsigned n = BITMAP_BYTES;
            while (n > 0 && map[n - 1] == 0)
                n--;
            memcpy(c->u.bitmap, map, n);
            c->size = (uint8_t)n;
        }
        break;
    case VIRTIO_INPUT_CFG_ABS_INFO:
        if (declares(in, EV_ABS, in->subsel)) {
            c->u.abs.min = htole32(0);
            c->u.abs.max = htole32(VIRTIO_INPUT_ABS_MAX);
            c->size = sizeof(c->u.abs);
        }
        break;
    default: break; /* UNSET, ID_SERIAL, PROP_BITS (none), unknown */
    }
}

static void driver_broke(struct virtio_input *in, const char *why)
{
    in->failed = true;
    if (in->dev.transport.needs_reset)
        in->dev.transport.needs_reset(in->dev.transport.ctx, why);
}

/* Publishes a batch with one used-index store and at most one interrupt. */
static bool publish(struct virtio_input *in, unsigned qi, unsigned n)
{
    struct virtq *q = &in->dev.queues[qi];
    if (n == 0)
        return true;
    if (virtq_push_refs(q, in->refs, n) < 0) {
        in->failed = true;
        virtio_device_queue_failed(&in->dev, qi);
        return false;
    }
    if (virtq_should_notify(q) && in->dev.transport.notify_queue)
        in->dev.transport.notify_queue(in->dev.transport.ctx, qi);
    return true;
}

/* Pops the next chain of queue qi: 1, 0 when there is none, -1 when the queue broke. */
static int pop(struct virtio_input *in, unsigned qi)
{
    struct virtq *q = &in->dev.queues[qi];
    for (;;) {
        int rc = virtq_pop(q, &in->elem);
        if (rc < 0) {
            in->failed = true;
            virtio_device_queue_failed(&in->dev, qi);
            return -1;
        }
        /* Empty: kicks stay on; look again if buffers slipped in meanwhile. */
        if (rc > 0 || !virtq_set_notification(q, true))
            return rc;
    }
}

/* Hands pending events to the guest, one per event buffer, while both last. */
static void deliver_locked(struct virtio_input *in)
{
    while (in->active && !in->failed && in->count > 0) {
        unsigned n = 0;
        bool bad = false;
        while (n < VIRTIO_INPUT_QUEUE_SIZE && in->count > 0) {
            int rc = pop(in, 0);
            if (rc <= 0) {
                if (rc < 0)
                    return; /* the popped chains go with the reset the driver now needs */
                break;
            }
            /* §5.8.6.1: event buffers are device-writable and hold a whole event. Linux
             * ignores the used length, so a short buffer cannot be skipped safely. */
            if (in->elem.out_num > 0 || in->elem.in_len < EVENT_BYTES) {
                bad = true;
                break;
            }
            const struct virtio_input_event *e = &in->store[in->start];
            struct virtio_input_wire_event w = { .type = htole16(e->type),
                                                 .code = htole16(e->code),
                                                 .value = htole32((uint32_t)e->value) };
            virtq_elem_write(&in->elem, 0, &w, sizeof(w));
            in->refs[n++] = virtq_elem_ref(&in->elem, sizeof(w));
            in->mid_frame = !(e->type == EV_SYN && e->code == SYN_REPORT);
            in->start++;
            in->count--;
        }
        if (in->count == 0)
            in->start = 0;
        if (!publish(in, 0, n))
            return;
        if (bad) {
            driver_broke(in, in->elem.out_num > 0
                                 ? "virtio-input: event buffer is device-readable"
                                 : "virtio-input: event buffer smaller than an event");
            return;
        }
        if (n < VIRTIO_INPUT_QUEUE_SIZE)
            return; /* out of buffers (or of events) */
    }
}

/* Status buffers (LEDs the guest set) go back unread: the host has no LEDs to light, and
 * whatever a buffer holds, nothing here depends on it. */
static void drain_status_locked(struct virtio_input *in)
{
    while (in->active && !in->failed) {
        unsigned n = 0;
        int rc = 0;
        while (n < VIRTIO_INPUT_QUEUE_SIZE && (rc = pop(in, 1)) > 0)
            in->refs[n++] = virtq_elem_ref(&in->elem, 0);
        if (rc < 0 || !publish(in, 1, n) || n < VIRTIO_INPUT_QUEUE_SIZE)
            return;
    }
}

/* Where the frame starting at store index i ends (one past its SYN_REPORT). */
static unsigned frame_end(const struct virtio_input *in, unsigned i)
{
    unsigned end = in->start + in->count;
    while (i < end && !(in->store[i].type == EV_SYN && in->store[i].code == SYN_REPORT))
        i++;
    return i < end ? i + 1 : end;
}

/* Makes room for `need` more events: drops the oldest whole frames the guest has not begun
 * reading, then moves what is left to the front of the store when the tail is short. */
static void make_room(struct virtio_input *in, unsigned need)
{
    unsigned keep_end = in->mid_frame ? frame_end(in, in->start) : in->start;
    unsigned end = in->start + in->count;
    unsigned drop_end = keep_end;
    while (in->count - (drop_end - keep_end) + need > VIRTIO_INPUT_MAX_PENDING && drop_end < end)
        drop_end = frame_end(in, drop_end);
    if (drop_end > keep_end) {
        memmove(&in->store[keep_end], &in->store[drop_end],
                (end - drop_end) * sizeof(in->store[0]));
        in->count -= drop_end - keep_end;
    }
    if (in->start + in->count + need > STORE_SIZE) {
        memmove(in->store, &in->store[in->start], in->count * sizeof(in->store[0]));
        in->start = 0;
    }
}

static bool valid_event(const struct virtio_input *in, const struct virtio_input_event *e)
{
    if (e->type == EV_SYN)
        return e->code == SYN_REPORT;
    if (!declares(in, e->type, e->code))
        return false;
    switch (e->type) {
    case EV_KEY: return e->value >= 0 && e->value <= 2; /* release, press, autorepeat */
    case EV_LED: return e->value == 0 || e->value == 1;
    case EV_ABS: return e->value >= 0 && e->value <= VIRTIO_INPUT_ABS_MAX;
    default: return true;
    }
}

int virtio_input_send(struct virtio_device *d, const struct virtio_input_event *ev, unsigned n)
{
    if (!d || !ev || n == 0 || n > VIRTIO_INPUT_MAX_PENDING / 2)
        return -EINVAL;
    struct virtio_input *in = to_input(d);
    for (unsigned i = 0; i < n; i++)
        if (!valid_event(in, &ev[i]))
            return -EINVAL;
    pthread_mutex_lock(&in->lock);
    make_room(in, n + 1);
    struct virtio_input_event *tail = &in->store[in->start + in->count];
    memcpy(tail, ev, n * sizeof(*ev));
    tail[n] = (struct virtio_input_event){ .type = EV_SYN, .code = SYN_REPORT, .value = 0 };
    in->count += n + 1;
    deliver_locked(in);
    pthread_mutex_unlock(&in->lock);
    return 0;
}

static int input_activate(struct virtio_device *d)
{
    struct virtio_input *in = to_input(d);
    pthread_mutex_lock(&in->lock);
    in->active = true;
    in->failed = false;
    deliver_locked(in); /* events and buffers may both be there already */
    drain_status_locked(in);
    pthread_mutex_unlock(&in->lock);
    return 0;
}

static void input_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_input *in = to_input(d);
    pthread_mutex_lock(&in->lock);
    if (q == 0)
        deliver_locked(in);
    else if (q == 1)
        drain_status_locked(in);
    pthread_mutex_unlock(&in->lock);
}

static void input_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    struct virtio_input *in = to_input(d);
    struct virtio_input_config c;
    pthread_mutex_lock(&in->lock);
    build_config(in, &c);
    pthread_mutex_unlock(&in->lock);
    memcpy(data, (const uint8_t *)&c + offset, len);
}

static void input_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                               uint32_t len)
{
    struct virtio_input *in = to_input(d);
    const uint8_t *p = data;
    /* Only select (byte 0) and subsel (byte 1) are the driver's to write. */
    pthread_mutex_lock(&in->lock);
    for (uint32_t i = 0; i < len && offset + i < 2; i++) {
        if (offset + i == 0)
            in->select = p[i];
        else
            in->subsel = p[i];
    }
    pthread_mutex_unlock(&in->lock);
}

static void input_reset(struct virtio_device *d)
{
    struct virtio_input *in = to_input(d);
    pthread_mutex_lock(&in->lock);
    in->active = false;
    in->failed = false;
    in->mid_frame = false;
    in->start = in->count = 0; /* a new driver starts from a clean state, not stale keys */
    in->select = in->subsel = 0;
    pthread_mutex_unlock(&in->lock);
}

static void input_destroy(struct virtio_device *d)
{
    struct virtio_input *in = to_input(d);
    if (!in)
        return;
    pthread_mutex_destroy(&in->lock);
    virtio_device_fini(d);
    free(in);
}

static const struct virtio_device_ops input_ops = {
    .activate = input_activate,
    .queue_notify = input_queue_notify,
    .config_read = input_config_read,
    .config_write = input_config_write,
    .reset = input_reset,
    .destroy = input_destroy,
};

struct virtio_device *virtio_input_new(enum virtio_input_kind kind, const char *name,
                                       vmk_error **err)
{
    if (kind != VIRTIO_INPUT_KEYBOARD && kind != VIRTIO_INPUT_TABLET) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "virtio-input: unknown kind %d", (int)kind);
        return NULL;
    }
    if (!name)
        name = kind == VIRTIO_INPUT_KEYBOARD ? "vmkit keyboard" : "vmkit tablet";
    size_t len = strlen(name);
    bool printable = len > 0 && len <= NAME_MAX_LEN;
    for (size_t i = 0; printable && i < len; i++)
        printable = name[i] >= 0x20 && name[i] < 0x7f;
    if (!printable) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                 "virtio-input: the name must be 1..%d printable ASCII characters", NAME_MAX_LEN);
        return NULL;
    }
    struct virtio_input *in = calloc(1, sizeof(*in));
    if (!in || virtio_device_init(&in->dev, &input_ops, "virtio-input", VIRTIO_ID_INPUT, 2,
                                  VIRTIO_INPUT_QUEUE_SIZE) < 0) {
        free(in);
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "virtio-input: out of memory");
        return NULL;
    }
    in->dev.config_size = VIRTIO_INPUT_CFG_SIZE;
    in->kind = kind;
    memcpy(in->name, name, len);
    in->name_len = (uint8_t)len;
    declare_bits(in);
    pthread_mutex_init(&in->lock, NULL);
    return &in->dev;
}
