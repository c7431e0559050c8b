#!/bin/sh
# Rebuilds the test-only ELFs in this directory (clang 14 + ld.lld). The built ELFs are
# committed so the tests need no toolchain.
set -e
cd "$(dirname "$0")"
clang --target=riscv32 -march=rv32imac -mabi=ilp32 -nostdlib -c htif.S -o /tmp/livesnap_htif.o
ld.lld -T link.ld /tmp/livesnap_htif.o -o htif.elf
