/* vhost_user_blk_bench: 4 KiB random reads or writes against a vhost-user-blk back end,
 * driven by the synthetic front end in tests/support/vhost_user_frontend.c (no guest).
 * Run by bench/vhost_user_blk.sh; see docs/benchmarks.md.
 *
 *   vhost_user_blk_bench --socket PATH [--pid PID] [--label NAME]
 *       [--op randread|randwrite] [--qd N] [--seconds S | --requests N] [--warmup S]
 *       [--seed N] [--queue-size N] [--no-event-idx] [--poll] [--verify-blocks N]
 *
 * First a data check: --verify-blocks (default 64) random 4 KiB blocks are written with a
 * pattern and read back; any difference, bad status or bad used length fails the run
 * (exit 1) before anything is measured. Then one queue is kept at depth --qd: after
 * --warmup seconds (default 0.5) the counters start, after --seconds (default 5) or
 * --requests they stop, and one line of key=value pairs goes to stdout:
 *   label= op= qd= bs=4096 secs= reqs= iops= server_cpu_s= client_cpu_s= kicks= calls=
 * server_cpu_s is the utime + stime of --pid (all its threads, from /proc/PID/stat, in
 * clock ticks), -1 without --pid; client_cpu_s is this process's own CPU time. Every
 * completion's status byte is checked; one error fails the run. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vhost_user_frontend.h"

#define BS              4096u
#define SECTOR          512u
#define HDR_SIZE        16u
#define T_IN            0u
#define T_OUT           1u
#define S_OK            0u
#define BLK_F_SEG_MAX   2
#define BLK_F_BLK_SIZE  6
#define BLK_F_FLUSH     9
#define WAIT_TIMEOUT_MS 5000
#define MAX_QD          1024u

struct slot {
    uint64_t hdr_gpa, data_gpa, status_gpa;
    uint8_t *hdr, *data, *status;
    uint64_t sector;
    bool write;
    bool busy; /* posted, not yet reaped */
};

struct bench {
    struct vuf *f;
    uint64_t blocks; /* 4 KiB blocks on the disk */
    struct slot *slots;
    unsigned nslots;
    int *slot_of_head; /* -1: free */
    uint64_t rng;
    bool poll;
};

struct opts {
    const char *socket, *label, *op;
    long pid;
    unsigned qd, queue_size, verify_blocks;
    double seconds, warmup;
    uint64_t requests, seed;
    bool event_idx, poll;
};

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64*: fast, and good enough to scatter offsets. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

static double now_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of pid in seconds, all threads (dead ones too), or -1. */
static double proc_cpu_s(long pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The pattern word i of a block: depends on the block and the seed, never all zero. */
static uint64_t pattern(uint64_t block, uint64_t i, uint64_t seed)
{
    uint64_t s = (block * 0x9e3779b97f4a7c15u) ^ (i * 0xbf58476d1ce4e5b9u) ^ seed;
    return next_rand(&s) | 1;
}

static int post(struct bench *b, unsigned si, bool write, uint64_t sector)
{
    struct slot *s = &b->slots[si];
    uint32_t type = write ? T_OUT : T_IN;
    memset(s->hdr, 0, HDR_SIZE);
    memcpy(s->hdr, &type, 4);
    memcpy(s->hdr + 8, &sector, 8);
    *s->status = 0xff; /* a back end that does not write it fails the check */
    s->sector = sector;
    s->write = write;
    s->busy = true;
    struct vuf_seg segs[3] = { { s->hdr_gpa, HDR_SIZE, false },
                               { s->data_gpa, BS, !write },
                               { s->status_gpa, 1, true } };
    int head = vuf_post(b->f, 0, segs, 3);
    if (head < 0) {
        fprintf(stderr, "vhost_user_blk_bench: %s\n", vuf_error(b->f));
        return -1;
    }
    b->slot_of_head[head] = (int)si;
    return 0;
}

/* The next completion (waiting up to WAIT_TIMEOUT_MS), checked: its slot, or -1. */
static int reap(struct bench *b, bool wait)
{
    struct vuf_used u;
    int r;
    if (!wait) {
        r = vuf_poll_used(b->f, 0, &u);
    } else if (b->poll) {
        double deadline = now_s(CLOCK_MONOTONIC) + WAIT_TIMEOUT_MS / 1000.0;
        while ((r = vuf_poll_used(b->f, 0, &u)) == 0 && now_s(CLOCK_MONOTONIC) < deadline) {
        }
    } else {
        r = vuf_wait_used(b->f, 0, &u, WAIT_TIMEOUT_MS);
    }
    if (r == 0 && !wait)
        return -2;
    if (r == 0) {
        fprintf(stderr, "vhost_user_blk_bench: no completion within %d ms (%u in flight)\n",
                WAIT_TIMEOUT_MS, vuf_inflight(b->f, 0));
        return -1;
    }
    if (r < 0) {
        fprintf(stderr, "vhost_user_blk_bench: %s\n", vuf_error(b->f));
        return -1;
    }
    int si = b->slot_of_head[u.id];
    if (si < 0) {
        fprintf(stderr, "vhost_user_blk_bench: used head %u belongs to no request\n", u.id);
        return -1;
    }
    b->slot_of_head[u.id] = -1;
    struct slot *s = &b->slots[si];
    s->busy = false;
    if (*s->status != S_OK) {
        fprintf(stderr, "vhost_user_blk_bench: %s of sector %" PRIu64 " ended with status %u\n",
                s->write ? "write" : "read", s->sector, *s->status);
        return -1;
    }
    /* The device writes the data (reads) and the status byte. */
    uint32_t want = s->write ? 1 : BS + 1;
    if (u.len != want) {
        fprintf(stderr,
                "vhost_user_blk_bench: %s of sector %" PRIu64 ": used len %u, expected %u\n",
                s->write ? "write" : "read", s->sector, u.len, want);
        return -1;
    }
    return si;
}

static int kick(struct bench *b)
{
    if (vuf_kick(b->f, 0) < 0) {
        fprintf(stderr, "vhost_user_blk_bench: %s\n", vuf_error(b->f));
        return -1;
    }
    return 0;
}

/* Runs one request per block in blocks[0..n) on slots, depth nslots. */
static int run_batch(struct bench *b, const uint64_t *blocks, unsigned n, bool write, uint64_t seed)
{
    unsigned next = 0, done = 0;
    while (done < n) {
        for (unsigned si = 0; si < b->nslots && next < n; si++) {
            struct slot *s = &b->slots[si];
            if (s->busy)
                continue;
            if (write)
                for (uint64_t w = 0; w < BS / 8; w++) {
                    uint64_t v = pattern(blocks[next], w, seed);
                    memcpy(s->data + w * 8, &v, 8);
                }
            else
                memset(s->data, 0, BS);
            if (post(b, si, write, blocks[next] * (BS / SECTOR)) < 0)
                return -1;
            next++;
        }
        if (kick(b) < 0)
            return -1;
        int si = reap(b, true);
        if (si < 0)
            return -1;
        for (;;) {
            struct slot *s = &b->slots[si];
            if (!write) {
                uint64_t blk = s->sector / (BS / SECTOR);
                for (uint64_t w = 0; w < BS / 8; w++) {
                    uint64_t v, want = pattern(blk, w, seed);
                    memcpy(&v, s->data + w * 8, 8);
                    if (v != want) {
                        fprintf(stderr,
                                "vhost_user_blk_bench: data check: block %" PRIu64
                                " (sector %" PRIu64 ") word %" PRIu64 " reads 0x%016" PRIx64
                                ", wrote 0x%016" PRIx64 "\n",
                                blk, s->sector, w, v, want);
                        return -1;
                    }
                }
            }
            done++;
            si = reap(b, false);
            if (si == -2)
                break;
            if (si < 0)
                return -1;
        }
    }
    return 0;
}

static int verify(struct bench *b, unsigned nblocks, uint64_t seed)
{
    if (nblocks > b->blocks)
        nblocks = (unsigned)b->blocks;
    uint64_t *blocks = calloc(nblocks, sizeof(*blocks));
    if (!blocks)
        return -1;
    for (unsigned i = 0; i < nblocks; i++) {
        bool dup;
        do {
            blocks[i] = next_rand(&b->rng) % b->blocks;
            dup = false;
            for (unsigned j = 0; j < i; j++)
                dup |= blocks[j] == blocks[i];
        } while (dup);
    }
    int r = run_batch(b, blocks, nblocks, true, seed);
    if (!r)
        r = run_batch(b, blocks, nblocks, false, seed);
    free(blocks);
    return r;
}

static void usage(void)
{
    fprintf(stderr, "usage: vhost_user_blk_bench --socket PATH [--pid PID] [--label NAME]\n"
                    "       [--op randread|randwrite] [--qd N] [--seconds S | --requests N]\n"
                    "       [--warmup S] [--seed N] [--queue-size N] [--no-event-idx] [--poll]\n"
                    "       [--verify-blocks N]\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){ .label = "server",
                        .op = "randread",
                        .qd = 1,
                        .queue_size = 128,
                        .verify_blocks = 64,
                        .seconds = 5,
                        .warmup = 0.5,
                        .seed = 1,
                        .event_idx = true };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        bool takes = true;
        errno = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return -1;
        } else if (!strcmp(a, "--no-event-idx")) {
            o->event_idx = false;
            takes = false;
        } else if (!strcmp(a, "--poll")) {
            o->poll = true;
            takes = false;
        } else if (!v) {
            fprintf(stderr, "vhost_user_blk_bench: %s needs a value\n", a);
            return -1;
        } else if (!strcmp(a, "--socket")) {
            o->socket = v;
        } else if (!strcmp(a, "--label")) {
            o->label = v;
        } else if (!strcmp(a, "--op")) {
            if (strcmp(v, "randread") && strcmp(v, "randwrite")) {
                fprintf(stderr, "vhost_user_blk_bench: --op randread or randwrite\n");
                return -1;
            }
            o->op = v;
        } else if (!strcmp(a, "--pid")) {
            o->pid = strtol(v, &end, 10);
        } else if (!strcmp(a, "--qd")) {
            o->qd = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--queue-size")) {
            o->queue_size = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--verify-blocks")) {
            o->verify_blocks = (unsigned)strtoul(v, &end, 10);
        } else if (!strcmp(a, "--seconds")) {
            o->seconds = strtod(v, &end);
        } else if (!strcmp(a, "--warmup")) {
            o->warmup = strtod(v, &end);
        } else if (!strcmp(a, "--requests")) {
            o->requests = strtoull(v, &end, 10);
        } else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, &end, 10);
        } else {
            usage();
            return -1;
        }
        if (takes) {
            if (end && (*end || errno || end == v)) {
                fprintf(stderr, "vhost_user_blk_bench: %s: bad number '%s'\n", a, v);
                return -1;
            }
            i++;
        }
    }
    if (!o->socket) {
        usage();
        return -1;
    }
    if (o->queue_size < 4 || o->queue_size > 32768 || (o->queue_size & (o->queue_size - 1)) ||
        o->qd < 1 || o->qd > MAX_QD || o->qd * 3 > o->queue_size) {
        fprintf(stderr,
                "vhost_user_blk_bench: --queue-size must be a power of two and hold "
                "--qd chains of 3 descriptors (qd 1..%u)\n",
                MAX_QD);
        return -1;
    }
    if (o->seconds <= 0 || o->warmup < 0) {
        fprintf(stderr, "vhost_user_blk_bench: --seconds > 0, --warmup >= 0\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct bench b = { 0 };
    char err[512];
    int rc = 1;
    if (parse(argc, argv, &o) < 0)
        return 2;
    bool write = !strcmp(o.op, "randwrite");

    struct vuf_options fo = vuf_default_options();
    fo.device_features =
        UINT64_C(1) << BLK_F_SEG_MAX | UINT64_C(1) << BLK_F_BLK_SIZE | UINT64_C(1) << BLK_F_FLUSH;
    fo.event_idx = o.event_idx;
    fo.queue_size = (uint16_t)o.queue_size;
    /* Per slot a data page and a page for the header and status; the rings, 1 MiB at
     * most. */
    fo.mem_size = (UINT64_C(1) << 20) + (uint64_t)o.qd * 2 * BS;
    b.f = vuf_open(o.socket, &fo, err, sizeof(err));
    if (!b.f) {
        fprintf(stderr, "vhost_user_blk_bench: %s\n", err);
        return 1;
    }
    b.poll = o.poll;
    b.rng = o.seed * 0x9e3779b97f4a7c15u + 1;
    uint64_t capacity;
    if (vuf_get_config(b.f, 0, &capacity, sizeof(capacity)) < 0) {
        fprintf(stderr, "vhost_user_blk_bench: %s\n", vuf_error(b.f));
        goto out;
    }
    b.blocks = capacity / (BS / SECTOR);
    if (b.blocks == 0) {
        fprintf(stderr, "vhost_user_blk_bench: capacity %" PRIu64 " sectors: under 4 KiB\n",
                capacity);
        goto out;
    }
    b.nslots = o.qd;
    b.slots = calloc(b.nslots, sizeof(*b.slots));
    b.slot_of_head = malloc(o.queue_size * sizeof(*b.slot_of_head));
    if (!b.slots || !b.slot_of_head)
        goto out;
    for (unsigned h = 0; h < o.queue_size; h++)
        b.slot_of_head[h] = -1;
    for (unsigned i = 0; i < b.nslots; i++) {
        struct slot *s = &b.slots[i];
        if (vuf_alloc(b.f, BS, 4096, &s->data_gpa) < 0 ||
            vuf_alloc(b.f, HDR_SIZE, 16, &s->hdr_gpa) < 0 ||
            vuf_alloc(b.f, 1, 1, &s->status_gpa) < 0) {
            fprintf(stderr, "vhost_user_blk_bench: %s\n", vuf_error(b.f));
            goto out;
        }
        s->data = vuf_ptr(b.f, s->data_gpa, BS);
        s->hdr = vuf_ptr(b.f, s->hdr_gpa, HDR_SIZE);
        s->status = vuf_ptr(b.f, s->status_gpa, 1);
    }
    if (o.verify_blocks && verify(&b, o.verify_blocks, o.seed) < 0) {
        fprintf(stderr, "vhost_user_blk_bench: %s: data check failed\n", o.label);
        goto out;
    }
    for (unsigned i = 0; i < b.nslots; i++)
        for (unsigned w = 0; w < BS; w++)
            b.slots[i].data[w] = (uint8_t)(w * 7 + i);

    /* The measured loop: keep qd requests in flight on queue 0. */
    double t0 = now_s(CLOCK_MONOTONIC);
    double t_measure = t0 + o.warmup, t_end = t_measure + o.seconds;
    bool measuring = o.warmup == 0, stopping = false;
    uint64_t reqs = 0, kicks0 = 0, calls0 = 0, kicks1 = 0, calls1 = 0;
    double m_start = t0, srv0 = proc_cpu_s(o.pid), cli0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double m_end = 0, srv1 = 0, cli1 = 0;
    for (unsigned i = 0; i < b.nslots; i++)
        if (post(&b, i, write, (next_rand(&b.rng) % b.blocks) * (BS / SECTOR)) < 0)
            goto out;
    if (kick(&b) < 0)
        goto out;
    while (vuf_inflight(b.f, 0) > 0) {
        int si = reap(&b, true);
        while (si >= 0) {
            if (measuring && !stopping)
                reqs++;
            if (!stopping &&
                post(&b, (unsigned)si, write, (next_rand(&b.rng) % b.blocks) * (BS / SECTOR)) < 0)
                goto out;
            si = reap(&b, false);
        }
        if (si == -1)
            goto out;
        if (!stopping && kick(&b) < 0)
            goto out;
        if (stopping)
            continue;
        double t = now_s(CLOCK_MONOTONIC);
        if (!measuring && t >= t_measure) {
            measuring = true;
            m_start = t;
            srv0 = proc_cpu_s(o.pid);
            cli0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
            kicks0 = vuf_kicks(b.f, 0);
            calls0 = vuf_calls(b.f, 0);
        } else if (measuring && (o.requests ? reqs >= o.requests : t >= t_end)) {
            stopping = true;
            m_end = t;
            srv1 = proc_cpu_s(o.pid);
            cli1 = now_s(CLOCK_PROCESS_CPUTIME_ID);
            kicks1 = vuf_kicks(b.f, 0);
            calls1 = vuf_calls(b.f, 0);
        }
    }
    if (!stopping) {
        fprintf(stderr, "vhost_user_blk_bench: the loop ended early\n");
        goto out;
    }
    double secs = m_end - m_start;
    printf("label=%s op=%s qd=%u bs=%u secs=%.3f reqs=%" PRIu64 " iops=%.0f server_cpu_s=%.3f "
           "client_cpu_s=%.3f kicks=%" PRIu64 " calls=%" PRIu64 "\n",
           o.label, o.op, o.qd, BS, secs, reqs, (double)reqs / secs,
           o.pid > 0 && srv0 >= 0 && srv1 >= 0 ? srv1 - srv0 : -1.0, cli1 - cli0, kicks1 - kicks0,
           calls1 - calls0);
    fflush(stdout);
    uint16_t base;
    if (vuf_queue_stop(b.f, 0, &base) < 0) {
        fprintf(stderr, "vhost_user_blk_bench: %s\n", vuf_error(b.f));
        goto out;
    }
    rc = 0;
out:
    vuf_close(b.f);
    free(b.slots);
    free(b.slot_of_head);
    return rc;
}
