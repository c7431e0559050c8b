#!/usr/bin/env bash
# Builds every guest into emulator/guests/build/<name>.elf with clang 14 and ld.lld (Debian's
# clang-14 and lld-14 packages). The output is byte-for-byte reproducible: no timestamps, no
# build ids, no absolute paths, no debug info.
#
#   emulator/guests/build.sh            rebuild all guests into build/
#   emulator/guests/build.sh hello      rebuild only the named guests
#   emulator/guests/build.sh --check    rebuild into a temporary directory and compare with the
#                                       committed ELFs (exit 1 if any differs)
#   OUT=/tmp/x EXTRA_CFLAGS=-DREPORT_INSTRET emulator/guests/build.sh
#                                       a measurement build that prints minstret at power-off
set -euo pipefail
cd "$(dirname "$0")"

CC=${CC:-clang}
LD=${LD:-ld.lld}
GUESTS=(hello counter memstress kvstore usermode traps interrupts checkpoint sleeper pagezero)
CFLAGS=(--target=riscv32-unknown-elf -march=rv32imac -mabi=ilp32 -mcmodel=medany -mno-relax
  -O2 -ffreestanding -nostdlib -fno-builtin-printf -fno-common -fno-pic
  -ffunction-sections -fdata-sections -fno-ident -fno-asynchronous-unwind-tables
  -std=c11 -Wall -Wextra -Werror -Ilib ${EXTRA_CFLAGS:-})
LDFLAGS=(-m elf32lriscv -T link.ld --gc-sections --build-id=none -z noexecstack)
LIB=(lib/uart.c lib/power.c lib/machine.c lib/mem.c lib/clint.c lib/trap.c lib/user.c)

check=0
names=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) names+=("$arg") ;;
  esac
done
[ ${#names[@]} -eq 0 ] && names=("${GUESTS[@]}")

obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
out=${OUT:-build}
[ "$check" -eq 1 ] && out="$obj/out"
mkdir -p "$out"

"$CC" "${CFLAGS[@]}" -c crt0.S -o "$obj/crt0.o"
libobjs=("$obj/crt0.o")
for src in "${LIB[@]}"; do
  o="$obj/$(basename "$src" .c).o"
  "$CC" "${CFLAGS[@]}" -c "$src" -o "$o"
  libobjs+=("$o")
done

status=0
for name in "${names[@]}"; do
  [ -f "$name.c" ] || { echo "build.sh: Cannot build '$name': no $name.c" >&2; exit 2; }
  "$CC" "${CFLAGS[@]}" -c "$name.c" -o "$obj/$name.o"
  "$LD" "${LDFLAGS[@]}" -o "$out/$name.elf" "${libobjs[@]}" "$obj/$name.o"
  if [ "$check" -eq 1 ]; then
    if cmp -s "$out/$name.elf" "build/$name.elf"; then
      echo "same    build/$name.elf"
    else
      echo "DIFFERS build/$name.elf"
      status=1
    fi
  else
    echo "built   build/$name.elf ($(wc -c <"$out/$name.elf") bytes)"
  fi
done
exit "$status"
