#!/bin/sh
# Rebuilds the test-only ELFs in this directory (clang 14 + ld.lld). The built ELFs are
# committed so the tests need no toolchain.
set -e
cd "$(dirname "$0")"
clang --target=riscv32 -march=rv32imac -mabi=ilp32 -nostdlib -c htif.S -o /tmp/livesnap_htif.o
ld.lld -T link.ld /tmp/livesnap_htif.o -o htif.elf
clang --target=riscv32 -march=rv32imac -mabi=ilp32 -nostdlib -c echo.S -o /tmp/livesnap_echo.o
ld.lld -T link.ld /tmp/livesnap_echo.o -o echo.elf
clang --target=riscv32 -march=rv32imac -mabi=ilp32 -nostdlib -ffreestanding -O2 -c isa_check.c \
  -o /tmp/livesnap_isa_check.o
ld.lld -T isa_link.ld /tmp/livesnap_isa_check.o -o isa_check.elf
# The expected output comes from QEMU (needs qemu-system-riscv32; not needed by the tests):
if command -v qemu-system-riscv32 >/dev/null; then
  timeout 30 qemu-system-riscv32 -machine virt -bios none -kernel isa_check.elf -m 128M \
    -nographic -monitor none -serial stdio >isa_check.expected.txt
fi
