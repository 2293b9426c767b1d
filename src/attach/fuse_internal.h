/* What the FUSE server's files share (fuse_server.c, fuse_host.c, fuse_metadata.c, fuse_io.c):
 * the server and request structs, the bounds, and the helpers each file offers the others.
 * Private to those files; the server's contract is fuse_server.h. */
#ifndef VMK_ATTACH_FUSE_INTERNAL_H
#define VMK_ATTACH_FUSE_INTERNAL_H

#include "attach/fuse_inodes.h"
#include "attach/fuse_server.h"

#include <linux/fuse.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#define OUR_MINOR      38u
#define MAX_IO         (1u << 20) /* max_write, and the most one READ or READDIR returns */
#define MAX_PAGES      256u
#define MAX_COPY       (64u << 20) /* one COPY_FILE_RANGE: bounds a worker's time */
#define ARGS_MAX       8192u       /* every request but WRITE and BATCH_FORGET fits */
#define NAME_MAX_BYTES 255u
#define OWNER_XATTR    "user.vmkit.owner"
#define DIRENT_BUF     32768u
#define OUT_HDR        sizeof(struct fuse_out_header)

struct share_entry {
    char *name;
    const void *data; /* a memory file's bytes (the caller's) */
    size_t size;
    bool ro;
    struct fuse_inode *node;
};

struct fuse_server {
    struct fuse_tables t;
    struct share_entry *entries;
    unsigned entry_count;
    bool multi;
    enum fuse_cache_mode cache;
    enum fuse_ownership own;
    uint32_t squash_uid, squash_gid;
    uid_t euid;
    gid_t egid;
    bool as_caller; /* root with IDENTITY: create with the caller's fsuid/fsgid */
    int proc_fd;    /* /proc/self/fd: reopening an O_PATH fd for I/O */
    struct timespec born;
    atomic_bool inited;
    atomic_bool killpriv_v2;
};

/* One request being served. */
struct fuse_req {
    struct fuse_server *s;
    const struct iovec *in, *out;
    unsigned in_n, out_n;
    size_t out_len;
    struct fuse_in_header h;
    size_t arg_len;  /* bytes after the header, as the header says */
    size_t arg_have; /* of which copied to arg */
    uint64_t arg[ARGS_MAX / 8];
};

/* ---- fuse_server.c: replies and request arguments ---- */

size_t fuse_iov_to(const struct iovec *v, unsigned n, size_t off, const void *src, size_t len);
size_t fuse_reply_err(struct fuse_req *r, int err);
size_t fuse_reply(struct fuse_req *r, const void *body, size_t len);
size_t fuse_reply_res(struct fuse_req *r, int res);
bool fuse_reply_fits(const struct fuse_req *r, size_t len);
bool fuse_arg_get(struct fuse_req *r, size_t *off, void *dst, size_t len);
int fuse_arg_str(struct fuse_req *r, size_t *off, size_t max, const char **str);
int fuse_arg_name(struct fuse_req *r, size_t *off, const char **name);
int fuse_arg_named(struct fuse_req *r, void *in, size_t len, const char **name);

/* ---- fuse_host.c: reaching the host ---- */

static inline int fuse_node_fd_name(const struct fuse_inode *n, char *buf, size_t len)
{
    return snprintf(buf, len, "%d", n->fd);
}

static inline bool fuse_is_reg_or_dir(uint32_t type)
{
    return type == S_IFREG || type == S_IFDIR;
}

static inline bool fuse_node_ro(const struct fuse_server *s, const struct fuse_inode *n)
{
    return n->entry < 0 || s->entries[n->entry].ro;
}

/* A mode the guest sets on a host file, less what it may not set: under SQUASH every host file
 * belongs to the server's user (root, maybe), so the guest never makes one set-user-ID or
 * set-group-ID (not even a set-group-ID directory: simpler, and nothing needs it). */
static inline mode_t fuse_allowed_mode(const struct fuse_server *s, mode_t mode)
{
    return s->own == FUSE_OWNERSHIP_SQUASH ? mode & ~(mode_t)(S_ISUID | S_ISGID) : mode;
}

int fuse_resolve(int dirfd, const char *name, int flags, mode_t mode);
int fuse_reopen(struct fuse_server *s, int fd, int flags);
int fuse_node_stat(struct fuse_server *s, const struct fuse_inode *n, struct stat *st);
void fuse_squash_owner(struct fuse_server *s, const struct fuse_inode *n, uint32_t *uid,
                       uint32_t *gid);
int fuse_squash_set_owner(struct fuse_server *s, const struct fuse_inode *n, uint32_t uid,
                          uint32_t gid);
void fuse_fill_attr(struct fuse_server *s, const struct fuse_inode *n, const struct stat *st,
                    struct fuse_attr *a);
uint64_t fuse_timeout_s(const struct fuse_server *s);
void fuse_fill_entry(struct fuse_server *s, const struct fuse_inode *n, const struct stat *st,
                     struct fuse_entry_out *e);
int fuse_lookup(struct fuse_server *s, struct fuse_inode *parent, const char *name,
                struct fuse_entry_out *e, struct fuse_inode **out);
int fuse_kill_suidgid(struct fuse_server *s, const struct fuse_inode *n);

/* Creating as the caller: between fuse_creds_enter and fuse_creds_leave (always called, even
 * when enter failed), this thread creates with the guest caller's ids. */
struct fuse_creds {
    bool on;
    uid_t fsuid;
    gid_t fsgid;
    int ngroups;
    bool heap; /* groups was allocated (more than small holds) */
    gid_t *groups;
    gid_t small[32];
};

int fuse_creds_enter(struct fuse_server *s, const struct fuse_in_header *h, struct fuse_creds *c);
void fuse_creds_leave(struct fuse_creds *c);
void fuse_created(struct fuse_server *s, struct fuse_req *r, struct fuse_inode *n, mode_t mode,
                  struct fuse_entry_out *e);

/* ---- fuse_metadata.c: attributes and names ---- */

enum make_kind { MAKE_DIR, MAKE_NODE, MAKE_SYMLINK };

size_t fuse_op_getattr(struct fuse_req *r, struct fuse_inode *n);
size_t fuse_op_setattr(struct fuse_req *r, struct fuse_inode *n);
size_t fuse_op_access(struct fuse_req *r, struct fuse_inode *n);
size_t fuse_op_statfs(struct fuse_req *r, struct fuse_inode *n);
size_t fuse_op_readlink(struct fuse_req *r, struct fuse_inode *n);
size_t fuse_op_lookup(struct fuse_req *r, struct fuse_inode *parent);
size_t fuse_op_make(struct fuse_req *r, struct fuse_inode *parent, enum make_kind kind);
size_t fuse_op_remove(struct fuse_req *r, struct fuse_inode *parent, bool dir);
size_t fuse_op_rename(struct fuse_req *r, struct fuse_inode *parent, bool v2);
size_t fuse_op_link(struct fuse_req *r, struct fuse_inode *parent);

/* ---- fuse_io.c: open files and directories ---- */

size_t fuse_op_open(struct fuse_req *r, struct fuse_inode *n);
size_t fuse_op_create(struct fuse_req *r, struct fuse_inode *parent);
size_t fuse_op_opendir(struct fuse_req *r, struct fuse_inode *n);
size_t fuse_op_release(struct fuse_req *r, bool dir);
size_t fuse_op_read(struct fuse_req *r);
size_t fuse_op_write(struct fuse_req *r);
size_t fuse_op_flush(struct fuse_req *r);
size_t fuse_op_fsync(struct fuse_req *r, bool dir);
size_t fuse_op_fallocate(struct fuse_req *r);
size_t fuse_op_lseek(struct fuse_req *r);
size_t fuse_op_copy_file_range(struct fuse_req *r);
size_t fuse_op_readdir(struct fuse_req *r, bool plus);

#endif
