/**
 * The read-back check of every output of `convert` that keeps the state: the output's bytes go,
 * as they are written, to a second and independent reader that recomputes the content digest
 * from the output's own records. This checks compression, batching and framing, not only the
 * pages handed to the writer. The output is renamed into place only when that digest is the
 * input's ({@linkcode checkDigest}).
 *
 * The reader runs in this thread, or for an `.lsnap` output in a worker thread
 * (`format/_output_check.ts`, shared with flatten), so that checking costs the converter no
 * time on a machine with a spare core; an `.lsnap` output written to a file is read back from
 * that file as it grows.
 *
 * @module
 */
import { type OutputCheck, startOutputCheck } from "../../format/_output_check.ts";
import { toHex } from "../../format/checksum.ts";
import { SnapshotStreamReader } from "../../format/stream_reader.ts";
import { ConvertError } from "./error.ts";

/** What reading an output back found. */
export interface ReadBackResult {
  /** True when the reader reached the output's end and found it whole. */
  complete: boolean;
  /** The content digest the output's records give, or null when it has none. */
  contentDigest: Uint8Array | null;
}

/** Reads an output's bytes to their end; throws on a malformed output. */
export type ReadBackReader = (bytes: ReadableStream<Uint8Array>) => Promise<ReadBackResult>;

/**
 * Reads `.lsnap` bytes with the streaming reader, which checks every record, the file digest and
 * the content digest recomputed from the records against the trailer's. The pages are expanded
 * only to be hashed (the reader's "digest" mode): nothing is handed out, nothing copied.
 */
export async function readLsnapBack(bytes: ReadableStream<Uint8Array>): Promise<ReadBackResult> {
  const reader = new SnapshotStreamReader(bytes, { decodePages: "digest" });
  for await (const _ of reader.records()) { /* the reader checks every record */ }
  return { complete: reader.complete, contentDigest: reader.contentDigest };
}

/** How the bytes reach the reader. */
interface Channel {
  push(chunk: Uint8Array, handedOver: boolean): Promise<void>;
  /** Ends the bytes; what the reader found, or its error. */
  end(): Promise<ReadBackResult>;
  stop(): void;
}

/**
 * The output's bytes, as they are written, on their way to an independent reader. `push` each
 * chunk after writing it, then `finish()`; `stop()` on failure.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { SnapshotWriter } from "../../format/writer.ts";
 * import { ReadBack, readLsnapBack } from "./read_back.ts";
 * const check = ReadBack.inThisThread("example.lsnap", readLsnapBack);
 * const sink = new WritableStream<Uint8Array>({ write: (chunk) => check.push(chunk) });
 * const writer = await SnapshotWriter.create(sink, {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 1 << 16, pageSize: 4096 }],
 *   creator: "example",
 *   createdAt: 0,
 * });
 * await writer.writePages(0, 3, new Uint8Array(4096).fill(9));
 * const { contentDigest } = await writer.close();
 * assertEquals(await check.finish(), contentDigest);
 * ```
 */
export class ReadBack {
  readonly #name: string;
  readonly #channel: Channel;

  private constructor(name: string, channel: Channel) {
    this.#name = name;
    this.#channel = channel;
  }

  /** Reads the output back in this thread with `read` (for small outputs, and other formats). */
  static inThisThread(name: string, read: ReadBackReader): ReadBack {
    return new ReadBack(name, new InlineChannel(read));
  }

  /**
   * Reads an `.lsnap` output back with the streaming checker (every rule, both digests): from
   * `tempPath`, the file it is written to, when given (what reached the file, read as it grows:
   * no copy of the bytes travels to the reader), else from the chunks pushed; in a worker thread
   * (a core of its own) or in this one.
   */
  static lsnap(name: string, tempPath: string | undefined, inWorker: boolean): ReadBack {
    return new ReadBack(name, new OutputCheckChannel(tempPath ?? null, inWorker));
  }

  /**
   * Hands `chunk` to the reader; waits while the reader is far behind. With `handedOver` the
   * caller never touches the chunk again (as with every chunk of `SnapshotWriter`): the reader
   * takes it as it is, and a worker takes its memory (transferred when it is a whole
   * ArrayBuffer); otherwise the reader gets a copy.
   */
  async push(chunk: Uint8Array, handedOver = false): Promise<void> {
    try {
      await this.#channel.push(chunk, handedOver);
    } catch (e) {
      throw this.#unreadable(e);
    }
  }

  /**
   * Ends the output; returns the content digest its records give. Throws a
   * {@linkcode ConvertError} when the output does not read back whole.
   */
  async finish(): Promise<Uint8Array> {
    let result: ReadBackResult;
    try {
      result = await this.#channel.end();
    } catch (e) {
      throw this.#unreadable(e);
    }
    if (!result.complete || result.contentDigest === null) {
      throw new ConvertError(`Cannot convert to ${this.#name}: the output could not be read back`);
    }
    return result.contentDigest;
  }

  /** Abandons the check (after a failure elsewhere). */
  stop(): void {
    this.#channel.stop();
  }

  #unreadable(e: unknown): Error {
    if (e instanceof ConvertError) return e;
    return new ConvertError(
      `Cannot convert to ${this.#name}: the output does not read back: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

/**
 * Throws a {@linkcode ConvertError} when the content digest read back from the output
 * (`written`) is not `expected` (`whose` names it for the message); null expects nothing.
 */
export function checkDigest(
  name: string,
  written: Uint8Array,
  expected: Uint8Array | null,
  whose = "the input's",
): void {
  if (expected === null || toHex(expected) === toHex(written)) return;
  throw new ConvertError(
    `Cannot convert to ${name}: the output's content digest ${toHex(written)} differs from ` +
      `${whose} ${toHex(expected)}`,
  );
}

class InlineChannel implements Channel {
  readonly #echo = new TransformStream<Uint8Array, Uint8Array>(undefined, { highWaterMark: 16 });
  readonly #writer = this.#echo.writable.getWriter();
  readonly #done: Promise<ReadBackResult>;

  constructor(read: ReadBackReader) {
    this.#done = read(this.#echo.readable);
    this.#done.catch(() => {});
  }

  async push(chunk: Uint8Array, handedOver: boolean): Promise<void> {
    await this.#writer.ready;
    await this.#writer.write(handedOver ? chunk : chunk.slice());
  }

  async end(): Promise<ReadBackResult> {
    await this.#writer.close();
    return await this.#done;
  }

  stop(): void {
    this.#writer.abort().catch(() => {});
  }
}

/** The streaming checker of `format/_output_check.ts`, on the output's file or on its chunks. */
class OutputCheckChannel implements Channel {
  readonly #check: OutputCheck;

  constructor(tempPath: string | null, inWorker: boolean) {
    this.#check = startOutputCheck(tempPath, inWorker);
  }

  push(chunk: Uint8Array, handedOver: boolean): Promise<void> {
    return this.#check.written(chunk, handedOver);
  }

  async end(): Promise<ReadBackResult> {
    const r = await this.#check.finish();
    return { complete: true, contentDigest: r.contentDigest };
  }

  stop(): void {
    this.#check.stop();
  }
}
