/**
 * `verify`: reads every byte of a snapshot and applies every rule of FORMAT.md to it (the
 * format's own {@linkcode SnapshotChecker}, as the readers do), and also that CBOR device state
 * decodes. Unlike a reader it does not stop at the first problem: it collects each one with its
 * record index and byte offset (up to `maxErrors`), and after lost framing it searches for the
 * next valid record and goes on. With `content` it also checks that the file holds the expected
 * state.
 *
 * Page data is expanded and hashed for the content digest in worker threads while the calling
 * thread reads, checks CRCs and computes the file digest (see BENCHMARKS.md, "verify").
 *
 * @module
 */
import { type PageDigestPool, startPageDigestPool } from "../format/page_digest_pool.ts";
import { toHex } from "../format/checksum.ts";
import { SnapshotChecker } from "../format/file_checks.ts";
import { streamSource } from "../format/record_scanner.ts";
import type { ErrorReport } from "./inspect.ts";

/** One problem found, as plain data. `recordIndex` is -1 outside records. */
export interface Problem {
  /** "CorruptError", "TruncatedError", "ChecksumError", "UnsupportedError". */
  kind: string;
  /** The whole message, "Cannot read record N at byte B: …". */
  message: string;
  /** Byte offset of the record (or structure) at fault. */
  offset: number;
  /** Index of that record (0 is the HEADER). */
  recordIndex: number;
}

/** What {@linkcode verifySnapshot} returns. */
export interface VerifyResult {
  /** True only for a complete file that passed every check (and matched `content` if given). */
  ok: boolean;
  /** True when the trailer and the footer were read. */
  complete: boolean;
  /** Records read (the trailer included). */
  records: number;
  /** Bytes read. */
  bytes: number;
  /** Digests in lowercase hex, recomputed and matched against the trailer; null unless ok. */
  digests: { content: string | null; file: string | null };
  /** The first problem, naming the record index and byte offset; null when ok. */
  error: ErrorReport | null;
  /** Every problem found, in file order. */
  problems: Problem[];
  /** True when the scan stopped at `maxErrors`: more problems may follow. */
  stoppedEarly: boolean;
  /** With `content`: the expected digest and whether the file holds that state. */
  content: { expected: string; matches: boolean } | null;
}

/** Options of {@linkcode verifySnapshot}. */
export interface VerifyOptions {
  /** Stop after this many problems (default 100). */
  maxErrors?: number;
  /** The content digest (64 hex digits) the file must hold. */
  content?: string;
  /** Called with byte counts as they are read (for progress). */
  onBytes?: (n: number) => void;
  /**
   * Worker threads that expand and hash pages. Default: when `sizeHint` is at least 16 MiB, one
   * fewer than the CPUs (at least 1, at most 3), and the calling thread does the work until they
   * have loaded; otherwise 0 (all on the calling thread).
   */
  workers?: number;
  /** The input's size in bytes, when known (Infinity for a pipe that may be long). */
  sizeHint?: number;
  /**
   * Page workers started beforehand (`startPageDigestPool` with the same options), so that they
   * load while the caller does; used instead of `workers`, and closed when verification ends.
   * For livesnap's own `verify` command: the pool's type is not exported.
   *
   * @ignore
   */
  pool?: PageDigestPool;
}

class StopScan extends Error {}

/**
 * Verifies a snapshot read from a stream. Format problems are reported in the result, never
 * thrown; I/O errors of the stream are thrown.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { verifySnapshot } from "./verify.ts";
 * const r = await verifySnapshot(ReadableStream.from([new Uint8Array(0)]));
 * assert(!r.ok && r.error?.kind === "TruncatedError");
 * ```
 */
export async function verifySnapshot(
  stream: ReadableStream<Uint8Array>,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const expected = options.content?.toLowerCase();
  if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
    throw new Error(`Cannot verify: --content '${options.content}' is not 64 hex digits`);
  }
  const maxErrors = options.maxErrors ?? 100;
  const pool = options.pool ?? startPageDigestPool(options);
  const problems: Problem[] = [];
  let stoppedEarly = false;
  const checker = new SnapshotChecker(streamSource(stream), {
    report: (e) => {
      problems.push({
        kind: e.name,
        message: e.message,
        offset: e.offset,
        recordIndex: e.recordIndex,
      });
      if (problems.length >= maxErrors) {
        stoppedEarly = true;
        throw new StopScan();
      }
    },
    pages: "digest",
    checkIndex: true,
    checkDeviceState: true,
    resync: true,
    pool,
    onBytes: options.onBytes,
  });
  try {
    for await (const _ of checker.records()) { /* every rule is applied as the records pass */ }
  } catch (e) {
    if (!(e instanceof StopScan)) throw e;
  } finally {
    pool?.close();
  }
  // Page work finishes out of order when threads do it: list the problems in file order.
  problems.sort((a, b) => a.offset - b.offset);
  const contentDigest = checker.contentDigest === null ? null : toHex(checker.contentDigest);
  const fileDigest = checker.fileDigest === null ? null : toHex(checker.fileDigest);
  let content: VerifyResult["content"] = null;
  if (expected !== undefined) {
    const matches = contentDigest === expected;
    content = { expected, matches };
    if (!matches && !stoppedEarly) {
      problems.push({
        kind: "ChecksumError",
        message: contentDigest === null
          ? `Cannot check content: the file's content digest could not be computed (expected ${expected})`
          : `Cannot check content: the file holds content ${contentDigest}, expected ${expected}`,
        offset: checker.position,
        recordIndex: -1,
      });
    }
  }
  const ok = problems.length === 0 && checker.complete;
  return {
    ok,
    complete: checker.complete,
    records: checker.recordsRead,
    bytes: checker.position,
    digests: { content: ok ? contentDigest : null, file: ok ? fileDigest : null },
    error: problems[0] ?? null,
    problems,
    stoppedEarly,
    content,
  };
}
