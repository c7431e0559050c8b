/**
 * The per-page state of a snapshot in progress, shared by the guest thread and the writer. It
 * lives in the emulator's page gate (`emulator/ram.ts`), in the bits of each entry that belong to
 * the engine, so that the guest's hot path (one load of the entry, one test against
 * `Ram.gateOpen`) sends exactly the pages whose state needs a look to the engine's hook.
 *
 * An entry is `(generation << 3) | machine bits | GATE_HOOK`. Each `cow` or `precopy` snapshot
 * has a generation of its own, G (1, 2, 3... kept in shared memory); the guest's `gateOpen` is
 * `G << 3`. A page's state is:
 *
 * | state | entry | moved by |
 * |---|---|---|
 * | protected (`cow`) / dirty-armed (`precopy`): its contents at the instant are still only in RAM | generation ≠ G | the snapshot instant, for all pages at once: it moves to a new G and touches no page |
 * | copying: the guest copies it into a buffer slot, or the writer copies it out of RAM | generation = G, GATE_HOOK set | guest or writer, by compare-and-swap from protected |
 * | saved: its snapshot contents are safe | generation = G, no GATE_HOOK | whoever copied it (clears GATE_HOOK) |
 * | open: stored to since the instant, logged in the dirty-tracking bitmap; stores go straight through | generation = G + 1 (precopy before its final pause: G) | the guest's store hook, from any other state but copying |
 *
 * Every move out of protected is one compare-and-swap (`Atomics.compareExchange`) on the entry,
 * never a read followed by a separate write, so two threads can never both believe they own a
 * page (the invariants this keeps: `README.md`, "Page states and how the invariants are kept").
 * The guest copies on its own thread, inside its store hook, so a copying page the guest meets
 * is always the writer's: it waits for that page alone. The writer skips every page of generation
 * G or above: saved, open, or claimed by the guest (whose copy
 * reaches the file from the buffer queue). The machine's bits (watch, code) are set and cleared
 * with `Atomics.or` / `Atomics.and` by the guest thread; a compare-and-swap that loses to one of
 * them reads the entry again.
 *
 * Generations are 29 bits wide. When the counter would pass {@linkcode MAX_GENERATION}, the
 * instant resets every entry's generation to 0 and starts again at 1: one pass over the gate,
 * once every 536 million snapshots.
 *
 * @module
 */

import { GATE_GENERATION_SHIFT, GATE_HOOK, GATE_MACHINE_BITS } from "../ram.ts";
import { PAGE_SHIFT as MACHINE_PAGE_SHIFT, PAGE_SIZE as MACHINE_PAGE_SIZE } from "../memory_map.ts";

/** The page-gate bit that belongs to the snapshot engine (`emulator/ram.ts`): a page is being
 * copied. */
export { GATE_GENERATION_SHIFT, GATE_HOOK, GATE_MACHINE_BITS };

/** Bytes in one guest page; the unit of protection, copying and page records. */
export const PAGE_SIZE: number = MACHINE_PAGE_SIZE;
/** log2(PAGE_SIZE). */
export const PAGE_SHIFT: number = MACHINE_PAGE_SHIFT;

/** The largest generation a gate entry holds (29 bits). */
export const MAX_GENERATION: number = 2 ** (32 - GATE_GENERATION_SHIFT) - 1;

/** The gate entry value (engine bits) of a page saved in generation `generation`: what the
 * guest's hot path compares entries with. */
export function openValue(generation: number): number {
  // (Every snapshot takes two generations, G and G + 1: see the table above.)
  return (generation << GATE_GENERATION_SHIFT) | 0;
}

/** The generation recorded in gate entry `entry`. */
export function entryGeneration(entry: number): number {
  return entry >>> GATE_GENERATION_SHIFT;
}

/** A page's state in generation `generation`, by name, for messages and tests. */
export function pageStateName(entry: number, generation: number): string {
  if (entryGeneration(entry) > generation) return "open";
  if (entryGeneration(entry) !== generation) return "protected";
  return (entry & GATE_HOOK) !== 0 ? "copying" : "saved";
}

/**
 * Claims page `page` for copying in generation `generation` if it is still protected (its entry
 * holds an older generation): one compare-and-swap to `generation` with GATE_HOOK set, the
 * machine's bits kept. False if the page is saved or claimed already.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { releasePage, tryClaimPage } from "./page_state.ts";
 * const gate = new Int32Array(new SharedArrayBuffer(4 * 4));
 * assert(tryClaimPage(gate, 2, 1)); // protected in generation 1: claimed
 * assert(!tryClaimPage(gate, 2, 1)); // claimed by someone: not again
 * releasePage(gate, 2);
 * assert(!tryClaimPage(gate, 2, 1)); // saved in generation 1
 * assert(tryClaimPage(gate, 2, 2)); // protected again in the next generation
 * ```
 */
export function tryClaimPage(gate: Int32Array, page: number, generation: number): boolean {
  const claimed = openValue(generation) | GATE_HOOK;
  for (;;) {
    const entry = Atomics.load(gate, page);
    // Generation G + 1 is a page saved and stored to since (open, logged for the next diff).
    if (entryGeneration(entry) >= generation) return false;
    const next = claimed | (entry & GATE_MACHINE_BITS);
    // Lost only to a machine bit the guest set meanwhile, or to the other claimer: look again.
    if (Atomics.compareExchange(gate, page, entry, next) === entry) return true;
  }
}

/**
 * Marks a claimed page saved (clears GATE_HOOK) and, if `waiting` is given and says a guest may
 * be waiting on a page (`waiting[index] !== 0`), wakes waiters on this very entry, so that no
 * other page's waiter is disturbed. The guest sets that flag before it waits, and both sides use
 * sequentially consistent atomics, so either the writer sees the flag or the guest's wait sees
 * the page saved.
 */
export function releasePage(
  gate: Int32Array,
  page: number,
  waiting?: Int32Array,
  index = 0,
): void {
  Atomics.and(gate, page, ~GATE_HOOK);
  if (waiting === undefined || Atomics.load(waiting, index) !== 0) Atomics.notify(gate, page);
}

/**
 * Moves a page to saved in generation `generation` whatever its state, keeping the machine's
 * bits: for pages no snapshot needs (none is running, the writer failed) and precopy's dirty
 * log (the page is logged first).
 */
export function forceOpenPage(gate: Int32Array, page: number, generation: number): void {
  const open = openValue(generation);
  for (;;) {
    const entry = Atomics.load(gate, page);
    if (Atomics.compareExchange(gate, page, entry, open | (entry & GATE_MACHINE_BITS)) === entry) {
      return;
    }
  }
}

/** Arms a page for precopy's dirty log: generation 0, which no snapshot has, so the next store
 * calls the hook. Only the guest thread arms pages, between slices. */
export function armPage(gate: Int32Array, page: number): void {
  Atomics.and(gate, page, GATE_MACHINE_BITS);
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
