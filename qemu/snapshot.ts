/**
 * A whole QEMU migration stream read into memory (RAM as the final contents of each page, device
 * sections byte for byte), and written back as a one-pass stream QEMU loads.
 *
 * @module
 */
import { QemuStreamCorruptError } from "./errors.ts";
import { PageStates } from "./_page_states.ts";
import type { QemuConfiguration, QemuDeviceSection, RamBlock, VmDescription } from "./model.ts";
import { type ByteInput, readQemuStream, type ReadQemuStreamOptions } from "./stream_reader.ts";
import { type ByteSink, QemuStreamWriter } from "./stream_writer.ts";

/** A QEMU stream's contents, as {@link readQemuSnapshot} returns them. */
export interface QemuSnapshot {
  /** The configuration section: machine type, page bits, capabilities, the raw bytes. */
  configuration: QemuConfiguration;
  /** The `ram` section's id, instance and version. */
  ramSection: { sectionId: number; instanceId: number; versionId: number };
  /** Target page size in bytes (2^target-page-bits when the stream says, else the option's). */
  pageSize: number;
  /** RAM blocks in stream order. */
  blocks: RamBlock[];
  /**
   * The final contents of every page that is not all zero, by block name then byte offset in
   * the block. Pages absent here are zero (or were never sent, see `unsentPages`).
   */
  pages: Map<string, Map<number, Uint8Array>>;
  /** Pages of each block the stream never sent, by block name. */
  unsentPages: Map<string, number>;
  /** Device sections in stream order. */
  devices: QemuDeviceSection[];
  /** QEMU_VM_COMMAND records among the device sections, each after `afterDevice` sections. */
  commands: { command: number; data: Uint8Array; afterDevice: number }[];
  /** The JSON description text, byte for byte, when the stream has one. */
  vmdescText?: string;
  /** The JSON description, parsed, when the stream has one. */
  vmdesc?: VmDescription;
  /** Page records read, including pages later passes sent again. */
  pageRecords: number;
}

/**
 * Reads a whole QEMU stream into memory. Memory use is the guest's non-zero pages plus the
 * device state; {@link readQemuStream} reads in constant memory when that is too much.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { readQemuSnapshot } from "./snapshot.ts";
 * import { QemuStreamWriter } from "./stream_writer.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new QemuStreamWriter({ write: async (c: Uint8Array) => { chunks.push(c.slice()); } });
 * await w.writeHeader(new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]));
 * await w.writeRamBlocks([{ name: "ram", size: 8192 }], { sectionId: 2 });
 * await w.writePage("ram", 0, new Uint8Array(4096).fill(7));
 * await w.close();
 * const snap = await readQemuSnapshot(chunks);
 * assert(snap.configuration.machine === "virt");
 * assert(snap.pages.get("ram")!.get(0)![0] === 7 && !snap.pages.get("ram")!.has(4096));
 * ```
 */
export async function readQemuSnapshot(
  input: ByteInput,
  options: ReadQemuStreamOptions = {},
): Promise<QemuSnapshot> {
  let configuration: QemuConfiguration | undefined;
  let ramSection: QemuSnapshot["ramSection"] | undefined;
  const blocks: RamBlock[] = [];
  const pages = new Map<string, Map<number, Uint8Array>>();
  const sent = new Map<string, PageStates>();
  const devices: QemuDeviceSection[] = [];
  const commands: QemuSnapshot["commands"] = [];
  let vmdescText: string | undefined;
  let vmdesc: VmDescription | undefined;
  let pageRecords = 0;
  let pageSize = options.pageSize ?? 4096;
  let lastOffset = 0;
  for await (const r of readQemuStream(input, options)) {
    lastOffset = r.offset;
    switch (r.kind) {
      case "configuration":
        configuration = r.configuration;
        if (r.configuration.targetPageBits !== undefined) {
          pageSize = 2 ** r.configuration.targetPageBits;
        }
        break;
      case "ram-blocks":
        ramSection = { sectionId: r.sectionId, instanceId: r.instanceId, versionId: r.versionId };
        for (const b of r.blocks) {
          blocks.push(b);
          pages.set(b.name, new Map());
          sent.set(b.name, new PageStates(b.size / pageSize));
        }
        break;
      case "page": {
        pageRecords++;
        sent.get(r.block)!.set(r.address / pageSize, 1);
        const m = pages.get(r.block)!;
        if (r.data !== undefined) m.set(r.address, r.data);
        else if (r.fill === 0) m.delete(r.address);
        else m.set(r.address, new Uint8Array(pageSize).fill(r.fill!));
        break;
      }
      case "device":
        devices.push(r.section);
        break;
      case "command":
        commands.push({ command: r.command, data: r.data, afterDevice: devices.length });
        break;
      case "vmdesc":
        vmdescText = r.text;
        vmdesc = r.description;
        break;
    }
  }
  if (configuration === undefined) {
    throw new QemuStreamCorruptError("the stream has no configuration section", 8);
  }
  if (ramSection === undefined) {
    throw new QemuStreamCorruptError("the stream has no RAM block list", lastOffset);
  }
  const unsentPages = new Map<string, number>();
  for (const [name, pages] of sent) {
    const n = pages.count(0);
    if (n > 0) unsentPages.set(name, n);
  }
  return {
    configuration,
    ramSection,
    pageSize,
    blocks,
    pages,
    unsentPages,
    devices,
    commands,
    vmdescText,
    vmdesc,
    pageRecords,
  };
}

/**
 * Writes a snapshot as a one-pass QEMU stream: every page once (zero pages as ZERO records),
 * the device sections byte for byte, EOF and the JSON description text as it was.
 */
export async function writeQemuSnapshot(snapshot: QemuSnapshot, sink: ByteSink): Promise<void> {
  const w = new QemuStreamWriter(sink, { pageSize: snapshot.pageSize });
  await w.writeHeader(snapshot.configuration.bytes);
  await w.writeRamBlocks(snapshot.blocks, snapshot.ramSection);
  for (const b of snapshot.blocks) {
    const m = snapshot.pages.get(b.name)!;
    for (const address of [...m.keys()].sort((x, y) => x - y)) {
      await w.writePage(b.name, address, m.get(address)!);
    }
  }
  for (const c of snapshot.commands.filter((c) => c.afterDevice === 0)) {
    await w.writeCommand(c.command, c.data);
  }
  for (let i = 0; i < snapshot.devices.length; i++) {
    await w.writeDeviceSection(snapshot.devices[i]);
    for (const c of snapshot.commands.filter((c) => c.afterDevice === i + 1)) {
      await w.writeCommand(c.command, c.data);
    }
  }
  await w.close(snapshot.vmdescText);
}
