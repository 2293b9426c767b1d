#include "attach/net_socket.h"
#include "attach/net_fd_link.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define VFKIT_MAGIC "VFKT"

/* How to reach a path peer again (the reconnect context of the fd link). */
struct path_peer {
    int type;   /* SOCK_DGRAM or SOCK_STREAM */
    bool magic; /* greet with VFKIT_MAGIC */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char own[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* our bound datagram socket */
    struct stat own_st;                                    /* to remove only our own file */
    bool own_made;
};

static bool fill_addr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len >= sizeof(a->sun_path))
        return false;
    memcpy(a->sun_path, path, len + 1);
    return true;
}

static void remove_own(struct path_peer *pp)
{
    struct stat st;
    if (pp->own_made && stat(pp->own, &st) == 0 && st.st_ino == pp->own_st.st_ino &&
        st.st_dev == pp->own_st.st_dev)
        unlink(pp->own);
    pp->own_made = false;
}

/* A datagram socket needs an address of its own for the peer to answer to: beside the peer's
 * socket when that directory takes one, else in the runtime directory. */
static int bind_own(struct path_peer *pp, int fd)
{
    static unsigned counter;
    const char *dirs[2] = { NULL, getenv("XDG_RUNTIME_DIR") };
    char peer_dir[sizeof(pp->path)];
    snprintf(peer_dir, sizeof(peer_dir), "%s", pp->path);
    char *slash = strrchr(peer_dir, '/');
    if (slash) {
        *slash = 0;
        dirs[0] = slash == peer_dir ? "/" : peer_dir;
    } else {
        dirs[0] = ".";
    }
    int e = -ENAMETOOLONG;
    for (unsigned i = 0; i < 3; i++) {
        const char *dir = i < 2 ? dirs[i] : "/tmp";
        if (!dir || !*dir)
            continue;
        unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        int len =
            snprintf(pp->own, sizeof(pp->own), "%s/vmkit-net-%d-%u.sock", dir, (int)getpid(), n);
        struct sockaddr_un a;
        if (len < 0 || (size_t)len >= sizeof(pp->own) || !fill_addr(&a, pp->own))
            continue;
        unlink(pp->own); /* a stale one of a previous process with our pid */
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            pp->own_made = stat(pp->own, &pp->own_st) == 0;
            return 0;
        }
        e = -errno;
    }
    return e;
}

/* A new socket connected to the peer's path: the fd, or -errno. */
static int connect_path(void *ctx)
{
    struct path_peer *pp = ctx;
    struct sockaddr_un a;
    if (!fill_addr(&a, pp->path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, pp->type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int e = 0;
    if (pp->type == SOCK_DGRAM) {
        remove_own(pp);
        e = bind_own(pp, fd);
        /* Room for a burst of frames each way (the default is a few datagrams of 64 KiB). */
        int buf = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    }
    if (e == 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        e = -errno;
    if (e == 0 && pp->magic && send(fd, VFKIT_MAGIC, 4, MSG_NOSIGNAL) != 4)
        e = -errno;
    if (e < 0) {
        close(fd);
        return e;
    }
    return fd;
}

static void free_path_peer(void *ctx)
{
    struct path_peer *pp = ctx;
    remove_own(pp);
    free(pp);
}

static vmk_result open_fd(const vmk_network_attachment *att, const char *what,
                          struct net_fd_link_params *p, vmk_error **err)
{
    int given = vmk_network_attachment_get_fd(att), type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(given, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        (type != SOCK_DGRAM && type != SOCK_STREAM))
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: fd %d is not a datagram or stream socket",
                        what, given);
    /* Our own descriptor: the caller's stays open and untouched (its O_NONBLOCK flag is shared,
     * so every call here says MSG_DONTWAIT instead). */
    int fd = fcntl(given, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot duplicate fd %d: %s", what, given,
                        strerror(errno));
    p->fd = fd;
    p->framing = type == SOCK_STREAM ? NET_FRAMING_STREAM : NET_FRAMING_DATAGRAM;
    return VMK_OK;
}

vmk_result net_socket_open(const vmk_network_attachment *att, const char *what,
                           struct net_link **out, vmk_error **err)
{
    /* Every frame up to virtio-net's limit passes, whatever the MTU: the attachment's MTU is
     * what the guest is offered, and a peer with a larger one (passt offers 65520 by DHCP)
     * must not lose the link over a guest that follows it. */
    struct net_fd_link_params p = { .fd = -1, .max_frame = NET_FRAME_MAX };
    vmk_network_attachment_kind kind = vmk_network_attachment_get_kind(att);
    if (kind == VMK_NETWORK_ATTACHMENT_FILE_HANDLE) {
        vmk_result r = open_fd(att, what, &p, err);
        if (r != VMK_OK)
            return r;
    } else {
        bool dgram = kind == VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM;
        struct path_peer *pp = calloc(1, sizeof(*pp));
        if (!pp)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
        pp->type = dgram ? SOCK_DGRAM : SOCK_STREAM;
        pp->magic = dgram && vmk_unix_datagram_network_attachment_get_vfkit_magic(att);
        snprintf(pp->path, sizeof(pp->path), "%s", vmk_network_attachment_get_path(att));
        int fd = connect_path(pp);
        if (fd < 0) {
            vmk_result r = vmk_fail(err, VMK_ERR_IO, -fd, "%s: unix %s socket %s: %s", what,
                                    dgram ? "datagram" : "stream", pp->path, strerror(-fd));
            free_path_peer(pp);
            return r;
        }
        p.fd = fd;
        p.framing = dgram ? NET_FRAMING_DATAGRAM : NET_FRAMING_STREAM;
        p.reconnect = connect_path;
        p.reconnect_free = free_path_peer;
        p.reconnect_ctx = pp;
    }
    *out = net_fd_link_new(&p);
    if (!*out)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    return VMK_OK;
}
