/* A VM's displays and input at run time, as the application sees them: what the graphics
 * device reports (modes, changed rectangles) is gathered here — coalesced, so a guest that
 * flushes faster than the application listens costs nothing — and handed to the display
 * delegate on the VM thread (vm_displays_deliver). The last image of each display is kept when
 * the machine ends, for a screenshot after the guest powered off. vm.c owns one. */
#ifndef VMK_API_VM_DISPLAY_H
#define VMK_API_VM_DISPLAY_H

#include "machine/device_table.h"
#include "vmkit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct display_state {
    uint32_t width, height; /* the mode the guest set, 0 x 0 before */
    bool mode_pending;      /* not yet told to the delegate */
    bool dirty;             /* x0..x1, y0..y1 changed since the last delivery */
    uint32_t x0, y0, x1, y1;
    uint8_t *last; /* the image when the machine ended (RGBA), or NULL */
    uint32_t last_w, last_h;
};

struct vm_displays {
    pthread_mutex_t lock; /* a leaf lock: taken under a device's, never the other way */
    struct gpu_display_sink sink;
    void (*wake)(void *ctx);
    void *wake_ctx;
    vmk_display_delegate delegate;
    void *user;
    unsigned count;
    struct display_state d[VIRTIO_GPU_MAX_SCANOUTS_];
    unsigned buttons; /* the pointer buttons last sent */
};

void vm_displays_init(struct vm_displays *s, unsigned count, void (*wake)(void *ctx),
                      void *wake_ctx);
void vm_displays_fini(struct vm_displays *s);
/* The machine starts: no mode yet, nothing kept. */
void vm_displays_started(struct vm_displays *s);
/* Keeps each display's image: the machine (gd, the graphics device, or NULL) is about to go. */
void vm_displays_keep_last(struct vm_displays *s, struct device_instance *gd);
/* Tells the delegate what changed. VM thread. */
void vm_displays_deliver(struct vm_displays *s, vmk_vm *vm);

/* What vm.c gives the display code: calls fn(the index-th device of kind, arg) under the VM's
 * lock while the machine runs or is paused, and puts what it returns in *ret; else
 * VMK_ERR_INVALID_STATE, naming op. */
vmk_result vm_with_device(vmk_vm *vm, const struct device_kind *kind, unsigned index,
                          const char *op, int (*fn)(struct device_instance *inst, void *arg),
                          void *arg, int *ret, vmk_error **err);
/* A key to the machine's USB keyboard (the configuration's first keyboard), under the VM's
 * lock while the machine runs or is paused; else VMK_ERR_INVALID_STATE. */
vmk_result vm_usb_send_key(vmk_vm *vm, uint16_t code, bool pressed, vmk_error **err);
struct vm_displays *vm_displays_of(vmk_vm *vm);
const vmk_config *vm_config_of(const vmk_vm *vm);

#endif
