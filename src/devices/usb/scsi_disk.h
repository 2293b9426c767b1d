/* A SCSI direct-access block device (SPC-4 / SBC-3, peripheral type 0) over a struct
 * block_backend, for a transport that carries CDBs (USB mass storage's Bulk-Only Transport
 * today). The transport runs one command at a time in three steps:
 *
 *   scsi_disk_begin     parses the CDB and says which data phase the command wants;
 *   scsi_disk_data_in   moves that data in pieces, at byte offsets within the phase,
 *   / scsi_disk_data_out  as the host's transfers arrive;
 *   scsi_disk_finish    ends the command and gives its SCSI status.
 *
 * Memory stays bounded whatever the transfer length: READ and WRITE go straight between the
 * transport's iovecs and the back end, and only a sector a piece cuts in two goes through a
 * one-sector bounce buffer. A failed command leaves its sense data for REQUEST SENSE (fixed
 * format); the next command clears it, as SAM does for a transport without autosense.
 *
 * Threads: never use one scsi_disk from two threads at once. */
#ifndef VMK_USB_SCSI_DISK_H
#define VMK_USB_SCSI_DISK_H

#include "block/backend.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define SCSI_STATUS_GOOD            0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02

/* Longest serial number (VPD page 0x80) a disk takes. */
#define SCSI_DISK_SERIAL_MAX 32

enum scsi_data_dir {
    SCSI_DATA_NONE, /* no data phase (len is 0) */
    SCSI_DATA_IN,   /* device to host */
    SCSI_DATA_OUT,  /* host to device */
};

/* The data phase a command wants: exactly len bytes in direction dir. */
struct scsi_data_phase {
    enum scsi_data_dir dir;
    uint64_t len;
};

struct scsi_disk;

/* Makes a disk over be, which is borrowed: it must outlive the disk. be needs read, write
 * and flush, a size that is a non-zero multiple of its block size, and a block size of 512
 * or 4096. serial (NULL: none) is what VPD page 0x80 reports: at most SCSI_DISK_SERIAL_MAX
 * printable ASCII characters. Returns 0, -EINVAL or -ENOMEM. */
int scsi_disk_new(const struct block_backend *be, const char *serial, struct scsi_disk **out)
    __attribute__((warn_unused_result));
/* NULL does nothing. */
void scsi_disk_free(struct scsi_disk *d);

/* Starts the command in cdb (cdb_len bytes, missing bytes read as zero; longer than 16 is
 * cut) and fills *phase. A command refused before any data moves (an unknown opcode, an LBA
 * out of range, a write to a read-only disk) wants no data phase; scsi_disk_finish then
 * reports CHECK CONDITION. A command with no data (TEST UNIT READY, SYNCHRONIZE CACHE) has
 * already run when this returns. A command still open is ended first. */
void scsi_disk_begin(struct scsi_disk *d, const uint8_t *cdb, size_t cdb_len,
                     struct scsi_data_phase *phase);

/* Moves bytes [off, off + len) of a SCSI_DATA_IN phase into the first len bytes of iov
 * (data_in), or of a SCSI_DATA_OUT phase out of them (data_out). Returns how many bytes it
 * moved: len, or fewer when the range passes the end of the phase, the phase goes the other
 * way, or the command failed (its sense is set; later calls move nothing). The transport
 * then pads or discards the rest as its protocol says. */
size_t scsi_disk_data_in(struct scsi_disk *d, uint64_t off, const struct iovec *iov,
                         unsigned iovcnt, size_t len);
size_t scsi_disk_data_out(struct scsi_disk *d, uint64_t off, const struct iovec *iov,
                          unsigned iovcnt, size_t len);

/* Ends the command (also one whose data phase the transport cut short) and returns
 * SCSI_STATUS_GOOD or SCSI_STATUS_CHECK_CONDITION. A forced-unit-access write is flushed
 * here. With no command open: SCSI_STATUS_GOOD. */
uint8_t scsi_disk_finish(struct scsi_disk *d);

#endif
