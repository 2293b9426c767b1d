/* serial_link with real host ends: a pseudo-terminal and a listening unix socket, driven
 * on a real event loop, with a sink standing in for the UART. */
#include "attach/serial_link.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define BIG (4u << 20) /* guest output nobody reads */

struct sink {
    uint8_t buf[1 << 16];
    size_t len;
    size_t budget; /* bytes it takes before it is "full" */
};

static size_t sink_receive(void *ctx, const uint8_t *buf, size_t len)
{
    struct sink *s = ctx;
    size_t room = sizeof(s->buf) - s->len;
    size_t n = len < s->budget ? len : s->budget;
    n = n < room ? n : room;
    memcpy(s->buf + s->len, buf, n);
    s->len += n;
    s->budget -= n;
    return n;
}

struct fix {
    struct event_loop *el;
    struct sink sink;
    char dir[64];
    char sock[128];
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    if (!f || event_loop_new(&f->el) != 0)
        return -1;
    f->sink.budget = SIZE_MAX;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_serial_link.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->sock, sizeof(f->sock), "%s/console.sock", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    unlink(f->sock);
    rmdir(f->dir);
    event_loop_free(f->el);
    free(f);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until the sink holds want bytes (or 5 s pass). */
static void run_until_sink(struct fix *f, size_t want)
{
    double end = now() + 5;
    while (f->sink.len < want && now() < end)
        assert_true(event_loop_run_once(f->el, 20) >= 0);
    assert_int_equal(f->sink.len, want);
}

/* Runs the loop for about ms milliseconds; returns how many sources it dispatched. */
static int run_for(struct fix *f, int ms)
{
    int total = 0;
    double end = now() + ms / 1000.0;
    while (now() < end) {
        int n = event_loop_run_once(f->el, 10);
        assert_true(n >= 0);
        total += n;
    }
    return total;
}

/* Reads exactly len bytes from fd (5 s at most) and compares them with want; runs the loop
 * meanwhile, which writes guest output out. */
static void expect_read(struct fix *f, int fd, const char *want)
{
    size_t len = strlen(want), got = 0;
    char buf[256];
    assert_true(len < sizeof(buf));
    double end = now() + 5;
    while (got < len && now() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_true(event_loop_run_once(f->el, 0) >= 0);
        if (poll(&p, 1, 20) <= 0)
            continue;
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, len);
    assert_memory_equal(buf, want, len);
}

/* Discards what fd has buffered and what the link still queues for it (the output of a
 * time nobody read), running the loop until nothing more comes. */
static void drain(struct fix *f, int fd)
{
    char buf[4096];
    struct pollfd p = { .fd = fd, .events = POLLIN };
    for (;;) {
        assert_true(event_loop_run_once(f->el, 0) >= 0);
        if (poll(&p, 1, 50) <= 0 || read(fd, buf, sizeof(buf)) <= 0)
            break;
    }
}

static void write_all(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static struct serial_link *open_link(struct fix *f, const vmk_serial_attachment *att)
{
    struct serial_link *l = NULL;
    vmk_error *err = NULL;
    if (serial_link_open(att, "serial port 1", f->el, NULL, NULL, &l, &err) != VMK_OK)
        fail_msg("serial_link_open: %s", vmk_error_message(err));
    struct serial_link_sink sink = { .receive = sink_receive, .ctx = &f->sink };
    assert_int_equal(serial_link_connect(l, &sink, &err), VMK_OK);
    return l;
}

static void *write_big(void *link)
{
    static uint8_t big[BIG];
    memset(big, 'x', sizeof(big));
    serial_link_write(link, big, sizeof(big));
    return NULL;
}

/* Guest output of BIG bytes returns within a second (on a thread of its own, as a vCPU
 * would write it, so that a write that blocks fails the test instead of hanging it). */
static void write_big_promptly(struct serial_link *l)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_big, l), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 1;
    if (pthread_timedjoin_np(t, NULL, &deadline) != 0)
        fail_msg("guest output blocked");
}

static void guest_says(struct serial_link *l, const char *s)
{
    serial_link_write(l, (const uint8_t *)s, strlen(s));
}

/* ---- pty ---- */

static vmk_serial_attachment *new_pty(void)
{
    vmk_serial_attachment *att = vmk_pty_serial_attachment_new();
    assert_non_null(att);
    return att;
}

static int open_slave(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_true(isatty(fd));
    return fd;
}

static void test_pty_path(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = new_pty();
    struct serial_link *l = open_link(f, att);
    const char *path = serial_link_pty_path(l);
    assert_non_null(path);
    assert_true(strncmp(path, "/dev/pts/", 9) == 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    /* Raw from the start: a user's terminal program sees the guest's bytes as they are. */
    int fd = open_slave(path);
    struct termios tio;
    assert_int_equal(tcgetattr(fd, &tio), 0);
    assert_false(tio.c_lflag & (ECHO | ICANON | ISIG));
    assert_false(tio.c_oflag & OPOST);
    assert_false(tio.c_iflag & ICRNL);
    close(fd);
    /* Closing the link takes the pty away. */
    char saved[64];
    snprintf(saved, sizeof(saved), "%s", path);
    serial_link_close(l);
    assert_int_not_equal(stat(saved, &st), 0);
    vmk_serial_attachment_free(att);
    assert_null(serial_link_pty_path(NULL));
}

static void test_pty_both_ways(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = new_pty();
    struct serial_link *l = open_link(f, att);
    int fd = open_slave(serial_link_pty_path(l));

    guest_says(l, "login:\n\x01\x7f");
    expect_read(f, fd, "login:\n\x01\x7f"); /* unchanged: no \r added */
    /* No echo: the guest's output does not come back as its input. */
    run_for(f, 50);
    assert_int_equal(f->sink.len, 0);

    write_all(fd, "root\r\x03\x01x");
    run_until_sink(f, 8);
    assert_memory_equal(f->sink.buf, "root\r\x03\x01x", 8); /* no escape, no signals */

    serial_link_close(l);
    close(fd);
    vmk_serial_attachment_free(att);
}

static void test_pty_back_pressure(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = new_pty();
    struct serial_link *l = open_link(f, att);
    int fd = open_slave(serial_link_pty_path(l));

    f->sink.budget = 3;
    write_all(fd, "abcdefgh");
    run_until_sink(f, 3);
    run_for(f, 50);
    assert_int_equal(f->sink.len, 3); /* the rest waits for room */
    f->sink.budget = SIZE_MAX;
    serial_link_rx_space(l);
    run_until_sink(f, 8);
    assert_memory_equal(f->sink.buf, "abcdefgh", 8);

    serial_link_close(l);
    close(fd);
    vmk_serial_attachment_free(att);
}

static void test_pty_no_reader_never_blocks(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = new_pty();
    struct serial_link *l = open_link(f, att);
    write_big_promptly(l);
    write_big_promptly(l);

    /* A user who comes later gets what fits, then the guest's new output. */
    int fd = open_slave(serial_link_pty_path(l));
    drain(f, fd);
    guest_says(l, "later");
    expect_read(f, fd, "later");

    /* A user who stops reading does not stall the guest either. */
    write_big_promptly(l);
    serial_link_close(l);
    close(fd);
    vmk_serial_attachment_free(att);
}

static void test_pty_users_come_and_go(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = new_pty();
    struct serial_link *l = open_link(f, att);
    const char *path = serial_link_pty_path(l);

    int fd = open_slave(path);
    write_all(fd, "one");
    run_until_sink(f, 3);
    guest_says(l, "1");
    expect_read(f, fd, "1");
    close(fd);
    /* Nobody there now: the loop stays quiet (no hang-up firing on and on). */
    assert_int_equal(run_for(f, 100), 0);

    fd = open_slave(path);
    write_all(fd, "two");
    run_until_sink(f, 6);
    assert_memory_equal(f->sink.buf, "onetwo", 6);
    guest_says(l, "2");
    expect_read(f, fd, "2");

    serial_link_close(l);
    close(fd);
    vmk_serial_attachment_free(att);
}

/* A user program that makes the pty its controlling terminal and exits hangs it up for
 * every holder, ours included; the next user is still served. */
static void test_pty_survives_session_hang_up(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = new_pty();
    struct serial_link *l = open_link(f, att);
    const char *path = serial_link_pty_path(l);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A session leader without a terminal: opening one makes it the controlling one. */
        if (setsid() < 0)
            _exit(1);
        int fd = open(path, O_RDWR);
        if (fd < 0 || write(fd, "s", 1) != 1)
            _exit(2);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    run_for(f, 100);
    assert_int_equal(run_for(f, 100), 0);

    int fd = open_slave(path);
    drain(f, fd);
    write_all(fd, "after");
    run_until_sink(f, f->sink.len >= 1 && f->sink.buf[0] == 's' ? 6 : 5);
    guest_says(l, "ok");
    expect_read(f, fd, "ok");
    serial_link_close(l);
    close(fd);
    vmk_serial_attachment_free(att);
}

/* ---- unix socket ---- */

static struct sockaddr_un addr_of(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    return sa;
}

static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = addr_of(path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static bool is_socket_file(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void test_socket_both_ways(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(f->sock);
    assert_false(is_socket_file(f->sock)); /* made at start, not before */
    struct serial_link *l = open_link(f, att);
    assert_true(is_socket_file(f->sock));

    int c = connect_to(f->sock);
    write_all(c, "hello");
    run_until_sink(f, 5);
    assert_memory_equal(f->sink.buf, "hello", 5);
    guest_says(l, "world\n");
    expect_read(f, c, "world\n");

    /* Back-pressure: what the device cannot take yet waits in the socket. */
    f->sink.budget = 2;
    write_all(c, "abcdef");
    run_until_sink(f, 7);
    run_for(f, 50);
    assert_int_equal(f->sink.len, 7);
    f->sink.budget = SIZE_MAX;
    serial_link_rx_space(l);
    run_until_sink(f, 11);
    assert_memory_equal(f->sink.buf, "helloabcdef", 11);

    /* A client that does not read does not stall the guest. */
    write_big_promptly(l);

    close(c);
    serial_link_close(l);
    assert_false(is_socket_file(f->sock)); /* removed on close */
    assert_int_equal(access(f->sock, F_OK), -1);
    vmk_serial_attachment_free(att);
}

static void test_socket_clients_one_at_a_time(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(f->sock);
    struct serial_link *l = open_link(f, att);

    int c1 = connect_to(f->sock);
    write_all(c1, "1");
    run_until_sink(f, 1);
    /* The second waits in the backlog: its bytes are not read, it gets no output. */
    int c2 = connect_to(f->sock);
    write_all(c2, "2");
    run_for(f, 50);
    assert_int_equal(f->sink.len, 1);
    guest_says(l, "to-1");
    expect_read(f, c1, "to-1");

    /* The first hangs up: the second is taken. */
    close(c1);
    run_until_sink(f, 2);
    assert_memory_equal(f->sink.buf, "12", 2);
    guest_says(l, "to-2");
    expect_read(f, c2, "to-2");
    struct pollfd p = { .fd = c2, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 50), 0); /* nothing sent before it was taken */

    /* Hang-up, then a later client. */
    close(c2);
    assert_true(run_for(f, 100) <= 2); /* the hang-up, then quiet */
    int c3 = connect_to(f->sock);
    write_all(c3, "3");
    run_until_sink(f, 3);
    guest_says(l, "to-3");
    expect_read(f, c3, "to-3");
    close(c3);
    serial_link_close(l);
    vmk_serial_attachment_free(att);
}

static void test_socket_no_client_never_blocks(void **state)
{
    struct fix *f = *state;
    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(f->sock);
    struct serial_link *l = open_link(f, att);
    write_big_promptly(l);

    /* A client that left before the loop noticed: no SIGPIPE, nothing blocks. */
    int c = connect_to(f->sock);
    write_all(c, "x");
    run_until_sink(f, 1);
    close(c);
    write_big_promptly(l);
    guest_says(l, "into the void");

    /* Output dropped while nobody was there is not replayed to the next client. */
    run_for(f, 50);
    c = connect_to(f->sock);
    write_all(c, "y");
    run_until_sink(f, 2);
    guest_says(l, "fresh");
    expect_read(f, c, "fresh");
    close(c);
    serial_link_close(l);
    vmk_serial_attachment_free(att);
}

/* More than the link buffers (4 KiB), so some still waits in the kernel at hang-up. */
#define HANG_UP_BYTES 6000

static void fill_pattern(uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(i * 7 + i / 251);
}

/* A client that sends and hangs up while the device is full loses nothing, and the
 * hang-up does not keep the loop busy meanwhile. */
static void test_socket_hang_up_while_full(void **state)
{
    struct fix *f = *state;
    static uint8_t data[HANG_UP_BYTES];
    fill_pattern(data, sizeof(data));
    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(f->sock);
    struct serial_link *l = open_link(f, att);
    int c = connect_to(f->sock);
    f->sink.budget = 1;
    assert_int_equal(write(c, data, sizeof(data)), (ssize_t)sizeof(data));
    run_until_sink(f, 1);
    close(c);
    assert_true(run_for(f, 100) <= 2);
    f->sink.budget = SIZE_MAX;
    serial_link_rx_space(l);
    run_until_sink(f, sizeof(data));
    assert_memory_equal(f->sink.buf, data, sizeof(data));
    /* And the next client is served. */
    c = connect_to(f->sock);
    write_all(c, "g");
    run_until_sink(f, sizeof(data) + 1);
    close(c);
    serial_link_close(l);
    vmk_serial_attachment_free(att);
}

static vmk_error *open_fails(struct fix *f, const vmk_serial_attachment *att)
{
    struct serial_link *l = NULL;
    vmk_error *err = NULL;
    assert_int_not_equal(serial_link_open(att, "console port 2", f->el, NULL, NULL, &l, &err),
                         VMK_OK);
    assert_null(l);
    assert_non_null(err);
    return err;
}

static void test_socket_stale_file_replaced(void **state)
{
    struct fix *f = *state;
    /* A socket file nobody listens on, as a crash leaves it. */
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = addr_of(f->sock);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(s);
    assert_true(is_socket_file(f->sock));

    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(f->sock);
    struct serial_link *l = open_link(f, att);
    int c = connect_to(f->sock);
    write_all(c, "hi");
    run_until_sink(f, 2);
    close(c);
    serial_link_close(l);
    vmk_serial_attachment_free(att);
}

static void test_socket_live_listener_refused(void **state)
{
    struct fix *f = *state;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = addr_of(f->sock);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s, 0), 0);

    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(f->sock);
    vmk_error *err = open_fails(f, att);
    assert_int_equal(vmk_error_code(err), VMK_ERR_IO);
    assert_non_null(strstr(vmk_error_message(err), f->sock));
    assert_non_null(strstr(vmk_error_message(err), "in use"));
    assert_non_null(strstr(vmk_error_message(err), "console port 2"));
    vmk_error_free(err);
    /* The probe above fills the backlog of 0: a second probe must not hang on it. */
    double t0 = now();
    err = open_fails(f, att);
    assert_true(now() - t0 < 1.0);
    assert_non_null(strstr(vmk_error_message(err), "in use"));
    vmk_error_free(err);
    /* The other listener keeps its socket. */
    assert_true(is_socket_file(f->sock));
    close(s);
    vmk_serial_attachment_free(att);
}

static void test_socket_other_file_untouched(void **state)
{
    struct fix *f = *state;
    int fd = open(f->sock, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write_all(fd, "precious");
    close(fd);

    vmk_serial_attachment *att = vmk_socket_serial_attachment_new(f->sock);
    vmk_error *err = open_fails(f, att);
    assert_non_null(strstr(vmk_error_message(err), f->sock));
    assert_non_null(strstr(vmk_error_message(err), "not a socket"));
    vmk_error_free(err);
    fd = open(f->sock, O_RDONLY);
    expect_read(f, fd, "precious");
    close(fd);
    vmk_serial_attachment_free(att);

    /* A directory that does not exist: the bind error names the path. */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/no/such/dir.sock", f->dir);
    att = vmk_socket_serial_attachment_new(missing);
    err = open_fails(f, att);
    assert_non_null(strstr(vmk_error_message(err), missing));
    vmk_error_free(err);
    vmk_serial_attachment_free(att);
}

static void test_socket_bad_paths(void **state)
{
    struct fix *f = *state;
    char long_path[200];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    const char *bad[] = { NULL, "", long_path };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vmk_serial_attachment *att = vmk_socket_serial_attachment_new(bad[i]);
        assert_non_null(att);
        vmk_error *err = open_fails(f, att);
        assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_ARGUMENT);
        vmk_error_free(err);
        vmk_serial_attachment_free(att);
    }
}

/* ---- the fd pair keeps its ways ---- */

/* A writer that hangs up while the device is full: the rest still arrives, and the
 * hang-up does not keep the loop busy meanwhile. */
static void test_pipe_hang_up_while_full(void **state)
{
    struct fix *f = *state;
    static uint8_t data[HANG_UP_BYTES];
    fill_pattern(data, sizeof(data));
    int p[2];
    assert_int_equal(pipe(p), 0);
    vmk_serial_attachment *att = vmk_fd_serial_attachment_new(p[0], -1);
    struct serial_link *l = open_link(f, att);
    close(p[0]); /* the link has its own copy */
    f->sink.budget = 2;
    assert_int_equal(write(p[1], data, sizeof(data)), (ssize_t)sizeof(data));
    run_until_sink(f, 2);
    close(p[1]);
    assert_true(run_for(f, 100) <= 2);
    f->sink.budget = SIZE_MAX;
    serial_link_rx_space(l);
    run_until_sink(f, sizeof(data));
    assert_memory_equal(f->sink.buf, data, sizeof(data));
    serial_link_close(l);
    vmk_serial_attachment_free(att);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pty_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pty_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pty_back_pressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pty_no_reader_never_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pty_users_come_and_go, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pty_survives_session_hang_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_clients_one_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_no_client_never_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_hang_up_while_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_stale_file_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_live_listener_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_other_file_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipe_hang_up_while_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
