/**
 * The bundled RISC-V machine (`livesnap-virt-rv32`, laid out like QEMU's riscv32 `virt` board)
 * and its live snapshots.
 *
 * - {@linkcode Machine}: an RV32IMAC hart with RAM, a UART, a CLINT and the SiFive test device;
 *   `run(n)` retires at most `n` instructions and returns why it stopped. Deterministic: time is
 *   retired instructions.
 * - {@linkcode LiveMachine}: the same machine on its own thread, with snapshots (`cow`,
 *   `precopy`, `stop`) written on another thread while the guest runs on.
 * - {@linkcode saveMachine} and {@linkcode restoreMachine} ({@linkcode restoreMachineFromFile} also
 *   reads a diff through its chain): a stopped machine to an `.lsnap` file
 *   and back; {@linkcode machineContentDigest} is the digest a snapshot of that state carries.
 *
 * How the engine works and the invariants it keeps: `emulator/snapshot/README.md`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { Machine, machineContentDigest, restoreMachine, saveMachine } from "./mod.ts";
 * const elf = await Deno.readFile(new URL("./guests/build/counter.elf", import.meta.url));
 * const boot = () => Machine.fromElf(elf, { ramSize: 4 << 20, uartSink: () => {} });
 * const original = boot();
 * original.run(20_000);
 * const dir = await Deno.makeTempDir();
 * await saveMachine(original, `${dir}/c.lsnap`);
 * using file = await Deno.open(`${dir}/c.lsnap`);
 * const { machine } = await restoreMachine(file.readable, { uartSink: () => {} });
 * original.run(30_000);
 * machine.run(30_000); // "run N, snapshot, restore, run M" is "run N + M"
 * assertEquals(await machineContentDigest(machine), await machineContentDigest(original));
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export {
  type ExitReason,
  Machine,
  type MachineDescription,
  type MachineOptions,
  type MachineState,
  type RegionDescription,
  type SavedDevice,
} from "./machine.ts";
export type { Hart, HartState } from "./hart.ts";
export type { AbsentPageHandler, Ram, StoreHook } from "./ram.ts";
export { clearAbsent, GATE_ABSENT } from "./ram.ts";
export type { MmioDevice } from "./devices/device.ts";
export type { Uart, UartSink, UartState } from "./devices/uart.ts";
export type { Clint, ClintState } from "./devices/clint.ts";
export type { FinisherRequest, SifiveTest, SifiveTestState } from "./devices/sifive_test_device.ts";
export type { HtifState } from "./devices/htif.ts";
export type { Plic, PlicState } from "./devices/plic.ts";
export type { Mrom, MromState } from "./devices/mrom.ts";
export { INSTRUCTIONS_PER_TICK, MACHINE_NAME, RAM_BASE } from "./memory_map.ts";
export { ElfError } from "./elf.ts";
export {
  type CowBufferSize,
  type HaltInfo,
  LiveMachine,
  type LiveMachineOptions,
  type PrecopyOptions,
  type PrecopyPassReport,
  type ScheduledRequest,
  type SnapshotRequest,
} from "./snapshot/live_machine.ts";
export { type PostcopyBoot, PostcopyFaultError } from "./snapshot/postcopy_pager.ts";
export type { GuestStatus, HaltReason } from "./snapshot/protocol.ts";
export type {
  PauseCauses,
  SnapshotMetrics,
  SnapshotTimeline,
  TimelinePass,
  TimelinePause,
} from "./snapshot/metrics.ts";
export type { SnapshotMode } from "./snapshot/session.ts";
export { saveMachine, type SaveMachineOptions } from "./snapshot/save.ts";
export {
  type RestoredMachine,
  type RestoreFileOptions,
  restoreMachine,
  restoreMachineFromFile,
  type RestoreOptions,
} from "./snapshot/restore.ts";
export {
  DEFAULT_WS_WINDOW,
  type LazyMetrics,
  LazyPageError,
  LazyPager,
  type LazyRestored,
  type LazyRestoreOptions,
  ParallelRestoreUnavailable,
  restoreEagerly,
  restoreLazily,
  spawnLoaders,
} from "./snapshot/lazy_restore.ts";
export {
  decodeWorkingSet,
  encodeWorkingSet,
  type WorkingSet,
  workingSetPath,
} from "./snapshot/working_set.ts";
export {
  machineContentDigest,
  SnapshotMismatchError,
  type StateMigration,
} from "./snapshot/machine_state.ts";
