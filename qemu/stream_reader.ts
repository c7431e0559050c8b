/**
 * The streaming reader of QEMU migration streams (see `constants.ts` for the layout).
 *
 * RAM is read as it arrives, page by page, so a stream of any size is read in constant memory.
 * Device sections are not self-delimiting (their length is known only from the vmstate
 * descriptions compiled into QEMU), and QEMU writes them after all RAM, just before the end. So
 * the reader keeps the tail of the stream, from the first device section on, in memory (at most
 * {@link MAX_DEVICE_STATE_BYTES}) and delimits its sections by their footers: each section must
 * end with `0x7e <section id>` and be followed by a valid next section, up to the end of the
 * stream; when such a footer sequence also occurs inside a section's data, the reader backtracks
 * to the next occurrence until the whole tail reads.
 *
 * @module
 */
import { type ByteInput, ByteSource } from "./_byte_source.ts";
import {
  ConfigSubsection,
  DEFAULT_TARGET_PAGE_SIZE,
  MAX_DEVICE_STATE_BYTES,
  QEMU_VM_FILE_MAGIC,
  QEMU_VM_FILE_VERSION,
  RAM_SECTION_IDSTR,
  RAM_SECTION_VERSION,
  RamFlag,
  SectionType,
  sectionTypeName,
} from "./constants.ts";
import {
  QemuStreamCorruptError,
  QemuStreamTruncatedError,
  QemuStreamUnsupportedError,
} from "./errors.ts";
import type {
  QemuConfiguration,
  QemuDeviceSection,
  QemuStreamRecord,
  RamBlock,
  SectionHeader,
  VmDescription,
} from "./model.ts";

export type { ByteInput } from "./_byte_source.ts";

/** Options for {@link readQemuStream}. */
export interface ReadQemuStreamOptions {
  /**
   * The target page size when the stream does not state it (QEMU sends it only for targets with
   * a variable page size). Default 4096.
   */
  pageSize?: number;
  /** The most bytes of device state held in memory. Default {@link MAX_DEVICE_STATE_BYTES}. */
  maxDeviceStateBytes?: number;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function decodeName(bytes: Uint8Array, what: string, offset: number): string {
  try {
    return decoder.decode(bytes);
  } catch (e) {
    throw new QemuStreamCorruptError(`${what} is not valid UTF-8`, offset, { cause: e });
  }
}

/** True if these bytes open a QEMU migration stream (magic `QEVM`, version 3). */
export function isQemuStream(firstBytes: Uint8Array): boolean {
  if (firstBytes.length < 8) return false;
  const v = new DataView(firstBytes.buffer, firstBytes.byteOffset, 8);
  return v.getUint32(0) === QEMU_VM_FILE_MAGIC && v.getUint32(4) === QEMU_VM_FILE_VERSION;
}

/**
 * Reads a QEMU migration stream record by record: header, configuration, RAM block lists, pages
 * (in stream order: a page sent again by a later pass comes again, and the last one wins),
 * RAM section ends, device sections (byte for byte), EOF and the JSON description.
 *
 * Throws {@link QemuStreamCorruptError}, {@link QemuStreamTruncatedError} or
 * {@link QemuStreamUnsupportedError}, each with the byte offset.
 *
 * @example
 * ```ts
 * import { assertEquals, assertRejects } from "@std/assert/mod.js";
 * import { readQemuStream } from "./stream_reader.ts";
 * import { QemuStreamTruncatedError } from "./errors.ts";
 * // Magic and version, then nothing: the stream ends where its first section should be.
 * const cut = new Uint8Array([0x51, 0x45, 0x56, 0x4d, 0, 0, 0, 3]);
 * const e = await assertRejects(async () => {
 *   for await (const _ of readQemuStream(cut)) { }
 * }, QemuStreamTruncatedError);
 * assertEquals(e.offset, 8);
 * ```
 */
export async function* readQemuStream(
  input: ByteInput,
  options: ReadQemuStreamOptions = {},
): AsyncGenerator<QemuStreamRecord> {
  const src = new ByteSource(input);
  const state = new ReaderState(options.pageSize ?? DEFAULT_TARGET_PAGE_SIZE);
  const maxTail = options.maxDeviceStateBytes ?? MAX_DEVICE_STATE_BYTES;

  const magic = await src.u32("the magic");
  if (magic !== QEMU_VM_FILE_MAGIC) {
    throw new QemuStreamCorruptError(`bad magic 0x${hex(magic, 8)} (expected "QEVM")`, 0);
  }
  const version = await src.u32("the version");
  if (version !== QEMU_VM_FILE_VERSION) {
    throw new QemuStreamUnsupportedError(
      `stream version ${version} (only version ${QEMU_VM_FILE_VERSION} is supported)`,
      4,
    );
  }
  yield { kind: "header", offset: 0, version };

  let sawConfiguration = false;
  for (;;) {
    const offset = src.offset;
    if (await src.atEnd()) {
      throw new QemuStreamTruncatedError("the stream ends before its EOF marker", offset);
    }
    const type = await src.u8("a section type");
    switch (type) {
      case SectionType.CONFIGURATION: {
        if (sawConfiguration) {
          throw new QemuStreamCorruptError("a second configuration section", offset);
        }
        sawConfiguration = true;
        const configuration = await readConfiguration(src, offset);
        if (configuration.targetPageBits !== undefined) {
          state.pageSize = 2 ** configuration.targetPageBits;
        }
        state.ignoreShared = configuration.capabilities.includes("x-ignore-shared");
        if (configuration.capabilities.includes("mapped-ram")) {
          throw new QemuStreamUnsupportedError("the mapped-ram capability", offset);
        }
        yield { kind: "configuration", offset, configuration };
        break;
      }
      case SectionType.START:
      case SectionType.FULL: {
        const header = await readSectionHeader(src, type);
        if (header.idstr !== RAM_SECTION_IDSTR) {
          if (type === SectionType.START) {
            throw new QemuStreamUnsupportedError(
              `iterative device section '${header.idstr}' (only RAM may be iterative)`,
              offset,
            );
          }
          const tail = await src.readRest(maxTail, (at) => {
            throw new QemuStreamUnsupportedError(
              `more than ${maxTail} bytes of device state follow (the limit of this reader)`,
              at,
            );
          });
          yield* readTail(tail, src.offset - tail.length, offset, header);
          return;
        }
        if (header.versionId !== RAM_SECTION_VERSION) {
          throw new QemuStreamUnsupportedError(
            `RAM section version ${header.versionId} (expected ${RAM_SECTION_VERSION})`,
            offset,
          );
        }
        if (state.ramSectionId !== undefined) {
          throw new QemuStreamCorruptError("a second RAM section header", offset);
        }
        state.ramSectionId = header.sectionId;
        state.ramHeader = header;
        yield* readRamData(src, state, offset, type, header.sectionId);
        break;
      }
      case SectionType.PART:
      case SectionType.END: {
        const sectionId = await src.u32("a section id");
        if (sectionId !== state.ramSectionId) {
          throw new QemuStreamCorruptError(
            `${sectionTypeName(type)} of section ${sectionId}, which no START opened`,
            offset,
          );
        }
        yield* readRamData(src, state, offset, type, sectionId);
        break;
      }
      case SectionType.COMMAND: {
        const command = await src.u16("a command");
        const length = await src.u16("a command length");
        const data = (await src.read(length, "a command's data")).slice();
        yield { kind: "command", offset, command, data };
        break;
      }
      case SectionType.EOF: {
        yield { kind: "eof", offset };
        yield* readVmDescription(src, maxTail);
        return;
      }
      default:
        throw new QemuStreamCorruptError(`unknown section type 0x${hex(type, 2)}`, offset);
    }
  }
}

class ReaderState {
  pageSize: number;
  ignoreShared = false;
  ramSectionId: number | undefined;
  ramHeader: SectionHeader | undefined;
  blocks = new Map<string, RamBlock>();
  /** The block of the previous page record, for CONTINUE (kept across sections, as QEMU does). */
  lastBlock: RamBlock | undefined;
  constructor(pageSize: number) {
    this.pageSize = pageSize;
  }
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

async function readConfiguration(src: ByteSource, offset: number): Promise<QemuConfiguration> {
  src.startCapture();
  // The type byte was read already; put it back in the captured bytes.
  const nameLength = await src.u32("the machine name length");
  if (nameLength > 255) {
    src.endCapture();
    throw new QemuStreamCorruptError(`machine name length ${nameLength} exceeds 255`, offset + 1);
  }
  const machine = decodeName(
    await src.read(nameLength, "the machine name"),
    "machine name",
    offset,
  );
  const configuration: QemuConfiguration = { machine, capabilities: [], bytes: new Uint8Array() };
  while ((await src.peekU8()) === SectionType.SUBSECTION) {
    const subOffset = src.offset;
    await src.u8("a subsection marker");
    const idLength = await src.u8("a subsection name length");
    const id = decodeName(
      await src.read(idLength, "a subsection name"),
      "subsection name",
      subOffset,
    );
    await src.u32("a subsection version");
    switch (id) {
      case ConfigSubsection.TARGET_PAGE_BITS: {
        const bits = await src.u32("the target page bits");
        if (bits < 10 || bits > 16) {
          throw new QemuStreamCorruptError(`target page bits ${bits} out of 10..16`, subOffset);
        }
        configuration.targetPageBits = bits;
        break;
      }
      case ConfigSubsection.CAPABILITIES: {
        const count = await src.u32("the capability count");
        if (count > 256) {
          throw new QemuStreamCorruptError(`capability count ${count} exceeds 256`, subOffset);
        }
        for (let i = 0; i < count; i++) {
          const n = await src.u8("a capability name length");
          configuration.capabilities.push(
            decodeName(await src.read(n, "a capability name"), "capability name", subOffset),
          );
        }
        break;
      }
      case ConfigSubsection.UUID: {
        const b = await src.read(16, "the VM UUID");
        const h = Array.from(b, (x) => hex(x, 2)).join("");
        configuration.uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${
          h.slice(16, 20)
        }-${h.slice(20)}`;
        break;
      }
      default:
        src.endCapture();
        throw new QemuStreamUnsupportedError(`configuration subsection '${id}'`, subOffset);
    }
  }
  const body = src.endCapture();
  configuration.bytes = new Uint8Array(1 + body.length);
  configuration.bytes[0] = SectionType.CONFIGURATION;
  configuration.bytes.set(body, 1);
  return configuration;
}

async function readSectionHeader(src: ByteSource, sectionType: number): Promise<SectionHeader> {
  const sectionId = await src.u32("a section id");
  const n = await src.u8("a section name length");
  const at = src.offset;
  const idstr = decodeName(await src.read(n, "a section name"), "section name", at);
  // QEMU names every section (savevm.c takes the idstr from the vmstate description or the
  // device); an empty one could not be told apart from another in an .lsnap file either.
  if (idstr === "") throw new QemuStreamCorruptError("a section with an empty name", at - 1);
  const instanceId = await src.u32("an instance id");
  const versionId = await src.u32("a version id");
  return { sectionType, sectionId, idstr, instanceId, versionId };
}

async function readFooter(src: ByteSource, sectionId: number): Promise<void> {
  const at = src.offset;
  const marker = await src.u8("a section footer");
  const id = await src.u32("a section footer");
  if (marker !== SectionType.FOOTER || id !== sectionId) {
    throw new QemuStreamCorruptError(
      `expected the footer of section ${sectionId}, found 0x${hex(marker, 2)} ${id}`,
      at,
    );
  }
}

const UNSUPPORTED_RAM_FLAGS: [number, string][] = [
  [RamFlag.XBZRLE, "an XBZRLE-compressed page (RAM_SAVE_FLAG_XBZRLE)"],
  [RamFlag.COMPRESS_PAGE, "a compressed page (RAM_SAVE_FLAG_COMPRESS_PAGE)"],
  [RamFlag.HOOK, "an RDMA hook (RAM_SAVE_FLAG_HOOK)"],
  [RamFlag.MULTIFD_FLUSH, "a multifd flush (RAM_SAVE_FLAG_MULTIFD_FLUSH)"],
];
const KNOWN_RAM_FLAGS = RamFlag.ZERO | RamFlag.MEM_SIZE | RamFlag.PAGE | RamFlag.EOS |
  RamFlag.CONTINUE;

async function* readRamData(
  src: ByteSource,
  state: ReaderState,
  sectionOffset: number,
  sectionType: number,
  sectionId: number,
): AsyncGenerator<QemuStreamRecord> {
  const pageSize = state.pageSize;
  let pages = 0;
  for (;;) {
    const offset = src.offset;
    const w = await src.read(8, "a RAM record");
    const hi = ((w[0] << 24) | (w[1] << 16) | (w[2] << 8) | w[3]) >>> 0;
    const lo = ((w[4] << 24) | (w[5] << 16) | (w[6] << 8) | w[7]) >>> 0;
    let flags = lo & (pageSize - 1);
    const address = hi * 0x1_0000_0000 + (lo - flags);
    for (const [bit, what] of UNSUPPORTED_RAM_FLAGS) {
      if (flags & bit) throw new QemuStreamUnsupportedError(what, offset);
    }
    if (flags & ~KNOWN_RAM_FLAGS) {
      throw new QemuStreamCorruptError(`unknown RAM flags 0x${hex(flags, 3)}`, offset);
    }
    if (flags === 0) throw new QemuStreamCorruptError("a RAM record with no flags", offset);
    if (flags & RamFlag.MEM_SIZE) {
      yield await readBlockList(src, state, offset, address);
      flags &= ~RamFlag.MEM_SIZE;
    }
    if ((flags & RamFlag.ZERO) && (flags & RamFlag.PAGE)) {
      throw new QemuStreamCorruptError("a RAM record flagged both ZERO and PAGE", offset);
    }
    if (flags & (RamFlag.ZERO | RamFlag.PAGE)) {
      let block: RamBlock | undefined;
      if (flags & RamFlag.CONTINUE) {
        block = state.lastBlock;
        if (block === undefined) {
          throw new QemuStreamCorruptError("a CONTINUE page with no previous block", offset);
        }
      } else {
        const n = await src.u8("a block name length");
        const name = decodeName(await src.read(n, "a block name"), "block name", offset);
        block = state.blocks.get(name);
        if (block === undefined) {
          throw new QemuStreamCorruptError(`a page of unknown RAM block '${name}'`, offset);
        }
        state.lastBlock = block;
      }
      if (address + pageSize > block.size) {
        throw new QemuStreamCorruptError(
          `page at 0x${address.toString(16)} lies past the end of block '${block.name}' ` +
            `(size 0x${block.size.toString(16)})`,
          offset,
        );
      }
      pages++;
      if (flags & RamFlag.ZERO) {
        const fill = await src.u8("a zero page's fill byte");
        yield { kind: "page", offset, block: block.name, address, fill };
      } else {
        const data = await src.read(pageSize, "a page");
        yield { kind: "page", offset, block: block.name, address, data };
      }
    } else if (flags & RamFlag.CONTINUE) {
      throw new QemuStreamCorruptError("CONTINUE on a record that is not a page", offset);
    }
    if (flags & RamFlag.EOS) break;
  }
  await readFooter(src, sectionId);
  yield {
    kind: "ram-section",
    offset: sectionOffset,
    length: src.offset - sectionOffset,
    sectionType,
    sectionId,
    pages,
  };
}

async function readBlockList(
  src: ByteSource,
  state: ReaderState,
  offset: number,
  total: number,
): Promise<QemuStreamRecord> {
  const blocks: RamBlock[] = [];
  let sum = 0;
  while (sum < total) {
    const at = src.offset;
    const n = await src.u8("a block name length");
    const name = decodeName(await src.read(n, "a block name"), "block name", at);
    if (name === "") throw new QemuStreamCorruptError("a RAM block with an empty name", at);
    const size = Number(await src.u64("a block size"));
    if (size === 0 || size > total - sum) {
      throw new QemuStreamCorruptError(
        `block '${name}' of 0x${size.toString(16)} bytes overruns the total 0x${
          total.toString(16)
        }`,
        at,
      );
    }
    if (size % state.pageSize !== 0) {
      throw new QemuStreamCorruptError(
        `block '${name}' size 0x${size.toString(16)} is not a multiple of the page size`,
        at,
      );
    }
    if (state.blocks.has(name)) {
      throw new QemuStreamCorruptError(`block '${name}' is declared twice`, at);
    }
    const block: RamBlock = { name, size };
    if (state.ignoreShared) block.address = Number(await src.u64("a block address"));
    blocks.push(block);
    state.blocks.set(name, block);
    sum += size;
  }
  const { sectionId, instanceId, versionId } = state.ramHeader!;
  return { kind: "ram-blocks", offset, sectionId, instanceId, versionId, blocks };
}

async function* readVmDescription(
  src: ByteSource,
  maxBytes: number,
): AsyncGenerator<QemuStreamRecord> {
  if (await src.atEnd()) return;
  const offset = src.offset;
  const type = await src.u8("the description marker");
  if (type !== SectionType.VMDESCRIPTION) {
    throw new QemuStreamCorruptError(
      `unexpected byte 0x${hex(type, 2)} after the EOF marker (expected 0x06 or the end)`,
      offset,
    );
  }
  const length = await src.u32("the description length");
  if (length > maxBytes) {
    throw new QemuStreamUnsupportedError(
      `a JSON description of ${length} bytes (limit ${maxBytes})`,
      offset,
    );
  }
  const bytes = await src.read(length, "the JSON description");
  yield vmDescRecord(bytes, offset);
  if (!(await src.atEnd())) {
    throw new QemuStreamCorruptError("bytes follow the JSON description", src.offset);
  }
}

function vmDescRecord(bytes: Uint8Array, offset: number): QemuStreamRecord {
  const text = decodeName(bytes, "the JSON description", offset);
  let description: VmDescription;
  try {
    description = JSON.parse(text);
  } catch (e) {
    throw new QemuStreamCorruptError(
      `the JSON description does not parse: ${(e as Error).message}`,
      offset,
      { cause: e },
    );
  }
  if (
    typeof description !== "object" || description === null || !Array.isArray(description.devices)
  ) {
    throw new QemuStreamCorruptError("the JSON description has no 'devices' list", offset);
  }
  // QEMU writes each device as an object naming it (vmstate.c, vmstate_save_state_v).
  description.devices.forEach((d, i) => {
    if (
      typeof d !== "object" || d === null || typeof d.name !== "string" ||
      !Number.isSafeInteger(d.instance_id)
    ) {
      throw new QemuStreamCorruptError(
        `the JSON description's device ${i} is not an object with a 'name' and an 'instance_id'`,
        offset,
      );
    }
  });
  return { kind: "vmdesc", offset, text, description };
}

// ---- The tail: device sections, commands, EOF and the JSON description, all in memory. ----

interface TailFrame {
  header: SectionHeader;
  /** Offset in `buf` of the section's type byte. */
  start: number;
  /** Offset in `buf` of the section's data. */
  dataStart: number;
  /** Where to look for the next footer candidate. */
  searchFrom: number;
  /** The offset of the footer this frame currently assumes, or -1. */
  footer: number;
  /** Commands between this section's footer and the next section. */
  commands: { offset: number; command: number; data: Uint8Array }[];
}

type AfterFooter =
  | { kind: "section"; frame: TailFrame; commands: TailFrame["commands"] }
  | { kind: "end"; eof: number; vmdesc: number; commands: TailFrame["commands"] }
  | { kind: "fail"; reason: string; at: number; truncated?: boolean };

/** Footer candidates tried before giving up on an ambiguous tail. */
const MAX_FOOTER_TRIES = 100_000;

function be32(buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
}

function findFooter(buf: Uint8Array, sectionId: number, from: number): number {
  for (
    let i = buf.indexOf(SectionType.FOOTER, from);
    i >= 0;
    i = buf.indexOf(SectionType.FOOTER, i + 1)
  ) {
    if (i + 5 > buf.length) return -1;
    if (be32(buf, i + 1) === sectionId) return i;
  }
  return -1;
}

/** Parses what may follow a footer at `p`: commands, then a FULL section or EOF (+ vmdesc). */
function parseAfterFooter(buf: Uint8Array, p: number): AfterFooter {
  const commands: TailFrame["commands"] = [];
  for (;;) {
    if (p >= buf.length) {
      return {
        kind: "fail",
        reason: "the stream ends before its EOF marker",
        at: p,
        truncated: true,
      };
    }
    const type = buf[p];
    if (type === SectionType.COMMAND) {
      if (p + 5 > buf.length) {
        return { kind: "fail", reason: "the stream ends inside a command", at: p, truncated: true };
      }
      const command = (buf[p + 1] << 8) | buf[p + 2];
      const length = (buf[p + 3] << 8) | buf[p + 4];
      if (p + 5 + length > buf.length) {
        return { kind: "fail", reason: "the stream ends inside a command", at: p, truncated: true };
      }
      commands.push({ offset: p, command, data: buf.slice(p + 5, p + 5 + length) });
      p += 5 + length;
      continue;
    }
    if (type === SectionType.EOF) {
      if (p + 1 === buf.length) return { kind: "end", eof: p, vmdesc: -1, commands };
      if (buf[p + 1] !== SectionType.VMDESCRIPTION) {
        return {
          kind: "fail",
          reason: "bytes after the EOF marker are not a JSON description",
          at: p + 1,
        };
      }
      if (p + 6 > buf.length) {
        return {
          kind: "fail",
          reason: "the stream ends inside the JSON description",
          at: p + 1,
          truncated: true,
        };
      }
      const end = p + 6 + be32(buf, p + 2);
      if (end === buf.length) return { kind: "end", eof: p, vmdesc: p + 1, commands };
      if (end > buf.length) {
        return {
          kind: "fail",
          reason: "the stream ends inside the JSON description",
          at: p + 1,
          truncated: true,
        };
      }
      return {
        kind: "fail",
        reason: `${buf.length - end} stray byte(s) follow the JSON description`,
        at: end,
      };
    }
    if (type === SectionType.FULL) {
      if (p + 6 > buf.length) {
        return {
          kind: "fail",
          reason: "the stream ends inside a section header",
          at: p,
          truncated: true,
        };
      }
      const sectionId = be32(buf, p + 1);
      const n = buf[p + 5];
      if (p + 6 + n + 8 > buf.length) {
        return {
          kind: "fail",
          reason: "the stream ends inside a section header",
          at: p,
          truncated: true,
        };
      }
      let idstr: string;
      try {
        idstr = decoder.decode(buf.subarray(p + 6, p + 6 + n));
      } catch {
        return { kind: "fail", reason: "a section name that is not UTF-8", at: p };
      }
      if (idstr === "") return { kind: "fail", reason: "a section with an empty name", at: p };
      if (idstr === RAM_SECTION_IDSTR) {
        return { kind: "fail", reason: "a RAM section after device state", at: p };
      }
      const dataStart = p + 6 + n + 8;
      const header: SectionHeader = {
        sectionType: type,
        sectionId,
        idstr,
        instanceId: be32(buf, p + 6 + n),
        versionId: be32(buf, p + 6 + n + 4),
      };
      return {
        kind: "section",
        frame: { header, start: p, dataStart, searchFrom: dataStart, footer: -1, commands: [] },
        commands,
      };
    }
    return {
      kind: "fail",
      reason: `section type 0x${hex(type, 2)} where a device section or EOF was expected`,
      at: p,
    };
  }
}

/**
 * The (idstr, instance) of each device the JSON description at the end of `buf` lists, in
 * order, or undefined when `buf` does not end with one that parses.
 */
function describedDevices(buf: Uint8Array): string[] | undefined {
  for (let p = buf.length - 6; p >= 0; p--) {
    if (buf[p] !== SectionType.EOF || buf[p + 1] !== SectionType.VMDESCRIPTION) continue;
    if (p + 6 + be32(buf, p + 2) !== buf.length || buf[p + 6] !== 0x7b) continue;
    try {
      const desc = JSON.parse(decoder.decode(buf.subarray(p + 6))) as VmDescription;
      return desc.devices.map((d) => `${d.name}\u0000${d.instance_id}`);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

interface TailParse {
  frames: TailFrame[];
  end: Extract<AfterFooter, { kind: "end" }>;
}

/**
 * Splits the in-memory tail into sections. `buf` starts at the first device section's data; its
 * header (already read) starts at `headerOffset` in the stream; `base` is the stream offset of
 * `buf[0]`. When `expected` is given, the sections must be those devices in that order (the JSON
 * description's list), which settles the rare tail that splits validly in two ways.
 */
function delimitTail(
  buf: Uint8Array,
  base: number,
  headerOffset: number,
  first: SectionHeader,
  expected: string[] | undefined,
): TailParse {
  const stack: TailFrame[] = [{
    header: first,
    start: headerOffset - base,
    dataStart: 0,
    searchFrom: 0,
    footer: -1,
    commands: [],
  }];
  const key = (h: SectionHeader) => `${h.idstr}\u0000${h.instanceId}`;
  if (expected !== undefined && expected[0] !== key(first)) {
    throw new QemuStreamCorruptError(
      `device section '${first.idstr}' is not the first device of the JSON description`,
      headerOffset,
    );
  }
  let tries = 0;
  const noFooter = (h: SectionHeader) =>
    `section ${h.sectionId} ('${h.idstr}') has no footer: the stream is cut short or damaged`;
  let deepest: { reason: string; at: number; truncated?: boolean } = {
    reason: noFooter(first),
    at: headerOffset - base,
  };
  for (;;) {
    const top = stack[stack.length - 1];
    if (top === undefined) {
      const Class = deepest.truncated ? QemuStreamTruncatedError : QemuStreamCorruptError;
      throw new Class(`cannot delimit the device sections: ${deepest.reason}`, base + deepest.at);
    }
    const footer = findFooter(buf, top.header.sectionId, top.searchFrom);
    if (footer < 0) {
      if (top.start > deepest.at) {
        deepest = { reason: noFooter(top.header), at: top.start };
      }
      stack.pop();
      continue;
    }
    if (++tries > MAX_FOOTER_TRIES) {
      throw new QemuStreamCorruptError(
        `cannot delimit the device sections after ${MAX_FOOTER_TRIES} footer candidates`,
        base + top.start,
      );
    }
    top.footer = footer;
    top.searchFrom = footer + 1;
    const next = parseAfterFooter(buf, footer + 5);
    if (next.kind === "fail") {
      if (next.at >= deepest.at) deepest = next;
      continue;
    }
    if (expected !== undefined) {
      const k = stack.length;
      const want = next.kind === "section" ? expected[k] : undefined;
      const got = next.kind === "section" ? key(next.frame.header) : undefined;
      if (want !== got || (next.kind === "end" && k !== expected.length)) continue;
    }
    top.commands = next.commands;
    if (next.kind === "section") stack.push(next.frame);
    else return { frames: stack, end: next };
  }
}

function* readTail(
  buf: Uint8Array,
  base: number,
  headerOffset: number,
  first: SectionHeader,
): Generator<QemuStreamRecord> {
  const expected = describedDevices(buf);
  let parse: TailParse;
  try {
    parse = delimitTail(buf, base, headerOffset, first, expected);
  } catch (e) {
    // A stream whose description leaves a device out still reads, by footers alone.
    if (expected === undefined || !(e instanceof QemuStreamCorruptError)) throw e;
    parse = delimitTail(buf, base, headerOffset, first, undefined);
  }
  const { frames, end } = parse;
  for (const frame of frames) {
    const section: QemuDeviceSection = {
      ...frame.header,
      data: buf.slice(frame.dataStart, frame.footer),
    };
    yield { kind: "device", offset: base + frame.start, section };
    for (const c of frame.commands) {
      yield { kind: "command", offset: base + c.offset, command: c.command, data: c.data };
    }
  }
  yield { kind: "eof", offset: base + end.eof };
  if (end.vmdesc >= 0) {
    yield vmDescRecord(buf.subarray(end.vmdesc + 5), base + end.vmdesc);
  }
}
