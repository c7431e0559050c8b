#!/bin/sh
# Builds ticker.elf, the bare-metal guest the QEMU stream tests boot (needs clang 14 and lld).
set -eu
cd "$(dirname "$0")"
clang --target=riscv32-unknown-elf -march=rv32imac -mabi=ilp32 -O2 -nostdlib -ffreestanding \
  -fuse-ld=lld -Wl,-T,ticker.ld -o ticker.elf ticker.c
