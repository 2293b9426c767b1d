#include "devices/legacy/cmos_rtc.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CMOS_SIZE       128
#define CMOS_INDEX_MASK 0x7f /* bit 7 of the index is the NMI mask */

#define REG_SEC     0x00
#define REG_MIN     0x02
#define REG_HOUR    0x04
#define REG_WDAY    0x06
#define REG_MDAY    0x07
#define REG_MON     0x08
#define REG_YEAR    0x09
#define REG_A       0x0a
#define REG_B       0x0b
#define REG_C       0x0c
#define REG_D       0x0d
#define REG_CENTURY 0x32 /* what the FADT's CENTURY field should name */

#define A_UIP     0x80
#define A_DEFAULT 0x26 /* 32.768 kHz time base, 1024 Hz periodic rate */
#define B_SET     0x80
#define B_BINARY  0x04
#define B_24H     0x02
#define B_DEFAULT B_24H
#define D_VRT     0x80 /* RAM and time are valid */
#define HOUR_PM   0x80

struct cmos_rtc {
    pthread_mutex_t lock;
    time_t (*now)(void *ctx);
    void *ctx;
    int64_t offset; /* guest clock minus host clock, in seconds */
    uint8_t index;
    /* RAM, registers A and B, and while B.SET is on the time registers as the
     * guest wrote them (the clock is stopped then, as on the real part). */
    uint8_t ram[CMOS_SIZE];
};

static bool is_time_reg(unsigned idx)
{
    switch (idx) {
    case REG_SEC:
    case REG_MIN:
    case REG_HOUR:
    case REG_WDAY:
    case REG_MDAY:
    case REG_MON:
    case REG_YEAR:
    case REG_CENTURY: return true;
    default: return false;
    }
}

static int64_t host_now(const struct cmos_rtc *rtc)
{
    return rtc->now ? (int64_t)rtc->now(rtc->ctx) : (int64_t)time(NULL);
}

static uint8_t encode(const struct cmos_rtc *rtc, int v)
{
    v %= 100;
    if (rtc->ram[REG_B] & B_BINARY)
        return (uint8_t)v;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* Guest-written bytes need not be valid BCD; whatever they decode to, timegm()
 * normalises it later. */
static int decode(const struct cmos_rtc *rtc, uint8_t v)
{
    if (rtc->ram[REG_B] & B_BINARY)
        return v;
    return (v >> 4) * 10 + (v & 0x0f);
}

/* The time registers for the guest's clock now, in the format register B asks. */
static void encode_time(const struct cmos_rtc *rtc, uint8_t regs[CMOS_SIZE])
{
    time_t t = (time_t)(host_now(rtc) + rtc->offset);
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof(tm)); /* out of range for the C library: 1900-01-00 */
    long year = (long)tm.tm_year + 1900;
    year = ((year % 10000) + 10000) % 10000;

    regs[REG_SEC] = encode(rtc, tm.tm_sec);
    regs[REG_MIN] = encode(rtc, tm.tm_min);
    if (rtc->ram[REG_B] & B_24H) {
        regs[REG_HOUR] = encode(rtc, tm.tm_hour);
    } else {
        int h12 = tm.tm_hour % 12 == 0 ? 12 : tm.tm_hour % 12;
        regs[REG_HOUR] = encode(rtc, h12) | (tm.tm_hour >= 12 ? HOUR_PM : 0);
    }
    regs[REG_WDAY] = encode(rtc, tm.tm_wday + 1); /* 1 = Sunday */
    regs[REG_MDAY] = encode(rtc, tm.tm_mday);
    regs[REG_MON] = encode(rtc, tm.tm_mon + 1);
    regs[REG_YEAR] = encode(rtc, (int)(year % 100));
    regs[REG_CENTURY] = encode(rtc, (int)(year / 100));
}

/* Makes the guest clock read what the time registers in regs say from now on.
 * The weekday register is derived, so a written weekday is not kept. */
static void commit_time(struct cmos_rtc *rtc, const uint8_t regs[CMOS_SIZE])
{
    struct tm tm = { 0 };
    tm.tm_sec = decode(rtc, regs[REG_SEC]);
    tm.tm_min = decode(rtc, regs[REG_MIN]);
    if (rtc->ram[REG_B] & B_24H) {
        tm.tm_hour = decode(rtc, regs[REG_HOUR]);
    } else {
        uint8_t h = regs[REG_HOUR];
        tm.tm_hour = decode(rtc, h & (uint8_t)~HOUR_PM) % 12 + ((h & HOUR_PM) ? 12 : 0);
    }
    tm.tm_mday = decode(rtc, regs[REG_MDAY]);
    tm.tm_mon = decode(rtc, regs[REG_MON]) - 1;
    tm.tm_year = decode(rtc, regs[REG_CENTURY]) * 100 + decode(rtc, regs[REG_YEAR]) - 1900;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 && tm.tm_year != 69)
        return; /* not representable: keep the clock as it was */
    rtc->offset = (int64_t)t - host_now(rtc);
}

static uint8_t read_data(struct cmos_rtc *rtc)
{
    unsigned idx = rtc->index;
    if (is_time_reg(idx) && !(rtc->ram[REG_B] & B_SET)) {
        uint8_t regs[CMOS_SIZE];
        encode_time(rtc, regs);
        return regs[idx];
    }
    switch (idx) {
    case REG_A:
        return rtc->ram[REG_A] & (uint8_t)~A_UIP; /* never mid-update: reads need no retry */
    case REG_C: return 0;                         /* no interrupt sources are emulated */
    case REG_D: return D_VRT;
    default: return rtc->ram[idx];
    }
}

static void write_data(struct cmos_rtc *rtc, uint8_t v)
{
    unsigned idx = rtc->index;
    if (is_time_reg(idx)) {
        if (rtc->ram[REG_B] & B_SET) {
            rtc->ram[idx] = v; /* taken into the clock when SET is cleared */
        } else {
            uint8_t regs[CMOS_SIZE];
            encode_time(rtc, regs);
            regs[idx] = v;
            commit_time(rtc, regs);
        }
        return;
    }
    switch (idx) {
    case REG_A: rtc->ram[REG_A] = v & (uint8_t)~A_UIP; break;
    case REG_B: {
        bool was_set = rtc->ram[REG_B] & B_SET, set = v & B_SET;
        if (set && !was_set)
            encode_time(rtc, rtc->ram); /* freeze the clock where it is */
        rtc->ram[REG_B] = v;
        if (was_set && !set)
            commit_time(rtc, rtc->ram); /* in the format now in effect */
        break;
    }
    case REG_C:
    case REG_D: break; /* read-only */
    default: rtc->ram[idx] = v; break;
    }
}

static void rtc_bus_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct cmos_rtc *rtc = dev;
    uint8_t *out = data;
    if (size == 0)
        return;
    memset(out, 0xff, size);
    if (offset != 1)
        return; /* the index port is write-only */
    pthread_mutex_lock(&rtc->lock);
    out[0] = read_data(rtc);
    pthread_mutex_unlock(&rtc->lock);
}

static void rtc_bus_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct cmos_rtc *rtc = dev;
    uint8_t v;
    if (size == 0 || offset > 1)
        return;
    v = *(const uint8_t *)data;
    pthread_mutex_lock(&rtc->lock);
    if (offset == 0)
        rtc->index = v & CMOS_INDEX_MASK;
    else
        write_data(rtc, v);
    pthread_mutex_unlock(&rtc->lock);
}

const struct bus_device_ops cmos_rtc_bus_ops = {
    .read = rtc_bus_read,
    .write = rtc_bus_write,
};

struct cmos_rtc *cmos_rtc_new(time_t (*now)(void *ctx), void *ctx)
{
    struct cmos_rtc *rtc = calloc(1, sizeof(*rtc));
    if (!rtc)
        return NULL;
    if (pthread_mutex_init(&rtc->lock, NULL) != 0) {
        free(rtc);
        return NULL;
    }
    rtc->now = now;
    rtc->ctx = ctx;
    rtc->ram[REG_A] = A_DEFAULT;
    rtc->ram[REG_B] = B_DEFAULT;
    return rtc;
}

void cmos_rtc_free(struct cmos_rtc *rtc)
{
    if (!rtc)
        return;
    pthread_mutex_destroy(&rtc->lock);
    free(rtc);
}
