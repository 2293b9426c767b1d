/* A running machine built from a validated vmk_config: KVM VM and vCPUs, guest RAM, the PC
 * platform, one PCI function per device of the device table, the ACPI tables and the loaded
 * kernel. It exists from start to stop; the VM object (src/api/vm.c) drives it, and it
 * reports the guest's end back through machine_owner. */
#ifndef VMK_MACHINE_MACHINE_H
#define VMK_MACHINE_MACHINE_H

#include "core/event_loop.h"
#include "machine/device_table.h"
#include "vmkit.h"

#include <stdbool.h>
#include <stdint.h>

enum machine_end {
    MACHINE_END_POWER_OFF,
    MACHINE_END_RESET,
    MACHINE_END_DEBUG_EXIT,
    MACHINE_END_FAULT,
    MACHINE_END_ESCAPE, /* the user typed the console escape (Ctrl-A x) */
};

struct machine_owner {
    /* Called once, from a vCPU or the event-loop thread, when the machine ends by itself.
     * err (FAULT only) becomes the owner's. */
    void (*ended)(void *ctx, enum machine_end why, uint32_t code, vmk_error *err);
    /* As device_host_env's: a device's attachment lost or found its peer (loop thread, a
     * device lock held). May be NULL. */
    void (*attachment_changed)(void *ctx, const struct device_kind *kind, unsigned index,
                               bool connected, const char *why);
    /* As device_host_env's socket_listener. May be NULL. */
    int (*socket_listener)(void *ctx, uint32_t port);
    /* As device_host_env's display_sink (its ctx is its own). May be NULL. */
    const struct gpu_display_sink *display_sink;
    void *ctx;
};

struct machine;

/* Builds everything but starts no vCPU. el is the VM thread's loop: device fds are watched
 * there. On failure nothing remains. */
vmk_result machine_create(const vmk_config *cfg, struct event_loop *el,
                          const struct machine_owner *owner, struct machine **out, vmk_error **err)
    __attribute__((warn_unused_result));
vmk_result machine_start(struct machine *m, vmk_error **err) __attribute__((warn_unused_result));
/* Returns once every vCPU thread is outside KVM_RUN and waiting. */
void machine_pause(struct machine *m);
void machine_resume(struct machine *m);
void machine_press_power_button(struct machine *m);
/* Plugs a drive of dev (a USB mass-storage device) into the machine's xHCI controller, or pulls
 * the one on port out (usb_bus.h). Any thread. */
vmk_result machine_usb_attach(struct machine *m, const vmk_storage_device *dev, unsigned *port,
                              vmk_error **err) __attribute__((warn_unused_result));
vmk_result machine_usb_detach(struct machine *m, unsigned port, vmk_error **err)
    __attribute__((warn_unused_result));
/* A key to the USB keyboard that is the configuration's first keyboard (usb_bus.h). Any
 * thread. */
vmk_result machine_usb_send_key(struct machine *m, uint16_t code, bool pressed, vmk_error **err)
    __attribute__((warn_unused_result));
/* Stops and joins the vCPUs, then frees everything. Event-loop thread. */
void machine_destroy(struct machine *m);
/* The pty a serial port got (index 0 is COM1), NULL when it has none. Valid until destroy. */
const char *machine_serial_pty_path(const struct machine *m, unsigned index);
/* The device-th device of kind, or NULL. Valid until destroy. */
struct device_instance *machine_device(const struct machine *m, const struct device_kind *kind,
                                       unsigned device);
/* The pty port got on the device-th device of kind, or NULL. */
const char *machine_device_pty_path(const struct machine *m, const struct device_kind *kind,
                                    unsigned device, unsigned port);
/* The guest's IPv4 address (network order) the device-th device of kind saw, or 0. */
uint32_t machine_device_guest_ipv4(const struct machine *m, const struct device_kind *kind,
                                   unsigned device);
/* A port forward added to or removed from the device-th device of kind at run time. */
vmk_result machine_device_port_forward(struct machine *m, const struct device_kind *kind,
                                       unsigned device, bool add, bool udp,
                                       const char *host_address, unsigned host_port,
                                       unsigned guest_port, vmk_error **err);
/* The signal that takes vCPU threads out of the guest. */
int machine_kick_signal(void);

#endif
