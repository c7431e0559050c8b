/**
 * `diff`: which pages and which device fields differ between two snapshots. Each file is read
 * once, front to back (a pipe works for one of them), and every check of the streaming reader
 * applies; a page is remembered by a 16-byte hash of its last occurrence, so memory stays at
 * about 17 bytes per page whatever the guest's size.
 *
 * @module
 */
import { hashPageInto, toHex } from "../format/checksum.ts";
import type { DeviceSection } from "../format/device_section.ts";
import { decodeDeviceState } from "../format/device_state.ts";
import type { MachineDescription, Region } from "../format/header.ts";
import { SnapshotStreamReader } from "../format/stream_reader.ts";
import { diffStates, type FieldDifference } from "./_state_json.ts";
import { countBytes } from "./_count_bytes.ts";
import { openInput } from "./_io.ts";
import { createProgress, type Progress } from "./_term.ts";
import { isZeroPage } from "./_zero.ts";

const CHUNK = 4096;
const HASH = 16;

/** The last-occurrence hash of every non-zero page of a snapshot. */
interface PageHashes {
  description: MachineDescription;
  /** Per region, chunks of CHUNK pages: hashes, and 1 where the page is present and non-zero. */
  chunks: ({ hashes: Uint8Array; present: Uint8Array } | undefined)[][];
  devices: Map<string, DeviceSection>;
  contentDigest: string;
}

async function hashSnapshot(path: string, progress: Progress): Promise<PageHashes> {
  const input = await openInput(path);
  try {
    const reader = new SnapshotStreamReader(countBytes(input.readable, (n) => progress.add(n)));
    let chunks: PageHashes["chunks"] = [];
    const devices = new Map<string, DeviceSection>();
    for await (const r of reader.records()) {
      if (r.kind === "header") chunks = r.description.regions.map(() => []);
      else if (r.kind === "pages") {
        const ps = reader.description!.regions[r.region].pageSize;
        const list = chunks[r.region];
        for (let i = 0; i < r.pages.length; i++) {
          const p = r.pages[i];
          let c = list[Math.floor(p / CHUNK)];
          const zero = r.data === null || isZeroPage(r.data, i * ps, ps);
          if (c === undefined) {
            if (zero) continue;
            c = { hashes: new Uint8Array(CHUNK * HASH), present: new Uint8Array(CHUNK) };
            list[Math.floor(p / CHUNK)] = c;
          }
          const slot = p % CHUNK;
          if (zero) c.present[slot] = 0;
          else {
            hashPageInto(r.data!.subarray(i * ps, (i + 1) * ps), c.hashes, slot * HASH);
            c.present[slot] = 1;
          }
        }
      } else if (r.kind === "device") {
        devices.set(`${r.device.id}\u0000${r.device.instance}`, r.device);
      }
    }
    return {
      description: reader.description!,
      chunks,
      devices,
      contentDigest: toHex(reader.contentDigest!),
    };
  } catch (e) {
    // Say which of the two files is damaged; the error keeps its class and fields.
    if (e instanceof Error) e.message = `${input.name}: ${e.message}`;
    throw e;
  } finally {
    input.close();
  }
}

/** How one page differs. */
export type PageChange = "changed" | "zeroed" | "filled";

/** One differing page. */
export interface PageDifference {
  /** Page number in the region. */
  page: number;
  /** Guest-physical address of the page. */
  address: number;
  /** "changed": different non-zero contents; "zeroed": zero in B only; "filled": zero in A only. */
  change: PageChange;
}

/** The comparison of one region (matched by name). */
export interface RegionDifference {
  /** The region's name, the same in A and B. */
  name: string;
  /** The region in A and in B (null where it does not exist). */
  a: Omit<Region, "name"> | null;
  /** The region in B, or null. */
  b: Omit<Region, "name"> | null;
  /** True when base, size or page size differ (pages are then compared only if the page size agrees). */
  layoutDiffers: boolean;
  /** Pages compared (those of the smaller region). */
  pagesCompared: number;
  /** Pages with different non-zero contents in A and B. */
  changed: number;
  /** Pages non-zero in A, zero in B. */
  zeroed: number;
  /** Pages zero in A, non-zero in B. */
  filled: number;
  /** The differing pages, with `pages: true` (at most `maxPages`). */
  pages?: PageDifference[];
}

/** How one device section differs. */
export interface DeviceDifference {
  /** Device id, e.g. `hart`, `ns16550a`. */
  id: string;
  /** Instance number among devices with this id. */
  instance: number;
  /** The section is in one file only, or in both with a different version, encoding or state. */
  change: "only-in-a" | "only-in-b" | "changed";
  /** The state layout version in A, when A has the section. */
  versionA?: number;
  /** The state layout version in B, when B has the section. */
  versionB?: number;
  /** Fields that differ, when both states decode as CBOR (else one entry with path ""). */
  fields?: FieldDifference[];
}

/** What {@linkcode diffSnapshots} returns (the shape `diff --json` prints). */
export interface DiffResult {
  /** True when both files hold the same state (their content digests are equal). */
  equal: boolean;
  /** Each file's content digest (FORMAT.md §10), lowercase hex. */
  contentDigests: { a: string; b: string };
  /** Every region of A or B, matched by name. */
  regions: RegionDifference[];
  /** Every device section that differs; identical ones are left out. */
  devices: DeviceDifference[];
}

/** Options of {@linkcode diffSnapshots}. */
export interface DiffOptions {
  /** List differing pages (default false: counts only). */
  pages?: boolean;
  /** Most pages listed per region (default 100 000). */
  maxPages?: number;
  /** Most fields listed per device (default 1000). */
  maxFields?: number;
  /** Progress on standard error (default: when it is a terminal). */
  progress?: boolean;
}

function layoutOf(r: Region | undefined): Omit<Region, "name"> | null {
  return r === undefined ? null : { base: r.base, size: r.size, pageSize: r.pageSize };
}

function compareRegion(
  name: string,
  a: PageHashes,
  b: PageHashes,
  options: DiffOptions,
): RegionDifference {
  const ia = a.description.regions.findIndex((r) => r.name === name);
  const ib = b.description.regions.findIndex((r) => r.name === name);
  const ra = a.description.regions[ia];
  const rb = b.description.regions[ib];
  const out: RegionDifference = {
    name,
    a: layoutOf(ra),
    b: layoutOf(rb),
    layoutDiffers: ra === undefined || rb === undefined || ra.base !== rb.base ||
      ra.size !== rb.size ||
      ra.pageSize !== rb.pageSize,
    pagesCompared: 0,
    changed: 0,
    zeroed: 0,
    filled: 0,
  };
  if (options.pages) out.pages = [];
  if (ra === undefined || rb === undefined || ra.pageSize !== rb.pageSize) return out;
  const ps = ra.pageSize;
  const n = Math.min(ra.size, rb.size) / ps;
  out.pagesCompared = n;
  const ca = a.chunks[ia];
  const cb = b.chunks[ib];
  const max = options.maxPages ?? 100_000;
  const note = (page: number, change: PageChange) => {
    out[change]++;
    if (out.pages !== undefined && out.pages.length < max) {
      out.pages.push({ page, address: ra.base + page * ps, change });
    }
  };
  for (let ci = 0; ci * CHUNK < n; ci++) {
    const x = ca[ci];
    const y = cb[ci];
    if (x === undefined && y === undefined) continue;
    const end = Math.min(CHUNK, n - ci * CHUNK);
    for (let s = 0; s < end; s++) {
      const pa = x?.present[s] ?? 0;
      const pb = y?.present[s] ?? 0;
      if (pa === 0 && pb === 0) continue;
      const page = ci * CHUNK + s;
      if (pa !== pb) {
        note(page, pa === 1 ? "zeroed" : "filled");
        continue;
      }
      const o = s * HASH;
      for (let k = 0; k < HASH; k++) {
        if (x!.hashes[o + k] !== y!.hashes[o + k]) {
          note(page, "changed");
          break;
        }
      }
    }
  }
  // Pages past the end of the smaller region count as differing when non-zero.
  const longer = ra.size > rb.size
    ? { c: ca, change: "zeroed" as const }
    : { c: cb, change: "filled" as const };
  const total = Math.max(ra.size, rb.size) / ps;
  for (let page = n; page < total; page++) {
    const c = longer.c[Math.floor(page / CHUNK)];
    if (c !== undefined && c.present[page % CHUNK] === 1) note(page, longer.change);
  }
  return out;
}

function compareDevices(a: PageHashes, b: PageHashes, maxFields: number): DeviceDifference[] {
  const keys = [...new Set([...a.devices.keys(), ...b.devices.keys()])].sort((x, y) => {
    const [ix, nx] = x.split("\u0000");
    const [iy, ny] = y.split("\u0000");
    return ix < iy ? -1 : ix > iy ? 1 : Number(nx) - Number(ny);
  });
  const out: DeviceDifference[] = [];
  for (const key of keys) {
    const da = a.devices.get(key);
    const db = b.devices.get(key);
    const [id, inst] = key.split("\u0000");
    const instance = Number(inst);
    if (da === undefined) {
      out.push({ id, instance, change: "only-in-b", versionB: db!.version });
      continue;
    }
    if (db === undefined) {
      out.push({ id, instance, change: "only-in-a", versionA: da.version });
      continue;
    }
    const same = da.version === db.version && da.encoding === db.encoding &&
      toHex(da.state) === toHex(db.state) && toHex(da.description) === toHex(db.description);
    if (same) continue;
    let fields: FieldDifference[];
    try {
      if (da.encoding !== "cbor" || db.encoding !== "cbor") throw new Error("not CBOR");
      fields = diffStates(decodeDeviceState(da.state), decodeDeviceState(db.state), maxFields);
    } catch {
      fields = diffStates(da.state, db.state, maxFields);
    }
    out.push({
      id,
      instance,
      change: "changed",
      versionA: da.version,
      versionB: db.version,
      fields,
    });
  }
  return out;
}

/**
 * Compares two snapshots (paths; one of them may be `-` for standard input). Throws an
 * `LsnapError` subclass if either file is damaged or incomplete.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { diffSnapshots } from "./diff.ts";
 * import { SnapshotWriter } from "../format/writer.ts";
 * const dir = await Deno.makeTempDir();
 * const regions = [{ name: "ram", base: 0x8000_0000, size: 65536, pageSize: 4096 }];
 * for (const [name, fill] of [["a", 1], ["b", 2]] as const) {
 *   const w = await SnapshotWriter.createFile(`${dir}/${name}.lsnap`, { regions, creator: "doc", createdAt: 0 });
 *   await w.writePages(0, 3, new Uint8Array(4096).fill(fill));
 *   await w.close();
 * }
 * const d = await diffSnapshots(`${dir}/a.lsnap`, `${dir}/b.lsnap`, { pages: true });
 * assert(!d.equal && d.regions[0].changed === 1 && d.regions[0].pages![0].address === 0x8000_3000);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function diffSnapshots(
  a: string,
  b: string,
  options: DiffOptions = {},
): Promise<DiffResult> {
  if (a === "-" && b === "-") {
    throw new Error("Cannot diff: only one of A and B can be standard input");
  }
  const sizes = await Promise.all(
    [a, b].map((p) => p === "-" ? undefined : Deno.stat(p).then((s) => s.size, () => undefined)),
  );
  const total = sizes.every((s) => s !== undefined) ? sizes[0]! + sizes[1]! : undefined;
  const progress = createProgress({ label: "diff", total, enabled: options.progress });
  try {
    const ha = await hashSnapshot(a, progress);
    const hb = await hashSnapshot(b, progress);
    const names = [...ha.description.regions.map((r) => r.name)];
    for (const r of hb.description.regions) if (!names.includes(r.name)) names.push(r.name);
    const regions = names.map((n) => compareRegion(n, ha, hb, options));
    const devices = compareDevices(ha, hb, options.maxFields ?? 1000);
    return {
      equal: ha.contentDigest === hb.contentDigest,
      contentDigests: { a: ha.contentDigest, b: hb.contentDigest },
      regions,
      devices,
    };
  } finally {
    progress.done();
  }
}
