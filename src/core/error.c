#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vmk_error {
    vmk_result code;
    int sys_errno;
    char *message;
};

static vmk_error *error_vnew(vmk_result code, int sys_errno, const char *fmt, va_list ap)
{
    vmk_error *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->code = code;
    e->sys_errno = sys_errno;
    if (vasprintf(&e->message, fmt, ap) < 0)
        e->message = NULL;
    return e;
}

vmk_error *vmk_error_new(vmk_result code, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmk_error *e = error_vnew(code, sys_errno, fmt, ap);
    va_end(ap);
    return e;
}

void vmk_fail_set(vmk_error **err, vmk_result code, int sys_errno, const char *fmt, ...)
{
    if (err && !*err) {
        va_list ap;
        va_start(ap, fmt);
        *err = error_vnew(code, sys_errno, fmt, ap);
        va_end(ap);
    }
}

vmk_error *vmk_error_copy(const vmk_error *err)
{
    if (!err)
        return NULL;
    return vmk_error_new(err->code, err->sys_errno, "%s", vmk_error_message(err));
}

vmk_result vmk_error_code(const vmk_error *err)
{
    return err ? err->code : VMK_OK;
}

int vmk_error_errno(const vmk_error *err)
{
    return err ? err->sys_errno : 0;
}

const char *vmk_error_message(const vmk_error *err)
{
    if (!err)
        return "no error";
    /* A message that could not be formatted falls back to the code's name. */
    return err->message ? err->message : vmk_result_string(err->code);
}

void vmk_error_free(vmk_error *err)
{
    if (!err)
        return;
    free(err->message);
    free(err);
}

const char *vmk_result_string(vmk_result r)
{
    switch (r) {
    case VMK_OK: return "success";
    case VMK_ERR_INVALID_ARGUMENT: return "invalid argument";
    case VMK_ERR_NO_MEMORY: return "out of memory";
    case VMK_ERR_INVALID_CONFIG: return "invalid configuration";
    case VMK_ERR_IO: return "I/O error";
    case VMK_ERR_BAD_IMAGE: return "bad kernel or initrd image";
    case VMK_ERR_INVALID_STATE: return "operation not allowed in this state";
    case VMK_ERR_KVM: return "KVM error";
    case VMK_ERR_UNSUPPORTED: return "not supported on this host";
    case VMK_ERR_GUEST_FAULT: return "guest fault";
    case VMK_ERR_TIMEOUT: return "timed out";
    case VMK_ERR_INTERNAL: return "internal error";
    }
    return "unknown result code";
}

int vmk_version_number(void)
{
    return VMK_VERSION_NUM;
}

const char *vmk_version_string(void)
{
    return VMK_VERSION_STRING;
}
