/**
 * Gives the memory of a range of a `SharedArrayBuffer` back to the operating system without
 * freeing the buffer: `madvise(MADV_DONTNEED)` (Linux, through libc with Deno's FFI). The range
 * reads as zeros afterwards and costs nothing until it is written again.
 *
 * JavaScript itself cannot do this: a buffer's memory goes back only when every thread's garbage
 * collector has freed the buffer, and on the guest thread that full collection stops the guest
 * for milliseconds (see slot_chunks.ts). When this module works (Linux, the process allowed FFI:
 * `deno run -A` or `--allow-ffi`), the copy buffer's chunks are kept and their pages discarded
 * instead; elsewhere {@linkcode discardPages} returns false and the engine falls back to dropping
 * chunks and collecting garbage.
 *
 * (`MADV_POPULATE_WRITE`, to fault the buffer in ahead of the guest in one call, was tried and
 * dropped: on the virtual machine of BENCHMARKS.md the cost of fresh memory is in the first write
 * from user space, which populating does not remove.)
 *
 * @module
 */

import { libc } from "./_libc.ts";

/** `MADV_DONTNEED` on Linux: the pages are dropped now; private anonymous memory reads as zeros
 * afterwards (madvise(2)). */
const MADV_DONTNEED = 4;
const PAGE = 4096n;

/** True if {@linkcode discardPages} can work in this process (tried once, then remembered). */
export function canDiscardPages(): boolean {
  return libc() !== null;
}

/** The address of `view`'s first byte. */
function addressOf(view: Uint8Array): bigint | null {
  const pointer = Deno.UnsafePointer.of(view as Uint8Array<ArrayBuffer>);
  return pointer === null ? null : BigInt(Deno.UnsafePointer.value(pointer));
}

/**
 * Discards the whole 4 KiB pages inside `view` (over a `SharedArrayBuffer` or an
 * `ArrayBuffer`): the OS takes their memory back; they read as zeros and are faulted in again
 * when written. Pages that `view` covers only partly are kept. Returns false, and changes
 * nothing, where this cannot be done (see {@linkcode canDiscardPages}).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { discardPages } from "./discard_pages.ts";
 * const bytes = new Uint8Array(new SharedArrayBuffer(64 * 1024)).fill(7);
 * if (discardPages(bytes)) assertEquals(bytes[32 * 1024], 0); // a whole page inside: zeros now
 * ```
 */
export function discardPages(view: Uint8Array): boolean {
  if (!canDiscardPages() || view.byteLength === 0) return false;
  const at = addressOf(view);
  if (at === null) return false;
  const start = (at + PAGE - 1n) & ~(PAGE - 1n);
  const end = (at + BigInt(view.byteLength)) & ~(PAGE - 1n);
  if (end <= start) return true;
  return libc()!.symbols.madvise(Deno.UnsafePointer.create(start), end - start, MADV_DONTNEED) ===
    0;
}

/** `MADV_HUGEPAGE` on Linux: back the range with 2 MiB pages where possible (transparent huge
 * pages in `madvise` mode, the kernel's default). */
const MADV_HUGEPAGE = 14;
/** `MADV_POPULATE_WRITE` (Linux 5.14): fault the whole range in for writing, in the kernel. */
const MADV_POPULATE_WRITE = 23;
const HUGE = 2n * 1024n * 1024n;

function adviseRange(view: Uint8Array, advice: number, align: bigint): boolean {
  if (!canDiscardPages() || view.byteLength === 0) return false;
  const at = addressOf(view);
  if (at === null) return false;
  const start = (at + align - 1n) & ~(align - 1n);
  const end = (at + BigInt(view.byteLength)) & ~(align - 1n);
  if (end <= start) return false;
  return libc()!.symbols.madvise(Deno.UnsafePointer.create(start), end - start, advice) === 0;
}

/**
 * Asks for `view`'s memory (its whole 2 MiB-aligned part) to be backed by huge pages, so that
 * first touching it costs a fault per 2 MiB rather than per 4 KiB: on the 2-core VM of
 * BENCHMARKS.md, fresh memory costs 3-4 s/GiB (much more under load) in 4 KiB faults. False
 * where this cannot be done (no FFI, not Linux) or the kernel refused.
 */
export function adviseHugePages(view: Uint8Array): boolean {
  return adviseRange(view, MADV_HUGEPAGE, HUGE);
}

/**
 * The offset in `buffer` of its first byte on a 2 MiB boundary (where a huge page can start), or
 * -1 where addresses cannot be read (no FFI, not Linux) or `buffer` holds no boundary.
 */
export function hugePageOffset(buffer: SharedArrayBuffer): number {
  if (!canDiscardPages() || buffer.byteLength === 0) return -1;
  const at = addressOf(new Uint8Array(buffer));
  if (at === null) return -1;
  const offset = Number(((at + HUGE - 1n) & ~(HUGE - 1n)) - at);
  return offset < buffer.byteLength ? offset : -1;
}

/**
 * Faults all of `view`'s whole pages in for writing in one system call (`MADV_POPULATE_WRITE`),
 * instead of one fault per page from JavaScript. False where this cannot be done.
 */
export function populatePages(view: Uint8Array): boolean {
  return adviseRange(view, MADV_POPULATE_WRITE, PAGE);
}
