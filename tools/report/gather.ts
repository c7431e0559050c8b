/**
 * Gathers a report's data set: each input file read once (an .lsnap file or a QEMU migration
 * stream, told apart by its first bytes), each file compared with the next, and the engine's
 * metrics tied to the files they describe.
 *
 * @module
 */
import { isQemuStream } from "../../qemu/inspect.ts";
import { VERSION } from "../../version.ts";
import { openInput } from "../_io.ts";
import { peekBytes } from "../_peek.ts";
import { REPORT_DATA_VERSION, type ReportData } from "./data.ts";
import { gatherChains } from "./chain_data.ts";
import { diffFiles } from "./diff_data.ts";
import { type GatheredFile, gatherLsnap, type GatherOptions } from "./lsnap_data.ts";
import { matchTimelines, parseMetrics } from "./metrics_data.ts";
import { gatherQemu } from "./qemu_data.ts";

/** An input file or the metrics file could not be opened or read (not a format problem). */
export class ReportInputError extends Error {
  /** Makes the error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ReportInputError";
  }
}

/** Options of {@linkcode gatherReport}. */
export interface GatherReportOptions extends Omit<GatherOptions, "hashPages"> {
  /** The engine's metrics file (`run --metrics`), for the timelines. */
  metrics?: string;
  /** The report's time (default now). */
  createdAt?: Date;
}

/** One input file read into its report (and, when `hashPages`, its page hashes). */
export async function gatherFile(path: string, options: GatherOptions = {}): Promise<GatheredFile> {
  let input;
  try {
    input = await openInput(path);
  } catch (e) {
    throw new ReportInputError((e as Error).message, { cause: e });
  }
  try {
    let head: Uint8Array;
    let readable: ReadableStream<Uint8Array>;
    try {
      ({ head, readable } = await peekBytes(input.readable, 8));
    } catch (e) {
      throw new ReportInputError(`Cannot read ${input.name}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    return isQemuStream(head)
      ? await gatherQemu(input, readable, options)
      : await gatherLsnap(input, readable, options);
  } finally {
    input.close();
  }
}

/**
 * Reads every file and the metrics and returns the data set a report shows, with the chain that
 * ends at each input diff (`chain_data.ts`). A damaged file is
 * reported in the data (its problems, `damaged: true`), never thrown; a file that cannot be
 * opened or read throws {@linkcode ReportInputError}, a metrics file that is not what the engine
 * writes `MetricsError`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { gatherReport } from "./gather.ts";
 * import { SnapshotWriter } from "../../format/writer.ts";
 * const path = await Deno.makeTempFile({ suffix: ".lsnap" });
 * const regions = [{ name: "ram", base: 0x8000_0000, size: 4 * 4096, pageSize: 4096 }];
 * const w = await SnapshotWriter.createFile(path, { regions, creator: "doc", createdAt: 0 });
 * await w.writePages(0, 1, new Uint8Array(4096).fill(7));
 * await w.close();
 * const data = await gatherReport([path]);
 * assertEquals([data.damaged, data.files[0].regions[0].pages], [false, 4]);
 * await Deno.remove(path);
 * ```
 */
export async function gatherReport(
  paths: string[],
  options: GatherReportOptions = {},
): Promise<ReportData> {
  // Read the metrics first: a bad metrics file fails before the snapshots are read.
  const metrics = options.metrics === undefined
    ? []
    : parseMetrics(await readMetricsText(options.metrics), options.metrics);
  const files: GatheredFile[] = [];
  const fileOptions = { ...options, hashPages: paths.length > 1 };
  for (const path of paths) files.push(await gatherFile(path, fileOptions));
  const { chains, states } = await gatherChains(paths, files, gatherFile, fileOptions);
  const diffs = [];
  for (let i = 0; i + 1 < files.length; i++) {
    diffs.push(await diffFiles(files, i, i + 1, states));
  }
  const reports = files.map((f) => f.report);
  return {
    format: "livesnap-report",
    version: REPORT_DATA_VERSION,
    generator: `livesnap ${VERSION}`,
    createdAt: (options.createdAt ?? new Date()).toISOString(),
    damaged: reports.some((f) => !f.intact) || chains.some((c) => !c.ok),
    files: reports,
    chains,
    diffs,
    metricsPath: options.metrics ?? null,
    timelines: matchTimelines(metrics, reports),
  };
}

async function readMetricsText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new ReportInputError(`Cannot read metrics ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}
