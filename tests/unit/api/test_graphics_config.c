/* Graphics and input's configuration objects: the virtio-gpu device and its scanouts, the
 * keyboards (virtio and USB), the pointing device, and what vmk_config_validate says about
 * them. */
#include "vmkit.h"
#include "api/config_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_files.h"

struct fixture {
    char dir[64];
    char kernel[96]; /* a kernel for a config that validates */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || tf_make_temp_dir(f->dir, sizeof(f->dir), "gfx") < 0)
        return -1;
    snprintf(f->kernel, sizeof(f->kernel), "%s/kernel.elf", f->dir);
    tf_write_tiny_elf(f->kernel);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = tf_remove_tree(f->dir);
    free(f);
    return rc;
}

/* A graphics device with one scanout of w x h. */
static vmk_graphics_device *gpu(uint32_t w, uint32_t h)
{
    vmk_graphics_device *dev = vmk_virtio_graphics_device_new();
    assert_non_null(dev);
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(dev, w, h), VMK_OK);
    return dev;
}

static void test_limits(void **state)
{
    (void)state;
    assert_int_equal(vmk_config_max_graphics_device_count(), 1);
    assert_int_equal(vmk_graphics_device_max_scanout_count(), 16);
    assert_int_equal(vmk_graphics_device_max_scanout_dimension(), 16384);
    assert_int_equal(vmk_config_max_keyboard_count(), 4);
    assert_int_equal(vmk_config_max_pointing_device_count(), 4);
}

static void test_graphics_device(void **state)
{
    (void)state;
    vmk_graphics_device *dev = vmk_virtio_graphics_device_new();
    assert_non_null(dev);
    assert_int_equal(vmk_graphics_device_scanout_count(dev), 0);
    uint32_t w = 7, h = 7;
    assert_int_equal(vmk_graphics_device_get_scanout(dev, 0, &w, &h), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(w, 7);
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(dev, 1280, 800), VMK_OK);
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(dev, 1920, 1080), VMK_OK);
    /* The setter stores what validation will refuse. */
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(dev, 0, UINT32_MAX), VMK_OK);
    assert_int_equal(vmk_graphics_device_scanout_count(dev), 3);
    assert_int_equal(vmk_graphics_device_get_scanout(dev, 0, &w, &h), VMK_OK);
    assert_int_equal(w, 1280);
    assert_int_equal(h, 800);
    assert_int_equal(vmk_graphics_device_get_scanout(dev, 1, &w, NULL), VMK_OK);
    assert_int_equal(w, 1920);
    assert_int_equal(vmk_graphics_device_get_scanout(dev, 1, NULL, &h), VMK_OK);
    assert_int_equal(h, 1080);
    assert_int_equal(vmk_graphics_device_get_scanout(dev, 2, &w, &h), VMK_OK);
    assert_int_equal(w, 0);
    assert_int_equal(h, UINT32_MAX);
    assert_int_equal(vmk_graphics_device_get_scanout(dev, 3, &w, &h), VMK_ERR_INVALID_ARGUMENT);
    vmk_graphics_device_free(dev);

    /* NULL objects. */
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(NULL, 1, 1), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_graphics_device_scanout_count(NULL), 0);
    assert_int_equal(vmk_graphics_device_get_scanout(NULL, 0, &w, &h), VMK_ERR_INVALID_ARGUMENT);
    vmk_graphics_device_free(NULL);
    vmk_keyboard_free(NULL);
    vmk_pointing_device_free(NULL);
}

static void test_config_lists(void **state)
{
    (void)state;
    vmk_config *cfg = vmk_config_new();
    assert_non_null(cfg);
    assert_int_equal(vmk_config_graphics_device_count(cfg), 0);
    assert_int_equal(vmk_config_keyboard_count(cfg), 0);
    assert_int_equal(vmk_config_pointing_device_count(cfg), 0);
    assert_null(vmk_config_get_graphics_device(cfg, 0));

    vmk_graphics_device *dev = gpu(640, 480);
    assert_int_equal(vmk_config_add_graphics_device(cfg, dev), VMK_OK);
    assert_int_equal(vmk_config_graphics_device_count(cfg), 1);
    assert_ptr_equal(vmk_config_get_graphics_device(cfg, 0), dev);
    assert_null(vmk_config_get_graphics_device(cfg, 1));
    assert_int_equal(vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new()), VMK_OK);
    assert_int_equal(vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new()), VMK_OK);
    assert_int_equal(vmk_config_keyboard_count(cfg), 2);
    assert_int_equal(
        vmk_config_add_pointing_device(cfg, vmk_virtio_screen_coordinate_pointing_device_new()),
        VMK_OK);
    assert_int_equal(vmk_config_pointing_device_count(cfg), 1);

    /* NULL items are refused; a NULL config frees what it was given (ASan). */
    assert_int_equal(vmk_config_add_graphics_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_keyboard(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_pointing_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_graphics_device(NULL, gpu(1, 1)), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_keyboard(NULL, vmk_virtio_keyboard_new()),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        vmk_config_add_pointing_device(NULL, vmk_virtio_screen_coordinate_pointing_device_new()),
        VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_graphics_device_count(cfg), 1);
    assert_int_equal(vmk_config_keyboard_count(cfg), 2);
    assert_int_equal(vmk_config_pointing_device_count(cfg), 1);
    assert_int_equal(vmk_config_graphics_device_count(NULL), 0);
    assert_int_equal(vmk_config_keyboard_count(NULL), 0);
    assert_int_equal(vmk_config_pointing_device_count(NULL), 0);
    assert_null(vmk_config_get_graphics_device(NULL, 0));
    vmk_config_free(cfg);
}

static void test_validate(void **state)
{
    struct fixture *f = *state;
    /* A machine with everything at its limits validates. */
    vmk_config *cfg = tf_valid_config(f->kernel);
    vmk_graphics_device *dev = vmk_virtio_graphics_device_new();
    for (unsigned i = 0; i < 16; i++)
        assert_int_equal(vmk_virtio_graphics_device_add_scanout(dev, i ? 1 : 16384, i ? 1 : 16384),
                         VMK_OK);
    assert_int_equal(vmk_config_add_graphics_device(cfg, dev), VMK_OK);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new()), VMK_OK);
        assert_int_equal(
            vmk_config_add_pointing_device(cfg, vmk_virtio_screen_coordinate_pointing_device_new()),
            VMK_OK);
    }
    tf_expect_valid(cfg);
    /* One more of each: every count is a problem, each on its line. */
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(dev, 800, 600), VMK_OK);
    vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new());
    vmk_config_add_pointing_device(cfg, vmk_virtio_screen_coordinate_pointing_device_new());
    vmk_config_add_graphics_device(cfg, gpu(1280, 800));
    EXPECT_INVALID(cfg, "2 graphics devices, at most 1 allowed", "5 keyboards, at most 4 allowed",
                   "5 pointing devices, at most 4 allowed",
                   "graphics device 1: 17 scanouts, at most 16 allowed");
    vmk_config_free(cfg);

    /* Sizes: each side 1..16384, every bad scanout named. */
    cfg = tf_valid_config(f->kernel);
    dev = gpu(1280, 800);
    vmk_virtio_graphics_device_add_scanout(dev, 0, 800);
    vmk_virtio_graphics_device_add_scanout(dev, 1024, 16385);
    vmk_virtio_graphics_device_add_scanout(dev, UINT32_MAX, 0);
    vmk_config_add_graphics_device(cfg, dev);
    EXPECT_INVALID(cfg,
                   "graphics device 1: scanout 2 is 0 x 800 pixels; each side must be 1..16384",
                   "graphics device 1: scanout 3 is 1024 x 16385 pixels",
                   "graphics device 1: scanout 4 is 4294967295 x 0 pixels");
    vmk_error *err = NULL;
    assert_int_equal(vmk_config_validate(cfg, &err), VMK_ERR_INVALID_CONFIG);
    assert_null(strstr(vmk_error_message(err), "scanout 1 "));
    vmk_error_free(err);
    vmk_config_free(cfg);

    /* A graphics device needs a scanout. */
    cfg = tf_valid_config(f->kernel);
    vmk_config_add_graphics_device(cfg, vmk_virtio_graphics_device_new());
    EXPECT_INVALID(cfg, "graphics device 1: no scanouts");
    vmk_config_free(cfg);

    /* Input devices without a graphics device are fine (a headless guest may read them). */
    cfg = tf_valid_config(f->kernel);
    vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new());
    vmk_config_add_pointing_device(cfg, vmk_virtio_screen_coordinate_pointing_device_new());
    tf_expect_valid(cfg);
    vmk_config_free(cfg);
}

/* USB keyboards: their kind, their place in the list, and the controller's ports they share
 * with USB drives. */
static void test_usb_keyboard(void **state)
{
    struct fixture *f = *state;
    vmk_keyboard *usb = vmk_usb_keyboard_new(), *virt = vmk_virtio_keyboard_new();
    assert_int_equal(vmk_keyboard_get_kind(usb), VMK_KEYBOARD_USB);
    assert_int_equal(vmk_keyboard_get_kind(virt), VMK_KEYBOARD_VIRTIO);
    assert_int_equal(vmk_keyboard_get_kind(NULL), VMK_KEYBOARD_VIRTIO);
    vmk_config *cfg = tf_valid_config(f->kernel);
    assert_null(vmk_config_get_keyboard(cfg, 0));
    assert_int_equal(vmk_config_add_keyboard(cfg, usb), VMK_OK);
    assert_int_equal(vmk_config_add_keyboard(cfg, virt), VMK_OK);
    assert_ptr_equal(vmk_config_get_keyboard(cfg, 0), usb);
    assert_ptr_equal(vmk_config_get_keyboard(cfg, 1), virt);
    assert_null(vmk_config_get_keyboard(cfg, 2));
    assert_null(vmk_config_get_keyboard(NULL, 0));
    tf_expect_valid(cfg);
    /* Copies keep the kind. */
    vmk_config *c = config_copy(cfg);
    assert_non_null(c);
    assert_int_equal(vmk_keyboard_get_kind(vmk_config_get_keyboard(c, 0)), VMK_KEYBOARD_USB);
    assert_int_equal(vmk_keyboard_get_kind(vmk_config_get_keyboard(c, 1)), VMK_KEYBOARD_VIRTIO);
    vmk_config_free(c);
    /* Keys go to the first keyboard, a USB one here: not before the VM runs. */
    vmk_vm *vm = vmk_vm_new(cfg, NULL);
    assert_non_null(vm);
    vmk_error *err = NULL;
    assert_int_equal(vmk_vm_send_key(vm, 30, true, &err), VMK_ERR_INVALID_STATE);
    assert_non_null(strstr(vmk_error_message(err), "stopped"));
    vmk_error_free(err);
    vmk_vm_free(vm);
    vmk_config_free(cfg);

    /* Four USB devices fit the four USB 2 ports; a fifth does not, drives or keyboards. */
    char img[128];
    snprintf(img, sizeof(img), "%s/usb.img", f->dir);
    static char block[4096];
    tf_write_file(img, block, sizeof(block));
    cfg = tf_valid_config(f->kernel);
    for (int i = 0; i < 2; i++) {
        vmk_config_add_keyboard(cfg, vmk_usb_keyboard_new());
        vmk_config_add_storage_device(
            cfg, vmk_usb_mass_storage_device_new(vmk_disk_image_attachment_new(img, true)));
    }
    tf_expect_valid(cfg);
    vmk_config_add_keyboard(cfg, vmk_usb_keyboard_new());
    EXPECT_INVALID(cfg, "5 USB devices (2 drives, 3 keyboards), at most 4 allowed: they share "
                        "the xHCI controller's USB 2 ports");
    vmk_config_free(cfg);
    cfg = tf_valid_config(f->kernel);
    for (int i = 0; i < 4; i++)
        vmk_config_add_keyboard(cfg, vmk_usb_keyboard_new());
    tf_expect_valid(cfg);
    vmk_config_free(cfg);
}

static void test_copy(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = tf_valid_config(f->kernel);
    vmk_graphics_device *dev = gpu(1280, 800);
    vmk_virtio_graphics_device_add_scanout(dev, 1024, 768);
    vmk_config_add_graphics_device(cfg, dev);
    for (int i = 0; i < 3; i++)
        vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new());
    for (int i = 0; i < 2; i++)
        vmk_config_add_pointing_device(cfg, vmk_virtio_screen_coordinate_pointing_device_new());
    /* A device without scanouts copies too. */
    vmk_graphics_device *bare = vmk_virtio_graphics_device_new();
    vmk_config_add_graphics_device(cfg, bare);

    vmk_config *c = config_copy(cfg);
    assert_non_null(c);
    /* Changing or freeing the original leaves the copy alone (ASan). */
    vmk_virtio_graphics_device_add_scanout(dev, 1, 1);
    vmk_config_free(cfg);
    assert_int_equal(vmk_config_graphics_device_count(c), 2);
    const vmk_graphics_device *d = vmk_config_get_graphics_device(c, 0);
    assert_ptr_not_equal(d, dev);
    assert_int_equal(vmk_graphics_device_scanout_count(d), 2);
    uint32_t w = 0, h = 0;
    assert_int_equal(vmk_graphics_device_get_scanout(d, 0, &w, &h), VMK_OK);
    assert_int_equal(w, 1280);
    assert_int_equal(h, 800);
    assert_int_equal(vmk_graphics_device_get_scanout(d, 1, &w, &h), VMK_OK);
    assert_int_equal(w, 1024);
    assert_int_equal(h, 768);
    assert_int_equal(vmk_graphics_device_scanout_count(vmk_config_get_graphics_device(c, 1)), 0);
    assert_int_equal(vmk_config_keyboard_count(c), 3);
    assert_int_equal(vmk_config_pointing_device_count(c), 2);
    vmk_config_free(c);

    /* vmk_vm_new copies a valid config with graphics and input devices. */
    cfg = tf_valid_config(f->kernel);
    vmk_config_add_graphics_device(cfg, gpu(1280, 800));
    vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new());
    vmk_config_add_pointing_device(cfg, vmk_virtio_screen_coordinate_pointing_device_new());
    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    assert_non_null(vm);
    assert_null(err);
    vmk_config_free(cfg);
    assert_int_equal(vmk_vm_get_state(vm), VMK_STATE_STOPPED);
    vmk_vm_free(vm);
}

/* The run-time display and input calls on a VM that is not running: the right errors, no
 * crash; the display count follows the graphics device's scanouts. */
static void test_runtime_calls_when_stopped(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = tf_valid_config(f->kernel);
    vmk_vm *vm = vmk_vm_new(cfg, NULL);
    vmk_config_free(cfg);
    assert_non_null(vm);
    vmk_error *err = NULL;
    uint8_t px[16];
    uint32_t w = 7, h = 7;
    assert_int_equal(vmk_vm_display_count(vm), 0);
    assert_int_equal(vmk_vm_screenshot(vm, 0, "/tmp/x.png", &err), VMK_ERR_UNSUPPORTED);
    assert_non_null(strstr(vmk_error_message(err), "no graphics device"));
    vmk_error_free(err);
    assert_int_equal(vmk_vm_send_key(vm, 30, true, NULL), VMK_ERR_UNSUPPORTED);
    assert_int_equal(vmk_vm_send_scroll(vm, 1, NULL), VMK_ERR_UNSUPPORTED);
    vmk_vm_free(vm);

    cfg = tf_valid_config(f->kernel);
    vmk_graphics_device *gd = vmk_virtio_graphics_device_new();
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(gd, 640, 480), VMK_OK);
    assert_int_equal(vmk_virtio_graphics_device_add_scanout(gd, 800, 600), VMK_OK);
    assert_int_equal(vmk_config_add_graphics_device(cfg, gd), VMK_OK);
    assert_int_equal(vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new()), VMK_OK);
    vm = vmk_vm_new(cfg, NULL);
    vmk_config_free(cfg);
    assert_non_null(vm);
    assert_int_equal(vmk_vm_display_count(vm), 2);
    assert_int_equal(vmk_vm_get_display_size(vm, 1, &w, &h, NULL), VMK_OK);
    assert_int_equal(w, 0); /* no mode before the guest sets one */
    assert_int_equal(vmk_vm_get_display_size(vm, 2, &w, &h, NULL), VMK_ERR_INVALID_ARGUMENT);
    err = NULL;
    assert_int_equal(vmk_vm_copy_display_image(vm, 0, px, sizeof(px), &w, &h, &err),
                     VMK_ERR_INVALID_STATE);
    assert_non_null(strstr(vmk_error_message(err), "nothing"));
    vmk_error_free(err);
    assert_int_equal(vmk_vm_screenshot(vm, 0, "/tmp/x.png", NULL), VMK_ERR_INVALID_STATE);
    assert_int_equal(vmk_vm_screenshot(vm, 0, "", NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_vm_reconfigure_display(vm, 0, 0, 480, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_vm_reconfigure_display(vm, 0, 1024, 768, NULL), VMK_ERR_INVALID_STATE);
    assert_int_equal(vmk_vm_send_key(vm, 30, true, NULL), VMK_ERR_INVALID_STATE);
    assert_int_equal(vmk_vm_send_pointer(vm, 0, 1, 1, 0, NULL), VMK_ERR_UNSUPPORTED);
    vmk_display_delegate d = { .size = sizeof(d) };
    assert_int_equal(vmk_vm_set_display_delegate(vm, &d, NULL), VMK_OK);
    assert_int_equal(vmk_vm_set_display_delegate(vm, NULL, NULL), VMK_OK);
    vmk_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_graphics_device),
        cmocka_unit_test(test_config_lists),
        cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usb_keyboard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_calls_when_stopped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
