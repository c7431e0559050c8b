/**
 * A pull-based big-endian byte reader over a chunked input, tracking the absolute offset.
 *
 * @module
 */
import { QemuStreamTruncatedError } from "./errors.ts";

/** Anything the QEMU stream reader accepts as input. */
export type ByteInput =
  | Uint8Array
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>
  | Iterable<Uint8Array>;

function toIterator(input: ByteInput): AsyncIterator<Uint8Array> | Iterator<Uint8Array> {
  if (input instanceof Uint8Array) return [input][Symbol.iterator]();
  if (Symbol.asyncIterator in input) {
    return (input as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  }
  return (input as Iterable<Uint8Array>)[Symbol.iterator]();
}

/**
 * Reads bytes from a sequence of chunks. Returned arrays may be views into the input chunks,
 * which this class never modifies; callers must not modify them either.
 */
export class ByteSource {
  #it: AsyncIterator<Uint8Array> | Iterator<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #offset = 0;
  #done = false;
  #capture: Uint8Array[] | null = null;

  constructor(input: ByteInput) {
    this.#it = toIterator(input);
  }

  /** Absolute offset of the next byte to read. */
  get offset(): number {
    return this.#offset;
  }

  async #fill(): Promise<boolean> {
    while (this.#pos >= this.#chunk.length) {
      if (this.#done) return false;
      const r = await this.#it.next();
      if (r.done) {
        this.#done = true;
        return false;
      }
      this.#chunk = r.value;
      this.#pos = 0;
    }
    return true;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    return !(await this.#fill());
  }

  /** The next byte without consuming it, or -1 at the end. */
  async peekU8(): Promise<number> {
    if (!(await this.#fill())) return -1;
    return this.#chunk[this.#pos];
  }

  /** Starts keeping a copy of every byte read, until {@link endCapture}. */
  startCapture(): void {
    this.#capture = [];
  }

  /** Stops capturing and returns the bytes read since {@link startCapture}. */
  endCapture(): Uint8Array {
    const parts = this.#capture ?? [];
    this.#capture = null;
    return concatBytes(parts);
  }

  /** Reads exactly `n` bytes; `what` names them in the error if the input ends first. */
  async read(n: number, what: string): Promise<Uint8Array> {
    const out = await this.#read(n, what);
    if (this.#capture !== null) this.#capture.push(out);
    return out;
  }

  async #read(n: number, what: string): Promise<Uint8Array> {
    const start = this.#offset;
    if (!(await this.#fill()) && n > 0) this.#truncated(what, n, 0, start);
    if (this.#chunk.length - this.#pos >= n) {
      const out = this.#chunk.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
      this.#offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!(await this.#fill())) this.#truncated(what, n, got, start);
      const take = Math.min(n - got, this.#chunk.length - this.#pos);
      out.set(this.#chunk.subarray(this.#pos, this.#pos + take), got);
      this.#pos += take;
      this.#offset += take;
      got += take;
    }
    return out;
  }

  #truncated(what: string, n: number, got: number, start: number): never {
    throw new QemuStreamTruncatedError(
      `the stream ends inside ${what} (${got} of ${n} bytes present)`,
      start,
    );
  }

  async u8(what: string): Promise<number> {
    return (await this.read(1, what))[0];
  }

  async u16(what: string): Promise<number> {
    const b = await this.read(2, what);
    return (b[0] << 8) | b[1];
  }

  async u32(what: string): Promise<number> {
    const b = await this.read(4, what);
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  }

  /** A u64 as a bigint (RAM record words hold flags and offsets up to 2^64). */
  async u64(what: string): Promise<bigint> {
    const b = await this.read(8, what);
    const hi = ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
    const lo = ((b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7]) >>> 0;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Everything left, as one array, refusing to hold more than `limit` bytes. */
  async readRest(limit: number, onLimit: (offset: number) => never): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    const start = this.#offset;
    while (await this.#fill()) {
      const part = this.#chunk.subarray(this.#pos);
      total += part.length;
      if (total > limit) onLimit(start);
      parts.push(part);
      this.#offset += part.length;
      this.#pos = this.#chunk.length;
    }
    return concatBytes(parts);
  }
}

/** Joins byte arrays (returns the only one as is). */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
