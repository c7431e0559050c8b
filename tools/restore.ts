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
import {
  type LazyPager,
  type LazyRestoreOptions,
  loadersReady,
  restoreChainEagerly,
  restoreEagerly,
  restoreLazily,
  spawnLoaders,
} from "../emulator/snapshot/lazy_restore.ts";
import { warmLazyRestore } from "../emulator/snapshot/restore_warmup.ts";
import { sharedClockMs } from "../emulator/snapshot/lazy_pages.ts";
import { runBounded } from "./run.ts";
import { openInput } from "./_io.ts";
import { isHttpUrl } from "../format/open_source.ts";
import { ChainError, isDiffFile } from "../format/chain.ts";
import { SnapshotMismatchError } from "../emulator/snapshot/machine_state.ts";

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
  /**
   * Restore lazily (`--lazy`): the guest starts before its RAM is read, pages come in on first
   * access and from a background loader (emulator/snapshot/lazy_restore.ts). With `eager`, the
   * same machinery loads everything with parallel loaders before the guest runs.
   */
  lazy?: Omit<LazyRestoreOptions, "path" | "uartSink" | "migrations" | "startedAtMs"> & {
    /**
     * Warm the process up first, before the restore's clock starts: `warmLazyRestore` in
     * emulator/snapshot/restore_warmup.ts restores a small snapshot it writes itself and reads
     * nothing of `path`. "light" (what `restore --lazy` does unless `--cold`) runs each step once,
     * which a cold restore would pay for anyway, so the process as a whole takes about as long;
     * true (`--warm-up`) is the full one, which pays where a process is started ahead of the
     * restores it serves (BENCHMARKS.md, "Restore: lazy and eager"). Default false: none.
     */
    warm?: boolean | "light";
  };
  /**
   * For an eager restore of a complete, indexed local `.lsnap` of at least
   * {@linkcode PARALLEL_RESTORE_MIN_BYTES}, or of a diff whose chain's files hold that many bytes
   * in all: load it with parallel loader threads (default true; `restoreEagerly`, or
   * `restoreChainEagerly` for a diff, in emulator/snapshot/lazy_restore.ts). `"always"` does so
   * whatever the size; false reads every file as a stream, checking its file digest and, through
   * a chain, every file's content digest.
   */
  parallel?: boolean | "always";
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
  /** A lazy restore's pager (its metrics; call `finish()` once done with the machine). */
  pager?: LazyPager;
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
  if (o.lazy !== undefined) return await restoreLazy(o, o.lazy);
  const restored = await readMachine(o);
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

/**
 * The machine in `o.path`. A complete, indexed .lsnap in a local file is read by loader threads
 * that decompress its records in parallel straight into RAM, and so is a diff's chain whose files
 * are all indexed (`restoreChainEagerly`: a bad link or a damaged record is refused there, naming
 * the file); anything else (a QEMU stream or conversion, a file without an index, a damaged file:
 * the readers below name the damage by record), or a parallel read that fails, is read below: a
 * local file through its chain (a diff's every link and digest checked before it runs), a URL or
 * stdin as a stream.
 */
async function readMachine(
  o: RestoreSnapshotOptions,
): Promise<RestoredMachine & { chain: string[] }> {
  const local = o.path !== "-" && !isHttpUrl(o.path);
  if (local && o.parallel !== false && await isDiffFile(o.path).catch(() => false)) {
    try {
      const r = await restoreChainEagerly({
        path: o.path,
        parents: o.parents,
        uartSink: o.sink,
        migrations: o.migrations,
        minBytes: o.parallel === "always" ? 0 : PARALLEL_RESTORE_MIN_BYTES,
      });
      return { ...r, source: "lsnap" as const, notes: [] };
    } catch (e) {
      // What the chain reader below would refuse the same way, named better here.
      if (e instanceof ChainError || e instanceof SnapshotMismatchError) throw e;
      // Otherwise read again below, by the reader that reports what is wrong.
    }
  } else if (local && o.parallel !== false && (o.parallel === "always" || worthLoaders(o.path))) {
    try {
      const r = await restoreEagerly({ path: o.path, uartSink: o.sink, migrations: o.migrations });
      return { ...r, source: "lsnap" as const, notes: [], chain: [o.path] };
    } catch {
      // Read again below, by the reader that reports what is wrong.
    }
  }
  if (local) {
    return await restoreMachineFromFile(o.path, {
      uartSink: o.sink,
      migrations: o.migrations,
      parents: o.parents,
    });
  }
  const input = await openInput(o.path);
  try {
    const m = await restoreMachine(input.readable, { uartSink: o.sink, migrations: o.migrations });
    return { ...m, chain: [o.path] };
  } finally {
    input.close();
  }
}
/** Slices between two looks of a lazy restore's pager (its window and its loaders' end). */
const LAZY_SLICE = 100_000;

async function restoreLazy(
  o: RestoreSnapshotOptions,
  lazy: NonNullable<RestoreSnapshotOptions["lazy"]>,
): Promise<RestoreSnapshotResult> {
  // The loader threads first: making a Worker blocks this thread for tens of milliseconds,
  // which the guest would otherwise wait for (BENCHMARKS.md, "Lazy restore").
  const workers = lazy.workers ?? spawnLoaders(lazy.loaders ?? 1);
  const { warm, ...options } = lazy;
  if (warm === true || warm === "light") await warmLazyRestore(warm === true ? "full" : "light");
  await loadersReady(workers);
  const startedAtMs = sharedClockMs();
  const restored = await restoreLazily({
    deferLoaders: true,
    ...options,
    workers,
    path: o.path,
    uartSink: o.sink,
    migrations: o.migrations,
    startedAtMs,
  });
  const { machine, pager } = restored;
  try {
    o.onRestored?.([]);
    const snapshotRetired = machine.hart.retired;
    for (
      const [option, n] of [["--stop-at", o.stopAt], ["--max-instructions", o.maxInstructions]]
    ) {
      if (n !== undefined && (!Number.isSafeInteger(n) || (n as number) < snapshotRetired)) {
        throw new RangeError(
          `Cannot restore to ${option} ${n}: the snapshot was taken at instruction ${snapshotRetired}`,
        );
      }
    }
    const stopAt = o.runFor !== undefined ? snapshotRetired + o.runFor : o.stopAt;
    const end = Math.min(stopAt ?? Infinity, o.maxInstructions ?? Infinity);
    let first: ExitReason | null = null;
    if (end > snapshotRetired) {
      // The first instruction alone, to time it (run(1) then run(n) is run(n + 1)).
      first = machine.run(1);
      if (machine.hart.retired > snapshotRetired) pager.markFirstInstruction();
    }
    const { exit, limitReached } = first !== null && first.reason !== "budget"
      ? { exit: first, limitReached: false }
      : runBounded(machine, stopAt, o.maxInstructions, {
        slice: LAZY_SLICE,
        call: (retired) => pager.tick(retired),
      });
    return {
      exit,
      limitReached,
      retired: machine.hart.retired,
      snapshotRetired,
      contentDigest: restored.contentDigest,
      machine,
      source: "lsnap",
      notes: [],
      chain: [o.path],
      pager,
    };
  } catch (e) {
    await pager.finish().catch(() => {});
    throw e;
  }
}

/**
 * Files from this size on are restored with parallel loaders: creating a loader thread costs
 * 60-120 ms on the 2-core VM (BENCHMARKS.md), more than reading a small file as a stream.
 */
export const PARALLEL_RESTORE_MIN_BYTES: number = 32 * 1024 * 1024;

function worthLoaders(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && info.size >= PARALLEL_RESTORE_MIN_BYTES;
  } catch {
    return false; // the stream path reports it
  }
}
