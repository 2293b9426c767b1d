/* An interrupt line as a device sees it: it only says "asserted" or "not". Who
 * delivers it (KVM_IRQ_LINE, a test recorder) is hidden behind the callback. */
#ifndef VMK_CORE_IRQ_H
#define VMK_CORE_IRQ_H

#include <stdbool.h>

struct irq_line {
    void (*set_level)(void *ctx, unsigned gsi, bool level);
    void *ctx;
    unsigned gsi;
};

static inline void irq_line_set(const struct irq_line *line, bool level)
{
    if (line && line->set_level)
        line->set_level(line->ctx, line->gsi, level);
}

#endif
