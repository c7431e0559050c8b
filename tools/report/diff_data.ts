/**
 * The diff map between two files of a report: for each region both hold (matched by name, else
 * by base, size and page size, so a QEMU stream's `riscv_virt_board.ram` meets an .lsnap `ram`),
 * runs of pages that are the same, changed, zeroed or filled, compared through each page's
 * hash; and which device sections differ.
 *
 * @module
 */
import { Column, DiffKind, type DiffRegion, type DiffReport, type RegionMap } from "./data.ts";
import type { GatheredFile } from "./lsnap_data.ts";
import { HashState, type PageHashes } from "./page_hashes.ts";

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Pairs the regions of two files: by name, then leftovers by base, size and page size. */
function matchRegions(
  a: RegionMap[],
  b: RegionMap[],
): { pairs: [number, number][]; unmatched: DiffReport["unmatched"] } {
  const pairs: [number, number][] = [];
  const usedB = new Set<number>();
  const leftA: number[] = [];
  for (const [i, r] of a.entries()) {
    const j = b.findIndex((x) => x.name === r.name);
    if (j >= 0 && !usedB.has(j)) {
      pairs.push([i, j]);
      usedB.add(j);
    } else leftA.push(i);
  }
  const unmatched: DiffReport["unmatched"] = [];
  for (const i of leftA) {
    const r = a[i];
    const j = b.findIndex((x, k) =>
      !usedB.has(k) && x.base === r.base && x.size === r.size && x.pageSize === r.pageSize
    );
    if (j >= 0) {
      pairs.push([i, j]);
      usedB.add(j);
    } else {unmatched.push({
        file: "a",
        name: r.name,
        reason: "no region of B has its name or layout",
      });}
  }
  for (const [j, r] of b.entries()) {
    if (!usedB.has(j)) {
      unmatched.push({ file: "b", name: r.name, reason: "no region of A has its name or layout" });
    }
  }
  return { pairs, unmatched };
}

async function diffRegion(
  ra: RegionMap,
  rb: RegionMap,
  ia: number,
  ib: number,
  ha: PageHashes,
  hb: PageHashes,
): Promise<DiffRegion | string> {
  if (ra.pageSize !== rb.pageSize) {
    return `page sizes differ (${ra.pageSize} and ${rb.pageSize})`;
  }
  const pages = Math.min(ra.pages, rb.pages);
  const count = new Column("u32");
  const kind = new Column("u8");
  const totals = { changed: 0, zeroed: 0, filled: 0 };
  for (let p = 0; p < pages; p++) {
    // Absent and zero are the same state (FORMAT.md §4).
    const za = ha.state(ia, p) !== HashState.DATA;
    const zb = hb.state(ib, p) !== HashState.DATA;
    let k: number = DiffKind.SAME;
    if (za && !zb) k = DiffKind.FILLED;
    else if (!za && zb) k = DiffKind.ZEROED;
    else if (!za && !zb && !ha.sameData(ia, p, hb, ib)) k = DiffKind.CHANGED;
    if (k === DiffKind.CHANGED) totals.changed++;
    else if (k === DiffKind.ZEROED) totals.zeroed++;
    else if (k === DiffKind.FILLED) totals.filled++;
    const last = count.length - 1;
    if (last >= 0 && kind.get(last) === k) count.set(last, count.get(last) + 1);
    else {
      count.push(1);
      kind.push(k);
    }
  }
  return {
    name: ra.name === rb.name ? ra.name : `${ra.name} / ${rb.name}`,
    base: ra.base,
    pageSize: ra.pageSize,
    pages,
    a: ia,
    b: ib,
    ...totals,
    runs: { count: await count.pack(), kind: await kind.pack() },
  };
}

/**
 * Compares file `a` with file `b` (both gathered with page hashes). `states[i]`, when given, is
 * the whole state file `i` stands for (for a diff: its chain's pages overlaid, see
 * `chain_data.ts`); without it a diff is not compared, since the pages it lacks are unchanged
 * since its parent, not zero (FORMAT.md §14.2).
 */
export async function diffFiles(
  files: GatheredFile[],
  a: number,
  b: number,
  states?: (PageHashes | null)[],
): Promise<DiffReport> {
  const fa = files[a];
  const fb = files[b];
  const { pairs, unmatched } = matchRegions(fa.report.regions, fb.report.regions);
  const regions: DiffRegion[] = [];
  const stateOf = (i: number, f: GatheredFile) =>
    states?.[i] ?? (f.report.parent === null ? f.hashes : null);
  const ha = stateOf(a, fa);
  const hb = stateOf(b, fb);
  for (const [side, f, hx] of [["a", fa, ha], ["b", fb, hb]] as const) {
    if (hx === null && f.report.parent !== null) {
      unmatched.push({
        file: side,
        name: "*",
        reason: "a diff whose chain cannot be used: the pages it lacks are its parent's, unknown",
      });
    }
  }
  for (const [ia, ib] of pairs) {
    const ra = fa.report.regions[ia];
    const rb = fb.report.regions[ib];
    if (ha === null || hb === null) break;
    const d = await diffRegion(ra, rb, ia, ib, ha, hb);
    if (typeof d === "string") unmatched.push({ file: "a", name: ra.name, reason: d });
    else regions.push(d);
  }
  const devices: DiffReport["devices"] = [];
  const keys = new Set([...fa.devices.keys(), ...fb.devices.keys()]);
  for (const key of [...keys].sort()) {
    const [id, instance] = key.split("\u0000");
    const x = fa.devices.get(key);
    const y = fb.devices.get(key);
    const change = x === undefined
      ? "only-in-b"
      : y === undefined
      ? "only-in-a"
      : sameBytes(x, y)
      ? null
      : "changed";
    if (change !== null) devices.push({ id, instance: Number(instance), change });
  }
  return { a, b, regions, unmatched, devices };
}
