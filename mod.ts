/**
 * livesnap: live snapshots of virtual machines.
 *
 * The `.lsnap` format (writer, streaming and random-access readers), the tools that inspect,
 * verify and convert snapshots, and a bundled RISC-V machine that takes live snapshots while its
 * guest keeps running.
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
export const VERSION = "0.1.0";

export {
  DEFAULT_PAGE_SIZE,
  FORMAT_MAJOR,
  FORMAT_MINOR,
  MAX_BATCH_BYTES,
  MAX_RECORD_PAYLOAD,
  MAX_TOTAL_PAGES,
} from "./format/constants.ts";
export {
  ChecksumError,
  CorruptError,
  LsnapError,
  TruncatedError,
  UnsupportedError,
} from "./format/errors.ts";
export type { ErrorLocation } from "./format/errors.ts";
export type { FormatVersion, MachineDescription, Region } from "./format/header.ts";
export type { DeviceSection, DeviceSectionInput } from "./format/device_section.ts";
export { decodeDeviceState, encodeDeviceState } from "./format/device_state.ts";
export type { DeviceStateValue } from "./format/device_state.ts";
export { computeContentDigest, ContentDigestBuilder } from "./format/content_digest.ts";
export { SnapshotWriter } from "./format/writer.ts";
export type { WriterOptions, WriteSummary } from "./format/writer.ts";
export { readSnapshot, SnapshotStreamReader } from "./format/stream_reader.ts";
export type {
  ReadSnapshotOptions,
  Snapshot,
  SnapshotRecord,
  StreamReaderOptions,
} from "./format/stream_reader.ts";
export { SnapshotFileReader } from "./format/file_reader.ts";
export type { Trailer } from "./format/trailer.ts";
export type { SnapshotIndex } from "./format/index_record.ts";
export type { PageEncodingName } from "./format/page_record.ts";
export { crc32c, toHex } from "./format/checksum.ts";
export { inspectDevice, inspectSnapshot } from "./tools/inspect.ts";
export type {
  DeviceStateReport,
  ErrorReport,
  InspectOptions,
  InspectResult,
  PageRun,
} from "./tools/inspect.ts";
export { verifySnapshot } from "./tools/verify.ts";
export {
  deviceSections,
  type ExitReason,
  Machine,
  type MachineDescription as MachineShape,
  type MachineOptions,
  type MachineState,
} from "./emulator/machine.ts";
export { GATE_CODE, GATE_HOOK, GATE_WATCH, type StoreHook } from "./emulator/ram.ts";
export { type HartState } from "./emulator/hart.ts";
export { type UartSink } from "./emulator/devices/uart.ts";
export { INSTRUCTIONS_PER_TICK, MACHINE_NAME, RAM_BASE } from "./emulator/memory_map.ts";
export { ElfError, parseElf } from "./emulator/elf.ts";
export { runGuest, type RunGuestOptions, type RunGuestResult } from "./tools/run.ts";
export {
  type CowBufferSize,
  LiveMachine,
  type LiveMachineOptions,
  type SnapshotRequest,
} from "./emulator/snapshot/live_machine.ts";
export type { SnapshotMetrics } from "./emulator/snapshot/metrics.ts";
export type { SnapshotMode } from "./emulator/snapshot/session.ts";
export { type RestoredMachine, restoreMachine } from "./emulator/snapshot/restore.ts";
export { saveMachine } from "./emulator/snapshot/save.ts";
export {
  machineContentDigest,
  SnapshotMismatchError,
  STATE_MIGRATIONS,
  type StateMigration,
} from "./emulator/snapshot/machine_state.ts";
export { restoreSnapshot, type RestoreSnapshotOptions } from "./tools/restore.ts";
export { controlRequest, serveControl } from "./tools/control.ts";
export {
  checkQemuMetadata,
  convertLsnapToQemu,
  convertQemuToLsnap,
  KNOWN_BLOCK_BASES,
  openQemuStream,
  QEMU_STREAM_DEVICE_ID,
  writeQemuStreamFrom,
} from "./qemu/convert.ts";
export type {
  LsnapToQemuSummary,
  OpenQemuStreamOptions,
  QemuSnapshotItem,
  QemuStreamSnapshot,
  QemuToLsnapOptions,
  QemuToLsnapSummary,
} from "./qemu/convert.ts";
export {
  QemuStreamCorruptError,
  QemuStreamError,
  QemuStreamTruncatedError,
  QemuStreamUnsupportedError,
} from "./qemu/errors.ts";
export { extractQemuRam, extractQemuRamToFile } from "./qemu/extract_ram.ts";
export { formatQemuSummary, inspectQemuStream } from "./qemu/inspect.ts";
export type { QemuDeviceSummary, QemuRamBlockSummary, QemuStreamSummary } from "./qemu/inspect.ts";
export type {
  QemuConfiguration,
  QemuDeviceSection,
  QemuStreamRecord,
  RamBlock,
  VmDescription,
} from "./qemu/model.ts";
export { readQemuSnapshot, writeQemuSnapshot } from "./qemu/snapshot.ts";
export type { QemuSnapshot } from "./qemu/snapshot.ts";
export { isQemuStream, readQemuStream } from "./qemu/stream_reader.ts";
export type { ByteInput, ReadQemuStreamOptions } from "./qemu/stream_reader.ts";
export { QemuStreamWriter } from "./qemu/stream_writer.ts";
export type { ByteSink, QemuStreamWriterOptions } from "./qemu/stream_writer.ts";
export { decodeVmState } from "./qemu/vmstate_decode.ts";
export type { VmStateDecoding, VmStateValue } from "./qemu/vmstate_decode.ts";
export type { VerifyOptions, VerifyResult } from "./tools/verify.ts";
export type { Problem } from "./tools/verify.ts";
export {
  ConvertError,
  convertSnapshot,
  INPUT_FORMATS,
  OUTPUT_FORMATS,
  registerInputFormat,
  registerOutputFormat,
} from "./tools/convert.ts";
export type {
  ConvertContext,
  ConvertOptions,
  ConvertResult,
  InputFormat,
  OutputFormat,
  OutputSummary,
  SnapshotSource,
  SourceItem,
} from "./tools/convert.ts";
export { diffSnapshots } from "./tools/diff.ts";
export type {
  DeviceDifference,
  DiffOptions,
  DiffResult,
  PageDifference,
  RegionDifference,
} from "./tools/diff.ts";
export { encodeElfCore, layoutElfCore } from "./tools/elf_core.ts";
export type {
  ElfCoreLayout,
  ElfCoreOptions,
  ElfCoreSegment,
  Rv32Registers,
} from "./tools/elf_core.ts";
