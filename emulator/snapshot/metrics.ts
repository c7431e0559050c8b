/**
 * The metrics of one snapshot, as JSON (`--metrics FILE`, the control socket's reply).
 *
 * @module
 */

import type { SnapshotMode } from "./session.ts";

/**
 * The longest stretch of guest-thread time without a retired instruction, by what the thread was
 * doing for the snapshot meanwhile, in microseconds (0: none of that kind). Stretches overlap:
 * the instant, precopy's final pause and its throttle's sleeps happen between two slices of
 * instructions, so `betweenSlicesUs` (the whole gap, as the guest saw it) is at least each of
 * them; `gcUs` is part of `endUs`; the waits are part of `storeHookUs`.
 */
export interface PauseCauses {
  /** The instant itself: save the CPU and devices, move RAM to a new generation (page_state.ts). */
  instantUs: number;
  /** The longest gap between two slices of instructions while the snapshot ran, the gap around
   * the instant included (the mailbox, the copy buffer's chunks, a scheduled snapshot waiting
   * for this one, precopy's throttle and final pause). */
  betweenSlicesUs: number;
  /** The end: from the last instruction before it to the guest's next, its garbage collection
   * included. */
  endUs: number;
  /** The full garbage collection that gives the copy buffer's memory back, and warming the
   * instant's code up after it (slot_chunks.ts); 0 when it did not run. */
  gcUs: number;
  /** The longest single call of the store hook: one page copied aside (with any page fault and
   * chunk allocation in it), or a wait. */
  storeHookUs: number;
  /** The longest single wait for a free slot (cow; with buffer 0, for the page's record). */
  slotWaitUs: number;
  /** The longest single wait for a page the writer was copying (cow). */
  pageWaitUs: number;
  /** The longest single sleep of precopy's auto-converge throttle. */
  throttleUs: number;
  /** Precopy's final pause: the last dirty pages written while the guest waits. */
  finalPauseUs: number;
}

/** What one snapshot cost and what the guest did meanwhile. */
export interface SnapshotMetrics {
  mode: SnapshotMode;
  /** The file written. */
  path: string;
  /** Retired instructions at the point in time the file holds (precopy: its final pause). */
  atInstruction: number;
  /** The longest time the guest thread retired no instruction because of this snapshot,
   * microseconds, whatever the cause: for `stop` the whole write; for `cow` the longest of the
   * instant, a wait for a slot or a page, a copy aside and the end with its garbage collection;
   * for `precopy` the longest of the final pause and a throttle's sleep. `pauseCauses` says
   * which. */
  pauseUs: number;
  /** The longest stretch of each kind behind `pauseUs`. */
  pauseCauses: PauseCauses;
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
  /** Of those, copies into buffer memory no thread had written yet: the guest paid the page
   * fault (the writer faults slots in ahead of it when it can). */
  pagesCopiedCold: number;
  /** Pages the writer read straight from RAM: the sweep, a first pass, or a page the guest
   * waited on (counted in `pagesOnRequest` too). */
  pagesViaSweep: number;
  /** Pages served at once because the guest waited on them with the buffer full (cow). */
  pagesOnRequest: number;
  /** Pages written again because the guest dirtied them (precopy). */
  pagesResent: number;
  /** Precopy passes after the first, the final one included. */
  precopyPasses: number;
  /** Pages written during precopy's final pause (counted in `pagesResent` too). */
  pagesInFinalPause: number;
  /** The highest throttle precopy's auto-converge put on the guest: the share of wall time it
   * slept, percent (0: never throttled). */
  precopyThrottlePct: number;
  /** Time the guest slept because precopy throttled it, milliseconds. */
  guestThrottleMs: number;
  /** Time the writer slept to leave a core to the guest, which was waiting for one (cow; see
   * writer_loop.ts), milliseconds. */
  writerYieldMs: number;
  /** The guest thread's full garbage collection that gives the copy buffer's memory back when
   * the snapshot ends, milliseconds: the guest does not run meanwhile. 0 unless the process runs
   * with `--v8-flags=--expose-gc` (the `livesnap` task does; see slot_chunks.ts). */
  guestGcMs: number;
  /** The copy buffer's size in bytes (cow). */
  cowBufferBytes: number;
  /** Most bytes held in the copy buffer at once. */
  bufferPeakBytes: number;
  /** Instructions the guest retired between the snapshot's start and its file being written. */
  guestInstructionsDuring: number;
  /** Time the guest waited for a buffer slot or a page, microseconds (cow). */
  guestStallUs: number;
  /** Time the guest thread spent in the engine's store hook, milliseconds (cow): copying pages
   * aside, with the page faults of fresh buffer memory, and the waits of `guestStallUs`. */
  guestHookMs: number;
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
 * The calling thread's (or thread `thread`'s, an id from {@linkcode readThreadId}) time on a
 * CPU and time spent runnable but waiting for one, in nanoseconds since it started (Linux
 * `/proc/thread-self/schedstat`); null where unavailable.
 * On a machine shared with other jobs, the second says how much of a slowdown was theirs.
 */
export function readThreadCpu(thread = 0): { runNs: number; waitNs: number } | null {
  try {
    const path = thread === 0
      ? "/proc/thread-self/schedstat"
      : `/proc/self/task/${thread}/schedstat`;
    const [run, wait] = Deno.readTextFileSync(path).trim().split(/\s+/);
    return { runNs: Number(run), waitNs: Number(wait) };
  } catch {
    return null;
  }
}

/** The calling thread's id in this process (Linux, from `/proc/thread-self`), for
 * {@linkcode readThreadCpu} on another thread; 0 where unknown. */
export function readThreadId(): number {
  try {
    const id = Number(Deno.readLinkSync("/proc/thread-self").split("/").at(-1));
    return Number.isInteger(id) && id > 0 ? id : 0;
  } catch {
    return 0;
  }
}
