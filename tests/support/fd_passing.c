#include "fd_passing.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

ssize_t send_with_fds(int sock, const struct iovec *iov, size_t iovcnt, const int *fds,
                      unsigned nfds, int flags)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * FD_PASSING_MAX)];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt };
    if (nfds > FD_PASSING_MAX) {
        errno = EINVAL;
        return -1;
    }
    if (nfds) {
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &mh, flags);
    } while (n < 0 && errno == EINTR);
    return n;
}
