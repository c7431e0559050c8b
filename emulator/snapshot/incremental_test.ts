/**
 * Incremental snapshots at the engine's level: a stand-in guest (`_stand_in_guest.ts`) takes a
 * chain of snapshots, a full one then diffs, in each mode, while it keeps storing (and zeroing
 * whole pages). The test's sink applies each link's pages onto the state the chain held so far;
 * after every link that state must be RAM at the link's instant, and a `cow` or `stop` diff must
 * hold exactly the pages stored to since the previous instant: none lost, none extra.
 */
import { assert, assertEquals } from "@std/assert/mod.js";
import { PAGE_SIZE } from "./page_state.ts";
import { type PageToWrite, SnapshotWriterLoop } from "./writer_loop.ts";
import type { SessionBuffers, SnapshotMode } from "./session.ts";
import type { StandInJob } from "./_stand_in_guest.ts";
import { type SlotChunkMessage, SlotChunks } from "./slot_chunks.ts";

const PAGES = 512;
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

interface Link {
  mode: SnapshotMode;
  slotCount: number;
  diff: boolean;
  /** The sink throws on this link: its file never completes. */
  fail?: boolean;
}

interface LinkOutcome {
  /** Pages handed to the sink, each time. */
  written: number[];
  /** Pages the guest stored to since the previous instant (the link's own instant). */
  stored: number[];
  truth: Uint8Array;
  failed: boolean;
  diffPages: number;
}

/** Runs the chain; returns each link's outcome and the state each completed link left. */
async function runChain(links: Link[], zeroEvery?: number): Promise<LinkOutcome[]> {
  const ram = new Uint8Array(new SharedArrayBuffer(PAGES * PAGE_SIZE));
  for (let p = 0; p < PAGES; p++) {
    if (p % 5 !== 0) ram.fill(p & 0xff, p * PAGE_SIZE, p * PAGE_SIZE + 64);
  }
  const gate = new Int32Array(new SharedArrayBuffer(PAGES * 4));
  const worker = new Worker(new URL("./_stand_in_guest.ts", import.meta.url), { type: "module" });
  const queue: MessageEvent[] = [];
  const early: SlotChunkMessage[] = [];
  let table: SlotChunks | null = null;
  let wake: (() => void) | null = null;
  worker.onmessage = (e) => {
    if (e.data.type === "slot-chunk") {
      if (table === null) early.push(e.data);
      else table.receive(e.data);
      return;
    }
    queue.push(e);
    wake?.();
  };
  const next = async (type: string) => {
    for (;;) {
      const i = queue.findIndex((e) => e.data.type === type || e.data.type === "error");
      if (i >= 0) {
        const [e] = queue.splice(i, 1);
        if (e.data.type === "error") throw new Error(e.data.message);
        return e.data;
      }
      // Bounded: a guest that never answers fails the test instead of hanging it.
      const timer = setTimeout(() => wake?.(), 60_000);
      const before = queue.length;
      await new Promise<void>((r) => wake = r);
      clearTimeout(timer);
      if (queue.length === before) throw new Error(`no "${type}" from the stand-in guest in 60 s`);
    }
  };
  const job: StandInJob = {
    ram: ram.buffer as SharedArrayBuffer,
    gate: gate.buffer as SharedArrayBuffer,
    mode: "cow",
    slotCount: 0,
    seed: 4242,
    // About 150 stores anywhere between two links: each diff holds part of RAM, and the guest
    // stores to pages outside it while it is written.
    snapshotAt: 600,
    slice: 64,
    tail: 0,
    chain: links.map(({ mode, slotCount, diff }) => ({ mode, slotCount, diff })),
    zeroEvery,
  };
  const out: LinkOutcome[] = [];
  try {
    worker.postMessage(job);
    for (const link of links) {
      const started = await next("started");
      const buffers: SessionBuffers = started.buffers;
      if (table === null) {
        table = new SlotChunks(buffers.chunks);
        for (const m of early) table.receive(m);
      }
      const written: number[] = [];
      // The link's pages go onto the state of the last completed link (a full one onto none).
      const state = link.diff ? new Map(completed) : new Map<number, Uint8Array>();
      const loop = new SnapshotWriterLoop(
        buffers,
        ram,
        gate,
        {
          writePages(pages: PageToWrite[]) {
            if (link.fail) throw new Error("the disk is full");
            // A slow disk, so that the guest stores while the link is written (precopy: the
            // passes resend what it stores, which takes long enough).
            if (link.mode !== "precopy") Atomics.wait(SLEEPER, 0, 0, 1);
            for (const p of pages) {
              written.push(p.index);
              state.set(p.index, p.data.slice());
            }
          },
        },
        table,
        { batchPages: 4, precopyTargetPages: 8 },
      );
      let failed = false;
      let diffPages = -1;
      try {
        diffPages = (await loop.run()).diffPages;
      } catch {
        failed = true;
      }
      let truth: Uint8Array = started.truth;
      let stored: number[] = started.stored;
      if (link.mode === "precopy") {
        const final = await next("final");
        truth = final.truth;
        stored = final.stored;
      }
      await next("done");
      if (!failed) completed = state;
      out.push({ written, stored, truth, failed, diffPages });
      if (!failed) {
        const zero = new Uint8Array(PAGE_SIZE);
        for (let p = 0; p < PAGES; p++) {
          const want = truth.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
          const got = state.get(p) ?? zero;
          assert(
            got.every((b, i) => b === want[i]),
            `link ${out.length - 1} (${link.mode}${link.diff ? " diff" : ""}): page ${p} is not ` +
              `the page at the instant`,
          );
        }
      }
    }
    return out;
  } finally {
    worker.terminate();
  }
}
let completed = new Map<number, Uint8Array>();

function sorted(xs: Iterable<number>): number[] {
  return [...new Set(xs)].sort((a, b) => a - b);
}

for (
  const [mode, slotCount] of [["cow", 16], ["cow", 0], ["stop", 0], ["precopy", 0]] as const
) {
  Deno.test(`SnapshotWriterLoop ${mode}${mode === "cow" ? ` (${slotCount} slots)` : ""} diffs: a chain of 10 holds every instant, each diff exactly the pages stored to since the one before`, async () => {
    completed = new Map();
    const links: Link[] = [{ mode, slotCount, diff: false }];
    for (let i = 0; i < 10; i++) links.push({ mode, slotCount, diff: true });
    // One store in 97 zeroes its page: diffs carry pages that became zero.
    const out = await runChain(links, 97);
    for (const [i, o] of out.entries()) {
      const what = `link ${i}`;
      assert(!o.failed, `${what} failed`);
      const stored = sorted(o.stored);
      if (i === 0) {
        assertEquals(o.diffPages, -1);
        if (mode !== "precopy") assertEquals(sorted(o.written).length, PAGES, what);
        continue;
      }
      if (mode === "precopy") {
        // Its frozen set ends at the first pass, its instant at the final pause.
        assert(o.diffPages <= stored.length, `${what}: ${o.diffPages} pages in the frozen set`);
        // Precopy resends pages stored to during its passes; it holds at least the others.
        const written = new Set(o.written);
        for (const p of stored) assert(written.has(p), `${what}: page ${p} is missing`);
      } else {
        assertEquals(o.diffPages, stored.length, `${what}: the frozen set`);
        assertEquals(sorted(o.written), stored, `${what}: not the pages stored to since`);
        assertEquals(o.written.length, stored.length, `${what}: a page written twice`);
      }
    }
  });
}

Deno.test("SnapshotWriterLoop diffs: a link that fails gives its pages to the next diff", async () => {
  completed = new Map();
  const links: Link[] = [
    { mode: "cow", slotCount: 8, diff: false },
    { mode: "cow", slotCount: 8, diff: true },
    { mode: "cow", slotCount: 8, diff: true, fail: true },
    { mode: "stop", slotCount: 0, diff: true, fail: true },
    { mode: "cow", slotCount: 8, diff: true },
    { mode: "precopy", slotCount: 0, diff: true },
  ];
  const out = await runChain(links);
  assert(out[2].failed && out[3].failed);
  // The diff after the failed ones is on link 1: it holds their pages too (runChain checked
  // its state against RAM at its instant).
  const needed = sorted([...out[2].stored, ...out[3].stored, ...out[4].stored]);
  assertEquals(sorted(out[4].written), needed);
  assertEquals(out[4].diffPages, needed.length);
});
