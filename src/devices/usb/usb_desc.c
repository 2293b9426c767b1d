/* Descriptors and standard requests shared by vmkit's USB devices (see usb_desc.h). Every
 * field of the SETUP packet is the guest's: each is checked before use, and nothing is
 * copied past the host's wLength or the descriptor's own size. */
#include "devices/usb/usb_desc.h"

#include <string.h>

void usb_desc_start(uint8_t *d, uint8_t len, uint8_t type)
{
    memset(d, 0, len);
    d[0] = len;
    d[1] = type;
}

size_t usb_config_and_interface(uint8_t *d, uint8_t type, uint16_t total, uint8_t endpoints,
                                uint8_t cls, uint8_t subclass, uint8_t protocol)
{
    usb_desc_start(d, 9, type);
    usb_put_le16(d + 2, total);
    d[4] = 1;    /* bNumInterfaces */
    d[5] = 1;    /* bConfigurationValue */
    d[7] = 0x80; /* bus powered, no remote wakeup */
    d[8] = 50;   /* 100 mA */
    uint8_t *i = d + 9;
    usb_desc_start(i, 9, USB_DT_INTERFACE);
    i[4] = endpoints;
    i[5] = cls;
    i[6] = subclass;
    i[7] = protocol;
    return 18;
}

size_t usb_endpoint_descriptor(uint8_t *d, uint8_t address, uint8_t attributes, uint16_t max_packet,
                               uint8_t interval)
{
    usb_desc_start(d, 7, USB_DT_ENDPOINT);
    d[2] = address;
    d[3] = attributes;
    usb_put_le16(d + 4, max_packet);
    d[6] = interval;
    return 7;
}

size_t usb_device_descriptor(uint8_t *d, uint8_t max_packet0, uint16_t product, bool serial)
{
    usb_desc_start(d, 18, USB_DT_DEVICE);
    usb_put_le16(d + 2, 0x0200); /* USB 2.0 */
    /* Class, subclass, protocol 0: the interface says what we are. */
    d[7] = max_packet0;
    usb_put_le16(d + 8, USB_VMKIT_VENDOR_ID);
    usb_put_le16(d + 10, product);
    usb_put_le16(d + 12, 0x0100); /* bcdDevice */
    d[14] = USB_STR_MANUFACTURER;
    d[15] = USB_STR_PRODUCT;
    d[16] = serial ? USB_STR_SERIAL : 0;
    d[17] = 1; /* bNumConfigurations */
    return 18;
}

size_t usb_string_descriptor(const char *const strings[3], unsigned idx, uint8_t *d)
{
    if (idx == 0) {
        usb_desc_start(d, 4, USB_DT_STRING);
        usb_put_le16(d + 2, 0x0409); /* English (United States) */
        return 4;
    }
    const char *str = idx <= 3 ? strings[idx - 1] : NULL;
    if (!str)
        return 0;
    size_t n = strlen(str);
    if (n > (USB_DESC_MAX - 2) / 2)
        n = (USB_DESC_MAX - 2) / 2;
    d[0] = (uint8_t)(2 + 2 * n);
    d[1] = USB_DT_STRING;
    for (size_t k = 0; k < n; k++)
        usb_put_le16(d + 2 + 2 * k, (uint8_t)str[k]);
    return 2 + 2 * n;
}

int usb_reply(uint8_t *data, uint16_t length, const void *buf, size_t n)
{
    if (n > length)
        n = length;
    if (n)
        memcpy(data, buf, n);
    return (int)n;
}

static int get_descriptor(const struct usb_std_ops *ops, void *ctx, const struct usb_setup *st,
                          uint8_t *data)
{
    unsigned recip = st->request_type & USB_RECIP_MASK;
    if (recip != USB_RECIP_DEVICE && (recip != USB_RECIP_INTERFACE || st->index != 0))
        return USB_RET_STALL;
    uint8_t buf[USB_DESC_MAX];
    size_t n = ops->descriptor(ctx, st, buf);
    return n ? usb_reply(data, st->length, buf, n) : USB_RET_STALL;
}

/* The halt flag of the endpoint named in wIndex; NULL for endpoint 0 (never halted for long:
 * a STALL there ends with the next SETUP). *ok false: no such endpoint. */
static bool *halt_flag(const struct usb_std_ops *ops, void *ctx, uint16_t index, bool *ok)
{
    *ok = true;
    if (index == 0x00 || index == 0x80)
        return NULL;
    bool *h = index <= 0xff ? ops->halt(ctx, (uint8_t)index) : NULL;
    *ok = h != NULL;
    return h;
}

static int get_status(const struct usb_std_ops *ops, void *ctx, const struct usb_setup *st,
                      uint8_t *data)
{
    unsigned recip = st->request_type & USB_RECIP_MASK;
    uint8_t status[2] = { 0, 0 }; /* bus powered, no remote wakeup, not halted */
    if (recip == USB_RECIP_INTERFACE && st->index != 0)
        return USB_RET_STALL;
    if (recip == USB_RECIP_ENDPOINT) {
        bool ok;
        bool *halt = halt_flag(ops, ctx, st->index, &ok);
        if (!ok)
            return USB_RET_STALL;
        status[0] = halt && *halt;
    } else if (recip != USB_RECIP_DEVICE && recip != USB_RECIP_INTERFACE) {
        return USB_RET_STALL;
    }
    return usb_reply(data, st->length, status, 2);
}

int usb_standard_request(const struct usb_std_ops *ops, void *ctx, uint8_t *config,
                         const struct usb_setup *st, uint8_t *data)
{
    bool in = st->request_type & USB_DIR_IN;
    unsigned recip = st->request_type & USB_RECIP_MASK;
    bool ok;
    bool *halt;
    uint8_t zero = 0;
    switch (st->request) {
    case USB_REQ_GET_DESCRIPTOR: return in ? get_descriptor(ops, ctx, st, data) : USB_RET_STALL;
    case USB_REQ_GET_CONFIG:
        if (!in || recip != USB_RECIP_DEVICE)
            return USB_RET_STALL;
        return usb_reply(data, st->length, config, 1);
    case USB_REQ_SET_CONFIG:
        if (in || recip != USB_RECIP_DEVICE || st->value > 1)
            return USB_RET_STALL;
        *config = (uint8_t)st->value;
        ops->configured(ctx, true);
        return 0;
    case USB_REQ_GET_INTERFACE:
        if (!in || recip != USB_RECIP_INTERFACE || st->index != 0 || !*config)
            return USB_RET_STALL;
        return usb_reply(data, st->length, &zero, 1);
    case USB_REQ_SET_INTERFACE:
        if (in || recip != USB_RECIP_INTERFACE || st->index != 0 || st->value != 0 || !*config)
            return USB_RET_STALL;
        ops->configured(ctx, false);
        return 0;
    case USB_REQ_GET_STATUS: return in ? get_status(ops, ctx, st, data) : USB_RET_STALL;
    case USB_REQ_CLEAR_FEATURE:
    case USB_REQ_SET_FEATURE:
        /* Endpoint halt is the only feature we have (no remote wakeup, no test modes). */
        if (in || recip != USB_RECIP_ENDPOINT || st->value != USB_FEATURE_ENDPOINT_HALT)
            return USB_RET_STALL;
        halt = halt_flag(ops, ctx, st->index, &ok);
        if (!ok)
            return USB_RET_STALL;
        if (halt && st->request == USB_REQ_SET_FEATURE)
            *halt = true;
        else if (halt && (!ops->may_clear_halt || ops->may_clear_halt(ctx)))
            *halt = false;
        return 0;
    default: return USB_RET_STALL; /* SET_ADDRESS is the controller's; SET_DESCRIPTOR none */
    }
}
