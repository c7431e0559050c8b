/**
 * What the parts of the report page share: the decoded data's types, making elements, number
 * formats, unpacking the packed columns, paged tables and colors.
 *
 * Part of the report page's script: see `page_script.ts` for how these functions reach the page
 * (their source is written into it; they may use nothing at run time but each other, the DOM and
 * uPlot).
 *
 * @module
 */
import type { FileReport, PackedArray } from "./data.ts";

export type Cell = string | number | Node;

export interface DecodedRegion {
  name: string;
  base: number;
  size: number;
  pageSize: number;
  pages: number;
  count: Uint32Array;
  kind: Uint8Array;
  copies: Uint16Array;
  record: Int32Array;
  /** First page of each run; `starts[n]` is the region's page count. */
  starts: Float64Array;
}

export interface DecodedRecords {
  offset: Float64Array;
  bytes: Float64Array;
  kind: Uint8Array;
  region: Int32Array;
  encoding: Uint8Array;
  pages: Uint32Array;
  stride: Uint32Array;
  damaged: Uint8Array;
}

export interface DecodedSegments {
  record: Uint32Array;
  region: Uint16Array;
  first: Uint32Array;
  count: Uint32Array;
}

export interface DecodedFile {
  regions: DecodedRegion[];
  records: DecodedRecords;
  segments: DecodedSegments;
  /** Each record's lowest page (from the segments), -1 when it holds none. */
  firstPage: Float64Array;
}

/** What the page's parts share: the content width and the maps to draw once laid out. */
export interface PageContext {
  /** Width of the content, CSS pixels. */
  width: number;
  /** Draws each map at a width; called once the page is laid out, and on resize. */
  draws: ((width: number) => void)[];
}

/** What the memory map widget draws: runs of pages, a color per run, and words for a hover. */
export interface MapSource {
  pages: number;
  base: number;
  pageSize: number;
  count: Uint32Array;
  starts: Float64Array;
  /** Three bytes per run. */
  colors: Uint8Array;
  /**
   * How much each run's pages count when a cell blends several pages: more for what a reader
   * looks for (data, copies, changes), so one such page in a cell of absent pages still shows.
   */
  weights: Uint8Array;
  describe(page: number, run: number): string;
  legend: [string, string][];
}

/** Makes an element: `h("td", { class: "n", "data-key": "x" }, "text", child)`. */
export function h(
  tag: string,
  attrs: Record<string, string> | null,
  ...children: Cell[]
): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, v);
  for (const c of children) e.append(typeof c === "number" ? fmtInt(c) : c);
  return e;
}

export function fmtInt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export function fmtHex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

export function fmtRatio(x: number | null): string {
  return x === null || !Number.isFinite(x) ? "n/a" : `${x.toFixed(2)}:1`;
}

export function fmtMs(x: number): string {
  return x < 10 ? `${x.toFixed(2)} ms` : `${x.toFixed(0)} ms`;
}

/** A table cell whose value tests read back (`data-key`, and the raw number in `data-value`). */
export function keyed(key: string, value: number | string, text?: string): HTMLElement {
  const shown = text ?? (typeof value === "number" ? fmtInt(value) : value);
  return h("td", { "data-key": key, "data-value": String(value), class: "n" }, shown);
}

export async function unpack(p: PackedArray): Promise<ArrayBufferView & ArrayLike<number>> {
  const native = (Uint8Array as unknown as {
    fromBase64?: (s: string) => Uint8Array<ArrayBuffer>;
  }).fromBase64;
  let raw: Uint8Array<ArrayBuffer>;
  if (native) raw = native(p.gzipBase64);
  else {
    const text = atob(p.gzipBase64);
    raw = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) raw[i] = text.charCodeAt(i);
  }
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("gzip"));
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  const types = {
    u8: Uint8Array,
    u16: Uint16Array,
    u32: Uint32Array,
    i32: Int32Array,
    f64: Float64Array,
  };
  const ctor = types[p.type];
  if (bytes.length !== p.length * ctor.BYTES_PER_ELEMENT) {
    throw new Error(`a column holds ${bytes.length} bytes for ${p.length} ${p.type} values`);
  }
  return new ctor(bytes.buffer);
}

export async function decodeFile(f: FileReport): Promise<DecodedFile> {
  // Every column at once: the browser inflates them concurrently.
  const t = f.records;
  const columns = await Promise.all([
    ...f.regions.flatMap((r) => [r.runs.count, r.runs.kind, r.runs.copies, r.runs.record]),
    f.segments.record,
    f.segments.region,
    f.segments.first,
    f.segments.count,
    t.offset,
    t.bytes,
    t.kind,
    t.region,
    t.encoding,
    t.pages,
    t.stride,
    t.damaged,
  ].map(unpack));
  let c = 0;
  const next = () => columns[c++];
  const regions: DecodedRegion[] = f.regions.map((r) => {
    const count = next() as Uint32Array;
    const starts = new Float64Array(count.length + 1);
    for (let i = 0; i < count.length; i++) starts[i + 1] = starts[i] + count[i];
    return {
      name: r.name,
      base: r.base,
      size: r.size,
      pageSize: r.pageSize,
      pages: r.pages,
      count,
      kind: next() as Uint8Array,
      copies: next() as Uint16Array,
      record: next() as Int32Array,
      starts,
    };
  });
  const segments = {
    record: next() as Uint32Array,
    region: next() as Uint16Array,
    first: next() as Uint32Array,
    count: next() as Uint32Array,
  };
  const records = {
    offset: next() as Float64Array,
    bytes: next() as Float64Array,
    kind: next() as Uint8Array,
    region: next() as Int32Array,
    encoding: next() as Uint8Array,
    pages: next() as Uint32Array,
    stride: next() as Uint32Array,
    damaged: next() as Uint8Array,
  };
  const firstPage = new Float64Array(t.offset.length).fill(-1);
  for (let s = 0; s < segments.record.length; s++) {
    const r = segments.record[s];
    if (firstPage[r] < 0 || segments.first[s] < firstPage[r]) firstPage[r] = segments.first[s];
  }
  return { regions, firstPage, segments, records };
}

/** Index of the run holding `page` (binary search over `starts`). */
export function runAt(starts: Float64Array, page: number): number {
  let lo = 0;
  let hi = starts.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= page) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Blends two colors `[r, g, b]` by `t` in [0, 1] into `out` at `at`. */
export function mix(a: number[], b: number[], t: number, out: Uint8Array, at: number): void {
  for (let c = 0; c < 3; c++) out[at + c] = Math.round(a[c] + (b[c] - a[c]) * t);
}

export function cssColor(c: number[]): string {
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** A table of `rows` rows, `pageRows` at a time, each made by `row(i)` only when shown. */
export function pagedTable(
  headers: string[],
  rows: number,
  row: (i: number) => Cell[],
  options: { pageRows?: number; caption?: string; className?: string; startAt?: number } = {},
): HTMLElement {
  const pageRows = options.pageRows ?? 50;
  const box = h("div", { class: "paged" });
  const table = h("table", { class: `data ${options.className ?? ""}` });
  if (options.caption) table.append(h("caption", null, options.caption));
  table.append(h("thead", null, h("tr", null, ...headers.map((x) => h("th", null, x)))));
  const body = h("tbody", null);
  table.append(body);
  const nav = h("div", { class: "nav" });
  const prev = h("button", { type: "button" }, "◀");
  const next = h("button", { type: "button" }, "▶");
  const where = h("span", null);
  nav.append(prev, next, where);
  // Open at the page that holds row `startAt` (a damaged record, say).
  let start = Math.floor(Math.max(0, Math.min(rows - 1, options.startAt ?? 0)) / pageRows) *
    pageRows;
  const show = () => {
    body.replaceChildren();
    const end = Math.min(rows, start + pageRows);
    for (let i = start; i < end; i++) {
      body.append(
        h(
          "tr",
          null,
          ...row(i).map((c) => h("td", { class: typeof c === "number" ? "n" : "" }, c)),
        ),
      );
    }
    where.textContent = rows === 0
      ? "no rows"
      : `rows ${fmtInt(start + 1)}–${fmtInt(end)} of ${fmtInt(rows)}`;
  };
  prev.addEventListener("click", () => {
    start = Math.max(0, start - pageRows);
    show();
  });
  next.addEventListener("click", () => {
    if (start + pageRows < rows) start += pageRows;
    show();
  });
  show();
  box.append(table);
  if (rows > pageRows) box.append(nav);
  return box;
}
