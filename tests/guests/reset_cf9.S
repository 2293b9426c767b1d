/* reset_cf9: prints a line, then resets through the PCI reset control register. */
#include "guest.h"

    guest_main_prints "resetting through port 0xcf9\n"
    mov $X86_RESET_VALUE, %al
    mov $X86_RESET_PORT, %dx
    out %al, %dx
    jmp halt_forever
