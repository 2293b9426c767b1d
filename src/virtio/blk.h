/* virtio-blk (virtio 1.2, 5.2): a block device over a backend it knows only through
 * struct block_backend, so the same device serves a disk image, a test's memory buffer
 * or a network disk. Requests are parsed on the thread that kicks the queue and
 * executed by a small worker pool, which completes them; reset waits for them. */
#ifndef VMK_VIRTIO_BLK_H
#define VMK_VIRTIO_BLK_H

#include "block/backend.h"
#include "virtio/virtio_device.h"
#include "vmkit.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#define VIRTIO_BLK_SECTOR_SIZE 512u
#define VIRTIO_BLK_ID_BYTES    20u
#define VIRTIO_BLK_MAX_QUEUES  16u
#define VIRTIO_BLK_QUEUE_SIZE  256u

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types (5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u

/* Configuration space offsets (struct virtio_blk_config, little-endian). */
#define VIRTIO_BLK_CFG_CAPACITY                 0  /* le64, 512-byte sectors */
#define VIRTIO_BLK_CFG_SIZE_MAX                 8  /* le32 */
#define VIRTIO_BLK_CFG_SEG_MAX                  12 /* le32 */
#define VIRTIO_BLK_CFG_BLK_SIZE                 20 /* le32 */
#define VIRTIO_BLK_CFG_NUM_QUEUES               34 /* le16 */
#define VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS      36 /* le32 */
#define VIRTIO_BLK_CFG_MAX_DISCARD_SEG          40 /* le32 */
#define VIRTIO_BLK_CFG_DISCARD_SECTOR_ALIGNMENT 44 /* le32 */
#define VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SECTORS 48 /* le32 */
#define VIRTIO_BLK_CFG_MAX_WRITE_ZEROES_SEG     52 /* le32 */
#define VIRTIO_BLK_CFG_WRITE_ZEROES_MAY_UNMAP   56 /* u8 */
#define VIRTIO_BLK_CFG_SIZE                     60

/* Limits the device advertises (and enforces). */
#define VIRTIO_BLK_MAX_DISCARD_SECTORS 0x400000u /* 2 GiB per segment */
#define VIRTIO_BLK_MAX_DISCARD_SEG     32u

/* A virtio-blk device over backend (borrowed: it must outlive the device) with
 * num_queues request queues (1..VIRTIO_BLK_MAX_QUEUES) of up to
 * VIRTIO_BLK_QUEUE_SIZE entries. id: the GET_ID serial (NULL: none; at most
 * VIRTIO_BLK_ID_BYTES bytes). Starts its worker threads. Freed with
 * d->ops->destroy(d). NULL with *err set on a bad argument or failure. */
struct virtio_device *virtio_blk_new(const struct block_backend *backend, const char *id,
                                     unsigned num_queues, vmk_error **err);

#endif
