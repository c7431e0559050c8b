/**
 * A stand-in guest for the engine's tests: a Worker that stores into a RAM `SharedArrayBuffer`
 * through the same page gate and hook as the emulator, on every step, in a pseudo-random but
 * reproducible pattern (mostly a hot set of pages, sometimes anywhere). It takes a snapshot at
 * step `snapshotAt`, and at that instant also copies RAM for the test to compare against.
 *
 * @module
 */

import { GuestSnapshotSide, nowUs } from "./guest_side.ts";
import { GATE_HOOK, PAGE_SHIFT } from "./page_state.ts";
import type { SnapshotMode } from "./session.ts";

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
  const side = new GuestSnapshotSide(ram, gate);
  const pages = side.pageCount;
  let x = job.seed >>> 0 || 1;
  let steps = 0;
  const step = (n: number) => {
    for (let i = 0; i < n; i++) {
      x = nextRandom(x);
      const page = (x & 3) !== 0 ? (x >>> 8) % 32 : (x >>> 8) % pages;
      const addr = (page << PAGE_SHIFT) | ((x >>> 2) & 0xffc);
      // The emulator's hot path: one load and one test before the store; the slow path calls the
      // hook only for the engine's bit (another bit, the machine's, marks a watched page).
      if (gate[page] !== 0 && (Atomics.load(gate, page) & GATE_HOOK) !== 0) side.onStore(page);
      ram[addr] = (ram[addr] + 1 + (x & 0x7f)) & 0xff;
      ram[addr + 1] = steps & 0xff;
    }
    steps += n;
  };
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
    if (side.finalRequested()) {
      const f0 = nowUs();
      side.beginFinal();
      truth = ram.slice();
      finalAt = steps;
      port.postMessage({ type: "final", truth, steps });
      side.waitForFinalPages();
      pauseUs = nowUs() - f0;
    }
    step(job.slice);
    stepsDuring += job.slice;
  }
  const metrics = side.end();
  step(job.tail);
  port.postMessage({ type: "done", metrics, pauseUs, stepsDuring, finalAt, steps });
}

port.onmessage = (e) => {
  try {
    run(e.data);
  } catch (error) {
    port.postMessage({ type: "error", message: String(error) });
  }
};
