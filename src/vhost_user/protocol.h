/* The vhost-user wire format (QEMU docs/interop/vhost-user.rst), as far as vmkit's back
 * end speaks it. Every message is a 12-byte header, then `size` bytes of payload; file
 * descriptors travel as SCM_RIGHTS ancillary data with the header. Little-endian host
 * order (vmkit runs on x86-64 only). */
#ifndef VMK_VHOST_USER_PROTOCOL_H
#define VMK_VHOST_USER_PROTOCOL_H

#include <stdint.h>

enum vhost_user_request {
    VHOST_USER_GET_FEATURES = 1,
    VHOST_USER_SET_FEATURES = 2,
    VHOST_USER_SET_OWNER = 3,
    VHOST_USER_RESET_OWNER = 4,
    VHOST_USER_SET_MEM_TABLE = 5,
    VHOST_USER_SET_LOG_BASE = 6,
    VHOST_USER_SET_LOG_FD = 7,
    VHOST_USER_SET_VRING_NUM = 8,
    VHOST_USER_SET_VRING_ADDR = 9,
    VHOST_USER_SET_VRING_BASE = 10,
    VHOST_USER_GET_VRING_BASE = 11,
    VHOST_USER_SET_VRING_KICK = 12,
    VHOST_USER_SET_VRING_CALL = 13,
    VHOST_USER_SET_VRING_ERR = 14,
    VHOST_USER_GET_PROTOCOL_FEATURES = 15,
    VHOST_USER_SET_PROTOCOL_FEATURES = 16,
    VHOST_USER_GET_QUEUE_NUM = 17,
    VHOST_USER_SET_VRING_ENABLE = 18,
    VHOST_USER_GET_CONFIG = 24,
    VHOST_USER_SET_CONFIG = 25,
    VHOST_USER_RESET_DEVICE = 34,
};

/* Header flags: the version in bits 0-1, then reply and need-reply. */
#define VHOST_USER_VERSION_MASK    0x3u
#define VHOST_USER_VERSION         0x1u
#define VHOST_USER_FLAG_REPLY      (1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY (1u << 3)
#define VHOST_USER_FLAGS_KNOWN \
    (VHOST_USER_VERSION_MASK | VHOST_USER_FLAG_REPLY | VHOST_USER_FLAG_NEED_REPLY)

/* Virtio feature bit 30 in GET/SET_FEATURES: the protocol-feature messages exist. */
#define VHOST_USER_F_PROTOCOL_FEATURES 30

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
#define VHOST_USER_PROTOCOL_F_MQ           0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK    3
#define VHOST_USER_PROTOCOL_F_CONFIG       9
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13

#define VHOST_USER_MAX_REGIONS 8 /* without CONFIGURE_MEM_SLOTS */
#define VHOST_USER_MAX_FDS     8
#define VHOST_USER_CONFIG_MAX  256 /* payload bytes of GET/SET_CONFIG */
/* The largest payload accepted; bigger sizes are refused before they are read. */
#define VHOST_USER_PAYLOAD_MAX 4096

/* In SET_VRING_KICK/CALL/ERR's u64: bits 0-7 the ring, bit 8 "no fd" (polling). */
#define VHOST_USER_VRING_IDX_MASK 0xffu
#define VHOST_USER_VRING_NOFD     (1u << 8)

struct vhost_user_header {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
} __attribute__((packed));

struct vhost_user_vring_state {
    uint32_t index;
    uint32_t num;
} __attribute__((packed));

struct vhost_user_vring_addr {
    uint32_t index;
    uint32_t flags; /* bit 0: log the used ring (not offered) */
    uint64_t desc;  /* front-end virtual addresses */
    uint64_t used;
    uint64_t avail;
    uint64_t log; /* guest physical, for logging only */
} __attribute__((packed));

struct vhost_user_region {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr; /* front-end virtual */
    uint64_t mmap_offset;    /* of the region in its fd */
} __attribute__((packed));

struct vhost_user_memory {
    uint32_t nregions;
    uint32_t padding;
    struct vhost_user_region regions[VHOST_USER_MAX_REGIONS];
} __attribute__((packed));

struct vhost_user_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t payload[VHOST_USER_CONFIG_MAX];
} __attribute__((packed));

#define VHOST_USER_MEMORY_HDR_SIZE 8u
#define VHOST_USER_CONFIG_HDR_SIZE 12u

#endif
