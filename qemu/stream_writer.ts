/**
 * Writes QEMU migration streams (QEVM version 3) that QEMU 7.2 and later load with
 * `-incoming "exec:cat FILE"`.
 *
 * The stream it writes is the shape of a one-pass precopy migration: configuration, the `ram`
 * section's START with the block list, PART sections with every page, the END section, the
 * device sections (byte for byte, with their original ids), EOF, and the JSON description.
 *
 * @module
 */
import {
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  RAM_SECTION_IDSTR,
  RAM_SECTION_VERSION,
  RamFlag,
  SectionType,
} from "./constants.ts";
import type { QemuDeviceSection, RamBlock } from "./model.ts";

/** Where the writer's bytes go. */
export type ByteSink = WritableStream<Uint8Array> | { write(chunk: Uint8Array): Promise<unknown> };

/** Options for {@link QemuStreamWriter}. */
export interface QemuStreamWriterOptions {
  /** Target page size (4096 unless the configuration section says otherwise). */
  pageSize?: number;
  /** Page records per PART section, as QEMU bounds the work of one iteration. Default 4096. */
  pagesPerSection?: number;
}

/** The `ram` section's identity in the stream being written. */
export interface RamSectionIdentity {
  /** The section number the `ram` section's START, PARTs and END carry. */
  sectionId: number;
  /** Its instance id (default 0). */
  instanceId?: number;
  /** Its version (default 4, the version QEMU gives its `ram` section). */
  versionId?: number;
}

type Stage = "new" | "header" | "ram" | "devices" | "closed";

const encoder = new TextEncoder();
const FLUSH_BYTES = 256 * 1024;

/**
 * Writes one QEMU migration stream, in order: {@link writeHeader}, {@link writeRamBlocks}, any
 * number of {@link writePage}, any number of {@link writeDeviceSection}, then {@link close}.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { QemuStreamWriter } from "./stream_writer.ts";
 * import { readQemuStream } from "./stream_reader.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new QemuStreamWriter({ write: async (c: Uint8Array) => { chunks.push(c.slice()); } });
 * await w.writeHeader(new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74])); // "virt"
 * await w.writeRamBlocks([{ name: "ram", size: 8192 }], { sectionId: 2 });
 * await w.writePage("ram", 4096, new Uint8Array(4096).fill(1));
 * await w.close('{"page_size": 4096, "devices": []}');
 * let pages = 0;
 * for await (const r of readQemuStream(chunks)) if (r.kind === "page") pages++;
 * assert(pages === 2); // page 0 as a zero page, page 1 whole
 * ```
 */
export class QemuStreamWriter {
  #sink: { write(chunk: Uint8Array): Promise<unknown> };
  #close: () => Promise<void>;
  #pageSize: number;
  #pagesPerSection: number;
  #buf: Uint8Array[] = [];
  #bufBytes = 0;
  #bytesWritten = 0;
  #blocks = new Map<string, { block: RamBlock; sent: Uint8Array }>();
  #blockOrder: RamBlock[] = [];
  #ram: Required<RamSectionIdentity> | undefined;
  #stage: Stage = "new";
  #sectionOpen = false;
  #sectionPages = 0;
  #lastBlock: string | undefined;

  /** A writer to `sink`; a WritableStream is locked and closed by {@linkcode QemuStreamWriter.close}. */
  constructor(sink: ByteSink, options: QemuStreamWriterOptions = {}) {
    if (sink instanceof WritableStream) {
      const w = sink.getWriter();
      this.#sink = w;
      this.#close = () => w.close();
    } else {
      this.#sink = sink;
      this.#close = () => Promise.resolve();
    }
    this.#pageSize = options.pageSize ?? 4096;
    this.#pagesPerSection = options.pagesPerSection ?? 4096;
  }

  /** Bytes handed to the sink so far (all of them after {@link close}). */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  #put(bytes: Uint8Array): void {
    this.#buf.push(bytes);
    this.#bufBytes += bytes.length;
  }

  #u8(v: number): void {
    this.#put(new Uint8Array([v]));
  }

  #u32(v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v);
    this.#put(b);
  }

  #u64(v: number): void {
    const b = new Uint8Array(8);
    const d = new DataView(b.buffer);
    d.setUint32(0, Math.floor(v / 0x1_0000_0000));
    d.setUint32(4, v >>> 0);
    this.#put(b);
  }

  #name8(name: string): void {
    const b = encoder.encode(name);
    if (b.length > 255) {
      throw new Error(`Cannot write QEMU stream: name '${name}' exceeds 255 bytes`);
    }
    this.#u8(b.length);
    this.#put(b);
  }

  async #flush(force = false): Promise<void> {
    if (this.#bufBytes === 0 || (!force && this.#bufBytes < FLUSH_BYTES)) return;
    const out = new Uint8Array(this.#bufBytes);
    let at = 0;
    for (const b of this.#buf) {
      out.set(b, at);
      at += b.length;
    }
    this.#buf = [];
    this.#bufBytes = 0;
    await this.#sink.write(out);
    this.#bytesWritten += out.length;
  }

  #expect(stage: Stage, what: string): void {
    if (this.#stage !== stage) {
      throw new Error(`Cannot write QEMU stream: ${what} is out of order (stage '${this.#stage}')`);
    }
  }

  /**
   * Writes the magic, the version and the configuration section, given whole (from its type byte
   * 0x07 on), as {@link readQemuStream} returned it in `configuration.bytes`.
   */
  async writeHeader(configuration: Uint8Array): Promise<void> {
    this.#expect("new", "the header");
    if (configuration[0] !== SectionType.CONFIGURATION) {
      throw new Error("Cannot write QEMU stream: the configuration section must start with 0x07");
    }
    this.#u32(QEMU_VM_FILE_MAGIC);
    this.#u32(QEMU_VM_FILE_VERSION);
    this.#put(configuration.slice());
    this.#stage = "header";
    await this.#flush();
  }

  #sectionHeader(type: number, id: number, idstr: string, instance: number, version: number) {
    this.#u8(type);
    this.#u32(id);
    this.#name8(idstr);
    this.#u32(instance);
    this.#u32(version);
  }

  #footer(id: number): void {
    this.#u8(SectionType.FOOTER);
    this.#u32(id);
  }

  /** Writes the `ram` section's START: the block list, in the order given. */
  async writeRamBlocks(blocks: RamBlock[], identity: RamSectionIdentity): Promise<void> {
    this.#expect("header", "the RAM block list");
    this.#ram = {
      sectionId: identity.sectionId,
      instanceId: identity.instanceId ?? 0,
      versionId: identity.versionId ?? RAM_SECTION_VERSION,
    };
    const { sectionId, instanceId, versionId } = this.#ram;
    this.#sectionHeader(SectionType.START, sectionId, RAM_SECTION_IDSTR, instanceId, versionId);
    let total = 0;
    for (const b of blocks) {
      if (b.size <= 0 || b.size % this.#pageSize !== 0) {
        throw new Error(
          `Cannot write QEMU stream: block '${b.name}' size ${b.size} is not a positive multiple ` +
            `of the page size ${this.#pageSize}`,
        );
      }
      if (this.#blocks.has(b.name)) {
        throw new Error(`Cannot write QEMU stream: block '${b.name}' is given twice`);
      }
      this.#blocks.set(b.name, { block: b, sent: new Uint8Array(b.size / this.#pageSize) });
      this.#blockOrder.push(b);
      total += b.size;
    }
    this.#u64(total + RamFlag.MEM_SIZE);
    for (const b of blocks) {
      this.#name8(b.name);
      this.#u64(b.size);
      if (b.address !== undefined) this.#u64(b.address);
    }
    this.#u64(RamFlag.EOS);
    this.#footer(sectionId);
    this.#stage = "ram";
    await this.#flush();
  }

  /**
   * Writes one page of `block` at byte offset `address`: `page` is its bytes, or a fill byte
   * for a page of one repeated byte (0 for a zero page). A page written twice is loaded twice
   * by QEMU; the last one wins. Pages never written are sent as zero pages when the RAM data ends.
   */
  async writePage(block: string, address: number, page: Uint8Array | number): Promise<void> {
    this.#expect("ram", "a page");
    const entry = this.#blocks.get(block);
    if (entry === undefined) throw new Error(`Cannot write QEMU stream: no RAM block '${block}'`);
    const ps = this.#pageSize;
    if (address % ps !== 0 || address < 0 || address + ps > entry.block.size) {
      throw new Error(
        `Cannot write QEMU stream: page 0x${address.toString(16)} is not a page of block ` +
          `'${block}' (size 0x${entry.block.size.toString(16)})`,
      );
    }
    if (typeof page !== "number" && page.length !== ps) {
      throw new Error(`Cannot write QEMU stream: a page of ${page.length} bytes (expected ${ps})`);
    }
    if (!this.#sectionOpen) {
      this.#u8(SectionType.PART);
      this.#u32(this.#ram!.sectionId);
      this.#sectionOpen = true;
      this.#sectionPages = 0;
      this.#lastBlock = undefined;
    }
    const cont = this.#lastBlock === block ? RamFlag.CONTINUE : 0;
    const flag = typeof page === "number" ? RamFlag.ZERO : RamFlag.PAGE;
    this.#u64(address + flag + cont);
    if (cont === 0) this.#name8(block);
    if (typeof page === "number") this.#u8(page);
    else this.#put(page.slice());
    this.#lastBlock = block;
    entry.sent[address / ps] = 1;
    if (++this.#sectionPages >= this.#pagesPerSection) this.#endPart();
    await this.#flush();
  }

  #endPart(): void {
    if (!this.#sectionOpen) return;
    this.#u64(RamFlag.EOS);
    this.#footer(this.#ram!.sectionId);
    this.#sectionOpen = false;
  }

  /**
   * Ends the RAM data. Pages never written go out as zero pages first: QEMU keeps whatever its
   * own RAM holds (a loaded kernel, a ROM) for a page a stream leaves out, while a page missing
   * from a snapshot means a zero page.
   */
  async #endRam(): Promise<void> {
    if (this.#stage !== "ram") return;
    const ps = this.#pageSize;
    for (const b of this.#blockOrder) {
      const sent = this.#blocks.get(b.name)!.sent;
      for (let i = 0; i < sent.length; i++) {
        if (sent[i] === 0) await this.writePage(b.name, i * ps, 0);
      }
    }
    this.#endPart();
    const { sectionId } = this.#ram!;
    this.#u8(SectionType.END);
    this.#u32(sectionId);
    this.#u64(RamFlag.EOS);
    this.#footer(sectionId);
    this.#stage = "devices";
  }

  /** Writes a device section byte for byte (FULL, with its header and footer). */
  async writeDeviceSection(section: QemuDeviceSection): Promise<void> {
    await this.#endRam();
    this.#expect("devices", "a device section");
    if (section.sectionType !== SectionType.FULL) {
      throw new Error(
        `Cannot write QEMU stream: device section '${section.idstr}' is not a FULL section`,
      );
    }
    this.#sectionHeader(
      SectionType.FULL,
      section.sectionId,
      section.idstr,
      section.instanceId,
      section.versionId,
    );
    this.#put(section.data.slice());
    this.#footer(section.sectionId);
    await this.#flush();
  }

  /** Writes a QEMU_VM_COMMAND record between device sections. */
  async writeCommand(command: number, data: Uint8Array): Promise<void> {
    await this.#endRam();
    this.#expect("devices", "a command");
    const b = new Uint8Array(5);
    const d = new DataView(b.buffer);
    b[0] = SectionType.COMMAND;
    d.setUint16(1, command);
    d.setUint16(3, data.length);
    this.#put(b);
    this.#put(data.slice());
    await this.#flush();
  }

  /** Writes EOF and, when given, the JSON description; flushes and closes the sink. */
  async close(vmdesc?: string): Promise<void> {
    await this.#endRam();
    this.#expect("devices", "the end of the stream");
    this.#u8(SectionType.EOF);
    if (vmdesc !== undefined) {
      const text = encoder.encode(vmdesc);
      this.#u8(SectionType.VMDESCRIPTION);
      this.#u32(text.length);
      this.#put(text);
    }
    this.#stage = "closed";
    await this.#flush(true);
    await this.#close();
  }
}
