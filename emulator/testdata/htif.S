# riscv-tests style HTIF guest: prints "hi\n" through HTIF's console device (device 1,
# command 1; upper word written last), then reports through `tohost` like RVTEST_PASS/FAIL:
# (TESTNUM << 1) | 1, TESTNUM = 0 on success. TESTNUM comes from the first word of .data so a
# test can patch it. Built by build.sh.
  .section .text.init
  .globl _start
_start:
  la t0, tohost
  la t2, message
1:
  lbu t1, 0(t2)
  beqz t1, 2f
  sw t1, 0(t0)
  li t3, 0x01010000
  sw t3, 4(t0)
3:
  lw t4, 0(t0)            # the host clears tohost once it has taken the byte
  bnez t4, 3b
  addi t2, t2, 1
  j 1b
2:
  la t1, testnum
  lw t1, 0(t1)
  slli t1, t1, 1
  ori t1, t1, 1
write_tohost:
  sw t1, 0(t0)
  sw zero, 4(t0)
  j write_tohost

  .data
  .globl testnum
testnum: .word 0
message: .asciz "hi\n"

  .section .tohost, "aw", @progbits
  .align 6
  .globl tohost
tohost: .dword 0
  .size tohost, 8
  .align 6
  .globl fromhost
fromhost: .dword 0
  .size fromhost, 8
