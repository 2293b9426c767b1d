/* Directory sharing: shared directories, the shares that hold them (single, multiple, the
 * Linux translator) and the virtio file system device's configuration. */
#include "api/validate.h"
#include "core/error.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- Shared directories ---- */

vmk_shared_directory *vmk_shared_directory_new(const char *path, bool read_only)
{
    vmk_shared_directory *dir = calloc(1, sizeof(*dir));
    if (!dir)
        return NULL;
    dir->read_only = read_only;
    if (config_set_string(&dir->path, path) != VMK_OK) {
        free(dir);
        return NULL;
    }
    return dir;
}

void vmk_shared_directory_free(vmk_shared_directory *dir)
{
    if (!dir)
        return;
    free(dir->path);
    free(dir);
}

const char *vmk_shared_directory_get_path(const vmk_shared_directory *dir)
{
    return dir ? dir->path : NULL;
}

bool vmk_shared_directory_is_read_only(const vmk_shared_directory *dir)
{
    return dir && dir->read_only;
}

/* ---- Shares ---- */

static vmk_directory_share *share_new(vmk_directory_share_kind kind)
{
    vmk_directory_share *share = calloc(1, sizeof(*share));
    if (share)
        share->kind = kind;
    return share;
}

/* Appends dir under name (may be NULL); takes dir. */
static vmk_result share_push(vmk_directory_share *share, const char *name,
                             vmk_shared_directory *dir)
{
    struct share_entry *e = realloc(share->entry, (share->entry_count + 1) * sizeof(*e));
    if (!e) {
        vmk_shared_directory_free(dir);
        return VMK_ERR_NO_MEMORY;
    }
    share->entry = e;
    char *copy = NULL;
    if (name && !(copy = strdup(name))) {
        vmk_shared_directory_free(dir);
        return VMK_ERR_NO_MEMORY;
    }
    e[share->entry_count++] = (struct share_entry){ .name = copy, .dir = dir };
    return VMK_OK;
}

vmk_directory_share *vmk_single_directory_share_new(vmk_shared_directory *dir)
{
    if (!dir)
        return NULL;
    vmk_directory_share *share = share_new(VMK_DIRECTORY_SHARE_SINGLE);
    if (!share) {
        vmk_shared_directory_free(dir);
        return NULL;
    }
    if (share_push(share, NULL, dir) != VMK_OK) {
        vmk_directory_share_free(share);
        return NULL;
    }
    return share;
}

vmk_directory_share *vmk_multiple_directory_share_new(void)
{
    return share_new(VMK_DIRECTORY_SHARE_MULTIPLE);
}

/* A multiple share's name becomes one path component in the guest. */
static vmk_result check_name(const vmk_directory_share *share, const char *name, vmk_error **err)
{
    if (!name || !*name)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "shared directory name is empty");
    size_t len = strlen(name);
    if (len > VMK_FS_NAME_MAX)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "shared directory name is %zu bytes, at most %u", len, VMK_FS_NAME_MAX);
    if (strchr(name, '/'))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "shared directory name \"%s\" holds a '/' (it is one path component)",
                        name);
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "shared directory name \"%s\" is not allowed (it names a directory of "
                        "the mount itself)",
                        name);
    for (unsigned i = 0; i < share->entry_count; i++)
        if (!strcmp(share->entry[i].name, name))
            return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                            "shared directory name \"%s\" is already used by directory %u of "
                            "the share",
                            name, i + 1);
    return VMK_OK;
}

vmk_result vmk_multiple_directory_share_add_directory(vmk_directory_share *share, const char *name,
                                                      vmk_shared_directory *dir, vmk_error **err)
{
    vmk_result r = VMK_OK;
    if (!share || share->kind != VMK_DIRECTORY_SHARE_MULTIPLE || !dir)
        r = vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s",
                     !share ? "directory share is NULL"
                     : !dir ? "shared directory is NULL"
                            : "directories are added to a multiple directory share only");
    else
        r = check_name(share, name, err);
    if (r != VMK_OK) {
        vmk_shared_directory_free(dir);
        return r;
    }
    r = share_push(share, name, dir);
    if (r != VMK_OK)
        return vmk_fail(err, r, ENOMEM, "shared directory \"%s\": out of memory", name);
    return VMK_OK;
}

vmk_directory_share_kind vmk_directory_share_get_kind(const vmk_directory_share *share)
{
    return share ? share->kind : VMK_DIRECTORY_SHARE_SINGLE;
}

unsigned vmk_directory_share_directory_count(const vmk_directory_share *share)
{
    return share ? share->entry_count : 0;
}

const vmk_shared_directory *vmk_directory_share_get_directory(const vmk_directory_share *share,
                                                              unsigned index, const char **name)
{
    if (name)
        *name = NULL;
    if (!share || index >= share->entry_count)
        return NULL;
    if (name)
        *name = share->entry[index].name;
    return share->entry[index].dir;
}

void vmk_directory_share_free(vmk_directory_share *share)
{
    if (!share)
        return;
    for (unsigned i = 0; i < share->entry_count; i++) {
        free(share->entry[i].name);
        vmk_shared_directory_free(share->entry[i].dir);
    }
    free(share->entry);
    free(share);
}

static vmk_directory_share *share_copy(const vmk_directory_share *share)
{
    vmk_directory_share *c = share_new(share->kind);
    if (!c)
        return NULL;
    for (unsigned i = 0; i < share->entry_count; i++) {
        const struct share_entry *e = &share->entry[i];
        vmk_shared_directory *d = vmk_shared_directory_new(e->dir->path, e->dir->read_only);
        if (!d || share_push(c, e->name, d) != VMK_OK) { /* share_push takes d */
            vmk_directory_share_free(c);
            return NULL;
        }
    }
    return c;
}

/* ---- The Linux translator ---- */

bool linux_translator_installed_in(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (fnmatch("qemu-*-static", e->d_name, 0))
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        found = stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
    }
    closedir(d);
    return found;
}

vmk_translator_availability vmk_linux_translator_availability(void)
{
    return linux_translator_installed_in(VMK_TRANSLATOR_DIR) ? VMK_TRANSLATOR_INSTALLED
                                                             : VMK_TRANSLATOR_NOT_INSTALLED;
}

#define TRANSLATOR_MISSING                                                                       \
    "the Linux translator share needs Debian's qemu-user-static package (no " VMK_TRANSLATOR_DIR \
    "/qemu-*-static on this host)"

vmk_directory_share *vmk_linux_translator_directory_share_new(vmk_error **err)
{
    if (vmk_linux_translator_availability() != VMK_TRANSLATOR_INSTALLED) {
        vmk_fail_set(err, VMK_ERR_UNSUPPORTED, 0, TRANSLATOR_MISSING);
        return NULL;
    }
    vmk_directory_share *share = share_new(VMK_DIRECTORY_SHARE_LINUX_TRANSLATOR);
    if (!share)
        vmk_fail_set(err, VMK_ERR_NO_MEMORY, ENOMEM, "Linux translator share: out of memory");
    return share;
}

/* ---- The virtio file system device ---- */

vmk_directory_sharing_device *vmk_virtio_file_system_device_new(const char *tag)
{
    vmk_directory_sharing_device *dev = calloc(1, sizeof(*dev));
    if (!dev)
        return NULL;
    dev->cache = VMK_FILE_SYSTEM_CACHE_AUTO;
    dev->ownership = VMK_FILE_SYSTEM_OWNERSHIP_IDENTITY;
    dev->request_queues = 1;
    if (config_set_string(&dev->tag, tag) != VMK_OK) {
        free(dev);
        return NULL;
    }
    return dev;
}

void vmk_directory_sharing_device_free(vmk_directory_sharing_device *dev)
{
    if (!dev)
        return;
    free(dev->tag);
    vmk_directory_share_free(dev->share);
    free(dev);
}

vmk_directory_sharing_device *directory_sharing_device_copy(const vmk_directory_sharing_device *dev)
{
    vmk_directory_sharing_device *c = vmk_virtio_file_system_device_new(dev->tag);
    if (!c)
        return NULL;
    c->cache = dev->cache;
    c->ownership = dev->ownership;
    c->uid = dev->uid;
    c->gid = dev->gid;
    c->request_queues = dev->request_queues;
    if (dev->share && !(c->share = share_copy(dev->share))) {
        vmk_directory_sharing_device_free(c);
        return NULL;
    }
    return c;
}

const char *vmk_virtio_file_system_device_get_tag(const vmk_directory_sharing_device *dev)
{
    return dev ? dev->tag : NULL;
}

vmk_result vmk_virtio_file_system_device_validate_tag(const char *tag, vmk_error **err)
{
    if (!tag || !*tag)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "tag is empty");
    size_t len = strlen(tag);
    if (len > VMK_FS_TAG_MAX)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "tag \"%s\" is %zu bytes, at most %u (the guest's tag field is %u)", tag,
                        len, VMK_FS_TAG_MAX, VMK_FS_TAG_MAX + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tag[i];
        if (c < 0x20 || c > 0x7e)
            return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                            "tag has byte 0x%02x at offset %zu (printable ASCII only)", c, i);
    }
    return VMK_OK;
}

vmk_result vmk_virtio_file_system_device_set_share(vmk_directory_sharing_device *dev,
                                                   vmk_directory_share *share)
{
    if (!dev) {
        vmk_directory_share_free(share);
        return VMK_ERR_INVALID_ARGUMENT;
    }
    vmk_directory_share_free(dev->share);
    dev->share = share;
    return VMK_OK;
}

const vmk_directory_share *
vmk_virtio_file_system_device_get_share(const vmk_directory_sharing_device *dev)
{
    return dev ? dev->share : NULL;
}

vmk_result vmk_virtio_file_system_device_set_cache_mode(vmk_directory_sharing_device *dev,
                                                        vmk_file_system_cache_mode mode)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->cache = mode;
    return VMK_OK;
}

vmk_file_system_cache_mode
vmk_virtio_file_system_device_get_cache_mode(const vmk_directory_sharing_device *dev)
{
    return dev ? dev->cache : VMK_FILE_SYSTEM_CACHE_AUTO;
}

vmk_result vmk_virtio_file_system_device_set_ownership(vmk_directory_sharing_device *dev,
                                                       vmk_file_system_ownership mode, uint32_t uid,
                                                       uint32_t gid)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->ownership = mode;
    dev->uid = uid;
    dev->gid = gid;
    return VMK_OK;
}

vmk_file_system_ownership
vmk_virtio_file_system_device_get_ownership(const vmk_directory_sharing_device *dev, uint32_t *uid,
                                            uint32_t *gid)
{
    if (uid)
        *uid = dev ? dev->uid : 0;
    if (gid)
        *gid = dev ? dev->gid : 0;
    return dev ? dev->ownership : VMK_FILE_SYSTEM_OWNERSHIP_IDENTITY;
}

vmk_result vmk_virtio_file_system_device_set_request_queue_count(vmk_directory_sharing_device *dev,
                                                                 unsigned count)
{
    if (!dev)
        return VMK_ERR_INVALID_ARGUMENT;
    dev->request_queues = count;
    return VMK_OK;
}

unsigned
vmk_virtio_file_system_device_get_request_queue_count(const vmk_directory_sharing_device *dev)
{
    return dev ? dev->request_queues : 0;
}

/* ---- Validation ---- */

/* One shared directory: a path that names a directory now. */
static void validate_directory(const struct share_entry *e, const char *what, struct problems *p)
{
    char dir[VMK_FS_NAME_MAX + 32] = "shared directory";
    if (e->name)
        snprintf(dir, sizeof(dir), "shared directory \"%s\"", e->name);
    const char *path = e->dir->path;
    struct stat st;
    if (!path || !*path)
        problem(p, "%s: %s has no path", what, dir);
    else if (stat(path, &st) < 0)
        problem(p, "%s: %s %s: %s", what, dir, path, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        problem(p, "%s: %s %s: not a directory", what, dir, path);
}

void directory_sharing_device_validate(const vmk_directory_sharing_device *dev, const char *what,
                                       struct problems *p)
{
    vmk_error *e = NULL;
    if (!dev->tag)
        problem(p, "%s: no tag", what);
    else if (vmk_virtio_file_system_device_validate_tag(dev->tag, &e) != VMK_OK)
        problem(p, "%s: %s", what, e ? vmk_error_message(e) : "bad tag");
    vmk_error_free(e);
    if ((unsigned)dev->cache > VMK_FILE_SYSTEM_CACHE_ALWAYS)
        problem(p, "%s: unknown cache mode %d", what, (int)dev->cache);
    if ((unsigned)dev->ownership > VMK_FILE_SYSTEM_OWNERSHIP_SQUASH)
        problem(p, "%s: unknown ownership mode %d", what, (int)dev->ownership);
    if (dev->request_queues < 1 || dev->request_queues > VMK_FS_MAX_QUEUES)
        problem(p, "%s: request queue count %u is out of range [1, %u]", what, dev->request_queues,
                VMK_FS_MAX_QUEUES);
    const vmk_directory_share *share = dev->share;
    if (!share) {
        problem(p, "%s: no directory share (vmk_virtio_file_system_device_set_share)", what);
        return;
    }
    switch (share->kind) {
    case VMK_DIRECTORY_SHARE_SINGLE:
    case VMK_DIRECTORY_SHARE_MULTIPLE:
        if (share->kind == VMK_DIRECTORY_SHARE_MULTIPLE && share->entry_count == 0)
            problem(p, "%s: the multiple directory share has no directories", what);
        for (unsigned i = 0; i < share->entry_count; i++)
            validate_directory(&share->entry[i], what, p);
        break;
    case VMK_DIRECTORY_SHARE_LINUX_TRANSLATOR:
        if (vmk_linux_translator_availability() != VMK_TRANSLATOR_INSTALLED)
            problem(p, "%s: " TRANSLATOR_MISSING, what);
        break;
    default: problem(p, "%s: unknown directory share kind %d", what, (int)share->kind); break;
    }
}
