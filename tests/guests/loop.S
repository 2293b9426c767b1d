/* loop: prints "tick N" lines forever, one every TICK_MS of wall time, so its
 * output grows steadily while it runs and not at all while it is paused. */
#include "guest.h"

#define TICK_MS 20

    guest_main_begin
    xor %ebx, %ebx
1:  lea prefix(%rip), %rdi
    call serial_puts
    mov %rbx, %rdi
    call serial_put_dec
    mov $CH_NL, %edi
    call serial_putc
    inc %rbx
    mov $(TICK_MS * PM_TICKS_PER_MS), %edi
    call pm_delay
    jmp 1b

    .section .rodata
prefix: .asciz "tick "
