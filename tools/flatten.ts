/**
 * `livesnap flatten`: one full snapshot of the state a chain of diffs stands for (FORMAT.md
 * §14.5), made by copying the chain's compressed records and proved by reading it back.
 *
 * @module
 */
import { openChain } from "../format/chain.ts";
import { toHex } from "../format/checksum.ts";
import {
  flattenChain,
  flattenChainToFile,
  type FlattenOptions,
  type FlattenSummary,
} from "../format/flatten.ts";

/** Options of {@linkcode flattenSnapshot}. */
export interface FlattenSnapshotOptions extends FlattenOptions {
  /** The newest file of the chain (a diff, or a full snapshot: a chain of one). */
  path: string;
  /** Parent files to use before the name hints (`--parent`), matched by file digest. */
  parents?: string[];
  /** The output path; `-` writes to standard output. */
  out: string;
}

/** What {@linkcode flattenSnapshot} returns. */
export interface FlattenSnapshotResult extends FlattenSummary {
  /** The files of the chain, the full snapshot first. */
  chain: string[];
  /** The content digest, lowercase hex (the one the newest file declares, read back). */
  contentDigestHex: string;
}

/**
 * Opens the chain ending at `path` (every link checked, FORMAT.md §14.4) and flattens it into
 * `out`. Throws `ChainError` for a chain that cannot be used, format/'s `LsnapError` subclasses
 * for a file whose tail, index or record framing is damaged, `FlattenError` when the output is
 * one of the inputs or does not read back as the declared state (a damaged record copied from the
 * chain fails there, named by file and offset); nothing is then left at `out`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert/mod.js";
 * import { diffParentOf, SnapshotWriter } from "../mod.ts";
 * import { flattenSnapshot } from "./flatten.ts";
 * const dir = await Deno.makeTempDir();
 * const description = {
 *   regions: [{ name: "ram", base: 0x8000_0000, size: 1 << 16, pageSize: 4096 }],
 *   creator: "doc", createdAt: 0,
 * };
 * const w0 = await SnapshotWriter.createFile(`${dir}/s-0.lsnap`, description, { keepPageHashes: true });
 * await w0.writePages(0, 0, new Uint8Array(4096).fill(1));
 * const s0 = await w0.close();
 * const w1 = await SnapshotWriter.createFile(`${dir}/s-1.lsnap`, description, {
 *   parent: diffParentOf(s0, `${dir}/s-0.lsnap`),
 * });
 * await w1.writePages(0, 1, new Uint8Array(4096).fill(2));
 * const s1 = await w1.close();
 * const r = await flattenSnapshot({ path: `${dir}/s-1.lsnap`, out: `${dir}/flat.lsnap` });
 * assertEquals(r.contentDigest, s1.contentDigest);
 * assertEquals(r.chain.length, 2);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function flattenSnapshot(o: FlattenSnapshotOptions): Promise<FlattenSnapshotResult> {
  const chain = await openChain(o.path, { parents: o.parents });
  try {
    const s = o.out === "-"
      ? await flattenChain(chain, Deno.stdout.writable, o)
      : await flattenChainToFile(chain, o.out, o);
    return {
      ...s,
      chain: chain.files.map((f) => f.path),
      contentDigestHex: toHex(s.contentDigest),
    };
  } finally {
    chain.close();
  }
}
