/**
 * Record framing shared by all record types: type u16, flags u16, length u32, payload,
 * CRC32C u32 (FORMAT.md §3).
 *
 * @module
 */
import { crc32c, hex32 } from "./checksum.ts";
import {
  FLAG_CRITICAL,
  MAX_RECORD_PAYLOAD,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "./constants.ts";
import { ChecksumError, CorruptError } from "./errors.ts";

/** A record's head fields. */
export interface RecordHead {
  type: number;
  flags: number;
  length: number;
}

/**
 * Frames a payload into one record: head, payload, CRC32C over head and payload. The payload may
 * be given in parts (for example a PAGES record's fields and its compressed data), which are
 * copied once, straight into the record.
 */
export function encodeRecord(type: number, flags: number, ...payload: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of payload) length += part.length;
  if (length > MAX_RECORD_PAYLOAD) {
    throw new Error(
      `Cannot write record type ${type}: payload of ${length} bytes exceeds ${MAX_RECORD_PAYLOAD}`,
    );
  }
  const out = new Uint8Array(RECORD_HEAD_SIZE + length + RECORD_TAIL_SIZE);
  const v = new DataView(out.buffer);
  v.setUint16(0, type, true);
  v.setUint16(2, flags, true);
  v.setUint32(4, length, true);
  let at = RECORD_HEAD_SIZE;
  for (const part of payload) {
    out.set(part, at);
    at += part.length;
  }
  v.setUint32(at, crc32c(out.subarray(0, at)), true);
  return out;
}

/** Decodes a record head and checks its declared length against the cap (FORMAT.md §3). */
export function decodeRecordHead(
  head: Uint8Array,
  offset: number,
  recordIndex: number,
): RecordHead {
  const v = new DataView(head.buffer, head.byteOffset, RECORD_HEAD_SIZE);
  const type = v.getUint16(0, true);
  const flags = v.getUint16(2, true);
  const length = v.getUint32(4, true);
  if (length > MAX_RECORD_PAYLOAD) {
    throw new CorruptError(`payload length ${length} exceeds the cap of ${MAX_RECORD_PAYLOAD}`, {
      offset,
      recordIndex,
    });
  }
  return { type, flags, length };
}

/** Checks a whole record's CRC32C; `record` is head + payload + CRC. */
export function checkRecordCrc(record: Uint8Array, offset: number, recordIndex: number): void {
  const end = record.length - RECORD_TAIL_SIZE;
  const stored = new DataView(record.buffer, record.byteOffset + end, 4).getUint32(0, true);
  const actual = crc32c(record.subarray(0, end));
  if (stored !== actual) {
    throw new ChecksumError("record CRC32C mismatch", {
      offset,
      recordIndex,
      expected: hex32(stored),
      actual: hex32(actual),
    });
  }
}

/** True if a reader must understand this record type to read the file. */
export function isCritical(flags: number): boolean {
  return (flags & FLAG_CRITICAL) !== 0;
}

/** True for the record types this library knows (1.0's, and PARENT since 1.1). */
export function isKnownType(type: number): boolean {
  return type >= RecordType.HEADER && type <= RecordType.PARENT;
}

/** The record type's name, for messages. */
export function recordTypeName(type: number): string {
  for (const [k, v] of Object.entries(RecordType)) if (v === type) return k;
  return `0x${type.toString(16).padStart(4, "0")}`;
}
