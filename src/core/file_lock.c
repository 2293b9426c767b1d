/* File locks for the machine's files (file_lock.h). */
#include "core/file_lock.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

vmk_result file_lock(int fd, const char *what, const char *path, bool read_only, const char *users,
                     vmk_error **err)
{
    struct flock fl = { .l_type = read_only ? F_RDLCK : F_WRLCK, .l_whence = SEEK_SET };
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return VMK_OK;
    int e = errno;
    if (e == EAGAIN || e == EACCES)
        return vmk_fail(err, VMK_ERR_IO, e,
                        "%s %s: cannot take its %s lock: another program holds a lock on it (is "
                        "%s using it?)",
                        what, path, read_only ? "shared (read)" : "exclusive (write)", users);
    if (e == EINVAL || e == ENOLCK || e == EOPNOTSUPP)
        return VMK_OK;
    return vmk_fail(err, VMK_ERR_IO, e, "%s %s: cannot lock: %s", what, path, strerror(e));
}
