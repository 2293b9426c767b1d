/* libFuzzer target for USB mass storage (src/devices/usb/usb_storage.c) and the SCSI disk
 * behind it (scsi_disk.c): a hostile host controller and driver feed CBWs, CDBs, data,
 * requests on the default pipe and port resets through the usb_device ops, over small disks
 * in memory. data[0] picks the disk (low 2 bits mod 3: 512-byte blocks, 4096-byte blocks,
 * read-only) and, in bits 4-6, back-end calls that fail (read, write, flush).
 *
 * Checked: the back-end contract (sector-aligned ranges inside the disk, nothing written to
 * a read-only disk); every transfer and request moves at most what it was given; and in a
 * whole command after a Reset Recovery, every data transfer moves exactly what the host
 * asked (the device pads and discards, it never ends a transfer short), a stall comes only
 * from a direction mismatch and is followed by a phase-error CSW, and the CSW carries the
 * CBW's tag and a residue within the host's length. */
#include "devices/usb/usb_storage.h"
#include "input.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DISK_SIZE (64u << 10)
#define NVARIANTS 3
#define BUF_SIZE  (20u << 10) /* the largest single transfer */
#define MAX_OPS   64u

#define FAIL_READ  1u
#define FAIL_WRITE 2u
#define FAIL_FLUSH 4u

enum {
    OP_MACRO,   /* a whole command after a Reset Recovery */
    OP_OUT,     /* one OUT transfer of input bytes */
    OP_IN,      /* one IN transfer */
    OP_CBW,     /* one OUT transfer holding a CBW, perhaps damaged */
    OP_CONTROL, /* a request on the default pipe */
    OP_RESET,   /* a port reset, then SET_CONFIGURATION 1 */
    OP_FAIL,    /* which back-end calls fail */
    OP_COUNT,
};

struct disk {
    struct block_backend be;
    uint8_t bytes[DISK_SIZE];
    unsigned fail;
};

struct state {
    struct disk disks[NVARIANTS];
    struct usb_device *dev[NVARIANTS];
    uint8_t buf[BUF_SIZE];
};

/* ---- the checking back end ---- */

static void check_range(const struct disk *d, uint64_t off, uint64_t len)
{
    FZ_CHECK(off % BLOCK_SECTOR_SIZE == 0 && len % BLOCK_SECTOR_SIZE == 0);
    FZ_CHECK(len > 0 && off <= d->be.size && len <= d->be.size - off);
}

static int disk_rw(struct disk *d, bool write, uint64_t off, const struct iovec *iov, int cnt)
{
    FZ_CHECK(cnt >= 1);
    uint64_t total = 0;
    for (int i = 0; i < cnt; i++)
        total += iov[i].iov_len;
    check_range(d, off, total);
    if (write)
        FZ_CHECK(!d->be.read_only);
    if (d->fail & (write ? FAIL_WRITE : FAIL_READ))
        return -EIO;
    for (int i = 0; i < cnt; i++) {
        if (!iov[i].iov_len)
            continue;
        if (write)
            memcpy(d->bytes + off, iov[i].iov_base, iov[i].iov_len);
        else
            memcpy(iov[i].iov_base, d->bytes + off, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    return 0;
}

static int disk_read(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    return disk_rw(ctx, false, off, iov, cnt);
}

static int disk_write(void *ctx, uint64_t off, const struct iovec *iov, int cnt)
{
    return disk_rw(ctx, true, off, iov, cnt);
}

static int disk_flush(void *ctx)
{
    struct disk *d = ctx;
    return d->fail & FAIL_FLUSH ? -EIO : 0;
}

static struct state *setup(void)
{
    struct state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    static const uint32_t bs[NVARIANTS] = { 512, 4096, 512 };
    static const char *const serials[NVARIANTS] = { "000000000001", "0123456789ABCDEF",
                                                    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF" };
    for (unsigned v = 0; v < NVARIANTS; v++) {
        struct disk *d = &s->disks[v];
        d->be = (struct block_backend){
            .size = DISK_SIZE,
            .block_size = bs[v],
            .read_only = v == 2,
            .read = disk_read,
            .write = disk_write,
            .flush = disk_flush,
            .ctx = d,
        };
        vmk_error *err = NULL;
        if (usb_storage_new(&d->be, serials[v], &s->dev[v], &err) != VMK_OK) {
            fprintf(stderr, "fuzz_usb_storage: %s\n", vmk_error_message(err));
            vmk_error_free(err);
            return NULL;
        }
    }
    return s;
}

/* ---- moving bytes ---- */

static int control(struct usb_device *dev, uint8_t rt, uint8_t req, uint16_t value, uint16_t index,
                   uint16_t length, uint8_t *data)
{
    struct usb_setup st = {
        .request_type = rt, .request = req, .value = value, .index = index, .length = length
    };
    int r = dev->ops->control(dev->ctx, &st, data);
    FZ_CHECK(r == USB_RET_STALL || (r >= 0 && r <= length));
    return r;
}

/* One transfer of len bytes of buf, cut into up to four iovecs where split says. */
static int transfer(struct usb_device *dev, uint8_t ep, uint8_t *buf, size_t len, uint8_t split)
{
    struct iovec v[4];
    unsigned n = 0;
    size_t at = 0;
    for (unsigned k = 0; k < 3 && (split >> (2 * k)) & 3; k++) {
        size_t cut = (len - at) / (((split >> (2 * k)) & 3) + 1);
        v[n++] = (struct iovec){ .iov_base = buf + at, .iov_len = cut };
        at += cut;
    }
    v[n++] = (struct iovec){ .iov_base = buf + at, .iov_len = len - at };
    struct usb_packet p = { .ep = ep, .iov = v, .iovcnt = n, .len = len };
    int r = dev->ops->transfer(dev->ctx, &p);
    FZ_CHECK(r == USB_RET_NAK || r == USB_RET_STALL || r == USB_RET_ERROR ||
             (r >= 0 && (size_t)r <= len));
    return r;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- the operations ---- */

static void reset_recovery(struct usb_device *dev)
{
    FZ_CHECK(control(dev, 0x21, 0xff, 0, 0, 0, NULL) == 0);
    FZ_CHECK(control(dev, 0x02, USB_REQ_CLEAR_FEATURE, 0, USB_STORAGE_EP_IN, 0, NULL) == 0);
    FZ_CHECK(control(dev, 0x02, USB_REQ_CLEAR_FEATURE, 0, USB_STORAGE_EP_OUT, 0, NULL) == 0);
}

/* A command as a driver runs it: input gives tag, length, direction, CDB and the size of
 * the data transfers. */
static void op_macro(struct state *s, struct usb_device *dev, struct fz_in *in)
{
    uint8_t shape = fz_u8(in);
    uint32_t tag = fz_u32(in);
    uint32_t host_len = shape & 0x80 ? fz_u16(in) : fz_u8(in);
    bool host_in = shape & 0x40;
    uint8_t cb_len = (uint8_t)(shape % 16 + 1);
    size_t chunk = (size_t)fz_u16(in) % BUF_SIZE + 1;
    uint8_t split = fz_u8(in);
    uint8_t cbw[31] = { 0 };
    put_le32(cbw, 0x43425355);
    put_le32(cbw + 4, tag);
    put_le32(cbw + 8, host_len);
    cbw[12] = host_in ? 0x80 : 0;
    cbw[14] = cb_len;
    fz_bytes(in, cbw + 15, cb_len);

    /* A known state first: configured, no command, no halt. */
    FZ_CHECK(control(dev, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL) == 0);
    reset_recovery(dev);
    FZ_CHECK(transfer(dev, USB_STORAGE_EP_OUT, cbw, sizeof(cbw), split) == (int)sizeof(cbw));
    bool stalled = false;
    uint8_t ep = host_in ? USB_STORAGE_EP_IN : USB_STORAGE_EP_OUT;
    for (uint32_t left = host_len; left;) {
        size_t n = left < chunk ? left : chunk;
        if (!host_in)
            fz_bytes(in, s->buf, n); /* the rest of the data is what the last command left */
        int r = transfer(dev, ep, s->buf, n, split);
        if (r == USB_RET_STALL) {
            /* Only a direction mismatch stalls, and only before any data moved. */
            FZ_CHECK(left == host_len);
            FZ_CHECK(control(dev, 0x02, USB_REQ_CLEAR_FEATURE, 0, ep, 0, NULL) == 0);
            stalled = true;
            break;
        }
        FZ_CHECK(r == (int)n);
        left -= (uint32_t)n;
    }
    uint8_t csw[13];
    FZ_CHECK(transfer(dev, USB_STORAGE_EP_IN, csw, sizeof(csw), 0) == (int)sizeof(csw));
    FZ_CHECK(get_le32(csw) == 0x53425355);
    FZ_CHECK(get_le32(csw + 4) == tag);
    FZ_CHECK(get_le32(csw + 8) <= host_len);
    FZ_CHECK(csw[12] <= 2);
    if (stalled)
        FZ_CHECK(csw[12] == 2);
}

static void op_cbw(struct usb_device *dev, struct fz_in *in)
{
    uint8_t cbw[40] = { 0 };
    uint8_t how = fz_u8(in);
    put_le32(cbw, 0x43425355);
    fz_bytes(in, cbw + 4, 27);
    if (how & 1)
        cbw[fz_u8(in) % 31] ^= fz_u8(in); /* damage one byte, perhaps the signature */
    size_t len = how & 2 ? 28 + how % 5 : 31;
    transfer(dev, USB_STORAGE_EP_OUT, cbw, len, how >> 2);
}

static void op_control(struct state *s, struct usb_device *dev, struct fz_in *in)
{
    uint8_t rt = fz_u8(in), req = fz_u8(in);
    uint16_t value = fz_u16(in), index = fz_u16(in), length = fz_u16(in);
    if (length > BUF_SIZE)
        length %= BUF_SIZE;
    if (!(rt & USB_DIR_IN))
        fz_bytes(in, s->buf, length);
    control(dev, rt, req, value, index, length, s->buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer passes no context: the disks and devices live as long as the process. */
    static struct state *state;
    if (!state) {
        state = setup();
        FZ_CHECK(state != NULL);
    }
    struct fz_in in = { .p = data, .n = size };
    uint8_t sel = fz_u8(&in);
    unsigned v = (sel & 3u) % NVARIANTS;
    struct usb_device *dev = state->dev[v];
    struct disk *disk = &state->disks[v];
    disk->fail = (sel >> 4) & 7u;
    dev->ops->reset(dev->ctx);
    FZ_CHECK(control(dev, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL) == 0);
    for (unsigned k = 0; k < MAX_OPS && in.n; k++) {
        uint8_t op = fz_u8(&in);
        switch (op % OP_COUNT) {
        case OP_MACRO: op_macro(state, dev, &in); break;
        case OP_OUT: {
            size_t n = fz_u16(&in) % BUF_SIZE;
            fz_bytes(&in, state->buf, n);
            transfer(dev, USB_STORAGE_EP_OUT, state->buf, n, op >> 3);
            break;
        }
        case OP_IN:
            transfer(dev, USB_STORAGE_EP_IN, state->buf, fz_u16(&in) % BUF_SIZE, op >> 3);
            break;
        case OP_CBW: op_cbw(dev, &in); break;
        case OP_CONTROL: op_control(state, dev, &in); break;
        case OP_RESET:
            dev->ops->reset(dev->ctx);
            FZ_CHECK(control(dev, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL) == 0);
            break;
        case OP_FAIL: disk->fail = (op >> 3) & 7u; break;
        }
    }
    return 0;
}

/* ---- seeds: the commands hosts send, as whole commands ---- */

static void seed_macro(struct fz_seed *s, bool in, uint16_t len, const uint8_t *cdb, uint8_t cb_len,
                       uint16_t chunk)
{
    fz_seed_u8(s, OP_MACRO);
    fz_seed_u8(s, (uint8_t)(0x80 | (in ? 0x40 : 0) | (cb_len - 1)));
    fz_seed_u32(s, 0x1234);
    fz_seed_u16(s, len);
    fz_seed_u16(s, (uint16_t)(chunk - 1));
    fz_seed_u8(s, 0);
    fz_seed_bytes(s, cdb, cb_len);
}

void fz_write_seeds(const char *dir)
{
    static const struct {
        const char *name;
        bool in;
        uint16_t len;
        uint8_t cb_len;
        uint8_t cdb[16];
    } cmds[] = {
        { "inquiry", true, 36, 6, { 0x12, 0, 0, 0, 36, 0 } },
        { "vpd00", true, 255, 6, { 0x12, 1, 0x00, 0, 255, 0 } },
        { "vpd80", true, 255, 6, { 0x12, 1, 0x80, 0, 255, 0 } },
        { "vpd83", true, 255, 6, { 0x12, 1, 0x83, 0, 255, 0 } },
        { "vpdb0", true, 64, 6, { 0x12, 1, 0xb0, 0, 64, 0 } },
        { "tur", false, 0, 6, { 0x00 } },
        { "request_sense", true, 18, 6, { 0x03, 0, 0, 0, 18, 0 } },
        { "read_capacity", true, 8, 10, { 0x25 } },
        { "read_capacity16", true, 32, 16, { 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32 } },
        { "read10", true, 4096, 10, { 0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0 } },
        { "write10", false, 4096, 10, { 0x2a, 0, 0, 0, 0, 8, 0, 0, 8, 0 } },
        { "read16", true, 8192, 16, { 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2 } },
        { "write6", false, 1024, 6, { 0x0a, 0, 0, 3, 2, 0 } },
        { "mode_sense6", true, 192, 6, { 0x1a, 0, 0x3f, 0, 192, 0 } },
        { "mode_sense10", true, 255, 10, { 0x5a, 0, 0x08, 0, 0, 0, 0, 0, 255, 0 } },
        { "sync_cache", false, 0, 10, { 0x35 } },
        { "report_luns", true, 16, 12, { 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0 } },
        { "verify", false, 0, 10, { 0x2f, 0, 0, 0, 0, 1, 0, 0, 4, 0 } },
        { "format_capacities", true, 252, 10, { 0x23, 0, 0, 0, 0, 0, 0, 0, 252, 0 } },
    };
    struct fz_seed s;
    for (unsigned i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        for (unsigned v = 0; v < NVARIANTS; v++) {
            s.n = 0;
            fz_seed_u8(&s, (uint8_t)v);
            seed_macro(&s, cmds[i].in, cmds[i].len, cmds[i].cdb, cmds[i].cb_len,
                       cmds[i].len > 512 ? 4096 : 512);
            /* REQUEST SENSE after it, as a driver does after a failure. */
            static const uint8_t rs[6] = { 0x03, 0, 0, 0, 18, 0 };
            seed_macro(&s, true, 18, rs, 6, 512);
            char name[64];
            snprintf(name, sizeof(name), "%s-%u", cmds[i].name, v);
            fz_seed_save(dir, name, &s);
        }
    }

    /* Enumeration on the default pipe, then a CBW by hand and its data and CSW. */
    s.n = 0;
    fz_seed_u8(&s, 0);
    static const uint16_t descs[] = { 0x0100, 0x0200, 0x0300, 0x0303, 0x0600, 0x0700 };
    for (unsigned i = 0; i < sizeof(descs) / sizeof(descs[0]); i++) {
        fz_seed_u8(&s, OP_CONTROL);
        fz_seed_u8(&s, 0x80);
        fz_seed_u8(&s, USB_REQ_GET_DESCRIPTOR);
        fz_seed_u16(&s, descs[i]);
        fz_seed_u16(&s, 0x0409);
        fz_seed_u16(&s, 255);
    }
    fz_seed_u8(&s, OP_CONTROL);
    fz_seed_u8(&s, 0xa1);
    fz_seed_u8(&s, 0xfe);
    fz_seed_u16(&s, 0);
    fz_seed_u16(&s, 0);
    fz_seed_u16(&s, 1);
    fz_seed_u8(&s, OP_CBW);
    fz_seed_u8(&s, 0);
    static const uint8_t cbw_tail[27] = { 1, 0, 0, 0, 36, 0, 0, 0, 0x80, 0, 6, 0x12, 0, 0, 0, 36 };
    fz_seed_bytes(&s, cbw_tail, sizeof(cbw_tail));
    fz_seed_u8(&s, OP_IN);
    fz_seed_u16(&s, 36);
    fz_seed_u8(&s, OP_IN);
    fz_seed_u16(&s, 13);
    fz_seed_save(dir, "enumerate", &s);
}
