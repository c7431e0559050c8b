/**
 * The `livesnap` commands as functions: each command of the command line is one function here,
 * and the command line only parses arguments and prints.
 *
 * - {@linkcode inspectSnapshot} / {@linkcode inspectDevice} (`livesnap inspect`): what a snapshot
 *   holds, never throwing for a damaged file.
 * - {@linkcode verifySnapshot} (`livesnap verify`): every check, every problem with its record and
 *   byte offset; {@linkcode verifyChain} (`verify --chain`) every file and link of a chain of diffs.
 * - {@linkcode convertSnapshot} (`livesnap convert`): recompress, reorder, raw images, ELF cores,
 *   QEMU streams; the output is read back and its content digest checked before it appears.
 * - {@linkcode diffSnapshots} (`livesnap diff`): differing pages and device fields.
 * - {@linkcode flattenSnapshot} (`livesnap flatten`): one full snapshot from a chain of diffs.
 * - {@linkcode runGuest} (`livesnap run`) and {@linkcode restoreSnapshot} (`livesnap restore`):
 *   a guest on the bundled machine, from its ELF or from a snapshot.
 * - {@linkcode serveControl} / {@linkcode controlRequest} (`livesnap ctl`): the control socket.
 * - {@linkcode migrate} (`run --migrate-to`, `ctl migrate`) and {@linkcode receiveMigration}
 *   (`restore --incoming`): live migration over TCP (docs/MIGRATION.md).
 * - {@linkcode makeReport} (`livesnap report`): one HTML page showing what snapshots hold and how
 *   they were taken, with its data set ({@linkcode ReportData}; {@linkcode unpackArray} reads its
 *   packed columns).
 *
 * @example
 * ```ts
 * import { assert, assertEquals } from "@std/assert/mod.js";
 * import { convertSnapshot, inspectSnapshot, verifySnapshot } from "./mod.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/ram.img`, new Uint8Array(16384).fill(3));
 * const made = await convertSnapshot("", `${dir}/vm.lsnap`, {
 *   from: "raw",
 *   rawRegions: [{ name: "ram", base: 0x8000_0000, path: `${dir}/ram.img` }],
 * });
 * const verified = await verifySnapshot((await Deno.open(`${dir}/vm.lsnap`)).readable);
 * assert(verified.ok);
 * assertEquals(verified.digests.content, made.contentDigest);
 * const inspected = await inspectSnapshot((await Deno.open(`${dir}/vm.lsnap`)).readable);
 * assertEquals(inspected.pages.present, 4);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export {
  type ChainReport,
  DeviceNotFoundError,
  type DeviceStateReport,
  type ErrorReport,
  inspectChain,
  inspectDevice,
  type InspectOptions,
  type InspectResult,
  inspectSnapshot,
  type InstructionCount,
  type PageRun,
  type ParentReport,
} from "./inspect.ts";
export {
  verifyChain,
  type VerifyChainResult,
  type VerifyOptions,
  type VerifyResult,
  verifySnapshot,
} from "./verify.ts";
export type { Problem } from "./verify.ts";
export type { FieldDifference, Json } from "./_state_json.ts";
export {
  type CompressionChoice,
  type ConvertContext,
  ConvertError,
  type ConvertOptions,
  type ConvertResult,
  convertSnapshot,
  type InputFormat,
  inputFormats,
  type OutputFormat,
  outputFormats,
  type OutputSummary,
  type RawRegionSpec,
  registerInputFormat,
  registerOutputFormat,
  type SnapshotSource,
  type SourceItem,
} from "./convert/mod.ts";
export {
  type DeviceDifference,
  type DiffOptions,
  type DiffResult,
  diffSnapshots,
  type PageChange,
  type PageDifference,
  type RegionDifference,
} from "./diff.ts";
export {
  type ElfCoreLayout,
  type ElfCoreOptions,
  type ElfCoreSegment,
  encodeElfCore,
  layoutElfCore,
  type Rv32Registers,
} from "./elf_core.ts";
export {
  flattenSnapshot,
  type FlattenSnapshotOptions,
  type FlattenSnapshotResult,
} from "./flatten.ts";
export { runGuest, type RunGuestOptions, type RunGuestResult } from "./run.ts";
export {
  restoreSnapshot,
  type RestoreSnapshotOptions,
  type RestoreSnapshotResult,
} from "./restore.ts";
export {
  type ControlEvent,
  type ControlReply,
  type ControlRequest,
  controlRequest,
  type ControlServer,
  serveControl,
} from "./control.ts";
export { makeReport, type Report, type ReportOptions } from "./report/report.ts";
export type { Hello, MigrationFailure, MigrationMode } from "../format/migration.ts";
export { MigrationError } from "../format/migration.ts";
export {
  migrate,
  type MigrateOptions,
  type MigrationMetrics,
  type MigrationPassLine,
  parseHostPort,
} from "./migrate.ts";
export {
  type IncomingMetrics,
  type IncomingMigration,
  type IncomingOptions,
  incompatibility,
  receiveMigration,
} from "./incoming.ts";
export {
  DiffKind,
  type DiffRegion,
  type DiffReport,
  type FileReport,
  type PackedArray,
  type PackedType,
  PageKind,
  type RecordTable,
  type RegionMap,
  REPORT_DATA_VERSION,
  type ReportChain,
  type ReportChainLink,
  type ReportData,
  type ReportProblem,
  type SegmentTable,
  type TimelineReport,
  type TypedArrayOf,
  unpackArray,
} from "./report/data.ts";
