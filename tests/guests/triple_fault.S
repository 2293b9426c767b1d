/* triple_fault: prints a line, then executes ud2. No IDT is loaded, so the #UD
 * cannot be delivered and the CPU shuts down. */
#include "guest.h"

    .code64
    .section .note.GNU-stack, "", @progbits
    .text
    .globl guest_main
guest_main:
    lea msg(%rip), %rdi
    call serial_puts
    .globl fault_here
fault_here:
    ud2
    jmp halt_forever

    .section .rodata
msg: .asciz "about to fault\n"
