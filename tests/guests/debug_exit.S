/* debug_exit: prints a line, then writes 42 to the debug-exit port. */
#include "guest.h"

    .code64
    .section .note.GNU-stack, "", @progbits
    .text
    .globl guest_main
guest_main:
    lea msg(%rip), %rdi
    call serial_puts
    mov $42, %eax
    mov $X86_DEBUG_EXIT_PORT, %dx
    out %eax, %dx
    jmp halt_forever

    .section .rodata
msg: .asciz "debug exit 42\n"
