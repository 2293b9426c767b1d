/* The vmkit command line: commands, options and their values (device specs: cli_device.c). */
#include "cli.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MIB (UINT64_C(1) << 20)

static const char usage_text[] =
    "usage: vmkit run [options]\n"
    "       vmkit serve-device --socket PATH --device SPEC [--device SPEC]...\n"
    "       vmkit --version\n"
    "       vmkit --help\n"
    "\n"
    "Runs a virtual machine on Linux/KVM.\n"
    "\n"
    "Options of run (each also as --option=value):\n"
    "  --cpus N                virtual CPUs (default 1)\n"
    "  --memory SIZE           memory: MiB, or with a unit: 512M, 2G, 1536MiB\n"
    "                          (default 512 MiB)\n"
    "  --kernel PATH           Linux kernel: a bzImage or an ELF64 vmlinux\n"
    "  --initrd PATH           initial ramdisk (needs --kernel)\n"
    "  --cmdline STRING        kernel command line\n"
    "  --bootloader linux,kernel=PATH[,initrd=PATH][,cmdline=STRING]\n"
    "                          the three above in one option (not mixed with them)\n"
    "  --bootloader efi,variable-store=PATH[,create[,overwrite]][,firmware=PATH]\n"
    "                          EFI firmware (Debian's OVMF) with its variable store;\n"
    "                          create makes the store from OVMF's template\n"
    "  --device SPEC           a device; repeats (the devices are listed below)\n"
    "  --stop-timeout SECONDS  after SIGINT, SIGTERM or SIGHUP, how long the guest\n"
    "                          gets to power off before vmkit stops it (default 20;\n"
    "                          0: stop at once)\n"
    "  --gui                   show the display (--device virtio-gpu) in a window;\n"
    "                          adds a virtio keyboard and pointing device where\n"
    "                          there are none (and says so). Not built yet: the run\n"
    "                          stops with a message; use --vnc\n"
    "  --vnc [unix:PATH|HOST:PORT|auto]\n"
    "                          serve the display to VNC clients: on a unix socket,\n"
    "                          at HOST:PORT (an IPv6 address in brackets, [::1]:5900;\n"
    "                          port 0: any free one), or, with auto or no value, at\n"
    "                          127.0.0.1 on the first free port from 5900\n"
    "  --vnc-password-file PATH\n"
    "                          VNC clients must give the password this file holds\n"
    "                          (it must exist and not be empty)\n"
    "  --web                   serve the VNC display to a web browser too (needs\n"
    "                          --vnc)\n"
    "  --screenshot-on-exit PATH\n"
    "                          when the VM stops, save what the display shows at\n"
    "                          PATH\n"
    "  --control-socket PATH   listen on a unix socket (mode 0600; a stale one is\n"
    "                          replaced) for commands, one a line, each answered by\n"
    "                          one line, \"ok[ DETAIL]\" or \"error: MESSAGE\":\n"
    "                          usb-attach path=FILE[,readonly][,cache=...][,sync=...]\n"
    "                          plugs in a USB drive (usb-mass-storage's keys) and\n"
    "                          answers \"ok port=N\"; usb-detach port=N; state;\n"
    "                          pause; resume; power-button (as the first SIGTERM);\n"
    "                          stop (hard, exit status 0); help. The machine gets\n"
    "                          an xHCI controller for the drives. E.g.\n"
    "                          echo state | socat - UNIX-CONNECT:PATH\n"
    "  --config FILE           a JSON machine description (not supported yet)\n"
    "  -h, --help              print this text\n"
    "  -V, --version           print the version\n"
    "\n"
    "Devices (--device SPEC):\n"
    "  serial,stdio            a serial port on this terminal\n"
    "  serial,file=PATH[,append]\n"
    "                          a serial port writing to a file (truncated unless\n"
    "                          append)\n"
    "  serial,pty              a serial port on a new pseudo-terminal, raw; its path\n"
    "                          is printed at start (\"vmkit: COM1 on /dev/pts/N\"):\n"
    "                          open it with screen, picocom, cat\n"
    "  serial,socket=PATH      a serial port on a unix socket that vmkit creates and\n"
    "                          listens on, one client at a time (e.g. socat\n"
    "                          -,raw,echo=0 UNIX-CONNECT:PATH); guest output that no\n"
    "                          pty or socket client reads is dropped; up to 4\n"
    "                          serial ports, COM1 to COM4, in the order given\n"
    "  virtio-blk,path=PATH[,readonly][,cache=auto|cached|uncached]\n"
    "         [,sync=full|fsync|none][,id=SERIAL][,queues=N]\n"
    "                          a virtio disk on a raw image file or block device,\n"
    "                          writable unless readonly, locked while in use; cache:\n"
    "                          auto (default), cached (host page cache) or uncached\n"
    "                          (O_DIRECT); sync, what a guest's flush does: full\n"
    "                          (fdatasync, default), fsync or none; id: the serial\n"
    "                          the guest reads (at most 20 printable bytes); queues:\n"
    "                          request queues (default: one per vCPU, at most 8);\n"
    "                          up to 16 disks, in the order given\n"
    "  usb-mass-storage,path=PATH[,readonly][,cache=...][,sync=...]\n"
    "                          a USB drive (bulk-only, SCSI) on the machine's xHCI\n"
    "                          controller, for an installer ISO (readonly: writes\n"
    "                          are refused as write-protected); up to 4\n"
    "  virtio-rng[,rate=BYTES_PER_SEC]\n"
    "                          a virtio entropy device: the guest's /dev/hwrng, fed\n"
    "                          from the host's getrandom at up to 1 MiB/s unless\n"
    "                          rate says otherwise (at most one)\n"
    "  virtio-console,stdio|file=PATH[,append]|pty|socket=PATH[,name=NAME][,console]\n"
    "                          a port of the virtio console device (virtio-serial is\n"
    "                          the same), on this terminal, writing to a file, on a\n"
    "                          new pty or on a unix socket, as for serial; name: what\n"
    "                          the guest sees in /sys/class/virtio-ports/*/name (at\n"
    "                          most 255 printable bytes); console: the port is hvc0\n"
    "                          (at most one); up to 16 ports of one device, in order\n"
    "  virtio-net[,nat][,hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-:GUESTPORT]...\n"
    "         [,mac=M][,mtu=N][,offloading=on|off]\n"
    "                          a virtio network device on vmkit's NAT (the default):\n"
    "                          10.0.2.0/24, the guest 10.0.2.15, the host's loopback\n"
    "                          at 10.0.2.2, DNS at 10.0.2.3; hostfwd (repeats) forwards\n"
    "                          a host port (HOSTADDR default 127.0.0.1, [::1] for\n"
    "                          IPv6) to the guest; mac default random, locally\n"
    "                          administered; mtu (68..65535) is offered to the guest;\n"
    "                          up to 8 devices. Instead of nat, one of:\n"
    "         fd=N             a connected socket: datagram (a frame each) or stream\n"
    "                          (4-byte big-endian length + frame)\n"
    "         unixSocketPath=PATH\n"
    "                          vfkit's: a unix datagram socket (gvproxy), greeted\n"
    "                          with VFKT\n"
    "         type=unixgram|unixstream,path=PATH|fd=N[,vfkitMagic=on|off]\n"
    "                          krunkit's: a unix datagram or stream socket (passt\n"
    "                          --socket, QEMU -netdev stream)\n"
    "         tap=IFNAME       an existing tap (offloads follow the guest)\n"
    "         none             no network (the default guest has a NAT device)\n"
    "                          The guest's address is printed once known\n"
    "                          (\"vmkit: virtio-net 1: guest 10.0.2.15\").\n"
    "  virtio-balloon[,deflate-on-oom][,free-page-reporting][,target=MIB]\n"
    "                          a memory balloon: memory the guest gives back is\n"
    "                          freed on the host; target: the MiB the guest should\n"
    "                          keep once started (default: all of --memory);\n"
    "                          deflate-on-oom: the guest may take memory back when\n"
    "                          it runs short; free-page-reporting: the guest reports\n"
    "                          its free memory, which the host frees (at most one)\n"
    "  virtio-vsock,port=N,socketURL=PATH[,listen|connect]\n"
    "                          a virtio socket (AF_VSOCK) port mapped to a unix\n"
    "                          socket, as vfkit does: connect (default), the guest's\n"
    "                          connections to host port N reach the program listening\n"
    "                          at PATH; listen, vmkit listens at PATH and each client\n"
    "                          reaches the guest's port N (repeat for more ports)\n"
    "  virtio-vsock,udsPath=PATH[,cid=N]\n"
    "                          Firecracker's convention: the guest's port P is the\n"
    "                          unix socket PATH_P; a client of PATH writes \"CONNECT P\"\n"
    "                          and reads \"OK <port>\" before the guest's bytes; cid: the\n"
    "                          guest's (default 3). One socket device takes them all\n"
    "  virtio-fs,sharedDir=PATH,mountTag=TAG[,readonly][,cache=auto|never|always]\n"
    "         [,ownership=identity|squash][,uid=N][,gid=N][,queues=N]\n"
    "                          a host directory the guest mounts by its tag (mount -t\n"
    "                          virtiofs TAG DIR; the default guest is told the tags on\n"
    "                          its command line, vmkit.mount=TAG,..., and mounts them);\n"
    "                          readonly: the guest changes nothing; cache: how long the\n"
    "                          guest keeps what it read (auto, default; never; always:\n"
    "                          only the guest changes the files); ownership=squash: the\n"
    "                          files the guest makes belong to you on the host, and it\n"
    "                          sees the owner it set, else uid and gid (default 0);\n"
    "                          queues: request queues (1..8, default 1). A tag is at\n"
    "                          most 35 printable bytes, one per device; up to 8 devices\n"
    "  virtio-fs,mountTag=TAG,dir=NAME:PATH[:ro][,dir=NAME:PATH[:ro]]...[,keys]\n"
    "                          several directories under one tag, each the mount's\n"
    "                          subdirectory NAME (:ro: read-only)\n"
    "  rosetta,mountTag=TAG[,ignoreIfMissing]\n"
    "                          the host's qemu-user-static interpreters (Debian's\n"
    "                          package), for the guest to run other architectures'\n"
    "                          binaries; ignoreIfMissing: no device when they are not\n"
    "                          installed (else an error)\n"
    "  virtio-gpu[,width=W][,height=H][,scanout=WxH]...\n"
    "                          a virtio GPU (2D): the guest's display, a scanout of\n"
    "                          width x height pixels (default 1280x800), and one\n"
    "                          more for each scanout=WxH; sides 1..16384, up to 16\n"
    "                          scanouts (at most one device)\n"
    "  usb-keyboard            a USB keyboard (HID boot protocol) on the xHCI\n"
    "                          controller: what firmware menus (OVMF's setup, GRUB)\n"
    "                          read, and Linux too; the views (--vnc, --gui) type\n"
    "                          into it, and --gui adds no virtio keyboard beside it.\n"
    "                          No keys; it takes a USB port (4, shared with the drives)\n"
    "  virtio-input,keyboard|pointing\n"
    "                          a virtio keyboard, or a pointing device in screen\n"
    "                          coordinates (a tablet: absolute X and Y, 3 buttons, a\n"
    "                          wheel); up to 4 of each\n"
    "\n"
    "In --bootloader and --device a value ends at the next comma; wrap it in\n"
    "double quotes to hold commas: cmdline=\"console=ttyS0,115200 quiet\" (inside\n"
    "the quotes, \\\" stands for \" and \\\\ for \\). Put the whole option in single\n"
    "quotes so that the shell keeps the double quotes.\n"
    "\n"
    "Without --kernel or --bootloader, run boots the default guest: vmlinuz and\n"
    "initramfs.img from $VMKIT_GUEST_DIR if it is set, else from\n"
    "<bindir>/../share/vmkit/guest (ninja install puts it there), else from the\n"
    "source tree's guest/out, with the command line \"" CLI_DEFAULT_GUEST_CMDLINE "\"\n"
    "unless --cmdline is given. Without --device serial, COM1 is on this terminal\n"
    "(unless a console port is): Ctrl-A x stops the VM, Ctrl-A Ctrl-A sends Ctrl-A.\n"
    "SIGINT, SIGTERM or SIGHUP presses the ACPI power button; a second one, or\n"
    "--stop-timeout seconds without a power-off, stops the VM.\n"
    "\n"
    "serve-device serves one virtio device over vhost-user, so that another VMM\n"
    "(qemu-system-x86_64 -device vhost-user-blk-pci,chardev=...,num-queues=N, or\n"
    "vhost-user-rng-pci,chardev=...) drives it:\n"
    "  --socket PATH           the unix socket to create and listen on\n"
    "  --device SPEC           the device, with the keys of run's --device:\n"
    "                          virtio-blk (queues default to 1; the front end may use\n"
    "                          fewer, not more: QEMU's num-queues defaults to its vCPU\n"
    "                          count), virtio-rng, virtio-console (repeated: one\n"
    "                          port each), or virtio-net (QEMU: -netdev vhost-user,\n"
    "                          id=n0,chardev=... -device virtio-net-pci,netdev=n0,\n"
    "                          vectors=0: Debian's QEMU 7.2 crashes with MSI-X there)\n"
    "  --type rng|blk|console|net|vsock|fs, --disk PATH[,keys], --port SPEC,\n"
    "  --rate N, --net KEYS (virtio-net's), --cid N --uds-path PATH (virtio-vsock's,\n"
    "                          for QEMU's vhost-user-vsock-pci),\n"
    "  --queues N              the spellings of earlier releases, still taken\n"
    "  --shared-dir PATH[,readonly] [--cache never|auto|always] [--tag TAG]\n"
    "                          virtio-fs (the keys of --device virtio-fs may follow\n"
    "                          PATH), for QEMU's vhost-user-fs-pci, whose tag= the\n"
    "                          guest sees (--tag: default " CLI_SERVE_FS_TAG ")\n"
    "  --sandbox namespace|chroot|none\n"
    "                          how the fs server confines itself to the directory:\n"
    "                          a mount namespace of its own and a chroot (default),\n"
    "                          a chroot alone (as root, where no namespace may be\n"
    "                          made), or nothing (unsafe)\n"
    "It serves one front end at a time and waits for the next when one goes away.\n"
    "SIGINT or SIGTERM stops it and removes the socket.\n"
    "\n"
    "Exit status (run and serve-device):\n"
    "  0       the guest powered off or reset (also after a signal pressed the\n"
    "          power button), or stop on the control socket stopped it;\n"
    "          serve-device: stopped by SIGINT or SIGTERM\n"
    "  N       run: the guest wrote N to the debug-exit port 0x501\n"
    "  1       an error after the command line was read: an invalid configuration\n"
    "          (a missing file, a disk in use), no usable KVM, a failed start, a VM\n"
    "          that stopped with an error; one line on stderr says which\n"
    "  2       a usage error: an unknown option or key, a malformed value\n"
    "  3       stopped from the terminal with Ctrl-A x\n"
    "  128+N   signal N stopped the VM hard: a second signal, or no power-off\n"
    "          within --stop-timeout\n";

const char *cli_usage(void)
{
    return usage_text;
}

int cli_fail(int status, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        int n = snprintf(err, errlen, "vmkit: ");
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return status;
}

/* ---- Numbers ------------------------------------------------------------------ */

enum num_parse { NUM_OK, NUM_BAD, NUM_NEGATIVE, NUM_OVERFLOW };

/* Plain decimal digits only: strtoull would take spaces, a sign and wrap "-1". */
static enum num_parse parse_decimal(const char *s, uint64_t *out)
{
    const char *p = s;
    bool negative = false;
    if (*p == '-') {
        negative = true;
        p++;
    }
    if (*p == '\0')
        return NUM_BAD;
    uint64_t v = 0;
    bool overflow = false;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return NUM_BAD;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    if (negative)
        return NUM_NEGATIVE;
    if (overflow)
        return NUM_OVERFLOW;
    *out = v;
    return NUM_OK;
}

/* Parses text as a whole number in [min, max]; unit (may be "") follows the value in
 * messages. */
int cli_parse_number(const char *flag, const char *text, uint64_t min, uint64_t max,
                     const char *unit, uint64_t *out, char *err, size_t errlen)
{
    uint64_t v = 0;
    switch (parse_decimal(text, &v)) {
    case NUM_BAD: return cli_usage_error(err, errlen, "%s: '%s' is not a number", flag, text);
    case NUM_NEGATIVE:
        return cli_usage_error(err, errlen, "%s: %s%s is below the minimum of %llu%s", flag, text,
                               unit, (unsigned long long)min, unit);
    case NUM_OVERFLOW:
        return cli_usage_error(err, errlen, "%s: %s%s is above the maximum of %llu%s", flag, text,
                               unit, (unsigned long long)max, unit);
    case NUM_OK: break;
    }
    if (v < min)
        return cli_usage_error(err, errlen, "%s: %s%s is below the minimum of %llu%s", flag, text,
                               unit, (unsigned long long)min, unit);
    if (v > max)
        return cli_usage_error(err, errlen, "%s: %s%s is above the maximum of %llu%s", flag, text,
                               unit, (unsigned long long)max, unit);
    *out = v;
    return 0;
}

/* --memory: whole MiB, or a size with a unit (K, M, G, T, each also as KiB... and in lower
 * case; powers of 1024) that comes to whole MiB. */
static int parse_memory(const char *flag, const char *text, uint64_t *mib, char *err, size_t errlen)
{
    uint64_t min = (vmk_config_min_memory_size() + MIB - 1) / MIB;
    uint64_t max = vmk_config_max_memory_size() / MIB;
    size_t digits = strspn(text, "0123456789");
    const char *unit = text + digits;
    static const struct {
        const char *names[3];
        unsigned shift; /* bytes = value << shift */
    } units[] = {
        { { "k", "kib", "kb" }, 10 },
        { { "m", "mib", "mb" }, 20 },
        { { "g", "gib", "gb" }, 30 },
        { { "t", "tib", "tb" }, 40 },
    };
    if (digits == 0 || !*unit)
        return cli_parse_number(flag, text, min, max, " MiB", mib, err, errlen);
    unsigned shift = 0;
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]) && !shift; u++)
        for (size_t n = 0; n < 3; n++)
            if (!strcasecmp(unit, units[u].names[n]))
                shift = units[u].shift;
    if (!shift)
        return cli_usage_error(err, errlen,
                               "%s: '%s': unknown unit '%s' (a number of MiB, or with K, M, G or "
                               "T: 512M, 2G)",
                               flag, text, unit);
    char number[32];
    if (digits >= sizeof(number))
        return cli_usage_error(err, errlen, "%s: %s is above the maximum of %llu MiB", flag, text,
                               (unsigned long long)max);
    memcpy(number, text, digits);
    number[digits] = '\0';
    uint64_t v;
    int rc = cli_parse_number(flag, number, 0, UINT64_MAX, "", &v, err, errlen);
    if (rc)
        return rc;
    if (v > (UINT64_MAX >> shift))
        return cli_usage_error(err, errlen, "%s: %s is above the maximum of %llu MiB", flag, text,
                               (unsigned long long)max);
    uint64_t bytes = v << shift;
    if (bytes % MIB)
        return cli_usage_error(err, errlen, "%s: %s is not a whole number of MiB", flag, text);
    if (bytes / MIB < min)
        return cli_usage_error(err, errlen, "%s: %s is below the minimum of %llu MiB", flag, text,
                               (unsigned long long)min);
    if (bytes / MIB > max)
        return cli_usage_error(err, errlen, "%s: %s is above the maximum of %llu MiB", flag, text,
                               (unsigned long long)max);
    *mib = bytes / MIB;
    return 0;
}

/* ---- Compound values: TYPE,key=value,key="a,b",flag --------------------------- */

int kv_next(struct kv_iter *it, char **key, char **val, char *err, size_t errlen)
{
    *key = NULL;
    *val = NULL;
    if (it->done)
        return 0;
    const char *p = it->p;
    size_t klen = strcspn(p, "=,");
    if (klen == 0)
        return cli_usage_error(err, errlen, "%s: empty option in '%s'", it->ctx, it->whole);
    char *k = strndup(p, klen);
    if (!k)
        return cli_out_of_memory(err, errlen);
    p += klen;
    char *v = NULL;
    if (*p == '=') {
        p++;
        if (*p == '"') {
            p++;
            v = malloc(strlen(p) + 1);
            if (!v)
                goto oom;
            size_t n = 0;
            while (*p && *p != '"') {
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                    p++;
                v[n++] = *p++;
            }
            v[n] = '\0';
            if (*p != '"') {
                cli_usage_error(err, errlen, "%s: %s: missing closing quote in '%s'", it->ctx, k,
                                it->whole);
                goto bad;
            }
            p++;
            if (*p != ',' && *p != '\0') {
                cli_usage_error(err, errlen, "%s: %s: text after the closing quote in '%s'",
                                it->ctx, k, it->whole);
                goto bad;
            }
        } else {
            size_t vlen = strcspn(p, ",");
            v = strndup(p, vlen);
            if (!v)
                goto oom;
            p += vlen;
        }
    }
    /* A comma promises another option: "serial,stdio," is an error, not a shrug. */
    if (*p == ',')
        p++;
    else
        it->done = true;
    it->p = p;
    *key = k;
    *val = v;
    return 0;
oom:
    free(k);
    return cli_out_of_memory(err, errlen);
bad:
    free(k);
    free(v);
    return CLI_EXIT_USAGE;
}

/* Reads the leading TYPE of a compound value. */
static int kv_type(struct kv_iter *it, const char *expect, char **type, char *err, size_t errlen)
{
    if (*it->whole == '\0')
        return cli_usage_error(err, errlen, "%s: empty value (expected %s)", it->ctx, expect);
    char *val = NULL;
    int rc = kv_next(it, type, &val, err, errlen);
    if (rc)
        return rc;
    if (val) {
        rc = cli_usage_error(err, errlen, "%s: '%s=%s' is not a type (expected %s)", it->ctx, *type,
                             val, expect);
        free(val);
        free(*type);
        *type = NULL;
    }
    return rc;
}

/* ---- The boot loader ---------------------------------------------------------- */

static int set_string(char **dst, const char *src, char *err, size_t errlen)
{
    char *copy = strdup(src);
    if (!copy)
        return cli_out_of_memory(err, errlen);
    free(*dst);
    *dst = copy;
    return 0;
}

/* Takes ownership of *src. */
static void move_string(char **dst, char **src)
{
    free(*dst);
    *dst = *src;
    *src = NULL;
}

#define BOOTLOADER_FORM                                   \
    "linux,kernel=PATH[,initrd=PATH][,cmdline=STRING] | " \
    "efi,variable-store=PATH[,create[,overwrite]][,firmware=PATH]"

/* --bootloader efi,...: the firmware and its variable store (VZEFIBootLoader). */
static int parse_efi_bootloader(struct cli_request *req, struct kv_iter *it, const char *spec,
                                char *err, size_t errlen)
{
    char *key = NULL, *val = NULL, *store = NULL, *firmware = NULL;
    bool create = false, overwrite = false;
    int rc;
    it->ctx = "--bootloader efi";
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "create") || !strcmp(key, "overwrite"))
            rc =
                cli_take_flag(it->ctx, key, val, key[0] == 'c' ? &create : &overwrite, err, errlen);
        else if (!strcmp(key, "variable-store") || !strcmp(key, "firmware"))
            rc = cli_take_string(it->ctx, key, &val, key[0] == 'v' ? &store : &firmware, "PATH",
                                 err, errlen);
        else
            rc = cli_usage_error(err, errlen,
                                 "--bootloader efi: unknown key '%s' (known: variable-store, "
                                 "create, overwrite, firmware; the firmware boots what the "
                                 "disks hold, there is no kernel to name)",
                                 key);
        if (rc)
            break;
    }
    if (!rc && !store)
        rc = cli_usage_error(err, errlen,
                             "--bootloader efi: missing variable-store=PATH in '%s' (add "
                             ",create to make a new one)",
                             spec);
    if (!rc && overwrite && !create)
        rc = cli_usage_error(err, errlen, "--bootloader efi: overwrite needs create");
    if (!rc && create && !overwrite && access(store, F_OK) == 0)
        rc = cli_usage_error(err, errlen,
                             "--bootloader efi: variable store %s already exists; drop create "
                             "to boot with it, or add overwrite to start afresh",
                             store);
    if (!rc) {
        /* A later --bootloader replaces an earlier one as a whole. */
        free(req->kernel), free(req->initrd), free(req->cmdline);
        req->kernel = req->initrd = req->cmdline = NULL;
        req->efi = true;
        move_string(&req->efi_store, &store);
        move_string(&req->efi_firmware, &firmware);
        req->efi_create = create;
        req->efi_overwrite = overwrite;
    }
    free(key);
    free(val);
    free(store);
    free(firmware);
    return rc;
}

static int parse_bootloader(struct cli_request *req, const char *spec, char *err, size_t errlen)
{
    struct kv_iter it = { .ctx = "--bootloader", .whole = spec, .p = spec };
    char *type = NULL, *key = NULL, *val = NULL;
    char *kernel = NULL, *initrd = NULL, *cmdline = NULL;
    int rc = kv_type(&it, BOOTLOADER_FORM, &type, err, errlen);
    if (rc)
        return rc;
    if (!strcmp(type, "efi")) {
        rc = parse_efi_bootloader(req, &it, spec, err, errlen);
        goto out;
    }
    if (strcmp(type, "linux") != 0) {
        rc = cli_usage_error(
            err, errlen, "--bootloader: unknown boot loader type '%s' (known: linux, efi)", type);
        goto out;
    }
    it.ctx = "--bootloader linux";
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(&it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        char **slot = !strcmp(key, "kernel")    ? &kernel
                      : !strcmp(key, "initrd")  ? &initrd
                      : !strcmp(key, "cmdline") ? &cmdline
                                                : NULL;
        if (!slot) {
            rc = cli_usage_error(err, errlen,
                                 "--bootloader linux: unknown key '%s' (known: kernel, "
                                 "initrd, cmdline; quote a value that holds commas)",
                                 key);
            break;
        }
        if (!val) {
            rc = cli_usage_error(err, errlen, "--bootloader linux: %s needs a value (%s=...)", key,
                                 key);
            break;
        }
        if (*slot) {
            rc = cli_usage_error(err, errlen, "--bootloader linux: %s given twice", key);
            break;
        }
        if (slot != &cmdline && *val == '\0') {
            rc = cli_usage_error(err, errlen, "--bootloader linux: %s= needs a path", key);
            break;
        }
        *slot = val;
        val = NULL;
    }
    if (!rc && !kernel)
        rc = cli_usage_error(err, errlen, "--bootloader linux: missing kernel=PATH in '%s'", spec);
    if (!rc) {
        /* A later --bootloader replaces an earlier one as a whole. */
        move_string(&req->kernel, &kernel);
        move_string(&req->initrd, &initrd);
        move_string(&req->cmdline, &cmdline);
        req->efi = false;
    }
out:
    free(type);
    free(key);
    free(val);
    free(kernel);
    free(initrd);
    free(cmdline);
    return rc;
}

/* ---- Options ------------------------------------------------------------------ */

enum opt_id {
    OPT_CPUS,
    OPT_MEMORY,
    OPT_KERNEL,
    OPT_INITRD,
    OPT_CMDLINE,
    OPT_BOOTLOADER,
    OPT_DEVICE,
    OPT_STOP_TIMEOUT,
    OPT_CONFIG,
    OPT_HELP,
    OPT_VERSION,
    OPT_GUI,
    OPT_VNC,
    OPT_VNC_PASSWORD_FILE,
    OPT_WEB,
    OPT_SCREENSHOT_ON_EXIT,
    OPT_CONTROL_SOCKET,
    /* serve-device */
    OPT_SOCKET,
    OPT_TYPE,
    OPT_DISK,
    OPT_PORT,
    OPT_RATE,
    OPT_QUEUES,
    OPT_NET,
    OPT_CID,
    OPT_UDS_PATH,
    OPT_SHARED_DIR,
    OPT_CACHE,
    OPT_TAG,
    OPT_SANDBOX,
};

struct opt {
    const char *name;
    const char *metavar; /* NULL: takes no value */
    enum opt_id id;
};

/* A metavar in brackets is an optional value: --opt=VALUE, or a next argument that is not an
 * option (run takes no plain arguments), or nothing. */
static bool optional_value(const struct opt *o)
{
    return o->metavar && o->metavar[0] == '[';
}

#define DEVICE_FORM "TYPE,key=value,..."

static const struct opt run_opts[] = {
    { "--cpus", "N", OPT_CPUS },
    { "--memory", "SIZE", OPT_MEMORY },
    { "--kernel", "PATH", OPT_KERNEL },
    { "--initrd", "PATH", OPT_INITRD },
    { "--cmdline", "STRING", OPT_CMDLINE },
    { "--bootloader", BOOTLOADER_FORM, OPT_BOOTLOADER },
    { "--device", DEVICE_FORM, OPT_DEVICE },
    { "--stop-timeout", "SECONDS", OPT_STOP_TIMEOUT },
    { "--config", "FILE", OPT_CONFIG },
    { "--gui", NULL, OPT_GUI },
    { "--vnc", "[unix:PATH|HOST:PORT|auto]", OPT_VNC },
    { "--vnc-password-file", "PATH", OPT_VNC_PASSWORD_FILE },
    { "--web", NULL, OPT_WEB },
    { "--screenshot-on-exit", "PATH", OPT_SCREENSHOT_ON_EXIT },
    { "--control-socket", "PATH", OPT_CONTROL_SOCKET },
    { "--help", NULL, OPT_HELP },
    { "-h", NULL, OPT_HELP },
    { "--version", NULL, OPT_VERSION },
    { "-V", NULL, OPT_VERSION },
    { NULL, NULL, 0 },
};

static const struct opt serve_opts[] = {
    { "--socket", "PATH", OPT_SOCKET },
    { "--device", DEVICE_FORM, OPT_DEVICE },
    { "--type", "TYPE", OPT_TYPE },
    { "--disk", "PATH[,readonly][,cache=MODE][,sync=MODE][,id=SERIAL]", OPT_DISK },
    { "--port", "stdio|file=PATH|pty|socket=PATH[,name=NAME][,console]", OPT_PORT },
    { "--rate", "BYTES_PER_SEC", OPT_RATE },
    { "--queues", "N", OPT_QUEUES },
    { "--net", "nat[,hostfwd=...]|fd=N|type=...|tap=IFNAME[,mac=M][,mtu=N]", OPT_NET },
    { "--cid", "N", OPT_CID },
    { "--uds-path", "PATH", OPT_UDS_PATH },
    { "--shared-dir", "PATH[,readonly]", OPT_SHARED_DIR },
    { "--cache", "never|auto|always", OPT_CACHE },
    { "--tag", "TAG", OPT_TAG },
    { "--sandbox", "namespace|chroot|none", OPT_SANDBOX },
    { "--help", NULL, OPT_HELP },
    { "-h", NULL, OPT_HELP },
    { NULL, NULL, 0 },
};

/* Reads argv[*i] as one of opts: *o and *value (NULL for a flag); advances *i past a value
 * given as the next argument. */
static int next_option(int argc, char *const argv[], int *i, const char *cmd,
                       const struct opt *opts, const struct opt **o, const char **value, char *err,
                       size_t errlen)
{
    const char *arg = argv[*i];
    if (arg[0] != '-' || arg[1] == '\0')
        return cli_usage_error(err, errlen,
                               "%s: unexpected argument '%s' (options start with --; see 'vmkit "
                               "--help')",
                               cmd, arg);
    /* Only long options take the --name=value form. */
    const char *eq = arg[1] == '-' ? strchr(arg, '=') : NULL;
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    *o = NULL;
    for (const struct opt *p = opts; p->name && !*o; p++)
        if (strlen(p->name) == name_len && !strncmp(p->name, arg, name_len))
            *o = p;
    if (!*o)
        return cli_usage_error(err, errlen, "%s: unknown option '%.*s' (see 'vmkit --help')", cmd,
                               (int)name_len, arg);
    *value = NULL;
    if (!(*o)->metavar) {
        if (eq)
            return cli_usage_error(err, errlen, "%s: takes no value (got '%s')", (*o)->name,
                                   eq + 1);
    } else if (eq) {
        *value = eq + 1;
    } else if (optional_value(*o)) {
        if (*i + 1 < argc && argv[*i + 1][0] != '-')
            *value = argv[++*i];
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        return cli_usage_error(err, errlen, "%s: missing value (%s %s)", (*o)->name, (*o)->name,
                               (*o)->metavar);
    }
    return 0;
}

/* ---- The display ---------------------------------------------------------------- */

int cli_parse_vnc_address(const char *ctx, const char *text, struct cli_vnc_address *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!*text || !strcmp(text, "auto")) {
        out->first_free = true;
        snprintf(out->host, sizeof(out->host), "%s", CLI_VNC_DEFAULT_HOST);
        out->port = CLI_VNC_FIRST_PORT;
        return 0;
    }
    if (!strncmp(text, "unix:", 5)) {
        const char *path = text + 5;
        size_t len = strlen(path), max = vmk_socket_path_max_length();
        if (len == 0)
            return cli_usage_error(err, errlen, "%s: unix: needs a socket path (unix:PATH)", ctx);
        if (len > max || len >= sizeof(out->path))
            return cli_usage_error(err, errlen, "%s: socket path is %zu bytes, at most %zu", ctx,
                                   len, max);
        out->unix_socket = true;
        memcpy(out->path, path, len + 1);
        return 0;
    }
    const char *colon = strrchr(text, ':');
    if (!colon)
        return cli_usage_error(err, errlen,
                               "%s: '%s' is not unix:PATH, HOST:PORT or auto (a port needs its "
                               "host: 127.0.0.1:5901)",
                               ctx, text);
    const char *host = text;
    size_t hlen = (size_t)(colon - text);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
        char buf[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(buf))
            return cli_usage_error(err, errlen, "%s: '%s': [%.*s] is not an IPv6 address", ctx,
                                   text, (int)hlen, host);
        memcpy(buf, host, hlen);
        buf[hlen] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return cli_usage_error(err, errlen, "%s: '%s': [%s] is not an IPv6 address", ctx, text,
                                   buf);
    } else if (hlen == 0) {
        return cli_usage_error(err, errlen, "%s: '%s': no host before the port (HOST:PORT)", ctx,
                               text);
    } else if (memchr(host, ':', hlen)) {
        return cli_usage_error(
            err, errlen, "%s: '%s': an IPv6 address goes in brackets ([::1]:5900)", ctx, text);
    } else {
        for (size_t i = 0; i < hlen; i++)
            if (!isalnum((unsigned char)host[i]) && !strchr(".-_", host[i]))
                return cli_usage_error(err, errlen,
                                       "%s: '%s': host '%.*s' is neither an address nor a name",
                                       ctx, text, (int)hlen, host);
    }
    if (hlen >= sizeof(out->host))
        return cli_usage_error(err, errlen, "%s: host is %zu bytes, at most %zu", ctx, hlen,
                               sizeof(out->host) - 1);
    char flag[96];
    uint64_t port = 0;
    snprintf(flag, sizeof(flag), "%s: port", ctx);
    int rc = cli_parse_number(flag, colon + 1, 0, 65535, "", &port, err, errlen);
    if (rc)
        return rc;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = (unsigned)port;
    return 0;
}

/* --vnc [ADDRESS]: stored as given, "auto" as "" (the default). */
static int parse_vnc(struct cli_request *req, const char *value, char *err, size_t errlen)
{
    struct cli_vnc_address a;
    if (value && !*value)
        return cli_usage_error(err, errlen,
                               "--vnc: empty value (unix:PATH, HOST:PORT, auto, or no value)");
    int rc = cli_parse_vnc_address("--vnc", value ? value : "", &a, err, errlen);
    if (rc)
        return rc;
    return set_string(&req->vnc, a.first_free ? "" : value, err, errlen);
}

/* The password file must be there now and hold a password: a typo should not wait for the
 * first client. */
static int check_password_file(const char *ctx, const char *path, char *err, size_t errlen)
{
    if (!*path)
        return cli_usage_error(err, errlen, "%s: empty path", ctx);
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_usage_error(err, errlen, "%s: '%s': %s", ctx, path, strerror(errno));
    /* Line ends do not count: a file holding "\n" is empty. */
    bool empty = true;
    int c;
    while (empty && (c = fgetc(f)) != EOF)
        empty = c == '\n' || c == '\r';
    int read_error = ferror(f) ? errno : 0;
    fclose(f);
    if (read_error)
        return cli_usage_error(err, errlen, "%s: '%s': %s", ctx, path, strerror(read_error));
    if (empty)
        return cli_usage_error(err, errlen, "%s: '%s' is empty (it holds the VNC password)", ctx,
                               path);
    return 0;
}

/* What the display options need of each other, once all are read; --gui brings the input
 * devices a window passes on. */
static int finish_display(struct cli_request *req, char *err, size_t errlen)
{
    const char *needs_gpu = req->gui                  ? "--gui"
                            : req->vnc                ? "--vnc"
                            : req->screenshot_on_exit ? "--screenshot-on-exit"
                                                      : NULL;
    if (needs_gpu && !req->gpu)
        return cli_usage_error(
            err, errlen, "%s: needs a graphics device (--device virtio-gpu) to show", needs_gpu);
    if (req->web && !req->vnc)
        return cli_usage_error(err, errlen,
                               "--web: needs --vnc (the browser shows the VNC display)");
    if (req->vnc_password_file && !req->vnc)
        return cli_usage_error(err, errlen, "--vnc-password-file: needs --vnc");
    if (req->gui && (!(req->keyboard_count + req->usb_keyboard_count) || !req->pointing_count)) {
        bool kbd = !(req->keyboard_count + req->usb_keyboard_count), ptr = !req->pointing_count;
        fprintf(stderr, "vmkit: --gui: adding a virtio %s%s%s\n", kbd ? "keyboard" : "",
                kbd && ptr ? " and " : "", ptr ? "pointing device" : "");
        req->keyboard_count += kbd;
        req->pointing_count += ptr;
    }
    return 0;
}

/* --control-socket PATH: what a sun_path holds; whether something is there already is
 * control.c's to judge when it listens. */
static int parse_control_socket(struct cli_request *req, const char *path, char *err, size_t errlen)
{
    size_t len = strlen(path), max = vmk_socket_path_max_length();
    if (len == 0)
        return cli_usage_error(err, errlen, "--control-socket: empty path");
    if (len > max)
        return cli_usage_error(err, errlen, "--control-socket: '%s' is %zu bytes, at most %zu",
                               path, len, max);
    return set_string(&req->control_socket, path, err, errlen);
}

static int parse_run(int argc, char *const argv[], struct cli_request *req, char *err,
                     size_t errlen)
{
    bool kernel_flags = false, cmdline_flag = false, bootloader = false, initrd_flag = false;
    for (int i = 2; i < argc; i++) {
        const struct opt *o;
        const char *value;
        int rc = next_option(argc, argv, &i, "run", run_opts, &o, &value, err, errlen);
        if (rc)
            return rc;
        uint64_t n = 0;
        switch (o->id) {
        case OPT_CPUS:
            rc = cli_parse_number(o->name, value, vmk_config_min_cpu_count(),
                                  vmk_config_max_cpu_count(), "", &n, err, errlen);
            if (!rc)
                req->cpus = (unsigned)n;
            break;
        case OPT_MEMORY: rc = parse_memory(o->name, value, &req->memory_mib, err, errlen); break;
        case OPT_KERNEL:
        case OPT_INITRD:
            if (*value == '\0')
                return cli_usage_error(err, errlen, "%s: empty path", o->name);
            rc = set_string(o->id == OPT_KERNEL ? &req->kernel : &req->initrd, value, err, errlen);
            kernel_flags = true;
            initrd_flag |= o->id == OPT_INITRD;
            break;
        case OPT_CMDLINE:
            rc = set_string(&req->cmdline, value, err, errlen);
            cmdline_flag = true;
            break;
        case OPT_BOOTLOADER:
            rc = parse_bootloader(req, value, err, errlen);
            bootloader = true;
            break;
        case OPT_DEVICE: rc = cli_parse_device(req, o->name, value, err, errlen); break;
        case OPT_STOP_TIMEOUT:
            rc = cli_parse_number(o->name, value, 0, CLI_MAX_STOP_TIMEOUT, " s", &n, err, errlen);
            req->stop_timeout = (unsigned)n;
            break;
        case OPT_CONFIG:
            return cli_usage_error(err, errlen,
                                   "--config: '%s': configuration files are not supported yet "
                                   "in this release (use the options of run)",
                                   value);
        case OPT_GUI: req->gui = true; break;
        case OPT_VNC: rc = parse_vnc(req, value, err, errlen); break;
        case OPT_VNC_PASSWORD_FILE:
            rc = check_password_file(o->name, value, err, errlen);
            if (!rc)
                rc = set_string(&req->vnc_password_file, value, err, errlen);
            break;
        case OPT_WEB: req->web = true; break;
        case OPT_SCREENSHOT_ON_EXIT:
            if (*value == '\0')
                return cli_usage_error(err, errlen, "%s: empty path", o->name);
            rc = set_string(&req->screenshot_on_exit, value, err, errlen);
            break;
        case OPT_CONTROL_SOCKET: rc = parse_control_socket(req, value, err, errlen); break;
        case OPT_HELP: req->command = CLI_CMD_HELP; return 0;
        case OPT_VERSION: req->command = CLI_CMD_VERSION; return 0;
        default: break;
        }
        if (rc)
            return rc;
    }
    int rc = finish_display(req, err, errlen);
    if (rc)
        return rc;
    if (bootloader && (kernel_flags || cmdline_flag))
        return cli_usage_error(err, errlen,
                               "--bootloader cannot be combined with --kernel, --initrd or "
                               "--cmdline");
    if (initrd_flag && !req->kernel)
        return cli_usage_error(err, errlen,
                               "--initrd: needs --kernel (the default guest brings its own "
                               "initramfs)");
    return 0;
}

/* The blk keys --disk takes: "PATH,keys" (the spelling of earlier releases) or "path=PATH,keys"
 * (run's). A first word that is not one of the keys is the path. */
static int parse_serve_disk(struct cli_request *req, const char *spec, char *err, size_t errlen)
{
    static const char *const keys[] = { "path=", "readonly", "cache=", "sync=", "id=", "queues=" };
    bool keyed = false;
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]) && !keyed; k++) {
        size_t n = strlen(keys[k]);
        keyed = !strncmp(spec, keys[k], n) &&
                (keys[k][n - 1] == '=' || spec[n] == ',' || spec[n] == '\0');
    }
    if (!*spec)
        return cli_usage_error(err, errlen, "--disk: empty value (expected PATH[,keys])");
    char *buf = NULL;
    if (!keyed && asprintf(&buf, "path=%s", spec) < 0)
        return cli_out_of_memory(err, errlen);
    int rc = cli_parse_device_keys(req, "virtio-blk", "--disk", keyed ? spec : buf, err, errlen);
    free(buf);
    return rc;
}

/* --shared-dir PATH[,keys] with --tag and --cache: virtio-fs's keys, as --disk takes
 * virtio-blk's. The tag defaults to CLI_SERVE_FS_TAG: QEMU's vhost-user-fs-pci gives the guest
 * its own. tag and cache are checked already; neither holds a comma or a quote. */
static int parse_serve_fs(struct cli_request *req, const char *spec, const char *tag,
                          const char *cache, char *err, size_t errlen)
{
    if (!*spec)
        return cli_usage_error(err, errlen, "--shared-dir: empty value (expected PATH[,readonly])");
    if (!tag && !strstr(spec, ",mountTag="))
        tag = CLI_SERVE_FS_TAG;
    char *keys = NULL;
    if (asprintf(&keys, "sharedDir=%s%s%s%s%s", spec, tag ? ",mountTag=" : "", tag ? tag : "",
                 cache ? ",cache=" : "", cache ? cache : "") < 0)
        return cli_out_of_memory(err, errlen);
    int rc = cli_parse_device_keys(req, "virtio-fs", "--shared-dir", keys, err, errlen);
    free(keys);
    return rc;
}

static const struct {
    const char *name;
    enum cli_fs_sandbox value;
} sandboxes[] = {
    { "chroot", CLI_FS_SANDBOX_CHROOT },
    { "namespace", CLI_FS_SANDBOX_NAMESPACE },
    { "none", CLI_FS_SANDBOX_NONE },
};

/* vmkit serve-device --socket PATH --device SPEC... (and the older --type/--disk/--port/--rate/
 * --queues, and --shared-dir/--tag/--cache/--sandbox for fs): exactly one device. */
static int parse_serve(int argc, char *const argv[], struct cli_request *req, char *err,
                       size_t errlen)
{
    const char *type = NULL;                                   /* --type */
    const char *shared_dir = NULL, *tag = NULL, *cache = NULL; /* fs: --tag, --cache: the last */
    bool have_rate = false, have_queues = false, have_device = false, have_sandbox = false;
    uint64_t rate = 0, queues = 0;
    for (int i = 2; i < argc; i++) {
        const struct opt *o;
        const char *value;
        int rc = next_option(argc, argv, &i, "serve-device", serve_opts, &o, &value, err, errlen);
        if (rc)
            return rc;
        switch (o->id) {
        case OPT_SOCKET:
            if (*value == '\0')
                return cli_usage_error(err, errlen, "--socket: empty path");
            rc = set_string(&req->socket, value, err, errlen);
            break;
        case OPT_DEVICE:
            if (!strncmp(value, "serial", 6) && (value[6] == ',' || !value[6]))
                return cli_usage_error(err, errlen,
                                       "--device serial: serve-device serves virtio devices "
                                       "(virtio-blk, virtio-rng, virtio-console)");
            rc = cli_parse_device(req, o->name, value, err, errlen);
            if (!rc &&
                (req->gpu || req->keyboard_count || req->pointing_count || req->usb_keyboard_count))
                return cli_usage_error(err, errlen,
                                       "--device %s: serve-device cannot serve it (a display and "
                                       "its input are a VM's, with no vhost-user front end here)",
                                       req->gpu                  ? "virtio-gpu"
                                       : req->usb_keyboard_count ? "usb-keyboard"
                                                                 : "virtio-input");
            if (!rc && req->balloon)
                return cli_usage_error(err, errlen,
                                       "--device virtio-balloon: serve-device cannot serve it (it "
                                       "works on the machine's own RAM; no vhost-user front end "
                                       "exists for it)");
            have_device = true;
            break;
        case OPT_TYPE:
            if (type)
                return cli_usage_error(err, errlen, "--type: given twice");
            if (strcmp(value, "rng") && strcmp(value, "blk") && strcmp(value, "console") &&
                strcmp(value, "net") && strcmp(value, "vsock") && strcmp(value, "fs"))
                return cli_usage_error(err, errlen,
                                       "--type: '%s' is not a device type (expected rng, blk, "
                                       "console, net, vsock or fs)",
                                       value);
            type = value;
            break;
        case OPT_DISK: rc = parse_serve_disk(req, value, err, errlen); break;
        case OPT_PORT:
            rc = cli_parse_device_keys(req, "virtio-console", "--port", value, err, errlen);
            break;
        case OPT_NET:
            rc = cli_parse_device_keys(req, "virtio-net", "--net", value, err, errlen);
            break;
        case OPT_CID:
        case OPT_UDS_PATH: {
            /* vhost-device-vsock's spellings of virtio-vsock's cid and udsPath. */
            char keys[4200];
            if (!*value)
                return cli_usage_error(err, errlen, "%s: empty value", o->name);
            snprintf(keys, sizeof(keys), "%s=\"%s\"", o->id == OPT_CID ? "cid" : "udsPath", value);
            rc = cli_parse_device_keys(req, "virtio-vsock", o->name, keys, err, errlen);
            break;
        }
        case OPT_SHARED_DIR:
            if (shared_dir)
                return cli_usage_error(err, errlen,
                                       "--shared-dir: given twice (a server shares one directory; "
                                       "--device virtio-fs,dir=NAME:PATH,... shares several)");
            shared_dir = value;
            break;
        case OPT_TAG:
            rc = cli_check_fs_tag("--tag", value, err, errlen);
            tag = value;
            break;
        case OPT_CACHE: {
            vmk_file_system_cache_mode mode;
            rc = cli_parse_fs_cache("--cache", value, &mode, err, errlen);
            cache = value;
            break;
        }
        case OPT_SANDBOX: {
            size_t k = 0, n = sizeof(sandboxes) / sizeof(sandboxes[0]);
            while (k < n && strcmp(value, sandboxes[k].name))
                k++;
            if (k == n)
                return cli_usage_error(err, errlen,
                                       "--sandbox: '%s' is not namespace, chroot or none", value);
            req->fs_sandbox = sandboxes[k].value;
            have_sandbox = true;
            break;
        }
        case OPT_RATE:
            rc = cli_parse_number("--rate", value, 1, vmk_virtio_entropy_device_max_rate(),
                                  " bytes/s", &rate, err, errlen);
            have_rate = true;
            break;
        case OPT_QUEUES:
            rc = cli_parse_number("--queues", value, 1, vmk_virtio_block_device_max_queue_count(),
                                  "", &queues, err, errlen);
            have_queues = true;
            break;
        case OPT_HELP: req->command = CLI_CMD_HELP; return 0;
        default: break;
        }
        if (rc)
            return rc;
    }
    if ((tag || cache) && !shared_dir)
        return cli_usage_error(err, errlen,
                               "%s: goes with --shared-dir PATH (with --device virtio-fs, give "
                               "mountTag= and cache= there)",
                               tag ? "--tag" : "--cache");
    if (shared_dir) {
        int rc = parse_serve_fs(req, shared_dir, tag, cache, err, errlen);
        if (rc)
            return rc;
    }
    unsigned kinds = (req->disk_count > 0) + req->rng + (req->console_port_count > 0) +
                     (req->net_count > 0) + req->vsock + (req->fs_count > 0);
    /* --type says which device the older options make; it must agree with the rest. */
    if (type && kinds == 0 && !strcmp(type, "rng")) {
        req->rng = true;
        kinds = 1;
    }
    if (type && kinds == 0 && !strcmp(type, "net")) {
        int rc = cli_parse_device_keys(req, "virtio-net", "--type net", "", err, errlen);
        if (rc)
            return rc;
        kinds = 1; /* the NAT, with no forwards */
    }
    const char *what = req->disk_count  ? "blk"
                       : req->rng       ? "rng"
                       : req->net_count ? "net"
                       : req->vsock     ? "vsock"
                       : req->fs_count  ? "fs"
                                        : "console";
    if (kinds > 1 || req->disk_count > 1 || req->net_count > 1 || req->fs_count > 1)
        return cli_usage_error(err, errlen,
                               "serve-device: one device at a time (a server serves one virtio "
                               "device; run one server per device)");
    if (type && kinds == 1 && strcmp(type, what))
        return cli_usage_error(err, errlen, "--type %s: but the device given is %s", type, what);
    if (kinds == 0)
        return cli_usage_error(
            err, errlen,
            type && !strcmp(type, "blk") ? "serve-device --type blk: missing --disk PATH"
            : type && !strcmp(type, "vsock")
                ? "serve-device --type vsock: missing --uds-path PATH (and --cid N)"
            : type && !strcmp(type, "console")
                ? "serve-device --type console: missing --port (e.g. --port stdio)"
            : type && !strcmp(type, "fs")
                ? "serve-device --type fs: missing --shared-dir PATH"
                : "serve-device: missing --device (e.g. --device virtio-rng)");
    if (have_rate && !req->rng)
        return cli_usage_error(err, errlen, "--rate: only for the rng device");
    if (have_rate)
        req->rng_rate = rate;
    if (have_queues && !req->disk_count)
        return cli_usage_error(err, errlen, "--queues: only for the blk device");
    if (have_queues)
        req->disk[0].queues = (unsigned)queues;
    if (have_sandbox && !req->fs_count)
        return cli_usage_error(err, errlen, "--sandbox: only for the fs device");
    if (!req->socket)
        return cli_usage_error(err, errlen, "serve-device: missing --socket PATH");
    (void)have_device;
    return 0;
}

int cli_parse(int argc, char *const argv[], struct cli_request *req, char *err, size_t errlen)
{
    memset(req, 0, sizeof(*req));
    /* The library's defaults, not copies of them. */
    vmk_config *defaults = vmk_config_new();
    if (!defaults)
        return cli_out_of_memory(err, errlen);
    req->cpus = vmk_config_get_cpu_count(defaults);
    req->memory_mib = vmk_config_get_memory_size(defaults) / MIB;
    vmk_config_free(defaults);
    req->stop_timeout = CLI_DEFAULT_STOP_TIMEOUT;
    if (err && errlen > 0)
        err[0] = '\0';

    if (argc < 2 || !argv[1])
        return cli_usage_error(err, errlen,
                               "missing command (usage: vmkit run [options]; see 'vmkit --help')");
    const char *cmd = argv[1];
    int rc = 0;
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        req->command = CLI_CMD_HELP;
    } else if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        req->command = CLI_CMD_VERSION;
        if (argc > 2)
            rc = cli_usage_error(err, errlen, "%s: unexpected argument '%s'", cmd, argv[2]);
    } else if (!strcmp(cmd, "run")) {
        req->command = CLI_CMD_RUN;
        rc = parse_run(argc, argv, req, err, errlen);
    } else if (!strcmp(cmd, "serve-device")) {
        req->command = CLI_CMD_SERVE_DEVICE;
        rc = parse_serve(argc, argv, req, err, errlen);
    } else if (cmd[0] == '-') {
        rc = cli_usage_error(err, errlen,
                             "unknown option '%s' before the command (usage: vmkit run [options]; "
                             "see 'vmkit --help')",
                             cmd);
    } else {
        rc = cli_usage_error(err, errlen, "unknown command '%s' (see 'vmkit --help')", cmd);
    }
    if (rc)
        cli_request_free(req);
    return rc;
}

void cli_request_free(struct cli_request *req)
{
    if (!req)
        return;
    free(req->kernel);
    free(req->efi_store);
    free(req->efi_firmware);
    free(req->initrd);
    free(req->cmdline);
    free(req->socket);
    for (unsigned i = 0; i < req->serial_count; i++)
        free(req->serial[i].path);
    free(req->serial);
    for (unsigned i = 0; i < req->disk_count; i++) {
        free(req->disk[i].path);
        free(req->disk[i].id);
    }
    free(req->disk);
    for (unsigned i = 0; i < req->console_port_count; i++) {
        free(req->console_port[i].path);
        free(req->console_port[i].name);
    }
    free(req->console_port);
    for (unsigned i = 0; i < req->net_count; i++) {
        free(req->net[i].path);
        for (unsigned j = 0; j < req->net[i].forward_count; j++)
            free(req->net[i].forward[j].host_address);
        free(req->net[i].forward);
    }
    free(req->net);
    free(req->vsock_uds_path);
    for (unsigned i = 0; i < req->vsock_port_count; i++)
        free(req->vsock_port[i].path);
    free(req->vsock_port);
    for (unsigned i = 0; i < req->fs_count; i++) {
        free(req->fs[i].tag);
        free(req->fs[i].path);
        for (unsigned j = 0; j < req->fs[i].dir_count; j++) {
            free(req->fs[i].dir[j].name);
            free(req->fs[i].dir[j].path);
        }
        free(req->fs[i].dir);
    }
    free(req->fs);
    free(req->gpu_scanout);
    free(req->vnc);
    free(req->vnc_password_file);
    free(req->screenshot_on_exit);
    free(req->control_socket);
    memset(req, 0, sizeof(*req));
}
