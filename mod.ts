/**
 * livesnap: live snapshots of virtual machines.
 *
 * The `.lsnap` format (writer, streaming and random-access readers), the tools that inspect,
 * verify and convert snapshots, and a bundled RISC-V machine that takes live snapshots while its
 * guest keeps running.
 *
 * @module
 */
export const VERSION = "0.1.0";
export {
  deviceSections,
  type ExitReason,
  Machine,
  type MachineDescription,
  type MachineOptions,
  type MachineState,
} from "./emulator/machine.ts";
export { GATE_CODE, GATE_HOOK, GATE_WATCH, type StoreHook } from "./emulator/ram.ts";
export { type HartState } from "./emulator/hart.ts";
export { type UartSink } from "./emulator/devices/uart.ts";
export { INSTRUCTIONS_PER_TICK, MACHINE_NAME, RAM_BASE } from "./emulator/memory_map.ts";
export { ElfError, parseElf } from "./emulator/elf.ts";
export { runGuest, type RunGuestOptions, type RunGuestResult } from "./tools/run.ts";
