/**
 * The one way livesnap writes an output file (FORMAT.md §9): the bytes go to a temporary beside
 * the destination, named `<path>.tmp-<host>-<pid>-<12 hex digits>`; {@linkcode AtomicFile.commit}
 * fsyncs it, renames it over `path` and fsyncs the directory, so that `path` is either the old
 * file or the whole new one, even across a crash; {@linkcode AtomicFile.abort} (or a failed
 * commit) removes it. Before creating its temporary, a writer removes the temporaries of `path`
 * that writers killed on this host left behind.
 *
 * `<host>` is 8 hex digits of CRC32C of the host name, `<pid>` the writing process. Temporaries of
 * a running process (even an unrelated one that reused the PID) and of other hosts (a shared
 * network filesystem, another container) are left alone, so a concurrent writer never loses its
 * file. Where processes cannot be checked (no /proc), nothing is removed.
 *
 * @module
 */

/**
 * The file-system operations an {@linkcode AtomicFile} performs, so that tests can watch or fail
 * them; {@linkcode DENO_FS} is the real one.
 */
export interface AtomicFs {
  /** Opens a file (the temporary, created new; every write goes through the file returned). */
  open(path: string, options: Deno.OpenOptions): Promise<Deno.FsFile>;
  /** Makes the file's bytes durable (fsync). */
  syncFile(file: Deno.FsFile): Promise<void>;
  /** Renames a file (the temporary to the destination, replacing it). */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file. */
  remove(path: string): Promise<void>;
  /** Makes a rename in `dir` durable (fsync of the directory); a no-op where unsupported. */
  syncDirectory(dir: string): Promise<void>;
  /** Names of the regular files in `dir`. */
  listFiles(dir: string): AsyncIterable<string>;
  /** True if process `pid` runs on this host, null when that cannot be told. */
  processRuns(pid: number): boolean | null;
  /** This host's name, as temporaries record it. */
  hostname(): string;
}

/** The real file system. */
export const DENO_FS: AtomicFs = {
  open: (path, options) => Deno.open(path, options),
  syncFile: (file) => file.sync(),
  rename: (from, to) => Deno.rename(from, to),
  remove: (path) => Deno.remove(path),
  async syncDirectory(dir) {
    try {
      const d = await Deno.open(dir, { read: true });
      try {
        await d.sync();
      } finally {
        d.close();
      }
    } catch {
      // Not every platform lets a directory be opened or synced.
    }
  },
  async *listFiles(dir) {
    for await (const e of Deno.readDir(dir)) if (e.isFile) yield e.name;
  },
  processRuns(pid) {
    try {
      Deno.statSync("/proc/self");
    } catch {
      return null;
    }
    try {
      Deno.statSync(`/proc/${pid}`);
      return true;
    } catch {
      return false;
    }
  },
  hostname() {
    try {
      return Deno.hostname();
    } catch {
      // No --allow-sys: every temporary of this process's kind shares the tag of "unknown".
      return "unknown";
    }
  },
};

/**
 * CRC32C (FORMAT.md §1) bit by bit: the host name is a few bytes, and this module stays free of
 * WebAssembly so that a command can load it first.
 */
function smallCrc32c(bytes: Uint8Array): number {
  let crc = 0xffff_ffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f6_3b78 & -(crc & 1));
  }
  return (crc ^ 0xffff_ffff) >>> 0;
}

function hostTag(fs: AtomicFs): string {
  return smallCrc32c(new TextEncoder().encode(fs.hostname())).toString(16).padStart(8, "0");
}

function split(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  return i < 0
    ? { dir: ".", base: path }
    : { dir: path.slice(0, i) || "/", base: path.slice(i + 1) };
}

/**
 * A fresh temporary name for `path` in the same directory.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { tempPathFor } from "./atomic_file.ts";
 * assert(/^\/x\/vm\.lsnap\.tmp-[0-9a-f]{8}-\d+-[0-9a-f]{12}$/.test(tempPathFor("/x/vm.lsnap")));
 * ```
 */
export function tempPathFor(path: string, fs: AtomicFs = DENO_FS): string {
  const rand = crypto.getRandomValues(new Uint8Array(6));
  const hex = Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${path}.tmp-${hostTag(fs)}-${Deno.pid}-${hex}`;
}

/**
 * Removes the temporaries of `path` left by dead writers on this host; returns the names removed.
 * Never throws: a directory it cannot read or a file it cannot remove is left as it is.
 */
export async function removeStaleTemporaries(
  path: string,
  fs: AtomicFs = DENO_FS,
): Promise<string[]> {
  const { dir, base } = split(path);
  const tag = hostTag(fs);
  const removed: string[] = [];
  try {
    for await (const name of fs.listFiles(dir)) {
      if (!name.startsWith(`${base}.tmp-`)) continue;
      const m = /^-([0-9a-f]{8})-(\d+)-[0-9a-f]{12}$/.exec(name.slice(base.length + 4));
      if (m === null || m[1] !== tag) continue;
      const pid = Number(m[2]);
      if (pid === Deno.pid || fs.processRuns(pid) !== false) continue;
      const full = dir === "." ? name : `${dir === "/" ? "" : dir}/${name}`;
      try {
        await fs.remove(full);
        removed.push(full);
      } catch {
        // Removed by another writer meanwhile, or not ours to remove.
      }
    }
  } catch {
    // The directory cannot be listed: creating the temporary will report the real problem.
  }
  return removed;
}

/**
 * An output file being written through a temporary (see the module documentation).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { AtomicFile } from "./atomic_file.ts";
 * const dir = await Deno.makeTempDir();
 * const out = await AtomicFile.create(`${dir}/copy.bin`);
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
export class AtomicFile {
  private open = true;
  private finished = false;

  private constructor(
    /** The destination. */
    readonly path: string,
    /** The temporary the bytes go to until {@linkcode commit}. */
    readonly tempPath: string,
    /** The temporary, open for writing (seek and truncate allowed). */
    readonly file: Deno.FsFile,
    private readonly fs: AtomicFs,
  ) {}

  /**
   * Removes stale temporaries of `path`, then creates a new temporary for it. Throws
   * "Cannot create '<path>': <reason>" when the temporary cannot be created.
   */
  static async create(path: string, options: { fs?: AtomicFs } = {}): Promise<AtomicFile> {
    const fs = options.fs ?? DENO_FS;
    await removeStaleTemporaries(path, fs);
    const tempPath = tempPathFor(path, fs);
    let file: Deno.FsFile;
    try {
      file = await fs.open(tempPath, { write: true, createNew: true });
    } catch (e) {
      throw new Error(`Cannot create '${path}': ${(e as Error).message}`, { cause: e });
    }
    return new AtomicFile(path, tempPath, file, fs);
  }

  /** Writes all of `bytes` at the file's current position. */
  async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) done += await this.file.write(bytes.subarray(done));
  }

  /** Makes the bytes written so far durable (fsync of the temporary). */
  async sync(): Promise<void> {
    await this.fs.syncFile(this.file);
  }

  private close(): void {
    if (!this.open) return;
    this.open = false;
    try {
      this.file.close();
    } catch {
      // A file whose writes failed may already be unusable; removing it is what matters.
    }
  }

  /**
   * Makes the file visible at `path`: fsync, close, rename, fsync of the directory. On failure
   * the temporary is removed and the error names `path`.
   */
  async commit(): Promise<void> {
    if (this.finished) throw new Error(`Cannot commit '${this.path}': it was already finished`);
    this.finished = true;
    try {
      await this.fs.syncFile(this.file);
      this.close();
      await this.fs.rename(this.tempPath, this.path);
    } catch (e) {
      this.close();
      await this.fs.remove(this.tempPath).catch(() => {});
      throw new Error(`Cannot write '${this.path}': ${(e as Error).message}`, { cause: e });
    }
    await this.fs.syncDirectory(split(this.path).dir);
  }

  /** Closes and removes the temporary; `path` is left as it was. Never throws. */
  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.close();
    await this.fs.remove(this.tempPath).catch(() => {});
  }
}
