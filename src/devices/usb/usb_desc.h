/* What every vmkit USB device answers alike on its default pipe: the device descriptor, string
 * descriptors, and the standard requests of a device with one configuration (value 1) and one
 * interface (0, no alternate settings), per USB 2.0 chapter 9. A device keeps its own state
 * and says through usb_std_ops what differs: its descriptors, what (re)configuring does, its
 * endpoints' halt flags. Every reply is clamped to the host's wLength. */
#ifndef VMK_USB_USB_DESC_H
#define VMK_USB_USB_DESC_H

#include "devices/usb/usb_device.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USB_TYPE_MASK        0x60
#define USB_TYPE_STANDARD    0x00
#define USB_TYPE_CLASS       0x20
#define USB_RECIP_MASK       0x1f
#define USB_RECIP_DEVICE     0
#define USB_RECIP_INTERFACE  1
#define USB_RECIP_ENDPOINT   2
/* The largest descriptor a device builds: a string of 126 UTF-16 characters. */
#define USB_DESC_MAX         254
/* String indices: 0 is the language list, then these. */
#define USB_STR_MANUFACTURER 1
#define USB_STR_PRODUCT      2
#define USB_STR_SERIAL       3

/* pid.codes' open-source vendor id: no host applies another device's quirks to ours. */
#define USB_VMKIT_VENDOR_ID 0x1209

static inline void usb_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Zeroes len bytes at d and starts a descriptor of type there (bLength, bDescriptorType). */
void usb_desc_start(uint8_t *d, uint8_t len, uint8_t type);

/* The 9-byte configuration descriptor (type: USB_DT_CONFIG or other-speed; value 1, bus
 * powered, 100 mA, total bytes with what follows) and the 9-byte interface descriptor of
 * interface 0 after it. Returns 18. */
size_t usb_config_and_interface(uint8_t *d, uint8_t type, uint16_t total, uint8_t endpoints,
                                uint8_t cls, uint8_t subclass, uint8_t protocol);
/* A 7-byte endpoint descriptor. Returns 7. */
size_t usb_endpoint_descriptor(uint8_t *d, uint8_t address, uint8_t attributes, uint16_t max_packet,
                               uint8_t interval);

/* The 18-byte device descriptor of a USB 2.0 device whose interface says what it is, with one
 * configuration and the strings above (serial: whether it has one). Returns 18. */
size_t usb_device_descriptor(uint8_t *d, uint8_t max_packet0, uint16_t product, bool serial);

/* String idx of strings (manufacturer, product, serial; NULL: none) as UTF-16LE into d, or the
 * language list (US English) for 0. Returns its length, 0 for no such string. */
size_t usb_string_descriptor(const char *const strings[3], unsigned idx, uint8_t *d);

/* Copies a reply of n bytes to data, at most length of them; returns how many. */
int usb_reply(uint8_t *data, uint16_t length, const void *buf, size_t n);

struct usb_std_ops {
    /* GET_DESCRIPTOR st (for the device or interface 0) into buf (USB_DESC_MAX bytes):
     * returns its length, 0 when the device has none (a STALL). */
    size_t (*descriptor)(void *ctx, const struct usb_setup *st, uint8_t *buf);
    /* SET_CONFIGURATION (config 0 or 1) or SET_INTERFACE (configured false) done: endpoints
     * start afresh (USB 2.0 9.1.1.5). */
    void (*configured)(void *ctx, bool set_config);
    /* Endpoint ep's halt flag (ep is not 0x00/0x80: the helper answers for the default pipe):
     * NULL when the device has no such endpoint. */
    bool *(*halt)(void *ctx, uint8_t ep);
    /* CLEAR_FEATURE(ENDPOINT_HALT) may lift a halt (NULL: always). */
    bool (*may_clear_halt)(void *ctx);
};

/* A standard request (type bits 00) on the default pipe; *config is the device's
 * configuration value, which SET_CONFIGURATION sets. Returns the data-stage bytes or
 * USB_RET_STALL. */
int usb_standard_request(const struct usb_std_ops *ops, void *ctx, uint8_t *config,
                         const struct usb_setup *st, uint8_t *data);

#endif
