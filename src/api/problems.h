/* What vmk_config_validate collects: every problem, one line each, so that the caller sees
 * all of them at once. Each object family's file adds the problems of its objects. */
#ifndef VMK_API_PROBLEMS_H
#define VMK_API_PROBLEMS_H

#include "vmkit.h"

#include <stdbool.h>
#include <stddef.h>

struct problems {
    char *text;
    size_t len;
    unsigned count;
    bool oom;
};

void problem(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Folds a helper's error (if any) into the list and frees it. */
void problem_from(struct problems *p, vmk_error *e);
/* VMK_OK when there were none; else fills *err with every line (VMK_ERR_INVALID_CONFIG, or
 * VMK_ERR_NO_MEMORY when a line was lost) and frees the text. */
vmk_result problems_finish(struct problems *p, vmk_error **err);

#endif
