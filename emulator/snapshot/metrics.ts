/**
 * The metrics of one snapshot, as JSON (`--metrics FILE`, the control socket's reply).
 *
 * @module
 */

import type { SnapshotMode } from "./session.ts";

/** What one snapshot cost and what the guest did meanwhile. */
export interface SnapshotMetrics {
  mode: SnapshotMode;
  /** The file written. */
  path: string;
  /** Retired instructions at the point in time the file holds (precopy: its final pause). */
  atInstruction: number;
  /** The longest time the guest did not run because of this snapshot, microseconds. For `cow`
   * the instant (save devices, protect RAM); for `stop` the whole write; for `precopy` the
   * final pause. Stalls on a full buffer are counted in `guestStallUs`, not here. */
  pauseUs: number;
  /** From the snapshot instant (precopy: its start) to the file being complete, milliseconds. */
  totalMs: number;
  /** Size of the file. */
  bytesWritten: number;
  /** Pages of RAM. */
  pagesTotal: number;
  /** Pages found all zero and left out (absent reads as zero). */
  pagesZero: number;
  /** Pages the guest copied into the buffer before storing to them (cow). */
  pagesViaBuffer: number;
  /** Pages the writer read straight from RAM: the sweep, a first pass, or a page the guest
   * waited on (counted in `pagesOnRequest` too). */
  pagesViaSweep: number;
  /** Pages served at once because the guest waited on them with the buffer full (cow). */
  pagesOnRequest: number;
  /** Pages written again because the guest dirtied them (precopy). */
  pagesResent: number;
  /** Precopy passes after the first, the final one included. */
  precopyPasses: number;
  /** The copy buffer's size in bytes (cow). */
  cowBufferBytes: number;
  /** Most bytes held in the copy buffer at once. */
  bufferPeakBytes: number;
  /** Instructions the guest retired between the snapshot's start and its file being written. */
  guestInstructionsDuring: number;
  /** Time the guest waited for a buffer slot or a page, microseconds (cow). */
  guestStallUs: number;
  /** The guest thread's time on a CPU while the snapshot was written, milliseconds (Linux; 0
   * where unknown). With `guestStallUs`, it tells the engine's own cost from other jobs'. */
  guestCpuMs: number;
  /** The guest thread's time runnable but waiting for a CPU meanwhile (other threads and other
   * processes had the cores), milliseconds (Linux; 0 where unknown). */
  guestRunQueueMs: number;
  /** The file's content digest, lowercase hex. */
  contentDigest: string;
  /** The process's resident memory just before the snapshot, from the OS (0 if unknown). */
  rssBeforeBytes: number;
  /** The process's peak resident memory during the snapshot, from the OS (0 if unknown). */
  rssPeakBytes: number;
}

/** Reads the process's current and peak resident set from /proc/self/status (Linux), in bytes;
 * zeros where that file does not exist. */
export function readProcessMemory(): { rss: number; peak: number } {
  try {
    const text = Deno.readTextFileSync("/proc/self/status");
    const kb = (key: string) => {
      const m = text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
      return m === null ? 0 : Number(m[1]) * 1024;
    };
    return { rss: kb("VmRSS"), peak: kb("VmHWM") };
  } catch {
    return { rss: 0, peak: 0 };
  }
}

/** Resets the peak resident set (VmHWM) to the current one, so that the peak of one snapshot can
 * be read afterwards (Linux `/proc/self/clear_refs`, value 5). False where unsupported. */
export function resetPeakMemory(): boolean {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

/** Wall-clock milliseconds comparable across threads (each Worker has its own timeOrigin). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * The calling thread's time on a CPU and time spent runnable but waiting for one, in
 * nanoseconds since it started (Linux `/proc/thread-self/schedstat`); null where unavailable.
 * On a machine shared with other jobs, the second says how much of a slowdown was theirs.
 */
export function readThreadCpu(): { runNs: number; waitNs: number } | null {
  try {
    const [run, wait] = Deno.readTextFileSync("/proc/thread-self/schedstat").trim().split(/\s+/);
    return { runNs: Number(run), waitNs: Number(wait) };
  } catch {
    return null;
  }
}
