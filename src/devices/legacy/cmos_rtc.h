/* The MC146818 real-time clock and its CMOS RAM: an index port and a data port.
 * The time registers follow the host clock in UTC (plus whatever offset the guest
 * set); everything else is 128 bytes of plain RAM. No interrupts: register C
 * reads 0 and update-in-progress is never set. */
#ifndef VMK_LEGACY_CMOS_RTC_H
#define VMK_LEGACY_CMOS_RTC_H

#include <time.h>

#include "core/bus.h"

struct cmos_rtc;

/* now: the host clock (seconds since the epoch, UTC); NULL means time(NULL).
 * NULL when out of memory. */
struct cmos_rtc *cmos_rtc_new(time_t (*now)(void *ctx), void *ctx);
void cmos_rtc_free(struct cmos_rtc *rtc);

/* Register at X86_RTC_PORT with len 2, dev = the rtc: +0 index (bit 7, the NMI
 * mask, is ignored; reads 0xff), +1 data. Wider accesses act on the first byte;
 * reads fill the rest with 0xff. */
extern const struct bus_device_ops cmos_rtc_bus_ops;

#endif
