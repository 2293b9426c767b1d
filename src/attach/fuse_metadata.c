/* The FUSE server's requests on attributes and names (fuse_internal.h): GETATTR, SETATTR,
 * ACCESS, STATFS, READLINK, LOOKUP, MKDIR, MKNOD, SYMLINK, UNLINK, RMDIR, RENAME and LINK.
 * None of them opens a file for I/O beyond a moment. */
#include "attach/fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

/* ---- attributes ---- */

static size_t reply_attr(struct fuse_req *r, struct fuse_inode *n)
{
    struct stat st;
    int e = fuse_node_stat(r->s, n, &st);
    if (e)
        return fuse_reply_res(r, e);
    struct fuse_attr_out o = { .attr_valid = fuse_timeout_s(r->s) };
    fuse_fill_attr(r->s, n, &st, &o.attr);
    return fuse_reply(r, &o, sizeof(o));
}

size_t fuse_op_getattr(struct fuse_req *r, struct fuse_inode *n)
{
    return reply_attr(r, n);
}

static int truncate_node(struct fuse_server *s, struct fuse_inode *n,
                         const struct fuse_setattr_in *in)
{
    if (n->type == S_IFDIR)
        return -EISDIR;
    if (n->type != S_IFREG || n->fd < 0)
        return -EINVAL;
    if ((int64_t)in->size < 0)
        return -EINVAL;
    if (in->valid & FATTR_FH) {
        struct fuse_handle *h = fuse_handle_get(&s->t, in->fh);
        if (h && h->node == n && h->writable && h->fd >= 0) {
            int e = ftruncate(h->fd, (off_t)in->size) < 0 ? -errno : 0;
            fuse_handle_put(&s->t, h);
            return e;
        }
        fuse_handle_put(&s->t, h);
    }
    int fd = fuse_reopen(s, n->fd, O_WRONLY);
    if (fd < 0)
        return fd;
    int e = ftruncate(fd, (off_t)in->size) < 0 ? -errno : 0;
    close(fd);
    return e;
}

static int set_owner(struct fuse_server *s, struct fuse_inode *n, const struct fuse_setattr_in *in)
{
    uint32_t valid = in->valid;
    if (s->own == FUSE_OWNERSHIP_IDENTITY) {
        uid_t uid = (valid & FATTR_UID) ? in->uid : (uid_t)-1;
        gid_t gid = (valid & FATTR_GID) ? in->gid : (gid_t)-1;
        return fchownat(n->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
    }
    uint32_t uid, gid;
    fuse_squash_owner(s, n, &uid, &gid);
    if (valid & FATTR_UID)
        uid = in->uid;
    if (valid & FATTR_GID)
        gid = in->gid;
    int e = fuse_squash_set_owner(s, n, uid, gid);
    if (e)
        return -EPERM; /* no xattrs here (or not a file or directory): no owner to keep */
    /* As chown(2) does for a file that is not a directory. */
    return n->type == S_IFREG ? fuse_kill_suidgid(s, n) : 0;
}

size_t fuse_op_setattr(struct fuse_req *r, struct fuse_inode *n)
{
    struct fuse_server *s = r->s;
    struct fuse_setattr_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return fuse_reply_err(r, EINVAL);
    if (fuse_node_ro(s, n) || n->fd < 0)
        return fuse_reply_err(r, EROFS);
    char name[16];
    fuse_node_fd_name(n, name, sizeof(name));
    int e = 0;
    if (in.valid & FATTR_MODE) {
        if (n->type == S_IFLNK)
            e = -EOPNOTSUPP;
        else if (fchmodat(s->proc_fd, name, fuse_allowed_mode(s, in.mode & 07777), 0) < 0)
            e = -errno;
    }
    if (!e && (in.valid & (FATTR_UID | FATTR_GID)))
        e = set_owner(s, n, &in);
    if (!e && (in.valid & FATTR_SIZE))
        e = truncate_node(s, n, &in);
    if (!e && (in.valid & FATTR_KILL_SUIDGID) && !(in.valid & FATTR_MODE))
        e = fuse_kill_suidgid(s, n);
    if (!e && (in.valid & (FATTR_ATIME | FATTR_MTIME))) {
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
        if (in.valid & FATTR_ATIME_NOW)
            ts[0].tv_nsec = UTIME_NOW;
        else if (in.valid & FATTR_ATIME)
            ts[0] = (struct timespec){ (time_t)in.atime, in.atimensec % 1000000000u };
        if (in.valid & FATTR_MTIME_NOW)
            ts[1].tv_nsec = UTIME_NOW;
        else if (in.valid & FATTR_MTIME)
            ts[1] = (struct timespec){ (time_t)in.mtime, in.mtimensec % 1000000000u };
        /* Through the magic link: reaches even a symlink itself without following it. */
        if (utimensat(s->proc_fd, name, ts, 0) < 0)
            e = -errno;
    }
    if (e)
        return fuse_reply_res(r, e);
    return reply_attr(r, n);
}

size_t fuse_op_access(struct fuse_req *r, struct fuse_inode *n)
{
    struct fuse_access_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return fuse_reply_err(r, EINVAL);
    if ((in.mask & W_OK) && fuse_node_ro(r->s, n))
        return fuse_reply_err(r, EROFS);
    struct stat st;
    int e = fuse_node_stat(r->s, n, &st);
    if (e)
        return fuse_reply_res(r, e);
    struct fuse_attr a;
    fuse_fill_attr(r->s, n, &st, &a);
    unsigned mask = in.mask & 7, bits;
    if (r->h.uid == 0) /* as root: execute needs some x bit, the rest is allowed */
        bits = (a.mode & 0111) || S_ISDIR(a.mode) ? 7 : 6;
    else if (r->h.uid == a.uid)
        bits = (a.mode >> 6) & 7;
    else if (r->h.gid == a.gid)
        bits = (a.mode >> 3) & 7;
    else
        bits = a.mode & 7;
    return fuse_reply_err(r, (mask & ~bits) ? EACCES : 0);
}

size_t fuse_op_statfs(struct fuse_req *r, struct fuse_inode *n)
{
    struct fuse_statfs_out o = { .st = { .bsize = 4096, .frsize = 4096, .namelen = 255 } };
    if (n->fd >= 0) {
        struct statfs sf;
        if (fstatfs(n->fd, &sf) < 0)
            return fuse_reply_err(r, errno);
        o.st = (struct fuse_kstatfs){
            .blocks = sf.f_blocks,
            .bfree = sf.f_bfree,
            .bavail = sf.f_bavail,
            .files = sf.f_files,
            .ffree = sf.f_ffree,
            .bsize = (uint32_t)sf.f_bsize,
            .namelen = (uint32_t)sf.f_namelen,
            .frsize = (uint32_t)sf.f_frsize,
        };
    }
    /* FUSE's statfs carries no flags: a read-only share shows no room left to write. */
    if (fuse_node_ro(r->s, n))
        o.st.bavail = o.st.bfree = o.st.ffree = 0;
    return fuse_reply(r, &o, sizeof(o));
}

size_t fuse_op_readlink(struct fuse_req *r, struct fuse_inode *n)
{
    if (n->type != S_IFLNK || n->fd < 0)
        return fuse_reply_err(r, EINVAL);
    char buf[PATH_MAX];
    ssize_t len = readlinkat(n->fd, "", buf, sizeof(buf));
    if (len < 0)
        return fuse_reply_err(r, errno);
    if ((size_t)len >= sizeof(buf))
        return fuse_reply_err(r, ENAMETOOLONG);
    return fuse_reply(r, buf, (size_t)len);
}

/* ---- names ---- */

size_t fuse_op_lookup(struct fuse_req *r, struct fuse_inode *parent)
{
    const char *name;
    size_t off = 0;
    int e = fuse_arg_name(r, &off, &name);
    if (e)
        return fuse_reply_res(r, e);
    if (!fuse_reply_fits(r, sizeof(struct fuse_entry_out)))
        return fuse_reply_err(r, EINVAL);
    struct fuse_entry_out o;
    e = fuse_lookup(r->s, parent, name, &o, NULL);
    return e ? fuse_reply_res(r, e) : fuse_reply(r, &o, sizeof(o));
}

/* MKDIR, MKNOD and SYMLINK: the checks, the creation as the caller, the entry. */
size_t fuse_op_make(struct fuse_req *r, struct fuse_inode *parent, enum make_kind kind)
{
    struct fuse_server *s = r->s;
    size_t off = 0;
    mode_t mode = 0;
    const char *name, *target = "";
    int e;
    if (kind == MAKE_DIR) {
        struct fuse_mkdir_in in;
        if (!fuse_arg_get(r, &off, &in, sizeof(in)))
            return fuse_reply_err(r, EINVAL);
        mode = in.mode & 07777;
    } else if (kind == MAKE_NODE) {
        struct fuse_mknod_in in;
        if (!fuse_arg_get(r, &off, &in, sizeof(in)))
            return fuse_reply_err(r, EINVAL);
        mode = in.mode;
    }
    mode = fuse_allowed_mode(s, mode);
    e = fuse_arg_name(r, &off, &name);
    if (!e && kind == MAKE_SYMLINK)
        e = fuse_arg_str(r, &off, PATH_MAX - 1, &target);
    if (e)
        return fuse_reply_res(r, e);
    if (!fuse_reply_fits(r, sizeof(struct fuse_entry_out)))
        return fuse_reply_err(r, EINVAL);
    if (fuse_node_ro(s, parent))
        return fuse_reply_err(r, EROFS);
    if (parent->type != S_IFDIR || parent->fd < 0)
        return fuse_reply_err(r, ENOTDIR);
    /* Only what cannot reach a device: FIFOs, sockets, plain files. */
    if (kind == MAKE_NODE && !S_ISFIFO(mode) && !S_ISSOCK(mode) && !S_ISREG(mode))
        return fuse_reply_err(r, EPERM);
    if (!fuse_inode_room(&s->t))
        return fuse_reply_err(r, ENFILE);
    /* Under SQUASH the owner xattr needs a writable file: the mode is set afterwards. */
    mode_t host_mode = mode | (s->own == FUSE_OWNERSHIP_SQUASH ? 0700 : 0);
    struct fuse_creds c;
    e = fuse_creds_enter(s, &r->h, &c);
    if (!e) {
        int res = kind == MAKE_DIR ? mkdirat(parent->fd, name, host_mode & 07777)
                  : kind == MAKE_NODE
                      ? mknodat(parent->fd, name, (mode & S_IFMT) | (host_mode & 07777), 0)
                      : symlinkat(target, parent->fd, name);
        e = res < 0 ? -errno : 0;
    }
    fuse_creds_leave(&c);
    if (e)
        return fuse_reply_res(r, e);
    struct fuse_entry_out o;
    struct fuse_inode *n = NULL;
    e = fuse_lookup(s, parent, name, &o, &n);
    if (e || !n)
        return fuse_reply_res(r, e ? e : -EIO);
    fuse_created(s, r, n, mode, &o);
    fuse_inode_put(&s->t, n);
    return fuse_reply(r, &o, sizeof(o));
}

size_t fuse_op_remove(struct fuse_req *r, struct fuse_inode *parent, bool dir)
{
    const char *name;
    size_t off = 0;
    int e = fuse_arg_name(r, &off, &name);
    if (e)
        return fuse_reply_res(r, e);
    if (fuse_node_ro(r->s, parent))
        return fuse_reply_err(r, EROFS);
    if (parent->type != S_IFDIR || parent->fd < 0)
        return fuse_reply_err(r, ENOTDIR);
    return fuse_reply_res(r, unlinkat(parent->fd, name, dir ? AT_REMOVEDIR : 0) < 0 ? -errno : 0);
}

size_t fuse_op_rename(struct fuse_req *r, struct fuse_inode *parent, bool v2)
{
    struct fuse_server *s = r->s;
    uint64_t newdir;
    uint32_t flags = 0;
    size_t off = 0;
    if (v2) {
        struct fuse_rename2_in in;
        if (!fuse_arg_get(r, &off, &in, sizeof(in)))
            return fuse_reply_err(r, EINVAL);
        newdir = in.newdir;
        flags = in.flags;
    } else {
        struct fuse_rename_in in;
        if (!fuse_arg_get(r, &off, &in, sizeof(in)))
            return fuse_reply_err(r, EINVAL);
        newdir = in.newdir;
    }
    const char *oldname, *newname;
    int e = fuse_arg_name(r, &off, &oldname);
    if (!e)
        e = fuse_arg_name(r, &off, &newname);
    if (e)
        return fuse_reply_res(r, e);
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return fuse_reply_err(r, EINVAL);
    struct fuse_inode *np = fuse_inode_get(&s->t, newdir);
    if (!np)
        return fuse_reply_err(r, ESTALE);
    if (fuse_node_ro(s, parent) || fuse_node_ro(s, np))
        e = -EROFS;
    else if (parent->entry != np->entry)
        e = -EXDEV;
    else if (parent->type != S_IFDIR || np->type != S_IFDIR || parent->fd < 0 || np->fd < 0)
        e = -ENOTDIR;
    else if (renameat2(parent->fd, oldname, np->fd, newname, flags) < 0)
        e = -errno;
    fuse_inode_put(&s->t, np);
    return fuse_reply_res(r, e);
}

size_t fuse_op_link(struct fuse_req *r, struct fuse_inode *parent)
{
    struct fuse_server *s = r->s;
    struct fuse_link_in in;
    const char *name;
    int e = fuse_arg_named(r, &in, sizeof(in), &name);
    if (e)
        return fuse_reply_res(r, e);
    if (!fuse_reply_fits(r, sizeof(struct fuse_entry_out)))
        return fuse_reply_err(r, EINVAL);
    struct fuse_inode *old = fuse_inode_get(&s->t, in.oldnodeid);
    if (!old)
        return fuse_reply_err(r, ESTALE);
    if (fuse_node_ro(s, parent))
        e = -EROFS;
    else if (old->entry != parent->entry)
        e = -EXDEV;
    else if (old->fd < 0 || old->type == S_IFDIR)
        e = -EPERM;
    else if (parent->type != S_IFDIR || parent->fd < 0)
        e = -ENOTDIR;
    else if (linkat(old->fd, "", parent->fd, name, AT_EMPTY_PATH) < 0) {
        e = -errno;
        /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the magic link does not. */
        if (e == -ENOENT || e == -EPERM) {
            char pname[16];
            fuse_node_fd_name(old, pname, sizeof(pname));
            e = linkat(s->proc_fd, pname, parent->fd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
        }
    }
    fuse_inode_put(&s->t, old);
    if (e)
        return fuse_reply_res(r, e);
    struct fuse_entry_out o;
    e = fuse_lookup(s, parent, name, &o, NULL);
    return e ? fuse_reply_res(r, e) : fuse_reply(r, &o, sizeof(o));
}
