/*
 * CPU exception entry stubs (vectors 0-31), AT&T syntax.
 *
 * Each stub makes the stack look the same: [vector][error code][rip][cs]
 * [rflags][rsp][ss], pushing a zero error code for the vectors where the
 * CPU pushes none, then calls `windsor_exception(frame)`, which reports
 * and shuts the domain down (it never returns). Interrupts stay disabled
 * for the life of the domain, so only exceptions ever arrive here.
 */
    .section .text.exceptions, "ax", @progbits
    .code64

    .macro EXC_NOERR n
    .balign 16
__windsor_exc\n:
    pushq $0
    pushq $\n
    jmp __windsor_exc_common
    .endm

    .macro EXC_ERR n
    .balign 16
__windsor_exc\n:
    pushq $\n
    jmp __windsor_exc_common
    .endm

    EXC_NOERR 0
    EXC_NOERR 1
    EXC_NOERR 2
    EXC_NOERR 3
    EXC_NOERR 4
    EXC_NOERR 5
    EXC_NOERR 6
    EXC_NOERR 7
    EXC_ERR   8
    EXC_NOERR 9
    EXC_ERR   10
    EXC_ERR   11
    EXC_ERR   12
    EXC_ERR   13
    EXC_ERR   14
    EXC_NOERR 15
    EXC_NOERR 16
    EXC_ERR   17
    EXC_NOERR 18
    EXC_NOERR 19
    EXC_NOERR 20
    EXC_ERR   21
    EXC_NOERR 22
    EXC_NOERR 23
    EXC_NOERR 24
    EXC_NOERR 25
    EXC_NOERR 26
    EXC_NOERR 27
    EXC_NOERR 28
    EXC_ERR   29
    EXC_ERR   30
    EXC_NOERR 31

__windsor_exc_common:
    mov %rsp, %rdi
    and $-16, %rsp
    call windsor_exception
1:
    hlt
    jmp 1b

    .section .rodata.exceptions, "a", @progbits
    .balign 8
    .global __windsor_exc_table
__windsor_exc_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad __windsor_exc\n
    .endr
