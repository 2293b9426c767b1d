/* How the FUSE server reaches the host (fuse_internal.h): names resolved beneath an inode's
 * O_PATH fd, reopening through /proc/self/fd, attributes and the SQUASH owner xattr, LOOKUP's
 * core, and creating as the caller: what more than one request needs of the host. */
#include "attach/fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* ---- host helpers ---- */

/* name, one component, beneath dirfd; never through a symlink or out of dirfd's tree. */
int fuse_resolve(int dirfd, const char *name, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
        .mode = mode,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}

/* The inode of an O_PATH fd, opened for I/O. The caller checked it is a regular file or a
 * directory: the proc entry is a magic link straight to that inode (O_NOFOLLOW would refuse
 * it with ELOOP), and an inode's type never changes. */
int fuse_reopen(struct fuse_server *s, int fd, int flags)
{
    char name[16];
    snprintf(name, sizeof(name), "%d", fd);
    int r = openat(s->proc_fd, name, flags | O_CLOEXEC | O_NOCTTY);
    return r < 0 ? -errno : r;
}

int fuse_node_stat(struct fuse_server *s, const struct fuse_inode *n, struct stat *st)
{
    if (n->fd >= 0)
        return fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
    memset(st, 0, sizeof(*st));
    st->st_uid = s->euid;
    st->st_gid = s->egid;
    st->st_atim = st->st_mtim = st->st_ctim = s->born;
    st->st_blksize = 4096;
    if (n->entry < 0) {
        st->st_ino = FUSE_ROOT_ID;
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2 + s->entry_count;
    } else {
        /* A memory file: an inode number of its own, past those of small file systems. */
        st->st_ino = ((uint64_t)1 << 48) + (uint64_t)n->entry;
        st->st_mode = S_IFREG | 0555;
        st->st_nlink = 1;
        st->st_size = (off_t)s->entries[n->entry].size;
        st->st_blocks = (blkcnt_t)((s->entries[n->entry].size + 511) / 512);
    }
    return 0;
}

/* The guest-visible owner under SQUASH: the xattr on a regular file or directory, else the
 * squash ids. */
void fuse_squash_owner(struct fuse_server *s, const struct fuse_inode *n, uint32_t *uid,
                       uint32_t *gid)
{
    *uid = s->squash_uid;
    *gid = s->squash_gid;
    if (n->fd < 0 || !fuse_is_reg_or_dir(n->type))
        return;
    int fd = fuse_reopen(s, n->fd, O_RDONLY | (n->type == S_IFDIR ? O_DIRECTORY : 0));
    if (fd < 0)
        return;
    char buf[32];
    ssize_t len = fgetxattr(fd, OWNER_XATTR, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
        return;
    buf[len] = 0;
    unsigned long u, g;
    char *end;
    errno = 0;
    u = strtoul(buf, &end, 10);
    if (*end != ':' || end == buf || errno || u > UINT32_MAX)
        return;
    const char *gs = end + 1;
    g = strtoul(gs, &end, 10);
    if (*end || end == gs || errno || g > UINT32_MAX)
        return;
    *uid = (uint32_t)u;
    *gid = (uint32_t)g;
}

/* Records the guest-visible owner; -ENOTSUP and the like when the host file system keeps no
 * user xattrs. */
int fuse_squash_set_owner(struct fuse_server *s, const struct fuse_inode *n, uint32_t uid,
                          uint32_t gid)
{
    if (n->fd < 0 || !fuse_is_reg_or_dir(n->type))
        return -EPERM;
    int fd = fuse_reopen(s, n->fd, O_RDONLY | (n->type == S_IFDIR ? O_DIRECTORY : 0));
    if (fd < 0)
        return fd;
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%u:%u", uid, gid);
    int e = fsetxattr(fd, OWNER_XATTR, buf, (size_t)len, 0) < 0 ? -errno : 0;
    struct stat st;
    /* A user xattr needs write permission even for the owner: lend it for the moment. */
    if (e == -EACCES && fstat(fd, &st) == 0 && st.st_uid == s->euid &&
        fchmod(fd, (st.st_mode & 07777) | S_IWUSR) == 0) {
        e = fsetxattr(fd, OWNER_XATTR, buf, (size_t)len, 0) < 0 ? -errno : 0;
        (void)fchmod(fd, st.st_mode & 07777);
    }
    close(fd);
    return e;
}

void fuse_fill_attr(struct fuse_server *s, const struct fuse_inode *n, const struct stat *st,
                    struct fuse_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->ino = st->st_ino;
    a->size = (uint64_t)st->st_size;
    a->blocks = (uint64_t)st->st_blocks;
    a->atime = (uint64_t)st->st_atim.tv_sec;
    a->mtime = (uint64_t)st->st_mtim.tv_sec;
    a->ctime = (uint64_t)st->st_ctim.tv_sec;
    a->atimensec = (uint32_t)st->st_atim.tv_nsec;
    a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
    a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
    a->mode = st->st_mode;
    a->nlink = (uint32_t)st->st_nlink;
    a->rdev = (uint32_t)st->st_rdev;
    a->blksize = (uint32_t)st->st_blksize;
    if (s->own == FUSE_OWNERSHIP_SQUASH) {
        fuse_squash_owner(s, n, &a->uid, &a->gid);
    } else {
        a->uid = st->st_uid;
        a->gid = st->st_gid;
    }
}

uint64_t fuse_timeout_s(const struct fuse_server *s)
{
    return s->cache == FUSE_CACHE_NEVER ? 0 : s->cache == FUSE_CACHE_AUTO ? 1 : 86400;
}

void fuse_fill_entry(struct fuse_server *s, const struct fuse_inode *n, const struct stat *st,
                     struct fuse_entry_out *e)
{
    memset(e, 0, sizeof(*e));
    e->nodeid = n->nodeid;
    e->entry_valid = e->attr_valid = fuse_timeout_s(s);
    fuse_fill_attr(s, n, st, &e->attr);
}

/* Finds name in parent and counts one lookup of it; the inode held through *out when out is
 * not NULL (else let go). */
int fuse_lookup(struct fuse_server *s, struct fuse_inode *parent, const char *name,
                struct fuse_entry_out *e, struct fuse_inode **out)
{
    struct fuse_inode *n = NULL;
    struct stat st;
    int err;
    if (parent->entry < 0) {
        for (unsigned i = 0; i < s->entry_count && !n; i++)
            if (!strcmp(s->entries[i].name, name))
                n = s->entries[i].node;
        if (!n)
            return -ENOENT;
        fuse_inode_hold(&s->t, n);
        fuse_inode_lookup_inc(&s->t, n);
        err = fuse_node_stat(s, n, &st);
    } else {
        if (parent->type != S_IFDIR || parent->fd < 0)
            return -ENOTDIR;
        int fd = fuse_resolve(parent->fd, name, O_PATH, 0);
        if (fd < 0)
            return fd;
        if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
            err = -errno;
            close(fd);
            return err;
        }
        err = fuse_inode_learn(&s->t, fd, &st, parent->entry, &n);
        if (err)
            return err;
    }
    if (err) {
        fuse_inode_unlearn(&s->t, n, 1);
        fuse_inode_put(&s->t, n);
        return err;
    }
    fuse_fill_entry(s, n, &st, e);
    if (out)
        *out = n;
    else
        fuse_inode_put(&s->t, n);
    return 0;
}

/* Clears set-user-ID, and set-group-ID where group execute makes it one, as a write by
 * someone without CAP_FSETID would (the server as root would keep them). */
int fuse_kill_suidgid(struct fuse_server *s, const struct fuse_inode *n)
{
    struct stat st;
    if (n->type != S_IFREG || n->fd < 0 || fuse_node_stat(s, n, &st) < 0)
        return 0;
    mode_t kill = S_ISUID | ((st.st_mode & S_IXGRP) ? S_ISGID : 0);
    if (!(st.st_mode & kill))
        return 0;
    char name[16];
    fuse_node_fd_name(n, name, sizeof(name));
    return fchmodat(s->proc_fd, name, st.st_mode & 07777 & ~kill, 0) < 0 ? -errno : 0;
}

/* ---- creating as the caller ---- */

/* Root with IDENTITY: this thread's fsuid/fsgid become the caller's and its supplementary
 * groups go, by raw syscalls (glibc's wrappers would change every thread). Each change makes
 * the kernel copy and later free (RCU) the thread's credentials, a fifth of a CREATE's CPU:
 * what is already so is not changed (no groups to drop, a caller with our own ids). */
int fuse_creds_enter(struct fuse_server *s, const struct fuse_in_header *h, struct fuse_creds *c)
{
    c->on = false;
    c->heap = false;
    if (!s->as_caller)
        return 0;
    c->groups = c->small;
    c->ngroups = (int)syscall(SYS_getgroups, 0, NULL);
    if (c->ngroups < 0)
        return -errno;
    if (c->ngroups > 32) {
        c->groups = calloc((size_t)c->ngroups, sizeof(gid_t));
        if (!c->groups)
            return -ENOMEM;
        c->heap = true;
    }
    if (c->ngroups && syscall(SYS_getgroups, c->ngroups, c->groups) != c->ngroups)
        goto fail_groups;
    if (c->ngroups == 0 && h->uid == s->euid && h->gid == s->egid)
        return 0; /* fsuid and fsgid follow euid and egid here: already the caller's */
    if (c->ngroups && syscall(SYS_setgroups, 0, NULL) < 0)
        goto fail_groups;
    c->fsgid = (gid_t)syscall(SYS_setfsgid, h->gid);
    c->fsuid = (uid_t)syscall(SYS_setfsuid, h->uid);
    c->on = true;
    /* setfsuid says nothing of failure: asking for an invalid id returns the current one. */
    if ((uid_t)syscall(SYS_setfsuid, (uid_t)-1) != h->uid ||
        (gid_t)syscall(SYS_setfsgid, (gid_t)-1) != h->gid)
        return -EPERM;
    return 0;
fail_groups:
    if (c->heap)
        free(c->groups);
    c->heap = c->on = false; /* nothing for fuse_creds_leave to undo */
    return -EPERM;
}

void fuse_creds_leave(struct fuse_creds *c)
{
    if (!c->on)
        return;
    syscall(SYS_setfsuid, c->fsuid);
    syscall(SYS_setfsgid, c->fsgid);
    if (c->ngroups)
        syscall(SYS_setgroups, (size_t)c->ngroups, c->groups);
    if (c->heap)
        free(c->groups);
    c->on = false;
}

/* After a creation: the mode the guest asked for (the host's umask may have taken bits; a
 * SQUASH creation made it owner-writable so the owner xattr could be set), and the owner. */
void fuse_created(struct fuse_server *s, struct fuse_req *r, struct fuse_inode *n, mode_t mode,
                  struct fuse_entry_out *e)
{
    if (n->type == S_IFLNK || n->fd < 0)
        return;
    if (s->own == FUSE_OWNERSHIP_SQUASH && fuse_is_reg_or_dir(n->type))
        (void)fuse_squash_set_owner(s, n, r->h.uid, r->h.gid); /* no xattrs: the squash ids show */
    struct stat st;
    if (fuse_node_stat(s, n, &st) < 0)
        return;
    mode_t want = (st.st_mode & 07000) | (mode & 0777);
    char name[16];
    fuse_node_fd_name(n, name, sizeof(name));
    if ((st.st_mode & 07777) != want && fchmodat(s->proc_fd, name, want, 0) == 0)
        (void)fuse_node_stat(s, n, &st);
    fuse_fill_entry(s, n, &st, e);
}
