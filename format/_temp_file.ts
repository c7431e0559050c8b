/**
 * Temporary files of {@linkcode SnapshotWriter.createFile}: their names, and the removal of those
 * a killed writer left behind (FORMAT.md §9).
 *
 * A temporary is named `<path>.tmp-<host>-<pid>-<12 hex digits>`: `<host>` is 8 hex digits
 * derived from the host name, `<pid>` the writing process. The next writer to the same `path`
 * removes every temporary of that path whose host is this host and whose process no longer runs.
 * Temporaries of a running process (even an unrelated one that reused the PID) and of other hosts
 * (a shared network filesystem, another container) are left alone, so a concurrent writer never
 * loses its file. Where processes cannot be checked (no /proc), nothing is removed.
 *
 * @module
 */
import { crc32c } from "./checksum.ts";

function hostTag(): string {
  let name = "unknown";
  try {
    name = Deno.hostname();
  } catch {
    // No --allow-sys: every temporary of this process's kind shares the tag "unknown".
  }
  return crc32c(new TextEncoder().encode(name)).toString(16).padStart(8, "0");
}

/** A fresh temporary name for `path` in the same directory. */
export function tempPathFor(path: string): string {
  const rand = crypto.getRandomValues(new Uint8Array(6));
  const hex = Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${path}.tmp-${hostTag()}-${Deno.pid}-${hex}`;
}

function split(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  return i < 0
    ? { dir: ".", base: path }
    : { dir: path.slice(0, i) || "/", base: path.slice(i + 1) };
}

/** True if process `pid` runs on this host, null when that cannot be told. */
function processRuns(pid: number): boolean | null {
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
}

/**
 * Removes the temporaries of `path` left by dead writers on this host; returns the names removed.
 * Never throws: a directory it cannot read or a file it cannot remove is left as it is.
 */
export async function removeStaleTemporaries(path: string): Promise<string[]> {
  const { dir, base } = split(path);
  const tag = hostTag();
  const removed: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.startsWith(`${base}.tmp-`)) continue;
      const m = /^-([0-9a-f]{8})-(\d+)-[0-9a-f]{12}$/.exec(e.name.slice(base.length + 4));
      if (m === null || m[1] !== tag) continue;
      const pid = Number(m[2]);
      if (pid === Deno.pid || processRuns(pid) !== false) continue;
      const full = dir === "." ? e.name : `${dir === "/" ? "" : dir}/${e.name}`;
      try {
        await Deno.remove(full);
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

/** Makes a rename in `dir` durable (fsync of the directory); a no-op where that is unsupported. */
export async function syncDirectory(path: string): Promise<void> {
  const { dir } = split(path);
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
}
