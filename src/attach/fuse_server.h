/* A FUSE server over host directories: the host side of a virtio-fs device. It speaks FUSE as
 * Linux 6.1 does (7.38, <linux/fuse.h>) to one client, a guest kernel that may be hostile: every
 * name is one validated path component, every resolution is openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS) below an inode's O_PATH fd, host symlinks are never followed, only
 * regular files and directories are ever opened, and everything the guest can make the server
 * hold (inodes, handles, reply sizes) is bounded.
 *
 * The device hands it each request as the guest laid it out (device-readable iovecs: the
 * request; device-writable: the reply), so READ and WRITE move data straight between guest
 * memory and the host file. Several threads may call fuse_server_handle at once. */
#ifndef VMK_ATTACH_FUSE_SERVER_H
#define VMK_ATTACH_FUSE_SERVER_H

#include "vmkit.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum fuse_cache_mode {
    FUSE_CACHE_NEVER,  /* no attribute or data caching: every access reaches the host */
    FUSE_CACHE_AUTO,   /* 1 s attribute and entry timeouts; data kept while unchanged */
    FUSE_CACHE_ALWAYS, /* long timeouts, page cache kept across opens: host edits may be missed */
};

enum fuse_ownership {
    /* Host ids are the guest's ids. As root, the server creates as the caller (fsuid/fsgid,
     * supplementary groups dropped); otherwise everything is created as the server's user. */
    FUSE_OWNERSHIP_IDENTITY,
    /* Every file on the host belongs to the server's user; the guest sees the ids it gave (kept
     * in the xattr user.vmkit.owner), or squash_uid/squash_gid where it gave none. */
    FUSE_OWNERSHIP_SQUASH,
};

/* One entry of the share. A share with one entry of name NULL is that directory (a single
 * directory share); otherwise the mount's root is a read-only directory the server makes up,
 * holding each entry by name (a multiple directory share; the translator share's files). */
struct fuse_share_entry {
    const char *name; /* one path component, or NULL for the single directory share */
    const char *path; /* a host directory or regular file; NULL for a memory file */
    const void *data; /* a memory file's contents (read-only, mode 0555), with size bytes */
    size_t size;
    bool read_only; /* files are always read-only */
};

struct fuse_server_params {
    const struct fuse_share_entry *entries;
    unsigned entry_count;
    enum fuse_cache_mode cache;
    enum fuse_ownership ownership;
    uint32_t squash_uid, squash_gid;
    /* Bounds on what the guest can make the server hold; 0 takes the default. */
    unsigned max_inodes;  /* default 1 << 20 */
    unsigned max_handles; /* default 65536 */
    const char *what;     /* "directory sharing device 1", for messages */
};

struct fuse_server;

/* Opens every entry (O_PATH); NULL and *err naming the entry when one cannot be opened. */
struct fuse_server *fuse_server_new(const struct fuse_server_params *p, vmk_error **err);

/* Serves one request: in[0..in_n) holds it, the reply goes to out[0..out_n). Returns the reply's
 * length (0: no reply, as for FORGET; a request too short for its header gets none either). A
 * reply larger than out holds is never written: the request fails with its errno instead
 * (EINVAL, found before anything changes for the requests that make or count inodes). */
size_t fuse_server_handle(struct fuse_server *s, const struct iovec *in, unsigned in_n,
                          const struct iovec *out, unsigned out_n);

/* The guest reset its device: forgets every inode and handle but the roots, so the next INIT
 * starts afresh. No request may be in progress. */
void fuse_server_reset(struct fuse_server *s);

/* Inodes and open handles held now (tests, limits). */
void fuse_server_counts(struct fuse_server *s, unsigned *inodes, unsigned *handles);

void fuse_server_free(struct fuse_server *s);

#endif
