/* spam: prints "spam N" lines on COM1 as fast as the UART takes them, for ever: a guest whose
 * output outruns any reader. */
#include "guest.h"

    guest_main_begin
    xor %ebx, %ebx
1:  lea prefix(%rip), %rdi
    call serial_puts
    mov %rbx, %rdi
    call serial_put_dec
    mov $CH_NL, %edi
    call serial_putc
    inc %rbx
    jmp 1b

    .section .rodata
prefix: .asciz "spam "
