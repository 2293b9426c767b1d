/* The FUSE server (fuse_server.h). A request is parsed from the guest's iovecs into a small
 * copy (WRITE's payload and BATCH_FORGET's list are read in place), checked, run against the
 * host below the inode's O_PATH fd, and answered into the reply iovecs. The guest is not
 * trusted: a name is one component checked here and resolved by openat2 with RESOLVE_BENEATH
 * and no symlinks; a file is opened for I/O only through /proc/self/fd after its inode was seen
 * to be a regular file or directory, so a FIFO or device is never opened.
 *
 * Errors for bad names: EINVAL for an empty, unterminated, ".", ".." or '/'-holding name,
 * ENAMETOOLONG beyond 255 bytes. A reply that does not fit the guest's buffer: EINVAL, checked
 * before anything is done for requests that change the lookup counts or the host.
 *
 * This file parses, answers and dispatches requests, serves INIT and FORGET, and makes and frees
 * the server; fuse_host.c reaches the host, fuse_metadata.c serves attributes and names, and
 * fuse_io.c open files and directories (fuse_internal.h is what they share). */
#include "attach/fuse_internal.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- iovecs ---- */

static size_t iov_total(const struct iovec *v, unsigned n)
{
    size_t t = 0;
    for (unsigned i = 0; i < n; i++)
        t = v[i].iov_len > SIZE_MAX - t ? SIZE_MAX : t + v[i].iov_len;
    return t;
}

/* Copies len bytes between buf and v's bytes from off: into v when to_iov, else out of it.
 * Returns how many were copied (fewer when v ends first). */
static size_t iov_copy(const struct iovec *v, unsigned n, size_t off, void *buf, size_t len,
                       bool to_iov)
{
    size_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (off >= v[i].iov_len) {
            off -= v[i].iov_len;
            continue;
        }
        size_t k = v[i].iov_len - off < len - done ? v[i].iov_len - off : len - done;
        uint8_t *in_v = (uint8_t *)v[i].iov_base + off, *in_buf = (uint8_t *)buf + done;
        memcpy(to_iov ? in_v : in_buf, to_iov ? in_buf : in_v, k);
        done += k;
        off = 0;
    }
    return done;
}

static size_t iov_from(const struct iovec *v, unsigned n, size_t off, void *dst, size_t len)
{
    return iov_copy(v, n, off, dst, len, false);
}

size_t fuse_iov_to(const struct iovec *v, unsigned n, size_t off, const void *src, size_t len)
{
    return iov_copy(v, n, off, (void *)src, len, true); /* only read from when to_iov */
}

/* ---- replies ---- */

size_t fuse_reply_err(struct fuse_req *r, int err)
{
    if (r->out_len < OUT_HDR)
        return 0;
    struct fuse_out_header o = { .len = OUT_HDR, .error = err ? -err : 0, .unique = r->h.unique };
    fuse_iov_to(r->out, r->out_n, 0, &o, sizeof(o));
    return OUT_HDR;
}

/* The header and len bytes of body; a body that does not fit is EINVAL. */
size_t fuse_reply(struct fuse_req *r, const void *body, size_t len)
{
    if (r->out_len < OUT_HDR + len)
        return fuse_reply_err(r, EINVAL);
    struct fuse_out_header o = { .len = (uint32_t)(OUT_HDR + len), .unique = r->h.unique };
    fuse_iov_to(r->out, r->out_n, 0, &o, sizeof(o));
    fuse_iov_to(r->out, r->out_n, OUT_HDR, body, len);
    return OUT_HDR + len;
}

size_t fuse_reply_res(struct fuse_req *r, int res)
{
    return fuse_reply_err(r, res < 0 ? -res : 0);
}

/* Whether a reply of len body bytes fits: checked before a request changes anything. */
bool fuse_reply_fits(const struct fuse_req *r, size_t len)
{
    return r->out_len >= OUT_HDR + len;
}

/* ---- request arguments ---- */

bool fuse_arg_get(struct fuse_req *r, size_t *off, void *dst, size_t len)
{
    if (*off > r->arg_have || r->arg_have - *off < len)
        return false;
    memcpy(dst, (const uint8_t *)r->arg + *off, len);
    *off += len;
    return true;
}

/* A NUL-terminated string at *off of at most max bytes before the NUL. */
int fuse_arg_str(struct fuse_req *r, size_t *off, size_t max, const char **str)
{
    if (*off >= r->arg_have)
        return -EINVAL;
    const char *p = (const char *)r->arg + *off;
    const char *nul = memchr(p, 0, r->arg_have - *off);
    if (!nul)
        return -EINVAL;
    size_t len = (size_t)(nul - p);
    if (len == 0)
        return -EINVAL;
    if (len > max)
        return -ENAMETOOLONG;
    *off += len + 1;
    *str = p;
    return 0;
}

/* A fixed argument of len bytes, then one path component: 0 or -errno. */
int fuse_arg_named(struct fuse_req *r, void *in, size_t len, const char **name)
{
    size_t off = 0;
    if (!fuse_arg_get(r, &off, in, len))
        return -EINVAL;
    return fuse_arg_name(r, &off, name);
}

/* One path component from the guest. */
int fuse_arg_name(struct fuse_req *r, size_t *off, const char **name)
{
    int e = fuse_arg_str(r, off, NAME_MAX_BYTES, name);
    if (e)
        return e;
    if (strchr(*name, '/') || !strcmp(*name, ".") || !strcmp(*name, ".."))
        return -EINVAL;
    return 0;
}

/* ---- INIT, DESTROY, FORGET ---- */

static size_t op_init(struct fuse_req *r)
{
    struct fuse_server *s = r->s;
    struct fuse_init_in in = { 0 };
    size_t have = r->arg_have < sizeof(in) ? r->arg_have : sizeof(in);
    if (have < 8)
        return fuse_reply_err(r, EINVAL);
    memcpy(&in, r->arg, have);
    if (in.major < FUSE_KERNEL_VERSION)
        return fuse_reply_err(r, EPROTO);
    struct fuse_init_out o = { .major = FUSE_KERNEL_VERSION, .minor = OUR_MINOR };
    if (in.major > FUSE_KERNEL_VERSION)
        return fuse_reply(r, &o, sizeof(o)); /* the kernel asks again with our major */
    uint64_t offered = in.flags;
    if (have >= offsetof(struct fuse_init_in, flags2) + 4 && (in.flags & FUSE_INIT_EXT))
        offered |= (uint64_t)in.flags2 << 32;
    uint64_t want = FUSE_ASYNC_READ | FUSE_PARALLEL_DIROPS | FUSE_HANDLE_KILLPRIV_V2 |
                    FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_BIG_WRITES | FUSE_MAX_PAGES |
                    FUSE_INIT_EXT;
    if (s->cache == FUSE_CACHE_ALWAYS)
        want |= FUSE_CACHE_SYMLINKS;
    uint64_t flags = offered & want;
    o.minor = in.minor < OUR_MINOR ? in.minor : OUR_MINOR;
    o.max_readahead = in.max_readahead;
    o.flags = (uint32_t)flags;
    o.flags2 = (uint32_t)(flags >> 32);
    o.max_background = 64;
    o.congestion_threshold = 48;
    o.max_write = MAX_IO;
    o.time_gran = 1;
    o.max_pages = (flags & FUSE_MAX_PAGES) ? MAX_PAGES : 0;
    size_t len = o.minor < 5    ? FUSE_COMPAT_INIT_OUT_SIZE
                 : o.minor < 23 ? FUSE_COMPAT_22_INIT_OUT_SIZE
                                : sizeof(o);
    if (!fuse_reply_fits(r, len))
        return fuse_reply_err(r, EINVAL);
    atomic_store(&s->killpriv_v2, (flags & FUSE_HANDLE_KILLPRIV_V2) != 0);
    atomic_store(&s->inited, true);
    return fuse_reply(r, &o, len);
}

static size_t op_batch_forget(struct fuse_req *r)
{
    struct fuse_batch_forget_in in;
    size_t off = 0;
    if (!fuse_arg_get(r, &off, &in, sizeof(in)))
        return 0;
    /* Read in place: the list can be longer than the copy. Bounded by what the guest sent. */
    size_t room_n = (r->arg_len - off) / sizeof(struct fuse_forget_one);
    size_t count = in.count < room_n ? in.count : room_n;
    for (size_t i = 0; i < count; i++) {
        struct fuse_forget_one one;
        size_t at = sizeof(r->h) + off + i * sizeof(one);
        if (iov_from(r->in, r->in_n, at, &one, sizeof(one)) != sizeof(one))
            break;
        fuse_inode_forget(&r->s->t, one.nodeid, one.nlookup);
    }
    return 0;
}

/* ---- the entry point ---- */

/* Requests that name an inode by the header's node id (the rest use a file handle or none). */
static bool needs_node(uint32_t op)
{
    switch (op) {
    case FUSE_LOOKUP:
    case FUSE_GETATTR:
    case FUSE_SETATTR:
    case FUSE_READLINK:
    case FUSE_SYMLINK:
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_LINK:
    case FUSE_OPEN:
    case FUSE_STATFS:
    case FUSE_OPENDIR:
    case FUSE_ACCESS:
    case FUSE_CREATE: return true;
    default: return false;
    }
}

static bool known(uint32_t op)
{
    switch (op) {
    case FUSE_INIT:
    case FUSE_DESTROY:
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_READ:
    case FUSE_WRITE:
    case FUSE_FLUSH:
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
    case FUSE_FSYNC:
    case FUSE_FSYNCDIR:
    case FUSE_READDIR:
    case FUSE_READDIRPLUS:
    case FUSE_FALLOCATE:
    case FUSE_LSEEK:
    case FUSE_COPY_FILE_RANGE: return true;
    default: return needs_node(op);
    }
}

static size_t dispatch_node(struct fuse_req *r, struct fuse_inode *n)
{
    switch (r->h.opcode) {
    case FUSE_LOOKUP: return fuse_op_lookup(r, n);
    case FUSE_GETATTR: return fuse_op_getattr(r, n);
    case FUSE_SETATTR: return fuse_op_setattr(r, n);
    case FUSE_READLINK: return fuse_op_readlink(r, n);
    case FUSE_SYMLINK: return fuse_op_make(r, n, MAKE_SYMLINK);
    case FUSE_MKNOD: return fuse_op_make(r, n, MAKE_NODE);
    case FUSE_MKDIR: return fuse_op_make(r, n, MAKE_DIR);
    case FUSE_UNLINK: return fuse_op_remove(r, n, false);
    case FUSE_RMDIR: return fuse_op_remove(r, n, true);
    case FUSE_RENAME: return fuse_op_rename(r, n, false);
    case FUSE_RENAME2: return fuse_op_rename(r, n, true);
    case FUSE_LINK: return fuse_op_link(r, n);
    case FUSE_OPEN: return fuse_op_open(r, n);
    case FUSE_STATFS: return fuse_op_statfs(r, n);
    case FUSE_OPENDIR: return fuse_op_opendir(r, n);
    case FUSE_ACCESS: return fuse_op_access(r, n);
    case FUSE_CREATE: return fuse_op_create(r, n);
    default: return fuse_reply_err(r, ENOSYS);
    }
}

static size_t dispatch(struct fuse_req *r)
{
    struct fuse_server *s = r->s;
    uint32_t op = r->h.opcode;
    if (op == FUSE_INIT)
        return op_init(r);
    if (!atomic_load(&s->inited))
        return op == FUSE_FORGET || op == FUSE_BATCH_FORGET ? 0 : fuse_reply_err(r, EIO);
    if (!known(op))
        return fuse_reply_err(r, ENOSYS);
    /* Only WRITE's payload and BATCH_FORGET's list may be longer than the copy. */
    if (r->arg_have < r->arg_len && op != FUSE_WRITE && op != FUSE_BATCH_FORGET)
        return fuse_reply_err(r, EINVAL);
    switch (op) {
    case FUSE_DESTROY:
        atomic_store(&s->inited, false);
        fuse_tables_forget_all(&s->t);
        return fuse_reply_err(r, 0);
    case FUSE_FORGET: {
        struct fuse_forget_in in;
        size_t off = 0;
        if (fuse_arg_get(r, &off, &in, sizeof(in)))
            fuse_inode_forget(&s->t, r->h.nodeid, in.nlookup);
        return 0;
    }
    case FUSE_BATCH_FORGET: return op_batch_forget(r);
    case FUSE_READ: return fuse_op_read(r);
    case FUSE_WRITE: return fuse_op_write(r);
    case FUSE_FLUSH: return fuse_op_flush(r);
    case FUSE_RELEASE: return fuse_op_release(r, false);
    case FUSE_RELEASEDIR: return fuse_op_release(r, true);
    case FUSE_FSYNC: return fuse_op_fsync(r, false);
    case FUSE_FSYNCDIR: return fuse_op_fsync(r, true);
    case FUSE_READDIR: return fuse_op_readdir(r, false);
    case FUSE_READDIRPLUS: return fuse_op_readdir(r, true);
    case FUSE_FALLOCATE: return fuse_op_fallocate(r);
    case FUSE_LSEEK: return fuse_op_lseek(r);
    case FUSE_COPY_FILE_RANGE: return fuse_op_copy_file_range(r);
    default: break;
    }
    struct fuse_inode *n = fuse_inode_get(&s->t, r->h.nodeid);
    if (!n)
        return fuse_reply_err(r, ESTALE);
    size_t len = dispatch_node(r, n);
    fuse_inode_put(&s->t, n);
    return len;
}

size_t fuse_server_handle(struct fuse_server *s, const struct iovec *in, unsigned in_n,
                          const struct iovec *out, unsigned out_n)
{
    /* On the stack, not the heap: 8 KiB allocated on one request and freed at its end was
     * a malloc and a free per request for nothing (only the fields below are read before
     * they are written; arg only up to arg_have). */
    struct fuse_req req, *r = &req;
    r->s = s;
    r->in = in;
    r->in_n = in_n;
    r->out = out;
    r->out_n = out_n;
    r->out_len = iov_total(out, out_n);
    size_t in_len = iov_total(in, in_n);
    if (in_len < sizeof(r->h) || iov_from(in, in_n, 0, &r->h, sizeof(r->h)) != sizeof(r->h))
        return 0; /* no header, no unique to answer to */
    if (r->h.len < sizeof(r->h) || r->h.len > in_len)
        return fuse_reply_err(r, EINVAL);
    r->arg_len = r->h.len - sizeof(r->h);
    size_t want = r->arg_len < ARGS_MAX ? r->arg_len : ARGS_MAX;
    r->arg_have = iov_from(in, in_n, sizeof(r->h), r->arg, want);
    return dispatch(r);
}

/* ---- life ---- */

static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    return len && len <= NAME_MAX_BYTES && !strchr(name, '/') && strcmp(name, ".") &&
           strcmp(name, "..");
}

/* Opens entry i (or the single directory share) as an inode that stays. */
static vmk_result open_entry(struct fuse_server *s, const struct fuse_server_params *p, unsigned i,
                             const char *what, vmk_error **err)
{
    const struct fuse_share_entry *pe = &p->entries[i];
    struct share_entry *e = &s->entries[i];
    e->ro = pe->read_only;
    if (!pe->path) {
        if (!s->multi || (pe->size && !pe->data))
            return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: entry %u has no path", what, i);
        e->data = pe->data;
        e->size = pe->size;
        e->ro = true;
        struct stat st = { .st_mode = S_IFREG };
        e->node = fuse_inode_add_pinned(&s->t, -1, &st, (int)i);
        if (!e->node)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "%s: out of memory", what);
        return VMK_OK;
    }
    int fd = open(pe->path, O_PATH | O_CLOEXEC | (s->multi ? 0 : O_DIRECTORY));
    if (fd < 0)
        return vmk_fail(err, VMK_ERR_IO, errno, "%s: cannot open %s: %s", what, pe->path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !fuse_is_reg_or_dir(st.st_mode & S_IFMT)) {
        close(fd);
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "%s: %s is not a directory or regular file", what, pe->path);
    }
    if (S_ISREG(st.st_mode))
        e->ro = true; /* files are always read-only */
    e->node = fuse_inode_add_pinned(&s->t, fd, &st, (int)i);
    if (!e->node)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "%s: out of memory", what);
    return VMK_OK;
}

struct fuse_server *fuse_server_new(const struct fuse_server_params *p, vmk_error **err)
{
    const char *what = p && p->what ? p->what : "directory sharing device";
    if (!p || !p->entries || !p->entry_count) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: no share entries", what);
        return NULL;
    }
    bool multi = p->entry_count > 1 || p->entries[0].name;
    for (unsigned i = 0; i < p->entry_count && multi; i++) {
        const char *name = p->entries[i].name;
        bool dup = false;
        for (unsigned j = 0; j < i && name; j++)
            dup |= !strcmp(p->entries[j].name, name);
        if (!name || !valid_name(name) || dup) {
            vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "%s: entry %u: %s name", what, i,
                     dup ? "a taken" : "a missing or invalid");
            return NULL;
        }
    }
    struct fuse_server *s = calloc(1, sizeof(*s));
    if (!s) {
        vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "%s: out of memory", what);
        return NULL;
    }
    s->proc_fd = -1;
    s->multi = multi;
    s->cache = p->cache;
    s->own = p->ownership;
    s->squash_uid = p->squash_uid;
    s->squash_gid = p->squash_gid;
    s->euid = geteuid();
    s->egid = getegid();
    s->as_caller = s->euid == 0 && p->ownership == FUSE_OWNERSHIP_IDENTITY;
    clock_gettime(CLOCK_REALTIME, &s->born);
    atomic_init(&s->inited, false);
    atomic_init(&s->killpriv_v2, false);
    if (fuse_tables_init(&s->t, p->max_inodes ? p->max_inodes : 1u << 20,
                         p->max_handles ? p->max_handles : 65536) < 0) {
        free(s);
        vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "%s: out of memory", what);
        return NULL;
    }
    s->entries = calloc(p->entry_count, sizeof(*s->entries));
    if (!s->entries) {
        vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "%s: out of memory", what);
        goto fail;
    }
    s->entry_count = p->entry_count;
    s->proc_fd = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (s->proc_fd < 0) {
        vmk_fail(err, VMK_ERR_UNSUPPORTED, errno, "%s: cannot open /proc/self/fd: %s", what,
                 strerror(errno));
        goto fail;
    }
    if (multi) {
        struct stat st = { .st_mode = S_IFDIR };
        if (!fuse_inode_add_pinned(&s->t, -1, &st, -1)) {
            vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "%s: out of memory", what);
            goto fail;
        }
    }
    for (unsigned i = 0; i < p->entry_count; i++) {
        if (multi) {
            s->entries[i].name = strdup(p->entries[i].name);
            if (!s->entries[i].name) {
                vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "%s: out of memory", what);
                goto fail;
            }
        }
        if (open_entry(s, p, i, what, err) != VMK_OK)
            goto fail;
    }
    return s;
fail:
    fuse_server_free(s);
    return NULL;
}

void fuse_server_reset(struct fuse_server *s)
{
    if (!s)
        return;
    atomic_store(&s->inited, false);
    atomic_store(&s->killpriv_v2, false);
    fuse_tables_forget_all(&s->t);
}

void fuse_server_counts(struct fuse_server *s, unsigned *inodes, unsigned *handles)
{
    fuse_tables_counts(&s->t, inodes, handles);
}

void fuse_server_free(struct fuse_server *s)
{
    if (!s)
        return;
    fuse_tables_fini(&s->t);
    for (unsigned i = 0; s->entries && i < s->entry_count; i++)
        free(s->entries[i].name);
    free(s->entries);
    if (s->proc_fd >= 0)
        close(s->proc_fd);
    free(s);
}
