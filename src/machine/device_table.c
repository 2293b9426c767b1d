/* The rows of the device table (device_table.h): config object -> host side -> device. */
#include "machine/device_table.h"
#include "block/disk_image.h"
#include "core/error.h"
#include "machine/console_ports.h"
#include "attach/net_nat.h"
#include "attach/net_socket.h"
#include "attach/fuse_server.h"
#include "attach/net_tap.h"
#include "attach/translator_share.h"
#include "attach/vsock_unix.h"
#include "virtio/balloon.h"
#include "virtio/blk.h"
#include "virtio/fs.h"
#include "virtio/gpu.h"
#include "virtio/input.h"
#include "virtio/net.h"
#include "virtio/rng.h"
#include "virtio/vsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void destroy_device(struct device_instance *inst)
{
    if (inst->dev)
        inst->dev->ops->destroy(inst->dev);
    inst->dev = NULL;
}

/* ---- virtio-blk: a disk image per device, a queue per vCPU ---- */

#define BLK_AUTO_QUEUES_MAX 8 /* one per vCPU, up to this many, when the config says 0 */

vmk_result device_open_disk_image(const vmk_storage_attachment *att, struct disk_image **out,
                                  vmk_error **err)
{
    return disk_image_open(vmk_disk_image_attachment_get_path(att),
                           vmk_disk_image_attachment_is_read_only(att),
                           vmk_disk_image_attachment_get_caching_mode(att),
                           vmk_disk_image_attachment_get_synchronization_mode(att), out, err);
}

/* The configuration's storage devices that are virtio-blk functions (USB mass-storage devices
 * sit behind the xHCI controller instead): how many, and the config index of the index-th. */
unsigned device_storage_count(const vmk_config *cfg, vmk_storage_device_kind kind)
{
    unsigned n = 0;
    for (unsigned i = 0; i < vmk_config_storage_device_count(cfg); i++)
        n += vmk_storage_device_get_kind(vmk_config_get_storage_device(cfg, i)) == kind;
    return n;
}

unsigned device_keyboard_count(const vmk_config *cfg, vmk_keyboard_kind kind)
{
    unsigned n = 0;
    for (unsigned i = 0; i < vmk_config_keyboard_count(cfg); i++)
        n += vmk_keyboard_get_kind(vmk_config_get_keyboard(cfg, i)) == kind;
    return n;
}

static unsigned blk_count(const vmk_config *cfg)
{
    return device_storage_count(cfg, VMK_STORAGE_DEVICE_VIRTIO_BLOCK);
}

static unsigned blk_config_index(const vmk_config *cfg, unsigned index)
{
    for (unsigned i = 0; i < vmk_config_storage_device_count(cfg); i++)
        if (vmk_storage_device_get_kind(vmk_config_get_storage_device(cfg, i)) ==
                VMK_STORAGE_DEVICE_VIRTIO_BLOCK &&
            index-- == 0)
            return i;
    return UINT32_MAX;
}

static vmk_result blk_open(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                           struct device_instance *out, vmk_error **err)
{
    index = blk_config_index(cfg, index); /* messages name the config's own numbering */
    const vmk_storage_device *sd = vmk_config_get_storage_device(cfg, index);
    const vmk_storage_attachment *att = vmk_storage_device_get_attachment(sd);
    struct disk_image *img;
    vmk_result r = device_open_disk_image(att, &img, err);
    if (r != VMK_OK)
        return r;
    unsigned queues = vmk_virtio_block_device_get_queue_count(sd);
    if (queues == 0)
        queues = env->vcpu_count == 0                    ? 1
                 : env->vcpu_count < BLK_AUTO_QUEUES_MAX ? env->vcpu_count
                                                         : BLK_AUTO_QUEUES_MAX;
    struct virtio_device *dev = virtio_blk_new(
        disk_image_backend(img), vmk_virtio_block_device_get_identifier(sd), queues, err);
    if (!dev) {
        disk_image_close(img);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "storage device %u: out of memory",
                        index + 1);
    }
    out->dev = dev;
    out->host = img;
    return VMK_OK;
}

static void blk_close(struct device_instance *inst)
{
    destroy_device(inst); /* first: its workers use the image */
    disk_image_close(inst->host);
    inst->host = NULL;
}

const struct device_kind device_kind_virtio_block = {
    .name = "storage device",
    .pci_class = 0x018000, /* other mass storage, as virtio-blk reports it */
    .count = blk_count,
    .open = blk_open,
    .close = blk_close,
};

/* ---- virtio-rng: getrandom behind a token bucket whose timer runs on the loop ---- */

static vmk_result rng_open(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                           struct device_instance *out, vmk_error **err)
{
    const vmk_entropy_device *ed = vmk_config_get_entropy_device(cfg, index);
    out->dev =
        virtio_rng_new(env->el, vmk_virtio_entropy_device_get_rate(ed), VIRTIO_RNG_DEFAULT_BURST);
    if (!out->dev)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM,
                        "entropy device %u: out of memory or file descriptors", index + 1);
    return VMK_OK;
}

const struct device_kind device_kind_virtio_entropy = {
    .name = "entropy device",
    .pci_class = 0x00ff00, /* unclassified, as QEMU's virtio-rng-pci reports it */
    .count = vmk_config_entropy_device_count,
    .open = rng_open,
    .close = destroy_device,
};

/* ---- virtio-console: a serial link per port ---- */

static vmk_result console_open(const struct device_host_env *env, const vmk_config *cfg,
                               unsigned index, struct device_instance *out, vmk_error **err)
{
    struct console_ports *ports;
    vmk_result r = console_ports_open(vmk_config_get_console_device(cfg, index), env->el,
                                      env->escape, env->escape_ctx, &ports, &out->dev, err);
    if (r == VMK_OK)
        out->host = ports;
    return r;
}

static vmk_result console_connect(struct device_instance *inst, vmk_error **err)
{
    return console_ports_connect(inst->host, err);
}

static const char *console_pty_path(const struct device_instance *inst, unsigned port)
{
    return console_ports_pty_path(inst->host, port);
}

static void console_close(struct device_instance *inst)
{
    destroy_device(inst); /* first: its reset may still write to a port's link */
    console_ports_close(inst->host);
    inst->host = NULL;
}

const struct device_kind device_kind_virtio_console = {
    .name = "console device",
    .pci_class = 0x078000, /* other communication controller, as QEMU's virtio-serial-pci */
    .count = vmk_config_console_device_count,
    .open = console_open,
    .connect = console_connect,
    .pty_path = console_pty_path,
    .close = console_close,
};

/* ---- virtio-net: a net_link per device, opened from its attachment ---- */

/* A network device's host side: its link, and the loop the link will run on. */
struct net_host {
    struct net_link *link;
    struct event_loop *el;
    bool nat; /* link is net_nat's: forwards can change at run time */
    unsigned index;
    void (*changed)(void *ctx, const struct device_kind *kind, unsigned index, bool connected,
                    const char *why);
    void *changed_ctx;
};

static void net_link_changed(void *ctx, bool up, const char *why)
{
    struct net_host *h = ctx;
    if (h->changed)
        h->changed(h->changed_ctx, &device_kind_virtio_network, h->index, up, why);
}

static vmk_result open_nat(const vmk_network_attachment *att, unsigned mtu, const char *what,
                           struct net_link **link, vmk_error **err)
{
    unsigned n = vmk_nat_network_attachment_port_forward_count(att);
    struct net_nat_forward *fw = calloc(n ? n : 1, sizeof(*fw));
    if (!fw)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    for (unsigned i = 0; i < n; i++) {
        vmk_port_forward_protocol proto = VMK_PORT_FORWARD_TCP;
        const char *addr = NULL;
        if (vmk_nat_network_attachment_get_port_forward(att, i, &proto, &addr, &fw[i].host_port,
                                                        &fw[i].guest_port) != VMK_OK)
            continue;
        fw[i].udp = proto == VMK_PORT_FORWARD_UDP;
        snprintf(fw[i].host_address, sizeof(fw[i].host_address), "%s", addr ? addr : "127.0.0.1");
    }
    struct net_nat_params p = { .host_loopback = vmk_nat_network_attachment_get_host_loopback(att),
                                .mtu = mtu,
                                .forwards = fw,
                                .forward_count = n };
    vmk_result r = net_nat_new(&p, what, link, err);
    free(fw);
    return r;
}

static vmk_result open_link(const vmk_network_attachment *att, unsigned mtu, const char *what,
                            struct net_link **link, vmk_error **err)
{
    switch (vmk_network_attachment_get_kind(att)) {
    case VMK_NETWORK_ATTACHMENT_NAT: return open_nat(att, mtu, what, link, err);
    case VMK_NETWORK_ATTACHMENT_FILE_HANDLE:
    case VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM:
    case VMK_NETWORK_ATTACHMENT_UNIX_STREAM: return net_socket_open(att, what, link, err);
    case VMK_NETWORK_ATTACHMENT_TAP:
        return net_tap_open(vmk_network_attachment_get_path(att), what, link, err);
    default:
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0, "%s: this attachment is not built in", what);
    }
}

static vmk_result net_open(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                           struct device_instance *out, vmk_error **err)
{
    const vmk_network_device *nd = vmk_config_get_network_device(cfg, index);
    const vmk_network_attachment *att = vmk_network_device_get_attachment(nd);
    char what[32];
    snprintf(what, sizeof(what), "network device %u", index + 1);
    struct net_link *link;
    unsigned mtu = vmk_virtio_network_device_get_mtu(nd);
    /* The NAT sends and takes frames as large as the guest's MTU: at 65520, a bulk transfer
     * crosses in about 40 times fewer frames than at 1500. */
    vmk_result r = open_link(att, mtu, what, &link, err);
    if (r != VMK_OK)
        return r;
    struct virtio_net_params p = { .mtu = (uint16_t)mtu,
                                   .offloads = vmk_virtio_network_device_get_offloading(nd) };
    vmk_mac_address mac = vmk_virtio_network_device_get_mac_address(nd);
    memcpy(p.mac, mac.octets, 6);
    /* A socket that carries larger frames than Ethernet's tells the guest its MTU, unless the
     * device sets one itself. */
    unsigned att_mtu = vmk_network_attachment_get_mtu(att);
    if (p.mtu == 0 && att_mtu > 1500)
        p.mtu = (uint16_t)att_mtu;
    struct net_host *h = calloc(1, sizeof(*h));
    p.link_changed = net_link_changed;
    p.link_changed_ctx = h;
    out->dev = h ? virtio_net_new(link, &p) : NULL;
    if (!out->dev) {
        free(h);
        link->ops->destroy(link);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    }
    *h = (struct net_host){ .link = link,
                            .el = env->el,
                            .nat =
                                vmk_network_attachment_get_kind(att) == VMK_NETWORK_ATTACHMENT_NAT,
                            .index = index,
                            .changed = env->attachment_changed,
                            .changed_ctx = env->attachment_ctx };
    out->host = h;
    return VMK_OK;
}

static vmk_result net_connect(struct device_instance *inst, vmk_error **err)
{
    struct net_host *h = inst->host;
    struct net_link_peer peer = virtio_net_peer(inst->dev);
    int e = h->link->ops->start(h->link, h->el, &peer);
    if (e < 0)
        return vmk_fail(err, VMK_ERR_IO, -e, "network device %u: cannot start: %s", inst->index + 1,
                        strerror(-e));
    return VMK_OK;
}

static void net_close(struct device_instance *inst)
{
    struct net_host *h = inst->host;
    if (h)
        h->link->ops->stop(h->link); /* first: no frame reaches the device after this */
    destroy_device(inst);
    if (h)
        h->link->ops->destroy(h->link);
    free(h);
    inst->host = NULL;
}

static vmk_result net_port_forward(struct device_instance *inst, bool add, bool udp,
                                   const char *host_address, unsigned host_port,
                                   unsigned guest_port, vmk_error **err)
{
    struct net_host *h = inst->host;
    if (!h->nat)
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "network device %u: port forwards need a NAT attachment", inst->index + 1);
    struct net_nat_forward f = { .udp = udp, .host_port = host_port, .guest_port = guest_port };
    snprintf(f.host_address, sizeof(f.host_address), "%s",
             host_address && *host_address ? host_address : "127.0.0.1");
    return add ? net_nat_add_forward(h->link, &f, err) : net_nat_remove_forward(h->link, &f, err);
}

static uint32_t net_guest_ipv4(const struct device_instance *inst)
{
    return virtio_net_guest_ipv4(inst->dev);
}

const struct device_kind device_kind_virtio_network = {
    .name = "network device",
    .pci_class = 0x020000, /* Ethernet controller */
    .count = vmk_config_network_device_count,
    .open = net_open,
    .connect = net_connect,
    .guest_ipv4 = net_guest_ipv4,
    .port_forward = net_port_forward,
    .close = net_close,
};

/* ---- virtio-balloon: releases guest RAM the guest gives back ---- */

static vmk_result balloon_open(const struct device_host_env *env, const vmk_config *cfg,
                               unsigned index, struct device_instance *out, vmk_error **err)
{
    const vmk_memory_balloon_device *bd = vmk_config_get_memory_balloon_device(cfg, index);
    struct virtio_balloon_params p = {
        .memory_size = vmk_config_get_memory_size(cfg),
        .deflate_on_oom = vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(bd),
        .page_reporting = vmk_virtio_traditional_memory_balloon_device_get_free_page_reporting(bd),
    };
    out->dev = virtio_balloon_new(&p);
    if (!out->dev)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "memory balloon device %u: out of memory",
                        index + 1);
    return VMK_OK;
}

static void balloon_set_target(struct device_instance *inst, uint32_t pages)
{
    virtio_balloon_set_target_pages(inst->dev, pages);
}

static void balloon_pages(struct device_instance *inst, uint32_t *target, uint32_t *actual)
{
    *target = virtio_balloon_target_pages(inst->dev);
    *actual = virtio_balloon_actual_pages(inst->dev);
}

const struct device_kind device_kind_virtio_balloon = {
    .name = "memory balloon device",
    .pci_class = 0x00ff00, /* unclassified, as QEMU's virtio-balloon-pci reports it */
    .not_served = "a memory balloon works on the machine's own RAM, and no vhost-user front end "
                  "exists for it",
    .count = vmk_config_memory_balloon_device_count,
    .open = balloon_open,
    .balloon_set_target = balloon_set_target,
    .balloon_pages = balloon_pages,
    .close = destroy_device,
};

/* ---- virtio-vsock: connections relayed to unix sockets ---- */

/* A socket device's host side: the unix sockets, and the loop they run on. */
struct vsock_host {
    struct vsock_unix *unix_side;
    struct event_loop *el;
};

static vmk_result vsock_open(const struct device_host_env *env, const vmk_config *cfg,
                             unsigned index, struct device_instance *out, vmk_error **err)
{
    const vmk_socket_device *sd = vmk_config_get_socket_device(cfg, index);
    char what[32];
    snprintf(what, sizeof(what), "socket device %u", index + 1);
    unsigned n = vmk_virtio_socket_device_port_count(sd);
    struct vsock_unix_port *ports = calloc(n ? n : 1, sizeof(*ports));
    struct vsock_host *h = calloc(1, sizeof(*h));
    if (!ports || !h) {
        free(ports);
        free(h);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    }
    for (unsigned i = 0; i < n; i++)
        vmk_virtio_socket_device_get_port(sd, i, &ports[i].port, &ports[i].path, &ports[i].listen);
    struct vsock_unix_params p = { .listener = env->socket_listener,
                                   .listener_ctx = env->socket_listener_ctx,
                                   .uds_path = vmk_virtio_socket_device_get_unix_socket_path(sd),
                                   .ports = ports,
                                   .port_count = n };
    vmk_result r = vsock_unix_open(&p, what, &h->unix_side, err);
    free(ports);
    if (r != VMK_OK) {
        free(h);
        return r;
    }
    struct virtio_vsock_params vp = { .guest_cid = vmk_virtio_socket_device_get_guest_cid(sd),
                                      .el = env->el,
                                      .host = vsock_unix_ops(),
                                      .host_ctx = h->unix_side };
    out->dev = virtio_vsock_new(&vp);
    if (!out->dev) {
        vsock_unix_close(h->unix_side);
        free(h);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    }
    h->el = env->el;
    out->host = h;
    return VMK_OK;
}

static vmk_result vsock_connect(struct device_instance *inst, vmk_error **err)
{
    struct vsock_host *h = inst->host;
    struct vsock_guest_connector c = virtio_vsock_connector(inst->dev);
    int e = vsock_unix_start(h->unix_side, h->el, &c);
    if (e < 0)
        return vmk_fail(err, VMK_ERR_IO, -e, "socket device %u: cannot listen: %s", inst->index + 1,
                        strerror(-e));
    return VMK_OK;
}

static int vsock_socket_connect(struct device_instance *inst, int fd, uint32_t port,
                                struct vsock_pending *p)
{
    return virtio_vsock_connect_guest(inst->dev, fd, port, p);
}

static void vsock_close(struct device_instance *inst)
{
    struct vsock_host *h = inst->host;
    destroy_device(inst); /* first: its connections may tell the unix side they ended */
    if (h)
        vsock_unix_close(h->unix_side);
    free(h);
    inst->host = NULL;
}

const struct device_kind device_kind_virtio_socket = {
    .name = "socket device",
    .pci_class = 0x078000, /* other communication controller, as QEMU's vhost-vsock-pci */
    .count = vmk_config_socket_device_count,
    .open = vsock_open,
    .connect = vsock_connect,
    .socket_connect = vsock_socket_connect,
    .close = vsock_close,
};

/* ---- virtio-fs: the library's own FUSE server over the share's directories ---- */

struct fs_host {
    struct fuse_server *server;
    struct translator_share translator; /* a translator share's files */
};

static size_t fs_handle(void *ctx, const struct iovec *in, unsigned in_n, const struct iovec *out,
                        unsigned out_n)
{
    return fuse_server_handle(ctx, in, in_n, out, out_n);
}

static void fs_reset(void *ctx)
{
    fuse_server_reset(ctx);
}

static void fs_host_free(struct fs_host *h)
{
    if (!h)
        return;
    fuse_server_free(h->server);
    translator_share_fini(&h->translator);
    free(h);
}

static const enum fuse_cache_mode fs_cache_modes[] = {
    [VMK_FILE_SYSTEM_CACHE_AUTO] = FUSE_CACHE_AUTO,
    [VMK_FILE_SYSTEM_CACHE_NEVER] = FUSE_CACHE_NEVER,
    [VMK_FILE_SYSTEM_CACHE_ALWAYS] = FUSE_CACHE_ALWAYS,
};

static vmk_result fs_open(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                          struct device_instance *out, vmk_error **err)
{
    const vmk_directory_sharing_device *sd = vmk_config_get_directory_sharing_device(cfg, index);
    const vmk_directory_share *share = vmk_virtio_file_system_device_get_share(sd);
    char what[48];
    snprintf(what, sizeof(what), "directory sharing device %u", index + 1);
    struct fs_host *h = calloc(1, sizeof(*h));
    unsigned n = vmk_directory_share_directory_count(share);
    struct fuse_share_entry *entries = calloc(n ? n : 1, sizeof(*entries));
    if (!h || !entries) {
        free(h);
        free(entries);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "%s: out of memory", what);
    }
    struct fuse_server_params p = { .entries = entries, .entry_count = n, .what = what };
    if (vmk_directory_share_get_kind(share) == VMK_DIRECTORY_SHARE_LINUX_TRANSLATOR) {
        vmk_result r = translator_share_load(&h->translator, NULL, err);
        if (r != VMK_OK) {
            free(entries);
            free(h);
            return r;
        }
        p.entries = h->translator.entries;
        p.entry_count = h->translator.count;
    }
    for (unsigned i = 0; i < n; i++) {
        const char *name = NULL;
        const vmk_shared_directory *dir = vmk_directory_share_get_directory(share, i, &name);
        entries[i] = (struct fuse_share_entry){
            .name = name,
            .path = vmk_shared_directory_get_path(dir),
            .read_only = vmk_shared_directory_is_read_only(dir),
        };
    }
    vmk_file_system_cache_mode cache = vmk_virtio_file_system_device_get_cache_mode(sd);
    p.cache = (unsigned)cache < sizeof(fs_cache_modes) / sizeof(fs_cache_modes[0])
                  ? fs_cache_modes[cache]
                  : FUSE_CACHE_AUTO;
    if (vmk_virtio_file_system_device_get_ownership(sd, &p.squash_uid, &p.squash_gid) ==
        VMK_FILE_SYSTEM_OWNERSHIP_SQUASH)
        p.ownership = FUSE_OWNERSHIP_SQUASH;
    h->server = fuse_server_new(&p, err);
    free(entries);
    if (!h->server) {
        fs_host_free(h);
        return err && *err ? vmk_error_code(*err) : VMK_ERR_IO;
    }
    struct virtio_fs_backend be = { .handle = fs_handle, .reset = fs_reset, .ctx = h->server };
    out->dev = virtio_fs_new(vmk_virtio_file_system_device_get_tag(sd),
                             vmk_virtio_file_system_device_get_request_queue_count(sd), &be, err);
    if (!out->dev) {
        fs_host_free(h);
        return err && *err ? vmk_error_code(*err) : VMK_ERR_NO_MEMORY;
    }
    out->host = h;
    return VMK_OK;
}

static void fs_close(struct device_instance *inst)
{
    destroy_device(inst); /* first: its workers call the server */
    fs_host_free(inst->host);
    inst->host = NULL;
}

const struct device_kind device_kind_virtio_file_system = {
    .name = "directory sharing device",
    .pci_class = 0x018000, /* other mass storage controller, as QEMU's vhost-user-fs-pci */
    .count = vmk_config_directory_sharing_device_count,
    .open = fs_open,
    .close = fs_close,
};

/* ---- virtio-gpu and virtio-input: the displays, the keyboards and pointers ---- */

static vmk_result gpu_open(const struct device_host_env *env, const vmk_config *cfg, unsigned index,
                           struct device_instance *out, vmk_error **err)
{
    const vmk_graphics_device *gd = vmk_config_get_graphics_device(cfg, index);
    struct virtio_gpu_params p = { .num_scanouts = vmk_graphics_device_scanout_count(gd) };
    if (p.num_scanouts > VIRTIO_GPU_MAX_SCANOUTS_)
        p.num_scanouts = VIRTIO_GPU_MAX_SCANOUTS_; /* validation refused more */
    for (unsigned i = 0; i < p.num_scanouts; i++)
        vmk_graphics_device_get_scanout(gd, i, &p.width[i], &p.height[i]);
    if (env->display_sink)
        p.sink = *env->display_sink;
    out->dev = virtio_gpu_new(&p, err);
    return out->dev ? VMK_OK : err && *err ? vmk_error_code(*err) : VMK_ERR_NO_MEMORY;
}

static int gpu_display_reconfigure(struct device_instance *inst, unsigned scanout, uint32_t w,
                                   uint32_t h)
{
    return virtio_gpu_reconfigure(inst->dev, scanout, w, h);
}

static int gpu_display_read(struct device_instance *inst, unsigned scanout, void *buf, size_t len,
                            uint32_t *w, uint32_t *h)
{
    return virtio_gpu_read_scanout(inst->dev, scanout, buf, len, w, h);
}

const struct device_kind device_kind_virtio_graphics = {
    .name = "graphics device",
    .pci_class = 0x038000, /* other display controller, as QEMU's virtio-gpu-pci */
    .not_served = "vhost-user-gpu front ends need a display protocol of their own",
    .count = vmk_config_graphics_device_count,
    .open = gpu_open,
    .display_reconfigure = gpu_display_reconfigure,
    .display_read = gpu_display_read,
    .close = destroy_device,
};

static vmk_result input_open(enum virtio_input_kind kind, struct device_instance *out,
                             vmk_error **err)
{
    out->dev = virtio_input_new(kind, NULL, err);
    return out->dev ? VMK_OK : err && *err ? vmk_error_code(*err) : VMK_ERR_NO_MEMORY;
}

static vmk_result keyboard_open(const struct device_host_env *env, const vmk_config *cfg,
                                unsigned index, struct device_instance *out, vmk_error **err)
{
    return input_open(VIRTIO_INPUT_KEYBOARD, out, err);
}

static vmk_result pointing_open(const struct device_host_env *env, const vmk_config *cfg,
                                unsigned index, struct device_instance *out, vmk_error **err)
{
    return input_open(VIRTIO_INPUT_TABLET, out, err);
}

/* USB keyboards sit behind the xHCI controller (usb_bus.c). */
static unsigned virtio_keyboard_count(const vmk_config *cfg)
{
    return device_keyboard_count(cfg, VMK_KEYBOARD_VIRTIO);
}

static int input_send(struct device_instance *inst, const struct virtio_input_event *ev, unsigned n)
{
    return virtio_input_send(inst->dev, ev, n);
}

const struct device_kind device_kind_virtio_keyboard = {
    .name = "keyboard",
    .pci_class = 0x098000, /* other input controller, as QEMU's virtio-keyboard-pci */
    .count = virtio_keyboard_count,
    .open = keyboard_open,
    .input_send = input_send,
    .close = destroy_device,
};

const struct device_kind device_kind_virtio_pointing = {
    .name = "pointing device",
    .pci_class = 0x098000,
    .count = vmk_config_pointing_device_count,
    .open = pointing_open,
    .input_send = input_send,
    .close = destroy_device,
};

/* In bus order. One per line (clang-format off): a table reads better as a column. */
// clang-format off
const struct device_kind *const device_table[] = {
    &device_kind_virtio_block,
    &device_kind_virtio_network,
    &device_kind_virtio_entropy,
    &device_kind_virtio_console,
    &device_kind_virtio_balloon,
    &device_kind_virtio_socket,
    &device_kind_virtio_file_system,
    &device_kind_virtio_graphics,
    &device_kind_virtio_keyboard,
    &device_kind_virtio_pointing,
    NULL,
};
// clang-format on
