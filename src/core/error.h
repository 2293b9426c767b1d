/* Internal error helpers: build a vmk_error with a formatted message. */
#ifndef VMK_CORE_ERROR_H
#define VMK_CORE_ERROR_H

#include "vmkit.h"

/* Sets *err (when err is not NULL and *err is NULL) and returns code. sys_errno
 * is the errno of a failed system call, or 0. */
vmk_result vmk_fail(vmk_error **err, vmk_result code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Makes a standalone error (NULL only when out of memory). */
vmk_error *vmk_error_new(vmk_result code, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies an error (NULL stays NULL). */
vmk_error *vmk_error_copy(const vmk_error *err);

#endif
