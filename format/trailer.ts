/**
 * The TRAILER record: counts of what came before, the content digest and the file digest. Its
 * presence is what makes a file complete (FORMAT.md §9).
 *
 * @module
 */
import { ByteBuilder, ByteCursor } from "./_bytes.ts";

/** The trailer's fields. */
export interface Trailer {
  /** Records before the trailer, the header record included. */
  recordCount: number;
  /** PAGES records. */
  pageRecordCount: number;
  /** Page occurrences in all PAGES records (duplicates counted). */
  pageCount: number;
  /** DEVICE records. */
  deviceCount: number;
  /** Offset of the INDEX record, 0 when there is none. */
  indexOffset: number;
  /** Content digest (FORMAT.md §10), 32 bytes. */
  contentDigest: Uint8Array;
  /** BLAKE3 of every byte before the trailer record, 32 bytes. */
  fileDigest: Uint8Array;
}

/** Bytes in a trailer payload. */
export const TRAILER_PAYLOAD_SIZE = 5 * 8 + 32 + 32;

/** Encodes a TRAILER payload. */
export function encodeTrailer(t: Trailer): Uint8Array {
  return new ByteBuilder(TRAILER_PAYLOAD_SIZE)
    .u64(t.recordCount).u64(t.pageRecordCount).u64(t.pageCount).u64(t.deviceCount).u64(
      t.indexOffset,
    )
    .bytes(t.contentDigest).bytes(t.fileDigest).finish();
}

/** Decodes a TRAILER payload. */
export function decodeTrailer(payload: Uint8Array, offset: number, recordIndex: number): Trailer {
  const c = new ByteCursor(payload, offset, recordIndex);
  const t: Trailer = {
    recordCount: c.u64("record count"),
    pageRecordCount: c.u64("page record count"),
    pageCount: c.u64("page count"),
    deviceCount: c.u64("device count"),
    indexOffset: c.u64("index offset"),
    contentDigest: c.take(32, "content digest").slice(),
    fileDigest: c.take(32, "file digest").slice(),
  };
  c.end("trailer");
  return t;
}
