/**
 * The messages between the threads of a live machine, in one module that every side imports so
 * that no side imports another: the host thread (live_machine.ts) and the guest thread
 * (guest_worker.ts), the host thread and the writer thread (writer_worker.ts). Commands that must
 * reach a guest busy running go through the shared mailbox instead (mailbox.ts).
 *
 * @module
 */

import type { MachineDescription } from "../../format/header.ts";
import type { ExitReason, MachineState } from "../machine.ts";
import type { GuestSideMetrics } from "./guest_side.ts";
import type { PauseCauses } from "./metrics.ts";
import type { SessionBuffers, SnapshotMode } from "./session.ts";
import type { PrecopyPassReport, WriterSideMetrics } from "./writer_loop.ts";
import type { ParentTransfer } from "./diff_parent.ts";
import type { PostcopyBoot } from "./postcopy_pager.ts";

export type { PrecopyPassReport };

/** Precopy's convergence policy (see `writer_loop.ts`); every field has a default. */
export interface PrecopyOptions {
  /** Passes after the first before the final pause whatever is dirty (default 20). */
  maxPasses?: number;
  /** Target downtime: pause once the dirty pages can be written in this time (default 50). */
  downtimeMs?: number;
  /** What the switch-over costs apart from the dirty pages, milliseconds (default 0): taken off
   * `downtimeMs` before the pages are fitted in, and added to each pass's estimate. A live
   * migration's source passes its estimate of both ends' fixed work and round trips. */
  fixedMs?: number;
  /** The highest auto-converge throttle, percent of wall time the guest sleeps (default 99;
   * 0 turns auto-converge off). */
  maxThrottlePct?: number;
}

/** Host → writer messages. */
export type WriterCommand =
  | {
    type: "attach";
    buffers: SessionBuffers;
    ram: SharedArrayBuffer;
    gate: SharedArrayBuffer;
    description: MachineDescription;
    /** The copy buffer's chunks arrive here from the guest thread (slot_chunks.ts). */
    chunkPort: MessagePort;
    /** The parent of a diff taken before any snapshot: the file the machine was restored from. */
    parent: ParentTransfer | null;
  }
  /** Where the snapshot named `tag` goes (sent before the guest can take it), precopy's policy
   * for it, and whether it is a diff on the machine's last snapshot. */
  | {
    type: "path";
    tag: string;
    path: string;
    precopy?: PrecopyOptions;
    incremental?: boolean;
    /** Instead of a file at `path` (then only a name for messages): the snapshot's bytes go to
     * this port as a flow-controlled stream (port_stream.ts), e.g. to a live migration's
     * socket. */
    stream?: MessagePort;
  }
  /** The device state of snapshot `tag`. */
  | { type: "state"; tag: string; state: MachineState }
  /** Drops a path whose snapshot will not happen (removes its temporary file). */
  | { type: "drop"; tag: string }
  /** The host's answer to `drain`: the stream's consumer has caught up. */
  | { type: "drained"; tag: string }
  /** Stops after the job in progress; drops every path left. */
  | { type: "close" };

/** Writer → host messages. */
export type WriterEvent =
  | { type: "ready" }
  | {
    type: "done";
    tag: string;
    writer: WriterSideMetrics;
    bytesWritten: number;
    contentDigest: string;
    finishedAt: number;
    /** Chain depth: 0 for a full snapshot, n for the n-th diff on one. */
    depth: number;
    /** For a diff: its parent's path. */
    parentPath: string | null;
  }
  | { type: "failed"; tag: string; message: string }
  /** Precopy of a stream target ended a pass, its pages all in the stream (`bytes` so far): it
   * waits for `drained` before it counts the pages dirty and decides on the final pause. */
  | { type: "drain"; tag: string; bytes: number }
  /** A precopy pass is over (sent as each one ends). */
  | { type: "pass"; tag: string; pass: PrecopyPassReport }
  | { type: "closed" };

/** A snapshot the guest takes by itself when it reaches an instruction count. */
export interface ScheduledSnapshot {
  /** Retired instructions at which to take it. */
  at: number;
  mode: SnapshotMode;
  /** Copy buffer slots (pages) for `cow`. */
  slots: number;
  /** A diff on the machine's last snapshot. */
  incremental: boolean;
}

/** The boot message. Exactly one of `elf` and `restorePath`. */
export interface GuestBoot {
  elf?: Uint8Array;
  restorePath?: string;
  /** Instead of `restorePath`: the snapshot's bytes arrive on this port (port_stream.ts), e.g.
   * from a live migration's socket. */
  restoreStream?: MessagePort;
  /** Instead of a file or stream: a post-copy migration's destination (postcopy_pager.ts): the
   * device state now, every page absent until the host brings it in. */
  postcopy?: PostcopyBoot;
  /** For a diff at `restorePath`: parent files to use before the names it records. */
  restoreParents?: string[];
  /** RAM size for `elf`; a restore takes the file's. */
  ramSize?: number;
  /** Bytes the guest reads from its UART. */
  input?: Uint8Array;
  mailbox: SharedArrayBuffer;
  /** Where the guest sends the copy buffer's chunks: the writer holds the other end. */
  chunkPort: MessagePort;
  /** Stop (and report "stop-at") when this many instructions have retired. */
  stopAt: number | null;
  /** Instead of `stopAt`: stop once this many instructions have retired after the boot
   * (a restored snapshot's own count is known only once it is read). */
  runFor?: number | null;
  /** Taken in order; `at` must increase. */
  schedule: ScheduledSnapshot[];
  /** A snapshot at every multiple of `interval` retired instructions. */
  every: { interval: number; mode: SnapshotMode; slots: number; incremental: boolean } | null;
  /** Start paused (the host resumes it). */
  startPaused?: boolean;
  /** The deepest chain of diffs (default and at most format's `MAX_CHAIN_DEPTH`). */
  maxChainDepth?: number;
  /** Instructions per slice while no snapshot runs (default 200 000). */
  sliceInstructions?: number;
}

/** Why the guest stopped running for good (until restored elsewhere). */
export type HaltReason = ExitReason | { reason: "stop-at" };

/** What the guest thread reports. */
export type GuestEvent =
  | { type: "ready" }
  | {
    type: "booted";
    ram: SharedArrayBuffer;
    gate: SharedArrayBuffer;
    buffers: SessionBuffers;
    description: MachineDescription;
    retired: number;
    restoredDigest: string | null;
    /** For a restored QEMU snapshot: the fields ignored or approximated. */
    restoredNotes: { field: string; note: string }[];
    /** `epochMs()` on the guest thread as it booted, just before the guest's first slice. */
    bootedAt: number;
    /** The restored `.lsnap` as the parent of a diff (null: none). */
    parent: ParentTransfer | null;
  }
  | { type: "boot-failed"; name: string; message: string }
  | { type: "uart"; bytes: Uint8Array }
  /** Post-copy: the guest waits for page `page` (-1: for every page still absent). */
  | { type: "page-fault"; page: number }
  /** Post-copy: the machine is built (RAM, every page absent) and waits for its state. */
  | { type: "postcopy-ready"; ram: SharedArrayBuffer }
  | {
    type: "snapshot-started";
    tag: string;
    mode: SnapshotMode;
    slots: number;
    state: MachineState | null;
    atInstruction: number;
    startedAt: number;
  }
  | {
    type: "snapshot-final";
    tag: string;
    state: MachineState;
    atInstruction: number;
    /** When the guest stopped for the final pause, `epochMs()`. */
    pausedAt: number;
  }
  | {
    type: "snapshot-guest-done";
    tag: string;
    guest: GuestSideMetrics;
    /** The longest time the guest thread retired no instruction because of this snapshot. */
    pauseUs: number;
    /** The longest stretch of each kind (`pauseUs` is the largest of them). */
    pauseCauses: PauseCauses;
    instructionsDuring: number;
    cpuNs: number;
    runQueueNs: number;
  }
  | { type: "snapshot-refused"; tag: string; message: string }
  | { type: "halted"; halt: HaltReason; retired: number; state: MachineState }
  | {
    type: "reply";
    seq: number;
    status: GuestStatus;
    state?: MachineState;
    /** `epochMs()` on the guest thread as it replied (for a pause: when the guest stopped). */
    at?: number;
  }
  | { type: "quit" };

/** The guest's state as `status` reports it. */
export interface GuestStatus {
  /** `halted` is for good (`halt` says why); `paused` until a resume. */
  state: "running" | "paused" | "halted";
  /** Instructions retired since reset. */
  retired: number;
  /** Why the guest halted, or null while it can still run. */
  halt: HaltReason | null;
  /** The tag of the snapshot being taken (`ctl:N`, `at:N`, `every:N`), or null. */
  snapshotInProgress: string | null;
  /** The guest thread's time on a CPU since it started, nanoseconds (Linux; 0 where unknown). */
  cpuNs: number;
  /** In the reply to a resume of a paused guest: when its first instruction after the resume
   * ran, `epochMs()` (read on the guest thread right before that slice; the reply waits for it).
   * Absent where the guest did not run (halted, or no resume). */
  resumedAt?: number;
}
