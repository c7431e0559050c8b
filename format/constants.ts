/**
 * The numbers of the `.lsnap` format v1: magics, record types, encodings and the caps every
 * reader enforces before it allocates. FORMAT.md is the normative text; each constant cites it.
 *
 * @module
 */

/** Major version this library writes and reads (FORMAT.md §2). A different major is refused. */
export const FORMAT_MAJOR = 1;
/**
 * Minor version this library writes (FORMAT.md §2). Older and newer minors are read. Minor 1 adds
 * the PARENT record of diff snapshots (FORMAT.md §14).
 */
export const FORMAT_MINOR = 1;

/** The 8 bytes every `.lsnap` file starts with: `\x89LSNAP\r\n` (FORMAT.md §2). */
export const FILE_MAGIC: Uint8Array = new Uint8Array([
  0x89,
  0x4c,
  0x53,
  0x4e,
  0x41,
  0x50,
  0x0d,
  0x0a,
]);
/** The 8 bytes the fixed-size footer starts with: `LSNAPEND` (FORMAT.md §9). */
export const FOOTER_MAGIC: Uint8Array = new TextEncoder().encode("LSNAPEND");

/** Bytes in the prologue: magic, major u16, minor u16, CRC32C u32 (FORMAT.md §2). */
export const PROLOGUE_SIZE = 16;
/** Bytes before a record's payload: type u16, flags u16, length u32 (FORMAT.md §3). */
export const RECORD_HEAD_SIZE = 8;
/** Bytes after a record's payload: CRC32C u32 (FORMAT.md §3). */
export const RECORD_TAIL_SIZE = 4;
/** Bytes in the footer (FORMAT.md §9). */
export const FOOTER_SIZE = 32;

/** Record flag bit 0: a reader that does not know the record type must refuse the file. */
export const FLAG_CRITICAL = 0x0001;

/** Record types (FORMAT.md §4). */
export const RecordType = {
  HEADER: 0x0001,
  PAGES: 0x0002,
  DEVICE: 0x0003,
  INDEX: 0x0004,
  TRAILER: 0x0005,
  PARENT: 0x0006,
} as const;

/** Page payload encodings (FORMAT.md §6.2). */
export const PageEncoding = { ZERO: 0, RAW: 1, ZSTD: 2 } as const;
/** Page addressing modes (FORMAT.md §6.1). */
export const PageAddressing = { RUN: 0, LIST: 1 } as const;
/** Device state encodings (FORMAT.md §7). */
export const DeviceEncoding = { CBOR: 0, FOREIGN: 1 } as const;

/** Cap on one record's payload length (FORMAT.md §3). */
export const MAX_RECORD_PAYLOAD = 64 * 1024 * 1024;
/** Cap on the decompressed bytes of one PAGES record (count × page size) (FORMAT.md §6). */
export const MAX_BATCH_BYTES = 64 * 1024 * 1024;
/** Cap on the pages one zero-encoded PAGES record may name (FORMAT.md §6). */
export const MAX_ZERO_PAGES_PER_RECORD = 65_536;
/** Cap on the number of regions in the header (FORMAT.md §5). */
export const MAX_REGIONS = 256;
/** Cap on the pages declared by all regions together (FORMAT.md §5). */
export const MAX_TOTAL_PAGES = 1 << 25;
/** Smallest and largest page sizes (FORMAT.md §5). Page sizes are powers of two. */
export const MIN_PAGE_SIZE = 512;
/** Largest page size (2 MiB, a huge page) (FORMAT.md §5). */
export const MAX_PAGE_SIZE = 2 * 1024 * 1024;
/** Default page size. */
export const DEFAULT_PAGE_SIZE = 4096;
/** Cap on a UTF-8 name (region name, device id, creator) in bytes (FORMAT.md §5, §7). */
export const MAX_NAME_BYTES = 255;
/** Cap on nesting depth of CBOR device state (FORMAT.md §7). */
export const MAX_CBOR_DEPTH = 64;

/** Cap on a diff's chain depth, the number of diffs from the full snapshot (FORMAT.md §14). */
export const MAX_CHAIN_DEPTH = 1024;

/** Domain tag hashed first by the content digest (FORMAT.md §10). */
export const CONTENT_DIGEST_TAG = "lsnap content digest v1";
