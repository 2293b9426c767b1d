/* An existing tap interface as a net_link: opened by name with IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR and a 12-byte vnet header, so checksum and segmentation offloads pass between
 * the guest and the host's stack, set from what the guest negotiated (TUNSETOFFLOAD). The Linux
 * stand-in for VZ's bridged attachment: the user puts the tap on a bridge. */
#ifndef VMK_ATTACH_NET_TAP_H
#define VMK_ATTACH_NET_TAP_H

#include "attach/net_link.h"
#include "vmkit.h"

/* A tap that does not exist, cannot be opened or is not a tap fails, naming it. */
vmk_result net_tap_open(const char *ifname, const char *what, struct net_link **out,
                        vmk_error **err);

#endif
