/**
 * `report`: one self-contained HTML page that shows what snapshots hold and how they were taken
 * (memory maps, record order, diffs between files, the engine's timeline), with the data set
 * embedded as JSON.
 *
 * @module
 */
import type { ReportData } from "./data.ts";
import { gatherReport } from "./gather.ts";
import { renderReport } from "./html.ts";

/** Options of {@linkcode makeReport}. */
export interface ReportOptions {
  /** The engine's metrics file (`livesnap run --metrics`), for the timelines. */
  metrics?: string;
  /** The report's time (default now). */
  createdAt?: Date;
  /** Most problems listed per damaged file (default 100). */
  maxProblems?: number;
  /** Most record-order segments per file (default 131,072). */
  maxSegments?: number;
  /** Called with byte counts as the files are read (for progress). */
  onBytes?: (n: number) => void;
}

/** What {@linkcode makeReport} returns. */
export interface Report {
  /** The data set the page embeds. */
  data: ReportData;
  /** The page. */
  html: string;
}

/**
 * Reads `paths` (.lsnap files or QEMU migration streams; `-` is standard input) and the metrics
 * and makes the report. A damaged file gets a report too (`data.damaged`); a file that cannot be
 * opened, or a metrics file that cannot be read, throws.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { makeReport } from "./report.ts";
 * import { SnapshotWriter } from "../../format/writer.ts";
 * const path = await Deno.makeTempFile({ suffix: ".lsnap" });
 * const regions = [{ name: "ram", base: 0x8000_0000, size: 16 * 4096, pageSize: 4096 }];
 * const w = await SnapshotWriter.createFile(path, { regions, creator: "doc", createdAt: 0 });
 * await w.writePages(0, 3, new Uint8Array(4096).fill(1));
 * await w.close();
 * const { data, html } = await makeReport([path]);
 * assert(!data.damaged && html.startsWith("<!doctype html>"));
 * await Deno.remove(path);
 * ```
 */
export async function makeReport(paths: string[], options: ReportOptions = {}): Promise<Report> {
  const data = await gatherReport(paths, options);
  return { data, html: renderReport(data) };
}
