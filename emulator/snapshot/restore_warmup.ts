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

import { zstdCompress, zstdReserveView } from "../../format/_zstd.ts";
import {
  FLAG_CRITICAL,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  PROLOGUE_SIZE,
  RecordType,
} from "../../format/constants.ts";
import { encodeDeviceSection, normalizeDevice } from "../../format/device_section.ts";
import { encodeFooter } from "../../format/footer.ts";
import { encodeHeader, encodePrologue } from "../../format/header.ts";
import { encodeIndex } from "../../format/index_record.ts";
import { encodePageRecord } from "../../format/page_record.ts";
import { encodeRecord } from "../../format/record.ts";
import { encodeTrailer } from "../../format/trailer.ts";
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
 * The bytes of the warm-up snapshot of `m`: 16 pages of data (one zstd PAGES record), `zeroPages`
 * zero pages (one zero record, a larger index), the devices, an INDEX, a TRAILER and the footer.
 * Framed here rather than by `SnapshotWriter`, whose own first run (the file digest, the content
 * digest) would cost the process tens of milliseconds for code a restore never runs; so the
 * trailer's two digests are zeros, which nothing a lazy restore does before the guest runs
 * reads (`livesnap verify` would refuse the file).
 */
function warmUpSnapshot(m: Machine, zeroPages: number): Uint8Array {
  const parts: Uint8Array[] = [encodePrologue(FORMAT_MAJOR, FORMAT_MINOR)];
  let at = PROLOGUE_SIZE;
  const add = (record: Uint8Array): number => {
    parts.push(record);
    at += record.length;
    return at - record.length;
  };
  add(encodeRecord(RecordType.HEADER, FLAG_CRITICAL, encodeHeader(describeMachine(m, 0))));
  const data = new Uint8Array(16 * PAGE_SIZE);
  for (let i = 0; i < data.length; i += 64) data[i] = (i >> 6) & 0xff;
  const dataPages = Uint32Array.from({ length: 16 }, (_, i) => i);
  const dataAt = add(
    encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(0, "zstd", dataPages, zstdCompress(data, 3)),
    ),
  );
  const zeros = Uint32Array.from({ length: zeroPages }, (_, i) => 32 + 2 * i);
  const zeroAt = add(
    encodeRecord(
      RecordType.PAGES,
      FLAG_CRITICAL,
      encodePageRecord(0, "zero", zeros, new Uint8Array(0)),
    ),
  );
  const sections = sectionsFromState(m.save());
  const deviceOffsets = Float64Array.from(
    sections.map((d) =>
      add(encodeRecord(RecordType.DEVICE, FLAG_CRITICAL, encodeDeviceSection(normalizeDevice(d))))
    ),
  ).sort();
  const pages = new Uint32Array([...dataPages, ...zeros]);
  const indexOffset = add(
    encodeRecord(
      RecordType.INDEX,
      0,
      encodeIndex({
        regions: new Uint16Array(pages.length),
        pages,
        pageOffsets: Float64Array.from(pages, (_, i) => i < 16 ? dataAt : zeroAt),
        deviceOffsets,
      }),
    ),
  );
  const trailerOffset = add(
    encodeRecord(
      RecordType.TRAILER,
      FLAG_CRITICAL,
      encodeTrailer({
        recordCount: 4 + sections.length,
        pageRecordCount: 2,
        pageCount: pages.length,
        deviceCount: sections.length,
        indexOffset,
        contentDigest: new Uint8Array(32),
        fileDigest: new Uint8Array(32),
      }),
    ),
  );
  add(encodeFooter({ trailerOffset, indexOffset }));
  const out = new Uint8Array(at);
  let o = 0;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}

/**
 * Runs a lazy restore of a small snapshot of its own (see {@linkcode WarmUpLevel}), so that the
 * next restore in this process does not pay for code running for the first time. Writes and
 * removes one temporary file; never throws (a failed warm-up only leaves the code cold): false
 * when it failed.
 */
export async function warmLazyRestore(level: WarmUpLevel = "full"): Promise<boolean> {
  const { ramBytes, zeroPages, rounds, indexBytes } = LEVELS[level];
  let path: string | null = null;
  try {
    zstdReserveView(WARM_RECORD_BYTES);
    reserveDemandScratch(WARM_RECORD_BYTES);
    reserveIndexArea(indexBytes);
    path = await Deno.makeTempFile({ prefix: "livesnap-warmup-", suffix: ".lsnap" });
    const m = new Machine({ ramSize: ramBytes, uartSink: () => {} });
    // Read once, by this process, and removed: no fsync, no rename.
    await Deno.writeFile(path, warmUpSnapshot(m, zeroPages));
    for (let round = 0; round < rounds; round++) {
      const r = await restoreLazily({ path, hint: "off", loaders: 0, uartSink: () => {} });
      r.machine.run(1);
      r.machine.ram.ensurePresent(4 * PAGE_SIZE, 64 * PAGE_SIZE);
      await r.pager.finish();
    }
    return true;
  } catch {
    // Cold code is slower, not wrong.
    return false;
  } finally {
    if (path !== null) await Deno.remove(path).catch(() => {});
  }
}
