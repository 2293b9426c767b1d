/* ACPI fixed hardware: the PM1a event block (status, enable), PM1a control (sleep
 * requests: S5 powers off), the 32-bit PM timer at 3.579545 MHz, and the reset
 * register the FADT names. The power button raises the SCI. */
#ifndef VMK_LEGACY_ACPI_PM_H
#define VMK_LEGACY_ACPI_PM_H

#include <stdint.h>

#include "core/bus.h"
#include "core/irq.h"
#include "core/machine_events.h"

#define ACPI_PM_TIMER_HZ   3579545u
#define ACPI_PM_BLOCK_LEN  12 /* PM1a event (4), control (2, at +4), timer (4, at +8) */
#define ACPI_PM_S5_SLP_TYP 5  /* the SLP_TYP that powers off: what the DSDT's \_S5 says */

struct acpi_pm;

/* sci: the SCI line (copied; NULL: none). ev: copied (NULL: requests go nowhere);
 * power_off and reset are called from the writing vCPU thread without the
 * device's lock held. now_ns: a monotonic clock in nanoseconds (NULL means
 * CLOCK_MONOTONIC). NULL when out of memory. */
struct acpi_pm *acpi_pm_new(const struct irq_line *sci, const struct machine_events *ev,
                            uint64_t (*now_ns)(void *ctx), void *ctx);
void acpi_pm_free(struct acpi_pm *pm);

/* Which SLP_TYP values power off when SLP_EN is written: bit N for SLP_TYP N (default: only
 * ACPI_PM_S5_SLP_TYP). OVMF's ResetSystem writes SLP_TYP 0, QEMU chipsets' S5, whatever the
 * DSDT says: the EFI machine adds that one. */
void acpi_pm_set_power_off_types(struct acpi_pm *pm, uint8_t types);

/* Sets PWRBTN_STS; the SCI rises when the guest enabled PWRBTN_EN. Any thread. */
void acpi_pm_press_power_button(struct acpi_pm *pm);

/* Register acpi_pm_bus_ops at the PM block with len ACPI_PM_BLOCK_LEN and
 * acpi_pm_reset_bus_ops at the reset register with len 1, dev = the acpi_pm for both.
 * Accesses of any size at any offset inside the block act byte by byte; the gap
 * at +6 reads 0. */
extern const struct bus_device_ops acpi_pm_bus_ops;
extern const struct bus_device_ops acpi_pm_reset_bus_ops;

#endif
