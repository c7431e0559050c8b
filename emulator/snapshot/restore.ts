/**
 * Restore: rebuilds a machine from a snapshot stream. Everything is checked before the machine
 * is handed back (the file's machine description against this emulator, every record's CRC, the
 * file and content digests, device ids and state versions, with older versions migrated), so a
 * snapshot that does not fit is refused before a single instruction runs.
 *
 * A QEMU `virt` snapshot is restored too, through the field-by-field mapping of
 * `qemu/riscv_virt_import.ts`: a QEMU migration stream (recognised by its first bytes) or an `.lsnap`
 * converted from one (recognised by its header's QEMU metadata).
 *
 * @module
 */

import { SnapshotStreamReader } from "../../format/stream_reader.ts";
import { isQemuStream } from "../../qemu/stream_reader.ts";
import {
  feedLsnapDevice,
  restoreQemuStream,
  virtBuilderFor,
  type VirtMachineBuilder,
} from "../../qemu/riscv_virt_restore.ts";
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
  /** The machine with the snapshot's RAM, registers and devices, stopped, ready to `run()`. */
  machine: Machine;
  /** The snapshot's machine name and memory regions. */
  description: MachineDescription;
  /** The file's content digest (checked against its pages and devices), lowercase hex. */
  contentDigest: string;
  /** Instructions the guest had retired at the snapshot. */
  retired: number;
  /** What the snapshot is: this emulator's, a QEMU stream, or an `.lsnap` converted from one. */
  source: "lsnap" | "qemu-stream" | "lsnap-from-qemu";
  /** For a QEMU snapshot: the fields ignored or approximated (`restore --verbose`). */
  notes: { field: string; note: string }[];
}

/** The first `n` bytes of `stream` (fewer if it is shorter), and a stream of all its bytes. */
async function peek(
  stream: ReadableStream<Uint8Array>,
  n: number,
): Promise<[Uint8Array, ReadableStream<Uint8Array>]> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let have = 0;
  while (have < n) {
    const r = await reader.read();
    if (r.done) break;
    chunks.push(r.value);
    have += r.value.length;
  }
  const head = new Uint8Array(Math.min(have, n));
  let o = 0;
  for (const c of chunks) {
    if (o >= head.length) break;
    head.set(c.subarray(0, head.length - o), o);
    o += Math.min(c.length, head.length - o);
  }
  const all = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
    },
    async pull(controller) {
      const r = await reader.read();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return [head, all];
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
  const [head, input] = await peek(stream, 8);
  if (isQemuStream(head)) {
    const q = await restoreQemuStream(input, { uartSink: options.uartSink });
    return {
      machine: q.machine,
      description: q.description,
      contentDigest: toHex(q.contentDigest),
      retired: q.machine.hart.retired,
      source: "qemu-stream",
      notes: q.notes,
    };
  }
  const reader = new SnapshotStreamReader(input);
  let machine: Machine | null = null;
  let fromQemu: VirtMachineBuilder | null = null;
  const devices = new Map<string, DeviceSection>();
  for await (const r of reader.records()) {
    if (fromQemu !== null) {
      if (r.kind === "pages") fromQemu.pages(r.region, r.pages, r.data);
      else if (r.kind === "device") feedLsnapDevice(fromQemu, r.device);
      continue;
    }
    if (r.kind === "header") {
      fromQemu = virtBuilderFor(r.description, { uartSink: options.uartSink });
      if (fromQemu !== null) continue;
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
  if (fromQemu !== null) {
    // The whole file has been read and checked (digests included) before the mapping runs.
    const q = fromQemu.finish();
    return {
      machine: q.machine,
      description: reader.description!,
      contentDigest: toHex(reader.contentDigest!),
      retired: q.machine.hart.retired,
      source: "lsnap-from-qemu",
      notes: q.notes,
    };
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
    source: "lsnap",
    notes: [],
  };
}
