#include "core/unix_socket.h"
#include "core/error.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A socket file at the path nobody listens on is left over from a crash: remove it. Anything
 * else there is someone's, and stays. */
static vmk_result clear_stale_socket(const struct sockaddr_un *sa, const char *what,
                                     vmk_error **err)
{
    const char *path = sa->sun_path;
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? VMK_OK
                               : vmk_fail(err, VMK_ERR_IO, errno, "%s: socket %s: %s", what, path,
                                          strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return vmk_fail(err, VMK_ERR_IO, EEXIST,
                        "%s: %s exists and is not a socket (not replacing it)", what, path);
    /* Non-blocking: a live listener with a full backlog answers EAGAIN, not a hang. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: socket: %s", what, strerror(errno));
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
        return vmk_fail(err, VMK_ERR_IO, EADDRINUSE,
                        "%s: socket %s is in use (another program listens on it)", what, path);
    if (e == ECONNREFUSED) {
        if (unlink(path) == 0 || errno == ENOENT)
            return VMK_OK;
        e = errno;
        return vmk_fail(err, VMK_ERR_IO, e, "%s: cannot remove stale socket %s: %s", what, path,
                        strerror(e));
    }
    return vmk_fail(err, VMK_ERR_IO, e, "%s: socket %s: %s", what, path, strerror(e));
}

vmk_result unix_socket_listen(const char *path, int backlog, const char *what, int *fd_out,
                              struct stat *made, vmk_error **err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    *fd_out = -1;
    if (!path || !*path)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: socket without a path", what);
    if (strlen(path) >= sizeof(sa.sun_path))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, ENAMETOOLONG,
                        "%s: socket path %s is longer than %zu bytes", what, path,
                        sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    vmk_result r = clear_stale_socket(&sa, what, err);
    if (r != VMK_OK)
        return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: socket: %s", what, strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot bind %s: %s", what, path, strerror(errno));
        close(fd);
        return r;
    }
    /* From here on the file is ours. */
    if (lstat(path, made) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        r = vmk_fail(err, VMK_ERR_IO, e, "%s: cannot listen on %s: %s", what, path, strerror(e));
        unlink(path);
        close(fd);
        return r;
    }
    *fd_out = fd;
    return VMK_OK;
}

void unix_socket_remove(const char *path, const struct stat *made)
{
    struct stat st;
    if (path && lstat(path, &st) == 0 && st.st_dev == made->st_dev && st.st_ino == made->st_ino)
        unlink(path);
}
