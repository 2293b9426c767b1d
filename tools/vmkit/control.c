/* The control socket's server and its line protocol (control.h). */
#include "control.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define REPLY_MAX 2048 /* one answer; a longer message is cut */

struct client {
    int fd;
    char in[CONTROL_MAX_LINE + 1]; /* a line and its newline */
    size_t in_len;
    char *out; /* answers the client has not read yet */
    size_t out_len, out_cap;
    bool closing; /* it sent its last line (or one too long): close once answered */
    bool dead;    /* close now */
};

struct control_server {
    char *path;
    struct stat made; /* the socket file, so that only ours is removed */
    int listen_fd;
    int quit_fd; /* an eventfd: control_server_stop ends the thread */
    const struct control_ops *ops;
    void *user;
    pthread_t thread;
    struct client *clients[CONTROL_MAX_CLIENTS];
    unsigned client_count;
    bool accept_later; /* out of fds: the listener waits a moment rather than spin */
};

/* ---- Answers ---- */

/* Sends what it can without blocking; a client gone away is dead. */
static void client_flush(struct client *c)
{
    while (c->out_len > 0 && !c->dead) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            c->dead = errno != EAGAIN && errno != EWOULDBLOCK;
            return;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
}

/* Queues one answer line and sends what the client takes now. A client that leaves more than
 * CONTROL_MAX_PENDING bytes unread is dropped: nothing waits on it. */
static void client_answer(struct client *c, const char *line)
{
    size_t n = strlen(line);
    if (c->dead)
        return;
    if (c->out_len + n + 1 > CONTROL_MAX_PENDING) {
        c->dead = true;
        return;
    }
    if (c->out_len + n + 1 > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 256;
        while (cap < c->out_len + n + 1)
            cap *= 2;
        char *out = realloc(c->out, cap);
        if (!out) {
            c->dead = true;
            return;
        }
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, line, n);
    c->out[c->out_len + n] = '\n';
    c->out_len += n + 1;
    client_flush(c);
}

/* "error: " and msg, with "vmkit: " (the CLI parser's prefix) left out and any line break
 * made a space: an answer is one line. */
static void answer_error(struct client *c, const char *msg)
{
    char reply[REPLY_MAX];
    if (!strncmp(msg, "vmkit: ", 7))
        msg += 7;
    snprintf(reply, sizeof(reply), "error: %s", msg);
    for (char *p = reply; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    client_answer(c, reply);
}

/* An op's result: "ok" (detail NULL) or "ok DETAIL", else its message. */
static void answer_op(struct client *c, int rc, const char *detail, const char *msg)
{
    char reply[REPLY_MAX];
    if (rc) {
        answer_error(c, *msg ? msg : "failed");
        return;
    }
    snprintf(reply, sizeof(reply), "ok%s%s", detail ? " " : "", detail ? detail : "");
    client_answer(c, reply);
}

/* ---- Commands ---- */

static void do_usb_attach(struct control_server *s, struct client *c, const char *args)
{
    char msg[1024] = "", detail[32] = "";
    struct cli_disk drive;
    if (cli_parse_usb_drive("usb-attach", args, &drive, msg, sizeof(msg))) {
        answer_error(c, msg);
        return;
    }
    unsigned port = 0;
    int rc = s->ops->usb_attach(s->user, &drive, &port, msg, sizeof(msg));
    free(drive.path);
    snprintf(detail, sizeof(detail), "port=%u", port);
    answer_op(c, rc, detail, msg);
}

static void do_usb_detach(struct control_server *s, struct client *c, const char *args)
{
    char msg[1024] = "";
    uint64_t port = 0;
    if (strncmp(args, "port=", 5)) {
        answer_error(c, "usb-detach: expected port=N (the port usb-attach answered)");
        return;
    }
    if (cli_parse_number("usb-detach: port", args + 5, 0, UINT_MAX, "", &port, msg, sizeof(msg))) {
        answer_error(c, msg);
        return;
    }
    answer_op(c, s->ops->usb_detach(s->user, (unsigned)port, msg, sizeof(msg)), NULL, msg);
}

static void do_state(struct control_server *s, struct client *c, const char *args)
{
    (void)args;
    answer_op(c, 0, s->ops->state(s->user), "");
}

static void do_help(struct control_server *s, struct client *c, const char *args);

/* A command runs its function, or (run NULL) asks the ops for its action. */
static const struct command {
    const char *name;
    void (*run)(struct control_server *s, struct client *c, const char *args);
    enum control_action action;
    bool takes_args;
} commands[] = {
    { "usb-attach", do_usb_attach, 0, true },
    { "usb-detach", do_usb_detach, 0, true },
    { "state", do_state, 0, false },
    { "pause", NULL, CONTROL_PAUSE, false },
    { "resume", NULL, CONTROL_RESUME, false },
    { "power-button", NULL, CONTROL_POWER_BUTTON, false },
    { "stop", NULL, CONTROL_STOP, false },
    { "help", do_help, 0, false },
};
#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static void do_help(struct control_server *s, struct client *c, const char *args)
{
    char list[256] = "", *p = list;
    (void)s, (void)args;
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        p += snprintf(p, sizeof(list) - (size_t)(p - list), "%s%s", i ? " " : "", commands[i].name);
    answer_op(c, 0, list, "");
}

/* One line, its newline gone (len bytes, not NUL-terminated). */
static void run_line(struct control_server *s, struct client *c, char *line, size_t len)
{
    char msg[REPLY_MAX];
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (memchr(line, '\0', len)) {
        answer_error(c, "the line holds a NUL byte");
        return;
    }
    line[len] = '\0';
    while (*line == ' ' || *line == '\t')
        line++;
    len = strlen(line);
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = '\0';
    if (!*line)
        return; /* an empty line is no command */
    size_t word = strcspn(line, " \t");
    const char *args = line + word + strspn(line + word, " \t");
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strlen(commands[i].name) != word || strncmp(line, commands[i].name, word))
            continue;
        if (!commands[i].takes_args && *args) {
            snprintf(msg, sizeof(msg), "%s takes no arguments (got '%s')", commands[i].name, args);
            answer_error(c, msg);
        } else if (commands[i].run) {
            commands[i].run(s, c, args);
        } else {
            msg[0] = '\0';
            answer_op(c, s->ops->act(s->user, commands[i].action, msg, sizeof(msg)), NULL, msg);
        }
        return;
    }
    snprintf(msg, sizeof(msg), "unknown command '%.*s' (help lists them)", (int)word, line);
    answer_error(c, msg);
}

/* ---- Clients ---- */

/* Reads what the client sent and runs each whole line. */
static void client_read(struct control_server *s, struct client *c)
{
    ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
    if (n < 0) {
        c->dead = errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        return;
    }
    if (n == 0) {
        /* A half-close (socat after its input ends) still gets its answers. */
        c->closing = true;
        c->in_len = 0;
        return;
    }
    c->in_len += (size_t)n;
    size_t start = 0;
    char *nl;
    while (!c->dead && (nl = memchr(c->in + start, '\n', c->in_len - start))) {
        run_line(s, c, c->in + start, (size_t)(nl - (c->in + start)));
        start = (size_t)(nl - c->in) + 1;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len == sizeof(c->in)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "line longer than %u bytes", CONTROL_MAX_LINE);
        answer_error(c, msg);
        c->closing = true;
        c->in_len = 0;
    }
}

static void client_free(struct client *c)
{
    close(c->fd);
    free(c->out);
    free(c);
}

static void accept_clients(struct control_server *s)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /* EAGAIN: all taken. The connection stays queued when the process is out of fds,
             * and poll would report it at once, again and again. */
            s->accept_later =
                errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
            return;
        }
        struct client *c = s->client_count < CONTROL_MAX_CLIENTS ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            static const char full[] = "error: too many control clients\n";
            (void)!send(fd, full, sizeof(full) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(fd);
            continue;
        }
        c->fd = fd;
        s->clients[s->client_count++] = c;
    }
}

static void *serve(void *arg)
{
    struct control_server *s = arg;
    struct pollfd fds[2 + CONTROL_MAX_CLIENTS];
    for (;;) {
        fds[0] = (struct pollfd){ .fd = s->quit_fd, .events = POLLIN };
        fds[1] = (struct pollfd){ .fd = s->listen_fd, .events = s->accept_later ? 0 : POLLIN };
        for (unsigned i = 0; i < s->client_count; i++) {
            const struct client *c = s->clients[i];
            fds[2 + i] = (struct pollfd){ .fd = c->fd,
                                          .events = (short)((c->closing ? 0 : POLLIN) |
                                                            (c->out_len ? POLLOUT : 0)) };
        }
        unsigned polled = s->client_count;
        if (poll(fds, 2 + polled, s->accept_later ? 100 : -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "vmkit: control socket: cannot poll: %s\n", strerror(errno));
            return NULL;
        }
        if (fds[0].revents)
            return NULL;
        for (unsigned i = 0; i < polled; i++) {
            struct client *c = s->clients[i];
            short ev = fds[2 + i].revents;
            if (ev & POLLOUT)
                client_flush(c);
            if (!c->closing && !c->dead && (ev & (POLLIN | POLLHUP)))
                client_read(s, c);
            else if (ev & (POLLERR | POLLNVAL) || (ev & POLLHUP && c->out_len))
                c->dead = true; /* nobody left to read the answers */
        }
        /* Closes the dead and the answered; keeps the order of the rest. */
        unsigned kept = 0;
        for (unsigned i = 0; i < s->client_count; i++) {
            struct client *c = s->clients[i];
            if (c->dead || (c->closing && !c->out_len))
                client_free(c);
            else
                s->clients[kept++] = c;
        }
        s->client_count = kept;
        if (s->accept_later || fds[1].revents & POLLIN)
            accept_clients(s);
    }
}

/* ---- The socket ---- */

/* A socket file nobody answers on is left from a crash: removed. Anything else there stays,
 * and the start fails. */
static int clear_stale(const struct sockaddr_un *sa, char *msg, size_t len)
{
    struct stat st;
    if (lstat(sa->sun_path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(msg, len, "--control-socket: %s: %s", sa->sun_path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(msg, len, "--control-socket: %s exists and is not a socket (not replacing it)",
                 sa->sun_path);
        return -1;
    }
    /* Non-blocking: a live listener with a full backlog answers EAGAIN, not a hang. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = fd < 0 ? -1 : connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
        snprintf(msg, len, "--control-socket: %s is in use (another program listens on it)",
                 sa->sun_path);
        return -1;
    }
    if (e != ECONNREFUSED) {
        snprintf(msg, len, "--control-socket: %s: %s", sa->sun_path, strerror(e));
        return -1;
    }
    if (unlink(sa->sun_path) < 0 && errno != ENOENT) {
        snprintf(msg, len, "--control-socket: cannot remove the stale socket %s: %s", sa->sun_path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static int listen_at(struct control_server *s, char *msg, size_t len)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(s->path) >= sizeof(sa.sun_path)) {
        snprintf(msg, len, "--control-socket: %s is longer than %zu bytes", s->path,
                 sizeof(sa.sun_path) - 1);
        return -1;
    }
    memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
    if (clear_stale(&sa, msg, len) < 0)
        return -1;
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* The file takes the socket's mode as bind makes it: private from the first moment, which
     * a chmod after bind would not be. */
    if (s->listen_fd < 0 || fchmod(s->listen_fd, 0600) < 0 ||
        bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(msg, len, "--control-socket: cannot listen on %s: %s", s->path, strerror(errno));
        return -1;
    }
    if (lstat(s->path, &s->made) < 0 || listen(s->listen_fd, 16) < 0) {
        snprintf(msg, len, "--control-socket: cannot listen on %s: %s", s->path, strerror(errno));
        unlink(s->path);
        memset(&s->made, 0, sizeof(s->made));
        return -1;
    }
    return 0;
}

static void server_free(struct control_server *s)
{
    struct stat st;
    for (unsigned i = 0; i < s->client_count; i++)
        client_free(s->clients[i]);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->quit_fd >= 0)
        close(s->quit_fd);
    if (s->made.st_ino && lstat(s->path, &st) == 0 && st.st_dev == s->made.st_dev &&
        st.st_ino == s->made.st_ino)
        unlink(s->path);
    free(s->path);
    free(s);
}

struct control_server *control_server_start(const char *path, const struct control_ops *ops,
                                            void *user, char *msg, size_t len)
{
    struct control_server *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(path))) {
        snprintf(msg, len, "--control-socket: out of memory");
        free(s);
        return NULL;
    }
    s->ops = ops;
    s->user = user;
    s->listen_fd = s->quit_fd = -1;
    if (listen_at(s, msg, len) < 0) {
        server_free(s);
        return NULL;
    }
    s->quit_fd = eventfd(0, EFD_CLOEXEC);
    int e = s->quit_fd < 0 ? errno : pthread_create(&s->thread, NULL, serve, s);
    if (e) {
        snprintf(msg, len, "--control-socket: cannot start its thread: %s", strerror(e));
        server_free(s);
        return NULL;
    }
    return s;
}

void control_server_stop(struct control_server *s)
{
    if (!s)
        return;
    uint64_t one = 1;
    if (write(s->quit_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        return; /* cannot happen with an eventfd; leave the thread its server */
    pthread_join(s->thread, NULL);
    for (unsigned i = 0; i < s->client_count; i++)
        client_flush(s->clients[i]);
    server_free(s);
}
