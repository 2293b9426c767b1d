/* Shared definitions for vmkit's tiny test guests (assembled with cpp, so only
 * C-style comments, #defines and assembler macros here). Ports come from the
 * machine layout; the register bits below are the devices' own, as a guest driver
 * would know them. */
#ifndef VMK_TINY_GUEST_H
#define VMK_TINY_GUEST_H

#include "arch/x86/layout.h"

/* 16550 UART registers (offsets from the port base) and line-status bits. */
#define UART_RBR      0
#define UART_THR      0
#define UART_LSR      5
#define UART_LSR_DR   0x01 /* a received byte is waiting */
#define UART_LSR_THRE 0x20 /* the transmit holding register is empty */

/* ACPI PM1a event block: status at +0, enable at +2; both 16 bits. */
#define PM1_STS_PORT   (X86_PM1A_EVT_PORT + 0)
#define PM1_EN_PORT    (X86_PM1A_EVT_PORT + 2)
#define PM1_PWRBTN     (1 << 8) /* PWRBTN_STS / PWRBTN_EN */
#define PM1_CNT_SLP_EN (1 << 13)
#define PM1_CNT_S5     ((X86_S5_SLP_TYP << 10) | PM1_CNT_SLP_EN)

/* The ACPI PM timer counts at 3.579545 MHz; only 24 bits are guaranteed. */
#define PM_TMR_HZ          3579545
#define PM_TMR_MASK        0xffffff
#define PM_TICKS_PER_MS    3580
/* A delay gives up after this many reads, so a dead timer slows a guest
 * down instead of hanging it. */
#define PM_DELAY_MAX_POLLS 50000

/* i8042 controller: status register bit and the pulse-reset command. */
#define I8042_STATUS_IBF 0x02
#define I8042_CMD_RESET  0xfe

/* CMOS RTC registers. */
#define RTC_DATA_PORT (X86_RTC_PORT + 1)
#define RTC_DAY       0x07
#define RTC_MONTH     0x08
#define RTC_YEAR      0x09
#define RTC_REG_A     0x0a
#define RTC_REG_B     0x0b
#define RTC_A_UIP     0x80 /* an update is in progress: the date may be torn */
#define RTC_B_BINARY  0x04 /* DM: values are binary instead of BCD */

/* Characters, spelled as numbers because cpp dislikes lone quotes. */
#define CH_NL       0x0a
#define CH_DASH     0x2d
#define CH_0        0x30
#define CH_LOWER_A  0x61
#define CH_LOWER_Z  0x7a
#define CH_CASE_BIT 0x20

/* Assembler from here on: not C for clang-format. */
/* clang-format off */

/* Opens a guest's code: guest_main, which lib.S's _start calls in 64-bit mode. */
.macro guest_main_begin
    .code64
    .section .note.GNU-stack, "", @progbits
    .text
    .globl guest_main
guest_main:
.endm

/* guest_main_begin, then writes line (a string) on COM1: most guests first say
 * what they are about to do. */
.macro guest_main_prints line
    .section .rodata
guest_banner: .asciz "\line"
    guest_main_begin
    lea guest_banner(%rip), %rdi
    call serial_puts
.endm

/* clang-format on */

#endif
