/* From a request to a vmk_config, through the public API only; and where the default guest
 * is. Values the library judges (paths, identifiers, names) are left to vmk_config_validate,
 * so the command line and the library never disagree. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MIB                 (UINT64_C(1) << 20)
/* How far above the binary's directory to look for the source tree's guest/out. */
#define GUEST_SEARCH_LEVELS 4

/* ---- The default guest -------------------------------------------------------- */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Returns 1 with both paths set when dir holds the guest, 0 when not, -1 when out of
 * memory. */
static int guest_in(const char *dir, char **kernel, char **initrd)
{
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    char *k = NULL, *i = NULL;
    if (asprintf(&k, "%s%svmlinuz", dir, sep) < 0)
        return -1;
    if (asprintf(&i, "%s%sinitramfs.img", dir, sep) < 0) {
        free(k);
        return -1;
    }
    if (is_file(k) && is_file(i)) {
        *kernel = k;
        *initrd = i;
        return 1;
    }
    free(k);
    free(i);
    return 0;
}

/* Cuts the last component off an absolute path in place ("/a/b" -> "/a", "/a" -> "/"). */
static void cut_last(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return;
    if (slash == path)
        slash[1] = '\0';
    else
        *slash = '\0';
}

#define NO_GUEST_HINT "build it with guest/build.sh or pass --kernel"

int cli_find_default_guest(const char *exe_path, char **kernel, char **initrd, char *err,
                           size_t errlen)
{
    *kernel = NULL;
    *initrd = NULL;
    const char *env = getenv("VMKIT_GUEST_DIR");
    if (env && *env) {
        /* An explicit directory is the only place: falling back would hide a typo. */
        int found = guest_in(env, kernel, initrd);
        if (found < 0)
            return cli_out_of_memory(err, errlen);
        if (found)
            return 0;
        return cli_fail(CLI_EXIT_ERROR, err, errlen,
                        "no default guest found (looked for vmlinuz and initramfs.img in "
                        "$VMKIT_GUEST_DIR=%s); " NO_GUEST_HINT,
                        env);
    }
    if (!exe_path || exe_path[0] != '/')
        return cli_fail(CLI_EXIT_ERROR, err, errlen,
                        "no default guest found (the program's own path is unknown; set "
                        "VMKIT_GUEST_DIR); " NO_GUEST_HINT);

    int rc = 0, found = 0;
    char *exe_dir = strdup(exe_path), *dir = NULL, *candidate = NULL;
    if (!exe_dir)
        return cli_out_of_memory(err, errlen);
    cut_last(exe_dir);
    dir = strdup(exe_dir);
    if (!dir)
        goto oom;
    cut_last(dir);
    if (asprintf(&candidate, "%s%sshare/vmkit/guest", dir, strcmp(dir, "/") ? "/" : "") < 0) {
        candidate = NULL;
        goto oom;
    }
    found = guest_in(candidate, kernel, initrd);
    /* The build tree: <repo>/build/tools/vmkit/vmkit finds <repo>/guest/out. */
    strcpy(dir, exe_dir);
    for (int level = 0; !found && level <= GUEST_SEARCH_LEVELS; level++) {
        char *out_dir = NULL;
        if (asprintf(&out_dir, "%s%sguest/out", dir, strcmp(dir, "/") ? "/" : "") < 0)
            goto oom;
        found = guest_in(out_dir, kernel, initrd);
        free(out_dir);
        cut_last(dir);
    }
    if (found < 0)
        goto oom;
    if (!found)
        rc = cli_fail(CLI_EXIT_ERROR, err, errlen,
                      "no default guest found (looked for vmlinuz and initramfs.img in %s and in "
                      "guest/out of %s and up to %d levels above); " NO_GUEST_HINT,
                      candidate, exe_dir, GUEST_SEARCH_LEVELS);
    goto out;
oom:
    rc = cli_out_of_memory(err, errlen);
out:
    free(candidate);
    free(dir);
    free(exe_dir);
    return rc;
}

/* ---- The machine -------------------------------------------------------------- */

vmk_storage_device *cli_storage_device_new(const struct cli_disk *d)
{
    vmk_storage_attachment *att = vmk_disk_image_attachment_new(d->path, d->read_only);
    if (!att)
        return NULL;
    vmk_disk_image_attachment_set_caching_mode(att, d->caching);
    vmk_disk_image_attachment_set_synchronization_mode(att, d->sync);
    /* Both own att, even on failure. */
    vmk_storage_device *dev =
        d->usb ? vmk_usb_mass_storage_device_new(att) : vmk_virtio_block_device_new(att);
    if (!dev || (!d->usb && (vmk_virtio_block_device_set_identifier(dev, d->id) != VMK_OK ||
                             vmk_virtio_block_device_set_queue_count(dev, d->queues) != VMK_OK))) {
        vmk_storage_device_free(dev);
        return NULL;
    }
    return dev;
}

static int add_disk(vmk_config *cfg, const struct cli_disk *d)
{
    vmk_storage_device *dev = cli_storage_device_new(d);
    return dev && vmk_config_add_storage_device(cfg, dev) == VMK_OK ? 0 : -1; /* owns dev */
}

/* One port's host side. */
static vmk_serial_attachment *port_attachment(enum cli_serial_kind kind, const char *path,
                                              bool append)
{
    switch (kind) {
    case CLI_SERIAL_STDIO: return vmk_fd_serial_attachment_new(0, 1);
    case CLI_SERIAL_FILE: return vmk_file_serial_attachment_new(path, append);
    case CLI_SERIAL_SOCKET: return vmk_socket_serial_attachment_new(path);
    case CLI_SERIAL_PTY: return vmk_pty_serial_attachment_new();
    }
    return NULL;
}

void cli_port_label(const struct cli_request *req, bool console, unsigned index, char *buf,
                    size_t len)
{
    if (!console) {
        snprintf(buf, len, "COM%u", index + 1);
        return;
    }
    const struct cli_console_port *v =
        index < req->console_port_count ? &req->console_port[index] : NULL;
    bool named = v && v->name, hvc = v && v->console;
    snprintf(buf, len, "console port %u%s%s%s%s%s", index + 1, named || hvc ? " (" : "",
             named ? v->name : "", named && hvc ? ", " : "", hvc ? "hvc0" : "",
             named || hvc ? ")" : "");
}

static vmk_network_attachment *net_attachment(const struct cli_net *n)
{
    vmk_network_attachment *att = NULL;
    switch (n->kind) {
    case CLI_NET_NAT:
        att = vmk_nat_network_attachment_new();
        for (unsigned i = 0; att && i < n->forward_count; i++) {
            const struct cli_forward *f = &n->forward[i];
            if (vmk_nat_network_attachment_add_port_forward(
                    att, f->udp ? VMK_PORT_FORWARD_UDP : VMK_PORT_FORWARD_TCP, f->host_address,
                    f->host_port, f->guest_port) != VMK_OK) {
                vmk_network_attachment_free(att);
                return NULL;
            }
        }
        return att;
    case CLI_NET_FD: att = vmk_file_handle_network_attachment_new(n->fd); break;
    case CLI_NET_UNIXGRAM:
        att = vmk_unix_datagram_network_attachment_new(n->path);
        if (att && n->vfkit_magic &&
            vmk_unix_datagram_network_attachment_set_vfkit_magic(att, true) != VMK_OK) {
            vmk_network_attachment_free(att);
            return NULL;
        }
        break;
    case CLI_NET_UNIXSTREAM: att = vmk_unix_stream_network_attachment_new(n->path); break;
    case CLI_NET_TAP: return vmk_tap_network_attachment_new(n->path);
    }
    /* A socket carries frames as large as the MTU the guest is offered. */
    if (att && n->mtu > 1500 && vmk_network_attachment_set_mtu(att, n->mtu) != VMK_OK) {
        vmk_network_attachment_free(att);
        return NULL;
    }
    return att;
}

static int add_net(vmk_config *cfg, const struct cli_net *n)
{
    vmk_network_device *dev = vmk_virtio_network_device_new(net_attachment(n));
    if (!dev)
        return -1;
    if ((n->have_mac && vmk_virtio_network_device_set_mac_address(dev, &n->mac) != VMK_OK) ||
        (n->mtu && vmk_virtio_network_device_set_mtu(dev, n->mtu) != VMK_OK) ||
        vmk_virtio_network_device_set_offloading(dev, !n->no_offloading) != VMK_OK) {
        vmk_network_device_free(dev);
        return -1;
    }
    return vmk_config_add_network_device(cfg, dev) == VMK_OK ? 0 : -1; /* owns dev */
}

/* Whether f becomes a device: a rosetta,ignoreIfMissing without qemu-user-static does not. */
static bool fs_wanted(const struct cli_fs *f)
{
    return !f->translator || !f->ignore_if_missing ||
           vmk_linux_translator_availability() == VMK_TRANSLATOR_INSTALLED;
}

/* One directory sharing device: 0, -1 when out of memory, or an exit status with err set. */
static int add_fs(vmk_config *cfg, const struct cli_fs *f, char *err, size_t errlen)
{
    if (!fs_wanted(f))
        return 0;
    vmk_directory_share *share = NULL;
    if (f->translator) {
        vmk_error *e = NULL;
        share = vmk_linux_translator_directory_share_new(&e);
        if (!share) {
            int rc = e && vmk_error_code(e) != VMK_ERR_NO_MEMORY
                         ? cli_fail(CLI_EXIT_ERROR, err, errlen,
                                    "--device rosetta,mountTag=%s: %s (or add ignoreIfMissing)",
                                    f->tag, vmk_error_message(e))
                         : -1;
            vmk_error_free(e);
            return rc;
        }
    } else if (f->path) {
        share = vmk_single_directory_share_new(vmk_shared_directory_new(f->path, f->read_only));
    } else {
        share = vmk_multiple_directory_share_new();
        for (unsigned i = 0; share && i < f->dir_count; i++) {
            const struct cli_fs_dir *d = &f->dir[i];
            /* The parser judged the names already; only memory can fail here. */
            if (vmk_multiple_directory_share_add_directory(
                    share, d->name, vmk_shared_directory_new(d->path, d->read_only || f->read_only),
                    NULL) != VMK_OK) {
                vmk_directory_share_free(share);
                share = NULL;
            }
        }
    }
    vmk_directory_sharing_device *dev = vmk_virtio_file_system_device_new(f->tag);
    if (!share || !dev || vmk_virtio_file_system_device_set_share(dev, share) != VMK_OK ||
        vmk_virtio_file_system_device_set_cache_mode(dev, f->cache) != VMK_OK ||
        vmk_virtio_file_system_device_set_ownership(dev, f->ownership, f->uid, f->gid) != VMK_OK ||
        (f->queues &&
         vmk_virtio_file_system_device_set_request_queue_count(dev, f->queues) != VMK_OK)) {
        if (!dev)
            vmk_directory_share_free(share);
        vmk_directory_sharing_device_free(dev); /* owns share once set, even on failure */
        return -1;
    }
    return vmk_config_add_directory_sharing_device(cfg, dev) == VMK_OK ? 0 : -1; /* owns dev */
}

/* The devices but the directory sharing ones. -1 when out of memory. */
static int add_known_devices(vmk_config *cfg, const struct cli_request *req)
{
    for (unsigned i = 0; i < req->disk_count; i++)
        if (add_disk(cfg, &req->disk[i]) < 0)
            return -1;
    for (unsigned i = 0; i < req->net_count; i++)
        if (add_net(cfg, &req->net[i]) < 0)
            return -1;
    if (req->rng) {
        vmk_entropy_device *rng = vmk_virtio_entropy_device_new();
        if (!rng || (req->rng_rate && vmk_virtio_entropy_device_set_rate(rng, req->rng_rate)) ||
            vmk_config_add_entropy_device(cfg, rng) != VMK_OK) /* owns rng, even on failure */
            return -1;
    }
    if (req->balloon) {
        vmk_memory_balloon_device *b = vmk_virtio_traditional_memory_balloon_device_new();
        if (!b ||
            vmk_virtio_traditional_memory_balloon_device_set_deflate_on_oom(
                b, req->balloon_deflate_on_oom) != VMK_OK ||
            vmk_virtio_traditional_memory_balloon_device_set_free_page_reporting(
                b, req->balloon_free_page_reporting) != VMK_OK ||
            vmk_config_add_memory_balloon_device(cfg, b) != VMK_OK) /* owns b, even on failure */
            return -1;
    }
    if (req->vsock) {
        vmk_socket_device *s = vmk_virtio_socket_device_new();
        if (!s)
            return -1;
        bool ok = (!req->vsock_cid ||
                   vmk_virtio_socket_device_set_guest_cid(s, req->vsock_cid) == VMK_OK) &&
                  vmk_virtio_socket_device_set_unix_socket_path(s, req->vsock_uds_path) == VMK_OK;
        for (unsigned i = 0; ok && i < req->vsock_port_count; i++)
            ok = vmk_virtio_socket_device_add_port(s, req->vsock_port[i].port,
                                                   req->vsock_port[i].path,
                                                   req->vsock_port[i].listen) == VMK_OK;
        if (!ok) {
            vmk_socket_device_free(s);
            return -1;
        }
        if (vmk_config_add_socket_device(cfg, s) != VMK_OK) /* owns s, even on failure */
            return -1;
    }
    if (req->gpu) {
        vmk_graphics_device *gpu = vmk_virtio_graphics_device_new();
        bool ok = gpu != NULL;
        for (unsigned i = 0; ok && i < req->gpu_scanout_count; i++)
            ok = vmk_virtio_graphics_device_add_scanout(gpu, req->gpu_scanout[i].width,
                                                        req->gpu_scanout[i].height) == VMK_OK;
        if (!ok) {
            vmk_graphics_device_free(gpu);
            return -1;
        }
        if (vmk_config_add_graphics_device(cfg, gpu) != VMK_OK) /* owns gpu, even on failure */
            return -1;
    }
    /* USB keyboards first: the first keyboard is the one keys go to, and firmware reads only
     * a USB one. */
    for (unsigned i = 0; i < req->usb_keyboard_count; i++)
        if (vmk_config_add_keyboard(cfg, vmk_usb_keyboard_new()) != VMK_OK) /* NULL fails */
            return -1;
    for (unsigned i = 0; i < req->keyboard_count; i++)
        if (vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new()) != VMK_OK)
            return -1;
    for (unsigned i = 0; i < req->pointing_count; i++)
        if (vmk_config_add_pointing_device(
                cfg, vmk_virtio_screen_coordinate_pointing_device_new()) != VMK_OK)
            return -1;
    if (req->console_port_count) {
        vmk_console_device *dev = vmk_virtio_console_device_new();
        if (!dev)
            return -1;
        for (unsigned i = 0; i < req->console_port_count; i++) {
            const struct cli_console_port *p = &req->console_port[i];
            /* Owns the attachment, even on failure (and NULL fails). */
            if (vmk_virtio_console_device_add_port(dev, p->name, p->console,
                                                   port_attachment(p->kind, p->path, p->append)) !=
                VMK_OK) {
                vmk_console_device_free(dev);
                return -1;
            }
        }
        if (vmk_config_add_console_device(cfg, dev) != VMK_OK) /* owns dev, even on failure */
            return -1;
    }
    return 0;
}

/* The devices of req (disks, network devices, the entropy device, the console device with its
 * ports, the graphics device, keyboards and pointing devices, the directory sharing devices):
 * what run and serve-device both build. 0, or an exit status with err set. */
static int add_devices(vmk_config *cfg, const struct cli_request *req, char *err, size_t errlen)
{
    int rc = 0;
    for (unsigned i = 0; !rc && i < req->fs_count; i++)
        rc = add_fs(cfg, &req->fs[i], err, errlen);
    if (rc)
        return rc > 0 ? rc : cli_out_of_memory(err, errlen);
    if (add_known_devices(cfg, req) < 0)
        return cli_out_of_memory(err, errlen);
    return 0;
}

/* The default guest's command line: CLI_DEFAULT_GUEST_CMDLINE, " vmkit.mount=TAG,..." naming the
 * directory sharing devices, which its init mounts on /mnt/TAG, and " vmkit.translator=TAG,..."
 * naming translator shares, which it mounts and registers. NULL when out of memory. */
static char *default_guest_cmdline(const struct cli_request *req)
{
    size_t len =
        strlen(CLI_DEFAULT_GUEST_CMDLINE) + sizeof(" vmkit.mount=") + sizeof(" vmkit.translator=");
    for (unsigned i = 0; i < req->fs_count; i++)
        len += strlen(req->fs[i].tag) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, CLI_DEFAULT_GUEST_CMDLINE);
    for (int translator = 0; translator < 2; translator++) {
        const char *sep = translator ? " vmkit.translator=" : " vmkit.mount=";
        for (unsigned i = 0; i < req->fs_count; i++) {
            if (!fs_wanted(&req->fs[i]) || req->fs[i].translator != translator)
                continue;
            strcat(s, sep);
            strcat(s, req->fs[i].tag);
            sep = ",";
        }
    }
    return s;
}

/* --bootloader efi: opens (or first makes) the variable store. A store that cannot be made
 * is the host's problem (status 1), said in one line. */
static int efi_boot_loader(const struct cli_request *req, vmk_boot_loader **out, char *err,
                           size_t errlen)
{
    vmk_error *e = NULL;
    vmk_efi_variable_store *store =
        req->efi_create ? vmk_efi_variable_store_create(req->efi_store, req->efi_overwrite, &e)
                        : vmk_efi_variable_store_open(req->efi_store, &e);
    if (!store) {
        snprintf(err, errlen, "vmkit: %s", e ? vmk_error_message(e) : "out of memory");
        vmk_error_free(e);
        return CLI_EXIT_ERROR;
    }
    vmk_boot_loader *bl = vmk_efi_boot_loader_new();
    if (!bl || vmk_efi_boot_loader_set_variable_store(bl, store) != VMK_OK ||
        (req->efi_firmware && vmk_efi_boot_loader_set_firmware(bl, req->efi_firmware) != VMK_OK)) {
        if (!bl)
            vmk_efi_variable_store_free(store);
        vmk_boot_loader_free(bl);
        snprintf(err, errlen, "vmkit: out of memory");
        return CLI_EXIT_ERROR;
    }
    *out = bl;
    return 0;
}

int cli_build_config(const struct cli_request *req, const char *exe_path, vmk_config **cfg_out,
                     char *err, size_t errlen)
{
    *cfg_out = NULL;
    char *guest_kernel = NULL, *guest_initrd = NULL, *guest_cmdline = NULL;
    const char *kernel = req->kernel, *initrd = req->initrd, *cmdline = req->cmdline;
    vmk_config *cfg = NULL;
    int rc = 0;

    if (!kernel && !req->efi) {
        rc = cli_find_default_guest(exe_path, &guest_kernel, &guest_initrd, err, errlen);
        if (rc)
            return rc;
        kernel = guest_kernel;
        initrd = guest_initrd;
        if (!cmdline) {
            if (!(guest_cmdline = default_guest_cmdline(req)))
                goto oom;
            cmdline = guest_cmdline;
        }
    }
    cfg = vmk_config_new();
    vmk_boot_loader *bl = NULL;
    if (req->efi) {
        rc = efi_boot_loader(req, &bl, err, errlen);
        if (rc)
            goto fail;
    } else {
        bl = vmk_linux_boot_loader_new(kernel);
        if (bl && (vmk_linux_boot_loader_set_initrd(bl, initrd) != VMK_OK ||
                   vmk_linux_boot_loader_set_command_line(bl, cmdline) != VMK_OK)) {
            vmk_boot_loader_free(bl);
            bl = NULL;
        }
    }
    if (!cfg || !bl || vmk_config_set_cpu_count(cfg, req->cpus) != VMK_OK ||
        vmk_config_set_memory_size(cfg, req->memory_mib * MIB) != VMK_OK) {
        vmk_boot_loader_free(bl);
        goto oom;
    }
    if (vmk_config_set_boot_loader(cfg, bl) != VMK_OK) /* owns bl from here, even on failure */
        goto oom;

    /* The default COM1 takes the terminal, unless a console port has it. */
    bool default_com1 = req->serial_count == 0 && !cli_stdio_taken(req);
    unsigned ports = default_com1 ? 1 : req->serial_count;
    for (unsigned i = 0; i < ports; i++) {
        const struct cli_serial stdio = { .kind = CLI_SERIAL_STDIO };
        const struct cli_serial *port = default_com1 ? &stdio : &req->serial[i];
        /* Owns the attachment from here (and a NULL one fails). */
        if (vmk_config_add_serial_port(
                cfg, port_attachment(port->kind, port->path, port->append)) != VMK_OK)
            goto oom;
    }
    rc = add_devices(cfg, req, err, errlen);
    if (rc)
        goto fail;
    /* usb-attach on the control socket needs a controller to plug drives into. */
    if (req->control_socket && vmk_config_set_usb_controller(cfg, true) != VMK_OK)
        goto oom;
    /* The default guest is on the network unless told otherwise: vmkit's NAT, which its init
     * asks for a lease. Not firmware: with a NIC, OVMF tries PXE and HTTP boot (minutes)
     * before its shell; --device virtio-net adds one. */
    if (!req->kernel && !req->efi && req->net_count == 0 && !req->no_network) {
        struct cli_net nat = { .kind = CLI_NET_NAT, .fd = -1 };
        if (add_net(cfg, &nat) < 0)
            goto oom;
    }
    *cfg_out = cfg;
    cfg = NULL;
    goto out;
oom:
    rc = cli_out_of_memory(err, errlen);
fail:
    vmk_config_free(cfg);
out:
    free(guest_kernel);
    free(guest_initrd);
    free(guest_cmdline);
    return rc;
}

int cli_build_serve_config(const struct cli_request *req, vmk_config **cfg_out, char *err,
                           size_t errlen)
{
    *cfg_out = NULL;
    vmk_config *cfg = vmk_config_new();
    if (!cfg)
        return cli_out_of_memory(err, errlen);
    int rc = add_devices(cfg, req, err, errlen);
    if (rc) {
        vmk_config_free(cfg);
        return rc;
    }
    *cfg_out = cfg;
    return 0;
}
