/* What the USB device tests share: a request on a device's default pipe, as the controller
 * makes it, and a port that counts the device's wakeups. */
#ifndef VMK_TEST_USB_TEST_H
#define VMK_TEST_USB_TEST_H

#include "devices/usb/usb_device.h"

struct usb_test_port {
    unsigned wakeups;
    uint8_t last_wakeup; /* the endpoint address of the last one */
};

static inline void usb_test_on_wakeup(void *port, uint8_t ep)
{
    struct usb_test_port *p = port;
    p->wakeups++;
    p->last_wakeup = ep;
}

static inline int usb_test_control(struct usb_device *dev, uint8_t rt, uint8_t req, uint16_t value,
                                   uint16_t index, uint16_t length, uint8_t *data)
{
    struct usb_setup s = {
        .request_type = rt, .request = req, .value = value, .index = index, .length = length
    };
    return dev->ops->control(dev->ctx, &s, data);
}

/* Puts dev on p, as xhci_attach would, and configures it if asked: 0, or what
 * SET_CONFIGURATION answered. */
static inline int usb_test_plug(struct usb_device *dev, struct usb_test_port *p, bool configure)
{
    dev->wakeup = usb_test_on_wakeup;
    dev->port = p;
    return configure ? usb_test_control(dev, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL) : 0;
}

/* A bulk or interrupt transfer on ep of one buffer. */
static inline int usb_test_transfer(struct usb_device *dev, uint8_t ep, void *buf, size_t len)
{
    struct iovec v = { .iov_base = buf, .iov_len = len };
    struct usb_packet p = { .ep = ep, .iov = &v, .iovcnt = 1, .len = len };
    return dev->ops->transfer(dev->ctx, &p);
}

#endif
