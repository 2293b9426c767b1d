#include "attach/net_tap.h"
#include "attach/net_fd_link.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void tap_set_offloads(int fd, unsigned offloads)
{
    unsigned long f = 0;
    if (offloads & NET_OFFLOAD_CSUM) {
        f |= TUN_F_CSUM;
        if (offloads & NET_OFFLOAD_TSO4)
            f |= TUN_F_TSO4;
        if (offloads & NET_OFFLOAD_TSO6)
            f |= TUN_F_TSO6;
        if ((offloads & NET_OFFLOAD_ECN) && (f & (TUN_F_TSO4 | TUN_F_TSO6)))
            f |= TUN_F_TSO_ECN;
    }
    /* What the guest cannot take, the host's stack must finish before the frame reaches us
     * (checksums, segmentation): with no offloads, every frame arrives whole. */
    ioctl(fd, TUNSETOFFLOAD, f);
}

vmk_result net_tap_open(const char *ifname, const char *what, struct net_link **out,
                        vmk_error **err)
{
    /* TUNSETIFF would create a missing interface for a privileged caller: the attachment is
     * for an existing one, so look first. */
    if (if_nametoindex(ifname) == 0)
        return vmk_fail(err, VMK_ERR_IO, ENODEV, "%s: tap %s does not exist", what, ifname);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: tap %s: cannot open /dev/net/tun: %s", what,
                        ifname, strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return vmk_fail(err, VMK_ERR_IO, e, "%s: tap %s: %s%s", what, ifname, strerror(e),
                        e == EINVAL                ? " (not a tap, or a multi-queue one)"
                        : e == EPERM || e == EBUSY ? " (owned by another user, or already open)"
                                                   : "");
    }
    int hdr = NET_VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        int e = errno;
        close(fd);
        return vmk_fail(err, VMK_ERR_IO, e, "%s: tap %s: cannot set the vnet header size: %s", what,
                        ifname, strerror(e));
    }
    tap_set_offloads(fd, 0);
    struct net_fd_link_params p = {
        .fd = fd,
        .framing = NET_FRAMING_DATAGRAM,
        .vnet_hdr = true,
        .offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6 | NET_OFFLOAD_ECN,
        .set_offloads = tap_set_offloads,
    };
    *out = net_fd_link_new(&p);
    if (!*out)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    return VMK_OK;
}
