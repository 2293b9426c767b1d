/* Runtime shared by the tiny test guests: entry, COM1 polling I/O, a PM-timer
 * delay and ACPI S5 power-off. Calling convention is the System V one: args in
 * rdi/rsi, result in rax; rbx, rbp and r12-r15 survive calls. */
#include "guest.h"

    .code64

/* vmkit enters here in long mode with interrupts off; it promises no stack. */
    .section .text.start, "ax", @progbits
    .globl _start
_start:
    cli
    cld
    lea stack_top(%rip), %rsp
    xor %ebp, %ebp
    call guest_main
    jmp power_off

    .text

/* Spins until COM1's line status register has bit set. */
.macro com1_wait_lsr bit
    mov $(X86_COM1_PORT + UART_LSR), %dx
1:  in %dx, %al
    test $\bit, %al
    jz 1b
.endm

/* serial_putc(c): waits for THRE, then writes one byte to COM1. */
    .globl serial_putc
serial_putc:
    com1_wait_lsr UART_LSR_THRE
    mov $(X86_COM1_PORT + UART_THR), %dx
    mov %edi, %eax
    out %al, %dx
    ret

/* serial_puts(s): writes a NUL-terminated string. */
    .globl serial_puts
serial_puts:
    push %rbx
    mov %rdi, %rbx
1:  movzbl (%rbx), %edi
    test %edi, %edi
    jz 2f
    call serial_putc
    inc %rbx
    jmp 1b
2:  pop %rbx
    ret

/* serial_put_dec(n): writes n in decimal. */
    .globl serial_put_dec
serial_put_dec:
    push %rbx
    sub $32, %rsp
    lea 31(%rsp), %rbx
    movb $0, (%rbx)
    mov %rdi, %rax
    mov $10, %ecx
1:  xor %edx, %edx
    div %rcx
    add $CH_0, %dl
    dec %rbx
    mov %dl, (%rbx)
    test %rax, %rax
    jnz 1b
    mov %rbx, %rdi
    call serial_puts
    add $32, %rsp
    pop %rbx
    ret

/* serial_put_hex8(b): writes the low byte as two hex digits (a BCD byte reads
 * as its decimal value). */
    .globl serial_put_hex8
serial_put_hex8:
    push %rbx
    movzbl %dil, %ebx
    mov %ebx, %edi
    shr $4, %edi
    call put_hex_digit
    mov %ebx, %edi
    and $0xf, %edi
    call put_hex_digit
    pop %rbx
    ret

put_hex_digit:
    cmp $10, %edi
    jb 1f
    add $(CH_LOWER_A - 10 - CH_0), %edi
1:  add $CH_0, %edi
    jmp serial_putc

/* serial_getc(): waits for a received byte on COM1 and returns it. */
    .globl serial_getc
serial_getc:
    com1_wait_lsr UART_LSR_DR
    mov $(X86_COM1_PORT + UART_RBR), %dx
    in %dx, %al
    movzbl %al, %eax
    ret

/* pm_delay(ticks): spins until the PM timer has advanced by ticks (< 2^24),
 * reading it at most PM_DELAY_MAX_POLLS times. Wall-clock based, so a tick
 * lasts as long under instruction emulation as on hardware. */
    .globl pm_delay
pm_delay:
    mov $X86_PM_TMR_PORT, %dx
    in %dx, %eax
    mov %eax, %esi
    mov $PM_DELAY_MAX_POLLS, %ecx
1:  in %dx, %eax
    sub %esi, %eax
    and $PM_TMR_MASK, %eax
    cmp %edi, %eax
    jae 2f
    dec %ecx
    jnz 1b
2:  ret

/* power_off(): ACPI S5 through PM1a_CNT; halts if the machine ignores it. */
    .globl power_off
power_off:
    mov $X86_PM1A_CNT_PORT, %dx
    mov $PM1_CNT_S5, %eax
    out %ax, %dx
    /* fall through */

/* halt_forever(): interrupts off, hlt in a loop (an NMI would only loop). */
    .globl halt_forever
halt_forever:
    cli
1:  hlt
    jmp 1b

    .bss
    .balign 16
    .space 8192
stack_top:

    .section .note.GNU-stack, "", @progbits
