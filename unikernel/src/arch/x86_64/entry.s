/*
 * PVH entry (x86_64), AT&T syntax.
 *
 * Xen starts the first vCPU here in 32-bit protected mode with paging off,
 * flat 4 GiB segments, and %ebx = guest-physical address of the
 * `hvm_start_info` structure (Xen's docs/misc/pvh.pandoc,
 * xen/include/public/arch-x86/hvm/start_info.h, Xen 4.17).
 *
 * We build an identity map of the first 4 GiB in 2 MiB pages, enable PAE,
 * EFER.LME and paging, load a 64-bit GDT, far-jump to long mode and call
 * `windsor_rust_start(start_info_paddr)`, which never returns.
 */

/* XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit physical entry point. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     /* namesz: "Xen\0" */
    .long 4                     /* descsz */
    .long 18                    /* type: XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long _pvh_start32
    .balign 4

    .section .text.boot, "ax", @progbits
    .code32
    .global _pvh_start32
_pvh_start32:
    cli
    cld
    /* %ebx holds the start info; keep it in %edi (the first argument
       register of the 64-bit call below). */
    mov %ebx, %edi
    mov $__boot_stack_top, %esp

    /* PML4[0] -> PDPT */
    mov $__boot_pdpt, %eax
    or $0x3, %eax               /* present | writable */
    mov %eax, __boot_pml4

    /* PDPT[0..4] -> PD[0..4] */
    mov $__boot_pd, %eax
    or $0x3, %eax
    xor %ecx, %ecx
1:
    mov %eax, __boot_pdpt(,%ecx,8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jb 1b

    /* PD entries: 2048 x 2 MiB = 4 GiB, present | writable | PS */
    xor %ecx, %ecx
2:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, __boot_pd(,%ecx,8)
    movl $0, __boot_pd+4(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 2b

    /* CR4.PAE */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4

    mov $__boot_pml4, %eax
    mov %eax, %cr3

    /* EFER.LME */
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr

    /* CR0.PG | CR0.PE: now in compatibility mode */
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0

    lgdt __boot_gdt_desc
    ljmp $0x08, $_pvh_start64

    .code64
_pvh_start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov $__boot_stack_top, %rsp
    xor %ebp, %ebp
    /* The upper halves of 64-bit registers are undefined after the mode
       switch: zero-extend the start info address. */
    mov %edi, %edi
    call windsor_rust_start
3:
    hlt
    jmp 3b

    .section .rodata.boot_gdt, "a", @progbits
    .balign 16
__boot_gdt:
    .quad 0                     /* null */
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff    /* 0x10: data, DPL 0 */
__boot_gdt_end:
    .balign 8
__boot_gdt_desc:
    .word __boot_gdt_end - __boot_gdt - 1
    .quad __boot_gdt

    .section .bss.pages, "aw", @nobits
    .balign 4096
__boot_pml4:
    .skip 4096
__boot_pdpt:
    .skip 4096
__boot_pd:
    .skip 4 * 4096
__boot_stack:
    .skip 256 * 1024
__boot_stack_top:
    .global __boot_stack_top
