/**
 * Lowering the calling thread's scheduling priority (Linux `setpriority` on the thread's id,
 * through FFI where the process may use it): for a lazy restore's background loader, whose work
 * the guest does not wait for, so that on a machine without a spare core the guest's thread keeps
 * its share (BENCHMARKS.md, "Restore: lazy and eager").
 *
 * @module
 */

import { libc } from "./_libc.ts";
import { readThreadId } from "./metrics.ts";

/** `PRIO_PROCESS`: with a thread id, Linux sets that one thread's nice value. */
const PRIO_PROCESS = 0;

/**
 * Sets the calling thread's nice value to `nice` (default 19, the lowest priority); a thread may
 * always lower its own priority. False where this cannot be done (not Linux, no FFI, no thread id).
 */
export function lowerThreadPriority(nice = 19): boolean {
  const c = libc();
  const tid = readThreadId();
  if (c === null || tid === 0) return false;
  return c.symbols.setpriority(PRIO_PROCESS, tid, nice) === 0;
}
