/* The vmkit command line: parsing, the default guest, and the config it builds. */
#include "cli.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (UINT64_C(1) << 20)

/* Parses "vmkit" followed by the given arguments. */
#define PARSE(req, err, ...) \
    parse_args((req), (err), (const char *[]){ "vmkit", __VA_ARGS__, NULL })

static char errbuf[4096];

static int parse_args(struct cli_request *req, char *err, const char **args)
{
    int argc = 0;
    while (args[argc])
        argc++;
    return cli_parse(argc, (char *const *)args, req, err, sizeof(errbuf));
}

/* Parses arguments that must fail with a usage error, and checks the message names
 * every given fragment. */
#define EXPECT_USAGE(frag1, frag2, ...) \
    expect_usage(frag1, frag2, (const char *[]){ "vmkit", __VA_ARGS__, NULL })

static void expect_usage(const char *frag1, const char *frag2, const char **args)
{
    struct cli_request req;
    int rc = parse_args(&req, errbuf, args);
    if (rc != CLI_EXIT_USAGE) {
        print_error("args starting '%s' gave %d, not a usage error\n", args[1], rc);
        fail();
    }
    if (strncmp(errbuf, "vmkit: ", 7) != 0 || strchr(errbuf, '\n')) {
        print_error("not one 'vmkit: ' line: '%s'\n", errbuf);
        fail();
    }
    if ((frag1 && !strstr(errbuf, frag1)) || (frag2 && !strstr(errbuf, frag2))) {
        print_error("'%s' does not name '%s' / '%s'\n", errbuf, frag1 ? frag1 : "",
                    frag2 ? frag2 : "");
        fail();
    }
    /* A failed parse leaves nothing behind. */
    assert_null(req.kernel);
    assert_int_equal(req.serial_count, 0);
    cli_request_free(&req);
}

static void test_defaults(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run"), 0);
    assert_string_equal(errbuf, "");
    assert_int_equal(req.command, CLI_CMD_RUN);
    assert_int_equal(req.cpus, 1);
    assert_int_equal(req.memory_mib, 512);
    assert_null(req.kernel);
    assert_null(req.initrd);
    assert_null(req.cmdline);
    assert_int_equal(req.serial_count, 0);
    cli_request_free(&req);
    cli_request_free(&req); /* a freed request is zeroed: freeing again is harmless */
}

static void test_every_flag(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--cpus", "4", "--memory", "1024", "--kernel",
                           "/k/bzImage", "--initrd", "/k/initrd.img", "--cmdline",
                           "console=ttyS0,115200 quiet", "--device", "serial,stdio", "--device",
                           "serial,file=/tmp/com2.log,append", "--device",
                           "serial,file=/tmp/com3.log"),
                     0);
    assert_int_equal(req.command, CLI_CMD_RUN);
    assert_int_equal(req.cpus, 4);
    assert_int_equal(req.memory_mib, 1024);
    assert_string_equal(req.kernel, "/k/bzImage");
    assert_string_equal(req.initrd, "/k/initrd.img");
    assert_string_equal(req.cmdline, "console=ttyS0,115200 quiet");
    assert_int_equal(req.serial_count, 3);
    assert_int_equal(req.serial[0].kind, CLI_SERIAL_STDIO);
    assert_null(req.serial[0].path);
    assert_int_equal(req.serial[1].kind, CLI_SERIAL_FILE);
    assert_string_equal(req.serial[1].path, "/tmp/com2.log");
    assert_true(req.serial[1].append);
    assert_int_equal(req.serial[2].kind, CLI_SERIAL_FILE);
    assert_string_equal(req.serial[2].path, "/tmp/com3.log");
    assert_false(req.serial[2].append);
    cli_request_free(&req);
}

static void test_equals_form(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--cpus=2", "--memory=256", "--kernel=/k",
                           "--initrd=/i", "--cmdline=root=/dev/vda init=/sbin/init",
                           "--device=serial,file=/f"),
                     0);
    assert_int_equal(req.cpus, 2);
    assert_int_equal(req.memory_mib, 256);
    assert_string_equal(req.kernel, "/k");
    assert_string_equal(req.initrd, "/i");
    /* Only the first '=' separates the option from its value. */
    assert_string_equal(req.cmdline, "root=/dev/vda init=/sbin/init");
    assert_int_equal(req.serial_count, 1);
    assert_string_equal(req.serial[0].path, "/f");
    cli_request_free(&req);

    /* An empty command line is a value too. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--cmdline="), 0);
    assert_non_null(req.cmdline);
    assert_string_equal(req.cmdline, "");
    cli_request_free(&req);
}

static void test_last_one_wins(void **state)
{
    struct cli_request req;
    assert_int_equal(
        PARSE(&req, errbuf, "run", "--cpus", "2", "--cpus=8", "--kernel", "/a", "--kernel", "/b"),
        0);
    assert_int_equal(req.cpus, 8);
    assert_string_equal(req.kernel, "/b");
    cli_request_free(&req);

    /* A second --bootloader replaces the first as a whole: its initrd goes too. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader", "linux,kernel=/a,initrd=/ia",
                           "--bootloader", "linux,kernel=/b"),
                     0);
    assert_string_equal(req.kernel, "/b");
    assert_null(req.initrd);
    assert_null(req.cmdline);
    cli_request_free(&req);
}

static void test_bootloader(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader", "linux,kernel=/boot/vmlinuz"), 0);
    assert_string_equal(req.kernel, "/boot/vmlinuz");
    assert_null(req.initrd);
    assert_null(req.cmdline);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader=linux,kernel=/k,initrd=/i"), 0);
    assert_string_equal(req.kernel, "/k");
    assert_string_equal(req.initrd, "/i");
    assert_null(req.cmdline);
    cli_request_free(&req);

    /* Unquoted, a value ends at the next comma but may hold '=' and spaces. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader",
                           "linux,initrd=/i,cmdline=console=ttyS0 quiet,kernel=/k"),
                     0);
    assert_string_equal(req.kernel, "/k");
    assert_string_equal(req.initrd, "/i");
    assert_string_equal(req.cmdline, "console=ttyS0 quiet");
    cli_request_free(&req);

    /* Quoted, it holds commas, and need not be last. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader",
                           "linux,cmdline=\"console=ttyS0,115200 quiet\",kernel=/k"),
                     0);
    assert_string_equal(req.cmdline, "console=ttyS0,115200 quiet");
    assert_string_equal(req.kernel, "/k");
    cli_request_free(&req);

    /* \" and \\ inside quotes; other backslashes stay. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader",
                           "linux,kernel=/k,cmdline=\"a=\\\"x y\\\" b\\\\c d\\n\""),
                     0);
    assert_string_equal(req.cmdline, "a=\"x y\" b\\c d\\n");
    cli_request_free(&req);

    /* Quoted paths and an empty quoted command line. */
    assert_int_equal(
        PARSE(&req, errbuf, "run", "--bootloader", "linux,kernel=\"/my,dir/k\",cmdline=\"\""), 0);
    assert_string_equal(req.kernel, "/my,dir/k");
    assert_string_equal(req.cmdline, "");
    cli_request_free(&req);

    /* EFI: the store, create, overwrite and the firmware; a later linux one replaces it. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader",
                           "efi,variable-store=/tmp/no-such-store,create,firmware=/fw.fd"),
                     0);
    assert_true(req.efi);
    assert_true(req.efi_create);
    assert_false(req.efi_overwrite);
    assert_string_equal(req.efi_store, "/tmp/no-such-store");
    assert_string_equal(req.efi_firmware, "/fw.fd");
    assert_null(req.kernel);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader",
                           "efi,variable-store=/dev/null,create,overwrite", "--bootloader",
                           "linux,kernel=/k"),
                     0);
    assert_false(req.efi);
    assert_string_equal(req.kernel, "/k");
    cli_request_free(&req);
}

static void test_bootloader_errors(void **state)
{
    EXPECT_USAGE("--bootloader", "empty value", "run", "--bootloader", "");
    EXPECT_USAGE("--bootloader efi", "unknown key 'kernel'", "run", "--bootloader",
                 "efi,kernel=/k");
    EXPECT_USAGE("--bootloader", "unknown boot loader type 'bios'", "run", "--bootloader", "bios");
    EXPECT_USAGE("--bootloader efi", "missing variable-store=PATH", "run", "--bootloader", "efi");
    EXPECT_USAGE("--bootloader efi", "create takes no value", "run", "--bootloader",
                 "efi,variable-store=/v,create=yes");
    EXPECT_USAGE("--bootloader efi", "overwrite needs create", "run", "--bootloader",
                 "efi,variable-store=/v,overwrite");
    EXPECT_USAGE("--bootloader efi", "variable-store= needs a value", "run", "--bootloader",
                 "efi,variable-store=");
    /* An existing store is not replaced without overwrite. */
    EXPECT_USAGE("variable store /dev/null already exists", "add overwrite", "run", "--bootloader",
                 "efi,variable-store=/dev/null,create");
    EXPECT_USAGE("--bootloader cannot be combined", NULL, "run", "--bootloader",
                 "efi,variable-store=/v", "--kernel", "/k");
    EXPECT_USAGE("--bootloader", "'kernel=/k' is not a type", "run", "--bootloader", "kernel=/k");
    EXPECT_USAGE("--bootloader linux", "missing kernel=PATH", "run", "--bootloader", "linux");
    EXPECT_USAGE("--bootloader linux", "missing kernel=PATH", "run", "--bootloader",
                 "linux,initrd=/i");
    EXPECT_USAGE("--bootloader linux", "kernel needs a value", "run", "--bootloader",
                 "linux,kernel");
    EXPECT_USAGE("--bootloader linux", "kernel= needs a path", "run", "--bootloader",
                 "linux,kernel=");
    EXPECT_USAGE("--bootloader linux", "initrd= needs a path", "run", "--bootloader",
                 "linux,kernel=/k,initrd=");
    EXPECT_USAGE("--bootloader linux", "unknown key 'foo'", "run", "--bootloader",
                 "linux,kernel=/k,foo=1");
    /* An unquoted comma splits the command line: the rest is taken for a key. */
    EXPECT_USAGE("unknown key '115200'", "quote", "run", "--bootloader",
                 "linux,kernel=/k,cmdline=console=ttyS0,115200");
    EXPECT_USAGE("--bootloader linux", "kernel given twice", "run", "--bootloader",
                 "linux,kernel=/a,kernel=/b");
    EXPECT_USAGE("cmdline", "missing closing quote", "run", "--bootloader",
                 "linux,kernel=/k,cmdline=\"console=ttyS0");
    EXPECT_USAGE("cmdline", "text after the closing quote", "run", "--bootloader",
                 "linux,kernel=/k,cmdline=\"a\"b");
    EXPECT_USAGE("--bootloader linux", "empty option", "run", "--bootloader", "linux,kernel=/k,");
    EXPECT_USAGE("--bootloader linux", "empty option", "run", "--bootloader", "linux,,kernel=/k");
    EXPECT_USAGE("--bootloader", "--kernel", "run", "--kernel", "/k", "--bootloader",
                 "linux,kernel=/k");
    EXPECT_USAGE("--bootloader", "--cmdline", "run", "--bootloader", "linux,kernel=/k", "--cmdline",
                 "quiet");
}

static void test_device_serial_repeated(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "serial,file=/c1", "--device",
                           "serial,stdio", "--device", "serial,append,file=\"/c,3\"",
                           "--device=serial,file=/c4"),
                     0);
    assert_int_equal(req.serial_count, 4);
    assert_int_equal(req.serial[0].kind, CLI_SERIAL_FILE);
    assert_string_equal(req.serial[0].path, "/c1");
    assert_int_equal(req.serial[1].kind, CLI_SERIAL_STDIO);
    assert_int_equal(req.serial[2].kind, CLI_SERIAL_FILE);
    assert_string_equal(req.serial[2].path, "/c,3");
    assert_true(req.serial[2].append);
    assert_string_equal(req.serial[3].path, "/c4");
    cli_request_free(&req);

    EXPECT_USAGE("--device serial", "at most 4", "run", "--device", "serial,file=/1", "--device",
                 "serial,file=/2", "--device", "serial,stdio", "--device", "serial,file=/4",
                 "--device", "serial,file=/5");
}

static void test_device_errors(void **state)
{
    EXPECT_USAGE("--device", "unknown device type 'virtio-block'", "run", "--device",
                 "virtio-block,path=disk.img");
    EXPECT_USAGE("unknown device type", "serial, virtio-blk", "run", "--device", "blk,path=/d");
    EXPECT_USAGE("--device", "unknown device type 'serail'", "run", "--device", "serail,stdio");
    EXPECT_USAGE("--device serial", "unknown key 'foo'", "run", "--device", "serial,foo=1");
    EXPECT_USAGE("--device serial", "unknown key 'logFilePath'", "run", "--device",
                 "serial,logFilePath=/x");
    EXPECT_USAGE("--device serial", "needs stdio, file=PATH, pty or socket=PATH", "run", "--device",
                 "serial");
    EXPECT_USAGE("--device serial", "cannot be combined", "run", "--device",
                 "serial,stdio,file=/x");
    EXPECT_USAGE("--device serial", "append needs file=PATH", "run", "--device",
                 "serial,stdio,append");
    EXPECT_USAGE("--device serial", "stdio takes no value (got 'yes')", "run", "--device",
                 "serial,stdio=yes");
    EXPECT_USAGE("--device serial", "file= needs a value (file=PATH)", "run", "--device",
                 "serial,file=");
    EXPECT_USAGE("--device serial", "file= needs a value (file=PATH)", "run", "--device",
                 "serial,file");
    EXPECT_USAGE("--device serial", "stdio given twice", "run", "--device", "serial,stdio,stdio");
    EXPECT_USAGE("--device serial", "empty option", "run", "--device", "serial,stdio,");
    EXPECT_USAGE("--device", "empty value", "run", "--device", "");
    EXPECT_USAGE("--device", "'file=/x' is not a device type", "run", "--device", "file=/x");
    EXPECT_USAGE("--device serial,stdio", "the terminal is already another port's", "run",
                 "--device", "serial,stdio", "--device", "serial,stdio");
}

/* ---- --device virtio-blk ---- */

static void test_device_virtio_blk_defaults(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-blk,path=disk.img"), 0);
    assert_string_equal(errbuf, "");
    assert_int_equal(req.disk_count, 1);
    assert_string_equal(req.disk[0].path, "disk.img");
    assert_false(req.disk[0].read_only);
    assert_int_equal(req.disk[0].caching, VMK_DISK_CACHING_AUTOMATIC);
    assert_int_equal(req.disk[0].sync, VMK_DISK_SYNC_FULL);
    assert_null(req.disk[0].id);
    /* A disk is not a serial port: COM1 still defaults to the terminal. */
    assert_int_equal(req.serial_count, 0);
    cli_request_free(&req);
    assert_int_equal(req.disk_count, 0);
    assert_null(req.disk);
}

static void test_device_virtio_blk_keys(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device",
                           "virtio-blk,readonly,path=/img/root.raw,cache=uncached,sync=none,"
                           "id=ROOT-0001"),
                     0);
    assert_int_equal(req.disk_count, 1);
    assert_string_equal(req.disk[0].path, "/img/root.raw");
    assert_true(req.disk[0].read_only);
    assert_int_equal(req.disk[0].caching, VMK_DISK_CACHING_UNCACHED);
    assert_int_equal(req.disk[0].sync, VMK_DISK_SYNC_NONE);
    assert_string_equal(req.disk[0].id, "ROOT-0001");
    cli_request_free(&req);

    /* Every value of cache and sync, the --device=... form, and quoted commas. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--device=virtio-blk,path=/a,cache=auto,sync=full",
                           "--device", "virtio-blk,path=/b,cache=cached,sync=fsync", "--device",
                           "virtio-blk,path=\"/my,dir/c.img\",id=\"a,b c\""),
                     0);
    assert_int_equal(req.disk_count, 3);
    assert_int_equal(req.disk[0].caching, VMK_DISK_CACHING_AUTOMATIC);
    assert_int_equal(req.disk[0].sync, VMK_DISK_SYNC_FULL);
    assert_int_equal(req.disk[1].caching, VMK_DISK_CACHING_CACHED);
    assert_int_equal(req.disk[1].sync, VMK_DISK_SYNC_FSYNC);
    assert_string_equal(req.disk[2].path, "/my,dir/c.img");
    assert_string_equal(req.disk[2].id, "a,b c");
    assert_int_equal(req.disk[2].caching, VMK_DISK_CACHING_AUTOMATIC);
    cli_request_free(&req);
}

#define MAX_DISKS 16u /* the library says so (asserted) */

static void test_device_virtio_blk_repeated(void **state)
{
    struct cli_request req;
    assert_int_equal(vmk_config_max_storage_device_count(), MAX_DISKS);
    const char *args[2 + 2 * (MAX_DISKS + 1) + 1];
    char specs[MAX_DISKS + 1][32];
    int n = 0;
    args[n++] = "vmkit";
    args[n++] = "run";
    for (unsigned i = 0; i < MAX_DISKS; i++) {
        snprintf(specs[i], sizeof(specs[i]), "virtio-blk,path=/d%u%s", i, i % 2 ? ",readonly" : "");
        args[n++] = "--device";
        args[n++] = specs[i];
    }
    args[n] = NULL;
    assert_int_equal(parse_args(&req, errbuf, args), 0);
    assert_int_equal(req.disk_count, MAX_DISKS);
    for (unsigned i = 0; i < MAX_DISKS; i++) {
        char want[16];
        snprintf(want, sizeof(want), "/d%u", i);
        assert_string_equal(req.disk[i].path, want);
        assert_int_equal(req.disk[i].read_only, i % 2 == 1);
    }
    cli_request_free(&req);

    /* One more is refused. */
    snprintf(specs[MAX_DISKS], sizeof(specs[0]), "virtio-blk,path=/extra");
    args[n++] = "--device";
    args[n++] = specs[MAX_DISKS];
    args[n] = NULL;
    expect_usage("--device virtio-blk", "at most 16 disks", args);

    /* Serial ports and disks mix freely; each keeps its own order. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-blk,path=/a", "--device",
                           "serial,file=/s", "--device", "virtio-blk,path=/b"),
                     0);
    assert_int_equal(req.disk_count, 2);
    assert_string_equal(req.disk[0].path, "/a");
    assert_string_equal(req.disk[1].path, "/b");
    assert_int_equal(req.serial_count, 1);
    cli_request_free(&req);
}

static void test_device_virtio_blk_errors(void **state)
{
    struct cli_request req;
    /* The whole line, exactly. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-blk,path=/d,cache=fast"),
                     CLI_EXIT_USAGE);
    assert_string_equal(errbuf,
                        "vmkit: --device virtio-blk: cache 'fast' is not one of auto, cached, "
                        "uncached");
    assert_int_equal(req.disk_count, 0);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-blk,path=/d,sync=always"),
                     CLI_EXIT_USAGE);
    assert_string_equal(
        errbuf, "vmkit: --device virtio-blk: sync 'always' is not one of full, fsync, none");
    cli_request_free(&req);

    EXPECT_USAGE("--device virtio-blk", "cache 'Cached' is not one of", "run", "--device",
                 "virtio-blk,path=/d,cache=Cached");
    EXPECT_USAGE("--device virtio-blk", "cache '' is not one of", "run", "--device",
                 "virtio-blk,path=/d,cache=");
    EXPECT_USAGE("--device virtio-blk", "cache needs a value (one of auto, cached, uncached)",
                 "run", "--device", "virtio-blk,path=/d,cache");
    EXPECT_USAGE("--device virtio-blk", "sync needs a value (one of full, fsync, none)", "run",
                 "--device", "virtio-blk,path=/d,sync");
    EXPECT_USAGE("--device virtio-blk", "missing path=PATH", "run", "--device", "virtio-blk");
    EXPECT_USAGE("--device virtio-blk", "missing path=PATH in 'virtio-blk,readonly'", "run",
                 "--device", "virtio-blk,readonly");
    EXPECT_USAGE("--device virtio-blk", "path= needs a value", "run", "--device",
                 "virtio-blk,path=");
    EXPECT_USAGE("--device virtio-blk", "path= needs a value", "run", "--device",
                 "virtio-blk,path");
    EXPECT_USAGE("--device virtio-blk", "id= needs a value", "run", "--device",
                 "virtio-blk,path=/d,id=");
    EXPECT_USAGE("--device virtio-blk", "unknown key 'file'", "run", "--device",
                 "virtio-blk,file=/d");
    EXPECT_USAGE("unknown key 'serial'", "known: path, readonly, cache, sync, id", "run",
                 "--device", "virtio-blk,path=/d,serial=X");
    /* An unquoted comma in a path splits it: the rest is taken for a key. */
    EXPECT_USAGE("unknown key 'b.img'", "quote", "run", "--device", "virtio-blk,path=/a,b.img");
    EXPECT_USAGE("--device virtio-blk", "readonly takes no value (got 'yes')", "run", "--device",
                 "virtio-blk,path=/d,readonly=yes");
    EXPECT_USAGE("--device virtio-blk", "readonly given twice", "run", "--device",
                 "virtio-blk,path=/d,readonly,readonly");
    EXPECT_USAGE("--device virtio-blk", "path given twice", "run", "--device",
                 "virtio-blk,path=/a,path=/b");
    EXPECT_USAGE("--device virtio-blk", "cache given twice", "run", "--device",
                 "virtio-blk,path=/a,cache=auto,cache=cached");
    EXPECT_USAGE("--device virtio-blk", "sync given twice", "run", "--device",
                 "virtio-blk,path=/a,sync=none,sync=full");
    EXPECT_USAGE("--device virtio-blk", "id given twice", "run", "--device",
                 "virtio-blk,path=/a,id=x,id=y");
    EXPECT_USAGE("--device virtio-blk", "empty option", "run", "--device", "virtio-blk,path=/a,");
    EXPECT_USAGE("--device virtio-blk", "empty option", "run", "--device", "virtio-blk,,path=/a");
    EXPECT_USAGE("path", "missing closing quote", "run", "--device", "virtio-blk,path=\"/a");
    EXPECT_USAGE("--device", "'path=/a' is not a device type", "run", "--device", "path=/a");

    /* A failed disk after good ones leaves nothing behind (ASan checks the frees). */
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-blk,path=/a,id=x", "--device",
                           "virtio-blk,path=/b,cache=fast"),
                     CLI_EXIT_USAGE);
    assert_int_equal(req.disk_count, 0);
    assert_null(req.disk);
    cli_request_free(&req);
}

/* ---- --device virtio-rng ---- */

static void test_device_virtio_rng(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k"), 0);
    assert_false(req.rng);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-rng", "--device",
                           "virtio-blk,path=/a", "--device=serial,file=/s"),
                     0);
    assert_true(req.rng);
    assert_int_equal(req.disk_count, 1);
    assert_int_equal(req.serial_count, 1);
    cli_request_free(&req);
    assert_false(req.rng);

    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-rng,rate=1000"), 0);
    assert_int_equal(req.rng_rate, 1000);
    cli_request_free(&req);
    EXPECT_USAGE("--device virtio-rng", "unknown key 'fast' (known: rate)", "run", "--device",
                 "virtio-rng,fast");
    EXPECT_USAGE("--device virtio-rng: rate", "below the minimum of 1", "run", "--device",
                 "virtio-rng,rate=0");
    EXPECT_USAGE("--device virtio-rng: rate", "needs a value", "run", "--device",
                 "virtio-rng,rate");
    EXPECT_USAGE("--device virtio-rng", "empty option", "run", "--device", "virtio-rng,");
    EXPECT_USAGE("--device virtio-rng", "given twice", "run", "--device", "virtio-rng", "--device",
                 "virtio-rng");
    EXPECT_USAGE("--device", "'virtio-rng=1' is not a device type", "run", "--device",
                 "virtio-rng=1");
    EXPECT_USAGE("unknown device type 'rng'", "virtio-rng", "run", "--device", "rng");

    /* A failed second one leaves nothing behind. */
    assert_int_equal(
        PARSE(&req, errbuf, "run", "--device", "virtio-rng", "--device", "virtio-rng,x=1"),
        CLI_EXIT_USAGE);
    cli_request_free(&req);
}

static void test_build_config_virtio_rng(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_entropy_device_count(cfg), 0);
    vmk_config_free(cfg);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", "virtio-rng"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_non_null(cfg);
    assert_int_equal(vmk_config_entropy_device_count(cfg), 1);
    assert_int_equal(vmk_config_storage_device_count(cfg), 0);
    assert_int_equal(vmk_config_serial_port_count(cfg), 1);
    vmk_config_free(cfg);
    cli_request_free(&req);
}

/* --bootloader efi: no default NIC (OVMF would try a network boot first), one COM1. */
static void test_build_config_efi(void **state)
{
    char store[] = "/tmp/vmkit-test-cli-efi-XXXXXX";
    int fd = mkstemp(store);
    assert_true(fd >= 0);
    close(fd);
    unlink(store);
    if (!vmk_efi_default_variable_template_path()) {
        skip();
        return;
    }
    char spec[128];
    snprintf(spec, sizeof(spec), "efi,variable-store=%s,create", store);
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--bootloader", spec), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_boot_loader_get_kind(vmk_config_get_boot_loader(cfg)),
                     VMK_BOOT_LOADER_EFI);
    assert_int_equal(vmk_config_network_device_count(cfg), 0);
    assert_int_equal(vmk_config_storage_device_count(cfg), 0);
    assert_int_equal(vmk_config_serial_port_count(cfg), 1);
    vmk_config_free(cfg);
    cli_request_free(&req);
    unlink(store);
}

/* ---- --device virtio-balloon ---- */

static void test_device_virtio_balloon(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", "virtio-balloon"), 0);
    assert_true(req.balloon);
    assert_false(req.balloon_deflate_on_oom);
    assert_false(req.balloon_free_page_reporting);
    assert_int_equal(req.balloon_target_mib, 0);
    vmk_config *cfg = NULL;
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_memory_balloon_device_count(cfg), 1);
    assert_false(vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(
        vmk_config_get_memory_balloon_device(cfg, 0)));
    vmk_config_free(cfg);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-balloon,deflate-on-oom,free-page-reporting,target=128"),
                     0);
    assert_true(req.balloon_deflate_on_oom);
    assert_true(req.balloon_free_page_reporting);
    assert_int_equal(req.balloon_target_mib, 128);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    const vmk_memory_balloon_device *b = vmk_config_get_memory_balloon_device(cfg, 0);
    assert_true(vmk_virtio_traditional_memory_balloon_device_get_deflate_on_oom(b));
    assert_true(vmk_virtio_traditional_memory_balloon_device_get_free_page_reporting(b));
    vmk_config_free(cfg);
    cli_request_free(&req);

    EXPECT_USAGE("--device virtio-balloon",
                 "unknown key 'stats' (known: deflate-on-oom, free-page-reporting, target)", "run",
                 "--device", "virtio-balloon,stats");
    EXPECT_USAGE("--device virtio-balloon: target", "below the minimum of 2", "run", "--device",
                 "virtio-balloon,target=1");
    EXPECT_USAGE("--device virtio-balloon: target", "needs a value", "run", "--device",
                 "virtio-balloon,target");
    EXPECT_USAGE("--device virtio-balloon: target", "given twice", "run", "--device",
                 "virtio-balloon,target=64,target=64");
    EXPECT_USAGE("--device virtio-balloon", "given twice", "run", "--device", "virtio-balloon",
                 "--device", "virtio-balloon");
    EXPECT_USAGE("--device virtio-balloon", "empty option", "run", "--device", "virtio-balloon,");
    EXPECT_USAGE("--device virtio-balloon: deflate-on-oom", "takes no value", "run", "--device",
                 "virtio-balloon,deflate-on-oom=maybe");
    /* No vhost-user front end exists for a balloon. */
    EXPECT_USAGE("--device virtio-balloon: serve-device cannot serve it", "no vhost-user",
                 "serve-device", "--socket", "/tmp/s", "--device", "virtio-balloon");
}

/* ---- --device virtio-vsock ---- */

static void test_device_virtio_vsock(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-vsock,port=2222,socketURL=/run/ssh.sock,listen", "--device",
                           "virtio-vsock,port=5000,socketURL=/run/app.sock", "--device",
                           "virtio-vsock,udsPath=/run/v.sock,cid=9"),
                     0);
    assert_true(req.vsock);
    assert_int_equal(req.vsock_cid, 9);
    assert_string_equal(req.vsock_uds_path, "/run/v.sock");
    assert_int_equal(req.vsock_port_count, 2);
    assert_true(req.vsock_port[0].listen);
    assert_false(req.vsock_port[1].listen);
    vmk_config *cfg = NULL;
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    const vmk_socket_device *d = vmk_config_get_socket_device(cfg, 0);
    assert_non_null(d);
    assert_int_equal(vmk_virtio_socket_device_get_guest_cid(d), 9);
    assert_int_equal(vmk_virtio_socket_device_port_count(d), 2);
    assert_string_equal(vmk_virtio_socket_device_get_unix_socket_path(d), "/run/v.sock");
    vmk_config_free(cfg);
    cli_request_free(&req);

    EXPECT_USAGE("--device virtio-vsock", "port and socketURL go together", "run", "--device",
                 "virtio-vsock,port=5");
    EXPECT_USAGE("--device virtio-vsock: port", "below the minimum of 1", "run", "--device",
                 "virtio-vsock,port=0,socketURL=/s");
    EXPECT_USAGE("--device virtio-vsock", "listen and connect exclude each other", "run",
                 "--device", "virtio-vsock,port=5,socketURL=/s,listen,connect");
    EXPECT_USAGE("--device virtio-vsock", "listen needs port= and socketURL=", "run", "--device",
                 "virtio-vsock,listen");
    EXPECT_USAGE("--device virtio-vsock", "port 5 is mapped twice (connect)", "run", "--device",
                 "virtio-vsock,port=5,socketURL=/a", "--device",
                 "virtio-vsock,port=5,socketURL=/b");
    EXPECT_USAGE("--device virtio-vsock: cid", "below the minimum of 3", "run", "--device",
                 "virtio-vsock,cid=2");
    EXPECT_USAGE("--device virtio-vsock", "cid given twice", "run", "--device",
                 "virtio-vsock,cid=3", "--device", "virtio-vsock,cid=4");
    EXPECT_USAGE("--device virtio-vsock", "udsPath given twice", "run", "--device",
                 "virtio-vsock,udsPath=/a", "--device", "virtio-vsock,udsPath=/b");
    EXPECT_USAGE("--device virtio-vsock", "unknown key 'guest'", "run", "--device",
                 "virtio-vsock,guest=3");

    /* serve-device, in vhost-device-vsock's spelling too. */
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/tmp/s", "--type", "vsock",
                           "--cid", "4", "--uds-path", "/run/v.sock"),
                     0);
    assert_true(req.vsock);
    assert_int_equal(req.vsock_cid, 4);
    assert_string_equal(req.vsock_uds_path, "/run/v.sock");
    cli_request_free(&req);
    EXPECT_USAGE("serve-device --type vsock: missing --uds-path", "", "serve-device", "--socket",
                 "/tmp/s", "--type", "vsock");
    EXPECT_USAGE("--type vsock: but the device given is rng", "", "serve-device", "--socket",
                 "/tmp/s", "--type", "vsock", "--device", "virtio-rng");
}

/* ---- --device virtio-net ---- */

static void test_device_virtio_net(void **state)
{
    (void)state;
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-net"), 0);
    assert_int_equal(req.net_count, 1);
    assert_int_equal(req.net[0].kind, CLI_NET_NAT);
    assert_false(req.net[0].have_mac);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "run", "--device",
                           "virtio-net,nat,mac=52:54:00:AB:cd:01,mtu=9000,offloading=off,"
                           "hostfwd=tcp::8080-:80,hostfwd=udp:127.0.0.1:5353-:53,"
                           "hostfwd=tcp:[::1]:2222-:22"),
                     0);
    struct cli_net *n = &req.net[0];
    assert_int_equal(n->kind, CLI_NET_NAT);
    assert_true(n->have_mac);
    assert_int_equal(n->mac.octets[3], 0xab);
    assert_int_equal(n->mtu, 9000);
    assert_true(n->no_offloading);
    assert_int_equal(n->forward_count, 3);
    assert_false(n->forward[0].udp);
    assert_null(n->forward[0].host_address);
    assert_int_equal(n->forward[0].host_port, 8080);
    assert_int_equal(n->forward[0].guest_port, 80);
    assert_true(n->forward[1].udp);
    assert_string_equal(n->forward[1].host_address, "127.0.0.1");
    assert_string_equal(n->forward[2].host_address, "::1");
    assert_int_equal(n->forward[2].guest_port, 22);
    cli_request_free(&req);

    /* vfkit's unixSocketPath greets with VFKT; krunkit's type=unixgram does not unless asked. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-net,unixSocketPath=/tmp/g.sock",
                           "--device", "virtio-net,type=unixgram,path=/tmp/h.sock", "--device",
                           "virtio-net,type=unixstream,path=/tmp/p.sock", "--device",
                           "virtio-net,tap=tap0"),
                     0);
    assert_int_equal(req.net_count, 4);
    assert_int_equal(req.net[0].kind, CLI_NET_UNIXGRAM);
    assert_true(req.net[0].vfkit_magic);
    assert_int_equal(req.net[1].kind, CLI_NET_UNIXGRAM);
    assert_false(req.net[1].vfkit_magic);
    assert_int_equal(req.net[2].kind, CLI_NET_UNIXSTREAM);
    assert_string_equal(req.net[2].path, "/tmp/p.sock");
    assert_int_equal(req.net[3].kind, CLI_NET_TAP);
    assert_string_equal(req.net[3].path, "tap0");
    cli_request_free(&req);

    /* fd=N: a socket of the type asked. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    char spec[64];
    snprintf(spec, sizeof(spec), "virtio-net,fd=%d", sv[0]);
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", spec), 0);
    assert_int_equal(req.net[0].kind, CLI_NET_FD);
    assert_int_equal(req.net[0].fd, sv[0]);
    cli_request_free(&req);
    snprintf(spec, sizeof(spec), "virtio-net,type=unixgram,fd=%d,vfkitMagic=on", sv[0]);
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", spec), 0);
    assert_int_equal(req.net[0].kind, CLI_NET_FD);
    assert_true(req.net[0].vfkit_magic);
    cli_request_free(&req);
    snprintf(spec, sizeof(spec), "virtio-net,type=unixstream,fd=%d", sv[0]);
    EXPECT_USAGE("fd", "not a stream socket", "run", "--device", spec);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    snprintf(spec, sizeof(spec), "virtio-net,fd=%d", pfd[0]);
    EXPECT_USAGE("--device virtio-net", "not an open socket", "run", "--device", spec);
    close(pfd[0]);
    close(pfd[1]);
    close(sv[0]);
    close(sv[1]);
}

static void test_device_virtio_net_errors(void **state)
{
    (void)state;
    EXPECT_USAGE("--device virtio-net", "unknown key 'speed'", "run", "--device",
                 "virtio-net,speed=10");
    EXPECT_USAGE("nat", "tap", "run", "--device", "virtio-net,nat,tap=tap0");
    EXPECT_USAGE("unixSocketPath", "tap", "run", "--device", "virtio-net,unixSocketPath=/x,tap=t");
    EXPECT_USAGE("type=unixgram", "path=PATH or fd=N", "run", "--device",
                 "virtio-net,type=unixgram");
    EXPECT_USAGE("type", "not unixgram or unixstream", "run", "--device",
                 "virtio-net,type=udp,path=/x");
    EXPECT_USAGE("mac", "not xx:xx", "run", "--device", "virtio-net,mac=52:54:00:12:34");
    EXPECT_USAGE("mac", "not xx:xx", "run", "--device", "virtio-net,mac=52-54-00-12-34-56");
    EXPECT_USAGE("mac", "multicast", "run", "--device", "virtio-net,mac=01:00:5e:00:00:01");
    EXPECT_USAGE("mac", "multicast", "run", "--device", "virtio-net,mac=ff:ff:ff:ff:ff:ff");
    EXPECT_USAGE("mac", "all zeros", "run", "--device", "virtio-net,mac=00:00:00:00:00:00");
    EXPECT_USAGE("mtu", "67", "run", "--device", "virtio-net,mtu=67");
    EXPECT_USAGE("mtu", "65536", "run", "--device", "virtio-net,mtu=65536");
    EXPECT_USAGE("offloading", "on or off", "run", "--device", "virtio-net,offloading=maybe");
    EXPECT_USAGE("hostfwd", "tcp or udp", "run", "--device", "virtio-net,hostfwd=sctp::1-:2");
    EXPECT_USAGE("hostfwd", "host port", "run", "--device", "virtio-net,hostfwd=tcp::0-:22");
    EXPECT_USAGE("hostfwd", "host port", "run", "--device", "virtio-net,hostfwd=tcp::65536-:22");
    EXPECT_USAGE("hostfwd", "guest part", "run", "--device", "virtio-net,hostfwd=tcp::22-:0");
    EXPECT_USAGE("hostfwd", "guest part", "run", "--device",
                 "virtio-net,hostfwd=tcp::22-10.0.2.15:22");
    EXPECT_USAGE("hostfwd", "not an IPv4 or IPv6", "run", "--device",
                 "virtio-net,hostfwd=tcp:localhost:22-:22");
    EXPECT_USAGE("hostfwd", "NAT", "run", "--device", "virtio-net,tap=t0,hostfwd=tcp::22-:22");
    EXPECT_USAGE("vfkitMagic", "unix datagram", "run", "--device",
                 "virtio-net,type=unixstream,path=/x,vfkitMagic=on");
    EXPECT_USAGE("mac", "twice", "run", "--device",
                 "virtio-net,mac=52:54:00:00:00:01,mac=52:54:00:00:00:02");
    EXPECT_USAGE("tap", "needs a value", "run", "--device", "virtio-net,tap=");
    EXPECT_USAGE("hostfwd tcp 127.0.0.1:22", "twice", "run", "--device",
                 "virtio-net,hostfwd=tcp::22-:22,hostfwd=tcp:127.0.0.1:22-:23");
    EXPECT_USAGE("hostfwd udp ::1:53", "twice", "run", "--device",
                 "virtio-net,hostfwd=udp:[::1]:53-:53", "--device",
                 "virtio-net,hostfwd=udp:[::1]:53-:54");
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath));
    memcpy(longpath, "virtio-net,type=unixstream,path=/", 33);
    longpath[sizeof(longpath) - 1] = 0;
    EXPECT_USAGE("socket path is", "at most 107", "run", "--device", longpath);
    int lone = socket(AF_UNIX, SOCK_STREAM, 0);
    char spec[64];
    snprintf(spec, sizeof(spec), "virtio-net,fd=%d", lone);
    EXPECT_USAGE("fd", "not a connected socket", "run", "--device", spec);
    close(lone);
    EXPECT_USAGE("at most 8", NULL, "run", "--device", "virtio-net", "--device", "virtio-net",
                 "--device", "virtio-net", "--device", "virtio-net", "--device", "virtio-net",
                 "--device", "virtio-net", "--device", "virtio-net", "--device", "virtio-net",
                 "--device", "virtio-net");
}

static void test_build_config_virtio_net(void **state)
{
    (void)state;
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-net,mac=52:54:00:00:00:07,mtu=9000,hostfwd=udp::5353-:53",
                           "--device", "virtio-net,type=unixstream,path=/tmp/p.sock,mtu=9000"),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_network_device_count(cfg), 2);
    const vmk_network_device *d = vmk_config_get_network_device(cfg, 0);
    vmk_mac_address mac = vmk_virtio_network_device_get_mac_address(d);
    assert_int_equal(mac.octets[5], 7);
    assert_int_equal(vmk_virtio_network_device_get_mtu(d), 9000);
    const vmk_network_attachment *a = vmk_network_device_get_attachment(d);
    assert_int_equal(vmk_network_attachment_get_kind(a), VMK_NETWORK_ATTACHMENT_NAT);
    assert_int_equal(vmk_nat_network_attachment_port_forward_count(a), 1);
    vmk_port_forward_protocol proto;
    unsigned hp, gp;
    assert_int_equal(vmk_nat_network_attachment_get_port_forward(a, 0, &proto, NULL, &hp, &gp),
                     VMK_OK);
    assert_int_equal(proto, VMK_PORT_FORWARD_UDP);
    assert_int_equal(hp, 5353);
    assert_int_equal(gp, 53);
    a = vmk_network_device_get_attachment(vmk_config_get_network_device(cfg, 1));
    assert_int_equal(vmk_network_attachment_get_kind(a), VMK_NETWORK_ATTACHMENT_UNIX_STREAM);
    assert_int_equal(vmk_network_attachment_get_mtu(a), 9000); /* the socket carries them */
    vmk_config_free(cfg);
    cli_request_free(&req);
}

/* ---- --device virtio-serial ---- */

static void test_device_virtio_serial(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-serial,file=/tmp/a,name=org.x",
                           "--device", "virtio-serial,stdio,console", "--device",
                           "virtio-serial,name=\"a,b\",file=/tmp/b,append"),
                     0);
    assert_int_equal(req.console_port_count, 3);
    assert_int_equal(req.serial_count, 0);
    assert_int_equal(req.console_port[0].kind, CLI_SERIAL_FILE);
    assert_string_equal(req.console_port[0].path, "/tmp/a");
    assert_string_equal(req.console_port[0].name, "org.x");
    assert_false(req.console_port[0].append);
    assert_false(req.console_port[0].console);
    assert_int_equal(req.console_port[1].kind, CLI_SERIAL_STDIO);
    assert_null(req.console_port[1].path);
    assert_null(req.console_port[1].name);
    assert_true(req.console_port[1].console);
    assert_string_equal(req.console_port[2].path, "/tmp/b");
    assert_string_equal(req.console_port[2].name, "a,b");
    assert_true(req.console_port[2].append);
    assert_false(req.console_port[2].console);
    cli_request_free(&req);

    const char *args[2 + 2 * 17 + 1] = { "vmkit", "run" };
    for (int i = 0; i < 17; i++) {
        args[2 + 2 * i] = "--device";
        args[3 + 2 * i] = "virtio-serial,file=/tmp/p";
    }
    expect_usage("--device virtio-console", "at most 16 ports", args);
    args[2 + 2 * 16] = NULL;
    assert_int_equal(parse_args(&req, errbuf, args), 0);
    assert_int_equal(req.console_port_count, 16);
    cli_request_free(&req);
}

static void test_device_virtio_serial_errors(void **state)
{
    EXPECT_USAGE("--device virtio-console", "needs stdio, file=PATH, pty or socket=PATH", "run",
                 "--device", "virtio-serial");
    EXPECT_USAGE("--device virtio-console", "needs stdio, file=PATH, pty or socket=PATH", "run",
                 "--device", "virtio-serial,name=x");
    EXPECT_USAGE("--device virtio-console", "stdio and file= cannot be combined", "run", "--device",
                 "virtio-serial,stdio,file=/x");
    EXPECT_USAGE("--device virtio-console", "append needs file=PATH", "run", "--device",
                 "virtio-serial,stdio,append");
    EXPECT_USAGE("--device virtio-console", "file= needs a value (file=PATH)", "run", "--device",
                 "virtio-serial,file=");
    EXPECT_USAGE("--device virtio-console", "name= needs a value", "run", "--device",
                 "virtio-serial,stdio,name");
    EXPECT_USAGE("--device virtio-console", "name given twice", "run", "--device",
                 "virtio-serial,stdio,name=a,name=b");
    EXPECT_USAGE("--device virtio-console", "file given twice", "run", "--device",
                 "virtio-serial,file=/a,file=/b");
    EXPECT_USAGE("--device virtio-console", "console given twice", "run", "--device",
                 "virtio-serial,stdio,console,console");
    EXPECT_USAGE("--device virtio-console", "console takes no value (got 'yes')", "run", "--device",
                 "virtio-serial,stdio,console=yes");
    EXPECT_USAGE("--device virtio-console", "unknown key 'path'", "run", "--device",
                 "virtio-serial,path=/x");
    EXPECT_USAGE("--device virtio-console", "empty option", "run", "--device", "virtio-serial,");
    EXPECT_USAGE("--device virtio-console", "only one port can be the console (port 1 is)", "run",
                 "--device", "virtio-serial,file=/a,console", "--device",
                 "virtio-serial,file=/b,console");
    /* One terminal, one reader: in either order, and with a serial port too. */
    EXPECT_USAGE("--device virtio-console,stdio", "already another port's", "run", "--device",
                 "virtio-serial,stdio", "--device", "virtio-serial,stdio");
    EXPECT_USAGE("--device virtio-console,stdio", "already another port's", "run", "--device",
                 "serial,stdio", "--device", "virtio-serial,stdio");
    EXPECT_USAGE("--device serial,stdio", "already another port's", "run", "--device",
                 "virtio-serial,file=/a", "--device", "virtio-console,stdio", "--device",
                 "serial,stdio");
    EXPECT_USAGE("unknown device type 'virtio-serial-port'", "virtio-serial is virtio-console",
                 "run", "--device", "virtio-serial-port,stdio");
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-serial,stdio", "--device",
                           "virtio-serial,stdio,x"),
                     CLI_EXIT_USAGE);
    cli_request_free(&req);
}

static void test_build_config_virtio_serial(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_console_device_count(cfg), 0);
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* A file port leaves the terminal to the default COM1. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-serial,file=/tmp/a,name=org.vmkit.test"),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_console_device_count(cfg), 1);
    assert_int_equal(vmk_config_serial_port_count(cfg), 1);
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* A port on stdio takes the terminal: no default COM1. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-serial,file=/tmp/a", "--device", "virtio-serial,stdio,console"),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_console_device_count(cfg), 1);
    assert_int_equal(vmk_config_serial_port_count(cfg), 0);
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* The names reach the library, which judges them (with the port's number). */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-serial,file=/tmp/a,name=ok", "--device",
                           "virtio-serial,file=/tmp/b,name=\"bad\ttab\""),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    vmk_error *verr = NULL;
    assert_int_equal(vmk_config_validate(cfg, &verr), VMK_ERR_INVALID_CONFIG);
    assert_non_null(strstr(vmk_error_message(verr), "console port 2: name byte 3"));
    assert_null(strstr(vmk_error_message(verr), "console port 1"));
    vmk_error_free(verr);
    vmk_config_free(cfg);
    cli_request_free(&req);
}

/* ---- pty and socket ports ---- */

static void test_device_pty_socket(void **state)
{
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "serial,pty", "--device",
                           "serial,socket=/tmp/com2.sock", "--device", "serial,stdio", "--device",
                           "serial,socket=\"/tmp/a,b.sock\"", "--device",
                           "virtio-serial,pty,name=org.x,console", "--device",
                           "virtio-serial,name=y,socket=/tmp/v.sock", "--device",
                           "virtio-serial,pty"),
                     0);
    assert_int_equal(req.serial_count, 4);
    assert_int_equal(req.serial[0].kind, CLI_SERIAL_PTY);
    assert_null(req.serial[0].path);
    assert_int_equal(req.serial[1].kind, CLI_SERIAL_SOCKET);
    assert_string_equal(req.serial[1].path, "/tmp/com2.sock");
    assert_int_equal(req.serial[2].kind, CLI_SERIAL_STDIO);
    assert_int_equal(req.serial[3].kind, CLI_SERIAL_SOCKET);
    assert_string_equal(req.serial[3].path, "/tmp/a,b.sock");
    assert_int_equal(req.console_port_count, 3);
    assert_int_equal(req.console_port[0].kind, CLI_SERIAL_PTY);
    assert_null(req.console_port[0].path);
    assert_string_equal(req.console_port[0].name, "org.x");
    assert_true(req.console_port[0].console);
    assert_int_equal(req.console_port[1].kind, CLI_SERIAL_SOCKET);
    assert_string_equal(req.console_port[1].path, "/tmp/v.sock");
    assert_string_equal(req.console_port[1].name, "y");
    assert_int_equal(req.console_port[2].kind, CLI_SERIAL_PTY);
    cli_request_free(&req);

    /* Neither takes the terminal: a stdio port still can, on either device. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-serial,pty", "--device",
                           "virtio-serial,socket=/s", "--device", "virtio-serial,stdio", "--device",
                           "serial,pty"),
                     0);
    cli_request_free(&req);
}

static void test_device_pty_socket_errors(void **state)
{
    /* vfkit's virtio-serial is virtio-console, and messages use that name. */
    static const char *const types[] = { "serial", "virtio-serial" };
    static const char *const names[] = { "serial", "virtio-console" };
    for (size_t i = 0; i < 2; i++) {
        char ctx[32], spec[8][64];
        snprintf(ctx, sizeof(ctx), "--device %s", names[i]);
        static const char *const keys[] = {
            "pty,stdio", "file=/x,socket=/y", "pty,socket=/s", "pty=1",
            "pty,pty",   "socket=",           "socket",        "socket=/a,socket=/b"
        };
        for (size_t k = 0; k < 8; k++)
            snprintf(spec[k], sizeof(spec[k]), "%s,%s", types[i], keys[k]);
        EXPECT_USAGE(ctx, "stdio and pty cannot be combined", "run", "--device", spec[0]);
        EXPECT_USAGE(ctx, "file= and socket= cannot be combined", "run", "--device", spec[1]);
        EXPECT_USAGE(ctx, "pty and socket= cannot be combined", "run", "--device", spec[2]);
        EXPECT_USAGE(ctx, "pty takes no value (got '1')", "run", "--device", spec[3]);
        EXPECT_USAGE(ctx, "pty given twice", "run", "--device", spec[4]);
        EXPECT_USAGE(ctx, "socket= needs a value (socket=PATH)", "run", "--device", spec[5]);
        EXPECT_USAGE(ctx, "socket= needs a value (socket=PATH)", "run", "--device", spec[6]);
        EXPECT_USAGE(ctx, "socket given twice", "run", "--device", spec[7]);
    }
    EXPECT_USAGE("--device serial", "append needs file=PATH", "run", "--device",
                 "serial,pty,append");
    EXPECT_USAGE("--device virtio-console", "append needs file=PATH", "run", "--device",
                 "virtio-serial,socket=/s,append");
    EXPECT_USAGE("unknown key 'tty'", "stdio, file, append, pty, socket", "run", "--device",
                 "serial,tty");
    EXPECT_USAGE("unknown key 'unix'", "pty, socket, name, console", "run", "--device",
                 "virtio-serial,unix=/s");
    EXPECT_USAGE("--device serial", "at most 4", "run", "--device", "serial,pty", "--device",
                 "serial,pty", "--device", "serial,socket=/a", "--device", "serial,socket=/b",
                 "--device", "serial,pty");
}

/* Runs cli_build_config with stderr caught in out. */
static int build_catching_stderr(const struct cli_request *req, vmk_config **cfg, char *out,
                                 size_t outlen)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *tmp = tmpfile();
    assert_true(saved >= 0);
    assert_non_null(tmp);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    int rc = cli_build_config(req, NULL, cfg, errbuf, sizeof(errbuf));
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

static void test_build_config_pty_socket(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    char out[2048];
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "serial,socket=/tmp/com1.sock", "--device", "serial,pty", "--device",
                           "virtio-serial,pty,name=org.x,console", "--device", "virtio-serial,pty",
                           "--device", "virtio-serial,pty,console", "--device",
                           "virtio-serial,socket=/tmp/v.sock"),
                     CLI_EXIT_USAGE); /* two consoles */
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "serial,socket=/tmp/com1.sock", "--device", "serial,pty", "--device",
                           "virtio-serial,pty,name=org.x,console", "--device", "virtio-serial,pty",
                           "--device", "virtio-serial,pty,name=n3", "--device",
                           "virtio-serial,console", "--device", "virtio-serial,socket=/tmp/v.sock"),
                     CLI_EXIT_USAGE); /* a port without a host side */
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "serial,socket=/tmp/com1.sock", "--device", "serial,pty", "--device",
                           "virtio-serial,pty,name=org.x,console", "--device", "virtio-serial,pty",
                           "--device", "virtio-serial,pty,name=n3", "--device",
                           "virtio-serial,socket=/tmp/v.sock"),
                     0);
    assert_int_equal(build_catching_stderr(&req, &cfg, out, sizeof(out)), 0);
    assert_non_null(cfg);
    /* Nothing is made (nor printed) before the VM starts: main.c prints each pty's path
     * after the start, under these names. */
    assert_string_equal(out, "");
    char label[320];
    cli_port_label(&req, false, 1, label, sizeof(label));
    assert_string_equal(label, "COM2");
    cli_port_label(&req, true, 0, label, sizeof(label));
    assert_string_equal(label, "console port 1 (org.x, hvc0)");
    cli_port_label(&req, true, 1, label, sizeof(label));
    assert_string_equal(label, "console port 2");
    cli_port_label(&req, true, 2, label, sizeof(label));
    assert_string_equal(label, "console port 3 (n3)");
    assert_int_equal(vmk_config_serial_port_count(cfg), 2); /* no default COM1 on stdio */
    assert_int_equal(vmk_config_console_device_count(cfg), 1);
    /* The library finds nothing wrong with the ports (only the missing kernel). */
    vmk_error *verr = NULL;
    assert_int_equal(vmk_config_validate(cfg, &verr), VMK_ERR_INVALID_CONFIG);
    assert_null(strstr(vmk_error_message(verr), "port"));
    vmk_error_free(verr);
    verr = NULL;
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* A socket path the library refuses: validation names the port and the path. */
    char long_path[160] = "/tmp/";
    memset(long_path + 5, 'x', 140);
    char spec[200];
    snprintf(spec, sizeof(spec), "serial,socket=%s", long_path);
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", spec), 0);
    assert_int_equal(build_catching_stderr(&req, &cfg, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(vmk_config_validate(cfg, &verr), VMK_ERR_INVALID_CONFIG);
    assert_non_null(strstr(vmk_error_message(verr), "serial port 1"));
    assert_non_null(strstr(vmk_error_message(verr), long_path));
    vmk_error_free(verr);
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* Building announces no pty: the pty is made at start. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", "serial,pty",
                           "--device", "virtio-blk,path=/a,id=123456789012345678901"),
                     0);
    assert_int_equal(build_catching_stderr(&req, &cfg, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    vmk_config_free(cfg);
    cli_request_free(&req);
}

static void test_build_config_usb_mass_storage(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "usb-mass-storage,path=/dev/null,readonly", "--device",
                           "virtio-blk,path=/img/a.raw"),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    const vmk_storage_device *d = vmk_config_get_storage_device(cfg, 0);
    assert_int_equal(vmk_storage_device_get_kind(d), VMK_STORAGE_DEVICE_USB_MASS_STORAGE);
    assert_true(vmk_disk_image_attachment_is_read_only(vmk_storage_device_get_attachment(d)));
    assert_int_equal(vmk_storage_device_get_kind(vmk_config_get_storage_device(cfg, 1)),
                     VMK_STORAGE_DEVICE_VIRTIO_BLOCK);
    vmk_config_free(cfg);
    cli_request_free(&req);
    EXPECT_USAGE("--device usb-mass-storage", "unknown key 'id'", "run", "--device",
                 "usb-mass-storage,path=/a,id=x");
    EXPECT_USAGE("--device usb-mass-storage", "missing path=PATH", "run", "--device",
                 "usb-mass-storage");
    EXPECT_USAGE("--device usb-mass-storage", "at most 4 USB drives", "run", "--device",
                 "usb-mass-storage,path=/dev/null", "--device", "usb-mass-storage,path=/dev/null",
                 "--device", "usb-mass-storage,path=/dev/null", "--device",
                 "usb-mass-storage,path=/dev/null", "--device", "usb-mass-storage,path=/dev/null");
    /* A drive's file that is not there is a usage error, before anything starts. */
    EXPECT_USAGE("--device usb-mass-storage",
                 "path=/nonexistent/debian.iso: No such file or directory", "run", "--device",
                 "usb-mass-storage,path=/nonexistent/debian.iso,readonly");
}

/* --control-socket PATH: kept as given; the machine gets a USB controller for usb-attach. */
static void test_control_socket(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k"), 0);
    assert_null(req.control_socket);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_false(vmk_config_get_usb_controller(cfg));
    vmk_config_free(cfg);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--control-socket", "/tmp/a.sock",
                           "--control-socket=/run/vm.sock"),
                     0);
    assert_string_equal(req.control_socket, "/run/vm.sock"); /* the last one */
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_true(vmk_config_get_usb_controller(cfg));
    assert_int_equal(vmk_config_storage_device_count(cfg), 0);
    vmk_config_free(cfg);
    cli_request_free(&req);

    char long_path[256];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    EXPECT_USAGE("--control-socket", "empty path", "run", "--control-socket=");
    EXPECT_USAGE("--control-socket", "missing value", "run", "--control-socket");
    EXPECT_USAGE("--control-socket", "bytes, at most", "run", "--control-socket", long_path);
}

/* usb-attach's keys are --device usb-mass-storage's, read by the same parser. */
static void test_usb_drive_keys(void **state)
{
    struct cli_disk d;
    assert_int_equal(cli_parse_usb_drive("usb-attach", "path=\"/a,b.iso\",readonly,cache=uncached",
                                         &d, errbuf, sizeof(errbuf)),
                     0);
    assert_string_equal(d.path, "/a,b.iso");
    assert_true(d.read_only);
    assert_true(d.usb);
    assert_int_equal(d.caching, VMK_DISK_CACHING_UNCACHED);
    assert_int_equal(d.sync, VMK_DISK_SYNC_FULL);
    vmk_storage_device *dev = cli_storage_device_new(&d);
    assert_non_null(dev);
    assert_int_equal(vmk_storage_device_get_kind(dev), VMK_STORAGE_DEVICE_USB_MASS_STORAGE);
    assert_true(vmk_disk_image_attachment_is_read_only(vmk_storage_device_get_attachment(dev)));
    vmk_storage_device_free(dev);
    free(d.path);
    assert_int_equal(cli_parse_usb_drive("usb-attach", "readonly", &d, errbuf, sizeof(errbuf)),
                     CLI_EXIT_USAGE);
    assert_string_equal(errbuf, "vmkit: usb-attach: missing path=PATH in 'readonly'");
    assert_null(d.path);
    assert_int_equal(cli_parse_usb_drive("usb-attach", "path=/a,id=x", &d, errbuf, sizeof(errbuf)),
                     CLI_EXIT_USAGE);
    assert_non_null(strstr(errbuf, "usb-attach: unknown key 'id'"));
    assert_null(d.path);
}

static void test_build_config_virtio_blk(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-blk,path=/img/a.raw", "--device",
                           "virtio-blk,path=/img/b.raw,readonly,cache=uncached,sync=fsync,"
                           "id=12345678901234567890"),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_non_null(cfg);
    assert_int_equal(vmk_config_storage_device_count(cfg), 2);
    /* Serial defaults are untouched by disks: COM1 on the terminal. */
    assert_int_equal(vmk_config_serial_port_count(cfg), 1);

    /* The disk images do not exist: validation names them. */
    vmk_error *verr = NULL;
    assert_int_equal(vmk_config_validate(cfg, &verr), VMK_ERR_INVALID_CONFIG);
    assert_non_null(strstr(vmk_error_message(verr), "/img/a.raw"));
    assert_non_null(strstr(vmk_error_message(verr), "/img/b.raw"));
    vmk_error_free(verr);
    verr = NULL;
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* An id of 21 bytes, a byte the guest could not print: the library's validation says so,
     * naming the device. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-blk,path=/a,id=123456789012345678901", "--device",
                           "virtio-blk,path=/b,id=ab\tc"),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_validate(cfg, &verr), VMK_ERR_INVALID_CONFIG);
    assert_non_null(strstr(vmk_error_message(verr), "storage device 1: identifier "
                                                    "\"123456789012345678901\" is 21 bytes, at "
                                                    "most 20 allowed"));
    assert_non_null(strstr(vmk_error_message(verr), "storage device 2: identifier byte 2 (0x09) "
                                                    "is not printable ASCII"));
    vmk_error_free(verr);
    vmk_config_free(cfg);
    cli_request_free(&req);
}

static void test_bad_numbers(void **state)
{
    char max_cpus[32], above_cpus[32], min_mem[64], max_mem[64], above_mem[32];
    unsigned max_c = vmk_config_max_cpu_count();
    uint64_t min_m = (vmk_config_min_memory_size() + MIB - 1) / MIB;
    uint64_t max_m = vmk_config_max_memory_size() / MIB;
    snprintf(max_cpus, sizeof(max_cpus), "the maximum of %u", max_c);
    snprintf(above_cpus, sizeof(above_cpus), "%u", max_c + 1);
    snprintf(min_mem, sizeof(min_mem), "the minimum of %llu MiB", (unsigned long long)min_m);
    snprintf(max_mem, sizeof(max_mem), "the maximum of %llu MiB", (unsigned long long)max_m);
    snprintf(above_mem, sizeof(above_mem), "%llu", (unsigned long long)max_m + 1);

    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--cpus", "abc"), CLI_EXIT_USAGE);
    assert_string_equal(errbuf, "vmkit: --cpus: 'abc' is not a number");
    char expect[128];
    snprintf(expect, sizeof(expect), "vmkit: --memory: 0 MiB is below the minimum of %llu MiB",
             (unsigned long long)min_m);
    assert_int_equal(PARSE(&req, errbuf, "run", "--memory", "0"), CLI_EXIT_USAGE);
    assert_string_equal(errbuf, expect);
    assert_int_equal(PARSE(&req, errbuf, "run", "--cpus", "0"), CLI_EXIT_USAGE);
    assert_string_equal(errbuf, "vmkit: --cpus: 0 is below the minimum of 1");

    EXPECT_USAGE("--cpus", "'' is not a number", "run", "--cpus", "");
    EXPECT_USAGE("--cpus", "'' is not a number", "run", "--cpus=");
    EXPECT_USAGE("--cpus", "'4x' is not a number", "run", "--cpus", "4x");
    EXPECT_USAGE("--cpus", "' 4' is not a number", "run", "--cpus", " 4");
    EXPECT_USAGE("--cpus", "'+4' is not a number", "run", "--cpus", "+4");
    EXPECT_USAGE("--cpus", "'0x4' is not a number", "run", "--cpus", "0x4");
    EXPECT_USAGE("--cpus", "'-' is not a number", "run", "--cpus=-");
    EXPECT_USAGE("--cpus: -1", "below the minimum of 1", "run", "--cpus", "-1");
    EXPECT_USAGE("--cpus: 99999999999999999999999", max_cpus, "run", "--cpus",
                 "99999999999999999999999");
    /* 2^32 + 1 must not wrap to 1 on the way to an unsigned. */
    EXPECT_USAGE("--cpus: 4294967297", max_cpus, "run", "--cpus", "4294967297");
    EXPECT_USAGE(above_cpus, max_cpus, "run", "--cpus", above_cpus);

    EXPECT_USAGE("--memory", "'12abc': unknown unit 'abc'", "run", "--memory", "12abc");
    EXPECT_USAGE("--memory", "'1.5G': unknown unit '.5G'", "run", "--memory", "1.5G");
    EXPECT_USAGE("--memory", "1536K is not a whole number of MiB", "run", "--memory", "1536K");
    EXPECT_USAGE("--memory", "1K is not a whole number of MiB", "run", "--memory", "1K");
    EXPECT_USAGE("--memory", "2T is above the maximum of 1048576 MiB", "run", "--memory", "2T");
    EXPECT_USAGE("--memory", "1048577M is above the maximum", "run", "--memory", "1048577M");
    EXPECT_USAGE("--memory", "0M is below the minimum of 2 MiB", "run", "--memory", "0M");
    EXPECT_USAGE("--memory", "is above the maximum", "run", "--memory", "99999999999999999999G");
    /* Units: K, M, G, T (and KiB... and lower case), powers of 1024. */
    static const struct {
        const char *text;
        uint64_t mib;
    } sizes[] = { { "1G", 1024 },    { "1g", 1024 },    { "2GiB", 2048 },
                  { "512M", 512 },   { "512MiB", 512 }, { "512mb", 512 },
                  { "1T", 1048576 }, { "2048K", 2 },    { "3072KiB", 3 } };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(PARSE(&req, errbuf, "run", "--memory", sizes[i].text), 0);
        assert_int_equal(req.memory_mib, sizes[i].mib);
        cli_request_free(&req);
    }
    EXPECT_USAGE("--memory", "'' is not a number", "run", "--memory=");
    EXPECT_USAGE("--memory: -5 MiB", min_mem, "run", "--memory", "-5");
    EXPECT_USAGE("--memory: 18446744073709551616 MiB", max_mem, "run", "--memory",
                 "18446744073709551616");
    /* Fits in 64 bits as MiB, but not as bytes. */
    EXPECT_USAGE("--memory: 18446744073709551615 MiB", max_mem, "run", "--memory",
                 "18446744073709551615");
    EXPECT_USAGE(above_mem, max_mem, "run", "--memory", above_mem);

    /* The limits themselves are accepted. */
    char max_c_text[32], max_m_text[32];
    snprintf(max_c_text, sizeof(max_c_text), "%u", max_c);
    snprintf(max_m_text, sizeof(max_m_text), "%llu", (unsigned long long)max_m);
    assert_int_equal(PARSE(&req, errbuf, "run", "--cpus", max_c_text, "--memory", max_m_text), 0);
    assert_int_equal(req.cpus, max_c);
    assert_int_equal(req.memory_mib, max_m);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--cpus", "001", "--memory", "0002"), 0);
    assert_int_equal(req.cpus, 1);
    assert_int_equal(req.memory_mib, 2);
    cli_request_free(&req);
}

static void test_unknown_flags(void **state)
{
    EXPECT_USAGE("unknown option '--foo'", NULL, "run", "--foo");
    EXPECT_USAGE("unknown option '--foo'", NULL, "run", "--foo=bar");
    EXPECT_USAGE("unknown option '--cpu'", NULL, "run", "--cpu", "2");
    EXPECT_USAGE("unknown option '-x'", NULL, "run", "-x");
    EXPECT_USAGE("unknown option '--kernel-cmdline'", NULL, "run", "--kernel-cmdline", "q");
    EXPECT_USAGE("unexpected argument 'disk.img'", NULL, "run", "disk.img");
    EXPECT_USAGE("unexpected argument '-'", NULL, "run", "-");
    EXPECT_USAGE("--help", "takes no value (got '1')", "run", "--help=1");
    EXPECT_USAGE("unknown option '--cpus' before the command", NULL, "--cpus", "2", "run");
    EXPECT_USAGE("unknown command 'start'", NULL, "start");
    EXPECT_USAGE("--version", "unexpected argument 'x'", "--version", "x");
    EXPECT_USAGE("--initrd", "needs --kernel", "run", "--initrd", "/i");
    EXPECT_USAGE("--kernel", "empty path", "run", "--kernel", "");
    EXPECT_USAGE("--initrd", "empty path", "run", "--kernel", "/k", "--initrd=");
    EXPECT_USAGE("--config", "'vm.json'", "run", "--config", "vm.json");
    EXPECT_USAGE("--config", "not supported yet", "run", "--config=vm.json");

    struct cli_request req;
    const char *none[] = { "vmkit", NULL };
    assert_int_equal(parse_args(&req, errbuf, none), CLI_EXIT_USAGE);
    assert_non_null(strstr(errbuf, "missing command"));
    cli_request_free(&req);
}

static void test_missing_values(void **state)
{
    static const char *const valued[] = { "--cpus",    "--memory",     "--kernel", "--initrd",
                                          "--cmdline", "--bootloader", "--device", "--config" };
    for (size_t i = 0; i < sizeof(valued) / sizeof(valued[0]); i++) {
        char want[64];
        snprintf(want, sizeof(want), "vmkit: %s: missing value (%s ", valued[i], valued[i]);
        EXPECT_USAGE(want, NULL, "run", valued[i]);
        /* After other options too. */
        EXPECT_USAGE(want, NULL, "run", "--cpus", "2", valued[i]);
    }
}

static void test_help_version(void **state)
{
    static const char *const help[][4] = {
        { "vmkit", "--help", NULL },        { "vmkit", "-h", NULL },
        { "vmkit", "help", NULL },          { "vmkit", "help", "run", NULL },
        { "vmkit", "run", "--help", NULL }, { "vmkit", "run", "--cpus=2", "-h" },
    };
    struct cli_request req;
    for (size_t i = 0; i < sizeof(help) / sizeof(help[0]); i++) {
        int argc = help[i][3] ? 4 : (int)(help[i][2] ? 3 : 2);
        assert_int_equal(cli_parse(argc, (char *const *)help[i], &req, errbuf, sizeof(errbuf)), 0);
        assert_int_equal(req.command, CLI_CMD_HELP);
        cli_request_free(&req);
    }
    assert_int_equal(PARSE(&req, errbuf, "--version"), 0);
    assert_int_equal(req.command, CLI_CMD_VERSION);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "-V"), 0);
    assert_int_equal(req.command, CLI_CMD_VERSION);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--version"), 0);
    assert_int_equal(req.command, CLI_CMD_VERSION);
    cli_request_free(&req);
    /* An error before --help still counts. */
    EXPECT_USAGE("--cpus", "'x'", "run", "--cpus", "x", "--help");

    const char *u = cli_usage();
    assert_non_null(strstr(u, "usage: vmkit run [options]"));
    static const char *const documented[] = { "--cpus",
                                              "--memory",
                                              "--kernel",
                                              "--initrd",
                                              "--cmdline",
                                              "--bootloader",
                                              "serial,stdio",
                                              "serial,file=PATH",
                                              "serial,pty",
                                              "serial,socket=PATH",
                                              "/dev/pts/N",
                                              "--config",
                                              "--version",
                                              "--help",
                                              "VMKIT_GUEST_DIR",
                                              "Ctrl-A x",
                                              "virtio-blk,path=PATH",
                                              "readonly",
                                              "cache=auto|cached|uncached",
                                              "sync=full|fsync|none",
                                              "id=SERIAL",
                                              "queues=N",
                                              "virtio-rng[,rate=BYTES_PER_SEC]",
                                              "virtio-balloon[,deflate-on-oom]",
                                              "virtio-vsock,port=N,socketURL=PATH",
                                              "udsPath=PATH",
                                              "virtio-fs,sharedDir=PATH,mountTag=TAG",
                                              "cache=auto|never|always",
                                              "ownership=identity|squash",
                                              "dir=NAME:PATH[:ro]",
                                              "rosetta,mountTag=TAG",
                                              "vmkit.mount=",
                                              "--shared-dir PATH[,readonly]",
                                              "--sandbox namespace|chroot|none",
                                              "virtio-console,stdio|file=PATH",
                                              "|pty|socket=PATH",
                                              "virtio-serial is",
                                              "name=NAME",
                                              "console",
                                              "virtio-gpu[,width=W][,height=H][,scanout=WxH]",
                                              "1280x800",
                                              "virtio-input,keyboard|pointing",
                                              "--gui",
                                              "--vnc [unix:PATH|HOST:PORT|auto]",
                                              "--vnc-password-file PATH",
                                              "--web",
                                              "--screenshot-on-exit PATH",
                                              "--control-socket PATH",
                                              "usb-attach path=FILE",
                                              "usb-detach port=N",
                                              "power-button",
                                              "--stop-timeout SECONDS",
                                              "Exit status (run and serve-device)",
                                              "128+N" };
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
        assert_non_null(strstr(u, documented[i]));
    assert_int_equal(u[strlen(u) - 1], '\n');
    assert_string_equal(vmk_version_string(), VMK_VERSION_STRING);
}

/* ---- The default guest ---- */

struct tmp {
    char root[64];
};

static void touch(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x", f);
    fclose(f);
}

static void mkdirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

static int make_tmp(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    snprintf(t->root, sizeof(t->root), "/tmp/test_cli.XXXXXX");
    assert_non_null(mkdtemp(t->root));
    *state = t;
    return 0;
}

static int remove_tmp(void **state)
{
    struct tmp *t = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->root);
    int rc = system(cmd);
    free(t);
    unsetenv("VMKIT_GUEST_DIR");
    return rc == 0 ? 0 : -1;
}

static void test_default_guest_env(void **state)
{
    struct tmp *t = *state;
    char *k = NULL, *i = NULL, want[512];
    setenv("VMKIT_GUEST_DIR", t->root, 1);

    assert_int_equal(cli_find_default_guest("/usr/bin/vmkit", &k, &i, errbuf, sizeof(errbuf)),
                     CLI_EXIT_ERROR);
    assert_null(k);
    assert_null(i);
    assert_true(strncmp(errbuf, "vmkit: no default guest found", 29) == 0);
    assert_non_null(strstr(errbuf, t->root));
    assert_non_null(strstr(errbuf, "guest/build.sh"));
    assert_non_null(strstr(errbuf, "--kernel"));

    touch(t->root, "vmlinuz"); /* a kernel alone is not a guest */
    assert_int_equal(cli_find_default_guest(NULL, &k, &i, errbuf, sizeof(errbuf)), CLI_EXIT_ERROR);
    assert_non_null(strstr(errbuf, t->root));

    touch(t->root, "initramfs.img");
    assert_int_equal(cli_find_default_guest(NULL, &k, &i, errbuf, sizeof(errbuf)), 0);
    snprintf(want, sizeof(want), "%s/vmlinuz", t->root);
    assert_string_equal(k, want);
    snprintf(want, sizeof(want), "%s/initramfs.img", t->root);
    assert_string_equal(i, want);
    free(k);
    free(i);

    /* run with no boot options boots it, on COM1 = stdio, with the default command line. */
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_non_null(cfg);
    const vmk_boot_loader *bl = vmk_config_get_boot_loader(cfg);
    assert_non_null(bl);
    snprintf(want, sizeof(want), "%s/vmlinuz", t->root);
    assert_string_equal(vmk_linux_boot_loader_get_kernel(bl), want);
    snprintf(want, sizeof(want), "%s/initramfs.img", t->root);
    assert_string_equal(vmk_linux_boot_loader_get_initrd(bl), want);
    assert_string_equal(vmk_linux_boot_loader_get_command_line(bl), "console=ttyS0 panic=-1");
    assert_int_equal(vmk_config_get_cpu_count(cfg), 1);
    assert_int_equal(vmk_config_get_memory_size(cfg), 512 * MIB);
    assert_int_equal(vmk_config_serial_port_count(cfg), 1);
    /* ... and on the network: one NAT device, which its init asks for a lease. */
    assert_int_equal(vmk_config_network_device_count(cfg), 1);
    assert_int_equal(vmk_network_attachment_get_kind(
                         vmk_network_device_get_attachment(vmk_config_get_network_device(cfg, 0))),
                     VMK_NETWORK_ATTACHMENT_NAT);
    vmk_config_free(cfg);
    cli_request_free(&req);
    /* virtio-net,none: off the network; a device of the user's own: that one only. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-net,none"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_network_device_count(cfg), 0);
    vmk_config_free(cfg);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-net,tap=tap9"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_network_device_count(cfg), 1);
    vmk_config_free(cfg);
    cli_request_free(&req);
    EXPECT_USAGE("none", "no other key", "run", "--device", "virtio-net,none,mtu=1400");
    EXPECT_USAGE("after virtio-net,none", NULL, "run", "--device", "virtio-net,none", "--device",
                 "virtio-net");

    /* --cmdline replaces the default guest's command line. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--cmdline", "console=ttyS0 rdinit=/bin/sh"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    bl = vmk_config_get_boot_loader(cfg);
    assert_string_equal(vmk_linux_boot_loader_get_command_line(bl), "console=ttyS0 rdinit=/bin/sh");
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* A directory that lacks the guest fails the build, naming it. */
    snprintf(want, sizeof(want), "%s/nowhere", t->root);
    setenv("VMKIT_GUEST_DIR", want, 1);
    assert_int_equal(PARSE(&req, errbuf, "run"), 0);
    static char sentinel;
    cfg = (vmk_config *)&sentinel; /* must be reset to NULL */
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), CLI_EXIT_ERROR);
    assert_null(cfg);
    assert_non_null(strstr(errbuf, want));
    cli_request_free(&req);
}

static void test_default_guest_beside_binary(void **state)
{
    struct tmp *t = *state;
    char dir[512], exe[512], want[512];
    char *k = NULL, *i = NULL;
    unsetenv("VMKIT_GUEST_DIR");

    /* The build tree: <repo>/build/tools/vmkit/vmkit finds <repo>/guest/out. */
    snprintf(dir, sizeof(dir), "%s/repo/guest/out", t->root);
    mkdirs(dir);
    touch(dir, "vmlinuz");
    touch(dir, "initramfs.img");
    snprintf(exe, sizeof(exe), "%s/repo/build/tools/vmkit/vmkit", t->root);
    assert_int_equal(cli_find_default_guest(exe, &k, &i, errbuf, sizeof(errbuf)), 0);
    snprintf(want, sizeof(want), "%s/repo/guest/out/vmlinuz", t->root);
    assert_string_equal(k, want);
    free(k);
    free(i);

    /* At most 4 levels up: from 5 levels below the repo it is not found. */
    snprintf(exe, sizeof(exe), "%s/repo/a/b/c/d/e/vmkit", t->root);
    assert_int_equal(cli_find_default_guest(exe, &k, &i, errbuf, sizeof(errbuf)), CLI_EXIT_ERROR);
    assert_null(k);
    assert_non_null(strstr(errbuf, "no default guest found"));
    snprintf(want, sizeof(want), "%s/repo/a/b/c/d/e", t->root);
    assert_non_null(strstr(errbuf, want));
    assert_non_null(strstr(errbuf, "guest/build.sh"));
    snprintf(exe, sizeof(exe), "%s/repo/a/b/c/d/vmkit", t->root);
    assert_int_equal(cli_find_default_guest(exe, &k, &i, errbuf, sizeof(errbuf)), 0);
    free(k);
    free(i);

    /* An installed binary: <prefix>/bin/vmkit finds <prefix>/share/vmkit/guest first. */
    snprintf(dir, sizeof(dir), "%s/repo/prefix/share/vmkit/guest", t->root);
    mkdirs(dir);
    touch(dir, "vmlinuz");
    touch(dir, "initramfs.img");
    snprintf(exe, sizeof(exe), "%s/repo/prefix/bin/vmkit", t->root);
    assert_int_equal(cli_find_default_guest(exe, &k, &i, errbuf, sizeof(errbuf)), 0);
    snprintf(want, sizeof(want), "%s/repo/prefix/share/vmkit/guest/initramfs.img", t->root);
    assert_string_equal(i, want);
    free(k);
    free(i);

    /* An empty VMKIT_GUEST_DIR counts as unset. */
    setenv("VMKIT_GUEST_DIR", "", 1);
    assert_int_equal(cli_find_default_guest(exe, &k, &i, errbuf, sizeof(errbuf)), 0);
    free(k);
    free(i);
    unsetenv("VMKIT_GUEST_DIR");

    /* Without its own path, only VMKIT_GUEST_DIR could help, and the message says so. */
    assert_int_equal(cli_find_default_guest(NULL, &k, &i, errbuf, sizeof(errbuf)), CLI_EXIT_ERROR);
    assert_non_null(strstr(errbuf, "VMKIT_GUEST_DIR"));
    assert_int_equal(cli_find_default_guest("vmkit", &k, &i, errbuf, sizeof(errbuf)),
                     CLI_EXIT_ERROR);
}

/* ---- The config built from explicit options ---- */

static void test_build_config(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--cpus", "3", "--memory", "768", "--bootloader",
                           "linux,kernel=/k,initrd=/i,cmdline=\"console=ttyS0,9600\"", "--device",
                           "serial,file=/tmp/x.log", "--device", "serial,stdio"),
                     0);
    assert_int_equal(cli_build_config(&req, "/nonexistent/bin/vmkit", &cfg, errbuf, sizeof(errbuf)),
                     0);
    assert_int_equal(vmk_config_get_cpu_count(cfg), 3);
    assert_int_equal(vmk_config_get_memory_size(cfg), 768 * MIB);
    const vmk_boot_loader *bl = vmk_config_get_boot_loader(cfg);
    assert_string_equal(vmk_linux_boot_loader_get_kernel(bl), "/k");
    assert_string_equal(vmk_linux_boot_loader_get_initrd(bl), "/i");
    assert_string_equal(vmk_linux_boot_loader_get_command_line(bl), "console=ttyS0,9600");
    assert_int_equal(vmk_config_serial_port_count(cfg), 2);

    /* The kernel is not there: validation (not the parser) names it. */
    vmk_error *err = NULL;
    assert_int_equal(vmk_config_validate(cfg, &err), VMK_ERR_INVALID_CONFIG);
    assert_non_null(strstr(vmk_error_message(err), "/k"));
    vmk_error_free(err);
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* An explicit kernel gets no command line of ours, and 4 serial ports fit. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", "serial,file=/1",
                           "--device", "serial,file=/2", "--device", "serial,file=/3,append",
                           "--device", "serial,stdio"),
                     0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    bl = vmk_config_get_boot_loader(cfg);
    const char *cmdline = vmk_linux_boot_loader_get_command_line(bl);
    assert_true(cmdline == NULL || strcmp(cmdline, "console=ttyS0 panic=-1") != 0);
    assert_null(vmk_linux_boot_loader_get_initrd(bl));
    assert_int_equal(vmk_config_serial_port_count(cfg), 4);
    vmk_config_free(cfg);
    cli_request_free(&req);
}

/* ---- serve-device ---- */

/* One parser per device: serve-device takes run's --device specs, and the spellings of earlier
 * releases (--type/--disk/--port/--rate/--queues) become the same request. */
static void test_serve_device(void **state)
{
    struct cli_request req;
    assert_int_equal(
        PARSE(&req, errbuf, "serve-device", "--socket", "/tmp/s", "--device", "virtio-rng"), 0);
    assert_int_equal(req.command, CLI_CMD_SERVE_DEVICE);
    assert_true(req.rng);
    assert_int_equal(req.rng_rate, 0); /* the library's default */
    assert_string_equal(req.socket, "/tmp/s");
    cli_request_free(&req);
    assert_null(req.socket);

    /* serve-device --type net [--net KEYS]: the NAT unless told otherwise. */
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--type", "net", "--socket", "/tmp/s"), 0);
    assert_int_equal(req.net_count, 1);
    assert_int_equal(req.net[0].kind, CLI_NET_NAT);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--type", "net", "--socket", "/tmp/s",
                           "--net", "nat,hostfwd=tcp::2222-:22"),
                     0);
    assert_int_equal(req.net_count, 1);
    assert_int_equal(req.net[0].forward_count, 1);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--type", "rng", "--socket", "/tmp/s"), 0);
    assert_true(req.rng);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket=/a", "--rate=4096", "--type=rng",
                           "--socket", "/b"),
                     0);
    assert_string_equal(req.socket, "/b"); /* the last one wins */
    assert_int_equal(req.rng_rate, 4096);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--device", "virtio-rng,rate=4294967296",
                           "--socket", "/s"),
                     0);
    assert_int_equal(req.rng_rate, vmk_virtio_entropy_device_max_rate());
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--help"), 0);
    assert_int_equal(req.command, CLI_CMD_HELP);
    cli_request_free(&req);

    /* console: the ports, as run's --device virtio-console takes them (--port likewise). */
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--type", "console", "--socket", "/s",
                           "--port", "stdio,name=org.a,console", "--device",
                           "virtio-serial,file=/tmp/o,append"),
                     0);
    assert_int_equal(req.console_port_count, 2);
    assert_int_equal(req.console_port[0].kind, CLI_SERIAL_STDIO);
    assert_string_equal(req.console_port[0].name, "org.a");
    assert_true(req.console_port[0].console);
    assert_int_equal(req.console_port[1].kind, CLI_SERIAL_FILE);
    assert_string_equal(req.console_port[1].path, "/tmp/o");
    assert_true(req.console_port[1].append);
    vmk_config *cfg = NULL;
    assert_int_equal(cli_build_serve_config(&req, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_console_device_count(cfg), 1);
    assert_int_equal(vmk_config_serial_port_count(cfg), 0);
    assert_null(vmk_config_get_boot_loader(cfg));
    const vmk_console_device *con = vmk_config_get_console_device(cfg, 0);
    assert_int_equal(vmk_virtio_console_device_port_count(con), 2);
    assert_string_equal(vmk_virtio_console_device_get_port_name(con, 0), "org.a");
    vmk_config_free(cfg);
    cli_request_free(&req);

    const char *u = cli_usage();
    assert_non_null(strstr(u, "vmkit serve-device --socket PATH --device SPEC"));
    assert_non_null(strstr(u, "--type rng|blk|console|net|vsock|fs, --disk PATH[,keys], --port"));
    assert_non_null(strstr(u, "--cid N --uds-path PATH"));
}

static void test_serve_device_errors(void **state)
{
    EXPECT_USAGE("--type console: missing --port", NULL, "serve-device", "--type=console",
                 "--socket", "/s");
    EXPECT_USAGE("--type rng", "the device given is console", "serve-device", "--type=rng",
                 "--socket", "/s", "--port", "stdio");
    EXPECT_USAGE("--port virtio-console", "needs stdio, file=PATH, pty or socket=PATH",
                 "serve-device", "--type=console", "--socket", "/s", "--port", "name=x");
    EXPECT_USAGE("--port virtio-console", "only one port can be the console", "serve-device",
                 "--type=console", "--socket", "/s", "--port", "pty,console", "--port",
                 "stdio,console");
    EXPECT_USAGE("--port: missing value", NULL, "serve-device", "--type=console", "--socket", "/s",
                 "--port");
    EXPECT_USAGE("--type", "'gpu' is not a device type", "serve-device", "--type", "gpu",
                 "--socket", "/s");
    EXPECT_USAGE("--net", "unknown key", "serve-device", "--type", "net", "--socket", "/s", "--net",
                 "bogus");
    EXPECT_USAGE("one device at a time", NULL, "serve-device", "--socket", "/s", "--device",
                 "virtio-net", "--device", "virtio-net");
    EXPECT_USAGE("missing --device", NULL, "serve-device", "--socket", "/s");
    EXPECT_USAGE("missing --socket", NULL, "serve-device", "--type", "rng");
    EXPECT_USAGE("--socket", "empty path", "serve-device", "--type", "rng", "--socket", "");
    EXPECT_USAGE("--socket: missing value", NULL, "serve-device", "--type", "rng", "--socket");
    EXPECT_USAGE("--type: missing value", NULL, "serve-device", "--type");
    EXPECT_USAGE("--rate", "'fast' is not a number", "serve-device", "--type", "rng", "--socket",
                 "/s", "--rate", "fast");
    EXPECT_USAGE("--rate", "below the minimum of 1", "serve-device", "--type", "rng", "--socket",
                 "/s", "--rate", "0");
    EXPECT_USAGE("--rate", "above the maximum of 4294967296", "serve-device", "--type", "rng",
                 "--socket", "/s", "--rate", "4294967297");
    EXPECT_USAGE("--device virtio-rng: rate", "above the maximum of 4294967296", "serve-device",
                 "--device", "virtio-rng,rate=4294967297", "--socket", "/s");
    EXPECT_USAGE("--rate", "below the minimum", "serve-device", "--type", "rng", "--socket", "/s",
                 "--rate", "-5");
    EXPECT_USAGE("unknown option '--cpus'", NULL, "serve-device", "--type", "rng", "--cpus", "2");
    EXPECT_USAGE("unexpected argument 'rng'", NULL, "serve-device", "rng");
    EXPECT_USAGE("one device at a time", NULL, "serve-device", "--socket", "/s", "--device",
                 "virtio-rng", "--device", "virtio-blk,path=/a");
    EXPECT_USAGE("--device serial", "serves virtio devices", "serve-device", "--socket", "/s",
                 "--device", "serial,stdio");
    /* Console port names: one rule for run and serve-device (the library judges them). */
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/s", "--port",
                           "file=/tmp/a,name=x", "--port", "file=/tmp/b,name=x"),
                     0);
    vmk_config *cfg = NULL;
    assert_int_equal(cli_build_serve_config(&req, &cfg, errbuf, sizeof(errbuf)), 0);
    vmk_error *verr = NULL;
    assert_null(vmk_vhost_user_server_new("/tmp/vmkit-test-cli-never.sock", cfg, &verr));
    assert_int_equal(vmk_error_code(verr), VMK_ERR_INVALID_CONFIG);
    assert_non_null(strstr(vmk_error_message(verr), "console port 2: name \"x\" is already used "
                                                    "by console port 1"));
    vmk_error_free(verr);
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* A failed parse frees the socket path it had already taken. */
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/s", "--type", "gpu"),
                     CLI_EXIT_USAGE);
    assert_null(req.socket);
    cli_request_free(&req);
}

static void test_serve_device_blk(void **state)
{
    struct cli_request req;
    assert_int_equal(
        PARSE(&req, errbuf, "serve-device", "--type", "blk", "--socket", "/s", "--disk", "/d.img"),
        0);
    assert_int_equal(req.command, CLI_CMD_SERVE_DEVICE);
    assert_string_equal(req.socket, "/s");
    assert_int_equal(req.disk_count, 1);
    assert_string_equal(req.disk[0].path, "/d.img");
    assert_false(req.disk[0].read_only);
    assert_int_equal(req.disk[0].caching, VMK_DISK_CACHING_AUTOMATIC);
    assert_int_equal(req.disk[0].sync, VMK_DISK_SYNC_FULL);
    assert_null(req.disk[0].id);
    assert_int_equal(req.disk[0].queues, 0);
    cli_request_free(&req);

    assert_int_equal(PARSE(&req, errbuf, "serve-device",
                           "--disk=/x/a=b.img,readonly,cache=uncached,"
                           "sync=none,id=disk-7",
                           "--queues=4", "--socket", "/s", "--type=blk"),
                     0);
    assert_string_equal(req.disk[0].path, "/x/a=b.img"); /* '=' is fine in a path */
    assert_true(req.disk[0].read_only);
    assert_int_equal(req.disk[0].caching, VMK_DISK_CACHING_UNCACHED);
    assert_int_equal(req.disk[0].sync, VMK_DISK_SYNC_NONE);
    assert_string_equal(req.disk[0].id, "disk-7");
    assert_int_equal(req.disk[0].queues, 4);
    cli_request_free(&req);

    /* run's spelling: path= in --disk, or the whole --device spec. */
    const char *spellings[][4] = {
        { "--disk", "path=/x.img,readonly", NULL, NULL },
        { "--device", "virtio-blk,path=/x.img,readonly", NULL, NULL },
        { "--device", "virtio-blk,readonly,path=/x.img", NULL, NULL },
    };
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        assert_int_equal(
            PARSE(&req, errbuf, "serve-device", "--socket", "/s", spellings[i][0], spellings[i][1]),
            0);
        assert_int_equal(req.disk_count, 1);
        assert_string_equal(req.disk[0].path, "/x.img");
        assert_true(req.disk[0].read_only);
        cli_request_free(&req);
    }

    /* A quoted path may hold commas; the most queues fit. */
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--type", "blk", "--socket", "/s",
                           "--disk", "\"/a,b.img\",cache=cached,sync=fsync,id=12345678901234567890",
                           "--queues", "16"),
                     0);
    assert_string_equal(req.disk[0].path, "/a,b.img");
    assert_int_equal(req.disk[0].caching, VMK_DISK_CACHING_CACHED);
    assert_int_equal(req.disk[0].sync, VMK_DISK_SYNC_FSYNC);
    assert_string_equal(req.disk[0].id, "12345678901234567890");
    assert_int_equal(req.disk[0].queues, vmk_virtio_block_device_max_queue_count());
    vmk_config *cfg = NULL;
    assert_int_equal(cli_build_serve_config(&req, &cfg, errbuf, sizeof(errbuf)), 0);
    const vmk_storage_device *d = vmk_config_get_storage_device(cfg, 0);
    assert_int_equal(vmk_virtio_block_device_get_queue_count(d), 16);
    assert_string_equal(vmk_virtio_block_device_get_identifier(d), "12345678901234567890");
    vmk_config_free(cfg);
    cli_request_free(&req);

    const char *u = cli_usage();
    assert_non_null(strstr(u, "queues=N"));
    assert_non_null(strstr(u, "num-queues=N"));
}

static void test_serve_device_blk_errors(void **state)
{
#define BLK "serve-device", "--type", "blk", "--socket", "/s"
    EXPECT_USAGE("serve-device --type blk: missing --disk", NULL, BLK);
    EXPECT_USAGE("--disk: missing value", NULL, BLK, "--disk");
    EXPECT_USAGE("--disk", "empty value", BLK, "--disk", "");
    EXPECT_USAGE("--disk virtio-blk", "path= needs a value", BLK, "--disk", ",readonly");
    EXPECT_USAGE("--disk virtio-blk", "path= needs a value", BLK, "--disk", "\"\"");
    EXPECT_USAGE("--disk virtio-blk", "missing closing quote", BLK, "--disk", "\"/a,b.img");
    EXPECT_USAGE("one device at a time", NULL, BLK, "--disk", "/a", "--disk", "/b");
    EXPECT_USAGE("--disk virtio-blk", "readonly takes no value (got 'yes')", BLK, "--disk",
                 "/a,readonly=yes");
    EXPECT_USAGE("--disk virtio-blk", "readonly given twice", BLK, "--disk",
                 "/a,readonly,readonly");
    EXPECT_USAGE("--disk virtio-blk", "cache 'fast' is not one of auto, cached, uncached", BLK,
                 "--disk", "/a,cache=fast");
    EXPECT_USAGE("--disk virtio-blk", "sync needs a value", BLK, "--disk", "/a,sync");
    EXPECT_USAGE("--disk virtio-blk", "sync given twice", BLK, "--disk", "/a,sync=none,sync=full");
    EXPECT_USAGE("--disk virtio-blk", "id= needs a value", BLK, "--disk", "/a,id=");
    EXPECT_USAGE("--disk virtio-blk", "id given twice", BLK, "--disk", "/a,id=x,id=y");
    EXPECT_USAGE("--disk virtio-blk", "path given twice", BLK, "--disk", "/a,path=/b");
    EXPECT_USAGE("--disk virtio-blk", "unknown key 'size'", BLK, "--disk", "/a,size=10");
    EXPECT_USAGE("--disk virtio-blk", "empty option", BLK, "--disk", "/a,");
    EXPECT_USAGE("--queues", "below the minimum of 1", BLK, "--disk", "/a", "--queues", "0");
    EXPECT_USAGE("--queues", "above the maximum of 16", BLK, "--disk", "/a", "--queues", "17");
    EXPECT_USAGE("--device virtio-blk: queues", "above the maximum of 16", "serve-device",
                 "--socket", "/s", "--device", "virtio-blk,path=/a,queues=17");
    EXPECT_USAGE("--queues", "'two' is not a number", BLK, "--disk", "/a", "--queues", "two");
    EXPECT_USAGE("--queues: missing value", NULL, BLK, "--disk", "/a", "--queues");
    EXPECT_USAGE("--rate: only for the rng device", NULL, BLK, "--disk", "/a", "--rate", "5");
    EXPECT_USAGE("--type", "given twice", BLK, "--type", "rng");
    EXPECT_USAGE("--type rng", "the device given is blk", "serve-device", "--type", "rng",
                 "--socket", "/s", "--disk", "/a");
    EXPECT_USAGE("--queues: only for the blk device", NULL, "serve-device", "--type", "rng",
                 "--socket", "/s", "--queues", "2");
#undef BLK

    /* A failed parse frees the disk it had already taken. */
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--disk", "/a,id=x", "--type", "net"),
                     CLI_EXIT_USAGE);
    assert_int_equal(req.disk_count, 0);
    assert_null(req.disk);
    cli_request_free(&req);
}

/* ---- --device virtio-fs, rosetta ---- */

static void test_device_virtio_fs(void **state)
{
    struct tmp *t = *state;
    char share[128], other[128], file[128], spec[512], spec2[512];
    snprintf(share, sizeof(share), "%s/share", t->root);
    snprintf(other, sizeof(other), "%s/other", t->root);
    snprintf(file, sizeof(file), "%s/file", t->root);
    mkdirs(share);
    mkdirs(other);
    touch(t->root, "file");

    /* vfkit's single share, with every key. */
    struct cli_request req;
    snprintf(spec, sizeof(spec),
             "virtio-fs,sharedDir=%s,mountTag=data,readonly,cache=never,ownership=squash,"
             "uid=1000,gid=100,queues=4",
             share);
    snprintf(spec2, sizeof(spec2), "virtio-fs,mountTag=multi,dir=a:%s,dir=b:%s:ro", share, other);
    assert_int_equal(
        PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", spec, "--device", spec2), 0);
    assert_int_equal(req.fs_count, 2);
    const struct cli_fs *f = &req.fs[0];
    assert_string_equal(f->tag, "data");
    assert_string_equal(f->path, share);
    assert_true(f->read_only);
    assert_false(f->translator);
    assert_int_equal(f->dir_count, 0);
    assert_int_equal(f->cache, VMK_FILE_SYSTEM_CACHE_NEVER);
    assert_int_equal(f->ownership, VMK_FILE_SYSTEM_OWNERSHIP_SQUASH);
    assert_int_equal(f->uid, 1000);
    assert_int_equal(f->gid, 100);
    assert_int_equal(f->queues, 4);
    f = &req.fs[1];
    assert_string_equal(f->tag, "multi");
    assert_null(f->path);
    assert_int_equal(f->dir_count, 2);
    assert_string_equal(f->dir[0].name, "a");
    assert_string_equal(f->dir[0].path, share);
    assert_false(f->dir[0].read_only);
    assert_string_equal(f->dir[1].name, "b");
    assert_string_equal(f->dir[1].path, other);
    assert_true(f->dir[1].read_only);
    assert_int_equal(f->cache, VMK_FILE_SYSTEM_CACHE_AUTO);
    assert_int_equal(f->ownership, VMK_FILE_SYSTEM_OWNERSHIP_IDENTITY);
    assert_int_equal(f->queues, 0);

    /* The config: what the keys said, and it validates. */
    vmk_config *cfg = NULL;
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_directory_sharing_device_count(cfg), 2);
    const vmk_directory_sharing_device *d = vmk_config_get_directory_sharing_device(cfg, 0);
    assert_string_equal(vmk_virtio_file_system_device_get_tag(d), "data");
    assert_int_equal(vmk_virtio_file_system_device_get_cache_mode(d), VMK_FILE_SYSTEM_CACHE_NEVER);
    uint32_t uid = 0, gid = 0;
    assert_int_equal(vmk_virtio_file_system_device_get_ownership(d, &uid, &gid),
                     VMK_FILE_SYSTEM_OWNERSHIP_SQUASH);
    assert_int_equal(uid, 1000);
    assert_int_equal(gid, 100);
    assert_int_equal(vmk_virtio_file_system_device_get_request_queue_count(d), 4);
    const vmk_directory_share *sh = vmk_virtio_file_system_device_get_share(d);
    assert_int_equal(vmk_directory_share_get_kind(sh), VMK_DIRECTORY_SHARE_SINGLE);
    const vmk_shared_directory *sd = vmk_directory_share_get_directory(sh, 0, NULL);
    assert_string_equal(vmk_shared_directory_get_path(sd), share);
    assert_true(vmk_shared_directory_is_read_only(sd));
    d = vmk_config_get_directory_sharing_device(cfg, 1);
    assert_int_equal(vmk_virtio_file_system_device_get_request_queue_count(d), 1);
    sh = vmk_virtio_file_system_device_get_share(d);
    assert_int_equal(vmk_directory_share_get_kind(sh), VMK_DIRECTORY_SHARE_MULTIPLE);
    assert_int_equal(vmk_directory_share_directory_count(sh), 2);
    const char *name = NULL;
    sd = vmk_directory_share_get_directory(sh, 1, &name);
    assert_string_equal(name, "b");
    assert_true(vmk_shared_directory_is_read_only(sd));
    /* An explicit kernel's command line is the user's: no vmkit.mount there. */
    assert_null(vmk_linux_boot_loader_get_command_line(vmk_config_get_boot_loader(cfg)));
    vmk_error *verr = NULL;
    vmk_result r = vmk_config_validate(cfg, &verr);
    /* The kernel /k is missing; nothing else may be wrong. */
    assert_int_equal(r, VMK_ERR_INVALID_CONFIG);
    assert_null(strstr(vmk_error_message(verr), "directory sharing"));
    vmk_error_free(verr);
    vmk_config_free(cfg);
    cli_request_free(&req);
    assert_null(req.fs);

    /* uid= and gid= alone set the squash ids, not squash itself. */
    snprintf(spec, sizeof(spec), "virtio-fs,sharedDir=%s,mountTag=ids,uid=5", share);
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", spec), 0);
    assert_int_equal(req.fs[0].ownership, VMK_FILE_SYSTEM_OWNERSHIP_IDENTITY);
    assert_int_equal(req.fs[0].uid, 5);
    assert_int_equal(req.fs[0].gid, 0);
    cli_request_free(&req);

    /* The default guest is told the tags to mount. */
    setenv("VMKIT_GUEST_DIR", t->root, 1);
    touch(t->root, "vmlinuz");
    touch(t->root, "initramfs.img");
    snprintf(spec, sizeof(spec), "virtio-fs,sharedDir=%s,mountTag=one", share);
    snprintf(spec2, sizeof(spec2), "virtio-fs,sharedDir=%s,mountTag=" VMK_VIRTIO_FS_AUTOMOUNT_TAG,
             other);
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", spec, "--device", spec2), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(vmk_linux_boot_loader_get_command_line(vmk_config_get_boot_loader(cfg)),
                        CLI_DEFAULT_GUEST_CMDLINE " vmkit.mount=one," VMK_VIRTIO_FS_AUTOMOUNT_TAG);
    vmk_config_free(cfg);
    cli_request_free(&req);
    /* A translator share is named apart: the guest mounts it and registers its interpreters. */
    if (vmk_linux_translator_availability() == VMK_TRANSLATOR_INSTALLED) {
        assert_int_equal(
            PARSE(&req, errbuf, "run", "--device", "rosetta,mountTag=tr", "--device", spec), 0);
        assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
        assert_string_equal(vmk_linux_boot_loader_get_command_line(vmk_config_get_boot_loader(cfg)),
                            CLI_DEFAULT_GUEST_CMDLINE " vmkit.mount=one vmkit.translator=tr");
        vmk_config_free(cfg);
        cli_request_free(&req);
    }
    assert_int_equal(PARSE(&req, errbuf, "run"), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(vmk_linux_boot_loader_get_command_line(vmk_config_get_boot_loader(cfg)),
                        CLI_DEFAULT_GUEST_CMDLINE);
    vmk_config_free(cfg);
    cli_request_free(&req);
    /* --cmdline is the user's, whole. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--cmdline", "quiet", "--device", spec), 0);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(vmk_linux_boot_loader_get_command_line(vmk_config_get_boot_loader(cfg)),
                        "quiet");
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* rosetta: a translator share when qemu-user-static is there, an error (1) naming it when
     * not, unless ignoreIfMissing. */
    bool installed = vmk_linux_translator_availability() == VMK_TRANSLATOR_INSTALLED;
    assert_int_equal(
        PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", "rosetta,mountTag=rosetta"), 0);
    assert_int_equal(req.fs_count, 1);
    assert_true(req.fs[0].translator);
    assert_false(req.fs[0].ignore_if_missing);
    assert_string_equal(req.fs[0].tag, "rosetta");
    int rc = cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf));
    if (installed) {
        assert_int_equal(rc, 0);
        d = vmk_config_get_directory_sharing_device(cfg, 0);
        assert_int_equal(vmk_directory_share_get_kind(vmk_virtio_file_system_device_get_share(d)),
                         VMK_DIRECTORY_SHARE_LINUX_TRANSLATOR);
        vmk_config_free(cfg);
    } else {
        assert_int_equal(rc, CLI_EXIT_ERROR);
        assert_null(cfg);
        assert_non_null(strstr(errbuf, "rosetta"));
        assert_non_null(strstr(errbuf, "qemu-user-static"));
    }
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "rosetta,mountTag=rosetta,ignoreIfMissing"),
                     0);
    assert_true(req.fs[0].ignore_if_missing);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_directory_sharing_device_count(cfg), installed ? 1 : 0);
    vmk_config_free(cfg);
    cli_request_free(&req);
    unsetenv("VMKIT_GUEST_DIR");
}

static void test_device_virtio_fs_errors(void **state)
{
    struct tmp *t = *state;
    char share[128], spec[512], spec2[512], t36[40];
    snprintf(share, sizeof(share), "%s/share", t->root);
    mkdirs(share);
    touch(t->root, "file");
    memset(t36, 'x', 36);
    t36[36] = '\0';
#define FS(...) (snprintf(spec, sizeof(spec), __VA_ARGS__), spec)
    /* One device, its %s the shared directory: what the usage error says. */
    static const struct {
        const char *spec, *where, *what;
    } bad[] = {
        { "virtio-fs,sharedDir=%s", "--device virtio-fs", "needs mountTag=TAG" },
        { "virtio-fs,sharedDir=%s,mountTag=\"\"", "--device virtio-fs",
          "mountTag= needs a value (mountTag=TAG)" },
        { "virtio-fs,sharedDir=%s,mountTag=", "--device virtio-fs", "mountTag= needs a value" },
        { "virtio-fs,sharedDir=%s,mountTag=a\tb", "--device virtio-fs: mountTag", "byte 0x09" },
        { "virtio-fs,sharedDir=%s,mountTag=\"a b\"", "--device virtio-fs: mountTag",
          "holds a space, comma or quote" },
        { "virtio-fs,sharedDir=%s,mountTag=a,mountTag=b", "--device virtio-fs",
          "mountTag given twice" },
        { "virtio-fs,mountTag=a,dir=:%s", "--device virtio-fs", "name is empty" },
        { "virtio-fs,mountTag=a,dir=..:%s", "--device virtio-fs", "\"..\" is not allowed" },
        { "virtio-fs,path=%s,mountTag=a", "--device virtio-fs", "unknown key 'path'" },
        { "virtio-fs,sharedDir=%s,mountTag=a,cache=sometimes", "--device virtio-fs",
          "cache 'sometimes' is not one of auto, never, always" },
        { "virtio-fs,sharedDir=%s,mountTag=a,ownership=root", "--device virtio-fs",
          "ownership 'root' is not one of identity, squash" },
        { "virtio-fs,sharedDir=%s,mountTag=a,uid=me", "--device virtio-fs: uid",
          "'me' is not a number" },
        { "virtio-fs,sharedDir=%s,mountTag=a,gid=4294967295", "--device virtio-fs: gid",
          "above the maximum of 4294967294" },
        { "virtio-fs,sharedDir=%s,mountTag=a,queues=9", "--device virtio-fs: queues",
          "above the maximum of 8" },
        { "virtio-fs,sharedDir=%s,mountTag=a,readonly=yes", "--device virtio-fs",
          "readonly takes no value" },
        { "rosetta,mountTag=r,sharedDir=%s", "--device rosetta", "unknown key 'sharedDir'" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        EXPECT_USAGE(bad[i].where, bad[i].what, "run", "--device", FS(bad[i].spec, share));
    EXPECT_USAGE("--device virtio-fs", "needs sharedDir=PATH (or dir=NAME:PATH[:ro])", "run",
                 "--device", "virtio-fs,mountTag=a");
    EXPECT_USAGE("--device virtio-fs: mountTag", "36 bytes, at most 35", "run", "--device",
                 FS("virtio-fs,sharedDir=%s,mountTag=%s", share, t36));
    snprintf(spec2, sizeof(spec2), "virtio-fs,sharedDir=%s,mountTag=same", share);
    EXPECT_USAGE("--device virtio-fs",
                 "mountTag \"same\" is already used by directory sharing device 1", "run",
                 "--device", spec2, "--device", spec2);
    EXPECT_USAGE("--device rosetta", "mountTag \"same\" is already used", "run", "--device", spec2,
                 "--device", "rosetta,mountTag=same");
    EXPECT_USAGE("--device virtio-fs: sharedDir", "No such file or directory", "run", "--device",
                 FS("virtio-fs,sharedDir=%s/none,mountTag=a", t->root));
    EXPECT_USAGE("--device virtio-fs: sharedDir", "is not a directory", "run", "--device",
                 FS("virtio-fs,sharedDir=%s/file,mountTag=a", t->root));
    EXPECT_USAGE("--device virtio-fs", "sharedDir and dir= exclude each other", "run", "--device",
                 FS("virtio-fs,sharedDir=%s,mountTag=a,dir=x:%s", share, share));
    EXPECT_USAGE("--device virtio-fs", "dir 'x' is not NAME:PATH[:ro]", "run", "--device",
                 "virtio-fs,mountTag=a,dir=x");
    EXPECT_USAGE("--device virtio-fs", "dir= needs a value", "run", "--device",
                 "virtio-fs,mountTag=a,dir");
    EXPECT_USAGE("--device virtio-fs", "\"x\" is already used by directory 1", "run", "--device",
                 FS("virtio-fs,mountTag=a,dir=x:%s,dir=x:%s:ro", share, share));
    char longname[300];
    memset(longname, 'n', 256);
    longname[256] = '\0';
    EXPECT_USAGE("--device virtio-fs", "256 bytes, at most 255", "run", "--device",
                 FS("virtio-fs,mountTag=a,dir=%s:%s", longname, share));
    EXPECT_USAGE("--device virtio-fs: dir", "is not a directory", "run", "--device",
                 FS("virtio-fs,mountTag=a,dir=x:%s/file", t->root));
    EXPECT_USAGE("--device rosetta", "needs mountTag=TAG", "run", "--device", "rosetta");
    /* At most 8 devices. */
    const char *args[2 + 2 * 9 + 1] = { "vmkit", "run" };
    char specs[9][300];
    for (int i = 0; i < 9; i++) {
        snprintf(specs[i], sizeof(specs[i]), "virtio-fs,sharedDir=%s,mountTag=t%d", share, i);
        args[2 + 2 * i] = "--device";
        args[3 + 2 * i] = specs[i];
    }
    args[2 + 2 * 9] = NULL;
    struct cli_request req;
    assert_int_equal(parse_args(&req, errbuf, args), CLI_EXIT_USAGE);
    assert_non_null(strstr(errbuf, "--device virtio-fs: at most 8 directory sharing devices"));
    assert_null(req.fs);
    cli_request_free(&req);
    args[2 + 2 * 8] = NULL;
    assert_int_equal(parse_args(&req, errbuf, args), 0);
    assert_int_equal(req.fs_count, 8);
    cli_request_free(&req);
#undef FS
}

static void test_serve_device_fs(void **state)
{
    struct tmp *t = *state;
    char share[128], spec[512];
    snprintf(share, sizeof(share), "%s/share", t->root);
    mkdirs(share);
    touch(t->root, "file");

    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--type", "fs", "--socket", "/tmp/s",
                           "--shared-dir", share),
                     0);
    assert_int_equal(req.command, CLI_CMD_SERVE_DEVICE);
    assert_int_equal(req.fs_count, 1);
    assert_string_equal(req.fs[0].path, share);
    assert_string_equal(req.fs[0].tag, CLI_SERVE_FS_TAG);
    assert_false(req.fs[0].read_only);
    assert_int_equal(req.fs[0].cache, VMK_FILE_SYSTEM_CACHE_AUTO);
    assert_int_equal(req.fs_sandbox, CLI_FS_SANDBOX_AUTO);
    vmk_config *cfg = NULL;
    assert_int_equal(cli_build_serve_config(&req, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_directory_sharing_device_count(cfg), 1);
    assert_null(vmk_config_get_boot_loader(cfg));
    assert_int_equal(vmk_config_validate(cfg, NULL), VMK_ERR_INVALID_CONFIG); /* no kernel */
    vmk_config_free(cfg);
    cli_request_free(&req);

    snprintf(spec, sizeof(spec), "%s,readonly", share);
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/tmp/s", "--tag", "myfs",
                           "--cache", "never", "--sandbox", "namespace", "--shared-dir", spec,
                           "--type=fs"),
                     0);
    assert_int_equal(req.fs_count, 1);
    assert_string_equal(req.fs[0].path, share);
    assert_true(req.fs[0].read_only);
    assert_string_equal(req.fs[0].tag, "myfs");
    assert_int_equal(req.fs[0].cache, VMK_FILE_SYSTEM_CACHE_NEVER);
    assert_int_equal(req.fs_sandbox, CLI_FS_SANDBOX_NAMESPACE);
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/tmp/s", "--sandbox",
                           "chroot", "--shared-dir", share),
                     0);
    assert_int_equal(req.fs_sandbox, CLI_FS_SANDBOX_CHROOT);
    cli_request_free(&req);
    snprintf(spec, sizeof(spec), "%s,mountTag=own,cache=always", share);
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/tmp/s", "--sandbox", "none",
                           "--shared-dir", spec),
                     0);
    assert_string_equal(req.fs[0].tag, "own");
    assert_int_equal(req.fs[0].cache, VMK_FILE_SYSTEM_CACHE_ALWAYS);
    assert_int_equal(req.fs_sandbox, CLI_FS_SANDBOX_NONE);
    cli_request_free(&req);
    /* run's spelling serves too. */
    snprintf(spec, sizeof(spec), "virtio-fs,mountTag=m,dir=a:%s", share);
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/tmp/s", "--device", spec),
                     0);
    assert_int_equal(req.fs_count, 1);
    assert_int_equal(req.fs[0].dir_count, 1);
    cli_request_free(&req);

    EXPECT_USAGE("serve-device --type fs: missing --shared-dir PATH", NULL, "serve-device",
                 "--socket", "/s", "--type", "fs");
    EXPECT_USAGE("--shared-dir virtio-fs: sharedDir", "is not a directory", "serve-device",
                 "--socket", "/s", "--type", "fs", "--shared-dir", "/dev/null");
    EXPECT_USAGE("--shared-dir", "empty value", "serve-device", "--socket", "/s", "--shared-dir",
                 "");
    EXPECT_USAGE("--shared-dir: given twice", NULL, "serve-device", "--socket", "/s",
                 "--shared-dir", share, "--shared-dir", share);
    EXPECT_USAGE("--cache", "'sometimes' is not one of auto, never, always", "serve-device",
                 "--socket", "/s", "--shared-dir", share, "--cache", "sometimes");
    EXPECT_USAGE("--tag", "tag is empty", "serve-device", "--socket", "/s", "--shared-dir", share,
                 "--tag", "");
    EXPECT_USAGE("--tag", "at most 35", "serve-device", "--socket", "/s", "--shared-dir", share,
                 "--tag", "0123456789012345678901234567890123456789");
    EXPECT_USAGE("--tag: goes with --shared-dir", NULL, "serve-device", "--socket", "/s", "--type",
                 "rng", "--tag", "x");
    EXPECT_USAGE("--sandbox", "'jail' is not namespace, chroot or none", "serve-device", "--socket",
                 "/s", "--shared-dir", share, "--sandbox", "jail");
    EXPECT_USAGE("--sandbox: only for the fs device", NULL, "serve-device", "--socket", "/s",
                 "--type", "rng", "--sandbox", "none");
    EXPECT_USAGE("--type fs: but the device given is rng", NULL, "serve-device", "--socket", "/s",
                 "--type", "fs", "--device", "virtio-rng");
    EXPECT_USAGE("one device at a time", NULL, "serve-device", "--socket", "/s", "--shared-dir",
                 share, "--device", "virtio-rng");
    snprintf(spec, sizeof(spec), "virtio-fs,mountTag=m,sharedDir=%s", share);
    EXPECT_USAGE("one device at a time", NULL, "serve-device", "--socket", "/s", "--shared-dir",
                 share, "--device", spec);
    snprintf(spec, sizeof(spec), "%s,mountTag=b", share);
    EXPECT_USAGE("--shared-dir virtio-fs", "mountTag given twice", "serve-device", "--socket", "/s",
                 "--tag", "a", "--shared-dir", spec);
    assert_int_equal(PARSE(&req, errbuf, "serve-device", "--socket", "/s", "--type", "gpu",
                           "--shared-dir", share),
                     CLI_EXIT_USAGE);
    assert_null(req.fs);
    cli_request_free(&req);
}

/* ---- --device virtio-gpu, virtio-input; --gui, --vnc, --web, --screenshot-on-exit ---- */

/* Parses args with stderr going to a file, and returns what was written there (for free()). */
static char *parse_capturing_stderr(struct cli_request *req, int *rc, const char **args)
{
    char path[] = "/tmp/test_cli_stderr.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    *rc = parse_args(req, errbuf, args);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    char *text = calloc(1, 4096);
    assert_non_null(text);
    assert_true(pread(fd, text, 4095, 0) >= 0);
    close(fd);
    return text;
}

/* --device usb-keyboard: no keys, first among the keyboards, sharing the USB ports with the
 * drives; --gui adds no virtio keyboard beside it. */
static void test_device_usb_keyboard(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-input,keyboard", "--device", "usb-keyboard"),
                     0);
    assert_int_equal(req.usb_keyboard_count, 1);
    assert_int_equal(req.keyboard_count, 1);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_keyboard_count(cfg), 2);
    assert_int_equal(vmk_keyboard_get_kind(vmk_config_get_keyboard(cfg, 0)), VMK_KEYBOARD_USB);
    assert_int_equal(vmk_keyboard_get_kind(vmk_config_get_keyboard(cfg, 1)), VMK_KEYBOARD_VIRTIO);
    vmk_config_free(cfg);
    cli_request_free(&req);

    int rc;
    char *said =
        parse_capturing_stderr(&req, &rc,
                               (const char *[]){ "vmkit", "run", "--device", "virtio-gpu",
                                                 "--device", "usb-keyboard", "--gui", NULL });
    assert_int_equal(rc, 0);
    assert_int_equal(req.usb_keyboard_count, 1);
    assert_int_equal(req.keyboard_count, 0);
    assert_int_equal(req.pointing_count, 1);
    assert_string_equal(said, "vmkit: --gui: adding a virtio pointing device\n");
    free(said);
    cli_request_free(&req);

    EXPECT_USAGE("--device usb-keyboard", "takes no keys (got 'layout=us')", "run", "--device",
                 "usb-keyboard,layout=us");
    EXPECT_USAGE("--device usb-keyboard", "empty option", "run", "--device", "usb-keyboard,");
    EXPECT_USAGE("--device usb-keyboard", "at most 4 keyboards", "run", "--device",
                 "virtio-input,keyboard", "--device", "usb-keyboard", "--device", "usb-keyboard",
                 "--device", "virtio-input,keyboard", "--device", "usb-keyboard");
    EXPECT_USAGE("--device virtio-input", "at most 4 keyboards", "run", "--device", "usb-keyboard",
                 "--device", "usb-keyboard", "--device", "usb-keyboard", "--device", "usb-keyboard",
                 "--device", "virtio-input,keyboard");
    EXPECT_USAGE("--device usb-keyboard", "at most 4 USB devices", "run", "--device",
                 "usb-mass-storage,path=/dev/null", "--device", "usb-mass-storage,path=/dev/null",
                 "--device", "usb-mass-storage,path=/dev/null", "--device",
                 "usb-mass-storage,path=/dev/null", "--device", "usb-keyboard");
    EXPECT_USAGE("--device usb-mass-storage", "at most 4 USB devices", "run", "--device",
                 "usb-keyboard", "--device", "usb-keyboard", "--device",
                 "usb-mass-storage,path=/dev/null", "--device", "usb-mass-storage,path=/dev/null",
                 "--device", "usb-mass-storage,path=/dev/null");
    EXPECT_USAGE("--device usb-keyboard", "serve-device cannot serve it", "serve-device",
                 "--socket", "/tmp/s", "--device", "usb-keyboard");
}

static void test_device_virtio_gpu(void **state)
{
    struct cli_request req;
    vmk_config *cfg = NULL;
    uint32_t w = 0, h = 0;
    /* Nothing of the display unless asked. */
    assert_int_equal(PARSE(&req, errbuf, "run"), 0);
    assert_false(req.gpu);
    assert_int_equal(req.gpu_scanout_count, 0);
    assert_int_equal(req.keyboard_count + req.pointing_count, 0);
    assert_false(req.gui);
    assert_null(req.vnc);
    assert_null(req.vnc_password_file);
    assert_false(req.web);
    assert_null(req.screenshot_on_exit);
    cli_request_free(&req);

    /* One device, one scanout of the default size. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device", "virtio-gpu"), 0);
    assert_true(req.gpu);
    assert_int_equal(req.gpu_scanout_count, 1);
    assert_int_equal(req.gpu_scanout[0].width, 1280);
    assert_int_equal(req.gpu_scanout[0].height, 800);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_graphics_device_count(cfg), 1);
    const vmk_graphics_device *g = vmk_config_get_graphics_device(cfg, 0);
    assert_int_equal(vmk_graphics_device_scanout_count(g), 1);
    assert_int_equal(vmk_graphics_device_get_scanout(g, 0, &w, &h), VMK_OK);
    assert_int_equal(w, 1280);
    assert_int_equal(h, 800);
    assert_int_equal(vmk_config_keyboard_count(cfg), 0);
    assert_int_equal(vmk_config_pointing_device_count(cfg), 0);
    vmk_config_free(cfg);
    cli_request_free(&req);

    /* width and height size the first scanout; each scanout=WxH adds one, up to 16 in all. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-gpu,scanout=1024x768,width=1920,height=1080,scanout=1x16384"),
                     0);
    assert_int_equal(req.gpu_scanout_count, 3);
    assert_int_equal(req.gpu_scanout[0].width, 1920);
    assert_int_equal(req.gpu_scanout[0].height, 1080);
    assert_int_equal(req.gpu_scanout[1].width, 1024);
    assert_int_equal(req.gpu_scanout[1].height, 768);
    assert_int_equal(req.gpu_scanout[2].width, 1);
    assert_int_equal(req.gpu_scanout[2].height, 16384);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    g = vmk_config_get_graphics_device(cfg, 0);
    assert_int_equal(vmk_graphics_device_scanout_count(g), 3);
    assert_int_equal(vmk_graphics_device_get_scanout(g, 1, &w, &h), VMK_OK);
    assert_int_equal(w, 1024);
    assert_int_equal(h, 768);
    vmk_config_free(cfg);
    cli_request_free(&req);
    char spec[512] = "virtio-gpu,width=640,height=480";
    for (int i = 0; i < 15; i++)
        strcat(spec, ",scanout=800x600");
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", spec), 0);
    assert_int_equal(req.gpu_scanout_count, 16);
    cli_request_free(&req);

    /* Keyboards and pointing devices, vfkit's spellings. */
    assert_int_equal(PARSE(&req, errbuf, "run", "--kernel", "/k", "--device",
                           "virtio-input,keyboard", "--device", "virtio-input,pointing", "--device",
                           "virtio-input,keyboard"),
                     0);
    assert_false(req.gpu);
    assert_int_equal(req.keyboard_count, 2);
    assert_int_equal(req.pointing_count, 1);
    assert_int_equal(cli_build_config(&req, NULL, &cfg, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(vmk_config_graphics_device_count(cfg), 0);
    assert_int_equal(vmk_config_keyboard_count(cfg), 2);
    assert_int_equal(vmk_config_pointing_device_count(cfg), 1);
    vmk_config_free(cfg);
    cli_request_free(&req);
    const char *four[] = { "vmkit",    "run",
                           "--device", "virtio-input,pointing",
                           "--device", "virtio-input,pointing",
                           "--device", "virtio-input,pointing",
                           "--device", "virtio-input,pointing",
                           NULL };
    assert_int_equal(parse_args(&req, errbuf, four), 0);
    assert_int_equal(req.pointing_count, 4);
    cli_request_free(&req);

    /* --gui adds what is missing, and says so. */
    int rc;
    char *said = parse_capturing_stderr(
        &req, &rc, (const char *[]){ "vmkit", "run", "--gui", "--device", "virtio-gpu", NULL });
    assert_int_equal(rc, 0);
    assert_true(req.gui);
    assert_int_equal(req.keyboard_count, 1);
    assert_int_equal(req.pointing_count, 1);
    assert_string_equal(said, "vmkit: --gui: adding a virtio keyboard and pointing device\n");
    free(said);
    cli_request_free(&req);
    said = parse_capturing_stderr(&req, &rc,
                                  (const char *[]){ "vmkit", "run", "--device", "virtio-gpu",
                                                    "--device", "virtio-input,keyboard", "--device",
                                                    "virtio-input,keyboard", "--gui", NULL });
    assert_int_equal(rc, 0);
    assert_int_equal(req.keyboard_count, 2);
    assert_int_equal(req.pointing_count, 1);
    assert_string_equal(said, "vmkit: --gui: adding a virtio pointing device\n");
    free(said);
    cli_request_free(&req);
    said = parse_capturing_stderr(&req, &rc,
                                  (const char *[]){ "vmkit", "run", "--device", "virtio-gpu",
                                                    "--device", "virtio-input,keyboard", "--device",
                                                    "virtio-input,pointing", "--gui", NULL });
    assert_int_equal(rc, 0);
    assert_int_equal(req.keyboard_count, 1);
    assert_int_equal(req.pointing_count, 1);
    assert_string_equal(said, "");
    free(said);
    cli_request_free(&req);

    /* --vnc's value is optional: none, or auto, is the default (""). */
    static const char *const default_vnc[][4] = {
        { "--vnc", NULL },
        { "--vnc", "auto", NULL },
        { "--vnc=auto", NULL },
        { "--vnc", "--cpus", "2", NULL },
    };
    for (size_t i = 0; i < sizeof(default_vnc) / sizeof(default_vnc[0]); i++) {
        const char *args[10] = { "vmkit", "run", "--device", "virtio-gpu" };
        for (int j = 0; default_vnc[i][j]; j++)
            args[4 + j] = default_vnc[i][j];
        assert_int_equal(parse_args(&req, errbuf, args), 0);
        assert_non_null(req.vnc);
        assert_string_equal(req.vnc, "");
        assert_false(req.gui);
        cli_request_free(&req);
    }
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-gpu", "--vnc",
                           "unix:/tmp/vnc.sock", "--web", "--screenshot-on-exit", "/tmp/shot.png"),
                     0);
    assert_string_equal(req.vnc, "unix:/tmp/vnc.sock");
    assert_true(req.web);
    assert_string_equal(req.screenshot_on_exit, "/tmp/shot.png");
    assert_int_equal(req.keyboard_count, 0); /* only --gui adds input devices */
    cli_request_free(&req);
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-gpu", "--vnc=[::1]:5901",
                           "--vnc", "0.0.0.0:0"),
                     0);
    assert_string_equal(req.vnc, "0.0.0.0:0"); /* the last one wins */
    cli_request_free(&req);

    /* What --vnc's value means. */
    struct cli_vnc_address a;
    assert_int_equal(cli_parse_vnc_address("--vnc", "", &a, errbuf, sizeof(errbuf)), 0);
    assert_true(a.first_free);
    assert_false(a.unix_socket);
    assert_string_equal(a.host, CLI_VNC_DEFAULT_HOST);
    assert_int_equal(a.port, 5900);
    assert_int_equal(cli_parse_vnc_address("--vnc", "auto", &a, errbuf, sizeof(errbuf)), 0);
    assert_true(a.first_free);
    assert_int_equal(cli_parse_vnc_address("--vnc", "unix:/run/v", &a, errbuf, sizeof(errbuf)), 0);
    assert_true(a.unix_socket);
    assert_false(a.first_free);
    assert_string_equal(a.path, "/run/v");
    assert_int_equal(cli_parse_vnc_address("--vnc", "[fe80::1]:5909", &a, errbuf, sizeof(errbuf)),
                     0);
    assert_false(a.unix_socket);
    assert_string_equal(a.host, "fe80::1");
    assert_int_equal(a.port, 5909);
    assert_int_equal(
        cli_parse_vnc_address("--vnc", "vm-host.local:65535", &a, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(a.host, "vm-host.local");
    assert_int_equal(a.port, 65535);
    assert_int_equal(cli_parse_vnc_address("--vnc", "127.0.0.1:0", &a, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(a.port, 0);
    assert_false(a.first_free);
}

static void test_device_virtio_gpu_errors(void **state)
{
    struct tmp *t = *state;
    EXPECT_USAGE("--device virtio-gpu: width", "0 is below the minimum of 1", "run", "--device",
                 "virtio-gpu,width=0");
    EXPECT_USAGE("--device virtio-gpu: height", "16385 is above the maximum of 16384", "run",
                 "--device", "virtio-gpu,height=16385");
    EXPECT_USAGE("--device virtio-gpu: width", "'wide' is not a number", "run", "--device",
                 "virtio-gpu,width=wide");
    EXPECT_USAGE("--device virtio-gpu", "width given twice", "run", "--device",
                 "virtio-gpu,width=1,width=2");
    EXPECT_USAGE("--device virtio-gpu", "scanout 2 is 0 x 800 pixels; each side must be 1..16384",
                 "run", "--device", "virtio-gpu,scanout=0x800");
    EXPECT_USAGE("--device virtio-gpu", "scanout 3 is 800 x 16385 pixels", "run", "--device",
                 "virtio-gpu,scanout=800x600,scanout=800x16385");
    EXPECT_USAGE("--device virtio-gpu", "scanout '800' is not WxH", "run", "--device",
                 "virtio-gpu,scanout=800");
    EXPECT_USAGE("--device virtio-gpu", "scanout '-1x2' is not WxH", "run", "--device",
                 "virtio-gpu,scanout=-1x2");
    EXPECT_USAGE("--device virtio-gpu", "scanout '99999999999x1' is not WxH", "run", "--device",
                 "virtio-gpu,scanout=99999999999x1");
    EXPECT_USAGE("--device virtio-gpu", "scanout= needs a value (scanout=WxH)", "run", "--device",
                 "virtio-gpu,scanout");
    EXPECT_USAGE("--device virtio-gpu", "unknown key 'depth' (known: width, height, scanout)",
                 "run", "--device", "virtio-gpu,depth=32");
    EXPECT_USAGE("--device virtio-gpu", "empty option", "run", "--device", "virtio-gpu,");
    EXPECT_USAGE("--device virtio-gpu", "at most one virtio-gpu", "run", "--device", "virtio-gpu",
                 "--device", "virtio-gpu,width=640");
    char spec[512] = "virtio-gpu";
    for (int i = 0; i < 16; i++)
        strcat(spec, ",scanout=800x600");
    EXPECT_USAGE("--device virtio-gpu", "at most 16 scanouts", "run", "--device", spec);

    EXPECT_USAGE("--device virtio-input", "unknown kind 'mouse' (known: keyboard, pointing)", "run",
                 "--device", "virtio-input,mouse");
    EXPECT_USAGE("--device virtio-input", "needs a kind: keyboard or pointing", "run", "--device",
                 "virtio-input");
    EXPECT_USAGE("--device virtio-input", "keyboard and pointing cannot be combined", "run",
                 "--device", "virtio-input,keyboard,pointing");
    EXPECT_USAGE("--device virtio-input", "keyboard takes no value", "run", "--device",
                 "virtio-input,keyboard=us");
    EXPECT_USAGE("--device virtio-input", "at most 4 keyboards", "run", "--device",
                 "virtio-input,keyboard", "--device", "virtio-input,keyboard", "--device",
                 "virtio-input,keyboard", "--device", "virtio-input,keyboard", "--device",
                 "virtio-input,keyboard");
    EXPECT_USAGE("unknown device type 'virtio-mouse'", "virtio-gpu, virtio-input", "run",
                 "--device", "virtio-mouse");

    /* The display options need a display, and each other. */
    EXPECT_USAGE("--gui: needs a graphics device (--device virtio-gpu)", NULL, "run", "--gui");
    EXPECT_USAGE("--gui", "takes no value", "run", "--device", "virtio-gpu", "--gui=yes");
    EXPECT_USAGE("--vnc: needs a graphics device", NULL, "run", "--vnc");
    EXPECT_USAGE("--vnc: needs a graphics device", NULL, "run", "--device", "virtio-input,keyboard",
                 "--vnc", "unix:/tmp/v");
    EXPECT_USAGE("--screenshot-on-exit: needs a graphics device", NULL, "run",
                 "--screenshot-on-exit", "/tmp/s.png");
    EXPECT_USAGE("--screenshot-on-exit", "empty path", "run", "--device", "virtio-gpu",
                 "--screenshot-on-exit=");
    EXPECT_USAGE("--screenshot-on-exit: missing value", NULL, "run", "--screenshot-on-exit");
    EXPECT_USAGE("--web: needs --vnc", NULL, "run", "--device", "virtio-gpu", "--web");
    EXPECT_USAGE("--web: needs --vnc", NULL, "run", "--device", "virtio-gpu", "--gui", "--web");

    /* Addresses --vnc cannot use. */
    EXPECT_USAGE("--vnc: port", "65536 is above the maximum of 65535", "run", "--device",
                 "virtio-gpu", "--vnc", "127.0.0.1:65536");
    EXPECT_USAGE("--vnc: port", "'x' is not a number", "run", "--device", "virtio-gpu", "--vnc",
                 "localhost:x");
    EXPECT_USAGE("--vnc: port", "'' is not a number", "run", "--device", "virtio-gpu", "--vnc",
                 "localhost:");
    EXPECT_USAGE("--vnc", "'5900' is not unix:PATH, HOST:PORT or auto", "run", "--device",
                 "virtio-gpu", "--vnc", "5900");
    EXPECT_USAGE("--vnc", "no host before the port", "run", "--device", "virtio-gpu", "--vnc",
                 ":5900");
    EXPECT_USAGE("--vnc", "an IPv6 address goes in brackets", "run", "--device", "virtio-gpu",
                 "--vnc", "::1:5900");
    EXPECT_USAGE("--vnc", "[zz::q] is not an IPv6 address", "run", "--device", "virtio-gpu",
                 "--vnc", "[zz::q]:5900");
    EXPECT_USAGE("--vnc", "host 'a b' is neither an address nor a name", "run", "--device",
                 "virtio-gpu", "--vnc", "a b:1");
    EXPECT_USAGE("--vnc: unix: needs a socket path", NULL, "run", "--device", "virtio-gpu", "--vnc",
                 "unix:");
    char longpath[200] = "unix:/";
    memset(longpath + 6, 's', 107);
    longpath[113] = '\0';
    EXPECT_USAGE("--vnc: socket path is 108 bytes, at most 107", NULL, "run", "--device",
                 "virtio-gpu", "--vnc", longpath);
    longpath[112] = '\0';
    struct cli_request req;
    assert_int_equal(PARSE(&req, errbuf, "run", "--device", "virtio-gpu", "--vnc", longpath), 0);
    cli_request_free(&req);
    EXPECT_USAGE("--vnc: empty value", NULL, "run", "--device", "virtio-gpu", "--vnc=");

    /* The password file: there, and holding a password. */
    char path[256], empty[256], newline[256];
    snprintf(path, sizeof(path), "%s/password", t->root);
    snprintf(empty, sizeof(empty), "%s/empty", t->root);
    snprintf(newline, sizeof(newline), "%s/newline", t->root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("secret\n", f);
    fclose(f);
    f = fopen(empty, "w");
    assert_non_null(f);
    fclose(f);
    f = fopen(newline, "w");
    assert_non_null(f);
    fputs("\n", f);
    fclose(f);
    assert_int_equal(
        PARSE(&req, errbuf, "run", "--device", "virtio-gpu", "--vnc", "--vnc-password-file", path),
        0);
    assert_string_equal(req.vnc_password_file, path);
    assert_string_equal(req.vnc, "");
    cli_request_free(&req);
    EXPECT_USAGE("--vnc-password-file", "No such file or directory", "run", "--device",
                 "virtio-gpu", "--vnc", "--vnc-password-file", "/nonexistent/vmkit-password");
    EXPECT_USAGE("--vnc-password-file", "is empty", "run", "--device", "virtio-gpu", "--vnc",
                 "--vnc-password-file", empty);
    EXPECT_USAGE("--vnc-password-file", "is empty", "run", "--device", "virtio-gpu", "--vnc",
                 "--vnc-password-file", newline);
    EXPECT_USAGE("--vnc-password-file", "Is a directory", "run", "--device", "virtio-gpu", "--vnc",
                 "--vnc-password-file", t->root);
    EXPECT_USAGE("--vnc-password-file: needs --vnc", NULL, "run", "--device", "virtio-gpu",
                 "--vnc-password-file", path);

    /* serve-device serves neither. */
    EXPECT_USAGE("--device virtio-gpu: serve-device cannot serve it", NULL, "serve-device",
                 "--socket", "/s", "--device", "virtio-gpu");
    EXPECT_USAGE("--device virtio-input: serve-device cannot serve it", NULL, "serve-device",
                 "--socket", "/s", "--device", "virtio-input,keyboard");
}

int main(void)
{
    unsetenv("VMKIT_GUEST_DIR");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_flag),
        cmocka_unit_test(test_equals_form),
        cmocka_unit_test(test_last_one_wins),
        cmocka_unit_test(test_bootloader),
        cmocka_unit_test(test_build_config_efi),
        cmocka_unit_test(test_bootloader_errors),
        cmocka_unit_test(test_device_serial_repeated),
        cmocka_unit_test(test_device_errors),
        cmocka_unit_test(test_device_virtio_blk_defaults),
        cmocka_unit_test(test_device_virtio_blk_keys),
        cmocka_unit_test(test_device_virtio_blk_repeated),
        cmocka_unit_test(test_device_virtio_blk_errors),
        cmocka_unit_test(test_device_virtio_rng),
        cmocka_unit_test(test_build_config_virtio_rng),
        cmocka_unit_test(test_device_virtio_balloon),
        cmocka_unit_test(test_device_virtio_vsock),
        cmocka_unit_test(test_device_virtio_net),
        cmocka_unit_test(test_device_virtio_net_errors),
        cmocka_unit_test(test_build_config_virtio_net),
        cmocka_unit_test(test_device_virtio_serial),
        cmocka_unit_test(test_device_virtio_serial_errors),
        cmocka_unit_test(test_build_config_virtio_serial),
        cmocka_unit_test(test_device_pty_socket),
        cmocka_unit_test(test_device_pty_socket_errors),
        cmocka_unit_test(test_build_config_pty_socket),
        cmocka_unit_test(test_build_config_virtio_blk),
        cmocka_unit_test(test_build_config_usb_mass_storage),
        cmocka_unit_test(test_control_socket),
        cmocka_unit_test(test_usb_drive_keys),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_unknown_flags),
        cmocka_unit_test(test_missing_values),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test_setup_teardown(test_default_guest_env, make_tmp, remove_tmp),
        cmocka_unit_test_setup_teardown(test_default_guest_beside_binary, make_tmp, remove_tmp),
        cmocka_unit_test(test_build_config),
        cmocka_unit_test(test_serve_device),
        cmocka_unit_test(test_serve_device_errors),
        cmocka_unit_test(test_serve_device_blk),
        cmocka_unit_test(test_serve_device_blk_errors),
        cmocka_unit_test_setup_teardown(test_device_virtio_fs, make_tmp, remove_tmp),
        cmocka_unit_test_setup_teardown(test_device_virtio_fs_errors, make_tmp, remove_tmp),
        cmocka_unit_test_setup_teardown(test_serve_device_fs, make_tmp, remove_tmp),
        cmocka_unit_test(test_device_usb_keyboard),
        cmocka_unit_test(test_device_virtio_gpu),
        cmocka_unit_test_setup_teardown(test_device_virtio_gpu_errors, make_tmp, remove_tmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
