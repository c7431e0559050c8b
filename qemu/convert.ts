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
 * @module
 */
import {
  decodeDeviceState,
  type DeviceStateValue,
  encodeDeviceState,
} from "../format/device_state.ts";
import type { DeviceSection } from "../format/device_section.ts";
import type { MachineDescription, Region } from "../format/header.ts";
import { SnapshotStreamReader } from "../format/stream_reader.ts";
import { SnapshotWriter, type WriterOptions, type WriteSummary } from "../format/writer.ts";
import { SectionType } from "./constants.ts";
import type { QemuConfiguration, QemuDeviceSection, RamBlock, VmDescDevice } from "./model.ts";
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

/** Options for {@link convertQemuToLsnap}. */
export interface QemuToLsnapOptions extends ReadQemuStreamOptions {
  /** Guest-physical base address by block name (overrides {@link KNOWN_BLOCK_BASES}). */
  bases?: Record<string, number>;
  /** `creator` in the snapshot header. */
  creator?: string;
  /** Creation time, ms since the epoch (default now). */
  createdAt?: number;
  /** Options for the `.lsnap` writer (codec, level...). */
  writer?: WriterOptions;
}

/** What {@link convertQemuToLsnap} did. */
export interface QemuToLsnapSummary extends WriteSummary {
  regions: Region[];
  /** Page records read from the stream (a resent page counts each time). */
  pageRecords: number;
  /** Device sections carried over. */
  devices: number;
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

function planRegions(
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
 * use is the writer's (about one entry per guest page) plus the device state.
 *
 * @example
 * ```ts
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
 * console.assert(summary.regions[0].base === 0x8000_0000 && snap.regions[0][4096] === 5);
 * ```
 */
export async function convertQemuToLsnap(
  input: ByteInput,
  out: string | WritableStream<Uint8Array>,
  options: QemuToLsnapOptions = {},
): Promise<QemuToLsnapSummary> {
  let configuration: QemuConfiguration | undefined;
  let pageSize = options.pageSize ?? 4096;
  let writer: SnapshotWriter | undefined;
  let regions: Region[] = [];
  const regionIndex = new Map<string, number>();
  let zero = new Uint8Array(0);
  let pageRecords = 0;
  const devices: QemuDeviceSection[] = [];
  const commands: { command: number; data: Uint8Array; afterDevice: number }[] = [];
  let vmdescText: string | null = null;
  let vmdescDevices: VmDescDevice[] = [];
  try {
    for await (const r of readQemuStream(input, options)) {
      switch (r.kind) {
        case "configuration":
          configuration = r.configuration;
          if (r.configuration.targetPageBits !== undefined) {
            pageSize = 2 ** r.configuration.targetPageBits;
          }
          break;
        case "ram-blocks": {
          const plan = planRegions(r.blocks, pageSize, options.bases ?? {});
          regions = plan.regions;
          regions.forEach((reg, i) => regionIndex.set(reg.name, i));
          const meta: QemuMetadata = {
            source: QEMU_METADATA_SOURCE,
            version: QEMU_STREAM_STATE_VERSION,
            machine: configuration!.machine,
            pageSize,
            configuration: configuration!.bytes,
            ramSection: {
              sectionId: r.sectionId,
              instanceId: r.instanceId,
              versionId: r.versionId,
            },
            blocks: r.blocks.map((b, i) => ({
              name: b.name,
              address: b.address ?? null,
              baseKnown: plan.known[i],
            })),
          };
          writer = await toOutput(out, {
            regions,
            creator: options.creator ?? "livesnap qemu-convert",
            createdAt: options.createdAt ?? Date.now(),
            metadata: encodeDeviceState(meta as unknown as DeviceStateValue),
          }, options.writer);
          zero = new Uint8Array(pageSize);
          break;
        }
        case "page": {
          pageRecords++;
          const region = regionIndex.get(r.block)!;
          const page = r.data ?? (r.fill === 0 ? zero : new Uint8Array(pageSize).fill(r.fill!));
          await writer!.writePages(region, r.address / pageSize, page);
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
    if (writer === undefined) {
      throw new Error("Cannot convert the QEMU stream: it has no RAM block list");
    }
    const descByKey = new Map(vmdescDevices.map((d) => [`${d.name}\u0000${d.instance_id}`, d]));
    for (let i = 0; i < devices.length; i++) {
      const d = devices[i];
      const desc = descByKey.get(`${d.idstr}\u0000${d.instanceId}`);
      await writer.writeDevice({
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
      });
    }
    await writer.writeDevice({
      id: QEMU_STREAM_DEVICE_ID,
      instance: 0,
      version: QEMU_STREAM_STATE_VERSION,
      state: encodeDeviceState({ vmdesc: vmdescText, commands }),
    });
    const summary = await writer.close();
    return { ...summary, regions, pageRecords, devices: devices.length };
  } catch (e) {
    await writer?.abort();
    throw e;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
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

/** What {@link convertLsnapToQemu} wrote. */
export interface LsnapToQemuSummary {
  bytes: number;
  /** Page records in the `.lsnap` file read (each is one QEMU page record). */
  pageRecords: number;
  devices: number;
}

/**
 * Writes a QEMU migration stream from an `.lsnap` snapshot that {@link convertQemuToLsnap}
 * made: configuration, RAM (every page), the device sections byte for byte in their original
 * order, EOF and the JSON description. Reads the snapshot in one pass, checking it as it goes.
 */
export async function convertLsnapToQemu(
  input: ReadableStream<Uint8Array>,
  sink: ByteSink,
): Promise<LsnapToQemuSummary> {
  const reader = new SnapshotStreamReader(input);
  let w: QemuStreamWriter | undefined;
  let regions: Region[] = [];
  let pageRecords = 0;
  const devices = new Map<string, DeviceSection>();
  for await (const r of reader.records()) {
    if (r.kind === "header") {
      const meta = readMetadata(r.description);
      regions = r.description.regions;
      w = new QemuStreamWriter(sink, { pageSize: meta.pageSize });
      await w.writeHeader(meta.configuration);
      const blocks: RamBlock[] = regions.map((reg, i) => {
        const b: RamBlock = { name: reg.name, size: reg.size };
        const address = meta.blocks[i]?.address;
        if (typeof address === "number") b.address = address;
        return b;
      });
      await w.writeRamBlocks(blocks, meta.ramSection);
    } else if (r.kind === "pages") {
      const reg = regions[r.region];
      for (let i = 0; i < r.pages.length; i++) {
        const page = r.data === null
          ? 0
          : r.data.subarray(i * reg.pageSize, (i + 1) * reg.pageSize);
        await w!.writePage(reg.name, r.pages[i] * reg.pageSize, page);
        pageRecords++;
      }
    } else if (r.kind === "device") {
      devices.set(`${r.device.id}\u0000${r.device.instance}`, r.device);
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
        await w!.writeCommand(Number(c.command), c.data);
      }
    }
  };
  await commandsAfter(0);
  for (let i = 0; i < sections.length; i++) {
    await w!.writeDeviceSection(sections[i].section);
    await commandsAfter(i + 1);
  }
  await w!.close(typeof streamState.vmdesc === "string" ? streamState.vmdesc : undefined);
  return { bytes: w!.bytesWritten, pageRecords, devices: sections.length };
}

/**
 * Writes region `regionName` of an `.lsnap` snapshot to the file `path` as a raw image of the
 * region's size, reading the snapshot in one pass (the last record of a page wins). The file
 * appears only once complete.
 */
export async function extractLsnapRegionToFile(
  input: ReadableStream<Uint8Array>,
  regionName: string,
  path: string,
): Promise<{ size: number; pageRecords: number }> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    const reader = new SnapshotStreamReader(input);
    let region = -1;
    let size = 0;
    let pageSize = 0;
    let pageRecords = 0;
    let nonZero = new Uint8Array(0);
    const writeAt = async (offset: number, bytes: Uint8Array) => {
      await file.seek(offset, Deno.SeekMode.Start);
      let n = 0;
      while (n < bytes.length) n += await file.write(bytes.subarray(n));
    };
    for await (const r of reader.records()) {
      if (r.kind === "header") {
        region = r.description.regions.findIndex((x) => x.name === regionName);
        if (region < 0) {
          const names = r.description.regions.map((x) => x.name).join(", ");
          throw new Error(`Cannot extract region '${regionName}': the snapshot has ${names}`);
        }
        ({ size, pageSize } = r.description.regions[region]);
        nonZero = new Uint8Array(size / pageSize);
        await file.truncate(size);
      } else if (r.kind === "pages" && r.region === region) {
        for (let i = 0; i < r.pages.length; i++) {
          const p = r.pages[i];
          pageRecords++;
          if (r.data !== null) {
            await writeAt(p * pageSize, r.data.subarray(i * pageSize, (i + 1) * pageSize));
            nonZero[p] = 1;
          } else if (nonZero[p] === 1) {
            await writeAt(p * pageSize, new Uint8Array(pageSize));
            nonZero[p] = 0;
          }
        }
      }
    }
    await file.sync();
    file.close();
    await Deno.rename(tmp, path);
    return { size, pageRecords };
  } catch (e) {
    try {
      file.close();
    } catch {
      // already closed
    }
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
