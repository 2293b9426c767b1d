/* The advisory lock a file the machine uses holds while it is open (a disk image, a firmware
 * variable store): shared for a reader, exclusive for a writer, so two VMs never write one
 * file. An open file description lock: it belongs to this open of the file, not the process,
 * so a second open conflicts even inside one process. */
#ifndef VMK_CORE_FILE_LOCK_H
#define VMK_CORE_FILE_LOCK_H

#include <stdbool.h>

#include "vmkit.h"

/* Locks fd (what names the file in messages: "disk image", "flash image"; users: who else
 * could hold it). A file system without locks is used unlocked. VMK_OK, or VMK_ERR_IO when
 * another open holds a conflicting lock or locking failed. */
vmk_result file_lock(int fd, const char *what, const char *path, bool read_only, const char *users,
                     vmk_error **err) __attribute__((warn_unused_result));

#endif
