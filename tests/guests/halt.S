/* halt: prints a line, then halts with interrupts off: it never wakes, so only
 * the host can stop it. */
#include "guest.h"

    .code64
    .section .note.GNU-stack, "", @progbits
    .text
    .globl guest_main
guest_main:
    lea msg(%rip), %rdi
    call serial_puts
    jmp halt_forever

    .section .rodata
msg: .asciz "halting\n"
