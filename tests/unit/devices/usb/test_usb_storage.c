/* USB mass storage as a host controller and a host driver see it: descriptors and requests
 * on the default pipe, and whole Bulk-Only Transport exchanges (CBW, data, CSW) on the bulk
 * pipes, normal and hostile, over a disk in memory (tests/support/mem_backend.c). */
#include "devices/usb/usb_storage.h"
#include "mem_backend.h"
#include "usb_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DISK_SIZE (1u << 20)
#define EP_IN     0x81
#define EP_OUT    0x02

struct fixture {
    struct mem_backend m;
    struct usb_device *dev;
    struct usb_test_port port;
    uint32_t tag; /* of the last command() */
};

static int ctl(struct fixture *f, uint8_t rt, uint8_t req, uint16_t value, uint16_t index,
               uint16_t length, uint8_t *data)
{
    return usb_test_control(f->dev, rt, req, value, index, length, data);
}

static int make(void **state, bool ro, bool configure)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || mem_backend_init(&f->m, DISK_SIZE, 512, ro) != 0)
        return -1;
    if (usb_storage_new(&f->m.be, "0123456789ABCDEF", &f->dev, NULL) != VMK_OK)
        return -1;
    if (usb_test_plug(f->dev, &f->port, configure) != 0)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return make(state, false, true);
}

static int setup_ro(void **state)
{
    return make(state, true, true);
}

static int setup_bare(void **state)
{
    return make(state, false, false);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    assert_false(f->m.broken);
    f->dev->ops->destroy(f->dev->ctx);
    mem_backend_fini(&f->m);
    free(f);
    return 0;
}

static int bulk(struct fixture *f, uint8_t ep, void *buf, size_t len)
{
    return usb_test_transfer(f->dev, ep, buf, len);
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

static void put_be32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void make_cbw(uint8_t *cbw, uint32_t tag, uint32_t len, bool in, const uint8_t *cdb,
                     uint8_t cdb_len)
{
    memset(cbw, 0, 31);
    put_le32(cbw, 0x43425355);
    put_le32(cbw + 4, tag);
    put_le32(cbw + 8, len);
    cbw[12] = in ? 0x80 : 0x00;
    cbw[14] = cdb_len;
    memcpy(cbw + 15, cdb, cdb_len < 16 ? cdb_len : 16);
}

static int send_cbw(struct fixture *f, uint32_t tag, uint32_t len, bool in, const uint8_t *cdb,
                    uint8_t cdb_len)
{
    uint8_t cbw[31];
    make_cbw(cbw, tag, len, in, cdb, cdb_len);
    return bulk(f, EP_OUT, cbw, 31);
}

/* Reads the CSW; checks signature and tag; returns the status and *residue. */
static uint8_t read_csw(struct fixture *f, uint32_t tag, uint32_t *residue)
{
    uint8_t csw[13];
    assert_int_equal(bulk(f, EP_IN, csw, 13), 13);
    assert_int_equal(get_le32(csw), 0x53425355);
    assert_int_equal(get_le32(csw + 4), tag);
    if (residue)
        *residue = get_le32(csw + 8);
    return csw[12];
}

/* A whole command: CBW, the data phase in transfers of at most chunk bytes, the CSW.
 * Returns the CSW status and *residue. */
static uint8_t command(struct fixture *f, const uint8_t *cdb, uint8_t cdb_len, bool in,
                       uint8_t *data, uint32_t len, size_t chunk, uint32_t *residue)
{
    uint32_t tag = ++f->tag;
    assert_int_equal(send_cbw(f, tag, len, in, cdb, cdb_len), 31);
    for (uint32_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : chunk;
        assert_int_equal(bulk(f, in ? EP_IN : EP_OUT, data + off, n), (int)n);
        off += (uint32_t)n;
    }
    return read_csw(f, tag, residue);
}

static void expect_sense(struct fixture *f, uint8_t key, uint8_t asc, uint8_t ascq)
{
    uint8_t cdb[6] = { 0x03, 0, 0, 0, 18, 0 };
    uint8_t s[18];
    uint32_t residue;
    assert_int_equal(command(f, cdb, 6, true, s, 18, 512, &residue), 0);
    assert_int_equal(residue, 0);
    assert_int_equal(s[2] & 0x0f, key);
    assert_int_equal(s[12], asc);
    assert_int_equal(s[13], ascq);
}

static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 13 + seed + i / 251);
}

static void rw10(uint8_t *cdb, bool write, uint32_t lba, uint16_t n)
{
    memset(cdb, 0, 10);
    cdb[0] = write ? 0x2a : 0x28;
    put_be32(cdb + 2, lba);
    cdb[7] = (uint8_t)(n >> 8);
    cdb[8] = (uint8_t)n;
}

/* ---- construction ---- */

static void test_new(void **state)
{
    struct mem_backend m;
    struct usb_device *dev = (struct usb_device *)1;
    vmk_error *err = NULL;
    assert_int_equal(mem_backend_init(&m, 4096, 512, false), 0);
    assert_int_equal(usb_storage_new(&m.be, "0123456789ab", &dev, &err), VMK_ERR_INVALID_ARGUMENT);
    assert_null(dev);
    assert_non_null(strstr(vmk_error_message(err), "serial"));
    vmk_error_free(err);
    err = NULL;
    assert_int_equal(usb_storage_new(&m.be, "01234567890", &dev, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(usb_storage_new(NULL, NULL, &dev, &err), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(err);
    err = NULL;
    m.be.block_size = 2048;
    assert_int_equal(usb_storage_new(&m.be, NULL, &dev, &err), VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vmk_error_message(err), "2048"));
    vmk_error_free(err);
    m.be.block_size = 512;

    /* No serial: the default, 12 hex digits. */
    assert_int_equal(usb_storage_new(&m.be, NULL, &dev, NULL), VMK_OK);
    assert_int_equal(dev->speed, USB_SPEED_HIGH);
    assert_string_equal(dev->name, "USB mass storage");
    struct usb_setup s = { .request_type = 0x80,
                           .request = USB_REQ_GET_DESCRIPTOR,
                           .value = USB_DT_STRING << 8 | 3,
                           .length = 255 };
    uint8_t d[255];
    assert_int_equal(dev->ops->control(dev->ctx, &s, d), 2 + 24);
    assert_int_equal(d[2], '0');
    assert_int_equal(d[24], '1');
    dev->ops->destroy(dev->ctx);
    mem_backend_fini(&m);
}

/* ---- the default pipe ---- */

static void test_descriptors(void **state)
{
    struct fixture *f = *state;
    uint8_t d[255];
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_DEVICE << 8, 0, 255, d), 18);
    assert_int_equal(d[0], 18);
    assert_int_equal(d[1], USB_DT_DEVICE);
    assert_int_equal(d[2] | d[3] << 8, 0x0200);
    assert_int_equal(d[4], 0); /* the class is the interface's */
    assert_int_equal(d[7], 64);
    assert_int_equal(d[8] | d[9] << 8, USB_STORAGE_VENDOR_ID);
    assert_int_equal(d[10] | d[11] << 8, USB_STORAGE_PRODUCT_ID);
    assert_int_equal(d[14], 1);
    assert_int_equal(d[15], 2);
    assert_int_equal(d[16], 3);
    assert_int_equal(d[17], 1);
    /* The first 8 bytes, as a host asks first. */
    memset(d, 0, sizeof(d));
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_DEVICE << 8, 0, 8, d), 8);
    assert_int_equal(d[7], 64);

    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_CONFIG << 8, 0, 9, d), 9);
    assert_int_equal(d[2] | d[3] << 8, 32);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_CONFIG << 8, 0, 255, d), 32);
    assert_int_equal(d[1], USB_DT_CONFIG);
    assert_int_equal(d[4], 1);
    assert_int_equal(d[5], 1);
    const uint8_t *i = d + 9;
    assert_int_equal(i[1], USB_DT_INTERFACE);
    assert_int_equal(i[4], 2);
    assert_int_equal(i[5], 0x08);
    assert_int_equal(i[6], 0x06);
    assert_int_equal(i[7], 0x50);
    const uint8_t *e = i + 9;
    assert_int_equal(e[1], USB_DT_ENDPOINT);
    assert_int_equal(e[2], EP_IN);
    assert_int_equal(e[3], 0x02);
    assert_int_equal(e[4] | e[5] << 8, 512);
    e += 7;
    assert_int_equal(e[2], EP_OUT);
    assert_int_equal(e[3], 0x02);
    assert_int_equal(e[4] | e[5] << 8, 512);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_CONFIG << 8 | 1, 0, 255, d),
                     USB_RET_STALL);

    /* The other speed: full speed, 64-byte bulk packets. */
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, 6 << 8, 0, 255, d), 10);
    assert_int_equal(d[1], 6);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, 7 << 8, 0, 255, d), 32);
    assert_int_equal(d[1], 7);
    assert_int_equal(d[9 + 9 + 4], 64);

    /* Strings. */
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8, 0, 255, d), 4);
    assert_int_equal(d[2] | d[3] << 8, 0x0409);
    int n = ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8 | 3, 0x0409, 255, d);
    assert_int_equal(n, 2 + 2 * 16);
    assert_int_equal(d[0], n);
    assert_int_equal(d[1], USB_DT_STRING);
    for (unsigned k = 0; k < 16; k++) {
        assert_int_equal(d[2 + 2 * k], "0123456789ABCDEF"[k]);
        assert_int_equal(d[3 + 2 * k], 0);
    }
    assert_true(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8 | 1, 0x0409, 255, d) > 2);
    assert_true(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8 | 2, 0x0409, 255, d) > 2);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8 | 4, 0x0409, 255, d),
                     USB_RET_STALL);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_STRING << 8 | 0xee, 0, 255, d),
                     USB_RET_STALL);
    /* No BOS (USB 2.0), no such type. */
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, USB_DT_BOS << 8, 0, 255, d),
                     USB_RET_STALL);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_DESCRIPTOR, 0x22 << 8, 0, 255, d), USB_RET_STALL);
}

static void test_standard_requests(void **state)
{
    struct fixture *f = *state;
    uint8_t d[8];
    uint8_t buf[512];
    /* Unconfigured: the bulk endpoints do not answer. */
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_CONFIG, 0, 0, 1, d), 1);
    assert_int_equal(d[0], 0);
    assert_int_equal(bulk(f, EP_OUT, buf, 31), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_INTERFACE, 0, 0, 1, d), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_CONFIG, 2, 0, 0, NULL), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_CONFIG, 0, 0, 1, d), 1);
    assert_int_equal(d[0], 1);

    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_INTERFACE, 0, 0, 1, d), 1);
    assert_int_equal(d[0], 0);
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_INTERFACE, 0, 1, 1, d), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x01, USB_REQ_SET_INTERFACE, 0, 0, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x01, USB_REQ_SET_INTERFACE, 1, 0, 0, NULL), USB_RET_STALL);

    memset(d, 0xff, sizeof(d));
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_STATUS, 0, 0, 2, d), 2);
    assert_int_equal(d[0] | d[1] << 8, 0);
    assert_int_equal(ctl(f, 0x81, USB_REQ_GET_STATUS, 0, 0, 2, d), 2);
    assert_int_equal(ctl(f, 0x82, USB_REQ_GET_STATUS, 0, EP_IN, 2, d), 2);
    assert_int_equal(d[0], 0);
    assert_int_equal(ctl(f, 0x82, USB_REQ_GET_STATUS, 0, 0x83, 2, d), USB_RET_STALL);

    /* SET_FEATURE(ENDPOINT_HALT) halts; CLEAR_FEATURE clears. */
    assert_int_equal(ctl(f, 0x02, USB_REQ_SET_FEATURE, 0, EP_OUT, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x82, USB_REQ_GET_STATUS, 0, EP_OUT, 2, d), 2);
    assert_int_equal(d[0], 1);
    assert_int_equal(bulk(f, EP_OUT, buf, 31), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_OUT, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x82, USB_REQ_GET_STATUS, 0, EP_OUT, 2, d), 2);
    assert_int_equal(d[0], 0);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, 0x85, 0, NULL), USB_RET_STALL);
    /* No remote wakeup to clear or set, no SET_ADDRESS here, no vendor requests. */
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_FEATURE, 1, 0, 0, NULL), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_ADDRESS, 5, 0, 0, NULL), USB_RET_STALL);
    assert_int_equal(ctl(f, 0xc0, 0x01, 0, 0, 8, d), USB_RET_STALL);

    /* Class requests: Get Max LUN says 0. */
    d[0] = 0xff;
    assert_int_equal(ctl(f, 0xa1, 0xfe, 0, 0, 1, d), 1);
    assert_int_equal(d[0], 0);
    assert_int_equal(ctl(f, 0xa1, 0xfe, 0, 1, 1, d), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x21, 0xff, 0, 0, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x21, 0xff, 1, 0, 0, NULL), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x21, 0x42, 0, 0, 0, NULL), USB_RET_STALL);

    /* Unknown endpoints. */
    assert_int_equal(bulk(f, 0x82, buf, 13), USB_RET_STALL);
    assert_int_equal(bulk(f, 0x01, buf, 31), USB_RET_STALL);

    /* A port reset unconfigures. */
    f->dev->ops->reset(f->dev->ctx);
    assert_int_equal(ctl(f, 0x80, USB_REQ_GET_CONFIG, 0, 0, 1, d), 1);
    assert_int_equal(d[0], 0);
    assert_int_equal(bulk(f, EP_OUT, buf, 31), USB_RET_STALL);
}

/* ---- Bulk-Only Transport ---- */

static void test_inquiry_flow(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb[6] = { 0x12, 0, 0, 0, 36, 0 };
    uint8_t r[36];
    uint32_t residue = 99;
    assert_int_equal(command(f, cdb, 6, true, r, 36, 512, &residue), 0);
    assert_int_equal(residue, 0);
    assert_int_equal(r[0], 0);
    assert_memory_equal(r + 8, "VMKIT   ", 8);

    /* TEST UNIT READY: no data phase. */
    uint8_t tur[6] = { 0 };
    assert_int_equal(command(f, tur, 6, false, NULL, 0, 512, &residue), 0);
    assert_int_equal(residue, 0);

    /* READ CAPACITY(10). */
    uint8_t rc[10] = { 0x25 };
    uint8_t cap[8];
    assert_int_equal(command(f, rc, 10, true, cap, 8, 512, &residue), 0);
    assert_int_equal(cap[0] << 24 | cap[1] << 16 | cap[2] << 8 | cap[3], DISK_SIZE / 512 - 1);
    assert_int_equal(cap[4] << 24 | cap[5] << 16 | cap[6] << 8 | cap[7], 512);
}

static void test_write_read_flow(void **state)
{
    struct fixture *f = *state;
    const uint32_t len = 64 * 512;
    uint8_t *w = malloc(len), *r = calloc(1, len);
    pattern(w, len, 5);
    uint8_t cdb[10];
    uint32_t residue;
    rw10(cdb, true, 17, 64);
    /* Transfers of 4 KiB, as a host with page-sized TDs sends them. */
    assert_int_equal(command(f, cdb, 10, false, w, len, 4096, &residue), 0);
    assert_int_equal(residue, 0);
    assert_memory_equal(f->m.data + 17 * 512, w, len);
    /* Read back in one transfer split over several iovecs of odd sizes. */
    rw10(cdb, false, 17, 64);
    assert_int_equal(send_cbw(f, 7, len, true, cdb, 10), 31);
    struct iovec v[3] = {
        { .iov_base = r, .iov_len = 1000 },
        { .iov_base = r + 1000, .iov_len = 24 },
        { .iov_base = r + 1024, .iov_len = len - 1024 },
    };
    struct usb_packet p = { .ep = EP_IN, .iov = v, .iovcnt = 3, .len = len };
    assert_int_equal(f->dev->ops->transfer(f->dev->ctx, &p), (int)len);
    assert_int_equal(read_csw(f, 7, &residue), 0);
    assert_int_equal(residue, 0);
    assert_memory_equal(r, w, len);
    /* And in transfers of 1000 bytes (not a packet multiple: the host's business). */
    memset(r, 0, len);
    assert_int_equal(command(f, cdb, 10, true, r, len, 1000, &residue), 0);
    assert_memory_equal(r, w, len);
    free(w);
    free(r);
}

static void test_read_only_flow(void **state)
{
    struct fixture *f = *state;
    uint8_t w[1024];
    memset(w, 0x5a, sizeof(w));
    uint8_t cdb[10];
    uint32_t residue;
    rw10(cdb, true, 0, 2);
    /* The host's data is taken and dropped; the CSW says failed with all of it left. */
    assert_int_equal(command(f, cdb, 10, false, w, 1024, 512, &residue), 1);
    assert_int_equal(residue, 1024);
    expect_sense(f, 0x07, 0x27, 0x00);
    assert_int_equal(f->m.writes, 0);
    for (unsigned i = 0; i < 1024; i++)
        assert_int_equal(f->m.data[i], 0);

    /* MODE SENSE(6) shows write protect. */
    uint8_t ms[6] = { 0x1a, 0, 0x3f, 0, 192, 0 };
    uint8_t r[192];
    assert_int_equal(command(f, ms, 6, true, r, 192, 512, &residue), 0);
    assert_int_equal(r[2] & 0x80, 0x80);
    assert_int_equal(residue, 192 - (r[0] + 1));
}

static void test_mode_sense_writable(void **state)
{
    struct fixture *f = *state;
    uint8_t ms[10] = { 0x5a, 0, 0x3f, 0, 0, 0, 0, 0, 255, 0 };
    uint8_t r[255];
    uint32_t residue;
    assert_int_equal(command(f, ms, 10, true, r, 255, 512, &residue), 0);
    assert_int_equal(r[3] & 0x80, 0);
    assert_int_equal(residue, 255 - ((r[0] << 8 | r[1]) + 2));
}

static void test_out_of_range_flow(void **state)
{
    struct fixture *f = *state;
    uint8_t r[1024];
    memset(r, 0xee, sizeof(r));
    uint8_t cdb[10];
    uint32_t residue;
    rw10(cdb, false, DISK_SIZE / 512 - 1, 2);
    /* The host gets its 1024 bytes (zeroes), the CSW says failed, nothing moved. */
    assert_int_equal(command(f, cdb, 10, true, r, 1024, 512, &residue), 1);
    assert_int_equal(residue, 1024);
    for (unsigned i = 0; i < sizeof(r); i++)
        assert_int_equal(r[i], 0);
    expect_sense(f, 0x05, 0x21, 0x00);
}

static void test_unknown_opcode_flow(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb[12] = { 0xa1 }; /* ATA PASS-THROUGH(12), as some hosts probe */
    uint8_t r[512];
    uint32_t residue;
    assert_int_equal(command(f, cdb, 12, true, r, 512, 512, &residue), 1);
    assert_int_equal(residue, 512);
    expect_sense(f, 0x05, 0x20, 0x00);
    uint8_t none[6] = { 0xc7 };
    assert_int_equal(command(f, none, 6, false, NULL, 0, 512, &residue), 1);
    expect_sense(f, 0x05, 0x20, 0x00);
}

static void test_backend_error_flow(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[2048];
    uint8_t cdb[10];
    uint32_t residue;
    f->m.fail_read = true;
    rw10(cdb, false, 0, 4);
    assert_int_equal(command(f, cdb, 10, true, buf, 2048, 512, &residue), 1);
    assert_int_equal(residue, 2048);
    f->m.fail_read = false;
    expect_sense(f, 0x03, 0x11, 0x00);
    f->m.fail_write = true;
    rw10(cdb, true, 0, 4);
    assert_int_equal(command(f, cdb, 10, false, buf, 2048, 1024, &residue), 1);
    assert_int_equal(residue, 2048);
    f->m.fail_write = false;
    expect_sense(f, 0x03, 0x0c, 0x00);
}

static void test_sync_cache_flow(void **state)
{
    struct fixture *f = *state;
    uint8_t s10[10] = { 0x35 };
    uint32_t residue;
    assert_int_equal(command(f, s10, 10, false, NULL, 0, 512, &residue), 0);
    assert_int_equal(f->m.flushes, 1);
    uint8_t s16[16] = { 0x91 };
    assert_int_equal(command(f, s16, 16, false, NULL, 0, 512, &residue), 0);
    assert_int_equal(f->m.flushes, 2);
    f->m.fail_flush = true;
    assert_int_equal(command(f, s10, 10, false, NULL, 0, 512, &residue), 1);
    f->m.fail_flush = false;
    expect_sense(f, 0x03, 0x0c, 0x00);
}

/* Host expects more than the command has (case 5): padding and residue. */
static void test_residue(void **state)
{
    struct fixture *f = *state;
    uint8_t cdb[6] = { 0x12, 0, 0, 0, 36, 0 };
    uint8_t r[100];
    memset(r, 0xee, sizeof(r));
    uint32_t residue;
    assert_int_equal(command(f, cdb, 6, true, r, 100, 512, &residue), 0);
    assert_int_equal(residue, 64);
    assert_memory_equal(r + 8, "VMKIT   ", 8);
    for (unsigned i = 36; i < 100; i++)
        assert_int_equal(r[i], 0);
    /* The host sends more than a WRITE needs (case 11): the rest is dropped. */
    uint8_t w[2048];
    pattern(w, sizeof(w), 1);
    uint8_t wr[10];
    rw10(wr, true, 4, 1);
    assert_int_equal(command(f, wr, 10, false, w, 2048, 512, &residue), 0);
    assert_int_equal(residue, 2048 - 512);
    assert_memory_equal(f->m.data + 4 * 512, w, 512);
    assert_int_equal(f->m.data[5 * 512], 0);
}

/* dCBWDataTransferLength of 4 GiB - 1 for a one-block READ: the block, then padding to the
 * host's length, and a residue that fills 32 bits. Each transfer points 1024 iovecs at one
 * 1 MiB buffer, so a gigabyte moves without a gigabyte of memory. */
static void test_huge_host_length(void **state)
{
    struct fixture *f = *state;
    pattern(f->m.data, 512, 3);
    enum { BUF = 1 << 20, NIOV = 1024 };
    uint8_t *buf = malloc(BUF);
    struct iovec *v = malloc(NIOV * sizeof(*v));
    uint8_t cdb[10];
    rw10(cdb, false, 0, 1);
    assert_int_equal(send_cbw(f, 42, 0xffffffffu, true, cdb, 10), 31);
    /* The first transfer: one block. */
    assert_int_equal(bulk(f, EP_IN, buf, 512), 512);
    assert_memory_equal(buf, f->m.data, 512);
    uint64_t left = 0xffffffffull - 512;
    while (left) {
        size_t want = (size_t)(left < (uint64_t)BUF * NIOV ? left : (uint64_t)BUF * NIOV);
        unsigned cnt = 0;
        for (size_t sum = 0; sum < want; cnt++) {
            size_t k = want - sum < BUF ? want - sum : BUF;
            v[cnt] = (struct iovec){ .iov_base = buf, .iov_len = k };
            sum += k;
        }
        buf[0] = 0xee;
        struct usb_packet p = { .ep = EP_IN, .iov = v, .iovcnt = cnt, .len = want };
        assert_int_equal(f->dev->ops->transfer(f->dev->ctx, &p), (int)want);
        assert_int_equal(buf[0], 0);
        left -= want;
    }
    uint32_t residue;
    assert_int_equal(read_csw(f, 42, &residue), 0);
    assert_int_equal(residue, 0xffffffffu - 512);
    free(v);
    free(buf);
}

/* Cases 8 and 10: the host's direction is not the command's. */
static void test_direction_mismatch(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[512] = { 0 };
    uint8_t d[2];
    uint8_t cdb[10];
    uint32_t residue;
    /* READ with the host sending: the OUT pipe stalls, then the CSW says phase error. */
    rw10(cdb, false, 0, 1);
    assert_int_equal(send_cbw(f, 1, 512, false, cdb, 10), 31);
    assert_int_equal(bulk(f, EP_OUT, buf, 512), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x82, USB_REQ_GET_STATUS, 0, EP_OUT, 2, d), 2);
    assert_int_equal(d[0], 1);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_OUT, 0, NULL), 0);
    assert_int_equal(read_csw(f, 1, &residue), 2);
    /* WRITE with the host reading: the IN pipe stalls; cleared, the CSW follows. */
    rw10(cdb, true, 0, 1);
    memset(buf, 0x77, sizeof(buf));
    assert_int_equal(send_cbw(f, 2, 512, true, cdb, 10), 31);
    assert_int_equal(bulk(f, EP_IN, buf, 512), USB_RET_STALL);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_IN, 0, NULL), 0);
    assert_int_equal(read_csw(f, 2, &residue), 2);
    assert_int_equal(f->m.writes, 0);
    /* The device works on. */
    uint8_t tur[6] = { 0 };
    assert_int_equal(command(f, tur, 6, false, NULL, 0, 512, &residue), 0);
}

/* Cases 2, 3, 7 and 13: the host allows less than the command moves. */
static void test_host_allows_less(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[1024];
    uint8_t cdb[10];
    uint32_t residue;
    rw10(cdb, false, 0, 2);
    assert_int_equal(command(f, cdb, 10, true, NULL, 0, 512, &residue), 2);
    assert_int_equal(f->m.reads, 0);
    rw10(cdb, true, 0, 2);
    assert_int_equal(command(f, cdb, 10, false, NULL, 0, 512, &residue), 2);
    assert_int_equal(f->m.writes, 0);
    /* A two-block READ with room for one: one block, then phase error. */
    pattern(f->m.data, 1024, 8);
    rw10(cdb, false, 0, 2);
    assert_int_equal(command(f, cdb, 10, true, buf, 512, 512, &residue), 2);
    assert_memory_equal(buf, f->m.data, 512);
    /* A two-block WRITE with one block of data: that block lands, then phase error. */
    pattern(buf, 512, 99);
    rw10(cdb, true, 10, 2);
    assert_int_equal(command(f, cdb, 10, false, buf, 512, 512, &residue), 2);
    assert_memory_equal(f->m.data + 10 * 512, buf, 512);
}

/* Invalid or not meaningful CBWs: both bulk pipes stall until a Bulk-Only Mass Storage
 * Reset, then the host clears the halts (Reset Recovery) and all is well. */
static void hostile_cbw(struct fixture *f, const uint8_t *cbw, size_t len)
{
    uint8_t buf[64], d[2];
    memcpy(buf, cbw, len);
    assert_int_equal(bulk(f, EP_OUT, buf, len), USB_RET_STALL);
    assert_int_equal(bulk(f, EP_IN, buf, 13), USB_RET_STALL);
    assert_int_equal(bulk(f, EP_OUT, buf, 31), USB_RET_STALL);
    /* Clearing the halts alone is not enough. */
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_IN, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_OUT, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x82, USB_REQ_GET_STATUS, 0, EP_IN, 2, d), 2);
    assert_int_equal(d[0], 1);
    assert_int_equal(bulk(f, EP_IN, buf, 13), USB_RET_STALL);
    uint8_t tur[6] = { 0 };
    assert_int_equal(send_cbw(f, 9, 0, false, tur, 6), USB_RET_STALL);
    /* Reset Recovery. */
    assert_int_equal(ctl(f, 0x21, 0xff, 0, 0, 0, NULL), 0);
    assert_int_equal(bulk(f, EP_IN, buf, 13), USB_RET_STALL); /* halts outlive the reset */
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_IN, 0, NULL), 0);
    assert_int_equal(ctl(f, 0x02, USB_REQ_CLEAR_FEATURE, 0, EP_OUT, 0, NULL), 0);
    uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 };
    uint8_t r[36];
    uint32_t residue;
    assert_int_equal(command(f, inq, 6, true, r, 36, 512, &residue), 0);
    assert_memory_equal(r + 8, "VMKIT   ", 8);
}

static void test_hostile_cbws(void **state)
{
    struct fixture *f = *state;
    uint8_t tur[6] = { 0 };
    uint8_t cbw[40] = { 0 };
    make_cbw(cbw, 1, 0, false, tur, 6);
    cbw[3] = 0x44; /* signature */
    hostile_cbw(f, cbw, 31);
    make_cbw(cbw, 1, 0, false, tur, 6);
    hostile_cbw(f, cbw, 30);
    hostile_cbw(f, cbw, 32);
    hostile_cbw(f, cbw, 0);
    cbw[13] = 5; /* LUN */
    hostile_cbw(f, cbw, 31);
    cbw[13] = 0;
    cbw[14] = 0; /* CB length */
    hostile_cbw(f, cbw, 31);
    cbw[14] = 17;
    hostile_cbw(f, cbw, 31);
    cbw[14] = 0x86; /* reserved bits */
    hostile_cbw(f, cbw, 31);
    /* A CBW where a CSW is due is not valid either, but the pipe is not ready for it: NAK. */
    uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 };
    assert_int_equal(send_cbw(f, 3, 0, false, tur, 6), 31);
    make_cbw(cbw, 4, 36, true, inq, 6);
    assert_int_equal(bulk(f, EP_OUT, cbw, 31), USB_RET_NAK);
    assert_int_equal(read_csw(f, 3, NULL), 0);
}

/* A NAKed endpoint is woken when it has something. */
static void test_nak_and_wakeup(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[64];
    uint8_t inq[6] = { 0x12, 0, 0, 0, 36, 0 };
    assert_int_equal(bulk(f, EP_IN, buf, 36), USB_RET_NAK);
    assert_int_equal(f->port.wakeups, 0);
    assert_int_equal(send_cbw(f, 5, 36, true, inq, 6), 31);
    assert_int_equal(f->port.wakeups, 1);
    assert_int_equal(f->port.last_wakeup, EP_IN);
    assert_int_equal(bulk(f, EP_OUT, buf, 31), USB_RET_NAK);
    assert_int_equal(bulk(f, EP_IN, buf, 36), 36);
    assert_int_equal(f->port.wakeups, 1);
    /* A CSW buffer shorter than 13 bytes is an error, and the CSW stays. */
    assert_int_equal(bulk(f, EP_IN, buf, 12), USB_RET_ERROR);
    /* A larger one takes the 13 bytes (a short packet). */
    assert_int_equal(bulk(f, EP_IN, buf, 64), 13);
    assert_int_equal(get_le32(buf + 4), 5);
    assert_int_equal(f->port.wakeups, 2);
    assert_int_equal(f->port.last_wakeup, EP_OUT);
    /* Data on IN while the host is to send waits too. */
    uint8_t wr[10];
    rw10(wr, true, 0, 1);
    assert_int_equal(send_cbw(f, 6, 512, false, wr, 10), 31);
    assert_int_equal(bulk(f, EP_IN, buf, 13), USB_RET_NAK);
    uint8_t w[512] = { 1 };
    assert_int_equal(bulk(f, EP_OUT, w, 512), 512);
    assert_int_equal(f->port.wakeups, 3);
    assert_int_equal(f->port.last_wakeup, EP_IN);
    assert_int_equal(read_csw(f, 6, NULL), 0);
}

/* Bulk-Only Mass Storage Reset in the middle of a data phase drops the command. */
static void test_reset_mid_command(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[512];
    uint8_t cdb[10];
    rw10(cdb, false, 0, 8);
    assert_int_equal(send_cbw(f, 8, 8 * 512, true, cdb, 10), 31);
    assert_int_equal(bulk(f, EP_IN, buf, 512), 512);
    assert_int_equal(ctl(f, 0x21, 0xff, 0, 0, 0, NULL), 0);
    assert_int_equal(bulk(f, EP_IN, buf, 13), USB_RET_NAK);
    uint8_t tur[6] = { 0 };
    uint32_t residue;
    assert_int_equal(command(f, tur, 6, false, NULL, 0, 512, &residue), 0);
    /* So does SET_CONFIGURATION, and a port reset. */
    assert_int_equal(send_cbw(f, 9, 8 * 512, true, cdb, 10), 31);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL), 0);
    assert_int_equal(command(f, tur, 6, false, NULL, 0, 512, &residue), 0);
    assert_int_equal(send_cbw(f, 10, 8 * 512, true, cdb, 10), 31);
    f->dev->ops->reset(f->dev->ctx);
    assert_int_equal(ctl(f, 0x00, USB_REQ_SET_CONFIG, 1, 0, 0, NULL), 0);
    assert_int_equal(command(f, tur, 6, false, NULL, 0, 512, &residue), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new),
        cmocka_unit_test_setup_teardown(test_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standard_requests, setup_bare, teardown),
        cmocka_unit_test_setup_teardown(test_inquiry_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_read_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_flow, setup_ro, teardown),
        cmocka_unit_test_setup_teardown(test_mode_sense_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_opcode_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_error_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_cache_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_residue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_host_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direction_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_allows_less, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_cbws, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nak_and_wakeup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_command, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
