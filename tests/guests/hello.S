/* hello: prints one line on COM1, then powers off through ACPI S5. */
#include "guest.h"

    .code64
    .section .note.GNU-stack, "", @progbits
    .text
    .globl guest_main
guest_main:
    lea msg(%rip), %rdi
    call serial_puts
    jmp power_off

    .section .rodata
msg: .asciz "hello from vmkit guest\n"
