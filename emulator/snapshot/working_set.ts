/**
 * The working-set hint of a lazy restore (`restore FILE --lazy --record-ws`): the pages a guest
 * touched in its first instructions after the restore, in the order it first touched them. It is
 * kept beside the snapshot in a sidecar file, `FILE.ws` (the snapshot file itself, with its
 * digests, is never changed), that carries its own CRC and the snapshot's file digest, so a hint
 * that belongs to another file is recognised and ignored. Byte layout (FORMAT.md, "Appendix A"),
 * little-endian:
 *
 * | offset | size | field |
 * | -----: | ---: | ----- |
 * | 0 | 8 | magic `LSNAPWS\n` |
 * | 8 | 2 | version, u16 (1) |
 * | 10 | 2 | reserved, u16, 0 |
 * | 12 | 4 | page size of region 0, u32 |
 * | 16 | 4 | page count of region 0, u32 |
 * | 20 | 4 | n, the number of pages, u32 |
 * | 24 | 8 | the window, in instructions after the restore point, u64 |
 * | 32 | 32 | the snapshot's file digest (its TRAILER's `fileDigest`, FORMAT.md §9) |
 * | 64 | 4·n | page numbers, u32, in first-touch order, each once |
 * | 64+4n | 4 | CRC32C of bytes 0 .. 64+4n-1 |
 *
 * @module
 */

import { AtomicFile } from "../../format/atomic_file.ts";
import { crc32c, toHex } from "../../format/checksum.ts";

const MAGIC = new TextEncoder().encode("LSNAPWS\n");
const HEAD = 64;
/** The sidecar's version this code writes and reads. */
export const WORKING_SET_VERSION = 1;

/** A recorded working set. */
export interface WorkingSet {
  /** Page size of region 0. */
  pageSize: number;
  /** Page count of region 0. */
  pageCount: number;
  /** Instructions after the restore point the recording covered. */
  window: number;
  /** The snapshot's file digest (32 bytes). */
  fileDigest: Uint8Array;
  /** Pages in first-touch order. */
  pages: Uint32Array;
}

/** The sidecar's path for a snapshot at `path`. */
export function workingSetPath(path: string): string {
  return `${path}.ws`;
}

/** Encodes a working set (the layout above). */
export function encodeWorkingSet(ws: WorkingSet): Uint8Array {
  const n = ws.pages.length;
  const out = new Uint8Array(HEAD + 4 * n + 4);
  const v = new DataView(out.buffer);
  out.set(MAGIC, 0);
  v.setUint16(8, WORKING_SET_VERSION, true);
  v.setUint32(12, ws.pageSize, true);
  v.setUint32(16, ws.pageCount, true);
  v.setUint32(20, n, true);
  v.setBigUint64(24, BigInt(ws.window), true);
  out.set(ws.fileDigest.subarray(0, 32), 32);
  for (let i = 0; i < n; i++) v.setUint32(HEAD + 4 * i, ws.pages[i], true);
  v.setUint32(HEAD + 4 * n, crc32c(out.subarray(0, HEAD + 4 * n)), true);
  return out;
}

/**
 * Decodes a sidecar and checks it against the snapshot it is meant for. Returns the working set,
 * or a reason (a sentence) why it cannot be used: a hint is never trusted blindly.
 */
export function decodeWorkingSet(
  bytes: Uint8Array,
  expect: { pageSize: number; pageCount: number; fileDigest: Uint8Array },
): WorkingSet | string {
  if (bytes.length < HEAD + 4 || MAGIC.some((b, i) => bytes[i] !== b)) {
    return "it is not a working-set file";
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const version = v.getUint16(8, true);
  if (version !== WORKING_SET_VERSION) {
    return `its version ${version} is not ${WORKING_SET_VERSION}`;
  }
  const n = v.getUint32(20, true);
  if (bytes.length !== HEAD + 4 * n + 4) {
    return `it is ${bytes.length} bytes, its header declares ${n} pages (${
      HEAD + 4 * n + 4
    } bytes)`;
  }
  const stored = v.getUint32(HEAD + 4 * n, true);
  if (stored !== crc32c(bytes.subarray(0, HEAD + 4 * n))) return "its CRC32C does not match";
  const fileDigest = bytes.slice(32, 64);
  if (toHex(fileDigest) !== toHex(expect.fileDigest)) {
    return `it was recorded for another snapshot (file digest ${
      toHex(fileDigest).slice(0, 16)
    }…, this file's is ${toHex(expect.fileDigest).slice(0, 16)}…)`;
  }
  const pageSize = v.getUint32(12, true);
  const pageCount = v.getUint32(16, true);
  if (pageSize !== expect.pageSize || pageCount !== expect.pageCount) {
    return `it describes ${pageCount} pages of ${pageSize} bytes, the snapshot ${expect.pageCount} of ${expect.pageSize}`;
  }
  const pages = new Uint32Array(n);
  const seen = new Uint8Array(pageCount);
  for (let i = 0; i < n; i++) {
    const p = v.getUint32(HEAD + 4 * i, true);
    if (p >= pageCount) {
      return `its entry ${i} names page ${p}, past the last page ${pageCount - 1}`;
    }
    if (seen[p] !== 0) return `its entry ${i} repeats page ${p}`;
    seen[p] = 1;
    pages[i] = p;
  }
  const window = Number(v.getBigUint64(24, true));
  return { pageSize, pageCount, window, fileDigest, pages };
}

/** Writes a sidecar durably (a temporary, fsync, rename: a failed write leaves no hint). */
export async function writeWorkingSet(path: string, ws: WorkingSet): Promise<void> {
  const out = await AtomicFile.create(path);
  try {
    await out.write(encodeWorkingSet(ws));
    await out.commit();
  } catch (e) {
    await out.abort();
    throw e;
  }
}
