/**
 * Builders of a file's tables, shared by the .lsnap and QEMU readers: the record table, the
 * record-order segments (bounded in number), and a region's page runs.
 *
 * @module
 */
import { Column, PageKind, type RecordTable, type RegionMap, type SegmentTable } from "./data.ts";

/** Value of `encoding` for a record that holds no pages. */
export const NO_ENCODING = 255;

/** One record as the builders take it. */
export interface RecordRow {
  offset: number;
  bytes: number;
  kind: string;
  region?: number;
  encoding?: string;
  pages?: number;
  stride?: number;
}

/** Accumulates a {@linkcode RecordTable}. */
export class RecordColumns {
  private readonly kinds: string[] = [];
  private readonly encodings: string[] = [];
  readonly offset: Column<"f64"> = new Column("f64");
  readonly bytes: Column<"f64"> = new Column("f64");
  private readonly kind = new Column("u8");
  private readonly region = new Column("i32");
  private readonly encoding = new Column("u8");
  private readonly pages = new Column("u32");
  private readonly stride = new Column("u32");
  private readonly damaged = new Column("u8");
  readonly devices: RecordTable["devices"] = [];
  readonly spans: RecordTable["spans"] = [];

  /** Records pushed. */
  get length(): number {
    return this.offset.length;
  }

  private code(list: string[], name: string): number {
    let i = list.indexOf(name);
    if (i < 0) {
      i = list.length;
      list.push(name);
    }
    return i;
  }

  /** Appends a record; returns its index. */
  push(r: RecordRow): number {
    this.offset.push(r.offset);
    this.bytes.push(r.bytes);
    this.kind.push(this.code(this.kinds, r.kind));
    this.region.push(r.region ?? -1);
    this.encoding.push(
      r.encoding === undefined ? NO_ENCODING : this.code(this.encodings, r.encoding),
    );
    this.pages.push(r.pages ?? 0);
    this.stride.push(r.stride ?? 0);
    this.damaged.push(0);
    return this.length - 1;
  }

  /** Adds pages to the record at `i` (a batch that grows). */
  addPages(i: number, n: number): void {
    this.pages.set(i, this.pages.get(i) + n);
  }

  /** Marks the record that contains byte `offset` as damaged; false when none does. */
  markDamaged(offset: number): boolean {
    const offs = this.offset.values();
    let lo = 0;
    let hi = offs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (offs[mid] <= offset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0 || offset >= offs[found] + Math.max(1, this.bytes.get(found))) return false;
    this.damaged.set(found, 1);
    return true;
  }

  /** The table, packed. */
  async pack(): Promise<RecordTable> {
    return {
      kinds: this.kinds,
      encodings: this.encodings,
      offset: await this.offset.pack(),
      bytes: await this.bytes.pack(),
      kind: await this.kind.pack(),
      region: await this.region.pack(),
      encoding: await this.encoding.pack(),
      pages: await this.pages.pack(),
      stride: await this.stride.pack(),
      damaged: await this.damaged.pack(),
      devices: this.devices,
      spans: this.spans,
    };
  }
}

/** Default most segments a file's record-order chart keeps. */
export const MAX_SEGMENTS = 131_072;

/**
 * Collects the record-order segments: each record's pages as sorted runs. Past `max` segments,
 * runs of a record closer than a gap are merged, the gap doubling until they fit.
 */
export class SegmentCollector {
  private record: Column<"u32"> = new Column("u32");
  private region: Column<"u16"> = new Column("u16");
  private first: Column<"u32"> = new Column("u32");
  private count: Column<"u32"> = new Column("u32");
  private gap = 1;
  /** One in `stride` single-page runs is kept; `singles` counts those completed so far. */
  private stride = 1;
  private singles = 0;
  /** Segments below this index are complete (a later push cannot extend them). */
  private settled = 0;

  constructor(private readonly max = MAX_SEGMENTS) {}

  /** Adds the pages of one record (any order, repeats allowed). */
  addPages(record: number, region: number, pages: Uint32Array): void {
    const sorted = pages.length > 1 ? pages.slice().sort() : pages;
    let start = sorted[0];
    let end = start + 1;
    for (let i = 1; i < sorted.length; i++) {
      const p = sorted[i];
      if (p < end + this.gap) end = Math.max(end, p + 1);
      else {
        this.push(record, region, start, end - start);
        start = p;
        end = p + 1;
      }
    }
    this.push(record, region, start, end - start);
  }

  /** Adds a run of `count` pages from `first`, extending the previous segment when it is the
   * same record's and adjacent. */
  addRun(record: number, region: number, first: number, count: number): void {
    const n = this.record.length;
    if (
      n > 0 && this.record.get(n - 1) === record && this.region.get(n - 1) === region &&
      this.first.get(n - 1) + this.count.get(n - 1) === first
    ) {
      this.count.set(n - 1, this.count.get(n - 1) + count);
      return;
    }
    this.push(record, region, first, count);
  }

  private push(record: number, region: number, first: number, count: number): void {
    this.settle();
    this.record.push(record);
    this.region.push(region);
    this.first.push(first);
    this.count.push(count);
    if (this.record.length > 2 * this.max) this.reduce(2 * this.max);
  }

  /**
   * The last segment is complete once another follows: a single page is kept only if it is one
   * in `stride` (an even sample: the chart keeps the pattern of scattered pages, and every run
   * of several pages, such as a sweep's, stays whole).
   */
  private settle(): void {
    const n = this.record.length;
    if (n === 0 || this.settled === n) return;
    this.settled = n;
    if (this.count.get(n - 1) !== 1) return;
    if (this.singles++ % this.stride === 0) return;
    this.record.length--;
    this.region.length--;
    this.first.length--;
    this.count.length--;
    this.settled = n - 1;
  }

  /** Brings the segments to at most `limit`: fewer single pages first, then merged runs. */
  private reduce(limit: number): void {
    while (this.record.length > limit && this.thinSingles()) { /* again */ }
    while (this.record.length > limit) this.coarsen();
  }

  /** Drops every other kept single-page segment and doubles the stride; false if none is kept. */
  private thinSingles(): boolean {
    const n = this.settled;
    let kept = 0;
    let w = 0;
    let any = false;
    for (let i = 0; i < this.record.length; i++) {
      const single = i < n && this.count.get(i) === 1;
      if (single) {
        any = true;
        if (kept++ % 2 === 0) continue;
      }
      this.record.set(w, this.record.get(i));
      this.region.set(w, this.region.get(i));
      this.first.set(w, this.first.get(i));
      this.count.set(w, this.count.get(i));
      w++;
    }
    if (!any) return false;
    const dropped = this.record.length - w;
    this.record.length = w;
    this.region.length = w;
    this.first.length = w;
    this.count.length = w;
    this.settled = n - dropped;
    this.stride *= 2;
    return true;
  }

  /** Doubles the gap and merges each record's segments again. */
  private coarsen(): void {
    this.gap *= 2;
    const rec = this.record.values();
    const reg = this.region.values();
    const fst = this.first.values();
    const cnt = this.count.values();
    const out = {
      record: new Column("u32"),
      region: new Column("u16"),
      first: new Column("u32"),
      count: new Column("u32"),
    };
    // A record's segments are contiguous; sort each record's by first page, then merge.
    let i = 0;
    while (i < rec.length) {
      let j = i;
      while (j < rec.length && rec[j] === rec[i]) j++;
      const order = Array.from({ length: j - i }, (_, k) => i + k)
        .sort((x, y) => reg[x] - reg[y] || fst[x] - fst[y]);
      let cur = order[0];
      let start = fst[cur];
      let end = start + cnt[cur];
      for (let k = 1; k < order.length; k++) {
        const s = order[k];
        if (reg[s] === reg[cur] && fst[s] < end + this.gap) {
          end = Math.max(end, fst[s] + cnt[s]);
          continue;
        }
        out.record.push(rec[cur]);
        out.region.push(reg[cur]);
        out.first.push(start);
        out.count.push(end - start);
        cur = s;
        start = fst[s];
        end = start + cnt[s];
      }
      out.record.push(rec[cur]);
      out.region.push(reg[cur]);
      out.first.push(start);
      out.count.push(end - start);
      i = j;
    }
    this.record = out.record;
    this.region = out.region;
    this.first = out.first;
    this.count = out.count;
    this.settled = this.record.length;
  }

  /** Remaps record indexes (after records were reordered). */
  remap(map: Int32Array): void {
    const rec = this.record.values();
    for (let i = 0; i < rec.length; i++) rec[i] = map[rec[i]];
  }

  /** The segments, coarsened to at most `max`, packed. */
  async pack(): Promise<SegmentTable> {
    this.settle();
    this.reduce(this.max);
    return {
      gap: this.gap,
      sampled: this.stride,
      record: await this.record.pack(),
      region: await this.region.pack(),
      first: await this.first.pack(),
      count: await this.count.pack(),
    };
  }
}

/** Accumulates one region's page runs in page order. */
export class RunBuilder {
  private readonly count = new Column("u32");
  private readonly kind = new Column("u8");
  private readonly copies = new Column("u16");
  private readonly record = new Column("i32");
  private next = 0;

  constructor(private readonly pages: number) {}

  /** Adds `n` pages from page `first` (at or after the previous run's end; a gap is absent). */
  add(first: number, n: number, kind: number, copies: number, record: number): void {
    if (first > this.next) this.append(first - this.next, PageKind.ABSENT, 0, -1);
    this.append(n, kind, Math.min(copies, 0xffff), record);
    this.next = first + n;
  }

  private append(n: number, kind: number, copies: number, record: number): void {
    const last = this.count.length - 1;
    if (
      last >= 0 && this.kind.get(last) === kind && this.copies.get(last) === copies &&
      this.record.get(last) === record
    ) {
      this.count.set(last, this.count.get(last) + n);
      return;
    }
    this.count.push(n);
    this.kind.push(kind);
    this.copies.push(copies);
    this.record.push(record);
  }

  /** The runs up to the region's last page, packed. */
  async pack(): Promise<RegionMap["runs"]> {
    if (this.pages > this.next) this.append(this.pages - this.next, PageKind.ABSENT, 0, -1);
    return {
      count: await this.count.pack(),
      kind: await this.kind.pack(),
      copies: await this.copies.pack(),
      record: await this.record.pack(),
    };
  }
}
