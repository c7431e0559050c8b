/**
 * The guest thread of `bench/live_pause_bench.ts --what engine`: a Worker that runs the live
 * engine's guest side (`GuestSnapshotSide`, the same code the emulator's guest thread runs) over
 * a RAM of any size, storing at random into a small hot set through the emulator's hot path (one
 * load, one test), and takes `cow` snapshots. It times, as the emulator's guest thread does, the
 * longest stretch in which it made no store because of each snapshot: the instant, the gaps
 * between its slices, the longest call of the store hook and the end.
 *
 * It exists because the emulated machine (RV32, RAM from 0x8000_0000 to the top of the 32-bit
 * address space) cannot have more than 2 GiB of RAM, and the engine's instant must be measured at
 * 8 GiB too. The instant's work does not depend on what runs the stores.
 *
 * @module
 */

import { GuestSnapshotSide, nowUs } from "../emulator/snapshot/guest_side.ts";
import { GATE_MACHINE_BITS, PAGE_SIZE } from "../emulator/snapshot/page_state.ts";
import type { SessionBuffers } from "../emulator/snapshot/session.ts";
import { abandonSession } from "../emulator/snapshot/writer_loop.ts";

/** What the host asks for. */
export interface PauseGuestJob {
  ram: SharedArrayBuffer;
  gate: SharedArrayBuffer;
  /** Pages the guest stores into (the first ones of RAM). */
  hotPages: number;
  /** Snapshots to take. */
  snapshots: number;
  /** Copy buffer slots. */
  slots: number;
  /** Milliseconds of stores between the end of one snapshot and the next instant. */
  gapMs: number;
  /** Stores per slice (the emulator runs 20 000 instructions per slice during a snapshot). */
  sliceStores: number;
  /** Then this many more instants, one slice apart, whose snapshots are abandoned at once (no
   * writer runs): many samples of the instant alone, cheaply, at any RAM size. */
  instants: number;
}

/** The instant alone at several RAM sizes in one process, interleaved: round after round, for
 * each size, a slice of stores then one instant whose snapshot is abandoned at once (no writer
 * runs, so RAM is never read: 8 GiB costs address space only). The sizes see the same machine
 * at the same moments, which a shared machine's drifting load does not give separate runs. */
export interface InterleavedInstantsJob {
  kind: "interleaved";
  /** RAM sizes in bytes. */
  sizes: number[];
  rounds: number;
  hotPages: number;
  slots: number;
  sliceStores: number;
}

/** One snapshot, as the guest saw it (microseconds). */
export interface PauseGuestSample {
  /** `begin()`: the instant itself. */
  instantUs: number;
  /** From the last store before the instant to the first after it. */
  aroundInstantUs: number;
  /** The longest gap between two slices while the snapshot ran (the instant's included). */
  betweenSlicesUs: number;
  /** The longest call of the store hook. */
  storeHookUs: number;
  /** From the last store before the end to the first after it (its collection included). */
  endUs: number;
  /** The end's garbage collection. */
  gcUs: number;
  /** The longest of the above: the snapshot's pause. */
  pauseUs: number;
  /** Pages the guest copied aside. */
  pagesViaBuffer: number;
  /** The snapshot's duration, milliseconds. */
  totalMs: number;
}

/** Messages to the host. */
export type PauseGuestEvent =
  | { type: "ready"; buffers: SessionBuffers }
  | { type: "started"; index: number }
  | { type: "done"; samples: PauseGuestSample[]; instantsUs: number[] }
  | { type: "interleaved"; instantsUs: number[][] }
  | { type: "error"; message: string };

const port = globalThis as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<PauseGuestJob | InterleavedInstantsJob>) => void) | null;
};

function interleaved(job: InterleavedInstantsJob): void {
  const machines = job.sizes.map((size) => {
    const ram = new Uint8Array(new SharedArrayBuffer(size));
    const gate = new Int32Array(new SharedArrayBuffer((size / PAGE_SIZE) * 4));
    const side = new GuestSnapshotSide({ ram, gate, sendChunk: () => {} });
    return { words: new Int32Array(ram.buffer), gate, side };
  });
  let x = 0x2545_f491;
  const instantsUs: number[][] = job.sizes.map(() => []);
  for (let round = 0; round < job.rounds; round++) {
    for (let k = 0; k < machines.length; k++) {
      const { words, gate, side } = machines[k];
      const open = side.gateOpen;
      for (let i = 0; i < job.sliceStores; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        const page = (x >>> 0) % job.hotPages;
        if (gate[page] !== open && (Atomics.load(gate, page) & ~GATE_MACHINE_BITS) !== open) {
          side.onStore(page);
        }
        words[page * (PAGE_SIZE >> 2) + ((x >>> 12) & 1023)] = x;
      }
      const t0 = nowUs();
      side.begin("cow", Math.min(job.slots, side.pageCount));
      instantsUs[k].push(nowUs() - t0);
      abandonSession(side.buffers);
      side.end();
    }
  }
  port.postMessage({ type: "interleaved", instantsUs } satisfies PauseGuestEvent);
}

function run(job: PauseGuestJob): void {
  const ram = new Uint8Array(job.ram);
  const words = new Int32Array(job.ram);
  const gate = new Int32Array(job.gate);
  const side = new GuestSnapshotSide({
    ram,
    gate,
    sendChunk: (message) => port.postMessage(message),
  });
  let x = 0x2545_f491;
  const slice = () => {
    const open = side.gateOpen;
    for (let i = 0; i < job.sliceStores; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const page = (x >>> 0) % job.hotPages;
      if (gate[page] !== open && (Atomics.load(gate, page) & ~GATE_MACHINE_BITS) !== open) {
        side.onStore(page);
      }
      words[page * (PAGE_SIZE >> 2) + ((x >>> 12) & 1023)] = x;
    }
  };
  // The hot set holds data before the first snapshot (as a guest's working set does).
  for (let p = 0; p < job.hotPages; p++) words[p * (PAGE_SIZE >> 2)] = p + 1;
  port.postMessage({ type: "ready", buffers: side.buffers } satisfies PauseGuestEvent);
  const samples: PauseGuestSample[] = [];
  let lastEnd = nowUs();
  for (let k = 0; k < job.snapshots; k++) {
    const until = nowUs() + job.gapMs * 1000;
    while (nowUs() < until) {
      slice();
      lastEnd = nowUs();
    }
    const t0 = nowUs();
    side.begin("cow", Math.min(job.slots, side.pageCount));
    const instantUs = nowUs() - t0;
    side.ringWriter();
    port.postMessage({ type: "started", index: k } satisfies PauseGuestEvent);
    let between = 0;
    let around = -1;
    while (!side.writerFinished()) {
      side.serviceChunks();
      const s0 = nowUs();
      between = Math.max(between, s0 - lastEnd);
      if (around < 0) around = s0 - lastEnd;
      slice();
      lastEnd = nowUs();
    }
    const e0 = nowUs();
    const metrics = side.end();
    if (metrics.gcUs > 0) side.warmUp();
    // The next slice starts now: the end's stretch runs from the last store before it.
    const endUs = nowUs() - lastEnd;
    samples.push({
      instantUs,
      aroundInstantUs: around,
      betweenSlicesUs: between,
      storeHookUs: metrics.storeHookMaxUs,
      endUs,
      gcUs: metrics.gcUs,
      pauseUs: Math.max(around, between, metrics.storeHookMaxUs, endUs),
      pagesViaBuffer: metrics.pagesViaBuffer,
      totalMs: (e0 - t0) / 1000,
    });
  }
  const instantsUs: number[] = [];
  for (let k = 0; k < job.instants; k++) {
    slice();
    const t0 = nowUs();
    side.begin("cow", Math.min(job.slots, side.pageCount));
    instantsUs.push(nowUs() - t0);
    abandonSession(side.buffers);
    side.end();
  }
  port.postMessage({ type: "done", samples, instantsUs } satisfies PauseGuestEvent);
}

port.onmessage = (e) => {
  try {
    const job = e.data;
    if ("kind" in job) interleaved(job);
    else run(job);
  } catch (error) {
    port.postMessage({ type: "error", message: String(error) } satisfies PauseGuestEvent);
  }
};
