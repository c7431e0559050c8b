/**
 * Converts QEMU migration streams to `.lsnap` snapshots and back.
 *
 * QEMU → `.lsnap`: each RAM block becomes a region (same name and size); every page record is
 * written as it comes, so a page a later pass resent ends with its last copy (the format lets
 * the last record of a page win). Each device section is kept byte for byte as a foreign device
 * section with its idstr, instance and version; its description (CBOR) holds the section id and
 * type, its position in the stream and its entry of QEMU's JSON description. What the stream
 * holds besides — the configuration section, the `ram` section's identity, the JSON description
 * text, any QEMU_VM_COMMAND records — goes into the header's metadata and one CBOR device
 * section `livesnap qemu-stream`, so the stream can be written back.
 *
 * `.lsnap` → QEMU: the stream a one-pass precopy migration would write, which QEMU loads with
 * `-incoming "exec:cat FILE"`.
 *
 * Both directions are built on two format-neutral halves that `livesnap convert` also uses:
 * {@link openQemuStream} (a stream as a machine description and a sequence of page runs and
 * device sections) and {@link writeQemuStreamFrom} (such a sequence written as a stream).
 *
 * @module
 */
import { ContentDigestBuilder } from "../format/content_digest.ts";
import type { DeviceSection } from "../format/device_section.ts";
import {
  decodeDeviceState,
  type DeviceStateValue,
  encodeDeviceState,
} from "../format/device_state.ts";
import { type MachineDescription, type Region, validateDescription } from "../format/header.ts";
import { SnapshotStreamReader } from "../format/stream_reader.ts";
import { SnapshotWriter, type WriterOptions, type WriteSummary } from "../format/writer.ts";
import { SectionType } from "./constants.ts";
import { QemuStreamCorruptError, QemuStreamUnsupportedError } from "./errors.ts";
import type {
  QemuConfiguration,
  QemuDeviceSection,
  QemuStreamRecord,
  RamBlock,
  VmDescDevice,
} from "./model.ts";
import { type ByteInput, readQemuStream, type ReadQemuStreamOptions } from "./stream_reader.ts";
import { type ByteSink, QemuStreamWriter } from "./stream_writer.ts";

/** The id of the device section that carries stream-level data (QEMU idstrs never hold a space). */
export const QEMU_STREAM_DEVICE_ID = "livesnap qemu-stream";
/** Layout version of that section's CBOR state. NOTICE: changing this layout needs a version bump. */
export const QEMU_STREAM_STATE_VERSION = 1;
/** The `source` value in the header metadata of a snapshot converted from QEMU. */
export const QEMU_METADATA_SOURCE = "qemu-migration-stream";

/**
 * Guest-physical addresses of the RAM blocks of boards whose layout is known, so that a
 * converted snapshot's regions sit where the guest sees them (QEMU's `hw/riscv/virt.c` memmap).
 */
export const KNOWN_BLOCK_BASES: Readonly<Record<string, number>> = {
  "riscv_virt_board.ram": 0x8000_0000,
  "riscv_virt_board.mrom": 0x1000,
  "virt.flash0": 0x2000_0000,
  "virt.flash1": 0x2200_0000,
};

/** Where blocks of unknown address are placed, one after another (1 TiB, above any RAM here). */
const SYNTHETIC_BASE = 2 ** 40;

/** Most pages in one run that {@link openQemuStream} yields. */
const RUN_PAGES = 256;

/** Options for {@link openQemuStream}. */
export interface OpenQemuStreamOptions extends ReadQemuStreamOptions {
  /** Guest-physical base address by block name (overrides {@link KNOWN_BLOCK_BASES}). */
  bases?: Record<string, number>;
  /** `creator` in the description (default "livesnap convert --from qemu"). */
  creator?: string;
  /** Creation time, ms since the epoch (default now). */
  createdAt?: number;
}

/** Options for {@link convertQemuToLsnap}. */
export interface QemuToLsnapOptions extends OpenQemuStreamOptions {
  /** Options for the `.lsnap` writer (codec, level...). */
  writer?: WriterOptions;
}

/** What {@link convertQemuToLsnap} did. */
export interface QemuToLsnapSummary extends WriteSummary {
  /** One region per RAM block, in stream order, at its known guest address or a synthetic one. */
  regions: Region[];
  /** Page records read from the stream (a resent page counts each time). */
  pageRecords: number;
  /** Device sections carried over. */
  devices: number;
}

/**
 * One item of a snapshot in the order a QEMU stream holds it: a run of pages of one region
 * (`data` null when every page of the run is zero; a later run of the same page wins), or a
 * device section.
 */
export type QemuSnapshotItem =
  | { kind: "pages"; region: number; pages: Uint32Array; data: Uint8Array | null }
  | { kind: "device"; device: DeviceSection };

/** A QEMU stream seen as a snapshot; what {@link openQemuStream} returns. */
export interface QemuStreamSnapshot {
  /** One region per RAM block; the stream-level data in `metadata`. */
  readonly description: MachineDescription;
  /** The pages in stream order, then the device sections and `livesnap qemu-stream`. */
  items(): AsyncGenerator<QemuSnapshotItem>;
  /**
   * After `items()` is exhausted: the content digest (FORMAT.md §10) of the state the stream
   * holds, computed from the stream's own records.
   */
  contentDigest(): Promise<Uint8Array>;
  /** Page records read so far (a resent page counts each time). */
  readonly pageRecords: number;
  /** QEMU device sections read (after `items()` is exhausted). */
  readonly devices: number;
}

/** The stream-level data kept in the header's metadata. NOTICE: changing this layout needs a version bump. */
interface QemuMetadata {
  source: string;
  version: number;
  machine: string;
  pageSize: number;
  /** The configuration section, byte for byte. */
  configuration: Uint8Array;
  ramSection: { sectionId: number; instanceId: number; versionId: number };
  /** Per block: its QEMU address (x-ignore-shared only) and whether the region base is known. */
  blocks: { name: string; address: number | null; baseKnown: boolean }[];
}

/**
 * Where each RAM block sits in the guest's address space: `bases` first, then
 * {@link KNOWN_BLOCK_BASES}, else one after another from 1 TiB (`known` says which were known).
 */
export function planRegions(
  blocks: RamBlock[],
  pageSize: number,
  bases: Record<string, number>,
): { regions: Region[]; known: boolean[] } {
  const known = blocks.map((b) =>
    bases[b.name] !== undefined || KNOWN_BLOCK_BASES[b.name] !== undefined
  );
  let next = SYNTHETIC_BASE;
  const regions = blocks.map((b) => {
    let base = bases[b.name] ?? KNOWN_BLOCK_BASES[b.name];
    if (base === undefined) {
      base = next;
      next += Math.ceil(b.size / (1 << 20)) * (1 << 20);
    }
    return { name: b.name, base, size: b.size, pageSize };
  });
  return { regions, known };
}

/**
 * Opens a QEMU migration stream as a snapshot: reads up to its RAM block list (for the machine
 * description), then yields the pages as the stream sends them and, at its end, the device
 * sections. One pass, constant memory for RAM (the device tail is held, see `readQemuStream`).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { openQemuStream } from "./convert.ts";
 * import { QemuStreamWriter } from "./stream_writer.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new QemuStreamWriter({ write: async (c: Uint8Array) => { chunks.push(c.slice()); } });
 * await w.writeHeader(new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]));
 * await w.writeRamBlocks([{ name: "riscv_virt_board.ram", size: 8192 }], { sectionId: 2 });
 * await w.writePage("riscv_virt_board.ram", 4096, new Uint8Array(4096).fill(5));
 * await w.close();
 * const snap = await openQemuStream(chunks, { createdAt: 0 });
 * const pages = new Map<number, Uint8Array | null>();
 * for await (const item of snap.items()) {
 *   if (item.kind === "pages") item.pages.forEach((p, i) => pages.set(p, item.data?.subarray(i * 4096) ?? null));
 * }
 * assertEquals(snap.description.regions[0].base, 0x8000_0000);
 * assertEquals([pages.get(0), pages.get(1)?.[0]], [null, 5]); // page 0 was sent as a zero page
 * assertEquals((await snap.contentDigest()).length, 32);
 * ```
 */
export async function openQemuStream(
  input: ByteInput,
  options: OpenQemuStreamOptions = {},
): Promise<QemuStreamSnapshot> {
  const it = readQemuStream(input, options)[Symbol.asyncIterator]();
  let configuration: QemuConfiguration | undefined;
  let pageSize = options.pageSize ?? 4096;
  let blocks: Extract<QemuStreamRecord, { kind: "ram-blocks" }> | undefined;
  let offset = 0;
  while (blocks === undefined) {
    const n = await it.next();
    if (n.done) throw new QemuStreamCorruptError("the stream has no RAM block list", offset);
    const r = n.value;
    offset = r.offset;
    if (r.kind === "configuration") {
      configuration = r.configuration;
      if (r.configuration.targetPageBits !== undefined) {
        pageSize = 2 ** r.configuration.targetPageBits;
      }
    } else if (r.kind === "ram-blocks") blocks = r;
  }
  if (configuration === undefined) {
    throw new QemuStreamCorruptError("the stream has no configuration section", 8);
  }
  const ram = blocks;
  const plan = planRegions(ram.blocks, pageSize, options.bases ?? {});
  const regions = plan.regions;
  const regionIndex = new Map(regions.map((reg, i) => [reg.name, i]));
  const meta: QemuMetadata = {
    source: QEMU_METADATA_SOURCE,
    version: QEMU_STREAM_STATE_VERSION,
    machine: configuration.machine,
    pageSize,
    configuration: configuration.bytes,
    ramSection: { sectionId: ram.sectionId, instanceId: ram.instanceId, versionId: ram.versionId },
    blocks: ram.blocks.map((b, i) => ({
      name: b.name,
      address: b.address ?? null,
      baseKnown: plan.known[i],
    })),
  };
  const description: MachineDescription = {
    regions,
    creator: options.creator ?? "livesnap convert --from qemu",
    createdAt: options.createdAt ?? Date.now(),
    metadata: encodeDeviceState(meta as unknown as DeviceStateValue),
  };
  try {
    validateDescription(description);
  } catch (e) {
    // A valid stream whose RAM no .lsnap file can describe (FORMAT.md §5: at most 2^25 pages,
    // below 2^53): refused before any page is read, with where the block list is.
    throw new QemuStreamUnsupportedError(
      `its RAM cannot be held in an .lsnap file: ${(e as Error).message}`,
      ram.offset,
      { cause: e },
    );
  }
  const digest = new ContentDigestBuilder(description);
  let pageRecords = 0;
  let deviceCount = 0;
  let finished = false;

  async function* items(): AsyncGenerator<QemuSnapshotItem> {
    // A run: consecutive pages of one region, all data or all zero.
    let region = -1;
    let first = 0;
    let count = 0;
    let parts: Uint8Array[] | null = null;
    const flush = (): QemuSnapshotItem | null => {
      if (count === 0) return null;
      const pages = new Uint32Array(count);
      for (let i = 0; i < count; i++) pages[i] = first + i;
      let data: Uint8Array | null = null;
      if (parts !== null) {
        data = new Uint8Array(count * pageSize);
        parts.forEach((p, i) => data!.set(p, i * pageSize));
      }
      count = 0;
      parts = null;
      return { kind: "pages", region, pages, data };
    };
    const devices: QemuDeviceSection[] = [];
    const commands: { command: number; data: Uint8Array; afterDevice: number }[] = [];
    let vmdescText: string | null = null;
    let vmdescDevices: VmDescDevice[] = [];
    for (;;) {
      const n = await it.next();
      if (n.done) break;
      const r = n.value;
      switch (r.kind) {
        case "page": {
          pageRecords++;
          const reg = regionIndex.get(r.block)!;
          const page = r.address / pageSize;
          const bytes = r.data ?? (r.fill === 0 ? null : new Uint8Array(pageSize).fill(r.fill!));
          if (bytes === null) digest.clearPage(reg, page);
          else digest.setPage(reg, page, bytes);
          const joins = count > 0 && count < RUN_PAGES && reg === region &&
            page === first + count && (bytes === null) === (parts === null);
          if (!joins) {
            const done = flush();
            if (done !== null) yield done;
            region = reg;
            first = page;
            if (bytes !== null) parts = [];
          }
          // The reader's bytes may be views of its input chunks: the run copies them at flush.
          if (bytes !== null) parts!.push(bytes);
          count++;
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
          vmdescDevices = r.description.devices;
          break;
      }
    }
    const last = flush();
    if (last !== null) yield last;
    const descByKey = new Map(vmdescDevices.map((d) => [`${d.name}\u0000${d.instance_id}`, d]));
    const sections: DeviceSection[] = devices.map((d, i) => {
      const desc = descByKey.get(`${d.idstr}\u0000${d.instanceId}`);
      return {
        id: d.idstr,
        instance: d.instanceId,
        version: d.versionId,
        encoding: "foreign",
        state: d.data,
        description: encodeDeviceState({
          format: "qemu-vmstate",
          sectionId: d.sectionId,
          sectionType: d.sectionType,
          order: i,
          vmdesc: desc === undefined ? null : JSON.stringify(desc),
        }),
      };
    });
    sections.push({
      id: QEMU_STREAM_DEVICE_ID,
      instance: 0,
      version: QEMU_STREAM_STATE_VERSION,
      encoding: "cbor",
      state: encodeDeviceState({ vmdesc: vmdescText, commands }),
      description: new Uint8Array(0),
    });
    deviceCount = devices.length;
    for (const s of sections) {
      digest.setDevice(s);
      yield { kind: "device", device: s };
    }
    finished = true;
  }

  return {
    description,
    items,
    contentDigest() {
      if (!finished) {
        return Promise.reject(new Error("Cannot compute the content digest: the stream is unread"));
      }
      return digest.digest();
    },
    get pageRecords() {
      return pageRecords;
    },
    get devices() {
      return deviceCount;
    },
  };
}

function toOutput(
  out: string | WritableStream<Uint8Array>,
  d: MachineDescription,
  o?: WriterOptions,
) {
  return typeof out === "string"
    ? SnapshotWriter.createFile(out, d, o)
    : SnapshotWriter.create(out, d, o);
}

/**
 * Converts a QEMU migration stream to an `.lsnap` snapshot, in one pass over the stream. Memory
 * use is the writer's (about one entry per guest page) plus the device state. `livesnap convert
 * --from qemu` does the same and also reads its output back to check the content digest.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { convertQemuToLsnap } from "./convert.ts";
 * import { QemuStreamWriter } from "./stream_writer.ts";
 * import { readSnapshot } from "../format/stream_reader.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new QemuStreamWriter({ write: async (c: Uint8Array) => { chunks.push(c.slice()); } });
 * await w.writeHeader(new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]));
 * await w.writeRamBlocks([{ name: "riscv_virt_board.ram", size: 8192 }], { sectionId: 2 });
 * await w.writePage("riscv_virt_board.ram", 4096, new Uint8Array(4096).fill(5));
 * await w.close();
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * const [summary, snap] = await Promise.all([
 *   convertQemuToLsnap(chunks, writable, { createdAt: 0 }),
 *   readSnapshot(readable),
 * ]);
 * assertEquals([summary.regions[0].base, snap.regions[0][4096]], [0x8000_0000, 5]);
 * ```
 */
export async function convertQemuToLsnap(
  input: ByteInput,
  out: string | WritableStream<Uint8Array>,
  options: QemuToLsnapOptions = {},
): Promise<QemuToLsnapSummary> {
  const source = await openQemuStream(input, {
    ...options,
    creator: options.creator ?? "livesnap qemu-convert",
  });
  const writer = await toOutput(out, source.description, options.writer);
  try {
    const regions = source.description.regions;
    for await (const item of source.items()) {
      if (item.kind === "device") {
        await writer.writeDevice(item.device);
        continue;
      }
      const size = item.pages.length * regions[item.region].pageSize;
      await writer.writePageList(item.region, item.pages, item.data ?? new Uint8Array(size));
    }
    const summary = await writer.close();
    return { ...summary, regions, pageRecords: source.pageRecords, devices: source.devices };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * Checks that a snapshot with this description was converted from a QEMU stream (its header
 * metadata says so), so that {@link writeQemuStreamFrom} can write it back. Throws an Error
 * "Cannot convert to a QEMU stream: ..." otherwise.
 */
export function checkQemuMetadata(d: MachineDescription): void {
  readMetadata(d);
}

/**
 * The QEMU machine type a snapshot was converted from (its header's QEMU metadata), or null
 * when it was not converted from a QEMU stream.
 */
export function qemuMachineOf(d: MachineDescription): string | null {
  try {
    return readMetadata(d).machine;
  } catch {
    return null;
  }
}

function readMetadata(d: MachineDescription): QemuMetadata {
  let meta: unknown = undefined;
  try {
    if (d.metadata !== undefined && d.metadata.length > 0) meta = decodeDeviceState(d.metadata);
  } catch {
    // not CBOR: not ours
  }
  if (!isRecord(meta) || meta.source !== QEMU_METADATA_SOURCE) {
    throw new Error(
      "Cannot convert to a QEMU stream: the snapshot was not converted from one (its header has no QEMU metadata)",
    );
  }
  if (meta.version !== QEMU_STREAM_STATE_VERSION) {
    throw new Error(
      `Cannot convert to a QEMU stream: QEMU metadata version ${meta.version} is not supported`,
    );
  }
  return meta as unknown as QemuMetadata;
}

/** What {@link convertLsnapToQemu} and {@link writeQemuStreamFrom} wrote. */
export interface LsnapToQemuSummary {
  /** Bytes of the stream written, its JSON description included. */
  bytes: number;
  /** Page records written (one per page occurrence read). */
  pageRecords: number;
  /** Device sections written. */
  devices: number;
}

/**
 * Writes a QEMU migration stream from a snapshot that {@link openQemuStream} made (its
 * description and items, in any order; the last device section of an id and instance wins):
 * configuration, RAM (every page occurrence as a page record, so the last one wins in QEMU too),
 * the device sections byte for byte in their original order, EOF and the JSON description.
 * Items other than pages and devices are ignored.
 */
export async function writeQemuStreamFrom(
  description: MachineDescription,
  items: AsyncIterable<QemuSnapshotItem | { kind: "extension" }>,
  sink: ByteSink,
): Promise<LsnapToQemuSummary> {
  const meta = readMetadata(description);
  const regions = description.regions;
  const w = new QemuStreamWriter(sink, { pageSize: meta.pageSize });
  await w.writeHeader(meta.configuration);
  const blocks: RamBlock[] = regions.map((reg, i) => {
    const b: RamBlock = { name: reg.name, size: reg.size };
    const address = meta.blocks[i]?.address;
    if (typeof address === "number") b.address = address;
    return b;
  });
  await w.writeRamBlocks(blocks, meta.ramSection);
  let pageRecords = 0;
  const devices = new Map<string, DeviceSection>();
  for await (const item of items) {
    if (item.kind === "pages") {
      const reg = regions[item.region];
      for (let i = 0; i < item.pages.length; i++) {
        const page = item.data === null
          ? 0
          : item.data.subarray(i * reg.pageSize, (i + 1) * reg.pageSize);
        await w.writePage(reg.name, item.pages[i] * reg.pageSize, page);
        pageRecords++;
      }
    } else if (item.kind === "device") {
      devices.set(`${item.device.id}\u0000${item.device.instance}`, item.device);
    }
  }
  const stream = devices.get(`${QEMU_STREAM_DEVICE_ID}\u00000`);
  const streamState = stream === undefined ? {} : decodeDeviceState(stream.state);
  if (!isRecord(streamState)) {
    throw new Error(`Cannot convert to a QEMU stream: '${QEMU_STREAM_DEVICE_ID}' is malformed`);
  }
  const sections: { order: number; section: QemuDeviceSection }[] = [];
  for (const d of devices.values()) {
    if (d.id === QEMU_STREAM_DEVICE_ID) continue;
    const desc = d.encoding === "foreign" && d.description.length > 0
      ? decodeDeviceState(d.description)
      : null;
    if (!isRecord(desc) || desc.format !== "qemu-vmstate") {
      throw new Error(
        `Cannot convert to a QEMU stream: device '${d.id}' instance ${d.instance} is not a QEMU device section`,
      );
    }
    sections.push({
      order: Number(desc.order),
      section: {
        sectionType: Number(desc.sectionType ?? SectionType.FULL),
        sectionId: Number(desc.sectionId),
        idstr: d.id,
        instanceId: d.instance,
        versionId: d.version,
        data: d.state,
      },
    });
  }
  sections.sort((a, b) => a.order - b.order);
  const commands: Record<string, unknown>[] = Array.isArray(streamState.commands)
    ? (streamState.commands as unknown[]).filter(isRecord)
    : [];
  const commandsAfter = async (n: number) => {
    for (const c of commands) {
      if (Number(c.afterDevice) === n && c.data instanceof Uint8Array) {
        await w.writeCommand(Number(c.command), c.data);
      }
    }
  };
  await commandsAfter(0);
  for (let i = 0; i < sections.length; i++) {
    await w.writeDeviceSection(sections[i].section);
    await commandsAfter(i + 1);
  }
  await w.close(typeof streamState.vmdesc === "string" ? streamState.vmdesc : undefined);
  return { bytes: w.bytesWritten, pageRecords, devices: sections.length };
}

/**
 * Writes a QEMU migration stream from an `.lsnap` snapshot that {@link convertQemuToLsnap}
 * made: configuration, RAM (every page), the device sections byte for byte in their original
 * order, EOF and the JSON description. Reads the snapshot in one pass, checking it as it goes.
 * `livesnap convert --to qemu` does the same and also re-reads the stream it wrote.
 */
export async function convertLsnapToQemu(
  input: ReadableStream<Uint8Array>,
  sink: ByteSink,
): Promise<LsnapToQemuSummary> {
  const reader = new SnapshotStreamReader(input);
  const it = reader.records()[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done || first.value.kind !== "header") {
    throw new Error("Cannot convert to a QEMU stream: the snapshot has no header");
  }
  async function* items(): AsyncGenerator<QemuSnapshotItem> {
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      const r = n.value;
      if (r.kind === "pages") {
        yield { kind: "pages", region: r.region, pages: r.pages, data: r.data };
      } else if (r.kind === "device") yield { kind: "device", device: r.device };
    }
  }
  return await writeQemuStreamFrom(first.value.description, items(), sink);
}
