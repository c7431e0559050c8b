/**
 * Chains of diff snapshots (FORMAT.md §14): open a chain from its newest diff, finding each parent
 * among given files or under its name hint, with every link checked before anything is used; read
 * a page through the chain; read every file of it in order, proving each link's digests by
 * recomputing them; the page hashes a new diff on any file or chain needs.
 *
 * @module
 */
import { toHex } from "./checksum.ts";
import {
  FILE_MAGIC,
  MAX_CHAIN_DEPTH,
  MAX_RECORD_PAYLOAD,
  PROLOGUE_SIZE,
  RECORD_HEAD_SIZE,
  RECORD_TAIL_SIZE,
  RecordType,
} from "./constants.ts";
import type { PageHashTable } from "./content_digest.ts";
import { sameRegion } from "./content_digest.ts";
import type { DeviceSection } from "./device_section.ts";
import { LsnapError } from "./errors.ts";
import { SnapshotFileReader } from "./file_reader.ts";
import type { MachineDescription } from "./header.ts";
import type { ParentLink } from "./parent_record.ts";
import { type SnapshotRecord, SnapshotStreamReader } from "./stream_reader.ts";
import type { Trailer } from "./trailer.ts";
import type { DiffParent } from "./writer.ts";

/** Why a chain is refused (FORMAT.md §14.4). */
export type ChainProblem =
  | "missing-parent"
  | "wrong-parent"
  | "other-chain"
  | "cycle"
  | "mixed-machines"
  | "too-deep"
  | "incomplete"
  | "digest-mismatch"
  | "damaged-record";

/**
 * A chain of snapshots that cannot be used: a parent missing, swapped, of another chain or of
 * another machine, a cycle, a chain too deep, a file incomplete, digests that the bytes do not
 * prove, or a record of one of its files that fails its check. The message names the file and the link ("d3.lsnap → d2.lsnap").
 */
export class ChainError extends Error {
  /** What is wrong. */
  readonly problem: ChainProblem;
  /** The file whose link is refused (the child). */
  readonly file: string;
  /** The parent file involved, when one was found. */
  readonly parent: string | null;
  /** A refusal of the link from `where.file` to its parent, of kind `problem`. */
  constructor(
    problem: ChainProblem,
    reason: string,
    where: { file: string; parent?: string | null; cause?: unknown },
  ) {
    super(
      `Cannot use the chain of '${where.file}': ${reason}`,
      where.cause === undefined ? {} : { cause: where.cause },
    );
    this.name = "ChainError";
    this.problem = problem;
    this.file = where.file;
    this.parent = where.parent ?? null;
  }
}

/** One file of a chain, open for random access. */
export interface ChainFile {
  /** The path it was opened by. */
  path: string;
  /** Its depth: 0 for the full snapshot. */
  depth: number;
  /** Its PARENT record (null for the full snapshot). */
  link: ParentLink | null;
  /** Its trailer (every file of an open chain is complete). */
  trailer: Trailer;
  /** Its reader (opened with `diffs: "read"`). */
  reader: SnapshotFileReader;
}

/** Options of {@linkcode openChain}. */
export interface OpenChainOptions {
  /**
   * Parent files to use before the name hints (`--parent FILE`, repeatable), in any order: each is
   * used for the link whose PARENT record names its file digest.
   */
  parents?: string[];
  /** Refuse chains deeper than this (default and at most {@linkcode MAX_CHAIN_DEPTH}). */
  maxDepth?: number;
}

/** Identity of a file on disk: device and inode where the platform has them, else the path. */
async function identity(path: string): Promise<string> {
  const st = await Deno.stat(path);
  if (st.ino !== null && st.dev !== null) return `${st.dev}:${st.ino}`;
  return await Deno.realPath(path);
}

/** The path of the file `name` in the directory of `path` (a bare name beside a bare name). */
function besides(path: string, name: string): string {
  const i = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return i < 0 ? name : `${path.slice(0, i + 1)}${name}`;
}

function nameOf(path: string): string {
  return path.slice(Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1);
}

const short = (d: Uint8Array) => toHex(d).slice(0, 16);

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function describeRegions(d: MachineDescription): string {
  return d.regions.map((r) =>
    `${r.name}@0x${r.base.toString(16)}+0x${r.size.toString(16)}/${r.pageSize}`
  ).join(", ");
}

/** True when `e`, or an error it wraps (a byte source's error), is a missing file. */
function isNotFound(e: unknown): boolean {
  for (let x = e, depth = 0; x instanceof Error && depth < 8; x = x.cause, depth++) {
    if (x instanceof Deno.errors.NotFound) return true;
  }
  return false;
}

/** Opens a file of a chain; every failure becomes a ChainError naming the link. */
async function openMember(
  path: string,
  child: string,
  what: string,
): Promise<SnapshotFileReader> {
  try {
    return await SnapshotFileReader.open(path, { diffs: "read" });
  } catch (e) {
    if (isNotFound(e)) {
      throw new ChainError("missing-parent", `${what}: '${path}' does not exist`, {
        file: child,
        parent: path,
        cause: e,
      });
    }
    const reason = e instanceof LsnapError ? e.message : (e as Error).message;
    throw new ChainError("incomplete", `${what}: '${path}' cannot be read: ${reason}`, {
      file: child,
      parent: path,
      cause: e,
    });
  }
}

/**
 * A chain of snapshots, oldest (the full snapshot) first, newest last, every link checked against
 * the trailers of the files (FORMAT.md §14.4). Reading a page goes through the files newest first.
 * The digests in the trailers are proved by {@linkcode ChainReader} (which reads every byte).
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { openChain } from "./chain.ts";
 * import { diffParentOf, SnapshotWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const description = {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 1 << 16, pageSize: 4096 }],
 *   creator: "doc", createdAt: 0,
 * };
 * const w0 = await SnapshotWriter.createFile(`${dir}/s-0.lsnap`, description, { keepPageHashes: true });
 * await w0.writePages(0, 0, new Uint8Array(8192).fill(1));
 * const s0 = await w0.close();
 * const w1 = await SnapshotWriter.createFile(`${dir}/s-1.lsnap`, description, {
 *   parent: diffParentOf(s0, `${dir}/s-0.lsnap`),
 * });
 * await w1.writeZeroPages(0, [1]);
 * await w1.close();
 * const chain = await openChain(`${dir}/s-1.lsnap`);
 * assert(chain.files.length === 2);
 * assert((await chain.readPage(0, 0))[0] === 1 && (await chain.readPage(0, 1))[0] === 0);
 * chain.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SnapshotChain {
  private constructor(
    /** The files, the full snapshot first, the newest last. */
    readonly files: ChainFile[],
  ) {}

  /** The machine description (the newest file's). */
  get description(): MachineDescription {
    return this.head.reader.description;
  }
  /** The newest file. */
  get head(): ChainFile {
    return this.files[this.files.length - 1];
  }
  /** The content digest of the whole state, as the newest file declares it. */
  get contentDigest(): Uint8Array {
    return this.head.trailer.contentDigest;
  }

  /** Opens the chain ending at `path`; see {@linkcode openChain}. */
  static async open(path: string, options: OpenChainOptions = {}): Promise<SnapshotChain> {
    const maxDepth = Math.min(options.maxDepth ?? MAX_CHAIN_DEPTH, MAX_CHAIN_DEPTH);
    const opened: SnapshotFileReader[] = [];
    try {
      const given: { path: string; reader: SnapshotFileReader; id: string }[] = [];
      for (const p of options.parents ?? []) {
        const reader = await openMember(p, path, "a --parent file");
        opened.push(reader);
        given.push({ path: p, reader, id: await identity(p) });
      }
      const first = await openMember(path, path, "the newest file");
      opened.push(first);
      const files: ChainFile[] = [];
      const seen = new Map<string, string>();
      let current = { path, reader: first, id: await identity(path) };
      for (;;) {
        const r = current.reader;
        if (!r.complete || r.trailer === null) {
          throw new ChainError(
            "incomplete",
            `'${current.path}' is incomplete (no valid trailer and footer)`,
            {
              file: files.length === 0 ? path : files[files.length - 1].path,
              parent: current.path,
            },
          );
        }
        seen.set(current.id, current.path);
        const link = r.parent;
        files.push({
          path: current.path,
          depth: link?.depth ?? 0,
          link,
          trailer: r.trailer,
          reader: r,
        });
        if (link === null) break;
        if (files.length === 1 && link.depth > maxDepth) {
          throw new ChainError(
            "too-deep",
            `'${current.path}' is at depth ${link.depth}, deeper than the limit of ${maxDepth}`,
            { file: current.path },
          );
        }
        const next = await this.findParent(current, link, given, seen);
        if (next.opened) opened.push(next.reader);
        current = next;
      }
      files.reverse();
      return new SnapshotChain(files);
    } catch (e) {
      for (const r of opened) r.close();
      throw e;
    }
  }

  /** Finds and checks the parent of `child` (FORMAT.md §14.4). */
  private static async findParent(
    child: { path: string; reader: SnapshotFileReader },
    link: ParentLink,
    given: { path: string; reader: SnapshotFileReader; id: string }[],
    seen: Map<string, string>,
  ): Promise<{ path: string; reader: SnapshotFileReader; id: string; opened: boolean }> {
    const arrow = `link ${nameOf(child.path)} → ${link.parentName} (depth ${link.depth} → ${
      link.depth - 1
    })`;
    const where = (parent: string) => ({ file: child.path, parent });
    let found: { path: string; reader: SnapshotFileReader; id: string; opened: boolean } | null =
      null;
    for (const g of given) {
      const t = g.reader.trailer;
      if (t !== null && equal(t.fileDigest, link.parentFileDigest)) {
        found = { ...g, opened: false };
        break;
      }
    }
    if (found === null) {
      const hint = besides(child.path, link.parentName);
      let id: string;
      try {
        id = await identity(hint);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        const extra = given.length > 0
          ? ` and none of the ${given.length} --parent files has file digest ${
            short(link.parentFileDigest)
          }…`
          : "";
        throw new ChainError(
          "missing-parent",
          `${arrow}: the parent '${hint}' does not exist${extra}`,
          where(hint),
        );
      }
      const again = seen.get(id);
      if (again !== undefined) {
        throw new ChainError(
          "cycle",
          `${arrow}: the parent '${hint}' is '${again}', already in the chain (a cycle)`,
          where(hint),
        );
      }
      found = { path: hint, reader: await openMember(hint, child.path, arrow), id, opened: true };
    } else if (seen.has(found.id)) {
      throw new ChainError(
        "cycle",
        `${arrow}: the parent '${found.path}' is already in the chain (a cycle)`,
        where(found.path),
      );
    }
    const p = found.reader;
    const fail = (problem: ChainProblem, reason: string): never => {
      if (found!.opened) p.close();
      throw new ChainError(problem, `${arrow}: ${reason}`, where(found!.path));
    };
    if (!p.complete || p.trailer === null) {
      fail("incomplete", `the parent '${found.path}' is incomplete (no valid trailer and footer)`);
    }
    const t = p.trailer!;
    const parentRoot = p.parent?.rootFileDigest ?? t.fileDigest;
    if (!equal(t.fileDigest, link.parentFileDigest)) {
      if (!equal(parentRoot, link.rootFileDigest)) {
        fail(
          "other-chain",
          `the parent '${found.path}' belongs to another chain: its chain starts at file digest ${
            short(parentRoot)
          }…, this diff's at ${short(link.rootFileDigest)}…`,
        );
      }
      fail(
        "wrong-parent",
        `the parent '${found.path}' has file digest ${
          short(t.fileDigest)
        }…, the PARENT record of '${nameOf(child.path)}' expects ${
          short(link.parentFileDigest)
        }… (another file under the parent's name)`,
      );
    }
    if (!equal(t.contentDigest, link.parentContentDigest)) {
      fail(
        "digest-mismatch",
        `the parent '${found.path}' declares content digest ${
          short(t.contentDigest)
        }…, the PARENT record expects ${short(link.parentContentDigest)}…`,
      );
    }
    const parentDepth = p.parent?.depth ?? 0;
    if (parentDepth !== link.depth - 1) {
      fail(
        "wrong-parent",
        `the parent '${found.path}' is at depth ${parentDepth}, not ${link.depth - 1}`,
      );
    }
    if (!equal(parentRoot, link.rootFileDigest)) {
      fail(
        "other-chain",
        `the parent '${found.path}' belongs to another chain: its chain starts at file digest ${
          short(parentRoot)
        }…, this diff's at ${short(link.rootFileDigest)}…`,
      );
    }
    const a = child.reader.description.regions;
    const b = p.description.regions;
    if (a.length !== b.length || a.some((r, i) => !sameRegion(r, b[i]))) {
      fail(
        "mixed-machines",
        `the chain mixes machines: '${nameOf(child.path)}' has regions ${
          describeRegions(child.reader.description)
        }, its parent '${found.path}' ${describeRegions(p.description)}`,
      );
    }
    return found;
  }

  /** The index in {@linkcode files} of the newest file that names a page, or -1 (a zero page). */
  pageSource(region: number, page: number): number {
    for (let i = this.files.length - 1; i >= 0; i--) {
      if (this.files[i].reader.pageRecordOffset(region, page) >= 0) return i;
    }
    return -1;
  }

  /** A page's bytes in the state the chain stands for (FORMAT.md §14.2). */
  async readPage(region: number, page: number): Promise<Uint8Array> {
    const i = this.pageSource(region, page);
    if (i < 0) {
      const r = this.description.regions[region];
      if (r === undefined || !Number.isInteger(page) || page < 0 || page >= r.size / r.pageSize) {
        throw new RangeError(`Cannot read page ${page} of region ${region}: no such page`);
      }
      return new Uint8Array(r.pageSize);
    }
    return await this.files[i].reader.readPage(region, page);
  }

  /** The device sections of the state (the newest file's, FORMAT.md §14.2). */
  async devices(): Promise<DeviceSection[]> {
    return await this.head.reader.devices();
  }

  /** Closes every file. */
  close(): void {
    for (const f of this.files) f.reader.close();
  }
}

/**
 * Opens the chain that ends at `path` (a diff, or a full snapshot: a chain of one). Parents are
 * the `options.parents` files whose file digest a PARENT record names, else the file named by the
 * hint in the child's directory. Every link is checked (FORMAT.md §14.4) before this returns;
 * throws {@linkcode ChainError} naming the file and the link.
 */
export async function openChain(
  path: string,
  options: OpenChainOptions = {},
): Promise<SnapshotChain> {
  return await SnapshotChain.open(path, options);
}

/** A record as {@linkcode ChainReader} yields it: which file of the chain it comes from. */
export type ChainRecord = SnapshotRecord & { file: number };

/** Options of {@linkcode ChainReader}. */
export interface ChainReaderOptions {
  /** As `SnapshotStreamReader`'s `decodePages`: page data (true, default), "digest" or false. */
  decodePages?: boolean | "digest";
  /** Called before each file is read. */
  onFile?: (index: number, file: ChainFile) => void;
}

/**
 * Reads every file of a chain, the full snapshot first, with the streaming reader: every record,
 * every CRC, each file digest, and each content digest recomputed over the previous file's page
 * hashes and compared with its trailer; each link's digests compared with what the bytes of the
 * parent gave (FORMAT.md §14.3, §14.4). Yields the records that make the state in an order where
 * the last occurrence wins: the newest file's HEADER, every file's PAGES records, oldest file
 * first, and the newest file's DEVICE records (the devices of older files are not part of the
 * state).
 */
export class ChainReader {
  /** The page hashes of the whole state, once every file was read. */
  pageHashes: PageHashTable | null = null;
  /** The content digest proved for the newest file, once every file was read. */
  contentDigest: Uint8Array | null = null;

  /** A reader of `chain`, whose links were checked when it was opened. */
  constructor(readonly chain: SnapshotChain, private readonly options: ChainReaderOptions = {}) {}

  /** Yields the records (see the class); throws LsnapError or ChainError on the first problem. */
  async *records(): AsyncGenerator<ChainRecord> {
    const files = this.chain.files;
    const mode = this.options.decodePages ?? true;
    // Without the pages' hashes no diff's content digest can be proved.
    const decode = mode === false ? "digest" : mode;
    let base: PageHashTable | undefined;
    let previous: { contentDigest: Uint8Array; fileDigest: Uint8Array } | null = null;
    // The newest file's header first: its description (and metadata) is the state's.
    const head = this.chain.head;
    yield {
      kind: "header",
      offset: PROLOGUE_SIZE,
      recordIndex: 0,
      version: head.reader.version,
      description: head.reader.description,
      file: files.length - 1,
    };
    for (let i = 0; i < files.length; i++) {
      const f = files[i];
      this.options.onFile?.(i, f);
      const newest = i === files.length - 1;
      const file = await Deno.open(f.path, { read: true });
      const reader = new SnapshotStreamReader(file.readable, {
        decodePages: decode,
        diffs: "read",
        parentPages: base,
      });
      for await (const r of reader.records()) {
        if (r.kind === "parent" && previous !== null) {
          const link = r.link;
          if (
            !equal(link.parentFileDigest, previous.fileDigest) ||
            !equal(link.parentContentDigest, previous.contentDigest)
          ) {
            throw new ChainError(
              "digest-mismatch",
              `link ${nameOf(f.path)} → ${nameOf(files[i - 1].path)}: the parent's bytes give ` +
                `file digest ${short(previous.fileDigest)}… and content digest ${
                  short(previous.contentDigest)
                }…, the PARENT record names ${short(link.parentFileDigest)}… and ${
                  short(link.parentContentDigest)
                }… (the parent changed after the chain was opened?)`,
              { file: f.path, parent: files[i - 1].path },
            );
          }
        }
        if (r.kind === "pages" || (newest && r.kind === "device")) {
          yield { ...r, file: i };
        }
      }
      const hashes = reader.pageHashes;
      if (!reader.complete || hashes === null || reader.contentDigest === null) {
        throw new ChainError(
          "digest-mismatch",
          `'${f.path}': its content digest could not be proved`,
          { file: f.path },
        );
      }
      base = hashes;
      previous = { contentDigest: reader.contentDigest, fileDigest: reader.fileDigest! };
    }
    this.pageHashes = base ?? null;
    this.contentDigest = previous?.contentDigest ?? null;
  }
}

/**
 * Reads and proves the chain ending at `path` (every file digest and content digest recomputed)
 * and returns what a writer needs to write a diff on it: the `parent` option of `SnapshotWriter`
 * (FORMAT.md §14.1, §14.3). `path` may be a full snapshot.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { readDiffParent } from "./chain.ts";
 * import { SnapshotWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const description = {
 *   regions: [{ name: "ram", base: 0, size: 1 << 16, pageSize: 4096 }], creator: "doc", createdAt: 0,
 * };
 * const w = await SnapshotWriter.createFile(`${dir}/p.lsnap`, description);
 * await w.writePages(0, 3, new Uint8Array(4096).fill(2));
 * const s = await w.close();
 * const parent = await readDiffParent(`${dir}/p.lsnap`);
 * assert(parent.depth === 0 && parent.pageHashes.count() === 1);
 * assert(parent.contentDigest.join() === s.contentDigest.join());
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readDiffParent(
  path: string,
  options: OpenChainOptions = {},
): Promise<DiffParent> {
  const chain = await openChain(path, options);
  try {
    const reader = new ChainReader(chain, { decodePages: "digest" });
    for await (const _ of reader.records()) { /* every file is proved */ }
    const head = chain.head;
    return {
      contentDigest: reader.contentDigest!,
      fileDigest: head.trailer.fileDigest,
      name: path,
      depth: head.depth,
      rootFileDigest: head.link?.rootFileDigest ?? head.trailer.fileDigest,
      pageHashes: reader.pageHashes!,
    };
  } finally {
    chain.close();
  }
}

/**
 * True when the file at `path` is an `.lsnap` diff: its record 1 is a PARENT record (FORMAT.md
 * §14.1). Reads 16 + 8 + 8 bytes; false for anything else (another format, a short file), whose
 * reader reports what is wrong with it.
 */
export async function isDiffFile(path: string): Promise<boolean> {
  const file = await Deno.open(path, { read: true });
  try {
    const head = new Uint8Array(PROLOGUE_SIZE + RECORD_HEAD_SIZE);
    if (!(await readFully(file, head))) return false;
    if (!FILE_MAGIC.every((b, i) => head[i] === b)) return false;
    const length = new DataView(head.buffer).getUint32(PROLOGUE_SIZE + 4, true);
    if (length > MAX_RECORD_PAYLOAD) return false;
    await file.seek(
      PROLOGUE_SIZE + RECORD_HEAD_SIZE + length + RECORD_TAIL_SIZE,
      Deno.SeekMode.Start,
    );
    const next = new Uint8Array(2);
    if (!(await readFully(file, next))) return false;
    return (next[0] | (next[1] << 8)) === RecordType.PARENT;
  } finally {
    file.close();
  }
}

async function readFully(file: Deno.FsFile, out: Uint8Array): Promise<boolean> {
  let n = 0;
  while (n < out.length) {
    const k = await file.read(out.subarray(n));
    if (k === null) return false;
    n += k;
  }
  return true;
}
