/* debug_exit: prints a line, then writes 42 to the debug-exit port. */
#include "guest.h"

    guest_main_prints "debug exit 42\n"
    mov $42, %eax
    mov $X86_DEBUG_EXIT_PORT, %dx
    out %eax, %dx
    jmp halt_forever
