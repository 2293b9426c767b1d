/* A small builder for AML, the byte code of ACPI definition blocks (DSDT):
 * names, scopes, devices, methods, packages, data objects and the resource
 * descriptors a legacy device's _CRS needs.
 *
 * Errors are sticky: the first failure (-ENOMEM, or -EINVAL for a bad name, id,
 * value or nesting) is kept in the buffer, every later call does nothing, and
 * aml_status() reports it once at the end. That keeps table code a straight list
 * of terms instead of a check after every call.
 *
 * Terms that carry a PkgLength (Scope, Device, Method, Package, ResourceTemplate)
 * are opened with a *_begin() call and closed with aml_end(), innermost first:
 *
 *     struct aml_mark sb = aml_scope_begin(&b, "\\_SB");
 *     struct aml_mark dev = aml_device_begin(&b, "COM1");
 *     aml_name(&b, "_HID");
 *     aml_eisaid(&b, "PNP0501");
 *     aml_end(&b, dev);
 *     aml_end(&b, sb);
 */
#ifndef VMK_X86_AML_H
#define VMK_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How deep Scope/Device/Method/Package/ResourceTemplate terms may nest. */
#define AML_MAX_DEPTH 16

/* The largest PkgLength AML can encode (28 bits). */
#define AML_PKG_LENGTH_MAX 0x0FFFFFFFu

struct aml_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    int error;      /* 0, or the first -errno; sticky */
    unsigned depth; /* terms opened and not yet closed */
    uint8_t open_kind[AML_MAX_DEPTH];
};

/* Returned by a *_begin() call; hand it to aml_end() unchanged. */
struct aml_mark {
    size_t offset; /* where the term's PkgLength goes */
    unsigned depth;
    uint8_t kind;
};

void aml_init(struct aml_buf *b);
/* Frees the bytes; the buffer may be initialised again. */
void aml_free(struct aml_buf *b);
/* 0 when every call succeeded and every opened term was closed, else -errno. */
int aml_status(const struct aml_buf *b) __attribute__((warn_unused_result));

/* Encodes a PkgLength value (which counts its own encoding bytes) into out;
 * returns the number of bytes (1..4), or 0 when length > AML_PKG_LENGTH_MAX. */
size_t aml_encode_pkg_length(uint8_t out[4], uint32_t length);

/* The 32-bit compressed EISA id of a 7-character id such as "PNP0501" (three
 * capital letters, four hex digits), as AML and ACPI tables store it.
 * Returns 0 or -EINVAL. */
int aml_eisaid_value(const char *id, uint32_t *value) __attribute__((warn_unused_result));

/* Raw bytes, for what the builder has no helper for. */
void aml_append(struct aml_buf *b, const void *bytes, size_t n);

/* A NameString: an optional "\\" (root) or run of "^" (parent), then NameSegs
 * separated by '.', each 1..4 characters from [A-Z0-9_] not starting with a digit,
 * padded with '_' to 4 ("_S5" becomes "_S5_"). "\\" alone is the root. */
void aml_name_string(struct aml_buf *b, const char *path);

/* Data objects. aml_integer picks the shortest encoding: ZeroOp, OneOp, or a
 * Byte/Word/DWord/QWord prefix. (OnesOp is never used: its width depends on the
 * definition block's revision.) */
void aml_integer(struct aml_buf *b, uint64_t value);
/* A String of ASCII characters 0x01..0x7F. */
void aml_string(struct aml_buf *b, const char *s);
/* EisaId("PNP0501"): the compressed id as a DWord integer. */
void aml_eisaid(struct aml_buf *b, const char *id);
/* Buffer(n) { bytes }. */
void aml_buffer(struct aml_buf *b, const void *bytes, size_t n);

/* Name(path, <object>): follow with exactly one data object (an integer, string,
 * EISA id, buffer, package or resource template). */
void aml_name(struct aml_buf *b, const char *path);

struct aml_mark aml_scope_begin(struct aml_buf *b, const char *path);
struct aml_mark aml_device_begin(struct aml_buf *b, const char *path);
/* Method(path, nargs (0..7), Serialized or NotSerialized), sync level 0. */
struct aml_mark aml_method_begin(struct aml_buf *b, const char *path, unsigned nargs,
                                 bool serialized);
/* Package(count) { ... }: follow with count data objects (count <= 255). */
struct aml_mark aml_package_begin(struct aml_buf *b, unsigned count);
/* ResourceTemplate() { ... }: a Buffer of resource descriptors; aml_end() adds
 * the End Tag. Only resource descriptors may be written inside. */
struct aml_mark aml_resource_template_begin(struct aml_buf *b);
/* Closes the innermost open term; m must be the mark its begin returned. */
void aml_end(struct aml_buf *b, struct aml_mark m);

/* Return(value) inside a method. */
void aml_return_integer(struct aml_buf *b, uint64_t value);

/* Resource descriptors, valid only directly inside a ResourceTemplate. */
/* IO(Decode16 or Decode10, min, max, alignment, length). */
void aml_res_io(struct aml_buf *b, bool decode16, uint16_t min, uint16_t max, uint8_t alignment,
                uint8_t length);
/* IRQNoFlags() { irq }: an edge-triggered, active-high ISA IRQ (0..15). */
void aml_res_irq_noflags(struct aml_buf *b, unsigned irq);

#endif
