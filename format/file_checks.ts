/**
 * Every file-level rule of FORMAT.md, in one place: the prologue (§2), the order of records (§3.2),
 * each record's CRC and layout (§3–§8), the index against the records actually read (§8), the
 * trailer's counts, the file digest and the content digest (§9, §10), the footer and the end of
 * the input (§9). {@linkcode SnapshotChecker} reads records through a {@linkcode RecordScanner} and
 * reports each problem, as an {@linkcode LsnapError} naming the record index and byte offset,
 * through one callback: the streaming reader's callback throws (it stops at the first), verify's
 * collects them and the scan goes on.
 *
 * @module
 */
import { OffsetTable } from "./_offset_table.ts";
import { checkCborShape } from "./_cbor_shape.ts";
import { digestPageData, type PageDigests, type PageJobRunner } from "./_page_digest.ts";
import { createBlake3, hex32, toHex } from "./checksum.ts";
import { FILE_MAGIC, FOOTER_SIZE, PROLOGUE_SIZE, RecordType } from "./constants.ts";
import { ContentDigestBuilder, type PageHashTable } from "./content_digest.ts";
import { decodeDeviceSection, type DeviceSection } from "./device_section.ts";
import {
  ChecksumError,
  CorruptError,
  type ErrorLocation,
  LsnapError,
  TruncatedError,
  UnsupportedError,
} from "./errors.ts";
import { decodeFooter } from "./footer.ts";
import {
  decodeHeader,
  decodePrologue,
  type FormatVersion,
  type MachineDescription,
} from "./header.ts";
import { decodeIndex, type SnapshotIndex } from "./index_record.ts";
import { decodePageRecord, expandPageData, type PageEncodingName } from "./page_record.ts";
import { decodeParentRecord, type ParentLink } from "./parent_record.ts";
import { isCritical, recordTypeName } from "./record.ts";
import { type ByteSource, RecordScanner, type ScannedRecord } from "./record_scanner.ts";
import { decodeTrailer, type Trailer } from "./trailer.ts";

/** Where a record is in its file: what every {@linkcode SnapshotRecord} carries. */
export interface RecordBase {
  /** Byte offset of the record. */
  offset: number;
  /** Index of the record (the header record is 0). */
  recordIndex: number;
}

/** One record as the readers yield it. */
export type SnapshotRecord =
  | RecordBase & { kind: "header"; version: FormatVersion; description: MachineDescription }
  | RecordBase & {
    kind: "pages";
    region: number;
    encoding: PageEncodingName;
    /** Page numbers, in record order (a later entry for the same page wins). */
    pages: Uint32Array;
    /** `pages.length × pageSize` bytes, or null for a zero record (or when not decoded). */
    data: Uint8Array | null;
  }
  | RecordBase & { kind: "parent"; link: ParentLink }
  | RecordBase & { kind: "device"; device: DeviceSection }
  | RecordBase & { kind: "index"; index: SnapshotIndex }
  | RecordBase & { kind: "extension"; type: number; payload: Uint8Array }
  | RecordBase & { kind: "trailer"; trailer: Trailer };

/** What a reader has counted so far, by record type (FORMAT.md §3.2). */
export interface RecordCounts {
  /** Records read, damaged ones included, the trailer excluded. */
  records: number;
  /** PAGES records (zero records included). */
  pageRecords: number;
  /** Page entries over all PAGES records: a page written twice counts twice. */
  pageOccurrences: number;
  /** DEVICE records. */
  devices: number;
  /** Optional records of a type this reader does not know, skipped (FORMAT.md §3.2). */
  extensions: number;
}

/** Options of {@linkcode SnapshotChecker}. */
export interface CheckerOptions {
  /**
   * Receives every problem. Throw from it to stop there (the checker's `records()` then rejects
   * with what it threw); return to let the checker go on.
   */
  report: (problem: LsnapError) => void;
  /**
   * What to do with page data: "data" expands it, yields it and computes the content digest;
   * "digest" computes the content digest without yielding the data (through `pool` when given);
   * "none" checks the records' layout only (no content digest). Default "data".
   */
  pages?: "data" | "digest" | "none";
  /** Check every INDEX entry against the records actually read (default true). */
  checkIndex?: boolean;
  /** Check that CBOR device state decodes (FORMAT.md §7.1; readers treat it as opaque). */
  checkDeviceState?: boolean;
  /** After lost framing, search for the next valid record and go on (default false). */
  resync?: boolean;
  /** With `pages: "digest"`: what takes page work off this thread (`PageDigestPool`'s workers). */
  pool?: PageJobRunner;
  /** Called with byte counts as the input is consumed (for progress). */
  onBytes?: (n: number) => void;
  /**
   * Keep the content digest's entries up to date while reading (default true), so that the digest
   * is quick once the trailer comes; false builds them once, there (less work in all: a caller
   * that waits for the verdict rather than for the trailer, such as flatten's read-back).
   */
  keepDigestEntries?: boolean;
  /**
   * What to do with a diff (a file with a PARENT record, FORMAT.md §14): "read" reads it,
   * "refuse" (the default) reports an {@linkcode UnsupportedError} at its PARENT record, so that
   * no caller takes a diff for the whole state by mistake.
   */
  diffs?: "read" | "refuse";
  /**
   * For a diff: the page hashes of its parent's whole state. With them the content digest is
   * computed over the parent's pages and the diff's changes and checked against the trailer
   * (FORMAT.md §14.3); without them a diff's content digest is not checked
   * (`contentDigestNeedsParent`).
   */
  parentPages?: PageHashTable;
}

/** Results of a page record's work that are waiting for their turn, in file order. */
interface PendingPages {
  region: number;
  pages: Uint32Array;
  loc: ErrorLocation;
  /** The result once known; until then `result` gives it. */
  settled: PageDigests | null;
  result?: Promise<PageDigests>;
}

/** Page records allowed in flight before the checker waits for the oldest. */
const MAX_PENDING = 16;

/**
 * Reads a snapshot record by record and applies every rule of FORMAT.md to it.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { SnapshotChecker } from "./file_checks.ts";
 * import { streamSource } from "./record_scanner.ts";
 * import type { LsnapError } from "./errors.ts";
 * const problems: LsnapError[] = [];
 * const c = new SnapshotChecker(streamSource(ReadableStream.from([new Uint8Array(40)])), {
 *   report: (e) => problems.push(e),
 * });
 * for await (const _ of c.records()) { /* none: the magic is wrong *\/ }
 * assert(problems[0].message === "Cannot read the file at byte 0: bad magic: not an .lsnap file");
 * ```
 */
export class SnapshotChecker {
  /** The machine description, once the header record was read. */
  description: MachineDescription | null = null;
  /** The version in the prologue, once read. */
  version: FormatVersion | null = null;
  /** The trailer, once read (even if it disagrees with the file). */
  trailer: Trailer | null = null;
  /** True once the trailer and the footer were read. */
  complete = false;
  /** The content digest computed from the records (null when not computed or not computable). */
  contentDigest: Uint8Array | null = null;
  /** The file digest computed from the bytes before the trailer (once the trailer was read). */
  fileDigest: Uint8Array | null = null;
  /** Record offsets of the last occurrence of each page (filled while reading). */
  pageOffsets: OffsetTable | null = null;
  /** Record offset of the last DEVICE record for each "id\0instance". */
  readonly deviceOffsets: Map<string, number> = new Map();
  /** Counts gathered while reading; `records` excludes the trailer. */
  readonly counts: RecordCounts = {
    records: 0,
    pageRecords: 0,
    pageOccurrences: 0,
    devices: 0,
    extensions: 0,
  };
  /** Offset of the INDEX record seen, or 0. */
  indexOffset = 0;
  /** Records read, the trailer included, damaged ones included. */
  recordsRead = 0;
  /** The PARENT record of a diff, once read (null for a full snapshot). */
  parent: ParentLink | null = null;
  /** True for a diff read without its parent's page hashes: its content digest is not checked. */
  contentDigestNeedsParent = false;

  private readonly scanner: RecordScanner;
  private readonly report: (problem: LsnapError) => void;
  private readonly pageMode: "data" | "digest" | "none";
  private readonly checkIndex: boolean;
  private readonly checkDeviceState: boolean;
  private readonly pool: PageJobRunner | undefined;
  private readonly diffs: "read" | "refuse";
  private readonly parentPages: PageHashTable | undefined;
  private readonly keepUp: boolean;
  private hashing = true;
  private digest: ContentDigestBuilder | null = null;
  /** A page or device record could not be read: the content digest cannot be computed. */
  private digestBroken = false;
  /** A PAGES record could not be read: its entries are unknown to the trailer's page count. */
  private pageCountUnknown = false;
  /** Offsets of records that could not be read: index entries naming them cannot be checked. */
  private readonly unreadable = new Set<number>();
  private readonly pending: PendingPages[] = [];
  private used = false;
  private fileHasher: Awaited<ReturnType<typeof createBlake3>> | null = null;

  constructor(private readonly source: ByteSource, options: CheckerOptions) {
    this.report = options.report;
    this.pageMode = options.pages ?? "data";
    this.checkIndex = options.checkIndex ?? true;
    this.checkDeviceState = options.checkDeviceState ?? false;
    this.pool = options.pool;
    this.diffs = options.diffs ?? "refuse";
    this.parentPages = options.parentPages;
    this.keepUp = options.keepDigestEntries ?? true;
    const onBytes = options.onBytes;
    const pool = options.pool;
    this.scanner = new RecordScanner(source, {
      resync: options.resync ?? false,
      // A runner that takes whole records checks their CRC32C (and reports it with their result).
      crcElsewhere: this.pageMode === "digest" && pool?.claim !== undefined
        ? (offset, type, payload) => pool.claim!(offset, type, payload)
        : undefined,
      onConsumed: (b) => {
        if (this.hashing) this.fileHasher!.update(b);
        onBytes?.(b.length);
      },
    });
  }

  /**
   * The page hashes of the whole state the file stands for, once its content digest was computed
   * and found equal to the trailer's (a diff needs `parentPages`); null otherwise.
   */
  get pageHashes(): PageHashTable | null {
    if (this.contentDigest === null || this.trailer === null || this.digest === null) return null;
    const same = this.contentDigest.every((b, i) => b === this.trailer!.contentDigest[i]);
    return same ? this.digest.pageHashes : null;
  }

  /** Bytes consumed so far. */
  get position(): number {
    return this.scanner.position;
  }

  private problem(
    kind: typeof CorruptError | typeof TruncatedError | typeof UnsupportedError,
    reason: string,
    loc: ErrorLocation,
  ): void {
    this.report(new kind(reason, loc));
  }

  /**
   * Yields every record in file order while checking it. Problems go to `report`; the generator
   * ends after the footer, at the end of the input, or after a problem nothing can follow (a bad
   * magic, another major version, framing lost without `resync`).
   */
  async *records(): AsyncGenerator<SnapshotRecord> {
    if (this.used) throw new Error("Cannot read snapshot: records() was already called");
    this.used = true;
    try {
      this.fileHasher = await createBlake3();
      this.fileHasher.init();
      if (!(await this.prologue())) return;
      for (;;) {
        const item = await this.scanner.next();
        if (item.kind === "damage") {
          this.report(item.error);
          continue;
        }
        if (item.kind === "end") {
          if (item.clean) {
            this.problem(
              TruncatedError,
              `input ends after ${item.recordIndex} records without a trailer: the file is incomplete`,
              item,
            );
          }
          await this.settleAll();
          return;
        }
        this.recordsRead++;
        if (item.storedCrc !== item.actualCrc) {
          this.damaged(item);
          if (item.type === RecordType.TRAILER) {
            await this.settleAll();
            return;
          }
          continue;
        }
        if (item.recordIndex === 0 && item.type !== RecordType.HEADER) {
          this.problem(
            CorruptError,
            `the first record is ${recordTypeName(item.type)}, not HEADER`,
            item,
          );
        }
        if (item.type === RecordType.TRAILER) {
          const t = await this.finish(item);
          if (t !== null) yield { offset: item.offset, recordIndex: item.recordIndex, ...t };
          return;
        }
        this.counts.records++;
        const r = await this.record(item);
        if (r !== null) yield r;
        this.applySettled();
        if (this.pending.length > MAX_PENDING) await this.settleOne();
      }
    } finally {
      await this.source.close();
    }
  }

  /** Checks the prologue (FORMAT.md §2); false when nothing after it can be read. */
  private async prologue(): Promise<boolean> {
    const at = { offset: 0, recordIndex: -1 };
    const bytes = await this.scanner.take(PROLOGUE_SIZE);
    if (bytes.length < PROLOGUE_SIZE) {
      if (bytes.some((b, i) => i < FILE_MAGIC.length && b !== FILE_MAGIC[i])) {
        this.problem(CorruptError, "bad magic: not an .lsnap file", at);
      } else {
        this.problem(
          TruncatedError,
          `input ends after ${bytes.length} bytes, inside the prologue`,
          at,
        );
      }
      return false;
    }
    try {
      this.version = decodePrologue(bytes);
    } catch (e) {
      if (!(e instanceof LsnapError)) throw e;
      this.report(e);
      // A bad magic or another major version: nothing after it can be trusted to mean anything.
      if (!(e instanceof ChecksumError)) return false;
    }
    return true;
  }

  /** A record whose CRC32C does not match: reported, counted, never parsed (FORMAT.md §3.1). */
  private damaged(r: ScannedRecord): void {
    this.report(
      new ChecksumError("record CRC32C mismatch", {
        offset: r.offset,
        recordIndex: r.recordIndex,
        expected: hex32(r.storedCrc),
        actual: hex32(r.actualCrc),
      }),
    );
    this.unreadable.add(r.offset);
    if (r.type === RecordType.PAGES || r.type === RecordType.DEVICE) this.digestBroken = true;
    // A head the scanner does not trust is not counted: it searches for a record inside it.
    if (r.suspect) {
      this.recordsRead--;
      return;
    }
    if (r.type === RecordType.TRAILER) {
      this.hashing = false;
      return;
    }
    this.counts.records++;
    if (r.type === RecordType.PAGES) {
      this.counts.pageRecords++;
      this.pageCountUnknown = true;
    }
    if (r.type === RecordType.DEVICE) this.counts.devices++;
  }

  /** Checks one record whose CRC matched; returns what to yield, or null. */
  private async record(r: ScannedRecord): Promise<SnapshotRecord | null> {
    const loc = { offset: r.offset, recordIndex: r.recordIndex };
    try {
      switch (r.type) {
        case RecordType.HEADER:
          return this.header(r, loc);
        case RecordType.PAGES:
          return await this.pageRecord(r, loc);
        case RecordType.DEVICE:
          return this.device(r, loc);
        case RecordType.INDEX:
          return this.index(r, loc);
        case RecordType.PARENT:
          return this.parentRecord(r, loc);
        default:
          if (isCritical(r.flags)) {
            this.problem(
              UnsupportedError,
              `critical record type ${recordTypeName(r.type)} is unknown to this reader`,
              loc,
            );
            return null;
          }
          this.counts.extensions++;
          return { ...loc, kind: "extension", type: r.type, payload: r.payload.slice() };
      }
    } catch (e) {
      // A decoder's verdict on the payload (FORMAT.md §5–§8).
      if (!(e instanceof LsnapError)) throw e;
      this.report(e);
      return null;
    }
  }

  private header(r: ScannedRecord, loc: ErrorLocation): SnapshotRecord | null {
    if (this.description !== null) {
      this.problem(CorruptError, "a second HEADER record", loc);
      return null;
    }
    const d = decodeHeader(r.payload, r.offset, r.recordIndex);
    this.description = d;
    this.pageOffsets = new OffsetTable(d.regions.length);
    if (this.pageMode !== "none") {
      this.digest = new ContentDigestBuilder(d, undefined, { keepUp: this.keepUp });
    }
    return { ...loc, kind: "header", version: this.version!, description: d };
  }

  /** The PARENT record (FORMAT.md §14.1): only right after the HEADER, at most once. */
  private parentRecord(r: ScannedRecord, loc: ErrorLocation): SnapshotRecord | null {
    const d = this.description;
    if (r.recordIndex !== 1 || d === null || this.parent !== null) {
      this.digestBroken = true;
      this.problem(CorruptError, "a PARENT record that does not follow the HEADER", loc);
      return null;
    }
    const link = decodeParentRecord(r.payload, r.offset, r.recordIndex);
    this.parent = link;
    if (this.diffs === "refuse") {
      this.problem(
        UnsupportedError,
        `the file is a diff on '${link.parentName}' (chain depth ${link.depth}), not a whole ` +
          "state: read it through its chain (openChain, livesnap flatten)",
        loc,
      );
      return null;
    }
    if (this.pageMode !== "none") {
      if (this.parentPages === undefined) {
        this.contentDigestNeedsParent = true;
        this.digest = new ContentDigestBuilder(d, undefined, { keepUp: this.keepUp });
      } else if (!this.parentPages.fits(d.regions)) {
        this.digestBroken = true;
        this.problem(CorruptError, "the diff's regions are not its parent's", loc);
      } else {
        this.digest = new ContentDigestBuilder(d, this.parentPages, { keepUp: this.keepUp });
      }
    }
    return { ...loc, kind: "parent", link };
  }

  private async pageRecord(r: ScannedRecord, loc: ErrorLocation): Promise<SnapshotRecord | null> {
    this.counts.pageRecords++;
    const d = this.description;
    if (d === null) {
      this.digestBroken = true;
      this.pageCountUnknown = true;
      this.problem(CorruptError, "page record before any header", loc);
      return null;
    }
    let p;
    try {
      p = decodePageRecord(r.payload, d.regions, r.offset, r.recordIndex);
    } catch (e) {
      this.digestBroken = true;
      this.pageCountUnknown = true;
      throw e;
    }
    this.counts.pageOccurrences += p.pages.length;
    for (let i = 0; i < p.pages.length; i++) this.pageOffsets!.set(p.region, p.pages[i], r.offset);
    const ps = d.regions[p.region].pageSize;
    let data: Uint8Array | null = null;
    if (this.pageMode === "data") {
      data = expandPageData(p, ps, r.offset, r.recordIndex, (reason) => {
        this.digestBroken = true;
        throw new CorruptError(reason, loc);
      });
      // A raw record's data is a view of the scanner's buffer: hand out a copy that stays.
      if (data !== null && p.encoding === "raw") data = data.slice();
      const digest = this.digest!;
      if (data !== null) digest.setPageData(p.region, p.pages, data);
      else for (let i = 0; i < p.pages.length; i++) digest.clearPage(p.region, p.pages[i]);
    } else if (this.pageMode === "digest") {
      const entry: PendingPages = { region: p.region, pages: p.pages, loc, settled: null };
      if (p.encoding === "zero") {
        entry.settled = { zero: new Uint8Array(p.pages.length).fill(1), hashes: ZERO };
      } else {
        const job = { encoding: p.encoding, data: p.data, count: p.pages.length, pageSize: ps };
        // Accepted means copied: the scanner's buffer may change once this returns.
        const accepted = this.pool === undefined ? null : await this.pool.submit(job, loc);
        if (accepted === null) entry.settled = digestPageData(job);
        else {
          entry.result = accepted.result;
          accepted.result.then((x) => entry.settled = x, () => {});
        }
      }
      this.pending.push(entry);
    }
    return { ...loc, kind: "pages", region: p.region, encoding: p.encoding, pages: p.pages, data };
  }

  /** Applies the page results that are ready, in file order. */
  private applySettled(): void {
    while (this.pending.length > 0 && this.pending[0].settled !== null) {
      const p = this.pending.shift()!;
      this.apply(p, p.settled!);
    }
  }

  private async settleOne(): Promise<void> {
    const p = this.pending.shift()!;
    this.apply(p, p.settled ?? await p.result!);
  }

  private async settleAll(): Promise<void> {
    while (this.pending.length > 0) await this.settleOne();
  }

  private apply(p: PendingPages, r: PageDigests): void {
    if ("error" in r) {
      this.digestBroken = true;
      this.problem(CorruptError, r.error, p.loc);
      return;
    }
    this.digest!.setPageDigests(p.region, p.pages, r);
  }

  private device(r: ScannedRecord, loc: ErrorLocation): SnapshotRecord | null {
    this.counts.devices++;
    let device: DeviceSection;
    try {
      device = decodeDeviceSection(r.payload, r.offset, r.recordIndex);
    } catch (e) {
      this.digestBroken = true;
      throw e;
    }
    this.deviceOffsets.set(`${device.id}\u0000${device.instance}`, r.offset);
    this.digest?.setDevice(device);
    if (this.checkDeviceState && device.encoding === "cbor") {
      const bad = checkCborShape(device.state);
      if (bad !== null) {
        this.problem(
          CorruptError,
          `device '${device.id}'#${device.instance} state does not decode: ${bad}`,
          loc,
        );
      }
    }
    return { ...loc, kind: "device", device };
  }

  private index(r: ScannedRecord, loc: ErrorLocation): SnapshotRecord | null {
    const d = this.description;
    if (d === null) return null;
    if (this.indexOffset !== 0) {
      this.problem(CorruptError, "a second INDEX record", loc);
      return null;
    }
    this.indexOffset = r.offset;
    const idx = decodeIndex(
      r.payload,
      d.regions.map((x) => x.size / x.pageSize),
      r.offset,
      r.offset,
      r.recordIndex,
    );
    if (this.checkIndex) this.checkIndexEntries(idx, d, loc);
    return { ...loc, kind: "index", index: idx };
  }

  /** The index against the records actually read (FORMAT.md §8). */
  private checkIndexEntries(idx: SnapshotIndex, d: MachineDescription, loc: ErrorLocation): void {
    const table = this.pageOffsets!;
    let mismatches = 0;
    let first = "";
    for (let i = 0; i < idx.pages.length; i++) {
      const seen = table.get(idx.regions[i], idx.pages[i]);
      if (seen !== idx.pageOffsets[i] && !this.unreadable.has(idx.pageOffsets[i])) {
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
      this.problem(CorruptError, `index ${first}${more}`, loc);
    }
    const present = table.count();
    if (mismatches === 0 && this.unreadable.size === 0 && idx.pages.length !== present) {
      this.problem(
        CorruptError,
        `index has ${idx.pages.length} page entries but ${present} pages appear`,
        loc,
      );
    }
    const devs = new Set(this.deviceOffsets.values());
    if (idx.deviceOffsets.length !== devs.size || idx.deviceOffsets.some((o) => !devs.has(o))) {
      this.problem(CorruptError, "index device entries do not match the device records", loc);
    }
  }

  /**
   * The trailer, the digests, the footer and the end of the input (FORMAT.md §9); returns the
   * trailer to yield, or null when it does not decode.
   */
  private async finish(r: ScannedRecord): Promise<{ kind: "trailer"; trailer: Trailer } | null> {
    const loc = { offset: r.offset, recordIndex: r.recordIndex };
    this.fileDigest = this.fileHasher!.digest("binary");
    this.hashing = false;
    await this.settleAll();
    let trailer: Trailer | null = null;
    try {
      trailer = decodeTrailer(r.payload, r.offset, r.recordIndex);
    } catch (e) {
      if (!(e instanceof LsnapError)) throw e;
      this.report(e);
    }
    if (trailer !== null) {
      this.trailer = trailer;
      const c = this.counts;
      const pairs: [string, number, number][] = [
        ["record count", trailer.recordCount, c.records],
        ["page record count", trailer.pageRecordCount, c.pageRecords],
        ["page count", trailer.pageCount, c.pageOccurrences],
        ["device count", trailer.deviceCount, c.devices],
        ["index offset", trailer.indexOffset, this.indexOffset],
      ];
      for (const [what, declared, seen] of pairs) {
        if (declared !== seen && !(what === "page count" && this.pageCountUnknown)) {
          this.problem(
            CorruptError,
            `trailer declares ${what} ${declared} but the file has ${seen}`,
            loc,
          );
        }
      }
      this.compare("file digest", trailer.fileDigest, this.fileDigest, loc);
      if (this.digest !== null && !this.digestBroken && !this.contentDigestNeedsParent) {
        this.contentDigest = await this.digest.digest();
        this.compare("content digest", trailer.contentDigest, this.contentDigest, loc);
      }
    }
    const footerAt = this.scanner.position;
    const at = { offset: footerAt, recordIndex: -1 };
    const footer = await this.scanner.take(FOOTER_SIZE);
    if (footer.length < FOOTER_SIZE) {
      this.problem(
        TruncatedError,
        `input ends ${footer.length} bytes into the ${FOOTER_SIZE}-byte footer`,
        at,
      );
      return trailer === null ? null : { kind: "trailer", trailer };
    }
    try {
      const f = decodeFooter(footer, footerAt);
      if (
        f.trailerOffset !== r.offset || (trailer !== null && f.indexOffset !== trailer.indexOffset)
      ) {
        this.problem(
          CorruptError,
          `footer points at trailer ${f.trailerOffset} and index ${f.indexOffset}, but they are at ${r.offset} and ${
            trailer?.indexOffset ?? "?"
          }`,
          at,
        );
      }
    } catch (e) {
      if (!(e instanceof LsnapError)) throw e;
      this.report(e);
    }
    if (!(await this.scanner.atEnd())) {
      const end = this.scanner.position;
      this.problem(CorruptError, "bytes follow the footer", { offset: end, recordIndex: -1 });
    }
    this.complete = true;
    return trailer === null ? null : { kind: "trailer", trailer };
  }

  private compare(what: string, expected: Uint8Array, actual: Uint8Array, loc: ErrorLocation) {
    const e = toHex(expected);
    const a = toHex(actual);
    if (e !== a) {
      this.report(new ChecksumError(`${what} mismatch`, { ...loc, expected: e, actual: a }));
    }
  }
}

const ZERO = new Uint8Array(0);
