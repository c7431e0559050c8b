/**
 * `verify`: reads every byte of a snapshot and checks every CRC, the file digest, the content
 * digest, the index and completeness.
 *
 * @module
 */
import { toHex } from "../format/checksum.ts";
import { SnapshotStreamReader } from "../format/stream_reader.ts";
import { type ErrorReport, reportError } from "./inspect.ts";

/** What {@linkcode verifySnapshot} returns. */
export interface VerifyResult {
  /** True only for a complete file that passed every check. */
  ok: boolean;
  complete: boolean;
  /** Records read (the trailer included). */
  records: number;
  /** Digests in lowercase hex, recomputed and matched against the trailer; null if not reached. */
  digests: { content: string | null; file: string | null };
  /** The first problem, naming the record index and byte offset; null when ok. */
  error: ErrorReport | null;
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
export async function verifySnapshot(stream: ReadableStream<Uint8Array>): Promise<VerifyResult> {
  const reader = new SnapshotStreamReader(stream);
  let records = 0;
  let error: ErrorReport | null = null;
  try {
    for await (const _ of reader.records()) records++;
  } catch (e) {
    error = reportError(e);
  }
  const ok = error === null && reader.complete;
  return {
    ok,
    complete: reader.complete,
    records,
    digests: {
      content: ok && reader.contentDigest ? toHex(reader.contentDigest) : null,
      file: ok && reader.fileDigest ? toHex(reader.fileDigest) : null,
    },
    error,
  };
}
