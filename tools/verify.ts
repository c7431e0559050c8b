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
import { ChainError, type ChainProblem, openChain } from "../format/chain.ts";
import type { PageHashTable } from "../format/content_digest.ts";
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
  /**
   * For a diff (FORMAT.md §14): its parent's name and its depth, and whether its content digest
   * (the whole state's) was checked: only with the parent's page hashes (`verifyChain`); null
   * for a full snapshot.
   */
  diff: { parent: string; depth: number; contentChecked: boolean } | null;
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
  /** For a diff: the page hashes of its parent's whole state, to check its content digest. */
  parentPages?: PageHashTable;
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
  return (await verifyStream(stream, options)).result;
}

async function verifyStream(
  stream: ReadableStream<Uint8Array>,
  options: VerifyOptions,
): Promise<{ result: VerifyResult; checker: SnapshotChecker }> {
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
    diffs: "read",
    parentPages: options.parentPages,
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
  const link = checker.parent;
  if (expected !== undefined && link !== null && checker.contentDigestNeedsParent) {
    content = { expected, matches: false };
    problems.push({
      kind: "ChecksumError",
      message: "Cannot check content: a diff's content digest is the whole state's, which needs " +
        "its parents (verify --chain)",
      offset: checker.position,
      recordIndex: -1,
    });
  } else if (expected !== undefined) {
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
  const result: VerifyResult = {
    ok,
    complete: checker.complete,
    records: checker.recordsRead,
    bytes: checker.position,
    digests: { content: ok ? contentDigest : null, file: ok ? fileDigest : null },
    error: problems[0] ?? null,
    problems,
    stoppedEarly,
    content,
    diff: link === null ? null : {
      parent: link.parentName,
      depth: link.depth,
      contentChecked: !checker.contentDigestNeedsParent,
    },
  };
  return { result, checker };
}

/** What {@linkcode verifyChain} returns. */
export interface VerifyChainResult {
  /** True when the chain opened, every file passed every check and every link was proved. */
  ok: boolean;
  /** Why the chain could not be used (a link refused, or not proved by the bytes); null when ok. */
  chainError: { problem: ChainProblem; message: string } | null;
  /** Each file verified, the full snapshot first (verification stops at the first bad file). */
  files: (VerifyResult & { path: string })[];
  /** The newest file's digests, proved, in lowercase hex; null unless ok. */
  digests: { content: string | null; file: string | null };
  /** With `content`: the expected digest and whether the chain holds that state. */
  content: { expected: string; matches: boolean } | null;
}

/**
 * Verifies the chain that ends at `path` (FORMAT.md §14.4): opens it (each link checked against
 * the trailers), then reads every file, the full snapshot first, with every check of
 * {@linkcode verifySnapshot}, each diff's content digest recomputed over its parent's state, and
 * each link's digests compared with those the parent's bytes gave. With `content`, the newest
 * file's state must be that one. Format problems and refused links are in the result; I/O errors
 * are thrown.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { verifyChain } from "./verify.ts";
 * const r = await verifyChain("/nonexistent/s-2.lsnap");
 * assert(!r.ok && r.chainError?.problem === "missing-parent");
 * ```
 */
export async function verifyChain(
  path: string,
  options: Omit<VerifyOptions, "parentPages" | "pool"> & { parents?: string[] } = {},
): Promise<VerifyChainResult> {
  const expected = options.content?.toLowerCase();
  const failed = (problem: ChainProblem, message: string, files: VerifyChainResult["files"]) => ({
    ok: false,
    chainError: { problem, message },
    files,
    digests: { content: null, file: null },
    content: expected === undefined ? null : { expected, matches: false },
  });
  let paths: string[];
  try {
    const chain = await openChain(path, { parents: options.parents });
    paths = chain.files.map((f) => f.path);
    chain.close();
  } catch (e) {
    if (e instanceof ChainError) return failed(e.problem, e.message, []);
    throw e;
  }
  const files: VerifyChainResult["files"] = [];
  let base: PageHashTable | undefined;
  let previous: { content: string; file: string } | null = null;
  for (let i = 0; i < paths.length; i++) {
    const file = await Deno.open(paths[i], { read: true });
    const size = (await file.stat()).size;
    const { result, checker } = await verifyStream(file.readable, {
      ...options,
      content: i === paths.length - 1 ? options.content : undefined,
      sizeHint: size,
      parentPages: base,
    });
    files.push({ path: paths[i], ...result });
    if (!result.ok) {
      return {
        ...failed(
          "digest-mismatch",
          `Cannot use the chain of '${path}': '${paths[i]}' does not verify: ${
            result.error?.message ?? "incomplete"
          }`,
          files,
        ),
        content: result.content,
      };
    }
    const link = checker.parent;
    if (previous !== null && link !== null) {
      const content = toHex(link.parentContentDigest);
      const fileDigest = toHex(link.parentFileDigest);
      if (content !== previous.content || fileDigest !== previous.file) {
        return failed(
          "digest-mismatch",
          `Cannot use the chain of '${path}': link ${paths[i]} → ${paths[i - 1]}: the parent's ` +
            `bytes give file digest ${previous.file} and content digest ${previous.content}, ` +
            `the PARENT record names ${fileDigest} and ${content}`,
          files,
        );
      }
    }
    base = checker.pageHashes ?? undefined;
    previous = { content: result.digests.content!, file: result.digests.file! };
  }
  const last = files[files.length - 1];
  return {
    ok: true,
    chainError: null,
    files,
    digests: last.digests,
    content: last.content,
  };
}
