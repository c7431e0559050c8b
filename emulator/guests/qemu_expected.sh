#!/usr/bin/env bash
# Runs guests on QEMU (qemu-system-riscv32 7.2, `virt` board) and records what they print as
# expected/<name>.txt and QEMU's exit status (the test device's code) as expected/<name>.exit.
# `counter` never powers off: only its first COUNTER_LINES lines are kept and no .exit is written.
#
#   emulator/guests/qemu_expected.sh            all guests
#   emulator/guests/qemu_expected.sh hello      only the named guests
set -uo pipefail
cd "$(dirname "$0")"

QEMU=${QEMU:-qemu-system-riscv32}
COUNTER_LINES=21
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(hello counter memstress kvstore usermode traps)
mkdir -p expected

run() {
  timeout "$1" "$QEMU" -machine virt -bios none -kernel "build/$2.elf" -m 128M \
    -nographic -monitor none -serial stdio
}

for name in "${names[@]}"; do
  if [ "$name" = counter ]; then
    run 10 counter 2>/dev/null | head -n "$COUNTER_LINES" >expected/counter.txt
    echo "counter: $(wc -l <expected/counter.txt) lines (runs forever, no exit status)"
  else
    run 60 "$name" >"expected/$name.txt"
    status=$?
    echo "$status" >"expected/$name.exit"
    echo "$name: exit status $status, $(wc -l <"expected/$name.txt") lines"
  fi
done
