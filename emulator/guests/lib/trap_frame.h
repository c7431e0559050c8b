/*
 * The trap frame that crt0.S's trap_entry builds on the machine stack. Shared by assembly and C,
 * so the offsets are plain numbers checked against the struct with _Static_assert in trap.c.
 */
#ifndef LIVESNAP_GUEST_TRAP_FRAME_H
#define LIVESNAP_GUEST_TRAP_FRAME_H

#define TF_MEPC 128
#define TF_MCAUSE 132
#define TF_MTVAL 136
#define TF_MSTATUS 140
#define TF_SIZE 144

#define MSTATUS_MIE 0x8
#define MSTATUS_MPIE 0x80
#define MSTATUS_MPP 0x1800

/* System calls from user mode: a7 = number, a0.. = arguments, a0 = result. */
#define SYS_PUTC 1
#define SYS_WRITE 64
#define SYS_EXIT 93

#ifndef __ASSEMBLER__
#include <stdint.h>

struct trap_frame {
  uint32_t regs[32]; /* regs[2] is the sp at the time of the trap; regs[0] unused */
  uint32_t mepc;
  uint32_t mcause;
  uint32_t mtval;
  uint32_t mstatus;
};
#endif

#endif
