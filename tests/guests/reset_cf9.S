/* reset_cf9: prints a line, then resets through the PCI reset control register. */
#include "guest.h"

    .code64
    .section .note.GNU-stack, "", @progbits
    .text
    .globl guest_main
guest_main:
    lea msg(%rip), %rdi
    call serial_puts
    mov $X86_RESET_VALUE, %al
    mov $X86_RESET_PORT, %dx
    out %al, %dx
    jmp halt_forever

    .section .rodata
msg: .asciz "resetting through port 0xcf9\n"
