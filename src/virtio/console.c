#include "virtio/console.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define VIRTIO_CONSOLE_F_MULTIPORT 1

/* Control events (5.3.6.2). */
enum {
    CTRL_DEVICE_READY = 0,
    CTRL_DEVICE_ADD = 1,
    CTRL_DEVICE_REMOVE = 2,
    CTRL_PORT_READY = 3,
    CTRL_CONSOLE_PORT = 4,
    CTRL_RESIZE = 5,
    CTRL_PORT_OPEN = 6,
    CTRL_PORT_NAME = 7,
};

#define CTRL_RX      2
#define CTRL_TX      3
#define CTRL_SIZE    8 /* le32 id, le16 event, le16 value */
#define CONFIG_SIZE  12
#define QUEUE_SIZE   256
#define NAME_MAX_LEN 255

struct port {
    struct virtio_console_port_config cfg;
    char *name;
    bool ready;      /* the driver said PORT_READY */
    bool guest_open; /* the guest has it open */
    bool rx_refused; /* receive took less than offered: call rx_space later */
    bool tx_held;    /* the host took part of a transmit chain: wait for tx_space */
    size_t tx_sent;  /* bytes of the head transmit chain the host took already */
};

struct ctrl_msg {
    uint32_t id;
    uint16_t event;
    uint16_t value;
    const char *name; /* PORT_NAME payload (the port's own string) */
};

struct virtio_console {
    struct virtio_device vdev; /* first: the device is reached through it */
    pthread_mutex_t lock;
    unsigned nports;
    struct port ports[VIRTIO_CONSOLE_MAX_PORTS];
    bool multiport;
    bool driver_ready;
    /* device → driver control messages waiting for control receive buffers */
    struct ctrl_msg pending[4 * VIRTIO_CONSOLE_MAX_PORTS + 4];
    unsigned npending;
    struct virtq_elem elem; /* scratch, under lock */
};

static struct virtio_console *to_console(struct virtio_device *d)
{
    return (struct virtio_console *)d;
}

static unsigned rx_queue(unsigned port)
{
    return port == 0 ? 0 : 2 * port + 2;
}

static unsigned tx_queue(unsigned port)
{
    return rx_queue(port) + 1;
}

/* The port a data queue belongs to, or -1 for the control queues. */
static int port_of_queue(unsigned q)
{
    if (q < 2)
        return 0;
    if (q == CTRL_RX || q == CTRL_TX)
        return -1;
    return (int)(q - 2) / 2;
}

static bool port_exists(const struct virtio_console *c, unsigned port)
{
    return port < c->nports && (c->multiport || port == 0);
}

static void queue_ctrl(struct virtio_console *c, uint32_t id, uint16_t event, uint16_t value,
                       const char *name)
{
    /* Bounded: each port queues at most a handful of messages per PORT_READY. */
    if (c->npending == sizeof(c->pending) / sizeof(c->pending[0]))
        return;
    c->pending[c->npending++] =
        (struct ctrl_msg){ .id = id, .event = event, .value = value, .name = name };
}

/* Sends pending control messages while the driver has control receive buffers. */
static void flush_ctrl(struct virtio_console *c)
{
    struct virtio_device *d = &c->vdev;
    unsigned sent = 0;
    while (sent < c->npending) {
        int r = virtq_pop(&d->queues[CTRL_RX], &c->elem);
        if (r < 0)
            virtio_device_queue_failed(d, CTRL_RX);
        if (r <= 0)
            break;
        const struct ctrl_msg *m = &c->pending[sent++];
        uint8_t msg[CTRL_SIZE + NAME_MAX_LEN];
        uint32_t id = htole32(m->id);
        uint16_t event = htole16(m->event), value = htole16(m->value);
        memcpy(msg, &id, 4);
        memcpy(msg + 4, &event, 2);
        memcpy(msg + 6, &value, 2);
        size_t len = CTRL_SIZE;
        if (m->name) {
            size_t n = strnlen(m->name, NAME_MAX_LEN);
            memcpy(msg + CTRL_SIZE, m->name, n);
            len += n;
        }
        size_t written = virtq_elem_write(&c->elem, 0, msg, len);
        virtio_device_complete(d, CTRL_RX, &c->elem, (uint32_t)written);
    }
    memmove(c->pending, c->pending + sent, (c->npending - sent) * sizeof(c->pending[0]));
    c->npending -= sent;
}

/* Returns true when the port's rx_space callback is owed. */
static bool handle_ctrl(struct virtio_console *c, uint32_t id, uint16_t event, uint16_t value)
{
    switch (event) {
    case CTRL_DEVICE_READY:
        if (value != 1 || c->driver_ready)
            return false;
        c->driver_ready = true;
        for (unsigned i = 0; i < c->nports; i++)
            queue_ctrl(c, i, CTRL_DEVICE_ADD, 0, NULL);
        return false;
    case CTRL_PORT_READY: {
        if (id >= c->nports || value != 1 || c->ports[id].ready)
            return false;
        struct port *p = &c->ports[id];
        p->ready = true;
        if (p->cfg.is_console) {
            queue_ctrl(c, id, CTRL_CONSOLE_PORT, 1, NULL);
            p->guest_open = true;
        }
        if (p->name)
            queue_ctrl(c, id, CTRL_PORT_NAME, 1, p->name);
        /* The host side is always connected: the attachment exists while the VM runs. */
        queue_ctrl(c, id, CTRL_PORT_OPEN, 1, NULL);
        return p->guest_open && p->rx_refused;
    }
    case CTRL_PORT_OPEN:
        if (id >= c->nports || !c->ports[id].ready)
            return false;
        c->ports[id].guest_open = value != 0;
        return c->ports[id].guest_open && c->ports[id].rx_refused;
    default:
        /* DEVICE_ADD/REMOVE, CONSOLE_PORT, RESIZE, PORT_NAME go the other way. */
        return false;
    }
}

static void process_ctrl_tx(struct virtio_console *c, bool *owed)
{
    struct virtio_device *d = &c->vdev;
    for (;;) {
        int r = virtq_pop(&d->queues[CTRL_TX], &c->elem);
        if (r < 0)
            virtio_device_queue_failed(d, CTRL_TX);
        if (r <= 0)
            return;
        uint8_t msg[CTRL_SIZE];
        if (virtq_elem_read(&c->elem, 0, msg, CTRL_SIZE) == CTRL_SIZE) {
            uint32_t id;
            uint16_t event, value;
            memcpy(&id, msg, 4);
            memcpy(&event, msg + 4, 2);
            memcpy(&value, msg + 6, 2);
            id = le32toh(id);
            if (handle_ctrl(c, id, le16toh(event), le16toh(value)) && id < c->nports)
                owed[id] = true;
        }
        /* A short message is ignored, as the spec leaves it undefined. */
        virtio_device_complete(d, CTRL_TX, &c->elem, 0);
    }
}

/* Hands the chain's bytes past p->tx_sent to the host; false when it took only part. */
static bool send_chain(struct port *p, const struct virtq_elem *e)
{
    size_t skip = p->tx_sent;
    for (unsigned i = 0; i < e->out_num && p->cfg.write; i++) {
        const uint8_t *base = e->iov[i].iov_base;
        size_t len = e->iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        size_t n = p->cfg.write(p->cfg.ctx, base + skip, len - skip);
        p->tx_sent += n;
        if (n < len - skip)
            return false;
        skip = 0;
    }
    return true;
}

/* Sends the port's transmit chains while the host takes them. A chain the host takes in part
 * goes back to the ring (virtq_unpop) with a note of how much went: the guest's buffer stays
 * held until virtio_console_tx_space, and nothing waits on a slow reader. */
static void process_tx(struct virtio_console *c, unsigned port, unsigned q)
{
    struct virtio_device *d = &c->vdev;
    struct port *p = &c->ports[port];
    while (!p->tx_held) {
        int r = virtq_pop(&d->queues[q], &c->elem);
        if (r < 0)
            virtio_device_queue_failed(d, q);
        if (r <= 0)
            return;
        if (!send_chain(p, &c->elem)) {
            p->tx_held = true;
            if (virtq_unpop(&d->queues[q], &c->elem) == 0)
                return;
            /* The driver rewrote the ring meanwhile: its untaken bytes are lost. */
        }
        p->tx_sent = 0;
        virtio_device_complete(d, q, &c->elem, 0);
    }
}

void virtio_console_tx_space(struct virtio_device *d, unsigned port)
{
    struct virtio_console *c = to_console(d);
    pthread_mutex_lock(&c->lock);
    if (port < c->nports && c->ports[port].tx_held) {
        c->ports[port].tx_held = false;
        if (port_exists(c, port))
            process_tx(c, port, tx_queue(port));
    }
    pthread_mutex_unlock(&c->lock);
}

static void console_queue_notify(struct virtio_device *d, unsigned q)
{
    struct virtio_console *c = to_console(d);
    bool owed[VIRTIO_CONSOLE_MAX_PORTS] = { false };
    pthread_mutex_lock(&c->lock);
    int port = port_of_queue(q);
    if (q >= d->num_queues) {
        /* not ours */
    } else if (port < 0) {
        if (c->multiport) {
            if (q == CTRL_TX)
                process_ctrl_tx(c, owed);
            flush_ctrl(c);
        }
    } else if (port_exists(c, (unsigned)port)) {
        if (q == rx_queue((unsigned)port)) {
            /* Fresh receive buffers: input the port refused can come now. */
            owed[port] = c->ports[port].rx_refused;
        } else {
            process_tx(c, (unsigned)port, q);
        }
    }
    for (unsigned i = 0; i < c->nports; i++)
        if (owed[i])
            c->ports[i].rx_refused = false;
    pthread_mutex_unlock(&c->lock);
    for (unsigned i = 0; i < c->nports; i++)
        if (owed[i] && c->ports[i].cfg.rx_space)
            c->ports[i].cfg.rx_space(c->ports[i].cfg.ctx);
}

size_t virtio_console_receive(struct virtio_device *d, unsigned port, const uint8_t *buf,
                              size_t len)
{
    struct virtio_console *c = to_console(d);
    size_t done = 0;
    pthread_mutex_lock(&c->lock);
    if (port >= c->nports) {
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    struct port *p = &c->ports[port];
    bool open = port_exists(c, port) && p->guest_open;
    unsigned q = rx_queue(port);
    while (open && done < len) {
        int r = virtq_pop(&d->queues[q], &c->elem);
        if (r < 0)
            virtio_device_queue_failed(d, q);
        if (r <= 0)
            break;
        size_t n = virtq_elem_write(&c->elem, 0, buf + done, len - done);
        done += n;
        virtio_device_complete(d, q, &c->elem, (uint32_t)n);
    }
    if (done < len)
        p->rx_refused = true;
    pthread_mutex_unlock(&c->lock);
    return done;
}

bool virtio_console_port_open(struct virtio_device *d, unsigned port)
{
    struct virtio_console *c = to_console(d);
    pthread_mutex_lock(&c->lock);
    bool open = port < c->nports && c->ports[port].guest_open;
    pthread_mutex_unlock(&c->lock);
    return open;
}

static int console_activate(struct virtio_device *d)
{
    struct virtio_console *c = to_console(d);
    pthread_mutex_lock(&c->lock);
    c->multiport = virtio_has_feature(d, VIRTIO_CONSOLE_F_MULTIPORT);
    /* Without the control queue only port 0 exists, open from the start. */
    if (!c->multiport)
        c->ports[0].guest_open = true;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void console_config_read(struct virtio_device *d, uint32_t offset, void *data, uint32_t len)
{
    struct virtio_console *c = to_console(d);
    uint8_t cfg[CONFIG_SIZE] = { 0 }; /* cols, rows: 0 (no F_SIZE); emerg_wr: 0 */
    uint32_t max_ports = htole32(c->nports);
    memcpy(cfg + 4, &max_ports, 4);
    memset(data, 0, len);
    if (offset < CONFIG_SIZE)
        memcpy(data, cfg + offset, len < CONFIG_SIZE - offset ? len : CONFIG_SIZE - offset);
}

static void console_config_write(struct virtio_device *d, uint32_t offset, const void *data,
                                 uint32_t len)
{
    /* emerg_wr needs F_EMERG_WRITE, which is not offered: nothing is writable. */
}

static void console_reset(struct virtio_device *d)
{
    struct virtio_console *c = to_console(d);
    pthread_mutex_lock(&c->lock);
    c->multiport = false;
    c->driver_ready = false;
    c->npending = 0;
    for (unsigned i = 0; i < c->nports; i++) {
        c->ports[i].ready = false;
        c->ports[i].guest_open = false;
        c->ports[i].tx_held = false;
        c->ports[i].tx_sent = 0;
    }
    pthread_mutex_unlock(&c->lock);
}

static void console_destroy(struct virtio_device *d)
{
    struct virtio_console *c = to_console(d);
    for (unsigned i = 0; i < c->nports; i++)
        free(c->ports[i].name);
    pthread_mutex_destroy(&c->lock);
    virtio_device_fini(d);
    free(c);
}

static const struct virtio_device_ops console_ops = {
    .activate = console_activate,
    .queue_notify = console_queue_notify,
    .config_read = console_config_read,
    .config_write = console_config_write,
    .reset = console_reset,
    .destroy = console_destroy,
};

struct virtio_device *virtio_console_new(const struct virtio_console_port_config *ports,
                                         unsigned nports)
{
    if (!ports || nports == 0 || nports > VIRTIO_CONSOLE_MAX_PORTS)
        return NULL;
    unsigned consoles = 0;
    for (unsigned i = 0; i < nports; i++)
        consoles += ports[i].is_console;
    if (consoles > 1)
        return NULL;
    struct virtio_console *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    /* Port queues, then the control pair at 2 and 3 (5.3.2). */
    if (virtio_device_init(&c->vdev, &console_ops, "virtio-console", VIRTIO_ID_CONSOLE,
                           2 * nports + 2, QUEUE_SIZE) < 0) {
        free(c);
        return NULL;
    }
    c->vdev.device_features |= VIRTIO_BIT(VIRTIO_CONSOLE_F_MULTIPORT);
    c->vdev.config_size = CONFIG_SIZE;
    pthread_mutex_init(&c->lock, NULL);
    c->nports = nports;
    for (unsigned i = 0; i < nports; i++) {
        c->ports[i].cfg = ports[i];
        if (ports[i].name && !(c->ports[i].name = strndup(ports[i].name, NAME_MAX_LEN))) {
            console_destroy(&c->vdev);
            return NULL;
        }
        c->ports[i].cfg.name = c->ports[i].name;
    }
    return &c->vdev;
}
