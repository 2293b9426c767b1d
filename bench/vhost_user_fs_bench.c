/* vhost_user_fs_bench: file-system operations against a vhost-user-fs back end (vmkit
 * serve-device --type fs, virtiofsd), driven by the synthetic front end in
 * tests/support/vhost_user_frontend.c (no guest). Run by bench/vhost_user_fs.sh; see
 * docs/benchmarks.md.
 *
 *   vhost_user_fs_bench --socket PATH [--pid PID] [--label NAME] [--op OP] [--qd N]
 *       [--seconds S] [--warmup S] [--seed N] [--queue-size N] [--files N]
 *       [--verify-blocks N]
 *
 * The share must hold what bench/vhost_user_fs.sh puts there: data (a file of at least
 * 4 KiB, 64 MiB in the script), d1000/ with --files (default 1000) empty files f0000,
 * f0001, ..., and an empty directory work/.
 *
 * Queue 0 is hiprio (FORGETs only), queue 1 the request queue, as virtio-fs lays them out.
 * After FUSE_INIT (7.38, MAX_PAGES) a data check writes --verify-blocks (default 64) random
 * 4 KiB blocks of data with a pattern and reads them back. Then --qd workers each keep one
 * operation going (an operation is one or more FUSE requests, one after another):
 *   lookup       LOOKUP d1000/fNNNN (random), GETATTR of the node it returns
 *   create       CREATE work/NAME, RELEASE, UNLINK
 *   mkdir        MKDIR work/NAME, RMDIR
 *   readdirplus  OPENDIR d1000, READDIRPLUS (4 KiB a call) to the end, RELEASEDIR
 *   read4k       READ of 4 KiB at a random aligned offset of data (opened once)
 *   write4k      WRITE of the same
 * Every node a reply hands out (LOOKUP, CREATE, MKDIR, READDIRPLUS entries) is forgotten
 * once its operation is over (never while a request may still use it): lookups are summed per node and sent as one FUSE_FORGET chain per node on the
 * hiprio queue, a batch at a time (when 4096 nodes or 65536 lookups are pending, and at
 * the end), as a guest's kernel forgets when its caches shrink.
 *
 * After --warmup seconds (default 0.5) the counters start, after --seconds (default 5) they
 * stop; operations under way then finish uncounted. One line of key=value pairs goes to
 * stdout:
 *   label= op= qd= secs= ops= ops_s= reqs= forgets= p50_us= p99_us= server_cpu_s=
 *   client_cpu_s=
 * reqs: FUSE requests on the request queue; forgets: FORGET chains sent; p50/p99: latency of
 * a whole operation; server_cpu_s: utime + stime of --pid and all its descendants (their
 * threads included, from /proc/PID/stat, in clock ticks), -1 without --pid; client_cpu_s:
 * this process's own CPU time.
 *
 * Every reply is checked: its unique, its length against the used length, and error 0 where
 * success is expected; READDIRPLUS must list exactly --files entries besides "." and "..".
 * Anything else fails the run (exit 1, the reason on stderr), as does a reply that does not
 * come within 5 s. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vhost_user_frontend.h"

#define BS              4096u
#define HIPRIO          0u
#define REQQ            1u
#define IN_HDR          ((uint32_t)sizeof(struct fuse_in_header))
#define OUT_HDR         ((uint32_t)sizeof(struct fuse_out_header))
#define IN_ARGS         512u /* a request's arguments: the largest is CREATE's with a name */
#define OUT_ARGS        256u /* a reply's fixed part: the largest is CREATE's entry + open */
#define DIR_BUF         4096u
#define WAIT_TIMEOUT_MS 5000
#define MAX_QD          1024u
#define ROOT_ID         1u
#define FORGET_NODES    4096u  /* pending nodes that trigger a batch of FORGETs */
#define FORGET_LOOKUPS  65536u /* pending lookups that do */
#define MAX_FILES       100000u

#define ERR(...) fprintf(stderr, "vhost_user_fs_bench: " __VA_ARGS__)

enum op { OP_LOOKUP, OP_CREATE, OP_MKDIR, OP_READDIRPLUS, OP_READ, OP_WRITE, OP_COUNT };
static const char *const op_names[OP_COUNT] = { "lookup",      "create", "mkdir",
                                                "readdirplus", "read4k", "write4k" };

/* A request's buffers in guest RAM: header and arguments (device-readable), optional data
 * page (readable for WRITE), reply header and fixed part, optional reply page. */
struct bufs {
    uint64_t in_gpa, din_gpa, out_gpa, dout_gpa;
    uint8_t *in, *din, *out, *dout;
};

struct worker {
    struct bufs b;
    bool busy;       /* a request of it is on the ring */
    bool active;     /* an operation is under way */
    unsigned step;   /* which request of the operation is on the ring */
    uint32_t opcode; /* of that request */
    uint64_t unique;
    uint32_t reply_len; /* fixed reply bytes after the header (0: none) */
    bool reply_page;    /* the reply has a data page */
    double t_start;     /* the operation's */
    uint64_t node, fh, off, seq;
    unsigned entries;
    char name[64];
};

/* Pending forgets: open addressing, node id -> lookups to forget. */
struct forget_table {
    uint64_t *node, *count;
    unsigned cap, used;
    uint64_t lookups;
};

struct bench {
    struct vuf *f;
    enum op op;
    struct worker *w;
    unsigned nw;
    int *worker_of_head; /* request queue: head -> worker, -1 free */
    /* hiprio: one 48-byte FORGET buffer per descriptor */
    uint64_t *fbuf_gpa;
    uint8_t **fbuf;
    int *fbuf_of_head;
    unsigned *fbuf_free, nfree, queue_size;
    struct forget_table ft;
    uint64_t rng, unique, seq;
    unsigned files;
    uint64_t dir_node, work_node, data_node, data_fh, data_blocks;
    uint64_t reqs, forgets;
    uint64_t *lat_ns;
    size_t nlat, lat_cap;
};

struct opts {
    const char *socket, *label;
    long pid;
    enum op op;
    unsigned qd, queue_size, verify_blocks, files;
    double seconds, warmup;
    uint64_t seed;
};

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64*: fast, and good enough to scatter offsets. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static double now_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of one process (all its threads) in clock ticks, or -1. */
static long long proc_ticks(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* Ticks of pid and its descendants: both back ends serve from a child of the process
 * started (vmkit's sandboxed server; virtiofsd's, forked into its namespaces once a
 * front end connects), whose parent only waits. */
static long long tree_ticks(long pid, unsigned depth)
{
    long long t = proc_ticks(pid);
    if (t < 0 || depth > 8)
        return t;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", pid, pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return t;
    long child;
    while (fscanf(fp, "%ld", &child) == 1) {
        long long c = tree_ticks(child, depth + 1);
        if (c > 0)
            t += c;
    }
    fclose(fp);
    return t;
}

static double server_cpu_s(long pid)
{
    if (pid <= 0)
        return -1;
    long long t = tree_ticks(pid, 0);
    return t < 0 ? -1 : (double)t / (double)sysconf(_SC_CLK_TCK);
}

/* The pattern word i of a block: depends on the block and the seed, never all zero. */
static uint64_t pattern(uint64_t block, uint64_t i, uint64_t seed)
{
    uint64_t s = (block * 0x9e3779b97f4a7c15u) ^ (i * 0xbf58476d1ce4e5b9u) ^ seed;
    return next_rand(&s) | 1;
}

/* ---- forgets ---- */

static int forget_init(struct forget_table *t)
{
    t->cap = FORGET_NODES * 2;
    t->node = calloc(t->cap, sizeof(*t->node));
    t->count = calloc(t->cap, sizeof(*t->count));
    return t->node && t->count ? 0 : -1;
}

static void forget_add(struct forget_table *t, uint64_t node)
{
    unsigned i = (unsigned)((node * 0x9e3779b97f4a7c15u) >> 40) & (t->cap - 1);
    while (t->node[i] && t->node[i] != node)
        i = (i + 1) & (t->cap - 1);
    if (!t->node[i]) {
        t->node[i] = node;
        t->used++;
    }
    t->count[i]++;
    t->lookups++;
}

/* Frees the hiprio buffers the back end has returned. */
static int reap_hiprio(struct bench *b, bool wait)
{
    struct vuf_used u;
    for (;;) {
        int r = wait ? vuf_wait_used(b->f, HIPRIO, &u, WAIT_TIMEOUT_MS)
                     : vuf_poll_used(b->f, HIPRIO, &u);
        if (r < 0) {
            ERR("hiprio queue: %s\n", vuf_error(b->f));
            return -1;
        }
        if (r == 0) {
            if (wait) {
                ERR("hiprio queue: no FORGET returned within %d ms (%u in flight)\n",
                    WAIT_TIMEOUT_MS, vuf_inflight(b->f, HIPRIO));
                return -1;
            }
            return 0;
        }
        int fi = b->fbuf_of_head[u.id];
        if (fi < 0) {
            ERR("hiprio queue: used head %u belongs to no FORGET\n", u.id);
            return -1;
        }
        b->fbuf_of_head[u.id] = -1;
        b->fbuf_free[b->nfree++] = (unsigned)fi;
        wait = false;
    }
}

/* Sends one FORGET chain per pending node on the hiprio queue. */
static int forget_flush(struct bench *b)
{
    struct forget_table *t = &b->ft;
    for (unsigned i = 0; i < t->cap && t->used; i++) {
        if (!t->node[i])
            continue;
        if (b->nfree == 0) {
            if (vuf_kick(b->f, HIPRIO) < 0 || reap_hiprio(b, true) < 0)
                return -1;
        }
        unsigned fi = b->fbuf_free[--b->nfree];
        uint8_t *p = b->fbuf[fi];
        struct fuse_in_header h = { .len = IN_HDR + (uint32_t)sizeof(struct fuse_forget_in),
                                    .opcode = FUSE_FORGET,
                                    .unique = ++b->unique,
                                    .nodeid = t->node[i] };
        struct fuse_forget_in in = { .nlookup = t->count[i] };
        memcpy(p, &h, sizeof(h));
        memcpy(p + IN_HDR, &in, sizeof(in));
        struct vuf_seg seg = { b->fbuf_gpa[fi], h.len, false };
        int head = vuf_post(b->f, HIPRIO, &seg, 1);
        if (head < 0) {
            ERR("hiprio queue: %s\n", vuf_error(b->f));
            return -1;
        }
        b->fbuf_of_head[head] = (int)fi;
        t->node[i] = 0;
        t->count[i] = 0;
        t->used--;
        b->forgets++;
    }
    t->lookups = 0;
    if (vuf_kick(b->f, HIPRIO) < 0) {
        ERR("hiprio queue: %s\n", vuf_error(b->f));
        return -1;
    }
    return 0;
}

/* ---- requests ---- */

static const char *opcode_name(uint32_t op)
{
    switch (op) {
    case FUSE_INIT: return "INIT";
    case FUSE_LOOKUP: return "LOOKUP";
    case FUSE_GETATTR: return "GETATTR";
    case FUSE_CREATE: return "CREATE";
    case FUSE_RELEASE: return "RELEASE";
    case FUSE_UNLINK: return "UNLINK";
    case FUSE_MKDIR: return "MKDIR";
    case FUSE_RMDIR: return "RMDIR";
    case FUSE_OPEN: return "OPEN";
    case FUSE_OPENDIR: return "OPENDIR";
    case FUSE_READDIRPLUS: return "READDIRPLUS";
    case FUSE_RELEASEDIR: return "RELEASEDIR";
    case FUSE_READ: return "READ";
    case FUSE_WRITE: return "WRITE";
    default: return "request";
    }
}

/* Posts worker w's next request: args (alen bytes) after the header, data a readable
 * page (WRITE), reply_len fixed reply bytes, reply_page a writable page. */
static int post(struct bench *b, struct worker *w, uint32_t opcode, uint64_t node, const void *args,
                uint32_t alen, const char *name, bool data, uint32_t reply_len, bool reply_page)
{
    uint32_t nlen = name ? (uint32_t)strlen(name) + 1 : 0;
    if (alen + nlen > IN_ARGS || (reply_len && reply_page)) {
        ERR("%s: a request this bench cannot lay out\n", opcode_name(opcode));
        return -1;
    }
    memcpy(w->b.in + IN_HDR, args, alen);
    if (name)
        memcpy(w->b.in + IN_HDR + alen, name, nlen);
    struct fuse_in_header h = { .len = IN_HDR + alen + nlen + (data ? BS : 0),
                                .opcode = opcode,
                                .unique = ++b->unique,
                                .nodeid = node };
    memcpy(w->b.in, &h, sizeof(h));
    memset(w->b.out, 0xa5, OUT_HDR + OUT_ARGS); /* a back end that writes nothing fails */
    struct vuf_seg segs[4];
    unsigned n = 0;
    segs[n++] = (struct vuf_seg){ w->b.in_gpa, IN_HDR, false };
    if (alen + nlen)
        segs[n++] = (struct vuf_seg){ w->b.in_gpa + IN_HDR, alen + nlen, false };
    if (data)
        segs[n++] = (struct vuf_seg){ w->b.din_gpa, BS, false };
    /* The reply header and its fixed part in one descriptor, so that no chain needs more
     * than 4 (a queue of 128 holds 32 requests); a data page in its own. */
    segs[n++] = (struct vuf_seg){ w->b.out_gpa, OUT_HDR + reply_len, true };
    if (reply_page)
        segs[n++] = (struct vuf_seg){ w->b.dout_gpa, DIR_BUF, true };
    int head = vuf_post(b->f, REQQ, segs, n);
    if (head < 0) {
        ERR("%s\n", vuf_error(b->f));
        return -1;
    }
    b->worker_of_head[head] = (int)(w - b->w);
    w->busy = true;
    w->opcode = opcode;
    w->unique = h.unique;
    w->reply_len = reply_len;
    w->reply_page = reply_page;
    return 0;
}

/* The next completion on the request queue, checked: its worker with *body (the reply after
 * the header) and *blen, or NULL (-1 in *rc on failure, 0 when none and !wait). */
static struct worker *reap(struct bench *b, bool wait, const uint8_t **body, uint32_t *blen,
                           int *rc)
{
    struct vuf_used u;
    int r = wait ? vuf_wait_used(b->f, REQQ, &u, WAIT_TIMEOUT_MS) : vuf_poll_used(b->f, REQQ, &u);
    *rc = -1;
    if (r < 0) {
        ERR("%s\n", vuf_error(b->f));
        return NULL;
    }
    if (r == 0) {
        if (!wait) {
            *rc = 0;
            return NULL;
        }
        ERR("no reply within %d ms (%u in flight)\n", WAIT_TIMEOUT_MS, vuf_inflight(b->f, REQQ));
        return NULL;
    }
    int wi = b->worker_of_head[u.id];
    if (wi < 0) {
        ERR("used head %u belongs to no request\n", u.id);
        return NULL;
    }
    b->worker_of_head[u.id] = -1;
    struct worker *w = &b->w[wi];
    w->busy = false;
    struct fuse_out_header h;
    memcpy(&h, w->b.out, sizeof(h));
    const char *what = opcode_name(w->opcode);
    if (u.len < OUT_HDR || h.len != u.len) {
        ERR("%s: used length %u, reply header says %u\n", what, u.len, h.len);
        return NULL;
    }
    if (h.unique != w->unique) {
        ERR("%s: reply unique %" PRIu64 ", expected %" PRIu64 "\n", what, (uint64_t)h.unique,
            w->unique);
        return NULL;
    }
    if (h.error != 0) {
        ERR("%s%s%s: error %d (%s)\n", what, w->name[0] ? " " : "", w->name, h.error,
            strerror(-h.error));
        return NULL;
    }
    uint32_t room = w->reply_len ? w->reply_len : w->reply_page ? DIR_BUF : 0;
    if (h.len - OUT_HDR > room) {
        ERR("%s: reply of %u bytes, room for %u\n", what, h.len, room + OUT_HDR);
        return NULL;
    }
    *blen = h.len - OUT_HDR;
    *body = w->reply_len ? w->b.out + OUT_HDR : w->b.dout;
    return w;
}

static int kick(struct bench *b)
{
    if (vuf_kick(b->f, REQQ) < 0) {
        ERR("%s\n", vuf_error(b->f));
        return -1;
    }
    return 0;
}

/* One request at a time, for set-up: posts it, waits for its checked reply. */
static int call(struct bench *b, uint32_t opcode, uint64_t node, const void *args, uint32_t alen,
                const char *name, bool data, uint32_t reply_len, bool reply_page,
                const uint8_t **body, uint32_t *blen)
{
    struct worker *w = &b->w[0];
    int rc;
    snprintf(w->name, sizeof(w->name), "%s", name ? name : "");
    if (post(b, w, opcode, node, args, alen, name, data, reply_len, reply_page) < 0 || kick(b) < 0)
        return -1;
    if (!reap(b, true, body, blen, &rc))
        return -1;
    w->name[0] = '\0';
    return 0;
}

/* A set-up LOOKUP: its node stays looked up until the end (forget_setup). */
static int lookup_entry(struct bench *b, uint64_t parent, const char *name,
                        struct fuse_entry_out *e)
{
    const uint8_t *body;
    uint32_t blen;
    if (call(b, FUSE_LOOKUP, parent, NULL, 0, name, false, sizeof(*e), false, &body, &blen) < 0)
        return -1;
    if (blen != sizeof(*e)) {
        ERR("LOOKUP %s: %u reply bytes, expected %zu\n", name, blen, sizeof(*e));
        return -1;
    }
    memcpy(e, body, sizeof(*e));
    if (!e->nodeid) {
        ERR("LOOKUP %s: node id 0\n", name);
        return -1;
    }
    return 0;
}

static int init_fs(struct bench *b)
{
    struct fuse_init_in in = {
        .major = FUSE_KERNEL_VERSION,
        .minor = 38,
        .max_readahead = 128u << 10,
        .flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DONT_MASK | FUSE_DO_READDIRPLUS |
                 FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES |
                 FUSE_HANDLE_KILLPRIV_V2 | FUSE_INIT_EXT,
    };
    struct fuse_init_out o;
    const uint8_t *body;
    uint32_t blen;
    if (call(b, FUSE_INIT, 0, &in, sizeof(in), NULL, false, sizeof(o), false, &body, &blen) < 0)
        return -1;
    memset(&o, 0, sizeof(o));
    memcpy(&o, body, blen < sizeof(o) ? blen : sizeof(o));
    if (blen < 24 || o.major != FUSE_KERNEL_VERSION || o.minor < 31) {
        ERR("INIT: %u reply bytes, version %u.%u\n", blen, o.major, o.minor);
        return -1;
    }
    if (o.max_write < BS) {
        ERR("INIT: max_write %u\n", o.max_write);
        return -1;
    }
    return 0;
}

static int open_data(struct bench *b)
{
    struct fuse_entry_out e;
    if (lookup_entry(b, ROOT_ID, "d1000", &e) < 0)
        return -1;
    b->dir_node = e.nodeid;
    if (lookup_entry(b, ROOT_ID, "work", &e) < 0)
        return -1;
    b->work_node = e.nodeid;
    if (lookup_entry(b, ROOT_ID, "data", &e) < 0)
        return -1;
    b->data_node = e.nodeid;
    b->data_blocks = e.attr.size / BS;
    if (!S_ISREG(e.attr.mode) || b->data_blocks == 0) {
        ERR("data: not a regular file of at least 4 KiB (mode 0%o, %" PRIu64 " bytes)\n",
            e.attr.mode, (uint64_t)e.attr.size);
        return -1;
    }
    struct fuse_open_in oi = { .flags = O_RDWR };
    struct fuse_open_out oo;
    const uint8_t *body;
    uint32_t blen;
    if (call(b, FUSE_OPEN, b->data_node, &oi, sizeof(oi), NULL, false, sizeof(oo), false, &body,
             &blen) < 0)
        return -1;
    if (blen != sizeof(oo)) {
        ERR("OPEN data: %u reply bytes\n", blen);
        return -1;
    }
    memcpy(&oo, body, sizeof(oo));
    b->data_fh = oo.fh;
    return 0;
}

static void fill_block(uint8_t *p, uint64_t block, uint64_t seed)
{
    for (uint64_t i = 0; i < BS / 8; i++) {
        uint64_t v = pattern(block, i, seed);
        memcpy(p + i * 8, &v, 8);
    }
}

static int post_io(struct bench *b, struct worker *w, bool write, uint64_t block)
{
    w->off = block * BS;
    if (write) {
        struct fuse_write_in wi = {
            .fh = b->data_fh, .offset = w->off, .size = BS, .flags = O_RDWR
        };
        return post(b, w, FUSE_WRITE, b->data_node, &wi, sizeof(wi), NULL, true,
                    sizeof(struct fuse_write_out), false);
    }
    struct fuse_read_in ri = { .fh = b->data_fh, .offset = w->off, .size = BS, .flags = O_RDWR };
    return post(b, w, FUSE_READ, b->data_node, &ri, sizeof(ri), NULL, false, 0, true);
}

static int check_io(const struct worker *w, const uint8_t *body, uint32_t blen)
{
    if (w->opcode == FUSE_WRITE) {
        struct fuse_write_out wo;
        if (blen != sizeof(wo)) {
            ERR("WRITE at %" PRIu64 ": %u reply bytes\n", w->off, blen);
            return -1;
        }
        memcpy(&wo, body, sizeof(wo));
        if (wo.size != BS) {
            ERR("WRITE at %" PRIu64 ": wrote %u bytes of %u\n", w->off, wo.size, BS);
            return -1;
        }
    } else if (blen != BS) {
        ERR("READ at %" PRIu64 ": %u bytes of %u\n", w->off, blen, BS);
        return -1;
    }
    return 0;
}

/* Writes nblocks random blocks of data with a pattern, reads them back. */
static int verify(struct bench *b, unsigned nblocks, uint64_t seed)
{
    if (nblocks > b->data_blocks)
        nblocks = (unsigned)b->data_blocks;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t rng = seed * 0x9e3779b97f4a7c15u + 7;
        for (unsigned i = 0; i < nblocks; i++) {
            /* The same blocks in both passes; a block drawn twice gets the same pattern. */
            uint64_t block = next_rand(&rng) % b->data_blocks;
            struct worker *w = &b->w[0];
            const uint8_t *body;
            uint32_t blen;
            int rc;
            if (pass == 0)
                fill_block(w->b.din, block, seed);
            else
                memset(w->b.dout, 0, BS);
            if (post_io(b, w, pass == 0, block) < 0 || kick(b) < 0 ||
                !reap(b, true, &body, &blen, &rc) || check_io(w, body, blen) < 0)
                return -1;
            if (pass == 1) {
                uint8_t want[BS];
                fill_block(want, block, seed);
                if (memcmp(body, want, BS)) {
                    ERR("data check: block %" PRIu64 " does not read back what was written\n",
                        block);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* ---- operations ---- */

static int begin(struct bench *b, struct worker *w)
{
    w->active = true;
    w->step = 0;
    w->t_start = now_s(CLOCK_MONOTONIC);
    w->name[0] = '\0';
    switch (b->op) {
    case OP_LOOKUP:
        snprintf(w->name, sizeof(w->name), "f%04u", (unsigned)(next_rand(&b->rng) % b->files));
        return post(b, w, FUSE_LOOKUP, b->dir_node, NULL, 0, w->name, false,
                    sizeof(struct fuse_entry_out), false);
    case OP_CREATE: {
        snprintf(w->name, sizeof(w->name), "c%u.%" PRIu64, (unsigned)(w - b->w), ++b->seq);
        struct fuse_create_in ci = { .flags = O_RDWR | O_CREAT | O_EXCL,
                                     .mode = S_IFREG | 0644,
                                     .umask = 022 };
        return post(b, w, FUSE_CREATE, b->work_node, &ci, sizeof(ci), w->name, false,
                    sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out), false);
    }
    case OP_MKDIR: {
        snprintf(w->name, sizeof(w->name), "m%u.%" PRIu64, (unsigned)(w - b->w), ++b->seq);
        struct fuse_mkdir_in mi = { .mode = 0755, .umask = 022 };
        return post(b, w, FUSE_MKDIR, b->work_node, &mi, sizeof(mi), w->name, false,
                    sizeof(struct fuse_entry_out), false);
    }
    case OP_READDIRPLUS: {
        struct fuse_open_in oi = { .flags = O_RDONLY | O_DIRECTORY };
        w->off = 0;
        w->entries = 0;
        return post(b, w, FUSE_OPENDIR, b->dir_node, &oi, sizeof(oi), NULL, false,
                    sizeof(struct fuse_open_out), false);
    }
    case OP_READ:
    case OP_WRITE: return post_io(b, w, b->op == OP_WRITE, next_rand(&b->rng) % b->data_blocks);
    default: return -1;
    }
}

static int entry_of(struct worker *w, const uint8_t *body, uint32_t blen, uint32_t want,
                    struct fuse_entry_out *e)
{
    if (blen != want) {
        ERR("%s %s: %u reply bytes, expected %u\n", opcode_name(w->opcode), w->name, blen, want);
        return -1;
    }
    memcpy(e, body, sizeof(*e));
    if (!e->nodeid) {
        ERR("%s %s: node id 0\n", opcode_name(w->opcode), w->name);
        return -1;
    }
    return 0;
}

/* Parses one READDIRPLUS reply: counts and forgets its entries, moves w->off on. Returns
 * the number of entries (0: the end). */
static int dir_entries(struct bench *b, struct worker *w, const uint8_t *body, uint32_t blen)
{
    uint32_t at = 0;
    int n = 0;
    while (at < blen) {
        struct fuse_direntplus d;
        if (blen - at < FUSE_NAME_OFFSET_DIRENTPLUS) {
            ERR("READDIRPLUS: a truncated entry at byte %u of %u\n", at, blen);
            return -1;
        }
        memcpy(&d, body + at, sizeof(d));
        uint32_t size = (uint32_t)FUSE_DIRENTPLUS_SIZE(&d);
        if (d.dirent.namelen == 0 || d.dirent.namelen > 255 || size > blen - at) {
            ERR("READDIRPLUS: a bad entry at byte %u of %u (name of %u bytes)\n", at, blen,
                d.dirent.namelen);
            return -1;
        }
        const char *name = (const char *)body + at + FUSE_NAME_OFFSET_DIRENTPLUS;
        bool dot = (d.dirent.namelen == 1 && name[0] == '.') ||
                   (d.dirent.namelen == 2 && name[0] == '.' && name[1] == '.');
        if (!dot) {
            /* As Linux: a node id 0 hands out nothing; "." and ".." never count. */
            if (d.entry_out.nodeid)
                forget_add(&b->ft, d.entry_out.nodeid);
            w->entries++;
        }
        w->off = d.dirent.off;
        at += size;
        n++;
    }
    return n;
}

/* Moves w's operation on after a checked reply: 1 when it finished, 0 when another request
 * was posted, -1 on failure. */
static int advance(struct bench *b, struct worker *w, const uint8_t *body, uint32_t blen)
{
    struct fuse_entry_out e;
    switch (b->op) {
    case OP_LOOKUP:
        if (w->step == 0) {
            if (entry_of(w, body, blen, sizeof(e), &e) < 0)
                return -1;
            if (!S_ISREG(e.attr.mode)) {
                ERR("LOOKUP %s: mode 0%o, not a regular file\n", w->name, e.attr.mode);
                return -1;
            }
            w->node = e.nodeid;
            w->step = 1;
            struct fuse_getattr_in gi = { 0 };
            return post(b, w, FUSE_GETATTR, w->node, &gi, sizeof(gi), NULL, false,
                        sizeof(struct fuse_attr_out), false);
        }
        if (blen != sizeof(struct fuse_attr_out)) {
            ERR("GETATTR %s: %u reply bytes\n", w->name, blen);
            return -1;
        }
        forget_add(&b->ft, w->node);
        return 1;
    case OP_CREATE:
        if (w->step == 0) {
            struct fuse_open_out oo;
            if (entry_of(w, body, blen, sizeof(e) + sizeof(oo), &e) < 0)
                return -1;
            memcpy(&oo, body + sizeof(e), sizeof(oo));
            w->node = e.nodeid;
            w->fh = oo.fh;
            w->step = 1;
            struct fuse_release_in ri = { .fh = w->fh, .flags = O_RDWR };
            return post(b, w, FUSE_RELEASE, w->node, &ri, sizeof(ri), NULL, false, 0, false);
        }
        if (blen) {
            ERR("%s %s: %u reply bytes, expected none\n", opcode_name(w->opcode), w->name, blen);
            return -1;
        }
        if (w->step == 1) {
            w->step = 2;
            return post(b, w, FUSE_UNLINK, b->work_node, NULL, 0, w->name, false, 0, false);
        }
        forget_add(&b->ft, w->node);
        return 1;
    case OP_MKDIR:
        if (w->step == 0) {
            if (entry_of(w, body, blen, sizeof(e), &e) < 0)
                return -1;
            if (!S_ISDIR(e.attr.mode)) {
                ERR("MKDIR %s: mode 0%o, not a directory\n", w->name, e.attr.mode);
                return -1;
            }
            w->node = e.nodeid;
            w->step = 1;
            return post(b, w, FUSE_RMDIR, b->work_node, NULL, 0, w->name, false, 0, false);
        }
        if (blen) {
            ERR("RMDIR %s: %u reply bytes, expected none\n", w->name, blen);
            return -1;
        }
        forget_add(&b->ft, w->node);
        return 1;
    case OP_READDIRPLUS: {
        struct fuse_read_in ri = { .size = DIR_BUF, .flags = O_RDONLY | O_DIRECTORY };
        if (w->step == 0) {
            struct fuse_open_out oo;
            if (blen != sizeof(oo)) {
                ERR("OPENDIR: %u reply bytes\n", blen);
                return -1;
            }
            memcpy(&oo, body, sizeof(oo));
            w->fh = oo.fh;
            w->step = 1;
        } else if (w->step == 1) {
            int n = dir_entries(b, w, body, blen);
            if (n < 0)
                return -1;
            if (n == 0) {
                if (w->entries != b->files) {
                    ERR("READDIRPLUS: %u entries besides . and .., expected %u\n", w->entries,
                        b->files);
                    return -1;
                }
                w->step = 2;
                struct fuse_release_in rel = { .fh = w->fh, .flags = O_RDONLY | O_DIRECTORY };
                return post(b, w, FUSE_RELEASEDIR, b->dir_node, &rel, sizeof(rel), NULL, false, 0,
                            false);
            }
        } else {
            if (blen) {
                ERR("RELEASEDIR: %u reply bytes, expected none\n", blen);
                return -1;
            }
            return 1;
        }
        ri.fh = w->fh;
        ri.offset = w->off;
        return post(b, w, FUSE_READDIRPLUS, b->dir_node, &ri, sizeof(ri), NULL, false, 0, true);
    }
    case OP_READ:
    case OP_WRITE: return check_io(w, body, blen) < 0 ? -1 : 1;
    default: return -1;
    }
}

static void record(struct bench *b, double lat_s)
{
    if (b->nlat == b->lat_cap) {
        size_t cap = b->lat_cap ? b->lat_cap * 2 : 65536;
        uint64_t *p = realloc(b->lat_ns, cap * sizeof(*p));
        if (!p)
            return; /* the percentiles then cover fewer operations */
        b->lat_ns = p;
        b->lat_cap = cap;
    }
    b->lat_ns[b->nlat++] = (uint64_t)(lat_s * 1e9);
}

static int cmp_u64(const void *a, const void *c)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)c;
    return x < y ? -1 : x > y;
}

static double percentile_us(struct bench *b, unsigned pct)
{
    if (!b->nlat)
        return 0;
    size_t i = (b->nlat * pct + 99) / 100; /* nearest rank */
    return (double)b->lat_ns[i ? i - 1 : 0] / 1e3;
}

/* ---- options ---- */

static void usage(void)
{
    fprintf(stderr, "usage: vhost_user_fs_bench --socket PATH [--pid PID] [--label NAME]\n"
                    "       [--op lookup|create|mkdir|readdirplus|read4k|write4k] [--qd N]\n"
                    "       [--seconds S] [--warmup S] [--seed N] [--queue-size N] [--files N]\n"
                    "       [--verify-blocks N]\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){ .label = "server",
                        .op = OP_READ,
                        .qd = 1,
                        .queue_size = 128,
                        .verify_blocks = 64,
                        .files = 1000,
                        .seconds = 5,
                        .warmup = 0.5,
                        .seed = 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        errno = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return -1;
        } else if (!v) {
            ERR("%s needs a value\n", a);
            return -1;
        } else if (!strcmp(a, "--socket")) {
            o->socket = v;
        } else if (!strcmp(a, "--label")) {
            o->label = v;
        } else if (!strcmp(a, "--op")) {
            unsigned k = 0;
            while (k < OP_COUNT && strcmp(v, op_names[k]))
                k++;
            if (k == OP_COUNT) {
                ERR("--op: '%s' is not lookup, create, mkdir, readdirplus, read4k or write4k\n", v);
                return -1;
            }
            o->op = (enum op)k;
        } else if (!strcmp(a, "--pid")) {
            o->pid = strtol(v, &end, 10);
        } else if (!strcmp(a, "--qd")) {
            o->qd = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--queue-size")) {
            o->queue_size = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--verify-blocks")) {
            o->verify_blocks = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--files")) {
            o->files = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--seconds")) {
            o->seconds = strtod(v, &end);
        } else if (!strcmp(a, "--warmup")) {
            o->warmup = strtod(v, &end);
        } else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, &end, 10);
        } else {
            usage();
            return -1;
        }
        if (end && (*end || errno || end == v)) {
            ERR("%s: bad number '%s'\n", a, v);
            return -1;
        }
        i++;
    }
    if (!o->socket) {
        usage();
        return -1;
    }
    /* A chain has at most 4 descriptors (header, arguments, data or reply page, reply). */
    if (o->queue_size < 4 || o->queue_size > 32768 || (o->queue_size & (o->queue_size - 1)) ||
        o->qd < 1 || o->qd > MAX_QD || o->qd * 4 > o->queue_size) {
        ERR("--queue-size must be a power of two and hold --qd chains of 4 descriptors "
            "(qd 1..%u)\n",
            MAX_QD);
        return -1;
    }
    if (o->seconds <= 0 || o->warmup < 0 || o->files < 1 || o->files > MAX_FILES) {
        ERR("--seconds > 0, --warmup >= 0, --files 1..%u\n", MAX_FILES);
        return -1;
    }
    return 0;
}

/* ---- main ---- */

static int setup(struct bench *b, const struct opts *o)
{
    b->nw = o->qd;
    b->queue_size = o->queue_size;
    b->w = calloc(b->nw, sizeof(*b->w));
    b->worker_of_head = malloc(o->queue_size * sizeof(*b->worker_of_head));
    b->fbuf_of_head = malloc(o->queue_size * sizeof(*b->fbuf_of_head));
    b->fbuf_gpa = calloc(o->queue_size, sizeof(*b->fbuf_gpa));
    b->fbuf = calloc(o->queue_size, sizeof(*b->fbuf));
    b->fbuf_free = calloc(o->queue_size, sizeof(*b->fbuf_free));
    if (!b->w || !b->worker_of_head || !b->fbuf_of_head || !b->fbuf_gpa || !b->fbuf ||
        !b->fbuf_free || forget_init(&b->ft) < 0) {
        ERR("out of memory\n");
        return -1;
    }
    for (unsigned h = 0; h < o->queue_size; h++) {
        b->worker_of_head[h] = -1;
        b->fbuf_of_head[h] = -1;
    }
    for (unsigned i = 0; i < b->nw; i++) {
        struct bufs *p = &b->w[i].b;
        if (vuf_alloc(b->f, BS, BS, &p->din_gpa) < 0 || vuf_alloc(b->f, BS, BS, &p->dout_gpa) < 0 ||
            vuf_alloc(b->f, IN_HDR + IN_ARGS, 64, &p->in_gpa) < 0 ||
            vuf_alloc(b->f, OUT_HDR + OUT_ARGS, 64, &p->out_gpa) < 0) {
            ERR("%s\n", vuf_error(b->f));
            return -1;
        }
        p->din = vuf_ptr(b->f, p->din_gpa, BS);
        p->dout = vuf_ptr(b->f, p->dout_gpa, BS);
        p->in = vuf_ptr(b->f, p->in_gpa, IN_HDR + IN_ARGS);
        p->out = vuf_ptr(b->f, p->out_gpa, OUT_HDR + OUT_ARGS);
    }
    for (unsigned i = 0; i < o->queue_size; i++) {
        uint32_t len = IN_HDR + (uint32_t)sizeof(struct fuse_forget_in);
        if (vuf_alloc(b->f, len, 64, &b->fbuf_gpa[i]) < 0) {
            ERR("%s\n", vuf_error(b->f));
            return -1;
        }
        b->fbuf[i] = vuf_ptr(b->f, b->fbuf_gpa[i], len);
        b->fbuf_free[b->nfree++] = i;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct bench b = { 0 };
    char err[512];
    int rc = 1;
    if (parse(argc, argv, &o) < 0)
        return 2;
    b.op = o.op;
    b.files = o.files;
    b.rng = o.seed * 0x9e3779b97f4a7c15u + 1;

    struct vuf_options fo = vuf_default_options();
    fo.device_features = 0; /* not VIRTIO_FS_F_NOTIFICATION */
    fo.num_queues = 2;      /* hiprio and one request queue */
    fo.queue_size = (uint16_t)o.queue_size;
    fo.mem_size = (UINT64_C(4) << 20) + (uint64_t)o.qd * 4 * BS;
    b.f = vuf_open(o.socket, &fo, err, sizeof(err));
    if (!b.f) {
        ERR("%s\n", err);
        return 1;
    }
    /* QEMU enables every ring the device has, also those the driver leaves unused. */
    for (unsigned q = 2; q < vuf_queue_num(b.f); q++)
        (void)vuf_set_vring_enable(b.f, q, true);
    if (setup(&b, &o) < 0 || init_fs(&b) < 0 || open_data(&b) < 0)
        goto out;
    if (o.verify_blocks && verify(&b, o.verify_blocks, o.seed) < 0) {
        ERR("%s: data check failed\n", o.label);
        goto out;
    }
    for (unsigned i = 0; i < b.nw; i++)
        for (unsigned k = 0; k < BS; k++)
            b.w[i].b.din[k] = (uint8_t)(k * 7 + i);

    /* The measured loop: every worker keeps one operation going. */
    double t0 = now_s(CLOCK_MONOTONIC);
    double t_measure = t0 + o.warmup, t_end = t_measure + o.seconds;
    bool measuring = o.warmup == 0, stopping = false;
    uint64_t ops = 0, reqs0 = 0, reqs1 = 0, forgets0 = 0, forgets1 = 0;
    double m_start = t0, srv0 = server_cpu_s(o.pid), cli0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double m_end = 0, srv1 = 0, cli1 = 0;
    for (unsigned i = 0; i < b.nw; i++)
        if (begin(&b, &b.w[i]) < 0)
            goto out;
    if (kick(&b) < 0)
        goto out;
    while (vuf_inflight(b.f, REQQ) > 0) {
        const uint8_t *body;
        uint32_t blen;
        int r;
        struct worker *w = reap(&b, true, &body, &blen, &r);
        while (w) {
            b.reqs++;
            int done = advance(&b, w, body, blen);
            if (done < 0)
                goto out;
            if (done) {
                w->active = false;
                double t = now_s(CLOCK_MONOTONIC);
                if (measuring && !stopping) {
                    ops++;
                    record(&b, t - w->t_start);
                }
                if (!stopping && begin(&b, w) < 0)
                    goto out;
            }
            w = reap(&b, false, &body, &blen, &r);
        }
        if (r < 0)
            goto out;
        if (kick(&b) < 0 || reap_hiprio(&b, false) < 0)
            goto out;
        if ((b.ft.used >= FORGET_NODES || b.ft.lookups >= FORGET_LOOKUPS) && forget_flush(&b) < 0)
            goto out;
        if (stopping)
            continue;
        double t = now_s(CLOCK_MONOTONIC);
        if (!measuring && t >= t_measure) {
            measuring = true;
            m_start = t;
            srv0 = server_cpu_s(o.pid);
            cli0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
            reqs0 = b.reqs;
            forgets0 = b.forgets;
        } else if (measuring && t >= t_end) {
            stopping = true;
            m_end = t;
            srv1 = server_cpu_s(o.pid);
            cli1 = now_s(CLOCK_PROCESS_CPUTIME_ID);
            reqs1 = b.reqs;
            forgets1 = b.forgets;
        }
    }
    if (!stopping) {
        ERR("the loop ended early\n");
        goto out;
    }
    /* Give every lookup back, the set-up's too, and wait for the hiprio queue to drain, so
     * that a back end that loses FORGETs fails here. */
    const uint8_t *rbody;
    uint32_t rlen;
    struct fuse_release_in rel = { .fh = b.data_fh, .flags = O_RDWR };
    if (call(&b, FUSE_RELEASE, b.data_node, &rel, sizeof(rel), NULL, false, 0, false, &rbody,
             &rlen) < 0)
        goto out;
    forget_add(&b.ft, b.dir_node);
    forget_add(&b.ft, b.work_node);
    forget_add(&b.ft, b.data_node);
    if (forget_flush(&b) < 0)
        goto out;
    while (vuf_inflight(b.f, HIPRIO) > 0)
        if (reap_hiprio(&b, true) < 0)
            goto out;
    qsort(b.lat_ns, b.nlat, sizeof(*b.lat_ns), cmp_u64);
    double secs = m_end - m_start;
    printf("label=%s op=%s qd=%u secs=%.3f ops=%" PRIu64 " ops_s=%.0f reqs=%" PRIu64
           " forgets=%" PRIu64 " p50_us=%.1f p99_us=%.1f server_cpu_s=%.3f client_cpu_s=%.3f\n",
           o.label, op_names[o.op], o.qd, secs, ops, (double)ops / secs, reqs1 - reqs0,
           forgets1 - forgets0, percentile_us(&b, 50), percentile_us(&b, 99),
           o.pid > 0 && srv0 >= 0 && srv1 >= 0 ? srv1 - srv0 : -1.0, cli1 - cli0);
    fflush(stdout);
    uint16_t base;
    for (unsigned q = 0; q < 2; q++)
        if (vuf_queue_stop(b.f, q, &base) < 0) {
            ERR("%s\n", vuf_error(b.f));
            goto out;
        }
    rc = 0;
out:
    vuf_close(b.f);
    free(b.w);
    free(b.worker_of_head);
    free(b.fbuf_of_head);
    free(b.fbuf_gpa);
    free(b.fbuf);
    free(b.fbuf_free);
    free(b.ft.node);
    free(b.ft.count);
    free(b.lat_ns);
    return rc;
}
