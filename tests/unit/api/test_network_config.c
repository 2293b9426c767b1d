/* Network configuration: MAC addresses, the attachments, virtio network devices, and what
 * vmk_config_validate says about them, one line per problem naming the device. */
#include "api/config_internal.h"
#include "vmkit.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_files.h"

struct fixture {
    char dir[64];
    char kernel[128];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/vmkit-test-network-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->kernel, sizeof(f->kernel), "%s/kernel.elf", f->dir);
    tf_write_tiny_elf(f->kernel);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->kernel);
    rmdir(f->dir);
    free(f);
    return 0;
}

static vmk_config *valid_config(const struct fixture *f)
{
    return tf_valid_config(f->kernel);
}

static vmk_mac_address mac_of(const char *text)
{
    vmk_mac_address mac;
    assert_int_equal(vmk_mac_address_parse(text, &mac), VMK_OK);
    return mac;
}

static vmk_network_device *net(vmk_network_attachment *att)
{
    assert_non_null(att);
    vmk_network_device *dev = vmk_virtio_network_device_new(att);
    assert_non_null(dev);
    return dev;
}

/* A device on att with a fixed MAC address (…:nn), so that messages are predictable. */
static vmk_network_device *add(vmk_config *cfg, vmk_network_attachment *att, unsigned nn)
{
    vmk_network_device *dev = net(att);
    char text[VMK_MAC_ADDRESS_STRING_SIZE];
    snprintf(text, sizeof(text), "52:54:00:00:00:%02x", nn & 0xff);
    vmk_mac_address mac = mac_of(text);
    assert_int_equal(vmk_virtio_network_device_set_mac_address(dev, &mac), VMK_OK);
    assert_int_equal(vmk_config_add_network_device(cfg, dev), VMK_OK);
    return dev;
}

/* The attachment of a device the test built (the getter's const is for the caller's view). */
static vmk_network_attachment *att_of(vmk_network_device *dev)
{
    return (vmk_network_attachment *)vmk_network_device_get_attachment(dev);
}

static void expect_valid(const vmk_config *cfg)
{
    vmk_error *err = NULL;
    vmk_result r = vmk_config_validate(cfg, &err);
    if (r != VMK_OK)
        fail_msg("unexpected: %s", vmk_error_message(err));
    assert_null(err);
}

/* Exactly these problems, one line each, in this order. */
static void expect_problems(const vmk_config *cfg, const char *const *lines)
{
    char want[4096] = "";
    for (; *lines; lines++) {
        if (*want)
            strcat(want, "\n");
        strcat(want, *lines);
    }
    vmk_error *err = NULL;
    assert_int_equal(vmk_config_validate(cfg, &err), VMK_ERR_INVALID_CONFIG);
    assert_non_null(err);
    if (strcmp(vmk_error_message(err), want))
        fail_msg("got:\n%s\nwanted:\n%s", vmk_error_message(err), want);
    vmk_error_free(err);
}

#define EXPECT_PROBLEMS(cfg, ...) expect_problems(cfg, (const char *const[]){ __VA_ARGS__, NULL })

/* ---- MAC addresses ---- */

static void test_mac_parse_and_format(void **state)
{
    (void)state;
    char out[VMK_MAC_ADDRESS_STRING_SIZE];
    vmk_mac_address mac = mac_of("52:54:00:12:34:56");
    static const uint8_t want[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
    assert_memory_equal(mac.octets, want, 6);
    vmk_mac_address_format(&mac, out);
    assert_string_equal(out, "52:54:00:12:34:56");

    mac = mac_of("AA:bB:Cc:dd:EE:0F"); /* either case; formatted in lower case */
    static const uint8_t want2[6] = { 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f };
    assert_memory_equal(mac.octets, want2, 6);
    vmk_mac_address_format(&mac, out);
    assert_string_equal(out, "aa:bb:cc:dd:ee:0f");
    assert_int_equal(VMK_MAC_ADDRESS_STRING_SIZE, 18);
    assert_int_equal(strlen(out), 17);

    vmk_mac_address_format(NULL, out);
    assert_string_equal(out, "");
    vmk_mac_address_format(&mac, NULL); /* nothing to write to: nothing happens */
}

static void test_mac_parse_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "52:54:00:12:34:5",   /* 16 characters */
        "52:54:00:12:34:567", /* 18 */
        "52:54:00:12:34:56 ", /* 18, trailing space */
        "52:54:00:12:34:5g",  /* not hex */
        "52:54:0x:12:34:56",  /* not hex */
        "52-54-00-12-34-56",  /* other separators */
        "52:54:00:12:34.56",  /* one other separator */
        "5254:00:12:34:56:",  /* separators in the wrong places */
        "525400123456abcde",  /* no separators */
        " 2:54:00:12:34:56",  /* a space for a digit */
        "",
    };
    const vmk_mac_address sentinel = { { 1, 2, 3, 4, 5, 6 } };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vmk_mac_address mac = sentinel;
        if (vmk_mac_address_parse(bad[i], &mac) != VMK_ERR_INVALID_ARGUMENT)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_memory_equal(&mac, &sentinel, sizeof(mac)); /* untouched */
    }
    vmk_mac_address mac = sentinel;
    assert_int_equal(vmk_mac_address_parse(NULL, &mac), VMK_ERR_INVALID_ARGUMENT);
    assert_memory_equal(&mac, &sentinel, sizeof(mac));
    assert_int_equal(vmk_mac_address_parse("52:54:00:12:34:56", NULL), VMK_ERR_INVALID_ARGUMENT);
}

static void test_mac_bits(void **state)
{
    (void)state;
    vmk_mac_address m = mac_of("ff:ff:ff:ff:ff:ff");
    assert_true(vmk_mac_address_is_multicast(&m)); /* broadcast is multicast */
    m = mac_of("01:00:5e:00:00:01");
    assert_true(vmk_mac_address_is_multicast(&m));
    assert_false(vmk_mac_address_is_locally_administered(&m));
    m = mac_of("52:54:00:12:34:56");
    assert_false(vmk_mac_address_is_multicast(&m));
    assert_true(vmk_mac_address_is_locally_administered(&m));
    m = mac_of("00:1b:21:00:00:01");
    assert_false(vmk_mac_address_is_multicast(&m));
    assert_false(vmk_mac_address_is_locally_administered(&m));
    m = mac_of("03:00:00:00:00:00");
    assert_true(vmk_mac_address_is_multicast(&m));
    assert_true(vmk_mac_address_is_locally_administered(&m));
    assert_false(vmk_mac_address_is_multicast(NULL));
    assert_false(vmk_mac_address_is_locally_administered(NULL));
}

static void test_mac_random(void **state)
{
    (void)state;
    vmk_mac_address prev = vmk_mac_address_random();
    for (unsigned i = 0; i < 64; i++) {
        vmk_mac_address m = vmk_mac_address_random();
        assert_true(vmk_mac_address_is_locally_administered(&m));
        assert_false(vmk_mac_address_is_multicast(&m));
        assert_memory_not_equal(&m, &prev, sizeof(m)); /* 46 random bits */
        prev = m;
    }
}

/* ---- Attachments and devices: setters store, getters return what was stored ---- */

static void test_attachment_kinds(void **state)
{
    (void)state;
    char path[64] = "/run/gvproxy.sock";
    vmk_network_attachment *nat = vmk_nat_network_attachment_new();
    vmk_network_attachment *fh = vmk_file_handle_network_attachment_new(7);
    vmk_network_attachment *dg = vmk_unix_datagram_network_attachment_new(path);
    path[0] = 'X';
    vmk_network_attachment *st = vmk_unix_stream_network_attachment_new("/run/passt.sock");
    vmk_network_attachment *tap = vmk_tap_network_attachment_new("tap0");
    assert_non_null(nat);
    assert_non_null(fh);
    assert_non_null(dg);
    assert_non_null(st);
    assert_non_null(tap);

    assert_int_equal(vmk_network_attachment_get_kind(nat), VMK_NETWORK_ATTACHMENT_NAT);
    assert_int_equal(vmk_network_attachment_get_kind(fh), VMK_NETWORK_ATTACHMENT_FILE_HANDLE);
    assert_int_equal(vmk_network_attachment_get_kind(dg), VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM);
    assert_int_equal(vmk_network_attachment_get_kind(st), VMK_NETWORK_ATTACHMENT_UNIX_STREAM);
    assert_int_equal(vmk_network_attachment_get_kind(tap), VMK_NETWORK_ATTACHMENT_TAP);

    assert_null(vmk_network_attachment_get_path(nat));
    assert_null(vmk_network_attachment_get_path(fh));
    assert_string_equal(vmk_network_attachment_get_path(dg), "/run/gvproxy.sock"); /* a copy */
    assert_string_equal(vmk_network_attachment_get_path(st), "/run/passt.sock");
    assert_string_equal(vmk_network_attachment_get_path(tap), "tap0");
    assert_null(vmk_network_attachment_get_path(NULL));

    assert_int_equal(vmk_network_attachment_get_fd(fh), 7);
    assert_int_equal(vmk_network_attachment_get_fd(nat), -1);
    assert_int_equal(vmk_network_attachment_get_fd(dg), -1);
    assert_int_equal(vmk_network_attachment_get_fd(tap), -1);
    assert_int_equal(vmk_network_attachment_get_fd(NULL), -1);

    /* Defaults. */
    assert_int_equal(vmk_network_attachment_get_mtu(fh), 1500);
    assert_int_equal(vmk_network_attachment_get_mtu(dg), 1500);
    assert_int_equal(vmk_network_attachment_get_mtu(st), 1500);
    assert_true(vmk_nat_network_attachment_get_host_loopback(nat));
    assert_false(vmk_nat_network_attachment_get_host_loopback(tap)); /* not NAT */
    assert_false(vmk_unix_datagram_network_attachment_get_vfkit_magic(dg));
    assert_int_equal(vmk_nat_network_attachment_port_forward_count(nat), 0);

    /* Setters store, getters return. */
    assert_int_equal(vmk_network_attachment_set_mtu(st, 65535), VMK_OK);
    assert_int_equal(vmk_network_attachment_get_mtu(st), 65535);
    assert_int_equal(vmk_nat_network_attachment_set_host_loopback(nat, false), VMK_OK);
    assert_false(vmk_nat_network_attachment_get_host_loopback(nat));
    assert_int_equal(vmk_nat_network_attachment_set_host_loopback(nat, true), VMK_OK);
    assert_true(vmk_nat_network_attachment_get_host_loopback(nat));
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(dg, true), VMK_OK);
    assert_true(vmk_unix_datagram_network_attachment_get_vfkit_magic(dg));
    /* Stored on another kind too (validation names it), but not that kind's value. */
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(st, true), VMK_OK);
    assert_false(vmk_unix_datagram_network_attachment_get_vfkit_magic(st));

    /* NULL objects. */
    assert_int_equal(vmk_network_attachment_set_mtu(NULL, 1500), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_nat_network_attachment_set_host_loopback(NULL, true),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(NULL, true),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        vmk_nat_network_attachment_add_port_forward(NULL, VMK_PORT_FORWARD_TCP, NULL, 1, 1),
        VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_network_attachment_get_mtu(NULL), 0);
    assert_false(vmk_nat_network_attachment_get_host_loopback(NULL));
    assert_false(vmk_unix_datagram_network_attachment_get_vfkit_magic(NULL));
    assert_int_equal(vmk_nat_network_attachment_port_forward_count(NULL), 0);

    /* Paths may be NULL (validation judges). */
    vmk_network_attachment *none = vmk_unix_stream_network_attachment_new(NULL);
    assert_non_null(none);
    assert_null(vmk_network_attachment_get_path(none));

    vmk_network_attachment_free(none);
    vmk_network_attachment_free(nat);
    vmk_network_attachment_free(fh);
    vmk_network_attachment_free(dg);
    vmk_network_attachment_free(st);
    vmk_network_attachment_free(tap);
    vmk_network_attachment_free(NULL);
}

static void test_port_forward_getters(void **state)
{
    (void)state;
    vmk_network_attachment *nat = vmk_nat_network_attachment_new();
    char addr[32] = "::1";
    assert_int_equal(
        vmk_nat_network_attachment_add_port_forward(nat, VMK_PORT_FORWARD_TCP, NULL, 2222, 22),
        VMK_OK);
    assert_int_equal(
        vmk_nat_network_attachment_add_port_forward(nat, VMK_PORT_FORWARD_UDP, "", 5353, 53),
        VMK_OK);
    assert_int_equal(
        vmk_nat_network_attachment_add_port_forward(nat, VMK_PORT_FORWARD_TCP, addr, 8080, 80),
        VMK_OK);
    addr[0] = 'X';
    assert_int_equal(vmk_nat_network_attachment_port_forward_count(nat), 3);

    vmk_port_forward_protocol proto;
    const char *host;
    unsigned hp, gp;
    static const struct {
        vmk_port_forward_protocol proto;
        const char *host;
        unsigned hp, gp;
    } want[] = {
        { VMK_PORT_FORWARD_TCP, "127.0.0.1", 2222, 22 },
        { VMK_PORT_FORWARD_UDP, "127.0.0.1", 5353, 53 },
        { VMK_PORT_FORWARD_TCP, "::1", 8080, 80 },
    };
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(
            vmk_nat_network_attachment_get_port_forward(nat, i, &proto, &host, &hp, &gp), VMK_OK);
        assert_int_equal(proto, want[i].proto);
        assert_string_equal(host, want[i].host);
        assert_int_equal(hp, want[i].hp);
        assert_int_equal(gp, want[i].gp);
    }
    /* Any out pointer may be NULL. */
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(nat, 2, NULL, NULL, NULL, NULL),
                     VMK_OK);
    gp = 0;
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(nat, 1, NULL, NULL, NULL, &gp),
                     VMK_OK);
    assert_int_equal(gp, 53);
    /* Past the end, another kind, NULL. */
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(nat, 3, &proto, &host, &hp, &gp),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(NULL, 0, NULL, NULL, NULL, NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    vmk_network_attachment *tap = vmk_tap_network_attachment_new("tap0");
    assert_int_equal(
        vmk_nat_network_attachment_add_port_forward(tap, VMK_PORT_FORWARD_TCP, NULL, 1, 1),
        VMK_OK); /* stored; validation names it */
    assert_int_equal(vmk_nat_network_attachment_port_forward_count(tap), 0);
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(tap, 0, NULL, NULL, NULL, NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    vmk_network_attachment_free(tap);
    vmk_network_attachment_free(nat);
}

static void test_device_defaults_and_setters(void **state)
{
    (void)state;
    vmk_network_attachment *att = vmk_nat_network_attachment_new();
    vmk_network_device *dev = net(att);
    assert_int_equal(vmk_network_device_get_kind(dev), VMK_NETWORK_DEVICE_VIRTIO);
    assert_ptr_equal(vmk_network_device_get_attachment(dev), att);

    vmk_mac_address mac = vmk_virtio_network_device_get_mac_address(dev);
    assert_true(vmk_mac_address_is_locally_administered(&mac));
    assert_false(vmk_mac_address_is_multicast(&mac));
    vmk_network_device *other = net(vmk_nat_network_attachment_new());
    vmk_mac_address mac2 = vmk_virtio_network_device_get_mac_address(other);
    assert_memory_not_equal(&mac, &mac2, sizeof(mac)); /* each device its own */
    vmk_network_device_free(other);

    mac = mac_of("00:1b:21:0a:0b:0c");
    assert_int_equal(vmk_virtio_network_device_set_mac_address(dev, &mac), VMK_OK);
    mac2 = vmk_virtio_network_device_get_mac_address(dev);
    assert_memory_equal(&mac, &mac2, sizeof(mac));
    assert_int_equal(vmk_virtio_network_device_set_mac_address(dev, NULL),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_virtio_network_device_set_mac_address(NULL, &mac),
                     VMK_ERR_INVALID_ARGUMENT);
    mac2 = vmk_virtio_network_device_get_mac_address(NULL);
    static const vmk_mac_address zero;
    assert_memory_equal(&mac2, &zero, sizeof(zero));

    assert_int_equal(vmk_virtio_network_device_get_mtu(dev), 0);
    assert_int_equal(vmk_virtio_network_device_min_mtu(), 68);
    assert_int_equal(vmk_virtio_network_device_max_mtu(), 65535);
    assert_int_equal(vmk_virtio_network_device_set_mtu(dev, 9000), VMK_OK);
    assert_int_equal(vmk_virtio_network_device_get_mtu(dev), 9000);
    assert_int_equal(vmk_virtio_network_device_set_mtu(dev, 1), VMK_OK); /* stored */
    assert_int_equal(vmk_virtio_network_device_get_mtu(dev), 1);
    assert_int_equal(vmk_virtio_network_device_set_mtu(NULL, 1500), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_virtio_network_device_get_mtu(NULL), 0);

    assert_true(vmk_virtio_network_device_get_offloading(dev));
    assert_int_equal(vmk_virtio_network_device_set_offloading(dev, false), VMK_OK);
    assert_false(vmk_virtio_network_device_get_offloading(dev));
    assert_int_equal(vmk_virtio_network_device_set_offloading(NULL, true),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_false(vmk_virtio_network_device_get_offloading(NULL));

    assert_null(vmk_network_device_get_attachment(NULL));
    vmk_network_device_free(dev); /* frees att (ASan reports a leak otherwise) */
    vmk_network_device_free(NULL);
}

/* Ownership passes on every path (ASan reports a leak or a double free otherwise). */
static void test_ownership(void **state)
{
    struct fixture *f = *state;
    assert_null(vmk_virtio_network_device_new(NULL));
    vmk_config *cfg = valid_config(f);
    assert_int_equal(vmk_config_add_network_device(NULL, net(vmk_nat_network_attachment_new())),
                     VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_network_device(cfg, NULL), VMK_ERR_INVALID_ARGUMENT);
    assert_int_equal(vmk_config_add_network_device(cfg, net(vmk_tap_network_attachment_new("t0"))),
                     VMK_OK);
    vmk_config_free(cfg); /* frees the device and its attachment */
}

static void test_add_network_devices(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    assert_int_equal(vmk_config_network_device_count(cfg), 0);
    assert_int_equal(vmk_config_max_network_device_count(), 8);
    vmk_network_device *devs[8];
    for (unsigned i = 0; i < 8; i++)
        devs[i] = add(cfg, vmk_nat_network_attachment_new(), i + 1);
    assert_int_equal(vmk_config_network_device_count(cfg), 8);
    for (unsigned i = 0; i < 8; i++)
        assert_ptr_equal(vmk_config_get_network_device(cfg, i), devs[i]);
    assert_null(vmk_config_get_network_device(cfg, 8));
    assert_null(vmk_config_get_network_device(NULL, 0));
    assert_int_equal(vmk_config_network_device_count(NULL), 0);
    expect_valid(cfg);
    /* A ninth is stored; validation counts. */
    add(cfg, vmk_nat_network_attachment_new(), 9);
    assert_int_equal(vmk_config_network_device_count(cfg), 9);
    EXPECT_PROBLEMS(cfg, "9 network devices, at most 8 allowed");
    vmk_config_free(cfg);
}

/* ---- Validation ---- */

static void test_mac_validation(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_network_device *dev = net(vmk_nat_network_attachment_new()); /* random: fine */
    assert_int_equal(vmk_config_add_network_device(cfg, dev), VMK_OK);
    dev = add(cfg, vmk_nat_network_attachment_new(), 1);
    vmk_mac_address m = mac_of("00:1b:21:0a:0b:0c"); /* globally administered: fine too */
    assert_int_equal(vmk_virtio_network_device_set_mac_address(dev, &m), VMK_OK);
    expect_valid(cfg);
    vmk_config_free(cfg);

    static const struct {
        const char *mac;
        const char *problem;
    } bad[] = {
        { "00:00:00:00:00:00", "network device 2: MAC address 00:00:00:00:00:00 is all zeros" },
        { "ff:ff:ff:ff:ff:ff",
          "network device 2: MAC address ff:ff:ff:ff:ff:ff is a multicast address" },
        { "01:00:5e:00:00:fb",
          "network device 2: MAC address 01:00:5e:00:00:fb is a multicast address" },
        { "52:54:00:00:00:01",
          "network device 2: MAC address 52:54:00:00:00:01 is already used by network device 1" },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg = valid_config(f);
        add(cfg, vmk_nat_network_attachment_new(), 1);
        dev = add(cfg, vmk_nat_network_attachment_new(), 2);
        m = mac_of(bad[i].mac);
        assert_int_equal(vmk_virtio_network_device_set_mac_address(dev, &m), VMK_OK);
        EXPECT_PROBLEMS(cfg, bad[i].problem);
        vmk_config_free(cfg);
    }
}

static void test_device_mtu_validation(void **state)
{
    struct fixture *f = *state;
    static const unsigned good[] = { 0, 68, 1500, 9000, 65535 };
    for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        vmk_config *cfg = valid_config(f);
        vmk_network_device *dev = add(cfg, vmk_nat_network_attachment_new(), 1);
        assert_int_equal(vmk_virtio_network_device_set_mtu(dev, good[i]), VMK_OK);
        expect_valid(cfg);
        vmk_config_free(cfg);
    }
    vmk_config *cfg = valid_config(f);
    vmk_network_device *dev = add(cfg, vmk_nat_network_attachment_new(), 1);
    assert_int_equal(vmk_virtio_network_device_set_mtu(dev, 67), VMK_OK);
    dev = add(cfg, vmk_nat_network_attachment_new(), 2);
    assert_int_equal(vmk_virtio_network_device_set_mtu(dev, 65536), VMK_OK);
    EXPECT_PROBLEMS(cfg,
                    "network device 1: mtu 67 is out of range [68, 65535] (or 0: none offered)",
                    "network device 2: mtu 65536 is out of range [68, 65535] (or 0: none offered)");
    vmk_config_free(cfg);
}

static void forward(vmk_network_attachment *att, vmk_port_forward_protocol proto, const char *host,
                    unsigned hp, unsigned gp)
{
    assert_int_equal(vmk_nat_network_attachment_add_port_forward(att, proto, host, hp, gp), VMK_OK);
}

static void test_port_forwards_valid(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_network_attachment *a = att_of(add(cfg, vmk_nat_network_attachment_new(), 1));
    forward(a, VMK_PORT_FORWARD_TCP, NULL, 8080, 80);
    forward(a, VMK_PORT_FORWARD_UDP, NULL, 8080, 80);        /* another protocol */
    forward(a, VMK_PORT_FORWARD_TCP, "0.0.0.0", 8080, 80);   /* another address */
    forward(a, VMK_PORT_FORWARD_TCP, "::1", 8080, 80);       /* another family */
    forward(a, VMK_PORT_FORWARD_TCP, "127.0.0.1", 1, 65535); /* the extremes */
    forward(a, VMK_PORT_FORWARD_TCP, "127.0.0.1", 65535, 1);
    vmk_network_attachment *b = att_of(add(cfg, vmk_nat_network_attachment_new(), 2));
    forward(b, VMK_PORT_FORWARD_TCP, "fe80::1", 2222, 22);
    forward(b, VMK_PORT_FORWARD_TCP, NULL, 2222, 22);
    expect_valid(cfg);
    vmk_config_free(cfg);
}

static void test_port_forwards_invalid(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_network_attachment *a = att_of(add(cfg, vmk_nat_network_attachment_new(), 1));
    forward(a, VMK_PORT_FORWARD_TCP, NULL, 0, 80);
    forward(a, VMK_PORT_FORWARD_TCP, NULL, 65536, 80);
    forward(a, VMK_PORT_FORWARD_UDP, NULL, 53, 0);
    forward(a, VMK_PORT_FORWARD_UDP, NULL, 54, 70000);
    forward(a, VMK_PORT_FORWARD_TCP, "localhost", 8080, 80);
    forward(a, VMK_PORT_FORWARD_TCP, "1.2.3", 8081, 80);
    forward(a, VMK_PORT_FORWARD_TCP, "[::1]", 8082, 80);
    forward(a, (vmk_port_forward_protocol)7, NULL, 8083, 80);
    EXPECT_PROBLEMS(
        cfg, "network device 1: port forward 1: host port 0 is out of range [1, 65535]",
        "network device 1: port forward 2: host port 65536 is out of range [1, 65535]",
        "network device 1: port forward 3: guest port 0 is out of range [1, 65535]",
        "network device 1: port forward 4: guest port 70000 is out of range [1, 65535]",
        "network device 1: port forward 5: host address \"localhost\" is not an IPv4 or IPv6 "
        "address",
        "network device 1: port forward 6: host address \"1.2.3\" is not an IPv4 or IPv6 address",
        "network device 1: port forward 7: host address \"[::1]\" is not an IPv4 or IPv6 address",
        "network device 1: port forward 8: unknown protocol 7");
    vmk_config_free(cfg);
}

static void test_port_forward_twice(void **state)
{
    struct fixture *f = *state;
    /* Across two NAT devices, with a non-NAT device between them. */
    vmk_config *cfg = valid_config(f);
    vmk_network_attachment *a = att_of(add(cfg, vmk_nat_network_attachment_new(), 1));
    forward(a, VMK_PORT_FORWARD_TCP, NULL, 8080, 80);
    forward(a, VMK_PORT_FORWARD_UDP, "::1", 53, 53);
    add(cfg, vmk_tap_network_attachment_new("tap0"), 2);
    vmk_network_attachment *b = att_of(add(cfg, vmk_nat_network_attachment_new(), 3));
    forward(b, VMK_PORT_FORWARD_TCP, "127.0.0.1", 8080, 8080);
    forward(b, VMK_PORT_FORWARD_UDP, "0:0:0:0:0:0:0:1", 53, 5353); /* ::1, written out */
    forward(b, VMK_PORT_FORWARD_TCP, "", 9090, 90);
    forward(b, VMK_PORT_FORWARD_TCP, NULL, 9090, 91); /* twice in one device */
    EXPECT_PROBLEMS(
        cfg, "network device 3: tcp 127.0.0.1:8080 is already forwarded by network device 1",
        "network device 3: udp [0:0:0:0:0:0:0:1]:53 is already forwarded by network device 1",
        "network device 3: tcp 127.0.0.1:9090 is already forwarded by network device 3");
    vmk_config_free(cfg);

    /* The message the header's example gives. */
    cfg = valid_config(f);
    forward(att_of(add(cfg, vmk_nat_network_attachment_new(), 1)), VMK_PORT_FORWARD_TCP, NULL, 8080,
            80);
    forward(att_of(add(cfg, vmk_nat_network_attachment_new(), 2)), VMK_PORT_FORWARD_TCP, NULL, 8080,
            80);
    EXPECT_PROBLEMS(
        cfg, "network device 2: tcp 127.0.0.1:8080 is already forwarded by network device 1");
    vmk_config_free(cfg);
}

static void test_nat_only_settings(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_network_attachment *a = att_of(add(cfg, vmk_tap_network_attachment_new("tap0"), 1));
    forward(a, VMK_PORT_FORWARD_TCP, NULL, 8080, 80);
    assert_int_equal(vmk_nat_network_attachment_set_host_loopback(a, false), VMK_OK);
    vmk_network_attachment *nat = att_of(add(cfg, vmk_nat_network_attachment_new(), 2));
    assert_int_equal(vmk_nat_network_attachment_set_host_loopback(nat, false), VMK_OK);
    forward(nat, VMK_PORT_FORWARD_TCP, NULL, 8080, 80); /* the tap's forward binds nothing */
    EXPECT_PROBLEMS(cfg, "network device 1: port forwards apply to NAT attachments only",
                    "network device 1: host loopback applies to NAT attachments only");
    vmk_config_free(cfg);
}

static void test_file_handle_validation(void **state)
{
    struct fixture *f = *state;
    int dgram[2], stream[2], seq[2], pipefd[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, dgram), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, stream), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, seq), 0);
    assert_int_equal(pipe(pipefd), 0);
    int closed = 4000; /* far above what this test opens, so that nothing reuses it */
    while (fcntl(closed, F_GETFD) >= 0)
        closed++;
    int lone = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(lone >= 0);

    vmk_config *cfg = valid_config(f);
    add(cfg, vmk_file_handle_network_attachment_new(dgram[0]), 1);
    add(cfg, vmk_file_handle_network_attachment_new(stream[1]), 2);
    expect_valid(cfg);
    vmk_config_free(cfg);

    cfg = valid_config(f);
    add(cfg, vmk_file_handle_network_attachment_new(pipefd[0]), 1);
    add(cfg, vmk_file_handle_network_attachment_new(lone), 2);
    add(cfg, vmk_file_handle_network_attachment_new(seq[0]), 3);
    add(cfg, vmk_file_handle_network_attachment_new(-1), 4);
    add(cfg, vmk_file_handle_network_attachment_new(closed), 5);
    char l1[128], l2[128], l3[128], l5[128];
    snprintf(l1, sizeof(l1),
             "network device 1: fd %d is not a connected datagram or stream socket (not a socket)",
             pipefd[0]);
    snprintf(l2, sizeof(l2),
             "network device 2: fd %d is not a connected datagram or stream socket (not connected)",
             lone);
    snprintf(l3, sizeof(l3),
             "network device 3: fd %d is not a connected datagram or stream socket (another type "
             "of socket)",
             seq[0]);
    snprintf(l5, sizeof(l5),
             "network device 5: fd %d is not a connected datagram or stream socket (not open)",
             closed);
    EXPECT_PROBLEMS(cfg, l1, l2, l3,
                    "network device 4: file handle attachment without a descriptor (fd -1)", l5);
    vmk_config_free(cfg);
    /* The descriptors stay the caller's. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(close(dgram[i]), 0);
        assert_int_equal(close(stream[i]), 0);
        assert_int_equal(close(seq[i]), 0);
        assert_int_equal(close(pipefd[i]), 0);
    }
    assert_int_equal(close(lone), 0);
}

static void test_unix_path_validation(void **state)
{
    struct fixture *f = *state;
    size_t max = vmk_socket_path_max_length();
    char longest[256], too_long[256];
    assert_true(max + 2 <= sizeof(longest));
    memset(longest, 'a', max);
    longest[0] = '/';
    longest[max] = '\0';
    memcpy(too_long, longest, max);
    too_long[max] = 'b';
    too_long[max + 1] = '\0';

    /* Existence is checked at start, not here. */
    vmk_config *cfg = valid_config(f);
    add(cfg, vmk_unix_datagram_network_attachment_new("/nonexistent/gvproxy.sock"), 1);
    add(cfg, vmk_unix_stream_network_attachment_new("relative.sock"), 2);
    add(cfg, vmk_unix_datagram_network_attachment_new(longest), 3);
    add(cfg, vmk_unix_stream_network_attachment_new(longest), 4);
    expect_valid(cfg);
    vmk_config_free(cfg);

    cfg = valid_config(f);
    add(cfg, vmk_unix_datagram_network_attachment_new(NULL), 1);
    add(cfg, vmk_unix_datagram_network_attachment_new(""), 2);
    add(cfg, vmk_unix_stream_network_attachment_new(NULL), 3);
    add(cfg, vmk_unix_stream_network_attachment_new(""), 4);
    add(cfg, vmk_unix_datagram_network_attachment_new(too_long), 5);
    add(cfg, vmk_unix_stream_network_attachment_new(too_long), 6);
    char l5[512], l6[512];
    snprintf(l5, sizeof(l5), "network device 5: socket path %s is %zu bytes, at most %zu allowed",
             too_long, max + 1, max);
    snprintf(l6, sizeof(l6), "network device 6: socket path %s is %zu bytes, at most %zu allowed",
             too_long, max + 1, max);
    EXPECT_PROBLEMS(cfg, "network device 1: unix datagram attachment without a path",
                    "network device 2: unix datagram attachment without a path",
                    "network device 3: unix stream attachment without a path",
                    "network device 4: unix stream attachment without a path", l5, l6);
    vmk_config_free(cfg);
}

static void test_tap_name_validation(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    add(cfg, vmk_tap_network_attachment_new("tap0"), 1);
    add(cfg, vmk_tap_network_attachment_new("abcdefghijklmno"), 2); /* 15 bytes */
    add(cfg, vmk_tap_network_attachment_new("vm-net.1_x"), 3);
    add(cfg, vmk_tap_network_attachment_new("..."), 4);
    expect_valid(cfg);
    vmk_config_free(cfg);

    static const struct {
        const char *name;
        const char *problem;
    } bad[] = {
        { NULL, "network device 1: tap attachment without an interface name" },
        { "", "network device 1: tap attachment without an interface name" },
        { "abcdefghijklmnop",
          "network device 1: tap interface name \"abcdefghijklmnop\" is 16 bytes, at most 15 "
          "allowed" },
        { "a/b", "network device 1: tap interface name byte 1 (0x2f) is not allowed (no '/', ':' "
                 "or whitespace)" },
        { "a b", "network device 1: tap interface name byte 1 (0x20) is not allowed (no '/', ':' "
                 "or whitespace)" },
        { "tap\t", "network device 1: tap interface name byte 3 (0x09) is not allowed (no '/', "
                   "':' or whitespace)" },
        { "\ntap", "network device 1: tap interface name byte 0 (0x0a) is not allowed (no '/', "
                   "':' or whitespace)" },
        { "eth0:1", "network device 1: tap interface name byte 4 (0x3a) is not allowed (no '/', "
                    "':' or whitespace)" },
        { ".", "network device 1: tap interface name \".\" is not allowed" },
        { "..", "network device 1: tap interface name \"..\" is not allowed" },
    };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg = valid_config(f);
        add(cfg, vmk_tap_network_attachment_new(bad[i].name), 1);
        EXPECT_PROBLEMS(cfg, bad[i].problem);
        vmk_config_free(cfg);
    }
}

static void test_attachment_mtu_validation(void **state)
{
    struct fixture *f = *state;
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sp), 0);
    vmk_config *cfg = valid_config(f);
    vmk_network_attachment *a = vmk_file_handle_network_attachment_new(sp[0]);
    assert_int_equal(vmk_network_attachment_set_mtu(a, 1500), VMK_OK);
    add(cfg, a, 1);
    a = vmk_unix_datagram_network_attachment_new("/run/gvproxy.sock");
    assert_int_equal(vmk_network_attachment_set_mtu(a, 65535), VMK_OK);
    add(cfg, a, 2);
    a = vmk_unix_stream_network_attachment_new("/run/passt.sock");
    assert_int_equal(vmk_network_attachment_set_mtu(a, 9000), VMK_OK);
    add(cfg, a, 3);
    expect_valid(cfg);
    vmk_config_free(cfg);

    cfg = valid_config(f);
    a = vmk_file_handle_network_attachment_new(sp[0]);
    assert_int_equal(vmk_network_attachment_set_mtu(a, 1499), VMK_OK);
    add(cfg, a, 1);
    a = vmk_unix_datagram_network_attachment_new("/run/gvproxy.sock");
    assert_int_equal(vmk_network_attachment_set_mtu(a, 65536), VMK_OK);
    add(cfg, a, 2);
    a = vmk_unix_stream_network_attachment_new("/run/passt.sock");
    assert_int_equal(vmk_network_attachment_set_mtu(a, 0), VMK_OK);
    add(cfg, a, 3);
    a = vmk_nat_network_attachment_new();
    assert_int_equal(vmk_network_attachment_set_mtu(a, 1500), VMK_OK); /* even the default */
    add(cfg, a, 4);
    a = vmk_tap_network_attachment_new("tap0");
    assert_int_equal(vmk_network_attachment_set_mtu(a, 9000), VMK_OK);
    add(cfg, a, 5);
    EXPECT_PROBLEMS(
        cfg, "network device 1: attachment mtu 1499 is out of range [1500, 65535]",
        "network device 2: attachment mtu 65536 is out of range [1500, 65535]",
        "network device 3: attachment mtu 0 is out of range [1500, 65535]",
        "network device 4: mtu applies to socket attachments only (file handle, unix datagram, "
        "unix stream)",
        "network device 5: mtu applies to socket attachments only (file handle, unix datagram, "
        "unix stream)");
    vmk_config_free(cfg);
    close(sp[0]);
    close(sp[1]);
}

static void test_vfkit_magic_validation(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_network_attachment *a = vmk_unix_datagram_network_attachment_new("/run/gvproxy.sock");
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(a, true), VMK_OK);
    add(cfg, a, 1);
    a = vmk_unix_stream_network_attachment_new("/run/passt.sock");
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(a, false), VMK_OK);
    add(cfg, a, 2); /* off is no setting */
    expect_valid(cfg);
    vmk_config_free(cfg);

    cfg = valid_config(f);
    a = vmk_unix_stream_network_attachment_new("/run/passt.sock");
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(a, true), VMK_OK);
    add(cfg, a, 1);
    a = vmk_nat_network_attachment_new();
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(a, true), VMK_OK);
    add(cfg, a, 2);
    EXPECT_PROBLEMS(cfg, "network device 1: vfkit magic applies to unix datagram attachments only",
                    "network device 2: vfkit magic applies to unix datagram attachments only");
    vmk_config_free(cfg);
}

static void test_unknown_kinds(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    vmk_network_device *dev = add(cfg, vmk_nat_network_attachment_new(), 1);
    dev->kind = (vmk_network_device_kind)3;
    dev = add(cfg, vmk_nat_network_attachment_new(), 2);
    dev->att->kind = (vmk_network_attachment_kind)9;
    EXPECT_PROBLEMS(cfg, "network device 1: unknown device kind 3",
                    "network device 2: unknown attachment kind 9");
    vmk_config_free(cfg);
}

static void test_every_problem_at_once(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    assert_int_equal(vmk_config_set_cpu_count(cfg, 0), VMK_OK);
    vmk_network_device *dev = add(cfg, vmk_tap_network_attachment_new("a/b"), 1);
    assert_int_equal(vmk_virtio_network_device_set_mtu(dev, 10), VMK_OK);
    add(cfg, vmk_unix_stream_network_attachment_new(""), 1);
    vmk_network_attachment *a = att_of(add(cfg, vmk_nat_network_attachment_new(), 3));
    forward(a, VMK_PORT_FORWARD_TCP, "nowhere", 0, 80);
    EXPECT_PROBLEMS(
        cfg, "cpu count 0 is out of range [1, 254]",
        "network device 1: mtu 10 is out of range [68, 65535] (or 0: none offered)",
        "network device 1: tap interface name byte 1 (0x2f) is not allowed (no '/', ':' or "
        "whitespace)",
        "network device 2: MAC address 52:54:00:00:00:01 is already used by network device 1",
        "network device 2: unix stream attachment without a path",
        "network device 3: port forward 1: host port 0 is out of range [1, 65535]",
        "network device 3: port forward 1: host address \"nowhere\" is not an IPv4 or IPv6 "
        "address");
    vmk_config_free(cfg);
}

/* The copy a VM keeps (vmk_vm_new) is deep: it outlives the caller's objects unchanged. */
static void test_config_copy_is_deep(void **state)
{
    struct fixture *f = *state;
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    vmk_config *cfg = valid_config(f);
    vmk_network_device *dev = add(cfg, vmk_nat_network_attachment_new(), 1);
    vmk_network_attachment *a = att_of(dev);
    forward(a, VMK_PORT_FORWARD_UDP, "::1", 5353, 53);
    forward(a, VMK_PORT_FORWARD_TCP, NULL, 2222, 22);
    assert_int_equal(vmk_nat_network_attachment_set_host_loopback(a, false), VMK_OK);
    assert_int_equal(vmk_virtio_network_device_set_mtu(dev, 9000), VMK_OK);
    assert_int_equal(vmk_virtio_network_device_set_offloading(dev, false), VMK_OK);
    a = vmk_unix_datagram_network_attachment_new("/run/gvproxy.sock");
    assert_int_equal(vmk_unix_datagram_network_attachment_set_vfkit_magic(a, true), VMK_OK);
    assert_int_equal(vmk_network_attachment_set_mtu(a, 4000), VMK_OK);
    add(cfg, a, 2);
    add(cfg, vmk_file_handle_network_attachment_new(sp[1]), 3);
    add(cfg, vmk_tap_network_attachment_new("tap7"), 4);

    vmk_config *copy = config_copy(cfg);
    assert_non_null(copy);
    vmk_config_free(cfg);
    assert_int_equal(vmk_config_network_device_count(copy), 4);
    char text[VMK_MAC_ADDRESS_STRING_SIZE];

    const vmk_network_device *c = vmk_config_get_network_device(copy, 0);
    vmk_mac_address mac = vmk_virtio_network_device_get_mac_address(c);
    vmk_mac_address_format(&mac, text);
    assert_string_equal(text, "52:54:00:00:00:01");
    assert_int_equal(vmk_virtio_network_device_get_mtu(c), 9000);
    assert_false(vmk_virtio_network_device_get_offloading(c));
    const vmk_network_attachment *ca = vmk_network_device_get_attachment(c);
    assert_int_equal(vmk_network_attachment_get_kind(ca), VMK_NETWORK_ATTACHMENT_NAT);
    assert_false(vmk_nat_network_attachment_get_host_loopback(ca));
    assert_int_equal(vmk_nat_network_attachment_port_forward_count(ca), 2);
    vmk_port_forward_protocol proto;
    const char *host;
    unsigned hp, gp;
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(ca, 0, &proto, &host, &hp, &gp),
                     VMK_OK);
    assert_int_equal(proto, VMK_PORT_FORWARD_UDP);
    assert_string_equal(host, "::1");
    assert_int_equal(hp, 5353);
    assert_int_equal(gp, 53);
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(ca, 1, &proto, &host, &hp, &gp),
                     VMK_OK);
    assert_int_equal(proto, VMK_PORT_FORWARD_TCP);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(hp, 2222);
    assert_int_equal(gp, 22);

    c = vmk_config_get_network_device(copy, 1);
    assert_true(vmk_virtio_network_device_get_offloading(c));
    ca = vmk_network_device_get_attachment(c);
    assert_int_equal(vmk_network_attachment_get_kind(ca), VMK_NETWORK_ATTACHMENT_UNIX_DATAGRAM);
    assert_string_equal(vmk_network_attachment_get_path(ca), "/run/gvproxy.sock");
    assert_true(vmk_unix_datagram_network_attachment_get_vfkit_magic(ca));
    assert_int_equal(vmk_network_attachment_get_mtu(ca), 4000);

    ca = vmk_network_device_get_attachment(vmk_config_get_network_device(copy, 2));
    assert_int_equal(vmk_network_attachment_get_kind(ca), VMK_NETWORK_ATTACHMENT_FILE_HANDLE);
    assert_int_equal(vmk_network_attachment_get_fd(ca), sp[1]);

    ca = vmk_network_device_get_attachment(vmk_config_get_network_device(copy, 3));
    assert_int_equal(vmk_network_attachment_get_kind(ca), VMK_NETWORK_ATTACHMENT_TAP);
    assert_string_equal(vmk_network_attachment_get_path(ca), "tap7");
    expect_valid(copy);
    vmk_config_free(copy);

    /* A set MTU stays set in the copy: on a tap it is still a problem. */
    cfg = valid_config(f);
    a = vmk_tap_network_attachment_new("tap0");
    assert_int_equal(vmk_network_attachment_set_mtu(a, 1500), VMK_OK);
    add(cfg, a, 1);
    copy = config_copy(cfg);
    vmk_config_free(cfg);
    EXPECT_PROBLEMS(copy, "network device 1: mtu applies to socket attachments only (file "
                          "handle, unix datagram, unix stream)");
    vmk_config_free(copy);
    close(sp[0]);
    close(sp[1]);
}

/* vmk_vm_new copies network devices too (it validates first; KVM is not touched before
 * start). */
static void test_vm_new_takes_network_devices(void **state)
{
    struct fixture *f = *state;
    vmk_config *cfg = valid_config(f);
    forward(att_of(add(cfg, vmk_nat_network_attachment_new(), 1)), VMK_PORT_FORWARD_TCP, NULL, 2222,
            22);
    vmk_error *err = NULL;
    vmk_vm *vm = vmk_vm_new(cfg, &err);
    if (!vm)
        fail_msg("vmk_vm_new: %s", vmk_error_message(err));
    vmk_config_free(cfg);
    vmk_vm_free(vm);

    cfg = valid_config(f);
    add(cfg, vmk_tap_network_attachment_new(""), 1);
    assert_null(vmk_vm_new(cfg, &err));
    assert_int_equal(vmk_error_code(err), VMK_ERR_INVALID_CONFIG);
    assert_string_equal(vmk_error_message(err),
                        "network device 1: tap attachment without an interface name");
    vmk_error_free(err);
    vmk_config_free(cfg);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_mac_parse_and_format),
        T(test_mac_parse_rejects),
        T(test_mac_bits),
        T(test_mac_random),
        T(test_attachment_kinds),
        T(test_port_forward_getters),
        T(test_device_defaults_and_setters),
        T(test_ownership),
        T(test_add_network_devices),
        T(test_mac_validation),
        T(test_device_mtu_validation),
        T(test_port_forwards_valid),
        T(test_port_forwards_invalid),
        T(test_port_forward_twice),
        T(test_nat_only_settings),
        T(test_file_handle_validation),
        T(test_unix_path_validation),
        T(test_tap_name_validation),
        T(test_attachment_mtu_validation),
        T(test_vfkit_magic_validation),
        T(test_unknown_kinds),
        T(test_every_problem_at_once),
        T(test_config_copy_is_deep),
        T(test_vm_new_takes_network_devices),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
