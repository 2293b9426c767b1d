/* echo: prints "ready", then echoes COM1 input upper-cased up to and including
 * the first newline, then powers off a moment later: a pty's reader must get the echo
 * before the machine's end closes the pty, which discards what the reader did not
 * take yet. */
#include "guest.h"

    guest_main_prints "ready\n"
    push %rbx
1:  call serial_getc
    mov %eax, %ebx
    cmp $CH_LOWER_A, %bl
    jb 2f
    cmp $CH_LOWER_Z, %bl
    ja 2f
    xor $CH_CASE_BIT, %bl
2:  movzbl %bl, %edi
    call serial_putc
    cmp $CH_NL, %bl
    jne 1b
    pop %rbx
    mov $(200 * PM_TICKS_PER_MS), %edi
    call pm_delay
    jmp power_off
