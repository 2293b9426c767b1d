/* Network: MAC addresses, the attachments (the host side of a network device) and the virtio
 * network device that carries one, with what vmk_config_validate says about them. */
#include "api/validate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- MAC addresses ---- */

vmk_mac_address vmk_mac_address_random(void)
{
    vmk_mac_address mac = { { 0 } };
    size_t got = 0;
    while (got < sizeof(mac.octets)) {
        ssize_t n = getrandom(mac.octets + got, sizeof(mac.octets) - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            break;
    }
    if (got < sizeof(mac.octets)) {
        /* No getrandom (an old kernel, a seccomp filter): still differ between calls. */
        static unsigned counter;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                     ((uint64_t)getpid() << 16) ^ ((uint64_t)++counter << 40);
        x *= UINT64_C(0x9e3779b97f4a7c15);
        for (size_t i = 0; i < sizeof(mac.octets); i++)
            mac.octets[i] = (uint8_t)(x >> (8 * i + 16));
    }
    mac.octets[0] = (uint8_t)((mac.octets[0] & ~1u) | 2u); /* unicast, locally administered */
    return mac;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

vmk_result vmk_mac_address_parse(const char *text, vmk_mac_address *out)
{
    if (!text || !out || strlen(text) != VMK_MAC_ADDRESS_STRING_SIZE - 1)
        return VMK_ERR_INVALID_ARGUMENT;
    vmk_mac_address mac;
    for (unsigned i = 0; i < 6; i++) {
        const char *t = text + 3 * i;
        int hi = hex_digit(t[0]), lo = hex_digit(t[1]);
        if (hi < 0 || lo < 0 || (i < 5 && t[2] != ':'))
            return VMK_ERR_INVALID_ARGUMENT;
        mac.octets[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = mac;
    return VMK_OK;
}

void vmk_mac_address_format(const vmk_mac_address *mac, char *out)
{
    if (!out)
        return;
    if (!mac) {
        out[0] = '\0';
        return;
    }
    const uint8_t *o = mac->octets;
    snprintf(out, VMK_MAC_ADDRESS_STRING_SIZE, "%02x:%02x:%02x:%02x:%02x:%02x", o[0], o[1], o[2],
             o[3], o[4], o[5]);
}

bool vmk_mac_address_is_multicast(const vmk_mac_address *mac)
{
    return mac && (mac->octets[0] & 1);
}

bool vmk_mac_address_is_locally_administered(const vmk_mac_address *mac)
{
    return mac && (mac->octets[0] & 2);
}

/* ---- Attachments ---- */

static vmk_network_attachment *alloc_attachment(vmk_network_attachment_kind kind, const char *path)
{
    vmk_network_attachment *att = calloc(1, sizeof(*att));
    if (!att)
        return NULL;
    if (config_set_string(&att->path, path) != VMK_OK) {
        free(att);
        return NULL;
    }
    att->kind = kind;
    att->fd = -1;
    att->mtu = VMK_NET_LINK_MIN_MTU;
    att->host_loopback = true;
    return att;
}

vmk_network_attachment *vmk_nat_network_attachment_new(void)
{
    return alloc_attachment(VMK_NETWORK_ATTACHMENT_NAT, NULL);
}

vmk_network_attachment *vmk_file_handle_network_attachment_new(int fd)
{
    vmk_network_attachment *att = alloc_attachment(VMK_NETWORK_ATTACHMENT_FILE_HANDLE, NULL);
    if (att)
        att->fd = fd;
    return att;
}

vmk_network_attachment *vmk_unix_datagram_network_attachment_new(const char *path)
{
    return alloc_attachment(VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM, path);
}

vmk_network_attachment *vmk_unix_stream_network_attachment_new(const char *path)
{
    return alloc_attachment(VMK_NETWORK_ATTACHMENT_UNIX_STREAM, path);
}

vmk_network_attachment *vmk_tap_network_attachment_new(const char *ifname)
{
    return alloc_attachment(VMK_NETWORK_ATTACHMENT_TAP, ifname);
}

void vmk_network_attachment_free(vmk_network_attachment *att)
{
    if (!att)
        return;
    for (unsigned i = 0; i < att->forward_count; i++)
        free(att->forward[i].host_address);
    free(att->forward);
    free(att->path);
    free(att);
}

/* Setters store, validation judges: a forward on another kind is kept, and named there. */
vmk_result vmk_nat_network_attachment_add_port_forward(vmk_network_attachment *att,
                                                       vmk_port_forward_protocol protocol,
                                                       const char *host_address, unsigned host_port,
                                                       unsigned guest_port)
{
    if (!att)
        return VMK_ERR_INVALID_ARGUMENT;
    char *addr = strdup(host_address && *host_address ? host_address : VMK_NET_DEFAULT_HOST);
    struct port_forward *f =
        addr ? realloc(att->forward, (att->forward_count + 1) * sizeof(*f)) : NULL;
    if (!f) {
        free(addr);
        return VMK_ERR_NO_MEMORY;
    }
    f[att->forward_count++] = (struct port_forward){
        .protocol = protocol,
        .host_address = addr,
        .host_port = host_port,
        .guest_port = guest_port,
    };
    att->forward = f;
    return VMK_OK;
}

unsigned vmk_nat_network_attachment_port_forward_count(const vmk_network_attachment *att)
{
    return att && att->kind == VMK_NETWORK_ATTACHMENT_NAT ? att->forward_count : 0;
}

vmk_result vmk_nat_network_attachment_get_port_forward(const vmk_network_attachment *att,
                                                       unsigned index,
                                                       vmk_port_forward_protocol *protocol,
                                                       const char **host_address,
                                                       unsigned *host_port, unsigned *guest_port)
{
    if (!att || att->kind != VMK_NETWORK_ATTACHMENT_NAT || index >= att->forward_count)
        return VMK_ERR_INVALID_ARGUMENT;
    const struct port_forward *f = &att->forward[index];
    if (protocol)
        *protocol = f->protocol;
    if (host_address)
        *host_address = f->host_address;
    if (host_port)
        *host_port = f->host_port;
    if (guest_port)
        *guest_port = f->guest_port;
    return VMK_OK;
}

vmk_result vmk_nat_network_attachment_set_host_loopback(vmk_network_attachment *att, bool allowed)
{
    if (!att)
        return VMK_ERR_INVALID_ARGUMENT;
    att->host_loopback = allowed;
    return VMK_OK;
}

bool vmk_nat_network_attachment_get_host_loopback(const vmk_network_attachment *att)
{
    return att && att->kind == VMK_NETWORK_ATTACHMENT_NAT && att->host_loopback;
}

vmk_result vmk_unix_datagram_network_attachment_set_vfkit_magic(vmk_network_attachment *att,
                                                                bool on)
{
    if (!att)
        return VMK_ERR_INVALID_ARGUMENT;
    att->vfkit_magic = on;
    return VMK_OK;
}

bool vmk_unix_datagram_network_attachment_get_vfkit_magic(const vmk_network_attachment *att)
{
    return att && att->kind == VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM && att->vfkit_magic;
}

vmk_network_attachment_kind vmk_network_attachment_get_kind(const vmk_network_attachment *att)
{
    return att ? att->kind : VMK_NETWORK_ATTACHMENT_NAT;
}

const char *vmk_network_attachment_get_path(const vmk_network_attachment *att)
{
    if (!att)
        return NULL;
    switch (att->kind) {
    case VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM:
    case VMK_NETWORK_ATTACHMENT_UNIX_STREAM:
    case VMK_NETWORK_ATTACHMENT_TAP: return att->path;
    default: return NULL;
    }
}

int vmk_network_attachment_get_fd(const vmk_network_attachment *att)
{
    return att && att->kind == VMK_NETWORK_ATTACHMENT_FILE_HANDLE ? att->fd : -1;
}

vmk_result vmk_network_attachment_set_mtu(vmk_network_attachment *att, unsigned mtu)
{
    if (!att)
        return VMK_ERR_INVALID_ARGUMENT;
    att->mtu = mtu;
    att->mtu_set = true;
    return VMK_OK;
}

unsigned vmk_network_attachment_get_mtu(const vmk_network_attachment *att)
{
    return att ? att->mtu : 0;
}

static vmk_network_attachment *network_attachment_copy(const vmk_network_attachment *att)
{
    vmk_network_attachment *c = alloc_attachment(att->kind, att->path);
    if (!c)
        return NULL;
    c->fd = att->fd;
    c->mtu = att->mtu;
    c->mtu_set = att->mtu_set;
    c->host_loopback = att->host_loopback;
    c->vfkit_magic = att->vfkit_magic;
    for (unsigned i = 0; i < att->forward_count; i++) {
        const struct port_forward *f = &att->forward[i];
        if (vmk_nat_network_attachment_add_port_forward(c, f->protocol, f->host_address,
                                                        f->host_port, f->guest_port) != VMK_OK) {
            vmk_network_attachment_free(c);
            return NULL;
        }
    }
    return c;
}

/* ---- The virtio network device ---- */

vmk_network_device *vmk_virtio_network_device_new(vmk_network_attachment *att)
{
    if (!att)
        return NULL;
    vmk_network_device *dev = calloc(1, sizeof(*dev));
    if (!dev) {
        vmk_network_attachment_free(att);
        return NULL;
    }
    dev->kind = VMK_NETWORK_DEVICE_VIRTIO;
    dev->att = att;
    dev->mac = vmk_mac_address_random();
    dev->offloading = true;
    return dev;
}

void vmk_network_device_free(vmk_network_device *dev)
{
    if (!dev)
        return;
    vmk_network_attachment_free(dev->att);
    free(dev);
}

vmk_network_device_kind vmk_network_device_get_kind(const vmk_network_device *dev)
{
    return dev ? dev->kind : VMK_NETWORK_DEVICE_VIRTIO;
}

const vmk_network_attachment *vmk_network_device_get_attachment(const vmk_network_device *dev)
{
    return dev ? dev->att : NULL;
}

vmk_result vmk_virtio_network_device_set_mac_address(vmk_network_device *dev,
                                                     const vmk_mac_address *mac)
{
    if (!dev || !mac)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->mac = *mac;
    return VMK_OK;
}

vmk_mac_address vmk_virtio_network_device_get_mac_address(const vmk_network_device *dev)
{
    vmk_mac_address none = { { 0 } };
    return dev ? dev->mac : none;
}

vmk_result vmk_virtio_network_device_set_mtu(vmk_network_device *dev, unsigned mtu)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->mtu = mtu;
    return VMK_OK;
}

unsigned vmk_virtio_network_device_get_mtu(const vmk_network_device *dev)
{
    return dev ? dev->mtu : 0;
}

unsigned vmk_virtio_network_device_min_mtu(void)
{
    return VMK_NET_MIN_MTU;
}

unsigned vmk_virtio_network_device_max_mtu(void)
{
    return VMK_NET_MAX_MTU;
}

vmk_result vmk_virtio_network_device_set_offloading(vmk_network_device *dev, bool on)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->offloading = on;
    return VMK_OK;
}

bool vmk_virtio_network_device_get_offloading(const vmk_network_device *dev)
{
    return dev ? dev->offloading : false;
}

vmk_network_device *network_device_copy(const vmk_network_device *dev)
{
    vmk_network_device *c = vmk_virtio_network_device_new(network_attachment_copy(dev->att));
    if (!c)
        return NULL;
    c->kind = dev->kind;
    c->mac = dev->mac;
    c->mtu = dev->mtu;
    c->offloading = dev->offloading;
    return c;
}

/* ---- Validation ---- */

static const char *protocol_name(vmk_port_forward_protocol protocol)
{
    switch (protocol) {
    case VMK_PORT_FORWARD_TCP: return "tcp";
    case VMK_PORT_FORWARD_UDP: return "udp";
    }
    return NULL;
}

/* A host address as bound: the family and its bytes; false when it is not a literal. */
struct host_address {
    int family;
    unsigned char bytes[16];
};

static bool parse_host_address(const char *text, struct host_address *a)
{
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, text, a->bytes) == 1)
        a->family = AF_INET;
    else if (inet_pton(AF_INET6, text, a->bytes) == 1)
        a->family = AF_INET6;
    return a->family != 0;
}

/* Whether forward f would bind what g binds: one protocol, one address, one port. Forwards
 * that are problems on their own take part in no collision. */
static bool forward_usable(const struct port_forward *f, struct host_address *a)
{
    return protocol_name(f->protocol) && f->host_port >= 1 && f->host_port <= 65535 &&
           parse_host_address(f->host_address, a);
}

static bool same_binding(const struct port_forward *f, const struct port_forward *g)
{
    struct host_address a, b;
    return forward_usable(f, &a) && forward_usable(g, &b) && f->protocol == g->protocol &&
           f->host_port == g->host_port && a.family == b.family &&
           !memcmp(a.bytes, b.bytes, sizeof(a.bytes));
}

static void validate_port_forward(const struct port_forward *f, unsigned n, const char *what,
                                  struct problems *p)
{
    struct host_address a;
    if (!protocol_name(f->protocol))
        problem(p, "%s: port forward %u: unknown protocol %d", what, n, (int)f->protocol);
    if (f->host_port < 1 || f->host_port > 65535)
        problem(p, "%s: port forward %u: host port %u is out of range [1, 65535]", what, n,
                f->host_port);
    if (f->guest_port < 1 || f->guest_port > 65535)
        problem(p, "%s: port forward %u: guest port %u is out of range [1, 65535]", what, n,
                f->guest_port);
    if (!parse_host_address(f->host_address, &a))
        problem(p, "%s: port forward %u: host address \"%.64s\" is not an IPv4 or IPv6 address",
                what, n, f->host_address);
}

/* A connected datagram or stream socket, as each start will duplicate it; NULL, or why not. */
static const char *socket_problem(int fd)
{
    struct stat st;
    int type = 0;
    socklen_t len = sizeof(type);
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    if (fstat(fd, &st) < 0)
        return "not open";
    if (!S_ISSOCK(st.st_mode))
        return "not a socket";
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        (type != SOCK_DGRAM && type != SOCK_STREAM))
        return "another type of socket";
    if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) < 0)
        return "not connected";
    return NULL;
}

static void validate_socket_path(const vmk_network_attachment *att, const char *kind,
                                 const char *what, struct problems *p)
{
    if (!att->path || !*att->path)
        problem(p, "%s: %s attachment without a path", what, kind);
    else if (strlen(att->path) > vmk_socket_path_max_length())
        problem(p, "%s: socket path %s is %zu bytes, at most %zu allowed", what, att->path,
                strlen(att->path), vmk_socket_path_max_length());
}

/* The kernel's dev_valid_name, so that a start does not fail on the name. */
static void validate_tap_name(const char *name, const char *what, struct problems *p)
{
    if (!name || !*name) {
        problem(p, "%s: tap attachment without an interface name", what);
        return;
    }
    size_t len = strlen(name);
    if (len > VMK_IFNAME_MAX) {
        problem(p, "%s: tap interface name \"%.32s%s\" is %zu bytes, at most %u allowed", what,
                name, len > 32 ? "..." : "", len, VMK_IFNAME_MAX);
        return;
    }
    if (!strcmp(name, ".") || !strcmp(name, "..")) {
        problem(p, "%s: tap interface name \"%s\" is not allowed", what, name);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == ':' || c == ' ' || (c >= '\t' && c <= '\r')) {
            problem(p,
                    "%s: tap interface name byte %zu (0x%02x) is not allowed (no '/', ':' or "
                    "whitespace)",
                    what, i, c);
            return;
        }
    }
}

static bool is_socket_kind(vmk_network_attachment_kind kind)
{
    return kind == VMK_NETWORK_ATTACHMENT_FILE_HANDLE ||
           kind == VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM ||
           kind == VMK_NETWORK_ATTACHMENT_UNIX_STREAM;
}

static void validate_attachment(const vmk_network_attachment *att, const char *what,
                                struct problems *p)
{
    const char *why;
    switch (att->kind) {
    case VMK_NETWORK_ATTACHMENT_NAT:
        for (unsigned i = 0; i < att->forward_count; i++)
            validate_port_forward(&att->forward[i], i + 1, what, p);
        break;
    case VMK_NETWORK_ATTACHMENT_FILE_HANDLE:
        if (att->fd < 0)
            problem(p, "%s: file handle attachment without a descriptor (fd %d)", what, att->fd);
        else if ((why = socket_problem(att->fd)))
            problem(p, "%s: fd %d is not a connected datagram or stream socket (%s)", what, att->fd,
                    why);
        break;
    case VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM:
        validate_socket_path(att, "unix datagram", what, p);
        break;
    case VMK_NETWORK_ATTACHMENT_UNIX_STREAM:
        validate_socket_path(att, "unix stream", what, p);
        break;
    case VMK_NETWORK_ATTACHMENT_TAP: validate_tap_name(att->path, what, p); break;
    default: problem(p, "%s: unknown attachment kind %d", what, (int)att->kind); return;
    }
    if (is_socket_kind(att->kind)) {
        if (att->mtu < VMK_NET_LINK_MIN_MTU || att->mtu > VMK_NET_LINK_MAX_MTU)
            problem(p, "%s: attachment mtu %u is out of range [%u, %u]", what, att->mtu,
                    VMK_NET_LINK_MIN_MTU, VMK_NET_LINK_MAX_MTU);
    } else if (att->mtu_set) {
        problem(p,
                "%s: mtu applies to socket attachments only (file handle, unix datagram, unix "
                "stream)",
                what);
    }
    if (att->vfkit_magic && att->kind != VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM)
        problem(p, "%s: vfkit magic applies to unix datagram attachments only", what);
    if (att->kind != VMK_NETWORK_ATTACHMENT_NAT) {
        if (att->forward_count)
            problem(p, "%s: port forwards apply to NAT attachments only", what);
        if (!att->host_loopback)
            problem(p, "%s: host loopback applies to NAT attachments only", what);
    }
}

/* The forward's binding as messages name it: "tcp 127.0.0.1:8080", "udp [::1]:53". */
static void describe_binding(const struct port_forward *f, char *out, size_t size)
{
    bool v6 = strchr(f->host_address, ':') != NULL;
    snprintf(out, size, "%s %s%s%s:%u", protocol_name(f->protocol), v6 ? "[" : "", f->host_address,
             v6 ? "]" : "", f->host_port);
}

/* Forward k of device i against those before it, in device i and the devices before i. */
static void validate_forward_unique(const vmk_config *cfg, unsigned i, unsigned k, const char *what,
                                    struct problems *p)
{
    const struct port_forward *f =
        &((const vmk_network_device *)cfg->network.item[i])->att->forward[k];
    for (unsigned j = 0; j <= i; j++) {
        const vmk_network_attachment *other =
            ((const vmk_network_device *)cfg->network.item[j])->att;
        if (other->kind != VMK_NETWORK_ATTACHMENT_NAT)
            continue;
        unsigned end = j == i ? k : other->forward_count;
        for (unsigned m = 0; m < end; m++) {
            if (same_binding(f, &other->forward[m])) {
                char binding[128];
                describe_binding(f, binding, sizeof(binding));
                problem(p, "%s: %s is already forwarded by network device %u", what, binding,
                        j + 1);
                return;
            }
        }
    }
}

void network_device_validate(const vmk_config *cfg, unsigned index, struct problems *p)
{
    const vmk_network_device *dev = cfg->network.item[index];
    char what[32], mac[VMK_MAC_ADDRESS_STRING_SIZE];
    snprintf(what, sizeof(what), "network device %u", index + 1);
    vmk_mac_address_format(&dev->mac, mac);

    if (dev->kind != VMK_NETWORK_DEVICE_VIRTIO)
        problem(p, "%s: unknown device kind %d", what, (int)dev->kind);
    static const vmk_mac_address zero;
    if (!memcmp(&dev->mac, &zero, sizeof(zero)))
        problem(p, "%s: MAC address %s is all zeros", what, mac);
    else if (vmk_mac_address_is_multicast(&dev->mac))
        problem(p, "%s: MAC address %s is a multicast address", what, mac);
    for (unsigned j = 0; j < index; j++) {
        const vmk_network_device *other = cfg->network.item[j];
        if (!memcmp(&dev->mac, &other->mac, sizeof(dev->mac))) {
            problem(p, "%s: MAC address %s is already used by network device %u", what, mac, j + 1);
            break;
        }
    }
    if (dev->mtu != 0 && (dev->mtu < VMK_NET_MIN_MTU || dev->mtu > VMK_NET_MAX_MTU))
        problem(p, "%s: mtu %u is out of range [%u, %u] (or 0: none offered)", what, dev->mtu,
                VMK_NET_MIN_MTU, VMK_NET_MAX_MTU);

    validate_attachment(dev->att, what, p);
    if (dev->att->kind == VMK_NETWORK_ATTACHMENT_NAT)
        for (unsigned k = 0; k < dev->att->forward_count; k++)
            validate_forward_unique(cfg, index, k, what, p);
}
