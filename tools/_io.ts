/**
 * Opening inputs and outputs the way the commands take them: a path, an `http://` or `https://`
 * URL (inputs only; read with Range requests through format/'s `HttpSource`), or `-` for standard
 * input or output. Outputs to a path go through format/'s {@linkcode AtomicFile} (FORMAT.md §9's
 * temporary, fsync of the file and of its directory, rename only when the tool has checked its
 * work, stale temporaries of killed runs removed), so a failed run never leaves a file that looks
 * complete.
 *
 * @module
 */
import { AtomicFile } from "../format/atomic_file.ts";
import { HttpSource, type HttpSourceOptions, openHttpStream } from "../format/http_source.ts";
import { isHttpUrl } from "../format/open_source.ts";
import {
  NotRandomAccessError,
  type RandomAccessSource,
  sourceReadable,
} from "../format/random_access_source.ts";

/** An opened input. `file` is set when the input is a regular file (seekable, size known). */
export interface InputHandle {
  /** The path, or "<stdin>". */
  name: string;
  /** The bytes, from the start. */
  readable: ReadableStream<Uint8Array>;
  /** Size in bytes when known (regular files). */
  size: number | undefined;
  /** Path of a regular file, usable for random access; undefined for pipes and URLs. */
  path: string | undefined;
  /** For a URL: the source `readable` reads, usable for random access too. */
  source?: RandomAccessSource;
  /** Releases the input (safe to call twice). */
  close(): void;
}

/**
 * Opens `path` for reading; `-` is standard input; an http(s) URL is read with Range requests,
 * a few chunks in flight (memory stays bounded whatever the file's size), or, from a server that
 * ignores Range, as one plain GET (then `source` is undefined: no random access). A URL that
 * cannot be opened throws format/'s `SourceError`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { openInput } from "./_io.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeFile(path, new Uint8Array(100));
 * const input = await openInput(path); // "-" would read standard input
 * let n = 0;
 * for await (const chunk of input.readable) n += chunk.length;
 * input.close();
 * assertEquals([n, input.size], [100, 100]);
 * await Deno.remove(path);
 * ```
 */
export async function openInput(
  path: string,
  options: { http?: HttpSourceOptions } = {},
): Promise<InputHandle> {
  if (isHttpUrl(path)) {
    let source: HttpSource;
    try {
      source = await HttpSource.open(path, { maxWholeBytes: 0, ...options.http });
    } catch (e) {
      if (!(e instanceof NotRandomAccessError)) throw e;
      // The server ignores Range: a plain GET still serves a reader that goes front to back.
      const stream = await openHttpStream(path, options.http);
      return {
        name: stream.name,
        readable: stream.readable,
        size: stream.size,
        path: undefined,
        close: () => stream.readable.cancel().catch(() => {}),
      };
    }
    return {
      name: source.name,
      readable: sourceReadable(source),
      size: source.size,
      path: undefined,
      source,
      close: () => source.close(),
    };
  }
  if (path === "-") {
    return {
      name: "<stdin>",
      readable: Deno.stdin.readable,
      size: undefined,
      path: undefined,
      close() {},
    };
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new Error(`Cannot open ${path}: ${(e as Error).message}`, { cause: e });
  }
  const info = await file.stat();
  let closed = false;
  return {
    name: path,
    readable: file.readable,
    size: info.isFile ? info.size : undefined,
    path: info.isFile ? path : undefined,
    close() {
      if (closed) return;
      closed = true;
      try {
        file.close();
      } catch {
        // The readable closes the file when fully read; closing again is harmless.
      }
    },
  };
}

/** An output being written; `commit()` makes it visible, `abort()` removes it. */
export interface OutputHandle {
  /** The final path, or "<stdout>". */
  name: string;
  /** The file being written (a temporary path) when writing to a path; undefined for stdout. */
  file: Deno.FsFile | undefined;
  /** The temporary path, when writing to a path. */
  tempPath: string | undefined;
  /** Writes all of `bytes`. */
  write(bytes: Uint8Array): Promise<void>;
  /** Makes the bytes written so far durable (fsync; no-op for stdout), ahead of `commit`. */
  sync(): Promise<void>;
  /** Flushes, closes and renames the temporary file to the final path, then syncs the directory. */
  commit(): Promise<void>;
  /** Closes and removes the temporary file (no-op for stdout). Never throws. */
  abort(): Promise<void>;
}

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let done = 0;
  while (done < bytes.length) done += await w.write(bytes.subarray(done));
}

/**
 * Creates `path` for writing through an {@linkcode AtomicFile}; `-` is standard output.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { createOutput } from "./_io.ts";
 * const dir = await Deno.makeTempDir();
 * const out = await createOutput(`${dir}/copy.bin`);
 * try {
 *   await out.write(new Uint8Array([1, 2, 3]));
 *   await out.commit(); // only now does copy.bin appear
 * } catch (e) {
 *   await out.abort();
 *   throw e;
 * }
 * assertEquals(await Deno.readFile(`${dir}/copy.bin`), new Uint8Array([1, 2, 3]));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function createOutput(path: string): Promise<OutputHandle> {
  if (path === "-") {
    return {
      name: "<stdout>",
      file: undefined,
      tempPath: undefined,
      write: (bytes) => writeAll(Deno.stdout, bytes),
      sync: async () => {},
      commit: async () => {},
      abort: async () => {},
    };
  }
  const out = await AtomicFile.create(path);
  return {
    name: path,
    file: out.file,
    tempPath: out.tempPath,
    write: (bytes) => out.write(bytes),
    sync: () => out.sync(),
    commit: () => out.commit(),
    abort: () => out.abort(),
  };
}

/** Reads a whole input into memory (for small inputs and tests). */
export async function readAll(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const c of readable) {
    chunks.push(c);
    total += c.length;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
