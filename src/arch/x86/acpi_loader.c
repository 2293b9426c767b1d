#include "arch/x86/acpi_loader.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "core/error.h"

/* Offsets from the ACPI 6.3 spec: the RSDP (5.2.5.3), the common header (5.2.6), the
 * FADT (5.2.9) and the FACS (5.2.10). */
#define RSDP_LEN             36
#define RSDP_CHECKSUM        8 /* over the first 20 bytes */
#define RSDP_V1_LEN          20
#define RSDP_REVISION        15
#define RSDP_RSDT            16
#define RSDP_LENGTH          20
#define RSDP_XSDT            24
#define RSDP_EXT_CHECKSUM    32 /* over all RSDP_LEN bytes */
#define HDR_LEN              36
#define HDR_LENGTH           4
#define HDR_CHECKSUM         9
#define FADT_FIRMWARE_CTRL   36
#define FADT_DSDT            40
#define FADT_X_FIRMWARE_CTRL 132
#define FADT_X_DSDT          140
#define FACS_MIN_LEN         64
#define TABLES_ALIGN         64 /* the FACS's alignment */
#define RSDP_ALIGN           16
#define WALK_MAX_TABLES      64

/* Command field offsets (see the header). */
#define CMD_FILE        4
#define CMD_ALLOC_ALIGN 60
#define CMD_ALLOC_ZONE  64
#define CMD_PTR_SRC     60
#define CMD_PTR_OFFSET  116
#define CMD_PTR_SIZE    120
#define CMD_SUM_RESULT  60
#define CMD_SUM_START   64
#define CMD_SUM_LENGTH  68

static uint64_t get_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

struct script {
    uint8_t *buf;
    size_t len, cap;
    bool oom;
};

/* A zeroed command of type at the end of the script, or NULL when out of memory. */
static uint8_t *cmd_new(struct script *s, uint32_t type, const char *file)
{
    if (s->oom)
        return NULL;
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16 * ACPI_LOADER_CMD_LEN;
        uint8_t *n = realloc(s->buf, cap);
        if (!n) {
            s->oom = true;
            return NULL;
        }
        s->buf = n;
        s->cap = cap;
    }
    uint8_t *c = s->buf + s->len;
    s->len += ACPI_LOADER_CMD_LEN;
    memset(c, 0, ACPI_LOADER_CMD_LEN);
    put_le32(c, type);
    memcpy(c + CMD_FILE, file, strlen(file)); /* our names are short constants */
    return c;
}

static void cmd_allocate(struct script *s, const char *file, uint32_t align, uint8_t zone)
{
    uint8_t *c = cmd_new(s, ACPI_LOADER_ALLOCATE, file);
    if (!c)
        return;
    put_le32(c + CMD_ALLOC_ALIGN, align);
    c[CMD_ALLOC_ZONE] = zone;
}

static void cmd_pointer(struct script *s, const char *dest, const char *src, size_t offset,
                        unsigned size)
{
    uint8_t *c = cmd_new(s, ACPI_LOADER_ADD_POINTER, dest);
    if (!c)
        return;
    memcpy(c + CMD_PTR_SRC, src, strlen(src));
    put_le32(c + CMD_PTR_OFFSET, (uint32_t)offset);
    c[CMD_PTR_SIZE] = (uint8_t)size;
}

static void cmd_checksum(struct script *s, const char *file, size_t result, size_t start,
                         size_t length)
{
    uint8_t *c = cmd_new(s, ACPI_LOADER_ADD_CHECKSUM, file);
    if (!c)
        return;
    put_le32(c + CMD_SUM_RESULT, (uint32_t)result);
    put_le32(c + CMD_SUM_START, (uint32_t)start);
    put_le32(c + CMD_SUM_LENGTH, (uint32_t)length);
}

/* A walk over the tables file from the RSDP, the way firmware finds the tables: every
 * pointer met gets an ADD_POINTER, every table (once) an ADD_CHECKSUM after its own
 * pointers. The tables are our own, but the walk still checks every offset. */
struct walk {
    uint8_t *t;
    size_t len;
    struct script *s;
    size_t seen[WALK_MAX_TABLES];
    unsigned nseen;
    bool bad;
};

static void visit(struct walk *w, size_t off);

/* The pointer of size bytes at field in dest (named dest_name) to a table in the tables
 * file; 0 is a null pointer (offset 0 is padding, no table lives there). */
static void follow(struct walk *w, const char *dest_name, const uint8_t *dest, size_t field,
                   unsigned size)
{
    uint64_t target = get_le(dest + field, size);
    if (target == 0)
        return;
    if (target >= w->len) {
        w->bad = true;
        return;
    }
    cmd_pointer(w->s, dest_name, ACPI_LOADER_TABLES_FILE, field, size);
    visit(w, (size_t)target);
}

static bool first_visit(struct walk *w, size_t off)
{
    for (unsigned i = 0; i < w->nseen; i++)
        if (w->seen[i] == off)
            return false;
    if (w->nseen == WALK_MAX_TABLES) {
        w->bad = true;
        return false;
    }
    w->seen[w->nseen++] = off;
    return true;
}

static void visit(struct walk *w, size_t off)
{
    if (w->bad || !first_visit(w, off))
        return;
    /* Nothing may start inside the padding where the RSDP was. */
    if (off < RSDP_LEN || w->len - off < HDR_LEN) {
        w->bad = true;
        return;
    }
    uint8_t *t = w->t + off;
    uint64_t len = get_le(t + HDR_LENGTH, 4);
    if (len > w->len - off) {
        w->bad = true;
        return;
    }
    /* The FACS has its own header and no checksum. */
    if (memcmp(t, "FACS", 4) == 0) {
        if (len < FACS_MIN_LEN)
            w->bad = true;
        return;
    }
    if (len < HDR_LEN) {
        w->bad = true;
        return;
    }
    if (memcmp(t, "XSDT", 4) == 0 || memcmp(t, "RSDT", 4) == 0) {
        unsigned es = t[0] == 'X' ? 8 : 4;
        for (size_t e = HDR_LEN; e + es <= len; e += es)
            follow(w, ACPI_LOADER_TABLES_FILE, w->t, off + e, es);
    } else if (memcmp(t, "FACP", 4) == 0) {
        static const struct {
            size_t field;
            unsigned size;
        } ptrs[] = { { FADT_FIRMWARE_CTRL, 4 },
                     { FADT_DSDT, 4 },
                     { FADT_X_FIRMWARE_CTRL, 8 },
                     { FADT_X_DSDT, 8 } };
        for (unsigned i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++)
            if (ptrs[i].field + ptrs[i].size <= len)
                follow(w, ACPI_LOADER_TABLES_FILE, w->t, off + ptrs[i].field, ptrs[i].size);
    }
    t[HDR_CHECKSUM] = 0;
    cmd_checksum(w->s, ACPI_LOADER_TABLES_FILE, off + HDR_CHECKSUM, off, (size_t)len);
}

void acpi_loader_files_free(struct acpi_loader_files *f)
{
    if (!f)
        return;
    free(f->rsdp);
    free(f->tables);
    free(f->script);
    memset(f, 0, sizeof(*f));
}

vmk_result acpi_loader_build(const struct acpi_platform_info *p, struct acpi_loader_files *out,
                             vmk_error **err)
{
    if (!out)
        return vmk_fail(err, VMK_ERR_INVALID_ARGUMENT, 0, "ACPI loader: NULL argument");
    memset(out, 0, sizeof(*out));
    struct script s = { 0 };
    uint8_t *rsdp = malloc(RSDP_LEN);
    uint8_t *tables = malloc(X86_ACPI_MAX);
    vmk_result r = VMK_OK;
    if (!rsdp || !tables) {
        r = vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "ACPI loader: out of memory");
        goto fail;
    }
    size_t used = 0;
    r = acpi_build_tables(p, tables, X86_ACPI_MAX, 0, &used, err);
    if (r != VMK_OK)
        goto fail;

    /* The RSDP gets a file of its own (firmware may want it in the F segment); its
     * place in the tables file stays as zero padding, keeping every offset. */
    if (used < RSDP_LEN || memcmp(tables, "RSD PTR ", 8) != 0 || tables[RSDP_REVISION] < 2 ||
        get_le(tables + RSDP_LENGTH, 4) != RSDP_LEN)
        goto malformed;
    memcpy(rsdp, tables, RSDP_LEN);
    memset(tables, 0, RSDP_LEN);

    /* ALLOCATE comes first: a file must be allocated before a command names it. */
    cmd_allocate(&s, ACPI_LOADER_TABLES_FILE, TABLES_ALIGN, ACPI_LOADER_ZONE_HIGH);
    cmd_allocate(&s, ACPI_LOADER_RSDP_FILE, RSDP_ALIGN, ACPI_LOADER_ZONE_FSEG);
    struct walk w = { .t = tables, .len = used, .s = &s };
    follow(&w, ACPI_LOADER_RSDP_FILE, rsdp, RSDP_XSDT, 8);
    follow(&w, ACPI_LOADER_RSDP_FILE, rsdp, RSDP_RSDT, 4);
    /* The 1.0 checksum first: the extended one covers its byte. */
    rsdp[RSDP_CHECKSUM] = 0;
    rsdp[RSDP_EXT_CHECKSUM] = 0;
    cmd_checksum(&s, ACPI_LOADER_RSDP_FILE, RSDP_CHECKSUM, 0, RSDP_V1_LEN);
    cmd_checksum(&s, ACPI_LOADER_RSDP_FILE, RSDP_EXT_CHECKSUM, 0, RSDP_LEN);
    if (w.bad)
        goto malformed;
    if (s.oom) {
        r = vmk_fail(err, VMK_ERR_NO_MEMORY, 0, "ACPI loader: out of memory");
        goto fail;
    }

    /* Give back what the tables did not use. */
    uint8_t *shrunk = realloc(tables, used);
    if (shrunk)
        tables = shrunk;
    *out = (struct acpi_loader_files){
        .rsdp = rsdp,
        .rsdp_len = RSDP_LEN,
        .tables = tables,
        .tables_len = used,
        .script = s.buf,
        .script_len = s.len,
    };
    return VMK_OK;

malformed:
    r = vmk_fail(err, VMK_ERR_INTERNAL, 0,
                 "ACPI loader: the tables built for the loader cannot be walked from the RSDP");
fail:
    free(rsdp);
    free(tables);
    free(s.buf);
    return r;
}
