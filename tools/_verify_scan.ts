/**
 * The scan behind `verify`: one pass over a snapshot that keeps going after a problem and
 * reports every one it finds, each with its record index and byte offset.
 *
 * Where the format's readers stop at the first error, this scan steps over a record whose CRC
 * fails when its framing still holds (its head names a known type and a plausible length), and
 * when the framing itself is lost it searches forward for the next record whose CRC checks out
 * (a false match needs a known type, a length within the cap and a matching CRC32C). It checks:
 * the prologue, every record's CRC, the header, page numbers against the regions, page data
 * (decompression), device sections (layout and CBOR), the index against the records actually
 * read, the trailer's counts, the file digest, the content digest, the footer, and that nothing
 * follows it.
 *
 * @module
 */
import { OffsetTable } from "../format/_source.ts";
import { crc32c, createBlake3, hex32, toHex } from "../format/checksum.ts";
import {
  FOOTER_SIZE,
  MAX_RECORD_PAYLOAD,
  PROLOGUE_SIZE,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "../format/constants.ts";
import { ContentDigestBuilder } from "../format/content_digest.ts";
import { decodeDeviceSection } from "../format/device_section.ts";
import { checkCborShape } from "../format/device_state.ts";
import { LsnapError } from "../format/errors.ts";
import { decodeFooter } from "../format/footer.ts";
import {
  decodeHeader,
  decodePrologue,
  type FormatVersion,
  type MachineDescription,
} from "../format/header.ts";
import { decodeIndex } from "../format/index_record.ts";
import { decodePageRecord, expandPageData } from "../format/page_record.ts";
import { isCritical, recordTypeName } from "../format/record.ts";
import { decodeTrailer, type Trailer } from "../format/trailer.ts";

/** One problem found, as plain data. `recordIndex` is -1 outside records. */
export interface Problem {
  /** "CorruptError", "TruncatedError", "ChecksumError", "UnsupportedError". */
  kind: string;
  message: string;
  offset: number;
  recordIndex: number;
}

/** Options of {@linkcode scanSnapshot}. */
export interface ScanOptions {
  /** Stop after this many problems (default 100). */
  maxErrors?: number;
  /** Called with the number of bytes consumed, as they are consumed (for progress). */
  onBytes?: (n: number) => void;
}

/** What {@linkcode scanSnapshot} found. */
export interface ScanReport {
  problems: Problem[];
  /** True when the scan stopped at `maxErrors` and more problems may exist. */
  stoppedEarly: boolean;
  /** True when the trailer and footer were read (the file claims to be complete). */
  complete: boolean;
  version: FormatVersion | null;
  description: MachineDescription | null;
  /** Records read, the trailer included. */
  records: number;
  /** Bytes read. */
  bytes: number;
  /** The content digest recomputed from the records (null when a page or device record was unreadable). */
  contentDigest: string | null;
  /** The file digest recomputed (null when the trailer was not reached). */
  fileDigest: string | null;
  trailer: Trailer | null;
}

class StopScan extends Error {}

/** A byte source over a stream that can look ahead without consuming. */
class PeekSource {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private done = false;
  /** Bytes consumed so far (the offset of the next byte). */
  position = 0;
  constructor(
    stream: ReadableStream<Uint8Array>,
    private readonly onConsume: (b: Uint8Array) => void,
  ) {
    this.reader = stream.getReader();
  }

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.done) {
      const r = await this.reader.read();
      if (r.done) this.done = true;
      else if (r.value.length > 0) {
        this.chunks.push(r.value);
        this.buffered += r.value.length;
      }
    }
  }

  /** Up to `n` bytes from the current position, not consumed. */
  async peek(n: number): Promise<Uint8Array> {
    await this.fill(n);
    const take = Math.min(n, this.buffered);
    if (this.chunks.length > 0 && this.chunks[0].length >= take) {
      return this.chunks[0].subarray(0, take);
    }
    const out = new Uint8Array(take);
    let at = 0;
    for (const c of this.chunks) {
      if (at >= take) break;
      const k = Math.min(c.length, take - at);
      out.set(c.subarray(0, k), at);
      at += k;
    }
    return out;
  }

  /** Consumes `n` bytes (fewer at the end of input), handing each piece to `onConsume`. */
  async skip(n: number): Promise<void> {
    await this.fill(n);
    let left = Math.min(n, this.buffered);
    while (left > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length, left);
      this.onConsume(c.subarray(0, k));
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
      this.buffered -= k;
      this.position += k;
      left -= k;
    }
  }

  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buffered === 0;
  }

  async release(): Promise<void> {
    await this.reader.cancel().catch(() => {});
  }
}

const KNOWN_TYPES = new Set<number>(Object.values(RecordType));

function headFields(head: Uint8Array): { type: number; flags: number; length: number } {
  const v = new DataView(head.buffer, head.byteOffset, RECORD_HEAD_SIZE);
  return { type: v.getUint16(0, true), flags: v.getUint16(2, true), length: v.getUint32(4, true) };
}

function crcOk(record: Uint8Array): { ok: boolean; stored: number; actual: number } {
  const end = record.length - RECORD_TAIL_SIZE;
  const stored = new DataView(record.buffer, record.byteOffset + end, 4).getUint32(0, true);
  const actual = crc32c(record.subarray(0, end));
  return { ok: stored === actual, stored, actual };
}

/**
 * Scans a snapshot from a stream, collecting every problem (up to `maxErrors`). Never throws for
 * malformed input; errors of the stream itself (I/O) are thrown.
 *
 * @example
 * ```ts
 * import { scanSnapshot } from "./_verify_scan.ts";
 * const r = await scanSnapshot(ReadableStream.from([new Uint8Array(40)]));
 * console.assert(r.problems[0].message.includes("bad magic"));
 * ```
 */
export async function scanSnapshot(
  stream: ReadableStream<Uint8Array>,
  options: ScanOptions = {},
): Promise<ScanReport> {
  const maxErrors = options.maxErrors ?? 100;
  const hasher = await createBlake3();
  hasher.init();
  let hashing = true;
  const src = new PeekSource(stream, (b) => {
    if (hashing) hasher.update(b);
    options.onBytes?.(b.length);
  });
  const report: ScanReport = {
    problems: [],
    stoppedEarly: false,
    complete: false,
    version: null,
    description: null,
    records: 0,
    bytes: 0,
    contentDigest: null,
    fileDigest: null,
    trailer: null,
  };
  const problem = (kind: string, message: string, offset: number, recordIndex: number) => {
    report.problems.push({ kind, message, offset, recordIndex });
    if (report.problems.length >= maxErrors) {
      report.stoppedEarly = true;
      throw new StopScan();
    }
  };
  const fromError = (e: unknown, offset: number, recordIndex: number) => {
    if (e instanceof LsnapError) problem(e.name, e.message, e.offset, e.recordIndex);
    else if (e instanceof StopScan) throw e;
    else if (e instanceof Error) {
      problem(
        "CorruptError",
        `Cannot read record ${recordIndex} at byte ${offset}: ${e.message}`,
        offset,
        recordIndex,
      );
    } else throw e;
  };
  const where = (i: number, o: number) => `Cannot read record ${i} at byte ${o}`;

  let digest: ContentDigestBuilder | null = null;
  let digestBroken = false;
  const pageOffsets = new OffsetTable(0);
  let offsets: OffsetTable = pageOffsets;
  const deviceOffsets = new Map<string, number>();
  const counts = { records: 0, pageRecords: 0, pageOccurrences: 0, devices: 0 };
  let indexOffset = 0;
  // Offsets of records that could not be read: index entries pointing at them cannot be checked.
  const unreadable = new Set<number>();
  let pageCountUnknown = false;

  /**
   * Searches forward from the current position + 1 for a record whose CRC checks out. On success
   * reports `reason` with the bytes skipped and returns true; at the end of input returns false
   * (the caller reports).
   */
  const resync = async (from: number, recordIndex: number, reason: string): Promise<boolean> => {
    await src.skip(1);
    const window = 1 << 20;
    for (;;) {
      const buf = await src.peek(window);
      if (buf.length < RECORD_HEAD_SIZE + RECORD_TAIL_SIZE) {
        await src.skip(buf.length);
        return false;
      }
      const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
      let candidate = -1;
      for (let i = 0; i + RECORD_HEAD_SIZE <= buf.length; i++) {
        const type = v.getUint16(i, true);
        const flags = v.getUint16(i + 2, true);
        const length = v.getUint32(i + 4, true);
        if (KNOWN_TYPES.has(type) && (flags & ~1) === 0 && length <= MAX_RECORD_PAYLOAD) {
          candidate = i;
          break;
        }
      }
      if (candidate < 0) {
        await src.skip(buf.length - RECORD_HEAD_SIZE + 1);
        continue;
      }
      await src.skip(candidate);
      const h = headFields(await src.peek(RECORD_HEAD_SIZE));
      const rec = await src.peek(RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE);
      if (rec.length === RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE && crcOk(rec).ok) {
        problem(
          "CorruptError",
          `${where(recordIndex, from)}: ${reason}; framing lost: skipped ${
            src.position - from
          } bytes to the next valid record at byte ${src.position}`,
          from,
          recordIndex,
        );
        return true;
      }
      // Not a record: look again from the next byte.
      await src.skip(1);
    }
  };

  try {
    // Prologue (FORMAT.md §2).
    const prologue = await src.peek(PROLOGUE_SIZE);
    try {
      report.version = decodePrologue(prologue);
    } catch (e) {
      if (prologue.length < PROLOGUE_SIZE) {
        problem(
          "TruncatedError",
          `Cannot read file at byte 0: input ends after ${prologue.length} bytes, inside the prologue`,
          0,
          -1,
        );
        return report;
      }
      fromError(e, 0, -1);
      // A bad magic or another major version: nothing after it can be trusted to mean anything.
      if (e instanceof LsnapError && e.name !== "ChecksumError") return report;
    }
    await src.skip(PROLOGUE_SIZE);

    for (let index = 0;; index++) {
      const offset = src.position;
      const head = await src.peek(RECORD_HEAD_SIZE);
      if (head.length === 0) {
        problem(
          "TruncatedError",
          `${
            where(index, offset)
          }: input ends after ${index} records without a trailer: the file is incomplete`,
          offset,
          index,
        );
        break;
      }
      if (head.length < RECORD_HEAD_SIZE) {
        await src.skip(head.length);
        problem(
          "TruncatedError",
          `${where(index, offset)}: input ends inside the record head`,
          offset,
          index,
        );
        break;
      }
      const h = headFields(head);
      const total = RECORD_HEAD_SIZE + h.length + RECORD_TAIL_SIZE;
      const record = h.length > MAX_RECORD_PAYLOAD ? new Uint8Array(0) : await src.peek(total);
      if (h.length > MAX_RECORD_PAYLOAD || record.length < total) {
        const reason = h.length > MAX_RECORD_PAYLOAD
          ? `payload length ${h.length} exceeds the cap of ${MAX_RECORD_PAYLOAD}`
          : `record declares ${h.length} payload bytes but the input ends ${
            record.length - RECORD_HEAD_SIZE
          } bytes later`;
        if (await resync(offset, index, reason)) continue;
        problem(
          h.length > MAX_RECORD_PAYLOAD ? "CorruptError" : "TruncatedError",
          `${where(index, offset)}: ${reason}`,
          offset,
          index,
        );
        break;
      }
      const crc = crcOk(record);
      if (!crc.ok) {
        problem(
          "ChecksumError",
          `${where(index, offset)}: record CRC32C mismatch (expected ${hex32(crc.stored)}, got ${
            hex32(crc.actual)
          })`,
          offset,
          index,
        );
        if (h.type === RecordType.PAGES || h.type === RecordType.DEVICE) digestBroken = true;
        unreadable.add(offset);
        // A head that names no known type and sets undefined flags is not a head: resynchronise.
        // Otherwise trust its length and step over the damaged record.
        if (!KNOWN_TYPES.has(h.type) && (h.flags & ~1) !== 0) {
          if (await resync(offset, index, "record CRC32C mismatch and no valid record head")) {
            continue;
          }
          problem(
            "CorruptError",
            `${where(index, offset)}: framing lost; no valid record follows`,
            offset,
            index,
          );
          break;
        }
        if (h.type === RecordType.PAGES) {
          counts.pageRecords++;
          pageCountUnknown = true;
        }
        if (h.type === RecordType.DEVICE) counts.devices++;
        if (h.type === RecordType.TRAILER) hashing = false;
        await src.skip(total);
        counts.records++;
        report.records++;
        if (h.type === RecordType.TRAILER) break;
        continue;
      }
      const payload = record.subarray(RECORD_HEAD_SIZE, RECORD_HEAD_SIZE + h.length);
      if (h.type === RecordType.TRAILER) {
        report.fileDigest = toHex(hasher.digest("binary"));
        hashing = false;
        await src.skip(total);
        report.records++;
        try {
          const t = decodeTrailer(payload, offset, index);
          report.trailer = t;
          const pairs: [string, number, number][] = [
            ["record count", t.recordCount, counts.records],
            ["page record count", t.pageRecordCount, counts.pageRecords],
            ["page count", t.pageCount, counts.pageOccurrences],
            ["device count", t.deviceCount, counts.devices],
            ["index offset", t.indexOffset, indexOffset],
          ];
          for (const [what, declared, seen] of pairs) {
            if (declared !== seen && !(what === "page count" && pageCountUnknown)) {
              problem(
                "CorruptError",
                `${
                  where(index, offset)
                }: trailer declares ${what} ${declared} but the file has ${seen}`,
                offset,
                index,
              );
            }
          }
          if (toHex(t.fileDigest) !== report.fileDigest) {
            problem(
              "ChecksumError",
              `${where(index, offset)}: file digest mismatch (expected ${
                toHex(t.fileDigest)
              }, got ${report.fileDigest})`,
              offset,
              index,
            );
          }
          if (digest !== null && !digestBroken) {
            report.contentDigest = toHex(await digest.digest());
            if (toHex(t.contentDigest) !== report.contentDigest) {
              problem(
                "ChecksumError",
                `${where(index, offset)}: content digest mismatch (expected ${
                  toHex(t.contentDigest)
                }, got ${report.contentDigest})`,
                offset,
                index,
              );
            }
          }
        } catch (e) {
          fromError(e, offset, index);
        }
        // Footer (FORMAT.md §9).
        const footerAt = src.position;
        const footer = await src.peek(FOOTER_SIZE);
        await src.skip(footer.length);
        if (footer.length < FOOTER_SIZE) {
          problem(
            "TruncatedError",
            `Cannot read file at byte ${footerAt}: input ends ${footer.length} bytes into the ${FOOTER_SIZE}-byte footer`,
            footerAt,
            -1,
          );
          break;
        }
        try {
          const f = decodeFooter(footer, footerAt);
          if (
            f.trailerOffset !== offset ||
            (report.trailer !== null && f.indexOffset !== report.trailer.indexOffset)
          ) {
            problem(
              "CorruptError",
              `Cannot read file at byte ${footerAt}: footer points at trailer ${f.trailerOffset} and index ${f.indexOffset}, but they are at ${offset} and ${
                report.trailer?.indexOffset ?? "?"
              }`,
              footerAt,
              -1,
            );
          }
        } catch (e) {
          fromError(e, footerAt, -1);
        }
        if (!(await src.atEnd())) {
          const at = src.position;
          problem(
            "CorruptError",
            `Cannot read file at byte ${at}: bytes follow the footer`,
            at,
            -1,
          );
        }
        report.complete = true;
        break;
      }
      await src.skip(total);
      counts.records++;
      report.records++;
      if (index === 0 && h.type !== RecordType.HEADER) {
        problem(
          "CorruptError",
          `${where(index, offset)}: the first record is ${recordTypeName(h.type)}, not HEADER`,
          offset,
          index,
        );
      }
      try {
        switch (h.type) {
          case RecordType.HEADER: {
            if (report.description !== null) {
              problem(
                "CorruptError",
                `${where(index, offset)}: a second HEADER record`,
                offset,
                index,
              );
              break;
            }
            const d = decodeHeader(payload, offset, index);
            report.description = d;
            offsets = new OffsetTable(d.regions.length);
            digest = new ContentDigestBuilder(d);
            break;
          }
          case RecordType.PAGES: {
            counts.pageRecords++;
            const d = report.description;
            if (d === null) {
              digestBroken = true;
              problem(
                "CorruptError",
                `${where(index, offset)}: page record before any header`,
                offset,
                index,
              );
              break;
            }
            let p;
            try {
              p = decodePageRecord(payload, d.regions, offset, index);
            } catch (e) {
              digestBroken = true;
              throw e;
            }
            counts.pageOccurrences += p.pages.length;
            const ps = d.regions[p.region].pageSize;
            const data = expandPageData(p, ps, offset, index, (reason) => {
              digestBroken = true;
              throw new Error(reason);
            });
            for (let i = 0; i < p.pages.length; i++) {
              offsets.set(p.region, p.pages[i], offset);
              if (digest === null) continue;
              if (data === null) digest.clearPage(p.region, p.pages[i]);
              else digest.setPage(p.region, p.pages[i], data.subarray(i * ps, (i + 1) * ps));
            }
            break;
          }
          case RecordType.DEVICE: {
            counts.devices++;
            let dev;
            try {
              dev = decodeDeviceSection(payload, offset, index);
            } catch (e) {
              digestBroken = true;
              throw e;
            }
            deviceOffsets.set(`${dev.id}\u0000${dev.instance}`, offset);
            digest?.setDevice(dev);
            if (dev.encoding === "cbor") {
              const bad = checkCborShape(dev.state);
              if (bad !== null) {
                problem(
                  "CorruptError",
                  `${
                    where(index, offset)
                  }: device '${dev.id}'#${dev.instance} state does not decode: ${bad}`,
                  offset,
                  index,
                );
              }
            }
            break;
          }
          case RecordType.INDEX: {
            const d = report.description;
            if (d === null) break;
            if (indexOffset !== 0) {
              problem(
                "CorruptError",
                `${where(index, offset)}: a second INDEX record`,
                offset,
                index,
              );
              break;
            }
            indexOffset = offset;
            const idx = decodeIndex(
              payload,
              d.regions.map((r) => r.size / r.pageSize),
              offset,
              offset,
              index,
            );
            let mismatches = 0;
            let first = "";
            for (let i = 0; i < idx.pages.length; i++) {
              const seen = offsets.get(idx.regions[i], idx.pages[i]);
              if (seen !== idx.pageOffsets[i] && !unreadable.has(idx.pageOffsets[i])) {
                if (mismatches++ === 0) {
                  first = `entry ${i} puts page ${idx.pages[i]} of region '${
                    d.regions[idx.regions[i]].name
                  }' at byte ${idx.pageOffsets[i]}, but its last record is ${
                    seen < 0 ? "nowhere" : `at byte ${seen}`
                  }`;
                }
              }
            }
            if (mismatches > 0) {
              const more = mismatches > 1
                ? ` (and ${mismatches - 1} more of ${idx.pages.length} entries)`
                : "";
              problem(
                "CorruptError",
                `${where(index, offset)}: index ${first}${more}`,
                offset,
                index,
              );
            }
            const present = offsets.count();
            if (mismatches === 0 && unreadable.size === 0 && idx.pages.length !== present) {
              problem(
                "CorruptError",
                `${
                  where(index, offset)
                }: index has ${idx.pages.length} page entries but ${present} pages appear`,
                offset,
                index,
              );
            }
            const devs = new Set(deviceOffsets.values());
            if (
              idx.deviceOffsets.length !== devs.size || idx.deviceOffsets.some((o) => !devs.has(o))
            ) {
              problem(
                "CorruptError",
                `${where(index, offset)}: index device entries do not match the device records`,
                offset,
                index,
              );
            }
            break;
          }
          default: {
            if (isCritical(h.flags)) {
              problem(
                "UnsupportedError",
                `${where(index, offset)}: critical record type ${
                  recordTypeName(h.type)
                } is unknown to this reader`,
                offset,
                index,
              );
            }
          }
        }
      } catch (e) {
        fromError(e, offset, index);
      }
    }
  } catch (e) {
    if (!(e instanceof StopScan)) throw e;
  } finally {
    report.bytes = src.position;
    await src.release();
  }
  return report;
}
