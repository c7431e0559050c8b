/**
 * The per-page state table of a snapshot in progress, shared by the guest thread and the writer,
 * and how it drives the emulator's page gate.
 *
 * Two arrays, both `Int32Array`s over `SharedArrayBuffer`s with one entry per 4 KiB page:
 *
 * - the emulator's `pageGate`, whose bit {@linkcode GATE_HOOK} (`emulator/ram.ts`) sends a store
 *   to the engine's hook; the guest's hot path tests the whole entry against 0, so a page whose
 *   snapshot contents are safe gets its bit cleared and stores to it cost nothing more. Other
 *   bits belong to the machine and are left alone (`Atomics.or` / `Atomics.and`).
 * - the state table below, which says what the hook must do. Every transition is a
 *   compare-and-swap (`Atomics.compareExchange`), never a read followed by a separate write, so
 *   two threads can never both believe they own a page. The invariants this keeps are in
 *   `README.md` ("Page states and how the invariants are kept").
 *
 * | value | state | moved by |
 * |---|---|---|
 * | 0 | open: saved (or no snapshot running) | whoever copied the page |
 * | 1 | protected: old contents still only in RAM | the snapshot instant (all pages at once) |
 * | 2 | copying (guest): the guest copies it into a buffer slot | guest: protected → copying |
 * | 3 | copying (writer): the writer copies it out of RAM | writer: protected → copying |
 * | 4 | dirty-armed (precopy): the first store logs the page dirty | the guest thread, between slices |
 *
 * @module
 */

import { GATE_HOOK } from "../ram.ts";
import { PAGE_SHIFT as MACHINE_PAGE_SHIFT, PAGE_SIZE as MACHINE_PAGE_SIZE } from "../memory_map.ts";

/** The page-gate bit that belongs to the snapshot engine (`emulator/ram.ts`). */
export { GATE_HOOK };

/** Bytes in one guest page; the unit of protection, copying and page records. */
export const PAGE_SIZE: number = MACHINE_PAGE_SIZE;
/** log2(PAGE_SIZE). */
export const PAGE_SHIFT: number = MACHINE_PAGE_SHIFT;

/** Saved, or not part of a snapshot: stores go ahead without calling the hook. */
export const PAGE_OPEN = 0;
/** Its contents at the snapshot instant are still in RAM and not yet saved. */
export const PAGE_PROTECTED = 1;
/** The guest is copying its old contents into a buffer slot before its store. */
export const PAGE_COPYING_GUEST = 2;
/** The writer is copying it straight out of RAM. */
export const PAGE_COPYING_WRITER = 3;
/** Precopy: the first store to it sets its bit in the dirty log and opens it. */
export const PAGE_DIRTY_ARMED = 4;

/** A state's name, for messages and tests. */
export function pageStateName(state: number): string {
  switch (state) {
    case PAGE_OPEN:
      return "open";
    case PAGE_PROTECTED:
      return "protected";
    case PAGE_COPYING_GUEST:
      return "copying-guest";
    case PAGE_COPYING_WRITER:
      return "copying-writer";
    case PAGE_DIRTY_ARMED:
      return "dirty-armed";
    default:
      return `unknown(${state})`;
  }
}

/**
 * Moves page `page` from `from` to `to` if and only if it is in `from` now.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { PAGE_COPYING_WRITER, PAGE_PROTECTED, tryMovePage } from "./page_state.ts";
 * const states = new Int32Array(new SharedArrayBuffer(4 * 4)).fill(PAGE_PROTECTED);
 * assert(tryMovePage(states, 2, PAGE_PROTECTED, PAGE_COPYING_WRITER));
 * assert(!tryMovePage(states, 2, PAGE_PROTECTED, PAGE_COPYING_WRITER));
 * ```
 */
export function tryMovePage(states: Int32Array, page: number, from: number, to: number): boolean {
  return Atomics.compareExchange(states, page, from, to) === from;
}

/**
 * Marks a page saved: its state becomes open, its gate bit is cleared so later stores skip the
 * hook, and a guest waiting on it wakes (it waits on this very entry, so no other page's waiter
 * is disturbed).
 */
export function openPage(states: Int32Array, gate: Int32Array, page: number): void {
  Atomics.store(states, page, PAGE_OPEN);
  Atomics.and(gate, page, ~GATE_HOOK);
  Atomics.notify(states, page);
}

/** True if every byte of the page starting at `offset` is zero. */
export function isZeroPage(bytes: Uint8Array, offset: number): boolean {
  // Aligned 32-bit view over the same memory: 1024 loads instead of 4096.
  const words = new Int32Array(bytes.buffer, bytes.byteOffset + offset, PAGE_SIZE >> 2);
  for (let i = 0; i < words.length; i++) {
    if (words[i] !== 0) return false;
  }
  return true;
}
