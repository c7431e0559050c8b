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
import { migrate, type MigrationMetrics, parseHostPort } from "./migrate.ts";
import { receiveMigration } from "./incoming.ts";
import { interruptedPostcopy } from "./migrate_postcopy.ts";
import { DEFAULT_RESUME_TIMEOUT_MS } from "./incoming_postcopy.ts";
import { MigrationError, type MigrationMode } from "../format/migration.ts";
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
  /** `--migrate-to HOST:PORT --migrate-at N`: migrate the guest live once it has retired N
   * instructions (tools/migrate.ts). */
  migrateTo?: MigrateTarget;
  /** `restore --incoming HOST:PORT`: take the guest from a live migration instead of a file. */
  incoming?: {
    host: string;
    port: number;
    out?: string;
    ramSize?: number;
    timeoutMs?: number;
    /** `--resume`: take a source that resumes an interrupted post-copy. */
    resume?: boolean;
    /** `--resume-timeout MS`: the bound on waiting for a source to come back (post-copy). */
    resumeTimeoutMs?: number;
  };
  /** The command's name for messages, e.g. "livesnap run". */
  name: string;
  /** Guest output (stdout). */
  print: (bytes: Uint8Array) => void;
}

/** Where and how `--migrate-to` migrates. */
export interface MigrateTarget {
  host: string;
  port: number;
  /** The first slice boundary at or after this instruction count starts it. */
  at: number;
  mode: MigrationMode;
  downtimeMs?: number;
  maxPasses?: number;
  /** Bytes per second. */
  bandwidth?: number;
  timeoutMs?: number;
  /** Hybrid: precopy passes before the post-copy (`--precopy-passes`). */
  precopyPasses?: number;
}

/** Parses `--precopy-passes N` (hybrid): 1 to 100. */
export function parsePrecopyPasses(text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 100)) {
    throw new UsageError(`Cannot parse --precopy-passes: '${text}' is not a count from 1 to 100`);
  }
  return n;
}

/** Parses `--migrate-mode` / `ctl migrate --mode`. */
export function parseMigrationMode(text: string, option = "--migrate-mode"): MigrationMode {
  if (text === "precopy" || text === "postcopy" || text === "hybrid") return text;
  throw new UsageError(`Cannot parse ${option}: '${text}' is not precopy, postcopy or hybrid`);
}

/** Parses `--bandwidth`: bytes per second, with binary suffixes (`32M` is 32 MiB/s). */
export function parseBandwidth(text: string, option = "--bandwidth"): number {
  try {
    const n = parseSize(text, option);
    if (n > 0) return n;
  } catch {
    // reported below
  }
  throw new UsageError(
    `Cannot parse ${option}: '${text}' is not a rate in bytes per second like 500K, 32M, 1G`,
  );
}

/** Waits until the guest has retired `at` instructions (polled between its slices). */
async function reach(machine: LiveMachine, at: number): Promise<void> {
  for (;;) {
    const s = await machine.status();
    if (s.retired >= at) return;
    if (s.state === "halted") {
      throw new Error(
        `Cannot migrate at instruction ${at}: the guest halted at ${s.retired} before reaching it`,
      );
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** `run --migrate-to` after a lost post-copy connection: reconnects (once a second, for at most
 * {@linkcode DEFAULT_RESUME_TIMEOUT_MS}) and finishes it; rejects with the last failure. */
async function resumePostcopy(
  machine: LiveMachine,
  t: MigrateTarget,
  onPass: (line: unknown) => void,
  first: Error,
): Promise<MigrationMetrics> {
  const until = performance.now() + DEFAULT_RESUME_TIMEOUT_MS;
  let last = first;
  while (performance.now() < until) {
    await new Promise((r) => setTimeout(r, 1000));
    try {
      return await migrate(machine, { ...t, onPass, resume: true });
    } catch (e) {
      last = e as Error;
      if (interruptedPostcopy(machine) === null) throw e;
    }
  }
  throw new MigrationError(
    "timeout",
    `${last.message}; no resume succeeded within ${DEFAULT_RESUME_TIMEOUT_MS} ms, the guest stays stopped`,
  );
}

/** One line on stderr about a finished migration. */
export function describeMigration(m: MigrationMetrics): string {
  return `migrated to ${m.destination} (${m.mode}) at instruction ${m.atInstruction}: downtime ${
    m.downtimeMs.toFixed(1)
  } ms, total ${m.totalMs.toFixed(0)} ms, ${m.bytesSent} bytes sent (${
    (m.bytesSent / m.ramBytes).toFixed(2)
  }x RAM), ${m.passes} passes after the first; the guest runs there now`;
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
  const options = {
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
      path: (_k: number, at: number) => snapshotPath(o.out!, at, true),
    },
    onScheduledSnapshot: report,
    onScheduledError: fail,
  };
  try {
    if (o.incoming !== undefined) {
      const inc = o.incoming;
      const received = await receiveMigration({
        host: inc.host,
        port: inc.port,
        out: inc.out,
        ramSize: inc.ramSize,
        timeoutMs: inc.timeoutMs,
        resume: inc.resume,
        resumeTimeoutMs: inc.resumeTimeoutMs,
        live: options,
        onListening: (a) =>
          console.error(`${o.name}: waiting for a migration on ${a.hostname}:${a.port}`),
        onPostcopyStart: (at) =>
          console.error(
            `${o.name}: running the guest from instruction ${at} (post-copy: its pages arrive as it runs)`,
          ),
        onRefusedBusy: (peer) =>
          console.error(`${o.name}: refused a second migration from ${peer}: one is in progress`),
      });
      machine = received.machine;
      const m = received.metrics;
      console.error(
        `${o.name}: received the guest from ${m.source} at instruction ${m.atInstruction} (${m.bytesReceived} bytes, content digest checked); running it`,
      );
      metricsFile?.writeSync(encoder.encode(JSON.stringify(m) + "\n"));
    } else {
      machine = await LiveMachine.start({
        elf: o.elf,
        restorePath: o.restorePath,
        restoreParents: o.restoreParents,
        ...options,
      });
    }
  } catch (e) {
    metricsFile?.close();
    console.error(`${o.name}: ${(e as Error).message}`);
    return e instanceof MigrationError ? MIGRATION_EXIT_STATUS[e.failure] : 1;
  }
  if (o.verbose) {
    for (const n of machine.restoredNotes) console.error(`${o.name}: ${n.field}: ${n.note}`);
  }
  const onPass = (line: unknown) => {
    const text = JSON.stringify(line);
    console.error(text);
    metricsFile?.writeSync(encoder.encode(text + "\n"));
  };
  const onMigrated = (m: MigrationMetrics) => {
    console.error(`${o.name}: ${describeMigration(m)}`);
    metricsFile?.writeSync(encoder.encode(JSON.stringify(m) + "\n"));
  };
  const control = o.control === undefined ? null : await serveControl(o.control, machine, {
    onSnapshot: report,
    onMigrated,
  });
  const never = new Promise<never>(() => {});
  const t = o.migrateTo;
  // A failed migration leaves the guest running: the run goes on as if it had not been tried.
  const migrated = t === undefined ? never : (async () => {
    await reach(machine, t.at);
    try {
      return await migrate(machine, { ...t, onPass });
    } catch (e) {
      if (interruptedPostcopy(machine) === null) throw e;
      // A post-copy cut after the switch-over: the guest stays stopped here with its state;
      // run's --resume is to try again, once a second, within the resume bound.
      console.error(`${o.name}: ${(e as Error).message}; resuming`);
      return await resumePostcopy(machine, t, onPass, e as Error);
    }
  })().then((m) => {
    onMigrated(m);
    return { kind: "migrated" as const };
  }, (e) => {
    fail(e as Error);
    return never;
  });
  // The run ends when the guest halts (like QEMU when its guest powers off), on `quit`, or
  // once the guest runs elsewhere.
  const ended = await Promise.race([
    machine.halted.then((h) => ({ kind: "halt" as const, h })),
    (control?.quitRequested ?? never).then(() => ({
      kind: "quit" as const,
    })),
    migrated,
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

/** Exit status of a failed migration, by how it failed (never by message text). */
export const MIGRATION_EXIT_STATUS: Readonly<Record<MigrationError["failure"], number>> = {
  refused: 3,
  mismatch: 4,
  protocol: 5,
  timeout: 6,
  connection: 7,
};

/** The options `run` and `restore` both take, as `parseArgs` declares them (all strings). */
export const LIVE_STRING_OPTIONS = [
  "migrate-to",
  "migrate-at",
  "migrate-mode",
  "bandwidth",
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
  "precopy-passes",
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
  forceLive = false,
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
  const migrateTo = parseMigrateTarget(opts);
  if (
    at.length === 0 && everyText === undefined && one("control") === undefined &&
    migrateTo === undefined && !forceLive
  ) {
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
      migrateTo,
    },
  };
}

/** `--migrate-to HOST:PORT --migrate-at N [--migrate-mode MODE] [--bandwidth RATE]` (with
 * `--downtime-ms` and `--precopy-max-passes`). */
function parseMigrateTarget(opts: LiveArgValues): MigrateTarget | undefined {
  const one = (name: (typeof LIVE_STRING_OPTIONS)[number]) => opts[name] as string | undefined;
  const to = one("migrate-to");
  if (to === undefined) {
    for (const o of ["migrate-at", "migrate-mode", "bandwidth", "precopy-passes"] as const) {
      if (one(o) !== undefined) throw new UsageError(`--${o} needs --migrate-to HOST:PORT`);
    }
    return undefined;
  }
  const atText = one("migrate-at");
  if (atText === undefined) throw new UsageError("--migrate-to needs --migrate-at N");
  let target;
  try {
    target = parseHostPort(to, "--migrate-to");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const precopy = parsePrecopyOptions(one("precopy-max-passes"), one("downtime-ms"));
  const bw = one("bandwidth");
  const mode = parseMigrationMode(one("migrate-mode") ?? "precopy");
  const passes = one("precopy-passes");
  if (passes !== undefined && mode !== "hybrid") {
    throw new UsageError("--precopy-passes belongs to --migrate-mode hybrid");
  }
  return {
    ...target,
    at: parseInstructionCount("--migrate-at", atText),
    mode,
    precopyPasses: passes === undefined ? undefined : parsePrecopyPasses(passes),
    downtimeMs: precopy.downtimeMs,
    maxPasses: precopy.maxPasses,
    bandwidth: bw === undefined ? undefined : parseBandwidth(bw),
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
