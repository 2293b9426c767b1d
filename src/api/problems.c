#include "api/problems.h"
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void problem(struct problems *p, const char *fmt, ...)
{
    char *line = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    p->count++;
    if (n < 0) {
        p->oom = true;
        return;
    }
    char *t = realloc(p->text, p->len + (size_t)n + 2);
    if (!t) {
        p->oom = true;
        free(line);
        return;
    }
    if (p->len)
        t[p->len++] = '\n';
    memcpy(t + p->len, line, (size_t)n + 1);
    p->len += (size_t)n;
    p->text = t;
    free(line);
}

void problem_from(struct problems *p, vmk_error *e)
{
    if (e)
        problem(p, "%s", vmk_error_message(e));
    vmk_error_free(e);
}

vmk_result problems_finish(struct problems *p, vmk_error **err)
{
    vmk_result r = VMK_OK;
    if (p->count) {
        r = p->oom ? VMK_ERR_NO_MEMORY : VMK_ERR_INVALID_CONFIG;
        vmk_fail(err, r, 0, "%s", p->text ? p->text : "invalid configuration");
    }
    free(p->text);
    p->text = NULL;
    p->len = 0;
    return r;
}
