/* The public vhost-user server: one device of a configuration, built by its device-table row
 * (as a VM builds it) and served by src/vhost_user. */
#include "api/validate.h"
#include "core/error.h"
#include "core/event_loop.h"
#include "machine/device_table.h"
#include "vhost_user/server.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct vmk_vhost_user_server {
    struct event_loop *el;
    struct device_instance inst;
    struct vhost_user_server *server;
    vmk_log_callback log;
    void *log_user;
    volatile sig_atomic_t escaped;
    vmk_stop_reason stop_reason;
};

static void on_escape(void *ctx)
{
    vmk_vhost_user_server *s = ctx;
    s->escaped = 1;
    vhost_user_server_stop(s->server);
}

static void on_log(void *ctx, const char *msg)
{
    vmk_vhost_user_server *s = ctx;
    if (s->log)
        s->log(msg, s->log_user);
}

/* The one device cfg holds: its row and index, or a problem. */
static vmk_result find_device(const vmk_config *cfg, const struct device_kind **kind,
                              vmk_error **err)
{
    unsigned total = 0;
    for (const struct device_kind *const *k = device_table; *k; k++) {
        unsigned n = (*k)->count(cfg);
        if (n && !*kind)
            *kind = *k;
        total += n;
    }
    if (vmk_config_serial_port_count(cfg))
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                        "vhost-user server: the configuration has %u serial ports; a server serves "
                        "one device and no serial port",
                        vmk_config_serial_port_count(cfg));
    if (total != 1 || !*kind)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                        "vhost-user server: the configuration holds %u devices; a server serves "
                        "exactly one (a storage, network, entropy or console device)",
                        total);
    if ((*kind)->not_served)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "vhost-user server: %s: %s", (*kind)->name,
                        (*kind)->not_served);
    return VMK_OK;
}

vmk_vhost_user_server *vmk_vhost_user_server_new(const char *socket_path, const vmk_config *cfg,
                                                 vmk_error **err)
{
    if (!socket_path || !*socket_path || !cfg) {
        vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vhost-user server: %s is NULL or empty",
                 cfg ? "socket_path" : "cfg");
        return NULL;
    }
    const struct device_kind *kind = NULL;
    if (find_device(cfg, &kind, err) != VMK_OK)
        return NULL;
    struct problems p = { 0 };
    config_validate_devices(cfg, &p);
    if (problems_finish(&p, err) != VMK_OK)
        return NULL;

    vmk_vhost_user_server *s = calloc(1, sizeof(*s));
    if (!s) {
        vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "vhost-user server: out of memory");
        return NULL;
    }
    int e = event_loop_new(&s->el);
    if (e < 0) {
        vmk_fail(err, VMK_ERR_IO, -e, "vhost-user server: cannot create an event loop: %s",
                 strerror(-e));
        goto fail;
    }
    struct device_host_env env = { .el = s->el, .escape = on_escape, .escape_ctx = s };
    s->inst = (struct device_instance){ .kind = kind };
    if (kind->open(&env, cfg, 0, &s->inst, err) != VMK_OK) {
        s->inst.kind = NULL;
        goto fail;
    }
    s->server = vhost_user_server_new(socket_path, s->inst.dev, s->el, err);
    if (!s->server)
        goto fail;
    vhost_user_server_set_log(s->server, on_log, s);
    if (kind->connect && kind->connect(&s->inst, err) != VMK_OK)
        goto fail;
    return s;
fail:
    vmk_vhost_user_server_free(s);
    return NULL;
}

vmk_result vmk_vhost_user_server_run(vmk_vhost_user_server *s, vmk_error **err)
{
    if (!s)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "vhost-user server is NULL");
    int e = vhost_user_server_run(s->server);
    if (e < 0)
        return vmk_fail(err, VMK_ERR_IO, -e, "vhost-user server: the event loop failed: %s",
                        strerror(-e));
    s->stop_reason = s->escaped ? VMK_STOP_REASON_CONSOLE_ESCAPE : VMK_STOP_REASON_HOST_STOP;
    return VMK_OK;
}

void vmk_vhost_user_server_stop(vmk_vhost_user_server *s)
{
    if (s && s->server)
        vhost_user_server_stop(s->server);
}

vmk_stop_reason vmk_vhost_user_server_get_stop_reason(const vmk_vhost_user_server *s)
{
    return s ? s->stop_reason : VMK_STOP_REASON_NONE;
}

vmk_result vmk_vhost_user_server_set_log(vmk_vhost_user_server *s, vmk_log_callback log, void *user)
{
    if (!s)
        return VMK_ERR_INVALID_ARGUMENT;
    s->log = log;
    s->log_user = user;
    return VMK_OK;
}

char *vmk_vhost_user_server_copy_console_port_pty_path(vmk_vhost_user_server *s, unsigned index)
{
    if (!s || !s->inst.kind || !s->inst.kind->pty_path)
        return NULL;
    const char *path = s->inst.kind->pty_path(&s->inst, index);
    return path ? strdup(path) : NULL;
}

void vmk_vhost_user_server_free(vmk_vhost_user_server *s)
{
    if (!s)
        return;
    vhost_user_server_free(s->server); /* resets the device, removes the socket */
    if (s->inst.kind)
        s->inst.kind->close(&s->inst);
    event_loop_free(s->el);
    free(s);
}
