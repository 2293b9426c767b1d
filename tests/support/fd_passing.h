/* Sending file descriptors over a unix socket (SCM_RIGHTS), as a vhost-user front end does
 * with its memory and eventfds: one helper for the tests, the fuzzer and the synthetic front
 * end. */
#ifndef VMK_TESTS_FD_PASSING_H
#define VMK_TESTS_FD_PASSING_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FD_PASSING_MAX 16

/* sendmsg of iov with fds attached to its first byte; nfds 0 sends none. Returns what
 * sendmsg returns (-1 with errno; EINVAL for more than FD_PASSING_MAX fds). */
ssize_t send_with_fds(int sock, const struct iovec *iov, size_t iovcnt, const int *fds,
                      unsigned nfds, int flags);

#endif
