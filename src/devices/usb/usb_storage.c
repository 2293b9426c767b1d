/* USB mass storage, Bulk-Only Transport (see usb_storage.h). Every CBW and every request
 * comes from the guest: lengths are checked before use and nothing the host sends can make
 * the device move more than the host asked for, or more than the command has. */
#include "devices/usb/usb_storage.h"
#include "core/error.h"
#include "devices/usb/scsi_disk.h"
#include "devices/usb/usb_desc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CBW_LEN       31u
#define CBW_SIGNATURE 0x43425355u /* "USBC" */
#define CSW_LEN       13u
#define CSW_SIGNATURE 0x53425355u /* "USBS" */
#define CBW_FLAG_IN   0x80

#define CSW_GOOD        0
#define CSW_FAILED      1
#define CSW_PHASE_ERROR 2

#define REQ_MASS_STORAGE_RESET 0xff
#define REQ_GET_MAX_LUN        0xfe

#define USB_DT_DEVICE_QUALIFIER   6
#define USB_DT_OTHER_SPEED_CONFIG 7
#define HIGH_SPEED_BULK_PACKET    512
#define FULL_SPEED_BULK_PACKET    64
#define CONFIG_TOTAL_LEN          (9 + 9 + 7 + 7)
#define SERIAL_MIN                12
#define DEFAULT_SERIAL            "000000000001"

enum bot_state {
    BOT_CBW,      /* waiting for a CBW on OUT */
    BOT_DATA_IN,  /* the host reads data on IN */
    BOT_DATA_OUT, /* the host sends data on OUT */
    BOT_CSW,      /* the CSW waits to be read on IN */
};

struct usb_storage {
    struct usb_device dev;
    struct scsi_disk *disk;
    char serial[SCSI_DISK_SERIAL_MAX + 1];
    uint8_t config; /* 0: unconfigured, 1 */
    bool halt_in, halt_out;
    /* An invalid CBW: both bulk pipes stall until a Bulk-Only Mass Storage Reset. */
    bool need_reset;
    /* An endpoint that answered NAK, to be woken when it has something. */
    bool nak_in, nak_out;

    enum bot_state state;
    uint32_t tag;
    uint32_t host_len;  /* dCBWDataTransferLength */
    uint32_t host_done; /* bytes of it moved on the bus, padding and discards included */
    uint32_t dev_len;   /* bytes the command moves: its data phase, at most host_len */
    uint32_t dev_done;  /* of those, moved */
    bool phase_error;
    uint8_t csw_status;
    uint32_t residue;
};

static void put_le32(uint8_t *p, uint32_t v)
{
    usb_put_le16(p, (uint16_t)v);
    usb_put_le16(p + 2, (uint16_t)(v >> 16));
}

static uint32_t get_le32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- the packet's buffers ---- */

/* Copies n bytes between buf and the packet's iovecs from byte at on (to_pkt: into them).
 * buf NULL writes zeroes. Returns how many it copied. */
static size_t pkt_copy(const struct usb_packet *p, size_t at, uint8_t *buf, size_t n, bool to_pkt)
{
    size_t done = 0;
    for (unsigned i = 0; i < p->iovcnt && done < n; i++) {
        size_t l = p->iov[i].iov_len;
        if (at >= l) {
            at -= l;
            continue;
        }
        size_t k = l - at < n - done ? l - at : n - done;
        uint8_t *g = (uint8_t *)p->iov[i].iov_base + at;
        if (!to_pkt)
            memcpy(buf + done, g, k);
        else if (buf)
            memcpy(g, buf + done, k);
        else
            memset(g, 0, k);
        done += k;
        at = 0;
    }
    return done;
}

/* ---- the BOT state machine ---- */

static struct usb_storage *to_storage(void *ctx)
{
    return ctx;
}

/* Wakes an endpoint that answered NAK once the state has something for it. */
static void wake_ready(struct usb_storage *s)
{
    bool in_ready = s->state == BOT_DATA_IN || s->state == BOT_CSW;
    if (s->nak_in && in_ready) {
        s->nak_in = false;
        usb_device_wakeup(&s->dev, USB_STORAGE_EP_IN);
    }
    if (s->nak_out && !in_ready) {
        s->nak_out = false;
        usb_device_wakeup(&s->dev, USB_STORAGE_EP_OUT);
    }
}

/* The data phase is over: the command ends and its CSW waits on IN. */
static void end_data(struct usb_storage *s)
{
    uint8_t st = scsi_disk_finish(s->disk);
    s->csw_status = s->phase_error           ? CSW_PHASE_ERROR
                    : st == SCSI_STATUS_GOOD ? CSW_GOOD
                                             : CSW_FAILED;
    s->residue = s->host_len - s->dev_done;
    s->state = BOT_CSW;
    wake_ready(s);
}

/* Back to waiting for a CBW, any command dropped. */
static void bot_idle(struct usb_storage *s)
{
    (void)scsi_disk_finish(s->disk);
    s->state = BOT_CBW;
    s->host_len = s->host_done = s->dev_len = s->dev_done = 0;
    s->phase_error = false;
}

/* BOT 6.6.1: stall both pipes until a Reset Recovery. */
static int cbw_invalid(struct usb_storage *s)
{
    s->need_reset = true;
    s->halt_in = s->halt_out = true;
    return USB_RET_STALL;
}

static int bot_cbw(struct usb_storage *s, const struct usb_packet *p)
{
    uint8_t cbw[CBW_LEN];
    if (p->len != CBW_LEN || pkt_copy(p, 0, cbw, CBW_LEN, false) != CBW_LEN ||
        get_le32(cbw) != CBW_SIGNATURE)
        return cbw_invalid(s);
    uint8_t lun = cbw[13], cb_len = cbw[14];
    /* Not meaningful (reserved bits set, a LUN we lack, a bad length): treated alike. */
    if (lun != 0 || cb_len < 1 || cb_len > 16)
        return cbw_invalid(s);
    s->tag = get_le32(cbw + 4);
    s->host_len = get_le32(cbw + 8);
    s->host_done = s->dev_len = s->dev_done = 0;
    s->phase_error = false;
    bool host_in = cbw[12] & CBW_FLAG_IN;

    struct scsi_data_phase ph;
    scsi_disk_begin(s->disk, cbw + 15, cb_len, &ph);
    bool dev_in = ph.dir == SCSI_DATA_IN;
    if (ph.dir == SCSI_DATA_NONE || ph.len == 0) {
        /* Cases 1, 4 and 9: no data from the device; the host's is padding or discarded. */
        if (s->host_len == 0) {
            end_data(s);
        } else {
            s->state = host_in ? BOT_DATA_IN : BOT_DATA_OUT;
            wake_ready(s);
        }
    } else if (s->host_len == 0) {
        /* Cases 2 and 3: the host expects nothing; the command does not run. */
        s->phase_error = true;
        end_data(s);
    } else if (dev_in != host_in) {
        /* Cases 8 and 10: stall the pipe the host would use; the CSW says phase error. */
        s->phase_error = true;
        if (host_in)
            s->halt_in = true;
        else
            s->halt_out = true;
        end_data(s);
    } else {
        /* Cases 5, 6, 7, 11, 12, 13: move what both agree on; more wanted by the device
         * than the host allows is a phase error. */
        s->dev_len = ph.len < s->host_len ? (uint32_t)ph.len : s->host_len;
        s->phase_error = ph.len > s->host_len;
        s->state = host_in ? BOT_DATA_IN : BOT_DATA_OUT;
        wake_ready(s);
    }
    return CBW_LEN;
}

static int bot_data_in(struct usb_storage *s, const struct usb_packet *p)
{
    uint32_t left = s->host_len - s->host_done;
    size_t want = p->len < left ? p->len : left;
    size_t got = 0;
    if (s->dev_done < s->dev_len) {
        size_t n = s->dev_len - s->dev_done < want ? s->dev_len - s->dev_done : want;
        got = scsi_disk_data_in(s->disk, s->dev_done, p->iov, p->iovcnt, n);
        s->dev_done += (uint32_t)got;
        if (got < n)
            s->dev_len = s->dev_done; /* the command failed: pad from here */
    }
    /* Padding up to the host's length (BOT 6.7.2) keeps every transfer full: no short
     * packet or stall for the host to recover from. */
    if (want > got)
        pkt_copy(p, got, NULL, want - got, true);
    s->host_done += (uint32_t)want;
    if (s->host_done == s->host_len)
        end_data(s);
    return (int)want;
}

static int bot_data_out(struct usb_storage *s, const struct usb_packet *p)
{
    uint32_t left = s->host_len - s->host_done;
    size_t take = p->len < left ? p->len : left;
    if (s->dev_done < s->dev_len) {
        size_t n = s->dev_len - s->dev_done < take ? s->dev_len - s->dev_done : take;
        size_t got = scsi_disk_data_out(s->disk, s->dev_done, p->iov, p->iovcnt, n);
        s->dev_done += (uint32_t)got;
        if (got < n)
            s->dev_len = s->dev_done; /* the command failed: discard the rest */
    }
    s->host_done += (uint32_t)take;
    if (s->host_done == s->host_len)
        end_data(s);
    return (int)take;
}

static int bot_csw(struct usb_storage *s, const struct usb_packet *p)
{
    if (p->len < CSW_LEN)
        return USB_RET_ERROR; /* the CSW is one 13-byte packet: a smaller buffer babbles */
    uint8_t csw[CSW_LEN];
    put_le32(csw, CSW_SIGNATURE);
    put_le32(csw + 4, s->tag);
    put_le32(csw + 8, s->residue);
    csw[12] = s->csw_status;
    if (pkt_copy(p, 0, csw, CSW_LEN, true) != CSW_LEN)
        return USB_RET_ERROR;
    bot_idle(s);
    wake_ready(s);
    return CSW_LEN;
}

static int storage_transfer(void *ctx, const struct usb_packet *p)
{
    struct usb_storage *s = to_storage(ctx);
    if (!s->config || !p || (p->len && !p->iov) || p->len > INT32_MAX)
        return USB_RET_STALL;
    if (p->ep == USB_STORAGE_EP_IN) {
        if (s->halt_in)
            return USB_RET_STALL;
        switch (s->state) {
        case BOT_DATA_IN: return bot_data_in(s, p);
        case BOT_CSW: return bot_csw(s, p);
        case BOT_CBW:
        case BOT_DATA_OUT: break;
        }
        s->nak_in = true; /* nothing to send before the CBW, or while data comes in */
        return USB_RET_NAK;
    }
    if (p->ep == USB_STORAGE_EP_OUT) {
        if (s->halt_out)
            return USB_RET_STALL;
        switch (s->state) {
        case BOT_CBW: return bot_cbw(s, p);
        case BOT_DATA_OUT: return bot_data_out(s, p);
        case BOT_DATA_IN:
        case BOT_CSW: break;
        }
        s->nak_out = true; /* the next CBW waits until the CSW is read */
        return USB_RET_NAK;
    }
    return USB_RET_STALL;
}

/* ---- descriptors ---- */

static size_t device_qualifier(uint8_t *d)
{
    usb_desc_start(d, 10, USB_DT_DEVICE_QUALIFIER);
    usb_put_le16(d + 2, 0x0200); /* USB 2.0 */
    d[7] = 64;                   /* bMaxPacketSize0 */
    d[8] = 1;                    /* bNumConfigurations at the other speed */
    return 10;
}

/* The configuration, interface and two endpoints; other_speed: as the device would be at
 * full speed (the other-speed configuration a high-speed device reports). */
static size_t config_descriptor(uint8_t *d, bool other_speed)
{
    uint16_t mps = other_speed ? FULL_SPEED_BULK_PACKET : HIGH_SPEED_BULK_PACKET;
    /* Mass storage, SCSI transparent command set, bulk-only transport. */
    size_t n = usb_config_and_interface(d, other_speed ? USB_DT_OTHER_SPEED_CONFIG : USB_DT_CONFIG,
                                        CONFIG_TOTAL_LEN, 2, 0x08, 0x06, 0x50);
    n += usb_endpoint_descriptor(d + n, USB_STORAGE_EP_IN, 0x02, mps, 0);
    n += usb_endpoint_descriptor(d + n, USB_STORAGE_EP_OUT, 0x02, mps, 0);
    return n;
}

static size_t storage_descriptor(void *ctx, const struct usb_setup *st, uint8_t *buf)
{
    struct usb_storage *s = to_storage(ctx);
    unsigned type = st->value >> 8, idx = st->value & 0xff;
    if ((st->request_type & USB_RECIP_MASK) != USB_RECIP_DEVICE)
        return 0;
    const char *const strings[3] = { "vmkit", "vmkit USB disk", s->serial };
    switch (type) {
    case USB_DT_DEVICE: return usb_device_descriptor(buf, 64, USB_STORAGE_PRODUCT_ID, true);
    case USB_DT_DEVICE_QUALIFIER: return device_qualifier(buf);
    case USB_DT_CONFIG:
    case USB_DT_OTHER_SPEED_CONFIG:
        return idx == 0 ? config_descriptor(buf, type == USB_DT_OTHER_SPEED_CONFIG) : 0;
    case USB_DT_STRING: return usb_string_descriptor(strings, idx, buf);
    default: return 0;
    }
}

/* ---- requests on the default pipe ---- */

static bool *storage_halt(void *ctx, uint8_t ep)
{
    struct usb_storage *s = to_storage(ctx);
    switch (ep) {
    case USB_STORAGE_EP_IN: return &s->halt_in;
    case USB_STORAGE_EP_OUT: return &s->halt_out;
    default: return NULL;
    }
}

/* BOT 6.6.1: after an invalid CBW the stall outlives CLEAR_FEATURE(ENDPOINT_HALT),
 * SET_CONFIGURATION and SET_INTERFACE; only a Bulk-Only Mass Storage Reset ends it. */
static bool storage_may_clear_halt(void *ctx)
{
    return !to_storage(ctx)->need_reset;
}

static void clear_halts(struct usb_storage *s)
{
    if (!s->need_reset)
        s->halt_in = s->halt_out = false;
}

static void storage_configured(void *ctx, bool set_config)
{
    struct usb_storage *s = to_storage(ctx);
    if (set_config)
        s->need_reset = false;
    clear_halts(s);
    if (set_config)
        bot_idle(s);
}

static const struct usb_std_ops storage_std_ops = {
    .descriptor = storage_descriptor,
    .configured = storage_configured,
    .halt = storage_halt,
    .may_clear_halt = storage_may_clear_halt,
};

static int class_request(struct usb_storage *s, const struct usb_setup *st, uint8_t *data)
{
    if ((st->request_type & USB_RECIP_MASK) != USB_RECIP_INTERFACE || st->index != 0 ||
        st->value != 0)
        return USB_RET_STALL;
    bool in = st->request_type & USB_DIR_IN;
    switch (st->request) {
    case REQ_MASS_STORAGE_RESET:
        if (in || st->length)
            return USB_RET_STALL;
        /* BOT 3.1: ready for the next CBW; halts and toggles stay for the host to clear. */
        s->need_reset = false;
        bot_idle(s);
        wake_ready(s);
        return 0;
    case REQ_GET_MAX_LUN:
        if (!in)
            return USB_RET_STALL;
        return usb_reply(data, st->length, &(uint8_t){ 0 }, 1); /* LUN 0 alone */
    default: return USB_RET_STALL;
    }
}

static int storage_control(void *ctx, const struct usb_setup *st, uint8_t *data)
{
    struct usb_storage *s = to_storage(ctx);
    if (!st || (st->length && !data))
        return USB_RET_STALL;
    switch (st->request_type & USB_TYPE_MASK) {
    case USB_TYPE_STANDARD: return usb_standard_request(&storage_std_ops, s, &s->config, st, data);
    case USB_TYPE_CLASS: return class_request(s, st, data);
    default: return USB_RET_STALL;
    }
}

static void storage_reset(void *ctx)
{
    struct usb_storage *s = to_storage(ctx);
    bot_idle(s);
    s->config = 0;
    s->need_reset = false;
    s->halt_in = s->halt_out = false;
    s->nak_in = s->nak_out = false;
}

static void storage_destroy(void *ctx)
{
    struct usb_storage *s = to_storage(ctx);
    if (!s)
        return;
    scsi_disk_free(s->disk);
    free(s);
}

static const struct usb_device_ops storage_ops = {
    .control = storage_control,
    .transfer = storage_transfer,
    .reset = storage_reset,
    .destroy = storage_destroy,
};

static bool serial_ok(const char *serial)
{
    size_t n = strlen(serial);
    if (n < SERIAL_MIN || n > SCSI_DISK_SERIAL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = serial[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

vmk_result usb_storage_new(const struct block_backend *be, const char *serial,
                           struct usb_device **out, vmk_error **err)
{
    if (!out)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "USB mass storage: no place for it");
    *out = NULL;
    if (!serial)
        serial = DEFAULT_SERIAL;
    if (!serial_ok(serial))
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "USB mass storage: serial number \"%s\" is not %d to %d characters "
                        "of 0-9 and A-F",
                        serial, SERIAL_MIN, SCSI_DISK_SERIAL_MAX);
    struct usb_storage *s = calloc(1, sizeof(*s));
    if (!s)
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "USB mass storage: out of memory");
    int r = scsi_disk_new(be, serial, &s->disk);
    if (r < 0) {
        free(s);
        if (r == -ENOMEM)
            return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "USB mass storage: out of memory");
        if (!be)
            return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "USB mass storage: no backend");
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0,
                        "USB mass storage: backend of %llu bytes in blocks of %u is not "
                        "usable (it needs read, write, flush, blocks of 512 or 4096 bytes "
                        "and a size that is a non-zero multiple of them)",
                        (unsigned long long)be->size, be->block_size);
    }
    memcpy(s->serial, serial, strlen(serial) + 1); /* serial_ok bounded it */
    s->dev.ops = &storage_ops;
    s->dev.ctx = s;
    s->dev.speed = USB_SPEED_HIGH;
    s->dev.name = "USB mass storage";
    *out = &s->dev;
    return VMK_OK;
}
