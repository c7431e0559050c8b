/**
 * `livesnap restore`: rebuild a machine from a snapshot file and continue it. The file is a
 * snapshot of livesnap's machine, a QEMU migration stream of QEMU's riscv32 `virt` board, or an
 * `.lsnap` converted from one.
 *
 * @module
 */

import type { ExitReason, Machine } from "../emulator/machine.ts";
import {
  type RestoredMachine,
  restoreMachine,
  restoreMachineFromFile,
  type RestoreOptions,
} from "../emulator/snapshot/restore.ts";
import { isHttpUrl } from "../format/open_source.ts";
import { runBounded } from "./run.ts";
import { openInput } from "./_io.ts";

/** Options for {@linkcode restoreSnapshot}. */
export interface RestoreSnapshotOptions {
  /** The snapshot file: a path (a full snapshot, a QEMU stream, or a diff, read through its
   * chain), an http(s) URL (read with Range requests), or `-` (stdin). */
  path: string;
  /** For a diff: parent files to use before the name hints (`--parent`), matched by digest. */
  parents?: string[];
  /** Stop once this many instructions have retired, counted from reset as in the original run
   * (so `--stop-at` means the same instruction in `run` and `restore`). */
  stopAt?: number;
  /** Instead of `stopAt`: stop once this many instructions have retired after the restore
   * point (usable on any snapshot; a QEMU snapshot records no instruction count). */
  runFor?: number;
  /** A guard: stop once this many instructions have retired, counted from reset like `stopAt`,
   * without the guest finishing (`restore --max-instructions`, exit status 124). */
  maxInstructions?: number;
  /** Guest UART output from the restore on (default: written to standard output). */
  sink?: (bytes: Uint8Array) => void;
  /** State migrations (default: the emulator's table). */
  migrations?: RestoreOptions["migrations"];
  /** Called once the machine is rebuilt, before it runs, with the fields a QEMU snapshot's
   * mapping ignored or approximated (empty for livesnap's own snapshots). */
  onRestored?: (notes: { field: string; note: string }[]) => void;
}

/** What {@linkcode restoreSnapshot} returns. */
export interface RestoreSnapshotResult {
  /** Why the run ended ("budget" means `stopAt` or `maxInstructions` was reached). */
  exit: ExitReason;
  /** True when `maxInstructions` stopped the run (before `stopAt` and before the guest ended). */
  limitReached: boolean;
  /** Instructions retired since reset (the snapshot's count plus those run after it). */
  retired: number;
  /** Instructions retired when the snapshot was taken. */
  snapshotRetired: number;
  /** The file's content digest, lowercase hex. */
  contentDigest: string;
  /** The machine, stopped, for inspection. */
  machine: Machine;
  /** What the file was: livesnap's snapshot, a QEMU stream, or an `.lsnap` converted from one. */
  source: "lsnap" | "qemu-stream" | "lsnap-from-qemu";
  /** For a QEMU snapshot, the fields ignored or approximated (`--verbose`). */
  notes: { field: string; note: string }[];
  /** The files read, the full snapshot first (one file unless `path` is a diff). */
  chain: string[];
}

/**
 * Restores the snapshot at `path` into a fresh machine and runs it until it powers off, stops
 * for another reason, or reaches `stopAt`. Everything about the file is checked before the first
 * instruction runs: a damaged file throws format/'s `LsnapError` subclasses, one that does not
 * fit this emulator `SnapshotMismatchError`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { Machine } from "../emulator/machine.ts";
 * import { saveMachine } from "../emulator/snapshot/save.ts";
 * import { restoreSnapshot } from "./restore.ts";
 * const elf = await Deno.readFile(new URL("../emulator/guests/build/counter.elf", import.meta.url));
 * const m = Machine.fromElf(elf, { ramSize: 4 << 20, uartSink: () => {} });
 * m.run(50_000);
 * const dir = await Deno.makeTempDir();
 * await saveMachine(m, `${dir}/c.lsnap`);
 * const r = await restoreSnapshot({ path: `${dir}/c.lsnap`, stopAt: 80_000, sink: () => {} });
 * assertEquals([r.snapshotRetired, r.retired], [50_000, 80_000]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function restoreSnapshot(o: RestoreSnapshotOptions): Promise<RestoreSnapshotResult> {
  if (o.runFor !== undefined) {
    if (o.stopAt !== undefined) {
      throw new RangeError("Cannot restore: give --stop-at or --run-for, not both");
    }
    if (!Number.isSafeInteger(o.runFor) || o.runFor < 0) {
      throw new RangeError(`Cannot restore: --run-for ${o.runFor} is not an instruction count`);
    }
  }
  let restored: RestoredMachine & { chain: string[] };
  if (o.path !== "-" && !isHttpUrl(o.path)) {
    // A diff is read through its chain: every link and every digest is checked before it runs.
    restored = await restoreMachineFromFile(o.path, {
      uartSink: o.sink,
      migrations: o.migrations,
      parents: o.parents,
    });
  } else {
    const input = await openInput(o.path);
    try {
      const m = await restoreMachine(input.readable, {
        uartSink: o.sink,
        migrations: o.migrations,
      });
      restored = { ...m, chain: [o.path] };
    } finally {
      input.close();
    }
  }
  const { machine } = restored;
  o.onRestored?.(restored.notes);
  const snapshotRetired = machine.hart.retired;
  for (const [option, n] of [["--stop-at", o.stopAt], ["--max-instructions", o.maxInstructions]]) {
    if (n !== undefined && (!Number.isSafeInteger(n) || (n as number) < snapshotRetired)) {
      throw new RangeError(
        `Cannot restore to ${option} ${n}: the snapshot was taken at instruction ${snapshotRetired}`,
      );
    }
  }
  // --run-for counts from the restore point: the same as a --stop-at that far past it.
  const stopAt = o.runFor !== undefined ? snapshotRetired + o.runFor : o.stopAt;
  const { exit, limitReached } = runBounded(machine, stopAt, o.maxInstructions);
  return {
    exit,
    limitReached,
    retired: machine.hart.retired,
    snapshotRetired,
    contentDigest: restored.contentDigest,
    machine,
    source: restored.source,
    notes: restored.notes,
    chain: restored.chain,
  };
}
