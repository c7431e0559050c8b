/**
 * `verify`: reads every byte of a snapshot and checks framing, every record's CRC, the header,
 * page numbers against the regions, page data, device sections, the index against the records,
 * the trailer's counts, the file digest, the content digest, the footer and completeness. Unlike
 * a reader it does not stop at the first problem: it reports each one with its record index and
 * byte offset (up to `maxErrors`). With `content` it also checks that the file holds the
 * expected state.
 *
 * @module
 */
import { type Problem, scanSnapshot } from "./_verify_scan.ts";
import type { ErrorReport } from "./inspect.ts";

/** What {@linkcode verifySnapshot} returns. */
export interface VerifyResult {
  /** True only for a complete file that passed every check (and matched `content` if given). */
  ok: boolean;
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
}

/**
 * Verifies a snapshot read from a stream. Format problems are reported in the result, never
 * thrown; I/O errors of the stream are thrown.
 *
 * @example
 * ```ts
 * import { verifySnapshot } from "./verify.ts";
 * const r = await verifySnapshot(ReadableStream.from([new Uint8Array(0)]));
 * console.assert(!r.ok && r.error?.kind === "TruncatedError");
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
  const scan = await scanSnapshot(stream, {
    maxErrors: options.maxErrors,
    onBytes: options.onBytes,
  });
  const problems = [...scan.problems];
  let content: VerifyResult["content"] = null;
  if (expected !== undefined) {
    const matches = scan.contentDigest === expected;
    content = { expected, matches };
    if (!matches && !scan.stoppedEarly) {
      const at = scan.bytes;
      problems.push({
        kind: "ChecksumError",
        message: scan.contentDigest === null
          ? `Cannot check content: the file's content digest could not be computed (expected ${expected})`
          : `Cannot check content: the file holds content ${scan.contentDigest}, expected ${expected}`,
        offset: at,
        recordIndex: -1,
      });
    }
  }
  const ok = problems.length === 0 && scan.complete;
  return {
    ok,
    complete: scan.complete,
    records: scan.records,
    bytes: scan.bytes,
    digests: { content: ok ? scan.contentDigest : null, file: ok ? scan.fileDigest : null },
    error: problems[0] ?? null,
    problems,
    stoppedEarly: scan.stoppedEarly,
    content,
  };
}
