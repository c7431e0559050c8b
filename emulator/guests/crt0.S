/*
 * Start-up code shared by every guest: stack, .bss, PMP, trap vector, main(), power-off.
 *
 * QEMU's virt reset code (and livesnap's emulator) jump to 0x8000_0000 in machine mode with
 * a0 = hart id. Only hart 0 runs; any other hart parks in a wfi loop.
 */
#include "lib/trap_frame.h"

    .section .text.start, "ax"
    .option push
    .option norvc
    .globl _start
_start:
    j       start_real          /* 4 bytes; the config block follows at 0x8000_0040 */
    .option pop

    .section .text.init, "ax"
start_real:
    csrw    mie, zero
    csrw    mscratch, zero      /* 0 = "the trap came from machine mode", see trap_entry */
    csrr    t0, mhartid
    bnez    t0, park

    /* mret must return to machine mode while PMP is being probed below. */
    li      t0, MSTATUS_MPP
    csrs    mstatus, t0

    /*
     * PMP: allow user mode to reach all of memory (privileged spec 3.7). Without an entry QEMU
     * denies every user-mode access. On a hart without PMP these CSRs are read-only zero; a hart
     * that raises illegal-instruction for them instead is handled by skip_insn.
     */
    la      t0, skip_insn
    csrw    mtvec, t0
    li      t0, -1
    csrw    pmpaddr0, t0        /* NAPOT over the whole address space */
    li      t0, 0x1f            /* A=NAPOT, X, W, R */
    csrw    pmpcfg0, t0

    la      t0, trap_entry
    csrw    mtvec, t0           /* direct mode: trap_entry is 4-byte aligned */

    la      sp, __stack_top
    la      t0, boot_fdt        /* QEMU passes the device tree's address in a1; it sits near the */
    sw      a1, 0(t0)           /* top of RAM, so guests keep their working sets below it */

    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sw      zero, 0(t0)
    addi    t0, t0, 4
    j       1b
2:
    li      a0, 0
    li      a1, 0
    call    main
    call    poweroff            /* a0 = main's return value; never returns */
park:
    wfi
    j       park

    .balign 4
skip_insn:
    csrr    t0, mepc
    addi    t0, t0, 4
    csrw    mepc, t0
    mret

/*
 * The trap vector (privileged spec 3.1.7, direct mode). mscratch holds the machine-mode stack
 * pointer while user code runs and 0 while machine code runs, so one swap tells where we came
 * from. The frame layout is struct trap_frame (lib/trap_frame.h); the C handler may change any
 * saved register, mepc or mstatus and they are restored from the frame.
 */
    .text
    .balign 4
    .globl trap_entry
trap_entry:
    csrrw   sp, mscratch, sp
    bnez    sp, 1f              /* from user mode: sp is now the machine stack */
    csrrw   sp, mscratch, sp    /* from machine mode: undo the swap (mscratch = 0 again) */
1:
    addi    sp, sp, -TF_SIZE
    sw      x1,  1*4(sp)
    sw      x3,  3*4(sp)
    sw      x4,  4*4(sp)
    sw      x5,  5*4(sp)
    sw      x6,  6*4(sp)
    sw      x7,  7*4(sp)
    sw      x8,  8*4(sp)
    sw      x9,  9*4(sp)
    sw      x10, 10*4(sp)
    sw      x11, 11*4(sp)
    sw      x12, 12*4(sp)
    sw      x13, 13*4(sp)
    sw      x14, 14*4(sp)
    sw      x15, 15*4(sp)
    sw      x16, 16*4(sp)
    sw      x17, 17*4(sp)
    sw      x18, 18*4(sp)
    sw      x19, 19*4(sp)
    sw      x20, 20*4(sp)
    sw      x21, 21*4(sp)
    sw      x22, 22*4(sp)
    sw      x23, 23*4(sp)
    sw      x24, 24*4(sp)
    sw      x25, 25*4(sp)
    sw      x26, 26*4(sp)
    sw      x27, 27*4(sp)
    sw      x28, 28*4(sp)
    sw      x29, 29*4(sp)
    sw      x30, 30*4(sp)
    sw      x31, 31*4(sp)
    csrr    t0, mscratch        /* the user sp, or 0 when the trap came from machine mode */
    bnez    t0, 2f
    addi    t0, sp, TF_SIZE
2:  sw      t0, 2*4(sp)
    csrw    mscratch, zero
    csrr    t0, mepc
    sw      t0, TF_MEPC(sp)
    csrr    t0, mcause
    sw      t0, TF_MCAUSE(sp)
    csrr    t0, mtval
    sw      t0, TF_MTVAL(sp)
    csrr    t0, mstatus
    sw      t0, TF_MSTATUS(sp)

    mv      a0, sp
    call    trap_handler
    bnez    a0, user_task_done

    lw      t0, TF_MEPC(sp)
    csrw    mepc, t0
    lw      t0, TF_MSTATUS(sp)
    csrw    mstatus, t0
    li      t1, MSTATUS_MPP
    and     t0, t0, t1
    bnez    t0, 3f              /* back to machine mode: mscratch stays 0 */
    addi    t0, sp, TF_SIZE     /* back to user mode: the machine stack for the next trap */
    csrw    mscratch, t0
3:
    lw      x1,  1*4(sp)
    lw      x3,  3*4(sp)
    lw      x4,  4*4(sp)
    lw      x5,  5*4(sp)
    lw      x6,  6*4(sp)
    lw      x7,  7*4(sp)
    lw      x8,  8*4(sp)
    lw      x9,  9*4(sp)
    lw      x10, 10*4(sp)
    lw      x11, 11*4(sp)
    lw      x12, 12*4(sp)
    lw      x13, 13*4(sp)
    lw      x14, 14*4(sp)
    lw      x15, 15*4(sp)
    lw      x16, 16*4(sp)
    lw      x17, 17*4(sp)
    lw      x18, 18*4(sp)
    lw      x19, 19*4(sp)
    lw      x20, 20*4(sp)
    lw      x21, 21*4(sp)
    lw      x22, 22*4(sp)
    lw      x23, 23*4(sp)
    lw      x24, 24*4(sp)
    lw      x25, 25*4(sp)
    lw      x26, 26*4(sp)
    lw      x27, 27*4(sp)
    lw      x28, 28*4(sp)
    lw      x29, 29*4(sp)
    lw      x30, 30*4(sp)
    lw      x31, 31*4(sp)
    lw      x2,  2*4(sp)
    mret

/*
 * u32 run_user(u32 (*fn)(u32), u32 arg, void *user_stack_top)
 *
 * Runs fn(arg) in user mode (mstatus.MPP = U, mret) on the given stack. fn returns into
 * user_return, which makes the SYS_EXIT ecall; trap_handler answers 1 for it (or for a fault
 * that kills the task) and we land in user_task_done, which returns the task's a0 to the caller
 * of run_user in machine mode.
 */
    .globl run_user
run_user:
    addi    sp, sp, -64
    sw      ra,  0(sp)
    sw      s0,  4(sp)
    sw      s1,  8(sp)
    sw      s2,  12(sp)
    sw      s3,  16(sp)
    sw      s4,  20(sp)
    sw      s5,  24(sp)
    sw      s6,  28(sp)
    sw      s7,  32(sp)
    sw      s8,  36(sp)
    sw      s9,  40(sp)
    sw      s10, 44(sp)
    sw      s11, 48(sp)
    csrr    t0, mstatus
    sw      t0,  52(sp)
    la      t0, run_user_saved_sp
    sw      sp, 0(t0)
    csrw    mscratch, sp
    csrw    mepc, a0
    li      t0, MSTATUS_MPP
    csrc    mstatus, t0         /* MPP = U */
    mv      a0, a1
    mv      sp, a2
    la      ra, user_return
    mret

user_task_done:
    lw      a0, 10*4(sp)        /* the task's a0: its result, or the fault code set by the handler */
    la      t0, run_user_saved_sp
    lw      sp, 0(t0)
    csrw    mscratch, zero
    lw      t0,  52(sp)
    csrw    mstatus, t0         /* MIE and MPP as they were when run_user was called */
    lw      ra,  0(sp)
    lw      s0,  4(sp)
    lw      s1,  8(sp)
    lw      s2,  12(sp)
    lw      s3,  16(sp)
    lw      s4,  20(sp)
    lw      s5,  24(sp)
    lw      s6,  28(sp)
    lw      s7,  32(sp)
    lw      s8,  36(sp)
    lw      s9,  40(sp)
    lw      s10, 44(sp)
    lw      s11, 48(sp)
    addi    sp, sp, 64
    ret

    .globl user_return
user_return:
    li      a7, SYS_EXIT
    ecall
1:  j       1b

    .section .bss
    .balign 4
run_user_saved_sp:
    .word   0

    .section .data              /* not .bss: written before .bss is cleared */
    .balign 4
    .globl boot_fdt
boot_fdt:
    .word   0
