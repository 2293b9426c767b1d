/* Device specs, one parser per device type, shared by `run --device` and `serve-device`:
 *   serial,stdio|file=PATH[,append]|pty|socket=PATH
 *   virtio-blk,path=PATH[,readonly][,cache=MODE][,sync=MODE][,id=SERIAL][,queues=N]
 *   usb-mass-storage,path=PATH[,readonly][,cache=MODE][,sync=MODE]
 *   usb-keyboard
 *   virtio-rng[,rate=BYTES_PER_SEC]
 *   virtio-console,stdio|file=PATH[,append]|pty|socket=PATH[,name=NAME][,console]
 *   virtio-net[,nat][,hostfwd=...]|fd=N|unixSocketPath=PATH|type=unixgram|unixstream,path=PATH
 *             |fd=N[,vfkitMagic=on|off]|tap=IFNAME [,mac=M][,mtu=N][,offloading=on|off]
 *   virtio-balloon[,deflate-on-oom][,free-page-reporting][,target=MIB]
 *   virtio-vsock[,port=N,socketURL=PATH[,listen|connect]][,udsPath=PATH][,cid=N]
 *   virtio-fs,mountTag=TAG,sharedDir=PATH|dir=NAME:PATH[:ro]...[,readonly][,cache=MODE]
 *            [,ownership=identity|squash][,uid=N][,gid=N][,queues=N]
 *   rosetta,mountTag=TAG[,ignoreIfMissing]
 *   virtio-gpu[,width=W][,height=H][,scanout=WxH]...
 *   virtio-input,keyboard|pointing
 * (virtio-serial, vfkit's word, is virtio-console.) Limits come from the library. */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Grows a request array by one zeroed element; NULL when out of memory. */
static void *push(void *array, unsigned *count, size_t size)
{
    char *a = realloc(*(void **)array, (*count + 1) * size);
    if (!a)
        return NULL;
    memset(a + *count * size, 0, size);
    *(void **)array = a;
    return a + (*count)++ * size;
}

struct choice {
    const char *name;
    int value;
};

static const struct choice cache_choices[] = {
    { "auto", VMK_DISK_CACHING_AUTOMATIC },
    { "cached", VMK_DISK_CACHING_CACHED },
    { "uncached", VMK_DISK_CACHING_UNCACHED },
};

static const struct choice sync_choices[] = {
    { "full", VMK_DISK_SYNC_FULL },
    { "fsync", VMK_DISK_SYNC_FSYNC },
    { "none", VMK_DISK_SYNC_NONE },
};

/* Looks val up among n choices; the message lists them all. */
static int parse_choice(const char *ctx, const char *key, const char *val,
                        const struct choice *choices, size_t n, int *out, char *err, size_t errlen)
{
    char names[128] = "", *p = names;
    for (size_t i = 0; i < n; i++) {
        if (val && !strcmp(val, choices[i].name)) {
            *out = choices[i].value;
            return 0;
        }
        p += snprintf(p, sizeof(names) - (size_t)(p - names), "%s%s", i ? ", " : "",
                      choices[i].name);
    }
    if (!val)
        return cli_usage_error(err, errlen, "%s: %s needs a value (one of %s)", ctx, key, names);
    return cli_usage_error(err, errlen, "%s: %s '%s' is not one of %s", ctx, key, val, names);
}

int cli_take_flag(const char *ctx, const char *key, const char *val, bool *flag, char *err,
                  size_t errlen)
{
    if (val)
        return cli_usage_error(err, errlen, "%s: %s takes no value (got '%s')", ctx, key, val);
    if (*flag)
        return cli_usage_error(err, errlen, "%s: %s given twice", ctx, key);
    *flag = true;
    return 0;
}

int cli_take_string(const char *ctx, const char *key, char **val, char **slot, const char *metavar,
                    char *err, size_t errlen)
{
    if (!*val || !**val)
        return cli_usage_error(err, errlen, "%s: %s= needs a value (%s=%s)", ctx, key, key,
                               metavar);
    if (*slot)
        return cli_usage_error(err, errlen, "%s: %s given twice", ctx, key);
    *slot = *val;
    *val = NULL;
    return 0;
}

static int take_number(const char *ctx, const char *key, const char *val, bool *seen, uint64_t min,
                       uint64_t max, const char *unit, uint64_t *out, char *err, size_t errlen)
{
    if (*seen)
        return cli_usage_error(err, errlen, "%s: %s given twice", ctx, key);
    if (!val)
        return cli_usage_error(err, errlen, "%s: %s needs a value (%s=N)", ctx, key, key);
    char flag[96];
    snprintf(flag, sizeof(flag), "%s: %s", ctx, key);
    *seen = true;
    return cli_parse_number(flag, val, min, max, unit, out, err, errlen);
}

/* ---- virtio-blk, usb-mass-storage ---- */

#define VIRTIO_BLK_KEYS  "path, readonly, cache, sync, id, queues"
#define USB_STORAGE_KEYS "path, readonly, cache, sync"

/* A disk's keys into *d (usb: the attachment's keys only); on failure the caller frees d's
 * strings. */
static int parse_disk_keys(struct kv_iter *it, bool usb, struct cli_disk *d, char *err,
                           size_t errlen)
{
    const char *ctx = it->ctx;
    *d = (struct cli_disk){ .caching = VMK_DISK_CACHING_AUTOMATIC,
                            .sync = VMK_DISK_SYNC_FULL,
                            .usb = usb };
    bool have_cache = false, have_sync = false, have_queues = false;
    char *key = NULL, *val = NULL;
    int rc = 0;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        int mode = 0;
        uint64_t n = 0;
        if (!strcmp(key, "readonly")) {
            rc = cli_take_flag(ctx, key, val, &d->read_only, err, errlen);
        } else if (!strcmp(key, "path")) {
            rc = cli_take_string(ctx, key, &val, &d->path, "PATH", err, errlen);
        } else if (!strcmp(key, "id") && !usb) {
            rc = cli_take_string(ctx, key, &val, &d->id, "SERIAL", err, errlen);
        } else if (!strcmp(key, "cache") || !strcmp(key, "sync")) {
            bool is_cache = key[0] == 'c';
            bool *seen = is_cache ? &have_cache : &have_sync;
            if (*seen) {
                rc = cli_usage_error(err, errlen, "%s: %s given twice", ctx, key);
                break;
            }
            rc = is_cache ? parse_choice(ctx, key, val, cache_choices,
                                         sizeof(cache_choices) / sizeof(cache_choices[0]), &mode,
                                         err, errlen)
                          : parse_choice(ctx, key, val, sync_choices,
                                         sizeof(sync_choices) / sizeof(sync_choices[0]), &mode, err,
                                         errlen);
            *seen = true;
            if (is_cache)
                d->caching = (vmk_disk_caching_mode)mode;
            else
                d->sync = (vmk_disk_sync_mode)mode;
        } else if (!strcmp(key, "queues") && !usb) {
            rc = take_number(ctx, key, val, &have_queues, 1,
                             vmk_virtio_block_device_max_queue_count(), "", &n, err, errlen);
            d->queues = (unsigned)n;
        } else {
            rc = cli_usage_error(err, errlen,
                                 "%s: unknown key '%s' (known: %s; quote a value that holds "
                                 "commas)",
                                 ctx, key, usb ? USB_STORAGE_KEYS : VIRTIO_BLK_KEYS);
        }
        if (rc)
            break;
    }
    if (!rc && !d->path)
        rc = cli_usage_error(err, errlen, "%s: missing path=PATH in '%s'", ctx, it->whole);
    free(key);
    free(val);
    return rc;
}

/* Drives and keyboards share the xHCI controller's USB 2 ports. */
static int usb_ports_full(const char *ctx, char *err, size_t errlen)
{
    return cli_usage_error(err, errlen,
                           "%s: at most %u USB devices (USB drives and keyboards share the "
                           "controller's ports)",
                           ctx, vmk_config_max_usb_storage_device_count());
}

/* A disk: virtio-blk, or a USB drive. */
static int parse_disk(struct cli_request *req, struct kv_iter *it, bool usb, char *err,
                      size_t errlen)
{
    const char *ctx = it->ctx;
    struct cli_disk d;
    int rc = parse_disk_keys(it, usb, &d, err, errlen);
    if (!rc && req->disk_count >= vmk_config_max_storage_device_count())
        rc = cli_usage_error(err, errlen, "%s: at most %u disks", ctx,
                             vmk_config_max_storage_device_count());
    unsigned usb_count = 0;
    for (unsigned i = 0; i < req->disk_count; i++)
        usb_count += req->disk[i].usb;
    if (!rc && usb && usb_count >= vmk_config_max_usb_storage_device_count())
        rc = cli_usage_error(err, errlen, "%s: at most %u USB drives", ctx,
                             vmk_config_max_usb_storage_device_count());
    if (!rc && usb &&
        usb_count + req->usb_keyboard_count >= vmk_config_max_usb_storage_device_count())
        rc = usb_ports_full(ctx, err, errlen);
    if (!rc) {
        struct cli_disk *slot = push(&req->disk, &req->disk_count, sizeof(*slot));
        if (slot) {
            *slot = d;
            d.path = d.id = NULL;
        } else {
            rc = cli_out_of_memory(err, errlen);
        }
    }
    free(d.path);
    free(d.id);
    return rc;
}

int cli_parse_usb_drive(const char *ctx, const char *keys, struct cli_disk *d, char *err,
                        size_t errlen)
{
    struct kv_iter it = { .ctx = ctx, .whole = keys, .p = keys, .done = !*keys };
    int rc = parse_disk_keys(&it, true, d, err, errlen);
    if (rc) {
        free(d->path);
        d->path = NULL;
    }
    return rc;
}

static int parse_virtio_blk(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    return parse_disk(req, it, false, err, errlen);
}

static int parse_usb_mass_storage(struct cli_request *req, struct kv_iter *it, char *err,
                                  size_t errlen)
{
    int rc = parse_disk(req, it, true, err, errlen);
    /* A USB drive on the command line is a file the user carries around (an installer ISO):
     * one that is not there is a mistyped command line, said before anything starts. */
    const char *path = rc ? NULL : req->disk[req->disk_count - 1].path;
    if (path && access(path, F_OK) != 0)
        rc = cli_usage_error(err, errlen, "%s: path=%s: %s", it->ctx, path, strerror(errno));
    return rc;
}

/* ---- virtio-rng ---- */

static int parse_virtio_rng(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    char *key = NULL, *val = NULL;
    bool have_rate = false;
    uint64_t rate = 0;
    int rc = 0;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "rate"))
            rc = take_number(ctx, key, val, &have_rate, 1, vmk_virtio_entropy_device_max_rate(),
                             " bytes/s", &rate, err, errlen);
        else
            rc = cli_usage_error(err, errlen, "%s: unknown key '%s' (known: rate)", ctx, key);
        if (rc)
            break;
    }
    if (!rc && req->rng)
        rc = cli_usage_error(err, errlen, "%s: given twice (a machine has at most %u)", ctx,
                             vmk_config_max_entropy_device_count());
    if (!rc) {
        req->rng = true;
        req->rng_rate = rate;
    }
    free(key);
    free(val);
    return rc;
}

/* ---- virtio-balloon ---- */

#define VIRTIO_BALLOON_KEYS "deflate-on-oom, free-page-reporting, target"

static int parse_virtio_balloon(struct cli_request *req, struct kv_iter *it, char *err,
                                size_t errlen)
{
    const char *ctx = it->ctx;
    char *key = NULL, *val = NULL;
    bool oom = false, report = false, have_target = false;
    uint64_t target = 0;
    int rc = 0;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "deflate-on-oom"))
            rc = cli_take_flag(ctx, key, val, &oom, err, errlen);
        else if (!strcmp(key, "free-page-reporting"))
            rc = cli_take_flag(ctx, key, val, &report, err, errlen);
        else if (!strcmp(key, "target"))
            rc = take_number(ctx, key, val, &have_target, vmk_config_min_memory_size() >> 20,
                             vmk_config_max_memory_size() >> 20, " MiB", &target, err, errlen);
        else
            rc = cli_usage_error(err, errlen, "%s: unknown key '%s' (known: %s)", ctx, key,
                                 VIRTIO_BALLOON_KEYS);
        if (rc)
            break;
    }
    if (!rc && req->balloon)
        rc = cli_usage_error(err, errlen, "%s: given twice (a machine has at most %u)", ctx,
                             vmk_config_max_memory_balloon_device_count());
    if (!rc) {
        req->balloon = true;
        req->balloon_deflate_on_oom = oom;
        req->balloon_free_page_reporting = report;
        req->balloon_target_mib = target;
    }
    free(key);
    free(val);
    return rc;
}

/* ---- virtio-vsock ---- */

#define VIRTIO_VSOCK_KEYS "port, socketURL, listen, connect, udsPath, cid"

/* Each --device virtio-vsock adds to the machine's one socket device: a port mapping, the
 * Firecracker path, the CID (the last two once). */
static int parse_virtio_vsock(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    char *key = NULL, *val = NULL, *path = NULL, *uds = NULL;
    bool have_port = false, have_cid = false, listen = false, connect = false;
    uint64_t port = 0, cid = 0;
    int rc = 0;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "port"))
            rc = take_number(ctx, key, val, &have_port, 1, 0xfffffffeu, "", &port, err, errlen);
        else if (!strcmp(key, "socketURL"))
            rc = cli_take_string(ctx, key, &val, &path, "PATH", err, errlen);
        else if (!strcmp(key, "udsPath"))
            rc = cli_take_string(ctx, key, &val, &uds, "PATH", err, errlen);
        else if (!strcmp(key, "listen"))
            rc = cli_take_flag(ctx, key, val, &listen, err, errlen);
        else if (!strcmp(key, "connect"))
            rc = cli_take_flag(ctx, key, val, &connect, err, errlen);
        else if (!strcmp(key, "cid"))
            rc = take_number(ctx, key, val, &have_cid, 3, 0xfffffffeu, "", &cid, err, errlen);
        else
            rc = cli_usage_error(err, errlen, "%s: unknown key '%s' (known: %s)", ctx, key,
                                 VIRTIO_VSOCK_KEYS);
        if (rc)
            break;
    }
    if (!rc && have_port != (path != NULL))
        rc = cli_usage_error(err, errlen, "%s: port and socketURL go together", ctx);
    if (!rc && listen && connect)
        rc = cli_usage_error(err, errlen, "%s: listen and connect exclude each other", ctx);
    if (!rc && (listen || connect) && !have_port)
        rc = cli_usage_error(err, errlen, "%s: %s needs port= and socketURL=", ctx,
                             listen ? "listen" : "connect");
    if (!rc && uds && req->vsock_uds_path)
        rc = cli_usage_error(err, errlen, "%s: udsPath given twice", ctx);
    if (!rc && have_cid && req->vsock_cid && req->vsock_cid != cid)
        rc = cli_usage_error(err, errlen, "%s: cid given twice (%u and %llu)", ctx, req->vsock_cid,
                             (unsigned long long)cid);
    for (unsigned i = 0; !rc && have_port && i < req->vsock_port_count; i++)
        if (req->vsock_port[i].port == port && req->vsock_port[i].listen == listen)
            rc = cli_usage_error(err, errlen, "%s: port %llu is mapped twice (%s)", ctx,
                                 (unsigned long long)port, listen ? "listen" : "connect");
    if (!rc && have_port) {
        struct cli_vsock_port *p = push(&req->vsock_port, &req->vsock_port_count, sizeof(*p));
        if (!p)
            rc = cli_out_of_memory(err, errlen);
        else {
            *p = (struct cli_vsock_port){ .port = (uint32_t)port, .path = path, .listen = listen };
            path = NULL;
        }
    }
    if (!rc) {
        req->vsock = true;
        if (have_cid)
            req->vsock_cid = (uint32_t)cid;
        if (uds) {
            req->vsock_uds_path = uds;
            uds = NULL;
        }
    }
    free(key);
    free(val);
    free(path);
    free(uds);
    return rc;
}

/* ---- virtio-fs and rosetta ---- */

#define VIRTIO_FS_KEYS "sharedDir, mountTag, dir, readonly, cache, ownership, uid, gid, queues"
#define ROSETTA_KEYS   "mountTag, ignoreIfMissing"

static const struct choice fs_cache_choices[] = {
    { "auto", VMK_FILE_SYSTEM_CACHE_AUTO },
    { "never", VMK_FILE_SYSTEM_CACHE_NEVER },
    { "always", VMK_FILE_SYSTEM_CACHE_ALWAYS },
};

static const struct choice fs_ownership_choices[] = {
    { "identity", VMK_FILE_SYSTEM_OWNERSHIP_IDENTITY },
    { "squash", VMK_FILE_SYSTEM_OWNERSHIP_SQUASH },
};

int cli_check_fs_tag(const char *ctx, const char *tag, char *err, size_t errlen)
{
    vmk_error *e = NULL;
    if (vmk_virtio_file_system_device_validate_tag(tag, &e) != VMK_OK) {
        int rc = cli_usage_error(err, errlen, "%s: %s", ctx, e ? vmk_error_message(e) : "bad tag");
        vmk_error_free(e);
        return rc;
    }
    if (strpbrk(tag, " ,\""))
        return cli_usage_error(err, errlen,
                               "%s: tag \"%s\" holds a space, comma or quote (the guest's "
                               "vmkit.mount= list cannot carry it)",
                               ctx, tag);
    return 0;
}

int cli_parse_fs_cache(const char *ctx, const char *val, vmk_file_system_cache_mode *mode,
                       char *err, size_t errlen)
{
    int m = 0;
    int rc = parse_choice(ctx, "cache", val, fs_cache_choices,
                          sizeof(fs_cache_choices) / sizeof(fs_cache_choices[0]), &m, err, errlen);
    if (!rc)
        *mode = (vmk_file_system_cache_mode)m;
    return rc;
}

/* A directory to share must be one now: a typo should not wait for the guest. */
static int check_shared_dir(const char *ctx, const char *key, const char *path, char *err,
                            size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return cli_usage_error(err, errlen, "%s: %s '%s': %s", ctx, key, path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cli_usage_error(err, errlen, "%s: %s '%s' is not a directory", ctx, key, path);
    return 0;
}

/* dir=NAME:PATH[:ro]: appended to f, its name judged by the library (names, a scratch
 * multiple share holding the names so far). */
static int parse_fs_dir(const char *ctx, const char *val, struct cli_fs *f,
                        vmk_directory_share *names, char *err, size_t errlen)
{
    const char *colon = val ? strchr(val, ':') : NULL;
    if (!val || !*val)
        return cli_usage_error(err, errlen, "%s: dir= needs a value (dir=NAME:PATH[:ro])", ctx);
    if (!colon || !colon[1])
        return cli_usage_error(err, errlen, "%s: dir '%s' is not NAME:PATH[:ro]", ctx, val);
    struct cli_fs_dir d = { .name = strndup(val, (size_t)(colon - val)),
                            .path = strdup(colon + 1) };
    int rc = 0;
    if (!d.name || !d.path) {
        rc = cli_out_of_memory(err, errlen);
        goto out;
    }
    size_t len = strlen(d.path);
    if (len > 3 && !strcmp(d.path + len - 3, ":ro")) {
        d.path[len - 3] = '\0';
        d.read_only = true;
    }
    vmk_error *e = NULL;
    if (vmk_multiple_directory_share_add_directory(
            names, d.name, vmk_shared_directory_new(d.path, d.read_only), &e) != VMK_OK) {
        rc = cli_usage_error(err, errlen, "%s: dir '%s': %s", ctx, val,
                             e ? vmk_error_message(e) : "out of memory");
        vmk_error_free(e);
        goto out;
    }
    rc = check_shared_dir(ctx, "dir", d.path, err, errlen);
    if (rc)
        goto out;
    struct cli_fs_dir *slot = push(&f->dir, &f->dir_count, sizeof(*slot));
    if (!slot) {
        rc = cli_out_of_memory(err, errlen);
        goto out;
    }
    *slot = d;
    d.name = d.path = NULL;
out:
    free(d.name);
    free(d.path);
    return rc;
}

static void fs_free(struct cli_fs *f)
{
    free(f->tag);
    free(f->path);
    for (unsigned i = 0; i < f->dir_count; i++) {
        free(f->dir[i].name);
        free(f->dir[i].path);
    }
    free(f->dir);
    memset(f, 0, sizeof(*f));
}

/* virtio-fs (translator false) or rosetta (true): one directory sharing device. */
static int parse_fs(struct cli_request *req, struct kv_iter *it, bool translator, char *err,
                    size_t errlen)
{
    const char *ctx = it->ctx;
    struct cli_fs f = { .translator = translator };
    bool have_cache = false, have_owner = false, have_uid = false, have_gid = false,
         have_queues = false;
    vmk_directory_share *names = vmk_multiple_directory_share_new();
    char *key = NULL, *val = NULL;
    int rc = names ? 0 : cli_out_of_memory(err, errlen);
    while (!rc) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        uint64_t n = 0;
        int mode = 0;
        char keyctx[96];
        snprintf(keyctx, sizeof(keyctx), "%s: %s", ctx, key);
        if (!strcmp(key, "mountTag")) {
            rc = cli_take_string(ctx, key, &val, &f.tag, "TAG", err, errlen);
            if (!rc)
                rc = cli_check_fs_tag(keyctx, f.tag, err, errlen);
            for (unsigned i = 0; !rc && i < req->fs_count; i++)
                if (!strcmp(req->fs[i].tag, f.tag))
                    rc = cli_usage_error(err, errlen,
                                         "%s: mountTag \"%s\" is already used by directory "
                                         "sharing device %u",
                                         ctx, f.tag, i + 1);
        } else if (translator && !strcmp(key, "ignoreIfMissing")) {
            rc = cli_take_flag(ctx, key, val, &f.ignore_if_missing, err, errlen);
        } else if (translator) {
            rc = cli_usage_error(err, errlen, "%s: unknown key '%s' (known: " ROSETTA_KEYS ")", ctx,
                                 key);
        } else if (!strcmp(key, "sharedDir")) {
            rc = cli_take_string(ctx, key, &val, &f.path, "PATH", err, errlen);
            if (!rc)
                rc = check_shared_dir(ctx, key, f.path, err, errlen);
        } else if (!strcmp(key, "dir")) {
            rc = parse_fs_dir(ctx, val, &f, names, err, errlen);
        } else if (!strcmp(key, "readonly")) {
            rc = cli_take_flag(ctx, key, val, &f.read_only, err, errlen);
        } else if (!strcmp(key, "cache") || !strcmp(key, "ownership")) {
            bool is_cache = key[0] == 'c';
            bool *seen = is_cache ? &have_cache : &have_owner;
            if (*seen) {
                rc = cli_usage_error(err, errlen, "%s: %s given twice", ctx, key);
            } else if (is_cache) {
                rc = cli_parse_fs_cache(ctx, val, &f.cache, err, errlen);
            } else {
                rc = parse_choice(ctx, key, val, fs_ownership_choices,
                                  sizeof(fs_ownership_choices) / sizeof(fs_ownership_choices[0]),
                                  &mode, err, errlen);
                f.ownership = (vmk_file_system_ownership)mode;
            }
            *seen = true;
        } else if (!strcmp(key, "uid") || !strcmp(key, "gid")) {
            /* Ids up to 2^32 - 2: (uid_t)-1 means "no change" to chown. */
            bool is_uid = key[0] == 'u';
            rc = take_number(ctx, key, val, is_uid ? &have_uid : &have_gid, 0, 0xfffffffeu, "", &n,
                             err, errlen);
            *(is_uid ? &f.uid : &f.gid) = (uint32_t)n;
        } else if (!strcmp(key, "queues")) {
            rc = take_number(ctx, key, val, &have_queues, 1, 8, "", &n, err, errlen);
            f.queues = (unsigned)n;
        } else {
            rc = cli_usage_error(err, errlen, "%s: unknown key '%s' (known: " VIRTIO_FS_KEYS ")",
                                 ctx, key);
        }
    }
    if (!rc && !translator && f.path && f.dir_count)
        rc = cli_usage_error(err, errlen,
                             "%s: sharedDir and dir= exclude each other (sharedDir=PATH shares "
                             "one directory; dir=NAME:PATH, repeated, several)",
                             ctx);
    if (!rc && !translator && !f.path && !f.dir_count)
        rc = cli_usage_error(err, errlen, "%s: needs sharedDir=PATH (or dir=NAME:PATH[:ro])", ctx);
    if (!rc && !f.tag)
        rc = cli_usage_error(err, errlen, "%s: needs mountTag=TAG (the guest mounts by it)", ctx);
    if (!rc && req->fs_count >= vmk_config_max_directory_sharing_device_count())
        rc = cli_usage_error(err, errlen, "%s: at most %u directory sharing devices", ctx,
                             vmk_config_max_directory_sharing_device_count());
    if (!rc) {
        struct cli_fs *slot = push(&req->fs, &req->fs_count, sizeof(*slot));
        if (slot) {
            *slot = f;
            memset(&f, 0, sizeof(f));
        } else {
            rc = cli_out_of_memory(err, errlen);
        }
    }
    vmk_directory_share_free(names);
    free(key);
    free(val);
    fs_free(&f);
    return rc;
}

static int parse_virtio_fs(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    return parse_fs(req, it, false, err, errlen);
}

static int parse_rosetta(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    return parse_fs(req, it, true, err, errlen);
}

/* ---- virtio-net ---- */

#define VIRTIO_NET_KEYS \
    "nat, hostfwd, fd, unixSocketPath, type, path, vfkitMagic, tap, mac, mtu, offloading"

static int parse_on_off(const char *ctx, const char *key, const char *val, bool *out, char *err,
                        size_t errlen)
{
    if (val && (!strcmp(val, "on") || !strcmp(val, "true"))) {
        *out = true;
        return 0;
    }
    if (val && (!strcmp(val, "off") || !strcmp(val, "false"))) {
        *out = false;
        return 0;
    }
    return cli_usage_error(err, errlen, "%s: %s needs on or off%s%s%s", ctx, key,
                           val ? " (got '" : "", val ? val : "", val ? "')" : "");
}

/* A port number 1..65535 at the start of text, ending at end (exclusive). */
static int parse_port_number(const char *text, const char *end, unsigned *out)
{
    if (text == end || end - text > 5)
        return -1;
    unsigned v = 0;
    for (const char *c = text; c < end; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (unsigned)(*c - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

static const char *forward_host(const struct cli_forward *f)
{
    return f->host_address ? f->host_address : "127.0.0.1";
}

/* Whether one of list[0..count) forwards the same protocol, host address and port as f. */
static bool has_forward(const struct cli_forward *list, unsigned count, const struct cli_forward *f)
{
    for (unsigned i = 0; i < count; i++) {
        if (list[i].udp == f->udp && list[i].host_port == f->host_port &&
            !strcmp(forward_host(&list[i]), forward_host(f)))
            return true;
    }
    return false;
}

/* hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-:GUESTPORT, QEMU's spelling (an IPv6 HOSTADDR in
 * brackets; the guest address, which QEMU allows before the last colon, must be empty: the
 * guest is the NAT's one lease). */
static int parse_hostfwd(const char *ctx, const char *val, struct cli_forward *f, char *err,
                         size_t errlen)
{
    const char *form = "hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-:GUESTPORT";
    if (!val || !*val)
        return cli_usage_error(err, errlen, "%s: hostfwd needs a value (%s)", ctx, form);
    memset(f, 0, sizeof(*f));
    const char *p = val;
    if (!strncmp(p, "tcp:", 4)) {
        p += 4;
    } else if (!strncmp(p, "udp:", 4)) {
        f->udp = true;
        p += 4;
    } else if (p[0] == ':') {
        p += 1; /* QEMU's default protocol is tcp */
    } else {
        return cli_usage_error(err, errlen, "%s: hostfwd '%s': the protocol is tcp or udp (%s)",
                               ctx, val, form);
    }
    const char *addr = p, *addr_end;
    if (*p == '[') {
        addr = p + 1;
        addr_end = strchr(addr, ']');
        if (!addr_end || addr_end[1] != ':')
            return cli_usage_error(err, errlen, "%s: hostfwd '%s': unclosed [ (%s)", ctx, val,
                                   form);
        p = addr_end + 2;
    } else {
        addr_end = strchr(p, ':');
        if (!addr_end)
            return cli_usage_error(err, errlen, "%s: hostfwd '%s' lacks the host port (%s)", ctx,
                                   val, form);
        p = addr_end + 1;
    }
    const char *dash = strchr(p, '-');
    if (!dash || parse_port_number(p, dash, &f->host_port) < 0)
        return cli_usage_error(err, errlen, "%s: hostfwd '%s': the host port must be 1..65535 (%s)",
                               ctx, val, form);
    const char *g = dash + 1;
    const char *colon = strrchr(g, ':');
    if (!colon || colon != g ||
        parse_port_number(colon + 1, colon + strlen(colon), &f->guest_port) < 0)
        return cli_usage_error(
            err, errlen, "%s: hostfwd '%s': the guest part is :GUESTPORT, a port 1..65535 (%s)",
            ctx, val, form);
    if (addr_end > addr) {
        char buf[INET6_ADDRSTRLEN + 1];
        unsigned char bin[16];
        size_t n = (size_t)(addr_end - addr);
        if (n >= sizeof(buf))
            return cli_usage_error(err, errlen, "%s: hostfwd '%s': host address too long", ctx,
                                   val);
        memcpy(buf, addr, n);
        buf[n] = 0;
        if (inet_pton(AF_INET, buf, bin) != 1 && inet_pton(AF_INET6, buf, bin) != 1)
            return cli_usage_error(err, errlen,
                                   "%s: hostfwd '%s': '%s' is not an IPv4 or IPv6 address", ctx,
                                   val, buf);
        f->host_address = strdup(buf);
        if (!f->host_address)
            return cli_out_of_memory(err, errlen);
    }
    return 0;
}

static int parse_fd(const char *ctx, const char *val, int *fd, char *err, size_t errlen)
{
    uint64_t n;
    char flag[96];
    snprintf(flag, sizeof(flag), "%s: fd", ctx);
    if (!val)
        return cli_usage_error(err, errlen, "%s: fd needs a value (fd=N)", ctx);
    int rc = cli_parse_number(flag, val, 0, 1u << 20, "", &n, err, errlen);
    if (rc)
        return rc;
    /* Checked here, where the user gave it, so the message names the option. */
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt((int)n, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return cli_usage_error(err, errlen, "%s: fd %d is not an open socket", ctx, (int)n);
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getpeername((int)n, (struct sockaddr *)&peer, &plen) < 0)
        return cli_usage_error(err, errlen, "%s: fd %d is not a connected socket", ctx, (int)n);
    *fd = (int)n;
    return 0;
}

static int parse_virtio_net(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    struct cli_net n = { .fd = -1 };
    const char *backend = NULL; /* the key that chose the back end, for messages */
    bool have_mtu = false, have_offload = false, have_magic = false, nat = false, none = false;
    unsigned keys = 0;
    bool offloading = true;
    char *type = NULL, *key = NULL, *val = NULL;
    int rc = 0;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        uint64_t num = 0;
        keys++;
        if (!strcmp(key, "none")) {
            rc = cli_take_flag(ctx, key, val, &none, err, errlen);
            if (rc)
                break;
            continue;
        }
        /* The keys that pick a back end exclude each other. */
        bool picks = !strcmp(key, "nat") || !strcmp(key, "fd") || !strcmp(key, "unixSocketPath") ||
                     !strcmp(key, "tap") || !strcmp(key, "type");
        if (picks && backend && !(!strcmp(key, "fd") && !strcmp(backend, "type")) &&
            !(!strcmp(key, "type") && !strcmp(backend, "fd"))) {
            rc = cli_usage_error(err, errlen, "%s: %s and %s both choose the back end (one only)",
                                 ctx, backend, key);
            break;
        }
        if (!strcmp(key, "nat")) {
            rc = cli_take_flag(ctx, key, val, &nat, err, errlen);
            backend = "nat";
        } else if (!strcmp(key, "hostfwd")) {
            struct cli_forward f;
            rc = parse_hostfwd(ctx, val, &f, err, errlen);
            if (!rc) {
                struct cli_forward *slot = push(&n.forward, &n.forward_count, sizeof(*slot));
                if (slot)
                    *slot = f;
                else
                    free(f.host_address), rc = cli_out_of_memory(err, errlen);
            }
        } else if (!strcmp(key, "fd")) {
            if (n.fd >= 0)
                rc = cli_usage_error(err, errlen, "%s: fd given twice", ctx);
            else
                rc = parse_fd(ctx, val, &n.fd, err, errlen);
            if (!backend || strcmp(backend, "type"))
                backend = "fd";
        } else if (!strcmp(key, "unixSocketPath") || !strcmp(key, "path") || !strcmp(key, "tap")) {
            rc = cli_take_string(ctx, key, &val, &n.path, !strcmp(key, "tap") ? "IFNAME" : "PATH",
                                 err, errlen);
            if (!strcmp(key, "unixSocketPath"))
                backend = "unixSocketPath";
            else if (!strcmp(key, "tap"))
                backend = "tap";
        } else if (!strcmp(key, "type")) {
            rc = cli_take_string(ctx, key, &val, &type, "unixgram|unixstream", err, errlen);
            if (!rc && strcmp(type, "unixgram") && strcmp(type, "unixstream"))
                rc = cli_usage_error(err, errlen, "%s: type '%s' is not unixgram or unixstream",
                                     ctx, type);
            if (!backend)
                backend = "type";
        } else if (!strcmp(key, "vfkitMagic")) {
            if (have_magic)
                rc = cli_usage_error(err, errlen, "%s: %s given twice", ctx, key);
            else
                rc = parse_on_off(ctx, key, val, &n.vfkit_magic, err, errlen);
            have_magic = true;
        } else if (!strcmp(key, "mac")) {
            if (n.have_mac)
                rc = cli_usage_error(err, errlen, "%s: mac given twice", ctx);
            else if (!val || vmk_mac_address_parse(val, &n.mac) != VMK_OK)
                rc = cli_usage_error(err, errlen, "%s: mac '%s' is not xx:xx:xx:xx:xx:xx", ctx,
                                     val ? val : "");
            else if (vmk_mac_address_is_multicast(&n.mac))
                rc = cli_usage_error(err, errlen,
                                     "%s: mac %s is a multicast (or broadcast) address; a "
                                     "device's own address is unicast",
                                     ctx, val);
            else if (!memcmp(n.mac.octets, "\0\0\0\0\0\0", 6))
                rc = cli_usage_error(err, errlen, "%s: mac %s is all zeros", ctx, val);
            n.have_mac = true;
        } else if (!strcmp(key, "mtu")) {
            rc = take_number(ctx, key, val, &have_mtu, vmk_virtio_network_device_min_mtu(),
                             vmk_virtio_network_device_max_mtu(), " bytes", &num, err, errlen);
            n.mtu = (unsigned)num;
        } else if (!strcmp(key, "offloading")) {
            if (have_offload)
                rc = cli_usage_error(err, errlen, "%s: %s given twice", ctx, key);
            else
                rc = parse_on_off(ctx, key, val, &offloading, err, errlen);
            have_offload = true;
        } else {
            rc = cli_usage_error(err, errlen, "%s: unknown key '%s' (known: " VIRTIO_NET_KEYS ")",
                                 ctx, key);
        }
        if (rc)
            break;
    }
    n.no_offloading = !offloading;
    /* virtio-net,none: no network device at all (the default guest gets one otherwise). */
    if (!rc && none) {
        if (keys > 1)
            rc = cli_usage_error(err, errlen, "%s: none takes no other key", ctx);
        else if (req->net_count > 0)
            rc = cli_usage_error(err, errlen, "%s: none, but a network device was given", ctx);
        else
            req->no_network = true;
        goto out;
    }
    if (!rc && req->no_network)
        rc = cli_usage_error(err, errlen, "%s: a network device after virtio-net,none", ctx);
    /* Which back end, and whether its keys fit together. */
    if (!rc) {
        if (type) {
            bool gram = !strcmp(type, "unixgram");
            n.kind = gram ? CLI_NET_UNIXGRAM : CLI_NET_UNIXSTREAM;
            if ((n.path != NULL) == (n.fd >= 0))
                rc = cli_usage_error(err, errlen, "%s: type=%s needs path=PATH or fd=N (one)", ctx,
                                     type);
            if (!rc && n.fd >= 0) {
                int t = 0;
                socklen_t len = sizeof(t);
                getsockopt(n.fd, SOL_SOCKET, SO_TYPE, &t, &len);
                if (t != (gram ? SOCK_DGRAM : SOCK_STREAM))
                    rc = cli_usage_error(err, errlen, "%s: fd %d is not a %s socket", ctx, n.fd,
                                         gram ? "datagram" : "stream");
                n.kind = CLI_NET_FD;
                n.fd_type = t;
            }
        } else if (backend && !strcmp(backend, "unixSocketPath")) {
            n.kind = CLI_NET_UNIXGRAM;
            if (!have_magic)
                n.vfkit_magic = true; /* vfkit greets gvproxy so */
        } else if (backend && !strcmp(backend, "tap")) {
            n.kind = CLI_NET_TAP;
        } else if (n.fd >= 0) {
            n.kind = CLI_NET_FD;
        } else {
            n.kind = CLI_NET_NAT;
            if (n.path)
                rc = cli_usage_error(err, errlen, "%s: path= belongs with type=unixgram|unixstream",
                                     ctx);
        }
    }
    if (!rc && n.path && (n.kind == CLI_NET_UNIXGRAM || n.kind == CLI_NET_UNIXSTREAM) &&
        strlen(n.path) > vmk_socket_path_max_length())
        rc = cli_usage_error(err, errlen, "%s: socket path is %zu bytes, at most %zu", ctx,
                             strlen(n.path), vmk_socket_path_max_length());
    /* The same host address and port forwarded twice, here or by another device. */
    for (unsigned i = 0; !rc && i < n.forward_count; i++) {
        const struct cli_forward *a = &n.forward[i];
        bool twice = has_forward(n.forward, i, a);
        for (unsigned d = 0; !twice && d < req->net_count; d++)
            twice = has_forward(req->net[d].forward, req->net[d].forward_count, a);
        if (twice)
            rc = cli_usage_error(err, errlen, "%s: hostfwd %s %s:%u given twice", ctx,
                                 a->udp ? "udp" : "tcp", forward_host(a), a->host_port);
    }
    if (!rc && n.forward_count && n.kind != CLI_NET_NAT)
        rc = cli_usage_error(err, errlen, "%s: hostfwd needs the NAT back end (nat)", ctx);
    if (!rc && have_magic && n.kind != CLI_NET_UNIXGRAM &&
        !(n.kind == CLI_NET_FD && n.fd_type == SOCK_DGRAM))
        rc =
            cli_usage_error(err, errlen, "%s: vfkitMagic belongs with a unix datagram socket", ctx);
    if (!rc && req->net_count >= vmk_config_max_network_device_count())
        rc = cli_usage_error(err, errlen, "%s: at most %u network devices", ctx,
                             vmk_config_max_network_device_count());
    if (!rc) {
        struct cli_net *slot = push(&req->net, &req->net_count, sizeof(*slot));
        if (slot) {
            *slot = n;
            memset(&n, 0, sizeof(n));
        } else {
            rc = cli_out_of_memory(err, errlen);
        }
    }
out:
    free(key);
    free(val);
    free(type);
    free(n.path);
    for (unsigned i = 0; i < n.forward_count; i++)
        free(n.forward[i].host_address);
    free(n.forward);
    return rc;
}

/* ---- virtio-gpu and virtio-input ---- */

#define VIRTIO_GPU_KEYS "width, height, scanout"

/* scanout=WxH: the next scanout, its sides judged as the library judges them. */
static int parse_scanout(const char *ctx, const char *val, unsigned index, struct cli_scanout *s,
                         char *err, size_t errlen)
{
    if (!val || !*val)
        return cli_usage_error(err, errlen, "%s: scanout= needs a value (scanout=WxH)", ctx);
    uint32_t max = vmk_graphics_device_max_scanout_dimension();
    size_t wlen = strspn(val, "0123456789");
    const char *h = val + wlen + 1;
    if (wlen == 0 || wlen > 10 || val[wlen] != 'x' || !*h || strspn(h, "0123456789") != strlen(h) ||
        strlen(h) > 10)
        return cli_usage_error(
            err, errlen, "%s: scanout '%s' is not WxH (pixels, e.g. scanout=1920x1080)", ctx, val);
    unsigned long long w = strtoull(val, NULL, 10), hh = strtoull(h, NULL, 10);
    if (w < 1 || w > max || hh < 1 || hh > max)
        return cli_usage_error(err, errlen,
                               "%s: scanout %u is %llu x %llu pixels; each side must be 1..%u", ctx,
                               index + 1, w, hh, max);
    *s = (struct cli_scanout){ .width = (uint32_t)w, .height = (uint32_t)hh };
    return 0;
}

/* The machine's one graphics device: width x height, then a scanout per scanout=WxH. */
static int parse_virtio_gpu(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    unsigned max = vmk_graphics_device_max_scanout_count();
    uint32_t dim = vmk_graphics_device_max_scanout_dimension();
    struct cli_scanout *scanout = calloc(max, sizeof(*scanout));
    unsigned count = 1;
    bool have_width = false, have_height = false;
    uint64_t w = CLI_DEFAULT_SCANOUT_WIDTH, h = CLI_DEFAULT_SCANOUT_HEIGHT;
    char *key = NULL, *val = NULL;
    int rc = scanout ? 0 : cli_out_of_memory(err, errlen);
    while (!rc) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "width")) {
            rc = take_number(ctx, key, val, &have_width, 1, dim, "", &w, err, errlen);
        } else if (!strcmp(key, "height")) {
            rc = take_number(ctx, key, val, &have_height, 1, dim, "", &h, err, errlen);
        } else if (!strcmp(key, "scanout")) {
            if (count >= max)
                rc = cli_usage_error(err, errlen, "%s: at most %u scanouts", ctx, max);
            else
                rc = parse_scanout(ctx, val, count, &scanout[count], err, errlen);
            count++;
        } else {
            rc = cli_usage_error(err, errlen, "%s: unknown key '%s' (known: " VIRTIO_GPU_KEYS ")",
                                 ctx, key);
        }
    }
    if (!rc && req->gpu)
        rc = cli_usage_error(err, errlen,
                             "%s: given twice (at most one virtio-gpu; scanout=WxH adds a "
                             "display to it)",
                             ctx);
    if (!rc) {
        scanout[0] = (struct cli_scanout){ .width = (uint32_t)w, .height = (uint32_t)h };
        req->gpu = true;
        req->gpu_scanout = scanout;
        req->gpu_scanout_count = count;
        scanout = NULL;
    }
    free(key);
    free(val);
    free(scanout);
    return rc;
}

/* One keyboard or one pointing device (vfkit's spellings). */
static int parse_virtio_input(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    bool keyboard = false, pointing = false;
    char *key = NULL, *val = NULL;
    int rc = 0;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "keyboard"))
            rc = cli_take_flag(ctx, key, val, &keyboard, err, errlen);
        else if (!strcmp(key, "pointing"))
            rc = cli_take_flag(ctx, key, val, &pointing, err, errlen);
        else
            rc = cli_usage_error(err, errlen, "%s: unknown kind '%s' (known: keyboard, pointing)",
                                 ctx, key);
        if (rc)
            break;
    }
    if (!rc && !keyboard && !pointing)
        rc = cli_usage_error(err, errlen, "%s: needs a kind: keyboard or pointing", ctx);
    if (!rc && keyboard && pointing)
        rc = cli_usage_error(err, errlen,
                             "%s: keyboard and pointing cannot be combined (one device each)", ctx);
    unsigned *count = keyboard ? &req->keyboard_count : &req->pointing_count;
    unsigned max =
        keyboard ? vmk_config_max_keyboard_count() : vmk_config_max_pointing_device_count();
    if (!rc && *count + (keyboard ? req->usb_keyboard_count : 0) >= max)
        rc = cli_usage_error(err, errlen, "%s: at most %u %s", ctx, max,
                             keyboard ? "keyboards" : "pointing devices");
    if (!rc)
        (*count)++;
    free(key);
    free(val);
    return rc;
}

/* A USB keyboard: no keys. It is the keyboard the views type into (cli_config.c puts it
 * first), and --gui adds no virtio one beside it. */
static int parse_usb_keyboard(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    if (!it->done)
        return cli_usage_error(err, errlen, "%s: takes no keys (got '%s')", ctx, it->p);
    unsigned usb = req->usb_keyboard_count;
    for (unsigned i = 0; i < req->disk_count; i++)
        usb += req->disk[i].usb;
    if (req->keyboard_count + req->usb_keyboard_count >= vmk_config_max_keyboard_count())
        return cli_usage_error(err, errlen, "%s: at most %u keyboards", ctx,
                               vmk_config_max_keyboard_count());
    if (usb >= vmk_config_max_usb_storage_device_count())
        return usb_ports_full(ctx, err, errlen);
    req->usb_keyboard_count++;
    return 0;
}

/* ---- ports: serial and console ---- */

bool cli_stdio_taken(const struct cli_request *req)
{
    for (unsigned i = 0; i < req->serial_count; i++)
        if (req->serial[i].kind == CLI_SERIAL_STDIO)
            return true;
    for (unsigned i = 0; i < req->console_port_count; i++)
        if (req->console_port[i].kind == CLI_SERIAL_STDIO)
            return true;
    return false;
}

/* The keys that choose a port's host side, shared by serial and virtio-console. */
struct port_keys {
    bool stdio, pty, append;
    char *file;   /* file=PATH */
    char *socket; /* socket=PATH */
};

/* Takes key (with val, which it may keep: *val is then NULL) when it is a host-side key;
 * *taken says whether it was. Returns 0 or an exit status. */
static int port_key(struct port_keys *k, const char *ctx, const char *key, char **val, bool *taken,
                    char *err, size_t errlen)
{
    bool *flag = !strcmp(key, "stdio")    ? &k->stdio
                 : !strcmp(key, "pty")    ? &k->pty
                 : !strcmp(key, "append") ? &k->append
                                          : NULL;
    char **str = !strcmp(key, "file") ? &k->file : !strcmp(key, "socket") ? &k->socket : NULL;
    *taken = flag || str;
    if (flag)
        return cli_take_flag(ctx, key, *val, flag, err, errlen);
    if (str)
        return cli_take_string(ctx, key, val, str, "PATH", err, errlen);
    return 0;
}

/* Checks that exactly one host side was chosen and fills *host (taking its path). */
static int port_keys_finish(struct port_keys *k, const char *ctx, struct cli_serial *host,
                            char *err, size_t errlen)
{
    const char *chosen[4];
    unsigned n = 0;
    if (k->stdio)
        chosen[n++] = "stdio";
    if (k->file)
        chosen[n++] = "file=";
    if (k->pty)
        chosen[n++] = "pty";
    if (k->socket)
        chosen[n++] = "socket=";
    if (n == 0)
        return cli_usage_error(err, errlen, "%s: needs stdio, file=PATH, pty or socket=PATH", ctx);
    if (n > 1)
        return cli_usage_error(err, errlen, "%s: %s and %s cannot be combined", ctx, chosen[0],
                               chosen[1]);
    if (k->append && !k->file)
        return cli_usage_error(err, errlen, "%s: append needs file=PATH", ctx);
    host->kind = k->stdio  ? CLI_SERIAL_STDIO
                 : k->pty  ? CLI_SERIAL_PTY
                 : k->file ? CLI_SERIAL_FILE
                           : CLI_SERIAL_SOCKET;
    host->path = k->file ? k->file : k->socket;
    host->append = k->append;
    k->file = k->socket = NULL;
    return 0;
}

/* Reads a port's keys: the host side, and (console ports only: name and console != NULL) the
 * port's name and console flag. */
static int parse_port(struct kv_iter *it, struct cli_serial *host, char **name, bool *console,
                      char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    struct port_keys k = { 0 };
    char *key = NULL, *val = NULL;
    int rc;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        bool taken;
        rc = port_key(&k, ctx, key, &val, &taken, err, errlen);
        if (rc || taken)
            goto next;
        if (console && !strcmp(key, "console"))
            rc = cli_take_flag(ctx, key, val, console, err, errlen);
        else if (name && !strcmp(key, "name"))
            rc = cli_take_string(ctx, key, &val, name, "NAME", err, errlen);
        else
            rc = cli_usage_error(err, errlen,
                                 "%s: unknown key '%s' (known: stdio, file, append, "
                                 "pty, socket%s)",
                                 ctx, key, name ? ", name, console" : "");
    next:
        if (rc)
            break;
    }
    if (!rc)
        rc = port_keys_finish(&k, ctx, host, err, errlen);
    free(key);
    free(val);
    free(k.file);
    free(k.socket);
    return rc;
}

static int parse_console_port(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    struct cli_serial host = { 0 };
    char *name = NULL;
    bool console = false;
    int rc = parse_port(it, &host, &name, &console, err, errlen);
    unsigned max = vmk_virtio_console_device_max_port_count();
    if (rc)
        goto out;
    if (req->console_port_count >= max) {
        rc = cli_usage_error(err, errlen, "%s: at most %u ports", ctx, max);
        goto out;
    }
    /* Two ports reading one terminal would steal each other's keystrokes. */
    if (host.kind == CLI_SERIAL_STDIO && cli_stdio_taken(req)) {
        rc = cli_usage_error(err, errlen, "%s,stdio: the terminal is already another port's", ctx);
        goto out;
    }
    for (unsigned i = 0; console && i < req->console_port_count; i++)
        if (req->console_port[i].console) {
            rc = cli_usage_error(err, errlen, "%s: only one port can be the console (port %u is)",
                                 ctx, i + 1);
            goto out;
        }
    struct cli_console_port *p = push(&req->console_port, &req->console_port_count, sizeof(*p));
    if (!p) {
        rc = cli_out_of_memory(err, errlen);
        goto out;
    }
    *p = (struct cli_console_port){ .kind = host.kind,
                                    .path = host.path,
                                    .append = host.append,
                                    .name = name,
                                    .console = console };
    host.path = name = NULL;
out:
    free(host.path);
    free(name);
    return rc;
}

static int parse_serial(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    const char *ctx = it->ctx;
    struct cli_serial host = { 0 };
    unsigned max = vmk_config_max_serial_port_count();
    int rc = parse_port(it, &host, NULL, NULL, err, errlen);
    if (rc)
        goto out;
    if (req->serial_count >= max) {
        rc = cli_usage_error(err, errlen, "%s: at most %u serial ports (COM1 to COM%u)", ctx, max,
                             max);
        goto out;
    }
    if (host.kind == CLI_SERIAL_STDIO && cli_stdio_taken(req)) {
        rc = cli_usage_error(err, errlen, "%s,stdio: the terminal is already another port's", ctx);
        goto out;
    }
    struct cli_serial *p = push(&req->serial, &req->serial_count, sizeof(*p));
    if (!p) {
        rc = cli_out_of_memory(err, errlen);
        goto out;
    }
    *p = host;
    host.path = NULL;
out:
    free(host.path);
    return rc;
}

/* ---- the dispatch ---- */

static const struct {
    const char *type;
    const char *alias; /* vfkit's word for it */
    int (*parse)(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen);
} device_types[] = {
    { "serial", NULL, parse_serial },
    { "virtio-blk", NULL, parse_virtio_blk },
    { "usb-mass-storage", NULL, parse_usb_mass_storage },
    { "usb-keyboard", NULL, parse_usb_keyboard },
    { "virtio-rng", NULL, parse_virtio_rng },
    { "virtio-console", "virtio-serial", parse_console_port },
    { "virtio-net", NULL, parse_virtio_net },
    { "virtio-balloon", NULL, parse_virtio_balloon },
    { "virtio-vsock", NULL, parse_virtio_vsock },
    { "virtio-fs", NULL, parse_virtio_fs },
    { "rosetta", NULL, parse_rosetta },
    { "virtio-gpu", NULL, parse_virtio_gpu },
    { "virtio-input", NULL, parse_virtio_input },
};

int cli_parse_device_keys(struct cli_request *req, const char *type, const char *opt,
                          const char *keys, char *err, size_t errlen)
{
    char ctx[64];
    snprintf(ctx, sizeof(ctx), "%s %s", opt, type);
    struct kv_iter it = { .ctx = ctx, .whole = keys, .p = keys, .done = !*keys };
    for (size_t i = 0; i < sizeof(device_types) / sizeof(device_types[0]); i++)
        if (!strcmp(type, device_types[i].type))
            return device_types[i].parse(req, &it, err, errlen);
    return cli_usage_error(err, errlen, "%s: unknown device type '%s'", opt, type);
}

int cli_parse_device(struct cli_request *req, const char *opt, const char *spec, char *err,
                     size_t errlen)
{
    if (!*spec)
        return cli_usage_error(err, errlen, "%s: empty value (expected TYPE,key=value,...)", opt);
    size_t len = strcspn(spec, ",");
    const char *keys = spec[len] == ',' ? spec + len + 1 : spec + len;
    for (size_t i = 0; i < sizeof(device_types) / sizeof(device_types[0]); i++) {
        const char *t = device_types[i].type, *a = device_types[i].alias;
        if ((strlen(t) == len && !strncmp(spec, t, len)) ||
            (a && strlen(a) == len && !strncmp(spec, a, len))) {
            char ctx[64];
            snprintf(ctx, sizeof(ctx), "%s %s", opt, t);
            /* A comma promises another option: "virtio-rng," is an error, not a shrug. */
            if (spec[len] == ',' && !*keys)
                return cli_usage_error(err, errlen, "%s: empty option in '%s'", ctx, spec);
            struct kv_iter it = { .ctx = ctx, .whole = spec, .p = keys, .done = !*keys };
            return device_types[i].parse(req, &it, err, errlen);
        }
    }
    if (memchr(spec, '=', len))
        return cli_usage_error(err, errlen,
                               "%s: '%.*s' is not a device type (expected TYPE,key=...)", opt,
                               (int)len, spec);
    return cli_usage_error(
        err, errlen,
        "%s: unknown device type '%.*s' (this release knows: serial, virtio-blk, "
        "usb-mass-storage, usb-keyboard, virtio-rng, virtio-console, virtio-net, virtio-balloon, "
        "virtio-vsock, "
        "virtio-fs, rosetta, "
        "virtio-gpu, virtio-input; virtio-serial is virtio-console)",
        opt, (int)len, spec);
}
