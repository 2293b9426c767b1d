/* A PS/2 (i8042) keyboard controller with nothing plugged in and no interrupt
 * wired: it answers the controller commands guests probe with, and it is there so
 * guests can reset the machine through it (command 0xFE, or the output port). */
#ifndef VMK_LEGACY_I8042_H
#define VMK_LEGACY_I8042_H

#include "core/bus.h"
#include "core/machine_events.h"

struct i8042;

/* ev is copied (NULL: the reset request goes nowhere); ev->reset is called from
 * the writing vCPU thread without the controller's lock held. NULL when out of
 * memory. */
struct i8042 *i8042_new(const struct machine_events *ev);
void i8042_free(struct i8042 *k);

/* Register data at X86_I8042_DATA_PORT and cmd (status on read) at
 * X86_I8042_CMD_PORT, len 1 each, dev = the i8042. */
extern const struct bus_device_ops i8042_data_bus_ops;
extern const struct bus_device_ops i8042_cmd_bus_ops;

#endif
