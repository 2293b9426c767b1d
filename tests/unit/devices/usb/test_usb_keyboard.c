/* The USB keyboard as a host driver (usbhid, OVMF's UsbKbDxe) sees it: descriptors, HID class
 * requests, reports on the interrupt endpoint from evdev key events, rollover, the bounded
 * queue, NAK and wakeup, LEDs, reset, and hostile requests on the default pipe. */
#include "devices/usb/usb_keyboard.h"
#include "usb_test.h"

#include <linux/input-event-codes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define EP_IN 0x81

struct fixture {
    struct usb_device *dev;
    struct usb_test_port port;
};

static int ctl(struct fixture *f, uint8_t rt, uint8_t req, uint16_t value, uint16_t index,
               uint16_t length, uint8_t *data)
{
    return usb_test_control(f->dev, rt, req, value, index, length, data);
}

static int make(void **state, bool configure)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || !(f->dev = usb_keyboard_new()))
        return -1;
    if (usb_test_plug(f->dev, &f->port, configure) != 0)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return make(state, true);
}

static int setup_bare(void **state)
{
    return make(state, false);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    f->dev->ops->destroy(f->dev->ctx);
    free(f);
    return 0;
}

static int poll_in(struct fixture *f, uint8_t *buf, size_t len)
{
    return usb_test_transfer(f->dev, EP_IN, buf, len);
}

/* The next report must be mods, 0, keys[0..5]. */
static void expect_report(struct fixture *f, uint8_t mods, const uint8_t keys[6])
{
    uint8_t r[8], want[8] = { mods, 0 };
    memcpy(want + 2, keys, 6);
    assert_int_equal(poll_in(f, r, sizeof(r)), 8);
    assert_memory_equal(r, want, 8);
}

static uint8_t leds(struct fixture *f)
{
    uint8_t l;
    unsigned d;
    usb_keyboard_state(f->dev, &l, &d);
    return l;
}

static void key(struct fixture *f, uint16_t code, bool down)
{
    assert_true(usb_keyboard_key(f->dev, code, down));
}

/* ---- descriptors ---- */

static void test_device_descriptor(void **state)
{
    struct fixture *f = *state;
    uint8_t d[64];
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_DEVICE << 8, 0, 64, d), 18);
    assert_int_equal(d[0], 18);
    assert_int_equal(d[1], USB_DT_DEVICE);
    assert_int_equal(d[4], 0); /* the interface says what we are */
    assert_int_equal(d[8] | d[9] << 8, USB_VMKIT_VENDOR_ID);
    assert_int_equal(d[10] | d[11] << 8, USB_KEYBOARD_PRODUCT_ID);
    assert_int_equal(d[16], 0); /* no serial */
    assert_int_equal(d[17], 1);
    assert_int_equal(f->dev->speed, USB_SPEED_FULL);
    /* The first 8 bytes, as hosts read first. */
    memset(d, 0xee, sizeof(d));
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_DEVICE << 8, 0, 8, d), 8);
    assert_int_equal(d[8], 0xee);
    /* Full speed only: no device qualifier, no other-speed configuration. */
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, 6 << 8, 0, 10, d), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, 7 << 8, 0, 64, d), USB_RET_STALL);
    /* Strings: languages, manufacturer, product; no serial. */
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8, 0, 64, d), 4);
    int n = ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8 | 2, 0x409, 64, d);
    assert_int_equal(n, 2 + 2 * (int)strlen("vmkit USB keyboard"));
    assert_int_equal(d[2], 'v');
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8 | 3, 0x409, 64, d),
                     USB_RET_STALL);
}

/* Walks a report descriptor's short items, summing the bits of input and output fields. */
static void parse_report(const uint8_t *r, size_t len, unsigned *in_bits, unsigned *out_bits)
{
    unsigned size = 0, count = 0, depth = 0;
    *in_bits = *out_bits = 0;
    for (size_t i = 0; i < len;) {
        uint8_t prefix = r[i];
        assert_int_not_equal(prefix, 0xfe); /* no long items */
        unsigned n = (prefix & 3) == 3 ? 4 : prefix & 3;
        assert_true(i + 1 + n <= len);
        unsigned v = 0;
        for (unsigned k = 0; k < n; k++)
            v |= (unsigned)r[i + 1 + k] << (8 * k);
        switch (prefix & 0xfc) {
        case 0x74: size = v; break;  /* Report Size */
        case 0x94: count = v; break; /* Report Count */
        case 0x80: *in_bits += size * count; break;
        case 0x90: *out_bits += size * count; break;
        case 0xa0: depth++; break;
        case 0xc0:
            assert_true(depth > 0);
            depth--;
            break;
        case 0x84: fail_msg("report ids: the boot layout has none"); break;
        default: break;
        }
        i += 1 + n;
    }
    assert_int_equal(depth, 0);
}

static void test_config_and_hid_descriptors(void **state)
{
    struct fixture *f = *state;
    uint8_t d[256];
    int n = ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_CONFIG << 8, 0, 9, d);
    assert_int_equal(n, 9);
    unsigned total = d[2] | d[3] << 8;
    assert_int_equal(total, 9 + 9 + 9 + 7);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_CONFIG << 8, 0, 255, d),
                     (int)total);
    /* Every descriptor's length adds up to the total; pick out the parts. */
    const uint8_t *itf = NULL, *hid = NULL, *ep = NULL;
    for (unsigned at = 0; at < total; at += d[at]) {
        assert_true(d[at] >= 2 && at + d[at] <= total);
        if (d[at + 1] == USB_DT_INTERFACE)
            itf = d + at;
        else if (d[at + 1] == USB_DT_HID)
            hid = d + at;
        else if (d[at + 1] == USB_DT_ENDPOINT)
            ep = d + at;
    }
    assert_non_null(itf);
    assert_non_null(hid);
    assert_non_null(ep);
    assert_true(itf < hid && hid < ep); /* HID 1.11 7.1: the HID descriptor before endpoints */
    assert_int_equal(itf[4], 1);
    assert_int_equal(itf[5], 3); /* HID */
    assert_int_equal(itf[6], 1); /* boot */
    assert_int_equal(itf[7], 1); /* keyboard */
    assert_int_equal(ep[2], EP_IN);
    assert_int_equal(ep[3], 3); /* interrupt */
    assert_int_equal(ep[4] | ep[5] << 8, 8);
    assert_true(ep[6] >= 1 && ep[6] <= 255);
    assert_int_equal(hid[0], 9);
    assert_int_equal(hid[5], 1);
    assert_int_equal(hid[6], USB_DT_HID_REPORT);
    unsigned rlen = hid[7] | hid[8] << 8;

    /* The class descriptors on the interface: the same HID descriptor, then the report
     * descriptor of that length and the boot layout. */
    uint8_t h[9];
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_DESCRIPTOR, USB_DT_HID << 8, 0, 9, h), 9);
    assert_memory_equal(h, hid, 9);
    uint8_t r[256];
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_DESCRIPTOR, USB_DT_HID_REPORT << 8, 0, 255, r),
                     (int)rlen);
    unsigned in_bits, out_bits;
    parse_report(r, rlen, &in_bits, &out_bits);
    assert_int_equal(in_bits, 64);
    assert_int_equal(out_bits, 8);
    assert_int_equal(r[0], 0x05); /* Usage Page (Generic Desktop), Usage (Keyboard) */
    assert_int_equal(r[3], 0x06);
    /* Truncated to wLength; not on another interface, nor from the device. */
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_DESCRIPTOR, USB_DT_HID_REPORT << 8, 0, 5, r), 5);
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_DESCRIPTOR, USB_DT_HID_REPORT << 8, 1, 255, r),
                     USB_RET_STALL);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_HID_REPORT << 8, 0, 255, r),
                     USB_RET_STALL);
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_DESCRIPTOR, USB_DT_HID_REPORT << 8 | 1, 0, 255, r),
                     USB_RET_STALL);
}

/* ---- class requests ---- */

static void test_class_requests(void **state)
{
    struct fixture *f = *state;
    uint8_t b[8];
    /* Report protocol after power-up; both protocols settable. */
    assert_int_equal(ctl(f, 0xa1, 0x03, 0, 0, 1, b), 1);
    assert_int_equal(b[0], 1);
    assert_int_equal(ctl(f, 0x21, 0x0b, 0, 0, 0, NULL), 0);
    assert_int_equal(ctl(f, 0xa1, 0x03, 0, 0, 1, b), 1);
    assert_int_equal(b[0], 0);
    assert_int_equal(ctl(f, 0x21, 0x0b, 2, 0, 0, NULL), USB_RET_STALL);
    /* SET_IDLE as Linux sends it (0: indefinite), and a rate, kept for GET_IDLE. */
    assert_int_equal(ctl(f, 0x21, 0x0a, 0, 0, 0, NULL), 0);
    assert_int_equal(ctl(f, 0xa1, 0x02, 0, 0, 1, b), 1);
    assert_int_equal(b[0], 0);
    assert_int_equal(ctl(f, 0x21, 0x0a, 125 << 8, 0, 0, NULL), 0);
    assert_int_equal(ctl(f, 0xa1, 0x02, 0, 0, 1, b), 1);
    assert_int_equal(b[0], 125);
    assert_int_equal(ctl(f, 0x21, 0x0a, 1, 0, 0, NULL), USB_RET_STALL); /* report id 1 */
    /* GET_REPORT input: the current state, whatever the queue holds. */
    key(f, KEY_A, true);
    assert_int_equal(ctl(f, 0xa1, 0x01, 1 << 8, 0, 8, b), 8);
    assert_int_equal(b[2], 0x04);
    assert_int_equal(ctl(f, 0xa1, 0x01, 1 << 8, 0, 3, b), 3);
    assert_int_equal(ctl(f, 0xa1, 0x01, 3 << 8, 0, 8, b), USB_RET_STALL); /* feature */
    assert_int_equal(ctl(f, 0xa1, 0x01, 1 << 8 | 2, 0, 8, b), USB_RET_STALL);
    /* Another interface, the device as recipient, an unknown request: STALL. */
    assert_int_equal(ctl(f, 0xa1, 0x03, 0, 1, 1, b), USB_RET_STALL);
    assert_int_equal(ctl(f, 0xa0, 0x03, 0, 0, 1, b), USB_RET_STALL);
    assert_int_equal(ctl(f, 0xa1, 0x04, 0, 0, 1, b), USB_RET_STALL);
    assert_int_equal(ctl(f, 0xc1, 0x01, 1 << 8, 0, 8, b), USB_RET_STALL); /* vendor */
}

static void test_leds(void **state)
{
    struct fixture *f = *state;
    uint8_t b[4] = { 0xff, 0, 0, 0 };
    assert_int_equal(leds(f), 0);
    /* Caps Lock on, as a driver sends it; bits past the five LEDs are padding. */
    assert_int_equal(ctl(f, 0x21, 0x09, 2 << 8, 0, 1, b), 1);
    assert_int_equal(leds(f), 0x1f);
    b[0] = 0x02;
    assert_int_equal(ctl(f, 0x21, 0x09, 2 << 8, 0, 1, b), 1);
    assert_int_equal(leds(f), 0x02);
    assert_int_equal(ctl(f, 0xa1, 0x01, 2 << 8, 0, 1, b), 1);
    assert_int_equal(b[0], 0x02);
    /* No data, an input report, a report id: refused, the LEDs stay. */
    assert_int_equal(ctl(f, 0x21, 0x09, 2 << 8, 0, 0, NULL), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x21, 0x09, 1 << 8, 0, 1, b), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x21, 0x09, 2 << 8 | 1, 0, 1, b), USB_RET_STALL);
    assert_int_equal(leds(f), 0x02);
    /* A longer data stage is taken; the first byte counts. */
    uint8_t big[64] = { 0x01 };
    assert_int_equal(ctl(f, 0x21, 0x09, 2 << 8, 0, 64, big), 64);
    assert_int_equal(leds(f), 0x01);
}

/* ---- reports ---- */

static void test_press_release(void **state)
{
    struct fixture *f = *state;
    uint8_t r[8];
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK);
    key(f, KEY_LEFTSHIFT, true);
    key(f, KEY_H, true);
    key(f, KEY_H, false);
    key(f, KEY_LEFTSHIFT, false);
    key(f, KEY_ENTER, true);
    key(f, KEY_RIGHTALT, true);
    key(f, KEY_F2, true);
    key(f, KEY_ENTER, false);
    key(f, KEY_RIGHTALT, false);
    key(f, KEY_F2, false);
    expect_report(f, 0x02, (uint8_t[6]){ 0 });
    expect_report(f, 0x02, (uint8_t[6]){ 0x0b });
    expect_report(f, 0x02, (uint8_t[6]){ 0 });
    expect_report(f, 0x00, (uint8_t[6]){ 0 });
    expect_report(f, 0x00, (uint8_t[6]){ 0x28 });
    expect_report(f, 0x40, (uint8_t[6]){ 0x28 });
    expect_report(f, 0x40, (uint8_t[6]){ 0x28, 0x3b });
    expect_report(f, 0x40, (uint8_t[6]){ 0x3b }); /* the order of the rest is kept */
    expect_report(f, 0x00, (uint8_t[6]){ 0x3b });
    expect_report(f, 0x00, (uint8_t[6]){ 0 });
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK);
    /* Every modifier has its bit, in usage order E0h..E7h. */
    static const uint16_t mods[8] = { KEY_LEFTCTRL,  KEY_LEFTSHIFT,  KEY_LEFTALT,  KEY_LEFTMETA,
                                      KEY_RIGHTCTRL, KEY_RIGHTSHIFT, KEY_RIGHTALT, KEY_RIGHTMETA };
    for (unsigned i = 0; i < 8; i++) {
        key(f, mods[i], true);
        expect_report(f, (uint8_t)(1u << i), (uint8_t[6]){ 0 });
        key(f, mods[i], false);
        expect_report(f, 0, (uint8_t[6]){ 0 });
    }
    /* A repeated press or a release of a key not down changes nothing: no report. */
    key(f, KEY_ESC, true);
    key(f, KEY_ESC, true);
    key(f, KEY_SPACE, false);
    expect_report(f, 0, (uint8_t[6]){ 0x29 });
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK);
    /* Keys with no boot usage are ignored. */
    assert_false(usb_keyboard_key(f->dev, KEY_MUTE, true));
    assert_false(usb_keyboard_key(f->dev, 0, true));
    assert_false(usb_keyboard_key(f->dev, 0xffff, true));
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK);
    /* A few of the table's usages, against the HID Usage Tables. */
    static const struct {
        uint16_t code;
        uint8_t usage;
    } some[] = { { KEY_Z, 0x1d },       { KEY_0, 0x27 },      { KEY_BACKSPACE, 0x2a },
                 { KEY_SLASH, 0x38 },   { KEY_F12, 0x45 },    { KEY_UP, 0x52 },
                 { KEY_KPENTER, 0x58 }, { KEY_KPDOT, 0x63 },  { KEY_102ND, 0x64 },
                 { KEY_COMPOSE, 0x65 }, { KEY_DELETE, 0x4c }, { KEY_PAUSE, 0x48 } };
    key(f, KEY_ESC, false);
    expect_report(f, 0, (uint8_t[6]){ 0 });
    for (size_t i = 0; i < sizeof(some) / sizeof(some[0]); i++) {
        key(f, some[i].code, true);
        expect_report(f, 0, (uint8_t[6]){ some[i].usage });
        key(f, some[i].code, false);
        expect_report(f, 0, (uint8_t[6]){ 0 });
    }
}

static void test_rollover(void **state)
{
    struct fixture *f = *state;
    static const uint16_t codes[7] = { KEY_A, KEY_S, KEY_D, KEY_F, KEY_J, KEY_K, KEY_L };
    static const uint8_t usages[7] = { 0x04, 0x16, 0x07, 0x09, 0x0d, 0x0e, 0x0f };
    uint8_t want[6] = { 0 };
    key(f, KEY_LEFTCTRL, true);
    expect_report(f, 0x01, want);
    for (unsigned i = 0; i < 6; i++) {
        key(f, codes[i], true);
        want[i] = usages[i];
        expect_report(f, 0x01, want);
    }
    key(f, codes[6], true);
    expect_report(f, 0x01, (uint8_t[6]){ 1, 1, 1, 1, 1, 1 });
    /* Back to six: the keys themselves again. */
    key(f, KEY_A, false);
    expect_report(f, 0x01, (uint8_t[6]){ 0x16, 0x07, 0x09, 0x0d, 0x0e, 0x0f });
    /* Far more keys than the device tracks: rollover, and no crash. */
    for (uint16_t c = KEY_Q; c <= KEY_P; c++)
        key(f, c, true);
    for (uint16_t c = KEY_Z; c <= KEY_M; c++)
        key(f, c, true);
    uint8_t r[8];
    while (poll_in(f, r, 8) == 8)
        ;
    assert_memory_equal(r + 2, ((uint8_t[6]){ 1, 1, 1, 1, 1, 1 }), 6);
}

static void test_queue_overflow(void **state)
{
    struct fixture *f = *state;
    /* 40 changes, nobody reading: the newest USB_KEYBOARD_QUEUE stay. */
    for (unsigned i = 0; i < 20; i++) {
        key(f, KEY_B, true);
        key(f, KEY_B, false);
    }
    uint8_t l;
    unsigned d;
    usb_keyboard_state(f->dev, &l, &d);
    assert_int_equal(d, 40 - USB_KEYBOARD_QUEUE);
    unsigned n = 0;
    uint8_t r[8];
    while (poll_in(f, r, 8) == 8) {
        assert_int_equal(r[2], n % 2 == 0 ? 0x05 : 0); /* still in press/release order */
        n++;
    }
    assert_int_equal(n, USB_KEYBOARD_QUEUE);
    assert_int_equal(r[2], 0); /* the last one: released */
}

static void test_nak_and_wakeup(void **state)
{
    struct fixture *f = *state;
    uint8_t r[8];
    key(f, KEY_X, true); /* no NAK yet: nobody to wake */
    assert_int_equal(f->port.wakeups, 0);
    expect_report(f, 0, (uint8_t[6]){ 0x1b });
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK);
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK);
    key(f, KEY_X, false);
    assert_int_equal(f->port.wakeups, 1);
    assert_int_equal(f->port.last_wakeup, EP_IN);
    key(f, KEY_X, true); /* already woken */
    assert_int_equal(f->port.wakeups, 1);
    expect_report(f, 0, (uint8_t[6]){ 0 });
    expect_report(f, 0, (uint8_t[6]){ 0x1b });
    /* A buffer smaller than the report babbles and keeps it; a larger one is a short read. */
    key(f, KEY_X, false);
    assert_int_equal(poll_in(f, r, 4), USB_RET_ERROR);
    uint8_t big[64];
    assert_int_equal(poll_in(f, big, 64), 8);
    /* Scattered over two buffers. */
    key(f, KEY_Y, true);
    uint8_t a[3], b[61];
    struct iovec v[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
    struct usb_packet p = { .ep = EP_IN, .iov = v, .iovcnt = 2, .len = 64 };
    assert_int_equal(f->dev->ops->transfer(f->dev->ctx, &p), 8);
    assert_int_equal(a[2], 0x1c);
    assert_int_equal(b[0], 0);
    /* Another endpoint, or OUT: STALL. */
    p.ep = 0x01;
    assert_int_equal(f->dev->ops->transfer(f->dev->ctx, &p), USB_RET_STALL);
    p.ep = 0x82;
    assert_int_equal(f->dev->ops->transfer(f->dev->ctx, &p), USB_RET_STALL);
}

static void test_unconfigured_and_reset(void **state)
{
    struct fixture *f = *state;
    uint8_t r[8];
    /* Unconfigured: the endpoint stalls and keys only change the state. */
    key(f, KEY_A, true);
    key(f, KEY_A, false);
    key(f, KEY_LEFTSHIFT, true);
    assert_int_equal(poll_in(f, r, 8), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_CONFIG, 0, 0, 1, r), 1);
    assert_int_equal(r[0], 1);
    expect_report(f, 0x02, (uint8_t[6]){ 0 }); /* what is down now, not what came before */
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK);
    /* Halt, GET_STATUS, clear. */
    assert_int_equal(ctl(f, 0x02, USB_REQ_SET_FEATURE, 0, EP_IN, 0, NULL), 0);
    assert_int_equal(poll_in(f, r, 8), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x82, USB_REQ_GET_STATUS, 0, EP_IN, 2, r), 2);
    assert_int_equal(r[0], 1);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_IN, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, 0x02, 0, NULL), USB_RET_STALL);
    /* Settings and state, then a port reset: all back to power-up. */
    uint8_t led = 0x07;
    assert_int_equal(ctl(f, 0x21, 0x09, 2 << 8, 0, 1, &led), 1);
    assert_int_equal(ctl(f, 0x21, 0x0b, 0, 0, 0, NULL), 0);
    key(f, KEY_Q, true);
    f->dev->ops->reset(f->dev->ctx);
    assert_int_equal(leds(f), 0);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_CONFIG, 0, 0, 1, r), 1);
    assert_int_equal(r[0], 0);
    assert_int_equal(poll_in(f, r, 8), USB_RET_STALL);
    assert_int_equal(ctl(f, 0xa1, 0x03, 0, 0, 1, r), 1);
    assert_int_equal(r[0], 1);
    assert_int_equal(ctl(f, 0xa1, 0x01, 1 << 8, 0, 8, r), 8);
    assert_memory_equal(r, ((uint8_t[8]){ 0 }), 8);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL), 0);
    assert_int_equal(poll_in(f, r, 8), USB_RET_NAK); /* the queue went too */
}

/* Every request type, request, recipient and length near the edges: an answer within
 * wLength or a STALL, never more. */
static void test_hostile_requests(void **state)
{
    struct fixture *f = *state;
    static uint8_t buf[65536 + 16];
    static const uint16_t lengths[] = { 0, 1, 2, 7, 8, 9, 63, 255, 4096, 65535 };
    static const uint16_t values[] = { 0,      1,      0x0100, 0x0200, 0x0201, 0x0300, 0x0303,
                                       0x0600, 0x2100, 0x2101, 0x2200, 0x2201, 0xffff };
    static const uint16_t indexes[] = { 0, 1, 0x80, 0x81, 0x01, 0x409, 0xffff };
    for (unsigned rt = 0; rt < 256; rt += 1) {
        for (unsigned req = 0; req < 16; req++) {
            for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
                for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++) {
                    for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
                        memset(buf + lengths[l], 0xa5, 16);
                        int r = ctl(f, (uint8_t)rt, (uint8_t)req, values[v], indexes[i], lengths[l],
                                    buf);
                        assert_true(r == USB_RET_STALL || (r >= 0 && r <= lengths[l]));
                        for (unsigned k = 0; k < 16; k++)
                            assert_int_equal(buf[lengths[l] + k], 0xa5);
                    }
                }
            }
        }
    }
    /* No data buffer with a length: refused. NULL setup: refused. */
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_DEVICE << 8, 0, 18, NULL),
                     USB_RET_STALL);
    assert_int_equal(f->dev->ops->control(f->dev->ctx, NULL, buf), USB_RET_STALL);
    assert_int_equal(f->dev->ops->transfer(f->dev->ctx, NULL), USB_RET_STALL);
    /* Still a keyboard afterwards. */
    f->dev->ops->reset(f->dev->ctx);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL), 0);
    key(f, KEY_A, true);
    expect_report(f, 0, (uint8_t[6]){ 0x04 });
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_device_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_and_hid_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_class_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_press_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nak_and_wakeup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unconfigured_and_reset, setup_bare, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_requests, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
