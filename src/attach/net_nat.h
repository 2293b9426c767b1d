/* A net_link to the host's network through user-mode NAT (libslirp), with QEMU's addresses:
 * network 10.0.2.0/24, the host (gateway) 10.0.2.2, a DNS forwarder 10.0.2.3, DHCP leases
 * from 10.0.2.15; IPv6 fec0::/64 with the host at fec0::2 and DNS at fec0::3. Connections
 * the guest makes leave from the host's own sockets; host ports can be forwarded in.
 *
 * libslirp is not thread-safe: it lives on the link's own thread (a poll() loop). Frames
 * cross between that thread and the device in two bounded queues: a full queue to the NAT
 * makes send say -EAGAIN (tx_ready follows once it has room); a full queue to the guest
 * drops the frame, as a lossy wire would (TCP retransmits), and counts it in link->dropped,
 * which changes only under the device's lock. Frames carry no vnet header and libslirp
 * checks every checksum, so the device must offer no offloads. */
#ifndef VMK_ATTACH_NET_NAT_H
#define VMK_ATTACH_NET_NAT_H

#include "attach/net_link.h"
#include "vmkit.h"

#include <stdbool.h>

/* A host port forwarded to the guest. */
struct net_nat_forward {
    bool udp;
    char host_address[64];          /* an IPv4 or IPv6 literal: "127.0.0.1", "0.0.0.0", "::1" */
    unsigned host_port, guest_port; /* 1..65535 */
};

struct net_nat_params {
    /* 10.0.2.2 (and fec0::2) reach the host's loopback addresses; false refuses that. */
    bool host_loopback;
    /* The guest's MTU (0: 1500): slirp's TCP segments to the guest and the largest frame
     * it takes. Above 65521 (libslirp's limit) it is 65521. */
    unsigned mtu;
    const struct net_nat_forward *forwards;
    unsigned forward_count;
};

/* A new NAT link. what names the device in errors ("network device 1"). Every forward is
 * bound before it returns: a host port in use fails with VMK_ERR_IO and the system's errno
 * ("network device 1: 127.0.0.1:8080: Address already in use", "...: udp [::1]:53: ..." for
 * UDP and IPv6); a bad address or port with VMK_ERR_INVALID_ARGUMENT. Free with
 * l->ops->destroy. */
vmk_result net_nat_new(const struct net_nat_params *p, const char *what, struct net_link **out,
                       vmk_error **err) __attribute__((warn_unused_result));

/* Adds or removes a forward, from any thread, before, during or after the run (while the NAT
 * thread runs, it does the work and the caller waits). Errors as net_nat_new's; removing a
 * forward that is not there is VMK_ERR_INVALID_ARGUMENT. A forward is named by udp,
 * host_address and host_port (guest_port is ignored on removal). An IPv4 host address
 * reaches 10.0.2.15. An IPv6 one listens on IPv6 only (so "::" and "0.0.0.0" can share a
 * port) and reaches the guest over IPv6, at the first IPv6 address libslirp learned for it
 * (its NDP table): a connection that comes before the guest has used IPv6 is closed. */
vmk_result net_nat_add_forward(struct net_link *l, const struct net_nat_forward *f, vmk_error **err)
    __attribute__((warn_unused_result));
vmk_result net_nat_remove_forward(struct net_link *l, const struct net_nat_forward *f,
                                  vmk_error **err) __attribute__((warn_unused_result));

#endif
