/**
 * Lowering the calling thread's scheduling priority (Linux `setpriority` on the thread's id,
 * through FFI where the process may use it): for a lazy restore's background loader, whose work
 * the guest does not wait for, so that on a machine without a spare core the guest's thread keeps
 * its share (BENCHMARKS.md, "Restore: lazy and eager").
 *
 * @module
 */

import { readThreadId } from "./metrics.ts";

type Libc = { symbols: { setpriority: (which: number, who: number, prio: number) => number } };

let libc: Libc | null | undefined;

function openLibc(): Libc | null {
  if (Deno.build.os !== "linux") return null;
  for (const name of ["libc.so.6", `libc.musl-${Deno.build.arch}.so.1`]) {
    try {
      return Deno.dlopen(name, {
        setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
      }) as unknown as Libc;
    } catch {
      // try the next one (a denied FFI permission throws too: then nothing is lowered)
    }
  }
  return null;
}

/** `PRIO_PROCESS`: with a thread id, Linux sets that one thread's nice value. */
const PRIO_PROCESS = 0;

/**
 * Sets the calling thread's nice value to `nice` (default 19, the lowest priority); a thread may
 * always lower its own priority. False where this cannot be done (not Linux, no FFI, no thread id).
 */
export function lowerThreadPriority(nice = 19): boolean {
  if (libc === undefined) libc = openLibc();
  const tid = readThreadId();
  if (libc === null || tid === 0) return false;
  return libc.symbols.setpriority(PRIO_PROCESS, tid, nice) === 0;
}
