/**
 * A summary of a QEMU migration stream: its sections, RAM blocks with their page counts, and
 * each device's fields decoded through the stream's JSON description.
 *
 * @module
 */
import { RAM_SECTION_IDSTR, sectionTypeName } from "./constants.ts";
import type { QemuStreamRecord, VmDescDevice } from "./model.ts";
import { type ByteInput, readQemuStream, type ReadQemuStreamOptions } from "./stream_reader.ts";
import { PageStates } from "./_page_states.ts";
import { decodeVmState, type VmStateValue } from "./vmstate_decode.ts";

export { isQemuStream } from "./stream_reader.ts";

/** One section of the stream. */
export interface QemuSectionSummary {
  /** Byte offset of the section's type byte in the stream. */
  offset: number;
  /** Bytes from the type byte through the footer. */
  length: number;
  /** "START", "PART", "END" or "FULL". */
  type: string;
  /** The per-stream section number that PART, END and footers repeat. */
  sectionId: number;
  /** The device's id string (`ram` for RAM sections). */
  idstr: string;
  /** Page records in a RAM section. */
  pages?: number;
}

/** One RAM block and what the stream sent of it. */
export interface QemuRamBlockSummary {
  /** QEMU's block id string, e.g. `riscv_virt_board.ram`. */
  name: string;
  /** The block's used length in bytes. */
  size: number;
  /** Pages in the block. */
  pageCount: number;
  /** Page records (a page sent by several passes counts each time). */
  pageRecords: number;
  /** Records of whole pages. */
  normalRecords: number;
  /** Records of zero (fill-byte) pages. */
  zeroRecords: number;
  /** Page records that repeat a page an earlier record sent. */
  resentRecords: number;
  /** Pages no record sent. */
  unsentPages: number;
  /** Pages whose last record is a whole page (so the final image has them non-zero or not). */
  finalNormalPages: number;
}

/** One device section. */
export interface QemuDeviceSummary {
  /** Byte offset of the section's type byte in the stream. */
  offset: number;
  /** The per-stream section number. */
  sectionId: number;
  /** The device's id string, e.g. `serial` or `0000:00:00.0/gpex_root`. */
  idstr: string;
  /** Which of several devices with this idstr (QEMU's instance id). */
  instanceId: number;
  /** The version of the device's vmstate layout the section was saved with. */
  versionId: number;
  /** Bytes of state between header and footer. */
  size: number;
  /** The vmstate name from the JSON description, when it has one. */
  vmsdName?: string;
  /** Fields decoded through the JSON description, when the stream has one for this device. */
  fields?: { [name: string]: VmStateValue };
  /** True when the description accounts for every byte. */
  decoded: boolean;
  /** Why the fields could not be decoded (fully). */
  decodeError?: string;
}

/** What {@link inspectQemuStream} returns; serialisable with `JSON.stringify`. */
export interface QemuStreamSummary {
  /** Tells this summary from an `.lsnap` one in `livesnap inspect --json` output. */
  format: "qemu-migration-stream";
  /** The stream's version after the `QEVM` magic (always 3: the reader refuses others). */
  version: number;
  /** Bytes in the stream. */
  bytes: number;
  /** Machine type from the configuration section, e.g. `virt` ("" when the stream has none). */
  machine: string;
  /** Target page size in bytes: 2^target-page-bits when the stream says, else the option's. */
  pageSize: number;
  /** Migration capabilities the destination must enable too. */
  capabilities: string[];
  /** The source VM's UUID, when the configuration section carries one. */
  uuid?: string;
  /** Count of sections by type. */
  sectionCounts: Record<string, number>;
  /** Every RAM and device section, in stream order. */
  sections: QemuSectionSummary[];
  /** The `ram` section's id (-1 when absent), its page records in all, and its blocks. */
  ram: { sectionId: number; pageRecords: number; blocks: QemuRamBlockSummary[] };
  /** Every device section, in stream order, decoded through the JSON description if any. */
  devices: QemuDeviceSummary[];
  /** QEMU_VM_COMMAND records: offset, command number and data length in bytes. */
  commands: { offset: number; command: number; length: number }[];
  /** Where the JSON description is and its size, or null when the stream has none. */
  vmdesc: { offset: number; bytes: number } | null;
  /** A QEMU stream records no retired-instruction count. */
  instructions: { retired: null; countedFrom: "not-recorded" };
}

/** Options of {@link inspectQemuStream}. */
export interface InspectQemuOptions extends ReadQemuStreamOptions {
  /**
   * Called with every record read, in stream order (`livesnap report` gathers its per-page data
   * in the same pass). A page's data is valid only during the call.
   */
  onRecord?: (record: QemuStreamRecord) => void;
}

/**
 * Reads a whole QEMU stream and summarises it. Memory use is one byte per guest page the stream
 * sends (whatever size its blocks declare) plus the device state.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { inspectQemuStream } from "./inspect.ts";
 * import { QemuStreamWriter } from "./stream_writer.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new QemuStreamWriter({ write: async (c: Uint8Array) => { chunks.push(c.slice()); } });
 * await w.writeHeader(new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]));
 * await w.writeRamBlocks([{ name: "ram", size: 8192 }], { sectionId: 2 });
 * await w.writePage("ram", 0, new Uint8Array(4096).fill(3));
 * await w.close();
 * const s = await inspectQemuStream(chunks);
 * assert(s.machine === "virt" && s.ram.blocks[0].normalRecords === 1);
 * assert(s.ram.blocks[0].zeroRecords === 1);
 * ```
 */
export async function inspectQemuStream(
  input: ByteInput,
  options: InspectQemuOptions = {},
): Promise<QemuStreamSummary> {
  const s: QemuStreamSummary = {
    format: "qemu-migration-stream",
    version: 0,
    bytes: 0,
    machine: "",
    pageSize: options.pageSize ?? 4096,
    capabilities: [],
    sectionCounts: {},
    sections: [],
    ram: { sectionId: -1, pageRecords: 0, blocks: [] },
    devices: [],
    commands: [],
    vmdesc: null,
    instructions: { retired: null, countedFrom: "not-recorded" },
  };
  const seen = new Map<string, { summary: QemuRamBlockSummary; last: PageStates }>();
  const deviceData: Uint8Array[] = [];
  const count = (type: string) => s.sectionCounts[type] = (s.sectionCounts[type] ?? 0) + 1;
  for await (const r of readQemuStream(input, options)) {
    options.onRecord?.(r);
    switch (r.kind) {
      case "header":
        s.version = r.version;
        break;
      case "configuration":
        s.machine = r.configuration.machine;
        s.capabilities = r.configuration.capabilities;
        if (r.configuration.uuid !== undefined) s.uuid = r.configuration.uuid;
        if (r.configuration.targetPageBits !== undefined) {
          s.pageSize = 2 ** r.configuration.targetPageBits;
        }
        break;
      case "ram-blocks":
        s.ram.sectionId = r.sectionId;
        for (const b of r.blocks) {
          const summary: QemuRamBlockSummary = {
            name: b.name,
            size: b.size,
            pageCount: b.size / s.pageSize,
            pageRecords: 0,
            normalRecords: 0,
            zeroRecords: 0,
            resentRecords: 0,
            unsentPages: 0,
            finalNormalPages: 0,
          };
          s.ram.blocks.push(summary);
          // 0: never sent, 1: last sent as a zero page, 2: last sent whole.
          seen.set(b.name, { summary, last: new PageStates(summary.pageCount) });
        }
        break;
      case "page": {
        const b = seen.get(r.block)!;
        const i = r.address / s.pageSize;
        s.ram.pageRecords++;
        b.summary.pageRecords++;
        if (b.last.get(i) !== 0) b.summary.resentRecords++;
        if (r.data !== undefined) {
          b.summary.normalRecords++;
          b.last.set(i, 2);
        } else {
          b.summary.zeroRecords++;
          b.last.set(i, 1);
        }
        break;
      }
      case "ram-section": {
        const type = sectionTypeName(r.sectionType);
        count(type);
        s.sections.push({
          offset: r.offset,
          length: r.length,
          type,
          sectionId: r.sectionId,
          idstr: RAM_SECTION_IDSTR,
          pages: r.pages,
        });
        break;
      }
      case "device": {
        const d = r.section;
        const type = sectionTypeName(d.sectionType);
        count(type);
        const headerBytes = 1 + 4 + 1 + new TextEncoder().encode(d.idstr).length + 8;
        s.sections.push({
          offset: r.offset,
          length: headerBytes + d.data.length + 5,
          type,
          sectionId: d.sectionId,
          idstr: d.idstr,
        });
        s.devices.push({
          offset: r.offset,
          sectionId: d.sectionId,
          idstr: d.idstr,
          instanceId: d.instanceId,
          versionId: d.versionId,
          size: d.data.length,
          decoded: false,
        });
        deviceData.push(d.data);
        break;
      }
      case "command":
        s.commands.push({ offset: r.offset, command: r.command, length: r.data.length });
        break;
      case "eof":
        s.bytes = r.offset + 1;
        break;
      case "vmdesc": {
        s.vmdesc = { offset: r.offset, bytes: new TextEncoder().encode(r.text).length };
        s.bytes = r.offset + 5 + s.vmdesc.bytes;
        decodeDevices(s.devices, deviceData, r.description.devices);
        break;
      }
    }
  }
  for (const { summary, last } of seen.values()) {
    summary.unsentPages = last.count(0);
    summary.finalNormalPages = last.count(2);
  }
  return s;
}

function decodeDevices(
  devices: QemuDeviceSummary[],
  data: Uint8Array[],
  descs: VmDescDevice[],
): void {
  const byKey = new Map<string, VmDescDevice>();
  for (const d of descs) byKey.set(`${d.name}\u0000${d.instance_id}`, d);
  devices.forEach((dev, i) => {
    const desc = byKey.get(`${dev.idstr}\u0000${dev.instanceId}`);
    if (desc === undefined) {
      dev.decodeError = "the JSON description has no entry for this device";
      return;
    }
    if (typeof desc.vmsd_name === "string") dev.vmsdName = desc.vmsd_name;
    const r = decodeVmState(data[i], desc);
    dev.fields = r.fields;
    dev.decoded = r.complete;
    if (r.error !== undefined) dev.decodeError = r.error;
  });
}

function size(n: number): string {
  if (n >= 1 << 30 && n % (1 << 30) === 0) return `${n / (1 << 30)} GiB`;
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${n / (1 << 10)} KiB`;
  return `${n} B`;
}

function renderValue(v: VmStateValue): string {
  if (typeof v === "string" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) {
    const parts = v.map(renderValue);
    const text = `[${parts.join(", ")}]`;
    return text.length > 160 ? `[${parts.slice(0, 8).join(", ")}, … (${v.length} items)]` : text;
  }
  return `{ ${Object.entries(v).map(([k, x]) => `${k}: ${renderValue(x)}`).join(", ")} }`;
}

/**
 * Renders a summary for a terminal. `fields` adds each device's decoded fields.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { formatQemuSummary, type QemuStreamSummary } from "./inspect.ts";
 * const s: QemuStreamSummary = {
 *   format: "qemu-migration-stream", version: 3, bytes: 100, machine: "virt", pageSize: 4096,
 *   capabilities: [], sectionCounts: {}, sections: [], devices: [], commands: [], vmdesc: null,
 *   ram: { sectionId: 2, pageRecords: 0, blocks: [] },
 *   instructions: { retired: null, countedFrom: "not-recorded" },
 * };
 * assert(formatQemuSummary(s).includes("machine virt"));
 * ```
 */
export function formatQemuSummary(
  s: QemuStreamSummary,
  options: { fields?: boolean } = {},
): string {
  const lines: string[] = [];
  lines.push(`QEMU migration stream, version ${s.version}, ${s.bytes} bytes`);
  lines.push(
    `machine ${s.machine}, page size ${s.pageSize}` +
      (s.capabilities.length > 0 ? `, capabilities: ${s.capabilities.join(", ")}` : "") +
      (s.uuid !== undefined ? `, uuid ${s.uuid}` : ""),
  );
  const counts = Object.entries(s.sectionCounts).map(([k, v]) => `${v} ${k}`).join(", ");
  lines.push(`sections: ${counts}`);
  lines.push(`RAM (section ${s.ram.sectionId}): ${s.ram.pageRecords} page records`);
  for (const b of s.ram.blocks) {
    lines.push(
      `  ${b.name}: ${size(b.size)}, ${b.pageCount} pages; records ${b.pageRecords} ` +
        `(${b.normalRecords} whole, ${b.zeroRecords} zero, ${b.resentRecords} resent)` +
        (b.unsentPages > 0 ? `, ${b.unsentPages} never sent` : ""),
    );
  }
  lines.push(`devices: ${s.devices.length}`);
  for (const d of s.devices) {
    const note = d.decoded
      ? ""
      : d.decodeError !== undefined
      ? ` (not decoded: ${d.decodeError})`
      : "";
    lines.push(
      `  @${d.offset} section ${d.sectionId} ${d.idstr} instance ${d.instanceId} ` +
        `version ${d.versionId}: ${d.size} bytes${note}`,
    );
    if (options.fields && d.fields !== undefined) {
      for (const [k, v] of Object.entries(d.fields)) lines.push(`      ${k} = ${renderValue(v)}`);
    }
  }
  for (const c of s.commands) {
    lines.push(`command 0x${c.command.toString(16)} at ${c.offset}: ${c.length} bytes`);
  }
  lines.push(
    s.vmdesc === null
      ? "no JSON description"
      : `JSON description: ${s.vmdesc.bytes} bytes at ${s.vmdesc.offset}`,
  );
  lines.push(
    "instructions: not recorded (QEMU counts no retired instructions): 'livesnap restore' counts from 0 at the restore point",
  );
  return lines.join("\n");
}
