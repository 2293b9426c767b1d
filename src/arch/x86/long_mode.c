#include "arch/x86/long_mode.h"
#include "arch/x86/layout.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define PTE_PRESENT 0x1ULL
#define PTE_WRITE   0x2ULL
#define PTE_LARGE   0x80ULL

#define CR0_PE   0x1ULL
#define CR0_MP   0x2ULL
#define CR0_ET   0x10ULL
#define CR0_NE   0x20ULL
#define CR0_PG   0x80000000ULL
#define CR4_PAE  0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

/* null, null, 64-bit code (0x10), data (0x18) */
static const uint64_t gdt[] = {
    0,
    0,
    0x00af9b000000ffffULL,
    0x00cf93000000ffffULL,
};

int x86_long_mode_tables(const struct guest_memory *gm)
{
    if (gm_write(gm, X86_GDT_ADDR, gdt, sizeof(gdt)) < 0)
        return -EFAULT;
    uint64_t *pml4 = gm_ptr(gm, X86_PML4_ADDR, 4096);
    uint64_t *pdpt = gm_ptr(gm, X86_PDPT_ADDR, 4096);
    uint64_t *pd = gm_ptr(gm, X86_PD_ADDR, 4 * 4096);
    if (!pml4 || !pdpt || !pd)
        return -EFAULT;
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = X86_PDPT_ADDR | PTE_PRESENT | PTE_WRITE;
    for (uint64_t i = 0; i < 4; i++)
        pdpt[i] = (X86_PD_ADDR + i * 4096) | PTE_PRESENT | PTE_WRITE;
    /* 2048 entries of 2 MiB: the first 4 GiB, holes included (never touched). */
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | PTE_PRESENT | PTE_WRITE | PTE_LARGE;
    return 0;
}

static void flat_segment(struct kvm_segment *s, uint16_t selector, uint8_t type, bool code)
{
    *s = (struct kvm_segment){
        .base = 0,
        .limit = 0xffffffff,
        .selector = selector,
        .type = type,
        .present = 1,
        .dpl = 0,
        .db = code ? 0 : 1,
        .s = 1,
        .l = code ? 1 : 0,
        .g = 1,
    };
}

void x86_long_mode_sregs(struct kvm_sregs *sregs)
{
    flat_segment(&sregs->cs, X86_CODE64_SELECTOR, 0xb, true);
    flat_segment(&sregs->ds, X86_DATA_SELECTOR, 0x3, false);
    sregs->es = sregs->fs = sregs->gs = sregs->ss = sregs->ds;
    sregs->gdt.base = X86_GDT_ADDR;
    sregs->gdt.limit = sizeof(gdt) - 1;
    sregs->idt.base = 0;
    sregs->idt.limit = 0;
    sregs->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
    sregs->cr3 = X86_PML4_ADDR;
    sregs->cr4 = CR4_PAE;
    sregs->efer = EFER_LME | EFER_LMA;
}
