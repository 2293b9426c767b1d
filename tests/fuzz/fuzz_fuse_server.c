/* libFuzzer target for the FUSE server (src/attach/fuse_server.c): a hostile guest's requests
 * against a temporary share holding files, directories, symlinks, a FIFO and a socket. Two
 * servers: a single writable directory (IDENTITY) and a multiple share (SQUASH: a writable and
 * a read-only directory, a memory file, a host file). Each input is reset and INIT first, then
 * requests: u8 server (first byte only); per request u8 opcode choice, u8 node choice (a node
 * id the server gave, or a raw u64), u8 handle choice (patched into the fh field), u8 layout
 * (how the request and reply are split and how big the reply buffer is), u16 argument length,
 * the arguments. Checked: every reply is well formed, never longer than its buffer, answers
 * the request's unique; a reset leaves only the roots and no handle; no fd leaks. FALLOCATE
 * and COPY_FILE_RANGE lengths are cut to 1 MiB so the fuzzer cannot fill the disk; the share
 * is made again every few hundred inputs. */
#include "attach/fuse_server.h"
#include "input.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_KNOWN 32
#define OUT_MAX   (1u << 17)
#define ARG_MAX   1024u
#define REFRESH   256u /* inputs between remaking the share */
#define LEN_CAP   (1u << 20)

static const uint32_t ops[] = {
    FUSE_LOOKUP,       FUSE_FORGET,     FUSE_GETATTR,
    FUSE_SETATTR,      FUSE_READLINK,   FUSE_SYMLINK,
    FUSE_MKNOD,        FUSE_MKDIR,      FUSE_UNLINK,
    FUSE_RMDIR,        FUSE_RENAME,     FUSE_LINK,
    FUSE_OPEN,         FUSE_READ,       FUSE_WRITE,
    FUSE_STATFS,       FUSE_RELEASE,    FUSE_FSYNC,
    FUSE_FLUSH,        FUSE_INIT,       FUSE_OPENDIR,
    FUSE_READDIR,      FUSE_RELEASEDIR, FUSE_FSYNCDIR,
    FUSE_ACCESS,       FUSE_CREATE,     FUSE_DESTROY,
    FUSE_BATCH_FORGET, FUSE_FALLOCATE,  FUSE_READDIRPLUS,
    FUSE_RENAME2,      FUSE_LSEEK,      FUSE_COPY_FILE_RANGE,
    FUSE_GETXATTR,     FUSE_SETLK,      FUSE_IOCTL,
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* Opcodes whose arguments start with a file handle. */
static bool fh_first(uint32_t op)
{
    switch (op) {
    case FUSE_READ:
    case FUSE_WRITE:
    case FUSE_RELEASE:
    case FUSE_FSYNC:
    case FUSE_FLUSH:
    case FUSE_READDIR:
    case FUSE_RELEASEDIR:
    case FUSE_FSYNCDIR:
    case FUSE_FALLOCATE:
    case FUSE_READDIRPLUS:
    case FUSE_LSEEK:
    case FUSE_COPY_FILE_RANGE: return true;
    default: return false;
    }
}

struct state {
    char dir[64];
    struct fuse_server *s[2];
    int fds; /* open fds after setting up */
    unsigned inputs;
    uint64_t unique;
    uint64_t node[MAX_KNOWN], fh[MAX_KNOWN];
    unsigned nnode, nfh;
};

static struct state st;
static uint8_t out_buf[OUT_MAX];
static const char mem_data[] = "a memory file\n";

/* Open fds into the share (libFuzzer opens pipes of its own as it goes). */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[64], target[256];
        snprintf(p, sizeof(p), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(p, target, sizeof(target) - 1);
        if (len > 0) {
            target[len] = 0;
            n += strncmp(target, st.dir, strlen(st.dir)) == 0;
        }
    }
    closedir(d);
    return n;
}

static void put(const char *rel, const char *text)
{
    char p[160];
    snprintf(p, sizeof(p), "%s/%s", st.dir, rel);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    FZ_CHECK(fd >= 0);
    FZ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    if (ftw->level == 0)
        return 0;
    if (type == FTW_DP || type == FTW_D)
        (void)chmod(path, 0700);
    (void)remove(path);
    return 0;
}

/* The share's contents, from scratch. */
static void populate(void)
{
    (void)chmod(st.dir, 0755);
    nftw(st.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    char p[160];
    put("file", "hello, world\n");
    snprintf(p, sizeof(p), "%s/dir", st.dir);
    FZ_CHECK(mkdir(p, 0755) == 0);
    put("dir/inner", "inside\n");
    snprintf(p, sizeof(p), "%s/ro", st.dir);
    FZ_CHECK(mkdir(p, 0755) == 0);
    put("ro/kept", "read only\n");
    snprintf(p, sizeof(p), "%s/link", st.dir);
    FZ_CHECK(symlink("/etc", p) == 0);
    snprintf(p, sizeof(p), "%s/up", st.dir);
    FZ_CHECK(symlink("../..", p) == 0);
    snprintf(p, sizeof(p), "%s/fifo", st.dir);
    FZ_CHECK(mkfifo(p, 0666) == 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", st.dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FZ_CHECK(fd >= 0);
    FZ_CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    close(fd);
}

static void cleanup(void)
{
    for (int i = 0; i < 2; i++)
        fuse_server_free(st.s[i]);
    (void)chmod(st.dir, 0755);
    nftw(st.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    rmdir(st.dir);
}

static void setup(void)
{
    strcpy(st.dir, "/tmp/vmkit-fuzz-fuse-XXXXXX");
    FZ_CHECK(mkdtemp(st.dir) != NULL);
    populate();
    char dirp[128], rop[128], filep[128];
    snprintf(dirp, sizeof(dirp), "%s/dir", st.dir);
    snprintf(rop, sizeof(rop), "%s/ro", st.dir);
    snprintf(filep, sizeof(filep), "%s/file", st.dir);
    struct fuse_share_entry one = { .path = st.dir };
    struct fuse_server_params p = { .entries = &one,
                                    .entry_count = 1,
                                    .cache = FUSE_CACHE_AUTO,
                                    .max_inodes = 256,
                                    .max_handles = 64,
                                    .what = "fuzz" };
    st.s[0] = fuse_server_new(&p, NULL);
    FZ_CHECK(st.s[0] != NULL);
    struct fuse_share_entry many[] = {
        { .name = "dir", .path = dirp },
        { .name = "ro", .path = rop, .read_only = true },
        { .name = "mem", .data = mem_data, .size = sizeof(mem_data) - 1 },
        { .name = "file", .path = filep },
    };
    p.entries = many;
    p.entry_count = 4;
    p.ownership = FUSE_OWNERSHIP_SQUASH;
    p.squash_uid = 1000;
    p.squash_gid = 1000;
    p.cache = FUSE_CACHE_ALWAYS;
    st.s[1] = fuse_server_new(&p, NULL);
    FZ_CHECK(st.s[1] != NULL);
    st.fds = count_fds();
    atexit(cleanup);
}

static void remember(uint64_t *list, unsigned *n, uint64_t v)
{
    if (*n < MAX_KNOWN)
        list[(*n)++] = v;
    else
        list[v % MAX_KNOWN] = v;
}

/* Sends one request (header + args) and checks the reply. */
static void send_req(struct fuse_server *s, uint32_t op, uint64_t nodeid, const uint8_t *args,
                     size_t alen, uint8_t layout, uint32_t uid)
{
    static uint8_t req[sizeof(struct fuse_in_header) + ARG_MAX];
    struct fuse_in_header h = { .len = (uint32_t)(sizeof(h) + alen),
                                .opcode = op,
                                .unique = ++st.unique,
                                .nodeid = nodeid,
                                .uid = uid,
                                .gid = uid,
                                .pid = 1 };
    /* Now and then a header whose length lies. */
    if ((layout & 0xc0) == 0xc0)
        h.len += (uint32_t)(layout & 7) - 4;
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), args, alen);
    size_t n = sizeof(h) + alen;
    size_t cut1 = (layout & 1) ? n / 3 : n, cut2 = (layout & 2) ? (n + cut1) / 2 : n;
    if (cut2 < cut1)
        cut2 = cut1;
    struct iovec in[3] = { { req, cut1 }, { req + cut1, cut2 - cut1 }, { req + cut2, n - cut2 } };
    static const size_t outs[] = { 8, 16, 40, 150, 4096, OUT_MAX };
    size_t out_len = outs[((layout >> 2) & 7) % 6];
    size_t split = (layout & 0x20) ? out_len / 2 : out_len;
    struct iovec out[2] = { { out_buf, split }, { out_buf + split, out_len - split } };
    size_t len = fuse_server_handle(s, in, 3, out, 2);
    FZ_CHECK(len <= out_len);
    if (!len)
        return;
    struct fuse_out_header o;
    FZ_CHECK(len >= sizeof(o));
    memcpy(&o, out_buf, sizeof(o));
    FZ_CHECK(o.len == len && o.unique == h.unique);
    FZ_CHECK(o.error <= 0 && o.error > -4096);
    if (o.error) {
        FZ_CHECK(len == sizeof(o));
        return;
    }
    const uint8_t *body = out_buf + sizeof(o);
    uint64_t v;
    switch (op) {
    case FUSE_LOOKUP:
    case FUSE_MKDIR:
    case FUSE_MKNOD:
    case FUSE_SYMLINK:
    case FUSE_LINK:
    case FUSE_CREATE:
        FZ_CHECK(len >= sizeof(o) + sizeof(struct fuse_entry_out));
        memcpy(&v, body, 8);
        remember(st.node, &st.nnode, v);
        if (op == FUSE_CREATE) {
            FZ_CHECK(len ==
                     sizeof(o) + sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out));
            memcpy(&v, body + sizeof(struct fuse_entry_out), 8);
            remember(st.fh, &st.nfh, v);
        }
        break;
    case FUSE_OPEN:
    case FUSE_OPENDIR:
        FZ_CHECK(len == sizeof(o) + sizeof(struct fuse_open_out));
        memcpy(&v, body, 8);
        remember(st.fh, &st.nfh, v);
        break;
    case FUSE_READDIRPLUS: {
        /* Each entry: an entry_out and a dirent, inside the reply. */
        size_t p = 0, blen = len - sizeof(o);
        while (p < blen) {
            FZ_CHECK(blen - p >= FUSE_NAME_OFFSET_DIRENTPLUS);
            struct fuse_entry_out e;
            struct fuse_dirent d;
            memcpy(&e, body + p, sizeof(e));
            memcpy(&d, body + p + sizeof(e), FUSE_NAME_OFFSET);
            FZ_CHECK(d.namelen > 0 && d.namelen <= 255);
            p += FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + d.namelen);
            FZ_CHECK(p <= blen);
            if (e.nodeid)
                remember(st.node, &st.nnode, e.nodeid);
        }
        break;
    }
    default: break;
    }
}

static void init(struct fuse_server *s)
{
    struct fuse_init_in in = {
        .major = 7, .minor = 38, .max_readahead = 1 << 17, .flags = 0xffffffffu & ~FUSE_INIT_EXT
    };
    send_req(s, FUSE_INIT, 0, (const uint8_t *)&in, sizeof(in), 0x10, 0);
}

static void cap_u64(uint8_t *args, size_t alen, size_t off)
{
    uint64_t v;
    if (alen < off + 8)
        return;
    memcpy(&v, args + off, 8);
    if (v > LEN_CAP) {
        v %= LEN_CAP;
        memcpy(args + off, &v, 8);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!st.s[0])
        setup();
    struct fz_in in = { data, size };
    struct fuse_server *s = st.s[fz_u8(&in) & 1];
    if (++st.inputs % REFRESH == 0) {
        for (int i = 0; i < 2; i++)
            fuse_server_reset(st.s[i]);
        populate();
    }
    fuse_server_reset(s);
    unsigned inodes, handles;
    fuse_server_counts(s, &inodes, &handles);
    FZ_CHECK(handles == 0 && inodes == (s == st.s[0] ? 1u : 5u));
    if (st.inputs % 64 == 0) {
        fuse_server_reset(st.s[0]);
        fuse_server_reset(st.s[1]);
        FZ_CHECK(count_fds() == st.fds);
    }
    st.nnode = st.nfh = 0;
    remember(st.node, &st.nnode, FUSE_ROOT_ID);
    init(s);
    static uint8_t args[ARG_MAX];
    for (unsigned k = 0; k < 64 && in.n > 0; k++) {
        uint8_t opsel = fz_u8(&in), nodesel = fz_u8(&in), fhsel = fz_u8(&in), layout = fz_u8(&in);
        uint32_t op = opsel == 0xff ? fz_u32(&in) : ops[opsel % NOPS];
        uint64_t nodeid = nodesel >= 0xf0 ? fz_u64(&in) : st.node[nodesel % st.nnode];
        size_t alen = fz_u16(&in) % ARG_MAX;
        alen = fz_bytes(&in, args, alen);
        if (fh_first(op) && alen >= 8 && st.nfh && fhsel < 0xf0)
            memcpy(args, &st.fh[fhsel % st.nfh], 8);
        if (op == FUSE_COPY_FILE_RANGE && alen >= 32 && st.nfh)
            memcpy(args + 24, &st.fh[(fhsel / 7) % st.nfh], 8); /* fh_out */
        if (op == FUSE_FALLOCATE)
            cap_u64(args, alen, 16);
        if (op == FUSE_COPY_FILE_RANGE)
            cap_u64(args, alen, 40);
        /* Now and then as someone else than root. */
        send_req(s, op, nodeid, args, alen, layout, (layout & 0x10) ? 1000 : 0);
    }
    return 0;
}

/* ---- seeds ---- */

static void seed_req(struct fz_seed *s, uint32_t op, uint8_t nodesel, uint8_t fhsel,
                     const void *args, size_t alen)
{
    unsigned i;
    for (i = 0; i < NOPS && ops[i] != op; i++)
        ;
    fz_seed_u8(s, (uint8_t)i);
    fz_seed_u8(s, nodesel);
    fz_seed_u8(s, fhsel);
    fz_seed_u8(s, 0x13); /* split request, 4 KiB reply */
    fz_seed_u16(s, (uint16_t)alen);
    fz_seed_bytes(s, args, alen);
}

static void seed_name(struct fz_seed *s, uint32_t op, uint8_t nodesel, const void *head,
                      size_t hlen, const char *name)
{
    uint8_t a[300];
    memcpy(a, head, hlen);
    memcpy(a + hlen, name, strlen(name) + 1);
    seed_req(s, op, nodesel, 0, a, hlen + strlen(name) + 1);
}

void fz_write_seeds(const char *dir)
{
    struct fz_seed s = { .n = 0 };
    /* Look up "file", open it, read, write, release. Node choice 1 is what LOOKUP gave. */
    fz_seed_u8(&s, 0);
    seed_name(&s, FUSE_LOOKUP, 0, "", 0, "file");
    struct fuse_open_in oi = { .flags = O_RDWR };
    seed_req(&s, FUSE_OPEN, 1, 0, &oi, sizeof(oi));
    struct fuse_read_in ri = { .size = 4096 };
    seed_req(&s, FUSE_READ, 1, 0, &ri, sizeof(ri));
    uint8_t w[sizeof(struct fuse_write_in) + 5];
    struct fuse_write_in wi = { .size = 5, .offset = 3 };
    memcpy(w, &wi, sizeof(wi));
    memcpy(w + sizeof(wi), "12345", 5);
    seed_req(&s, FUSE_WRITE, 1, 0, w, sizeof(w));
    struct fuse_release_in rl = { 0 };
    seed_req(&s, FUSE_RELEASE, 1, 0, &rl, sizeof(rl));
    struct fuse_forget_in fg = { .nlookup = 1 };
    seed_req(&s, FUSE_FORGET, 1, 0, &fg, sizeof(fg));
    fz_seed_save(dir, "file_io", &s);

    s.n = 0;
    fz_seed_u8(&s, 0);
    struct fuse_mkdir_in mi = { .mode = 0755 };
    seed_name(&s, FUSE_MKDIR, 0, &mi, sizeof(mi), "d");
    struct fuse_create_in ci = { .flags = O_RDWR | O_CREAT, .mode = S_IFREG | 0644 };
    seed_name(&s, FUSE_CREATE, 1, &ci, sizeof(ci), "f");
    seed_req(&s, FUSE_WRITE, 2, 0, w, sizeof(w));
    struct fuse_rename2_in rn = { .newdir = 1, .flags = 1 };
    uint8_t r2[sizeof(rn) + 4];
    memcpy(r2, &rn, sizeof(rn));
    memcpy(r2 + sizeof(rn), "f\0g", 4);
    seed_req(&s, FUSE_RENAME2, 1, 0, r2, sizeof(r2));
    seed_name(&s, FUSE_SYMLINK, 1, "s", 2, "../../etc/passwd");
    struct fuse_mknod_in mn = { .mode = S_IFIFO | 0644 };
    seed_name(&s, FUSE_MKNOD, 1, &mn, sizeof(mn), "p");
    struct fuse_open_in od = { 0 };
    seed_req(&s, FUSE_OPENDIR, 0, 0, &od, sizeof(od));
    ri.size = 4096;
    seed_req(&s, FUSE_READDIRPLUS, 0, 1, &ri, sizeof(ri));
    struct fuse_setattr_in sa = { .valid = FATTR_MODE | FATTR_SIZE, .mode = 04755, .size = 10 };
    seed_req(&s, FUSE_SETATTR, 2, 0, &sa, sizeof(sa));
    fz_seed_save(dir, "dir_ops", &s);

    s.n = 0;
    fz_seed_u8(&s, 1); /* the multiple share */
    seed_req(&s, FUSE_OPENDIR, 0, 0, &od, sizeof(od));
    seed_req(&s, FUSE_READDIRPLUS, 0, 0, &ri, sizeof(ri));
    seed_name(&s, FUSE_LOOKUP, 0, "", 0, "mem");
    seed_req(&s, FUSE_OPEN, 1, 0, &oi, sizeof(oi));
    oi.flags = O_RDONLY;
    seed_req(&s, FUSE_OPEN, 1, 0, &oi, sizeof(oi));
    seed_req(&s, FUSE_READ, 1, 1, &ri, sizeof(ri));
    seed_name(&s, FUSE_LOOKUP, 0, "", 0, "ro");
    seed_name(&s, FUSE_CREATE, 2, &ci, sizeof(ci), "x");
    seed_name(&s, FUSE_LOOKUP, 2, "", 0, "kept");
    fz_seed_save(dir, "multi", &s);

    s.n = 0;
    fz_seed_u8(&s, 0);
    seed_name(&s, FUSE_LOOKUP, 0, "", 0, "fifo");
    oi.flags = O_RDONLY;
    seed_req(&s, FUSE_OPEN, 1, 0, &oi, sizeof(oi));
    seed_name(&s, FUSE_LOOKUP, 0, "", 0, "link");
    seed_req(&s, FUSE_READLINK, 2, 0, "", 0);
    seed_req(&s, FUSE_OPEN, 2, 0, &oi, sizeof(oi));
    seed_name(&s, FUSE_LOOKUP, 0, "", 0, "..");
    struct fuse_batch_forget_in bf = { .count = 2 };
    uint8_t b[sizeof(bf) + 2 * sizeof(struct fuse_forget_one)] = { 0 };
    memcpy(b, &bf, sizeof(bf));
    seed_req(&s, FUSE_BATCH_FORGET, 0, 0, b, sizeof(b));
    fz_seed_save(dir, "special", &s);
}
