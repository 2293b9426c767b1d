/* pit_gate: drives PIT channel 2 through port 0x61 as Linux's TSC calibration does:
 * gate off, channel 2 in mode 0 (its output goes low when the count is written), gate on,
 * then waits up to 50 ms of PM-timer time for the output (0x61 bit 5) to go high. Prints
 * "pit gate ok", or what went wrong, and powers off. */
#include "guest.h"

#define PORT_B       0x61
#define PORT_B_GATE2 0x01 /* channel 2 gate */
#define PORT_B_SPKR  0x02 /* speaker data: kept off */
#define PORT_B_OUT2  0x20 /* channel 2 output */
#define PIT_CH2      0x42
#define PIT_MODE     0x43
#define PIT_CH2_MODE0_LOHI 0xb0 /* channel 2, lobyte/hibyte, mode 0, binary */
#define PIT_COUNT    1193 /* about 1 ms at 1.193182 MHz */

    guest_main_begin
    push %rbx
    /* Gate off, speaker off. */
    in $PORT_B, %al
    and $~(PORT_B_GATE2 | PORT_B_SPKR), %al
    out %al, $PORT_B
    /* Mode 0 and the count: the output goes low and stays low while the gate is off. */
    mov $PIT_CH2_MODE0_LOHI, %al
    out %al, $PIT_MODE
    mov $(PIT_COUNT & 0xff), %al
    out %al, $PIT_CH2
    mov $(PIT_COUNT >> 8), %al
    out %al, $PIT_CH2
    in $PORT_B, %al
    test $PORT_B_OUT2, %al
    lea high_early(%rip), %rdi
    jnz 9f
    /* Gate on: the count runs out within about a millisecond. */
    or $PORT_B_GATE2, %al
    and $~PORT_B_SPKR, %al
    out %al, $PORT_B
    mov $50, %ebx
1:  in $PORT_B, %al
    test $PORT_B_OUT2, %al
    jnz 2f
    mov $PM_TICKS_PER_MS, %edi
    call pm_delay
    dec %ebx
    jnz 1b
    lea never_high(%rip), %rdi
    jmp 9f
2:  lea ok(%rip), %rdi
9:  call serial_puts
    pop %rbx
    jmp power_off

    .section .rodata
ok: .asciz "pit gate ok\n"
high_early: .asciz "pit gate: channel 2 output high before its count ran (port 0x61 not the PIT's)\n"
never_high: .asciz "pit gate: channel 2 output still low 50 ms after the gate opened\n"
