/**
 * `inspect`: what a snapshot holds, as one plain object (the shape `inspect --json` prints).
 *
 * @module
 */
import { isZeroPage } from "./_zero.ts";
import { toHex } from "../format/checksum.ts";
import { LsnapError } from "../format/errors.ts";
import { SnapshotStreamReader, sortDevices } from "../format/stream_reader.ts";
import type { DeviceSection } from "../format/device_section.ts";

/** A format error as plain data. */
export interface ErrorReport {
  kind: string;
  message: string;
  offset: number;
  recordIndex: number;
}

/** What {@linkcode inspectSnapshot} returns. */
export interface InspectResult {
  /** "MAJOR.MINOR" from the prologue, or null if unreadable. */
  formatVersion: string | null;
  /** True when the trailer and footer were read and every check passed. */
  complete: boolean;
  creator: string | null;
  /** Creation time as an ISO 8601 string. */
  createdAt: string | null;
  regions: { name: string; base: number; size: number; pageSize: number }[];
  pages: {
    /** Distinct pages that appear at least once. */
    present: number;
    /** Of those, pages whose last occurrence is all zero. */
    zero: number;
    /** PAGES records. */
    records: number;
    /** Page occurrences beyond the first for the same page. */
    duplicates: number;
    /** PAGES records by encoding. */
    encodings: { zero: number; raw: number; zstd: number };
  };
  devices: { id: string; instance: number; version: number; encoding: string; bytes: number }[];
  /** Digests in lowercase hex; null when the trailer was not reached. */
  digests: { content: string | null; file: string | null };
  /** Records read (trailer included when present). */
  records: number;
  /** True when an INDEX record was present. */
  indexed: boolean;
  /** Unknown optional records skipped. */
  extensions: number;
  /** The first problem found, or null. */
  error: ErrorReport | null;
}

/** Turns an error into a report, rethrowing anything that is not a format error. */
export function reportError(e: unknown): ErrorReport {
  if (e instanceof LsnapError) {
    return { kind: e.name, message: e.message, offset: e.offset, recordIndex: e.recordIndex };
  }
  throw e;
}

/**
 * Reads a whole snapshot from a stream and describes it. Never throws for a malformed file: the
 * problem is in `error` and `complete` is false.
 *
 * @example
 * ```ts
 * import { inspectSnapshot } from "./inspect.ts";
 * const r = await inspectSnapshot(ReadableStream.from([new Uint8Array(10)]));
 * console.assert(r.complete === false && r.error?.kind === "CorruptError");
 * ```
 */
export async function inspectSnapshot(stream: ReadableStream<Uint8Array>): Promise<InspectResult> {
  const reader = new SnapshotStreamReader(stream);
  // Per page: 0 absent, 1 zero, 2 data; kept per 4096-page chunk.
  const state: Map<number, Uint8Array>[] = [];
  const devices = new Map<string, DeviceSection>();
  const encodings = { zero: 0, raw: 0, zstd: 0 };
  let records = 0;
  let error: ErrorReport | null = null;
  let occurrences = 0;
  try {
    for await (const r of reader.records()) {
      records++;
      if (r.kind === "header") r.description.regions.forEach(() => state.push(new Map()));
      else if (r.kind === "pages") {
        encodings[r.encoding]++;
        const ps = reader.description!.regions[r.region].pageSize;
        const map = state[r.region];
        for (let i = 0; i < r.pages.length; i++) {
          occurrences++;
          const p = r.pages[i];
          let chunk = map.get(p >>> 12);
          if (chunk === undefined) {
            chunk = new Uint8Array(4096);
            map.set(p >>> 12, chunk);
          }
          chunk[p & 4095] = r.data === null || isZeroPage(r.data, i * ps, ps) ? 1 : 2;
        }
      } else if (r.kind === "device") {
        devices.set(`${r.device.id}\u0000${r.device.instance}`, r.device);
      }
    }
  } catch (e) {
    error = reportError(e);
  }
  let present = 0;
  let zero = 0;
  for (const map of state) {
    for (const chunk of map.values()) {
      for (const v of chunk) {
        if (v !== 0) present++;
        if (v === 1) zero++;
      }
    }
  }
  const d = reader.description;
  const t = reader.trailer;
  return {
    formatVersion: reader.version ? `${reader.version.major}.${reader.version.minor}` : null,
    complete: reader.complete && error === null,
    creator: d?.creator ?? null,
    createdAt: d ? new Date(d.createdAt).toISOString() : null,
    regions:
      d?.regions.map((r) => ({ name: r.name, base: r.base, size: r.size, pageSize: r.pageSize })) ??
        [],
    pages: {
      present,
      zero,
      records: reader.counts.pageRecords,
      duplicates: occurrences - present,
      encodings,
    },
    devices: sortDevices([...devices.values()]).map((x) => ({
      id: x.id,
      instance: x.instance,
      version: x.version,
      encoding: x.encoding,
      bytes: x.state.length,
    })),
    digests: { content: t ? toHex(t.contentDigest) : null, file: t ? toHex(t.fileDigest) : null },
    records,
    indexed: reader.indexOffset !== 0,
    extensions: reader.counts.extensions,
    error,
  };
}
