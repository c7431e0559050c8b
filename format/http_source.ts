/**
 * An `http://` or `https://` URL as a {@linkcode RandomAccessSource}, read with HTTP Range
 * requests (RFC 9110 §14): the way object stores (S3 and the stores compatible with it, GCS,
 * Azure Blob, any static file server that honours `Range`) serve one part of a file.
 *
 * What it guarantees:
 * - **Exactly the bytes asked for.** Every answer must be `206 Partial Content` with a
 *   `Content-Range` naming exactly the range asked for and the size seen when the source was
 *   opened, and a body of exactly that length; anything else is a {@linkcode SourceHttpError}.
 * - **One version of the file.** The first answer's strong `ETag` is sent as `If-Range` on every
 *   later request, and every answer's `ETag`, `Last-Modified` and total size are compared with the
 *   first: a file replaced mid-read is a {@linkcode SourceChangedError}, never a mix of two files.
 * - **Every wait has a bound.** Each request (headers and body) has a timeout
 *   (`timeoutMs`, default 30 s); a failed request (timeout, connection lost, body cut short,
 *   status 5xx or 429) is retried `retries` times (default 2) after a doubling delay, then
 *   reported ({@linkcode SourceTimeoutError}, {@linkcode SourceEndedError},
 *   {@linkcode SourceHttpError}).
 * - **Several ranges in flight.** At most `concurrency` requests (default 4) run at once, shared by
 *   every caller; an `urgent` read (a demand fault) takes the next free slot before a prefetch.
 *   `readMany` merges ranges within `coalesce.maxGap` of each other into one request.
 * - **Bounded memory.** Only the ranges asked for are held. A server that ignores `Range` (it
 *   answers 200 with the whole file) is accepted only for a file of at most `maxWholeBytes`
 *   (default 16 MiB), which is then held in memory; a larger one is refused with
 *   {@linkcode NotRandomAccessError} (download it, or serve it from a server that honours Range).
 *
 * Redirects are followed by `fetch` on each request (the original URL is asked each time, so a
 * short-lived signed redirect target is never reused after it expires). The name used in
 * messages is the URL without its query string or credentials (a signed URL's signature stays out
 * of logs).
 *
 * @module
 */
import {
  type ByteRange,
  checkIdentity,
  checkRange,
  type CoalesceOptions,
  NotRandomAccessError,
  type RandomAccessSource,
  readCoalesced,
  type ReadOptions,
  SourceChangedError,
  SourceClosedError,
  SourceEndedError,
  SourceError,
  SourceHttpError,
  type SourceIdentity,
  type SourceStats,
  SourceTimeoutError,
} from "./random_access_source.ts";

/** Options of {@linkcode HttpSource.open}. */
export interface HttpSourceOptions {
  /** Requests in flight at once, for all callers together (default 4). */
  concurrency?: number;
  /** Bound on each request, headers and body, in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Times a failed request is tried again (default 2). */
  retries?: number;
  /** Delay before the first retry, doubled for each next one, in milliseconds (default 100). */
  retryDelayMs?: number;
  /**
   * Largest file accepted from a server that ignores Range requests, held whole in memory
   * (default 16 MiB; 0 refuses any such server).
   */
  maxWholeBytes?: number;
  /** Bytes fetched by the first request, kept to serve the prologue and header (default 64 KiB). */
  probeBytes?: number;
  /** How `readMany` merges neighbouring ranges (see `coalesceRanges`). */
  coalesce?: CoalesceOptions;
  /** Extra request headers (for example `Authorization`); never printed. */
  headers?: Record<string, string>;
  /**
   * The `identity` of a source opened earlier on this URL (for example by another thread): the
   * open fails with `SourceChangedError` unless the file is that same version.
   */
  expect?: SourceIdentity;
}

/** Marks errors worth another attempt. */
const TRANSIENT = new WeakSet<Error>();
function transient<E extends Error>(e: E): E {
  TRANSIENT.add(e);
  return e;
}

/** A pool of request slots in which urgent waiters go first. */
class Slots {
  private free: number;
  private urgent: (() => void)[] = [];
  private normal: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  acquire(urgent: boolean): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => (urgent ? this.urgent : this.normal).push(resolve));
  }
  release(): void {
    const next = this.urgent.shift() ?? this.normal.shift();
    if (next !== undefined) next();
    else this.free++;
  }
}

/** What the first answer said about the file, compared with every later answer. */
interface Validators {
  etag: string | null;
  lastModified: string | null;
}

/** `bytes FIRST-LAST/TOTAL` or `bytes *\/TOTAL` (RFC 9110 §14.4); null when malformed. */
function parseContentRange(
  value: string | null,
): { first: number; last: number; total: number | null } | { total: number } | null {
  if (value === null) return null;
  let m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value);
  if (m !== null) {
    const [first, last] = [Number(m[1]), Number(m[2])];
    const total = m[3] === "*" ? null : Number(m[3]);
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last < first) return null;
    if (total !== null && (!Number.isSafeInteger(total) || last >= total)) return null;
    return { first, last, total };
  }
  m = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(value);
  if (m !== null && Number.isSafeInteger(Number(m[1]))) return { total: Number(m[1]) };
  return null;
}

/** A URL for messages: no credentials, no query string (it may hold a signature). */
function displayName(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * A file behind an http(s) URL, read with Range requests.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { HttpSource } from "./http_source.ts";
 * const body = new Uint8Array(100_000).map((_, i) => i & 0xff);
 * // A tiny server on the loopback address that honours Range, for the example.
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
 *   const [, a, b] = /bytes=(\d+)-(\d+)/.exec(req.headers.get("range")!)!.map(Number);
 *   const last = Math.min(b, body.length - 1);
 *   return new Response(body.slice(a, last + 1), {
 *     status: 206,
 *     headers: { "content-range": `bytes ${a}-${last}/${body.length}`, etag: '"v1"' },
 *   });
 * });
 * const source = await HttpSource.open(`http://127.0.0.1:${server.addr.port}/vm.lsnap`);
 * assertEquals(source.size, 100_000);
 * assertEquals(await source.read(70_000, 3), body.slice(70_000, 70_003));
 * source.close();
 * await server.shutdown();
 * ```
 */
export class HttpSource implements RandomAccessSource {
  readonly stats: SourceStats = { requests: 0, bytesRead: 0, retries: 0 };
  private readonly slots: Slots;
  private readonly closing = new AbortController();
  private closed = false;

  private constructor(
    private readonly url: URL,
    readonly name: string,
    readonly size: number,
    private readonly validators: Validators,
    /** The first bytes of the file (all of it when the server ignored Range). */
    private readonly head: Uint8Array,
    private readonly o: Required<Omit<HttpSourceOptions, "headers" | "coalesce" | "expect">> & {
      headers: Record<string, string>;
      coalesce: CoalesceOptions;
    },
  ) {
    this.slots = new Slots(o.concurrency);
  }

  /**
   * Opens `url` with one Range request for its first `probeBytes`, which gives the size and the
   * validators (`ETag`, `Last-Modified`) that every later answer must match.
   */
  static async open(url: string | URL, options: HttpSourceOptions = {}): Promise<HttpSource> {
    const u = new URL(url);
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new SourceError(displayName(u), `the URL scheme ${u.protocol} is not http or https`);
    }
    const o = {
      concurrency: Math.max(1, options.concurrency ?? 4),
      timeoutMs: options.timeoutMs ?? 30_000,
      retries: Math.max(0, options.retries ?? 2),
      retryDelayMs: options.retryDelayMs ?? 100,
      maxWholeBytes: options.maxWholeBytes ?? 16 * 1024 * 1024,
      probeBytes: Math.max(1, options.probeBytes ?? 64 * 1024),
      coalesce: options.coalesce ?? {},
      headers: options.headers ?? {},
    };
    const name = displayName(u);
    const stats: SourceStats = { requests: 0, bytesRead: 0, retries: 0 };
    const closing = new AbortController();
    const first = await retrying(
      o,
      stats,
      closing.signal,
      undefined,
      (signal) => probe(u, name, o, stats, signal),
    );
    checkIdentity(name, options.expect, { size: first.size, ...first.validators });
    const s = new HttpSource(u, name, first.size, first.validators, first.head, o);
    Object.assign(s.stats, stats);
    return s;
  }

  /** Size, ETag and Last-Modified of the version being read. */
  get identity(): SourceIdentity {
    return { size: this.size, ...this.validators };
  }

  /** Reads exactly `length` bytes at `offset` with one Range request (or from the first bytes). */
  async read(offset: number, length: number, options: ReadOptions = {}): Promise<Uint8Array> {
    checkRange(this.name, this.size, offset, length);
    const range = { offset, length };
    if (this.closed) throw new SourceClosedError(this.name, "the source is closed", { range });
    if (length === 0) return new Uint8Array(0);
    if (offset + length <= this.head.length) return this.head.slice(offset, offset + length);
    return await this.#fetchRange(offset, length, options);
  }

  /** Reads several ranges, merged where close, up to `concurrency` requests at once. */
  async readMany(ranges: readonly ByteRange[], options: ReadOptions = {}): Promise<Uint8Array[]> {
    for (const r of ranges) checkRange(this.name, this.size, r.offset, r.length);
    return await readCoalesced(ranges, (o, n) => this.read(o, n, options), {
      ...this.o.coalesce,
      // The pool bounds what reaches the server; more workers only queue on it.
      concurrency: this.o.concurrency,
    });
  }

  async #fetchRange(offset: number, length: number, options: ReadOptions) {
    await this.slots.acquire(options.urgent === true);
    try {
      return await retrying(
        this.o,
        this.stats,
        this.closing.signal,
        options.signal,
        (signal) => this.#attempt(offset, length, signal),
      );
    } catch (e) {
      if (this.closed && !(e instanceof SourceError)) {
        throw new SourceClosedError(this.name, "the source was closed during the read", {
          range: { offset, length },
          cause: e,
        });
      }
      throw e;
    } finally {
      this.slots.release();
    }
  }

  async #attempt(offset: number, length: number, signal: AbortSignal): Promise<Uint8Array> {
    const range = { offset, length };
    const headers: Record<string, string> = {
      ...this.o.headers,
      range: `bytes=${offset}-${offset + length - 1}`,
    };
    const etag = this.validators.etag;
    // If-Range takes a strong validator only (RFC 9110 §13.1.5): a changed file then comes back
    // whole with 200, which is refused below, instead of as a range of the new file.
    if (etag !== null && !etag.startsWith("W/")) headers["if-range"] = etag;
    this.stats.requests++;
    const res = await request(this.url, this.name, headers, signal, range);
    if (res.status !== 206) {
      await res.body?.cancel();
      if (res.status === 200) {
        const changed = this.changedBy(res);
        throw new SourceChangedError(
          this.name,
          changed ??
            "the server answered 200 with the whole file to a Range request it honoured before " +
              "(the file changed, or the server stopped honouring Range)",
          { range },
        );
      }
      throw statusError(this.name, res, range);
    }
    const cr = parseContentRange(res.headers.get("content-range"));
    if (cr === null || !("first" in cr)) {
      await res.body?.cancel();
      throw new SourceHttpError(
        this.name,
        `the server answered 206 with Content-Range '${
          res.headers.get("content-range")
        }', not a byte range`,
        { range, status: 206 },
      );
    }
    if (cr.total !== null && cr.total !== this.size) {
      await res.body?.cancel();
      throw new SourceChangedError(
        this.name,
        `the file is now ${cr.total} bytes; it was ${this.size} when opened`,
        { range },
      );
    }
    const changed = this.changedBy(res);
    if (changed !== null) {
      await res.body?.cancel();
      throw new SourceChangedError(this.name, changed, { range });
    }
    if (cr.first !== offset || cr.last !== offset + length - 1) {
      await res.body?.cancel();
      throw new SourceHttpError(
        this.name,
        `the server sent bytes ${cr.first}-${cr.last} for a request of bytes ${offset}-${
          offset + length - 1
        }`,
        { range, status: 206 },
      );
    }
    return await readBody(res, length, this.name, range, signal, this.stats);
  }

  /** Why `res` is not the file first seen, or null. */
  private changedBy(res: Response): string | null {
    const etag = res.headers.get("etag");
    if (this.validators.etag !== null && etag !== null && etag !== this.validators.etag) {
      return `its ETag is now ${etag}; it was ${this.validators.etag} when opened (the file changed)`;
    }
    const lm = res.headers.get("last-modified");
    if (
      this.validators.lastModified !== null && lm !== null && lm !== this.validators.lastModified
    ) {
      return `its Last-Modified is now ${lm}; it was ${this.validators.lastModified} when opened (the file changed)`;
    }
    return null;
  }

  /** Aborts the requests in flight and refuses later reads. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
  }
}

type ResolvedOptions = {
  timeoutMs: number;
  retries: number;
  retryDelayMs: number;
};

/**
 * Runs `attempt` with a fresh time bound each try, again after a transient failure, at most
 * `retries` more times; `closing` and the caller's `signal` stop it at once.
 */
async function retrying<T>(
  o: ResolvedOptions,
  stats: SourceStats,
  closing: AbortSignal,
  signal: AbortSignal | undefined,
  attempt: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  for (let tryNo = 0;; tryNo++) {
    signal?.throwIfAborted();
    const timer = new AbortController();
    const t = setTimeout(
      () => timer.abort(new DOMException("request timed out", "TimeoutError")),
      o.timeoutMs,
    );
    const signals = [closing, timer.signal, ...(signal ? [signal] : [])];
    try {
      return await attempt(AbortSignal.any(signals));
    } catch (e) {
      const again = e instanceof Error && TRANSIENT.has(e) && tryNo < o.retries &&
        !closing.aborted && !signal?.aborted;
      if (!again) throw e;
      stats.retries++;
      await delay(o.retryDelayMs * 2 ** tryNo, closing);
    } finally {
      clearTimeout(t);
    }
  }
}

/** One fetch; network failures and timeouts become transient {@linkcode SourceError}s. */
async function request(
  url: URL,
  name: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  range: ByteRange | undefined,
): Promise<Response> {
  try {
    return await fetch(url, { headers, signal, redirect: "follow" });
  } catch (e) {
    throw failure(name, e, signal, range, "no answer");
  }
}

/** The error for a fetch or body read that threw. */
function failure(
  name: string,
  e: unknown,
  signal: AbortSignal,
  range: ByteRange | undefined,
  what: string,
): Error {
  if (e instanceof SourceError) return e;
  const reason = signal.reason;
  if (signal.aborted && reason instanceof DOMException && reason.name === "TimeoutError") {
    return transient(
      new SourceTimeoutError(name, `${what} within the time bound`, { range, cause: e }),
    );
  }
  if (signal.aborted) return e as Error; // the caller's abort, or close(): not retried
  return transient(
    new SourceHttpError(name, `${what}: ${(e as Error).message}`, { range, status: 0, cause: e }),
  );
}

function statusError(name: string, res: Response, range: ByteRange | undefined): SourceHttpError {
  const e = new SourceHttpError(
    name,
    `the server answered ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`,
    { range, status: res.status },
  );
  // Worth another try: the server is overloaded or failing for a moment (RFC 9110 §15.6).
  return res.status >= 500 || res.status === 429 ? transient(e) : e;
}

/** Reads a body of exactly `length` bytes into one buffer; a short body is transient. */
async function readBody(
  res: Response,
  length: number,
  name: string,
  range: ByteRange,
  signal: AbortSignal,
  stats: SourceStats,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let n = 0;
  const reader = res.body!.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.length > length) {
        await reader.cancel();
        throw new SourceHttpError(
          name,
          `the server sent more than the ${length} bytes of the range it named`,
          { range, status: res.status },
        );
      }
      out.set(value, n);
      n += value.length;
      stats.bytesRead += value.length;
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    if (e instanceof SourceError) throw e;
    throw failure(name, e, signal, range, `the answer was cut off after ${n} of ${length} bytes`);
  }
  if (n < length) {
    throw transient(
      new SourceEndedError(name, `the answer ended after ${n} of ${length} bytes`, { range }),
    );
  }
  return out;
}

/** The first request: size, validators and the first bytes, or the whole of a small file. */
async function probe(
  url: URL,
  name: string,
  o: { probeBytes: number; maxWholeBytes: number; headers: Record<string, string> },
  stats: SourceStats,
  signal: AbortSignal,
): Promise<{ size: number; validators: Validators; head: Uint8Array }> {
  stats.requests++;
  const res = await request(
    url,
    name,
    {
      ...o.headers,
      range: `bytes=0-${o.probeBytes - 1}`,
    },
    signal,
    undefined,
  );
  const validators = {
    etag: res.headers.get("etag"),
    lastModified: res.headers.get("last-modified"),
  };
  if (res.status === 206) {
    const cr = parseContentRange(res.headers.get("content-range"));
    if (cr === null || !("first" in cr) || cr.total === null) {
      await res.body?.cancel();
      throw new SourceHttpError(
        name,
        `the server answered 206 with Content-Range '${
          res.headers.get("content-range")
        }', which does not give the file's size`,
        { status: 206 },
      );
    }
    const want = Math.min(o.probeBytes, cr.total);
    if (cr.first !== 0 || cr.last !== want - 1) {
      await res.body?.cancel();
      throw new SourceHttpError(
        name,
        `the server sent bytes ${cr.first}-${cr.last} for a request of bytes 0-${o.probeBytes - 1}`,
        { status: 206 },
      );
    }
    const range = { offset: 0, length: want };
    const head = await readBody(res, want, name, range, signal, stats);
    return { size: cr.total, validators, head };
  }
  if (res.status === 416) {
    await res.body?.cancel();
    const cr = parseContentRange(res.headers.get("content-range"));
    // An empty file has no byte 0 to serve (RFC 9110 §15.5.17).
    if (cr !== null && !("first" in cr) && cr.total === 0) {
      return { size: 0, validators, head: new Uint8Array(0) };
    }
    throw statusError(name, res, undefined);
  }
  if (res.status === 200) {
    const declared = Number(res.headers.get("content-length") ?? NaN);
    const refuse = (size: string) =>
      new NotRandomAccessError(
        name,
        `the server ignores HTTP Range requests (it answered 200 with the whole file, ${size}); ` +
          `files over ${o.maxWholeBytes} bytes need a server that honours Range (RFC 9110 §14), ` +
          "as S3-compatible object stores and most static file servers do; or download the file " +
          "and give its path",
      );
    if (Number.isSafeInteger(declared) && declared > o.maxWholeBytes) {
      await res.body?.cancel();
      throw refuse(`${declared} bytes`);
    }
    // Bounded: at most maxWholeBytes are held whatever the body turns out to be.
    const chunks: Uint8Array[] = [];
    let n = 0;
    const reader = res.body!.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        n += value.length;
        stats.bytesRead += value.length;
        if (n > o.maxWholeBytes) {
          await reader.cancel();
          throw refuse(`more than ${o.maxWholeBytes} bytes`);
        }
        chunks.push(value);
      }
    } catch (e) {
      await reader.cancel().catch(() => {});
      if (e instanceof SourceError) throw e;
      throw failure(name, e, signal, undefined, `the answer was cut off after ${n} bytes`);
    }
    if (Number.isSafeInteger(declared) && n !== declared) {
      throw transient(
        new SourceEndedError(name, `the answer ended after ${n} of ${declared} bytes`),
      );
    }
    const head = new Uint8Array(n);
    let at = 0;
    for (const c of chunks) {
      head.set(c, at);
      at += c.length;
    }
    return { size: n, validators, head };
  }
  await res.body?.cancel();
  throw statusError(name, res, undefined);
}

/**
 * The whole file behind `url` as one stream, from one plain GET: for a streaming reader
 * (`verify`, an eager `restore`) when the server ignores Range requests, so that
 * {@linkcode HttpSource} cannot be used. Bounded waits: the answer's headers must come within
 * `timeoutMs`, and then each chunk of the body within `timeoutMs` of the previous one; a stall is a
 * {@linkcode SourceTimeoutError} raised by the stream. Nothing is retried (a stream cannot resume
 * without Range) and nothing checks that the file stays the same (the stream reader's CRCs and
 * digests still do).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { openHttpStream } from "./http_source.ts";
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () =>
 *   new Response("whole file"));
 * const { readable, size } = await openHttpStream(`http://127.0.0.1:${server.addr.port}/f`);
 * assertEquals([await new Response(readable).text(), size], ["whole file", 10]);
 * await server.shutdown();
 * ```
 */
export async function openHttpStream(
  url: string | URL,
  options: { timeoutMs?: number; headers?: Record<string, string> } = {},
): Promise<{ name: string; readable: ReadableStream<Uint8Array>; size: number | undefined }> {
  const u = new URL(url);
  const name = displayName(u);
  const timeoutMs = options.timeoutMs ?? 30_000;
  const abort = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (what: string) => {
    clearTimeout(timer);
    timer = setTimeout(
      () => abort.abort(new DOMException(what, "TimeoutError")),
      timeoutMs,
    );
  };
  arm("no answer");
  let res: Response;
  try {
    res = await request(u, name, options.headers ?? {}, abort.signal, undefined);
  } catch (e) {
    clearTimeout(timer);
    throw e;
  }
  if (res.status !== 200) {
    clearTimeout(timer);
    await res.body?.cancel();
    throw statusError(name, res, undefined);
  }
  const declared = Number(res.headers.get("content-length") ?? NaN);
  const reader = res.body!.getReader();
  let n = 0;
  const readable = new ReadableStream<Uint8Array>({
    async pull(c) {
      arm("no data");
      try {
        const { done, value } = await reader.read();
        if (done) {
          clearTimeout(timer);
          c.close();
          return;
        }
        n += value.length;
        c.enqueue(value);
      } catch (e) {
        clearTimeout(timer);
        const range = { offset: n, length: 0 };
        const err = failure(name, e, abort.signal, range, `the answer stopped after ${n} bytes`);
        c.error(err);
      }
    },
    cancel() {
      clearTimeout(timer);
      abort.abort();
    },
  });
  clearTimeout(timer);
  return { name, readable, size: Number.isSafeInteger(declared) ? declared : undefined };
}
