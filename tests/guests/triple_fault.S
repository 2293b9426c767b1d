/* triple_fault: prints a line, then executes ud2. No IDT is loaded, so the #UD
 * cannot be delivered and the CPU shuts down. */
#include "guest.h"

    guest_main_prints "about to fault\n"
    .globl fault_here
fault_here:
    ud2
    jmp halt_forever
