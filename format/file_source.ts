/**
 * A local regular file as a {@linkcode RandomAccessSource}. A pipe, a FIFO, a terminal or `-`
 * (standard input) is refused with {@linkcode NotRandomAccessError}, before it is opened (opening
 * a FIFO would wait for a writer).
 *
 * @module
 */
import {
  type ByteRange,
  checkIdentity,
  checkRange,
  NotRandomAccessError,
  type RandomAccessSource,
  readCoalesced,
  type ReadOptions,
  SourceClosedError,
  SourceEndedError,
  SourceError,
  type SourceIdentity,
  type SourceStats,
} from "./random_access_source.ts";

const PIPE_ADVICE =
  "random access (a lazy restore, a page or device read through the index) needs a regular " +
  "file or an http(s) URL; read a pipe as a stream instead (livesnap verify -, livesnap " +
  "restore -), or save it to a file first";

/**
 * A regular file read at any offset. Reads are serialised on the one file handle (a seek and a
 * read each): a local file is fast enough that more in flight buys nothing.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { FileSource } from "./file_source.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array([10, 11, 12, 13]));
 * const source = await FileSource.open(path);
 * assertEquals([source.size, ...await source.read(1, 2)], [4, 11, 12]);
 * source.close();
 * await Deno.remove(path);
 * ```
 */
export class FileSource implements RandomAccessSource {
  readonly stats: SourceStats = { requests: 0, bytesRead: 0, retries: 0 };
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly file: Deno.FsFile,
    readonly name: string,
    readonly identity: SourceIdentity,
  ) {}

  /** Size in bytes, when opened. */
  get size(): number {
    return this.identity.size;
  }

  /**
   * Opens `path`. Throws {@linkcode NotRandomAccessError} for `-` and anything that is not a
   * regular file, {@linkcode SourceError} (with the I/O error as `cause`) when it cannot be opened,
   * {@linkcode SourceChangedError} when it is not the version `options.expect` identifies.
   */
  static async open(path: string, options: { expect?: SourceIdentity } = {}): Promise<FileSource> {
    if (path === "-") throw new NotRandomAccessError("<stdin>", `it is a pipe; ${PIPE_ADVICE}`);
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch (e) {
      throw new SourceError(path, (e as Error).message, { cause: e });
    }
    if (!info.isFile) {
      const what = info.isFifo
        ? "it is a pipe (FIFO)"
        : info.isDirectory
        ? "it is a directory"
        : info.isCharDevice
        ? "it is a character device (a terminal or a pipe)"
        : info.isSocket
        ? "it is a socket"
        : "it is not a regular file";
      throw new NotRandomAccessError(path, `${what}; ${PIPE_ADVICE}`);
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      throw new SourceError(path, (e as Error).message, { cause: e });
    }
    try {
      // The opened file's own stat, not the path's earlier one (it may have been replaced).
      const st = await file.stat();
      const identity = { size: st.size, ino: st.ino, mtimeMs: st.mtime?.getTime() ?? null };
      checkIdentity(path, options.expect, identity);
      return new FileSource(file, path, identity);
    } catch (e) {
      file.close();
      if (e instanceof SourceError) throw e;
      throw new SourceError(path, (e as Error).message, { cause: e });
    }
  }

  /** Reads exactly `length` bytes at `offset`; a file that shrank is a {@linkcode SourceEndedError}. */
  async read(offset: number, length: number, options: ReadOptions = {}): Promise<Uint8Array> {
    checkRange(this.name, this.size, offset, length);
    const run = this.queue.then(() => this.#readNow(offset, length, options.signal));
    this.queue = run.catch(() => {});
    return await run;
  }

  /** Reads several ranges (merged where they touch); one at a time, as {@linkcode read}. */
  async readMany(ranges: readonly ByteRange[], options: ReadOptions = {}): Promise<Uint8Array[]> {
    for (const r of ranges) checkRange(this.name, this.size, r.offset, r.length);
    return await readCoalesced(ranges, (o, n) => this.read(o, n, options), { concurrency: 1 });
  }

  // deno-lint-ignore require-await
  async #readNow(offset: number, length: number, signal?: AbortSignal) {
    signal?.throwIfAborted();
    const out = new Uint8Array(length);
    this.#fill(offset, out);
    return out;
  }

  /**
   * Reads exactly `into.length` bytes at `offset` into `into`, synchronously, without allocating:
   * for a caller that reads a long run of records through one buffer it reuses (fresh memory
   * costs a page fault per page here, BENCHMARKS.md "Diff snapshots"). A file that shrank is a
   * {@linkcode SourceEndedError}.
   */
  readInto(offset: number, into: Uint8Array): void {
    checkRange(this.name, this.size, offset, into.length);
    this.#fill(offset, into);
  }

  #fill(offset: number, out: Uint8Array): void {
    const length = out.length;
    const range = { offset, length };
    if (this.closed) throw new SourceClosedError(this.name, "the source is closed", { range });
    let n = 0;
    try {
      this.stats.requests++;
      // Synchronous on purpose: one seek and one read of a regular file, mostly from the page
      // cache; an asynchronous pair costs two round trips through the thread pool, which on a
      // loaded 2-core machine made reading a 1 GiB chain's records several times slower
      // (BENCHMARKS.md, "Diff snapshots").
      this.file.seekSync(offset, Deno.SeekMode.Start);
      while (n < length) {
        const k = this.file.readSync(out.subarray(n));
        if (k === null) break;
        n += k;
      }
    } catch (e) {
      throw new SourceError(this.name, (e as Error).message, { range, cause: e });
    } finally {
      this.stats.bytesRead += n;
    }
    if (n < length) {
      throw new SourceEndedError(
        this.name,
        `the file ends at byte ${
          offset + n
        }; it was ${this.size} bytes when opened (truncated since?)`,
        { range },
      );
    }
  }

  /** Closes the file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
  }
}
