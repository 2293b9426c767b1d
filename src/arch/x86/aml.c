#include "arch/x86/aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* AML opcodes and prefixes (ACPI 6.x, section 20). */
#define AML_ZERO_OP           0x00
#define AML_ONE_OP            0x01
#define AML_NAME_OP           0x08
#define AML_BYTE_PREFIX       0x0A
#define AML_WORD_PREFIX       0x0B
#define AML_DWORD_PREFIX      0x0C
#define AML_STRING_PREFIX     0x0D
#define AML_QWORD_PREFIX      0x0E
#define AML_SCOPE_OP          0x10
#define AML_BUFFER_OP         0x11
#define AML_PACKAGE_OP        0x12
#define AML_METHOD_OP         0x14
#define AML_DUAL_NAME_PREFIX  0x2E
#define AML_MULTI_NAME_PREFIX 0x2F
#define AML_EXT_OP_PREFIX     0x5B
#define AML_DEVICE_OP         0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR         '\\'
#define AML_PARENT_PREFIX     '^'
#define AML_RETURN_OP         0xA4
#define AML_NULL_NAME         0x00

/* Small resource descriptor tags: type << 3 | length. */
#define RES_IRQ_NOFLAGS_TAG 0x22 /* type 0x04, 2 bytes */
#define RES_IO_TAG          0x47 /* type 0x08, 7 bytes */
#define RES_END_TAG         0x79 /* type 0x0F, 1 byte */

enum { KIND_TERM = 1, KIND_RESOURCES = 2 };

void aml_init(struct aml_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void aml_free(struct aml_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int aml_status(const struct aml_buf *b)
{
    if (b->error)
        return b->error;
    return b->depth ? -EINVAL : 0;
}

static void fail(struct aml_buf *b, int error)
{
    if (!b->error)
        b->error = error;
}

static bool reserve(struct aml_buf *b, size_t n)
{
    if (b->error)
        return false;
    if (n > SIZE_MAX - b->len) {
        fail(b, -ENOMEM);
        return false;
    }
    if (b->len + n <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) {
        if (cap > SIZE_MAX / 2) {
            cap = b->len + n;
            break;
        }
        cap *= 2;
    }
    uint8_t *data = realloc(b->data, cap);
    if (!data) {
        fail(b, -ENOMEM);
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

void aml_append(struct aml_buf *b, const void *bytes, size_t n)
{
    if (n == 0 || !reserve(b, n))
        return;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
}

static void put_byte(struct aml_buf *b, uint8_t v)
{
    aml_append(b, &v, 1);
}

/* Inside a ResourceTemplate only descriptors belong; anything else is a caller bug. */
static bool term_allowed(struct aml_buf *b)
{
    if (b->error)
        return false;
    if (b->depth > 0 && b->open_kind[b->depth - 1] == KIND_RESOURCES) {
        fail(b, -EINVAL);
        return false;
    }
    return true;
}

static bool descriptor_allowed(struct aml_buf *b)
{
    if (b->error)
        return false;
    if (b->depth == 0 || b->open_kind[b->depth - 1] != KIND_RESOURCES) {
        fail(b, -EINVAL);
        return false;
    }
    return true;
}

size_t aml_encode_pkg_length(uint8_t out[4], uint32_t length)
{
    if (length <= 0x3F) {
        out[0] = (uint8_t)length;
        return 1;
    }
    if (length > AML_PKG_LENGTH_MAX)
        return 0;
    /* Lead byte: count of following bytes in bits 7:6, low nibble of the length in
     * bits 3:0; the following bytes carry the rest, least significant first. */
    size_t extra = length <= 0xFFF ? 1 : length <= 0xFFFFF ? 2 : 3;
    out[0] = (uint8_t)((extra << 6) | (length & 0x0F));
    for (size_t i = 1; i <= extra; i++)
        out[i] = (uint8_t)(length >> (4 + 8 * (i - 1)));
    return extra + 1;
}

/* PkgLength for a body of body bytes: the encoded value includes the encoding. */
static size_t pkg_length_for_body(uint8_t out[4], size_t body)
{
    for (size_t n = 1; n <= 4; n++) {
        if (body > AML_PKG_LENGTH_MAX - n)
            return 0;
        if (aml_encode_pkg_length(out, (uint32_t)(body + n)) == n)
            return n;
    }
    return 0;
}

static size_t integer_encode(uint8_t out[9], uint64_t v)
{
    size_t width;
    if (v == 0) {
        out[0] = AML_ZERO_OP;
        return 1;
    }
    if (v == 1) {
        out[0] = AML_ONE_OP;
        return 1;
    }
    if (v <= 0xFF) {
        out[0] = AML_BYTE_PREFIX;
        width = 1;
    } else if (v <= 0xFFFF) {
        out[0] = AML_WORD_PREFIX;
        width = 2;
    } else if (v <= 0xFFFFFFFFu) {
        out[0] = AML_DWORD_PREFIX;
        width = 4;
    } else {
        out[0] = AML_QWORD_PREFIX;
        width = 8;
    }
    for (size_t i = 0; i < width; i++)
        out[1 + i] = (uint8_t)(v >> (8 * i));
    return 1 + width;
}

void aml_integer(struct aml_buf *b, uint64_t value)
{
    if (!term_allowed(b))
        return;
    uint8_t enc[9];
    size_t n = integer_encode(enc, value);
    aml_append(b, enc, n);
}

void aml_string(struct aml_buf *b, const char *s)
{
    if (!term_allowed(b))
        return;
    if (!s) {
        fail(b, -EINVAL);
        return;
    }
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] > 0x7F) {
            fail(b, -EINVAL);
            return;
        }
    }
    put_byte(b, AML_STRING_PREFIX);
    aml_append(b, s, n + 1);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int aml_eisaid_value(const char *id, uint32_t *value)
{
    if (!id || !value || strlen(id) != 7)
        return -EINVAL;
    uint32_t v = 0;
    /* Three letters of 5 bits each ('A' is 1), then four hex digits: 32 bits that
     * are stored most significant byte first, i.e. byte-swapped. */
    for (int i = 0; i < 3; i++) {
        if (id[i] < 'A' || id[i] > 'Z')
            return -EINVAL;
        v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
    }
    for (int i = 3; i < 7; i++) {
        int d = hex_digit(id[i]);
        if (d < 0)
            return -EINVAL;
        v = (v << 4) | (uint32_t)d;
    }
    *value = ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | (v >> 24);
    return 0;
}

void aml_eisaid(struct aml_buf *b, const char *id)
{
    if (!term_allowed(b))
        return;
    uint32_t v;
    if (aml_eisaid_value(id, &v) < 0) {
        fail(b, -EINVAL);
        return;
    }
    /* Always a DWord, even if shorter would do, so disassemblers see an EisaId. */
    uint8_t enc[5] = { AML_DWORD_PREFIX, (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
                       (uint8_t)(v >> 24) };
    aml_append(b, enc, sizeof(enc));
}

static bool seg_char_ok(char c, bool lead)
{
    if ((c >= 'A' && c <= 'Z') || c == '_')
        return true;
    return !lead && c >= '0' && c <= '9';
}

void aml_name_string(struct aml_buf *b, const char *path)
{
    if (b->error)
        return;
    if (!path) {
        fail(b, -EINVAL);
        return;
    }
    const char *p = path;
    size_t prefix = 0;
    if (*p == AML_ROOT_CHAR) {
        p++;
        prefix = 1;
    } else {
        while (*p == AML_PARENT_PREFIX)
            p++;
        prefix = (size_t)(p - path);
    }

    /* First pass: validate, count segments. */
    size_t nsegs = 0;
    const char *s = p;
    while (*s) {
        size_t n = 0;
        while (s[n] && s[n] != '.') {
            if (n == 4 || !seg_char_ok(s[n], n == 0)) {
                fail(b, -EINVAL);
                return;
            }
            n++;
        }
        if (n == 0 || (s[n] == '.' && s[n + 1] == '\0')) {
            fail(b, -EINVAL); /* empty segment or a trailing '.' */
            return;
        }
        nsegs++;
        s += n + (s[n] == '.');
    }
    if (nsegs > 255 || (nsegs == 0 && prefix == 0)) {
        fail(b, -EINVAL);
        return;
    }

    aml_append(b, path, prefix);
    if (nsegs == 0) {
        put_byte(b, AML_NULL_NAME);
        return;
    }
    if (nsegs == 2) {
        put_byte(b, AML_DUAL_NAME_PREFIX);
    } else if (nsegs > 2) {
        put_byte(b, AML_MULTI_NAME_PREFIX);
        put_byte(b, (uint8_t)nsegs);
    }
    for (s = p; *s;) {
        char seg[4] = { '_', '_', '_', '_' };
        size_t n = 0;
        while (s[n] && s[n] != '.') {
            seg[n] = s[n];
            n++;
        }
        aml_append(b, seg, 4);
        s += n + (s[n] == '.');
    }
}

void aml_name(struct aml_buf *b, const char *path)
{
    if (!term_allowed(b))
        return;
    put_byte(b, AML_NAME_OP);
    aml_name_string(b, path);
}

void aml_buffer(struct aml_buf *b, const void *bytes, size_t n)
{
    if (!term_allowed(b))
        return;
    if (!bytes && n) {
        fail(b, -EINVAL);
        return;
    }
    uint8_t size[9], pkg[4];
    size_t size_len = integer_encode(size, n);
    if (n > SIZE_MAX - size_len) {
        fail(b, -EINVAL);
        return;
    }
    size_t pkg_len = pkg_length_for_body(pkg, size_len + n);
    if (!pkg_len) {
        fail(b, -EINVAL);
        return;
    }
    put_byte(b, AML_BUFFER_OP);
    aml_append(b, pkg, pkg_len);
    aml_append(b, size, size_len);
    aml_append(b, bytes, n);
}

/* Records an open term whose PkgLength will be inserted at the current end. */
static struct aml_mark open_term(struct aml_buf *b, uint8_t kind)
{
    struct aml_mark m = { .offset = b->len, .depth = b->depth + 1, .kind = kind };
    if (b->error)
        return m;
    if (b->depth == AML_MAX_DEPTH) {
        fail(b, -EINVAL);
        return m;
    }
    b->open_kind[b->depth++] = kind;
    return m;
}

struct aml_mark aml_scope_begin(struct aml_buf *b, const char *path)
{
    if (term_allowed(b))
        put_byte(b, AML_SCOPE_OP);
    struct aml_mark m = open_term(b, KIND_TERM);
    aml_name_string(b, path);
    return m;
}

struct aml_mark aml_device_begin(struct aml_buf *b, const char *path)
{
    if (term_allowed(b)) {
        put_byte(b, AML_EXT_OP_PREFIX);
        put_byte(b, AML_DEVICE_OP);
    }
    struct aml_mark m = open_term(b, KIND_TERM);
    aml_name_string(b, path);
    return m;
}

struct aml_mark aml_method_begin(struct aml_buf *b, const char *path, unsigned nargs,
                                 bool serialized)
{
    if (nargs > 7)
        fail(b, -EINVAL);
    if (term_allowed(b))
        put_byte(b, AML_METHOD_OP);
    struct aml_mark m = open_term(b, KIND_TERM);
    aml_name_string(b, path);
    /* MethodFlags: ArgCount in bits 2:0, SerializeFlag in bit 3, SyncLevel 0. */
    put_byte(b, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
    return m;
}

struct aml_mark aml_package_begin(struct aml_buf *b, unsigned count)
{
    if (count > 255)
        fail(b, -EINVAL);
    if (term_allowed(b))
        put_byte(b, AML_PACKAGE_OP);
    struct aml_mark m = open_term(b, KIND_TERM);
    put_byte(b, (uint8_t)count);
    return m;
}

struct aml_mark aml_resource_template_begin(struct aml_buf *b)
{
    if (term_allowed(b))
        put_byte(b, AML_BUFFER_OP);
    return open_term(b, KIND_RESOURCES);
}

/* Moves [at, len) up by n bytes and copies prefix into the gap. */
static void insert(struct aml_buf *b, size_t at, const uint8_t *prefix, size_t n)
{
    if (!reserve(b, n))
        return;
    memmove(b->data + at + n, b->data + at, b->len - at);
    memcpy(b->data + at, prefix, n);
    b->len += n;
}

void aml_end(struct aml_buf *b, struct aml_mark m)
{
    if (b->error)
        return;
    if (b->depth == 0 || m.depth != b->depth || m.kind != b->open_kind[b->depth - 1] ||
        m.offset > b->len) {
        fail(b, -EINVAL);
        return;
    }
    uint8_t prefix[4 + 9];
    size_t prefix_len = 0;
    if (m.kind == KIND_RESOURCES) {
        /* End Tag with checksum 0, which means "treat the checksum as valid". */
        const uint8_t end[2] = { RES_END_TAG, 0 };
        aml_append(b, end, sizeof(end));
        if (b->error)
            return;
        /* A Buffer: PkgLength, then BufferSize as an integer, then the bytes. */
        uint8_t size[9];
        size_t body = b->len - m.offset;
        size_t size_len = integer_encode(size, body);
        prefix_len = pkg_length_for_body(prefix, body + size_len);
        if (!prefix_len) {
            fail(b, -EINVAL);
            return;
        }
        memcpy(prefix + prefix_len, size, size_len);
        prefix_len += size_len;
    } else {
        prefix_len = pkg_length_for_body(prefix, b->len - m.offset);
        if (!prefix_len) {
            fail(b, -EINVAL);
            return;
        }
    }
    insert(b, m.offset, prefix, prefix_len);
    if (!b->error)
        b->depth--;
}

void aml_return_integer(struct aml_buf *b, uint64_t value)
{
    if (!term_allowed(b))
        return;
    put_byte(b, AML_RETURN_OP);
    aml_integer(b, value);
}

void aml_res_io(struct aml_buf *b, bool decode16, uint16_t min, uint16_t max, uint8_t alignment,
                uint8_t length)
{
    if (!descriptor_allowed(b))
        return;
    if (min > max) {
        fail(b, -EINVAL);
        return;
    }
    const uint8_t d[8] = { RES_IO_TAG,   decode16 ? 1 : 0,    (uint8_t)min, (uint8_t)(min >> 8),
                           (uint8_t)max, (uint8_t)(max >> 8), alignment,    length };
    aml_append(b, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml_buf *b, unsigned irq)
{
    if (!descriptor_allowed(b))
        return;
    if (irq > 15) {
        fail(b, -EINVAL);
        return;
    }
    uint16_t mask = (uint16_t)(1u << irq);
    const uint8_t d[3] = { RES_IRQ_NOFLAGS_TAG, (uint8_t)mask, (uint8_t)(mask >> 8) };
    aml_append(b, d, sizeof(d));
}
