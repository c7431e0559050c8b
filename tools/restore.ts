/**
 * `livesnap restore`: rebuild a machine from a snapshot file and continue it.
 *
 * @module
 */

import type { ExitReason, Machine } from "../emulator/machine.ts";
import { restoreMachine, type RestoreOptions } from "../emulator/snapshot/restore.ts";

/** Options for {@linkcode restoreSnapshot}. */
export interface RestoreSnapshotOptions {
  /** The snapshot file. */
  path: string;
  /** Stop once this many instructions have retired, counted from reset as in the original run
   * (so `--stop-at` means the same instruction in `run` and `restore`). */
  stopAt?: number;
  /** Guest UART output from the restore on (default: dropped). */
  sink?: (bytes: Uint8Array) => void;
  /** State migrations (default: the emulator's table). */
  migrations?: RestoreOptions["migrations"];
}

/** What {@linkcode restoreSnapshot} returns. */
export interface RestoreSnapshotResult {
  /** Why the run ended ("budget" means `stopAt` was reached). */
  exit: ExitReason;
  /** Instructions retired since reset (the snapshot's count plus those run after it). */
  retired: number;
  /** Instructions retired when the snapshot was taken. */
  snapshotRetired: number;
  /** The file's content digest, lowercase hex. */
  contentDigest: string;
  /** The machine, stopped, for inspection. */
  machine: Machine;
}

/**
 * Restores the snapshot at `path` into a fresh machine and runs it until it powers off, stops
 * for another reason, or reaches `stopAt`. Everything about the file is checked before the first
 * instruction runs: a damaged file throws format/'s `LsnapError` subclasses, one that does not
 * fit this emulator `SnapshotMismatchError`.
 *
 * @example
 * ```ts ignore
 * import { restoreSnapshot } from "./restore.ts";
 * const r = await restoreSnapshot({ path: "m.lsnap", stopAt: 10_000_000 });
 * console.log(r.exit, r.retired);
 * ```
 */
export async function restoreSnapshot(o: RestoreSnapshotOptions): Promise<RestoreSnapshotResult> {
  const file = await Deno.open(o.path, { read: true });
  const restored = await restoreMachine(file.readable, {
    uartSink: o.sink,
    migrations: o.migrations,
  });
  const { machine } = restored;
  const snapshotRetired = machine.hart.retired;
  let exit: ExitReason;
  if (o.stopAt !== undefined) {
    if (!Number.isSafeInteger(o.stopAt) || o.stopAt < snapshotRetired) {
      throw new RangeError(
        `Cannot restore to --stop-at ${o.stopAt}: the snapshot was taken at instruction ${snapshotRetired}`,
      );
    }
    exit = machine.run(o.stopAt - snapshotRetired);
  } else {
    do exit = machine.run(100_000_000); while (exit.reason === "budget");
  }
  return {
    exit,
    retired: machine.hart.retired,
    snapshotRetired,
    contentDigest: restored.contentDigest,
    machine,
  };
}
