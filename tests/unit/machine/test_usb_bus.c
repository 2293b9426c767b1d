/* The machine's USB: the xHCI controller on a PCI bus with the configuration's drives on its
 * ports, drives plugged in and pulled out at run time (their images locked while in, released
 * after), and the errors: no such port, every port taken, a missing image, a non-USB device;
 * USB keyboards on ports of their own, keys reaching the first keyboard when it is one. */
#include "fake_kvm_irq.h"
#include "block/disk_image.h"
#include "core/guest_memory.h"
#include "devices/usb/xhci.h"
#include "machine/usb_bus.h"
#include "pci/pci.h"
#include "test_files.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

struct fx {
    char dir[64];
    char img[4][128];
    struct guest_memory gm;
    struct fake_kvm k;
    struct irq_routing_ops irq;
    struct pci_bus *bus;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f || tf_make_temp_dir(f->dir, sizeof(f->dir), "usb-bus") != 0)
        return -1;
    static char block[4096];
    for (unsigned i = 0; i < 4; i++) {
        snprintf(f->img[i], sizeof(f->img[i]), "%s/disk%u.img", f->dir, i);
        block[0] = (char)('a' + i);
        tf_write_file(f->img[i], block, sizeof(block));
    }
    if (guest_memory_init(&f->gm, 16u << 20) != 0)
        return -1;
    f->irq = fake_kvm_ops(&f->k);
    struct pci_windows w = { .mmio32_base = 0xc0000000ull,
                             .mmio32_size = 0x10000000ull,
                             .mmio64_base = 0x800000000ull,
                             .mmio64_size = 0x100000000ull };
    f->bus = pci_bus_new(&w);
    *state = f;
    return f->bus ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    pci_bus_free(f->bus);
    guest_memory_destroy(&f->gm);
    tf_remove_tree(f->dir);
    free(f);
    return 0;
}

static vmk_storage_device *usb_disk(const char *path, bool read_only)
{
    return vmk_usb_mass_storage_device_new(vmk_disk_image_attachment_new(path, read_only));
}

/* Whether path can be opened for writing now: its lock was let go. */
static bool unlocked(const char *path)
{
    struct disk_image *img = NULL;
    vmk_error *e = NULL;
    vmk_result r =
        disk_image_open(path, false, VMK_DISK_CACHING_AUTOMATIC, VMK_DISK_SYNC_FULL, &img, &e);
    disk_image_close(img);
    vmk_error_free(e);
    return r == VMK_OK;
}

static void test_wanted(void **state)
{
    struct fx *f = *state;
    vmk_config *cfg = vmk_config_new();
    assert_false(usb_bus_wanted(cfg));
    assert_int_equal(vmk_config_set_usb_controller(cfg, true), VMK_OK);
    assert_true(vmk_config_get_usb_controller(cfg));
    assert_true(usb_bus_wanted(cfg));
    vmk_config_set_usb_controller(cfg, false);
    vmk_config_add_storage_device(
        cfg, vmk_virtio_block_device_new(vmk_disk_image_attachment_new(f->img[0], false)));
    assert_false(usb_bus_wanted(cfg));
    vmk_config_add_storage_device(cfg, usb_disk(f->img[1], true));
    assert_true(usb_bus_wanted(cfg));
    vmk_config_free(cfg);
}

static void test_config_drives_and_hot_plug(void **state)
{
    struct fx *f = *state;
    vmk_config *cfg = vmk_config_new();
    vmk_config_add_storage_device(cfg, usb_disk(f->img[0], false));
    vmk_config_add_storage_device(
        cfg, vmk_virtio_block_device_new(vmk_disk_image_attachment_new(f->img[3], false)));
    vmk_config_add_storage_device(cfg, usb_disk(f->img[1], true));
    struct usb_bus *u = NULL;
    vmk_error *e = NULL;
    assert_int_equal(usb_bus_create(&f->gm, &f->irq, f->bus, cfg, &u, &e), VMK_OK);
    assert_non_null(u);
    /* The controller is on the bus, as an xHCI function. */
    bool found = false;
    for (unsigned slot = 1; slot < PCI_MAX_SLOTS && !found; slot++) {
        struct pci_device *d = pci_bus_device(f->bus, slot);
        found = d && pci_config_read(d, PCI_VENDOR_ID, 2) == XHCI_PCI_VENDOR &&
                pci_config_read(d, PCI_DEVICE_ID, 2) == XHCI_PCI_DEVICE;
    }
    assert_true(found);
    /* The writable drive's image is locked while it is in. */
    assert_false(unlocked(f->img[0]));

    /* A drive plugged in at run time takes the next port; pulled out, its image is free. */
    vmk_storage_device *extra = usb_disk(f->img[2], false);
    unsigned port = 0;
    assert_int_equal(usb_bus_attach(u, extra, &port, &e), VMK_OK);
    assert_int_equal(port, 3);
    assert_false(unlocked(f->img[2]));
    assert_int_equal(usb_bus_detach(u, 3, &e), VMK_OK);
    assert_true(unlocked(f->img[2]));
    /* Out again: no drive there. */
    assert_int_equal(usb_bus_detach(u, 3, &e), VMK_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(vmk_error_message(e), "no drive on port 3"));
    vmk_error_free(e), e = NULL;
    assert_int_equal(usb_bus_detach(u, 0, &e), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(e), e = NULL;
    assert_int_equal(usb_bus_detach(u, 99, &e), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(e), e = NULL;

    /* Fill the USB 2 ports: the fifth drive is refused, naming why. */
    assert_int_equal(usb_bus_attach(u, extra, &port, &e), VMK_OK);
    vmk_storage_device *ro = usb_disk(f->img[3], true);
    assert_int_equal(usb_bus_attach(u, ro, &port, &e), VMK_OK);
    assert_int_equal(port, 4);
    assert_int_equal(usb_bus_attach(u, ro, &port, &e), VMK_ERR_INVALID_STATE);
    assert_non_null(strstr(vmk_error_message(e), "every USB 2 port is taken"));
    vmk_error_free(e), e = NULL;

    /* Not a USB drive, or an image that is not there. */
    vmk_storage_device *blk =
        vmk_virtio_block_device_new(vmk_disk_image_attachment_new(f->img[3], true));
    assert_int_equal(usb_bus_attach(u, blk, &port, &e), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(e), e = NULL;
    assert_int_equal(usb_bus_detach(u, 4, &e), VMK_OK);
    vmk_storage_device *missing = usb_disk("/no/such/image.iso", true);
    assert_int_equal(usb_bus_attach(u, missing, &port, &e), VMK_ERR_IO);
    assert_non_null(strstr(vmk_error_message(e), "/no/such/image.iso"));
    vmk_error_free(e), e = NULL;

    /* Freed with drives in (once the bus let go of the function): every image is let go. */
    pci_bus_free(f->bus);
    f->bus = NULL;
    usb_bus_free(u);
    for (unsigned i = 0; i < 4; i++)
        assert_true(unlocked(f->img[i]));
    vmk_storage_device_free(extra);
    vmk_storage_device_free(ro);
    vmk_storage_device_free(blk);
    vmk_storage_device_free(missing);
    vmk_config_free(cfg);
}

static void test_keyboards(void **state)
{
    struct fx *f = *state;
    vmk_config *cfg = vmk_config_new();
    assert_int_equal(vmk_config_add_keyboard(cfg, vmk_usb_keyboard_new()), VMK_OK);
    assert_true(usb_bus_wanted(cfg));
    assert_int_equal(vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new()), VMK_OK);
    assert_int_equal(vmk_config_add_keyboard(cfg, vmk_usb_keyboard_new()), VMK_OK);
    vmk_config_add_storage_device(cfg, usb_disk(f->img[0], false));
    struct usb_bus *u = NULL;
    vmk_error *e = NULL;
    assert_int_equal(usb_bus_create(&f->gm, &f->irq, f->bus, cfg, &u, &e), VMK_OK);
    /* The drive keeps port 1, the two USB keyboards take 2 and 3: one port is left. */
    vmk_storage_device *extra = usb_disk(f->img[1], false);
    unsigned port = 0;
    assert_int_equal(usb_bus_attach(u, extra, &port, &e), VMK_OK);
    assert_int_equal(port, 4);
    vmk_storage_device *fifth = usb_disk(f->img[2], true);
    assert_int_equal(usb_bus_attach(u, fifth, &port, &e), VMK_ERR_INVALID_STATE);
    assert_non_null(strstr(vmk_error_message(e), "every USB 2 port is taken"));
    vmk_error_free(e), e = NULL;
    vmk_storage_device_free(fifth);
    /* A keyboard is no drive to pull out. */
    assert_int_equal(usb_bus_detach(u, 2, &e), VMK_ERR_INVALID_ARGUMENT);
    vmk_error_free(e), e = NULL;
    /* Keys go to the first keyboard; an unknown one is no error. */
    assert_int_equal(usb_bus_send_key(u, 30, true, &e), VMK_OK);
    assert_int_equal(usb_bus_send_key(u, 30, false, &e), VMK_OK);
    assert_int_equal(usb_bus_send_key(u, 0x2ff, true, &e), VMK_OK);
    pci_bus_free(f->bus);
    f->bus = NULL;
    usb_bus_free(u);
    vmk_storage_device_free(extra);
    vmk_config_free(cfg);

    /* The first keyboard virtio: the USB one gets a port but no keys. */
    cfg = vmk_config_new();
    vmk_config_add_keyboard(cfg, vmk_virtio_keyboard_new());
    vmk_config_add_keyboard(cfg, vmk_usb_keyboard_new());
    f->bus = pci_bus_new(&(struct pci_windows){ .mmio32_base = 0xc0000000ull,
                                                .mmio32_size = 0x10000000ull,
                                                .mmio64_base = 0x800000000ull,
                                                .mmio64_size = 0x100000000ull });
    assert_int_equal(usb_bus_create(&f->gm, &f->irq, f->bus, cfg, &u, &e), VMK_OK);
    assert_int_equal(usb_bus_send_key(u, 30, true, &e), VMK_ERR_UNSUPPORTED);
    vmk_error_free(e);
    pci_bus_free(f->bus);
    f->bus = NULL;
    usb_bus_free(u);
    vmk_config_free(cfg);
}

/* A configured drive whose image is missing: nothing is left behind, the message names it. */
static void test_create_fails_cleanly(void **state)
{
    struct fx *f = *state;
    vmk_config *cfg = vmk_config_new();
    vmk_config_add_storage_device(cfg, usb_disk(f->img[0], false));
    vmk_config_add_storage_device(cfg, usb_disk("/no/such.iso", true));
    struct usb_bus *u = NULL;
    vmk_error *e = NULL;
    assert_int_equal(usb_bus_create(&f->gm, &f->irq, f->bus, cfg, &u, &e), VMK_ERR_IO);
    assert_null(u);
    assert_non_null(strstr(vmk_error_message(e), "storage device 2: "));
    assert_non_null(strstr(vmk_error_message(e), "/no/such.iso"));
    vmk_error_free(e);
    assert_true(unlocked(f->img[0]));
    vmk_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wanted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_drives_and_hot_plug, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyboards, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
