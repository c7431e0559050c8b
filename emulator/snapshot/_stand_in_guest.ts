/**
 * A stand-in guest for the engine's tests: a Worker that stores into a RAM `SharedArrayBuffer`
 * through the same page gate and hook as the emulator, on every step, in a pseudo-random but
 * reproducible pattern (mostly a hot set of pages, sometimes anywhere). It takes a snapshot at
 * step `snapshotAt`, and at that instant also copies RAM for the test to compare against.
 *
 * @module
 */

import { GuestSnapshotSide, nowUs } from "./guest_side.ts";
import { GATE_MACHINE_BITS, PAGE_SHIFT } from "./page_state.ts";
import { CTRL_QUEUE_TAIL, type SnapshotMode } from "./session.ts";

/** The test's order to the stand-in guest. */
export interface StandInJob {
  ram: SharedArrayBuffer;
  gate: SharedArrayBuffer;
  mode: SnapshotMode;
  slotCount: number;
  seed: number;
  /** Steps (one store each) before the snapshot instant. */
  snapshotAt: number;
  /** Steps between checks for precopy requests and the writer's end. */
  slice: number;
  /** Steps to run after the writer has finished. */
  tail: number;
  /** The engine's generation before the snapshot (default 0). */
  generation?: number;
  /** Shared counters the test's sink keeps (see engine_test.ts): word 0, pages from the buffer
   * whose records the sink has written. After every store the guest checks that the pages it
   * has queued minus those never exceeds the slot count. */
  sinkCounters?: SharedArrayBuffer;
  /** Instead of one snapshot: a chain of them, `snapshotAt` steps apart (the first after
   * `snapshotAt` steps too), each full or a diff on the one before. Each posts "started" (with
   * `stored`, the pages stored to since the previous instant, and its truth then unless it is a
   * precopy), "final" for a precopy, then "done". */
  chain?: { mode: SnapshotMode; slotCount: number; diff: boolean }[];
  /** One store in this many zeroes a whole page (default: none). */
  zeroEvery?: number;
}

/** This Worker's side of its message port (typed here: the module is checked with the window lib). */
const port = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<StandInJob>) => void) | null;
};

/** xorshift32. */
function nextRandom(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}

function run(job: StandInJob): void {
  const ram = new Uint8Array(job.ram);
  const gate = new Int32Array(job.gate);
  const side = new GuestSnapshotSide({
    ram,
    gate,
    sendChunk: (message) => port.postMessage(message),
    generation: job.generation,
  });
  const pages = side.pageCount;
  const sink = job.sinkCounters === undefined ? null : new Int32Array(job.sinkCounters);
  let worstInFlight = 0;
  let x = job.seed >>> 0 || 1;
  let steps = 0;
  const stored = new Set<number>();
  const step = (n: number) => {
    for (let i = 0; i < n; i++) {
      x = nextRandom(x);
      const page = (x & 3) !== 0 ? (x >>> 8) % 32 : (x >>> 8) % pages;
      stored.add(page);
      const addr = (page << PAGE_SHIFT) | ((x >>> 2) & 0xffc);
      // The emulator's hot path: one load and one test before the store; the slow path calls the
      // hook only for the engine's bits (another bit, the machine's, marks a watched page).
      const open = side.gateOpen;
      if (gate[page] !== open && (Atomics.load(gate, page) & ~GATE_MACHINE_BITS) !== open) {
        side.onStore(page);
        const s = side.session;
        if (sink !== null && s !== null) {
          // Pages copied aside and not yet in the file, counted from the two ends: the queue
          // the guest fills, the records the sink has written.
          const inFlight = Atomics.load(s.ctrl, CTRL_QUEUE_TAIL) - Atomics.load(sink, 0);
          worstInFlight = Math.max(worstInFlight, inFlight);
        }
      }
      if (job.zeroEvery !== undefined && x % job.zeroEvery === 0) {
        ram.fill(0, page << PAGE_SHIFT, (page + 1) << PAGE_SHIFT);
        continue;
      }
      ram[addr] = (ram[addr] + 1 + (x & 0x7f)) & 0xff;
      ram[addr + 1] = steps & 0xff;
    }
    steps += n;
  };
  if (job.chain !== undefined) {
    runChain(job, side, step, stored);
    return;
  }
  step(job.snapshotAt);
  const t0 = nowUs();
  side.begin(job.mode, job.slotCount);
  const buffers = side.buffers;
  let truth: Uint8Array | null = job.mode === "precopy" ? null : ram.slice();
  port.postMessage({ type: "started", buffers, truth, steps });
  let pauseUs = nowUs() - t0;
  if (job.mode === "stop") {
    side.waitForWriter();
    pauseUs = nowUs() - t0;
  }
  let stepsDuring = 0;
  let finalAt = -1;
  while (!side.writerFinished()) {
    side.servicePass();
    side.serviceChunks();
    if (side.finalRequested()) {
      const f0 = nowUs();
      side.beginFinal();
      truth = ram.slice();
      finalAt = steps;
      port.postMessage({ type: "final", truth, steps });
      side.waitForFinalPages();
      pauseUs = nowUs() - f0;
    }
    if (side.payThrottle(5000)) continue;
    const s0 = nowUs();
    step(job.slice);
    side.chargeSlice(nowUs() - s0);
    stepsDuring += job.slice;
  }
  const metrics = side.end();
  step(job.tail);
  port.postMessage({
    type: "done",
    metrics,
    pauseUs,
    stepsDuring,
    finalAt,
    steps,
    worstInFlight,
    gateOpen: side.gateOpen,
  });
}

/** Takes the snapshots of `job.chain` one after the other (see {@linkcode StandInJob.chain}). */
function runChain(
  job: StandInJob,
  side: GuestSnapshotSide,
  step: (n: number) => void,
  stored: Set<number>,
): void {
  const ram = side.ram;
  for (const [k, link] of job.chain!.entries()) {
    step(job.snapshotAt);
    side.begin(link.mode, link.slotCount, 0, k, link.diff);
    let instantStored: number[] | null = null;
    if (link.mode !== "precopy") {
      instantStored = [...stored];
      stored.clear();
    }
    port.postMessage({
      type: "started",
      buffers: side.buffers,
      truth: link.mode === "precopy" ? null : ram.slice(),
      stored: instantStored,
    });
    if (link.mode === "stop") side.waitForWriter();
    while (!side.writerFinished()) {
      side.servicePass();
      side.serviceChunks();
      if (side.finalRequested()) {
        side.beginFinal();
        const truth = ram.slice();
        port.postMessage({ type: "final", truth, stored: [...stored] });
        stored.clear();
        side.waitForFinalPages();
      }
      if (side.payThrottle(5000)) continue;
      step(job.slice);
    }
    const metrics = side.end();
    port.postMessage({ type: "done", metrics, gateOpen: side.gateOpen });
  }
}

port.onmessage = (e) => {
  try {
    run(e.data);
  } catch (error) {
    port.postMessage({ type: "error", message: String(error) });
  }
};
