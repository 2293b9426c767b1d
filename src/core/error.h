/* Internal error helpers: build a vmk_error with a formatted message. */
#ifndef VMK_CORE_ERROR_H
#define VMK_CORE_ERROR_H

#include "vmkit.h"

/* Sets *err (when err is not NULL and *err is NULL). sys_errno is the errno of a failed
 * system call, or 0. */
void vmk_fail_set(vmk_error **err, vmk_result code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* vmk_fail_set, and the value code: `return vmk_fail(err, VMK_ERR_IO, errno, "...")`. A
 * macro, so that a reader (and the static analyzer) sees that a failure returns code. */
#define vmk_fail(err, code, ...)                      \
    ({                                                \
        vmk_result fail_code_ = (code);               \
        vmk_fail_set((err), fail_code_, __VA_ARGS__); \
        fail_code_;                                   \
    })

/* Makes a standalone error (NULL only when out of memory). */
vmk_error *vmk_error_new(vmk_result code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies an error (NULL stays NULL). */
vmk_error *vmk_error_copy(const vmk_error *err);

#endif
