/* The translator share: Debian's qemu-user-static interpreters and a register script made
 * from the host's binfmts entries. */
#include "attach/translator_share.h"
#include "core/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PACKAGE "qemu-user-static"

static const char script_head[] =
    "#!/bin/sh\n"
    "# Registers the interpreters beside this script with the kernel's binfmt_misc, as\n"
    "# update-binfmts does on the host (made by vmkit from the host's " TRANSLATOR_BINFMTS_DIR
    ").\n"
    "# Flag F: the kernel opens each interpreter now, so binaries keep running in containers\n"
    "# and after the share is gone. Run it as root: sh /mnt/TAG/register\n"
    "set -e\n"
    "dir=$(cd \"$(dirname \"$0\")\" && pwd)\n"
    "bm=/proc/sys/fs/binfmt_misc\n"
    "[ -e $bm/register ] || modprobe binfmt_misc 2>/dev/null || true\n"
    "[ -e $bm/register ] || mount -t binfmt_misc binfmt_misc $bm\n"
    "reg() {\n"
    "    if [ -e \"$bm/$1\" ]; then echo -1 > \"$bm/$1\"; fi\n"
    "    printf '%s\\n' \":$1:M:$2:$3:$4:$dir/$5:F\" > $bm/register\n"
    "    echo \"registered $1\"\n"
    "}\n";

struct binfmt {
    char package[64], interpreter[PATH_MAX], magic[512], mask[512], offset[16];
};

/* Only what the kernel's register syntax and our single-quoted shell words can carry. */
static bool safe_field(const char *s)
{
    for (; *s; s++)
        if (*s == ':' || *s == '\'' || *s == '\n' || (unsigned char)*s < 0x20 ||
            (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static bool read_binfmt(int dirfd, const char *name, struct binfmt *b)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    memset(b, 0, sizeof(*b));
    b->offset[0] = '0';
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        char *v = strchr(line, ' ');
        if (!v)
            continue;
        *v++ = 0;
        struct {
            const char *key;
            char *dst;
            size_t size;
        } fields[] = {
            { "package", b->package, sizeof(b->package) },
            { "interpreter", b->interpreter, sizeof(b->interpreter) },
            { "magic", b->magic, sizeof(b->magic) },
            { "mask", b->mask, sizeof(b->mask) },
            { "offset", b->offset, sizeof(b->offset) },
        };
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
            if (!strcmp(line, fields[i].key) && strlen(v) < fields[i].size)
                memcpy(fields[i].dst, v, strlen(v) + 1); /* too long: left empty, refused */
    }
    fclose(f);
    return !strcmp(b->package, PACKAGE) && b->interpreter[0] && b->magic[0] &&
           safe_field(b->magic) && safe_field(b->mask) && safe_field(b->offset) &&
           strspn(b->offset, "0123456789") == strlen(b->offset);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool append(char **buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool append(char **buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n >= 0 ? realloc(*buf, *len + (size_t)n + 1) : NULL;
    if (!p)
        return false;
    va_start(ap, fmt);
    vsnprintf(p + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *buf = p;
    *len += (size_t)n;
    return true;
}

vmk_result translator_share_load(struct translator_share *t, const char *binfmts_dir,
                                 vmk_error **err)
{
    memset(t, 0, sizeof(*t));
    const char *dirpath = binfmts_dir ? binfmts_dir : TRANSLATOR_BINFMTS_DIR;
    DIR *d = opendir(dirpath);
    char *files[256] = { 0 };
    unsigned nfiles = 0;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) && nfiles < 256)
            if (!strncmp(de->d_name, "qemu-", 5) && (files[nfiles] = strdup(de->d_name)))
                nfiles++;
    }
    qsort(files, nfiles, sizeof(files[0]), by_name); /* the same script every time */

    size_t len = 0;
    bool ok = append(&t->script, &len, "%s", script_head);
    for (unsigned i = 0; ok && i < nfiles && t->count < TRANSLATOR_MAX_ARCHES; i++) {
        struct binfmt b;
        char real[PATH_MAX];
        struct stat st;
        if (!read_binfmt(dirfd(d), files[i], &b) || !realpath(b.interpreter, real) ||
            stat(real, &st) || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
            continue; /* not ours, or the interpreter is missing: leave it out */
        const char *base = strrchr(real, '/') + 1;
        bool dup = !strcmp(base, "register");
        for (unsigned k = 0; k < t->count; k++)
            dup |= !strcmp(t->names[k], base);
        if (dup || !safe_field(base) || !safe_field(files[i]))
            continue;
        t->names[t->count] = strdup(base);
        t->paths[t->count] = strdup(real);
        if (!t->names[t->count] || !t->paths[t->count]) {
            free(t->names[t->count]);
            free(t->paths[t->count]);
            ok = false;
            break;
        }
        t->entries[t->count] = (struct fuse_share_entry){ .name = t->names[t->count],
                                                          .path = t->paths[t->count],
                                                          .read_only = true };
        t->count++;
        ok = append(&t->script, &len, "reg %s %s '%s' '%s' %s\n", files[i], b.offset, b.magic,
                    b.mask, base);
    }
    for (unsigned i = 0; i < nfiles; i++)
        free(files[i]);
    if (d)
        closedir(d);
    if (!ok) {
        translator_share_fini(t);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "translator share: out of memory");
    }
    if (t->count == 0) {
        translator_share_fini(t);
        return vmk_fail(err, VMK_ERR_UNSUPPORTED, 0,
                        "translator share: no qemu-user-static interpreter in %s (install "
                        "Debian's " PACKAGE " package)",
                        dirpath);
    }
    t->entries[t->count++] = (struct fuse_share_entry){
        .name = "register", .data = t->script, .size = len, .read_only = true
    };
    return VMK_OK;
}

void translator_share_fini(struct translator_share *t)
{
    for (unsigned i = 0; i < TRANSLATOR_MAX_ARCHES; i++) {
        free(t->names[i]);
        free(t->paths[i]);
    }
    free(t->script);
    memset(t, 0, sizeof(*t));
}
