/**
 * QEMU migration streams (`QEVM`, version 3, as QEMU 7.2 and later write them with
 * `migrate "exec:cat > FILE"`): read them record by record, summarise them, decode device
 * state through the stream's own JSON description, convert them to `.lsnap` snapshots and back,
 * and write them.
 *
 * - {@linkcode readQemuStream}: the stream's records (configuration, RAM blocks and pages, device
 *   sections), each malformed byte reported with its offset by a {@linkcode QemuStreamError}
 *   subclass; {@linkcode isQemuStream} tells one by its first bytes.
 * - {@linkcode inspectQemuStream}: what `livesnap inspect` prints for a stream.
 * - {@linkcode convertQemuToLsnap} and {@linkcode convertLsnapToQemu}: a stream to an `.lsnap`
 *   file (one region per RAM block, device sections byte for byte) and back.
 * - {@linkcode extractQemuRam}: one RAM block as a flat image (what QEMU's `pmemsave` dumps).
 * - {@linkcode QemuStreamWriter}: writes a stream QEMU loads with `-incoming`.
 * - Cross-emulator resume between QEMU's riscv32 `virt` board and livesnap's machine:
 *   {@linkcode restoreQemuStream} builds livesnap's machine from a stream (the emulator's
 *   `restoreMachine` and `livesnap restore` do it too), {@linkcode writeVirtStream} writes a
 *   snapshot livesnap's machine took as a stream QEMU resumes; what cannot be honoured either way
 *   is refused by a {@linkcode QemuMachineRefusedError} naming every field.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { extractQemuRam, inspectQemuStream, QemuStreamWriter } from "./mod.ts";
 * const chunks: Uint8Array[] = [];
 * const w = new QemuStreamWriter({ write: async (c: Uint8Array) => void chunks.push(c.slice()) });
 * await w.writeHeader(new Uint8Array([7, 0, 0, 0, 4, 0x76, 0x69, 0x72, 0x74]));
 * await w.writeRamBlocks([{ name: "pc.ram", size: 8192 }], { sectionId: 2 });
 * await w.writePage("pc.ram", 4096, new Uint8Array(4096).fill(5));
 * await w.close();
 * const summary = await inspectQemuStream(chunks);
 * assertEquals(summary.ram.blocks.map((b) => b.name), ["pc.ram"]);
 * assertEquals((await extractQemuRam(chunks, "pc.ram"))[4096], 5);
 * ```
 *
 * @module
 */
export {
  convertLsnapToQemu,
  convertQemuToLsnap,
  type LsnapToQemuSummary,
  type OpenQemuStreamOptions,
  type QemuToLsnapOptions,
  type QemuToLsnapSummary,
} from "./convert.ts";
export {
  QemuStreamCorruptError,
  QemuStreamError,
  QemuStreamTruncatedError,
  QemuStreamUnsupportedError,
} from "./errors.ts";
export { extractQemuRam, extractQemuRamToFile } from "./extract_ram.ts";
export {
  formatQemuSummary,
  type InspectQemuOptions,
  inspectQemuStream,
  type QemuDeviceSummary,
  type QemuRamBlockSummary,
  type QemuSectionSummary,
  type QemuStreamSummary,
} from "./inspect.ts";
export type {
  QemuConfiguration,
  QemuDeviceSection,
  QemuStreamRecord,
  RamBlock,
  SectionHeader,
  VmDescDevice,
  VmDescField,
  VmDescription,
  VmDescStruct,
} from "./model.ts";
export { type QemuSnapshot, readQemuSnapshot, writeQemuSnapshot } from "./snapshot.ts";
export {
  type ByteInput,
  isQemuStream,
  readQemuStream,
  type ReadQemuStreamOptions,
} from "./stream_reader.ts";
export {
  type ByteSink,
  QemuStreamWriter,
  type QemuStreamWriterOptions,
  type RamSectionIdentity,
} from "./stream_writer.ts";
export {
  decodeVmState,
  type DecodeVmStateOptions,
  type VmStateDecoding,
  type VmStateValue,
} from "./vmstate_decode.ts";
export { type FieldNote, type FieldRefusal, QemuMachineRefusedError } from "./riscv_virt.ts";
export { restoreQemuStream, type VirtRestored } from "./riscv_virt_restore.ts";
export { type SnapshotItem, type VirtStreamSummary, writeVirtStream } from "./riscv_virt_export.ts";
