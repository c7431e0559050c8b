/**
 * Writing pages into a flat file at their address (shared by the `raw` and `elf-core` outputs):
 * into a seekable file with holes for pages never written, or in address order to a pipe.
 *
 * @module
 */
import type { DeviceSection } from "../../format/device_section.ts";
import type { OutputHandle } from "../_io.ts";
import type { PageStore } from "../_page_store.ts";
import type { SnapshotSource } from "./types.ts";

const ZERO_CHUNK = new Uint8Array(1 << 20);

// Synchronous on purpose: an async write per run costs a round trip through the thread pool that
// the profile showed as idle time; the tool has nothing else to do meanwhile.
/** Writes all of `bytes` at `offset` of `file`. */
export function writeAt(file: Deno.FsFile, offset: number, bytes: Uint8Array): Promise<void> {
  file.seekSync(offset, Deno.SeekMode.Start);
  let n = 0;
  while (n < bytes.length) n += file.writeSync(bytes.subarray(n));
  return Promise.resolve();
}

/** Writes `count` zero bytes to `out`. */
export async function writeZeros(out: OutputHandle, count: number): Promise<void> {
  while (count > 0) {
    const n = Math.min(count, ZERO_CHUNK.length);
    await out.write(ZERO_CHUNK.subarray(0, n));
    count -= n;
  }
}

/**
 * Gathers positioned writes into runs of contiguous bytes so that a file gets a few large writes
 * rather than one seek and write per page. A gap of pages known never to have been written may
 * be filled with zeros to join two runs. Writes are applied in the order given.
 */
class CoalescingWriter {
  private readonly buf = new Uint8Array(4 << 20);
  private start = 0;
  private length = 0;
  constructor(private readonly file: Deno.FsFile, private readonly maxGap = 64 << 10) {}

  async write(
    offset: number,
    bytes: Uint8Array,
    gapIsUnwritten: (from: number, to: number) => boolean,
  ): Promise<void> {
    const end = this.start + this.length;
    if (this.length > 0 && offset >= end && offset - end <= this.maxGap) {
      const gap = offset - end;
      if (
        this.length + gap + bytes.length <= this.buf.length &&
        (gap === 0 || gapIsUnwritten(end, offset))
      ) {
        this.buf.fill(0, this.length, this.length + gap);
        this.buf.set(bytes, this.length + gap);
        this.length += gap + bytes.length;
        return;
      }
    }
    await this.flush();
    if (bytes.length >= this.buf.length) {
      await writeAt(this.file, offset, bytes);
      return;
    }
    this.start = offset;
    this.buf.set(bytes, 0);
    this.length = bytes.length;
  }

  async flush(): Promise<void> {
    if (this.length > 0) await writeAt(this.file, this.start, this.buf.subarray(0, this.length));
    this.length = 0;
  }
}

/**
 * Places the pages of `regions` into a seekable file at `offsetOf(region) + page × pageSize`,
 * leaving holes for pages never written; a zero page overwrites only a page written before.
 * Returns the number of page slots written.
 */
export async function placePages(
  source: SnapshotSource,
  file: Deno.FsFile,
  regions: ReadonlySet<number>,
  offsetOf: (region: number) => number,
  onDevice: (d: DeviceSection) => void,
): Promise<number> {
  const written = source.description.regions.map((r) => new Uint8Array(r.size / r.pageSize));
  const out = new CoalescingWriter(file);
  let count = 0;
  for await (const item of source.items()) {
    if (item.kind === "device") onDevice(item.device);
    if (item.kind !== "pages" || !regions.has(item.region)) continue;
    const ps = source.description.regions[item.region].pageSize;
    const base = offsetOf(item.region);
    const marks = written[item.region];
    const unwritten = (from: number, to: number) => {
      // Only gaps inside this region, made of pages no earlier write touched.
      if (from < base || to > base + marks.length * ps) return false;
      for (let p = (from - base) / ps; p < (to - base) / ps; p++) if (marks[p] !== 0) return false;
      return true;
    };
    let i = 0;
    while (i < item.pages.length) {
      let j = i + 1;
      while (j < item.pages.length && item.pages[j] === item.pages[j - 1] + 1) j++;
      const first = item.pages[i];
      if (item.data !== null) {
        await out.write(base + first * ps, item.data.subarray(i * ps, j * ps), unwritten);
        marks.fill(1, first, first + (j - i));
      } else {
        for (let k = i; k < j; k++) {
          const p = item.pages[k];
          if (marks[p] === 1) await out.write(base + p * ps, ZERO_CHUNK.subarray(0, ps), unwritten);
          marks[p] = 0;
        }
      }
      count += j - i;
      i = j;
    }
  }
  await out.flush();
  return count;
}

/**
 * Writes regions in address order from a page store to a sequential output, zero-filling.
 * Returns the number of page slots written.
 */
export async function streamRegions(
  store: PageStore,
  out: OutputHandle,
  regions: number[],
  startOf: (region: number) => number,
): Promise<number> {
  let pos = startOf(regions[0]);
  let count = 0;
  const runs = store.runs();
  let run = runs.next();
  for (const r of regions) {
    const reg = store.description.regions[r];
    const start = startOf(r);
    await writeZeros(out, start - pos);
    pos = start;
    while (!run.done && run.value.region === r) {
      const at = start + run.value.firstPage * reg.pageSize;
      await writeZeros(out, at - pos);
      const len = run.value.count * reg.pageSize;
      if (run.value.data === null) await writeZeros(out, len);
      else await out.write(run.value.data);
      pos = at + len;
      count += run.value.count;
      run = runs.next();
    }
    await writeZeros(out, start + reg.size - pos);
    pos = start + reg.size;
  }
  return count;
}
