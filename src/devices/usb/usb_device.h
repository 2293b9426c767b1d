/* What a USB host controller (xhci.c) sees of a device on one of its ports, and what the
 * device sees of the controller. A device is a set of callbacks over its own state: the
 * controller handles addressing (SET_ADDRESS never reaches the device) and endpoint
 * contexts; the device answers every other request on the default pipe and moves the
 * bytes of bulk and interrupt transfers.
 *
 * Threads: the controller calls a device from one thread at a time (its own worker, never
 * a vCPU), and a call may block on the device's back end (a disk read). usb_device.wakeup
 * is the one call a device may make from any thread. */
#ifndef VMK_USB_USB_DEVICE_H
#define VMK_USB_USB_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Port speeds, numbered as xHCI's default protocol speed ids (PORTSC bits 13:10). */
enum usb_speed {
    USB_SPEED_FULL = 1,
    USB_SPEED_LOW = 2,
    USB_SPEED_HIGH = 3,
    USB_SPEED_SUPER = 4,
};

/* Outcomes other than "done" (a call returns these negative values, or a count >= 0). */
#define USB_RET_NAK   (-1000) /* nothing to move now: try again after usb_device.wakeup */
#define USB_RET_STALL (-1001) /* the endpoint (or the request) is halted / refused */
#define USB_RET_ERROR (-1002) /* a transaction error the host should see */

/* The 8-byte SETUP packet, fields in host order. */
struct usb_setup {
    uint8_t request_type; /* bit 7: device-to-host; bits 6:5 type; bits 4:0 recipient */
    uint8_t request;
    uint16_t value;
    uint16_t index;
    uint16_t length;
};

#define USB_DIR_IN                0x80
#define USB_REQ_GET_STATUS        0x00
#define USB_REQ_CLEAR_FEATURE     0x01
#define USB_REQ_SET_FEATURE       0x03
#define USB_REQ_SET_ADDRESS       0x05
#define USB_REQ_GET_DESCRIPTOR    0x06
#define USB_REQ_GET_CONFIG        0x08
#define USB_REQ_SET_CONFIG        0x09
#define USB_REQ_GET_INTERFACE     0x0a
#define USB_REQ_SET_INTERFACE     0x0b
#define USB_DT_DEVICE             1
#define USB_DT_CONFIG             2
#define USB_DT_STRING             3
#define USB_DT_INTERFACE          4
#define USB_DT_ENDPOINT           5
#define USB_DT_BOS                15
#define USB_DT_SS_EP_COMPANION    48
#define USB_FEATURE_ENDPOINT_HALT 0

/* A bulk or interrupt transfer: the buffers are host pointers into guest RAM the controller
 * already checked. */
struct usb_packet {
    uint8_t ep; /* endpoint address: number 1..15, | USB_DIR_IN for IN */
    const struct iovec *iov;
    unsigned iovcnt;
    size_t len; /* sum of the iov lengths */
};

struct usb_device_ops {
    /* A request on the default pipe. data holds setup->length bytes: filled for IN, read for
     * OUT. Returns the data-stage bytes moved (<= setup->length; fewer is a short IN), or
     * USB_RET_STALL for a request the device refuses. */
    int (*control)(void *ctx, const struct usb_setup *setup, uint8_t *data);
    /* A bulk or interrupt transfer on p->ep. Returns bytes moved (fewer than p->len: a short
     * packet, which ends the transfer), USB_RET_NAK, USB_RET_STALL or USB_RET_ERROR. */
    int (*transfer)(void *ctx, const struct usb_packet *p);
    /* A port reset or a detach: back to the default (unconfigured) state, halts cleared. */
    void (*reset)(void *ctx);
    /* Releases the device and its back end. */
    void (*destroy)(void *ctx);
};

struct usb_device {
    const struct usb_device_ops *ops;
    void *ctx;
    enum usb_speed speed;
    const char *name; /* for messages: "USB mass storage" */
    /* Set by the controller while the device is on a port: an endpoint that answered
     * USB_RET_NAK has something now. Any thread; NULL while detached. */
    void (*wakeup)(void *port, uint8_t ep);
    void *port;
};

static inline void usb_device_wakeup(struct usb_device *d, uint8_t ep)
{
    if (d->wakeup)
        d->wakeup(d->port, ep);
}

#endif
