#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MIB                 (UINT64_C(1) << 20)
/* How far above the binary's directory to look for the source tree's guest/out. */
#define GUEST_SEARCH_LEVELS 4

static const char usage_text[] =
    "usage: vmkit run [options]\n"
    "       vmkit serve-device --type rng --socket PATH [--rate BYTES_PER_SEC]\n"
    "       vmkit serve-device --type blk --socket PATH --disk PATH[,readonly]\n"
    "                          [,cache=...][,sync=...][,id=SERIAL] [--queues N]\n"
    "       vmkit serve-device --type console --socket PATH --port PORT...\n"
    "       vmkit --version\n"
    "       vmkit --help\n"
    "\n"
    "Runs a virtual machine on Linux/KVM.\n"
    "\n"
    "Options of run (each also as --option=value):\n"
    "  --cpus N                virtual CPUs (default 1)\n"
    "  --memory MIB            memory in MiB (default 512)\n"
    "  --kernel PATH           Linux kernel: a bzImage or an ELF64 vmlinux\n"
    "  --initrd PATH           initial ramdisk (needs --kernel)\n"
    "  --cmdline STRING        kernel command line\n"
    "  --bootloader linux,kernel=PATH[,initrd=PATH][,cmdline=STRING]\n"
    "                          the three above in one option (not mixed with them)\n"
    "  --device serial,stdio   a serial port on this terminal\n"
    "  --device serial,file=PATH[,append]\n"
    "                          a serial port writing to a file (truncated unless\n"
    "                          append)\n"
    "  --device serial,pty     a serial port on a new pseudo-terminal, raw; its\n"
    "                          path is printed at start (\"vmkit: COM1 on\n"
    "                          /dev/pts/N\"): open it with screen, picocom, cat\n"
    "  --device serial,socket=PATH\n"
    "                          a serial port on a unix socket that vmkit creates\n"
    "                          and listens on, one client at a time (e.g.\n"
    "                          socat -,raw,echo=0 UNIX-CONNECT:PATH); guest\n"
    "                          output that no pty or socket client reads is\n"
    "                          dropped; --device repeats: up to 4 serial ports,\n"
    "                          COM1 to COM4, in the order given\n"
    "  --device virtio-blk,path=PATH[,readonly][,cache=auto|cached|uncached]\n"
    "                          [,sync=full|fsync|none][,id=SERIAL]\n"
    "                          a virtio disk on a raw image file or block device,\n"
    "                          writable unless readonly; cache: auto (default),\n"
    "                          cached (host page cache) or uncached (O_DIRECT);\n"
    "                          sync, what a guest's flush does: full (fdatasync,\n"
    "                          default), fsync or none; id: the serial the guest\n"
    "                          reads (at most 20 printable bytes); --device\n"
    "                          repeats: up to 16 disks, in the order given\n"
    "  --device virtio-rng     a virtio entropy device: the guest's /dev/hwrng,\n"
    "                          fed from the host's getrandom at up to 1 MiB/s\n"
    "                          (no keys; at most one)\n"
    "  --device virtio-serial,stdio|file=PATH[,append]|pty|socket=PATH\n"
    "         [,name=NAME][,console]\n"
    "                          a port of the virtio console device, on this\n"
    "                          terminal, writing to a file, on a new pty or on\n"
    "                          a unix socket, as for serial; name: what the\n"
    "                          guest sees in /sys/class/virtio-ports/*/name (at\n"
    "                          most 255 printable bytes); console: the port is\n"
    "                          hvc0 (at most one); --device repeats: up to 16\n"
    "                          ports of one device, in the order given\n"
    "  --config FILE           a JSON machine description (not supported yet)\n"
    "  -h, --help              print this text\n"
    "  -V, --version           print the version\n"
    "\n"
    "In --bootloader and --device a value ends at the next comma; wrap it in\n"
    "double quotes to hold commas: cmdline=\"console=ttyS0,115200 quiet\" (inside\n"
    "the quotes, \\\" stands for \" and \\\\ for \\). Put the whole option in single\n"
    "quotes so that the shell keeps the double quotes.\n"
    "\n"
    "Without --kernel or --bootloader, run boots the default guest: vmlinuz and\n"
    "initramfs.img from $VMKIT_GUEST_DIR if it is set, else from\n"
    "<bindir>/../share/vmkit/guest, else from the source tree's guest/out, with\n"
    "the command line \"" CLI_DEFAULT_GUEST_CMDLINE "\" unless --cmdline is given.\n"
    "Without --device serial, COM1 is on this terminal (unless a virtio-serial\n"
    "port is): Ctrl-A x stops the VM.\n"
    "SIGINT, SIGTERM or SIGHUP presses the ACPI power button; a second one\n"
    "stops the VM.\n"
    "\n"
    "Exit status: 0 when the VM stopped (the guest powered off or reset), the\n"
    "guest's code when it wrote the debug-exit port 0x501, 1 on a runtime error,\n"
    "2 on a usage error, 128+N when a second signal N stopped the VM.\n"
    "\n"
    "serve-device serves one virtio device over vhost-user, so that another VMM\n"
    "(qemu-system-x86_64 -device vhost-user-rng-pci,chardev=..., or\n"
    "vhost-user-blk-pci,chardev=...,num-queues=N) drives it:\n"
    "  --type TYPE             the device: rng, blk or console\n"
    "  --socket PATH           the unix socket to create and listen on\n"
    "  --rate BYTES_PER_SEC    rng: bytes a guest may draw per second (default\n"
    "                          1048576, bursts of up to 64 KiB)\n"
    "  --disk PATH[,readonly][,cache=auto|cached|uncached][,sync=full|fsync|none]\n"
    "         [,id=SERIAL]     blk (required): the disk image, first (in double\n"
    "                          quotes when it holds commas), then the keys of\n"
    "                          --device virtio-blk\n"
    "  --queues N              blk: request queues the device offers, 1 to 16\n"
    "                          (default 1); the front end may use fewer, not more\n"
    "                          (QEMU's num-queues defaults to the vCPU count: pass\n"
    "                          num-queues=N)\n"
    "  --port stdio|file=PATH[,append]|pty|socket=PATH[,name=NAME][,console]\n"
    "                          console (at least one): a port, with the keys of\n"
    "                          --device virtio-serial; repeats, up to 16 ports\n"
    "It serves one front end at a time and waits for the next when one goes away.\n"
    "SIGINT or SIGTERM stops it and removes the socket; exit status 0 then.\n";

const char *cli_usage(void)
{
    return usage_text;
}

__attribute__((format(printf, 4, 5))) static int fail_with(int status, char *err, size_t errlen,
                                                           const char *fmt, ...)
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

#define usage_error(err, errlen, ...) fail_with(CLI_EXIT_USAGE, err, errlen, __VA_ARGS__)
#define out_of_memory(err, errlen)    fail_with(CLI_EXIT_RUNTIME, err, errlen, "out of memory")

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
static int parse_ranged(const char *flag, const char *text, uint64_t min, uint64_t max,
                        const char *unit, uint64_t *out, char *err, size_t errlen)
{
    uint64_t v = 0;
    switch (parse_decimal(text, &v)) {
    case NUM_BAD: return usage_error(err, errlen, "%s: '%s' is not a number", flag, text);
    case NUM_NEGATIVE:
        return usage_error(err, errlen, "%s: %s%s is below the minimum of %llu%s", flag, text, unit,
                           (unsigned long long)min, unit);
    case NUM_OVERFLOW:
        return usage_error(err, errlen, "%s: %s%s is above the maximum of %llu%s", flag, text, unit,
                           (unsigned long long)max, unit);
    case NUM_OK: break;
    }
    if (v < min)
        return usage_error(err, errlen, "%s: %s%s is below the minimum of %llu%s", flag, text, unit,
                           (unsigned long long)min, unit);
    if (v > max)
        return usage_error(err, errlen, "%s: %s%s is above the maximum of %llu%s", flag, text, unit,
                           (unsigned long long)max, unit);
    *out = v;
    return 0;
}

/* ---- Compound values: TYPE,key=value,key="a,b",flag --------------------------- */

struct kv_iter {
    const char *ctx;   /* names the option in messages: "--device serial" */
    const char *whole; /* the whole value, for messages */
    const char *p;
    bool done;
};

/* Next key[=value]: returns 0 with *key (NULL at the end) and *val (NULL for a bare
 * key) malloc'ed, or an exit status. */
static int kv_next(struct kv_iter *it, char **key, char **val, char *err, size_t errlen)
{
    *key = NULL;
    *val = NULL;
    if (it->done)
        return 0;
    const char *p = it->p;
    size_t klen = strcspn(p, "=,");
    if (klen == 0)
        return usage_error(err, errlen, "%s: empty option in '%s'", it->ctx, it->whole);
    char *k = strndup(p, klen);
    if (!k)
        return out_of_memory(err, errlen);
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
                usage_error(err, errlen, "%s: %s: missing closing quote in '%s'", it->ctx, k,
                            it->whole);
                goto bad;
            }
            p++;
            if (*p != ',' && *p != '\0') {
                usage_error(err, errlen, "%s: %s: text after the closing quote in '%s'", it->ctx, k,
                            it->whole);
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
    return out_of_memory(err, errlen);
bad:
    free(k);
    free(v);
    return CLI_EXIT_USAGE;
}

/* Reads the leading TYPE of a compound value. */
static int kv_type(struct kv_iter *it, const char *expect, char **type, char *err, size_t errlen)
{
    if (*it->whole == '\0')
        return usage_error(err, errlen, "%s: empty value (expected %s)", it->ctx, expect);
    char *val = NULL;
    int rc = kv_next(it, type, &val, err, errlen);
    if (rc)
        return rc;
    if (val) {
        rc = usage_error(err, errlen, "%s: '%s=%s' is not a type (expected %s)", it->ctx, *type,
                         val, expect);
        free(val);
        free(*type);
        *type = NULL;
    }
    return rc;
}

/* ---- The options of run ------------------------------------------------------- */

static int set_string(char **dst, const char *src, char *err, size_t errlen)
{
    char *copy = strdup(src);
    if (!copy)
        return out_of_memory(err, errlen);
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

#define BOOTLOADER_FORM "linux,kernel=PATH[,initrd=PATH][,cmdline=STRING]"

static int parse_bootloader(struct cli_request *req, const char *spec, char *err, size_t errlen)
{
    struct kv_iter it = { .ctx = "--bootloader", .whole = spec, .p = spec };
    char *type = NULL, *key = NULL, *val = NULL;
    char *kernel = NULL, *initrd = NULL, *cmdline = NULL;
    int rc = kv_type(&it, BOOTLOADER_FORM, &type, err, errlen);
    if (rc)
        return rc;
    if (strcmp(type, "linux") != 0) {
        rc = usage_error(err, errlen,
                         "--bootloader: unknown boot loader type '%s' "
                         "(this release knows: linux)",
                         type);
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
            rc = usage_error(err, errlen,
                             "--bootloader linux: unknown key '%s' (known: kernel, "
                             "initrd, cmdline; quote a value that holds commas)",
                             key);
            break;
        }
        if (!val) {
            rc =
                usage_error(err, errlen, "--bootloader linux: %s needs a value (%s=...)", key, key);
            break;
        }
        if (*slot) {
            rc = usage_error(err, errlen, "--bootloader linux: %s given twice", key);
            break;
        }
        if (slot != &cmdline && *val == '\0') {
            rc = usage_error(err, errlen, "--bootloader linux: %s= needs a path", key);
            break;
        }
        *slot = val;
        val = NULL;
    }
    if (!rc && !kernel)
        rc = usage_error(err, errlen, "--bootloader linux: missing kernel=PATH in '%s'", spec);
    if (!rc) {
        /* A later --bootloader replaces an earlier one as a whole. */
        move_string(&req->kernel, &kernel);
        move_string(&req->initrd, &initrd);
        move_string(&req->cmdline, &cmdline);
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

struct choice {
    const char *name;
    int value;
};

static const struct choice cache_choices[] = {
    { "auto", VMK_DISK_CACHING_AUTOMATIC },
    { "cached", VMK_DISK_CACHING_CACHED },
    { "uncached", VMK_DISK_CACHING_UNCACHED },
};

static const struct choice sync_choices[] = {
    { "full", VMK_DISK_SYNC_FULL },
    { "fsync", VMK_DISK_SYNC_FSYNC },
    { "none", VMK_DISK_SYNC_NONE },
};

/* Looks val up among n choices; the message lists them all. */
static int parse_choice(const char *ctx, const char *key, const char *val,
                        const struct choice *choices, size_t n, int *out, char *err, size_t errlen)
{
    char names[128] = "", *p = names;
    for (size_t i = 0; i < n; i++) {
        if (val && !strcmp(val, choices[i].name)) {
            *out = choices[i].value;
            return 0;
        }
        p += snprintf(p, sizeof(names) - (size_t)(p - names), "%s%s", i ? ", " : "",
                      choices[i].name);
    }
    if (!val)
        return usage_error(err, errlen, "%s: %s needs a value (one of %s)", ctx, key, names);
    return usage_error(err, errlen, "%s: %s '%s' is not one of %s", ctx, key, val, names);
}

#define VIRTIO_BLK_KEYS "path, readonly, cache, sync, id"

/* The keys after "virtio-blk,"; appends one disk to req. */
static int parse_virtio_blk(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    static const char ctx[] = "--device virtio-blk";
    struct cli_disk d = { .caching = VMK_DISK_CACHING_AUTOMATIC, .sync = VMK_DISK_SYNC_FULL };
    bool have_cache = false, have_sync = false;
    char *key = NULL, *val = NULL;
    int rc = 0;
    it->ctx = ctx;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "readonly")) {
            if (val) {
                rc = usage_error(err, errlen, "%s: readonly takes no value (got '%s')", ctx, val);
                break;
            }
            if (d.read_only) {
                rc = usage_error(err, errlen, "%s: readonly given twice", ctx);
                break;
            }
            d.read_only = true;
        } else if (!strcmp(key, "path") || !strcmp(key, "id")) {
            char **slot = key[0] == 'p' ? &d.path : &d.id;
            if (!val || *val == '\0') {
                rc = usage_error(err, errlen, "%s: %s= needs a value (%s=%s)", ctx, key, key,
                                 slot == &d.path ? "PATH" : "SERIAL");
                break;
            }
            if (*slot) {
                rc = usage_error(err, errlen, "%s: %s given twice", ctx, key);
                break;
            }
            *slot = val;
            val = NULL;
        } else if (!strcmp(key, "cache") || !strcmp(key, "sync")) {
            bool is_cache = key[0] == 'c';
            bool *seen = is_cache ? &have_cache : &have_sync;
            if (*seen) {
                rc = usage_error(err, errlen, "%s: %s given twice", ctx, key);
                break;
            }
            int mode = 0;
            rc = is_cache ? parse_choice(ctx, key, val, cache_choices,
                                         sizeof(cache_choices) / sizeof(cache_choices[0]), &mode,
                                         err, errlen)
                          : parse_choice(ctx, key, val, sync_choices,
                                         sizeof(sync_choices) / sizeof(sync_choices[0]), &mode, err,
                                         errlen);
            if (rc)
                break;
            *seen = true;
            if (is_cache)
                d.caching = (vmk_disk_caching_mode)mode;
            else
                d.sync = (vmk_disk_sync_mode)mode;
        } else {
            rc = usage_error(err, errlen,
                             "%s: unknown key '%s' (known: " VIRTIO_BLK_KEYS
                             "; quote a value that holds commas)",
                             ctx, key);
            break;
        }
    }
    if (!rc && !d.path)
        rc = usage_error(err, errlen, "%s: missing path=PATH in '%s'", ctx, it->whole);
    if (!rc && req->disk_count >= CLI_MAX_DISKS)
        rc = usage_error(err, errlen, "%s: at most %d disks", ctx, CLI_MAX_DISKS);
    if (!rc) {
        req->disk[req->disk_count++] = d;
        d.path = NULL;
        d.id = NULL;
    }
    free(key);
    free(val);
    free(d.path);
    free(d.id);
    return rc;
}

/* What follows "virtio-rng": nothing; a machine has at most one. */
static int parse_virtio_rng(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    static const char ctx[] = "--device virtio-rng";
    char *key = NULL, *val = NULL;
    it->ctx = ctx;
    int rc = kv_next(it, &key, &val, err, errlen);
    if (!rc && key)
        rc = usage_error(err, errlen, "%s: takes no keys (got '%s')", ctx, key);
    else if (!rc && req->rng)
        rc = usage_error(err, errlen, "%s: given twice (a machine has at most one)", ctx);
    if (!rc)
        req->rng = true;
    free(key);
    free(val);
    return rc;
}

/* Whether a serial port or a console port already reads the terminal. */
static bool stdio_taken(const struct cli_request *req)
{
    for (unsigned i = 0; i < req->serial_count && i < CLI_MAX_SERIAL; i++)
        if (req->serial[i].kind == CLI_SERIAL_STDIO)
            return true;
    for (unsigned i = 0; i < req->vport_count && i < CLI_MAX_VPORTS; i++)
        if (req->vport[i].kind == CLI_SERIAL_STDIO)
            return true;
    return false;
}

/* The keys that choose a port's host side, shared by serial and virtio-serial. */
struct port_keys {
    bool stdio, pty, append;
    char *file;   /* file=PATH */
    char *socket; /* socket=PATH */
};

/* Takes key (with val, which it may keep: *val is then NULL) when it is a host-side
 * key; *taken says whether it was. Returns 0 or an exit status. */
static int port_key(struct port_keys *k, const char *ctx, const char *key, char **val, bool *taken,
                    char *err, size_t errlen)
{
    bool *flag = !strcmp(key, "stdio")    ? &k->stdio
                 : !strcmp(key, "pty")    ? &k->pty
                 : !strcmp(key, "append") ? &k->append
                                          : NULL;
    char **str = !strcmp(key, "file") ? &k->file : !strcmp(key, "socket") ? &k->socket : NULL;
    *taken = flag || str;
    if (flag && *val)
        return usage_error(err, errlen, "%s: %s takes no value (got '%s')", ctx, key, *val);
    if (flag && *flag)
        return usage_error(err, errlen, "%s: %s given twice", ctx, key);
    if (str && (!*val || !**val))
        return usage_error(err, errlen, "%s: %s= needs a path", ctx, key);
    if (str && *str)
        return usage_error(err, errlen, "%s: %s given twice", ctx, key);
    if (flag) {
        *flag = true;
    } else if (str) {
        *str = *val;
        *val = NULL;
    }
    return 0;
}

/* Checks that exactly one host side was chosen; sets *kind and moves its path to *path. */
static int port_keys_finish(struct port_keys *k, const char *ctx, enum cli_serial_kind *kind,
                            char **path, char *err, size_t errlen)
{
    const char *chosen[4];
    unsigned n = 0;
    if (k->stdio)
        chosen[n++] = "stdio";
    if (k->file)
        chosen[n++] = "file=";
    if (k->pty)
        chosen[n++] = "pty";
    if (k->socket)
        chosen[n++] = "socket=";
    if (n == 0)
        return usage_error(err, errlen, "%s: needs stdio, file=PATH, pty or socket=PATH", ctx);
    if (n > 1)
        return usage_error(err, errlen, "%s: %s and %s cannot be combined", ctx, chosen[0],
                           chosen[1]);
    if (k->append && !k->file)
        return usage_error(err, errlen, "%s: append needs file=PATH", ctx);
    *kind = k->stdio  ? CLI_SERIAL_STDIO
            : k->pty  ? CLI_SERIAL_PTY
            : k->file ? CLI_SERIAL_FILE
                      : CLI_SERIAL_SOCKET;
    *path = k->file ? k->file : k->socket;
    k->file = k->socket = NULL;
    return 0;
}

/* The keys of one console port ("--device virtio-serial,..." or serve-device's
 * "--port ..."): appends the port to the console device. ctx names the option. */
static int parse_console_port(struct cli_request *req, struct kv_iter *it, const char *ctx,
                              char *err, size_t errlen)
{
    struct cli_vport v = { .kind = CLI_SERIAL_FILE };
    struct port_keys k = { 0 };
    char *key = NULL, *val = NULL;
    int rc;
    it->ctx = ctx;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        bool taken;
        rc = port_key(&k, ctx, key, &val, &taken, err, errlen);
        if (rc)
            break;
        if (taken)
            continue;
        bool is_console = !strcmp(key, "console"), is_name = !strcmp(key, "name");
        if (is_console && val)
            rc = usage_error(err, errlen, "%s: %s takes no value (got '%s')", ctx, key, val);
        else if (is_console && v.console)
            rc = usage_error(err, errlen, "%s: %s given twice", ctx, key);
        else if (is_name && (!val || !*val))
            rc = usage_error(err, errlen, "%s: %s= needs a value", ctx, key);
        else if (is_name && v.name)
            rc = usage_error(err, errlen, "%s: %s given twice", ctx, key);
        else if (!is_console && !is_name)
            rc = usage_error(err, errlen,
                             "%s: unknown key '%s' (known: stdio, file, append, pty, socket, "
                             "name, console)",
                             ctx, key);
        if (rc)
            break;
        if (is_console) {
            v.console = true;
        } else {
            v.name = val;
            val = NULL;
        }
    }
    if (rc || (rc = port_keys_finish(&k, ctx, &v.kind, &v.path, err, errlen)))
        goto out;
    v.append = k.append;
    if (req->vport_count == CLI_MAX_VPORTS)
        rc = usage_error(err, errlen, "%s: at most %d ports", ctx, CLI_MAX_VPORTS);
    /* Two ports reading one terminal would steal each other's keystrokes. */
    else if (v.kind == CLI_SERIAL_STDIO && stdio_taken(req))
        rc = usage_error(err, errlen, "%s,stdio: the terminal is already another port's", ctx);
    if (rc)
        goto out;
    for (unsigned i = 0; v.console && i < req->vport_count; i++)
        if (req->vport[i].console) {
            rc = usage_error(err, errlen, "%s: only one port can be the console (port %u is)", ctx,
                             i + 1);
            goto out;
        }
    req->vport[req->vport_count++] = v;
    v.path = v.name = NULL;
out:
    free(key);
    free(val);
    free(k.file);
    free(k.socket);
    free(v.path);
    free(v.name);
    return rc;
}

/* The keys after "serial,": appends one serial port. */
static int parse_serial(struct cli_request *req, struct kv_iter *it, char *err, size_t errlen)
{
    static const char ctx[] = "--device serial";
    struct cli_serial port = { .kind = CLI_SERIAL_FILE };
    struct port_keys k = { 0 };
    char *key = NULL, *val = NULL;
    int rc;
    it->ctx = ctx;
    for (;;) {
        free(key);
        free(val);
        rc = kv_next(it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        bool taken;
        rc = port_key(&k, ctx, key, &val, &taken, err, errlen);
        if (!rc && !taken)
            rc = usage_error(err, errlen,
                             "%s: unknown key '%s' (known: stdio, file, append, pty, socket)", ctx,
                             key);
        if (rc)
            break;
    }
    if (rc || (rc = port_keys_finish(&k, ctx, &port.kind, &port.path, err, errlen)))
        goto out;
    port.append = k.append;
    if (req->serial_count == CLI_MAX_SERIAL) {
        rc = usage_error(err, errlen, "%s: at most %d serial ports (COM1 to COM%d)", ctx,
                         CLI_MAX_SERIAL, CLI_MAX_SERIAL);
        goto out;
    }
    for (unsigned i = 0; port.kind == CLI_SERIAL_STDIO && i < req->vport_count; i++) {
        if (req->vport[i].kind == CLI_SERIAL_STDIO) {
            rc = usage_error(err, errlen,
                             "%s,stdio: the terminal is already virtio-serial port %u's", ctx,
                             i + 1);
            goto out;
        }
    }
    for (unsigned i = 0; port.kind == CLI_SERIAL_STDIO && i < req->serial_count; i++) {
        /* Two ports reading one terminal would steal each other's keystrokes. */
        if (req->serial[i].kind == CLI_SERIAL_STDIO) {
            rc = usage_error(err, errlen,
                             "%s,stdio: only one serial port can be on stdio (COM%u already is)",
                             ctx, i + 1);
            goto out;
        }
    }
    req->serial[req->serial_count++] = port;
    port.path = NULL;
out:
    free(key);
    free(val);
    free(k.file);
    free(k.socket);
    free(port.path);
    return rc;
}

static int parse_device(struct cli_request *req, const char *spec, char *err, size_t errlen)
{
    struct kv_iter it = { .ctx = "--device", .whole = spec, .p = spec };
    char *type = NULL;
    int rc = kv_type(&it, "TYPE,key=value,...", &type, err, errlen);
    if (rc)
        return rc;
    if (!strcmp(type, "virtio-blk"))
        rc = parse_virtio_blk(req, &it, err, errlen);
    else if (!strcmp(type, "virtio-rng"))
        rc = parse_virtio_rng(req, &it, err, errlen);
    else if (!strcmp(type, "virtio-serial"))
        rc = parse_console_port(req, &it, "--device virtio-serial", err, errlen);
    else if (!strcmp(type, "serial"))
        rc = parse_serial(req, &it, err, errlen);
    else
        rc = usage_error(err, errlen,
                         "--device: unknown device type '%s' "
                         "(this release knows: serial, virtio-blk, virtio-rng, virtio-serial)",
                         type);
    free(type);
    return rc;
}

enum opt_id {
    OPT_CPUS,
    OPT_MEMORY,
    OPT_KERNEL,
    OPT_INITRD,
    OPT_CMDLINE,
    OPT_BOOTLOADER,
    OPT_DEVICE,
    OPT_CONFIG,
    OPT_HELP,
    OPT_VERSION,
};

struct opt {
    const char *name;
    const char *metavar; /* NULL: takes no value */
    enum opt_id id;
};

static const struct opt run_opts[] = {
    { "--cpus", "N", OPT_CPUS },
    { "--memory", "MIB", OPT_MEMORY },
    { "--kernel", "PATH", OPT_KERNEL },
    { "--initrd", "PATH", OPT_INITRD },
    { "--cmdline", "STRING", OPT_CMDLINE },
    { "--bootloader", BOOTLOADER_FORM, OPT_BOOTLOADER },
    { "--device", "TYPE,key=value,...", OPT_DEVICE },
    { "--config", "FILE", OPT_CONFIG },
    { "--help", NULL, OPT_HELP },
    { "-h", NULL, OPT_HELP },
    { "--version", NULL, OPT_VERSION },
    { "-V", NULL, OPT_VERSION },
};

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(run_opts) / sizeof(run_opts[0]); i++) {
        if (strlen(run_opts[i].name) == len && !strncmp(run_opts[i].name, name, len))
            return &run_opts[i];
    }
    return NULL;
}

static int parse_run(int argc, char *const argv[], struct cli_request *req, char *err,
                     size_t errlen)
{
    bool kernel_flags = false, cmdline_flag = false, bootloader = false, initrd_flag = false;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0')
            return usage_error(err, errlen,
                               "run: unexpected argument '%s' (options start "
                               "with --; see 'vmkit --help')",
                               arg);
        /* Only long options take the --name=value form. */
        const char *eq = arg[1] == '-' ? strchr(arg, '=') : NULL;
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct opt *o = find_opt(arg, name_len);
        if (!o)
            return usage_error(err, errlen, "run: unknown option '%.*s' (see 'vmkit --help')",
                               (int)name_len, arg);
        const char *value = NULL;
        if (!o->metavar) {
            if (eq)
                return usage_error(err, errlen, "%s: takes no value (got '%s')", o->name, eq + 1);
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return usage_error(err, errlen, "%s: missing value (%s %s)", o->name, o->name,
                               o->metavar);
        }

        int rc = 0;
        uint64_t n = 0;
        switch (o->id) {
        case OPT_CPUS:
            rc = parse_ranged(o->name, value, vmk_config_min_cpu_count(),
                              vmk_config_max_cpu_count(), "", &n, err, errlen);
            if (!rc)
                req->cpus = (unsigned)n;
            break;
        case OPT_MEMORY:
            /* The range in whole MiB that lies inside the library's byte range. */
            rc = parse_ranged(o->name, value, (vmk_config_min_memory_size() + MIB - 1) / MIB,
                              vmk_config_max_memory_size() / MIB, " MiB", &n, err, errlen);
            if (!rc)
                req->memory_mib = n;
            break;
        case OPT_KERNEL:
        case OPT_INITRD:
            if (*value == '\0')
                return usage_error(err, errlen, "%s: empty path", o->name);
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
        case OPT_DEVICE: rc = parse_device(req, value, err, errlen); break;
        case OPT_CONFIG:
            return usage_error(err, errlen,
                               "--config: '%s': configuration files are not "
                               "supported yet in this release (use the options of run)",
                               value);
        case OPT_HELP: req->command = CLI_CMD_HELP; return 0;
        case OPT_VERSION: req->command = CLI_CMD_VERSION; return 0;
        }
        if (rc)
            return rc;
    }
    if (bootloader && (kernel_flags || cmdline_flag))
        return usage_error(err, errlen,
                           "--bootloader cannot be combined with --kernel, --initrd "
                           "or --cmdline");
    if (initrd_flag && !req->kernel)
        return usage_error(err, errlen,
                           "--initrd: needs --kernel (the default guest brings "
                           "its own initramfs)");
    return 0;
}

#define SERVE_DISK_FORM "PATH[,readonly][,cache=MODE][,sync=MODE][,id=SERIAL]"
#define SERVE_PORT_FORM "stdio|file=PATH|pty|socket=PATH[,name=NAME][,console]"

/* serve-device --disk: the path first, then the keys of --device virtio-blk (but path). */
static int parse_serve_disk(struct cli_request *req, const char *spec, char *err, size_t errlen)
{
    static const char ctx[] = "--disk";
    struct cli_disk d = { .caching = VMK_DISK_CACHING_AUTOMATIC, .sync = VMK_DISK_SYNC_FULL };
    bool have_cache = false, have_sync = false;
    char *buf = NULL, *key = NULL, *val = NULL;
    if (*spec == '\0')
        return usage_error(err, errlen, "--disk: empty value (expected " SERVE_DISK_FORM ")");
    /* Read the path as the value of a "path" key, so that quoting works as elsewhere. */
    if (asprintf(&buf, "path=%s", spec) < 0)
        return out_of_memory(err, errlen);
    struct kv_iter it = { .ctx = ctx, .whole = spec, .p = buf };
    int rc = kv_next(&it, &key, &val, err, errlen);
    if (!rc && (!val || *val == '\0'))
        rc = usage_error(err, errlen, "--disk: empty path in '%s' (expected " SERVE_DISK_FORM ")",
                         spec);
    if (!rc) {
        d.path = val;
        val = NULL;
    }
    while (!rc) {
        free(key);
        free(val);
        rc = kv_next(&it, &key, &val, err, errlen);
        if (rc || !key)
            break;
        if (!strcmp(key, "readonly")) {
            if (val)
                rc = usage_error(err, errlen, "%s: readonly takes no value (got '%s')", ctx, val);
            else if (d.read_only)
                rc = usage_error(err, errlen, "%s: readonly given twice", ctx);
            d.read_only = true;
        } else if (!strcmp(key, "id")) {
            if (!val || *val == '\0')
                rc = usage_error(err, errlen, "%s: id= needs a value (id=SERIAL)", ctx);
            else if (d.id)
                rc = usage_error(err, errlen, "%s: id given twice", ctx);
            else if (strlen(val) > CLI_MAX_DISK_ID)
                rc = usage_error(err, errlen, "%s: id '%s' is longer than %u bytes", ctx, val,
                                 CLI_MAX_DISK_ID);
            for (const char *c = val; !rc && *c; c++)
                if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
                    rc = usage_error(err, errlen, "%s: id holds a byte that is not printable ASCII",
                                     ctx);
            if (!rc) {
                d.id = val;
                val = NULL;
            }
        } else if (!strcmp(key, "cache") || !strcmp(key, "sync")) {
            bool is_cache = key[0] == 'c';
            bool *seen = is_cache ? &have_cache : &have_sync;
            int mode = 0;
            if (*seen) {
                rc = usage_error(err, errlen, "%s: %s given twice", ctx, key);
                break;
            }
            rc = is_cache ? parse_choice(ctx, key, val, cache_choices,
                                         sizeof(cache_choices) / sizeof(cache_choices[0]), &mode,
                                         err, errlen)
                          : parse_choice(ctx, key, val, sync_choices,
                                         sizeof(sync_choices) / sizeof(sync_choices[0]), &mode, err,
                                         errlen);
            *seen = true;
            if (is_cache)
                d.caching = (vmk_disk_caching_mode)mode;
            else
                d.sync = (vmk_disk_sync_mode)mode;
        } else {
            rc = usage_error(err, errlen,
                             "%s: unknown key '%s' (known: readonly, cache, sync, id; the path "
                             "comes first; quote a path that holds commas)",
                             ctx, key);
        }
    }
    if (!rc && req->serve_disk.path)
        rc = usage_error(err, errlen, "--disk: given twice (a device serves one disk)");
    if (!rc) {
        req->serve_disk = d;
        d.path = NULL;
        d.id = NULL;
    }
    free(buf);
    free(key);
    free(val);
    free(d.path);
    free(d.id);
    return rc;
}

/* vmkit serve-device --type TYPE --socket PATH [--rate N] [--disk SPEC] [--queues N] */
static int parse_serve(int argc, char *const argv[], struct cli_request *req, char *err,
                       size_t errlen)
{
    bool have_type = false, have_rate = false, have_queues = false;
    struct kv_iter port;
    req->rate = CLI_DEFAULT_RNG_RATE;
    req->queues = CLI_DEFAULT_BLK_QUEUES;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            req->command = CLI_CMD_HELP;
            return 0;
        }
        if (arg[0] != '-' || arg[1] != '-')
            return usage_error(err, errlen,
                               "serve-device: unexpected argument '%s' (see 'vmkit --help')", arg);
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        static const char *const names[] = { "--type", "--socket", "--rate",
                                             "--disk", "--queues", "--port" };
        static const char *const metavars[] = { "TYPE",          "PATH", "BYTES_PER_SEC",
                                                SERVE_DISK_FORM, "N",    SERVE_PORT_FORM };
        int which = -1;
        uint64_t n = 0;
        for (int k = 0; k < 6; k++)
            if (strlen(names[k]) == name_len && !strncmp(names[k], arg, name_len))
                which = k;
        if (which < 0)
            return usage_error(err, errlen,
                               "serve-device: unknown option '%.*s' (see 'vmkit --help')",
                               (int)name_len, arg);
        const char *value;
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return usage_error(err, errlen, "%s: missing value (%s %s)", names[which], names[which],
                               metavars[which]);
        int rc = 0;
        switch (which) {
        case 0:
            if (have_type)
                return usage_error(err, errlen, "--type: given twice");
            if (!strcmp(value, "rng")) {
                req->serve_type = CLI_SERVE_RNG;
            } else if (!strcmp(value, "blk")) {
                req->serve_type = CLI_SERVE_BLK;
            } else if (!strcmp(value, "console")) {
                req->serve_type = CLI_SERVE_CONSOLE;
            } else {
                return usage_error(err, errlen,
                                   "--type: '%s' is not a device type (expected rng, blk or "
                                   "console)",
                                   value);
            }
            have_type = true;
            break;
        case 1:
            if (*value == '\0')
                return usage_error(err, errlen, "--socket: empty path");
            rc = set_string(&req->socket, value, err, errlen);
            break;
        case 2:
            rc = parse_ranged("--rate", value, 1, CLI_MAX_RNG_RATE, " bytes/s", &req->rate, err,
                              errlen);
            have_rate = true;
            break;
        case 3: rc = parse_serve_disk(req, value, err, errlen); break;
        case 5:
            port = (struct kv_iter){ .ctx = "--port", .whole = value, .p = value };
            rc = parse_console_port(req, &port, "--port", err, errlen);
            break;
        default:
            rc = parse_ranged("--queues", value, 1, CLI_MAX_BLK_QUEUES, "", &n, err, errlen);
            req->queues = (unsigned)n;
            have_queues = true;
            break;
        }
        if (rc)
            return rc;
    }
    if (!have_type)
        return usage_error(err, errlen, "serve-device: missing --type (e.g. --type rng)");
    if (!req->socket)
        return usage_error(err, errlen, "serve-device: missing --socket PATH");
    /* An option another type would take is a mistake worth saying, not ignoring. */
    if (req->serve_type != CLI_SERVE_RNG && have_rate)
        return usage_error(err, errlen, "--rate: only for --type rng");
    if (req->serve_type != CLI_SERVE_BLK && req->serve_disk.path)
        return usage_error(err, errlen, "--disk: only for --type blk");
    if (req->serve_type != CLI_SERVE_BLK && have_queues)
        return usage_error(err, errlen, "--queues: only for --type blk");
    if (req->serve_type != CLI_SERVE_CONSOLE && req->vport_count)
        return usage_error(err, errlen, "--port: only for --type console");
    if (req->serve_type == CLI_SERVE_BLK && !req->serve_disk.path)
        return usage_error(err, errlen, "serve-device --type blk: missing --disk PATH");
    if (req->serve_type == CLI_SERVE_CONSOLE && !req->vport_count)
        return usage_error(err, errlen,
                           "serve-device --type console: missing --port (e.g. --port stdio)");
    return 0;
}

int cli_parse(int argc, char *const argv[], struct cli_request *req, char *err, size_t errlen)
{
    memset(req, 0, sizeof(*req));
    req->cpus = CLI_DEFAULT_CPUS;
    req->memory_mib = CLI_DEFAULT_MEMORY_MIB;
    if (err && errlen > 0)
        err[0] = '\0';

    if (argc < 2 || !argv[1])
        return usage_error(err, errlen,
                           "missing command (usage: vmkit run [options]; "
                           "see 'vmkit --help')");
    const char *cmd = argv[1];
    int rc = 0;
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        req->command = CLI_CMD_HELP;
    } else if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        req->command = CLI_CMD_VERSION;
        if (argc > 2)
            rc = usage_error(err, errlen, "%s: unexpected argument '%s'", cmd, argv[2]);
    } else if (!strcmp(cmd, "run")) {
        req->command = CLI_CMD_RUN;
        rc = parse_run(argc, argv, req, err, errlen);
    } else if (!strcmp(cmd, "serve-device")) {
        req->command = CLI_CMD_SERVE_DEVICE;
        rc = parse_serve(argc, argv, req, err, errlen);
    } else if (cmd[0] == '-') {
        rc = usage_error(err, errlen,
                         "unknown option '%s' before the command (usage: "
                         "vmkit run [options]; see 'vmkit --help')",
                         cmd);
    } else {
        rc = usage_error(err, errlen, "unknown command '%s' (see 'vmkit --help')", cmd);
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
    free(req->initrd);
    free(req->cmdline);
    free(req->socket);
    free(req->serve_disk.path);
    free(req->serve_disk.id);
    for (unsigned i = 0; i < req->serial_count && i < CLI_MAX_SERIAL; i++)
        free(req->serial[i].path);
    for (unsigned i = 0; i < req->disk_count && i < CLI_MAX_DISKS; i++) {
        free(req->disk[i].path);
        free(req->disk[i].id);
    }
    for (unsigned i = 0; i < req->vport_count && i < CLI_MAX_VPORTS; i++) {
        free(req->vport[i].path);
        free(req->vport[i].name);
    }
    memset(req, 0, sizeof(*req));
}

/* ---- The default guest -------------------------------------------------------- */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Returns 1 with both paths set when dir holds the guest, 0 when not, -1 when out of
 * memory. */
static int guest_in(const char *dir, char **kernel, char **initrd)
{
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    char *k = NULL, *i = NULL;
    if (asprintf(&k, "%s%svmlinuz", dir, sep) < 0)
        return -1;
    if (asprintf(&i, "%s%sinitramfs.img", dir, sep) < 0) {
        free(k);
        return -1;
    }
    if (is_file(k) && is_file(i)) {
        *kernel = k;
        *initrd = i;
        return 1;
    }
    free(k);
    free(i);
    return 0;
}

/* Cuts the last component off an absolute path in place ("/a/b" -> "/a", "/a" -> "/"). */
static void cut_last(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return;
    if (slash == path)
        slash[1] = '\0';
    else
        *slash = '\0';
}

#define NO_GUEST_HINT "build it with guest/build.sh or pass --kernel"

int cli_find_default_guest(const char *exe_path, char **kernel, char **initrd, char *err,
                           size_t errlen)
{
    *kernel = NULL;
    *initrd = NULL;
    const char *env = getenv("VMKIT_GUEST_DIR");
    if (env && *env) {
        /* An explicit directory is the only place: falling back would hide a typo. */
        int found = guest_in(env, kernel, initrd);
        if (found < 0)
            return out_of_memory(err, errlen);
        if (found)
            return 0;
        return usage_error(err, errlen,
                           "no default guest found (looked for vmlinuz and "
                           "initramfs.img in $VMKIT_GUEST_DIR=%s); " NO_GUEST_HINT,
                           env);
    }
    if (!exe_path || exe_path[0] != '/')
        return usage_error(err, errlen,
                           "no default guest found (the program's own path is "
                           "unknown; set VMKIT_GUEST_DIR); " NO_GUEST_HINT);

    int rc = 0, found = 0;
    char *exe_dir = strdup(exe_path), *dir = NULL, *candidate = NULL;
    if (!exe_dir)
        return out_of_memory(err, errlen);
    cut_last(exe_dir);
    dir = strdup(exe_dir);
    if (!dir)
        goto oom;
    cut_last(dir);
    if (asprintf(&candidate, "%s%sshare/vmkit/guest", dir, strcmp(dir, "/") ? "/" : "") < 0) {
        candidate = NULL;
        goto oom;
    }
    found = guest_in(candidate, kernel, initrd);
    /* The build tree: <repo>/build/tools/vmkit/vmkit finds <repo>/guest/out. */
    strcpy(dir, exe_dir);
    for (int level = 0; !found && level <= GUEST_SEARCH_LEVELS; level++) {
        char *out_dir = NULL;
        if (asprintf(&out_dir, "%s%sguest/out", dir, strcmp(dir, "/") ? "/" : "") < 0)
            goto oom;
        found = guest_in(out_dir, kernel, initrd);
        free(out_dir);
        cut_last(dir);
    }
    if (found < 0)
        goto oom;
    if (!found)
        rc = usage_error(err, errlen,
                         "no default guest found (looked for vmlinuz and "
                         "initramfs.img in %s and in guest/out of %s and up to %d levels "
                         "above); " NO_GUEST_HINT,
                         candidate, exe_dir, GUEST_SEARCH_LEVELS);
    goto out;
oom:
    rc = out_of_memory(err, errlen);
out:
    free(candidate);
    free(dir);
    free(exe_dir);
    return rc;
}

/* ---- The machine -------------------------------------------------------------- */

/* Reports a failed library call on a disk: the library's message when it gave one. */
static int disk_error(vmk_result r, vmk_error *verr, char *err, size_t errlen)
{
    int status = r == VMK_ERR_NO_MEMORY ? CLI_EXIT_RUNTIME : CLI_EXIT_USAGE;
    fail_with(status, err, errlen, "--device virtio-blk: %s",
              verr ? vmk_error_message(verr) : vmk_result_string(r));
    vmk_error_free(verr);
    return status;
}

static int add_disk(vmk_config *cfg, const struct cli_disk *d, char *err, size_t errlen)
{
    vmk_error *verr = NULL;
    vmk_storage_attachment *att = vmk_disk_image_attachment_new(d->path, d->read_only);
    if (!att)
        return disk_error(VMK_ERR_NO_MEMORY, NULL, err, errlen);
    vmk_result r = vmk_disk_image_attachment_set_caching_mode(att, d->caching);
    if (r == VMK_OK)
        r = vmk_disk_image_attachment_set_synchronization_mode(att, d->sync);
    if (r != VMK_OK) {
        vmk_storage_attachment_free(att);
        return disk_error(r, NULL, err, errlen);
    }
    vmk_storage_device *dev = vmk_virtio_block_device_new(att); /* owns att, even on failure */
    if (!dev)
        return disk_error(VMK_ERR_NO_MEMORY, NULL, err, errlen);
    if (d->id) {
        r = vmk_virtio_block_device_set_identifier(dev, d->id);
        if (r != VMK_OK) {
            vmk_storage_device_free(dev);
            return disk_error(r, verr, err, errlen);
        }
    }
    r = vmk_config_add_storage_device(cfg, dev); /* owns dev from here */
    if (r != VMK_OK)
        return disk_error(r, NULL, err, errlen);
    return 0;
}

/* One port's host side. */
static vmk_serial_attachment *port_attachment(enum cli_serial_kind kind, const char *path,
                                              bool append)
{
    switch (kind) {
    case CLI_SERIAL_STDIO: return vmk_fd_serial_attachment_new(0, 1);
    case CLI_SERIAL_FILE: return vmk_file_serial_attachment_new(path, append);
    case CLI_SERIAL_SOCKET: return vmk_socket_serial_attachment_new(path);
    case CLI_SERIAL_PTY: return vmk_pty_serial_attachment_new();
    }
    return NULL;
}

void cli_port_label(const struct cli_request *req, bool console, unsigned index, char *buf,
                    size_t len)
{
    if (!console) {
        snprintf(buf, len, "COM%u", index + 1);
        return;
    }
    const struct cli_vport *v = index < CLI_MAX_VPORTS ? &req->vport[index] : NULL;
    bool named = v && v->name, hvc = v && v->console;
    snprintf(buf, len, "virtio-serial port %u%s%s%s%s%s", index + 1, named || hvc ? " (" : "",
             named ? v->name : "", named && hvc ? ", " : "", hvc ? "hvc0" : "",
             named || hvc ? ")" : "");
}

int cli_build_console_device(const struct cli_request *req, vmk_console_device **out, char *err,
                             size_t errlen)
{
    const char *ctx = req->command == CLI_CMD_SERVE_DEVICE ? "--port" : "--device virtio-serial";
    *out = NULL;
    vmk_console_device *dev = vmk_virtio_console_device_new();
    if (!dev)
        return out_of_memory(err, errlen);
    for (unsigned i = 0; i < req->vport_count && i < CLI_MAX_VPORTS; i++) {
        const struct cli_vport *v = &req->vport[i];
        vmk_serial_attachment *att = port_attachment(v->kind, v->path, v->append);
        /* Owns att from here, even on failure (and NULL fails). */
        vmk_result r = vmk_virtio_console_device_add_port(dev, v->name, v->console, att);
        if (r != VMK_OK) {
            vmk_console_device_free(dev);
            if (!att || r == VMK_ERR_NO_MEMORY)
                return out_of_memory(err, errlen);
            return usage_error(err, errlen, "%s: cannot add port %u: %s", ctx, i + 1,
                               vmk_result_string(r));
        }
    }
    *out = dev;
    return 0;
}

/* The virtio console device, one port per --device virtio-serial. */
static int add_console(vmk_config *cfg, const struct cli_request *req, char *err, size_t errlen)
{
    vmk_console_device *dev;
    int rc = cli_build_console_device(req, &dev, err, errlen);
    if (rc)
        return rc;
    vmk_result r = vmk_config_add_console_device(cfg, dev); /* owns dev, even on failure */
    if (r != VMK_OK)
        return usage_error(err, errlen, "--device virtio-serial: cannot add the device: %s",
                           vmk_result_string(r));
    return 0;
}

int cli_build_config(const struct cli_request *req, const char *exe_path, vmk_config **cfg_out,
                     char *err, size_t errlen)
{
    *cfg_out = NULL;
    char *guest_kernel = NULL, *guest_initrd = NULL;
    const char *kernel = req->kernel, *initrd = req->initrd, *cmdline = req->cmdline;
    vmk_config *cfg = NULL;
    vmk_result r;
    int rc = 0;

    if (!kernel) {
        rc = cli_find_default_guest(exe_path, &guest_kernel, &guest_initrd, err, errlen);
        if (rc)
            return rc;
        kernel = guest_kernel;
        initrd = guest_initrd;
        if (!cmdline)
            cmdline = CLI_DEFAULT_GUEST_CMDLINE;
    }
    if (req->memory_mib > UINT64_MAX / MIB) {
        rc = usage_error(err, errlen, "--memory: %llu MiB is too large",
                         (unsigned long long)req->memory_mib);
        goto fail;
    }
    cfg = vmk_config_new();
    if (!cfg)
        goto oom;
    r = vmk_config_set_cpu_count(cfg, req->cpus);
    if (r != VMK_OK) {
        rc = usage_error(err, errlen, "--cpus: %u: %s", req->cpus, vmk_result_string(r));
        goto fail;
    }
    r = vmk_config_set_memory_size(cfg, req->memory_mib * MIB);
    if (r != VMK_OK) {
        rc = usage_error(err, errlen, "--memory: %llu MiB: %s", (unsigned long long)req->memory_mib,
                         vmk_result_string(r));
        goto fail;
    }

    vmk_boot_loader *bl = vmk_linux_boot_loader_new(kernel);
    if (!bl)
        goto oom;
    r = initrd ? vmk_linux_boot_loader_set_initrd(bl, initrd) : VMK_OK;
    if (r == VMK_OK && cmdline)
        r = vmk_linux_boot_loader_set_command_line(bl, cmdline);
    if (r != VMK_OK) {
        vmk_boot_loader_free(bl);
        rc = usage_error(err, errlen, "cannot set up the boot loader: %s", vmk_result_string(r));
        goto fail;
    }
    r = vmk_config_set_boot_loader(cfg, bl); /* owns bl from here, even on failure */
    if (r != VMK_OK) {
        rc = usage_error(err, errlen, "cannot set the boot loader: %s", vmk_result_string(r));
        goto fail;
    }

    /* The default COM1 takes the terminal, unless a console port has it. */
    bool default_com1 = req->serial_count == 0 && !stdio_taken(req);
    unsigned ports = default_com1 ? 1 : req->serial_count;
    for (unsigned i = 0; i < ports && i < CLI_MAX_SERIAL; i++) {
        const struct cli_serial stdio = { .kind = CLI_SERIAL_STDIO };
        const struct cli_serial *port = default_com1 ? &stdio : &req->serial[i];
        vmk_serial_attachment *att = port_attachment(port->kind, port->path, port->append);
        if (!att)
            goto oom;
        r = vmk_config_add_serial_port(cfg, att); /* owns att from here */
        if (r != VMK_OK) {
            rc = usage_error(err, errlen, "--device serial: cannot add COM%u: %s", i + 1,
                             vmk_result_string(r));
            goto fail;
        }
    }
    for (unsigned i = 0; i < req->disk_count && i < CLI_MAX_DISKS; i++) {
        rc = add_disk(cfg, &req->disk[i], err, errlen);
        if (rc)
            goto fail;
    }
    if (req->rng) {
        vmk_entropy_device *rng = vmk_virtio_entropy_device_new();
        if (!rng)
            goto oom;
        r = vmk_config_add_entropy_device(cfg, rng); /* owns rng from here, even on failure */
        if (r != VMK_OK) {
            rc = usage_error(err, errlen, "--device virtio-rng: cannot add it: %s",
                             vmk_result_string(r));
            goto fail;
        }
    }
    if (req->vport_count && (rc = add_console(cfg, req, err, errlen)))
        goto fail;
    *cfg_out = cfg;
    cfg = NULL;
    goto out;
oom:
    rc = out_of_memory(err, errlen);
fail:
    vmk_config_free(cfg);
out:
    free(guest_kernel);
    free(guest_initrd);
    return rc;
}
