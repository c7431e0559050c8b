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
  /** Bytes the guest reads from its UART. */
  input?: Uint8Array;
  /** Guest UART output (default: stdout). */
  sink?: (bytes: Uint8Array) => void;
}

/** What {@linkcode runGuest} returns. */
export interface RunGuestResult {
  /** Why the run ended ("budget" means `stopAt` was reached). */
  exit: ExitReason;
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
  const stopAt = options.stopAt;
  let exit: ExitReason;
  if (stopAt !== undefined) {
    if (!Number.isSafeInteger(stopAt) || stopAt < 0) {
      throw new RangeError(`Cannot run: --stop-at ${stopAt} is not a non-negative integer`);
    }
    exit = machine.run(stopAt);
  } else {
    do exit = machine.run(100_000_000); while (exit.reason === "budget");
  }
  return { exit, retired: machine.hart.retired, machine };
}

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
