/* reset_i8042: prints a line, then pulses the reset line through the i8042
 * controller, as Linux's reboot=k does. */
#include "guest.h"

    guest_main_prints "resetting through the i8042\n"
    /* Wait (a bounded while) for the controller's input buffer to drain. */
    mov $1000, %ecx
1:  in $X86_I8042_CMD_PORT, %al
    test $I8042_STATUS_IBF, %al
    jz 2f
    dec %ecx
    jnz 1b
2:  mov $I8042_CMD_RESET, %al
    out %al, $X86_I8042_CMD_PORT
    jmp halt_forever
