/* vmkit run --control-socket PATH: a unix socket on which other programs drive the running VM,
 * one command a line (LF or CRLF), each answered by exactly one line, "ok[ DETAIL]" or
 * "error: MESSAGE":
 *   usb-attach path=FILE[,readonly][,cache=MODE][,sync=MODE]   ok port=N
 *   usb-detach port=N                                           ok
 *   state                                                       ok running (paused, ...)
 *   pause | resume | power-button | stop                        ok
 *   help                                                        ok COMMAND...
 * An empty line is no command and gets no answer; a line not ended by a newline when its client
 * goes away is dropped unread (it may be cut short).
 *
 * The server has a thread of its own and serves every client from one poll loop, never
 * blocking on one: a client that does not read its answers is dropped once
 * CONTROL_MAX_PENDING bytes of them wait, and a line longer than CONTROL_MAX_LINE bytes is
 * answered with an error and closes its client. The commands are carried out by ops (run.c's
 * act on the VM; the tests' record what they are asked), one at a time, on that thread. */
#ifndef VMKIT_CONTROL_H
#define VMKIT_CONTROL_H

#include <stddef.h>

#include "cli.h"

#define CONTROL_MAX_LINE    4096u  /* bytes of a command, its newline not counted */
#define CONTROL_MAX_PENDING 65536u /* bytes of answers a client may leave unread */
#define CONTROL_MAX_CLIENTS 64u    /* connected at once; the next is told so and closed */

/* What pause, resume, power-button and stop ask of the VM. */
enum control_action {
    CONTROL_PAUSE,
    CONTROL_RESUME,
    CONTROL_POWER_BUTTON, /* asks the guest to power off, as the first SIGTERM does */
    CONTROL_STOP,         /* stops the VM hard */
};

/* Each returns 0, or -1 with one line in msg (no "error: ") saying why. */
struct control_ops {
    int (*usb_attach)(void *user, const struct cli_disk *drive, unsigned *port, char *msg,
                      size_t len);
    int (*usb_detach)(void *user, unsigned port, char *msg, size_t len);
    int (*act)(void *user, enum control_action action, char *msg, size_t len);
    const char *(*state)(void *user); /* vmk_vm_state_string's word */
};

struct control_server;

/* Listens at path (mode 0600) and serves it on a new thread. A socket file there that nobody
 * answers on is left from a crash and replaced; a live socket or any other file is someone
 * else's: NULL with one line in msg naming path. */
struct control_server *control_server_start(const char *path, const struct control_ops *ops,
                                            void *user, char *msg, size_t len);
/* Answers what it can without waiting, closes every client, ends the thread and removes the
 * socket file (if it is still the one made). NULL: nothing. */
void control_server_stop(struct control_server *s);

#endif
