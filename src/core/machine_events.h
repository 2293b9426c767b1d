/* What platform devices report to the machine: the guest asked to power off or
 * reset, or wrote the debug-exit port. Called from vCPU threads; the machine turns
 * them into state changes on its own thread. */
#ifndef VMK_CORE_MACHINE_EVENTS_H
#define VMK_CORE_MACHINE_EVENTS_H

#include <stdint.h>

struct machine_events {
    void (*power_off)(void *ctx);
    void (*reset)(void *ctx);
    void (*debug_exit)(void *ctx, uint32_t code);
    void *ctx;
};

#endif
