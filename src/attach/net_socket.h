/* The socket network attachments as net_links (over net_fd_link.c): a connected socket the
 * caller gives (a datagram per frame, or the length-prefixed stream framing), a unix datagram
 * socket path a peer has bound (vfkit and gvproxy: we bind our own socket beside it, connect,
 * and may greet with "VFKT"), and a unix stream socket path a peer listens on (passt, QEMU's
 * -netdev stream). A path peer that goes away is reconnected once a second. */
#ifndef VMK_ATTACH_NET_SOCKET_H
#define VMK_ATTACH_NET_SOCKET_H

#include "attach/net_link.h"
#include "vmkit.h"

/* att is a file handle, unix datagram or unix stream attachment. what names the device in
 * errors ("network device 1"): a path nobody serves fails here, naming it. */
vmk_result net_socket_open(const vmk_network_attachment *att, const char *what,
                           struct net_link **out, vmk_error **err);

#endif
