/**
 * What a report shows of a QEMU migration stream, gathered in one pass of `inspect` (whose
 * summary the report embeds as it is) with its per-record hook. QEMU sends each page as its own
 * record; consecutive records of consecutive pages of one block with the same encoding, each
 * right after the previous one, form one batch in the record table (`stride` bytes apart, so a
 * page's own record offset is exact). Each RAM section (one per pass) is a span of the file.
 * Memory: about 7 bytes per page the stream sends, in chunks, whatever size the blocks declare.
 *
 * @module
 */
import { planRegions } from "../../qemu/convert.ts";
import { QemuStreamError } from "../../qemu/errors.ts";
import { inspectQemuStream, type QemuStreamSummary } from "../../qemu/inspect.ts";
import type { QemuStreamRecord, RamBlock } from "../../qemu/model.ts";
import { sectionTypeName } from "../../qemu/constants.ts";
import { countBytes } from "../_count_bytes.ts";
import type { InputHandle } from "../_io.ts";
import { isZeroPage } from "../_zero.ts";
import { PageKind, type RegionMap, type ReportProblem } from "./data.ts";
import { deviceFingerprint, type GatheredFile, type GatherOptions } from "./lsnap_data.ts";
import { RecordColumns, RunBuilder, SegmentCollector } from "./map_builder.ts";
import { PageHashes } from "./page_hashes.ts";

const CHUNK = 4096;

/** Bytes of a page record without a block name: flags and address (8), then the page or the
 * fill byte. */
function recordSize(pageSize: number, zero: boolean): number {
  return 8 + (zero ? 1 : pageSize);
}

interface PageChunk {
  kind: Uint8Array;
  copies: Uint16Array;
  batch: Int32Array;
}

interface Batch {
  index: number;
  region: number;
  offset: number;
  next: number;
  zero: boolean;
  stride: number;
  count: number;
}

/**
 * Reads a QEMU migration stream and gathers its report. Never throws for a malformed stream:
 * the problem (QEMU streams stop at the first) is in the report.
 */
export async function gatherQemu(
  input: InputHandle,
  readable: ReadableStream<Uint8Array>,
  options: GatherOptions = {},
): Promise<GatheredFile> {
  const records = new RecordColumns();
  const segments = new SegmentCollector(options.maxSegments);
  const devices = new Map<string, Uint8Array>();
  const states: Map<number, PageChunk>[] = [];
  const blockIndex = new Map<string, number>();
  const spans: { offset: number; bytes: number; label: string }[] = [];
  let blocks: RamBlock[] = [];
  let pageSize = 4096;
  let hashes: PageHashes | null = null;
  let batch: Batch | null = null;
  // The record whose length is known only when the next item arrives.
  let open = -1;
  let bytesRead = 0;
  let passes = 0;

  const close = (at: number) => {
    if (open < 0) return;
    const bytes = at - records.offset.get(open);
    const stride = batch !== null && batch.index === open ? batch.stride : 0;
    // A one-page batch: its record, plus the block name it may carry (at most 256 bytes more);
    // anything longer is section framing after it, not part of the record.
    if (stride === 0 || bytes <= stride + 256) records.bytes.set(open, bytes);
    open = -1;
  };
  const state = (region: number, page: number): [PageChunk, number] => {
    const map = states[region];
    let c = map.get(Math.floor(page / CHUNK));
    if (c === undefined) {
      c = {
        kind: new Uint8Array(CHUNK),
        copies: new Uint16Array(CHUNK),
        batch: new Int32Array(CHUNK).fill(-1),
      };
      map.set(Math.floor(page / CHUNK), c);
    }
    return [c, page % CHUNK];
  };

  const onRecord = (r: QemuStreamRecord) => {
    if (r.kind === "ram-section") {
      // Reported at the section's end, with its start: a span over the records already read.
      passes++;
      spans.push({
        offset: r.offset,
        bytes: r.length,
        label: `RAM ${sectionTypeName(r.sectionType)} (pass ${passes}): ${r.pages} pages`,
      });
      return;
    }
    if (r.kind === "page") {
      const region = blockIndex.get(r.block)!;
      const page = r.address / pageSize;
      const zeroRecord = r.data === undefined;
      const stride = recordSize(pageSize, zeroRecord);
      const b = batch;
      if (
        b !== null && b.region === region && b.next === page && b.zero === zeroRecord &&
        r.offset === b.offset + b.count * stride
      ) {
        b.count++;
        b.next++;
        records.addPages(b.index, 1);
        records.bytes.set(b.index, b.count * stride);
      } else {
        close(r.offset);
        const index = records.push({
          offset: r.offset,
          bytes: stride,
          kind: "pages",
          region,
          encoding: zeroRecord ? "zero" : "raw",
          pages: 1,
          stride,
        });
        batch = {
          index,
          region,
          offset: r.offset,
          next: page + 1,
          zero: zeroRecord,
          stride,
          count: 1,
        };
        // A batch's first record may carry the block's name: its length is known from the next.
        open = index;
      }
      const index = (batch as Batch).index;
      if ((batch as Batch).count === 2 && open === index) open = -1;
      segments.addRun(index, region, page, 1);
      const [c, slot] = state(region, page);
      const data = r.data ?? (r.fill ? new Uint8Array(pageSize).fill(r.fill) : null);
      const zero = data === null || isZeroPage(data, 0, pageSize);
      c.kind[slot] = zero ? PageKind.ZERO : PageKind.DATA;
      if (c.copies[slot] < 0xffff) c.copies[slot]++;
      c.batch[slot] = index;
      if (hashes !== null) {
        if (zero) hashes.setZero(region, page);
        else hashes.set(region, page, data!, 0, pageSize);
      }
      return;
    }
    close(r.offset);
    batch = null;
    switch (r.kind) {
      case "header":
        open = records.push({ offset: r.offset, bytes: 0, kind: "header" });
        break;
      case "configuration":
        if (r.configuration.targetPageBits !== undefined) {
          pageSize = 2 ** r.configuration.targetPageBits;
        }
        open = records.push({ offset: r.offset, bytes: 0, kind: "configuration" });
        break;
      case "ram-blocks":
        blocks = r.blocks;
        for (const [i, blk] of blocks.entries()) {
          blockIndex.set(blk.name, i);
          states.push(new Map());
        }
        if (options.hashPages) hashes = new PageHashes(blocks.map((x) => x.size / pageSize));
        open = records.push({ offset: r.offset, bytes: 0, kind: "ram-blocks" });
        break;
      case "device": {
        const d = r.section;
        const i = records.push({ offset: r.offset, bytes: 0, kind: "device" });
        open = i;
        records.devices.push({
          record: i,
          id: d.idstr,
          instance: d.instanceId,
          bytes: d.data.length,
        });
        devices.set(
          `${d.idstr}\u0000${d.instanceId}`,
          deviceFingerprint(d.versionId, "qemu", d.data),
        );
        break;
      }
      case "command":
        open = records.push({ offset: r.offset, bytes: 0, kind: "command" });
        break;
      case "eof":
        records.push({ offset: r.offset, bytes: 1, kind: "eof" });
        break;
      case "vmdesc":
        records.push({
          offset: r.offset,
          bytes: 5 + new TextEncoder().encode(r.text).length,
          kind: "vmdesc",
        });
        break;
    }
  };

  let inspect: QemuStreamSummary | null = null;
  const problems: ReportProblem[] = [];
  try {
    inspect = await inspectQemuStream(
      countBytes(readable, (n) => {
        bytesRead += n;
        options.onBytes?.(n);
      }),
      { onRecord },
    );
  } catch (e) {
    if (!(e instanceof QemuStreamError)) throw e;
    problems.push({ kind: e.name, message: e.message, offset: e.offset, recordIndex: -1 });
  }
  const end = problems.length > 0 ? problems[0].offset : bytesRead;
  close(end);
  if (problems.length > 0) {
    const p = problems[0];
    if (!records.markDamaged(p.offset)) {
      const i = records.push({
        offset: p.offset,
        bytes: Math.max(0, (input.size ?? bytesRead) - p.offset),
        kind: "unreadable",
      });
      records.markDamaged(records.offset.get(i));
    }
  }
  records.spans.push(...spans);

  const { regions: planned } = planRegions(blocks, pageSize, {});
  const regions: RegionMap[] = [];
  for (const [ri, region] of planned.entries()) {
    const pages = region.size / region.pageSize;
    const runs = new RunBuilder(pages);
    const keys = [...states[ri].keys()].sort((a, b) => a - b);
    for (const k of keys) {
      const c = states[ri].get(k)!;
      for (let s = 0; s < CHUNK; s++) {
        if (c.copies[s] === 0) continue;
        runs.add(k * CHUNK + s, 1, c.kind[s], c.copies[s], c.batch[s]);
      }
    }
    regions.push({ ...region, pages, runs: await runs.pack() });
  }
  return {
    report: {
      path: input.name,
      kind: "qemu",
      inspect,
      intact: problems.length === 0,
      problems,
      problemsTruncated: false,
      bytesMapped: end,
      size: input.size ?? null,
      contentDigest: null,
      parent: null,
      regions,
      records: await records.pack(),
      segments: await segments.pack(),
    },
    hashes,
    devices,
  };
}
