/* virtio-input (virtio 1.2 §5.8, <linux/virtio_input.h>): a keyboard or an absolute pointing
 * device (a tablet: X and Y in 0..VIRTIO_INPUT_ABS_MAX, buttons, wheel) as evdev events. They
 * stand for the framework's USB keyboard and screen-coordinate pointing device. The host side
 * (a view, the API) sends events; the device hands them to the guest as it posts buffers on
 * the event queue, keeping at most VIRTIO_INPUT_MAX_PENDING (older ones are dropped whole
 * SYN_REPORT frames at a time, never half of one, and never the rest of a frame the guest has
 * begun reading: that rest may add one event); what the guest posts on the status queue
 * (LEDs) is returned unread. Queues: event (0), status (1). */
#ifndef VMK_VIRTIO_INPUT_H
#define VMK_VIRTIO_INPUT_H

#include "virtio/virtio_device.h"
#include "vmkit.h"

#include <stdint.h>

#define VIRTIO_ID_INPUT          18
#define VIRTIO_INPUT_QUEUE_SIZE  64
#define VIRTIO_INPUT_ABS_MAX     32767 /* the tablet's range on both axes */
#define VIRTIO_INPUT_MAX_PENDING 1024u /* events waiting for guest buffers */
#define VIRTIO_INPUT_CFG_SIZE    136   /* select, subsel, size, reserved[5], union u[128] */

enum virtio_input_kind {
    VIRTIO_INPUT_KEYBOARD,
    VIRTIO_INPUT_TABLET,
};

struct virtio_input_event {
    uint16_t type, code; /* EV_KEY, KEY_A, ... (<linux/input-event-codes.h>) */
    int32_t value;
};

/* name: what ID_NAME says, 1..128 printable ASCII characters (NULL: "vmkit keyboard" /
 * "vmkit tablet"). NULL and *err on bad parameters or when out of memory. Free with
 * d->ops->destroy(d), after the transport. A driver that posts an event buffer smaller than
 * an event (or device-readable) gets DEVICE_NEEDS_RESET: Linux ignores the used length, so
 * skipping it would hand the guest a stale event. */
struct virtio_device *virtio_input_new(enum virtio_input_kind kind, const char *name,
                                       vmk_error **err);

/* Queues n events and a SYN_REPORT after them (one frame), and hands the guest what it has
 * buffers for. Any thread. 0, or -EINVAL when an event is not one this kind of device
 * declares (its EV_BITS; EV_SYN only as SYN_REPORT), its value is out of range (EV_KEY 0..2,
 * EV_LED 0..1, EV_ABS 0..VIRTIO_INPUT_ABS_MAX), or n is 0 or more than
 * VIRTIO_INPUT_MAX_PENDING / 2; nothing is queued then. */
int virtio_input_send(struct virtio_device *d, const struct virtio_input_event *ev, unsigned n);

#endif
