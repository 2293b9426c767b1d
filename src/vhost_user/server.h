/* A vhost-user back end (QEMU docs/interop/vhost-user.rst) serving one virtio device on
 * a unix socket, so that another VMM (QEMU, say) can drive vmkit's device code. It
 * listens, serves one front end at a time, and when that one goes away (or breaks the
 * protocol) resets the device and accepts the next: a front end that restarts simply
 * reconnects. Every message is checked (header, size, fd count, ring index, addresses);
 * a bad one closes that connection, never the server.
 *
 * One thing a front end can still do to this process: shrink a memory file after
 * SET_MEM_TABLE, so that the next access to that guest RAM raises SIGBUS. A memfd
 * sealed with F_SEAL_SHRINK (QEMU's memory-backend-memfd seals by default) rules that
 * out; regions whose file is not sealed are accepted, as QEMU's memory-backend-file
 * needs, and logged.
 *
 * The device is the transport-agnostic struct virtio_device: the server is its
 * transport (kick eventfds call ops->queue_notify, transport.notify_queue writes the
 * call eventfd). Guest memory is the front end's regions, mmapped from the fds of
 * SET_MEM_TABLE into a guest_memory table keyed by guest-physical address.
 *
 * Threads: everything runs on the event loop given to vhost_user_server_new, which the
 * caller runs with vhost_user_server_run (or event_loop_run_once); only
 * vhost_user_server_stop may be called from elsewhere (another thread, a signal
 * handler). */
#ifndef VMK_VHOST_USER_SERVER_H
#define VMK_VHOST_USER_SERVER_H

#include <stdbool.h>

#include "core/error.h"
#include "core/event_loop.h"
#include "virtio/virtio_device.h"

struct vhost_user_server;

/* Messages for humans (a front end connected, went away, broke a rule). */
typedef void (*vhost_user_log_fn)(void *ctx, const char *msg);

/* Creates the socket at socket_path (replacing a stale socket nobody listens on) and
 * starts listening on el, which must outlive the server and be the loop the device
 * runs its own timers on. dev stays the caller's (free it after the server); the
 * server sets dev->transport. NULL with *err set on failure. */
struct vhost_user_server *vhost_user_server_new(const char *socket_path, struct virtio_device *dev,
                                                struct event_loop *el, vmk_error **err);
/* log may be NULL (silent, the default). */
void vhost_user_server_set_log(struct vhost_user_server *s, vhost_user_log_fn log, void *ctx);
/* Runs the event loop until vhost_user_server_stop. 0, or -errno when the loop fails. */
int vhost_user_server_run(struct vhost_user_server *s);
/* Async-signal-safe and thread-safe: makes vhost_user_server_run return soon. */
void vhost_user_server_stop(struct vhost_user_server *s);
/* True while a front end is connected. */
bool vhost_user_server_connected(const struct vhost_user_server *s);
/* Drops the connection (resetting the device), closes and unlinks the socket. NULL is
 * fine. */
void vhost_user_server_free(struct vhost_user_server *s);

#endif
