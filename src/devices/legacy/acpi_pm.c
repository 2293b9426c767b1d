#include "devices/legacy/acpi_pm.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Byte offsets inside the block. */
#define OFF_STS 0
#define OFF_EN  2
#define OFF_CNT 4
#define OFF_TMR 8

#define STS_TMR    0x0001
#define STS_PWRBTN 0x0100
#define EN_PWRBTN  0x0100

#define CNT_SCI_EN        0x0001
#define CNT_SLP_TYP_SHIFT 10
#define CNT_SLP_TYP_MASK  (7u << CNT_SLP_TYP_SHIFT)
#define CNT_SLP_EN        0x2000
#define CNT_WRITE_ONLY    (CNT_SLP_EN | 0x0004) /* SLP_EN and GBL_RLS read as 0 */

#define RESET_CPU 0x04 /* reset register: bit 2 starts the reset */

#define NS_PER_SEC 1000000000ull

struct acpi_pm {
    pthread_mutex_t lock;
    struct irq_line sci;
    struct machine_events ev;
    uint64_t (*now_ns)(void *ctx);
    void *ctx;
    uint64_t start_ns;
    uint64_t tmr_epoch; /* timer ticks >> 31 when last looked at, for TMR_STS */
    uint16_t sts, en, cnt;
    uint8_t reset_reg;
    uint8_t off_types; /* bit N: SLP_TYP N with SLP_EN powers off */
    bool sci_level;
};

static uint64_t clock_now(const struct acpi_pm *pm)
{
    if (pm->now_ns)
        return pm->now_ns(pm->ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Ticks since the device was made; split so the product cannot overflow. */
static uint64_t timer_ticks(const struct acpi_pm *pm)
{
    uint64_t ns = clock_now(pm) - pm->start_ns;
    return (ns / NS_PER_SEC) * ACPI_PM_TIMER_HZ + (ns % NS_PER_SEC) * ACPI_PM_TIMER_HZ / NS_PER_SEC;
}

/* TMR_STS is set whenever bit 31 of the timer has flipped since last seen; only
 * looked at when read, which is all a guest can observe without TMR_EN's SCI. */
static uint32_t sample_timer(struct acpi_pm *pm)
{
    uint64_t ticks = timer_ticks(pm);
    if ((ticks >> 31) != pm->tmr_epoch) {
        pm->tmr_epoch = ticks >> 31;
        pm->sts |= STS_TMR;
    }
    return (uint32_t)ticks;
}

/* Only the power button drives the SCI here. irq_line_set only does an ioctl,
 * so it is called with the lock held. */
static void update_sci(struct acpi_pm *pm)
{
    bool level = (pm->sts & pm->en & EN_PWRBTN) != 0;
    if (level != pm->sci_level) {
        pm->sci_level = level;
        irq_line_set(&pm->sci, level);
    }
}

static void pm_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct acpi_pm *pm = dev;
    uint8_t *out = data;
    uint8_t regs[ACPI_PM_BLOCK_LEN] = { 0 };
    if (size == 0)
        return;
    memset(out, 0xff, size);
    if (offset >= ACPI_PM_BLOCK_LEN)
        return;
    pthread_mutex_lock(&pm->lock);
    uint32_t tmr = sample_timer(pm);
    uint16_t cnt = (uint16_t)((pm->cnt & ~CNT_WRITE_ONLY) | CNT_SCI_EN);
    regs[OFF_STS] = (uint8_t)pm->sts;
    regs[OFF_STS + 1] = (uint8_t)(pm->sts >> 8);
    regs[OFF_EN] = (uint8_t)pm->en;
    regs[OFF_EN + 1] = (uint8_t)(pm->en >> 8);
    regs[OFF_CNT] = (uint8_t)cnt;
    regs[OFF_CNT + 1] = (uint8_t)(cnt >> 8);
    for (unsigned i = 0; i < 4; i++)
        regs[OFF_TMR + i] = (uint8_t)(tmr >> (8 * i));
    pthread_mutex_unlock(&pm->lock);
    for (unsigned i = 0; i < size && offset + i < ACPI_PM_BLOCK_LEN; i++)
        out[i] = regs[offset + i];
}

/* The bits of a 16-bit register at reg that a write of size bytes at offset
 * covers, and their new values. */
static uint16_t covered(uint64_t offset, unsigned size, const uint8_t *in, unsigned reg,
                        uint16_t *value)
{
    uint16_t mask = 0;
    *value = 0;
    for (unsigned b = 0; b < 2; b++) {
        uint64_t at = reg + b;
        if (at >= offset && at - offset < size) {
            mask |= (uint16_t)(0xff << (8 * b));
            *value |= (uint16_t)(in[at - offset] << (8 * b));
        }
    }
    return mask;
}

static void pm_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct acpi_pm *pm = dev;
    const uint8_t *in = data;
    uint16_t mask, v;
    bool power_off = false;
    if (size == 0 || offset >= ACPI_PM_BLOCK_LEN)
        return;
    pthread_mutex_lock(&pm->lock);
    mask = covered(offset, size, in, OFF_STS, &v);
    pm->sts &= (uint16_t) ~(v & mask); /* write 1 to clear */
    mask = covered(offset, size, in, OFF_EN, &v);
    pm->en = (uint16_t)((pm->en & ~mask) | (v & mask));
    mask = covered(offset, size, in, OFF_CNT, &v);
    if (mask) {
        pm->cnt = (uint16_t)((pm->cnt & ~mask) | (v & mask));
        /* SLP_EN acts on the SLP_TYP the register holds now; it never sticks. */
        if ((mask & v & CNT_SLP_EN) &&
            (pm->off_types >> ((pm->cnt & CNT_SLP_TYP_MASK) >> CNT_SLP_TYP_SHIFT) & 1))
            power_off = true;
        pm->cnt &= (uint16_t)~CNT_WRITE_ONLY;
    }
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
    if (power_off && pm->ev.power_off)
        pm->ev.power_off(pm->ev.ctx);
}

static void reset_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct acpi_pm *pm = dev;
    uint8_t *out = bus_byte_register_read(offset, data, size);
    if (!out)
        return;
    pthread_mutex_lock(&pm->lock);
    out[0] = pm->reset_reg;
    pthread_mutex_unlock(&pm->lock);
}

static void reset_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct acpi_pm *pm = dev;
    if (size == 0 || offset != 0)
        return;
    uint8_t v = *(const uint8_t *)data;
    pthread_mutex_lock(&pm->lock);
    pm->reset_reg = v & (uint8_t)~RESET_CPU; /* the reset bit does not stay set */
    pthread_mutex_unlock(&pm->lock);
    if ((v & RESET_CPU) && pm->ev.reset)
        pm->ev.reset(pm->ev.ctx);
}

const struct bus_device_ops acpi_pm_bus_ops = {
    .read = pm_read,
    .write = pm_write,
};

const struct bus_device_ops acpi_pm_reset_bus_ops = {
    .read = reset_read,
    .write = reset_write,
};

void acpi_pm_press_power_button(struct acpi_pm *pm)
{
    if (!pm)
        return;
    pthread_mutex_lock(&pm->lock);
    pm->sts |= STS_PWRBTN;
    update_sci(pm);
    pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_set_power_off_types(struct acpi_pm *pm, uint8_t types)
{
    if (!pm)
        return;
    pthread_mutex_lock(&pm->lock);
    pm->off_types = types;
    pthread_mutex_unlock(&pm->lock);
}

struct acpi_pm *acpi_pm_new(const struct irq_line *sci, const struct machine_events *ev,
                            uint64_t (*now_ns)(void *ctx), void *ctx)
{
    struct acpi_pm *pm = calloc(1, sizeof(*pm));
    if (!pm)
        return NULL;
    if (pthread_mutex_init(&pm->lock, NULL) != 0) {
        free(pm);
        return NULL;
    }
    if (sci)
        pm->sci = *sci;
    if (ev)
        pm->ev = *ev;
    pm->now_ns = now_ns;
    pm->ctx = ctx;
    pm->start_ns = clock_now(pm);
    pm->off_types = 1u << ACPI_PM_S5_SLP_TYP;
    return pm;
}

void acpi_pm_free(struct acpi_pm *pm)
{
    if (!pm)
        return;
    pthread_mutex_destroy(&pm->lock);
    free(pm);
}
