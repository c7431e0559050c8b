# Echoes every byte queued on the UART (while LSR.DR is set), upper-casing ASCII letters, then
# powers off through the SiFive test device with the number of bytes as the failure code
# (0 bytes: success). For the `run --input` tests. Built by build.sh.
  .section .text.init
  .globl _start
_start:
  li t0, 0x10000000       # UART
  li t3, 0                # count
1:
  lbu t1, 5(t0)           # LSR
  andi t1, t1, 1          # DR
  beqz t1, 2f
  lbu t2, 0(t0)           # RBR
  li t4, 'a'
  bltu t2, t4, 3f
  li t4, 'z' + 1
  bgeu t2, t4, 3f
  addi t2, t2, -32
3:
  sb t2, 0(t0)            # THR
  addi t3, t3, 1
  j 1b
2:
  li t0, 0x100000         # SiFive test
  li t1, 0x5555
  beqz t3, 4f
  slli t1, t3, 16
  li t2, 0x3333
  or t1, t1, t2
4:
  sw t1, 0(t0)
5:
  j 5b
