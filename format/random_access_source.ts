/**
 * Random-access byte sources: what {@linkcode SnapshotFileReader} reads a snapshot through. A
 * source has a fixed size and answers `read(offset, length)` with exactly those bytes or a typed
 * {@linkcode SourceError}; `readMany` reads several ranges with some in flight at once, merging
 * neighbours into one request. Two implementations: a local file (`file_source.ts`) and an
 * `http://` or `https://` URL read with Range requests (`http_source.ts`); `openSource` in
 * `open_source.ts` picks one from a path or URL.
 *
 * A pipe is not a source: it cannot be read at random, and opening one is refused with
 * {@linkcode NotRandomAccessError} (read it with `SnapshotStreamReader` instead).
 *
 * @module
 */

/** A byte range: `length` bytes from `offset`. */
export interface ByteRange {
  /** First byte, from the start of the source. */
  offset: number;
  /** Number of bytes. */
  length: number;
}

/** Options of one read. */
export interface ReadOptions {
  /** Aborts the read (the source's own timeout still applies). */
  signal?: AbortSignal;
  /**
   * True for a read something is waiting on (a guest's page fault): it takes the next free slot
   * of the source's in-flight pool before any read that is not urgent (a prefetch).
   */
  urgent?: boolean;
}

/** Bytes a source has served, for metrics. */
export interface SourceStats {
  /** Requests made (an HTTP request, or one file read), retries included. */
  requests: number;
  /** Bytes received from the underlying file or server. */
  bytesRead: number;
  /** Requests that were retried after a transient failure. */
  retries: number;
}

/**
 * A random-access, fixed-size byte source.
 *
 * Every read returns exactly `length` bytes, in a new buffer the caller owns, or throws a
 * {@linkcode SourceError}. Reads may run concurrently; an implementation bounds how many reach
 * the file or server at once.
 */
export interface RandomAccessSource {
  /** What to call the source in messages: a path, or a URL without its query string. */
  readonly name: string;
  /** Size in bytes, fixed when the source was opened. */
  readonly size: number;
  /** Counters since the source was opened. */
  readonly stats: SourceStats;
  /**
   * What identifies this version of the file (size, and ETag and Last-Modified for a URL, or
   * inode and modification time for a file): plain data, to be sent to another thread that opens
   * the same path or URL with `expect`, so that both read the same version.
   */
  readonly identity: SourceIdentity;
  /** Reads `length` bytes at `offset`; a range past `size` is a `RangeError`. */
  read(offset: number, length: number, options?: ReadOptions): Promise<Uint8Array>;
  /**
   * Reads several ranges, several in flight, neighbours merged into one request (see
   * {@linkcode coalesceRanges}); the result holds one buffer per range, in the order given.
   */
  readMany(ranges: readonly ByteRange[], options?: ReadOptions): Promise<Uint8Array[]>;
  /** Releases the source; reads after it throw {@linkcode SourceClosedError}. Safe to call twice. */
  close(): void;
}

/** What identifies one version of a source's file; see {@linkcode RandomAccessSource.identity}. */
export interface SourceIdentity {
  /** Size in bytes. */
  size: number;
  /** HTTP: the first answer's ETag, or null. */
  etag?: string | null;
  /** HTTP: the first answer's Last-Modified, or null. */
  lastModified?: string | null;
  /** File: inode number, or null where the platform has none. */
  ino?: number | null;
  /** File: modification time in ms since 1970, or null. */
  mtimeMs?: number | null;
}

/**
 * Throws {@linkcode SourceChangedError} when `actual` differs from `expected` in a field both
 * know (a null or absent field is not compared).
 */
export function checkIdentity(
  name: string,
  expected: SourceIdentity | undefined,
  actual: SourceIdentity,
): void {
  if (expected === undefined) return;
  for (const key of ["size", "etag", "lastModified", "ino", "mtimeMs"] as const) {
    const [e, a] = [expected[key], actual[key]];
    if (e !== undefined && e !== null && a !== undefined && a !== null && e !== a) {
      throw new SourceChangedError(
        name,
        `its ${key} is ${a}, not the ${e} expected (the file changed since it was first opened)`,
      );
    }
  }
}

/** Where a source error happened. */
export interface SourceErrorLocation {
  /** The byte range being read, when the error concerns one. */
  range?: ByteRange;
  /** The underlying error (an I/O error, a network error, an abort). */
  cause?: unknown;
}

/**
 * Base class of the errors a {@linkcode RandomAccessSource} raises. The message reads
 * "Cannot read <name> at byte <offset> (<length> bytes): <reason>", or "Cannot open <name>:
 * <reason>" when no range is concerned.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { SourceChangedError, SourceError } from "./random_access_source.ts";
 * const e = new SourceChangedError("vm.lsnap", "its ETag changed", { range: { offset: 16, length: 8 } });
 * assert(e instanceof SourceError);
 * assert(e.message === "Cannot read vm.lsnap at byte 16 (8 bytes): its ETag changed");
 * ```
 */
export class SourceError extends Error {
  /** The source's name (path or URL). */
  readonly source: string;
  /** The range being read, or undefined. */
  readonly range: ByteRange | undefined;
  /** The reason alone. */
  readonly reason: string;
  /** An error about `source` (path or URL), with `reason`, at `loc.range` when reading. */
  constructor(source: string, reason: string, loc: SourceErrorLocation = {}) {
    const what = loc.range === undefined
      ? `Cannot open ${source}`
      : `Cannot read ${source} at byte ${loc.range.offset} (${loc.range.length} bytes)`;
    super(`${what}: ${reason}`, loc.cause !== undefined ? { cause: loc.cause } : {});
    this.name = new.target.name;
    this.source = source;
    this.range = loc.range;
    this.reason = reason;
  }
}

/**
 * The input cannot be read at random: a pipe, a FIFO, a terminal, or an HTTP server that ignores
 * Range requests on a file too large to hold in memory. The message says what to do instead.
 */
export class NotRandomAccessError extends SourceError {
  /** `reason` says why `source` cannot be read at random, and what to do instead. */
  constructor(source: string, reason: string, loc: SourceErrorLocation = {}) {
    super(source, reason, loc);
    // The message of this class names the action, not the open: "Cannot read X at random: ...".
    this.message = `Cannot read ${source} at random: ${reason}`;
  }
}

/** The file or the object behind the URL changed (size, ETag or Last-Modified) while being read. */
export class SourceChangedError extends SourceError {}

/** The source ended before the bytes asked for: the file shrank, or a response body was cut off. */
export class SourceEndedError extends SourceError {}

/** A request did not finish within its time bound, on every attempt. */
export class SourceTimeoutError extends SourceError {}

/**
 * The server answered with an error status, or with an answer that breaks HTTP's rules for Range
 * requests (a Content-Range that is not the range asked for, a body of another length).
 */
export class SourceHttpError extends SourceError {
  /** The HTTP status of the last answer, or 0 when the connection failed before one. */
  readonly status: number;
  /** An HTTP failure of `source`, with the status of the last answer in `loc.status`. */
  constructor(source: string, reason: string, loc: SourceErrorLocation & { status: number }) {
    super(source, reason, loc);
    this.status = loc.status;
  }
}

/** A read after {@linkcode RandomAccessSource.close}. */
export class SourceClosedError extends SourceError {}

/** Throws a `RangeError` unless `[offset, offset + length)` lies within `[0, size]`. */
export function checkRange(name: string, size: number, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
    offset + length > size
  ) {
    throw new RangeError(
      `Cannot read ${name} at byte ${offset} (${length} bytes): the source is ${size} bytes`,
    );
  }
}

/** Limits of {@linkcode coalesceRanges}. */
export interface CoalesceOptions {
  /** Largest gap of unwanted bytes between two ranges that are still merged (default 16 KiB). */
  maxGap?: number;
  /**
   * Largest merged range; a single range longer than this stays alone (default 2 MiB: about two
   * of this library's records, so a batch of records still splits into enough requests to keep
   * several in flight).
   */
  maxLength?: number;
}

/** A merged range and the ranges (by their index in the input) it serves. */
export interface CoalescedRange extends ByteRange {
  /** Indexes into the input of the ranges this one covers. */
  parts: number[];
}

/**
 * Merges ranges that overlap or lie within `maxGap` bytes of each other into as few ranges as
 * possible without making any longer than `maxLength` (unless it was alone), in offset order. Over
 * HTTP one request costs a round trip, so fetching a few unwanted bytes between two records is
 * cheaper than a second request.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { coalesceRanges } from "./random_access_source.ts";
 * const merged = coalesceRanges(
 *   [{ offset: 100, length: 10 }, { offset: 0, length: 50 }, { offset: 60, length: 10 }],
 *   { maxGap: 20 },
 * );
 * assertEquals(merged, [
 *   { offset: 0, length: 70, parts: [1, 2] },
 *   { offset: 100, length: 10, parts: [0] },
 * ]);
 * ```
 */
export function coalesceRanges(
  ranges: readonly ByteRange[],
  options: CoalesceOptions = {},
): CoalescedRange[] {
  const maxGap = options.maxGap ?? 16 * 1024;
  const maxLength = options.maxLength ?? 2 * 1024 * 1024;
  const order = ranges.map((_, i) => i).sort((a, b) =>
    ranges[a].offset - ranges[b].offset || ranges[a].length - ranges[b].length
  );
  const out: CoalescedRange[] = [];
  let cur: CoalescedRange | null = null;
  for (const i of order) {
    const r = ranges[i];
    if (cur !== null) {
      const end = Math.max(cur.offset + cur.length, r.offset + r.length);
      if (r.offset <= cur.offset + cur.length + maxGap && end - cur.offset <= maxLength) {
        cur.length = end - cur.offset;
        cur.parts.push(i);
        continue;
      }
    }
    cur = { offset: r.offset, length: r.length, parts: [i] };
    out.push(cur);
  }
  return out;
}

/**
 * Reads `ranges` through `readOne`, merged by {@linkcode coalesceRanges}, at most `concurrency`
 * merged reads at once, and slices each merged buffer back into the ranges asked for (in the
 * input's order). Shared by the sources' `readMany`.
 */
export async function readCoalesced(
  ranges: readonly ByteRange[],
  readOne: (offset: number, length: number) => Promise<Uint8Array>,
  options: CoalesceOptions & { concurrency: number },
): Promise<Uint8Array[]> {
  const merged = coalesceRanges(ranges, options);
  const out = new Array<Uint8Array>(ranges.length);
  let next = 0;
  const worker = async () => {
    while (next < merged.length) {
      const m = merged[next++];
      const bytes = await readOne(m.offset, m.length);
      for (const i of m.parts) {
        const r = ranges[i];
        const start = r.offset - m.offset;
        // A range alone is handed over as it came; a shared buffer is copied so that each result
        // owns its memory and the merged buffer can be freed.
        out[i] = m.parts.length === 1 ? bytes : bytes.slice(start, start + r.length);
      }
    }
  };
  const workers = [];
  for (let i = 0; i < Math.max(1, Math.min(options.concurrency, merged.length)); i++) {
    workers.push(worker());
  }
  await Promise.all(workers);
  return out;
}

/** Options of {@linkcode sourceReadable}. */
export interface SourceReadableOptions {
  /** Bytes per read (default 4 MiB). */
  chunkSize?: number;
  /** Reads kept in flight ahead of the consumer (default 4); memory is about chunkSize × this. */
  ahead?: number;
  /** First byte (default 0). */
  start?: number;
}

/**
 * The source's bytes from `start` to its end as a stream, read in chunks with a few reads in
 * flight ahead of the consumer, so a streaming reader (`verify`, an eager `restore`) can read a
 * URL at the speed of several requests while memory stays bounded by `chunkSize × ahead`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { FileSource } from "./file_source.ts";
 * import { sourceReadable } from "./random_access_source.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([1, 2, 3, 4, 5]));
 * const source = await FileSource.open(path);
 * const bytes = await new Response(sourceReadable(source, { chunkSize: 2 })).bytes();
 * source.close();
 * assertEquals(bytes, new Uint8Array([1, 2, 3, 4, 5]));
 * await Deno.remove(path);
 * ```
 */
export function sourceReadable(
  source: RandomAccessSource,
  options: SourceReadableOptions = {},
): ReadableStream<Uint8Array> {
  const chunk = options.chunkSize ?? 4 * 1024 * 1024;
  const ahead = Math.max(1, options.ahead ?? 4);
  let next = options.start ?? 0;
  const pending: Promise<Uint8Array>[] = [];
  const controller = new AbortController();
  const fill = () => {
    while (pending.length < ahead && next < source.size) {
      const length = Math.min(chunk, source.size - next);
      const p = source.read(next, length, { signal: controller.signal });
      // A read that fails is reported when the consumer reaches it, not as an unhandled rejection.
      p.catch(() => {});
      pending.push(p);
      next += length;
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      fill();
      const p = pending.shift();
      if (p === undefined) {
        c.close();
        return;
      }
      c.enqueue(await p);
      fill();
    },
    cancel() {
      controller.abort();
    },
  }, { highWaterMark: 0 });
}
