/* A SCSI direct-access block device over a struct block_backend (see scsi_disk.h). Command
 * layouts follow SPC-4 and SBC-3; everything in a CDB comes from the guest, so every field
 * is range-checked before it reaches the back end, and a command we do not know is refused
 * with ILLEGAL REQUEST rather than guessed at. */
#include "devices/usb/scsi_disk.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SECTOR         BLOCK_SECTOR_SIZE /* the back end's unit of offsets and lengths */
#define MAX_DIRECT_IOV 64u               /* iovecs handed to the back end per call */
#define RESP_MAX       256u              /* the longest response a non-I/O command builds */

/* Operation codes (SPC-4, SBC-3). */
enum {
    OP_TEST_UNIT_READY = 0x00,
    OP_REQUEST_SENSE = 0x03,
    OP_READ_6 = 0x08,
    OP_WRITE_6 = 0x0a,
    OP_INQUIRY = 0x12,
    OP_MODE_SENSE_6 = 0x1a,
    OP_START_STOP_UNIT = 0x1b,
    OP_PREVENT_ALLOW = 0x1e,
    OP_READ_FORMAT_CAPACITIES = 0x23,
    OP_READ_CAPACITY_10 = 0x25,
    OP_READ_10 = 0x28,
    OP_WRITE_10 = 0x2a,
    OP_VERIFY_10 = 0x2f,
    OP_SYNC_CACHE_10 = 0x35,
    OP_MODE_SENSE_10 = 0x5a,
    OP_READ_16 = 0x88,
    OP_WRITE_16 = 0x8a,
    OP_VERIFY_16 = 0x8f,
    OP_SYNC_CACHE_16 = 0x91,
    OP_SERVICE_ACTION_IN_16 = 0x9e,
    OP_REPORT_LUNS = 0xa0,
    OP_READ_12 = 0xa8,
    OP_WRITE_12 = 0xaa,
};
#define SAI_READ_CAPACITY_16 0x10

/* Sense keys and additional sense codes. */
enum {
    KEY_NO_SENSE = 0x0,
    KEY_MEDIUM_ERROR = 0x3,
    KEY_ILLEGAL_REQUEST = 0x5,
    KEY_DATA_PROTECT = 0x7,
};
enum {
    ASC_WRITE_ERROR = 0x0c,
    ASC_UNRECOVERED_READ_ERROR = 0x11,
    ASC_INVALID_OPCODE = 0x20,
    ASC_LBA_OUT_OF_RANGE = 0x21,
    ASC_INVALID_FIELD_IN_CDB = 0x24,
    ASC_WRITE_PROTECTED = 0x27,
    ASC_SAVING_NOT_SUPPORTED = 0x39,
};

enum cmd_kind { CMD_NONE, CMD_BUF, CMD_READ, CMD_WRITE };

struct sense {
    uint8_t key, asc, ascq;
    bool info_valid; /* info holds the LBA the failure hit */
    uint32_t info;
};

struct scsi_disk {
    const struct block_backend *be;
    uint64_t blocks; /* logical blocks */
    uint32_t block_size;
    char serial[SCSI_DISK_SERIAL_MAX + 1];
    struct sense sense; /* of the last command, if it failed */

    /* The command between scsi_disk_begin and scsi_disk_finish. */
    bool open;
    bool failed;
    bool fua;
    enum cmd_kind kind;
    enum scsi_data_dir dir;
    uint64_t len;      /* bytes of its data phase */
    uint64_t disk_off; /* READ/WRITE: the byte offset of its first block */
    uint8_t resp[RESP_MAX];

    /* A sector a piece of data cuts in two; what it holds is good for one command only. */
    uint8_t bounce[SECTOR];
    uint64_t bounce_off;
    bool bounce_valid;
};

/* ---- big-endian fields ---- */

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* ---- failing a command ---- */

static void fail(struct scsi_disk *d, uint8_t key, uint8_t asc, uint8_t ascq)
{
    d->failed = true;
    d->sense = (struct sense){ .key = key, .asc = asc, .ascq = ascq };
}

static void invalid_field(struct scsi_disk *d)
{
    fail(d, KEY_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, 0);
}

/* A back-end call failed at byte offset pos. */
static void io_failed(struct scsi_disk *d, bool write, int r, uint64_t pos)
{
    if (r == -EROFS)
        fail(d, KEY_DATA_PROTECT, ASC_WRITE_PROTECTED, 0);
    else if (write)
        fail(d, KEY_MEDIUM_ERROR, ASC_WRITE_ERROR, 0);
    else
        fail(d, KEY_MEDIUM_ERROR, ASC_UNRECOVERED_READ_ERROR, 0);
    uint64_t lba = pos / d->block_size;
    /* The fixed format's INFORMATION field has 32 bits. */
    if (r != -EROFS && lba <= UINT32_MAX) {
        d->sense.info_valid = true;
        d->sense.info = (uint32_t)lba;
    }
}

/* [lba, lba + n) lies within the disk, without overflowing. */
static bool check_range(struct scsi_disk *d, uint64_t lba, uint64_t n)
{
    if (lba <= d->blocks && n <= d->blocks - lba)
        return true;
    fail(d, KEY_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE, 0);
    return false;
}

/* ---- a position in the transport's iovecs ---- */

struct cursor {
    const struct iovec *iov;
    unsigned cnt, i;
    size_t at; /* bytes of iov[i] already used */
};

/* Copies up to n bytes between buf and the iovecs (to_iov: into them) and moves past them;
 * returns how many (fewer when the iovecs end). buf NULL only skips. */
static size_t cur_copy(struct cursor *c, uint8_t *buf, size_t n, bool to_iov)
{
    size_t done = 0;
    while (done < n && c->i < c->cnt) {
        const struct iovec *v = &c->iov[c->i];
        size_t k = v->iov_len - c->at;
        if (k > n - done)
            k = n - done;
        if (k && buf) {
            uint8_t *g = (uint8_t *)v->iov_base + c->at;
            if (to_iov)
                memcpy(g, buf + done, k);
            else
                memcpy(buf + done, g, k);
        }
        done += k;
        c->at += k;
        if (c->at == v->iov_len) {
            c->i++;
            c->at = 0;
        }
    }
    return done;
}

/* Up to max non-empty pieces of the next want bytes, the cursor unmoved; *total: their sum. */
static unsigned cur_gather(const struct cursor *c, struct iovec *out, unsigned max, size_t want,
                           size_t *total)
{
    unsigned n = 0;
    size_t got = 0, at = c->at;
    for (unsigned i = c->i; i < c->cnt && n < max && got < want; i++, at = 0) {
        size_t k = c->iov[i].iov_len - at;
        if (k > want - got)
            k = want - got;
        if (!k)
            continue;
        out[n].iov_base = (uint8_t *)c->iov[i].iov_base + at;
        out[n].iov_len = k;
        n++;
        got += k;
    }
    *total = got;
    return n;
}

/* Shortens pieces to keep bytes in all; returns how many remain. */
static unsigned trim(struct iovec *v, unsigned n, size_t keep)
{
    size_t sum = 0;
    unsigned i = 0;
    for (; i < n && sum < keep; i++) {
        if (v[i].iov_len > keep - sum)
            v[i].iov_len = keep - sum;
        sum += v[i].iov_len;
    }
    return i;
}

/* ---- READ and WRITE data ---- */

/* The sector at sec into the bounce buffer, unless it is there already. */
static int load_bounce(struct scsi_disk *d, uint64_t sec)
{
    if (d->bounce_valid && d->bounce_off == sec)
        return 0;
    struct iovec v = { .iov_base = d->bounce, .iov_len = SECTOR };
    d->bounce_valid = false;
    int r = d->be->read(d->be->ctx, sec, &v, 1);
    if (r == 0) {
        d->bounce_valid = true;
        d->bounce_off = sec;
    }
    return r;
}

/* One sector that the data cuts, or whose iovecs are too fragmented for one back-end call,
 * through the bounce buffer: read, or read-modify-write. Returns the bytes moved: fewer than
 * the sector's part on failure (sense set) or when the iovecs ran out. */
static size_t move_bounced(struct scsi_disk *d, uint64_t pos, struct cursor *c, size_t left,
                           bool write)
{
    uint64_t sec = pos - pos % SECTOR;
    size_t in = (size_t)(pos - sec);
    size_t k = SECTOR - in < left ? SECTOR - in : left;
    /* A whole sector to write needs nothing of the old one. */
    int r = write && k == SECTOR ? 0 : load_bounce(d, sec);
    if (r < 0) {
        io_failed(d, write, r, sec);
        return 0;
    }
    if (!write)
        return cur_copy(c, d->bounce + in, k, true);
    d->bounce_valid = false;
    if (cur_copy(c, d->bounce + in, k, false) != k)
        return 0; /* the transport's iovecs were shorter than it said: write nothing */
    struct iovec v = { .iov_base = d->bounce, .iov_len = SECTOR };
    r = d->be->write(d->be->ctx, sec, &v, 1);
    if (r < 0) {
        io_failed(d, true, r, sec);
        return 0;
    }
    d->bounce_valid = true;
    d->bounce_off = sec;
    return k;
}

/* Moves len bytes at data offset off between the disk and the cursor. Whole sectors go
 * straight to the back end on the transport's own buffers. */
static size_t move_rw(struct scsi_disk *d, uint64_t off, struct cursor *c, size_t len, bool write)
{
    const struct block_backend *be = d->be;
    size_t done = 0;
    while (done < len && !d->failed) {
        uint64_t pos = d->disk_off + off + done;
        size_t left = len - done;
        if (pos % SECTOR == 0 && left >= SECTOR) {
            struct iovec v[MAX_DIRECT_IOV];
            size_t total;
            unsigned n = cur_gather(c, v, MAX_DIRECT_IOV, left - left % SECTOR, &total);
            size_t keep = total - total % SECTOR;
            if (keep) {
                n = trim(v, n, keep);
                int r =
                    write ? be->write(be->ctx, pos, v, (int)n) : be->read(be->ctx, pos, v, (int)n);
                if (r < 0) {
                    io_failed(d, write, r, pos);
                    break;
                }
                if (write && d->bounce_valid && d->bounce_off >= pos && d->bounce_off < pos + keep)
                    d->bounce_valid = false;
                cur_copy(c, NULL, keep, false);
                done += keep;
                continue;
            }
        }
        size_t want = SECTOR - pos % SECTOR < left ? SECTOR - pos % SECTOR : left;
        size_t k = move_bounced(d, pos, c, left, write);
        done += k;
        if (k < want)
            break;
    }
    return done;
}

/* ---- commands that answer with a few bytes ---- */

static size_t request_sense(const struct sense *s, uint8_t *r)
{
    memset(r, 0, 18);
    r[0] = 0x70; /* current error, fixed format */
    if (s->info_valid) {
        r[0] |= 0x80;
        put_be32(r + 3, s->info);
    }
    r[2] = s->key;
    r[7] = 10; /* additional sense length */
    r[12] = s->asc;
    r[13] = s->ascq;
    return 18;
}

static size_t inquiry(struct scsi_disk *d, const uint8_t *cdb, uint8_t *r)
{
    static const uint8_t vpd_pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1 };
    size_t sn = strlen(d->serial);
    if (cdb[1] & 0x02) { /* CmdDt, obsolete */
        invalid_field(d);
        return 0;
    }
    if (!(cdb[1] & 0x01)) {
        if (cdb[2]) { /* a page code without EVPD */
            invalid_field(d);
            return 0;
        }
        memset(r, 0, 36);
        r[0] = 0x00; /* connected, direct access; RMB (r[1]) 0: a fixed disk, never polled */
        r[2] = 0x06; /* SPC-4 */
        r[3] = 0x02; /* response data format */
        r[4] = 36 - 5;
        memcpy(r + 8, "VMKIT   ", 8);
        memcpy(r + 16, "USB DISK        ", 16);
        memcpy(r + 32, "1.0 ", 4);
        return 36;
    }
    memset(r, 0, 64);
    r[1] = cdb[2];
    switch (cdb[2]) {
    case 0x00: /* supported pages */
        r[3] = sizeof(vpd_pages);
        memcpy(r + 4, vpd_pages, sizeof(vpd_pages));
        return 4 + sizeof(vpd_pages);
    case 0x80: /* unit serial number */
        r[3] = (uint8_t)sn;
        memcpy(r + 4, d->serial, sn);
        return 4 + sn;
    case 0x83: /* device identification: one T10 vendor id designator */
        r[3] = (uint8_t)(4 + 8 + sn);
        r[4] = 0x02; /* ASCII */
        r[5] = 0x01; /* the logical unit; T10 vendor id */
        r[7] = (uint8_t)(8 + sn);
        memcpy(r + 8, "VMKIT   ", 8);
        memcpy(r + 16, d->serial, sn);
        return 16 + sn;
    case 0xb0: /* block limits: no limits to report */ r[3] = 0x3c; return 64;
    case 0xb1: /* block device characteristics */
        r[3] = 0x3c;
        put_be16(r + 4, 1); /* non-rotating: the guest need not order I/O for a head */
        return 64;
    default: invalid_field(d); return 0;
    }
}

static uint32_t blocks32(const struct scsi_disk *d)
{
    return d->blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)d->blocks;
}

static size_t mode_sense(struct scsi_disk *d, const uint8_t *cdb, bool ten, uint8_t *r)
{
    bool dbd = cdb[1] & 0x08;
    unsigned pc = cdb[2] >> 6, page = cdb[2] & 0x3f, sub = cdb[3];
    if (pc == 3) {
        fail(d, KEY_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED, 0);
        return 0;
    }
    if (sub && !(page == 0x3f && sub == 0xff)) {
        invalid_field(d);
        return 0;
    }
    bool changeable = pc == 1; /* nothing is: every mask bit 0 */
    size_t hdr = ten ? 8 : 4, n = hdr;
    memset(r, 0, 128);
    if (!dbd) {
        put_be32(r + n, blocks32(d));
        put_be32(r + n + 4, d->block_size); /* byte 4 reserved, then 24 bits */
        n += 8;
    }
    size_t pages = n;
    if (page == 0x08 || page == 0x3f) { /* caching */
        r[n] = 0x08;
        r[n + 1] = 0x12;
        if (!changeable)
            r[n + 2] = 0x04; /* WCE: writes may sit in the host's cache until a flush */
        n += 20;
    }
    if (page == 0x0a || page == 0x3f) { /* control: all defaults, fixed-format sense */
        r[n] = 0x0a;
        r[n + 1] = 0x0a;
        n += 12;
    }
    if (page == 0x1c || page == 0x3f) { /* informational exceptions control: none reported */
        r[n] = 0x1c;
        r[n + 1] = 0x0a;
        n += 12;
    }
    if (n == pages) {
        invalid_field(d);
        return 0;
    }
    /* Device-specific parameter: WP, else DPOFUA (a FUA write is flushed before status). */
    uint8_t dsp = d->be->read_only ? 0x80 : 0x10;
    if (ten) {
        put_be16(r, (uint16_t)(n - 2));
        r[3] = dsp;
        put_be16(r + 6, dbd ? 0 : 8);
    } else {
        r[0] = (uint8_t)(n - 1);
        r[2] = dsp;
        r[3] = dbd ? 0 : 8;
    }
    return n;
}

static size_t read_capacity_10(const struct scsi_disk *d, uint8_t *r)
{
    /* All ones: too big, ask READ CAPACITY(16). */
    put_be32(r, d->blocks - 1 > 0xfffffffeu ? 0xffffffffu : (uint32_t)(d->blocks - 1));
    put_be32(r + 4, d->block_size);
    return 8;
}

static size_t read_capacity_16(const struct scsi_disk *d, uint8_t *r)
{
    memset(r, 0, 32);
    put_be64(r, d->blocks - 1);
    put_be32(r + 8, d->block_size);
    return 32;
}

static size_t read_format_capacities(const struct scsi_disk *d, uint8_t *r)
{
    memset(r, 0, 12);
    r[3] = 8; /* one capacity descriptor */
    put_be32(r + 4, blocks32(d));
    put_be32(r + 8, d->block_size);
    r[8] = 0x02; /* formatted media */
    return 12;
}

static size_t report_luns(uint8_t *r)
{
    memset(r, 0, 16);
    r[3] = 8; /* LUN 0 alone */
    return 16;
}

/* ---- commands that move blocks or none ---- */

static void begin_rw(struct scsi_disk *d, bool write, uint64_t lba, uint64_t n, bool fua)
{
    if (write && d->be->read_only) {
        fail(d, KEY_DATA_PROTECT, ASC_WRITE_PROTECTED, 0);
        return;
    }
    if (!check_range(d, lba, n) || n == 0)
        return;
    d->kind = write ? CMD_WRITE : CMD_READ;
    d->dir = write ? SCSI_DATA_OUT : SCSI_DATA_IN;
    d->disk_off = lba * d->block_size;
    d->len = n * d->block_size;
    d->fua = write && fua;
}

/* READ/WRITE(10), (12), (16): no protection information here. */
static bool protect_ok(struct scsi_disk *d, const uint8_t *cdb)
{
    if (!(cdb[1] >> 5))
        return true;
    invalid_field(d);
    return false;
}

static void sync_cache(struct scsi_disk *d, uint64_t lba, uint64_t n)
{
    if (!check_range(d, lba, n))
        return;
    int r = d->be->flush(d->be->ctx);
    if (r < 0)
        io_failed(d, true, r, lba * d->block_size);
}

static void verify(struct scsi_disk *d, const uint8_t *cdb, uint64_t lba, uint64_t n)
{
    /* BYTCHK would send data to compare; the medium itself is always readable. */
    if ((cdb[1] >> 1) & 3)
        invalid_field(d);
    else
        check_range(d, lba, n);
}

/* Runs cdb; returns the bytes of a response built in d->resp, and the allocation length. */
static size_t dispatch(struct scsi_disk *d, const uint8_t *cdb, const struct sense *last,
                       uint64_t *alloc)
{
    uint8_t *r = d->resp;
    bool is_write = false;
    switch (cdb[0]) {
    case OP_TEST_UNIT_READY:
    case OP_PREVENT_ALLOW: /* nothing to lock: the disk cannot be ejected */
    case OP_START_STOP_UNIT: /* nothing spins */ return 0;
    case OP_REQUEST_SENSE: *alloc = cdb[4]; return request_sense(last, r);
    case OP_INQUIRY: *alloc = get_be16(cdb + 3); return inquiry(d, cdb, r);
    case OP_MODE_SENSE_6: *alloc = cdb[4]; return mode_sense(d, cdb, false, r);
    case OP_MODE_SENSE_10: *alloc = get_be16(cdb + 7); return mode_sense(d, cdb, true, r);
    case OP_READ_CAPACITY_10: *alloc = 8; return read_capacity_10(d, r);
    case OP_SERVICE_ACTION_IN_16:
        if ((cdb[1] & 0x1f) != SAI_READ_CAPACITY_16) {
            invalid_field(d);
            return 0;
        }
        *alloc = get_be32(cdb + 10);
        return read_capacity_16(d, r);
    case OP_READ_FORMAT_CAPACITIES: *alloc = get_be16(cdb + 7); return read_format_capacities(d, r);
    case OP_REPORT_LUNS: *alloc = get_be32(cdb + 6); return report_luns(r);
    case OP_WRITE_6: is_write = true; /* fall through */
    case OP_READ_6: {
        uint32_t lba = (uint32_t)(cdb[1] & 0x1f) << 16 | get_be16(cdb + 2);
        begin_rw(d, is_write, lba, cdb[4] ? cdb[4] : 256, false);
        return 0;
    }
    case OP_WRITE_10: is_write = true; /* fall through */
    case OP_READ_10:
        if (protect_ok(d, cdb))
            begin_rw(d, is_write, get_be32(cdb + 2), get_be16(cdb + 7), cdb[1] & 0x08);
        return 0;
    case OP_WRITE_12: is_write = true; /* fall through */
    case OP_READ_12:
        if (protect_ok(d, cdb))
            begin_rw(d, is_write, get_be32(cdb + 2), get_be32(cdb + 6), cdb[1] & 0x08);
        return 0;
    case OP_WRITE_16: is_write = true; /* fall through */
    case OP_READ_16:
        if (protect_ok(d, cdb))
            begin_rw(d, is_write, get_be64(cdb + 2), get_be32(cdb + 10), cdb[1] & 0x08);
        return 0;
    case OP_SYNC_CACHE_10: sync_cache(d, get_be32(cdb + 2), get_be16(cdb + 7)); return 0;
    case OP_SYNC_CACHE_16: sync_cache(d, get_be64(cdb + 2), get_be32(cdb + 10)); return 0;
    case OP_VERIFY_10: verify(d, cdb, get_be32(cdb + 2), get_be16(cdb + 7)); return 0;
    case OP_VERIFY_16: verify(d, cdb, get_be64(cdb + 2), get_be32(cdb + 10)); return 0;
    default: fail(d, KEY_ILLEGAL_REQUEST, ASC_INVALID_OPCODE, 0); return 0;
    }
}

/* ---- the transport's interface ---- */

void scsi_disk_begin(struct scsi_disk *d, const uint8_t *cdb_in, size_t cdb_len,
                     struct scsi_data_phase *phase)
{
    if (d->open)
        (void)scsi_disk_finish(d);
    uint8_t cdb[16] = { 0 };
    if (cdb_in && cdb_len)
        memcpy(cdb, cdb_in, cdb_len < sizeof(cdb) ? cdb_len : sizeof(cdb));
    /* SAM: without autosense the sense data lasts until the next command, which is
     * REQUEST SENSE when the host wants it. */
    struct sense last = d->sense;
    d->sense = (struct sense){ .key = KEY_NO_SENSE };
    d->open = true;
    d->failed = false;
    d->fua = false;
    d->kind = CMD_NONE;
    d->dir = SCSI_DATA_NONE;
    d->len = 0;
    d->bounce_valid = false;

    uint64_t alloc = 0;
    size_t n = dispatch(d, cdb, &last, &alloc);
    if (n && !d->failed && alloc) {
        d->kind = CMD_BUF;
        d->dir = SCSI_DATA_IN;
        d->len = n < alloc ? n : alloc;
    }
    phase->dir = d->dir;
    phase->len = d->len;
}

static size_t data(struct scsi_disk *d, enum scsi_data_dir dir, uint64_t off,
                   const struct iovec *iov, unsigned iovcnt, size_t len)
{
    if (!d->open || d->failed || d->dir != dir || off >= d->len || !iov)
        return 0;
    if (len > d->len - off)
        len = (size_t)(d->len - off);
    struct cursor c = { .iov = iov, .cnt = iovcnt };
    if (d->kind == CMD_BUF)
        return cur_copy(&c, d->resp + off, len, true);
    return move_rw(d, off, &c, len, dir == SCSI_DATA_OUT);
}

size_t scsi_disk_data_in(struct scsi_disk *d, uint64_t off, const struct iovec *iov,
                         unsigned iovcnt, size_t len)
{
    return data(d, SCSI_DATA_IN, off, iov, iovcnt, len);
}

size_t scsi_disk_data_out(struct scsi_disk *d, uint64_t off, const struct iovec *iov,
                          unsigned iovcnt, size_t len)
{
    return data(d, SCSI_DATA_OUT, off, iov, iovcnt, len);
}

uint8_t scsi_disk_finish(struct scsi_disk *d)
{
    if (!d->open)
        return SCSI_STATUS_GOOD;
    if (!d->failed && d->kind == CMD_WRITE && d->fua) {
        int r = d->be->flush(d->be->ctx);
        if (r < 0)
            io_failed(d, true, r, d->disk_off);
    }
    d->open = false;
    d->kind = CMD_NONE;
    d->dir = SCSI_DATA_NONE;
    d->len = 0;
    d->bounce_valid = false;
    return d->failed ? SCSI_STATUS_CHECK_CONDITION : SCSI_STATUS_GOOD;
}

int scsi_disk_new(const struct block_backend *be, const char *serial, struct scsi_disk **out)
{
    if (!be || !out || !be->read || !be->write || !be->flush ||
        (be->block_size != 512 && be->block_size != 4096) || be->size < be->block_size ||
        be->size % be->block_size)
        return -EINVAL;
    size_t sn = serial ? strlen(serial) : 0;
    if (sn > SCSI_DISK_SERIAL_MAX)
        return -EINVAL;
    for (size_t i = 0; i < sn; i++) {
        if (serial[i] < 0x20 || serial[i] > 0x7e)
            return -EINVAL;
    }
    struct scsi_disk *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->be = be;
    d->block_size = be->block_size;
    d->blocks = be->size / be->block_size;
    if (sn)
        memcpy(d->serial, serial, sn);
    *out = d;
    return 0;
}

void scsi_disk_free(struct scsi_disk *d)
{
    free(d);
}
