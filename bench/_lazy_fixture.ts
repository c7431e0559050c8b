/**
 * Snapshots for the restore benchmarks: memstress (a working set it stores all over) in a RAM of
 * any size whose other pages hold mixed content (about 60% zero, 25% text-like, 15% random, as
 * bench/_mixed_ram.ts) that the guest never touches after the restore: a full machine of which a
 * restored guest needs a small part, the case lazy restore is for.
 *
 * @module
 */

import { Machine } from "../emulator/machine.ts";
import { patchMemstressConfig } from "../emulator/guests/memstress_config.ts";
import { describeMachine, sectionsFromState } from "../emulator/snapshot/machine_state.ts";
import { isZeroPage, PAGE_SIZE } from "../emulator/snapshot/page_state.ts";
import { SnapshotWriter } from "../format/writer.ts";

/** What {@linkcode makeRestoreFixture} made. */
export interface RestoreFixture {
  path: string;
  ramSize: number;
  /** Instructions the guest had retired at the snapshot. */
  at: number;
  /** memstress's working set (bytes). */
  workingSetBytes: number;
}

/** Fills pages `[from, to)` of `ram` with mixed content (deterministic). */
export function fillMixed(ram: Uint8Array, from: number, to: number): void {
  let s = 0x9e37_79b9;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const text = new TextEncoder().encode(
    "the of and to in is was for on that with as by at from kernel page memory guest snapshot " +
      "device queue buffer interrupt timer virtio block console return error static const ",
  );
  for (let p = from; p < to; p++) {
    const kind = next() % 100;
    if (kind < 60) continue;
    const page = ram.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    if (kind < 85) {
      const o = next() % 64;
      for (let i = 0; i < PAGE_SIZE; i += 64) page.set(text.subarray(o, o + 64), i);
      new Uint32Array(page.buffer, page.byteOffset, 4)[0] = next();
    } else {
      const words = new Uint32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4);
      for (let i = 0; i < words.length; i++) words[i] = next();
    }
  }
}

/**
 * Writes (or reuses, when `path` exists) a snapshot of memstress with a `workingSetBytes`
 * working set in `ramSize` bytes of RAM, taken after `at` instructions, the rest of RAM mixed.
 */
export async function makeRestoreFixture(
  path: string,
  ramSize: number,
  options: { workingSetBytes?: number; at?: number } = {},
): Promise<RestoreFixture> {
  const workingSetBytes = options.workingSetBytes ?? 4 << 20;
  const at = options.at ?? 2_000_000;
  const fixture = { path, ramSize, at, workingSetBytes };
  try {
    await Deno.stat(path);
    return fixture;
  } catch {
    // made below
  }
  const base = await Deno.readFile(
    new URL("../emulator/guests/build/memstress.elf", import.meta.url),
  );
  const elf = patchMemstressConfig(base, {
    workingSetBytes,
    writesPerRound: 65536,
    rounds: 0,
  });
  const m = Machine.fromElf(elf, { ramSize, uartSink: () => {} });
  m.run(at);
  // memstress's working set starts near the bottom of RAM; everything past it plus 1 MiB.
  const from = Math.ceil((workingSetBytes + (2 << 20)) / PAGE_SIZE);
  fillMixed(m.ram.bytes, from, m.ram.pageCount);
  const w = await SnapshotWriter.createFile(path, describeMachine(m));
  try {
    const ram = m.ram.bytes;
    let run = -1;
    for (let p = 0; p <= m.ram.pageCount; p++) {
      const zero = p === m.ram.pageCount || isZeroPage(ram, p * PAGE_SIZE);
      if (!zero && run < 0) run = p;
      if ((zero || p - run >= 256) && run >= 0) {
        await w.writePages(0, run, ram.subarray(run * PAGE_SIZE, p * PAGE_SIZE));
        run = zero ? -1 : p;
      }
    }
    for (const s of sectionsFromState(m.save())) await w.writeDevice(s);
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
  return fixture;
}
