#include "attach/vsock_unix.h"
#include "core/error.h"
#include "virtio/vsock.h"
#include "virtio_test_driver.h"
#include "vsock_test_guest.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

struct fix {
    char dir[64], uds[128], listen_path[128], app_path[128];
    struct event_loop *el;
    struct vsock_unix *u;
    struct virtio_device *dev;
    struct test_driver t;
    struct vsock_guest g;
};

static void fill(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof(sa->sun_path));
    strcpy(sa->sun_path, path);
}

/* A host program's listening socket at path. */
static int listen_at(const char *path)
{
    struct sockaddr_un sa;
    fill(&sa, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa;
    fill(&sa, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/vmkit-vsock-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
    snprintf(f->listen_path, sizeof(f->listen_path), "%s/in.sock", f->dir);
    snprintf(f->app_path, sizeof(f->app_path), "%s/app.sock", f->dir);
    struct vsock_unix_port ports[] = { { 2222, f->listen_path, true },
                                       { 5555, f->app_path, false } };
    struct vsock_unix_params p = { .uds_path = f->uds, .ports = ports, .port_count = 2 };
    vmk_error *err = NULL;
    assert_int_equal(vsock_unix_open(&p, "socket device 1", &f->u, &err), VMK_OK);
    assert_int_equal(event_loop_new(&f->el), 0);
    struct virtio_vsock_params vp = {
        .guest_cid = VG_GUEST_CID, .el = f->el, .host = vsock_unix_ops(), .host_ctx = f->u
    };
    f->dev = virtio_vsock_new(&vp);
    assert_non_null(f->dev);
    assert_int_equal(td_init(&f->t, f->dev, ~0ULL), 0);
    vg_init(&f->g, &f->t);
    struct vsock_guest_connector c = virtio_vsock_connector(f->dev);
    assert_int_equal(vsock_unix_start(f->u, f->el, &c), 0);
    vg_post_rx(&f->g, 32);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    vsock_unix_close(f->u);
    td_fini(&f->t);
    f->dev->ops->destroy(f->dev);
    event_loop_free(f->el);
    /* The listeners' files are gone with them. */
    assert_int_equal(access(f->uds, F_OK), -1);
    assert_int_equal(access(f->listen_path, F_OK), -1);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void run_loop(struct fix *f)
{
    for (int i = 0; i < 8; i++)
        if (event_loop_run_once(f->el, 10) <= 0)
            break;
}

/* Reads what fd has within a short while, up to cap - 1 bytes, as a string. */
static ssize_t read_some(struct fix *f, int fd, char *buf, size_t cap)
{
    ssize_t n = -1;
    for (int i = 0; i < 50 && n < 0; i++) {
        run_loop(f);
        n = recv(fd, buf, cap - 1, MSG_DONTWAIT);
    }
    buf[n > 0 ? n : 0] = 0;
    return n;
}

static void test_guest_reaches_path_port(void **state)
{
    struct fix *f = *state;
    char path[160];
    snprintf(path, sizeof(path), "%s_1234", f->uds);
    int app = listen_at(path);
    vg_op(&f->g, VG_REQUEST, 5000, 1234);
    vg_expect(&f->g, VG_RESPONSE, 5000, 1234);
    int conn = accept(app, NULL, NULL);
    assert_true(conn >= 0);
    vg_send(&f->g, VG_RW, 5000, 1234, "ping", 4, 0, 65536, 0);
    char buf[64];
    assert_int_equal(read_some(f, conn, buf, sizeof(buf)), 4);
    assert_string_equal(buf, "ping");
    /* Nobody at <path>_1235: refused. */
    vg_op(&f->g, VG_REQUEST, 5001, 1235);
    vg_expect(&f->g, VG_RST, 5001, 1235);
    close(conn);
    close(app);
    unlink(path);
}

static void test_host_connect_line(void **state)
{
    struct fix *f = *state;
    int c = connect_to(f->uds);
    assert_int_equal(send(c, "CONNECT 22\nhello", 16, 0), 16);
    run_loop(f);
    struct vg_hdr h;
    char buf[64];
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_REQUEST);
    assert_int_equal(h.dst_port, 22);
    uint32_t hport = h.src_port;
    vg_send(&f->g, VG_RESPONSE, 22, hport, NULL, 0, 0, 65536, 0);
    char want[32];
    snprintf(want, sizeof(want), "OK %u\n", hport);
    assert_int_equal(read_some(f, c, buf, sizeof(buf)), (ssize_t)strlen(want));
    assert_string_equal(buf, want);
    /* What the client sent after its line reaches the guest, and nothing of the line. */
    run_loop(f);
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_RW);
    assert_int_equal(h.len, 5);
    assert_memory_equal(buf, "hello", 5);
    close(c);
}

static void test_bad_connect_lines(void **state)
{
    struct fix *f = *state;
    static const char *const bad[] = {
        "HELLO 22\n",   "CONNECT 0\n",   "CONNECT 99999999999\n",
        "CONNECT -1\n", "CONNECT 22 \n", "CONNECTxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int c = connect_to(f->uds);
        assert_int_equal(send(c, bad[i], strlen(bad[i]), 0), (ssize_t)strlen(bad[i]));
        char buf[16];
        if (read_some(f, c, buf, sizeof(buf)) != 0)
            fail_msg("'%s' was not refused", bad[i]);
        close(c);
    }
    /* The guest heard of none of them. */
    struct vg_hdr h;
    char buf[64];
    assert_false(vg_recv(&f->g, &h, buf, sizeof(buf)));
    /* A client that says nothing and goes away frees its place. */
    for (int i = 0; i < 2 * VSOCK_UNIX_MAX_PENDING; i++) {
        int c = connect_to(f->uds);
        run_loop(f);
        close(c);
        run_loop(f);
    }
    int c = connect_to(f->uds);
    assert_int_equal(send(c, "CONNECT 9\n", 10, 0), 10);
    run_loop(f);
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_REQUEST);
    assert_int_equal(h.dst_port, 9);
    close(c);
}

static void test_vfkit_ports(void **state)
{
    struct fix *f = *state;
    /* listen: a client of in.sock reaches guest port 2222, with no greeting. */
    int c = connect_to(f->listen_path);
    run_loop(f);
    struct vg_hdr h;
    char buf[64];
    assert_true(vg_recv(&f->g, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VG_REQUEST);
    assert_int_equal(h.dst_port, 2222);
    vg_send(&f->g, VG_RESPONSE, 2222, h.src_port, NULL, 0, 0, 65536, 0);
    vg_send(&f->g, VG_RW, 2222, h.src_port, "abc", 3, 0, 65536, 0);
    assert_int_equal(read_some(f, c, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "abc");
    close(c);
    /* connect: the guest's port 5555 is app.sock's program. */
    int app = listen_at(f->app_path);
    vg_op(&f->g, VG_REQUEST, 6000, 5555);
    while (vg_recv(&f->g, &h, buf, sizeof(buf)) && h.op != VG_RESPONSE)
        ;
    assert_int_equal(h.op, VG_RESPONSE);
    assert_int_equal(h.dst_port, 6000);
    int conn = accept(app, NULL, NULL);
    assert_true(conn >= 0);
    close(conn);
    close(app);
}

static void test_path_in_use(void **state)
{
    struct fix *f = *state;
    struct vsock_unix_params p = { .uds_path = f->uds };
    struct vsock_unix *u = NULL;
    vmk_error *err = NULL;
    assert_int_not_equal(vsock_unix_open(&p, "socket device 2", &u, &err), VMK_OK);
    assert_null(u);
    assert_non_null(err);
    assert_non_null(strstr(vmk_error_message(err), f->uds));
    assert_non_null(strstr(vmk_error_message(err), "socket device 2"));
    vmk_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_guest_reaches_path_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_connect_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_connect_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vfkit_ports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_in_use, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
