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

import { type SnapshotRecord, SnapshotStreamReader } from "../../format/stream_reader.ts";
import { ChainReader, isDiffFile, openChain } from "../../format/chain.ts";
import type { DiffParent } from "../../format/writer.ts";
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
  /** Called with the machine as soon as the HEADER has created it, before any page is in its
   * RAM (an `.lsnap` only): what the caller builds around it meanwhile is not waited for at the
   * end (a live migration's destination: its guest thread). */
  onMachine?: (machine: Machine) => void;
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
  return await restoreRecords(reader.records(), () => reader.contentDigest, options);
}

/**
 * Builds the machine from the records of one file or of a chain, in an order where the last
 * occurrence wins; `contentDigest` gives the proved content digest once they are all read.
 */
async function restoreRecords(
  records: AsyncIterable<SnapshotRecord>,
  contentDigest: () => Uint8Array | null,
  options: RestoreOptions,
): Promise<RestoredMachine> {
  let machine: Machine | null = null;
  let description: MachineDescription | null = null;
  let fromQemu: VirtMachineBuilder | null = null;
  const devices = new Map<string, DeviceSection>();
  for await (const r of records) {
    if (fromQemu !== null) {
      if (r.kind === "pages") fromQemu.pages(r.region, r.pages, r.data);
      else if (r.kind === "device") feedLsnapDevice(fromQemu, r.device);
      continue;
    }
    if (r.kind === "header") {
      description = r.description;
      fromQemu = virtBuilderFor(r.description, { uartSink: options.uartSink });
      if (fromQemu !== null) continue;
      const ramSize = checkDescriptionFits(r.description);
      machine = new Machine({ ramSize, uartSink: options.uartSink });
      machine.instructionsCountedFrom = instructionsCountedFrom(r.description);
      options.onMachine?.(machine);
    } else if (r.kind === "pages") {
      // Straight into RAM, bypassing the gate: nothing runs and no snapshot is in progress.
      const ram = machine!.ram.bytes;
      const ps = description!.regions[r.region].pageSize;
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
      description: description!,
      contentDigest: toHex(contentDigest()!),
      retired: q.machine.hart.retired,
      source: "lsnap-from-qemu",
      notes: q.notes,
    };
  }
  if (machine === null || description === null) {
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
    description,
    contentDigest: toHex(contentDigest()!),
    retired: machine.hart.retired,
    source: "lsnap",
    notes: [],
  };
}

/** Options of {@linkcode restoreMachineFromFile}. */
export interface RestoreFileOptions extends RestoreOptions {
  /** For a diff: parent files to use before the name hints (`restore --parent`). */
  parents?: string[];
}

/**
 * Restores the snapshot at `path`: a full snapshot (or QEMU stream) as
 * {@linkcode restoreMachine} does, or a diff through its chain (FORMAT.md §14): the parents are
 * found among `options.parents` or by the names the diffs record, every link is checked, and
 * every file of the chain is read, the full snapshot first, with its file digest and its content
 * digest proved, before the machine is handed back. Throws format/'s `ChainError` for a chain that
 * cannot be used.
 *
 * `diffParent` is what `SnapshotWriter`'s `parent` option needs to write a diff of this machine
 * on the file restored (right after the restore every page is clean against it), proved by the
 * restore itself; null for a QEMU stream.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { Machine } from "../machine.ts";
 * import { restoreMachineFromFile } from "./restore.ts";
 * import { saveMachine } from "./save.ts";
 * const elf = await Deno.readFile(new URL("../guests/build/counter.elf", import.meta.url));
 * const m = Machine.fromElf(elf, { ramSize: 4 << 20, uartSink: () => {} });
 * m.run(50_000);
 * const dir = await Deno.makeTempDir();
 * await saveMachine(m, `${dir}/c.lsnap`);
 * const r = await restoreMachineFromFile(`${dir}/c.lsnap`, { uartSink: () => {} });
 * assertEquals([r.retired, r.chain.length], [50_000, 1]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function restoreMachineFromFile(
  path: string,
  options: RestoreFileOptions = {},
): Promise<RestoredMachine & { chain: string[]; diffParent: DiffParent | null }> {
  if (!(await isDiffFile(path))) {
    const file = await Deno.open(path, { read: true });
    const [head, input] = await peek(file.readable, 8);
    if (isQemuStream(head)) {
      return { ...(await restoreMachine(input, options)), chain: [path], diffParent: null };
    }
    const reader = new SnapshotStreamReader(input);
    const restored = await restoreRecords(reader.records(), () => reader.contentDigest, options);
    const pageHashes = reader.pageHashes;
    return {
      ...restored,
      chain: [path],
      // What a diff on this file needs: the machine now is the file's state, every page clean.
      diffParent: pageHashes === null ? null : {
        contentDigest: reader.contentDigest!,
        fileDigest: reader.fileDigest!,
        name: path,
        depth: 0,
        rootFileDigest: reader.fileDigest!,
        pageHashes,
      },
    };
  }
  const chain = await openChain(path, { parents: options.parents });
  try {
    const reader = new ChainReader(chain);
    const restored = await restoreRecords(reader.records(), () => reader.contentDigest, options);
    const head = chain.head;
    return {
      ...restored,
      chain: chain.files.map((f) => f.path),
      diffParent: {
        contentDigest: reader.contentDigest!,
        fileDigest: head.trailer.fileDigest,
        name: path,
        depth: head.depth,
        rootFileDigest: head.link?.rootFileDigest ?? head.trailer.fileDigest,
        pageHashes: reader.pageHashes!,
      },
    };
  } finally {
    chain.close();
  }
}
