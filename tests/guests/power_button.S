/* power_button: arms the ACPI power button, polls PM1 status until it is
 * pressed, acknowledges it, and powers off as an ACPI OS would. */
#include "guest.h"

    guest_main_prints "waiting for power button\n"
    mov $PM1_EN_PORT, %dx
    mov $PM1_PWRBTN, %eax
    out %ax, %dx
    mov $PM1_STS_PORT, %dx
1:  in %dx, %ax
    test $PM1_PWRBTN, %ax
    jz 1b
    /* Write-1-to-clear, then check that the bit really went away. */
    mov $PM1_PWRBTN, %eax
    out %ax, %dx
    in %dx, %ax
    test $PM1_PWRBTN, %ax
    jz 2f
    lea stuck(%rip), %rdi
    call serial_puts
2:  lea pressed(%rip), %rdi
    call serial_puts
    jmp power_off

    .section .rodata
pressed: .asciz "power button pressed\n"
stuck: .asciz "PWRBTN_STS did not clear\n"
