/**
 * livesnap: live snapshots of virtual machines. This entry point is the `.lsnap` format
 * (`format/FORMAT.md`): a writer that accepts pages in any order, a streaming and a random-access
 * reader, the error classes every malformed file is reported with, the content digest and the
 * format's constants; diff snapshots and their chains (`openChain`, `ChainReader`,
 * `readDiffParent`, the writer's `parent` option, `flattenChain`). The random-access reader reads a local file or an `http(s)` URL with Range
 * requests (`HttpSource`: validators checked, bounded timeouts and retries, several requests in
 * flight), or any `RandomAccessSource`.
 *
 * The rest of livesnap has entry points of its own:
 * - `@livesnap/livesnap/tools`: `inspectSnapshot`, `verifySnapshot`, `convertSnapshot`,
 *   `diffSnapshots`, `runGuest`, `restoreSnapshot`, the control socket: one function per command;
 * - `@livesnap/livesnap/emulator`: the bundled RISC-V machine and its live snapshots
 *   (`Machine`, `LiveMachine`, `saveMachine`, `restoreMachine`);
 * - `@livesnap/livesnap/qemu`: QEMU migration streams (read, write, inspect, convert).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { readSnapshot, SnapshotWriter } from "./mod.ts";
 * const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
 * const description = {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 1 << 20, pageSize: 4096 }],
 *   creator: "example",
 *   createdAt: Date.now(),
 * };
 * const writing = (async () => {
 *   const w = await SnapshotWriter.create(writable, description);
 *   await w.writePages(0, 42, new Uint8Array(4096).fill(1)); // pages in any order
 *   return await w.close();
 * })();
 * const snapshot = await readSnapshot(readable);
 * assert(snapshot.regions[0][42 * 4096] === 1);
 * assert((await writing).contentDigest.join() === snapshot.contentDigest.join());
 * ```
 *
 * @module
 */
export { VERSION } from "./version.ts";
export {
  DEFAULT_PAGE_SIZE,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  MAX_BATCH_BYTES,
  MAX_CHAIN_DEPTH,
  MAX_RECORD_PAYLOAD,
  MAX_TOTAL_PAGES,
} from "./format/constants.ts";
export {
  ChecksumError,
  CorruptError,
  type ErrorLocation,
  LsnapError,
  TruncatedError,
  UnsupportedError,
} from "./format/errors.ts";
export type { FormatVersion, MachineDescription, Region } from "./format/header.ts";
export type { DeviceSection, DeviceSectionInput } from "./format/device_section.ts";
export {
  decodeDeviceState,
  type DeviceStateValue,
  encodeDeviceState,
} from "./format/device_state.ts";
export {
  computeContentDigest,
  ContentDigestBuilder,
  PageHashTable,
  type PageHashTableMessage,
} from "./format/content_digest.ts";
export { crc32c, toHex } from "./format/checksum.ts";
export {
  type DiffParent,
  diffParentOf,
  SnapshotWriter,
  type WriterOptions,
  type WriteSummary,
} from "./format/writer.ts";
export type { ParentLink } from "./format/parent_record.ts";
export {
  ChainError,
  type ChainFile,
  type ChainProblem,
  ChainReader,
  type ChainReaderOptions,
  type ChainRecord,
  openChain,
  type OpenChainOptions,
  readDiffParent,
  SnapshotChain,
} from "./format/chain.ts";
export type { AtomicFs } from "./format/atomic_file.ts";
export {
  flattenChain,
  flattenChainToFile,
  FlattenError,
  type FlattenOptions,
  type FlattenSummary,
} from "./format/flatten.ts";
export {
  readSnapshot,
  type ReadSnapshotOptions,
  type RecordBase,
  type RecordCounts,
  type Snapshot,
  type SnapshotRecord,
  SnapshotStreamReader,
  type StreamReaderOptions,
} from "./format/stream_reader.ts";
export {
  type FileReaderOptions,
  type PageRecordData,
  type ReadPageRecordsOptions,
  SnapshotFileReader,
} from "./format/file_reader.ts";
export {
  type ByteRange,
  type CoalescedRange,
  type CoalesceOptions,
  coalesceRanges,
  NotRandomAccessError,
  type RandomAccessSource,
  type ReadOptions,
  SourceChangedError,
  SourceClosedError,
  SourceEndedError,
  SourceError,
  SourceHttpError,
  type SourceIdentity,
  sourceReadable,
  type SourceReadableOptions,
  type SourceStats,
  SourceTimeoutError,
} from "./format/random_access_source.ts";
export { FileSource } from "./format/file_source.ts";
export { HttpSource, type HttpSourceOptions, openHttpStream } from "./format/http_source.ts";
export { isHttpUrl, openSource, type OpenSourceOptions } from "./format/open_source.ts";
export type { Trailer } from "./format/trailer.ts";
export { IndexBody, type SnapshotIndex } from "./format/index_record.ts";
export type { PageEncodingName } from "./format/page_record.ts";
