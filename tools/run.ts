/**
 * `livesnap run`: run a guest ELF on the bundled `livesnap-virt-rv32` machine.
 *
 * @module
 */

import { type ExitReason, Machine } from "../emulator/machine.ts";
import { DEFAULT_RAM_SIZE, MAX_RAM_SIZE, PAGE_SIZE } from "../emulator/memory_map.ts";
import { parseSize } from "./_args.ts";
import { UsageError } from "./_command.ts";

/** Options for {@linkcode runGuest}. */
export interface RunGuestOptions {
  /** The statically linked RV32 ELF. */
  elf: Uint8Array;
  /** RAM size in bytes (default 128 MiB). */
  ramSize?: number;
  /** Stop after exactly this many retired instructions (counted from reset). */
  stopAt?: number;
  /** A guard: stop once this many instructions have retired (counted from reset) without the
   * guest finishing, and say so in `limitReached` (`run --max-instructions`, exit status 124). */
  maxInstructions?: number;
  /** Bytes the guest reads from its UART. */
  input?: Uint8Array;
  /** Guest UART output (default: stdout). */
  sink?: (bytes: Uint8Array) => void;
}

/** What {@linkcode runGuest} returns. */
export interface RunGuestResult {
  /** Why the run ended ("budget" means `stopAt` or `maxInstructions` was reached). */
  exit: ExitReason;
  /** True when `maxInstructions` stopped the run (before `stopAt` and before the guest ended). */
  limitReached: boolean;
  /** Instructions retired since reset. */
  retired: number;
  /** The machine, stopped, for inspection (or a digest of its state). */
  machine: Machine;
}

/**
 * Load `elf` into a fresh machine and run it until it powers off, stops for another reason, or
 * retires `stopAt` instructions.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { runGuest } from "./run.ts";
 * const elf = await Deno.readFile("emulator/guests/build/hello.elf");
 * const { exit } = runGuest({ elf, sink: (b) => Deno.stdout.writeSync(b) });
 * assert(exit.reason === "exit");
 * ```
 */
export function runGuest(options: RunGuestOptions): RunGuestResult {
  const machine = Machine.fromElf(options.elf, {
    ramSize: options.ramSize ?? DEFAULT_RAM_SIZE,
    uartSink: options.sink,
  });
  if (options.input !== undefined) machine.uart.pushInput(options.input);
  const { stopAt, maxInstructions } = options;
  for (const [option, n] of [["--stop-at", stopAt], ["--max-instructions", maxInstructions]]) {
    if (n !== undefined && (!Number.isSafeInteger(n) || (n as number) < 0)) {
      throw new RangeError(`Cannot run: ${option} ${n} is not a non-negative integer`);
    }
  }
  const { exit, limitReached } = runBounded(machine, stopAt, maxInstructions);
  return { exit, limitReached, retired: machine.hart.retired, machine };
}

/**
 * Runs `machine` until it stops by itself, or reaches `stopAt` or `maxInstructions` (both
 * counted from reset), whichever comes first; `limitReached` when the guard ended it. The two
 * stops are told apart when equal too: `stopAt` is what was asked for, so it wins.
 */
export function runBounded(
  machine: Machine,
  stopAt: number | undefined,
  maxInstructions: number | undefined,
  between?: { slice: number; call: (retired: number) => void },
): { exit: ExitReason; limitReached: boolean } {
  const end = Math.min(stopAt ?? Infinity, maxInstructions ?? Infinity);
  let exit: ExitReason;
  if (between !== undefined) {
    // In slices, with a call between two (a lazy restore's pager): run(a) then run(b) is
    // run(a + b), so the slices change nothing the guest computes.
    do {
      between.call(machine.hart.retired);
      exit = machine.run(Math.max(0, Math.min(between.slice, end - machine.hart.retired)));
    } while (exit.reason === "budget" && machine.hart.retired < end);
  } else if (end !== Infinity) {
    exit = machine.run(Math.max(0, end - machine.hart.retired));
  } else {
    do exit = machine.run(100_000_000); while (exit.reason === "budget");
  }
  const limitReached = exit.reason === "budget" && maxInstructions !== undefined &&
    machine.hart.retired >= maxInstructions && (stopAt === undefined || stopAt > maxInstructions);
  return { exit, limitReached };
}

/** The exit status of a run the `--max-instructions` guard stopped, as timeout(1)'s. */
export const LIMIT_EXIT_STATUS = 124;

/** Parse a RAM size such as `128M`, `1G`, `64MiB` or `4194304` (binary units) for `--ram`. */
export function parseRamSize(text: string): number {
  const size = parseSize(text, "--ram");
  if (size % PAGE_SIZE !== 0 || size > MAX_RAM_SIZE) {
    throw new UsageError(
      `Cannot use --ram ${text} (${size} bytes): it must be a multiple of ${PAGE_SIZE} from ${PAGE_SIZE} to 2 GiB`,
    );
  }
  return size;
}
