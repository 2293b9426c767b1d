/* rtc: reads the CMOS date and prints it as "rtc 20YY-MM-DD", then powers off. */
#include "guest.h"

    guest_main_begin
    push %r12
    push %r13
    push %r14
    /* Read the date twice, each after an update finished; retry if it moved. */
1:  call wait_no_update
    mov $RTC_YEAR, %edi
    call cmos_read
    mov %eax, %r12d
    mov $RTC_MONTH, %edi
    call cmos_read
    mov %eax, %r13d
    mov $RTC_DAY, %edi
    call cmos_read
    mov %eax, %r14d
    call wait_no_update
    mov $RTC_YEAR, %edi
    call cmos_read
    cmp %eax, %r12d
    jne 1b
    mov $RTC_MONTH, %edi
    call cmos_read
    cmp %eax, %r13d
    jne 1b
    mov $RTC_DAY, %edi
    call cmos_read
    cmp %eax, %r14d
    jne 1b

    /* Register B says whether the values are BCD (the default) or binary. */
    mov $RTC_REG_B, %edi
    call cmos_read
    test $RTC_B_BINARY, %al
    jz 2f
    mov %r12d, %edi
    call to_bcd
    mov %eax, %r12d
    mov %r13d, %edi
    call to_bcd
    mov %eax, %r13d
    mov %r14d, %edi
    call to_bcd
    mov %eax, %r14d

2:  lea prefix(%rip), %rdi
    call serial_puts
    mov %r12d, %edi
    call serial_put_hex8
    mov $CH_DASH, %edi
    call serial_putc
    mov %r13d, %edi
    call serial_put_hex8
    mov $CH_DASH, %edi
    call serial_putc
    mov %r14d, %edi
    call serial_put_hex8
    mov $CH_NL, %edi
    call serial_putc
    pop %r14
    pop %r13
    pop %r12
    jmp power_off

/* cmos_read(index): returns the CMOS byte at index (NMIs stay enabled). */
cmos_read:
    mov %edi, %eax
    out %al, $X86_RTC_PORT
    in $RTC_DATA_PORT, %al
    movzbl %al, %eax
    ret

/* wait_no_update(): spins (bounded) while register A reports UIP. */
wait_no_update:
    push %rbx
    mov $100000, %ebx
1:  mov $RTC_REG_A, %edi
    call cmos_read
    test $RTC_A_UIP, %al
    jz 2f
    dec %ebx
    jnz 1b
2:  pop %rbx
    ret

/* to_bcd(n): n < 100 in binary -> packed BCD. */
to_bcd:
    mov %edi, %eax
    xor %edx, %edx
    mov $10, %ecx
    div %ecx
    shl $4, %eax
    or %edx, %eax
    ret

    .section .rodata
prefix: .asciz "rtc 20"
