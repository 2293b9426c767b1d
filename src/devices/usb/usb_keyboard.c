/* A USB HID boot keyboard (see usb_keyboard.h). The controller's worker calls control and
 * transfer; the views call usb_keyboard_key from their own threads: one lock covers the
 * pressed set, the report queue and the host's settings. */
#include "devices/usb/usb_keyboard.h"

#include <linux/input-event-codes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* HID class requests (HID 1.11 7.2). */
#define HID_GET_REPORT      0x01
#define HID_GET_IDLE        0x02
#define HID_GET_PROTOCOL    0x03
#define HID_SET_REPORT      0x09
#define HID_SET_IDLE        0x0a
#define HID_SET_PROTOCOL    0x0b
#define HID_REPORT_INPUT    1
#define HID_REPORT_OUTPUT   2
#define HID_PROTOCOL_BOOT   0
#define HID_PROTOCOL_REPORT 1

#define ROLLOVER     0x01 /* ErrorRollOver: too many keys down to tell which */
#define BOOT_KEYS    6
#define PRESSED_MAX  16 /* keys tracked down; past six the report says rollover */
#define LED_MASK     0x1f
#define CONFIG_LEN   (9 + 9 + 9 + 7)
#define INTERVAL_MS  10  /* bInterval: full-speed frames of 1 ms */
#define DEFAULT_IDLE 125 /* 500 ms in 4 ms units: HID 1.11 7.2.4's advice for keyboards */

/* The boot report's layout (HID 1.11 appendix B.1), item by item. */
static const uint8_t report_descriptor[] = {
    0x05, 0x01, /* Usage Page (Generic Desktop) */
    0x09, 0x06, /* Usage (Keyboard) */
    0xa1, 0x01, /* Collection (Application) */
    0x05, 0x07, /*   Usage Page (Keyboard/Keypad) */
    0x19, 0xe0, /*   Usage Minimum (Left Control) */
    0x29, 0xe7, /*   Usage Maximum (Right GUI) */
    0x15, 0x00, /*   Logical Minimum (0) */
    0x25, 0x01, /*   Logical Maximum (1) */
    0x75, 0x01, /*   Report Size (1) */
    0x95, 0x08, /*   Report Count (8) */
    0x81, 0x02, /*   Input (Data, Variable, Absolute): the modifier byte */
    0x95, 0x01, /*   Report Count (1) */
    0x75, 0x08, /*   Report Size (8) */
    0x81, 0x01, /*   Input (Constant): the reserved byte */
    0x95, 0x05, /*   Report Count (5) */
    0x75, 0x01, /*   Report Size (1) */
    0x05, 0x08, /*   Usage Page (LEDs) */
    0x19, 0x01, /*   Usage Minimum (Num Lock) */
    0x29, 0x05, /*   Usage Maximum (Kana) */
    0x91, 0x02, /*   Output (Data, Variable, Absolute): the LED bits */
    0x95, 0x01, /*   Report Count (1) */
    0x75, 0x03, /*   Report Size (3) */
    0x91, 0x01, /*   Output (Constant): padding to a byte */
    0x95, 0x06, /*   Report Count (6) */
    0x75, 0x08, /*   Report Size (8) */
    0x15, 0x00, /*   Logical Minimum (0) */
    0x25, 0x65, /*   Logical Maximum (101) */
    0x05, 0x07, /*   Usage Page (Keyboard/Keypad) */
    0x19, 0x00, /*   Usage Minimum (0) */
    0x29, 0x65, /*   Usage Maximum (101) */
    0x81, 0x00, /*   Input (Data, Array): the six keys */
    0xc0,       /* End Collection */
};

/* evdev code -> usage on the Keyboard/Keypad page (HID Usage Tables, chapter 10), for the
 * keys of a 105-key PC keyboard; 0: none. The modifiers are bits, below. */
static const uint8_t usage_of[KEY_COMPOSE + 1] = {
    [KEY_A] = 0x04,          [KEY_B] = 0x05,         [KEY_C] = 0x06,
    [KEY_D] = 0x07,          [KEY_E] = 0x08,         [KEY_F] = 0x09,
    [KEY_G] = 0x0a,          [KEY_H] = 0x0b,         [KEY_I] = 0x0c,
    [KEY_J] = 0x0d,          [KEY_K] = 0x0e,         [KEY_L] = 0x0f,
    [KEY_M] = 0x10,          [KEY_N] = 0x11,         [KEY_O] = 0x12,
    [KEY_P] = 0x13,          [KEY_Q] = 0x14,         [KEY_R] = 0x15,
    [KEY_S] = 0x16,          [KEY_T] = 0x17,         [KEY_U] = 0x18,
    [KEY_V] = 0x19,          [KEY_W] = 0x1a,         [KEY_X] = 0x1b,
    [KEY_Y] = 0x1c,          [KEY_Z] = 0x1d,         [KEY_1] = 0x1e,
    [KEY_2] = 0x1f,          [KEY_3] = 0x20,         [KEY_4] = 0x21,
    [KEY_5] = 0x22,          [KEY_6] = 0x23,         [KEY_7] = 0x24,
    [KEY_8] = 0x25,          [KEY_9] = 0x26,         [KEY_0] = 0x27,
    [KEY_ENTER] = 0x28,      [KEY_ESC] = 0x29,       [KEY_BACKSPACE] = 0x2a,
    [KEY_TAB] = 0x2b,        [KEY_SPACE] = 0x2c,     [KEY_MINUS] = 0x2d,
    [KEY_EQUAL] = 0x2e,      [KEY_LEFTBRACE] = 0x2f, [KEY_RIGHTBRACE] = 0x30,
    [KEY_BACKSLASH] = 0x31,  [KEY_SEMICOLON] = 0x33, [KEY_APOSTROPHE] = 0x34,
    [KEY_GRAVE] = 0x35,      [KEY_COMMA] = 0x36,     [KEY_DOT] = 0x37,
    [KEY_SLASH] = 0x38,      [KEY_CAPSLOCK] = 0x39,  [KEY_F1] = 0x3a,
    [KEY_F2] = 0x3b,         [KEY_F3] = 0x3c,        [KEY_F4] = 0x3d,
    [KEY_F5] = 0x3e,         [KEY_F6] = 0x3f,        [KEY_F7] = 0x40,
    [KEY_F8] = 0x41,         [KEY_F9] = 0x42,        [KEY_F10] = 0x43,
    [KEY_F11] = 0x44,        [KEY_F12] = 0x45,       [KEY_SYSRQ] = 0x46,
    [KEY_SCROLLLOCK] = 0x47, [KEY_PAUSE] = 0x48,     [KEY_INSERT] = 0x49,
    [KEY_HOME] = 0x4a,       [KEY_PAGEUP] = 0x4b,    [KEY_DELETE] = 0x4c,
    [KEY_END] = 0x4d,        [KEY_PAGEDOWN] = 0x4e,  [KEY_RIGHT] = 0x4f,
    [KEY_LEFT] = 0x50,       [KEY_DOWN] = 0x51,      [KEY_UP] = 0x52,
    [KEY_NUMLOCK] = 0x53,    [KEY_KPSLASH] = 0x54,   [KEY_KPASTERISK] = 0x55,
    [KEY_KPMINUS] = 0x56,    [KEY_KPPLUS] = 0x57,    [KEY_KPENTER] = 0x58,
    [KEY_KP1] = 0x59,        [KEY_KP2] = 0x5a,       [KEY_KP3] = 0x5b,
    [KEY_KP4] = 0x5c,        [KEY_KP5] = 0x5d,       [KEY_KP6] = 0x5e,
    [KEY_KP7] = 0x5f,        [KEY_KP8] = 0x60,       [KEY_KP9] = 0x61,
    [KEY_KP0] = 0x62,        [KEY_KPDOT] = 0x63,     [KEY_102ND] = 0x64,
    [KEY_COMPOSE] = 0x65,
};

/* The modifier byte's bit for code (usages E0h..E7h in order), 0 for another key. */
static uint8_t modifier_bit(uint16_t code)
{
    switch (code) {
    case KEY_LEFTCTRL: return 0x01;
    case KEY_LEFTSHIFT: return 0x02;
    case KEY_LEFTALT: return 0x04;
    case KEY_LEFTMETA: return 0x08;
    case KEY_RIGHTCTRL: return 0x10;
    case KEY_RIGHTSHIFT: return 0x20;
    case KEY_RIGHTALT: return 0x40;
    case KEY_RIGHTMETA: return 0x80;
    default: return 0;
    }
}

struct usb_keyboard {
    struct usb_device dev;
    pthread_mutex_t lock;
    uint8_t config; /* 0: unconfigured, 1 */
    bool halt;
    bool nak; /* the endpoint answered NAK: wake it with the next report */
    uint8_t protocol, idle, leds;
    uint8_t modifiers;
    uint8_t pressed[PRESSED_MAX]; /* usages, in the order pressed */
    unsigned npressed;
    /* Reports not yet read, oldest at head; last: the newest queued (or read), so an event
     * that changes nothing queues nothing. */
    uint8_t queue[USB_KEYBOARD_QUEUE][USB_KEYBOARD_REPORT_LEN];
    unsigned head, count, dropped;
    uint8_t last[USB_KEYBOARD_REPORT_LEN];
};

static struct usb_keyboard *to_kbd(void *ctx)
{
    return ctx;
}

/* The report the pressed set makes now. */
static void current_report(const struct usb_keyboard *k, uint8_t r[USB_KEYBOARD_REPORT_LEN])
{
    memset(r, 0, USB_KEYBOARD_REPORT_LEN);
    r[0] = k->modifiers;
    for (unsigned i = 0; i < BOOT_KEYS; i++)
        r[2 + i] = k->npressed > BOOT_KEYS ? ROLLOVER : i < k->npressed ? k->pressed[i] : 0;
}

/* Queues the current report if it differs from the last one; wakes a waiting endpoint. */
static void queue_report(struct usb_keyboard *k)
{
    uint8_t r[USB_KEYBOARD_REPORT_LEN];
    current_report(k, r);
    /* Before the host configured the device nobody reads reports: keep only the state. */
    if (!k->config || !memcmp(r, k->last, sizeof(r)))
        return;
    if (k->count == USB_KEYBOARD_QUEUE) {
        k->head = (k->head + 1) % USB_KEYBOARD_QUEUE;
        k->count--;
        k->dropped++;
    }
    memcpy(k->queue[(k->head + k->count++) % USB_KEYBOARD_QUEUE], r, sizeof(r));
    memcpy(k->last, r, sizeof(r));
    if (k->nak) {
        k->nak = false;
        usb_device_wakeup(&k->dev, USB_KEYBOARD_EP_IN);
    }
}

bool usb_keyboard_key(struct usb_device *dev, uint16_t code, bool pressed)
{
    struct usb_keyboard *k = to_kbd(dev->ctx);
    uint8_t bit = modifier_bit(code);
    uint8_t usage = code < sizeof(usage_of) ? usage_of[code] : 0;
    if (!bit && !usage)
        return false;
    pthread_mutex_lock(&k->lock);
    if (bit) {
        k->modifiers = pressed ? k->modifiers | bit : k->modifiers & ~bit;
    } else {
        unsigned i = 0;
        while (i < k->npressed && k->pressed[i] != usage)
            i++;
        if (pressed && i == k->npressed && k->npressed < PRESSED_MAX)
            k->pressed[k->npressed++] = usage;
        else if (!pressed && i < k->npressed)
            memmove(&k->pressed[i], &k->pressed[i + 1], --k->npressed - i);
    }
    queue_report(k);
    pthread_mutex_unlock(&k->lock);
    return true;
}

void usb_keyboard_state(struct usb_device *dev, uint8_t *leds, unsigned *dropped)
{
    struct usb_keyboard *k = to_kbd(dev->ctx);
    pthread_mutex_lock(&k->lock);
    *leds = k->leds;
    *dropped = k->dropped;
    pthread_mutex_unlock(&k->lock);
}

/* ---- the interrupt endpoint ---- */

static int kbd_transfer(void *ctx, const struct usb_packet *p)
{
    struct usb_keyboard *k = to_kbd(ctx);
    if (!p || p->ep != USB_KEYBOARD_EP_IN || (p->len && !p->iov))
        return USB_RET_STALL;
    pthread_mutex_lock(&k->lock);
    int r;
    if (!k->config || k->halt) {
        r = USB_RET_STALL;
    } else if (!k->count) {
        k->nak = true;
        r = USB_RET_NAK;
    } else if (p->len < USB_KEYBOARD_REPORT_LEN) {
        r = USB_RET_ERROR; /* the report is one 8-byte packet: a smaller buffer babbles */
    } else {
        const uint8_t *rep = k->queue[k->head];
        for (size_t i = 0, done = 0; i < p->iovcnt && done < USB_KEYBOARD_REPORT_LEN; i++) {
            size_t n = p->iov[i].iov_len;
            if (n > USB_KEYBOARD_REPORT_LEN - done)
                n = USB_KEYBOARD_REPORT_LEN - done;
            memcpy(p->iov[i].iov_base, rep + done, n);
            done += n;
        }
        k->head = (k->head + 1) % USB_KEYBOARD_QUEUE;
        k->count--;
        r = USB_KEYBOARD_REPORT_LEN;
    }
    pthread_mutex_unlock(&k->lock);
    return r;
}

/* ---- descriptors ---- */

static size_t hid_descriptor(uint8_t *d)
{
    usb_desc_start(d, 9, USB_DT_HID);
    usb_put_le16(d + 2, 0x0111); /* HID 1.11; bCountryCode 0: not localized */
    d[5] = 1;                    /* bNumDescriptors */
    d[6] = USB_DT_HID_REPORT;
    usb_put_le16(d + 7, sizeof(report_descriptor));
    return 9;
}

/* HID 1.11 7.1: the HID descriptor between the interface and its endpoint. */
static size_t config_descriptor(uint8_t *d)
{
    size_t n = usb_config_and_interface(d, USB_DT_CONFIG, CONFIG_LEN, 1, 0x03 /* HID */,
                                        0x01 /* boot */, 0x01 /* keyboard */);
    n += hid_descriptor(d + n);
    n += usb_endpoint_descriptor(d + n, USB_KEYBOARD_EP_IN, 0x03 /* interrupt */,
                                 USB_KEYBOARD_REPORT_LEN, INTERVAL_MS);
    return n;
}

static size_t kbd_descriptor(void *ctx, const struct usb_setup *st, uint8_t *buf)
{
    unsigned type = st->value >> 8, idx = st->value & 0xff;
    static const char *const strings[3] = { "vmkit", "vmkit USB keyboard", NULL };
    if ((st->request_type & USB_RECIP_MASK) == USB_RECIP_INTERFACE) {
        /* HID 1.11 7.1.1: the class descriptors are the interface's. */
        if (type == USB_DT_HID && idx == 0)
            return hid_descriptor(buf);
        if (type == USB_DT_HID_REPORT && idx == 0) {
            memcpy(buf, report_descriptor, sizeof(report_descriptor));
            return sizeof(report_descriptor);
        }
        return 0;
    }
    (void)ctx;
    switch (type) {
    case USB_DT_DEVICE: return usb_device_descriptor(buf, 64, USB_KEYBOARD_PRODUCT_ID, false);
    case USB_DT_CONFIG: return idx == 0 ? config_descriptor(buf) : 0;
    case USB_DT_STRING: return usb_string_descriptor(strings, idx, buf);
    default: return 0; /* a full-speed-only device has no device qualifier (USB 2.0 9.6.2) */
    }
}

/* ---- requests on the default pipe ---- */

static bool *kbd_halt(void *ctx, uint8_t ep)
{
    return ep == USB_KEYBOARD_EP_IN ? &to_kbd(ctx)->halt : NULL;
}

/* Whatever the host missed before is stale now: start from an empty queue. */
static void kbd_configured(void *ctx, bool set_config)
{
    struct usb_keyboard *k = to_kbd(ctx);
    k->halt = false;
    if (set_config) {
        k->head = k->count = 0;
        memset(k->last, 0, sizeof(k->last));
        queue_report(k); /* keys already down */
    }
}

static const struct usb_std_ops kbd_std_ops = {
    .descriptor = kbd_descriptor,
    .configured = kbd_configured,
    .halt = kbd_halt,
};

static int class_request(struct usb_keyboard *k, const struct usb_setup *st, uint8_t *data)
{
    if ((st->request_type & USB_RECIP_MASK) != USB_RECIP_INTERFACE || st->index != 0)
        return USB_RET_STALL;
    bool in = st->request_type & USB_DIR_IN;
    unsigned type = st->value >> 8, id = st->value & 0xff;
    /* One report of each kind and no report ids: id must be 0. */
    switch (st->request) {
    case HID_GET_REPORT: {
        uint8_t r[USB_KEYBOARD_REPORT_LEN];
        if (!in || id != 0)
            return USB_RET_STALL;
        if (type == HID_REPORT_OUTPUT)
            return usb_reply(data, st->length, &k->leds, 1);
        if (type != HID_REPORT_INPUT)
            return USB_RET_STALL;
        current_report(k, r);
        return usb_reply(data, st->length, r, sizeof(r));
    }
    case HID_SET_REPORT:
        if (in || id != 0 || type != HID_REPORT_OUTPUT || st->length < 1)
            return USB_RET_STALL;
        k->leds = data[0] & LED_MASK;
        return st->length; /* one byte is the report; more is taken and ignored */
    case HID_GET_IDLE:
        if (!in || st->value >> 8 || id != 0)
            return USB_RET_STALL;
        return usb_reply(data, st->length, &k->idle, 1);
    case HID_SET_IDLE:
        if (in || id != 0 || st->length)
            return USB_RET_STALL;
        k->idle = (uint8_t)type; /* kept for GET_IDLE; reports go on change only */
        return 0;
    case HID_GET_PROTOCOL:
        if (!in || st->value)
            return USB_RET_STALL;
        return usb_reply(data, st->length, &k->protocol, 1);
    case HID_SET_PROTOCOL:
        if (in || st->value > HID_PROTOCOL_REPORT || st->length)
            return USB_RET_STALL;
        k->protocol = (uint8_t)st->value; /* both protocols read the same 8 bytes */
        return 0;
    default: return USB_RET_STALL;
    }
}

static int kbd_control(void *ctx, const struct usb_setup *st, uint8_t *data)
{
    struct usb_keyboard *k = to_kbd(ctx);
    if (!st || (st->length && !data))
        return USB_RET_STALL;
    int r;
    pthread_mutex_lock(&k->lock);
    switch (st->request_type & USB_TYPE_MASK) {
    case USB_TYPE_STANDARD: r = usb_standard_request(&kbd_std_ops, k, &k->config, st, data); break;
    case USB_TYPE_CLASS: r = class_request(k, st, data); break;
    default: r = USB_RET_STALL; break;
    }
    pthread_mutex_unlock(&k->lock);
    return r;
}

/* A port reset: what a keyboard powered up anew holds (HID 1.11 7.2.6: report protocol). */
static void kbd_reset_locked(struct usb_keyboard *k)
{
    k->config = 0;
    k->halt = k->nak = false;
    k->protocol = HID_PROTOCOL_REPORT;
    k->idle = DEFAULT_IDLE;
    k->leds = 0;
    k->modifiers = 0;
    k->npressed = 0;
    k->head = k->count = 0;
    memset(k->last, 0, sizeof(k->last));
}

static void kbd_reset(void *ctx)
{
    struct usb_keyboard *k = to_kbd(ctx);
    pthread_mutex_lock(&k->lock);
    kbd_reset_locked(k);
    pthread_mutex_unlock(&k->lock);
}

static void kbd_destroy(void *ctx)
{
    struct usb_keyboard *k = to_kbd(ctx);
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static const struct usb_device_ops kbd_ops = {
    .control = kbd_control,
    .transfer = kbd_transfer,
    .reset = kbd_reset,
    .destroy = kbd_destroy,
};

struct usb_device *usb_keyboard_new(void)
{
    struct usb_keyboard *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    pthread_mutex_init(&k->lock, NULL);
    kbd_reset_locked(k);
    k->dev.ops = &kbd_ops;
    k->dev.ctx = k;
    k->dev.speed = USB_SPEED_FULL;
    k->dev.name = "USB keyboard";
    return &k->dev;
}
