#include "devices/legacy/cfi_flash.h"
#include "core/file_lock.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* First-cycle commands. */
#define CMD_PROGRAM     0x10
#define CMD_PROGRAM_ALT 0x40
#define CMD_ERASE       0x20
#define CMD_CLEAR       0x50
#define CMD_STATUS      0x70
#define CMD_READ_ID     0x90
#define CMD_QUERY       0x98
#define CMD_CONFIRM     0xd0
#define CMD_READ_ARRAY  0xff

/* Status register bits. */
#define SR_READY          0x80
#define SR_ERASE_ERROR    0x20
#define SR_PROGRAM_ERROR  0x10
#define SR_LOCKED         0x02
#define SR_SEQUENCE_ERROR (SR_ERASE_ERROR | SR_PROGRAM_ERROR)

#define ID_MANUFACTURER 0x89 /* Intel, owner of command set 0x0001 */
#define ID_DEVICE       0x00 /* no particular part: the query table has the geometry */

/* The CFI query table as an x8 part presents it: byte offset = table offset. */
#define QUERY_LEN 0x3b
#define PRI_ADDR  0x31 /* Intel's primary extended table follows the basic one */

enum mode {
    MODE_ARRAY,
    MODE_STATUS,
    MODE_ID,
    MODE_QUERY,
    MODE_PROGRAM_SETUP, /* the next write is the data */
    MODE_ERASE_SETUP,   /* the next write should be 0xD0 */
};

struct cfi_flash {
    pthread_mutex_t lock;
    int fd;
    bool read_only;
    char *path;
    uint64_t size;
    uint32_t block_size;
    uint8_t *array; /* mmap'd: page-aligned, 0xFF-padded to map_len */
    size_t map_len;
    uint8_t *erased; /* block_size bytes of 0xFF, written by an erase (writable only) */
    enum mode mode;
    uint8_t status;
    bool unsynced; /* writes since the last fdatasync */
    int first_err; /* -errno of the first failed write or sync, sticky */
    void (*listener)(void *ctx, bool read_array);
    void *listener_ctx;
    uint8_t query[QUERY_LEN];
};

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static unsigned ceil_log2(uint64_t v)
{
    unsigned n = 0;
    while ((UINT64_C(1) << n) < v)
        n++;
    return n;
}

/* Field offsets and meanings from the CFI specification (JESD68) and Intel's primary
 * extended table, version 1.0. */
static void build_query(struct cfi_flash *f)
{
    uint8_t *q = f->query;
    memset(q, 0, QUERY_LEN);
    q[0x10] = 'Q';
    q[0x11] = 'R';
    q[0x12] = 'Y';
    put16(q + 0x13, 0x0001); /* Intel/Sharp extended command set */
    put16(q + 0x15, PRI_ADDR);
    put16(q + 0x17, 0x0000); /* no alternate command set */
    put16(q + 0x19, 0x0000);
    q[0x1b] = 0x27; /* Vcc min 2.7 V (BCD volts / tenths) */
    q[0x1c] = 0x36; /* Vcc max 3.6 V */
    q[0x1d] = 0x00; /* no Vpp pin */
    q[0x1e] = 0x00;
    q[0x1f] = 0x04; /* typical byte program: 2^4 us */
    q[0x20] = 0x00; /* no buffered write: Linux's driver then programs byte by byte */
    q[0x21] = 0x0a; /* typical block erase: 2^10 ms */
    q[0x22] = 0x00; /* no chip erase */
    q[0x23] = 0x04; /* maximum = typical * 2^n */
    q[0x24] = 0x00;
    q[0x25] = 0x04;
    q[0x26] = 0x00;
    /* 2^n bytes: rounded up when the image is not a power of two (OVMF's variable store is
     * 528 KiB); the erase region below gives the exact size. */
    q[0x27] = (uint8_t)ceil_log2(f->size);
    put16(q + 0x28, 0x0000);                                  /* x8 asynchronous interface */
    put16(q + 0x2a, 0x0000);                                  /* write buffer: 2^0, i.e. none */
    q[0x2c] = 1;                                              /* one erase block region: */
    put16(q + 0x2d, (uint16_t)(f->size / f->block_size - 1)); /* blocks - 1 */
    put16(q + 0x2f, (uint16_t)(f->block_size / 256));         /* block size / 256 */
    q[PRI_ADDR + 0] = 'P';
    q[PRI_ADDR + 1] = 'R';
    q[PRI_ADDR + 2] = 'I';
    q[PRI_ADDR + 3] = '1'; /* version 1.0: no protection-register fields follow */
    q[PRI_ADDR + 4] = '0';
    /* +5..+8 optional features, +9 after suspend, +10..+11 block status mask: none. */
    q[PRI_ADDR + 12] = 0x33; /* Vcc optimum for program/erase: 3.3 V */
    q[PRI_ADDR + 13] = 0x00; /* no Vpp */
}

/* Called with the lock held on every mode change, so the listener sees them in order. */
static void set_mode(struct cfi_flash *f, enum mode m)
{
    bool was = f->mode == MODE_ARRAY, is = m == MODE_ARRAY;
    f->mode = m;
    if (was != is && f->listener)
        f->listener(f->listener_ctx, is);
}

static void note_error(struct cfi_flash *f, int e)
{
    if (!f->first_err)
        f->first_err = -e;
}

static int pwrite_full(int fd, const uint8_t *p, size_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno : EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int sync_file(struct cfi_flash *f)
{
    if (!f->unsynced)
        return 0;
    int r;
    do
        r = fdatasync(f->fd);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        note_error(f, errno);
        return -errno;
    }
    f->unsynced = false;
    return 0;
}

static void program(struct cfi_flash *f, uint64_t off, uint8_t v)
{
    f->status |= SR_READY;
    if (f->read_only) {
        f->status |= SR_PROGRAM_ERROR | SR_LOCKED;
        return;
    }
    uint8_t old = f->array[off];
    f->array[off] = old & v;
    if (f->array[off] == old)
        return; /* nothing changed: nothing to write */
    int e = pwrite_full(f->fd, &f->array[off], 1, off);
    if (e) {
        f->array[off] = old;
        f->status |= SR_PROGRAM_ERROR;
        note_error(f, e);
        return;
    }
    f->unsynced = true;
}

static void erase(struct cfi_flash *f, uint64_t off)
{
    f->status |= SR_READY;
    if (f->read_only) {
        f->status |= SR_ERASE_ERROR | SR_LOCKED;
        return;
    }
    uint64_t start = off - off % f->block_size;
    /* The file first, so a failed write leaves the array as it was. */
    int e = pwrite_full(f->fd, f->erased, f->block_size, start);
    if (e) {
        f->status |= SR_ERASE_ERROR;
        note_error(f, e);
        return;
    }
    memset(f->array + start, 0xff, f->block_size);
    f->unsynced = true;
}

/* Back to the image, where firmware expects to be. This is where OVMF ends each write, so it
 * is where the writes before it become durable. */
static void enter_array(struct cfi_flash *f)
{
    if (sync_file(f) < 0)
        f->status |= SR_PROGRAM_ERROR;
    set_mode(f, MODE_ARRAY);
}

static void command(struct cfi_flash *f, uint8_t cmd)
{
    switch (cmd) {
    case CMD_PROGRAM:
    case CMD_PROGRAM_ALT: set_mode(f, MODE_PROGRAM_SETUP); break;
    case CMD_ERASE: set_mode(f, MODE_ERASE_SETUP); break;
    case CMD_STATUS: set_mode(f, MODE_STATUS); break;
    case CMD_READ_ID: set_mode(f, MODE_ID); break;
    case CMD_QUERY: set_mode(f, MODE_QUERY); break;
    case CMD_CLEAR:
        f->status = 0; /* ready too: OVMF's probe wants 0x00 */
        enter_array(f);
        break;
    case CMD_READ_ARRAY:
    default: enter_array(f); break; /* unknown commands too */
    }
}

static void write_byte(struct cfi_flash *f, uint64_t off, uint8_t v)
{
    if (off >= f->size)
        return;
    switch (f->mode) {
    case MODE_PROGRAM_SETUP:
        program(f, off, v);
        set_mode(f, MODE_STATUS);
        break;
    case MODE_ERASE_SETUP:
        if (v == CMD_CONFIRM)
            erase(f, off);
        else
            f->status |= SR_READY | SR_SEQUENCE_ERROR;
        set_mode(f, MODE_STATUS);
        break;
    default: command(f, v); break;
    }
}

static uint8_t read_byte(const struct cfi_flash *f, uint64_t off)
{
    if (off >= f->size)
        return 0xff;
    uint64_t in_block = off % f->block_size;
    switch (f->mode) {
    case MODE_ARRAY: return f->array[off];
    case MODE_ID:
        switch (in_block) {
        case 0: return ID_MANUFACTURER;
        case 1: return ID_DEVICE;
        case 2: return f->read_only ? 1 : 0; /* block lock status */
        default: return 0;
        }
    case MODE_QUERY: return in_block < QUERY_LEN ? f->query[in_block] : 0;
    default: return f->status; /* status, and between the two cycles of a command */
    }
}

static void flash_read(void *dev, uint64_t offset, void *data, unsigned size)
{
    struct cfi_flash *f = dev;
    uint8_t *out = data;
    pthread_mutex_lock(&f->lock);
    for (unsigned i = 0; i < size; i++)
        out[i] = offset + i < offset ? 0xff : read_byte(f, offset + i);
    pthread_mutex_unlock(&f->lock);
}

static void flash_write(void *dev, uint64_t offset, const void *data, unsigned size)
{
    struct cfi_flash *f = dev;
    const uint8_t *in = data;
    pthread_mutex_lock(&f->lock);
    for (unsigned i = 0; i < size && offset + i >= offset; i++)
        write_byte(f, offset + i, in[i]);
    pthread_mutex_unlock(&f->lock);
}

const struct bus_device_ops cfi_flash_ops = {
    .read = flash_read,
    .write = flash_write,
};

static vmk_result read_image(struct cfi_flash *f, vmk_error **err)
{
    uint64_t done = 0;
    while (done < f->size) {
        ssize_t n = pread(f->fd, f->array + done, f->size - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return vmk_fail(err, VMK_ERR_IO, errno, "flash image %s: cannot read: %s", f->path,
                            strerror(errno));
        if (n == 0)
            return vmk_fail(err, VMK_ERR_IO, 0, "flash image %s: shrank while being read", f->path);
        done += (uint64_t)n;
    }
    return VMK_OK;
}

static vmk_result check_geometry(const char *path, uint64_t size, uint32_t block_size,
                                 vmk_error **err)
{
    if (block_size < CFI_FLASH_MIN_BLOCK_SIZE || block_size > CFI_FLASH_MAX_BLOCK_SIZE ||
        (block_size & (block_size - 1)))
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                        "flash image %s: block size %u is not a power of two from %u to %u", path,
                        block_size, CFI_FLASH_MIN_BLOCK_SIZE, CFI_FLASH_MAX_BLOCK_SIZE);
    if (size == 0 || size % block_size)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                        "flash image %s: size %llu bytes is not a non-zero multiple of the "
                        "flash block size (%u bytes)",
                        path, (unsigned long long)size, block_size);
    if (size > CFI_FLASH_MAX_SIZE || size / block_size > CFI_FLASH_MAX_BLOCKS)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0,
                        "flash image %s: size %llu bytes is too large for a flash (at most %u "
                        "bytes and %u blocks)",
                        path, (unsigned long long)size, CFI_FLASH_MAX_SIZE, CFI_FLASH_MAX_BLOCKS);
    return VMK_OK;
}

vmk_result cfi_flash_open(const char *path, bool read_only, uint32_t block_size,
                          struct cfi_flash **out, vmk_error **err)
{
    *out = NULL;
    if (!path || !*path)
        return vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "flash image: no path");
    struct cfi_flash *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "flash image %s: out of memory", path);
    }
    f->fd = -1;
    f->array = MAP_FAILED;
    f->read_only = read_only;
    f->block_size = block_size;
    f->status = SR_READY;
    vmk_result r;
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        free(f->path);
        free(f);
        return vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "flash image %s: out of memory", path);
    }
    f->fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        r = vmk_fail(err, VMK_ERR_IO, e, "flash image %s: cannot open%s: %s", path,
                     read_only ? "" : " for writing", strerror(e));
        goto fail;
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        r = vmk_fail(err, VMK_ERR_IO, errno, "flash image %s: cannot stat: %s", path,
                     strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        r = vmk_fail(err, VMK_ERR_INVALID_CONFIG, 0, "flash image %s: not a regular file", path);
        goto fail;
    }
    f->size = (uint64_t)st.st_size;
    if ((r = check_geometry(path, f->size, block_size, err)) != VMK_OK)
        goto fail;
    if ((r = file_lock(f->fd, "flash image", path, read_only, "a VM", err)) != VMK_OK)
        goto fail;
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    f->map_len = (size_t)(f->size + pg - 1) / pg * pg;
    f->array = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (f->array == MAP_FAILED || (!read_only && !(f->erased = malloc(block_size)))) {
        r = vmk_fail(err, VMK_ERR_NO_MEMORY, ENOMEM, "flash image %s: out of memory", path);
        goto fail;
    }
    memset(f->array + f->size, 0xff, f->map_len - (size_t)f->size);
    if (f->erased)
        memset(f->erased, 0xff, block_size);
    if ((r = read_image(f, err)) != VMK_OK)
        goto fail;
    build_query(f);
    *out = f;
    return VMK_OK;
fail:
    cfi_flash_free(f);
    return r;
}

int cfi_flash_flush(struct cfi_flash *f)
{
    pthread_mutex_lock(&f->lock);
    int r = sync_file(f);
    if (f->first_err)
        r = f->first_err;
    pthread_mutex_unlock(&f->lock);
    return r;
}

void cfi_flash_free(struct cfi_flash *f)
{
    if (!f)
        return;
    if (f->fd >= 0) {
        (void)sync_file(f);
        close(f->fd);
    }
    if (f->array != MAP_FAILED)
        munmap(f->array, f->map_len);
    pthread_mutex_destroy(&f->lock);
    free(f->erased);
    free(f->path);
    free(f);
}

uint64_t cfi_flash_size(const struct cfi_flash *f)
{
    return f->size;
}

bool cfi_flash_read_only(const struct cfi_flash *f)
{
    return f->read_only;
}

const uint8_t *cfi_flash_array(const struct cfi_flash *f)
{
    return f->array;
}

bool cfi_flash_in_read_array(struct cfi_flash *f)
{
    pthread_mutex_lock(&f->lock);
    bool r = f->mode == MODE_ARRAY;
    pthread_mutex_unlock(&f->lock);
    return r;
}

void cfi_flash_set_mode_listener(struct cfi_flash *f, void (*fn)(void *ctx, bool read_array),
                                 void *ctx)
{
    pthread_mutex_lock(&f->lock);
    f->listener = fn;
    f->listener_ctx = ctx;
    pthread_mutex_unlock(&f->lock);
}

/* EFI_FIRMWARE_VOLUME_HEADER (PI specification, volume 3): FvLength at +32, Signature at +40,
 * HeaderLength at +48, Checksum at +50 (the header's 16-bit words sum to zero), the block
 * map from +56 ending in a zero entry (so at least 72 bytes). */
#define FV_SIGNATURE_OFF  40
#define FV_MIN_HEADER_LEN 72
#define FV_ALIGN          4096

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static bool fv_header_at(const uint8_t *p, size_t avail)
{
    if (avail < FV_MIN_HEADER_LEN || memcmp(p + FV_SIGNATURE_OFF, "_FVH", 4) != 0)
        return false;
    size_t hlen = (size_t)p[48] | (size_t)p[49] << 8;
    uint64_t fvlen = le64(p + 32);
    if (hlen < FV_MIN_HEADER_LEN || hlen % 2 || hlen > avail || fvlen < hlen || fvlen > avail)
        return false;
    uint16_t sum = 0;
    for (size_t i = 0; i < hlen; i += 2)
        sum = (uint16_t)(sum + (p[i] | p[i + 1] << 8));
    return sum == 0;
}

bool cfi_flash_image_is_firmware_volume(const uint8_t *data, size_t len)
{
    if (!data)
        return false;
    for (size_t off = 0; off < len; off += FV_ALIGN) {
        if (fv_header_at(data + off, len - off))
            return true;
        if (len - off <= FV_ALIGN)
            break;
    }
    return false;
}
