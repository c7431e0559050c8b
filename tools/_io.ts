/**
 * Opening inputs and outputs the way the commands take them: a path, or `-` for standard input or
 * output. Outputs to a path are written to a temporary file beside it and renamed only when the
 * tool has checked its work, so a failed run never leaves a file that looks complete.
 *
 * @module
 */

/** An opened input. `file` is set when the input is a regular file (seekable, size known). */
export interface InputHandle {
  /** The path, or "<stdin>". */
  name: string;
  /** The bytes, from the start. */
  readable: ReadableStream<Uint8Array>;
  /** Size in bytes when known (regular files). */
  size: number | undefined;
  /** Path of a regular file, usable for random access; undefined for pipes. */
  path: string | undefined;
  /** Releases the input (safe to call twice). */
  close(): void;
}

/**
 * Opens `path` for reading; `-` is standard input.
 *
 * @example
 * ```ts ignore
 * import { openInput } from "./_io.ts";
 * const input = await openInput("-");
 * for await (const chunk of input.readable) console.log(chunk.length);
 * ```
 */
export async function openInput(path: string): Promise<InputHandle> {
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
  /** Flushes, closes and renames the temporary file to the final path. */
  commit(): Promise<void>;
  /** Closes and removes the temporary file (no-op for stdout). Never throws. */
  abort(): Promise<void>;
}

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let done = 0;
  while (done < bytes.length) done += await w.write(bytes.subarray(done));
}

/**
 * Creates `path` for writing through a temporary file beside it; `-` is standard output.
 *
 * @example
 * ```ts ignore
 * import { createOutput } from "./_io.ts";
 * const out = await createOutput("copy.bin");
 * try {
 *   await out.write(new Uint8Array([1, 2, 3]));
 *   await out.commit();
 * } catch (e) {
 *   await out.abort();
 *   throw e;
 * }
 * ```
 */
export async function createOutput(path: string): Promise<OutputHandle> {
  if (path === "-") {
    return {
      name: "<stdout>",
      file: undefined,
      tempPath: undefined,
      write: (bytes) => writeAll(Deno.stdout, bytes),
      commit: async () => {},
      abort: async () => {},
    };
  }
  const suffix = crypto.getRandomValues(new Uint32Array(1))[0].toString(16);
  const tempPath = `${path}.tmp-${suffix}`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(tempPath, { write: true, createNew: true });
  } catch (e) {
    throw new Error(`Cannot create ${path}: ${(e as Error).message}`, { cause: e });
  }
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    file.close();
  };
  return {
    name: path,
    file,
    tempPath,
    write: (bytes) => writeAll(file, bytes),
    async commit() {
      await file.syncData();
      close();
      await Deno.rename(tempPath, path);
    },
    async abort() {
      try {
        close();
      } catch {
        // Already closed or failed; removing is what matters.
      }
      try {
        await Deno.remove(tempPath);
      } catch {
        // Nothing to remove.
      }
    },
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
