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
  /** How the snapshot was taken: `stop`, `cow` or `precopy`. */
  mode: SnapshotMode;
  /** The file written. */
  path: string;
  /** True for a diff (incremental snapshot) on `parentPath`. */
  incremental: boolean;
  /** For a diff: the path of its parent, the machine's previous snapshot; else null. */
  parentPath: string | null;
  /** 0 for a full snapshot; for a diff, its parent's depth + 1. */
  chainDepth: number;
  /** For a diff: the pages stored to between its parent's instant and its own request (its
   * frozen dirty set; precopy resends pages stored to after that as `pagesResent`); else 0. */
  pagesInDiff: number;
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
  /** How the snapshot went over time (`livesnap report --metrics` draws it). */
  timeline?: SnapshotTimeline;
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

/** Most samples a {@linkcode SnapshotTimeline} holds. */
export const MAX_TIMELINE_SAMPLES = 1024;

/** A time the guest did not run because of the snapshot. */
export interface TimelinePause {
  /** "instant" (cow: save devices, protect RAM), "stop" (the whole write), "final" (precopy's
   * final pause). */
  reason: "instant" | "stop" | "final";
  /** When the pause began, milliseconds since the snapshot started. */
  startMs: number;
  /** When the guest ran again, milliseconds since the snapshot started. */
  endMs: number;
}

/** One precopy pass. */
export interface TimelinePass {
  /** 0 is the first pass over all of RAM; later passes resend what the guest dirtied. */
  pass: number;
  /** When the pass began, milliseconds since the snapshot started. */
  startMs: number;
  /** When the pass ended, milliseconds since the snapshot started. */
  endMs: number;
  /** Pages this pass sent. */
  pagesSent: number;
  /** Pages the guest had dirtied again when the pass ended (what the next pass, or the final
   * pause, sends). */
  dirtyPages: number;
  /** The throttle on the guest during the pass: the share of wall time it slept, percent. */
  throttlePct: number;
}

/**
 * How a snapshot went over time: counters sampled by the writer thread at most every
 * `intervalMs` (never on the guest's store path), and the pauses and precopy passes. Times are
 * milliseconds since the snapshot started (the request; for precopy its first pass). The
 * sample columns are parallel arrays; there are at most {@linkcode MAX_TIMELINE_SAMPLES}
 * samples: when they are full, every other one is dropped and `intervalMs` doubles, so a
 * snapshot of any length keeps its whole span at a coarser step.
 */
export interface SnapshotTimeline {
  /** The step between samples at the end, milliseconds (doubled each time samples were thinned). */
  intervalMs: number;
  /** Sample times. */
  ms: number[];
  /** Pages the writer has saved so far: written to the file, or found zero and left out. */
  pagesWritten: number[];
  /** The most bytes the copy buffer held since the previous sample (cow; 0 otherwise). */
  bufferBytes: number[];
  /** The guest's stalls so far (waiting for a buffer slot or a page), microseconds. */
  guestStallUs: number[];
  /** Every time the guest did not run because of the snapshot, in order. */
  pauses: TimelinePause[];
  /** Precopy's passes in order (empty for `stop` and `cow`). */
  passes: TimelinePass[];
}

/** One sample's counters, as {@linkcode TimelineSampler.sample} takes them. */
export interface TimelineCounters {
  pagesWritten: number;
  bufferBytes: number;
  guestStallUs: number;
}

/**
 * Collects a {@linkcode SnapshotTimeline}: cheap to call often (it keeps a sample only when
 * `intervalMs` has passed, and the buffer's peak in between), bounded in memory.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { TimelineSampler } from "./metrics.ts";
 * const s = new TimelineSampler(0, { intervalMs: 1, maxSamples: 4 });
 * for (let t = 0; t <= 10; t++) {
 *   s.sample(t, { pagesWritten: t * 10, bufferBytes: t, guestStallUs: 0 });
 * }
 * const tl = s.finish(10, { pagesWritten: 100, bufferBytes: 0, guestStallUs: 0 });
 * assertEquals(tl.ms.at(-1), 10);
 * assertEquals(tl.ms.length <= 4, true);
 * ```
 */
export class TimelineSampler {
  private readonly t0: number;
  private intervalMs: number;
  private readonly max: number;
  private readonly cols: { [K in keyof TimelineCounters | "ms"]: number[] } = {
    ms: [],
    pagesWritten: [],
    bufferBytes: [],
    guestStallUs: [],
  };
  private nextMs: number;
  private peakBuffer = 0;
  private readonly pauses: TimelinePause[] = [];
  private readonly passes: TimelinePass[] = [];

  /** Starts a timeline at time `startMs` (a clock in milliseconds, e.g. `epochMs()`). */
  constructor(startMs: number, options: { intervalMs?: number; maxSamples?: number } = {}) {
    this.t0 = startMs;
    this.intervalMs = options.intervalMs ?? 2;
    this.max = Math.max(4, options.maxSamples ?? MAX_TIMELINE_SAMPLES);
    this.nextMs = 0;
  }

  /** Offers the counters at time `nowMs`; keeps them when the interval has passed. */
  sample(nowMs: number, c: TimelineCounters): void {
    if (c.bufferBytes > this.peakBuffer) this.peakBuffer = c.bufferBytes;
    const t = nowMs - this.t0;
    if (t < this.nextMs) return;
    this.keep(t, c);
  }

  private keep(t: number, c: TimelineCounters): void {
    const k = this.cols;
    if (k.ms.length === this.max) this.thin();
    k.ms.push(this.at(t + this.t0));
    k.pagesWritten.push(c.pagesWritten);
    k.bufferBytes.push(Math.max(this.peakBuffer, c.bufferBytes));
    k.guestStallUs.push(Math.round(c.guestStallUs));
    this.peakBuffer = 0;
    this.nextMs = t + this.intervalMs;
  }

  /** Drops every other sample (the later of each pair stays: the counters are running totals),
   * keeping the buffer's peak of the pair. */
  private thin(): void {
    const k = this.cols;
    const n = k.ms.length;
    let w = 0;
    for (let i = (n + 1) % 2; i < n; i += 2) {
      const peak = i > 0 ? Math.max(k.bufferBytes[i - 1], k.bufferBytes[i]) : k.bufferBytes[i];
      for (const key of Object.keys(k) as (keyof typeof k)[]) k[key][w] = k[key][i];
      k.bufferBytes[w] = peak;
      w++;
    }
    for (const key of Object.keys(k) as (keyof typeof k)[]) k[key].length = w;
    this.intervalMs *= 2;
  }

  /** A time on the sampler's clock as milliseconds since the start, to the microsecond. */
  private at(ms: number): number {
    return Math.round((ms - this.t0) * 1000) / 1000;
  }

  /** Records a pause of the guest between two times on the sampler's clock. */
  pause(reason: TimelinePause["reason"], startMs: number, endMs: number): void {
    this.pauses.push({ reason, startMs: this.at(startMs), endMs: this.at(endMs) });
  }

  /** Records a precopy pass between two times on the sampler's clock. */
  pass(p: Omit<TimelinePass, "startMs" | "endMs">, startMs: number, endMs: number): void {
    this.passes.push({ ...p, startMs: this.at(startMs), endMs: this.at(endMs) });
  }

  /** Takes a last sample at `nowMs` and returns the timeline. */
  finish(nowMs: number, c: TimelineCounters): SnapshotTimeline {
    const t = nowMs - this.t0;
    if (this.cols.ms.length === 0 || this.cols.ms[this.cols.ms.length - 1] < t) this.keep(t, c);
    return {
      intervalMs: this.intervalMs,
      ...this.cols,
      pauses: this.pauses,
      passes: this.passes,
    };
  }
}

/**
 * The timeline with every time moved by `shiftMs` (a writer's timeline starts when the writer
 * starts; the snapshot's starts at the request).
 */
export function shiftTimeline(t: SnapshotTimeline, shiftMs: number): SnapshotTimeline {
  const at = (ms: number) => Math.round((ms + shiftMs) * 1000) / 1000;
  return {
    ...t,
    ms: t.ms.map(at),
    pauses: t.pauses.map((p) => ({ ...p, startMs: at(p.startMs), endMs: at(p.endMs) })),
    passes: t.passes.map((p) => ({ ...p, startMs: at(p.startMs), endMs: at(p.endMs) })),
  };
}
