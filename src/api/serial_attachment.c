/* Serial attachments: the host side of a serial port or a console port. */
#include "api/validate.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

/* Bytes of guest output a port holds for a slow reader (src/attach/serial_link.c). */
#define SERIAL_BUFFER_SIZE (64u << 10)

static vmk_serial_attachment *alloc_attachment(vmk_serial_attachment_kind kind, const char *path)
{
    vmk_serial_attachment *att = calloc(1, sizeof(*att));
    if (!att)
        return NULL;
    att->kind = kind;
    att->read_fd = att->write_fd = -1;
    if (config_set_string(&att->path, path) != VMK_OK) {
        free(att);
        return NULL;
    }
    return att;
}

vmk_serial_attachment *vmk_file_serial_attachment_new(const char *path, bool append)
{
    vmk_serial_attachment *att = alloc_attachment(VMK_SERIAL_ATTACHMENT_FILE, path);
    if (att)
        att->append = append;
    return att;
}

vmk_serial_attachment *vmk_fd_serial_attachment_new(int read_fd, int write_fd)
{
    vmk_serial_attachment *att = alloc_attachment(VMK_SERIAL_ATTACHMENT_FD, NULL);
    if (!att)
        return NULL;
    att->read_fd = read_fd < 0 ? -1 : read_fd;
    att->write_fd = write_fd < 0 ? -1 : write_fd;
    return att;
}

vmk_serial_attachment *vmk_pty_serial_attachment_new(void)
{
    return alloc_attachment(VMK_SERIAL_ATTACHMENT_PTY, NULL);
}

vmk_serial_attachment *vmk_socket_serial_attachment_new(const char *path)
{
    return alloc_attachment(VMK_SERIAL_ATTACHMENT_SOCKET, path);
}

void vmk_serial_attachment_free(vmk_serial_attachment *att)
{
    if (!att)
        return;
    free(att->path);
    free(att);
}

vmk_serial_attachment *serial_attachment_copy(const vmk_serial_attachment *att)
{
    vmk_serial_attachment *c = alloc_attachment(att->kind, att->path);
    if (!c)
        return NULL;
    c->append = att->append;
    c->read_fd = att->read_fd;
    c->write_fd = att->write_fd;
    return c;
}

vmk_serial_attachment_kind vmk_serial_attachment_get_kind(const vmk_serial_attachment *att)
{
    return att ? att->kind : VMK_SERIAL_ATTACHMENT_FILE;
}

const char *vmk_serial_attachment_get_path(const vmk_serial_attachment *att)
{
    return att ? att->path : NULL;
}

bool vmk_serial_attachment_is_append(const vmk_serial_attachment *att)
{
    return att && att->kind == VMK_SERIAL_ATTACHMENT_FILE && att->append;
}

int vmk_serial_attachment_get_read_fd(const vmk_serial_attachment *att)
{
    return att && att->kind == VMK_SERIAL_ATTACHMENT_FD ? att->read_fd : -1;
}

int vmk_serial_attachment_get_write_fd(const vmk_serial_attachment *att)
{
    return att && att->kind == VMK_SERIAL_ATTACHMENT_FD ? att->write_fd : -1;
}

size_t vmk_serial_attachment_buffer_size(void)
{
    return SERIAL_BUFFER_SIZE;
}

size_t vmk_socket_path_max_length(void)
{
    return sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
}

void serial_attachment_validate(const vmk_serial_attachment *att, const char *what,
                                struct problems *p)
{
    struct stat st;
    switch (att->kind) {
    case VMK_SERIAL_ATTACHMENT_FILE:
        if (!att->path || !*att->path)
            problem(p, "%s: file attachment without a path", what);
        return;
    case VMK_SERIAL_ATTACHMENT_FD:
        if (att->read_fd >= 0 && fcntl(att->read_fd, F_GETFD) < 0)
            problem(p, "%s: read fd %d is not open", what, att->read_fd);
        if (att->write_fd >= 0 && fcntl(att->write_fd, F_GETFD) < 0)
            problem(p, "%s: write fd %d is not open", what, att->write_fd);
        return;
    case VMK_SERIAL_ATTACHMENT_PTY: return; /* made at start */
    case VMK_SERIAL_ATTACHMENT_SOCKET:
        if (!att->path || !*att->path)
            problem(p, "%s: socket attachment without a path", what);
        else if (strlen(att->path) > vmk_socket_path_max_length())
            problem(p, "%s: socket path %s is %zu bytes, at most %zu allowed", what, att->path,
                    strlen(att->path), vmk_socket_path_max_length());
        else if (lstat(att->path, &st) == 0 && !S_ISSOCK(st.st_mode))
            problem(p, "%s: socket path %s exists and is not a socket", what, att->path);
        return;
    }
    problem(p, "%s: unknown attachment kind %d", what, (int)att->kind);
}
