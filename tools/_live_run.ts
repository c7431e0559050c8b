/**
 * What `run` and `restore` share once snapshots or a control socket are asked for: the guest on
 * its own thread (a {@linkcode LiveMachine}), scheduled snapshots, metrics, the control socket,
 * the final digest and the exit status.
 *
 * @module
 */

import {
  type CowBufferSize,
  LiveMachine,
  type PrecopyOptions,
  type ScheduledRequest,
} from "../emulator/snapshot/live_machine.ts";
import type { HaltReason } from "../emulator/snapshot/protocol.ts";
import type { SnapshotMetrics } from "../emulator/snapshot/metrics.ts";
import type { SnapshotMode } from "../emulator/snapshot/session.ts";
import { parseCount, parseSize } from "./_args.ts";
import { UsageError } from "./_command.ts";
import { serveControl } from "./control.ts";
import { LIMIT_EXIT_STATUS } from "./run.ts";

/** Options shared by `run` and `restore` in live mode. */
export interface LiveRunOptions {
  elf?: Uint8Array;
  restorePath?: string;
  /** For a diff at `restorePath`: parent files (`--parent`). */
  restoreParents?: string[];
  ramSize?: number;
  input?: Uint8Array;
  stopAt?: number;
  /** Instead of `stopAt`: stop once this many instructions have retired after the start. */
  runFor?: number;
  /** Print the fields a restored QEMU snapshot's mapping ignored or approximated (stderr). */
  verbose?: boolean;
  /** The guard of `--max-instructions` (counted from reset): exit status 124 when reached. */
  maxInstructions?: number;
  digest: boolean;
  snapshotAt: number[];
  snapshotEvery?: number;
  /** The snapshot file, or a name pattern with `{n}` (the instruction count). */
  out?: string;
  mode: SnapshotMode;
  cowBuffer: CowBufferSize;
  /** Each scheduled snapshot a diff on the one before (the first a diff on the restored file,
   * or full after a boot from an ELF). */
  incremental?: boolean;
  /** Precopy's policy (`--precopy-max-passes`, `--downtime-ms`). */
  precopy?: PrecopyOptions;
  metricsPath?: string;
  control?: string;
  /** The command's name for messages, e.g. "livesnap run". */
  name: string;
  /** Guest output (stdout). */
  print: (bytes: Uint8Array) => void;
}

/** Parses `--cow-buffer`: `max`, or a size such as `0`, `64K`, `16M` (whole pages are used). */
export function parseCowBuffer(text: string): CowBufferSize {
  if (text.trim().toLowerCase() === "max") return "max";
  try {
    return parseSize(text, "--cow-buffer", { zero: true });
  } catch {
    throw new UsageError(
      `Cannot parse --cow-buffer: '${text}' is not max or a size like 0, 64K, 16M`,
    );
  }
}

/** Parses `--mode`. */
export function parseMode(text: string): SnapshotMode {
  if (text === "cow" || text === "precopy" || text === "stop") return text;
  throw new UsageError(`Cannot parse --mode: '${text}' is not cow, precopy or stop`);
}

/** Parses `--precopy-max-passes` and `--downtime-ms` (either may be absent). */
export function parsePrecopyOptions(
  maxPasses: string | undefined,
  downtimeMs: string | undefined,
): PrecopyOptions {
  const o: PrecopyOptions = {};
  if (maxPasses !== undefined) {
    o.maxPasses = parseCount(maxPasses, "--precopy-max-passes", { what: "a number of passes" });
  }
  if (downtimeMs !== undefined) {
    o.downtimeMs = parseCount(downtimeMs, "--downtime-ms", {
      what: "a whole number of milliseconds",
    });
  }
  return o;
}

/** Parses an instruction count option. */
export function parseInstructionCount(option: string, text: string): number {
  return parseCount(text, option, { what: "an instruction count" });
}

/** The file name for a snapshot at `n` from `--out`: `{n}` is replaced; without it, with
 * several snapshots, `-<n>` goes before the extension. */
export function snapshotPath(out: string, n: number, several: boolean): string {
  if (out.includes("{n}")) return out.replaceAll("{n}", String(n));
  if (!several) return out;
  const dot = out.lastIndexOf(".");
  const slash = out.lastIndexOf("/");
  return dot > slash + 1 ? `${out.slice(0, dot)}-${n}${out.slice(dot)}` : `${out}-${n}`;
}

/** Exit status and message for a halt, as `run` without snapshots reports them. */
export function haltStatus(name: string, halt: HaltReason): number {
  switch (halt.reason) {
    case "exit":
      return halt.code & 0xff;
    case "stop-at":
    case "budget":
    case "paused":
      return 0;
    case "reset":
      console.error(`${name}: the guest asked for a reset; stopping`);
      return 0;
    case "idle":
      console.error(
        `${name}: the guest waits (wfi at pc 0x${
          halt.pc.toString(16)
        }) with no interrupt enabled that could wake it`,
      );
      return 1;
    case "lockup":
      console.error(
        `${name}: the guest keeps trapping without progress (mcause ${halt.cause}, pc 0x${
          halt.pc.toString(16)
        })`,
      );
      return 1;
  }
}

/** The message and exit status (124, as timeout(1)) of a run `--max-instructions` stopped. */
export function limitStatus(name: string, max: number): number {
  console.error(
    `${name}: the guest did not finish within --max-instructions ${max}; stopped (exit status ${LIMIT_EXIT_STATUS})`,
  );
  return LIMIT_EXIT_STATUS;
}

/** One line on stderr about a finished snapshot. */
export function describeSnapshot(m: SnapshotMetrics): string {
  const extra = m.mode === "cow"
    ? `, ${m.pagesViaBuffer} pages via the buffer, stalls ${(m.guestStallUs / 1000).toFixed(1)} ms`
    : m.mode === "precopy"
    ? `, ${m.pagesResent} pages resent in ${m.precopyPasses} passes, throttle up to ${m.precopyThrottlePct}%, ${m.pagesInFinalPause} pages in the final pause`
    : "";
  const kind = m.incremental
    ? `${m.mode} diff on ${m.parentPath}, depth ${m.chainDepth}, ${m.pagesInDiff} pages dirty`
    : m.mode;
  return `snapshot at instruction ${m.atInstruction} → ${m.path} (${kind}): pause ${m.pauseUs} µs, ` +
    `${
      m.totalMs.toFixed(1)
    } ms, ${m.bytesWritten} bytes, guest ran ${m.guestInstructionsDuring} instructions meanwhile${extra}`;
}

/** Runs a guest on its own thread with the snapshots and control socket asked for. */
export async function runLive(o: LiveRunOptions): Promise<number> {
  let lastByte = 10;
  const print = (b: Uint8Array) => {
    o.print(b);
    if (b.length > 0) lastByte = b[b.length - 1];
  };
  const several = o.snapshotAt.length > 1 || o.snapshotEvery !== undefined;
  if ((o.snapshotAt.length > 0 || o.snapshotEvery !== undefined) && o.out === undefined) {
    console.error(`${o.name}: --snapshot-at and --snapshot-every need --out FILE`);
    return 2;
  }
  const metricsFile = o.metricsPath === undefined
    ? null
    : await Deno.open(o.metricsPath, { write: true, create: true, truncate: true });
  const encoder = new TextEncoder();
  let failures = 0;
  const report = (m: SnapshotMetrics) => {
    console.error(`${o.name}: ${describeSnapshot(m)}`);
    metricsFile?.writeSync(encoder.encode(JSON.stringify(m) + "\n"));
  };
  const fail = (e: Error) => {
    failures++;
    console.error(`${o.name}: ${e.message}`);
  };
  const sorted = [...new Set(o.snapshotAt)].sort((a, b) => a - b);
  const schedule: ScheduledRequest[] = sorted.map((at) => ({
    at,
    mode: o.mode,
    cowBuffer: o.cowBuffer,
    precopy: o.precopy,
    incremental: o.incremental,
    path: snapshotPath(o.out!, at, several),
  }));
  // The guest halts at whichever comes first; the halt tells them apart below.
  const end = Math.min(o.stopAt ?? Infinity, o.maxInstructions ?? Infinity);
  let machine: LiveMachine;
  try {
    machine = await LiveMachine.start({
      elf: o.elf,
      restorePath: o.restorePath,
      restoreParents: o.restoreParents,
      ramSize: o.ramSize,
      input: o.input,
      uartSink: print,
      stopAt: end === Infinity ? null : end,
      runFor: o.runFor ?? null,
      schedule,
      every: o.snapshotEvery === undefined ? null : {
        interval: o.snapshotEvery,
        mode: o.mode,
        cowBuffer: o.cowBuffer,
        precopy: o.precopy,
        incremental: o.incremental,
        path: (_k, at) => snapshotPath(o.out!, at, true),
      },
      onScheduledSnapshot: report,
      onScheduledError: fail,
    });
  } catch (e) {
    metricsFile?.close();
    console.error(`${o.name}: ${(e as Error).message}`);
    return 1;
  }
  if (o.verbose) {
    for (const n of machine.restoredNotes) console.error(`${o.name}: ${n.field}: ${n.note}`);
  }
  const control = o.control === undefined ? null : await serveControl(o.control, machine, {
    onSnapshot: report,
  });
  // The run ends when the guest halts (like QEMU when its guest powers off), or on `quit`.
  const ended = await Promise.race([
    machine.halted.then((h) => ({ kind: "halt" as const, h })),
    (control?.quitRequested ?? new Promise<never>(() => {})).then(() => ({
      kind: "quit" as const,
    })),
  ]);
  let status = 0;
  if (ended.kind === "halt") {
    if (o.digest) {
      const hex = await machine.digest();
      print(encoder.encode(`${lastByte === 10 ? "" : "\n"}${hex}\n`));
    }
    const max = o.maxInstructions;
    const limited = ended.h.halt.reason === "stop-at" && max !== undefined &&
      ended.h.retired >= max && (o.stopAt === undefined || o.stopAt > max);
    status = limited ? limitStatus(o.name, max) : haltStatus(o.name, ended.h.halt);
    await machine.quit();
  }
  await control?.close();
  metricsFile?.close();
  return failures > 0 && status === 0 ? 1 : status;
}

/** The options `run` and `restore` both take, as `parseArgs` declares them (all strings). */
export const LIVE_STRING_OPTIONS = [
  "stop-at",
  "max-instructions",
  "snapshot-at",
  "snapshot-every",
  "out",
  "mode",
  "cow-buffer",
  "metrics",
  "control",
  "precopy-max-passes",
  "downtime-ms",
] as const;

type LiveArgValues = { [K in (typeof LIVE_STRING_OPTIONS)[number]]?: string | string[] };

/** What {@linkcode parseLiveArgs} makes of the shared options. */
export interface LiveArgs {
  stopAt?: number;
  maxInstructions?: number;
  /** The options for {@linkcode runLive}, or null when neither snapshots nor a control socket
   * are asked for (then the guest runs on the calling thread). */
  live: Omit<LiveRunOptions, "name" | "print" | "elf" | "restorePath" | "ramSize" | "input"> | null;
}

/**
 * Parses the options `run` and `restore` share; throws a {@linkcode UsageError}.
 * `snapshot-at` must be declared with `collect`.
 */
export function parseLiveArgs(
  opts: LiveArgValues & { digest?: boolean; incremental?: boolean },
): LiveArgs {
  const one = (name: (typeof LIVE_STRING_OPTIONS)[number]) => opts[name] as string | undefined;
  const stopAtText = one("stop-at");
  const stopAt = stopAtText === undefined
    ? undefined
    : parseInstructionCount("--stop-at", stopAtText);
  const maxText = one("max-instructions");
  const maxInstructions = maxText === undefined
    ? undefined
    : parseInstructionCount("--max-instructions", maxText);
  const at = (opts["snapshot-at"] ?? []) as string[];
  const everyText = one("snapshot-every");
  if (opts.incremental && at.length === 0 && everyText === undefined) {
    throw new UsageError(
      "--incremental needs --snapshot-at or --snapshot-every (through a control socket: " +
        "'livesnap ctl PATH snapshot --out FILE --incremental')",
    );
  }
  if (at.length === 0 && everyText === undefined && one("control") === undefined) {
    for (const o of ["out", "mode", "cow-buffer", "metrics", "precopy-max-passes", "downtime-ms"]) {
      if (opts[o as keyof LiveArgValues] !== undefined) {
        throw new UsageError(`--${o} needs --snapshot-at, --snapshot-every or --control`);
      }
    }
    return { stopAt, maxInstructions, live: null };
  }
  const snapshotEvery = everyText === undefined
    ? undefined
    : parseInstructionCount("--snapshot-every", everyText);
  if (snapshotEvery === 0) throw new UsageError("Cannot use --snapshot-every 0");
  return {
    stopAt,
    maxInstructions,
    live: {
      stopAt,
      maxInstructions,
      digest: opts.digest ?? false,
      snapshotAt: at.map((t) => parseInstructionCount("--snapshot-at", t)),
      snapshotEvery,
      out: one("out"),
      mode: parseMode(one("mode") ?? "cow"),
      cowBuffer: parseCowBuffer(one("cow-buffer") ?? "16M"),
      incremental: opts.incremental ?? false,
      precopy: parsePrecopyOptions(one("precopy-max-passes"), one("downtime-ms")),
      metricsPath: one("metrics"),
      control: one("control"),
    },
  };
}

/** Guest output to stdout, remembering whether it ended a line (so a digest printed after it
 * starts on its own line). */
export function stdoutSink(): { sink: (b: Uint8Array) => void; endsLine: () => boolean } {
  let lastByte = 10;
  return {
    sink: (b) => {
      let o = 0;
      while (o < b.length) o += Deno.stdout.writeSync(b.subarray(o));
      if (b.length > 0) lastByte = b[b.length - 1];
    },
    endsLine: () => lastByte === 10,
  };
}
