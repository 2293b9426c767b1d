/* libFuzzer target for virtio-input: a hostile driver (virtio_driver.h) against a device
 * made fresh for each input. header[0] bit 0 picks the kind (0 keyboard, 1 tablet). The
 * driver's configuration accesses pick any select and subsel; FZ_OP_DEVICE is the host's
 * side: u8 mode, then
 *   mode & 3 == 0: u8 count (1..8), per event u8 index into the kind's table, u32 value
 *                  (brought into range): must be accepted;
 *   mode & 3 == 1: u8 count (1..8), per event raw u16 type, u16 code, u32 value: accepted
 *                  or -EINVAL;
 *   mode & 3 == 2: u16 n (1..600), u8 index: a frame of n events (over the limit: -EINVAL),
 *                  which fills the pending store and drops frames;
 *   mode & 3 == 3: vhost-user's stop and restart.
 * After each, the configuration the driver selected is read back whole and checked: size
 * within the union, zeroes after it. */
#include "virtio/input.h"
#include "virtio_driver.h"

#include <errno.h>
#include <linux/input.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAME 600u

struct code {
    uint16_t type, code;
};

static const struct code keyboard_codes[] = {
    { EV_KEY, KEY_A },       { EV_KEY, KEY_LEFTSHIFT }, { EV_KEY, KEY_ESC },
    { EV_KEY, KEY_MICMUTE }, { EV_LED, LED_CAPSL },     { EV_REP, REP_DELAY },
    { EV_SYN, SYN_REPORT },
};
static const struct code tablet_codes[] = {
    { EV_ABS, ABS_X },     { EV_ABS, ABS_Y },      { EV_KEY, BTN_LEFT },   { EV_KEY, BTN_EXTRA },
    { EV_REL, REL_WHEEL }, { EV_REL, REL_HWHEEL }, { EV_SYN, SYN_REPORT },
};

/* Indexed by enum virtio_input_kind. */
static const struct {
    const struct code *codes;
    unsigned n;
} tables[] = {
    { keyboard_codes, sizeof(keyboard_codes) / sizeof(keyboard_codes[0]) },
    { tablet_codes, sizeof(tablet_codes) / sizeof(tablet_codes[0]) },
};

struct input_state {
    struct fz_driver drv;
    enum virtio_input_kind kind;
    struct virtio_input_event frame[MAX_FRAME];
};

/* A declared event from the kind's table, its value brought into range. */
static struct virtio_input_event table_event(const struct input_state *s, uint8_t idx,
                                             uint32_t value)
{
    const struct code *tab = tables[s->kind].codes;
    unsigned n = tables[s->kind].n;
    struct virtio_input_event e = { .type = tab[idx % n].type, .code = tab[idx % n].code };
    switch (e.type) {
    case EV_KEY: e.value = (int32_t)(value % 3); break;
    case EV_LED: e.value = (int32_t)(value % 2); break;
    case EV_ABS: e.value = (int32_t)(value % (VIRTIO_INPUT_ABS_MAX + 1)); break;
    case EV_SYN: e.value = 0; break;
    default: e.value = (int32_t)value; break;
    }
    return e;
}

static void check_config(struct virtio_device *d)
{
    uint8_t c[VIRTIO_INPUT_CFG_SIZE];
    d->ops->config_read(d, 0, c, sizeof(c));
    FZ_CHECK(c[2] <= VIRTIO_INPUT_CFG_SIZE - 8);
    for (unsigned i = 3; i < 8; i++)
        FZ_CHECK(c[i] == 0);
    for (unsigned i = 8u + c[2]; i < sizeof(c); i++)
        FZ_CHECK(c[i] == 0);
}

static void input_action(struct fz_driver *t, struct fz_in *in)
{
    struct input_state *s = t->ctx;
    uint8_t mode = fz_u8(in);
    unsigned n;
    int rc;
    switch (mode & 3) {
    case 0:
        n = 1 + fz_u8(in) % 8u;
        for (unsigned i = 0; i < n; i++) {
            uint8_t idx = fz_u8(in);
            s->frame[i] = table_event(s, idx, fz_u32(in));
        }
        FZ_CHECK(virtio_input_send(t->dev, s->frame, n) == 0);
        break;
    case 1:
        n = 1 + fz_u8(in) % 8u;
        for (unsigned i = 0; i < n; i++) {
            s->frame[i].type = fz_u16(in);
            s->frame[i].code = fz_u16(in);
            s->frame[i].value = (int32_t)fz_u32(in);
        }
        rc = virtio_input_send(t->dev, s->frame, n);
        FZ_CHECK(rc == 0 || rc == -EINVAL);
        break;
    case 2: {
        n = 1 + fz_u16(in) % MAX_FRAME;
        uint8_t idx = fz_u8(in);
        for (unsigned i = 0; i < n; i++)
            s->frame[i] = table_event(s, idx, i);
        rc = virtio_input_send(t->dev, s->frame, n);
        FZ_CHECK(rc == (n <= VIRTIO_INPUT_MAX_PENDING / 2 ? 0 : -EINVAL));
        break;
    }
    default: fz_stop_restart(t); break;
    }
    check_config(t->dev);
}

static const struct fz_target_ops input_ops = {
    .settle = NULL,
    .action = input_action,
};

/* ---- seeds ---- */

static void seed_select(struct fz_seed *s, uint8_t select, uint8_t subsel)
{
    fz_seed_u8(s, FZ_OP_CFG_WRITE);
    fz_seed_u8(s, 0);
    fz_seed_u8(s, 1); /* two bytes: select and subsel */
    fz_seed_u8(s, select);
    fz_seed_u8(s, subsel);
    fz_seed_bytes(s, "\0\0\0\0\0\0", 6);
    for (uint8_t off = 0; off < 16; off += 8) {
        fz_seed_u8(s, FZ_OP_CFG_READ);
        fz_seed_u8(s, off);
        fz_seed_u8(s, 3);
    }
}

static void seed_event_buffers(struct fz_seed *s, unsigned n, uint16_t len, uint8_t ctl)
{
    struct fz_seg seg = { .writable = true, .len = len };
    for (unsigned i = 0; i < n; i++)
        fz_seed_chain(s, 0, i + 1 == n ? ctl | FZ_CHAIN_KICK : ctl, &seg, 1);
}

static void seed_send(struct fz_seed *s, uint8_t count, uint8_t idx)
{
    fz_seed_u8(s, FZ_OP_DEVICE);
    fz_seed_u8(s, 0);
    fz_seed_u8(s, (uint8_t)(count - 1));
    for (uint8_t i = 0; i < count; i++) {
        fz_seed_u8(s, (uint8_t)(idx + i));
        fz_seed_u32(s, 1000u * i + 1);
    }
}

void fz_write_seeds(const char *dir)
{
    static const uint8_t led[8] = { EV_LED, 0, LED_CAPSL, 0, 1, 0, 0, 0 };
    struct fz_seed s;
    for (unsigned v = 0; v < 4; v++) {
        char name[32];
        fz_seed_begin(&s, (uint8_t)(v & 1),
                      FZ_H_BRING_UP | FZ_H_INDIRECT | (v & 2 ? FZ_H_EVENT_IDX : 0), 0);
        seed_select(&s, 0x01, 0); /* ID_NAME */
        seed_select(&s, 0x03, 0); /* ID_DEVIDS */
        seed_select(&s, 0x11, v & 1 ? EV_ABS : EV_KEY);
        seed_select(&s, 0x12, ABS_X);
        seed_event_buffers(&s, 4, 8, v & 2 ? FZ_CHAIN_INDIRECT : 0);
        seed_send(&s, 3, 0);
        seed_send(&s, 1, 2);
        struct fz_seg status = { .len = 8, .data = led, .data_len = 8 };
        fz_seed_chain(&s, 1, FZ_CHAIN_KICK, &status, 1);
        seed_event_buffers(&s, 8, 8, 0);
        /* A big frame, then one more: the pending store overflows. */
        fz_seed_u8(&s, FZ_OP_DEVICE);
        fz_seed_u8(&s, 2);
        fz_seed_u16(&s, 511);
        fz_seed_u8(&s, 0);
        seed_send(&s, 2, 1);
        seed_event_buffers(&s, 2, 4, 0); /* too small: the device asks for a reset */
        snprintf(name, sizeof(name), "events-%u", v);
        fz_seed_save(dir, name, &s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer passes no context: guest RAM lives as long as the process; the device is
     * made fresh for each input. */
    static struct input_state *s;
    if (!s) {
        s = calloc(1, sizeof(*s));
        FZ_CHECK(s && fz_driver_init(&s->drv) == 0);
        FZ_CHECK(!virtio_input_new((enum virtio_input_kind)2, NULL, NULL));
        FZ_CHECK(!virtio_input_new(VIRTIO_INPUT_KEYBOARD, "", NULL));
    }
    s->kind = size && (data[0] & 1) ? VIRTIO_INPUT_TABLET : VIRTIO_INPUT_KEYBOARD;
    struct virtio_device *dev = virtio_input_new(s->kind, NULL, NULL);
    FZ_CHECK(dev != NULL);
    fz_run(&s->drv, dev, &input_ops, s, data, size);
    dev->ops->destroy(dev);
    return 0;
}
