/**
 * Restore: rebuilds a machine from a snapshot stream. Everything is checked before the machine
 * is handed back (the file's machine description against this emulator, every record's CRC, the
 * file and content digests, device ids and state versions, with older versions migrated), so a
 * snapshot that does not fit is refused before a single instruction runs.
 *
 * @module
 */

import { SnapshotStreamReader } from "../../format/stream_reader.ts";
import type { DeviceSection } from "../../format/device_section.ts";
import type { MachineDescription } from "../../format/header.ts";
import { toHex } from "../../format/checksum.ts";
import { Machine, type MachineOptions } from "../machine.ts";
import {
  checkDescriptionFits,
  instructionsCountedFrom,
  SnapshotMismatchError,
  STATE_MIGRATIONS,
  stateFromSections,
  type StateMigration,
} from "./machine_state.ts";

/** Options of {@linkcode restoreMachine}. */
export interface RestoreOptions {
  /** Receives the restored guest's UART output. */
  uartSink?: MachineOptions["uartSink"];
  /** State migrations to apply (default: the emulator's table). */
  migrations?: Readonly<Record<string, Readonly<Record<number, StateMigration>>>>;
}

/** A machine rebuilt from a snapshot, ready to run on. */
export interface RestoredMachine {
  machine: Machine;
  description: MachineDescription;
  /** The file's content digest (checked against its pages and devices), lowercase hex. */
  contentDigest: string;
  /** Instructions the guest had retired at the snapshot. */
  retired: number;
}

/**
 * Reads a whole snapshot from `stream` into a new machine. Throws format/'s `LsnapError`
 * subclasses for a damaged or incomplete file and {@linkcode SnapshotMismatchError} for one
 * this emulator cannot continue.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { Machine } from "../machine.ts";
 * import { machineContentDigest } from "./machine_state.ts";
 * import { restoreMachine } from "./restore.ts";
 * import { saveMachine } from "./save.ts";
 * const elf = await Deno.readFile(new URL("../guests/build/counter.elf", import.meta.url));
 * const boot = () => Machine.fromElf(elf, { ramSize: 4 << 20, uartSink: () => {} });
 * const original = boot();
 * original.run(50_000);
 * const dir = await Deno.makeTempDir();
 * await saveMachine(original, `${dir}/c.lsnap`);
 * const file = await Deno.open(`${dir}/c.lsnap`);
 * const { machine } = await restoreMachine(file.readable, { uartSink: () => {} });
 * machine.run(50_000);
 * // "run N, snapshot, restore, run M" is "run N+M".
 * const whole = boot();
 * whole.run(100_000);
 * assertEquals(await machineContentDigest(machine), await machineContentDigest(whole));
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function restoreMachine(
  stream: ReadableStream<Uint8Array>,
  options: RestoreOptions = {},
): Promise<RestoredMachine> {
  const reader = new SnapshotStreamReader(stream);
  let machine: Machine | null = null;
  const devices = new Map<string, DeviceSection>();
  for await (const r of reader.records()) {
    if (r.kind === "header") {
      const ramSize = checkDescriptionFits(r.description);
      machine = new Machine({ ramSize, uartSink: options.uartSink });
      machine.instructionsCountedFrom = instructionsCountedFrom(r.description);
    } else if (r.kind === "pages") {
      // Straight into RAM, bypassing the gate: nothing runs and no snapshot is in progress.
      const ram = machine!.ram.bytes;
      const ps = reader.description!.regions[r.region].pageSize;
      for (let i = 0; i < r.pages.length; i++) {
        const at = r.pages[i] * ps;
        if (r.data === null) ram.fill(0, at, at + ps);
        else ram.set(r.data.subarray(i * ps, (i + 1) * ps), at);
      }
    } else if (r.kind === "device") {
      devices.set(`${r.device.id}\u0000${r.device.instance}`, r.device);
    }
  }
  if (machine === null || reader.description === null) {
    throw new SnapshotMismatchError("the file has no machine description");
  }
  const state = stateFromSections([...devices.values()], options.migrations ?? STATE_MIGRATIONS);
  try {
    machine.restore(state);
  } catch (e) {
    throw new SnapshotMismatchError((e as Error).message.replace(/^Cannot restore /, ""));
  }
  return {
    machine,
    description: reader.description,
    contentDigest: toHex(reader.contentDigest!),
    retired: machine.hart.retired,
  };
}
