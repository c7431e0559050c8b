#!/usr/bin/env bash
# Runs guests on QEMU (qemu-system-riscv32 7.2, `virt` board) and records what they print as
# expected/<name>.txt and QEMU's exit status (the test device's code) as expected/<name>.exit.
# `counter` and `checkpoint` never power off: only their first lines are kept (FOREVER below) and
# no .exit is written.
#
#   emulator/guests/qemu_expected.sh            all guests
#   emulator/guests/qemu_expected.sh hello      only the named guests
set -uo pipefail
cd "$(dirname "$0")"

QEMU=${QEMU:-qemu-system-riscv32}
declare -A FOREVER=([counter]=21 [checkpoint]=400)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(hello counter memstress kvstore usermode traps interrupts checkpoint sleeper pagezero)
mkdir -p expected

run() {
  timeout "$1" "$QEMU" -machine virt -bios none -kernel "build/$2.elf" -m 128M \
    -nographic -monitor none -serial stdio
}

for name in "${names[@]}"; do
  if [ -n "${FOREVER[$name]:-}" ]; then
    run 10 "$name" 2>/dev/null | head -n "${FOREVER[$name]}" >"expected/$name.txt"
    echo "$name: $(wc -l <"expected/$name.txt") lines (runs forever, no exit status)"
  else
    run 60 "$name" >"expected/$name.txt"
    status=$?
    echo "$status" >"expected/$name.exit"
    echo "$name: exit status $status, $(wc -l <"expected/$name.txt") lines"
  fi
done
