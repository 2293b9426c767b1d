#include "devices/legacy/i8042.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define STS_OBF     0x01 /* a byte waits in the output buffer */
#define STS_SYS     0x04 /* system flag: mirrors command byte bit 2 */
#define STS_CMD     0x08 /* last write went to the command port */
#define STS_UNLOCK  0x10 /* keyboard not inhibited; Linux warns "Keylock active" without it */
#define STS_AUX     0x20 /* the waiting byte came from the AUX port */
#define STS_TIMEOUT 0x40 /* the device did not answer */

#define CTR_SYS    0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE  0x40

#define CMD_READ_RAM       0x20 /* 0x20-0x3f: read internal RAM byte; byte 0 is the command byte */
#define CMD_WRITE_RAM      0x60 /* 0x60-0x7f: write it with the next data byte */
#define CMD_AUX_DISABLE    0xa7
#define CMD_AUX_ENABLE     0xa8
#define CMD_AUX_TEST       0xa9
#define CMD_SELF_TEST      0xaa
#define CMD_KBD_TEST       0xab
#define CMD_KBD_DISABLE    0xad
#define CMD_KBD_ENABLE     0xae
#define CMD_READ_INPUT     0xc0
#define CMD_READ_OUTPUT    0xd0
#define CMD_WRITE_OUTPUT   0xd1
#define CMD_WRITE_KBD_OBUF 0xd2
#define CMD_WRITE_AUX_OBUF 0xd3
#define CMD_WRITE_AUX      0xd4
#define CMD_READ_TEST      0xe0
#define CMD_PULSE          0xf0 /* 0xf0-0xff: pulse the output lines whose bit is clear */

#define SELF_TEST_OK        0x55
/* Interface test answer "clock line stuck high": what an empty port looks like. A
 * guest that tests its ports (Linux's AUX probe, FreeBSD's atkbdc) drops the port
 * at once instead of waiting for replies from a device that is not there. */
#define PORT_TEST_NO_DEVICE 0x02
#define NO_DEVICE_REPLY     0xff

#define OUTPUT_RESET 0x01 /* output port bit 0: the CPU reset line, active low */
#define OUTPUT_A20   0x02

struct i8042 {
    pthread_mutex_t lock;
    struct machine_events ev;
    uint8_t ram[32];     /* ram[0] is the command byte */
    uint8_t output_port; /* A20 is always on in this machine; the bit only reads back */
    uint8_t obuf;
    uint8_t status;  /* OBF, AUX, TIMEOUT, CMD; the rest is added on read */
    uint8_t pending; /* a command waiting for its data byte, or 0 */
};

static void put_output(struct i8042 *k, uint8_t byte, uint8_t flags)
{
    k->obuf = byte;
    k->status = (k->status & STS_CMD) | STS_OBF | flags;
}

/* Returns true when the guest asked for a CPU reset. */
static bool run_command(struct i8042 *k, uint8_t cmd)
{
    k->pending = 0;
    if (cmd >= CMD_READ_RAM && cmd < CMD_READ_RAM + 0x20) {
        put_output(k, k->ram[cmd & 0x1f], 0);
        return false;
    }
    if (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + 0x20) {
        k->pending = cmd;
        return false;
    }
    if (cmd >= CMD_PULSE)
        return !(cmd & OUTPUT_RESET);
    switch (cmd) {
    case CMD_AUX_DISABLE: k->ram[0] |= CTR_AUXDIS; break;
    case CMD_AUX_ENABLE: k->ram[0] &= (uint8_t)~CTR_AUXDIS; break;
    case CMD_AUX_TEST:
    case CMD_KBD_TEST: put_output(k, PORT_TEST_NO_DEVICE, 0); break;
    case CMD_SELF_TEST: put_output(k, SELF_TEST_OK, 0); break;
    case CMD_KBD_DISABLE: k->ram[0] |= CTR_KBDDIS; break;
    case CMD_KBD_ENABLE: k->ram[0] &= (uint8_t)~CTR_KBDDIS; break;
    case CMD_READ_INPUT:
        put_output(k, 0x80, 0); /* bit 7: keyboard not inhibited */
        break;
    case CMD_READ_OUTPUT: put_output(k, k->output_port, 0); break;
    case CMD_READ_TEST: put_output(k, 0x00, 0); break;
    case CMD_WRITE_OUTPUT:
    case CMD_WRITE_KBD_OBUF:
    case CMD_WRITE_AUX_OBUF:
    case CMD_WRITE_AUX: k->pending = cmd; break;
    default: /* vendor commands: ignored, as many real controllers do */ break;
    }
    return false;
}

/* Returns true when the guest asked for a CPU reset. */
static bool write_data(struct i8042 *k, uint8_t v)
{
    uint8_t cmd = k->pending;
    k->pending = 0;
    if (cmd >= CMD_WRITE_RAM && cmd < CMD_WRITE_RAM + 0x20) {
        k->ram[cmd & 0x1f] = v;
        return false;
    }
    switch (cmd) {
    case CMD_WRITE_OUTPUT: k->output_port = v | OUTPUT_RESET; return !(v & OUTPUT_RESET);
    case CMD_WRITE_KBD_OBUF: put_output(k, v, 0); return false;
    case CMD_WRITE_AUX_OBUF:
        /* Echoed without the AUX flag: there is no AUX channel. Linux's loop test
         * then fails at once ("auxerr") and its interface test sees
         * PORT_TEST_NO_DEVICE, rather than waiting 250 ms for an IRQ 12 that is
         * not wired. */
        put_output(k, v, 0);
        return false;
    case CMD_WRITE_AUX: put_output(k, NO_DEVICE_REPLY, STS_AUX | STS_TIMEOUT); return false;
    default:
        /* A byte for the keyboard, which is absent: the transfer times out, as a
         * real controller reports it, so polling drivers give up at once. */
        put_output(k, NO_DEVICE_REPLY, STS_TIMEOUT);
        return false;
    }
}

static void do_reset(struct i8042 *k, bool reset)
{
    if (reset && k->ev.reset)
        k->ev.reset(k->ev.ctx);
}

static void data_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct i8042 *k = dev;
    uint8_t *out = bus_byte_register_read(offset, data, size);
    if (!out)
        return;
    pthread_mutex_lock(&k->lock);
    /* An empty buffer reads its last byte again, as the real latch does. */
    out[0] = k->obuf;
    k->status &= (uint8_t) ~(STS_OBF | STS_AUX | STS_TIMEOUT);
    pthread_mutex_unlock(&k->lock);
}

static void data_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct i8042 *k = dev;
    if (size == 0 || offset != 0)
        return;
    pthread_mutex_lock(&k->lock);
    k->status &= (uint8_t)~STS_CMD;
    bool reset = write_data(k, *(const uint8_t *)data);
    pthread_mutex_unlock(&k->lock);
    do_reset(k, reset);
}

static void cmd_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct i8042 *k = dev;
    uint8_t *out = bus_byte_register_read(offset, data, size);
    if (!out)
        return;
    pthread_mutex_lock(&k->lock);
    /* The input buffer is never full: every write is handled before it returns. */
    out[0] = k->status | STS_UNLOCK | (k->ram[0] & CTR_SYS ? STS_SYS : 0);
    pthread_mutex_unlock(&k->lock);
}

static void cmd_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct i8042 *k = dev;
    if (size == 0 || offset != 0)
        return;
    pthread_mutex_lock(&k->lock);
    k->status |= STS_CMD;
    bool reset = run_command(k, *(const uint8_t *)data);
    pthread_mutex_unlock(&k->lock);
    do_reset(k, reset);
}

const struct bus_device_ops i8042_data_bus_ops = {
    .read = data_read,
    .write = data_write,
};

const struct bus_device_ops i8042_cmd_bus_ops = {
    .read = cmd_read,
    .write = cmd_write,
};

struct i8042 *i8042_new(const struct machine_events *ev)
{
    struct i8042 *k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    if (ev)
        k->ev = *ev;
    /* What firmware leaves: POST passed, translation on, both ports disabled
     * since nothing is plugged in. */
    k->ram[0] = CTR_SYS | CTR_XLATE | CTR_KBDDIS | CTR_AUXDIS;
    k->output_port = OUTPUT_RESET | OUTPUT_A20;
    return k;
}

void i8042_free(struct i8042 *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    free(k);
}
