/* The FUSE server's open files and directories (fuse_internal.h): OPEN, CREATE and OPENDIR make
 * handles; READ, WRITE, FLUSH, FSYNC, FALLOCATE, LSEEK and COPY_FILE_RANGE use them, moving data
 * straight between guest memory and the host; READDIR(PLUS) lists; RELEASE lets go. */
#include "attach/fuse_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- opening ---- */

static uint32_t open_flags_out(const struct fuse_server *s, bool dir)
{
    if (s->cache == FUSE_CACHE_NEVER)
        return dir ? 0 : FOPEN_DIRECT_IO;
    if (s->cache == FUSE_CACHE_ALWAYS)
        return FOPEN_KEEP_CACHE | (dir ? FOPEN_CACHE_DIR : 0);
    return 0;
}

/* The guest's open flags, cut to those that only shape I/O on a regular file: never O_CREAT,
 * O_PATH, O_DIRECTORY or O_DIRECT (guest buffers need not be aligned); O_NOATIME only for the
 * owner. */
static int host_open_flags(const struct fuse_req *r, uint32_t guest, uid_t owner, bool *writable)
{
    int acc = (int)(guest & O_ACCMODE);
    if (acc == O_ACCMODE)
        return -EINVAL;
    int f = acc | (int)(guest & (O_APPEND | O_TRUNC | O_SYNC | O_DSYNC | O_NONBLOCK | O_NOATIME));
    if ((f & O_NOATIME) && (r->h.uid != owner || (r->s->euid != 0 && owner != r->s->euid)))
        f &= ~O_NOATIME;
    *writable = acc != O_RDONLY;
    return f;
}

/* Why a node cannot be opened as a file: a FIFO or device would block or reach the host's
 * hardware, so they are refused without being opened. */
static int not_a_file(const struct fuse_inode *n)
{
    switch (n->type) {
    case S_IFREG: return 0;
    case S_IFDIR: return -EISDIR;
    case S_IFLNK: return -ELOOP;
    case S_IFSOCK: return -ENXIO;
    default: return -EACCES;
    }
}

size_t fuse_op_open(struct fuse_req *r, struct fuse_inode *n)
{
    struct fuse_server *s = r->s;
    struct fuse_open_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return fuse_reply_err(r, EINVAL);
    if (!fuse_reply_fits(r, sizeof(struct fuse_open_out)))
        return fuse_reply_err(r, EINVAL);
    int e = not_a_file(n);
    if (e)
        return fuse_reply_res(r, e);
    struct stat st;
    e = fuse_node_stat(s, n, &st);
    if (e)
        return fuse_reply_res(r, e);
    bool writable;
    int flags = host_open_flags(r, in.flags, st.st_uid, &writable);
    if (flags < 0)
        return fuse_reply_res(r, flags);
    if ((writable || (flags & O_TRUNC)) && fuse_node_ro(s, n))
        return fuse_reply_err(r, EROFS);
    int fd = -1;
    if (n->fd >= 0) {
        fd = fuse_reopen(s, n->fd, flags);
        if (fd < 0)
            return fuse_reply_res(r, fd);
        if ((flags & O_TRUNC) && (in.open_flags & FUSE_OPEN_KILL_SUIDGID))
            (void)fuse_kill_suidgid(s, n);
    }
    struct fuse_open_out o = { .open_flags = open_flags_out(s, false) };
    e = fuse_handle_new(&s->t, n, fd, false, writable, &o.fh);
    return e ? fuse_reply_res(r, e) : fuse_reply(r, &o, sizeof(o));
}

size_t fuse_op_create(struct fuse_req *r, struct fuse_inode *parent)
{
    struct fuse_server *s = r->s;
    struct fuse_create_in in;
    const char *name;
    int e = fuse_arg_named(r, &in, sizeof(in), &name);
    if (e)
        return fuse_reply_res(r, e);
    struct {
        struct fuse_entry_out e;
        struct fuse_open_out o;
    } out;
    if (!fuse_reply_fits(r, sizeof(out)))
        return fuse_reply_err(r, EINVAL);
    if (fuse_node_ro(s, parent))
        return fuse_reply_err(r, EROFS);
    if (parent->type != S_IFDIR || parent->fd < 0)
        return fuse_reply_err(r, ENOTDIR);
    if (!fuse_inode_room(&s->t))
        return fuse_reply_err(r, ENFILE);
    bool writable;
    int flags = host_open_flags(r, in.flags, r->h.uid, &writable);
    if (flags < 0)
        return fuse_reply_res(r, flags);
    mode_t mode = fuse_allowed_mode(s, in.mode & 07777);
    mode_t host_mode = mode | (s->own == FUSE_OWNERSHIP_SQUASH ? 0600 : 0);
    /* Always O_EXCL: an existing name (a FIFO, say) is opened below only once seen to be a
     * regular file. */
    struct fuse_creds c;
    int fd = fuse_creds_enter(s, &r->h, &c);
    if (!fd)
        fd = fuse_resolve(parent->fd, name, (flags & ~O_TRUNC) | O_CREAT | O_EXCL, host_mode);
    fuse_creds_leave(&c);
    bool made = fd >= 0;
    struct fuse_inode *n = NULL;
    if (fd == -EEXIST && !(in.flags & O_EXCL)) {
        e = fuse_lookup(s, parent, name, &out.e, &n);
        if (e || !n)
            return fuse_reply_res(r, e ? e : -EIO);
        e = not_a_file(n);
        fd = e ? e : fuse_reopen(s, n->fd, flags);
        if (fd >= 0 && (flags & O_TRUNC) && (in.open_flags & FUSE_OPEN_KILL_SUIDGID))
            (void)fuse_kill_suidgid(s, n);
    } else if (fd >= 0) {
        e = fuse_lookup(s, parent, name, &out.e, &n);
        if (e || !n) {
            close(fd);
            return fuse_reply_res(r, e ? e : -EIO);
        }
    }
    if (fd < 0) {
        if (n) {
            fuse_inode_unlearn(&s->t, n, 1);
            fuse_inode_put(&s->t, n);
        }
        return fuse_reply_res(r, fd);
    }
    if (made)
        fuse_created(s, r, n, mode, &out.e);
    memset(&out.o, 0, sizeof(out.o));
    out.o.open_flags = open_flags_out(s, false);
    e = fuse_handle_new(&s->t, n, fd, false, writable, &out.o.fh);
    if (e)
        fuse_inode_unlearn(&s->t, n, 1); /* the file stays; the guest hears of no entry */
    fuse_inode_put(&s->t, n);
    return e ? fuse_reply_res(r, e) : fuse_reply(r, &out, sizeof(out));
}

size_t fuse_op_opendir(struct fuse_req *r, struct fuse_inode *n)
{
    struct fuse_server *s = r->s;
    if (!fuse_reply_fits(r, sizeof(struct fuse_open_out)))
        return fuse_reply_err(r, EINVAL);
    if (n->type != S_IFDIR)
        return fuse_reply_err(r, ENOTDIR);
    int fd = -1;
    if (n->fd >= 0) {
        fd = fuse_reopen(s, n->fd, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
            return fuse_reply_res(r, fd);
    }
    struct fuse_open_out o = { .open_flags = open_flags_out(s, true) };
    int e = fuse_handle_new(&s->t, n, fd, true, false, &o.fh);
    return e ? fuse_reply_res(r, e) : fuse_reply(r, &o, sizeof(o));
}

size_t fuse_op_release(struct fuse_req *r, bool dir)
{
    struct fuse_release_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return fuse_reply_err(r, EINVAL);
    return fuse_reply_res(r, fuse_handle_release(&r->s->t, in.fh, dir));
}

/* ---- I/O on handles ---- */

/* dst = the bytes [off, off + len) of v, as at most max iovecs; the count, or -EINVAL. */
static int iov_slice(const struct iovec *v, unsigned n, size_t off, size_t len, struct iovec *dst,
                     unsigned max)
{
    unsigned c = 0;
    for (unsigned i = 0; i < n && len; i++) {
        if (off >= v[i].iov_len) {
            off -= v[i].iov_len;
            continue;
        }
        if (c == max)
            return -EINVAL;
        size_t k = v[i].iov_len - off < len ? v[i].iov_len - off : len;
        dst[c++] = (struct iovec){ (uint8_t *)v[i].iov_base + off, k };
        len -= k;
        off = 0;
    }
    return (int)c;
}

/* The handle a request's fh names, held, if of the kind wanted; NULL otherwise. */
static struct fuse_handle *get_handle(struct fuse_req *r, uint64_t fh, bool dir)
{
    struct fuse_handle *h = fuse_handle_get(&r->s->t, fh);
    if (h && h->dir != dir) {
        fuse_handle_put(&r->s->t, h);
        h = NULL;
    }
    return h;
}

/* Reads a request's fixed argument (len bytes into in, fh pointing at its file handle field)
 * and takes the handle it names, if of the kind wanted: 0, or -errno. */
static int arg_handle(struct fuse_req *r, void *in, size_t len, uint64_t *fh, bool dir,
                      struct fuse_handle **h)
{
    size_t off = 0;
    if (!fuse_arg_get(r, &off, in, len))
        return -EINVAL;
    *h = get_handle(r, *fh, dir);
    return *h ? 0 : -EBADF;
}

size_t fuse_op_read(struct fuse_req *r)
{
    struct fuse_server *s = r->s;
    if (r->out_len < OUT_HDR)
        return 0;
    struct fuse_read_in in;
    struct fuse_handle *h;
    int e = arg_handle(r, &in, sizeof(in), &in.fh, false, &h);
    if (e)
        return fuse_reply_res(r, e);
    size_t size = in.size;
    if (size > MAX_IO)
        size = MAX_IO;
    if (size > r->out_len - OUT_HDR)
        size = r->out_len - OUT_HDR;
    ssize_t n = 0;
    if ((int64_t)in.offset < 0) {
        n = -EINVAL;
    } else if (h->fd < 0) {
        const struct share_entry *en = &s->entries[h->node->entry];
        if (in.offset < en->size) {
            size_t k = en->size - in.offset < size ? (size_t)(en->size - in.offset) : size;
            n = (ssize_t)fuse_iov_to(r->out, r->out_n, OUT_HDR,
                                     (const uint8_t *)en->data + in.offset, k);
        }
    } else if (size) {
        struct iovec iov[IOV_MAX > 1024 ? 1024 : IOV_MAX];
        int cnt = iov_slice(r->out, r->out_n, OUT_HDR, size, iov, sizeof(iov) / sizeof(iov[0]));
        n = cnt < 0 ? cnt : preadv(h->fd, iov, cnt, (off_t)in.offset);
        if (n < 0 && cnt >= 0)
            n = -errno;
    }
    fuse_handle_put(&s->t, h);
    if (n < 0)
        return fuse_reply_res(r, (int)n);
    struct fuse_out_header o = { .len = (uint32_t)(OUT_HDR + (size_t)n), .unique = r->h.unique };
    fuse_iov_to(r->out, r->out_n, 0, &o, sizeof(o));
    return o.len;
}

size_t fuse_op_write(struct fuse_req *r)
{
    struct fuse_server *s = r->s;
    struct fuse_write_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return fuse_reply_err(r, EINVAL);
    size_t payload = r->arg_len - sizeof(in);
    if (in.size != payload || in.size > MAX_IO || (int64_t)in.offset < 0)
        return fuse_reply_err(r, EINVAL);
    if (!fuse_reply_fits(r, sizeof(struct fuse_write_out)))
        return fuse_reply_err(r, EINVAL);
    struct fuse_handle *h = get_handle(r, in.fh, false);
    if (!h)
        return fuse_reply_err(r, EBADF);
    ssize_t n;
    if (fuse_node_ro(s, h->node)) {
        n = -EROFS;
    } else if (!h->writable || h->fd < 0) {
        n = -EBADF;
    } else {
        struct stat st;
        bool kill = (in.write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
        /* Without KILLPRIV_V2 the guest leaves it to us: a write by anyone but the owner. */
        if (!kill && !atomic_load(&s->killpriv_v2) && fstat(h->fd, &st) == 0)
            kill = r->h.uid != st.st_uid;
        if (kill)
            (void)fuse_kill_suidgid(s, h->node);
        struct iovec iov[IOV_MAX > 1024 ? 1024 : IOV_MAX];
        int cnt = iov_slice(r->in, r->in_n, sizeof(r->h) + sizeof(in), in.size, iov,
                            sizeof(iov) / sizeof(iov[0]));
        n = cnt < 0 ? cnt : in.size ? pwritev(h->fd, iov, cnt, (off_t)in.offset) : 0;
        if (n < 0 && cnt >= 0)
            n = -errno;
    }
    fuse_handle_put(&s->t, h);
    if (n < 0)
        return fuse_reply_res(r, (int)n);
    struct fuse_write_out o = { .size = (uint32_t)n };
    return fuse_reply(r, &o, sizeof(o));
}

size_t fuse_op_flush(struct fuse_req *r)
{
    struct fuse_flush_in in;
    struct fuse_handle *h;
    int e = arg_handle(r, &in, sizeof(in), &in.fh, false, &h);
    if (!e)
        fuse_handle_put(&r->s->t, h);
    return fuse_reply_res(r, e);
}

size_t fuse_op_fsync(struct fuse_req *r, bool dir)
{
    struct fuse_fsync_in in;
    struct fuse_handle *h;
    int e = arg_handle(r, &in, sizeof(in), &in.fh, dir, &h);
    if (e)
        return fuse_reply_res(r, e);
    if (h->fd >= 0 &&
        ((in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h->fd) : fsync(h->fd)) < 0)
        e = -errno;
    fuse_handle_put(&r->s->t, h);
    return fuse_reply_res(r, e);
}

size_t fuse_op_fallocate(struct fuse_req *r)
{
    struct fuse_fallocate_in in;
    struct fuse_handle *h;
    int e = arg_handle(r, &in, sizeof(in), &in.fh, false, &h);
    if (e)
        return fuse_reply_res(r, e);
    if (fuse_node_ro(r->s, h->node))
        e = -EROFS;
    else if (h->fd < 0 || !h->writable)
        e = -EBADF;
    else if ((int64_t)in.offset < 0 || (int64_t)in.length <= 0)
        e = -EINVAL;
    else if (fallocate(h->fd, (int)in.mode, (off_t)in.offset, (off_t)in.length) < 0)
        e = -errno;
    fuse_handle_put(&r->s->t, h);
    return fuse_reply_res(r, e);
}

size_t fuse_op_lseek(struct fuse_req *r)
{
    struct fuse_lseek_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return fuse_reply_err(r, EINVAL);
    if (in.whence != SEEK_DATA && in.whence != SEEK_HOLE)
        return fuse_reply_err(r, EINVAL);
    struct fuse_handle *h = get_handle(r, in.fh, false);
    if (!h)
        return fuse_reply_err(r, EBADF);
    int64_t res;
    if ((int64_t)in.offset < 0) {
        res = -EINVAL;
    } else if (h->fd < 0) {
        uint64_t size = r->s->entries[h->node->entry].size;
        res = in.offset >= size        ? -ENXIO
              : in.whence == SEEK_DATA ? (int64_t)in.offset
                                       : (int64_t)size;
    } else {
        res = lseek(h->fd, (off_t)in.offset, (int)in.whence);
        if (res < 0)
            res = -errno;
    }
    fuse_handle_put(&r->s->t, h);
    if (res < 0)
        return fuse_reply_res(r, (int)res);
    struct fuse_lseek_out o = { .offset = (uint64_t)res };
    return fuse_reply(r, &o, sizeof(o));
}

size_t fuse_op_copy_file_range(struct fuse_req *r)
{
    struct fuse_server *s = r->s;
    struct fuse_copy_file_range_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return fuse_reply_err(r, EINVAL);
    if (!fuse_reply_fits(r, sizeof(struct fuse_write_out)))
        return fuse_reply_err(r, EINVAL);
    struct fuse_handle *hi = get_handle(r, in.fh_in, false);
    struct fuse_handle *ho = get_handle(r, in.fh_out, false);
    ssize_t n;
    if (!hi || !ho)
        n = -EBADF;
    else if (fuse_node_ro(s, ho->node))
        n = -EROFS;
    else if (in.flags || (int64_t)in.off_in < 0 || (int64_t)in.off_out < 0)
        n = -EINVAL;
    else if (hi->fd < 0 || ho->fd < 0)
        n = -EXDEV;
    else if (!ho->writable)
        n = -EBADF;
    else {
        loff_t oi = (loff_t)in.off_in, oo = (loff_t)in.off_out;
        size_t len = in.len < MAX_COPY ? (size_t)in.len : MAX_COPY;
        n = copy_file_range(hi->fd, &oi, ho->fd, &oo, len, 0);
        if (n < 0)
            n = -errno;
    }
    fuse_handle_put(&s->t, hi);
    fuse_handle_put(&s->t, ho);
    if (n < 0)
        return fuse_reply_res(r, (int)n);
    struct fuse_write_out o = { .size = (uint32_t)n };
    return fuse_reply(r, &o, sizeof(o));
}

/* ---- directories ---- */

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* A reply being filled with directory entries. */
struct dirbuf {
    uint8_t *p;
    size_t len, cap;
};

/* <linux/fuse.h>'s size macros take an entry; these take a name's length. */
static size_t dirent_size(size_t namelen, bool plus)
{
    return FUSE_DIRENT_ALIGN((plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET) + namelen);
}

/* Adds one entry if it fits (false when not: the reply ends there). e: READDIRPLUS's entry,
 * or NULL for READDIR. */
static bool dir_add(struct dirbuf *b, const struct fuse_entry_out *e, uint64_t ino, uint64_t next,
                    uint32_t type, const char *name, size_t namelen)
{
    size_t need = dirent_size(namelen, e != NULL);
    if (b->cap - b->len < need)
        return false;
    uint8_t *p = b->p + b->len;
    memset(p, 0, need);
    if (e) {
        memcpy(p, e, sizeof(*e));
        p += sizeof(*e);
    }
    struct fuse_dirent d = { .ino = ino, .off = next, .namelen = (uint32_t)namelen, .type = type };
    memcpy(p, &d, FUSE_NAME_OFFSET);
    memcpy(p + FUSE_NAME_OFFSET, name, namelen);
    b->len += need;
    return true;
}

static bool is_dot(const char *name)
{
    return !strcmp(name, ".") || !strcmp(name, "..");
}

/* The made-up root: ".", "..", then the entries; offsets 1, 2, 3... */
static void readdir_root(struct fuse_server *s, struct fuse_inode *dir, struct dirbuf *b,
                         uint64_t from, bool plus)
{
    for (uint64_t i = from; i < 2 + (uint64_t)s->entry_count; i++) {
        const char *name = i == 0 ? "." : i == 1 ? ".." : s->entries[i - 2].name;
        struct fuse_inode *n = i < 2 ? dir : s->entries[i - 2].node;
        struct stat st;
        if (fuse_node_stat(s, n, &st) < 0)
            continue;
        struct fuse_entry_out e = { 0 };
        if (plus && i >= 2) {
            if (dirent_size(strlen(name), true) > b->cap - b->len)
                return;
            fuse_fill_entry(s, n, &st, &e);
            fuse_inode_lookup_inc(&s->t, n);
        } else {
            e.attr.ino = st.st_ino;
            e.attr.mode = st.st_mode & S_IFMT;
        }
        if (!dir_add(b, plus ? &e : NULL, st.st_ino, i + 1, (st.st_mode & S_IFMT) >> 12, name,
                     strlen(name)))
            return;
    }
}

/* Adds the entry at d to b (looked up first for READDIRPLUS); false when b is full. */
static bool add_host_entry(struct fuse_server *s, struct fuse_handle *h, struct dirbuf *b,
                           const struct linux_dirent64 *d, bool plus)
{
    size_t namelen = strnlen(d->d_name, NAME_MAX_BYTES + 1);
    if (namelen > NAME_MAX_BYTES)
        return true; /* not a name we can give the guest: skipped */
    struct fuse_entry_out ent = { 0 };
    ent.attr.ino = d->d_ino;
    ent.attr.mode = (uint32_t)d->d_type << 12;
    if (plus) {
        if (dirent_size(namelen, true) > b->cap - b->len)
            return false;
        /* A name that went meanwhile is listed without an inode (node id 0). */
        if (!is_dot(d->d_name) && fuse_lookup(s, h->node, d->d_name, &ent, NULL) < 0) {
            memset(&ent, 0, sizeof(ent));
            ent.attr.ino = d->d_ino;
            ent.attr.mode = (uint32_t)d->d_type << 12;
        }
    }
    return dir_add(b, plus ? &ent : NULL, d->d_ino, (uint64_t)d->d_off, d->d_type, d->d_name,
                   namelen);
}

/* Fills b from the directory, from the entry after offset `from`. What getdents returns beyond
 * what b holds stays in the handle for the next call, which then neither seeks nor reads the
 * directory again: a listing costs one pass whatever the guest's buffer size. */
static int readdir_host(struct fuse_server *s, struct fuse_handle *h, struct dirbuf *b,
                        uint64_t from, bool plus)
{
    int e = 0;
    pthread_mutex_lock(&h->dir_lock);
    if (!h->dents && !(h->dents = malloc(DIRENT_BUF))) {
        pthread_mutex_unlock(&h->dir_lock);
        return -ENOMEM;
    }
    if (h->dents_pos >= h->dents_len || h->dents_from != from) {
        h->dents_pos = h->dents_len = 0; /* not where we stopped: seek */
        if (lseek(h->fd, (off_t)from, SEEK_SET) < 0) {
            e = -errno;
            goto out;
        }
    }
    for (;;) {
        if (h->dents_pos >= h->dents_len) {
            long n = syscall(SYS_getdents64, h->fd, h->dents, DIRENT_BUF);
            if (n <= 0) {
                e = n < 0 && !b->len ? -errno : 0;
                h->dents_pos = h->dents_len = 0;
                goto out;
            }
            h->dents_len = (size_t)n;
            h->dents_pos = 0;
        }
        const struct linux_dirent64 *d = (const void *)(h->dents + h->dents_pos);
        if (!add_host_entry(s, h, b, d, plus))
            goto out; /* b is full: this entry is the next call's first */
        h->dents_pos += d->d_reclen;
        from = (uint64_t)d->d_off;
    }
out:
    h->dents_from = from;
    pthread_mutex_unlock(&h->dir_lock);
    return e;
}

size_t fuse_op_readdir(struct fuse_req *r, bool plus)
{
    struct fuse_server *s = r->s;
    if (r->out_len < OUT_HDR)
        return 0;
    struct fuse_read_in in;
    struct fuse_handle *h;
    int e = arg_handle(r, &in, sizeof(in), &in.fh, true, &h);
    if (e)
        return fuse_reply_res(r, e);
    struct dirbuf b = { .cap = in.size < MAX_IO ? in.size : MAX_IO };
    if (b.cap > r->out_len - OUT_HDR)
        b.cap = r->out_len - OUT_HDR;
    b.p = malloc(b.cap ? b.cap : 1);
    if (!b.p)
        e = -ENOMEM;
    else if (h->fd < 0)
        readdir_root(s, h->node, &b, in.offset, plus);
    else
        e = readdir_host(s, h, &b, in.offset, plus);
    fuse_handle_put(&s->t, h);
    size_t len = e ? fuse_reply_res(r, e) : fuse_reply(r, b.p, b.len);
    free(b.p);
    return len;
}
