/* The CPU state a 64-bit boot protocol entry expects: flat GDT, identity-mapped
 * first 4 GiB, long mode on. */
#ifndef VMK_X86_LONG_MODE_H
#define VMK_X86_LONG_MODE_H

#include "core/guest_memory.h"

#include <linux/kvm.h>

#define X86_CODE64_SELECTOR 0x10
#define X86_DATA_SELECTOR   0x18

/* Writes the GDT and page tables into guest RAM. 0 or -EFAULT (RAM too small). */
int x86_long_mode_tables(const struct guest_memory *gm) __attribute__((warn_unused_result));
/* Fills segment, control and table registers of sregs for 64-bit entry. */
void x86_long_mode_sregs(struct kvm_sregs *sregs);

#endif
