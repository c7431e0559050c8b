/**
 * The file prologue (magic and version) and the HEADER record: the machine description
 * (FORMAT.md §2, §5).
 *
 * @module
 */
import { ByteBuilder, ByteCursor } from "./_bytes.ts";
import { crc32c, hex32 } from "./checksum.ts";
import {
  FILE_MAGIC,
  FORMAT_MAJOR,
  MAX_NAME_BYTES,
  MAX_PAGE_SIZE,
  MAX_REGIONS,
  MAX_TOTAL_PAGES,
  MIN_PAGE_SIZE,
  PROLOGUE_SIZE,
} from "./constants.ts";
import { ChecksumError, CorruptError, UnsupportedError } from "./errors.ts";

/** One region of guest-physical memory. */
export interface Region {
  /** Unique name, e.g. "ram". */
  name: string;
  /** Guest-physical base address (a multiple of `pageSize`). */
  base: number;
  /** Size in bytes (a positive multiple of `pageSize`). */
  size: number;
  /** Page size in bytes, a power of two from 512 to 2 MiB (4096 by default). */
  pageSize: number;
}

/** The machine description carried by the HEADER record. */
export interface MachineDescription {
  /** Memory regions, in the order page records refer to them. */
  regions: Region[];
  /** The program that wrote the file, e.g. "livesnap 0.1.0". */
  creator: string;
  /** Creation time in milliseconds since the Unix epoch. */
  createdAt: number;
  /** Optional CBOR-encoded machine metadata (architecture, board...); empty when absent. */
  metadata?: Uint8Array;
}

/** The version a file declares in its prologue. */
export interface FormatVersion {
  /** Major version: a reader refuses a file whose major differs from its own (FORMAT.md §2). */
  major: number;
  /** Minor version: additions only; every minor of a known major is read (FORMAT.md §2). */
  minor: number;
}

/** Encodes the 16-byte prologue. */
export function encodePrologue(major: number, minor: number): Uint8Array {
  const out = new Uint8Array(PROLOGUE_SIZE);
  out.set(FILE_MAGIC, 0);
  const v = new DataView(out.buffer);
  v.setUint16(8, major, true);
  v.setUint16(10, minor, true);
  v.setUint32(12, crc32c(out.subarray(0, 12)), true);
  return out;
}

/** Decodes and checks the prologue: magic, then CRC, then major version (FORMAT.md §2). */
export function decodePrologue(bytes: Uint8Array): FormatVersion {
  const loc = { offset: 0, recordIndex: -1 };
  if (bytes.length < PROLOGUE_SIZE) {
    throw new CorruptError(`the file is ${bytes.length} bytes, shorter than the prologue`, loc);
  }
  for (let i = 0; i < FILE_MAGIC.length; i++) {
    if (bytes[i] !== FILE_MAGIC[i]) throw new CorruptError("bad magic: not an .lsnap file", loc);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, PROLOGUE_SIZE);
  const stored = v.getUint32(12, true);
  const actual = crc32c(bytes.subarray(0, 12));
  if (stored !== actual) {
    throw new ChecksumError("prologue CRC32C mismatch", {
      ...loc,
      expected: hex32(stored),
      actual: hex32(actual),
    });
  }
  const major = v.getUint16(8, true);
  const minor = v.getUint16(10, true);
  if (major !== FORMAT_MAJOR) {
    throw new UnsupportedError(
      `format version ${major}.${minor} is not supported (this reader reads major ${FORMAT_MAJOR})`,
      loc,
    );
  }
  return { major, minor };
}

/** Throws a plain Error if a description breaks FORMAT.md §5 (used by the writer). */
export function validateDescription(d: MachineDescription): void {
  try {
    checkDescription(d, (reason) => {
      throw new Error(reason);
    });
  } catch (e) {
    throw new Error(`Cannot use machine description: ${(e as Error).message}`);
  }
}

function checkDescription(d: MachineDescription, fail: (reason: string) => never): void {
  if (d.regions.length === 0 || d.regions.length > MAX_REGIONS) {
    fail(`region count ${d.regions.length} is not in 1..${MAX_REGIONS}`);
  }
  const names = new Set<string>();
  let total = 0;
  const sorted = [...d.regions].sort((a, b) => a.base - b.base);
  for (const r of d.regions) {
    const ps = r.pageSize;
    if (
      !Number.isInteger(ps) || ps < MIN_PAGE_SIZE || ps > MAX_PAGE_SIZE || (ps & (ps - 1)) !== 0
    ) {
      fail(
        `region '${r.name}' page size ${ps} is not a power of two in ${MIN_PAGE_SIZE}..${MAX_PAGE_SIZE}`,
      );
    }
    if (!Number.isSafeInteger(r.base) || r.base < 0 || r.base % ps !== 0) {
      fail(`region '${r.name}' base ${r.base} is not a multiple of its page size ${ps}`);
    }
    if (!Number.isSafeInteger(r.size) || r.size <= 0 || r.size % ps !== 0) {
      fail(`region '${r.name}' size ${r.size} is not a positive multiple of its page size ${ps}`);
    }
    if (!Number.isSafeInteger(r.base + r.size)) fail(`region '${r.name}' ends past 2^53`);
    if (r.name.length === 0 || new TextEncoder().encode(r.name).length > MAX_NAME_BYTES) {
      fail(`region name '${r.name}' is empty or longer than ${MAX_NAME_BYTES} bytes`);
    }
    if (names.has(r.name)) fail(`region name '${r.name}' is used twice`);
    names.add(r.name);
    total += r.size / ps;
  }
  if (total > MAX_TOTAL_PAGES) {
    fail(`the regions declare ${total} pages, more than the cap of ${MAX_TOTAL_PAGES}`);
  }
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1].base + sorted[i - 1].size > sorted[i].base) {
      fail(`regions '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
    }
  }
  if (!Number.isSafeInteger(d.createdAt) || d.createdAt < 0) {
    fail(`creation time ${d.createdAt} is invalid`);
  }
  if (new TextEncoder().encode(d.creator).length > MAX_NAME_BYTES) {
    fail(`creator is longer than ${MAX_NAME_BYTES} bytes`);
  }
}

/** Encodes the HEADER record's payload (FORMAT.md §5). */
export function encodeHeader(d: MachineDescription): Uint8Array {
  validateDescription(d);
  const b = new ByteBuilder();
  b.u64(d.createdAt).str16(d.creator).u16(d.regions.length);
  for (const r of d.regions) b.str16(r.name).u64(r.base).u64(r.size).u32(r.pageSize);
  const meta = d.metadata ?? new Uint8Array(0);
  b.u32(meta.length).bytes(meta);
  return b.finish();
}

/** Decodes the HEADER record's payload, checking every rule of FORMAT.md §5. */
export function decodeHeader(
  payload: Uint8Array,
  offset: number,
  recordIndex: number,
): MachineDescription {
  const c = new ByteCursor(payload, offset, recordIndex);
  const createdAt = c.u64("creation time");
  const creator = c.str16("creator", MAX_NAME_BYTES);
  const count = c.u16("region count");
  if (count === 0 || count > MAX_REGIONS) {
    c.fail(`region count ${count} is not in 1..${MAX_REGIONS}`);
  }
  const regions: Region[] = [];
  for (let i = 0; i < count; i++) {
    const name = c.str16(`region ${i} name`, MAX_NAME_BYTES);
    const base = c.u64(`region ${i} base`);
    const size = c.u64(`region ${i} size`);
    const pageSize = c.u32(`region ${i} page size`);
    regions.push({ name, base, size, pageSize });
  }
  const metaLength = c.u32("metadata length");
  const metadata = c.take(metaLength, "metadata").slice();
  c.end("header");
  const d: MachineDescription = { regions, creator, createdAt, metadata };
  checkDescription(d, (reason) => {
    throw new CorruptError(reason, { offset, recordIndex });
  });
  return d;
}

/** Number of pages in a region. */
export function pageCount(r: Region): number {
  return r.size / r.pageSize;
}
