/**
 * The messages between the host thread (live_machine.ts) and the writer thread
 * (writer_worker.ts), in one module that both import so that neither imports the other.
 *
 * @module
 */

import type { MachineDescription } from "../../format/header.ts";
import type { MachineState } from "../machine.ts";
import type { SessionBuffers } from "./session.ts";
import type { WriterSideMetrics } from "./writer_loop.ts";

/** Precopy's convergence policy (see `writer_loop.ts`); every field has a default. */
export interface PrecopyOptions {
  /** Passes after the first before the final pause whatever is dirty (default 20). */
  maxPasses?: number;
  /** Target downtime: pause once the dirty pages can be written in this time (default 50). */
  downtimeMs?: number;
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
  }
  /** Where the snapshot named `tag` goes (sent before the guest can take it), and precopy's
   * policy for it. */
  | { type: "path"; tag: string; path: string; precopy?: PrecopyOptions }
  /** The device state of snapshot `tag`. */
  | { type: "state"; tag: string; state: MachineState }
  /** Drops a path whose snapshot will not happen (removes its temporary file). */
  | { type: "drop"; tag: string }
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
  }
  | { type: "failed"; tag: string; message: string }
  | { type: "closed" };
