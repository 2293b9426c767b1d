/* The cheapest guest there is: its first instructions reset the machine through
 * the PCI reset control register (0xcf9), so a run measures VMM start-up and
 * tear-down alone. Linked with tests/guests/guest.ld. */
    .code64
    .section .text.start, "ax", @progbits
    .globl _start
_start:
    mov $0x06, %al
    mov $0xcf9, %dx
    out %al, %dx
1:  hlt
    jmp 1b

    .section .note.GNU-stack, "", @progbits
