/* An interrupt line and machine events for platform device tests that record what
 * the device did: how often each callback ran, and with what the last time. */
#ifndef VMK_TESTS_EVENT_RECORDER_H
#define VMK_TESTS_EVENT_RECORDER_H

#include "core/irq.h"
#include "core/machine_events.h"

#include <stdbool.h>
#include <stdint.h>

struct irq_record {
    unsigned calls;
    unsigned gsi; /* of the last call */
    bool level;   /* of the last call */
};

struct event_record {
    unsigned power_offs, resets, debug_exits;
    uint32_t code; /* of the last debug exit */
};

/* A line for gsi whose every set_level lands in *rec. */
struct irq_line irq_recorder(struct irq_record *rec, unsigned gsi);
/* Events whose every callback lands in *rec. */
struct machine_events events_recorder(struct event_record *rec);

#endif
