/* libFuzzer target for virtio-console: a hostile driver (virtio_driver.h) against a
 * device made fresh for each input. header[0] shapes it: bits 0-3 the port count - 1,
 * bits 4-7 the console port (none when past the last port); port names cycle through
 * none, empty, ordinary and longer than the device keeps. FZ_OP_DEVICE is the host
 * side: input for a port (u8 port, u8 n, n bytes), which may come back through
 * rx_space as a link with buffered input would do; or, with the port byte's top bit set,
 * room for a port's output (u8 bytes) and the tx_space that says so. A port's host side
 * takes guest output only while it has room (some ports start with little), so chains
 * are held and resumed. Control messages with bogus ids, events and values come from the
 * chain builder on queue 3 (control transmit). */
#include "virtio_driver.h"
#include "virtio/console.h"

#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTRL_RX 2
#define CTRL_TX 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct host_port {
    struct console_state *s;
    unsigned index;
    size_t room; /* output bytes it still takes */
};

struct console_state {
    struct fz_driver drv;
    struct virtio_device *dev;
    unsigned nports;
    struct host_port host[VIRTIO_CONSOLE_MAX_PORTS];
    unsigned depth;     /* rx_space re-entering receive */
    uint64_t out_bytes; /* guest output seen */
    uint8_t out_sum;    /* read every byte, so ASan sees a bad buffer */
};

static size_t host_write(void *ctx, const uint8_t *buf, size_t len)
{
    struct host_port *h = ctx;
    FZ_CHECK(h->index < h->s->nports);
    FZ_CHECK(len > 0 && fz_in_ram(&h->s->drv, buf, len));
    size_t n = len < h->room ? len : h->room;
    for (size_t i = 0; i < n; i++)
        h->s->out_sum ^= buf[i];
    h->s->out_bytes += n;
    h->room -= n;
    return n;
}

static void receive(struct console_state *s, unsigned port, const uint8_t *buf, size_t len);

/* A serial link with more input waiting offers it again (once, to stay bounded). */
static void host_rx_space(void *ctx)
{
    struct host_port *h = ctx;
    struct console_state *s = h->s;
    FZ_CHECK(h->index < s->nports);
    if (s->depth > 0)
        return;
    s->depth++;
    static const uint8_t more[] = "more input\r\n";
    receive(s, h->index, more, sizeof(more) - 1);
    s->depth--;
}

static void receive(struct console_state *s, unsigned port, const uint8_t *buf, size_t len)
{
    size_t took = virtio_console_receive(s->dev, port, buf, len);
    FZ_CHECK(took <= len);
    if (s->drv.trace)
        fprintf(stderr, "  port %u took %zu of %zu bytes\n", port, took, len);
    if (took > 0)
        FZ_CHECK(port < s->nports && virtio_console_port_open(s->dev, port));
}

static void console_action(struct fz_driver *t, struct fz_in *in)
{
    struct console_state *s = t->ctx;
    uint8_t what = fz_u8(in);
    unsigned port = (what & 0x7f) % (s->nports + 1); /* one past the end too */
    if (what & 0x80) {
        size_t room = fz_u8(in);
        if (port < s->nports)
            s->host[port].room = room;
        virtio_console_tx_space(s->dev, port);
        return;
    }
    uint8_t buf[255];
    size_t n = fz_bytes(in, buf, fz_u8(in));
    receive(s, port, buf, n);
}

static const struct fz_target_ops console_ops = {
    .settle = NULL,
    .action = console_action,
};

static struct virtio_device *make_device(struct console_state *s, uint8_t sel)
{
    static const char long_name[] =
        "org.vmkit.a-port-name-longer-than-the-255-bytes-a-virtio-console-device-keeps-"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901"
        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901"
        "0123456789012345678901234567890123456789";
    static const char *const names[] = { NULL, "", "org.vmkit.agent", long_name };
    struct virtio_console_port_config ports[VIRTIO_CONSOLE_MAX_PORTS];
    s->nports = (sel & 15u) + 1;
    unsigned console = sel >> 4;
    for (unsigned i = 0; i < s->nports; i++) {
        s->host[i] = (struct host_port){ .s = s, .index = i, .room = i % 5 == 4 ? 3 : SIZE_MAX };
        ports[i] = (struct virtio_console_port_config){
            .name = names[(i + sel) % 4],
            .is_console = i == console,
            .write = (i % 3 == 2) ? NULL : host_write, /* NULL discards */
            .rx_space = (i % 4 == 3) ? NULL : host_rx_space,
            .ctx = &s->host[i],
        };
    }
    return virtio_console_new(ports, s->nports);
}

/* ---- seeds: the handshake Linux's driver performs, then data both ways ---- */

static void ctrl_msg(uint8_t out[8], uint32_t id, uint16_t event, uint16_t value)
{
    id = htole32(id);
    event = htole16(event);
    value = htole16(value);
    memcpy(out, &id, 4);
    memcpy(out + 4, &event, 2);
    memcpy(out + 6, &value, 2);
}

static void seed_ctrl(struct fz_seed *s, uint32_t id, uint16_t event, uint16_t value)
{
    uint8_t m[8];
    ctrl_msg(m, id, event, value);
    struct fz_seg seg = { .len = 8, .data = m, .data_len = 8 };
    fz_seed_chain(s, CTRL_TX, FZ_CHAIN_KICK, &seg, 1);
}

static void seed_rx_buffers(struct fz_seed *s, unsigned q, unsigned n, uint16_t len)
{
    struct fz_seg seg = { .writable = true, .len = len };
    for (unsigned i = 0; i < n; i++)
        fz_seed_chain(s, q, i + 1 == n ? FZ_CHAIN_KICK : 0, &seg, 1);
}

static void seed_host_input(struct fz_seed *s, unsigned port, const char *text)
{
    fz_seed_u8(s, FZ_OP_DEVICE);
    fz_seed_u8(s, (uint8_t)port);
    fz_seed_u8(s, (uint8_t)strlen(text));
    fz_seed_bytes(s, text, strlen(text));
}

static void seed_host_room(struct fz_seed *s, unsigned port, uint8_t room)
{
    fz_seed_u8(s, FZ_OP_DEVICE);
    fz_seed_u8(s, (uint8_t)(0x80 | port));
    fz_seed_u8(s, room);
}

static void seed_output(struct fz_seed *s, unsigned q, const char *text)
{
    struct fz_seg seg = { .len = (uint16_t)strlen(text),
                          .data = text,
                          .data_len = (uint8_t)strlen(text) };
    fz_seed_chain(s, q, FZ_CHAIN_KICK, &seg, 1);
}

void fz_write_seeds(const char *dir)
{
    const uint32_t multiport = 1u << 1;
    struct fz_seed s;

    /* Three ports, port 0 the console: DEVICE_READY, PORT_READY each, PORT_OPEN for
     * port 1, then output on every port and input for each. */
    fz_seed_begin(&s, 0x02, FZ_H_BRING_UP, multiport);
    seed_rx_buffers(&s, CTRL_RX, 12, 128);
    seed_ctrl(&s, 0, 0 /* DEVICE_READY */, 1);
    for (unsigned p = 0; p < 3; p++)
        seed_ctrl(&s, p, 3 /* PORT_READY */, 1);
    seed_ctrl(&s, 1, 6 /* PORT_OPEN */, 1);
    seed_rx_buffers(&s, 0, 2, 64);
    seed_rx_buffers(&s, 4, 2, 64);
    seed_output(&s, 1, "console output\n");
    seed_output(&s, 5, "agent output");
    seed_output(&s, 7, "port 2 output");
    seed_host_input(&s, 0, "ls -l\r");
    seed_host_input(&s, 1, "{\"execute\":\"ping\"}");
    seed_host_input(&s, 2, "closed port");
    seed_ctrl(&s, 1, 6 /* PORT_OPEN */, 0);
    seed_host_input(&s, 1, "after close");
    fz_seed_save(dir, "handshake", &s);

    /* Without MULTIPORT: port 0 only, open at once; input larger than the buffers, so
     * rx_space comes when new buffers arrive. */
    fz_seed_begin(&s, 0x01, FZ_H_BRING_UP | FZ_H_EVENT_IDX, 0);
    seed_rx_buffers(&s, 0, 1, 8);
    seed_host_input(&s, 0, "0123456789abcdef");
    seed_rx_buffers(&s, 0, 3, 8);
    seed_output(&s, 1, "hello\n");
    fz_seed_save(dir, "single", &s);

    /* Sixteen ports with long names, more PORT_READY messages than receive buffers,
     * and messages for ports that do not exist. */
    fz_seed_begin(&s, 0xff, FZ_H_BRING_UP | FZ_H_INDIRECT, multiport);
    seed_ctrl(&s, 0, 0, 1);
    for (unsigned p = 0; p < 18; p++)
        seed_ctrl(&s, p, 3, 1);
    seed_ctrl(&s, 0xffffffffu, 6, 1);
    seed_ctrl(&s, 3, 5 /* RESIZE, device to driver only */, 1);
    /* Port 4 takes 3 bytes of output: its chains are held, then resumed bit by bit. */
    seed_output(&s, 11, "port 4 output, held");
    seed_output(&s, 11, "and more");
    seed_host_room(&s, 4, 5);
    seed_host_room(&s, 4, 255);
    seed_rx_buffers(&s, CTRL_RX, 16, 300);
    seed_rx_buffers(&s, CTRL_RX, 16, 4);
    fz_seed_u8(&s, FZ_OP_CFG_READ);
    fz_seed_u8(&s, 4);
    fz_seed_u8(&s, 2);
    fz_seed_save(dir, "many-ports", &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libFuzzer passes no context: guest RAM lives as long as the process. */
    static struct console_state *s;
    if (!s) {
        s = calloc(1, sizeof(*s));
        FZ_CHECK(s && fz_driver_init(&s->drv) == 0);
    }
    /* A fresh device each time: cheap, and nothing carries over. */
    s->dev = make_device(s, size ? data[0] : 0);
    FZ_CHECK(s->dev != NULL);
    s->depth = 0;
    fz_run(&s->drv, s->dev, &console_ops, s, data, size);
    s->dev->ops->destroy(s->dev);
    s->dev = NULL;
    return 0;
}
