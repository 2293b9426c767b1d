/* The control socket (tools/vmkit/control.c): its line protocol over a real unix socket, with
 * fake ops that record what they are asked, and clients that misbehave. */
#include "control.h"

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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- Fake ops ---- */

static struct fake {
    pthread_mutex_t lock;
    pthread_t main_thread;
    bool off_main_thread; /* every op ran on another thread */
    unsigned calls;
    enum control_action action;
    bool acted;
    struct cli_disk drive; /* the last usb-attach's, path copied */
    unsigned detached;
    const char *fail; /* the ops' message, or NULL to succeed */
} fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int fake_result(char *msg, size_t len)
{
    fake.calls++;
    fake.off_main_thread &= !pthread_equal(pthread_self(), fake.main_thread);
    if (fake.fail)
        snprintf(msg, len, "%s", fake.fail);
    return fake.fail ? -1 : 0;
}

static int fake_usb_attach(void *user, const struct cli_disk *drive, unsigned *port, char *msg,
                           size_t len)
{
    (void)user;
    pthread_mutex_lock(&fake.lock);
    free(fake.drive.path);
    fake.drive = *drive;
    fake.drive.path = strdup(drive->path);
    *port = 3;
    int rc = fake_result(msg, len);
    pthread_mutex_unlock(&fake.lock);
    return rc;
}

static int fake_usb_detach(void *user, unsigned port, char *msg, size_t len)
{
    (void)user;
    pthread_mutex_lock(&fake.lock);
    fake.detached = port;
    int rc = fake_result(msg, len);
    pthread_mutex_unlock(&fake.lock);
    return rc;
}

static int fake_act(void *user, enum control_action action, char *msg, size_t len)
{
    (void)user;
    pthread_mutex_lock(&fake.lock);
    fake.action = action;
    fake.acted = true;
    int rc = fake_result(msg, len);
    pthread_mutex_unlock(&fake.lock);
    return rc;
}

static const char *fake_state(void *user)
{
    (void)user;
    return "running";
}

static const struct control_ops fake_ops = { .usb_attach = fake_usb_attach,
                                             .usb_detach = fake_usb_detach,
                                             .act = fake_act,
                                             .state = fake_state };

static void fake_reset(void)
{
    pthread_mutex_lock(&fake.lock);
    free(fake.drive.path);
    fake.drive = (struct cli_disk){ 0 };
    fake.main_thread = pthread_self();
    fake.off_main_thread = true;
    fake.calls = 0;
    fake.acted = false;
    fake.detached = 0;
    fake.fail = NULL;
    pthread_mutex_unlock(&fake.lock);
}

static unsigned fake_calls(void)
{
    pthread_mutex_lock(&fake.lock);
    unsigned n = fake.calls;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

/* ---- A server and its clients ---- */

static char sock_path[108];

static struct control_server *start(void)
{
    char msg[512] = "";
    fake_reset();
    snprintf(sock_path, sizeof(sock_path), "/tmp/vmkit-test-control-%d.sock", (int)getpid());
    unlink(sock_path);
    struct control_server *s = control_server_start(sock_path, &fake_ops, NULL, msg, sizeof(msg));
    if (!s)
        print_error("%s\n", msg);
    assert_non_null(s);
    return s;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_text(int fd, const char *text)
{
    size_t len = strlen(text);
    assert_int_equal(send(fd, text, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* One line (its newline dropped) within 5 s; NULL at the end of the stream. */
static const char *read_line(int fd)
{
    static char line[8192];
    size_t n = 0;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_int_equal(poll(&p, 1, 5000), 1);
        char ch;
        ssize_t r = recv(fd, &ch, 1, 0);
        if (r <= 0)
            return NULL;
        if (ch == '\n')
            break;
        assert_true(n < sizeof(line) - 1);
        line[n++] = ch;
    }
    line[n] = '\0';
    return line;
}

/* Sends one command and reads its answer. */
static const char *ask(int fd, const char *command)
{
    send_text(fd, command);
    send_text(fd, "\n");
    const char *line = read_line(fd);
    assert_non_null(line);
    return line;
}

/* Whether the server closed fd (reading up to 16 MiB of answers first) within 5 s. */
static bool closed_by_server(int fd)
{
    char buf[4096];
    for (size_t total = 0; total < (16u << 20);) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 5000) != 1)
            return false;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            return true; /* EOF, or ECONNRESET when our lines were left unread */
        total += (size_t)r;
    }
    return false;
}

/* Each test of the protocol gets a fresh server (setup), and whatever the test did, that server
 * still answers before it stops (teardown). */
static int serve_fake(void **state)
{
    *state = start();
    return 0;
}

static int check_and_stop(void **state)
{
    struct control_server *s = *state;
    if (s) {
        int fd = connect_to(sock_path);
        assert_string_equal(ask(fd, "state"), "ok running");
        close(fd);
        control_server_stop(s);
    }
    fake_reset();
    return 0;
}

/* ---- The commands ---- */

static void test_each_command(void **state)
{
    struct stat st;
    assert_int_equal(lstat(sock_path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    int fd = connect_to(sock_path);
    assert_string_equal(ask(fd, "state"), "ok running");
    assert_string_equal(ask(fd, "help"),
                        "ok usb-attach usb-detach state pause resume power-button stop help");
    static const struct {
        const char *command;
        enum control_action action;
    } actions[] = { { "pause", CONTROL_PAUSE },
                    { "resume", CONTROL_RESUME },
                    { "power-button", CONTROL_POWER_BUTTON },
                    { "stop", CONTROL_STOP } };
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        fake.acted = false;
        assert_string_equal(ask(fd, actions[i].command), "ok");
        assert_true(fake.acted);
        assert_int_equal(fake.action, actions[i].action);
    }

    assert_string_equal(ask(fd, "usb-attach path=/tmp/x.img,readonly"), "ok port=3");
    assert_string_equal(fake.drive.path, "/tmp/x.img");
    assert_true(fake.drive.read_only);
    assert_true(fake.drive.usb);
    assert_int_equal(fake.drive.caching, VMK_DISK_CACHING_AUTOMATIC);
    assert_int_equal(fake.drive.sync, VMK_DISK_SYNC_FULL);
    assert_string_equal(ask(fd, "usb-attach path=\"/tmp/a,b.img\",cache=uncached,sync=none"),
                        "ok port=3");
    assert_string_equal(fake.drive.path, "/tmp/a,b.img");
    assert_false(fake.drive.read_only);
    assert_int_equal(fake.drive.caching, VMK_DISK_CACHING_UNCACHED);
    assert_int_equal(fake.drive.sync, VMK_DISK_SYNC_NONE);
    assert_string_equal(ask(fd, "usb-detach port=3"), "ok");
    assert_int_equal(fake.detached, 3);

    /* What an op refuses is its message, on one line. */
    fake.fail = "USB: cannot plug a drive in: the VM is\nstopped";
    assert_string_equal(ask(fd, "usb-attach path=/tmp/x.img"),
                        "error: USB: cannot plug a drive in: the VM is stopped");
    assert_string_equal(ask(fd, "pause"), "error: USB: cannot plug a drive in: the VM is stopped");
    fake.fail = NULL;
    assert_true(fake.off_main_thread); /* the server's own thread carries commands out */

    close(fd);
}

static void test_bad_commands(void **state)
{
    int fd = connect_to(sock_path);
    static const struct {
        const char *command, *answer;
    } cases[] = {
        { "frobnicate", "error: unknown command 'frobnicate' (help lists them)" },
        { "STATE", "error: unknown command 'STATE' (help lists them)" },
        { "state now", "error: state takes no arguments (got 'now')" },
        { "stop please", "error: stop takes no arguments (got 'please')" },
        { "usb-detach", "error: usb-detach: expected port=N (the port usb-attach answered)" },
        { "usb-detach 3", "error: usb-detach: expected port=N (the port usb-attach answered)" },
        { "usb-detach port=x", "error: usb-detach: port: 'x' is not a number" },
        { "usb-detach port=-1", "error: usb-detach: port: -1 is below the minimum of 0" },
        { "usb-detach port=99999999999",
          "error: usb-detach: port: 99999999999 is above the maximum of 4294967295" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(ask(fd, cases[i].command), cases[i].answer);
    /* Blanks around a command, CRLF, and empty lines (no command, no answer). */
    assert_string_equal(ask(fd, "\n\r\n  \t state \t\r"), "ok running");
    assert_int_equal(send(fd, "sta\0te\n", 7, MSG_NOSIGNAL), 7);
    assert_string_equal(read_line(fd), "error: the line holds a NUL byte");
    assert_int_equal(fake_calls(), 0); /* none of it reached the VM */
    close(fd);
}

/* usb-attach's key errors are the words of --device usb-mass-storage's parser. */
static void test_usb_attach_key_errors(void **state)
{
    int fd = connect_to(sock_path);
    static const char *const bad[] = {
        "path=/x,id=1",       "path=/x,queues=2", "path=/x,cache=fast",    "path=/x,sync",
        "path=/x,readonly=1", "path=/x,path=/y",  "path=/x,bogus=\"a,b\"", "path=",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char command[256], spec[256], want[1024], err[1024];
        struct cli_request req;
        memset(&req, 0, sizeof(req));
        snprintf(spec, sizeof(spec), "usb-mass-storage,%s", bad[i]);
        assert_int_equal(cli_parse_device(&req, "--device", spec, err, sizeof(err)),
                         CLI_EXIT_USAGE);
        cli_request_free(&req);
        const char *prefix = "vmkit: --device usb-mass-storage: ";
        assert_memory_equal(err, prefix, strlen(prefix));
        snprintf(want, sizeof(want), "error: usb-attach: %s", err + strlen(prefix));
        snprintf(command, sizeof(command), "usb-attach %s", bad[i]);
        const char *got = ask(fd, command);
        if (strcmp(got, want))
            print_error("'%s': got '%s', want '%s'\n", command, got, want);
        assert_string_equal(got, want);
    }
    /* These name the whole value, which differs between the two. */
    assert_string_equal(ask(fd, "usb-attach"), "error: usb-attach: missing path=PATH in ''");
    assert_string_equal(ask(fd, "usb-attach readonly"),
                        "error: usb-attach: missing path=PATH in 'readonly'");
    assert_string_equal(ask(fd, "usb-attach path=\"/x"),
                        "error: usb-attach: path: missing closing quote in 'path=\"/x'");
    assert_string_equal(ask(fd, "usb-attach path=/x,,readonly"),
                        "error: usb-attach: empty option in 'path=/x,,readonly'");
    assert_int_equal(fake_calls(), 0);
    close(fd);
}

/* ---- Lines ---- */

static void test_partial_lines(void **state)
{
    int fd = connect_to(sock_path);
    const struct timespec pause = { 0, 20 * 1000 * 1000 };
    const char *pieces[] = { "sta", "te\r", "\nhe", "lp\nstate\nsta", "te", "\n" };
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        send_text(fd, pieces[i]);
        nanosleep(&pause, NULL); /* each piece its own read */
    }
    assert_string_equal(read_line(fd), "ok running");
    assert_string_equal(read_line(fd),
                        "ok usb-attach usb-detach state pause resume power-button stop help");
    assert_string_equal(read_line(fd), "ok running");
    assert_string_equal(read_line(fd), "ok running");
    close(fd);
}

/* A line of CONTROL_MAX_LINE bytes is one; a longer one is an error that ends the client, and
 * nothing else. */
static void test_oversize_line(void **state)
{
    static char line[CONTROL_MAX_LINE + 2];
    int fd = connect_to(sock_path);
    memset(line, ' ', CONTROL_MAX_LINE);
    memcpy(line, "state", 5);
    line[CONTROL_MAX_LINE] = '\0';
    assert_string_equal(ask(fd, line), "ok running");

    memset(line, 'a', CONTROL_MAX_LINE + 1);
    line[CONTROL_MAX_LINE + 1] = '\0';
    send_text(fd, line);
    assert_string_equal(read_line(fd), "error: line longer than 4096 bytes");
    assert_true(closed_by_server(fd));
    close(fd);

    /* Many megabytes without a newline: the same, in one piece or in several reads. */
    fd = connect_to(sock_path);
    char big[65536];
    memset(big, 'x', sizeof(big));
    (void)!send(fd, big, sizeof(big), MSG_NOSIGNAL);
    assert_string_equal(read_line(fd), "error: line longer than 4096 bytes");
    assert_true(closed_by_server(fd));
    close(fd);
}

/* socat - UNIX-CONNECT:PATH sends its line, then shuts its side down, then waits to read: the
 * answer still comes, and then the end. */
static void test_half_close(void **state)
{
    int fd = connect_to(sock_path);
    send_text(fd, "usb-attach path=/tmp/x.img,readonly\nstate\n");
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_string_equal(read_line(fd), "ok port=3");
    assert_string_equal(read_line(fd), "ok running");
    assert_null(read_line(fd));
    close(fd);

    /* A client gone mid-line: the piece is not a command. */
    fd = connect_to(sock_path);
    send_text(fd, "sto");
    close(fd);
    fd = connect_to(sock_path);
    send_text(fd, "stop");
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    assert_null(read_line(fd));
    close(fd);
    fd = connect_to(sock_path);
    assert_string_equal(ask(fd, "state"), "ok running");
    assert_int_equal(fake_calls(), 1); /* the usb-attach alone */
    close(fd);
}

/* ---- Clients ---- */

/* A client that sends and never reads fills its socket, then is dropped; another client is
 * answered at once all along. */
static void test_client_that_never_reads(void **state)
{
    int hog = connect_to(sock_path);
    int other = connect_to(sock_path);
    assert_int_equal(fcntl(hog, F_SETFL, O_NONBLOCK), 0);
    static char helps[4000];
    for (size_t i = 0; i + 5 <= sizeof(helps); i += 5)
        memcpy(helps + i, "help\n", 5);
    bool dropped = false;
    size_t sent = 0;
    while (!dropped && sent < (64u << 20)) {
        ssize_t n = send(hog, helps, sizeof(helps), MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN) {
            dropped = true; /* EPIPE or ECONNRESET: the server let go */
            break;
        }
        /* Our side is full too: the server is not reading us now; it must still answer. */
        assert_string_equal(ask(other, "state"), "ok running");
        struct pollfd p = { .fd = hog, .events = POLLOUT };
        if (poll(&p, 1, 2000) == 0)
            break;
    }
    assert_true(dropped);
    assert_string_equal(ask(other, "state"), "ok running");
    /* It was dropped, having read far fewer answers than it asked for. */
    assert_int_equal(fcntl(hog, F_SETFL, 0), 0);
    assert_true(closed_by_server(hog));
    close(hog);
    assert_string_equal(ask(other, "state"), "ok running");
    close(other);
}

static void test_many_clients(void **state)
{
    int fds[CONTROL_MAX_CLIENTS];
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        fds[i] = connect_to(sock_path);
    /* Each sends half a line, then all finish them, answered each to its own. */
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        send_text(fds[i], i % 2 ? "sta" : "usb-det");
    for (unsigned i = CONTROL_MAX_CLIENTS; i-- > 0;)
        send_text(fds[i], i % 2 ? "te\n" : "ach port=7\n");
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
        assert_string_equal(read_line(fds[i]), i % 2 ? "ok running" : "ok");
    /* One more than the server takes is told so. */
    int extra = connect_to(sock_path);
    assert_string_equal(read_line(extra), "error: too many control clients");
    assert_null(read_line(extra));
    close(extra);
    close(fds[5]);
    /* A place freed is taken again (once the server has seen the close). */
    const struct timespec pause = { 0, 50 * 1000 * 1000 };
    nanosleep(&pause, NULL);
    fds[5] = connect_to(sock_path);
    assert_string_equal(ask(fds[5], "state"), "ok running");
    /* Stopping with clients still there closes them. */
    control_server_stop(*state);
    *state = NULL;
    for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        assert_null(read_line(fds[i]));
        close(fds[i]);
    }
}

/* Whatever a client sends, the server stays up. */
static void test_garbage(void **state)
{
    unsigned seed = 12345;
    for (int round = 0; round < 20; round++) {
        int fd = connect_to(sock_path);
        char buf[3000];
        for (size_t i = 0; i < sizeof(buf); i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) % 16;
            buf[i] = r == 0 ? '\n' : r == 1 ? '\r' : r == 2 ? '\0' : (char)(seed >> 8);
        }
        (void)!send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
        if (round % 2)
            shutdown(fd, SHUT_WR);
        close(fd);
    }
}

/* With no fd left for a new client, the server neither spins on the waiting connection nor
 * forgets it: served once fds are there again. */
static void test_out_of_fds(void **state)
{
    (void)state;
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int probe = dup(0); /* the lowest free fd: the one the client's socket takes */
    assert_true(probe >= 0);
    close(probe);
    struct rlimit tight = { (rlim_t)probe + 1, old.rlim_max };
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
    int fd = connect_to(sock_path);
    send_text(fd, "state\n");
    struct rusage before, after;
    const struct timespec wait = { 0, 300 * 1000 * 1000 };
    getrusage(RUSAGE_SELF, &before);
    nanosleep(&wait, NULL);
    getrusage(RUSAGE_SELF, &after);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    long cpu_us = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1000000L +
                  (after.ru_utime.tv_usec - before.ru_utime.tv_usec) +
                  (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1000000L +
                  (after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    assert_true(cpu_us < 100000); /* a spinning thread would take all 300 ms */
    assert_string_equal(read_line(fd), "ok running");
    close(fd);
}

/* ---- The socket file ---- */

/* A socket file bound and closed: what a crashed vmkit leaves. */
static void make_stale_socket(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
}

static void test_stale_socket_replaced(void **state)
{
    (void)state;
    char msg[512] = "";
    snprintf(sock_path, sizeof(sock_path), "/tmp/vmkit-test-control-%d.sock", (int)getpid());
    unlink(sock_path);
    make_stale_socket(sock_path);
    struct control_server *s = control_server_start(sock_path, &fake_ops, NULL, msg, sizeof(msg));
    assert_non_null(s);
    int fd = connect_to(sock_path);
    assert_string_equal(ask(fd, "state"), "ok running");
    close(fd);
    control_server_stop(s);
    struct stat st;
    assert_int_equal(lstat(sock_path, &st), -1); /* removed at the end */
}

static void test_what_is_not_replaced(void **state)
{
    (void)state;
    char msg[512] = "";
    struct control_server *s = start();
    /* A live server: the second start names the path and leaves the first serving. */
    assert_null(control_server_start(sock_path, &fake_ops, NULL, msg, sizeof(msg)));
    char want[256];
    snprintf(want, sizeof(want), "--control-socket: %s is in use (another program listens on it)",
             sock_path);
    assert_string_equal(msg, want);
    int fd = connect_to(sock_path);
    assert_string_equal(ask(fd, "state"), "ok running");
    close(fd);

    /* Someone else's file in its place once it runs: not removed at the end. */
    assert_int_equal(unlink(sock_path), 0);
    FILE *f = fopen(sock_path, "w");
    assert_non_null(f);
    fclose(f);
    control_server_stop(s);
    struct stat st;
    assert_int_equal(lstat(sock_path, &st), 0);
    assert_true(S_ISREG(st.st_mode));

    /* A file that is not a socket. */
    assert_null(control_server_start(sock_path, &fake_ops, NULL, msg, sizeof(msg)));
    snprintf(want, sizeof(want),
             "--control-socket: %s exists and is not a socket (not replacing it)", sock_path);
    assert_string_equal(msg, want);
    assert_int_equal(lstat(sock_path, &st), 0);
    unlink(sock_path);

    /* No such directory. */
    assert_null(
        control_server_start("/nonexistent-dir/vm.sock", &fake_ops, NULL, msg, sizeof(msg)));
    assert_string_equal(msg,
                        "--control-socket: cannot listen on /nonexistent-dir/vm.sock: No such file "
                        "or directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_each_command, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_bad_commands, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_usb_attach_key_errors, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_partial_lines, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_oversize_line, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_half_close, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_client_that_never_reads, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_many_clients, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_garbage, serve_fake, check_and_stop),
        cmocka_unit_test_setup_teardown(test_out_of_fds, serve_fake, check_and_stop),
        cmocka_unit_test(test_stale_socket_replaced),
        cmocka_unit_test(test_what_is_not_replaced),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fake_reset();
    return rc;
}
