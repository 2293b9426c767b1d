#include "virtio/input.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The UAPI's wire event has input.h's name: rename it while including. */
#define virtio_input_event virtio_input_wire_event
#include <linux/virtio_input.h>
#undef virtio_input_event
#include <linux/input.h> /* BUS_VIRTUAL, and the event codes */

#define EVQ     0
#define STATUSQ 1

struct fix {
    struct test_driver t;
    struct virtio_device *dev;
    uint64_t buf[TD_QUEUE_SIZE]; /* the event buffer behind each head */
    uint16_t seen;               /* used entries of the event queue read back */
};

/* One event as the guest reads it. */
struct ev {
    uint16_t type, code;
    int32_t value;
};

static struct fix *setup_kind(enum virtio_input_kind kind)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    vmk_error *err = NULL;
    f->dev = virtio_input_new(kind, NULL, &err);
    assert_non_null(f->dev);
    assert_null(err);
    assert_int_equal(td_init(&f->t, f->dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
    return f;
}

static void teardown(struct fix *f)
{
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    free(f);
}

/* n event buffers of len bytes each (one writable descriptor per chain), not kicked. */
static void add_bufs_len(struct fix *f, unsigned n, uint32_t len)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t gpa = td_alloc(&f->t, len);
        struct td_buf b = { .gpa = gpa, .len = len, .writable = true };
        uint16_t head = td_add(&f->t, EVQ, &b, 1);
        f->buf[head] = gpa;
    }
}

static void add_bufs(struct fix *f, unsigned n)
{
    add_bufs_len(f, n, 8);
}

static void kick(struct fix *f, unsigned q)
{
    f->dev->ops->queue_notify(f->dev, q);
}

/* Used entries of the event queue not read back yet. */
static unsigned ready(struct fix *f)
{
    return (uint16_t)(td_used_idx(&f->t, EVQ) - f->seen);
}

/* The next event the device placed. */
static struct ev next_ev(struct fix *f)
{
    assert_true(ready(f) > 0);
    uint32_t id, len;
    td_used_entry(&f->t, EVQ, f->seen++, &id, &len);
    assert_true(id < TD_QUEUE_SIZE);
    assert_int_equal(len, 8);
    struct virtio_input_wire_event w;
    memcpy(&w, td_ptr(&f->t, f->buf[id], 8), 8);
    return (struct ev){ le16toh(w.type), le16toh(w.code), (int32_t)le32toh(w.value) };
}

static void expect_ev(struct fix *f, uint16_t type, uint16_t code, int32_t value)
{
    struct ev e = next_ev(f);
    assert_int_equal(e.type, type);
    assert_int_equal(e.code, code);
    assert_int_equal(e.value, value);
}

static void expect_syn(struct fix *f)
{
    expect_ev(f, EV_SYN, SYN_REPORT, 0);
}

static int send1(struct fix *f, uint16_t type, uint16_t code, int32_t value)
{
    struct virtio_input_event e = { .type = type, .code = code, .value = value };
    return virtio_input_send(f->dev, &e, 1);
}

/* ---- configuration space ---- */

static void cfg_select(struct virtio_device *d, uint8_t select, uint8_t subsel)
{
    d->ops->config_write(d, 0, &select, 1);
    d->ops->config_write(d, 1, &subsel, 1);
}

static struct virtio_input_config cfg_read(struct virtio_device *d, uint8_t select, uint8_t subsel)
{
    struct virtio_input_config c;
    cfg_select(d, select, subsel);
    memset(&c, 0xa5, sizeof(c));
    d->ops->config_read(d, 0, &c, sizeof(c));
    assert_int_equal(c.select, select);
    assert_int_equal(c.subsel, subsel);
    /* Past size, everything reads as zero. */
    for (size_t i = c.size; i < sizeof(c.u); i++)
        assert_int_equal(c.u.bitmap[i], 0);
    for (size_t i = 0; i < sizeof(c.reserved); i++)
        assert_int_equal(c.reserved[i], 0);
    return c;
}

static bool bit(const struct virtio_input_config *c, unsigned b)
{
    return b / 8 < c->size && (c->u.bitmap[b / 8] >> (b % 8)) & 1;
}

static void test_identity_and_bad_arguments(void **state)
{
    struct virtio_device *d = virtio_input_new(VIRTIO_INPUT_TABLET, "Pointer 1", NULL);
    assert_non_null(d);
    assert_int_equal(d->device_id, VIRTIO_ID_INPUT);
    assert_int_equal(d->num_queues, 2);
    assert_int_equal(d->config_size, VIRTIO_INPUT_CFG_SIZE);
    assert_int_equal(d->device_features & ((1ULL << 24) - 1), 0);
    struct virtio_input_config c = cfg_read(d, VIRTIO_INPUT_CFG_ID_NAME, 0);
    assert_int_equal(c.size, 9);
    assert_memory_equal(c.u.string, "Pointer 1", 9);
    d->ops->destroy(d);

    char long_name[130];
    memset(long_name, 'x', sizeof(long_name));
    long_name[128] = '\0';
    d = virtio_input_new(VIRTIO_INPUT_KEYBOARD, long_name, NULL); /* 128: the most */
    assert_non_null(d);
    c = cfg_read(d, VIRTIO_INPUT_CFG_ID_NAME, 0);
    assert_int_equal(c.size, 128);
    d->ops->destroy(d);

    long_name[129] = '\0';
    long_name[128] = 'x';
    const char *bad_names[] = { long_name, "", "tab\there" };
    for (unsigned i = 0; i < 3; i++) {
        vmk_error *err = NULL;
        assert_null(virtio_input_new(VIRTIO_INPUT_KEYBOARD, bad_names[i], &err));
        assert_non_null(err);
        assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_ARGUMENT);
        vmk_error_free(err);
    }
    vmk_error *err = NULL;
    assert_null(virtio_input_new((enum virtio_input_kind)7, NULL, &err));
    assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(err);
    assert_int_equal(virtio_input_send(NULL, NULL, 1), -EINVAL);
}

static void check_common(struct virtio_device *d, uint16_t version)
{
    struct virtio_input_config c = cfg_read(d, VIRTIO_INPUT_CFG_ID_DEVIDS, 0);
    assert_int_equal(c.size, sizeof(c.u.ids));
    assert_int_equal(le16toh(c.u.ids.bustype), BUS_VIRTUAL);
    assert_int_equal(le16toh(c.u.ids.vendor), 0x1af4);
    assert_int_equal(le16toh(c.u.ids.product), 0x1052);
    assert_int_equal(le16toh(c.u.ids.version), version);
    /* Nothing the device does not have: size 0. */
    const uint8_t none[][2] = {
        { VIRTIO_INPUT_CFG_UNSET, 0 },
        { VIRTIO_INPUT_CFG_ID_SERIAL, 0 },
        { VIRTIO_INPUT_CFG_PROP_BITS, 0 },
        { VIRTIO_INPUT_CFG_ID_NAME, 1 },
        { VIRTIO_INPUT_CFG_ID_DEVIDS, 1 },
        { VIRTIO_INPUT_CFG_EV_BITS, EV_SYN },
        { VIRTIO_INPUT_CFG_EV_BITS, EV_SW },
        { VIRTIO_INPUT_CFG_EV_BITS, EV_MSC },
        { VIRTIO_INPUT_CFG_EV_BITS, 0xff },
        { VIRTIO_INPUT_CFG_ABS_INFO, ABS_Z },
        { VIRTIO_INPUT_CFG_ABS_INFO, 0xff },
        { 0x13, 0 },
        { 0xff, 0xff },
    };
    for (unsigned i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        assert_int_equal(cfg_read(d, none[i][0], none[i][1]).size, 0);

    /* Partial accesses: size alone, select and subsel written together, writes past them
     * ignored. */
    const uint8_t sel[2] = { VIRTIO_INPUT_CFG_ID_DEVIDS, 0 };
    d->ops->config_write(d, 0, sel, 2);
    uint8_t junk[4] = { 1, 2, 3, 4 };
    d->ops->config_write(d, 2, junk, 4);
    d->ops->config_write(d, 8, junk, 4);
    uint8_t size = 0xa5;
    d->ops->config_read(d, 2, &size, 1);
    assert_int_equal(size, 8);
    uint16_t bus = 0;
    d->ops->config_read(d, 8, &bus, 2);
    assert_int_equal(le16toh(bus), BUS_VIRTUAL);
}

static void test_config_keyboard(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_KEYBOARD);
    struct virtio_device *d = f->dev;
    struct virtio_input_config c = cfg_read(d, VIRTIO_INPUT_CFG_ID_NAME, 0);
    assert_int_equal(c.size, strlen("vmkit keyboard"));
    assert_memory_equal(c.u.string, "vmkit keyboard", c.size);
    check_common(d, 1);

    c = cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_KEY);
    assert_int_equal(c.size, KEY_MICMUTE / 8 + 1);
    assert_false(bit(&c, KEY_RESERVED));
    for (unsigned k = KEY_ESC; k <= KEY_MICMUTE; k++)
        assert_true(bit(&c, k));
    assert_false(bit(&c, KEY_MICMUTE + 1));
    assert_false(bit(&c, BTN_LEFT));
    c = cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_LED);
    assert_int_equal(c.size, 1);
    assert_int_equal(c.u.bitmap[0], 1u << LED_NUML | 1u << LED_CAPSL | 1u << LED_SCROLLL);
    c = cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_REP);
    assert_int_equal(c.size, 1);
    assert_int_equal(c.u.bitmap[0], 1u << REP_DELAY | 1u << REP_PERIOD);
    assert_int_equal(cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_ABS).size, 0);
    assert_int_equal(cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_REL).size, 0);
    assert_int_equal(cfg_read(d, VIRTIO_INPUT_CFG_ABS_INFO, ABS_X).size, 0);
    teardown(f);
}

static void test_config_tablet(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_TABLET);
    struct virtio_device *d = f->dev;
    struct virtio_input_config c = cfg_read(d, VIRTIO_INPUT_CFG_ID_NAME, 0);
    assert_int_equal(c.size, strlen("vmkit tablet"));
    assert_memory_equal(c.u.string, "vmkit tablet", c.size);
    check_common(d, 2);

    c = cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_KEY);
    assert_int_equal(c.size, BTN_EXTRA / 8 + 1);
    for (unsigned k = 0; k < c.size * 8u; k++)
        assert_int_equal(bit(&c, k), k >= BTN_LEFT && k <= BTN_EXTRA);
    assert_false(bit(&c, BTN_TOUCH));
    c = cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_ABS);
    assert_int_equal(c.size, 1);
    assert_int_equal(c.u.bitmap[0], 1u << ABS_X | 1u << ABS_Y);
    c = cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_REL);
    assert_int_equal(c.size, REL_WHEEL / 8 + 1);
    for (unsigned k = 0; k < c.size * 8u; k++)
        assert_int_equal(bit(&c, k), k == REL_WHEEL || k == REL_HWHEEL);
    assert_int_equal(cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_LED).size, 0);
    assert_int_equal(cfg_read(d, VIRTIO_INPUT_CFG_EV_BITS, EV_REP).size, 0);
    for (uint8_t axis = ABS_X; axis <= ABS_Y; axis++) {
        c = cfg_read(d, VIRTIO_INPUT_CFG_ABS_INFO, axis);
        assert_int_equal(c.size, sizeof(c.u.abs));
        assert_int_equal(le32toh(c.u.abs.min), 0);
        assert_int_equal(le32toh(c.u.abs.max), VIRTIO_INPUT_ABS_MAX);
        assert_int_equal(c.u.abs.fuzz, 0);
        assert_int_equal(c.u.abs.flat, 0);
        assert_int_equal(c.u.abs.res, 0);
    }
    teardown(f);
}

/* ---- events ---- */

static void test_key_press_release(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_KEYBOARD);
    add_bufs(f, 8);
    kick(f, EVQ); /* nothing to send yet */
    assert_int_equal(ready(f), 0);
    assert_int_equal(send1(f, EV_KEY, KEY_A, 1), 0);
    assert_int_equal(ready(f), 2);
    assert_int_equal(td_notified(&f->t, EVQ), 1); /* one interrupt for the frame */
    assert_int_equal(send1(f, EV_KEY, KEY_A, 0), 0);
    assert_int_equal(td_notified(&f->t, EVQ), 2);
    expect_ev(f, EV_KEY, KEY_A, 1);
    expect_syn(f);
    expect_ev(f, EV_KEY, KEY_A, 0);
    expect_syn(f);

    /* A frame of several events: one batch, one interrupt. */
    const struct virtio_input_event shift_b[] = { { EV_KEY, KEY_LEFTSHIFT, 1 },
                                                  { EV_KEY, KEY_B, 1 },
                                                  { EV_LED, LED_CAPSL, 1 } };
    assert_int_equal(virtio_input_send(f->dev, shift_b, 3), 0);
    assert_int_equal(td_notified(&f->t, EVQ), 3);
    expect_ev(f, EV_KEY, KEY_LEFTSHIFT, 1);
    expect_ev(f, EV_KEY, KEY_B, 1);
    expect_ev(f, EV_LED, LED_CAPSL, 1);
    expect_syn(f);
    assert_int_equal(ready(f), 0);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown(f);
}

static void test_tablet_events(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_TABLET);
    add_bufs(f, 16);
    kick(f, EVQ);
    const struct virtio_input_event click[] = { { EV_ABS, ABS_X, 100 },
                                                { EV_ABS, ABS_Y, VIRTIO_INPUT_ABS_MAX },
                                                { EV_KEY, BTN_LEFT, 1 } };
    assert_int_equal(virtio_input_send(f->dev, click, 3), 0);
    assert_int_equal(send1(f, EV_KEY, BTN_LEFT, 0), 0);
    assert_int_equal(send1(f, EV_REL, REL_WHEEL, -1), 0);
    assert_int_equal(send1(f, EV_REL, REL_HWHEEL, 3), 0);
    expect_ev(f, EV_ABS, ABS_X, 100);
    expect_ev(f, EV_ABS, ABS_Y, VIRTIO_INPUT_ABS_MAX);
    expect_ev(f, EV_KEY, BTN_LEFT, 1);
    expect_syn(f);
    expect_ev(f, EV_KEY, BTN_LEFT, 0);
    expect_syn(f);
    expect_ev(f, EV_REL, REL_WHEEL, -1);
    expect_syn(f);
    expect_ev(f, EV_REL, REL_HWHEEL, 3);
    expect_syn(f);
    assert_int_equal(ready(f), 0);
    teardown(f);
}

static void test_queued_until_buffers(void **state)
{
    /* Sent before the driver is even up. */
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->dev = virtio_input_new(VIRTIO_INPUT_KEYBOARD, NULL, NULL);
    assert_non_null(f->dev);
    assert_int_equal(send1(f, EV_KEY, KEY_1, 1), 0);
    assert_int_equal(td_init(&f->t, f->dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
    assert_int_equal(send1(f, EV_KEY, KEY_1, 0), 0);
    assert_int_equal(send1(f, EV_KEY, KEY_2, 1), 0);
    assert_int_equal(ready(f), 0);

    add_bufs(f, 3);
    kick(f, EVQ);
    assert_int_equal(ready(f), 3);
    assert_int_equal(td_notified(&f->t, EVQ), 1);
    expect_ev(f, EV_KEY, KEY_1, 1);
    expect_syn(f);
    expect_ev(f, EV_KEY, KEY_1, 0); /* half a frame so far: the rest comes with buffers */
    add_bufs(f, 10);
    kick(f, EVQ);
    expect_syn(f);
    expect_ev(f, EV_KEY, KEY_2, 1);
    expect_syn(f);
    assert_int_equal(ready(f), 0);
    teardown(f);
}

/* Reads everything pending, refilling the queue, into out (at most max); returns the count. */
static unsigned drain(struct fix *f, struct ev *out, unsigned max)
{
    unsigned n = 0;
    for (;;) {
        add_bufs(f, TD_QUEUE_SIZE);
        kick(f, EVQ);
        unsigned got = ready(f);
        for (unsigned i = 0; i < got; i++) {
            assert_true(n < max);
            out[n++] = next_ev(f);
        }
        if (got < TD_QUEUE_SIZE)
            break;
    }
    /* Leave the queue empty for the next test step: TD buffers outstanding are fine. */
    return n;
}

static void test_overflow_drops_oldest_frames(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_TABLET);
    /* Frames of three events (two and SYN_REPORT): 341 fit in 1024, the rest push out the
     * oldest whole frames. */
    for (int i = 0; i < 500; i++) {
        const struct virtio_input_event e[] = { { EV_ABS, ABS_X, i }, { EV_ABS, ABS_Y, i } };
        assert_int_equal(virtio_input_send(f->dev, e, 2), 0);
    }
    static struct ev got[2048];
    unsigned n = drain(f, got, 2048);
    assert_int_equal(n, 341 * 3);
    for (unsigned k = 0; k < 341; k++) {
        int32_t frame = 500 - 341 + (int32_t)k;
        assert_int_equal(got[3 * k].code, ABS_X);
        assert_int_equal(got[3 * k].value, frame);
        assert_int_equal(got[3 * k + 1].code, ABS_Y);
        assert_int_equal(got[3 * k + 1].value, frame);
        assert_int_equal(got[3 * k + 2].type, EV_SYN);
    }
    teardown(f);
}

static void test_overflow_keeps_frame_being_read(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_TABLET);
    static struct virtio_input_event big[VIRTIO_INPUT_MAX_PENDING / 2];
    for (unsigned i = 0; i < VIRTIO_INPUT_MAX_PENDING / 2; i++)
        big[i] = (struct virtio_input_event){ EV_ABS, ABS_X, (int32_t)i };
    add_bufs(f, 1);
    kick(f, EVQ);
    assert_int_equal(virtio_input_send(f->dev, big, VIRTIO_INPUT_MAX_PENDING / 2), 0);
    expect_ev(f, EV_ABS, ABS_X, 0); /* the guest has begun frame A */
    /* Frame B fits beside the rest of A; C then pushes B out, never A. */
    for (unsigned i = 0; i < VIRTIO_INPUT_MAX_PENDING / 2; i++)
        big[i].code = ABS_Y;
    assert_int_equal(virtio_input_send(f->dev, big, VIRTIO_INPUT_MAX_PENDING / 2), 0);
    assert_int_equal(send1(f, EV_REL, REL_WHEEL, 1), 0);

    static struct ev got[2048];
    unsigned n = drain(f, got, 2048);
    assert_int_equal(n, VIRTIO_INPUT_MAX_PENDING / 2 + 2);
    for (unsigned i = 1; i < VIRTIO_INPUT_MAX_PENDING / 2; i++) {
        assert_int_equal(got[i - 1].code, ABS_X);
        assert_int_equal(got[i - 1].value, i);
    }
    assert_int_equal(got[n - 3].type, EV_SYN);
    assert_int_equal(got[n - 2].code, REL_WHEEL);
    assert_int_equal(got[n - 1].type, EV_SYN);
    teardown(f);
}

static void test_invalid_events(void **state)
{
    struct fix *k = setup_kind(VIRTIO_INPUT_KEYBOARD);
    struct fix *t = setup_kind(VIRTIO_INPUT_TABLET);
    add_bufs(k, 4);
    add_bufs(t, 4);
    assert_int_equal(send1(t, EV_KEY, KEY_A, 1), -EINVAL);
    assert_int_equal(send1(t, EV_KEY, BTN_TOUCH, 1), -EINVAL);
    assert_int_equal(send1(t, EV_LED, LED_NUML, 1), -EINVAL);
    assert_int_equal(send1(t, EV_ABS, ABS_Z, 1), -EINVAL);
    assert_int_equal(send1(t, EV_ABS, ABS_X, -1), -EINVAL);
    assert_int_equal(send1(t, EV_ABS, ABS_X, VIRTIO_INPUT_ABS_MAX + 1), -EINVAL);
    assert_int_equal(send1(t, EV_REL, REL_X, 1), -EINVAL);
    assert_int_equal(send1(k, EV_ABS, ABS_X, 1), -EINVAL);
    assert_int_equal(send1(k, EV_KEY, BTN_LEFT, 1), -EINVAL);
    assert_int_equal(send1(k, EV_KEY, KEY_RESERVED, 1), -EINVAL);
    assert_int_equal(send1(k, EV_KEY, KEY_A, 3), -EINVAL);
    assert_int_equal(send1(k, EV_KEY, 0xffff, 1), -EINVAL);
    assert_int_equal(send1(k, EV_LED, LED_NUML, 2), -EINVAL);
    assert_int_equal(send1(k, EV_LED, LED_MUTE, 1), -EINVAL);
    assert_int_equal(send1(k, EV_SYN, SYN_DROPPED, 0), -EINVAL);
    assert_int_equal(send1(k, EV_MAX, 0, 0), -EINVAL);
    assert_int_equal(send1(k, 0xffff, 0, 0), -EINVAL);
    const struct virtio_input_event mixed[] = { { EV_KEY, KEY_A, 1 }, { EV_ABS, ABS_X, 1 } };
    assert_int_equal(virtio_input_send(k->dev, mixed, 2), -EINVAL);
    assert_int_equal(virtio_input_send(k->dev, mixed, 0), -EINVAL);
    assert_int_equal(virtio_input_send(k->dev, NULL, 1), -EINVAL);
    static struct virtio_input_event many[VIRTIO_INPUT_MAX_PENDING / 2 + 1];
    for (unsigned i = 0; i < VIRTIO_INPUT_MAX_PENDING / 2 + 1; i++)
        many[i] = (struct virtio_input_event){ EV_KEY, KEY_A, 1 };
    assert_int_equal(virtio_input_send(k->dev, many, VIRTIO_INPUT_MAX_PENDING / 2 + 1), -EINVAL);
    kick(k, EVQ);
    kick(t, EVQ);
    assert_int_equal(ready(k), 0); /* nothing was queued */
    assert_int_equal(ready(t), 0);

    /* What is declared goes through, the largest frame and an explicit SYN_REPORT too. */
    assert_int_equal(send1(k, EV_REP, REP_DELAY, 250), 0);
    assert_int_equal(send1(k, EV_SYN, SYN_REPORT, 0), 0);
    assert_int_equal(virtio_input_send(k->dev, many, VIRTIO_INPUT_MAX_PENDING / 2), 0);
    expect_ev(k, EV_REP, REP_DELAY, 250);
    expect_syn(k);
    expect_syn(k);
    expect_syn(k);
    teardown(k);
    teardown(t);
}

static void test_status_queue(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_KEYBOARD);
    for (unsigned i = 0; i < 5; i++) {
        uint64_t gpa = td_alloc(&f->t, 8);
        struct virtio_input_wire_event led = { htole16(EV_LED), htole16(LED_CAPSL),
                                               htole32(i & 1) };
        memcpy(td_ptr(&f->t, gpa, 8), &led, 8);
        struct td_buf b = { .gpa = gpa, .len = 8 };
        td_add(&f->t, STATUSQ, &b, 1);
    }
    /* An odd one: large, two descriptors, one writable. Returned all the same. */
    uint64_t a = td_alloc(&f->t, 4096), w = td_alloc(&f->t, 16);
    struct td_buf odd[2] = { { .gpa = a, .len = 4096 }, { .gpa = w, .len = 16, .writable = true } };
    td_add(&f->t, STATUSQ, odd, 2);
    kick(f, STATUSQ);
    assert_int_equal(td_used_idx(&f->t, STATUSQ), 6);
    for (uint16_t i = 0; i < 6; i++) {
        uint32_t len = 1;
        td_used_entry(&f->t, STATUSQ, i, NULL, &len);
        assert_int_equal(len, 0);
    }
    assert_int_equal(td_notified(&f->t, STATUSQ), 1);
    assert_int_equal(td_used_idx(&f->t, EVQ), 0);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown(f);
}

static void test_reset_drops_pending(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_KEYBOARD);
    assert_int_equal(send1(f, EV_KEY, KEY_Q, 1), 0);
    assert_int_equal(send1(f, EV_KEY, KEY_Q, 0), 0);
    td_fini(&f->t); /* the driver resets the device */
    f->seen = 0;
    assert_int_equal(td_init(&f->t, f->dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
    add_bufs(f, 4);
    kick(f, EVQ);
    assert_int_equal(ready(f), 0);
    assert_int_equal(send1(f, EV_KEY, KEY_W, 1), 0);
    expect_ev(f, EV_KEY, KEY_W, 1);
    expect_syn(f);
    teardown(f);
}

/* §5.8.6.1: event buffers are device-writable and hold a whole event; Linux trusts each one
 * to, so a short one is a driver to reset, not a buffer to skip. */
static void test_bad_event_buffer_needs_reset(void **state)
{
    for (unsigned variant = 0; variant < 2; variant++) {
        struct fix *f = setup_kind(VIRTIO_INPUT_KEYBOARD);
        add_bufs(f, 1);
        if (variant == 0) {
            add_bufs_len(f, 1, 7);
        } else {
            struct td_buf b = { .gpa = td_alloc(&f->t, 8), .len = 8 };
            td_add(&f->t, EVQ, &b, 1);
        }
        add_bufs(f, 2);
        assert_int_equal(send1(f, EV_KEY, KEY_A, 1), 0);
        /* The good buffer before it got its event; the bad one stops the device. */
        const char *why = NULL;
        assert_int_equal(td_resets(&f->t, &why), 1);
        assert_non_null(strstr(why, variant == 0 ? "smaller" : "readable"));
        assert_int_equal(ready(f), 1);
        expect_ev(f, EV_KEY, KEY_A, 1);
        assert_int_equal(send1(f, EV_KEY, KEY_A, 0), 0);
        kick(f, EVQ);
        assert_int_equal(ready(f), 0);
        assert_int_equal(td_resets(&f->t, NULL), 1);

        /* After the reset the device serves again. */
        td_fini(&f->t);
        f->seen = 0;
        assert_int_equal(td_init(&f->t, f->dev, VIRTIO_BIT(VIRTIO_F_VERSION_1)), 0);
        add_bufs(f, 2);
        assert_int_equal(send1(f, EV_KEY, KEY_B, 1), 0);
        expect_ev(f, EV_KEY, KEY_B, 1);
        expect_syn(f);
        teardown(f);
    }
}

static void test_broken_ring_needs_reset(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_TABLET);
    td_set_avail_idx(&f->t, EVQ, TD_QUEUE_SIZE + 5); /* more than the ring holds */
    assert_int_equal(send1(f, EV_KEY, BTN_LEFT, 1), 0);
    assert_int_equal(td_resets(&f->t, NULL), 1);
    assert_int_equal(send1(f, EV_KEY, BTN_LEFT, 0), 0); /* queued, not served */
    kick(f, EVQ);
    assert_int_equal(td_resets(&f->t, NULL), 1);
    teardown(f);
}

/* ---- threads ---- */

#define SMOKE_FRAMES 4000

static void *sender(void *arg)
{
    struct fix *f = arg;
    for (int i = 0; i < SMOKE_FRAMES; i++) {
        const struct virtio_input_event e = { EV_ABS, ABS_X, i };
        if (virtio_input_send(f->dev, &e, 1) != 0)
            return (void *)1;
    }
    return NULL;
}

/* A host thread sends while the guest side keeps the queue filled: every frame arrives
 * whole and in order (some may be dropped when the guest falls behind), the last one
 * always. */
static void test_concurrent_send(void **state)
{
    struct fix *f = setup_kind(VIRTIO_INPUT_TABLET);
    /* One buffer per descriptor, reused as the device hands them back in order. */
    uint64_t base = td_alloc(&f->t, 8 * TD_QUEUE_SIZE);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sender, f), 0);
    uint16_t added = 0;
    int32_t last = -1;
    bool want_syn = false;
    unsigned frames = 0;
    for (unsigned rounds = 0; rounds < 1000000 && last != SMOKE_FRAMES - 1; rounds++) {
        while (ready(f) > 0) {
            struct ev e = next_ev(f);
            if (want_syn) {
                assert_int_equal(e.type, EV_SYN);
                frames++;
            } else {
                assert_int_equal(e.type, EV_ABS);
                assert_true(e.value > last);
                last = e.value;
            }
            want_syn = !want_syn;
        }
        while ((uint16_t)(added - f->seen) < TD_QUEUE_SIZE) {
            uint16_t head = f->t.q[EVQ].next_desc;
            struct td_buf b = { .gpa = base + 8u * head, .len = 8, .writable = true };
            f->buf[td_add(&f->t, EVQ, &b, 1)] = b.gpa;
            added++;
        }
        kick(f, EVQ);
    }
    void *rc;
    assert_int_equal(pthread_join(th, &rc), 0);
    assert_null(rc);
    /* The SYN_REPORT of the last frame may be in the next buffer. */
    kick(f, EVQ);
    while (ready(f) > 0) {
        assert_true(want_syn);
        assert_int_equal(next_ev(f).type, EV_SYN);
        want_syn = false;
        frames++;
    }
    assert_false(want_syn);
    assert_int_equal(last, SMOKE_FRAMES - 1);
    assert_true(frames > 0 && frames <= SMOKE_FRAMES);
    assert_int_equal(td_resets(&f->t, NULL), 0);
    teardown(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_and_bad_arguments),
        cmocka_unit_test(test_config_keyboard),
        cmocka_unit_test(test_config_tablet),
        cmocka_unit_test(test_key_press_release),
        cmocka_unit_test(test_tablet_events),
        cmocka_unit_test(test_queued_until_buffers),
        cmocka_unit_test(test_overflow_drops_oldest_frames),
        cmocka_unit_test(test_overflow_keeps_frame_being_read),
        cmocka_unit_test(test_invalid_events),
        cmocka_unit_test(test_status_queue),
        cmocka_unit_test(test_reset_drops_pending),
        cmocka_unit_test(test_bad_event_buffer_needs_reset),
        cmocka_unit_test(test_broken_ring_needs_reset),
        cmocka_unit_test(test_concurrent_send),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
