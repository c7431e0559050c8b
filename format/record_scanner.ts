/**
 * The record scanner: the framing of FORMAT.md §3 read from a byte source, and nothing else. It
 * hands out one record at a time (head, payload, stored and computed CRC32C), and reports framing
 * it cannot follow (a length over the cap, input that ends inside a record) as damage. What the
 * records mean, and every rule about their order, counts and digests, is the business of
 * {@linkcode SnapshotChecker} in `file_checks.ts`.
 *
 * Two ways to meet lost framing: `resync: false` reports it and ends (the streaming reader throws
 * on it anyway); `resync: true` searches forward for the next record whose head names a known type
 * and whose CRC32C matches, reports how many bytes it skipped, and goes on (verify).
 *
 * Bytes are read in large chunks into one buffer that is reused: a record handed out is a view
 * into it, valid until the next call. From a source that offers its chunks (a stream of
 * `Uint8Array`s, such as a writer's records on their way to a read-back check), a record that
 * lies within one chunk is a view of that chunk instead: it is never copied. Every byte of the input passes once, in order, through
 * `onConsumed` (for the file digest and progress), when the scanner moves past it.
 *
 * @module
 */
import { crc32c } from "./checksum.ts";
import {
  FLAG_CRITICAL,
  MAX_RECORD_PAYLOAD,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
} from "./constants.ts";
import { CorruptError, type LsnapError, TruncatedError } from "./errors.ts";
import { isKnownType } from "./record.ts";

/** Where the scanner's bytes come from. */
export interface ByteSource {
  /**
   * Reads up to `into.length` bytes into `into`. Returns the bytes read as a view of the same
   * memory (its `buffer` may be a new ArrayBuffer object when the memory was transferred, as a
   * BYOB read does); an empty view means the end of the input.
   */
  read(into: Uint8Array): Promise<Uint8Array>;
  /**
   * Optional: the next bytes as the source already holds them (a chunk of a stream), to be looked
   * at without a copy; valid until the next call. An empty view means the end of the input.
   */
  readChunk?(): Promise<Uint8Array>;
  /** Releases the source (cancels a stream that was not read to its end). */
  close(): Promise<void>;
}

/**
 * A {@linkcode ByteSource} over a stream. A byte stream (a file's or standard input's `readable`)
 * is read with a BYOB reader straight into the scanner's buffer; any other stream is copied.
 */
export function streamSource(stream: ReadableStream<Uint8Array>): ByteSource {
  let byob: ReadableStreamBYOBReader | null = null;
  try {
    byob = stream.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream: read its chunks and copy them.
  }
  if (byob !== null) {
    const r = byob;
    let ended = false;
    return {
      async read(into) {
        if (ended || into.length === 0) return into.subarray(0, 0);
        const got = await r.read(into);
        if (got.done || got.value === undefined) {
          ended = true;
          // The closed stream hands the (transferred) memory back in an empty view.
          return got.value ?? new Uint8Array(0);
        }
        return got.value;
      },
      async close() {
        if (!ended) await r.cancel().catch(() => {});
        r.releaseLock();
      },
    };
  }
  const reader = stream.getReader();
  let pending: Uint8Array = new Uint8Array(0);
  let ended = false;
  const next = async () => {
    while (pending.length === 0 && !ended) {
      const got = await reader.read();
      if (got.done) ended = true;
      else pending = got.value;
    }
  };
  return {
    async read(into) {
      await next();
      const n = Math.min(into.length, pending.length);
      into.set(pending.subarray(0, n));
      pending = pending.subarray(n);
      return into.subarray(0, n);
    },
    async readChunk() {
      await next();
      const chunk = pending;
      pending = new Uint8Array(0);
      return chunk;
    },
    async close() {
      if (!ended) await reader.cancel().catch(() => {});
      reader.releaseLock();
    },
  };
}

/** One framed record, as the scanner found it. Views are valid until the next call. */
export interface ScannedRecord {
  kind: "record";
  /** Byte offset of the record's head. */
  offset: number;
  /** Index of the record in the file (the header record is 0). */
  recordIndex: number;
  type: number;
  flags: number;
  /** The whole record: head, payload and CRC. */
  bytes: Uint8Array;
  payload: Uint8Array;
  /** The CRC32C the record stores, and the one computed over its head and payload. */
  storedCrc: number;
  actualCrc: number;
  /**
   * With `resync`: the CRC failed and the head names no known type with defined flags, so the
   * scanner will not trust its length: the next call searches for a record inside it.
   */
  suspect: boolean;
}

/** Framing the scanner could not follow. With `resync`, scanning goes on after it. */
export interface ScanDamage {
  kind: "damage";
  error: LsnapError;
}

/** The end of the input. `clean` when it falls between records (not inside one). */
export interface ScanEnd {
  kind: "end";
  offset: number;
  recordIndex: number;
  clean: boolean;
}

/** What {@linkcode RecordScanner.next} returns. */
export type ScanItem = ScannedRecord | ScanDamage | ScanEnd;

/** Options of {@linkcode RecordScanner}. */
export interface RecordScannerOptions {
  /** After lost framing, search forward for the next valid record (default false: end). */
  resync?: boolean;
  /** Called with every byte range of the input, in order, once the scanner moves past it. */
  onConsumed?: (bytes: Uint8Array) => void;
  /** Size of each read (default 4 MiB); the buffer grows to hold a larger record. */
  chunkSize?: number;
  /**
   * Asked for each framed record: true when its CRC32C is checked elsewhere, by a caller that
   * reports a mismatch itself (the read-back's share, `_output_check.ts`); the scanner then does
   * not compute it and hands the record out with `actualCrc` equal to `storedCrc`. Not for
   * `resync`, which judges heads by their CRC32C.
   */
  crcElsewhere?: (offset: number, type: number, payload: Uint8Array) => boolean;
}

/** True when a head could start a record: a known type, no reserved flag, a length under the cap. */
function plausibleHead(type: number, flags: number, length: number): boolean {
  return isKnownType(type) && (flags & ~FLAG_CRITICAL) === 0 && length <= MAX_RECORD_PAYLOAD;
}

/**
 * Reads records from a {@linkcode ByteSource} (FORMAT.md §3).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { RecordScanner, streamSource } from "./record_scanner.ts";
 * import { encodeRecord } from "./record.ts";
 * const bytes = new Uint8Array(16 + 13);
 * bytes.set(encodeRecord(0x7001, 0, new Uint8Array([42])), 16);
 * const s = new RecordScanner(streamSource(ReadableStream.from([bytes])));
 * await s.take(16); // the prologue is the caller's business
 * const r = await s.next();
 * assert(r.kind === "record" && r.payload[0] === 42 && r.storedCrc === r.actualCrc);
 * assert((await s.next()).kind === "end");
 * ```
 */
export class RecordScanner {
  /** Where bytes are looked at: `own`, or a chunk of the source while `borrowed`. */
  private buf: Uint8Array;
  private own: Uint8Array;
  private borrowed = false;
  private start = 0;
  private end = 0;
  private eof = false;
  /** File offset of `buf[start]`. */
  private pos = 0;
  /** Bytes handed out by the last call, consumed at the next one. */
  private held = 0;
  /** A record handed out whose CRC failed and whose head is implausible: rescan inside it. */
  private suspect: ScannedRecord | null = null;
  private index = 0;
  private readonly resync: boolean;
  private readonly onConsumed: (bytes: Uint8Array) => void;
  private readonly chunkSize: number;
  private readonly crcElsewhere: RecordScannerOptions["crcElsewhere"];

  constructor(private readonly source: ByteSource, options: RecordScannerOptions = {}) {
    this.resync = options.resync ?? false;
    this.crcElsewhere = options.crcElsewhere;
    this.onConsumed = options.onConsumed ?? (() => {});
    this.chunkSize = options.chunkSize ?? 4 << 20;
    this.own = new Uint8Array(this.chunkSize);
    this.buf = this.own;
  }

  /** Offset of the next byte not yet handed out. */
  get position(): number {
    return this.pos + this.held;
  }

  /** Index the next record will get. */
  get nextIndex(): number {
    return this.index;
  }

  private consume(n: number): void {
    if (n === 0) return;
    this.onConsumed(this.buf.subarray(this.start, this.start + n));
    this.start += n;
    this.pos += n;
  }

  private release(): void {
    this.consume(this.held);
    this.held = 0;
  }

  /** Makes at least `n` bytes available from `start` (fewer only at the end of the input). */
  private async fill(n: number): Promise<number> {
    while (this.end - this.start < n && !this.eof) {
      if (this.borrowed) {
        // The chunk ends inside what is needed: what is left of it moves to our own buffer.
        const live = this.buf.subarray(this.start, this.end);
        if (this.own.length < Math.max(n, live.length)) {
          this.own = new Uint8Array(Math.max(n, this.own.length * 2));
        }
        this.own.set(live);
        this.buf = this.own;
        this.borrowed = false;
        this.start = 0;
        this.end = live.length;
        continue;
      }
      if (this.start === this.end && this.source.readChunk !== undefined) {
        const chunk = await this.source.readChunk();
        if (chunk.length === 0) {
          this.eof = true;
          break;
        }
        this.buf = chunk;
        this.borrowed = true;
        this.start = 0;
        this.end = chunk.length;
        continue;
      }
      if (this.start + n > this.buf.length) {
        const live = this.end - this.start;
        if (n > this.buf.length) {
          const bigger = new Uint8Array(Math.max(n, this.buf.length * 2));
          bigger.set(this.buf.subarray(this.start, this.end));
          this.buf = this.own = bigger;
        } else {
          this.buf.copyWithin(0, this.start, this.end);
        }
        this.start = 0;
        this.end = live;
      }
      const capacity = this.buf.length;
      const got = await this.source.read(this.buf.subarray(this.end));
      // A BYOB read transfers the buffer: keep using its memory under the new object.
      if (got.buffer !== this.buf.buffer && got.buffer.byteLength === capacity) {
        this.buf = this.own = new Uint8Array(got.buffer);
      }
      if (got.length === 0) this.eof = true;
      this.end += got.length;
    }
    return Math.min(n, this.end - this.start);
  }

  /** Up to `n` raw bytes (fewer at the end of the input); a view valid until the next call. */
  async take(n: number): Promise<Uint8Array> {
    this.release();
    const k = await this.fill(n);
    this.held = k;
    return this.buf.subarray(this.start, this.start + k);
  }

  /** True when no byte remains. */
  async atEnd(): Promise<boolean> {
    this.release();
    return (await this.fill(1)) === 0;
  }

  /** The next record, a framing problem, or the end of the input. */
  async next(): Promise<ScanItem> {
    if (this.ended) {
      return { kind: "end", offset: this.position, recordIndex: this.index, clean: false };
    }
    const suspect = this.suspect;
    this.suspect = null;
    if (suspect !== null) {
      // Its CRC failed and its head names no known type with defined flags: not a record, so
      // look for one inside it.
      this.held = 0;
      return await this.lost(
        suspect.offset,
        suspect.recordIndex,
        "record CRC32C mismatch and no valid record head",
        "CorruptError",
        "framing lost; no valid record follows",
      );
    }
    this.release();
    const offset = this.pos;
    const recordIndex = this.index;
    const have = await this.fill(RECORD_HEAD_SIZE);
    if (have === 0) return { kind: "end", offset, recordIndex, clean: true };
    if (have < RECORD_HEAD_SIZE) {
      this.consume(have);
      this.index++;
      return this.damageThenEnd(
        new TruncatedError("input ends inside the record head", { offset, recordIndex }),
      );
    }
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.start, RECORD_HEAD_SIZE);
    const type = v.getUint16(0, true);
    const flags = v.getUint16(2, true);
    const length = v.getUint32(4, true);
    if (length > MAX_RECORD_PAYLOAD) {
      const reason = `payload length ${length} exceeds the cap of ${MAX_RECORD_PAYLOAD}`;
      return await this.lost(offset, recordIndex, reason, "CorruptError", reason);
    }
    const total = RECORD_HEAD_SIZE + length + RECORD_TAIL_SIZE;
    const got = await this.fill(total);
    if (got < total) {
      const reason = `record declares ${length} payload bytes but the input ends ${
        got - RECORD_HEAD_SIZE
      } bytes later`;
      return await this.lost(offset, recordIndex, reason, "TruncatedError", reason);
    }
    const record = this.recordAt(offset, recordIndex, type, flags, length);
    this.index++;
    this.held = total;
    if (record.suspect) this.suspect = record;
    return record;
  }

  private recordAt(
    offset: number,
    recordIndex: number,
    type: number,
    flags: number,
    length: number,
  ): ScannedRecord {
    const bytes = this.buf.subarray(
      this.start,
      this.start + RECORD_HEAD_SIZE + length + RECORD_TAIL_SIZE,
    );
    const end = RECORD_HEAD_SIZE + length;
    const storedCrc = new DataView(bytes.buffer, bytes.byteOffset + end, 4).getUint32(0, true);
    const elsewhere = !this.resync && this.crcElsewhere !== undefined &&
      this.crcElsewhere(offset, type, bytes.subarray(RECORD_HEAD_SIZE, end));
    const actualCrc = elsewhere ? storedCrc : crc32c(bytes.subarray(0, end));
    return {
      kind: "record",
      offset,
      recordIndex,
      type,
      flags,
      bytes,
      payload: bytes.subarray(RECORD_HEAD_SIZE, end),
      storedCrc,
      actualCrc,
      suspect: this.resync && storedCrc !== actualCrc && !isKnownType(type) &&
        (flags & ~FLAG_CRITICAL) !== 0,
    };
  }

  private ended = false;

  private damageThenEnd(error: LsnapError): ScanDamage {
    this.ended = true;
    return { kind: "damage", error };
  }

  /**
   * Framing is lost at `offset`. Without resync, or when no valid record follows, reports
   * `finalReason` and ends; otherwise reports `reason` with the bytes skipped and goes on at the
   * next valid record.
   */
  private async lost(
    offset: number,
    recordIndex: number,
    reason: string,
    finalKind: "CorruptError" | "TruncatedError",
    finalReason: string,
  ): Promise<ScanItem> {
    this.index = recordIndex + 1;
    const loc = { offset, recordIndex };
    if (this.resync && await this.search()) {
      return {
        kind: "damage",
        error: new CorruptError(
          `${reason}; framing lost: skipped ${
            this.pos - offset
          } bytes to the next valid record at byte ${this.pos}`,
          loc,
        ),
      };
    }
    return this.damageThenEnd(
      finalKind === "CorruptError"
        ? new CorruptError(finalReason, loc)
        : new TruncatedError(finalReason, loc),
    );
  }

  /**
   * Moves past the byte at the current position and on to the next offset where a plausible head
   * starts a complete record whose CRC32C matches. False (all consumed) when none follows. A
   * false match needs a known type, a length within the cap and a matching CRC32C.
   */
  private async search(): Promise<boolean> {
    this.release();
    await this.fill(1);
    this.consume(Math.min(1, this.end - this.start));
    const window = 1 << 20;
    for (;;) {
      const n = await this.fill(window);
      if (n < RECORD_HEAD_SIZE + RECORD_TAIL_SIZE) {
        this.consume(n);
        return false;
      }
      const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.start, n);
      let at = -1;
      for (let i = 0; i + RECORD_HEAD_SIZE <= n; i++) {
        if (
          plausibleHead(v.getUint16(i, true), v.getUint16(i + 2, true), v.getUint32(i + 4, true))
        ) {
          at = i;
          break;
        }
      }
      if (at < 0) {
        this.consume(n - RECORD_HEAD_SIZE + 1);
        continue;
      }
      this.consume(at);
      const hv = new DataView(this.buf.buffer, this.buf.byteOffset + this.start, RECORD_HEAD_SIZE);
      const length = hv.getUint32(4, true);
      const total = RECORD_HEAD_SIZE + length + RECORD_TAIL_SIZE;
      if ((await this.fill(total)) === total) {
        const r = this.recordAt(this.pos, 0, hv.getUint16(0, true), hv.getUint16(2, true), length);
        if (r.storedCrc === r.actualCrc) return true;
      }
      this.consume(1);
    }
  }
}
