/* virtio-console over vhost-user: `vmkit serve-device --type console` driven by the
 * synthetic front end (tests/support/vhost_user_frontend.h), since QEMU 7.2 has no
 * vhost-user front end for a console (a Linux driver meets vmkit's console on a whole
 * machine, tests/system/nested). The test performs the multiport handshake Linux's
 * virtio_console does and checks what a user would: the ports' names and the console
 * port arrive, bytes flow both ways on a stdio port (the server's stdin and stdout are
 * pipes here) and land in a file port, and a front end that reconnects gets the same.
 *
 *   test_vhost_user_console VMKIT_BINARY */
#include "vhost_user_frontend.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define F_MULTIPORT 1
#define NPORTS      2
#define NQUEUES     (2 * NPORTS + 2)
#define CTRL_RX     2 /* device → driver control messages */
#define CTRL_TX     3
#define CTRL_BUFS   32
#define CTRL_BUF    64

/* Control events (virtio 1.2, 5.3.6.2). */
enum {
    DEVICE_READY = 0,
    DEVICE_ADD = 1,
    PORT_READY = 3,
    CONSOLE_PORT = 4,
    PORT_OPEN = 6,
    PORT_NAME = 7,
};

static const char *vmkit;

struct server {
    pid_t pid;
    int stdin_w;  /* what we write reaches the stdio port's guest side */
    int stdout_r; /* what the guest writes to the stdio port */
    char dir[64];
    char sock[128], file[128], log[128];
};

struct ctrl {
    uint32_t id;
    uint16_t event, value;
    char name[CTRL_BUF];
};

struct driver {
    struct vuf *f;
    uint64_t ctrl_gpa[CTRL_BUFS]; /* by head: the control receive buffers */
};

/* Port p's receive and transmit queues (5.3.2): 0/1 for port 0, then 4/5, 6/7... */
static unsigned rxq(unsigned p)
{
    return p == 0 ? 0 : 2 + 2 * p;
}

static unsigned txq(unsigned p)
{
    return rxq(p) + 1;
}

static void start_server(struct server *s)
{
    strcpy(s->dir, "/tmp/vmkit-vu-console.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->sock, sizeof(s->sock), "%s/console.sock", s->dir);
    snprintf(s->file, sizeof(s->file), "%s/port1.out", s->dir);
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    char port1[192];
    snprintf(port1, sizeof(port1), "file=%s,name=org.vmkit.log", s->file);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        int log = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (log < 0 || dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(log, 2) < 0)
            _exit(127);
        execl(vmkit, vmkit, "serve-device", "--type", "console", "--socket", s->sock, "--port",
              "stdio,name=org.vmkit.console,console", "--port", port1, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->stdin_w = in[1];
    s->stdout_r = out[0];
    /* The socket appears once the server listens. */
    struct stat st;
    for (int i = 0; i < 500 && stat(s->sock, &st) != 0; i++) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid)
            fail_msg("vmkit serve-device exited (status %d); see %s", status, s->log);
        usleep(10000);
    }
    assert_int_equal(stat(s->sock, &st), 0);
}

static void stop_server(struct server *s)
{
    close(s->stdin_w);
    close(s->stdout_r);
    kill(s->pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(s->pid, &status, 0), s->pid);
    /* SIGTERM is a clean stop: exit 0 and the socket removed. */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_not_equal(access(s->sock, F_OK), 0);
    unlink(s->file);
    unlink(s->log);
    rmdir(s->dir);
}

static struct vuf *connect_front_end(const struct server *s)
{
    struct vuf_options o = vuf_default_options();
    o.device_features = 1ull << F_MULTIPORT;
    o.require_features = true;
    o.num_queues = NQUEUES;
    o.queue_size = 64;
    char err[256];
    struct vuf *f = vuf_open(s->sock, &o, err, sizeof(err));
    if (!f)
        fail_msg("front end: %s", err);
    return f;
}

static void send_ctrl(struct driver *d, uint32_t id, uint16_t event, uint16_t value)
{
    uint64_t gpa;
    assert_int_equal(vuf_alloc(d->f, 8, 8, &gpa), 0);
    uint8_t *p = vuf_ptr(d->f, gpa, 8);
    uint32_t lid = htole32(id);
    uint16_t le = htole16(event), lv = htole16(value);
    memcpy(p, &lid, 4);
    memcpy(p + 4, &le, 2);
    memcpy(p + 6, &lv, 2);
    struct vuf_seg seg = { .gpa = gpa, .len = 8 };
    int head = vuf_post(d->f, CTRL_TX, &seg, 1);
    assert_true(head >= 0);
    assert_true(vuf_kick(d->f, CTRL_TX) >= 0);
    struct vuf_used u;
    assert_int_equal(vuf_wait_used(d->f, CTRL_TX, &u, 5000), 1);
    assert_int_equal(u.id, head);
}

static void post_ctrl_buffers(struct driver *d)
{
    for (unsigned i = 0; i < CTRL_BUFS; i++) {
        uint64_t gpa;
        assert_int_equal(vuf_alloc(d->f, CTRL_BUF, 8, &gpa), 0);
        struct vuf_seg seg = { .gpa = gpa, .len = CTRL_BUF, .writable = true };
        int head = vuf_post(d->f, CTRL_RX, &seg, 1);
        assert_true(head >= 0 && head < CTRL_BUFS);
        d->ctrl_gpa[head] = gpa;
    }
    assert_true(vuf_kick(d->f, CTRL_RX) >= 0);
}

/* The next control message from the device, or false after timeout_ms. */
static bool next_ctrl(struct driver *d, struct ctrl *c, int timeout_ms)
{
    struct vuf_used u;
    if (vuf_wait_used(d->f, CTRL_RX, &u, timeout_ms) != 1)
        return false;
    assert_true(u.id < CTRL_BUFS && u.len >= 8 && u.len <= CTRL_BUF);
    const uint8_t *p = vuf_ptr(d->f, d->ctrl_gpa[u.id], CTRL_BUF);
    uint32_t id;
    uint16_t event, value;
    memcpy(&id, p, 4);
    memcpy(&event, p + 4, 2);
    memcpy(&value, p + 6, 2);
    *c = (struct ctrl){ .id = le32toh(id), .event = le16toh(event), .value = le16toh(value) };
    memcpy(c->name, p + 8, u.len - 8);
    c->name[u.len - 8] = '\0';
    return true;
}

/* Linux's sequence: DEVICE_READY, then PORT_READY for each DEVICE_ADD; the device
 * answers with the console flag, the names and the host side's open state. */
static void handshake(struct driver *d)
{
    uint32_t max_ports = 0;
    assert_int_equal(vuf_get_config(d->f, 4, &max_ports, 4), 0);
    assert_int_equal(le32toh(max_ports), NPORTS);
    post_ctrl_buffers(d);
    send_ctrl(d, 0, DEVICE_READY, 1);
    unsigned added = 0;
    struct ctrl c;
    while (added < NPORTS && next_ctrl(d, &c, 5000)) {
        assert_int_equal(c.event, DEVICE_ADD);
        assert_int_equal(c.id, added);
        added++;
    }
    assert_int_equal(added, NPORTS);
    for (unsigned p = 0; p < NPORTS; p++)
        send_ctrl(d, p, PORT_READY, 1);
    bool console = false, host_open[NPORTS] = { false };
    char names[NPORTS][CTRL_BUF] = { "" };
    while (next_ctrl(d, &c, 500)) {
        assert_true(c.id < NPORTS);
        if (c.event == CONSOLE_PORT) {
            assert_int_equal(c.id, 0);
            console = true;
        } else if (c.event == PORT_NAME) {
            strcpy(names[c.id], c.name);
        } else if (c.event == PORT_OPEN) {
            host_open[c.id] = c.value == 1;
        } else {
            fail_msg("unexpected control event %u for port %u", c.event, c.id);
        }
    }
    assert_true(console);
    assert_string_equal(names[0], "org.vmkit.console");
    assert_string_equal(names[1], "org.vmkit.log");
    assert_true(host_open[0] && host_open[1]);
    send_ctrl(d, 1, PORT_OPEN, 1); /* an application opens the named port */
}

/* Guest → host: a chain on port p's transmit queue. */
static void guest_write(struct driver *d, unsigned p, const char *text)
{
    size_t len = strlen(text);
    uint64_t gpa;
    assert_int_equal(vuf_alloc(d->f, len, 8, &gpa), 0);
    memcpy(vuf_ptr(d->f, gpa, len), text, len);
    struct vuf_seg seg = { .gpa = gpa, .len = (uint32_t)len };
    int head = vuf_post(d->f, txq(p), &seg, 1);
    assert_true(head >= 0);
    assert_true(vuf_kick(d->f, txq(p)) >= 0);
    struct vuf_used u;
    assert_int_equal(vuf_wait_used(d->f, txq(p), &u, 5000), 1);
    assert_int_equal(u.id, head);
}

/* Reads from fd until want bytes came or 5 s passed. */
static void expect_bytes(int fd, const char *want)
{
    size_t n = strlen(want), got = 0;
    char buf[256] = { 0 };
    assert_true(n < sizeof(buf));
    while (got < n) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 5000), 1);
        ssize_t r = read(fd, buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_string_equal(buf, want);
}

/* The file port's content, once it holds len bytes (the server writes as it goes). */
static void expect_file(const char *path, const char *want)
{
    char buf[256] = { 0 };
    size_t n = strlen(want);
    for (int i = 0; i < 500; i++) {
        FILE *fp = fopen(path, "r");
        size_t got = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;
        if (fp)
            fclose(fp);
        if (got >= n)
            break;
        usleep(10000);
    }
    assert_string_equal(buf, want);
}

/* Host → guest on port 0: a receive buffer gets what was written to the server's stdin. */
static void expect_guest_input(struct driver *d, int host_fd, const char *text)
{
    uint64_t gpa;
    assert_int_equal(vuf_alloc(d->f, 64, 8, &gpa), 0);
    struct vuf_seg seg = { .gpa = gpa, .len = 64, .writable = true };
    int head = vuf_post(d->f, rxq(0), &seg, 1);
    assert_true(head >= 0);
    assert_true(vuf_kick(d->f, rxq(0)) >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(host_fd, text, len), (ssize_t)len);
    struct vuf_used u;
    assert_int_equal(vuf_wait_used(d->f, rxq(0), &u, 5000), 1);
    assert_int_equal(u.id, head);
    assert_int_equal(u.len, len);
    assert_memory_equal(vuf_ptr(d->f, gpa, len), text, len);
}

static void test_ports_and_data(void **state)
{
    struct server s;
    start_server(&s);
    struct driver d = { .f = connect_front_end(&s) };
    assert_int_equal(vuf_queue_num(d.f), NQUEUES);
    handshake(&d);
    guest_write(&d, 0, "console line\n");
    expect_bytes(s.stdout_r, "console line\n");
    guest_write(&d, 1, "log line\n");
    expect_file(s.file, "log line\n");
    expect_guest_input(&d, s.stdin_w, "typed\n");
    vuf_close(d.f);
    stop_server(&s);
}

/* A front end that goes away and comes back (QEMU restarting) finds a fresh device:
 * the handshake again, and data still flows. */
static void test_reconnect(void **state)
{
    struct server s;
    start_server(&s);
    struct driver d = { .f = connect_front_end(&s) };
    handshake(&d);
    guest_write(&d, 1, "first\n");
    vuf_close(d.f);
    d = (struct driver){ .f = connect_front_end(&s) };
    handshake(&d);
    guest_write(&d, 1, "second\n");
    expect_file(s.file, "first\nsecond\n");
    guest_write(&d, 0, "again\n");
    expect_bytes(s.stdout_r, "again\n");
    vuf_close(d.f);
    stop_server(&s);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s VMKIT_BINARY\n", argv[0]);
        return 2;
    }
    vmkit = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ports_and_data),
        cmocka_unit_test(test_reconnect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
