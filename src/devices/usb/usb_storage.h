/* A USB mass-storage device: class 08h, subclass 06h (SCSI transparent command set),
 * protocol 50h (Bulk-Only Transport), one LUN, a high-speed device with a bulk IN endpoint
 * 81h and a bulk OUT endpoint 02h of 512-byte packets. The SCSI disk behind it is
 * scsi_disk.c; this file is the USB side: descriptors, standard and class requests on the
 * default pipe, and the BOT state machine (CBW, data, CSW) on the bulk pipes.
 *
 * Where the host and the device disagree on a command's data phase (the BOT spec's thirteen
 * cases), the device pads IN data with zeroes and accepts and discards surplus OUT data up
 * to the host's length, reporting the difference as the residue; a direction it cannot
 * serve halts that pipe and reports a phase error. A CBW that is not valid or not
 * meaningful (not 31 bytes, a wrong signature, a LUN other than 0, a command block length
 * outside 1..16) halts both bulk pipes until a Bulk-Only Mass Storage Reset, as section
 * 6.6.1 asks; CLEAR_FEATURE(ENDPOINT_HALT) alone does not lift that. */
#ifndef VMK_USB_USB_STORAGE_H
#define VMK_USB_USB_STORAGE_H

#include "block/backend.h"
#include "devices/usb/usb_desc.h"
#include "vmkit.h"

#define USB_STORAGE_EP_IN      0x81
#define USB_STORAGE_EP_OUT     0x02
/* idVendor/idProduct: pid.codes' open-source vendor id and one of its test product ids, so
 * that no host applies another device's quirks to ours. */
#define USB_STORAGE_VENDOR_ID  USB_VMKIT_VENDOR_ID
#define USB_STORAGE_PRODUCT_ID 0x0001

/* Makes the device over be and returns it through *out; the controller plugs it into a port
 * and its ops.destroy frees it. be is borrowed, as by virtio-blk: whoever opened the disk
 * closes it after destroy (the block_backend interface has no close). A read-only be gives
 * a write-protected disk: MODE SENSE shows WP and writes fail with DATA PROTECT.
 * serial: the iSerialNumber string and SCSI serial, 12 to 32 characters of 0-9 and A-F
 * (BOT 4.1.1 asks for at least 12 hex digits, unique per device); NULL gives
 * "000000000001", so a machine with several disks should pass its own.
 * Fails with VMK_ERR_INVALID_ARGUMENT (an incomplete backend, a size or block size a SCSI
 * disk cannot report, a bad serial; *err says which) or VMK_ERR_NO_MEMORY. */
vmk_result usb_storage_new(const struct block_backend *be, const char *serial,
                           struct usb_device **out, vmk_error **err)
    __attribute__((warn_unused_result));

#endif
