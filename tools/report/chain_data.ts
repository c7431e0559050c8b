/**
 * The chains of a report's inputs (FORMAT.md §14): for each input diff that no other input names
 * as its parent, the chain that ends at it, opened by the format's `openChain` (every link checked
 * there, FORMAT.md §14.4) with the other inputs as the parents to use first, else the name hints;
 * each link's file, digests and the pages it holds; and each input's whole state as page hashes
 * (the parent's state overlaid by the diff's pages), so that a diff map between a diff and
 * another file compares states, not a diff's changes alone.
 *
 * @module
 */
import { ChainError, type ChainFile, openChain } from "../../format/chain.ts";
import { toHex } from "../../format/checksum.ts";
import type { InspectResult, ParentReport } from "../inspect.ts";
import type { ReportChain, ReportChainLink } from "./data.ts";
import type { GatheredFile, GatherOptions } from "./lsnap_data.ts";
import type { PageHashes } from "./page_hashes.ts";

/** What {@linkcode gatherChains} returns. */
export interface GatheredChains {
  chains: ReportChain[];
  /**
   * Per input file: the page hashes of the whole state it stands for (a full snapshot's own
   * pages; a diff's parent state overlaid by its pages), or null when a diff's chain cannot be
   * used or page hashes were not kept.
   */
  states: (PageHashes | null)[];
}

/** Reads one more file (a parent found through a name hint) for its pages and hashes. */
export type GatherFileFn = (path: string, options: GatherOptions) => Promise<GatheredFile>;

function pagesOf(inspect: InspectResult): ReportChainLink["pages"] {
  return {
    present: inspect.pages.present,
    zero: inspect.pages.zero,
    data: inspect.pages.present - inspect.pages.zero,
  };
}

function parentOf(f: ChainFile): ParentReport | null {
  const l = f.link;
  return l === null ? null : {
    name: l.parentName,
    depth: l.depth,
    contentDigest: toHex(l.parentContentDigest),
    fileDigest: toHex(l.parentFileDigest),
    rootFileDigest: toHex(l.rootFileDigest),
  };
}

async function realPath(path: string): Promise<string | null> {
  try {
    return await Deno.realPath(path);
  } catch {
    return null;
  }
}

function lsnapInspect(f: GatheredFile): InspectResult | null {
  const r = f.report;
  return r.kind === "lsnap" && r.inspect !== null && "formatVersion" in r.inspect
    ? r.inspect
    : null;
}

/**
 * Finds and opens the chains of the inputs. `paths[i]` is the path `files[i]` was read from
 * ("-" for standard input, which takes part only as a file digest the others may name);
 * `gather` reads a parent that is not an input.
 */
export async function gatherChains(
  paths: string[],
  files: GatheredFile[],
  gather: GatherFileFn,
  options: GatherOptions = {},
): Promise<GatheredChains> {
  const states: (PageHashes | null)[] = files.map((f) =>
    f.report.parent === null ? f.hashes : null
  );
  const chains: ReportChain[] = [];
  const inspects = files.map(lsnapInspect);
  // A diff that another input diff names (by file digest) is inside that one's chain.
  const named = new Set<string>();
  for (const r of inspects) if (r?.parent) named.add(r.parent.fileDigest);
  const real = await Promise.all(paths.map((p) => p === "-" ? null : realPath(p)));
  const inputOf = async (path: string) => {
    const rp = await realPath(path);
    return rp === null ? -1 : real.indexOf(rp);
  };
  for (const [head, r] of inspects.entries()) {
    if (r === null || r.parent === null || real[head] === null) continue;
    if (r.digests.file !== null && named.has(r.digests.file)) continue;
    const parents = paths.filter((p, i) => i !== head && inspects[i] !== null && p !== "-");
    let chain;
    try {
      chain = await openChain(paths[head], { parents });
    } catch (e) {
      if (!(e instanceof ChainError)) throw e;
      chains.push({
        head,
        ok: false,
        problem: e.problem,
        message: e.message,
        links: await brokenLinks(head, inspects, paths, e, inputOf),
      });
      continue;
    }
    try {
      const links: ReportChainLink[] = [];
      let damaged: string | null = null;
      let state: PageHashes | null = null;
      for (const [k, f] of chain.files.entries()) {
        const file = await inputOf(f.path);
        let gathered = file >= 0 ? files[file] : null;
        if (gathered === null) gathered = await gather(f.path, options);
        const inspect = lsnapInspect(gathered);
        // openChain checks trailers; a file read whole may still be damaged inside.
        const bad = gathered.report.intact
          ? null
          : `'${f.path}' is damaged or incomplete: ${
            gathered.report.problems[0]?.message ?? "unreadable"
          }`;
        damaged ??= bad;
        links.push({
          path: f.path,
          file,
          depth: f.depth,
          bytes: f.reader.size,
          contentDigest: toHex(f.trailer.contentDigest),
          fileDigest: toHex(f.trailer.fileDigest),
          parent: parentOf(f),
          pages: inspect === null ? null : pagesOf(inspect),
          broken: bad,
        });
        const own = bad === null ? gathered.hashes : null;
        state = own === null ? null : k === 0 ? own : state === null ? null : state.overlaid(own);
        if (file >= 0) states[file] = state;
      }
      chains.push(
        damaged === null
          ? { head, ok: true, problem: null, message: null, links }
          : { head, ok: false, problem: "damaged-file", message: damaged, links },
      );
    } finally {
      chain.close();
    }
  }
  return { chains, states };
}

/**
 * The links of a chain that cannot be used, as far as the inputs tell (each file's parent found
 * among the inputs by the file digest its PARENT record names: for display only, the checks are
 * `openChain`'s), oldest first; the link `openChain` refused is marked on its child.
 */
async function brokenLinks(
  head: number,
  inspects: (InspectResult | null)[],
  paths: string[],
  e: ChainError,
  inputOf: (path: string) => Promise<number>,
): Promise<ReportChainLink[]> {
  const links: ReportChainLink[] = [];
  const child = await inputOf(e.file);
  const seen = new Set<number>();
  let i = head;
  while (i >= 0 && !seen.has(i)) {
    seen.add(i);
    const r = inspects[i]!;
    links.push({
      path: paths[i],
      file: i,
      depth: r.parent?.depth ?? 0,
      bytes: r.bytes,
      contentDigest: r.digests.content ?? "",
      fileDigest: r.digests.file ?? "",
      parent: r.parent,
      pages: pagesOf(r),
      broken: i === child ? e.message : null,
    });
    const want = r.parent?.fileDigest;
    i = want === undefined ? -1 : inspects.findIndex((x) => x !== null && x.digests.file === want);
  }
  // The refused link's child is not among the inputs' links: name it on the oldest one found.
  if (child < 0 || !seen.has(child)) links[links.length - 1].broken ??= e.message;
  return links.reverse();
}
