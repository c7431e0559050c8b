/**
 * The destination's guest side of a post-copy migration (docs/MIGRATION.md §8): the machine is
 * built from the source's device state with every page of RAM absent (GATE_ABSENT,
 * emulator/ram.ts), and runs at once. A fault on an absent page posts the page's number to the
 * host thread, which asks the source for it, writes its bytes into the shared RAM and clears the
 * page's absent bit; meanwhile the guest's thread waits for that bit alone (`Atomics.wait`,
 * bounded). A page never comes from anywhere else, so the guest never runs on bytes that are not
 * its own.
 *
 * @module
 */

import type { DeviceSection } from "../../format/device_section.ts";
import type { MachineDescription } from "../../format/header.ts";
import { Machine, type MachineOptions } from "../machine.ts";
import { type AbsentPageHandler, GATE_ABSENT } from "../ram.ts";
import { PAGE_SIZE, RAM_BASE } from "../memory_map.ts";
import {
  checkDescriptionFits,
  instructionsCountedFrom,
  SnapshotMismatchError,
  STATE_MIGRATIONS,
  stateFromSections,
} from "./machine_state.ts";

/** What the guest thread needs to build a post-copy destination's machine. */
export interface PostcopyBoot {
  /** The machine (the HEADER of the stream, FORMAT.md §5). */
  description: MachineDescription;
  /** Where the state at the switch-over arrives (one message: a {@linkcode PostcopyState}, or
   * null to give up). The machine is built before they come (RAM,
   * every page absent), so that only the state's restore is left for the switch-over. */
  state: MessagePort;
  /** The longest a fault waits for its page, milliseconds (then the run ends with an error). */
  waitBoundMs: number;
  /** One `Int32Array` word the host sets to {@linkcode POSTCOPY_COMPLETE} once every page is
   * present (the guest's thread then stops testing loads for absent pages, `Ram.lazy`), or to
   * {@linkcode POSTCOPY_ABANDONED} when the migration failed (a waiting fault then ends the run). */
  complete: SharedArrayBuffer;
}

/** `PostcopyBoot.complete`: every page is present. */
export const POSTCOPY_COMPLETE = 1;
/** `PostcopyBoot.complete`: the migration failed; no page will come any more. */
export const POSTCOPY_ABANDONED = 2;

/** Between two runs: turns the load test off once the host says every page is present. */
export function settlePostcopy(machine: Machine, boot: PostcopyBoot): void {
  if (machine.ram.lazy && Atomics.load(new Int32Array(boot.complete), 0) === POSTCOPY_COMPLETE) {
    machine.ram.lazy = false;
  }
}

/** The state a post-copy destination's guest thread receives on `PostcopyBoot.state`. */
export interface PostcopyState {
  /** The device sections of the state at the switch-over. */
  sections: DeviceSection[];
  /** SWITCHOVER's instruction count, which the restored state must have. */
  atInstruction: number;
}

/** A fault the source did not answer within its bound: the guest stopped before the access. */
export class PostcopyFaultError extends Error {
  /** The page (0 = the page at RAM_BASE). */
  readonly page: number;
  /** `page` did not arrive within `ms` (-1: the migration failed while it waited). */
  constructor(page: number, ms: number) {
    super(
      `Cannot run the migrated guest: page ${page} (address 0x${
        (RAM_BASE + page * PAGE_SIZE).toString(16)
      }) did not arrive from the source ${
        ms < 0 ? "before the migration failed" : `within ${ms} ms`
      }; the guest was stopped before the access`,
    );
    this.name = "PostcopyFaultError";
    this.page = page;
  }
}

/** The absent-page handler of a post-copy destination (runs on the guest's thread). */
export class PostcopyPager implements AbsentPageHandler {
  readonly #gate: Int32Array;
  readonly #ask: (page: number) => void;
  readonly #waitBoundMs: number;
  readonly #state: Int32Array;

  /** Asks for pages with `ask` (page -1: all of them) and waits on `gate` for them; gives up
   * when `state`'s word becomes {@linkcode POSTCOPY_ABANDONED}. */
  constructor(
    gate: Int32Array,
    ask: (page: number) => void,
    waitBoundMs: number,
    state: Int32Array = new Int32Array(1),
  ) {
    this.#gate = gate;
    this.#ask = ask;
    this.#waitBoundMs = waitBoundMs;
    this.#state = state;
  }

  /** Waits (bounded) until `page` is present. */
  #await(page: number, until: number): void {
    for (;;) {
      const g = Atomics.load(this.#gate, page);
      if ((g & GATE_ABSENT) === 0) return;
      const left = until - performance.now();
      if (left <= 0) throw new PostcopyFaultError(page, this.#waitBoundMs);
      if (Atomics.load(this.#state, 0) === POSTCOPY_ABANDONED) {
        throw new PostcopyFaultError(page, -1);
      }
      Atomics.wait(this.#gate, page, g, Math.min(left, 100));
    }
  }

  /** See emulator/ram.ts. */
  fault(page: number): void {
    if ((Atomics.load(this.#gate, page) & GATE_ABSENT) === 0) return;
    this.#ask(page);
    this.#await(page, performance.now() + this.#waitBoundMs);
  }

  /** See emulator/ram.ts: asks for the whole rest, then waits for each page in turn (each
   * wait bounded). */
  faultAll(): void {
    this.#ask(-1);
    for (let p = 0; p < this.#gate.length; p++) {
      this.#await(p, performance.now() + this.#waitBoundMs);
    }
  }
}

/**
 * Builds the machine of a post-copy destination: every page absent, faults posted with `ask`;
 * calls `onReady` with it (its RAM is where a hybrid's precopied pages go, absent until
 * confirmed), then waits for the device state on `boot.state` and restores it. Throws
 * {@linkcode SnapshotMismatchError} for a machine or state that does not fit this emulator.
 */
export async function postcopyMachine(
  boot: PostcopyBoot,
  uartSink: MachineOptions["uartSink"],
  ask: (page: number) => void,
  onReady: (machine: Machine) => void,
): Promise<Machine> {
  const ramSize = checkDescriptionFits(boot.description);
  const machine = new Machine({ ramSize, uartSink });
  machine.instructionsCountedFrom = instructionsCountedFrom(boot.description);
  const ram = machine.ram;
  ram.setAbsentHandler(
    new PostcopyPager(ram.pageGate, ask, boot.waitBoundMs, new Int32Array(boot.complete)),
  );
  ram.markAbsent(0, ram.pageCount);
  onReady(machine);
  const got = await new Promise<PostcopyState | null>((resolve) => {
    boot.state.onmessage = (e) => resolve(e.data);
  });
  boot.state.close();
  if (got === null) {
    throw new Error("Cannot start the guest: the migration ended before its state arrived");
  }
  try {
    machine.restore(stateFromSections(got.sections, STATE_MIGRATIONS));
  } catch (e) {
    if (e instanceof SnapshotMismatchError) throw e;
    throw new SnapshotMismatchError((e as Error).message.replace(/^Cannot restore /, ""));
  }
  // Checked here, before the guest can run a single instruction of a state that is not it.
  if (machine.hart.retired !== got.atInstruction) {
    throw new SnapshotMismatchError(
      `the device state is at instruction ${machine.hart.retired}, the source's SWITCHOVER says ${got.atInstruction}`,
    );
  }
  return machine;
}
