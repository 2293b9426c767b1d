/* The host side of a disk image attachment: a raw image in a regular file or a block
 * device, served through struct blk_backend with preadv/pwritev straight between the
 * file and guest RAM. UNCACHED opens it with O_DIRECT; requests whose buffers are not
 * aligned for that go through an aligned bounce buffer, and requests whose offset or
 * length is not go through a second, cached descriptor. */
#ifndef VMK_ATTACH_DISK_IMAGE_H
#define VMK_ATTACH_DISK_IMAGE_H

#include "virtio/blk.h"
#include "vmkit.h"

#include <stdbool.h>

struct disk_image;

/* Opens path. The size must be a multiple of 512; a block device's logical block size
 * (BLKSSZGET) becomes the backend's block_size, a file's is 512. */
vmk_result disk_image_open(const char *path, bool read_only, vmk_disk_caching_mode caching,
                           vmk_disk_sync_mode sync, struct disk_image **out, vmk_error **err)
    __attribute__((warn_unused_result));
/* The same, from a validated attachment. */
vmk_result disk_image_open_attachment(const vmk_storage_attachment *att, struct disk_image **out,
                                      vmk_error **err) __attribute__((warn_unused_result));
/* The backend to hand to a device; valid until disk_image_close. */
const struct blk_backend *disk_image_backend(const struct disk_image *img);
/* Whether the image was opened with O_DIRECT (UNCACHED, when the file system allows). */
bool disk_image_is_direct(const struct disk_image *img);
/* Closes the image; the device using its backend must be gone. NULL does nothing. */
void disk_image_close(struct disk_image *img);

#endif
