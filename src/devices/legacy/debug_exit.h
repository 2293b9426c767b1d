/* The test-exit port: a guest writes a value and the machine stops with it, so
 * test guests can report a result without ACPI. It keeps no state. */
#ifndef VMK_LEGACY_DEBUG_EXIT_H
#define VMK_LEGACY_DEBUG_EXIT_H

#include "core/bus.h"
#include "core/machine_events.h"

struct debug_exit;

/* ev is copied (NULL: writes go nowhere); ev->debug_exit is called from the
 * writing vCPU thread. NULL when out of memory. */
struct debug_exit *debug_exit_new(const struct machine_events *ev);
void debug_exit_free(struct debug_exit *d);

/* Register at X86_DEBUG_EXIT_PORT with len 4, dev = the debug_exit. A write of
 * 1, 2 or 4 bytes at any offset passes its value, zero-extended and not shifted
 * by the offset, to ev->debug_exit; wider writes pass the low 32 bits. Reads
 * return all ones. */
extern const struct bus_device_ops debug_exit_bus_ops;

#endif
