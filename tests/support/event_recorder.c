#include "event_recorder.h"

static void record_level(void *ctx, unsigned gsi, bool level)
{
    struct irq_record *r = ctx;
    r->calls++;
    r->gsi = gsi;
    r->level = level;
}

static void record_power_off(void *ctx)
{
    ((struct event_record *)ctx)->power_offs++;
}

static void record_reset(void *ctx)
{
    ((struct event_record *)ctx)->resets++;
}

static void record_debug_exit(void *ctx, uint32_t code)
{
    struct event_record *r = ctx;
    r->debug_exits++;
    r->code = code;
}

struct irq_line irq_recorder(struct irq_record *rec, unsigned gsi)
{
    return (struct irq_line){ .set_level = record_level, .ctx = rec, .gsi = gsi };
}

struct machine_events events_recorder(struct event_record *rec)
{
    return (struct machine_events){ .power_off = record_power_off,
                                    .reset = record_reset,
                                    .debug_exit = record_debug_exit,
                                    .ctx = rec };
}
