/* virtio-console against a fake driver: the multiport handshake a Linux driver
 * performs, named ports, the console port, data both ways, back-pressure, and a
 * driver that breaks the rings. */
#include "virtio/console.h"
#include "virtio_test_driver.h"

#include <endian.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MULTIPORT (1ull << 1)
#define ALL       (~0ull)

/* A host side that takes guest output while it has room (room: bytes it still takes). */
struct host_side {
    char out[4096];
    size_t out_len;
    size_t room;
    unsigned rx_space_calls;
};

static size_t host_write(void *ctx, const uint8_t *buf, size_t len)
{
    struct host_side *h = ctx;
    size_t n = len < h->room ? len : h->room;
    if (h->out_len + n > sizeof(h->out))
        n = sizeof(h->out) - h->out_len;
    memcpy(h->out + h->out_len, buf, n);
    h->out_len += n;
    h->room -= n;
    return n;
}

static void host_rx_space(void *ctx)
{
    struct host_side *h = ctx;
    h->rx_space_calls++;
}

struct fixture {
    struct test_driver t;
    struct virtio_device *dev;
    struct host_side host[3];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct virtio_console_port_config ports[3] = {
        { .name = "console0", .is_console = true },
        { .name = "org.vmkit.agent" },
        { .name = NULL },
    };
    for (int i = 0; i < 3; i++) {
        f->host[i].room = SIZE_MAX;
        ports[i].write = host_write;
        ports[i].rx_space = host_rx_space;
        ports[i].ctx = &f->host[i];
    }
    f->dev = virtio_console_new(ports, 3);
    if (!f->dev)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    free(f);
    return 0;
}

/* Control message helpers: the 8-byte header, id/event/value little-endian. */
static void send_ctrl(struct test_driver *t, uint32_t id, uint16_t event, uint16_t value)
{
    uint64_t gpa = td_alloc(t, 8);
    uint8_t *p = td_ptr(t, gpa, 8);
    uint32_t lid = htole32(id);
    uint16_t le = htole16(event), lv = htole16(value);
    memcpy(p, &lid, 4);
    memcpy(p + 4, &le, 2);
    memcpy(p + 6, &lv, 2);
    struct td_buf b = { .gpa = gpa, .len = 8 };
    td_add(t, 3, &b, 1);
    td_kick(t, 3);
}

struct ctrl {
    uint32_t id;
    uint16_t event, value;
    char name[64];
};

static uint64_t ctrl_bufs[64];

static void post_ctrl_buffers(struct test_driver *t, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        ctrl_bufs[i] = td_alloc(t, 128);
        struct td_buf b = { .gpa = ctrl_bufs[i], .len = 128, .writable = true };
        uint16_t head = td_add(t, 2, &b, 1);
        ctrl_bufs[i] = ctrl_bufs[i] | ((uint64_t)head << 48);
    }
    td_kick(t, 2);
}

/* Reads the control messages the device has sent so far. */
static unsigned read_ctrl(struct test_driver *t, struct ctrl *out, unsigned max)
{
    unsigned n = 0;
    uint32_t id, len;
    while (n < max && td_used(t, 2, &id, &len)) {
        uint64_t gpa = 0;
        for (unsigned i = 0; i < 64; i++)
            if ((ctrl_bufs[i] >> 48) == id) {
                gpa = ctrl_bufs[i] & 0xffffffffffffull;
                break;
            }
        assert_true(len >= 8);
        const uint8_t *p = td_ptr(t, gpa, len);
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(&out[n].id, p, 4);
        memcpy(&out[n].event, p + 4, 2);
        memcpy(&out[n].value, p + 6, 2);
        out[n].id = le32toh(out[n].id);
        out[n].event = le16toh(out[n].event);
        out[n].value = le16toh(out[n].value);
        memcpy(out[n].name, p + 8, len - 8 < 63 ? len - 8 : 63);
        n++;
    }
    return n;
}

static bool has_msg(const struct ctrl *m, unsigned n, uint32_t id, uint16_t event, uint16_t value)
{
    for (unsigned i = 0; i < n; i++)
        if (m[i].id == id && m[i].event == event && m[i].value == value)
            return true;
    return false;
}

/* What Linux's virtio_console does after DRIVER_OK. */
static void handshake(struct fixture *f)
{
    struct test_driver *t = &f->t;
    assert_int_equal(td_init(t, f->dev, ALL), 0);
    post_ctrl_buffers(t, 32);
    send_ctrl(t, 0, 0 /* DEVICE_READY */, 1);
    struct ctrl m[32];
    unsigned n = read_ctrl(t, m, 32);
    assert_int_equal(n, 3);
    for (uint32_t i = 0; i < 3; i++)
        assert_true(has_msg(m, n, i, 1 /* DEVICE_ADD */, 0));
    for (uint32_t i = 0; i < 3; i++)
        send_ctrl(t, i, 3 /* PORT_READY */, 1);
}

static void test_config_space(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->dev->device_id, VIRTIO_ID_CONSOLE);
    assert_int_equal(f->dev->num_queues, 8);
    assert_true(f->dev->device_features & MULTIPORT);
    uint32_t max_ports = 0;
    f->dev->ops->config_read(f->dev, 4, &max_ports, 4);
    assert_int_equal(le32toh(max_ports), 3);
    uint8_t beyond[4] = { 1, 1, 1, 1 };
    f->dev->ops->config_read(f->dev, 12, beyond, 4);
    assert_int_equal(beyond[0] | beyond[3], 0);
    assert_int_equal(td_init(&f->t, f->dev, ALL), 0);
}

static void test_multiport_handshake(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct ctrl m[32];
    unsigned n = read_ctrl(&f->t, m, 32);
    assert_true(has_msg(m, n, 0, 4 /* CONSOLE_PORT */, 1));
    assert_true(has_msg(m, n, 0, 6 /* PORT_OPEN */, 1));
    assert_true(has_msg(m, n, 1, 6, 1));
    bool named = false;
    for (unsigned i = 0; i < n; i++)
        if (m[i].id == 1 && m[i].event == 7 /* PORT_NAME */)
            named = strcmp(m[i].name, "org.vmkit.agent") == 0;
    assert_true(named);
    /* The unnamed port gets no PORT_NAME; the console is open at once. */
    for (unsigned i = 0; i < n; i++)
        assert_false(m[i].id == 2 && m[i].event == 7);
    assert_true(virtio_console_port_open(f->dev, 0));
    assert_false(virtio_console_port_open(f->dev, 1));
    send_ctrl(&f->t, 1, 6 /* PORT_OPEN */, 1);
    assert_true(virtio_console_port_open(f->dev, 1));
    assert_int_equal(f->t.resets_asked, 0);
}

static void test_guest_output_reaches_host(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct test_driver *t = &f->t;
    uint64_t a = td_alloc(t, 6), b = td_alloc(t, 7);
    memcpy(td_ptr(t, a, 6), "hello ", 6);
    memcpy(td_ptr(t, b, 7), "world\n", 7);
    struct td_buf bufs[2] = { { .gpa = a, .len = 6 }, { .gpa = b, .len = 6 } };
    td_add(t, 5 /* port 1 transmit */, bufs, 2);
    td_kick(t, 5);
    assert_int_equal(f->host[1].out_len, 12);
    assert_memory_equal(f->host[1].out, "hello world\n", 12);
    assert_int_equal(f->host[0].out_len, 0);
    uint32_t id, len;
    assert_true(td_used(t, 5, &id, &len));
    assert_int_equal(len, 0);
    /* Port 0 (the console) transmits on queue 1. */
    struct td_buf c = { .gpa = a, .len = 5 };
    td_add(t, 1, &c, 1);
    td_kick(t, 1);
    assert_int_equal(f->host[0].out_len, 5);
}

static void test_host_input_waits_for_open_port(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct test_driver *t = &f->t;
    uint64_t rx = td_alloc(t, 16);
    struct td_buf b = { .gpa = rx, .len = 16, .writable = true };
    td_add(t, 4 /* port 1 receive */, &b, 1);
    td_kick(t, 4);
    /* Not open in the guest yet: input waits (Linux would drop it). */
    assert_int_equal(virtio_console_receive(f->dev, 1, (const uint8_t *)"ping", 4), 0);
    send_ctrl(t, 1, 6 /* PORT_OPEN */, 1);
    assert_int_equal(f->host[1].rx_space_calls, 1);
    assert_int_equal(virtio_console_receive(f->dev, 1, (const uint8_t *)"ping", 4), 4);
    uint32_t id, len;
    assert_true(td_used(t, 4, &id, &len));
    assert_int_equal(len, 4);
    assert_memory_equal(td_ptr(t, rx, 4), "ping", 4);
}

static void test_back_pressure(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct test_driver *t = &f->t;
    uint64_t rx = td_alloc(t, 4);
    struct td_buf b = { .gpa = rx, .len = 4, .writable = true };
    td_add(t, 0 /* console receive */, &b, 1);
    td_kick(t, 0);
    const uint8_t text[] = "abcdefgh";
    /* One 4-byte buffer: half is taken, the rest waits for more buffers. */
    assert_int_equal(virtio_console_receive(f->dev, 0, text, 8), 4);
    assert_int_equal(f->host[0].rx_space_calls, 0);
    uint64_t rx2 = td_alloc(t, 8);
    struct td_buf b2 = { .gpa = rx2, .len = 8, .writable = true };
    td_add(t, 0, &b2, 1);
    td_kick(t, 0);
    assert_int_equal(f->host[0].rx_space_calls, 1);
    assert_int_equal(virtio_console_receive(f->dev, 0, text + 4, 4), 4);
    assert_memory_equal(td_ptr(t, rx2, 4), "efgh", 4);
}

/* A host that takes only part of the guest's output: the chain stays with the device (not
 * completed, the guest's buffer held), nothing is lost or repeated, and it goes on when the
 * host has room again. */
static void test_transmit_held_while_host_full(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct test_driver *t = &f->t;
    uint64_t a = td_alloc(t, 8), b = td_alloc(t, 8);
    memcpy(td_ptr(t, a, 8), "01234567", 8);
    memcpy(td_ptr(t, b, 8), "89abcdef", 8);
    struct td_buf first[2] = { { .gpa = a, .len = 8 }, { .gpa = b, .len = 8 } };
    struct td_buf second = { .gpa = a, .len = 4 };
    f->host[1].room = 5;
    td_add(t, 5, first, 2);
    td_add(t, 5, &second, 1);
    td_kick(t, 5);
    assert_int_equal(f->host[1].out_len, 5);
    assert_false(td_used(t, 5, NULL, NULL)); /* held, not completed */
    /* More kicks while held change nothing. */
    td_kick(t, 5);
    assert_int_equal(f->host[1].out_len, 5);
    f->host[1].room = 3;
    virtio_console_tx_space(f->dev, 1);
    assert_int_equal(f->host[1].out_len, 8);
    assert_false(td_used(t, 5, NULL, NULL));
    f->host[1].room = SIZE_MAX;
    virtio_console_tx_space(f->dev, 1);
    assert_int_equal(f->host[1].out_len, 20);
    assert_memory_equal(f->host[1].out, "0123456789abcdef0123", 20);
    uint32_t id, len;
    assert_true(td_used(t, 5, &id, &len));
    assert_true(td_used(t, 5, &id, &len));
    assert_false(td_used(t, 5, NULL, NULL));
    virtio_console_tx_space(f->dev, 1); /* nothing held: harmless */
    virtio_console_tx_space(f->dev, 7); /* no such port: harmless */
    assert_int_equal(t->resets_asked, 0);

    /* A reset forgets what was held. */
    f->host[1].room = 2;
    td_add(t, 5, &second, 1);
    td_kick(t, 5);
    assert_int_equal(f->host[1].out_len, 22);
    f->dev->ops->reset(f->dev);
    f->host[1].room = SIZE_MAX;
    virtio_console_tx_space(f->dev, 1);
    assert_int_equal(f->host[1].out_len, 22);
}

static void test_without_multiport(void **state)
{
    struct fixture *f = *state;
    struct test_driver *t = &f->t;
    assert_int_equal(td_init(t, f->dev, ALL & ~MULTIPORT), 0);
    assert_true(virtio_console_port_open(f->dev, 0));
    /* Only port 0 exists. */
    assert_int_equal(virtio_console_receive(f->dev, 1, (const uint8_t *)"x", 1), 0);
    uint64_t rx = td_alloc(t, 8);
    struct td_buf b = { .gpa = rx, .len = 8, .writable = true };
    td_add(t, 0, &b, 1);
    assert_int_equal(virtio_console_receive(f->dev, 0, (const uint8_t *)"hi", 2), 2);
    /* The control queue is not in use: a message there is ignored. */
    send_ctrl(t, 0, 0, 1);
    assert_false(td_used(t, 3, NULL, NULL));
}

static void test_broken_ring_asks_for_reset(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct test_driver *t = &f->t;
    /* A descriptor pointing outside guest RAM. */
    struct td_buf b = { .gpa = 0x7fffffff0000ull, .len = 64 };
    td_add(t, 5, &b, 1);
    td_kick(t, 5);
    assert_int_equal(t->resets_asked, 1);
    assert_non_null(t->reset_why);
    assert_int_equal(f->host[1].out_len, 0);
}

static void test_short_control_message_ignored(void **state)
{
    struct fixture *f = *state;
    struct test_driver *t = &f->t;
    assert_int_equal(td_init(t, f->dev, ALL), 0);
    post_ctrl_buffers(t, 8);
    uint64_t gpa = td_alloc(t, 4);
    struct td_buf b = { .gpa = gpa, .len = 4 };
    td_add(t, 3, &b, 1);
    td_kick(t, 3);
    struct ctrl m[8];
    assert_int_equal(read_ctrl(t, m, 8), 0);
    /* Out-of-range port ids are ignored too. */
    send_ctrl(t, 0, 0, 1);
    send_ctrl(t, 99, 3, 1);
    send_ctrl(t, 99, 6, 1);
    assert_int_equal(read_ctrl(t, m, 8), 3);
    assert_int_equal(t->resets_asked, 0);
}

static void test_invalid_port_sets(void **state)
{
    struct virtio_console_port_config two_consoles[2] = { { .is_console = true },
                                                          { .is_console = true } };
    assert_null(virtio_console_new(two_consoles, 2));
    assert_null(virtio_console_new(two_consoles, 0));
    struct virtio_console_port_config many[VIRTIO_CONSOLE_MAX_PORTS + 1] = { { 0 } };
    assert_null(virtio_console_new(many, VIRTIO_CONSOLE_MAX_PORTS + 1));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_config_space),
        T(test_multiport_handshake),
        T(test_guest_output_reaches_host),
        T(test_host_input_waits_for_open_port),
        T(test_back_pressure),
        T(test_transmit_held_while_host_full),
        T(test_without_multiport),
        T(test_broken_ring_asks_for_reset),
        T(test_short_control_message_ignored),
        cmocka_unit_test(test_invalid_port_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
