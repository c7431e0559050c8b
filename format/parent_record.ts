/**
 * The PARENT record of a diff snapshot: which file the diff applies to, bound by that file's
 * content digest and file digest, with its name as a hint (FORMAT.md §14).
 *
 * @module
 */
import { ByteBuilder, ByteCursor, utf8 } from "./_bytes.ts";
import { MAX_CHAIN_DEPTH, MAX_NAME_BYTES } from "./constants.ts";

/** What a diff's PARENT record says (FORMAT.md §14.1). */
export interface ParentLink {
  /** This diff's depth in its chain: 1 on a full snapshot, the parent's depth + 1 on a diff. */
  depth: number;
  /** The content digest of the parent (the whole state it stands for), 32 bytes. */
  parentContentDigest: Uint8Array;
  /** The file digest of the parent (its trailer's), 32 bytes. */
  parentFileDigest: Uint8Array;
  /** The file digest of the chain's full snapshot (depth 0), 32 bytes: names the chain. */
  rootFileDigest: Uint8Array;
  /** The parent's file name, a hint looked up in the diff's directory (no directory part). */
  parentName: string;
}

const DIGEST = 32;

/** Why `name` cannot be a parent name hint, or null (FORMAT.md §14.1). */
export function parentNameProblem(name: string): string | null {
  const n = utf8(name).length;
  if (n === 0 || n > MAX_NAME_BYTES) {
    return `parent name '${name}' is empty or longer than ${MAX_NAME_BYTES} bytes`;
  }
  const bad = ["/", "\\", "\u0000"].some((c) => name.includes(c));
  if (bad || name === "." || name === "..") {
    return `parent name '${name}' is not a plain file name (no '/', '\\', NUL, '.' or '..')`;
  }
  return null;
}

/** Encodes a PARENT payload; throws a plain Error for a link that breaks FORMAT.md §14.1. */
export function encodeParentRecord(link: ParentLink): Uint8Array {
  const bad = linkProblem(link);
  if (bad !== null) throw new Error(`Cannot write parent record: ${bad}`);
  return new ByteBuilder()
    .u32(link.depth)
    .bytes(link.parentContentDigest)
    .bytes(link.parentFileDigest)
    .bytes(link.rootFileDigest)
    .str16(link.parentName)
    .finish();
}

function linkProblem(link: ParentLink): string | null {
  if (!Number.isInteger(link.depth) || link.depth < 1 || link.depth > MAX_CHAIN_DEPTH) {
    return `depth ${link.depth} is not in 1..${MAX_CHAIN_DEPTH}`;
  }
  for (
    const [what, d] of [
      ["parent content digest", link.parentContentDigest],
      ["parent file digest", link.parentFileDigest],
      ["root file digest", link.rootFileDigest],
    ] as const
  ) {
    if (d.length !== DIGEST) return `${what} is ${d.length} bytes, not ${DIGEST}`;
  }
  if (link.depth === 1 && !sameBytes(link.rootFileDigest, link.parentFileDigest)) {
    return "at depth 1 the root file digest must be the parent's file digest";
  }
  return parentNameProblem(link.parentName);
}

/** Decodes a PARENT payload, checking every rule of FORMAT.md §14.1. */
export function decodeParentRecord(
  payload: Uint8Array,
  offset: number,
  recordIndex: number,
): ParentLink {
  const c = new ByteCursor(payload, offset, recordIndex);
  const link: ParentLink = {
    depth: c.u32("depth"),
    parentContentDigest: c.take(DIGEST, "parent content digest").slice(),
    parentFileDigest: c.take(DIGEST, "parent file digest").slice(),
    rootFileDigest: c.take(DIGEST, "root file digest").slice(),
    parentName: c.str16("parent name", MAX_NAME_BYTES),
  };
  c.end("parent record");
  const bad = linkProblem(link);
  if (bad !== null) c.fail(bad);
  return link;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
