/**
 * The host side of a live machine: starts the guest thread and the writer thread, forwards the
 * guest's UART output, turns snapshot requests into work for both threads and gathers each
 * snapshot's metrics. It runs on the main thread, which stays free for the command line and the
 * control socket while the guest runs.
 *
 * ```
 *  main thread (LiveMachine) ── mailbox (SAB) ──► guest Worker: Machine.run() in slices, store hook
 *        │      ◄── events (postMessage) ──────────┘       │ RAM, page gate, states, buffer (SAB)
 *        └──── jobs ──► writer Worker: SnapshotWriterLoop ◄┘ → format/ SnapshotWriter → file
 * ```
 *
 * @module
 */

import type { MachineDescription } from "../../format/header.ts";
import { MAX_CHAIN_DEPTH } from "../../format/constants.ts";
import type { MachineState } from "../machine.ts";
import { PAGE_SIZE } from "../memory_map.ts";
import type { GuestSideMetrics } from "./guest_side.ts";
import type { PostcopyBoot } from "./postcopy_pager.ts";
import {
  CMD_PAUSE,
  CMD_QUIT,
  CMD_RESUME,
  CMD_SAVE_STATE,
  CMD_SNAPSHOT,
  CMD_STATUS,
  Mailbox,
  MODE_CODES,
  SNAPSHOT_DIFF,
  SNAPSHOT_FULL,
} from "./mailbox.ts";
import { contentDigestOf } from "./machine_state.ts";
import {
  epochMs,
  type PauseCauses,
  readProcessMemory,
  resetPeakMemory,
  shiftTimeline,
  type SnapshotMetrics,
  type SnapshotTimeline,
} from "./metrics.ts";
import type { SnapshotMode } from "./session.ts";
import type {
  GuestBoot,
  GuestEvent,
  GuestStatus,
  HaltReason,
  PrecopyOptions,
  PrecopyPassReport,
  ScheduledSnapshot,
  WriterCommand,
  WriterEvent,
} from "./protocol.ts";
import type { WriterSideMetrics } from "./writer_loop.ts";

/** A copy buffer size: bytes, or "max" (as many slots as RAM has pages: never stalls). */
export type CowBufferSize = number | "max";

export type { PrecopyOptions, PrecopyPassReport } from "./protocol.ts";

/** What to snapshot and where. */
export interface SnapshotRequest {
  /** `stop` pauses the guest for the whole write; `cow` and `precopy` let it run on. */
  mode: SnapshotMode;
  /** The `.lsnap` file to write (atomically: it appears only once complete). */
  path: string;
  /** Copy buffer for `cow` (default 16 MiB). */
  cowBuffer?: CowBufferSize;
  /** Precopy's policy. */
  precopy?: PrecopyOptions;
  /** Instead of a file at `path` (then only a name for messages and metrics): the snapshot's
   * bytes go to this port (port_stream.ts), as a live migration sends them. */
  stream?: MessagePort;
  /** Precopy: keep the guest paused after the final pause (a live migration's switch-over: the
   * caller then quits it, or resumes it if the migration failed). */
  holdAfterFinal?: boolean;
  /** Called as each precopy pass ends. */
  onPass?: (pass: PrecopyPassReport) => void;
  /** Called when the guest stops for precopy's final pause (`pausedAt`: `epochMs()`). */
  onFinal?: (atInstruction: number, pausedAt: number) => void;
  /** With `stream`: awaited (while the guest runs) after each precopy pass, once the pass's
   * pages are all in the stream (`bytes`: the stream's length so far), before precopy counts the
   * pages dirty and decides whether to pause: a live migration waits there until the destination
   * has restored the stream up to `bytes`, so that the pass's time, and the rate the switch-over
   * is estimated with, runs to the destination, and no backlog is left for the final pause. */
  drain?: (bytes: number) => Promise<void>;
  /**
   * A diff on the machine's last snapshot (the last one completed, or the `.lsnap` file it was
   * restored from): only the pages stored to since that snapshot's instant, with explicit zero
   * records for pages that became zero, and the whole device state. `snapshot()` refuses it
   * when the machine has no such snapshot; scheduled ones (`schedule`, `every`) are full until
   * there is one.
   */
  incremental?: boolean;
}

/** A snapshot the guest takes by itself at an instruction count. */
export interface ScheduledRequest extends SnapshotRequest {
  /** Retired-instruction count at which the snapshot is taken; increasing along a schedule. */
  at: number;
}

/** Options of {@linkcode LiveMachine.start}. Exactly one of `elf`, `restorePath` and
 * `restoreStream`. */
export interface LiveMachineOptions {
  /** A RISC-V ELF executable to boot. */
  elf?: Uint8Array;
  /** An `.lsnap` file (or a QEMU migration stream) to resume from. */
  restorePath?: string;
  /** A snapshot's bytes arriving on a port (port_stream.ts), as a live migration receives
   * them; the machine starts once the whole stream is in and checked. */
  restoreStream?: MessagePort;
  /** A post-copy migration's destination: the machine of this description and device state,
   * every page absent until the host brings it in (see `onPageFault`). */
  postcopy?: PostcopyBoot;
  /** Post-copy: called once the machine is built and waits for its device state, with its RAM
   * (every page absent: a hybrid migration's precopied pages may be written there). */
  onPostcopyReady?: (ram: SharedArrayBuffer) => void;
  /** Post-copy: called (on this thread) when the guest waits for page `page` (-1: for all). */
  onPageFault?: (page: number) => void;
  /** For a diff at `restorePath`: parent files to use before the names its chain records
   * (`restore --parent`), matched by file digest. */
  restoreParents?: string[];
  /** RAM size in bytes for `elf` (default: the machine's, 128 MiB). */
  ramSize?: number;
  /** Guest UART output (default: dropped). */
  uartSink?: (bytes: Uint8Array) => void;
  /** Halt the guest once this many instructions have retired. */
  stopAt?: number | null;
  /** Instead of `stopAt`: halt it once this many have retired after the start (a restored
   * snapshot's own count included). */
  runFor?: number | null;
  /** Snapshots at given instruction counts. */
  schedule?: ScheduledRequest[];
  /** A snapshot every `interval` instructions; `path(k, atInstruction)` names the k-th file. */
  every?: {
    interval: number;
    mode: SnapshotMode;
    cowBuffer?: CowBufferSize;
    precopy?: PrecopyOptions;
    /** Each a diff on the one before (the first full, unless the machine was restored). */
    incremental?: boolean;
    path: (k: number, atInstruction: number) => string;
  } | null;
  /** Bytes the guest reads from its UART. */
  input?: Uint8Array;
  /** Called with the metrics of each snapshot the guest takes by itself (schedule, every). */
  onScheduledSnapshot?: (metrics: SnapshotMetrics) => void;
  /** Called when a scheduled snapshot fails. */
  onScheduledError?: (error: Error) => void;
  /** Start paused, so nothing retires until {@linkcode LiveMachine.resume}. */
  startPaused?: boolean;
  /** Most instructions the guest runs between two looks at its mailbox (default 200 000). */
  sliceInstructions?: number;
  /**
   * The deepest a chain of diffs may be (default and at most format's `MAX_CHAIN_DEPTH`, 1024):
   * a scheduled incremental snapshot on a parent this deep is full, starting a new chain, and
   * `snapshot({ incremental: true })` is refused.
   */
  maxChainDepth?: number;
}

/** Why and where the guest halted, with its state then. */
export interface HaltInfo {
  /** Why the guest halted: what `run()` returned (exit, reset, idle, lockup…) or `stop-at`. */
  halt: HaltReason;
  /** Instructions retired since reset when it halted. */
  retired: number;
  /** The machine's registers and devices then (RAM is in {@linkcode LiveMachine.ram}). */
  state: MachineState;
}

interface Pending {
  path: string;
  precopy?: PrecopyOptions;
  onPass?: (pass: PrecopyPassReport) => void;
  onFinal?: (atInstruction: number, pausedAt: number) => void;
  drain?: (bytes: number) => Promise<void>;
  incremental: boolean;
  cowBufferBytes: number;
  resolve: (m: SnapshotMetrics) => void;
  reject: (e: Error) => void;
  mode?: SnapshotMode;
  startedAt?: number;
  atInstruction?: number;
  rssBefore?: number;
  guest?: {
    guest: GuestSideMetrics;
    pauseUs: number;
    pauseCauses: PauseCauses;
    instructionsDuring: number;
    cpuNs: number;
    runQueueNs: number;
  };
  writer?: {
    writer: WriterSideMetrics;
    bytesWritten: number;
    contentDigest: string;
    finishedAt: number;
    depth: number;
    parentPath: string | null;
  };
  error?: Error;
}

/** Whole microseconds. */
function roundCauses(p: PauseCauses): PauseCauses {
  const out = { ...p };
  for (const k of Object.keys(out) as (keyof PauseCauses)[]) out[k] = Math.round(out[k]);
  return out;
}

/** Default copy buffer: 16 MiB. */
export const DEFAULT_COW_BUFFER = 16 * 1024 * 1024;

/** Converts a buffer size to slots for a machine of `pageCount` pages. */
export function cowBufferSlots(size: CowBufferSize, pageCount: number): number {
  if (size === "max") return pageCount;
  return Math.min(pageCount, Math.floor(size / PAGE_SIZE));
}

/**
 * A machine whose guest runs on its own thread and can be snapshotted while it runs.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { Machine } from "../machine.ts";
 * import { LiveMachine } from "./live_machine.ts";
 * import { machineContentDigest } from "./machine_state.ts";
 * const elf = await Deno.readFile(new URL("../guests/build/counter.elf", import.meta.url));
 * const dir = await Deno.makeTempDir();
 * const vm = await LiveMachine.start({ elf, ramSize: 4 << 20 });
 * // The guest runs on while its RAM is written out.
 * const metrics = await vm.snapshot({ mode: "cow", cowBuffer: 16 << 20, path: `${dir}/c.lsnap` });
 * await vm.quit();
 * const stopAt = metrics.atInstruction + 100_000;
 * const again = await LiveMachine.start({ restorePath: `${dir}/c.lsnap`, stopAt });
 * await again.halted;
 * // The restored guest is where an uninterrupted one is after as many instructions.
 * const whole = Machine.fromElf(elf, { ramSize: 4 << 20, uartSink: () => {} });
 * whole.run(stopAt);
 * assertEquals(await again.digest(), await machineContentDigest(whole));
 * await again.quit();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class LiveMachine {
  /** The machine's name and memory regions, as its snapshots record them. */
  readonly description: MachineDescription;
  /** Guest RAM (shared with the guest thread; read it only while paused or halted). */
  readonly ram: Uint8Array;
  /** The page gate of guest RAM (emulator/ram.ts), shared with the guest thread: a post-copy
   * destination clears a page's GATE_ABSENT here once it has written the page. */
  readonly pageGate: Int32Array;
  /** Pages of guest RAM (4096 bytes each): the most slots a copy buffer can use. */
  readonly pageCount: number;
  /** Instructions retired when the machine started (non-zero after a restore). */
  readonly startRetired: number;
  /** For a restored machine, the file's content digest. */
  readonly restoredDigest: string | null;
  /** For a restored QEMU snapshot, the fields ignored or approximated (`restore --verbose`). */
  readonly restoredNotes: { field: string; note: string }[];
  /** When the guest thread had booted, just before its first instruction (`epochMs()`). */
  readonly bootedAt: number;
  /** Resolves when the guest halts (exit, idle, lockup, reset, or `stopAt`). */
  readonly halted: Promise<HaltInfo>;
  readonly #guest: Worker;
  readonly #writer: Worker;
  readonly #mailbox: Mailbox;
  readonly #pending = new Map<string, Pending>();
  readonly #replies = new Map<
    number,
    {
      resolve: (r: { status: GuestStatus; state?: MachineState; at?: number }) => void;
      reject: (e: Error) => void;
    }
  >();
  /** Set when a thread died: every later call and every waiting one fails with it. */
  #crash: Error | null = null;
  #rejectHalt!: (e: Error) => void;
  readonly #options: LiveMachineOptions;
  #commands: Promise<unknown> = Promise.resolve();
  #halt: HaltInfo | null = null;
  #resolveHalt!: (h: HaltInfo) => void;
  #quitDone: Promise<void>;
  #resolveQuit!: () => void;
  #closed = false;
  #closedByWriter: Promise<void>;
  #resolveWriterClosed!: () => void;

  private constructor(
    guest: Worker,
    writer: Worker,
    mailbox: Mailbox,
    booted: Extract<GuestEvent, { type: "booted" }>,
    options: LiveMachineOptions,
    chunkPort: MessagePort,
  ) {
    this.#guest = guest;
    this.#writer = writer;
    this.#mailbox = mailbox;
    this.#options = options;
    this.description = booted.description;
    this.ram = new Uint8Array(booted.ram);
    this.pageGate = new Int32Array(booted.gate);
    this.pageCount = this.ram.length / PAGE_SIZE;
    this.startRetired = booted.retired;
    this.restoredDigest = booted.restoredDigest;
    this.restoredNotes = booted.restoredNotes;
    this.bootedAt = booted.bootedAt;
    this.halted = new Promise((resolve, reject) => {
      this.#resolveHalt = resolve;
      this.#rejectHalt = reject;
    });
    this.halted.catch(() => {}); // a crash rejects it; callers that await it still see that
    this.#quitDone = new Promise((r) => this.#resolveQuit = r);
    guest.onmessage = (e: MessageEvent<GuestEvent>) => this.#onGuest(e.data);
    writer.onmessage = (e: MessageEvent<WriterEvent>) => this.#onWriter(e.data);
    // A thread that dies after boot must not leave callers waiting forever.
    guest.onerror = (e) => {
      e.preventDefault();
      this.#crashed(new Error(`The guest thread crashed: ${e.message}`));
    };
    writer.onerror = (e) => {
      e.preventDefault();
      this.#crashed(new Error(`The snapshot writer thread crashed: ${e.message}`));
    };
    this.#closedByWriter = new Promise((r) => this.#resolveWriterClosed = r);
    const attach: WriterCommand = {
      type: "attach",
      buffers: booted.buffers,
      ram: booted.ram,
      gate: booted.gate,
      description: booted.description,
      chunkPort,
      parent: booted.parent,
    };
    writer.postMessage(attach, [chunkPort]);
    (options.schedule ?? []).forEach((s, i) => {
      if (s.at < booted.retired) return; // before a restored machine's start: never taken
      this.#expect(`at:${i}`, s).then(
        (m) => options.onScheduledSnapshot?.(m),
        (e) => options.onScheduledError?.(e),
      );
    });
    // Each file is named to the writer before the guest can reach its snapshot, so the writer
    // has it open and starts within microseconds of the instant; one ahead is enough.
    this.#registerNextScheduled(-1);
    const every = options.every;
    if (every != null) {
      this.#registerEvery(0, (Math.floor(booted.retired / every.interval) + 1) * every.interval);
    }
  }

  #registerNextScheduled(after: number): void {
    const schedule = this.#options.schedule ?? [];
    for (let i = after + 1; i < schedule.length; i++) {
      const p = this.#pending.get(`at:${i}`);
      if (p === undefined) continue;
      this.#writer.postMessage(
        {
          type: "path",
          tag: `at:${i}`,
          path: p.path,
          precopy: p.precopy,
          incremental: p.incremental,
        } as WriterCommand,
      );
      return;
    }
  }

  #registerEvery(k: number, at: number): void {
    const every = this.#options.every!;
    const tag = `every:${k}`;
    const req = {
      mode: every.mode,
      path: every.path(k, at),
      cowBuffer: every.cowBuffer,
      precopy: every.precopy,
      incremental: every.incremental,
    };
    this.#expect(tag, req).then(
      (m) => this.#options.onScheduledSnapshot?.(m),
      (e) => this.#options.onScheduledError?.(e),
    );
    this.#writer.postMessage(
      {
        type: "path",
        tag,
        path: req.path,
        precopy: req.precopy,
        incremental: req.incremental ?? false,
      } as WriterCommand,
    );
  }

  /** Boots a guest (from an ELF, or restored from a snapshot file) on its own thread. Rejects
   * with the guest thread's error (a bad ELF, a snapshot that does not fit) before it runs. */
  static async start(options: LiveMachineOptions): Promise<LiveMachine> {
    const schedule = options.schedule ?? [];
    const depth = options.maxChainDepth;
    if (
      depth !== undefined && !(Number.isInteger(depth) && depth >= 1 && depth <= MAX_CHAIN_DEPTH)
    ) {
      throw new RangeError(
        `Cannot start the machine: maxChainDepth ${depth} is not an integer in 1..${MAX_CHAIN_DEPTH}`,
      );
    }
    for (let i = 1; i < schedule.length; i++) {
      if (!(schedule[i].at > schedule[i - 1].at)) {
        throw new RangeError("Cannot schedule snapshots: instruction counts must increase");
      }
    }
    const mailbox = new Mailbox();
    // The guest sends the copy buffer's chunks straight to the writer (slot_chunks.ts).
    const chunks = new MessageChannel();
    const boot: GuestBoot = {
      chunkPort: chunks.port1,
      elf: options.elf,
      restorePath: options.restorePath,
      restoreStream: options.restoreStream,
      postcopy: options.postcopy,
      restoreParents: options.restoreParents,
      ramSize: options.ramSize,
      input: options.input,
      mailbox: mailbox.buffer,
      stopAt: options.stopAt ?? null,
      runFor: options.runFor ?? null,
      // Slots are clamped to the page count by the guest, which knows it.
      schedule: schedule.map((s): ScheduledSnapshot => ({
        at: s.at,
        mode: s.mode,
        slots: cowBufferSlots(s.cowBuffer ?? DEFAULT_COW_BUFFER, Number.MAX_SAFE_INTEGER),
        incremental: s.incremental ?? false,
      })),
      every: options.every == null ? null : {
        interval: options.every.interval,
        mode: options.every.mode,
        slots: cowBufferSlots(
          options.every.cowBuffer ?? DEFAULT_COW_BUFFER,
          Number.MAX_SAFE_INTEGER,
        ),
        incremental: options.every.incremental ?? false,
      },
      startPaused: options.startPaused,
      sliceInstructions: options.sliceInstructions,
      maxChainDepth: options.maxChainDepth,
    };
    const writer = new Worker(new URL("./writer_worker.ts", import.meta.url), { type: "module" });
    await new Promise<void>((resolve) => writer.onmessage = () => resolve());
    const guest = new Worker(new URL("./guest_worker.ts", import.meta.url), { type: "module" });
    return await new Promise<LiveMachine>((resolve, reject) => {
      const fail = (err: Error) => {
        guest.terminate();
        writer.terminate();
        reject(err);
      };
      guest.onmessage = (e: MessageEvent<GuestEvent>) => {
        const ev = e.data;
        if (ev.type === "ready") {
          const transfer: Transferable[] = [chunks.port1];
          if (boot.restoreStream !== undefined) transfer.push(boot.restoreStream);
          if (boot.postcopy !== undefined) transfer.push(boot.postcopy.state);
          try {
            guest.postMessage(boot, transfer);
          } catch (e) {
            // A restore stream whose sender already gave up (its port is closed).
            fail(new Error(`Cannot start the guest thread: ${(e as Error).message}`));
          }
        } // The constructor takes over the guest's messages before the next one is dispatched,
        // so nothing the guest posts after booting is missed.
        else if (ev.type === "postcopy-ready") options.onPostcopyReady?.(ev.ram);
        else if (ev.type === "booted") {
          resolve(new LiveMachine(guest, writer, mailbox, ev, options, chunks.port2));
        } else if (ev.type === "boot-failed") {
          const err = new Error(ev.message);
          err.name = ev.name;
          fail(err);
        }
      };
      guest.onerror = (e) => {
        e.preventDefault();
        fail(new Error(`Cannot start the guest thread: ${e.message}`));
      };
    });
  }

  #expect(tag: string, req: SnapshotRequest): Promise<SnapshotMetrics> {
    return new Promise<SnapshotMetrics>((resolve, reject) => {
      this.#pending.set(tag, {
        path: req.path,
        precopy: req.precopy,
        onPass: req.onPass,
        onFinal: req.onFinal,
        drain: req.drain,
        incremental: req.incremental ?? false,
        cowBufferBytes: cowBufferSlots(req.cowBuffer ?? DEFAULT_COW_BUFFER, this.pageCount) *
          PAGE_SIZE,
        resolve,
        reject,
      });
    });
  }

  #onGuest(ev: GuestEvent): void {
    switch (ev.type) {
      case "uart":
        this.#options.uartSink?.(ev.bytes);
        break;
      case "page-fault":
        this.#options.onPageFault?.(ev.page);
        break;
      case "snapshot-started": {
        const p = this.#pending.get(ev.tag);
        if (ev.state !== null) {
          this.#writer.postMessage(
            { type: "state", tag: ev.tag, state: ev.state } as WriterCommand,
          );
        }
        if (ev.tag.startsWith("at:")) this.#registerNextScheduled(Number(ev.tag.slice(3)));
        if (ev.tag.startsWith("every:")) {
          this.#registerEvery(
            Number(ev.tag.slice(6)) + 1,
            ev.atInstruction + this.#options.every!.interval,
          );
        }
        if (p === undefined) return;
        p.mode = ev.mode;
        p.startedAt = ev.startedAt;
        p.atInstruction = ev.atInstruction;
        if (p.rssBefore === undefined) {
          // A scheduled snapshot: measured as soon as the host hears of it.
          p.rssBefore = readProcessMemory().rss;
          resetPeakMemory();
        }
        break;
      }
      case "snapshot-final": {
        const p = this.#pending.get(ev.tag);
        if (p !== undefined) p.atInstruction = ev.atInstruction;
        this.#writer.postMessage({ type: "state", tag: ev.tag, state: ev.state } as WriterCommand);
        p?.onFinal?.(ev.atInstruction, ev.pausedAt);
        break;
      }
      case "snapshot-guest-done": {
        const p = this.#pending.get(ev.tag);
        if (p === undefined) return;
        p.guest = {
          guest: ev.guest,
          pauseUs: ev.pauseUs,
          pauseCauses: ev.pauseCauses,
          instructionsDuring: ev.instructionsDuring,
          cpuNs: ev.cpuNs,
          runQueueNs: ev.runQueueNs,
        };
        this.#settle(ev.tag, p);
        break;
      }
      case "snapshot-refused": {
        const p = this.#pending.get(ev.tag);
        this.#pending.delete(ev.tag);
        p?.reject(new Error(ev.message));
        break;
      }
      case "halted":
        this.#halt = { halt: ev.halt, retired: ev.retired, state: ev.state };
        // Scheduled snapshots the guest never reached will not happen.
        for (const [tag, p] of this.#pending) {
          if (tag.startsWith("at:") && p.mode === undefined) {
            this.#pending.delete(tag);
            this.#writer.postMessage({ type: "drop", tag } as WriterCommand);
            const at = this.#options.schedule![Number(tag.slice(3))].at;
            p.reject(
              new Error(
                `Cannot snapshot at instruction ${at}: the guest halted (${ev.halt.reason}) at ${ev.retired}`,
              ),
            );
          }
        }
        this.#resolveHalt(this.#halt);
        break;
      case "reply": {
        const r = this.#replies.get(ev.seq);
        this.#replies.delete(ev.seq);
        r?.resolve({ status: ev.status, state: ev.state, at: ev.at });
        break;
      }
      case "quit":
        this.#resolveQuit();
        break;
    }
  }

  #onWriter(ev: WriterEvent): void {
    if (ev.type === "ready") return;
    if (ev.type === "closed") {
      this.#resolveWriterClosed();
      return;
    }
    const p = this.#pending.get(ev.tag);
    if (p === undefined) return;
    if (ev.type === "pass") {
      p.onPass?.(ev.pass);
      return;
    }
    if (ev.type === "drain") {
      const ok = () => this.#writer.postMessage({ type: "drained", tag: ev.tag } as WriterCommand);
      (p.drain?.(ev.bytes) ?? Promise.resolve()).then(ok, ok);
      return;
    }
    if (ev.type === "failed") p.error = new Error(ev.message);
    else p.writer = ev;
    this.#settle(ev.tag, p);
  }

  #settle(tag: string, p: Pending): void {
    if (p.guest === undefined || (p.writer === undefined && p.error === undefined)) return;
    this.#pending.delete(tag);
    if (p.error !== undefined) {
      p.reject(p.error);
      return;
    }
    const g = p.guest;
    const w = p.writer!;
    const mem = readProcessMemory();
    p.resolve({
      mode: p.mode!,
      path: p.path,
      incremental: w.parentPath !== null,
      parentPath: w.parentPath,
      chainDepth: w.depth,
      pagesInDiff: Math.max(0, w.writer.diffPages),
      atInstruction: p.atInstruction!,
      pauseUs: Math.round(g.pauseUs),
      pauseCauses: roundCauses(g.pauseCauses),
      totalMs: Math.round((w.finishedAt - p.startedAt!) * 1000) / 1000,
      bytesWritten: w.bytesWritten,
      pagesTotal: w.writer.pagesTotal,
      pagesZero: w.writer.pagesZero,
      pagesViaBuffer: g.guest.pagesViaBuffer,
      pagesCopiedCold: g.guest.coldSlots,
      pagesViaSweep: w.writer.pagesViaSweep + w.writer.pagesOnRequest,
      pagesOnRequest: w.writer.pagesOnRequest,
      pagesResent: w.writer.pagesResent,
      precopyPasses: w.writer.precopyPasses,
      pagesInFinalPause: w.writer.pagesInFinalPause,
      precopyThrottlePct: w.writer.precopyThrottlePct,
      writerYieldMs: Math.round(w.writer.writerYieldMs * 1000) / 1000,
      guestThrottleMs: Math.round(g.guest.throttleUs) / 1000,
      guestGcMs: Math.round(g.guest.gcUs) / 1000,
      cowBufferBytes: p.mode === "cow" ? p.cowBufferBytes : 0,
      bufferPeakBytes: g.guest.bufferPeakBytes,
      guestInstructionsDuring: g.instructionsDuring,
      guestStallUs: Math.round(g.guest.guestStallUs),
      guestHookMs: Math.round(g.guest.storeHookUs) / 1000,
      guestCpuMs: Math.round(g.cpuNs / 1000) / 1000,
      guestRunQueueMs: Math.round(g.runQueueNs / 1000) / 1000,
      contentDigest: w.contentDigest,
      rssBeforeBytes: p.rssBefore ?? 0,
      rssPeakBytes: mem.peak,
      timeline: snapshotTimeline(
        p.mode!,
        g.pauseUs,
        w.finishedAt - p.startedAt!,
        w.writer,
        p.startedAt!,
      ),
    });
  }

  #command(
    kind: number,
    args: number[] = [],
    after?: (seq: number) => void,
    before?: (seq: number) => void,
  ) {
    const run = () =>
      new Promise<{ status: GuestStatus; state?: MachineState; at?: number }>((resolve, reject) => {
        if (this.#crash !== null) return reject(this.#crash);
        before?.(this.#mailbox.nextSeq());
        const seq = this.#mailbox.post(kind, args);
        this.#replies.set(seq, { resolve, reject });
        after?.(seq);
      });
    const next = this.#commands.then(run, run);
    this.#commands = next;
    return next;
  }

  /** Takes a snapshot now (between two instructions); resolves with its metrics once the file
   * is complete. The guest keeps running unless the mode is `stop`. */
  snapshot(req: SnapshotRequest): Promise<SnapshotMetrics> {
    if (this.#closed) return Promise.reject(new Error("Cannot snapshot: the machine has quit"));
    const slots = cowBufferSlots(req.cowBuffer ?? DEFAULT_COW_BUFFER, this.pageCount);
    let done!: Promise<SnapshotMetrics>;
    const kind = req.incremental ? SNAPSHOT_DIFF : SNAPSHOT_FULL;
    const args = [MODE_CODES[req.mode], slots, kind, req.holdAfterFinal ? 1 : 0];
    const sent = this.#command(CMD_SNAPSHOT, args, undefined, (seq) => {
      const tag = `ctl:${seq}`;
      done = this.#expect(tag, req);
      // The refusal or failure can arrive before the reply that hands `done` to the caller; a
      // handler now keeps that from being an unhandled rejection (the caller still gets it).
      done.catch(() => {});
      // Memory from the OS: the resident set before the instant, and the peak from then on.
      this.#pending.get(tag)!.rssBefore = readProcessMemory().rss;
      resetPeakMemory();
      // Named to the writer before the guest sees the command (see #registerNextScheduled).
      const path: WriterCommand = {
        type: "path",
        tag,
        path: req.path,
        precopy: req.precopy,
        incremental: req.incremental ?? false,
        stream: req.stream,
      };
      this.#writer.postMessage(path, req.stream !== undefined ? [req.stream] : []);
    });
    return sent.then(() => done);
  }

  /** Stops the guest between two instructions. */
  async pause(): Promise<GuestStatus> {
    return (await this.#command(CMD_PAUSE)).status;
  }

  /** Stops the guest between two instructions and takes its registers and devices, in one
   * round trip; `at` is when it stopped (`epochMs()` on the guest's thread: a post-copy's
   * downtime starts there). */
  async pauseAndSave(): Promise<{ status: GuestStatus; state: MachineState; at: number }> {
    const r = await this.#command(CMD_SAVE_STATE, [1]);
    return { status: r.status, state: r.state!, at: r.at ?? epochMs() };
  }

  /** Lets a paused guest run on. */
  async resume(): Promise<GuestStatus> {
    return (await this.#command(CMD_RESUME)).status;
  }

  /** Where the guest is. */
  async status(): Promise<GuestStatus> {
    return (await this.#command(CMD_STATUS)).status;
  }

  /** The registers and devices now (RAM is {@linkcode LiveMachine.ram}); pause the guest
   * first for a state that stays true. */
  async saveState(): Promise<{ status: GuestStatus; state: MachineState }> {
    const r = await this.#command(CMD_SAVE_STATE);
    return { status: r.status, state: r.state! };
  }

  /** The content digest of the machine's current state (pauses the guest for its duration if
   * it is running, then resumes it). */
  async digest(): Promise<string> {
    const before = await this.status();
    if (before.state === "running") await this.pause();
    const { state } = await this.#command(CMD_SAVE_STATE);
    const hex = await contentDigestOf(this.description, this.ram, state!);
    if (before.state === "running") await this.resume();
    return hex;
  }

  /** A thread died: fail everything waiting on this machine, stop both threads. */
  #crashed(err: Error): void {
    if (this.#crash !== null) return;
    this.#crash = err;
    this.#closed = true;
    for (const [tag, p] of this.#pending) {
      this.#pending.delete(tag);
      p.reject(err);
    }
    for (const [seq, r] of this.#replies) {
      this.#replies.delete(seq);
      r.reject(err);
    }
    this.#rejectHalt(err);
    this.#resolveQuit();
    this.#resolveWriterClosed();
    this.#guest.terminate();
    this.#writer.terminate();
  }

  /** Finishes any snapshot being written, stops both threads. */
  async quit(): Promise<void> {
    if (this.#closed) return;
    await this.#command(CMD_QUIT);
    await this.#quitDone;
    // Snapshots whose writer is still closing its file; scheduled ones never started are dropped.
    while ([...this.#pending.values()].some((p) => p.mode !== undefined)) {
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const [tag, p] of this.#pending) {
      this.#pending.delete(tag);
      // The next periodic snapshot was only announced; a scheduled one was asked for.
      if (!tag.startsWith("every:")) {
        p.reject(new Error("Cannot snapshot: the machine quit before reaching the instruction"));
      }
    }
    this.#closed = true;
    // The writer removes the files it had opened for snapshots that will not happen.
    this.#writer.postMessage({ type: "close" } as WriterCommand);
    await this.#closedByWriter;
    this.#guest.terminate();
    this.#writer.terminate();
  }

  /** The halt, if the guest has halted. */
  get haltInfo(): HaltInfo | null {
    return this.#halt;
  }
}

/**
 * The snapshot's timeline: the writer's, moved to count from the snapshot's start, with the
 * pause the guest measured (cow's instant; stop's whole write). Precopy's final pause is the
 * writer's own.
 */
function snapshotTimeline(
  mode: SnapshotMode,
  pauseUs: number,
  totalMs: number,
  w: WriterSideMetrics,
  startedAt: number,
): SnapshotTimeline | undefined {
  if (w.timeline === undefined || w.timelineStartMs === undefined) return undefined;
  const t = shiftTimeline(w.timeline, w.timelineStartMs - startedAt);
  const endMs = Math.round(pauseUs) / 1000;
  if (mode === "cow") t.pauses.unshift({ reason: "instant", startMs: 0, endMs });
  if (mode === "stop") t.pauses.unshift({ reason: "stop", startMs: 0, endMs: totalMs });
  // The writer sees precopy's final pause from the guest's word that it stopped; the guest's own
  // measure (slice end, device state, wait) ends there too and is the longer.
  for (const p of t.pauses) {
    if (p.reason === "final") {
      p.startMs = Math.min(p.startMs, Math.round((p.endMs - endMs) * 1000) / 1000);
    }
  }
  return t;
}
