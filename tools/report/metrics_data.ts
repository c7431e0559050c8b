/**
 * Reads the engine's metrics file (`run --metrics FILE`: one JSON object per line, one line per
 * snapshot; a single object or an array of them is taken too) for the report's timelines, and
 * ties each snapshot to the input file it wrote (by content digest, else by file name).
 *
 * @module
 */
import type { FileReport, TimelineReport } from "./data.ts";

/** A metrics file that cannot be read as the engine writes it. */
export class MetricsError extends Error {
  /** Makes the error. */
  constructor(message: string) {
    super(message);
    this.name = "MetricsError";
  }
}

const SERIES = ["ms", "pagesWritten", "bufferBytes", "guestStallUs"] as const;

function isNumberArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === "number" && Number.isFinite(x));
}

/** Checks a timeline's shape; returns why it is wrong, or null. */
function checkTimeline(t: unknown): string | null {
  if (typeof t !== "object" || t === null) return "timeline is not an object";
  const tl = t as Record<string, unknown>;
  if (typeof tl.intervalMs !== "number") return "timeline.intervalMs is not a number";
  for (const key of SERIES) {
    if (!isNumberArray(tl[key])) return `timeline.${key} is not an array of numbers`;
    if ((tl[key] as number[]).length !== (tl.ms as number[]).length) {
      return `timeline.${key} has ${(tl[key] as number[]).length} samples, timeline.ms ${
        (tl.ms as number[]).length
      }`;
    }
  }
  for (const key of ["pauses", "passes"] as const) {
    if (!Array.isArray(tl[key])) return `timeline.${key} is not an array`;
    for (const [i, x] of (tl[key] as unknown[]).entries()) {
      const o = x as Record<string, unknown>;
      if (typeof o !== "object" || o === null) return `timeline.${key}[${i}] is not an object`;
      if (typeof o.startMs !== "number" || typeof o.endMs !== "number") {
        return `timeline.${key}[${i}] lacks startMs or endMs`;
      }
    }
  }
  return null;
}

/**
 * Parses a metrics file's text. Throws {@linkcode MetricsError} naming the line and the field
 * that is wrong.
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "@std/assert/mod.js";
 * import { MetricsError, parseMetrics } from "./metrics_data.ts";
 * assertEquals(parseMetrics('{"mode":"cow","pauseUs":120}\n').length, 1);
 * assertThrows(() => parseMetrics("{oops\n"), MetricsError, "line 1");
 * ```
 */
export function parseMetrics(text: string, name = "the metrics file"): Record<string, unknown>[] {
  const trimmed = text.trim();
  let items: unknown[];
  if (trimmed.startsWith("[")) {
    try {
      items = JSON.parse(trimmed);
    } catch (e) {
      throw new MetricsError(`Cannot read ${name}: not JSON: ${(e as Error).message}`);
    }
  } else {
    items = [];
    for (const [i, line] of text.split("\n").entries()) {
      if (line.trim() === "") continue;
      try {
        items.push(JSON.parse(line));
      } catch (e) {
        throw new MetricsError(
          `Cannot read ${name}: line ${i + 1} is not JSON: ${(e as Error).message}`,
        );
      }
    }
  }
  return items.map((x, i) => {
    if (typeof x !== "object" || x === null || Array.isArray(x)) {
      throw new MetricsError(`Cannot read ${name}: snapshot ${i + 1} is not a JSON object`);
    }
    const m = x as Record<string, unknown>;
    if (m.timeline !== undefined) {
      const why = checkTimeline(m.timeline);
      if (why !== null) throw new MetricsError(`Cannot read ${name}: snapshot ${i + 1}: ${why}`);
    }
    return m;
  });
}

function baseName(path: string): string {
  return path.replace(/\\/g, "/").split("/").pop() ?? path;
}

/** Ties each snapshot's metrics to the file it wrote: same content digest, else same name. */
export function matchTimelines(
  metrics: Record<string, unknown>[],
  files: FileReport[],
): TimelineReport[] {
  return metrics.map((m) => {
    let file = files.findIndex((f) =>
      f.contentDigest !== null && f.contentDigest === m.contentDigest
    );
    if (file < 0 && typeof m.path === "string") {
      file = files.findIndex((f) => baseName(f.path) === baseName(m.path as string));
    }
    return { file, metrics: m as TimelineReport["metrics"] };
  });
}
