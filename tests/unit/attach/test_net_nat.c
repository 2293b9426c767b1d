/* The NAT link (libslirp) on a real event loop, with a fake device as its peer that records
 * the frames for the guest. The test plays the guest with hand-built Ethernet frames (their
 * checksums right: libslirp checks them) and the host with loopback sockets; it never
 * touches any other address. */
#include "attach/net_nat.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fd_count.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAMES 2048
#define FRAME_CAP  2048 /* frames are kept up to here (wire_len says how long they were) */

#define ETH_ARP  0x0806
#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86dd

#define IP_ICMP   1
#define IP_TCP    6
#define IP_UDP    17
#define IP_ICMPV6 58

#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

#define GUEST_IP 0x0a00020fu /* 10.0.2.15 */
#define HOST_IP  0x0a000202u /* 10.0.2.2 */
#define DNS_IP   0x0a000203u /* 10.0.2.3 */

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

struct frame {
    uint8_t data[FRAME_CAP];
    size_t len;      /* kept */
    size_t wire_len; /* as sent */
};

/* The fake device: records what it takes. */
struct peer {
    pthread_mutex_t lock;
    bool refuse;       /* receive says "no buffers" */
    unsigned offers;   /* receive calls, refused ones too */
    unsigned tx_ready; /* tx_ready calls */
    unsigned count;    /* frames taken (the first MAX_FRAMES kept) */
    bool lock_held_ok; /* every callback ran with the lock held */
    /* The transmit queue, as tx_kick sees it: a frame to send when kicked. */
    struct net_link *link;
    uint8_t tx[64];
    size_t tx_len;
    unsigned tx_kicks;
    unsigned tx_kicks_done;       /* tx_kick_done calls */
    unsigned answers_before_done; /* frames taken when the last tx_kick_done came */
    bool kick_off_test_thread;    /* every tx_kick ran on another thread than the test's */
    pthread_t test_thread;
    struct frame *frames; /* MAX_FRAMES */
};

struct fix {
    struct event_loop *el;
    struct peer peer;
    struct net_link *link;
    bool started;
    unsigned arp_answered; /* frames up to here were looked at for ARP requests */
};

static bool locked(struct peer *p)
{
    /* A default mutex held by this thread: trylock fails (EBUSY). */
    if (pthread_mutex_trylock(&p->lock) == 0) {
        pthread_mutex_unlock(&p->lock);
        return false;
    }
    return true;
}

static bool peer_receive(void *ctx, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct peer *p = ctx;
    p->lock_held_ok &= locked(p);
    p->offers++;
    if (p->refuse)
        return false;
    if (p->count < MAX_FRAMES) {
        struct frame *f = &p->frames[p->count];
        size_t done = 0;
        for (unsigned i = 0; i < iovcnt && done < len && done < FRAME_CAP; i++) {
            size_t n = iov[i].iov_len;
            if (n > FRAME_CAP - done)
                n = FRAME_CAP - done;
            memcpy(f->data + done, iov[i].iov_base, n);
            done += n;
        }
        f->len = done;
        f->wire_len = len;
    }
    p->count++;
    return true;
}

static void peer_tx_ready(void *ctx)
{
    struct peer *p = ctx;
    p->lock_held_ok &= locked(p);
    p->tx_ready++;
}

/* As a device's transmit run: what the guest queued goes to the link, lock held. */
static void peer_tx_kick(void *ctx)
{
    struct peer *p = ctx;
    p->lock_held_ok &= locked(p);
    p->kick_off_test_thread &= !pthread_equal(pthread_self(), p->test_thread);
    p->tx_kicks++;
    if (p->tx_len) {
        struct iovec iov = { .iov_base = p->tx, .iov_len = p->tx_len };
        assert_int_equal(p->link->ops->send(p->link, &iov, 1, p->tx_len), 0);
        p->tx_len = 0;
    }
}

/* After the NAT handled what tx_kick sent: the device interrupts the guest for it then. */
static void peer_tx_kick_done(void *ctx)
{
    struct peer *p = ctx;
    p->lock_held_ok &= locked(p);
    p->tx_kicks_done++;
    p->answers_before_done = p->count;
}

static void peer_link_changed(void *ctx, bool up, const char *why)
{
    (void)ctx, (void)up, (void)why;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    if (!f || event_loop_new(&f->el) != 0)
        return -1;
    f->peer.frames = calloc(MAX_FRAMES, sizeof(struct frame));
    if (!f->peer.frames)
        return -1;
    pthread_mutex_init(&f->peer.lock, NULL);
    f->peer.lock_held_ok = true;
    f->peer.kick_off_test_thread = true;
    f->peer.test_thread = pthread_self();
    *state = f;
    return 0;
}

static void stop_link(struct fix *f)
{
    if (f->started)
        f->link->ops->stop(f->link);
    f->started = false;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    if (f->link) {
        stop_link(f);
        f->link->ops->destroy(f->link);
    }
    assert_true(f->peer.lock_held_ok);
    pthread_mutex_destroy(&f->peer.lock);
    event_loop_free(f->el);
    free(f->peer.frames);
    free(f);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void start(struct fix *f, const struct net_nat_params *p)
{
    vmk_error *err = NULL;
    vmk_result r = net_nat_new(p, "network device 1", &f->link, &err);
    if (r != VMK_OK)
        fail_msg("net_nat_new: %s", vmk_error_message(err));
    assert_false(f->link->vnet_hdr);
    assert_int_equal(f->link->offloads, 0);
    struct net_link_peer peer = { .receive = peer_receive,
                                  .tx_ready = peer_tx_ready,
                                  .tx_kick = peer_tx_kick,
                                  .tx_kick_done = peer_tx_kick_done,
                                  .link_changed = peer_link_changed,
                                  .ctx = &f->peer,
                                  .lock = &f->peer.lock };
    f->peer.link = f->link;
    assert_int_equal(f->link->ops->start(f->link, f->el, &peer), 0);
    f->started = true;
}

static void start_plain(struct fix *f)
{
    struct net_nat_params p = { .host_loopback = true };
    start(f, &p);
}

/* ---- building frames ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t s)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        s += get16(p + i);
    if (len & 1)
        s += (uint32_t)p[len - 1] << 8;
    return s;
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static size_t eth(uint8_t *buf, const uint8_t dst[6], uint16_t type)
{
    memcpy(buf, dst, 6);
    memcpy(buf + 6, guest_mac, 6);
    put16(buf + 12, type);
    return 14;
}

/* An IPv4 frame around an L4 payload; the TCP or UDP checksum is filled in. */
static size_t ipv4_frame(uint8_t *buf, const uint8_t dst_mac[6], uint32_t src, uint32_t dst,
                         uint8_t proto, const uint8_t *l4, size_t l4_len)
{
    size_t off = eth(buf, dst_mac, ETH_IPV4);
    uint8_t *ip = buf + off;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + l4_len));
    put16(ip + 4, 0x1234);
    ip[8] = 64;
    ip[9] = proto;
    put32(ip + 12, src);
    put32(ip + 16, dst);
    put16(ip + 10, fold(sum16(ip, 20, 0)));
    uint8_t *l = ip + 20;
    memcpy(l, l4, l4_len);
    if (proto == IP_TCP || proto == IP_UDP) {
        size_t at = proto == IP_TCP ? 16 : 6;
        put16(l + at, 0);
        uint32_t s = sum16(ip + 12, 8, proto + (uint32_t)l4_len); /* the pseudo-header */
        uint16_t c = fold(sum16(l, l4_len, s));
        put16(l + at, proto == IP_UDP && c == 0 ? 0xffff : c);
    } else if (proto == IP_ICMP) {
        put16(l + 2, 0);
        put16(l + 2, fold(sum16(l, l4_len, 0)));
    }
    return off + 20 + l4_len;
}

static size_t udp_frame(uint8_t *buf, const uint8_t dst_mac[6], uint32_t src, uint16_t sport,
                        uint32_t dst, uint16_t dport, const void *data, size_t len)
{
    uint8_t l4[1500];
    put16(l4, sport);
    put16(l4 + 2, dport);
    put16(l4 + 4, (uint16_t)(8 + len));
    put16(l4 + 6, 0);
    memcpy(l4 + 8, data, len);
    return ipv4_frame(buf, dst_mac, src, dst, IP_UDP, l4, 8 + len);
}

/* A TCP segment; mss (when not 0) goes in an MSS option, as a SYN's. */
static size_t tcp_segment(uint8_t *buf, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
                          uint32_t seq, uint32_t ack, uint8_t flags, unsigned mss, const void *data,
                          size_t len)
{
    uint8_t l4[9000];
    size_t hdr = mss ? 24 : 20;
    assert_true(len <= sizeof(l4) - hdr);
    memset(l4, 0, hdr);
    put16(l4, sport);
    put16(l4 + 2, dport);
    put32(l4 + 4, seq);
    put32(l4 + 8, ack);
    l4[12] = (uint8_t)((hdr / 4) << 4);
    l4[13] = flags;
    put16(l4 + 14, 65535);
    if (mss) {
        l4[20] = 2;
        l4[21] = 4;
        put16(l4 + 22, (uint16_t)mss);
    }
    if (len)
        memcpy(l4 + hdr, data, len);
    /* slirp's own MAC for 10.0.2.2 is whatever: it takes any destination. */
    return ipv4_frame(buf, bcast_mac, src, dst, IP_TCP, l4, hdr + len);
}

static size_t tcp_frame(uint8_t *buf, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
                        uint32_t seq, uint32_t ack, uint8_t flags, const void *data, size_t len)
{
    return tcp_segment(buf, src, sport, dst, dport, seq, ack, flags, 0, data, len);
}

/* The MSS option of a TCP header (0: none). */
static unsigned tcp_mss_option(const uint8_t *tcp, size_t len)
{
    size_t end = (size_t)(tcp[12] >> 4) * 4;
    for (size_t i = 20; i < end && i < len;) {
        if (tcp[i] == 0)
            break;
        if (tcp[i] == 1) {
            i++;
            continue;
        }
        if (i + 1 >= len || tcp[i + 1] < 2)
            break;
        if (tcp[i] == 2 && tcp[i + 1] == 4 && i + 4 <= len)
            return get16(tcp + i + 2);
        i += tcp[i + 1];
    }
    return 0;
}

static size_t arp_frame(uint8_t *buf, uint16_t op, const uint8_t dst_mac[6],
                        const uint8_t target_mac[6], uint32_t sender_ip, uint32_t target_ip)
{
    size_t off = eth(buf, dst_mac, ETH_ARP);
    uint8_t *a = buf + off;
    put16(a, 1);
    put16(a + 2, ETH_IPV4);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, guest_mac, 6);
    put32(a + 14, sender_ip);
    memcpy(a + 18, target_mac, 6);
    put32(a + 24, target_ip);
    return off + 28;
}

/* The guest's addresses from its MAC (EUI-64): site-local fec0::/64 and link-local. */
static const uint8_t guest_ip6[16] = { 0xfe, 0xc0, 0, 0,    0,    0,    0,    0,
                                       0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56 };
static const uint8_t guest_ll6[16] = { 0xfe, 0x80, 0, 0,    0,    0,    0,    0,
                                       0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56 };

/* An IPv6 frame around an ICMPv6, TCP or UDP payload, its checksum filled in. */
static size_t ipv6_frame(uint8_t *buf, const uint8_t dst_mac[6], const uint8_t src[16],
                         const uint8_t dst[16], uint8_t next, const uint8_t *l4, size_t l4_len)
{
    size_t off = eth(buf, dst_mac, ETH_IPV6);
    uint8_t *ip6 = buf + off;
    memset(ip6, 0, 40);
    ip6[0] = 0x60;
    put16(ip6 + 4, (uint16_t)l4_len);
    ip6[6] = next;
    ip6[7] = 255;
    memcpy(ip6 + 8, src, 16);
    memcpy(ip6 + 24, dst, 16);
    uint8_t *l = ip6 + 40;
    memcpy(l, l4, l4_len);
    size_t at = next == IP_TCP ? 16 : next == IP_UDP ? 6 : 2;
    put16(l + at, 0);
    uint32_t sum = sum16(ip6 + 8, 32, next + (uint32_t)l4_len); /* the pseudo-header */
    put16(l + at, fold(sum16(l, l4_len, sum)));
    return off + 40 + l4_len;
}

/* The guest shows its IPv6 address: a neighbor solicitation for fec0::2 from it. */
static size_t neighbor_solicit(uint8_t *buf)
{
    const uint8_t mac[6] = { 0x33, 0x33, 0xff, 0, 0, 2 };
    const uint8_t dst[16] = { 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2 };
    uint8_t ns[32] = { 135 };
    ns[8] = 0xfe;
    ns[9] = 0xc0;
    ns[23] = 2; /* target fec0::2 */
    ns[24] = 1; /* source link-layer address */
    ns[25] = 1;
    memcpy(ns + 26, guest_mac, 6);
    return ipv6_frame(buf, mac, guest_ip6, dst, IP_ICMPV6, ns, sizeof(ns));
}

/* The guest sends a frame: as the device does, with the lock held. */
static int send_frame(struct fix *f, const uint8_t *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    pthread_mutex_lock(&f->peer.lock);
    int r = f->link->ops->send(f->link, &iov, 1, len);
    pthread_mutex_unlock(&f->peer.lock);
    return r;
}

/* ---- reading frames ---- */

struct ipv4 {
    uint8_t proto;
    uint32_t src, dst;
    const uint8_t *l4;
    size_t l4_len;
};

static bool parse_ipv4(const struct frame *fr, struct ipv4 *out)
{
    if (fr->len < 34 || get16(fr->data + 12) != ETH_IPV4)
        return false;
    const uint8_t *ip = fr->data + 14;
    size_t ihl = (size_t)(ip[0] & 15) * 4, total = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl || 14 + total > fr->len)
        return false;
    /* What the NAT sends has its checksums right too. */
    assert_int_equal(fold(sum16(ip, ihl, 0)), 0);
    *out = (struct ipv4){ .proto = ip[9],
                          .src = get32(ip + 12),
                          .dst = get32(ip + 16),
                          .l4 = ip + ihl,
                          .l4_len = total - ihl };
    if (out->proto == IP_TCP || out->proto == IP_UDP) {
        uint32_t s = sum16(ip + 12, 8, out->proto + (uint32_t)out->l4_len);
        if (!(out->proto == IP_UDP && out->l4_len >= 8 && get16(out->l4 + 6) == 0))
            assert_int_equal(fold(sum16(out->l4, out->l4_len, s)), 0);
    }
    return true;
}

/* Answers the NAT's ARP requests for the guest's address, as the guest would. */
static void answer_arp(struct fix *f)
{
    for (; f->arp_answered < f->peer.count && f->arp_answered < MAX_FRAMES; f->arp_answered++) {
        const struct frame *fr = &f->peer.frames[f->arp_answered];
        const uint8_t *a = fr->data + 14;
        if (fr->len < 42 || get16(fr->data + 12) != ETH_ARP || get16(a + 6) != 1 ||
            get32(a + 24) != GUEST_IP)
            continue;
        uint8_t buf[64];
        size_t len = arp_frame(buf, 2, a + 8, a + 8, GUEST_IP, get32(a + 14));
        assert_int_equal(send_frame(f, buf, len), 0);
    }
}

typedef bool (*frame_match)(const struct frame *fr, const void *want);

/* What the peer got, for a failure's report. */
static void dump_frames(const struct fix *f)
{
    for (unsigned i = 0; i < f->peer.count && i < MAX_FRAMES; i++) {
        const struct frame *fr = &f->peer.frames[i];
        const uint8_t *d = fr->data;
        print_message("# frame %u: %zu bytes, type %04x", i, fr->len, get16(d + 12));
        if (get16(d + 12) == ETH_IPV4 && fr->len >= 34)
            print_message(" proto %u %08x -> %08x l4 %02x %02x %02x %02x", d[23], get32(d + 26),
                          get32(d + 30), d[34], d[35], d[36], d[37]);
        if (get16(d + 12) == ETH_IPV6 && fr->len >= 55)
            print_message(" next %u type %u", d[20], d[54]);
        print_message("\n");
    }
}

/* Runs the loop until a frame from index `from` on matches (3 s at most): its index, or -1. */
static int wait_frame(struct fix *f, unsigned from, frame_match match, const void *want)
{
    double end = now() + 3;
    for (;;) {
        for (unsigned i = from; i < f->peer.count && i < MAX_FRAMES; i++)
            if (match(&f->peer.frames[i], want))
                return (int)i;
        if (now() > end)
            return -1;
        assert_true(event_loop_run_once(f->el, 10) >= 0);
        answer_arp(f);
    }
}

/* wait_frame that must find one: its index (a failure lists what came instead). */
static unsigned expect_frame(struct fix *f, unsigned from, frame_match match, const void *want)
{
    int i = wait_frame(f, from, match, want);
    if (i < 0) {
        dump_frames(f);
        fail_msg("no such frame came");
    }
    return (unsigned)i;
}

/* Runs the loop for about ms milliseconds. */
static void run_for(struct fix *f, int ms)
{
    double end = now() + ms / 1000.0;
    while (now() < end) {
        assert_true(event_loop_run_once(f->el, 10) >= 0);
        answer_arp(f);
    }
}

struct l4_want {
    uint8_t proto;
    uint32_t src, dst; /* 0: any */
    uint16_t sport, dport;
    uint8_t flags, flags_mask; /* TCP */
    const char *payload;       /* NULL: any */
};

static bool match_l4(const struct frame *fr, const void *w_)
{
    const struct l4_want *w = w_;
    struct ipv4 ip;
    if (!parse_ipv4(fr, &ip) || ip.proto != w->proto || (w->src && ip.src != w->src) ||
        (w->dst && ip.dst != w->dst))
        return false;
    size_t hl = 8;
    if (ip.proto == IP_TCP) {
        if (ip.l4_len < 20)
            return false;
        hl = (size_t)(ip.l4[12] >> 4) * 4;
        if ((ip.l4[13] & w->flags_mask) != w->flags)
            return false;
    }
    if (ip.l4_len < hl || (w->sport && get16(ip.l4) != w->sport) ||
        (w->dport && get16(ip.l4 + 2) != w->dport))
        return false;
    if (!w->payload)
        return true;
    size_t n = strlen(w->payload);
    return ip.l4_len - hl == n && !memcmp(ip.l4 + hl, w->payload, n);
}

static bool match_arp_reply(const struct frame *fr, const void *want_ip)
{
    const uint8_t *a = fr->data + 14;
    return fr->len >= 42 && get16(fr->data + 12) == ETH_ARP && get16(a + 6) == 2 &&
           get32(a + 14) == *(const uint32_t *)want_ip;
}

/* ---- host sockets ---- */

/* A loopback port free now (the kernel's pick). */
static unsigned free_port(int type)
{
    int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

static int loopback_socket(int family, int type, unsigned port, bool do_bind)
{
    int s = socket(family, type | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct sockaddr_storage ss = { 0 };
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        *a = (struct sockaddr_in){ .sin_family = AF_INET,
                                   .sin_port = htons((uint16_t)port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        *a = (struct sockaddr_in6){ .sin6_family = AF_INET6,
                                    .sin6_port = htons((uint16_t)port),
                                    .sin6_addr = in6addr_loopback };
        len = sizeof(*a);
    }
    int r =
        do_bind ? bind(s, (struct sockaddr *)&ss, len) : connect(s, (struct sockaddr *)&ss, len);
    if (r < 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

/* Reads what fd gets within 3 s (running the loop meanwhile) and compares it with want. */
/* Reads len bytes from fd (the event loop turning meanwhile) and checks they are want's. */
static void expect_read_bytes(struct fix *f, int fd, const void *want, size_t len)
{
    size_t got = 0;
    static uint8_t buf[16384];
    assert_true(len <= sizeof(buf));
    double end = now() + 5;
    while (got < len && now() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_true(event_loop_run_once(f->el, 0) >= 0);
        answer_arp(f);
        if (poll(&p, 1, 10) <= 0)
            continue;
        ssize_t n = read(fd, buf + got, len - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, len);
    assert_memory_equal(buf, want, len);
}

static void expect_read(struct fix *f, int fd, const char *want)
{
    expect_read_bytes(f, fd, want, strlen(want));
}

static struct net_nat_forward forward(bool udp, const char *addr, unsigned host_port,
                                      unsigned guest_port)
{
    struct net_nat_forward fw = { .udp = udp, .host_port = host_port, .guest_port = guest_port };
    snprintf(fw.host_address, sizeof(fw.host_address), "%s", addr);
    return fw;
}

/* ---- the tests ---- */

static bool match_dhcp_offer(const struct frame *fr, const void *unused)
{
    (void)unused;
    struct ipv4 ip;
    return parse_ipv4(fr, &ip) && ip.proto == IP_UDP && ip.l4_len >= 8 + 240 &&
           get16(ip.l4) == 67 && get16(ip.l4 + 2) == 68;
}

/* The value of DHCP option `code` (its length in *len), or NULL. */
static const uint8_t *dhcp_option(const uint8_t *opt, size_t len, uint8_t code, size_t *olen)
{
    size_t i = 0;
    while (i < len && opt[i] != 255) {
        if (opt[i] == 0) {
            i++;
            continue;
        }
        if (i + 2 > len || i + 2 + opt[i + 1] > len)
            return NULL;
        if (opt[i] == code) {
            *olen = opt[i + 1];
            return opt + i + 2;
        }
        i += 2 + (size_t)opt[i + 1];
    }
    return NULL;
}

static void test_dhcp_offer(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    /* DISCOVER: a full BOOTP body (libslirp wants the 312-byte options area too). */
    uint8_t bootp[236 + 312] = { 0 };
    bootp[0] = 1; /* BOOTREQUEST */
    bootp[1] = 1; /* Ethernet */
    bootp[2] = 6;
    put32(bootp + 4, 0xdeadbeef); /* xid */
    put16(bootp + 10, 0x8000);    /* broadcast */
    memcpy(bootp + 28, guest_mac, 6);
    put32(bootp + 236, 0x63825363);
    uint8_t opts[] = { 53, 1, 1, 255 }; /* DHCPDISCOVER */
    memcpy(bootp + 240, opts, sizeof(opts));
    uint8_t buf[1024];
    size_t len = udp_frame(buf, bcast_mac, 0, 68, 0xffffffff, 67, bootp, sizeof(bootp));
    assert_int_equal(send_frame(f, buf, len), 0);

    unsigned i = expect_frame(f, 0, match_dhcp_offer, NULL);
    struct ipv4 ip;
    assert_true(parse_ipv4(&f->peer.frames[i], &ip));
    assert_int_equal(ip.src, HOST_IP);
    const uint8_t *bp = ip.l4 + 8;
    size_t bp_len = ip.l4_len - 8;
    assert_int_equal(bp[0], 2); /* BOOTREPLY */
    assert_int_equal(get32(bp + 4), 0xdeadbeef);
    assert_int_equal(get32(bp + 16), GUEST_IP); /* yiaddr */
    assert_memory_equal(bp + 28, guest_mac, 6);
    assert_int_equal(get32(bp + 236), 0x63825363);
    size_t olen = 0;
    const uint8_t *o = dhcp_option(bp + 240, bp_len - 240, 53, &olen);
    assert_non_null(o);
    assert_int_equal(olen, 1);
    assert_int_equal(o[0], 2); /* DHCPOFFER */
    o = dhcp_option(bp + 240, bp_len - 240, 3, &olen);
    assert_non_null(o);
    assert_int_equal(get32(o), HOST_IP); /* router */
    o = dhcp_option(bp + 240, bp_len - 240, 6, &olen);
    assert_non_null(o);
    assert_int_equal(get32(o), DNS_IP);
    o = dhcp_option(bp + 240, bp_len - 240, 1, &olen);
    assert_non_null(o);
    assert_int_equal(get32(o), 0xffffff00); /* /24 */
}

/* The guest asks who has IP (an ARP request), as send does under the peer's lock. */
static void ask_arp(struct fix *f, uint32_t ip)
{
    uint8_t buf[64];
    const uint8_t zero[6] = { 0 };
    size_t len = arp_frame(buf, 1, bcast_mac, zero, GUEST_IP, ip);
    assert_int_equal(send_frame(f, buf, len), 0);
}

/* Waits (3 s at most) for the peer to hold more than `had` frames, without running the event
 * loop; returns how many it holds. */
static unsigned frames_beyond(struct fix *f, unsigned had)
{
    double end = now() + 3;
    unsigned count = had;
    while (count == had && now() < end) {
        usleep(5000);
        pthread_mutex_lock(&f->peer.lock);
        count = f->peer.count;
        pthread_mutex_unlock(&f->peer.lock);
    }
    return count;
}

static void test_arp_reply(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    ask_arp(f, HOST_IP);
    uint32_t want = HOST_IP;
    unsigned i = expect_frame(f, 0, match_arp_reply, &want);
    const struct frame *fr = &f->peer.frames[i];
    assert_memory_equal(fr->data, guest_mac, 6); /* to us */
    const uint8_t *a = fr->data + 14;
    assert_memory_equal(a + 18, guest_mac, 6);
    assert_int_equal(get32(a + 24), GUEST_IP);
    /* The gateway's MAC is slirp's own (52:55:...), not ours. */
    assert_memory_not_equal(a + 8, guest_mac, 6);
}

/* A host client's connection through a forward, as far as the SYN that reached the guest. */
struct forwarded {
    int c;          /* the host client's socket */
    unsigned frame; /* the SYN's index among the frames the peer got */
    uint32_t peer_ip, seq;
    uint16_t peer_port;
    unsigned mss; /* the SYN's MSS option */
};

/* Starts the NAT (at mtu; 0: its default) with one TCP forward from a free loopback port to
 * guest port 22, connects a host client to it and waits for the SYN that reaches the guest. */
static struct forwarded connect_through_forward(struct fix *f, unsigned mtu)
{
    unsigned port = free_port(SOCK_STREAM);
    struct net_nat_forward fw = forward(false, "127.0.0.1", port, 22);
    struct net_nat_params p = {
        .host_loopback = true, .mtu = mtu, .forwards = &fw, .forward_count = 1
    };
    start(f, &p);
    int c = loopback_socket(AF_INET, SOCK_STREAM, port, false);
    assert_true(c >= 0);
    struct l4_want syn = { .proto = IP_TCP,
                           .dst = GUEST_IP,
                           .dport = 22,
                           .flags = TCP_SYN,
                           .flags_mask = TCP_SYN | TCP_ACK };
    struct forwarded fw_conn = { .c = c, .frame = expect_frame(f, 0, match_l4, &syn) };
    struct ipv4 ip;
    assert_true(parse_ipv4(&f->peer.frames[fw_conn.frame], &ip));
    fw_conn.peer_ip = ip.src;
    fw_conn.seq = get32(ip.l4 + 4);
    fw_conn.peer_port = get16(ip.l4);
    fw_conn.mss = tcp_mss_option(ip.l4, ip.l4_len);
    return fw_conn;
}

/* A host connection to a forwarded TCP port becomes a connection to the guest: SYN, then
 * (the test completing the handshake as the guest) data both ways. */
static void test_tcp_forward(void **state)
{
    struct fix *f = *state;
    struct forwarded fc = connect_through_forward(f, 0);
    int c = fc.c;
    unsigned i = fc.frame;
    uint32_t peer_ip = fc.peer_ip, seq = fc.seq;
    uint16_t peer_port = fc.peer_port;
    struct ipv4 ip;
    assert_int_equal(peer_ip, HOST_IP); /* the host's loopback appears as the gateway */
    assert_int_equal(fc.mss, 1460);     /* Ethernet's 1500 */

    uint8_t buf[256];
    uint32_t my_seq = 1000;
    size_t len = tcp_frame(buf, GUEST_IP, 22, peer_ip, peer_port, my_seq, seq + 1,
                           TCP_SYN | TCP_ACK, NULL, 0);
    assert_int_equal(send_frame(f, buf, len), 0);
    my_seq++;

    assert_int_equal(write(c, "ping", 4), 4);
    struct l4_want data = { .proto = IP_TCP,
                            .dst = GUEST_IP,
                            .dport = 22,
                            .flags = TCP_ACK,
                            .flags_mask = TCP_ACK | TCP_SYN,
                            .payload = "ping" };
    i = expect_frame(f, i + 1, match_l4, &data);
    assert_true(parse_ipv4(&f->peer.frames[i], &ip));
    assert_int_equal(get32(ip.l4 + 4), seq + 1);

    len = tcp_frame(buf, GUEST_IP, 22, peer_ip, peer_port, my_seq, seq + 1 + 4, TCP_PSH | TCP_ACK,
                    "pong", 4);
    assert_int_equal(send_frame(f, buf, len), 0);
    expect_read(f, c, "pong");

    /* The host end resets while the guest goes on sending: the guest hears a reset (and
     * should libslirp write to the dead socket first, its SIGPIPE must not end the test). */
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    assert_int_equal(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(c);
    my_seq += 4;
    for (int k = 0; k < 5; k++, my_seq += 4) {
        len = tcp_frame(buf, GUEST_IP, 22, peer_ip, peer_port, my_seq, seq + 1 + 4,
                        TCP_PSH | TCP_ACK, "more", 4);
        assert_int_equal(send_frame(f, buf, len), 0);
        run_for(f, 30);
    }
    struct l4_want rst = {
        .proto = IP_TCP, .dst = GUEST_IP, .dport = 22, .flags = TCP_RST, .flags_mask = TCP_RST
    };
    expect_frame(f, i + 1, match_l4, &rst);
}

/* The NAT takes the guest's MTU: at 9000 it offers an MSS of 8960, sends the guest frames
 * longer than Ethernet's, and takes a 8000-byte segment from it. */
static void test_mtu_follows_guest(void **state)
{
    struct fix *f = *state;
    struct forwarded fc = connect_through_forward(f, 9000);
    assert_int_equal(fc.mss, 9000 - 40);

    static uint8_t buf[9100];
    uint32_t my_seq = 1000;
    size_t len = tcp_segment(buf, GUEST_IP, 22, fc.peer_ip, fc.peer_port, my_seq, fc.seq + 1,
                             TCP_SYN | TCP_ACK, 9000 - 40, NULL, 0);
    assert_int_equal(send_frame(f, buf, len), 0);
    my_seq++;

    /* Host to guest: 20000 bytes leave in segments of up to 8960. */
    static uint8_t payload[20000];
    for (size_t k = 0; k < sizeof(payload); k++)
        payload[k] = (uint8_t)(k * 7);
    assert_int_equal(write(fc.c, payload, sizeof(payload)), (ssize_t)sizeof(payload));
    run_for(f, 300);
    size_t longest = 0;
    for (unsigned k = fc.frame + 1; k < f->peer.count && k < MAX_FRAMES; k++)
        longest = f->peer.frames[k].wire_len > longest ? f->peer.frames[k].wire_len : longest;
    assert_true(longest > 1514);
    assert_true(longest <= 14 + 9000);

    /* Guest to host: one 8000-byte segment. */
    len = tcp_frame(buf, GUEST_IP, 22, fc.peer_ip, fc.peer_port, my_seq, fc.seq + 1,
                    TCP_PSH | TCP_ACK, payload, 8000);
    assert_int_equal(send_frame(f, buf, len), 0);
    expect_read_bytes(f, fc.c, payload, 8000);
    close(fc.c);
}

/* A datagram to a forwarded UDP port reaches the guest's port; the guest's answer gets back. */
static void test_udp_forward(void **state)
{
    struct fix *f = *state;
    unsigned port = free_port(SOCK_DGRAM);
    struct net_nat_forward fw = forward(true, "127.0.0.1", port, 5000);
    struct net_nat_params p = { .host_loopback = true, .forwards = &fw, .forward_count = 1 };
    start(f, &p);
    int c = loopback_socket(AF_INET, SOCK_DGRAM, port, false);
    assert_true(c >= 0);
    assert_int_equal(send(c, "hello guest", 11, 0), 11);

    struct l4_want want = {
        .proto = IP_UDP, .dst = GUEST_IP, .dport = 5000, .payload = "hello guest"
    };
    unsigned i = expect_frame(f, 0, match_l4, &want);
    struct ipv4 ip;
    assert_true(parse_ipv4(&f->peer.frames[i], &ip));

    uint8_t buf[256];
    size_t len = udp_frame(buf, f->peer.frames[i].data + 6, GUEST_IP, 5000, ip.src, get16(ip.l4),
                           "hello host", 10);
    assert_int_equal(send_frame(f, buf, len), 0);
    expect_read(f, c, "hello host");
    close(c);
}

static void test_forward_errors(void **state)
{
    struct fix *f = *state;
    int busy = loopback_socket(AF_INET, SOCK_STREAM, 0, true);
    assert_true(busy >= 0);
    assert_int_equal(listen(busy, 1), 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    assert_int_equal(getsockname(busy, (struct sockaddr *)&a, &alen), 0);
    unsigned busy_port = ntohs(a.sin_port);

    /* At creation: the port in use fails the whole link, with the system's reason. */
    unsigned other = free_port(SOCK_STREAM);
    struct net_nat_forward fws[2] = { forward(false, "127.0.0.1", other, 22),
                                      forward(false, "127.0.0.1", busy_port, 22) };
    struct net_nat_params p = { .host_loopback = true, .forwards = fws, .forward_count = 2 };
    struct net_link *l = NULL;
    vmk_error *err = NULL;
    int fds = fd_count();
    assert_int_equal(net_nat_new(&p, "network device 1", &l, &err), VMK_ERR_IO);
    assert_null(l);
    char want[128];
    snprintf(want, sizeof(want), "network device 1: 127.0.0.1:%u: Address already in use",
             busy_port);
    assert_string_equal(vmk_error_message(err), want);
    assert_int_equal(vmk_error_errno(err), EADDRINUSE);
    vmk_error_free(err);
    err = NULL;
    assert_int_equal(fd_count(), fds); /* the first forward's socket went with it */

    /* Bad arguments. */
    struct net_nat_forward bad = forward(false, "localhost", other, 22);
    p = (struct net_nat_params){ .forwards = &bad, .forward_count = 1 };
    assert_int_equal(net_nat_new(&p, "network device 1", &l, &err), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(err);
    err = NULL;
    bad = forward(false, "127.0.0.1", 0, 22);
    assert_int_equal(net_nat_new(&p, "network device 1", &l, &err), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(err);
    err = NULL;

    /* At run time: add, a second time (busy), remove, remove again (not there). */
    start_plain(f);
    struct net_nat_forward fw = forward(false, "127.0.0.1", other, 2222);
    assert_int_equal(net_nat_add_forward(f->link, &fw, &err), VMK_OK);
    int c = loopback_socket(AF_INET, SOCK_STREAM, other, false);
    assert_true(c >= 0);
    struct l4_want syn = { .proto = IP_TCP,
                           .dst = GUEST_IP,
                           .dport = 2222,
                           .flags = TCP_SYN,
                           .flags_mask = TCP_SYN | TCP_ACK };
    expect_frame(f, 0, match_l4, &syn);
    close(c);
    assert_int_equal(net_nat_add_forward(f->link, &fw, &err), VMK_ERR_IO);
    snprintf(want, sizeof(want), "network device 1: 127.0.0.1:%u: Address already in use", other);
    assert_string_equal(vmk_error_message(err), want);
    vmk_error_free(err);
    err = NULL;
    assert_int_equal(net_nat_remove_forward(f->link, &fw, &err), VMK_OK);
    c = loopback_socket(AF_INET, SOCK_STREAM, other, false);
    assert_int_equal(c, -1);
    assert_int_equal(errno, ECONNREFUSED);
    assert_int_equal(net_nat_remove_forward(f->link, &fw, &err), VMK_ERR_INVALID_ARGUMENT);
    snprintf(want, sizeof(want), "network device 1: no forward from 127.0.0.1:%u", other);
    assert_string_equal(vmk_error_message(err), want);
    vmk_error_free(err);
    err = NULL;

    /* A UDP forward on the TCP port in use is another socket: fine. */
    fw = forward(true, "127.0.0.1", busy_port, 53);
    assert_int_equal(net_nat_add_forward(f->link, &fw, &err), VMK_OK);
    assert_int_equal(net_nat_remove_forward(f->link, &fw, &err), VMK_OK);

    /* After stop, the caller's thread does the work. */
    stop_link(f);
    fw = forward(false, "127.0.0.1", other, 22);
    assert_int_equal(net_nat_add_forward(f->link, &fw, &err), VMK_OK);
    assert_int_equal(net_nat_remove_forward(f->link, &fw, &err), VMK_OK);
    close(busy);
}

/* Run-time changes from other threads while the guest's traffic flows, and on across a
 * stop (after which the callers' threads do the work). */
struct adder {
    struct net_link *link;
    unsigned port;
    atomic_bool *done;
    unsigned rounds, failures;
};

static void *add_remove_loop(void *arg)
{
    struct adder *a = arg;
    struct net_nat_forward fw = forward(true, "127.0.0.1", a->port, 7);
    while (!atomic_load(a->done)) {
        vmk_error *err = NULL;
        if (net_nat_add_forward(a->link, &fw, &err) != VMK_OK ||
            net_nat_remove_forward(a->link, &fw, &err) != VMK_OK)
            a->failures++;
        vmk_error_free(err);
        a->rounds++;
    }
    return NULL;
}

static void test_forward_commands_from_threads(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    atomic_bool done = false;
    struct adder ad[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        ad[i] = (struct adder){ .link = f->link, .port = free_port(SOCK_DGRAM), .done = &done };
        assert_int_equal(pthread_create(&t[i], NULL, add_remove_loop, &ad[i]), 0);
    }
    uint8_t buf[64];
    const uint8_t zero[6] = { 0 };
    size_t len = arp_frame(buf, 1, bcast_mac, zero, GUEST_IP, HOST_IP);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(send_frame(f, buf, len), 0);
        run_for(f, 2);
    }
    uint32_t want = HOST_IP;
    expect_frame(f, 0, match_arp_reply, &want);
    stop_link(f);
    usleep(20000);
    atomic_store(&done, true);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(ad[i].failures, 0);
        assert_true(ad[i].rounds > 0);
    }
}

/* A peer out of receive buffers is offered nothing more until rx_ready; what the NAT has
 * for it meanwhile waits in the queue, or is dropped once that is full. */
static void test_receive_back_pressure(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    f->peer.refuse = true;
    uint8_t buf[64];
    const uint8_t zero[6] = { 0 };
    size_t len = arp_frame(buf, 1, bcast_mac, zero, GUEST_IP, HOST_IP);
    assert_int_equal(send_frame(f, buf, len), 0);
    double end = now() + 3;
    while (f->peer.offers == 0 && now() < end)
        run_for(f, 10);
    assert_int_equal(f->peer.offers, 1);
    assert_int_equal(send_frame(f, buf, len), 0);
    run_for(f, 300);
    assert_int_equal(f->peer.offers, 1); /* held: not offered again, the second not at all */
    assert_int_equal(f->peer.count, 0);

    /* Meanwhile the queue to the guest fills (256 frames): the rest is dropped and counted. */
    for (int i = 0; i < 298; i++) {
        assert_int_equal(send_frame(f, buf, len), 0);
        if (i % 50 == 49)
            run_for(f, 20);
    }
    run_for(f, 300);
    assert_int_equal(f->peer.offers, 1);
    pthread_mutex_lock(&f->peer.lock); /* the device reads the counter so */
    assert_int_equal(f->link->dropped, 300 - 256);
    pthread_mutex_unlock(&f->peer.lock);

    pthread_mutex_lock(&f->peer.lock);
    f->peer.refuse = false;
    f->link->ops->rx_ready(f->link);
    pthread_mutex_unlock(&f->peer.lock);
    end = now() + 3;
    while (f->peer.count < 256 && now() < end)
        run_for(f, 10);
    run_for(f, 100);
    assert_int_equal(f->peer.count, 256);
    assert_int_equal(f->peer.offers, 257);
    uint32_t want = HOST_IP;
    for (unsigned i = 0; i < 256; i++)
        assert_true(match_arp_reply(&f->peer.frames[i], &want));
}

/* With receive buffers, what the NAT has for the guest goes to the peer from the NAT's own
 * thread (under the peer's lock), with the event loop never run: no queue and no hand-off.
 * Frames that waited while the peer refused still come first, in order, before the direct
 * path takes over again. */
static void test_receive_direct(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    ask_arp(f, HOST_IP);
    assert_int_equal(frames_beyond(f, 0), 1);
    uint32_t want = HOST_IP;
    assert_true(match_arp_reply(&f->peer.frames[0], &want));
    assert_true(f->peer.lock_held_ok);

    /* Refused: the next three wait in the queue, in order, and still do after rx_ready
     * until the event loop has handed them on; only then does a new one go straight. */
    pthread_mutex_lock(&f->peer.lock);
    f->peer.refuse = true;
    pthread_mutex_unlock(&f->peer.lock);
    const uint32_t asked[3] = { HOST_IP, DNS_IP, HOST_IP };
    for (unsigned i = 0; i < 3; i++) {
        ask_arp(f, asked[i]);
        usleep(50000); /* one at a time: the NAT answers in the order asked */
    }
    pthread_mutex_lock(&f->peer.lock);
    assert_int_equal(f->peer.offers, 2); /* the first refused, the others queued behind it */
    f->peer.refuse = false;
    f->link->ops->rx_ready(f->link);
    pthread_mutex_unlock(&f->peer.lock);
    usleep(100000);
    pthread_mutex_lock(&f->peer.lock);
    assert_int_equal(f->peer.count, 1); /* not without the event loop */
    pthread_mutex_unlock(&f->peer.lock);
    run_for(f, 200);
    assert_int_equal(f->peer.count, 4);
    for (unsigned i = 0; i < 3; i++)
        assert_true(match_arp_reply(&f->peer.frames[1 + i], &asked[i]));
    ask_arp(f, DNS_IP);
    assert_int_equal(frames_beyond(f, 4), 5);
    want = DNS_IP;
    assert_true(match_arp_reply(&f->peer.frames[4], &want));
}

static int watch_kick(struct fix *f, int fd)
{
    pthread_mutex_lock(&f->peer.lock);
    int r = f->link->ops->watch_kick(f->link, fd);
    pthread_mutex_unlock(&f->peer.lock);
    return r;
}

/* The guest queues an ARP request and kicks. */
static void kick_arp(struct fix *f, int kick, uint32_t ip)
{
    const uint8_t zero[6] = { 0 };
    pthread_mutex_lock(&f->peer.lock);
    f->peer.tx_len = arp_frame(f->peer.tx, 1, bcast_mac, zero, GUEST_IP, ip);
    pthread_mutex_unlock(&f->peer.lock);
    uint64_t one = 1;
    assert_int_equal(write(kick, &one, sizeof(one)), sizeof(one));
}

static unsigned tx_kicks(struct fix *f)
{
    pthread_mutex_lock(&f->peer.lock);
    unsigned k = f->peer.tx_kicks;
    pthread_mutex_unlock(&f->peer.lock);
    return k;
}

/* The transmit queue's kick fd, watched by the NAT thread: a kick reaches the device there,
 * under its lock, and the frame it sends is answered with no event loop running. A new fd
 * replaces the old one, -1 stops, and the NAT's dups are closed. */
static void test_transmit_kick(void **state)
{
    struct fix *f = *state;
    int before = fd_count();
    start_plain(f);
    int fds = fd_count();
    int k1 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), k2 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(k1 >= 0 && k2 >= 0);
    assert_int_equal(watch_kick(f, k1), 0);
    kick_arp(f, k1, HOST_IP);
    assert_int_equal(frames_beyond(f, 0), 1);
    uint32_t want = HOST_IP;
    assert_true(match_arp_reply(&f->peer.frames[0], &want));
    assert_int_equal(tx_kicks(f), 1);
    /* Done after slirp's answer went to the device: one interrupt can cover both. */
    pthread_mutex_lock(&f->peer.lock);
    assert_int_equal(f->peer.tx_kicks_done, 1);
    assert_int_equal(f->peer.answers_before_done, 1);
    pthread_mutex_unlock(&f->peer.lock);

    /* Replaced while the thread polls it: the old one is let go, the new one served. */
    assert_int_equal(watch_kick(f, k2), 0);
    close(k1);
    kick_arp(f, k2, DNS_IP);
    assert_int_equal(frames_beyond(f, 1), 2);
    want = DNS_IP;
    assert_true(match_arp_reply(&f->peer.frames[1], &want));
    assert_int_equal(tx_kicks(f), 2);

    /* Stopped: a kick stays unread (the transport's again). */
    assert_int_equal(watch_kick(f, -1), 0);
    usleep(100000); /* a round of the thread, which closes the dup it polled */
    kick_arp(f, k2, HOST_IP);
    assert_int_equal(frames_beyond(f, 2), 2);
    assert_int_equal(tx_kicks(f), 2);
    uint64_t v;
    assert_int_equal(read(k2, &v, sizeof(v)), sizeof(v));
    close(k2);
    assert_int_equal(fd_count(), fds);
    assert_true(f->peer.kick_off_test_thread);

    /* One watched at destroy is closed with the link. */
    int k3 = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_int_equal(watch_kick(f, k3), 0);
    close(k3);
    stop_link(f);
    f->link->ops->destroy(f->link);
    f->link = NULL;
    assert_int_equal(fd_count(), before);
}

/* A guest faster than the NAT fills the queue: send says -EAGAIN, tx_ready follows. */
static void test_send_back_pressure(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    uint8_t buf[64];
    const uint8_t zero[6] = { 0 };
    size_t len = arp_frame(buf, 1, bcast_mac, zero, GUEST_IP, HOST_IP);
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    int r = 0;
    unsigned sent = 0;
    /* One burst under the lock, as a device's transmit run: the NAT thread, woken by the
     * first frame, cannot keep up with frames that cost it an ARP answer each. */
    pthread_mutex_lock(&f->peer.lock);
    while (sent < 1000000 && (r = f->link->ops->send(f->link, &iov, 1, len)) == 0)
        sent++;
    pthread_mutex_unlock(&f->peer.lock);
    assert_int_equal(r, -EAGAIN);
    assert_true(sent >= 256);
    assert_int_equal(f->peer.tx_ready, 0);
    double end = now() + 3;
    while (f->peer.tx_ready == 0 && now() < end)
        run_for(f, 10);
    assert_int_equal(f->peer.tx_ready, 1);
    assert_int_equal(send_frame(f, buf, len), 0);
    run_for(f, 200);
    assert_true(f->peer.count >= 256);
}

static bool match_icmp_echo_reply(const struct frame *fr, const void *unused)
{
    (void)unused;
    struct ipv4 ip;
    return parse_ipv4(fr, &ip) && ip.proto == IP_ICMP && ip.src == HOST_IP && ip.l4_len >= 8 &&
           ip.l4[0] == 0 && get16(ip.l4 + 4) == 0x4242 && get16(ip.l4 + 6) == 7;
}

/* libslirp answers an echo to its own address itself: no ICMP socket, no privilege. */
static void test_icmp_echo_gateway(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    uint8_t icmp[8 + 16] = { 8, 0 };
    put16(icmp + 4, 0x4242);
    put16(icmp + 6, 7);
    memcpy(icmp + 8, "0123456789abcdef", 16);
    uint8_t buf[128];
    size_t len = ipv4_frame(buf, bcast_mac, GUEST_IP, HOST_IP, IP_ICMP, icmp, sizeof(icmp));
    assert_int_equal(send_frame(f, buf, len), 0);
    unsigned i = expect_frame(f, 0, match_icmp_echo_reply, NULL);
    struct ipv4 ip;
    assert_true(parse_ipv4(&f->peer.frames[i], &ip));
    assert_int_equal(ip.dst, GUEST_IP);
    assert_int_equal(fold(sum16(ip.l4, ip.l4_len, 0)), 0);
    assert_memory_equal(ip.l4 + 8, "0123456789abcdef", 16);
}

/* libslirp's answer to a connection it may not make: ICMP unreachable, or a reset. */
static bool match_refused(const struct frame *fr, const void *unused)
{
    (void)unused;
    struct ipv4 ip;
    if (!parse_ipv4(fr, &ip) || ip.dst != GUEST_IP)
        return false;
    if (ip.proto == IP_ICMP)
        return ip.l4_len >= 8 && ip.l4[0] == 3;
    return ip.proto == IP_TCP && ip.l4_len >= 20 && (ip.l4[13] & TCP_RST);
}

/* The guest reaches the host's loopback through 10.0.2.2, unless host_loopback is off. */
static void guest_connects_to_host(struct fix *f, bool host_loopback)
{
    struct net_nat_params p = { .host_loopback = host_loopback };
    start(f, &p);
    int srv = loopback_socket(AF_INET, SOCK_STREAM, 0, true);
    assert_true(srv >= 0);
    assert_int_equal(listen(srv, 1), 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    assert_int_equal(getsockname(srv, (struct sockaddr *)&a, &alen), 0);
    uint16_t port = ntohs(a.sin_port);

    uint8_t buf[128];
    size_t len = tcp_frame(buf, GUEST_IP, 40000, HOST_IP, port, 5000, 0, TCP_SYN, NULL, 0);
    assert_int_equal(send_frame(f, buf, len), 0);
    struct l4_want synack = { .proto = IP_TCP,
                              .src = HOST_IP,
                              .dst = GUEST_IP,
                              .sport = port,
                              .dport = 40000,
                              .flags = TCP_SYN | TCP_ACK,
                              .flags_mask = TCP_SYN | TCP_ACK };
    struct pollfd pfd = { .fd = srv, .events = POLLIN };
    if (host_loopback) {
        expect_frame(f, 0, match_l4, &synack);
        assert_int_equal(poll(&pfd, 1, 3000), 1);
        int s = accept(srv, NULL, NULL);
        assert_true(s >= 0);
        close(s);
    } else {
        /* Refused: the guest hears so (ICMP unreachable), nobody connects. */
        expect_frame(f, 0, match_refused, NULL);
        run_for(f, 200);
        for (unsigned i = 0; i < f->peer.count; i++)
            assert_false(match_l4(&f->peer.frames[i], &synack));
        assert_int_equal(poll(&pfd, 1, 0), 0);
    }
    close(srv);
}

static void test_guest_reaches_host_loopback(void **state)
{
    guest_connects_to_host(*state, true);
}

static void test_host_loopback_off(void **state)
{
    guest_connects_to_host(*state, false);
}

static bool match_router_advert(const struct frame *fr, const void *unused)
{
    (void)unused;
    return fr->len >= 14 + 40 + 16 && get16(fr->data + 12) == ETH_IPV6 &&
           fr->data[14 + 6] == IP_ICMPV6 && fr->data[14 + 40] == 134;
}

/* IPv6 is on: a router solicitation is answered with fec0::/64 and the DNS at fec0::3. */
static void test_ipv6_router_advert(void **state)
{
    struct fix *f = *state;
    start_plain(f);
    uint8_t buf[128];
    const uint8_t mac[6] = { 0x33, 0x33, 0, 0, 0, 2 };
    const uint8_t all_routers[16] = { 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2 };
    uint8_t rs[16] = { 133 };
    rs[8] = 1; /* source link-layer address */
    rs[9] = 1;
    memcpy(rs + 10, guest_mac, 6);
    size_t len = ipv6_frame(buf, mac, guest_ll6, all_routers, IP_ICMPV6, rs, sizeof(rs));
    assert_int_equal(send_frame(f, buf, len), 0);

    unsigned i = expect_frame(f, 0, match_router_advert, NULL);
    const struct frame *fr = &f->peer.frames[i];
    const uint8_t *ra = fr->data + 14 + 40;
    size_t ra_len = get16(fr->data + 14 + 4);
    assert_true(14 + 40 + ra_len <= fr->len);
    bool prefix = false;
    const uint8_t fec0[16] = { 0xfe, 0xc0 };
    uint8_t fec0_3[16] = { 0xfe, 0xc0 };
    fec0_3[15] = 3;
    for (size_t o = 16; o + 8 <= ra_len && ra[o + 1];) {
        size_t olen = (size_t)ra[o + 1] * 8;
        if (o + olen > ra_len)
            break;
        if (ra[o] == 3 && olen == 32 && ra[o + 2] == 64 && !memcmp(ra + o + 16, fec0, 16))
            prefix = true;
        /* RDNSS: libslirp offers it only where the host itself has an IPv6 resolver. */
        if (ra[o] == 25)
            assert_memory_equal(ra + o + 8, fec0_3, 16);
        o += olen;
    }
    assert_true(prefix);
}

static bool match_tcp6_syn(const struct frame *fr, const void *port)
{
    const uint8_t *ip6 = fr->data + 14, *tcp = ip6 + 40;
    return fr->len >= 14 + 40 + 20 && get16(fr->data + 12) == ETH_IPV6 && ip6[6] == IP_TCP &&
           !memcmp(ip6 + 24, guest_ip6, 16) && get16(tcp + 2) == *(const uint16_t *)port &&
           (tcp[13] & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

/* Waits up to 3 s for the host end of a connection to be closed. */
static bool closed_by_peer(struct fix *f, int fd)
{
    double end = now() + 3;
    while (now() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_true(event_loop_run_once(f->el, 0) >= 0);
        if (poll(&p, 1, 10) <= 0)
            continue;
        char c;
        ssize_t n = read(fd, &c, 1);
        return n == 0 || (n < 0 && errno == ECONNRESET);
    }
    return false;
}

/* An IPv6 host address reaches the guest over IPv6, once libslirp knows the guest's address. */
static void test_ipv6_forward(void **state)
{
    struct fix *f = *state;
    int probe = loopback_socket(AF_INET6, SOCK_STREAM, 0, true);
    if (probe < 0)
        return; /* no IPv6 loopback on this host: nothing to forward from */
    close(probe);
    start_plain(f);
    unsigned port = free_port(SOCK_STREAM);
    struct net_nat_forward fw = forward(false, "::1", port, 2323);
    vmk_error *err = NULL;
    assert_int_equal(net_nat_add_forward(f->link, &fw, &err), VMK_OK);

    /* Before the guest used IPv6, libslirp has nowhere to send it: closed. */
    int c = loopback_socket(AF_INET6, SOCK_STREAM, port, false);
    assert_true(c >= 0);
    assert_true(closed_by_peer(f, c));
    close(c);

    uint8_t buf[128];
    size_t len = neighbor_solicit(buf);
    assert_int_equal(send_frame(f, buf, len), 0);
    run_for(f, 50);
    unsigned from = f->peer.count;
    c = loopback_socket(AF_INET6, SOCK_STREAM, port, false);
    assert_true(c >= 0);
    uint16_t dport = 2323;
    expect_frame(f, from, match_tcp6_syn, &dport);
    close(c);

    assert_int_equal(net_nat_add_forward(f->link, &fw, &err), VMK_ERR_IO);
    char want[128];
    snprintf(want, sizeof(want), "network device 1: [::1]:%u: Address already in use", port);
    assert_string_equal(vmk_error_message(err), want);
    vmk_error_free(err);
    err = NULL;
    /* IPv6 only: the same port on IPv4 loopback is another socket. */
    struct net_nat_forward fw4 = forward(false, "127.0.0.1", port, 22);
    assert_int_equal(net_nat_add_forward(f->link, &fw4, &err), VMK_OK);
    assert_int_equal(net_nat_remove_forward(f->link, &fw4, &err), VMK_OK);
    assert_int_equal(net_nat_remove_forward(f->link, &fw, &err), VMK_OK);
    assert_int_equal(net_nat_remove_forward(f->link, &fw, &err), VMK_ERR_INVALID_ARGUMENT);
    snprintf(want, sizeof(want), "network device 1: no forward from [::1]:%u", port);
    assert_string_equal(vmk_error_message(err), want);
    vmk_error_free(err);
}

/* A started, busy, stopped and destroyed link leaves no descriptor behind (memory: the
 * sanitizer build's leak check). */
static void test_no_fd_leak(void **state)
{
    struct fix *f = *state;
    int fds = fd_count();
    int c = connect_through_forward(f, 0).c;
    stop_link(f);
    f->link->ops->destroy(f->link);
    f->link = NULL;
    close(c);
    assert_int_equal(fd_count(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dhcp_offer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arp_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtu_follows_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_udp_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_commands_from_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_back_pressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_back_pressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transmit_kick, setup, teardown),
        cmocka_unit_test_setup_teardown(test_icmp_echo_gateway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_reaches_host_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_loopback_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_router_advert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_fd_leak, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
