/* halt: prints a line, then halts with interrupts off: it never wakes, so only
 * the host can stop it. */
#include "guest.h"

    guest_main_prints "halting\n"
    jmp halt_forever
