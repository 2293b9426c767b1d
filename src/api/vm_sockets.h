/* A VM's socket device at run time, as the application sees it: its listeners (a guest's
 * connection to such a host port becomes a socketpair whose far end the listener gets) and
 * the connections it asked for, each ending told to its callback. The device reports on its
 * own threads with its lock held; everything reaches the application later, on the VM thread
 * (vm_sockets_deliver), so that its callbacks may call the library. vm.c owns one. */
#ifndef VMK_API_VM_SOCKETS_H
#define VMK_API_VM_SOCKETS_H

#include "machine/device_table.h" /* struct vsock_pending, the socket device's contract */
#include "vmkit.h"

#include <pthread.h>
#include <stdint.h>

struct socket_event;
struct socket_listener;

struct vm_sockets {
    pthread_mutex_t lock; /* a leaf lock: taken under a device's, never the other way */
    struct socket_event *head, *tail;
    struct socket_listener *listener;
    unsigned listener_count;
    void (*wake)(void *ctx); /* the VM thread has events to deliver */
    void *wake_ctx;
};

void vm_sockets_init(struct vm_sockets *s, void (*wake)(void *ctx), void *wake_ctx);
/* Forgets everything: undelivered connections are closed. */
void vm_sockets_fini(struct vm_sockets *s);
/* Sets (accept non-NULL) or removes the listener of port. */
vmk_result vm_sockets_set_listener(struct vm_sockets *s, uint32_t port, vmk_socket_accept accept,
                                   void *user, vmk_error **err);
/* device_host_env.socket_listener: ctx is the vm_sockets. */
int vm_sockets_listener(void *ctx, uint32_t port);
/* A connection to the guest's port for the application: the pending the device takes and the
 * fd it owns (the socketpair's device end), or -errno. *p is freed after its delivery, or by
 * vm_sockets_abandon when the device refused it. */
int vm_sockets_connection(struct vm_sockets *s, uint32_t port, vmk_socket_connected done,
                          void *user, struct vsock_pending **p);
void vm_sockets_abandon(struct vsock_pending *p);
/* Hands every event to the application. VM thread. */
void vm_sockets_deliver(struct vm_sockets *s, vmk_vm *vm);

#endif
