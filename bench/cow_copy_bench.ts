/**
 * What a `cow` snapshot's copies aside cost the guest thread, with the copy buffer's chunks as
 * huge pages (the default where pages can be discarded) against plain 4 KiB pages, in one process
 * with the two interleaved round by round. No writer runs: the guest side (`GuestSnapshotSide`)
 * takes a snapshot with a buffer as large as RAM (`--cow-buffer max`) and stores once into every
 * page of RAM in a random order, so every store copies its page into a slot never used before:
 * the first-snapshot case of a guest storing all over RAM, where the buffer's memory is new to
 * the process. Then, as the writer does at a snapshot's end, the chunks' pages are discarded and
 * kept, and a second snapshot stores into every page again: the case of a process's next
 * snapshot.
 *
 * Reported per variant and case: the guest thread's CPU time (user + system, from
 * `/proc/thread-self/schedstat`) and wall time per page copied, median and range over rounds, and
 * the ratio huge / plain of the medians. CPU time is the figure a shared machine moves least.
 *
 *   deno run -A --v8-flags=--expose-gc bench/cow_copy_bench.ts [--ram 256M] [--rounds 5]
 *
 * Needs Linux and FFI (`-A`) for huge pages and discarding; elsewhere both variants are plain.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse_args.js";
import { GuestSnapshotSide } from "../emulator/snapshot/guest_side.ts";
import { CTRL_KEPT_CHUNKS, CTRL_WRITER_STATE, WRITER_DONE } from "../emulator/snapshot/session.ts";
import { canDiscardPages, discardPages } from "../emulator/snapshot/discard_pages.ts";
import { readThreadCpu } from "../emulator/snapshot/metrics.ts";
import { collectGarbage } from "../emulator/snapshot/slot_chunks.ts";

const PAGE = 4096;

interface Sample {
  cpuUsPerPage: number;
  wallUsPerPage: number;
}

/** One snapshot: stores into every page in `order`; returns the cost per page copied. */
function storeAll(side: GuestSnapshotSide, order: Uint32Array): Sample {
  side.begin("cow", order.length);
  const c0 = readThreadCpu()?.runNs ?? 0;
  const t0 = performance.now();
  for (let i = 0; i < order.length; i++) side.onStore(order[i]);
  const wallMs = performance.now() - t0;
  const cpuNs = (readThreadCpu()?.runNs ?? 0) - c0;
  const copied = side.session!.pageCount; // every page: nothing else saves them here
  return { cpuUsPerPage: cpuNs / 1000 / copied, wallUsPerPage: wallMs * 1000 / copied };
}

/** Ends the snapshot as a writer that gave the buffer's memory back would (pages discarded,
 * chunks kept). */
function endKeepingChunks(side: GuestSnapshotSide): void {
  for (let c = 0; c < side.chunks.extent; c++) {
    const v = side.chunks.view(c);
    if (v !== undefined) discardPages(v);
  }
  const ctrl = new Int32Array(side.buffers.control);
  Atomics.store(ctrl, CTRL_KEPT_CHUNKS, 1);
  Atomics.store(ctrl, CTRL_WRITER_STATE, WRITER_DONE);
  side.end();
}

function round(ram: Uint8Array, order: Uint32Array, huge: boolean): [Sample, Sample] {
  const side = new GuestSnapshotSide({
    ram,
    gate: new Int32Array(new SharedArrayBuffer((ram.length / PAGE) * 4)),
    sendChunk: () => {},
    hugePageChunks: huge,
  });
  const first = storeAll(side, order);
  endKeepingChunks(side);
  const next = storeAll(side, order);
  endKeepingChunks(side);
  return [first, next];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function parseSize(s: string): number {
  const m = /^(\d+)([MG])$/.exec(s);
  if (m === null) throw new Error(`Cannot read size ${s}: write it as 256M or 1G`);
  return Number(m[1]) * (m[2] === "G" ? 1024 : 1) * 1024 * 1024;
}

if (import.meta.main) {
  const args = parseArgs(Deno.args, { string: ["ram", "rounds"] });
  const ramBytes = parseSize(args.ram ?? "256M");
  const rounds = Number(args.rounds ?? 5);
  const ram = new Uint8Array(new SharedArrayBuffer(ramBytes));
  // Every page of RAM in memory and different, as a guest's would be.
  for (let p = 0; p < ramBytes; p += PAGE) ram[p] = (p / PAGE) & 255;
  const pages = ramBytes / PAGE;
  const order = new Uint32Array(pages).map((_, i) => i);
  let x = 0x9e37_79b9;
  for (let i = pages - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const runs: Record<string, Sample[]> = {
    "huge, first": [],
    "huge, next": [],
    "plain, first": [],
    "plain, next": [],
  };
  const load0 = Deno.loadavg()[0];
  for (let r = 0; r < rounds; r++) {
    // Alternate which variant goes first, so that neither always meets the other's leftovers.
    for (const huge of r % 2 === 0 ? [true, false] : [false, true]) {
      const [first, next] = round(ram, order, huge);
      const name = huge ? "huge" : "plain";
      runs[`${name}, first`].push(first);
      runs[`${name}, next`].push(next);
      collectGarbage(); // the round's chunks go back before the next one
    }
  }
  const fmt = (xs: number[]) =>
    `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
  console.log(
    `\n${ramBytes / 1024 / 1024} MiB of RAM, ${rounds} rounds, huge pages ${
      canDiscardPages() ? "available" : "NOT available (both variants plain)"
    }, load average ${load0.toFixed(1)} to ${Deno.loadavg()[0].toFixed(1)}\n`,
  );
  console.log("| chunks, snapshot | guest CPU µs per page copied | wall µs per page copied |");
  console.log("|---|---:|---:|");
  for (const [k, xs] of Object.entries(runs)) {
    console.log(
      `| ${k} | ${fmt(xs.map((s) => s.cpuUsPerPage))} | ${fmt(xs.map((s) => s.wallUsPerPage))} |`,
    );
  }
  for (const c of ["first", "next"]) {
    const h = median(runs[`huge, ${c}`].map((s) => s.cpuUsPerPage));
    const p = median(runs[`plain, ${c}`].map((s) => s.cpuUsPerPage));
    console.log(`\n${c} snapshot: huge / plain, guest CPU per page copied: ${(h / p).toFixed(2)}x`);
  }
}
