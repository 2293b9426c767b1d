/* A configured console device joined to its attachments (console_ports.c): bytes the
 * guest writes to a port reach the attachment, bytes on the attachment reach the
 * guest's receive buffers, and a port that cannot be opened leaves nothing behind. */
#include "machine/console_ports.h"
#include "virtio_test_driver.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define MULTIPORT (1ull << 1)

struct fixture {
    int to_guest[2], from_guest[2]; /* pipes: the attachment's host side */
    vmk_console_device *cd;
    struct event_loop *el;
    struct console_ports *cp;
    struct virtio_device *dev;
    struct test_driver t;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || pipe2(f->to_guest, O_CLOEXEC) || pipe2(f->from_guest, O_CLOEXEC) ||
        event_loop_new(&f->el) < 0 || !(f->cd = vmk_virtio_console_device_new()))
        return -1;
    vmk_serial_attachment *att = vmk_fd_serial_attachment_new(f->to_guest[0], f->from_guest[1]);
    if (vmk_virtio_console_device_add_port(f->cd, "console0", true, att) != VMK_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->dev) {
        td_fini(&f->t);
        f->dev->ops->destroy(f->dev);
    }
    console_ports_close(f->cp);
    vmk_console_device_free(f->cd);
    event_loop_free(f->el);
    for (int i = 0; i < 2; i++) {
        close(f->to_guest[i]);
        close(f->from_guest[i]);
    }
    free(f);
    return 0;
}

static void test_data_both_ways(void **state)
{
    struct fixture *f = *state;
    vmk_error *err = NULL;
    assert_int_equal(console_ports_open(f->cd, f->el, NULL, NULL, &f->cp, &f->dev, &err), VMK_OK);
    assert_non_null(f->dev);
    assert_int_equal(f->dev->device_id, VIRTIO_ID_CONSOLE);
    assert_int_equal(td_init(&f->t, f->dev, ~MULTIPORT), 0);
    assert_int_equal(console_ports_connect(f->cp, &err), VMK_OK);

    /* Guest → host: port 0's transmit queue (1). */
    uint64_t out = td_alloc(&f->t, 16);
    memcpy(td_ptr(&f->t, out, 5), "hello", 5);
    struct td_buf ob = { .gpa = out, .len = 5 };
    td_add(&f->t, 1, &ob, 1);
    td_kick(&f->t, 1);
    assert_int_equal(event_loop_run_once(f->el, 1000), 1); /* the port's output queue drains */
    char got[16] = { 0 };
    assert_int_equal(read(f->from_guest[0], got, sizeof(got)), 5);
    assert_string_equal(got, "hello");

    /* Host → guest: the link reads the pipe on the event loop into the receive queue (0). */
    uint64_t in = td_alloc(&f->t, 64);
    struct td_buf ib = { .gpa = in, .len = 64, .writable = true };
    uint16_t head = td_add(&f->t, 0, &ib, 1);
    td_kick(&f->t, 0);
    assert_int_equal(write(f->to_guest[1], "world", 5), 5);
    uint32_t id = 0, len = 0;
    for (int i = 0; i < 50 && !td_used(&f->t, 0, &id, &len); i++)
        assert_true(event_loop_run_once(f->el, 100) >= 0);
    assert_int_equal(id, head);
    assert_int_equal(len, 5);
    assert_memory_equal(td_ptr(&f->t, in, 5), "world", 5);
}

/* The second port's file cannot be created: an error naming it, and the first port's
 * link is closed again (the sanitizer build reports any leak). */
static void test_bad_port_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    vmk_serial_attachment *bad = vmk_file_serial_attachment_new("/nonexistent/dir/port", false);
    assert_int_equal(vmk_virtio_console_device_add_port(f->cd, "agent", false, bad), VMK_OK);
    vmk_error *err = NULL;
    assert_int_not_equal(console_ports_open(f->cd, f->el, NULL, NULL, &f->cp, &f->dev, &err),
                         VMK_OK);
    assert_null(f->cp);
    assert_null(f->dev);
    assert_non_null(err);
    assert_non_null(strstr(vmk_error_message(err), "console port 2"));
    assert_non_null(strstr(vmk_error_message(err), "/nonexistent/dir/port"));
    vmk_error_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_data_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_port_leaves_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
