/**
 * Warming a process up for a lazy restore, before the restore's clock starts: what a restore
 * service does once, when it starts, before any snapshot is asked for (as a VMM process is
 * started before its snapshot-load request arrives).
 *
 * A process's first lazy restore pays for code that has never run: V8 interprets it, the zstd
 * context and its self-check, the CRC32C WebAssembly, the FFI library behind `madvise`, the index
 * decoder's loops. Measured on the 2-core VM (BENCHMARKS.md, "Restore: lazy and eager"), that was
 * most of the time to the first instruction of a cold process. {@linkcode warmLazyRestore} runs
 * the same path on a snapshot it writes itself (a blank machine, a few thousand pages, in a
 * temporary file): it reads no byte of the snapshot to be restored, and its cost is in the whole
 * process's time, which the benchmark reports beside the time to the first instruction.
 *
 * @module
 */

import { SnapshotWriter } from "../../format/writer.ts";
import { zstdReserveView } from "../../format/_zstd.ts";
import { reserveIndexArea } from "../../format/index_record.ts";
import { Machine } from "../machine.ts";
import { PAGE_SIZE } from "../memory_map.ts";
import { describeMachine, sectionsFromState } from "./machine_state.ts";
import { restoreLazily } from "./lazy_restore.ts";
import { reserveDemandScratch } from "./lazy_pages.ts";

/** What each level of warm-up does (see {@linkcode WarmUpLevel}). */
const LEVELS = {
  /**
   * `restore --warm-up`: a 128 MiB machine (mapped, only the pages written are touched) whose
   * snapshot names 8192 zero pages (enough for V8 to compile the index loops), restored 3 times.
   */
  full: { ramBytes: 128 << 20, zeroPages: 8192, rounds: 3, indexBytes: 8 << 20 },
  /** `restore --lazy` by default: a 4 MiB machine, 256 zero pages, one restore. */
  light: { ramBytes: 4 << 20, zeroPages: 256, rounds: 1, indexBytes: 4 << 20 },
};
/**
 * The decompression areas kept in memory (the hint's and loaders', the demand reads'): one PAGES
 * record of this library's writer (at most 256 pages), so that the first demand fault does not
 * take a fault per 4 KiB of it.
 */
const WARM_RECORD_BYTES = 256 * PAGE_SIZE;

/**
 * How much warm-up: "full" runs compiled code afterwards; "light" has run every step of a lazy
 * restore once (each function parsed and compiled, the FFI library loaded, the zstd and CRC32C
 * paths taken, the memory areas written) at a fraction of the cost. The memory kept for the INDEX a
 * lazy restore reads in place (`IndexBody`, 14 bytes per page the file holds) is 8 MiB (599 000
 * pages: 2.3 GiB of RAM every page of which is in the file) for "full" and 4 MiB for "light"; a
 * larger index is decompressed into fresh memory.
 */
export type WarmUpLevel = keyof typeof LEVELS;

/**
 * Runs a lazy restore of a small snapshot of its own (see {@linkcode WarmUpLevel}), so that the
 * next restore in this process does not pay for code running for the first time. Writes and
 * removes one temporary file; never throws (a failed warm-up only leaves the code cold).
 */
export async function warmLazyRestore(level: WarmUpLevel = "full"): Promise<void> {
  const { ramBytes, zeroPages, rounds, indexBytes } = LEVELS[level];
  let path: string | null = null;
  try {
    zstdReserveView(WARM_RECORD_BYTES);
    reserveDemandScratch(WARM_RECORD_BYTES);
    reserveIndexArea(indexBytes);
    path = await Deno.makeTempFile({ prefix: "livesnap-warmup-", suffix: ".lsnap" });
    const m = new Machine({ ramSize: ramBytes, uartSink: () => {} });
    // Straight to the file: no fsync, no rename (it is read once, by this process, and removed).
    const file = await Deno.open(path, { write: true, truncate: true });
    const w = await SnapshotWriter.create(file.writable, describeMachine(m, 0), { workers: 0 })
      .catch((e) => {
        file.close();
        throw e;
      });
    try {
      // A few pages of data (zstd-compressed records) and many zero pages (a large index).
      const data = new Uint8Array(16 * PAGE_SIZE);
      for (let i = 0; i < data.length; i += 64) data[i] = (i >> 6) & 0xff;
      await w.writePages(0, 0, data);
      const zeros = new Uint32Array(zeroPages);
      for (let i = 0; i < zeros.length; i++) zeros[i] = 32 + 2 * i;
      await w.writeZeroPages(0, zeros);
      for (const s of sectionsFromState(m.save())) await w.writeDevice(s);
      await w.close();
    } catch (e) {
      await w.abort();
      throw e;
    }
    for (let round = 0; round < rounds; round++) {
      const r = await restoreLazily({ path, hint: "off", loaders: 0, uartSink: () => {} });
      r.machine.run(1);
      r.machine.ram.ensurePresent(4 * PAGE_SIZE, 64 * PAGE_SIZE);
      await r.pager.finish();
    }
  } catch {
    // Cold code is slower, not wrong.
  } finally {
    if (path !== null) await Deno.remove(path).catch(() => {});
  }
}
