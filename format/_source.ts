/**
 * Byte sources for the readers: exact-length reads from a ReadableStream (one pass) that never
 * allocate more than the bytes asked for and received.
 *
 * @module
 */

/** Reads exact byte counts from a stream of chunks. */
export class StreamSource {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private done = false;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  private async fill(n: number): Promise<void> {
    while (this.buffered < n && !this.done) {
      const r = await this.reader.read();
      if (r.done) {
        this.done = true;
        break;
      }
      if (r.value.length === 0) continue;
      this.chunks.push(r.value);
      this.buffered += r.value.length;
    }
  }

  /** Up to `n` bytes; fewer only at end of stream. `n` must already be checked against caps. */
  async read(n: number): Promise<Uint8Array> {
    await this.fill(n);
    const take = Math.min(n, this.buffered);
    const first = this.chunks[0];
    if (first !== undefined && first.length >= take) {
      const out = first.subarray(0, take);
      if (first.length === take) this.chunks.shift();
      else this.chunks[0] = first.subarray(take);
      this.buffered -= take;
      return out;
    }
    const out = new Uint8Array(take);
    let at = 0;
    while (at < take) {
      const c = this.chunks[0];
      const k = Math.min(c.length, take - at);
      out.set(c.subarray(0, k), at);
      at += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= take;
    return out;
  }

  /** True when no byte remains. */
  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buffered === 0;
  }

  /** Releases the stream (cancels it if unread bytes remain). */
  async release(): Promise<void> {
    await this.reader.cancel().catch(() => {});
  }
}

/** Per-page record offsets kept in 4096-page chunks allocated on first use. */
export class OffsetTable {
  private readonly chunks: (Float64Array | undefined)[][];
  constructor(regionCount: number) {
    this.chunks = Array.from({ length: regionCount }, () => []);
  }
  set(region: number, page: number, offset: number): void {
    const list = this.chunks[region];
    const i = page >>> 12;
    let c = list[i];
    if (c === undefined) {
      c = new Float64Array(4096);
      list[i] = c;
    }
    c[page & 4095] = offset + 1;
  }
  /** The offset, or -1 when the page never appeared. */
  get(region: number, page: number): number {
    const c = this.chunks[region][page >>> 12];
    return c === undefined || c[page & 4095] === 0 ? -1 : c[page & 4095] - 1;
  }
  /** Number of pages that appeared. */
  count(): number {
    let n = 0;
    for (const list of this.chunks) {
      for (const c of list) if (c !== undefined) { for (const v of c) if (v !== 0) n++; }
    }
    return n;
  }
}
