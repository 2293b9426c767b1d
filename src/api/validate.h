/* Validation, split by object family: each family's file judges its own objects, and
 * validate.c adds what spans several (counts, one socket or image used twice). */
#ifndef VMK_API_VALIDATE_H
#define VMK_API_VALIDATE_H

#include "api/config_internal.h"
#include "api/problems.h"
#include "block/disk_image.h"

/* The boot loader against the machine it boots (memory size). */
void boot_loader_validate(const vmk_config *cfg, struct problems *p);
void efi_boot_loader_validate(const vmk_boot_loader *bl, struct problems *p);
/* what names the port in messages ("serial port 2", "console port 1"). */
void serial_attachment_validate(const vmk_serial_attachment *att, const char *what,
                                struct problems *p);
/* what: "storage device 2". Returns whether the image is usable, with what the probe found. */
bool storage_device_validate(const vmk_storage_device *dev, const char *what, struct problems *p,
                             struct disk_image_info *info);
void entropy_device_validate(const vmk_entropy_device *dev, const char *what, struct problems *p);
void socket_device_validate(const vmk_socket_device *dev, const char *what, struct problems *p);
void memory_balloon_device_validate(const vmk_memory_balloon_device *dev, const char *what,
                                    struct problems *p);
/* Ports: names, console flags, attachments. what: "console device 1". */
void console_device_validate(const vmk_console_device *dev, const char *what, struct problems *p);
/* Network device index of cfg ("network device N" in messages), its attachment, and what it
 * shares with the devices before it: a MAC address, a forwarded host port. */
void network_device_validate(const vmk_config *cfg, unsigned index, struct problems *p);

/* Everything but the machine itself (CPUs, memory, boot loader): the devices and ports, their
 * counts, and what spans them. vmk_config_validate and the vhost-user server both use it. */
void config_validate_devices(const vmk_config *cfg, struct problems *p);

#endif
