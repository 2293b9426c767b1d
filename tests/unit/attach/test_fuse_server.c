/* The FUSE server against a temporary share, driven by a small fake driver: requests are built
 * as the guest lays them out (split over several iovecs), replies parsed from the header. */
#include "attach/fuse_server.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "fd_count.h"

#define OUT_CAP (2u << 20)
#define HDR     sizeof(struct fuse_out_header)

struct fix {
    char dir[64];
    struct fuse_server *s;
    int fds_before;
    uint8_t *out;
    uint64_t unique;
    uint32_t uid, gid; /* the caller's ids in requests */
};

/* A request being built. */
struct rq {
    uint8_t b[16384];
    size_t n;
};

/* A reply. */
struct res {
    int err; /* the header's error (negative) */
    size_t total;
    const uint8_t *body;
    size_t len;
};

static void path_of(const struct fix *f, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", f->dir, name);
}

static void write_file(const struct fix *f, const char *name, const char *text)
{
    char p[256];
    path_of(f, name, p, sizeof(p));
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void populate(struct fix *f)
{
    char p[256];
    write_file(f, "file", "hello");
    path_of(f, "dir", p, sizeof(p));
    assert_int_equal(mkdir(p, 0755), 0);
    write_file(f, "dir/inner", "inside");
    path_of(f, "link", p, sizeof(p));
    assert_int_equal(symlink("/etc", p), 0);
    path_of(f, "up", p, sizeof(p));
    assert_int_equal(symlink("../..", p), 0);
    path_of(f, "fifo", p, sizeof(p));
    assert_int_equal(mkfifo(p, 0666), 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    path_of(f, "sock", sa.sun_path, sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    path_of(f, "dev", p, sizeof(p));
    if (geteuid() == 0)
        (void)!mknod(p, S_IFCHR | 0666, makedev(1, 3)); /* /dev/null's numbers */
}

static struct fuse_server *make_server(struct fix *f, const struct fuse_server_params *tweak)
{
    struct fuse_share_entry e = { .path = f->dir };
    struct fuse_server_params p = {
        .entries = &e, .entry_count = 1, .cache = FUSE_CACHE_AUTO, .what = "test share"
    };
    if (tweak)
        p = *tweak;
    if (!p.entries) {
        p.entries = &e;
        p.entry_count = 1;
    }
    vmk_error *err = NULL;
    struct fuse_server *s = fuse_server_new(&p, &err);
    if (!s)
        fprintf(stderr, "fuse_server_new: %s\n", vmk_error_message(err));
    assert_non_null(s);
    return s;
}

static int init_fix(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->fds_before = fd_count();
    strcpy(f->dir, "/tmp/vmkit-fuse-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    populate(f);
    f->out = malloc(OUT_CAP);
    assert_non_null(f->out);
    f->uid = geteuid();
    f->gid = getegid();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    fuse_server_free(f->s);
    /* Every fd the server opened is closed again. */
    assert_int_equal(fd_count(), f->fds_before);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s; rm -rf %s", f->dir, f->dir);
    assert_int_equal(system(cmd), 0);
    free(f->out);
    free(f);
    return 0;
}

/* ---- the fake driver ---- */

static void rq_start(struct fix *f, struct rq *q, uint32_t op, uint64_t nodeid)
{
    struct fuse_in_header h = { .opcode = op,
                                .unique = ++f->unique,
                                .nodeid = nodeid,
                                .uid = f->uid,
                                .gid = f->gid,
                                .pid = 1 };
    memcpy(q->b, &h, sizeof(h));
    q->n = sizeof(h);
}

static void rq_add(struct rq *q, const void *p, size_t n)
{
    assert_true(q->n + n <= sizeof(q->b));
    memcpy(q->b + q->n, p, n);
    q->n += n;
}

static void rq_str(struct rq *q, const char *s)
{
    rq_add(q, s, strlen(s) + 1);
}

/* Sends q split over three iovecs, the reply into two (out_cap bytes in all). */
static struct res call_cap(struct fix *f, struct rq *q, size_t out_cap)
{
    uint32_t len = (uint32_t)q->n;
    memcpy(q->b, &len, 4);
    size_t a = q->n > 7 ? 7 : q->n, b = (q->n + a) / 2;
    struct iovec in[3] = { { q->b, a }, { q->b + a, b - a }, { q->b + b, q->n - b } };
    size_t split = out_cap > 24 ? 24 : out_cap;
    struct iovec out[2] = { { f->out, split }, { f->out + split, out_cap - split } };
    memset(f->out, 0xa5, out_cap < 4096 ? out_cap : 4096);
    struct res r = { 0 };
    r.total = fuse_server_handle(f->s, in, 3, out, 2);
    if (!r.total)
        return r;
    struct fuse_out_header h;
    assert_true(r.total >= HDR && r.total <= out_cap);
    memcpy(&h, f->out, sizeof(h));
    assert_int_equal(h.len, r.total);
    uint64_t unique;
    memcpy(&unique, q->b + offsetof(struct fuse_in_header, unique), 8);
    assert_true(h.unique == unique);
    r.err = h.error;
    if (r.err)
        assert_int_equal(r.total, HDR);
    r.body = f->out + HDR;
    r.len = r.total - HDR;
    return r;
}

static struct res call(struct fix *f, struct rq *q)
{
    return call_cap(f, q, OUT_CAP);
}

static struct res do_init(struct fix *f, uint32_t major, uint32_t minor, uint32_t flags)
{
    struct rq q;
    rq_start(f, &q, FUSE_INIT, 0);
    struct fuse_init_in in = {
        .major = major, .minor = minor, .max_readahead = 65536, .flags = flags
    };
    rq_add(&q, &in, sizeof(in));
    return call(f, &q);
}

static void init_ok(struct fix *f)
{
    struct res r = do_init(f, 7, 38, 0xffffffffu & ~FUSE_INIT_EXT);
    assert_int_equal(r.err, 0);
}

static int setup(void **state)
{
    init_fix(state);
    struct fix *f = *state;
    f->s = make_server(f, NULL);
    init_ok(f);
    return 0;
}

static int setup_noinit(void **state)
{
    init_fix(state);
    struct fix *f = *state;
    f->s = make_server(f, NULL);
    return 0;
}

/* Replaces the fixture's server with one made from p. */
static void remake(struct fix *f, const struct fuse_server_params *p)
{
    fuse_server_free(f->s);
    f->s = make_server(f, p);
    init_ok(f);
}

static int name_op(struct fix *f, uint32_t op, uint64_t parent, const char *name)
{
    struct rq q;
    rq_start(f, &q, op, parent);
    rq_str(&q, name);
    return call(f, &q).err;
}

static int lookup(struct fix *f, uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    struct rq q;
    rq_start(f, &q, FUSE_LOOKUP, parent);
    rq_str(&q, name);
    struct res r = call(f, &q);
    if (!r.err) {
        assert_int_equal(r.len, sizeof(*e));
        memcpy(e, r.body, sizeof(*e));
    }
    return r.err;
}

static uint64_t node(struct fix *f, uint64_t parent, const char *name)
{
    struct fuse_entry_out e;
    assert_int_equal(lookup(f, parent, name, &e), 0);
    return e.nodeid;
}

static void forget(struct fix *f, uint64_t nodeid, uint64_t n)
{
    struct rq q;
    rq_start(f, &q, FUSE_FORGET, nodeid);
    struct fuse_forget_in in = { .nlookup = n };
    rq_add(&q, &in, sizeof(in));
    assert_int_equal(call(f, &q).total, 0);
}

static int getattr(struct fix *f, uint64_t nodeid, struct fuse_attr *a)
{
    struct rq q;
    rq_start(f, &q, FUSE_GETATTR, nodeid);
    struct fuse_getattr_in in = { 0 };
    rq_add(&q, &in, sizeof(in));
    struct res r = call(f, &q);
    if (!r.err && a) {
        struct fuse_attr_out o;
        assert_int_equal(r.len, sizeof(o));
        memcpy(&o, r.body, sizeof(o));
        *a = o.attr;
    }
    return r.err;
}

static int open_node(struct fix *f, uint32_t op, uint64_t nodeid, uint32_t flags,
                     struct fuse_open_out *o)
{
    struct rq q;
    rq_start(f, &q, op, nodeid);
    struct fuse_open_in in = { .flags = flags };
    rq_add(&q, &in, sizeof(in));
    struct res r = call(f, &q);
    if (!r.err && o) {
        assert_int_equal(r.len, sizeof(*o));
        memcpy(o, r.body, sizeof(*o));
    }
    return r.err;
}

static uint64_t open_fh(struct fix *f, uint64_t nodeid, uint32_t flags)
{
    struct fuse_open_out o;
    assert_int_equal(open_node(f, FUSE_OPEN, nodeid, flags, &o), 0);
    return o.fh;
}

static int release(struct fix *f, uint32_t op, uint64_t nodeid, uint64_t fh)
{
    struct rq q;
    rq_start(f, &q, op, nodeid);
    struct fuse_release_in in = { .fh = fh };
    rq_add(&q, &in, sizeof(in));
    return call(f, &q).err;
}

static struct res read_fh(struct fix *f, uint64_t nodeid, uint64_t fh, uint64_t off, uint32_t size)
{
    struct rq q;
    rq_start(f, &q, FUSE_READ, nodeid);
    struct fuse_read_in in = { .fh = fh, .offset = off, .size = size };
    rq_add(&q, &in, sizeof(in));
    return call(f, &q);
}

static struct res write_fh(struct fix *f, uint64_t nodeid, uint64_t fh, uint64_t off,
                           const char *data, uint32_t flags)
{
    struct rq q;
    rq_start(f, &q, FUSE_WRITE, nodeid);
    struct fuse_write_in in = {
        .fh = fh, .offset = off, .size = (uint32_t)strlen(data), .write_flags = flags
    };
    rq_add(&q, &in, sizeof(in));
    rq_add(&q, data, strlen(data));
    return call(f, &q);
}

static int create(struct fix *f, uint64_t parent, const char *name, uint32_t flags, uint32_t mode,
                  struct fuse_entry_out *e, struct fuse_open_out *o)
{
    struct rq q;
    rq_start(f, &q, FUSE_CREATE, parent);
    struct fuse_create_in in = { .flags = flags | O_CREAT, .mode = S_IFREG | mode };
    rq_add(&q, &in, sizeof(in));
    rq_str(&q, name);
    struct res r = call(f, &q);
    if (!r.err) {
        assert_int_equal(r.len, sizeof(*e) + sizeof(*o));
        memcpy(e, r.body, sizeof(*e));
        memcpy(o, r.body + sizeof(*e), sizeof(*o));
    }
    return r.err;
}

static int mkdir_op(struct fix *f, uint64_t parent, const char *name, uint32_t mode)
{
    struct rq q;
    rq_start(f, &q, FUSE_MKDIR, parent);
    struct fuse_mkdir_in in = { .mode = mode };
    rq_add(&q, &in, sizeof(in));
    rq_str(&q, name);
    return call(f, &q).err;
}

static int mknod_op(struct fix *f, uint64_t parent, const char *name, uint32_t mode)
{
    struct rq q;
    rq_start(f, &q, FUSE_MKNOD, parent);
    struct fuse_mknod_in in = { .mode = mode, .rdev = makedev(1, 3) };
    rq_add(&q, &in, sizeof(in));
    rq_str(&q, name);
    return call(f, &q).err;
}

static int setattr(struct fix *f, uint64_t nodeid, const struct fuse_setattr_in *in,
                   struct fuse_attr *a)
{
    struct rq q;
    rq_start(f, &q, FUSE_SETATTR, nodeid);
    rq_add(&q, in, sizeof(*in));
    struct res r = call(f, &q);
    if (!r.err && a) {
        struct fuse_attr_out o;
        memcpy(&o, r.body, sizeof(o));
        *a = o.attr;
    }
    return r.err;
}

static int rename_op(struct fix *f, uint64_t from, const char *a, uint64_t to, const char *b,
                     uint32_t flags)
{
    struct rq q;
    rq_start(f, &q, FUSE_RENAME2, from);
    struct fuse_rename2_in in = { .newdir = to, .flags = flags };
    rq_add(&q, &in, sizeof(in));
    rq_str(&q, a);
    rq_str(&q, b);
    return call(f, &q).err;
}

static int link_op(struct fix *f, uint64_t old, uint64_t parent, const char *name)
{
    struct rq q;
    rq_start(f, &q, FUSE_LINK, parent);
    struct fuse_link_in in = { .oldnodeid = old };
    rq_add(&q, &in, sizeof(in));
    rq_str(&q, name);
    return call(f, &q).err;
}

static int symlink_op(struct fix *f, uint64_t parent, const char *name, const char *target)
{
    struct rq q;
    rq_start(f, &q, FUSE_SYMLINK, parent);
    rq_str(&q, name);
    rq_str(&q, target);
    return call(f, &q).err;
}

/* READDIR(PLUS): the names listed, joined by spaces. */
static int list_dir(struct fix *f, uint64_t nodeid, bool plus, char *names, size_t cap)
{
    struct fuse_open_out o;
    int e = open_node(f, FUSE_OPENDIR, nodeid, O_RDONLY, &o);
    if (e)
        return e;
    names[0] = 0;
    uint64_t off = 0;
    for (;;) {
        struct rq q;
        rq_start(f, &q, plus ? FUSE_READDIRPLUS : FUSE_READDIR, nodeid);
        struct fuse_read_in in = { .fh = o.fh, .offset = off, .size = 300 };
        rq_add(&q, &in, sizeof(in));
        struct res r = call(f, &q);
        assert_int_equal(r.err, 0);
        if (!r.len)
            break;
        for (size_t p = 0; p < r.len;) {
            if (plus)
                p += sizeof(struct fuse_entry_out);
            struct fuse_dirent d;
            memcpy(&d, r.body + p, FUSE_NAME_OFFSET);
            strncat(names, " ", cap - strlen(names) - 1);
            strncat(names, (const char *)r.body + p + FUSE_NAME_OFFSET,
                    d.namelen < cap - strlen(names) - 1 ? d.namelen : cap - strlen(names) - 1);
            p += FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + d.namelen);
            off = d.off;
        }
    }
    assert_int_equal(release(f, FUSE_RELEASEDIR, nodeid, o.fh), 0);
    return 0;
}

static unsigned inode_count(struct fix *f)
{
    unsigned i, h;
    fuse_server_counts(f->s, &i, &h);
    return i;
}

static unsigned handle_count(struct fix *f)
{
    unsigned i, h;
    fuse_server_counts(f->s, &i, &h);
    return h;
}

/* ---- INIT and the protocol's edges ---- */

static void test_init_versions(void **state)
{
    struct fix *f = *state;
    /* Before INIT: EIO. */
    assert_int_equal(getattr(f, FUSE_ROOT_ID, NULL), -EIO);
    assert_int_equal(do_init(f, 6, 99, 0).err, -EPROTO);
    struct res r = do_init(f, 8, 0, 0);
    struct fuse_init_out o;
    assert_int_equal(r.err, 0);
    memcpy(&o, r.body, sizeof(o));
    assert_int_equal(o.major, 7);
    assert_int_equal(o.minor, 38);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, NULL), -EIO); /* still not started */
    r = do_init(f, 7, 31,
                FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, sizeof(o));
    memcpy(&o, r.body, sizeof(o));
    assert_int_equal(o.minor, 31);
    /* Only what we offer of what the guest offered. */
    assert_int_equal(o.flags, FUSE_ASYNC_READ | FUSE_MAX_PAGES);
    assert_int_equal(o.max_write, 1u << 20);
    assert_int_equal(o.max_pages, 256);
    r = do_init(f, 7, 40, 0xffffffffu & ~FUSE_INIT_EXT);
    memcpy(&o, r.body, sizeof(o));
    assert_int_equal(o.minor, 38);
    assert_true(o.flags & FUSE_HANDLE_KILLPRIV_V2);
    assert_true(o.flags & FUSE_DO_READDIRPLUS);
    assert_false(o.flags & FUSE_CACHE_SYMLINKS); /* cache=auto */
    assert_false(o.flags & (FUSE_WRITEBACK_CACHE | FUSE_POSIX_LOCKS | FUSE_EXPORT_SUPPORT));
    assert_int_equal(getattr(f, FUSE_ROOT_ID, NULL), 0);
    /* DESTROY answers, and the next request needs a new INIT. */
    struct rq q;
    rq_start(f, &q, FUSE_DESTROY, 0);
    assert_int_equal(call(f, &q).err, 0);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, NULL), -EIO);
}

static void test_unknown_and_malformed(void **state)
{
    struct fix *f = *state;
    const uint32_t ops[] = { FUSE_GETXATTR, FUSE_SETXATTR,  FUSE_LISTXATTR,    FUSE_REMOVEXATTR,
                             FUSE_GETLK,    FUSE_SETLK,     FUSE_IOCTL,        FUSE_POLL,
                             FUSE_BMAP,     FUSE_INTERRUPT, FUSE_SETUPMAPPING, 9999 };
    for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        struct rq q;
        rq_start(f, &q, ops[i], FUSE_ROOT_ID);
        rq_add(&q, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
        assert_int_equal(call(f, &q).err, -ENOSYS);
    }
    /* Shorter than a header: no reply at all. */
    struct fuse_in_header h = { .len = 10, .opcode = FUSE_GETATTR, .nodeid = 1 };
    struct iovec in = { &h, 10 }, out = { f->out, 4096 };
    assert_int_equal(fuse_server_handle(f->s, &in, 1, &out, 1), 0);
    /* A header claiming more than was sent. */
    struct rq q;
    rq_start(f, &q, FUSE_GETATTR, FUSE_ROOT_ID);
    struct fuse_getattr_in gi = { 0 };
    rq_add(&q, &gi, sizeof(gi));
    uint32_t big = 1000;
    memcpy(q.b, &big, 4);
    in = (struct iovec){ q.b, q.n };
    assert_int_equal(fuse_server_handle(f->s, &in, 1, &out, 1), HDR);
    struct fuse_out_header oh;
    memcpy(&oh, f->out, sizeof(oh));
    assert_int_equal(oh.error, -EINVAL);
    /* No room even for the reply's header: nothing written. */
    out.iov_len = 8;
    in.iov_len = q.n;
    memcpy(q.b, &(uint32_t){ (uint32_t)q.n }, 4);
    assert_int_equal(fuse_server_handle(f->s, &in, 1, &out, 1), 0);
    /* Unknown node ids. */
    assert_int_equal(getattr(f, 0, NULL), -ESTALE);
    assert_int_equal(getattr(f, 12345, NULL), -ESTALE);
    assert_int_equal(getattr(f, (7ull << 32) | 1, NULL), -ESTALE);
    assert_int_equal(getattr(f, UINT64_MAX, NULL), -ESTALE);
}

static void test_reply_too_small(void **state)
{
    struct fix *f = *state;
    unsigned before = inode_count(f);
    struct rq q;
    rq_start(f, &q, FUSE_LOOKUP, FUSE_ROOT_ID);
    rq_str(&q, "file");
    /* Room for the header but not the entry: EINVAL, and no lookup was counted. */
    assert_int_equal(call_cap(f, &q, HDR + 8).err, -EINVAL);
    assert_int_equal(inode_count(f), before);
    rq_start(f, &q, FUSE_GETATTR, FUSE_ROOT_ID);
    struct fuse_getattr_in gi = { 0 };
    rq_add(&q, &gi, sizeof(gi));
    assert_int_equal(call_cap(f, &q, HDR + 20).err, -EINVAL);
    /* READ is cut to the room there is. */
    uint64_t n = node(f, FUSE_ROOT_ID, "file");
    uint64_t fh = open_fh(f, n, O_RDONLY);
    rq_start(f, &q, FUSE_READ, n);
    struct fuse_read_in ri = { .fh = fh, .size = 1u << 31 };
    rq_add(&q, &ri, sizeof(ri));
    struct res r = call_cap(f, &q, HDR + 3);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.body, "hel", 3);
    /* A READ of 2^31 bytes with room to spare: what the file has. */
    r = read_fh(f, n, fh, 0, 1u << 31);
    assert_int_equal(r.len, 5);
    assert_int_equal(release(f, FUSE_RELEASE, n, fh), 0);
    forget(f, n, 1);
}

/* ---- lookups ---- */

static void test_lookup_getattr(void **state)
{
    struct fix *f = *state;
    struct fuse_entry_out e;
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "file", &e), 0);
    assert_true(S_ISREG(e.attr.mode));
    assert_int_equal(e.attr.size, 5);
    assert_int_equal(e.entry_valid, 1); /* cache=auto */
    struct stat st;
    char p[256];
    path_of(f, "file", p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(e.attr.ino, st.st_ino);
    assert_int_equal(e.attr.uid, st.st_uid);
    struct fuse_attr a;
    assert_int_equal(getattr(f, e.nodeid, &a), 0);
    assert_int_equal(a.size, 5);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "nope", &e), -ENOENT);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, &a), 0);
    assert_true(S_ISDIR(a.mode));
    /* LOOKUP below a file: ENOTDIR. */
    uint64_t n = node(f, FUSE_ROOT_ID, "file");
    assert_int_equal(lookup(f, n, "x", &e), -ENOTDIR);
    uint64_t d = node(f, FUSE_ROOT_ID, "dir");
    assert_int_equal(lookup(f, d, "inner", &e), 0);
    assert_int_equal(e.attr.size, 6);
}

static void test_lookup_counts(void **state)
{
    struct fix *f = *state;
    unsigned base = inode_count(f);
    assert_int_equal(base, 1);
    uint64_t a = node(f, FUSE_ROOT_ID, "file");
    uint64_t b = node(f, FUSE_ROOT_ID, "file");
    assert_true(a == b);
    assert_int_equal(inode_count(f), 2);
    forget(f, a, 1);
    assert_int_equal(inode_count(f), 2);
    assert_int_equal(getattr(f, a, NULL), 0);
    forget(f, a, 1);
    assert_int_equal(inode_count(f), 1);
    assert_int_equal(getattr(f, a, NULL), -ESTALE);
    /* The slot taken again answers to a new id. */
    uint64_t c = node(f, FUSE_ROOT_ID, "dir");
    assert_true(c != a);
    assert_int_equal(getattr(f, a, NULL), -ESTALE);
    /* Forgetting the root or more than counted is harmless. */
    forget(f, FUSE_ROOT_ID, 100);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, NULL), 0);
    /* BATCH_FORGET, with an entry naming nothing and a count past the list. */
    uint64_t d = node(f, FUSE_ROOT_ID, "file");
    node(f, FUSE_ROOT_ID, "file");
    assert_int_equal(inode_count(f), 3);
    struct rq q;
    rq_start(f, &q, FUSE_BATCH_FORGET, 0);
    struct fuse_batch_forget_in bf = { .count = 1000 };
    struct fuse_forget_one one[3] = { { c, 1 }, { 999, 5 }, { d, 2 } };
    rq_add(&q, &bf, sizeof(bf));
    rq_add(&q, one, sizeof(one));
    assert_int_equal(call(f, &q).total, 0);
    assert_int_equal(inode_count(f), 1);
    /* READDIRPLUS counts a lookup per entry but . and ..; FORGET takes them back. */
    char names[1024];
    assert_int_equal(list_dir(f, FUSE_ROOT_ID, true, names, sizeof(names)), 0);
    assert_non_null(strstr(names, " file"));
    unsigned after = inode_count(f);
    assert_true(after >= 1 + 6); /* file dir link up fifo sock (dev) */
    struct fuse_entry_out e;
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "file", &e), 0);
    forget(f, e.nodeid, 2);
    assert_int_equal(inode_count(f), after - 1);
}

/* Every rule on names, for each kind of request that takes one. */
static void test_bad_names(void **state)
{
    struct fix *f = *state;
    char long_name[300];
    memset(long_name, 'a', 256);
    long_name[256] = 0;
    const uint32_t ops[] = { FUSE_LOOKUP, FUSE_UNLINK, FUSE_RMDIR };
    const char *bad[] = { "a/b", "/", "..", ".", "", "../file", "dir/inner" };
    for (unsigned o = 0; o < 3; o++) {
        for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            assert_int_equal(name_op(f, ops[o], FUSE_ROOT_ID, bad[i]), -EINVAL);
        assert_int_equal(name_op(f, ops[o], FUSE_ROOT_ID, long_name), -ENAMETOOLONG);
        /* Unterminated: no NUL within the request. */
        struct rq q;
        rq_start(f, &q, ops[o], FUSE_ROOT_ID);
        rq_add(&q, "file", 4);
        assert_int_equal(call(f, &q).err, -EINVAL);
    }
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, bad[i], 0755), -EINVAL);
        assert_int_equal(mknod_op(f, FUSE_ROOT_ID, bad[i], S_IFIFO | 0644), -EINVAL);
        assert_int_equal(symlink_op(f, FUSE_ROOT_ID, bad[i], "x"), -EINVAL);
        assert_int_equal(rename_op(f, FUSE_ROOT_ID, "file", FUSE_ROOT_ID, bad[i], 0), -EINVAL);
        assert_int_equal(rename_op(f, FUSE_ROOT_ID, bad[i], FUSE_ROOT_ID, "x", 0), -EINVAL);
        struct fuse_entry_out e;
        struct fuse_open_out oo;
        assert_int_equal(create(f, FUSE_ROOT_ID, bad[i], O_RDWR, 0644, &e, &oo), -EINVAL);
    }
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, long_name, 0755), -ENAMETOOLONG);
    /* 255 bytes is a name. */
    long_name[255] = 0;
    assert_int_equal(name_op(f, FUSE_LOOKUP, FUSE_ROOT_ID, long_name), -ENOENT);
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, long_name, 0755), 0);
    /* A symlink's target may hold '/', up to PATH_MAX - 1 bytes. */
    assert_int_equal(symlink_op(f, FUSE_ROOT_ID, "s", "../../etc/passwd"), 0);
    assert_int_equal(symlink_op(f, FUSE_ROOT_ID, "s2", ""), -EINVAL);
    /* Nothing was made by the refused requests. */
    char p[300];
    path_of(f, "a", p, sizeof(p));
    assert_int_equal(access(p, F_OK), -1);
    path_of(f, "x", p, sizeof(p));
    assert_int_equal(access(p, F_OK), -1);
}

static void test_symlink_escape(void **state)
{
    struct fix *f = *state;
    struct fuse_entry_out e;
    const char *links[] = { "link", "up" };
    const char *targets[] = { "/etc", "../.." };
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(lookup(f, FUSE_ROOT_ID, links[i], &e), 0);
        assert_true(S_ISLNK(e.attr.mode)); /* the link itself */
        struct rq q;
        rq_start(f, &q, FUSE_READLINK, e.nodeid);
        struct res r = call(f, &q);
        assert_int_equal(r.err, 0);
        assert_int_equal(r.len, strlen(targets[i]));
        assert_memory_equal(r.body, targets[i], r.len);
        assert_int_equal(open_node(f, FUSE_OPEN, e.nodeid, O_RDONLY, NULL), -ELOOP);
        assert_int_equal(open_node(f, FUSE_OPENDIR, e.nodeid, O_RDONLY, NULL), -ENOTDIR);
        struct fuse_entry_out e2;
        assert_int_equal(lookup(f, e.nodeid, "passwd", &e2), -ENOTDIR);
        assert_int_equal(mkdir_op(f, e.nodeid, "x", 0755), -ENOTDIR);
        struct fuse_open_out oo;
        assert_int_equal(create(f, e.nodeid, "x", O_RDWR, 0644, &e2, &oo), -ENOTDIR);
        /* Truncating through the link does not reach /etc. */
        struct fuse_setattr_in sa = { .valid = FATTR_SIZE, .size = 0 };
        assert_int_equal(setattr(f, e.nodeid, &sa, NULL), -EINVAL);
    }
    /* READLINK of what is not a link. */
    struct rq q;
    rq_start(f, &q, FUSE_READLINK, FUSE_ROOT_ID);
    assert_int_equal(call(f, &q).err, -EINVAL);
    /* A name made a symlink under the server is not followed by CREATE either. */
    struct fuse_open_out oo;
    assert_int_equal(create(f, FUSE_ROOT_ID, "link", O_RDWR, 0644, &e, &oo), -ELOOP);
}

static void alarm_handler(int sig)
{
    (void)sig;
    static const char msg[] = "a special file's open blocked\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    _exit(1);
}

static void test_special_files(void **state)
{
    struct fix *f = *state;
    /* An open that reached a FIFO would block: the alarm makes that a failure, not a hang. */
    signal(SIGALRM, alarm_handler);
    alarm(10);
    uint64_t fifo = node(f, FUSE_ROOT_ID, "fifo");
    for (int fl = O_RDONLY; fl <= O_RDWR; fl++)
        assert_int_equal(open_node(f, FUSE_OPEN, fifo, (uint32_t)fl, NULL), -EACCES);
    assert_int_equal(open_node(f, FUSE_OPEN, fifo, O_RDONLY | O_NONBLOCK, NULL), -EACCES);
    assert_int_equal(open_node(f, FUSE_OPENDIR, fifo, O_RDONLY, NULL), -ENOTDIR);
    struct fuse_setattr_in sa = { .valid = FATTR_SIZE };
    assert_int_equal(setattr(f, fifo, &sa, NULL), -EINVAL);
    /* chmod does not open it. */
    struct fuse_attr a;
    sa = (struct fuse_setattr_in){ .valid = FATTR_MODE, .mode = 0600 };
    assert_int_equal(setattr(f, fifo, &sa, &a), 0);
    assert_int_equal(a.mode & 07777, 0600);
    /* CREATE without O_EXCL over the FIFO is not an open of it. */
    struct fuse_entry_out e;
    struct fuse_open_out oo;
    assert_int_equal(create(f, FUSE_ROOT_ID, "fifo", O_RDWR, 0644, &e, &oo), -EACCES);
    uint64_t sock = node(f, FUSE_ROOT_ID, "sock");
    assert_int_equal(open_node(f, FUSE_OPEN, sock, O_RDWR, NULL), -ENXIO);
    char p[256];
    path_of(f, "dev", p, sizeof(p));
    struct stat st;
    if (lstat(p, &st) == 0) {
        uint64_t dev = node(f, FUSE_ROOT_ID, "dev");
        assert_int_equal(open_node(f, FUSE_OPEN, dev, O_RDWR, NULL), -EACCES);
        assert_int_equal(open_node(f, FUSE_OPEN, dev, O_RDONLY, NULL), -EACCES);
    }
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    assert_int_equal(handle_count(f), 0);
    /* MKNOD: FIFOs and sockets only, never a device. */
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "f2", S_IFIFO | 0644), 0);
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "s2", S_IFSOCK | 0644), 0);
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "c", S_IFCHR | 0666), -EPERM);
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "b", S_IFBLK | 0666), -EPERM);
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "d", S_IFDIR | 0666), -EPERM);
    path_of(f, "f2", p, sizeof(p));
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0644);
    path_of(f, "c", p, sizeof(p));
    assert_int_equal(lstat(p, &st), -1);
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "f2", S_IFIFO | 0644), -EEXIST);
}

/* ---- files ---- */

static void test_create_read_write(void **state)
{
    struct fix *f = *state;
    struct fuse_entry_out e;
    struct fuse_open_out o;
    assert_int_equal(create(f, FUSE_ROOT_ID, "new", O_RDWR, 0640, &e, &o), 0);
    assert_int_equal(e.attr.mode, S_IFREG | 0640);
    assert_int_equal(o.open_flags, 0); /* cache=auto */
    assert_int_equal(handle_count(f), 1);
    char p[256];
    struct stat st;
    path_of(f, "new", p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640); /* whatever our umask */
    struct res r = write_fh(f, e.nodeid, o.fh, 0, "abcdefgh", 0);
    assert_int_equal(r.err, 0);
    struct fuse_write_out wo;
    memcpy(&wo, r.body, sizeof(wo));
    assert_int_equal(wo.size, 8);
    r = read_fh(f, e.nodeid, o.fh, 2, 4);
    assert_int_equal(r.len, 4);
    assert_memory_equal(r.body, "cdef", 4);
    r = read_fh(f, e.nodeid, o.fh, 100, 4);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.len, 0);
    r = read_fh(f, e.nodeid, o.fh, (uint64_t)-5, 4);
    assert_int_equal(r.err, -EINVAL);
    /* WRITE whose size is not what it carries. */
    struct rq q;
    rq_start(f, &q, FUSE_WRITE, e.nodeid);
    struct fuse_write_in wi = { .fh = o.fh, .size = 100 };
    rq_add(&q, &wi, sizeof(wi));
    rq_add(&q, "xy", 2);
    assert_int_equal(call(f, &q).err, -EINVAL);
    wi.size = 1;
    rq_start(f, &q, FUSE_WRITE, e.nodeid);
    rq_add(&q, &wi, sizeof(wi));
    rq_add(&q, "xy", 2);
    assert_int_equal(call(f, &q).err, -EINVAL);
    /* FLUSH, FSYNC, an unknown fh. */
    rq_start(f, &q, FUSE_FLUSH, e.nodeid);
    struct fuse_flush_in fl = { .fh = o.fh };
    rq_add(&q, &fl, sizeof(fl));
    assert_int_equal(call(f, &q).err, 0);
    rq_start(f, &q, FUSE_FSYNC, e.nodeid);
    struct fuse_fsync_in fs = { .fh = o.fh, .fsync_flags = FUSE_FSYNC_FDATASYNC };
    rq_add(&q, &fs, sizeof(fs));
    assert_int_equal(call(f, &q).err, 0);
    assert_int_equal(read_fh(f, e.nodeid, o.fh + 1, 0, 4).err, -EBADF);
    assert_int_equal(read_fh(f, e.nodeid, o.fh | (5ull << 32), 0, 4).err, -EBADF);
    assert_int_equal(write_fh(f, e.nodeid, 77, 0, "z", 0).err, -EBADF);
    fl.fh = 77;
    rq_start(f, &q, FUSE_FLUSH, e.nodeid);
    rq_add(&q, &fl, sizeof(fl));
    assert_int_equal(call(f, &q).err, -EBADF);
    assert_int_equal(release(f, FUSE_RELEASEDIR, e.nodeid, o.fh), -EBADF); /* not a dir handle */
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), -EBADF);
    assert_int_equal(read_fh(f, e.nodeid, o.fh, 0, 4).err, -EBADF);
    assert_int_equal(handle_count(f), 0);
    /* A read-only handle does not write; O_EXCL on an existing name. */
    uint64_t fh = open_fh(f, e.nodeid, O_RDONLY);
    assert_int_equal(write_fh(f, e.nodeid, fh, 0, "z", 0).err, -EBADF);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, fh), 0);
    assert_int_equal(create(f, FUSE_ROOT_ID, "new", O_RDWR | O_EXCL, 0640, &e, &o), -EEXIST);
    assert_int_equal(create(f, FUSE_ROOT_ID, "new", O_RDWR, 0640, &e, &o), 0);
    r = read_fh(f, e.nodeid, o.fh, 0, 100);
    assert_int_equal(r.len, 8);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
    /* OPEN of a directory, OPENDIR of a file. */
    assert_int_equal(open_node(f, FUSE_OPEN, FUSE_ROOT_ID, O_RDONLY, NULL), -EISDIR);
    assert_int_equal(open_node(f, FUSE_OPENDIR, e.nodeid, O_RDONLY, NULL), -ENOTDIR);
    /* O_CREAT in OPEN creates nothing. */
    assert_int_equal(open_node(f, FUSE_OPEN, e.nodeid, O_RDWR | O_CREAT | O_EXCL, NULL) == 0, 1);
    assert_int_equal(handle_count(f), 1);
}

static void test_setattr(void **state)
{
    struct fix *f = *state;
    uint64_t n = node(f, FUSE_ROOT_ID, "file");
    char p[256];
    struct stat st;
    path_of(f, "file", p, sizeof(p));
    struct fuse_attr a;
    struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = S_IFREG | 0604 };
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_int_equal(a.mode, S_IFREG | 0604);
    sa = (struct fuse_setattr_in){ .valid = FATTR_SIZE, .size = 2 };
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_int_equal(a.size, 2);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 2);
    sa = (struct fuse_setattr_in){
        .valid = FATTR_ATIME | FATTR_MTIME, .atime = 1000, .mtime = 2000, .mtimensec = 5
    };
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_int_equal(a.atime, 1000);
    assert_int_equal(a.mtime, 2000);
    assert_int_equal(a.mtimensec, 5);
    sa = (struct fuse_setattr_in){ .valid = FATTR_MTIME | FATTR_MTIME_NOW };
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_true(a.mtime > 2000);
    assert_int_equal(a.atime, 1000);
    /* Truncate through an open handle (FATTR_FH), growing. */
    uint64_t fh = open_fh(f, n, O_RDWR);
    sa = (struct fuse_setattr_in){ .valid = FATTR_SIZE | FATTR_FH, .fh = fh, .size = 10 };
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_int_equal(a.size, 10);
    /* A write that asks to kill setuid/setgid; and a truncate that does. */
    assert_int_equal(chmod(p, 04755 | 02000), 0);
    assert_int_equal(write_fh(f, n, fh, 0, "x", FUSE_WRITE_KILL_SUIDGID).err, 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(chmod(p, 04755), 0);
    sa = (struct fuse_setattr_in){ .valid = FATTR_SIZE | FATTR_KILL_SUIDGID, .size = 1 };
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_int_equal(a.mode & 07777, 0755);
    /* Without the flag, a write by the owner keeps them (KILLPRIV_V2 negotiated); only root's
     * writes do on the host, others lose them in the host kernel anyway. */
    assert_int_equal(chmod(p, 04755), 0);
    assert_int_equal(write_fh(f, n, fh, 0, "y", 0).err, 0);
    assert_int_equal(stat(p, &st), 0);
    if (geteuid() == 0)
        assert_int_equal(st.st_mode & 07777, 04755);
    assert_int_equal(release(f, FUSE_RELEASE, n, fh), 0);
    /* Symlinks have no mode to change; a directory has no size. */
    uint64_t l = node(f, FUSE_ROOT_ID, "link");
    sa = (struct fuse_setattr_in){ .valid = FATTR_MODE, .mode = 0777 };
    assert_int_equal(setattr(f, l, &sa, NULL), -EOPNOTSUPP);
    sa = (struct fuse_setattr_in){ .valid = FATTR_SIZE, .size = 0 };
    assert_int_equal(setattr(f, FUSE_ROOT_ID, &sa, NULL), -EISDIR);
    /* A symlink's own times. */
    sa = (struct fuse_setattr_in){ .valid = FATTR_MTIME, .mtime = 3000 };
    assert_int_equal(setattr(f, l, &sa, &a), 0);
    assert_int_equal(a.mtime, 3000);
    assert_int_equal(stat("/etc", &st), 0);
    assert_true(st.st_mtime != 3000);
    /* Ownership, as root. */
    if (geteuid() == 0) {
        sa = (struct fuse_setattr_in){ .valid = FATTR_UID | FATTR_GID, .uid = 1234, .gid = 4321 };
        assert_int_equal(setattr(f, n, &sa, &a), 0);
        assert_int_equal(a.uid, 1234);
        assert_int_equal(a.gid, 4321);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_uid, 1234);
    }
    /* A payload too short. */
    struct rq q;
    rq_start(f, &q, FUSE_SETATTR, n);
    rq_add(&q, &sa, 8);
    assert_int_equal(call(f, &q).err, -EINVAL);
}

static void test_file_ranges(void **state)
{
    struct fix *f = *state;
    struct fuse_entry_out e;
    struct fuse_open_out o;
    assert_int_equal(create(f, FUSE_ROOT_ID, "sparse", O_RDWR, 0644, &e, &o), 0);
    struct rq q;
    rq_start(f, &q, FUSE_FALLOCATE, e.nodeid);
    struct fuse_fallocate_in fa = { .fh = o.fh, .offset = 0, .length = 8192 };
    rq_add(&q, &fa, sizeof(fa));
    assert_int_equal(call(f, &q).err, 0);
    struct fuse_attr a;
    assert_int_equal(getattr(f, e.nodeid, &a), 0);
    assert_int_equal(a.size, 8192);
    fa.length = 0;
    rq_start(f, &q, FUSE_FALLOCATE, e.nodeid);
    rq_add(&q, &fa, sizeof(fa));
    assert_int_equal(call(f, &q).err, -EINVAL);
    /* LSEEK: data at 0, a hole at the end at the latest. */
    rq_start(f, &q, FUSE_LSEEK, e.nodeid);
    struct fuse_lseek_in ls = { .fh = o.fh, .offset = 0, .whence = SEEK_HOLE };
    rq_add(&q, &ls, sizeof(ls));
    struct res r = call(f, &q);
    assert_int_equal(r.err, 0);
    struct fuse_lseek_out lo;
    memcpy(&lo, r.body, sizeof(lo));
    assert_true(lo.offset <= 8192);
    ls.whence = SEEK_DATA;
    ls.offset = 9000;
    rq_start(f, &q, FUSE_LSEEK, e.nodeid);
    rq_add(&q, &ls, sizeof(ls));
    assert_int_equal(call(f, &q).err, -ENXIO);
    ls.whence = SEEK_SET;
    rq_start(f, &q, FUSE_LSEEK, e.nodeid);
    rq_add(&q, &ls, sizeof(ls));
    assert_int_equal(call(f, &q).err, -EINVAL);
    /* COPY_FILE_RANGE from "file" into this one. */
    uint64_t src = node(f, FUSE_ROOT_ID, "file");
    uint64_t sfh = open_fh(f, src, O_RDONLY);
    rq_start(f, &q, FUSE_COPY_FILE_RANGE, src);
    struct fuse_copy_file_range_in cr = { .fh_in = sfh,
                                          .off_in = 1,
                                          .nodeid_out = e.nodeid,
                                          .fh_out = o.fh,
                                          .off_out = 100,
                                          .len = UINT64_MAX };
    rq_add(&q, &cr, sizeof(cr));
    r = call(f, &q);
    assert_int_equal(r.err, 0);
    struct fuse_write_out wo;
    memcpy(&wo, r.body, sizeof(wo));
    assert_int_equal(wo.size, 4);
    r = read_fh(f, e.nodeid, o.fh, 100, 4);
    assert_memory_equal(r.body, "ello", 4);
    /* Into a read-only handle: EBADF. */
    cr.fh_out = sfh;
    rq_start(f, &q, FUSE_COPY_FILE_RANGE, src);
    rq_add(&q, &cr, sizeof(cr));
    assert_int_equal(call(f, &q).err, -EBADF);
    /* ACCESS. */
    rq_start(f, &q, FUSE_ACCESS, src);
    struct fuse_access_in ac = { .mask = R_OK };
    rq_add(&q, &ac, sizeof(ac));
    assert_int_equal(call(f, &q).err, 0);
    assert_int_equal(release(f, FUSE_RELEASE, src, sfh), 0);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
}

/* ---- directories ---- */

static void test_directories(void **state)
{
    struct fix *f = *state;
    char names[2048];
    assert_int_equal(list_dir(f, FUSE_ROOT_ID, false, names, sizeof(names)), 0);
    const char *want[] = { " . ", " .. ", " file", " dir", " link", " up", " fifo", " sock" };
    strncat(names, " ", sizeof(names) - strlen(names) - 1);
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_non_null(strstr(names, want[i]));
    assert_int_equal(inode_count(f), 1); /* READDIR counts no lookups */
    /* MKDIR, then a file in it, RENAME, LINK, UNLINK, RMDIR. */
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, "sub", 0750), 0);
    char p[256];
    struct stat st;
    path_of(f, "sub", p, sizeof(p));
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, "sub", 0750), -EEXIST);
    uint64_t sub = node(f, FUSE_ROOT_ID, "sub");
    struct fuse_entry_out e;
    struct fuse_open_out o;
    assert_int_equal(create(f, sub, "a", O_WRONLY, 0644, &e, &o), 0);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
    assert_int_equal(rename_op(f, sub, "a", FUSE_ROOT_ID, "b", 0), 0);
    assert_int_equal(rename_op(f, FUSE_ROOT_ID, "b", FUSE_ROOT_ID, "file", RENAME_NOREPLACE),
                     -EEXIST);
    assert_int_equal(rename_op(f, FUSE_ROOT_ID, "b", FUSE_ROOT_ID, "file", RENAME_EXCHANGE), 0);
    assert_int_equal(rename_op(f, FUSE_ROOT_ID, "b", FUSE_ROOT_ID, "c", RENAME_WHITEOUT), -EINVAL);
    assert_int_equal(rename_op(f, FUSE_ROOT_ID, "b", 4242, "c", 0), -ESTALE);
    struct rq q;
    rq_start(f, &q, FUSE_RENAME, FUSE_ROOT_ID);
    struct fuse_rename_in ri = { .newdir = sub };
    rq_add(&q, &ri, sizeof(ri));
    rq_str(&q, "b");
    rq_str(&q, "back");
    assert_int_equal(call(f, &q).err, 0);
    uint64_t fnode = node(f, FUSE_ROOT_ID, "file");
    assert_int_equal(link_op(f, fnode, sub, "hard"), 0);
    assert_int_equal(getattr(f, fnode, NULL), 0);
    struct fuse_entry_out e2;
    assert_int_equal(lookup(f, sub, "hard", &e2), 0);
    assert_true(e2.nodeid == fnode); /* one inode for both names */
    assert_int_equal(e2.attr.nlink, 2);
    assert_int_equal(link_op(f, sub, FUSE_ROOT_ID, "dirlink"), -EPERM);
    assert_int_equal(link_op(f, 31337, FUSE_ROOT_ID, "x"), -ESTALE);
    /* SYMLINK, READLINK of it. */
    assert_int_equal(symlink_op(f, sub, "sl", "../file"), 0);
    uint64_t sl = node(f, sub, "sl");
    rq_start(f, &q, FUSE_READLINK, sl);
    struct res r = call(f, &q);
    assert_int_equal(r.len, 7);
    assert_memory_equal(r.body, "../file", 7);
    assert_int_equal(name_op(f, FUSE_RMDIR, FUSE_ROOT_ID, "sub"), -ENOTEMPTY);
    assert_int_equal(name_op(f, FUSE_UNLINK, sub, "hard"), 0);
    assert_int_equal(name_op(f, FUSE_UNLINK, sub, "back"), 0);
    assert_int_equal(name_op(f, FUSE_UNLINK, sub, "sl"), 0);
    assert_int_equal(name_op(f, FUSE_UNLINK, sub, "sl"), -ENOENT);
    assert_int_equal(name_op(f, FUSE_UNLINK, FUSE_ROOT_ID, "dir"), -EISDIR);
    assert_int_equal(name_op(f, FUSE_RMDIR, FUSE_ROOT_ID, "sub"), 0);
    assert_int_equal(stat(p, &st), -1);
    /* The removed directory's inode lives on until forgotten. */
    assert_int_equal(getattr(f, sub, NULL), 0);
    /* STATFS, FSYNCDIR, READDIR with a huge size and little room. */
    rq_start(f, &q, FUSE_STATFS, FUSE_ROOT_ID);
    r = call(f, &q);
    assert_int_equal(r.err, 0);
    struct fuse_statfs_out so;
    memcpy(&so, r.body, sizeof(so));
    assert_true(so.st.blocks > 0);
    assert_int_equal(so.st.namelen, 255);
    struct fuse_open_out dopen;
    assert_int_equal(open_node(f, FUSE_OPENDIR, FUSE_ROOT_ID, O_RDONLY, &dopen), 0);
    rq_start(f, &q, FUSE_FSYNCDIR, FUSE_ROOT_ID);
    struct fuse_fsync_in fs = { .fh = dopen.fh };
    rq_add(&q, &fs, sizeof(fs));
    assert_int_equal(call(f, &q).err, 0);
    rq_start(f, &q, FUSE_READDIR, FUSE_ROOT_ID);
    struct fuse_read_in rd = { .fh = dopen.fh, .size = UINT32_MAX };
    rq_add(&q, &rd, sizeof(rd));
    r = call_cap(f, &q, HDR + 40);
    assert_int_equal(r.err, 0);
    assert_true(r.len > 0 && r.len <= 40);
    /* A directory handle does not READ; a file handle does not READDIR. */
    assert_int_equal(read_fh(f, FUSE_ROOT_ID, dopen.fh, 0, 10).err, -EBADF);
    assert_int_equal(release(f, FUSE_RELEASE, FUSE_ROOT_ID, dopen.fh), -EBADF);
    assert_int_equal(release(f, FUSE_RELEASEDIR, FUSE_ROOT_ID, dopen.fh), 0);
    rq_start(f, &q, FUSE_READDIR, FUSE_ROOT_ID);
    rq_add(&q, &rd, sizeof(rd));
    assert_int_equal(call(f, &q).err, -EBADF);
}

/* ---- read-only and multiple shares ---- */

static void test_read_only_share(void **state)
{
    struct fix *f = *state;
    struct fuse_share_entry e = { .path = f->dir, .read_only = true };
    struct fuse_server_params p = { .entries = &e, .entry_count = 1 };
    remake(f, &p);
    char path[256];
    struct stat before, after;
    path_of(f, "file", path, sizeof(path));
    assert_int_equal(stat(path, &before), 0);
    uint64_t n = node(f, FUSE_ROOT_ID, "file");
    uint64_t d = node(f, FUSE_ROOT_ID, "dir");
    struct fuse_setattr_in sa = { .valid = FATTR_SIZE, .size = 0 };
    assert_int_equal(setattr(f, n, &sa, NULL), -EROFS);
    sa = (struct fuse_setattr_in){ .valid = FATTR_MODE, .mode = 0777 };
    assert_int_equal(setattr(f, n, &sa, NULL), -EROFS);
    sa = (struct fuse_setattr_in){ .valid = FATTR_MTIME_NOW | FATTR_MTIME };
    assert_int_equal(setattr(f, n, &sa, NULL), -EROFS);
    struct fuse_entry_out eo;
    struct fuse_open_out oo;
    assert_int_equal(create(f, FUSE_ROOT_ID, "x", O_RDWR, 0644, &eo, &oo), -EROFS);
    assert_int_equal(create(f, FUSE_ROOT_ID, "file", O_RDONLY, 0644, &eo, &oo), -EROFS);
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, "x", 0755), -EROFS);
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "x", S_IFIFO | 0644), -EROFS);
    assert_int_equal(symlink_op(f, FUSE_ROOT_ID, "x", "y"), -EROFS);
    assert_int_equal(link_op(f, n, FUSE_ROOT_ID, "x"), -EROFS);
    assert_int_equal(name_op(f, FUSE_UNLINK, FUSE_ROOT_ID, "file"), -EROFS);
    assert_int_equal(name_op(f, FUSE_RMDIR, FUSE_ROOT_ID, "dir"), -EROFS);
    assert_int_equal(rename_op(f, FUSE_ROOT_ID, "file", d, "x", 0), -EROFS);
    assert_int_equal(open_node(f, FUSE_OPEN, n, O_WRONLY, NULL), -EROFS);
    assert_int_equal(open_node(f, FUSE_OPEN, n, O_RDWR, NULL), -EROFS);
    assert_int_equal(open_node(f, FUSE_OPEN, n, O_RDONLY | O_TRUNC, NULL), -EROFS);
    uint64_t fh = open_fh(f, n, O_RDONLY);
    assert_int_equal(write_fh(f, n, fh, 0, "evil", 0).err, -EROFS);
    struct rq q;
    rq_start(f, &q, FUSE_FALLOCATE, n);
    struct fuse_fallocate_in fa = { .fh = fh, .length = 100 };
    rq_add(&q, &fa, sizeof(fa));
    assert_int_equal(call(f, &q).err, -EROFS);
    rq_start(f, &q, FUSE_COPY_FILE_RANGE, n);
    struct fuse_copy_file_range_in cr = { .fh_in = fh, .fh_out = fh, .off_out = 10, .len = 5 };
    rq_add(&q, &cr, sizeof(cr));
    assert_int_equal(call(f, &q).err, -EROFS);
    rq_start(f, &q, FUSE_ACCESS, n);
    struct fuse_access_in ac = { .mask = W_OK };
    rq_add(&q, &ac, sizeof(ac));
    assert_int_equal(call(f, &q).err, -EROFS);
    rq_start(f, &q, FUSE_STATFS, FUSE_ROOT_ID);
    struct res r = call(f, &q);
    struct fuse_statfs_out so;
    memcpy(&so, r.body, sizeof(so));
    assert_int_equal(so.st.bavail, 0);
    /* Reading is fine; the host file is as it was. */
    r = read_fh(f, n, fh, 0, 100);
    assert_int_equal(r.len, 5);
    assert_int_equal(release(f, FUSE_RELEASE, n, fh), 0);
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    assert_int_equal(after.st_mode, before.st_mode);
    assert_true(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
                after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
    path_of(f, "x", path, sizeof(path));
    assert_int_equal(lstat(path, &after), -1);
}

static void test_multiple_share(void **state)
{
    struct fix *f = *state;
    char a[128], b[128], c[128], file[128];
    path_of(f, "dir", a, sizeof(a));
    path_of(f, "ro", b, sizeof(b));
    path_of(f, "other", c, sizeof(c));
    path_of(f, "file", file, sizeof(file));
    assert_int_equal(mkdir(b, 0755), 0);
    assert_int_equal(mkdir(c, 0755), 0);
    static const char mem[] = "memory!";
    struct fuse_share_entry es[] = {
        { .name = "a", .path = a },    { .name = "b", .path = b, .read_only = true },
        { .name = "c", .path = c },    { .name = "m", .data = mem, .size = 7 },
        { .name = "f", .path = file },
    };
    struct fuse_server_params p = { .entries = es, .entry_count = 5, .cache = FUSE_CACHE_ALWAYS };
    remake(f, &p);
    struct fuse_attr at;
    assert_int_equal(getattr(f, FUSE_ROOT_ID, &at), 0);
    assert_int_equal(at.mode, S_IFDIR | 0555);
    assert_int_equal(at.ino, 1);
    assert_int_equal(at.nlink, 7);
    char names[512];
    assert_int_equal(list_dir(f, FUSE_ROOT_ID, false, names, sizeof(names)), 0);
    assert_string_equal(names, " . .. a b c m f");
    unsigned base = inode_count(f);
    assert_int_equal(list_dir(f, FUSE_ROOT_ID, true, names, sizeof(names)), 0);
    assert_string_equal(names, " . .. a b c m f");
    assert_int_equal(inode_count(f), base); /* entries are never new inodes */
    struct fuse_entry_out e;
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "nope", &e), -ENOENT);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "a", &e), 0);
    assert_int_equal(e.entry_valid, 86400); /* cache=always */
    uint64_t na = e.nodeid;
    assert_int_equal(lookup(f, na, "inner", &e), 0);
    uint64_t nb = node(f, FUSE_ROOT_ID, "b"), nc = node(f, FUSE_ROOT_ID, "c");
    uint64_t nm = node(f, FUSE_ROOT_ID, "m"), nf = node(f, FUSE_ROOT_ID, "f");
    /* The root refuses every change. */
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, "x", 0755), -EROFS);
    assert_int_equal(name_op(f, FUSE_UNLINK, FUSE_ROOT_ID, "a"), -EROFS);
    assert_int_equal(rename_op(f, FUSE_ROOT_ID, "a", FUSE_ROOT_ID, "z", 0), -EROFS);
    struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = 0777 };
    assert_int_equal(setattr(f, FUSE_ROOT_ID, &sa, NULL), -EROFS);
    struct fuse_open_out oo;
    assert_int_equal(create(f, FUSE_ROOT_ID, "x", O_RDWR, 0644, &e, &oo), -EROFS);
    /* Per entry: a writable, b read-only. */
    assert_int_equal(create(f, na, "new", O_RDWR, 0644, &e, &oo), 0);
    assert_int_equal(oo.open_flags, FOPEN_KEEP_CACHE);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, oo.fh), 0);
    uint64_t nnew = e.nodeid;
    assert_int_equal(create(f, nb, "new", O_RDWR, 0644, &e, &oo), -EROFS);
    assert_int_equal(mkdir_op(f, nb, "x", 0755), -EROFS);
    /* Across entries: EXDEV. */
    assert_int_equal(rename_op(f, na, "new", nc, "moved", 0), -EXDEV);
    assert_int_equal(link_op(f, nnew, nc, "moved"), -EXDEV);
    assert_int_equal(rename_op(f, na, "new", nb, "moved", 0), -EROFS);
    /* The memory file and the host file: read-only files. */
    assert_int_equal(getattr(f, nm, &at), 0);
    assert_int_equal(at.mode, S_IFREG | 0555);
    assert_int_equal(at.size, 7);
    assert_int_equal(open_node(f, FUSE_OPEN, nm, O_RDWR, NULL), -EROFS);
    assert_int_equal(open_node(f, FUSE_OPENDIR, nm, O_RDONLY, NULL), -ENOTDIR);
    uint64_t fh = open_fh(f, nm, O_RDONLY);
    struct res r = read_fh(f, nm, fh, 2, 100);
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.body, "mory!", 5);
    assert_int_equal(read_fh(f, nm, fh, 7, 100).len, 0);
    assert_int_equal(write_fh(f, nm, fh, 0, "x", 0).err, -EROFS);
    assert_int_equal(release(f, FUSE_RELEASE, nm, fh), 0);
    assert_int_equal(open_node(f, FUSE_OPEN, nf, O_WRONLY, NULL), -EROFS);
    fh = open_fh(f, nf, O_RDONLY);
    r = read_fh(f, nf, fh, 0, 100);
    assert_int_equal(r.len, 5);
    assert_int_equal(release(f, FUSE_RELEASE, nf, fh), 0);
    assert_int_equal(lookup(f, nm, "x", &e), -ENOTDIR);
    /* Opening the root as a directory (cache=always: keep the cached listing). */
    struct fuse_open_out od;
    assert_int_equal(open_node(f, FUSE_OPENDIR, FUSE_ROOT_ID, O_RDONLY, &od), 0);
    assert_int_equal(od.open_flags, FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR);
    assert_int_equal(release(f, FUSE_RELEASEDIR, FUSE_ROOT_ID, od.fh), 0);
    /* Entries stay through FORGET and reset. */
    forget(f, na, 100);
    assert_int_equal(getattr(f, na, NULL), 0);
    fuse_server_reset(f->s);
    init_ok(f);
    assert_int_equal(getattr(f, nb, NULL), 0);
    assert_int_equal(inode_count(f), 6);
    /* Bad entry sets are refused. */
    struct fuse_share_entry bad[] = { { .name = "x", .path = a }, { .name = "x", .path = c } };
    struct fuse_server_params bp = { .entries = bad, .entry_count = 2 };
    vmk_error *err = NULL;
    assert_null(fuse_server_new(&bp, &err));
    vmk_error_free(err);
    err = NULL;
    bad[1].name = "a/b";
    assert_null(fuse_server_new(&bp, &err));
    vmk_error_free(err);
    err = NULL;
    bad[1] = (struct fuse_share_entry){ .name = "y", .path = "/nonexistent/vmkit" };
    assert_null(fuse_server_new(&bp, &err));
    vmk_error_free(err);
    (void)nc;
}

/* ---- ownership ---- */

static bool has_user_xattrs(const char *dir)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/file", dir);
    if (setxattr(p, "user.vmkit.probe", "1", 1, 0) < 0)
        return false;
    removexattr(p, "user.vmkit.probe");
    return true;
}

static void test_squash(void **state)
{
    struct fix *f = *state;
    struct fuse_server_params p = { .ownership = FUSE_OWNERSHIP_SQUASH,
                                    .squash_uid = 1234,
                                    .squash_gid = 5678 };
    remake(f, &p);
    struct fuse_entry_out e;
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "file", &e), 0);
    assert_int_equal(e.attr.uid, 1234);
    assert_int_equal(e.attr.gid, 5678);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "link", &e), 0);
    assert_int_equal(e.attr.uid, 1234);
    bool xattrs = has_user_xattrs(f->dir);
    f->uid = 1000;
    f->gid = 1001;
    struct fuse_open_out o;
    assert_int_equal(create(f, FUSE_ROOT_ID, "mine", O_RDWR, 0444, &e, &o), 0);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
    assert_int_equal(e.attr.mode & 07777, 0444);
    char path[256];
    struct stat st;
    path_of(f, "mine", path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, geteuid()); /* the host file is the server's */
    assert_int_equal(st.st_mode & 07777, 0444);
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, "d", 0500), 0);
    struct fuse_entry_out de;
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "d", &de), 0);
    assert_int_equal(de.attr.mode & 07777, 0500);
    struct fuse_setattr_in sa = { .valid = FATTR_UID, .uid = 42 };
    struct fuse_attr a;
    if (!xattrs) {
        assert_int_equal(e.attr.uid, 1234); /* nowhere to keep the ids */
        assert_int_equal(setattr(f, e.nodeid, &sa, NULL), -EPERM);
        skip();
    }
    assert_int_equal(e.attr.uid, 1000);
    assert_int_equal(e.attr.gid, 1001);
    assert_int_equal(de.attr.uid, 1000);
    char buf[32] = { 0 };
    assert_true(getxattr(path, "user.vmkit.owner", buf, sizeof(buf) - 1) > 0);
    assert_string_equal(buf, "1000:1001");
    /* chown keeps the group, and is what the guest sees from then on. */
    assert_int_equal(setattr(f, e.nodeid, &sa, &a), 0);
    assert_int_equal(a.uid, 42);
    assert_int_equal(a.gid, 1001);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, geteuid());
    /* Symlinks and FIFOs keep the squash ids. */
    uint64_t l = node(f, FUSE_ROOT_ID, "link");
    assert_int_equal(setattr(f, l, &sa, NULL), -EPERM);
    /* A bad xattr shows the squash ids. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(setxattr(path, "user.vmkit.owner", "12x:4", 5, 0), 0);
    assert_int_equal(getattr(f, e.nodeid, &a), 0);
    assert_int_equal(a.uid, 1234);
}

static mode_t host_mode(const struct fix *f, const char *name)
{
    char path[256];
    struct stat st;
    path_of(f, name, path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

/* Under SQUASH every host file is the server's (maybe root's): the guest can never make one
 * set-user-ID or set-group-ID, whether it creates it so or changes its mode later. Under
 * IDENTITY the same chmod keeps the bits, so the test sees the stripping, not the host. */
static void test_squash_no_setid(void **state)
{
    struct fix *f = *state;
    uint64_t n = node(f, FUSE_ROOT_ID, "file");
    struct fuse_setattr_in sa = { .valid = FATTR_MODE, .mode = S_IFREG | 04755 };
    struct fuse_attr a;
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_int_equal(host_mode(f, "file"), 04755);
    struct fuse_server_params p = { .ownership = FUSE_OWNERSHIP_SQUASH,
                                    .squash_uid = 1234,
                                    .squash_gid = 5678 };
    remake(f, &p);
    f->uid = 1000;
    f->gid = 1001;
    n = node(f, FUSE_ROOT_ID, "file");
    sa.mode = S_IFREG | 06755;
    assert_int_equal(setattr(f, n, &sa, &a), 0);
    assert_int_equal(a.mode & 07777, 0755);
    assert_int_equal(host_mode(f, "file"), 0755);
    sa.mode = S_IFDIR | 02755;
    assert_int_equal(setattr(f, node(f, FUSE_ROOT_ID, "dir"), &sa, &a), 0);
    assert_int_equal(host_mode(f, "dir"), 0755);
    struct fuse_entry_out e;
    struct fuse_open_out o;
    assert_int_equal(create(f, FUSE_ROOT_ID, "made", O_RDWR, 06755, &e, &o), 0);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
    assert_int_equal(e.attr.mode & 07777, 0755);
    assert_int_equal(host_mode(f, "made"), 0755);
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, "madedir", 06755), 0);
    assert_int_equal(host_mode(f, "madedir"), 0755);
    assert_int_equal(mknod_op(f, FUSE_ROOT_ID, "madenode", S_IFREG | 06755), 0);
    assert_int_equal(host_mode(f, "madenode"), 0755);
}

static void test_identity_as_caller(void **state)
{
    struct fix *f = *state;
    if (geteuid() != 0)
        skip();
    char path[256];
    struct stat st;
    f->uid = 1000;
    f->gid = 1001;
    struct fuse_entry_out e;
    struct fuse_open_out o;
    uint64_t d = node(f, FUSE_ROOT_ID, "dir");
    /* dir is root's 0755: user 1000 cannot create there on the host either. */
    assert_int_equal(create(f, d, "no", O_RDWR, 0644, &e, &o), -EACCES);
    assert_int_equal(mkdir_op(f, d, "no", 0755), -EACCES);
    path_of(f, "dir", path, sizeof(path));
    assert_int_equal(chmod(path, 0777), 0);
    assert_int_equal(create(f, d, "yes", O_RDWR, 0600, &e, &o), 0);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
    assert_int_equal(e.attr.uid, 1000);
    assert_int_equal(e.attr.gid, 1001);
    assert_int_equal(mkdir_op(f, d, "sub", 0700), 0);
    assert_int_equal(mknod_op(f, d, "pipe", S_IFIFO | 0600), 0);
    assert_int_equal(symlink_op(f, d, "sl", "x"), 0);
    const char *made[] = { "dir/yes", "dir/sub", "dir/pipe", "dir/sl" };
    for (unsigned i = 0; i < 4; i++) {
        path_of(f, made[i], path, sizeof(path));
        assert_int_equal(lstat(path, &st), 0);
        assert_int_equal(st.st_uid, 1000);
        assert_int_equal(st.st_gid, 1001);
    }
    /* This thread is root again, with its groups. */
    path_of(f, "rootfile", path, sizeof(path));
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_uid, 0);
    assert_int_equal(st.st_gid, getegid());
}

/* ---- bounds and life ---- */

static void test_limits(void **state)
{
    struct fix *f = *state;
    struct fuse_server_params p = { .max_inodes = 3, .max_handles = 2 };
    remake(f, &p);
    struct fuse_entry_out e;
    uint64_t n = node(f, FUSE_ROOT_ID, "file");
    node(f, FUSE_ROOT_ID, "dir");
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "link", &e), -ENFILE);
    assert_int_equal(mkdir_op(f, FUSE_ROOT_ID, "x", 0755), -ENFILE);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "file", &e), 0); /* known: no new inode */
    uint64_t h1 = open_fh(f, n, O_RDONLY);
    uint64_t h2 = open_fh(f, n, O_RDONLY);
    assert_int_equal(open_node(f, FUSE_OPEN, n, O_RDONLY, NULL), -EMFILE);
    assert_int_equal(open_node(f, FUSE_OPENDIR, FUSE_ROOT_ID, O_RDONLY, NULL), -EMFILE);
    assert_int_equal(release(f, FUSE_RELEASE, n, h1), 0);
    uint64_t h3 = open_fh(f, n, O_RDONLY);
    assert_true(h3 != h1); /* the slot again, a new id */
    assert_int_equal(read_fh(f, n, h1, 0, 10).err, -EBADF);
    /* A handle keeps its inode after the guest forgot it. */
    forget(f, n, 100);
    assert_int_equal(read_fh(f, n, h2, 0, 10).len, 5);
    assert_int_equal(release(f, FUSE_RELEASE, n, h2), 0);
    assert_int_equal(release(f, FUSE_RELEASE, n, h3), 0);
    assert_int_equal(inode_count(f), 2);
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "link", &e), 0);
}

static void test_reset_and_leaks(void **state)
{
    struct fix *f = *state;
    int fds = fd_count();
    uint64_t n = node(f, FUSE_ROOT_ID, "file");
    uint64_t d = node(f, FUSE_ROOT_ID, "dir");
    open_fh(f, n, O_RDWR);
    struct fuse_open_out o;
    assert_int_equal(open_node(f, FUSE_OPENDIR, d, O_RDONLY, &o), 0);
    char names[512];
    assert_int_equal(list_dir(f, d, true, names, sizeof(names)), 0);
    assert_true(fd_count() > fds);
    fuse_server_reset(f->s);
    assert_int_equal(inode_count(f), 1);
    assert_int_equal(handle_count(f), 0);
    assert_int_equal(fd_count(), fds);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, NULL), -EIO);
    init_ok(f);
    assert_int_equal(getattr(f, n, NULL), -ESTALE);
    assert_int_equal(read_fh(f, n, o.fh, 0, 1).err, -EBADF);
    assert_int_equal(getattr(f, FUSE_ROOT_ID, NULL), 0);
    /* Free with inodes and handles held. */
    n = node(f, FUSE_ROOT_ID, "file");
    open_fh(f, n, O_RDONLY);
}

static void test_cache_never(void **state)
{
    struct fix *f = *state;
    struct fuse_server_params p = { .cache = FUSE_CACHE_NEVER };
    remake(f, &p);
    struct fuse_entry_out e;
    assert_int_equal(lookup(f, FUSE_ROOT_ID, "file", &e), 0);
    assert_int_equal(e.entry_valid, 0);
    assert_int_equal(e.attr_valid, 0);
    struct fuse_open_out o;
    assert_int_equal(open_node(f, FUSE_OPEN, e.nodeid, O_RDONLY, &o), 0);
    assert_int_equal(o.open_flags, FOPEN_DIRECT_IO);
    assert_int_equal(release(f, FUSE_RELEASE, e.nodeid, o.fh), 0);
    /* cache=always offers cached symlinks. */
    p.cache = FUSE_CACHE_ALWAYS;
    remake(f, &p);
    struct res r = do_init(f, 7, 38, FUSE_CACHE_SYMLINKS);
    struct fuse_init_out io;
    memcpy(&io, r.body, sizeof(io));
    assert_int_equal(io.flags, FUSE_CACHE_SYMLINKS);
}

/* Several threads at once, as the device's workers call: lookups, opens, reads, releases and
 * forgets of the same inode race, and everything is let go in the end. */
struct racer {
    struct fuse_server *s;
    unsigned id;
    int failures;
};

static int race_call(struct fuse_server *s, uint32_t op, uint64_t nodeid, const void *args,
                     size_t alen, uint8_t *out, size_t out_cap, uint64_t unique)
{
    uint8_t req[512];
    struct fuse_in_header h = {
        .len = (uint32_t)(sizeof(h) + alen), .opcode = op, .unique = unique, .nodeid = nodeid
    };
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), args, alen);
    struct iovec in = { req, h.len }, o = { out, out_cap };
    size_t n = fuse_server_handle(s, &in, 1, &o, 1);
    if (!n)
        return 0;
    struct fuse_out_header oh;
    memcpy(&oh, out, sizeof(oh));
    return oh.unique == unique && oh.len == n ? oh.error : -1000;
}

static void *racer_main(void *arg)
{
    struct racer *rc = arg;
    uint8_t out[8192];
    uint64_t u = (uint64_t)rc->id << 40;
    for (unsigned i = 0; i < 300; i++) {
        struct fuse_entry_out e;
        if (race_call(rc->s, FUSE_LOOKUP, FUSE_ROOT_ID, "file", 5, out, sizeof(out), ++u)) {
            rc->failures++;
            continue;
        }
        memcpy(&e, out + HDR, sizeof(e));
        struct fuse_open_in oi = { .flags = O_RDONLY };
        if (race_call(rc->s, FUSE_OPEN, e.nodeid, &oi, sizeof(oi), out, sizeof(out), ++u) == 0) {
            struct fuse_open_out oo;
            memcpy(&oo, out + HDR, sizeof(oo));
            struct fuse_read_in ri = { .fh = oo.fh, .size = 100 };
            rc->failures +=
                race_call(rc->s, FUSE_READ, e.nodeid, &ri, sizeof(ri), out, sizeof(out), ++u) != 0;
            struct fuse_release_in rl = { .fh = oo.fh };
            rc->failures += race_call(rc->s, FUSE_RELEASE, e.nodeid, &rl, sizeof(rl), out,
                                      sizeof(out), ++u) != 0;
        } else {
            rc->failures++;
        }
        if (rc->id == 0 && i % 10 == 0) {
            struct fuse_open_in od = { 0 };
            if (race_call(rc->s, FUSE_OPENDIR, FUSE_ROOT_ID, &od, sizeof(od), out, sizeof(out),
                          ++u) == 0) {
                struct fuse_open_out oo;
                memcpy(&oo, out + HDR, sizeof(oo));
                struct fuse_read_in ri = { .fh = oo.fh, .size = sizeof(out) - HDR };
                (void)race_call(rc->s, FUSE_READDIR, FUSE_ROOT_ID, &ri, sizeof(ri), out,
                                sizeof(out), ++u);
                struct fuse_release_in rl = { .fh = oo.fh };
                (void)race_call(rc->s, FUSE_RELEASEDIR, FUSE_ROOT_ID, &rl, sizeof(rl), out,
                                sizeof(out), ++u);
            }
        }
        struct fuse_forget_in fg = { .nlookup = 1 };
        (void)race_call(rc->s, FUSE_FORGET, e.nodeid, &fg, sizeof(fg), out, sizeof(out), ++u);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fix *f = *state;
    struct racer rc[4];
    pthread_t t[4];
    for (unsigned i = 0; i < 4; i++) {
        rc[i] = (struct racer){ .s = f->s, .id = i };
        assert_int_equal(pthread_create(&t[i], NULL, racer_main, &rc[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(rc[i].failures, 0);
    }
    assert_int_equal(inode_count(f), 1);
    assert_int_equal(handle_count(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_versions, setup_noinit, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_too_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_getattr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_read_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setattr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multiple_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_squash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_squash_no_setid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_as_caller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_and_leaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_never, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
