/**
 * The report page's script, run by the browser that opens the report. `html.ts` writes the
 * source of the functions listed in {@linkcode PAGE_FUNCTIONS} into the page as Deno runs them
 * (TypeScript with the types removed), so they are type-checked and linted here, and must use
 * nothing at run time but each other, the DOM and uPlot (bundled into the page): no import and
 * no module-level value (imports below are types only). Its DOM types come from deno.json's
 * `compilerOptions.lib`.
 *
 * The page reads the data set from `#livesnap-data`, unpacks its columns, draws each file's
 * memory maps (canvas, pages aggregated into cells: never one element per page), its record order
 * and the timelines (uPlot), with every number behind a chart in a table beside it (long tables
 * paged), then sets `data-ready="1"` on `<html>` and the performance mark
 * `livesnap-interactive`. Values the tests read carry `data-key` attributes.
 *
 * @module
 */
import type uPlotClass from "uplot";
import type { DiffReport, FileReport, PackedArray, ReportData, TimelineReport } from "./data.ts";
import type {
  SnapshotTimeline,
  TimelinePass,
  TimelinePause,
} from "../../emulator/snapshot/metrics.ts";

declare const uPlot: typeof uPlotClass;

type Cell = string | number | Node;

interface DecodedRegion {
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

interface DecodedRecords {
  offset: Float64Array;
  bytes: Float64Array;
  kind: Uint8Array;
  region: Int32Array;
  encoding: Uint8Array;
  pages: Uint32Array;
  stride: Uint32Array;
  damaged: Uint8Array;
}

interface DecodedSegments {
  record: Uint32Array;
  region: Uint16Array;
  first: Uint32Array;
  count: Uint32Array;
}

interface DecodedFile {
  regions: DecodedRegion[];
  records: DecodedRecords;
  segments: DecodedSegments;
  /** Each record's lowest page (from the segments), -1 when it holds none. */
  firstPage: Float64Array;
}

/** What the page's parts share: the content width and the maps to draw once laid out. */
interface PageContext {
  /** Width of the content, CSS pixels. */
  width: number;
  /** Draws each map at a width; called once the page is laid out, and on resize. */
  draws: ((width: number) => void)[];
}

/** What the memory map widget draws: runs of pages, a color per run, and words for a hover. */
interface MapSource {
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

/** Entry point: draws the whole report. */
async function reportMain(): Promise<void> {
  performance.mark("livesnap-start");
  const root = document.getElementById("report")!;
  try {
    const source = document.getElementById("livesnap-data")!.textContent!;
    const data = JSON.parse(source) as ReportData;
    const decoded: DecodedFile[] = [];
    for (const f of data.files) decoded.push(await decodeFile(f));
    const ctx: PageContext = { width: Math.max(400, root.clientWidth || 900), draws: [] };
    root.append(renderSummary(data));
    data.files.forEach((f, i) => root.append(renderFile(ctx, f, decoded[i], i)));
    for (const [i, d] of data.diffs.entries()) root.append(await renderDiff(ctx, data, d, i));
    if (data.metricsPath !== null) root.append(renderTimelines(ctx, data));
    // Draw the maps in one frame, once the page is laid out.
    await new Promise((r) => requestAnimationFrame(r));
    for (const draw of ctx.draws) draw(ctx.width);
    let resize: ReturnType<typeof setTimeout> | undefined;
    globalThis.addEventListener("resize", () => {
      clearTimeout(resize);
      resize = setTimeout(() => {
        const width = Math.max(400, root.clientWidth || 900);
        for (const draw of ctx.draws) draw(width);
      }, 150);
    });
    await new Promise((r) => requestAnimationFrame(r));
    document.documentElement.dataset.ready = "1";
    performance.mark("livesnap-interactive");
  } catch (e) {
    root.prepend(h("div", { class: "banner bad" }, `The report could not be drawn: ${e}`));
    console.error(e);
    document.documentElement.dataset.ready = "error";
  }
}

/** Makes an element: `h("td", { class: "n", "data-key": "x" }, "text", child)`. */
function h(tag: string, attrs: Record<string, string> | null, ...children: Cell[]): HTMLElement {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, v);
  for (const c of children) e.append(typeof c === "number" ? fmtInt(c) : c);
  return e;
}

function fmtInt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

function fmtHex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

function fmtRatio(x: number | null): string {
  return x === null || !Number.isFinite(x) ? "n/a" : `${x.toFixed(2)}:1`;
}

function fmtMs(x: number): string {
  return x < 10 ? `${x.toFixed(2)} ms` : `${x.toFixed(0)} ms`;
}

/** A table cell whose value tests read back (`data-key`, and the raw number in `data-value`). */
function keyed(key: string, value: number | string, text?: string): HTMLElement {
  const shown = text ?? (typeof value === "number" ? fmtInt(value) : value);
  return h("td", { "data-key": key, "data-value": String(value), class: "n" }, shown);
}

async function unpack(p: PackedArray): Promise<ArrayBufferView & ArrayLike<number>> {
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

async function decodeFile(f: FileReport): Promise<DecodedFile> {
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
function runAt(starts: Float64Array, page: number): number {
  let lo = 0;
  let hi = starts.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= page) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function renderSummary(data: ReportData): HTMLElement {
  const box = h("section", { id: "summary" });
  const bad = data.files.filter((f) => !f.intact);
  if (bad.length > 0) {
    const list = h("ul", null);
    for (const f of bad) {
      const first = f.problems[0];
      list.append(
        h(
          "li",
          null,
          h("b", null, f.path),
          `: ${f.problems.length}${f.problemsTruncated ? "+" : ""} problem(s)`,
          first ? ` — ${first.message}` : "",
        ),
      );
    }
    box.append(
      h(
        "div",
        { class: "banner bad", "data-key": "damaged", "data-value": String(bad.length) },
        h("b", null, `Damaged input: ${bad.length} of ${data.files.length} file(s). `),
        "Their maps and tables show the records read before the first problem; damaged records are marked in red.",
        list,
      ),
    );
  }
  const t = h("table", { class: "kv" });
  const row = (k: string, v: Cell) => t.append(h("tr", null, h("th", null, k), h("td", null, v)));
  row(
    "files",
    data.files.map((f) => `${f.path} (${f.kind === "qemu" ? "QEMU stream" : ".lsnap"})`).join(", "),
  );
  if (data.metricsPath !== null) row("metrics", data.metricsPath);
  row("made by", `${data.generator}, ${data.createdAt}`);
  box.append(t);
  return box;
}

function renderFile(ctx: PageContext, f: FileReport, df: DecodedFile, i: number): HTMLElement {
  const sec = h("section", { class: "file", id: `file-${i}` });
  sec.append(
    h(
      "h2",
      null,
      f.path,
      " ",
      h("span", { class: f.intact ? "tag ok" : "tag bad" }, f.intact ? "intact" : "damaged"),
    ),
  );
  sec.append(f.kind === "qemu" ? qemuHeader(f, i) : lsnapHeader(f, i));
  if (f.problems.length > 0) sec.append(problemsBlock(f, i));
  sec.append(h("h3", null, "Memory"));
  const sums = { present: 0, zeroLast: 0, extraCopies: 0 };
  df.regions.forEach((r, ri) => sec.append(pageMap(ctx, f, df, r, ri, i, sums)));
  {
    const t = h("table", { class: "counts" });
    t.append(
      h(
        "tr",
        null,
        ...["file: pages present", "last copy zero", "extra copies"].map((x) => h("th", null, x)),
      ),
      h(
        "tr",
        null,
        keyed(`f${i}.pages.present`, sums.present),
        keyed(`f${i}.pages.zero`, sums.zeroLast),
        keyed(`f${i}.pages.duplicates`, sums.extraCopies),
      ),
    );
    sec.append(t);
  }
  sec.append(h("h3", null, "Record order"));
  sec.append(recordOrder(ctx, f, df, i));
  return sec;
}

function lsnapHeader(f: FileReport, i: number): HTMLElement {
  const r = f.inspect as Exclude<FileReport["inspect"], null> & { format?: undefined };
  const t = h("table", { class: "kv" });
  const k = `f${i}.inspect`;
  const row = (name: string, ...cells: HTMLElement[]) =>
    t.append(h("tr", null, h("th", null, name), ...cells));
  if (!("formatVersion" in r)) return t;
  row("format", keyed(`${k}.formatVersion`, r.formatVersion ?? "-"));
  row("complete", keyed(`${k}.complete`, String(r.complete)));
  row("creator", keyed(`${k}.creator`, r.creator ?? "-"));
  row("created", keyed(`${k}.createdAt`, r.createdAt ?? "-"));
  row("bytes", keyed(`${k}.bytes`, r.bytes, `${fmtInt(r.bytes)} (${fmtBytes(r.bytes)})`));
  row("records", keyed(`${k}.records`, r.records));
  row(
    "pages",
    keyed(`${k}.pages.present`, r.pages.present, `${fmtInt(r.pages.present)} present`),
    keyed(`${k}.pages.zero`, r.pages.zero, `${fmtInt(r.pages.zero)} zero`),
    keyed(`${k}.pages.duplicates`, r.pages.duplicates, `${fmtInt(r.pages.duplicates)} duplicates`),
  );
  row(
    "page records",
    keyed(`${k}.pages.records`, r.pages.records),
    h(
      "td",
      null,
      `zstd ${r.pages.encodings.zstd}, raw ${r.pages.encodings.raw}, zero ${r.pages.encodings.zero}`,
    ),
  );
  row(
    "compression",
    keyed(
      `${k}.compression.pageData`,
      r.compression.pageData ?? "n/a",
      `${fmtRatio(r.compression.pageData)} on page data`,
    ),
    keyed(
      `${k}.compression.file`,
      r.compression.file ?? "n/a",
      `${fmtRatio(r.compression.file)} against a flat dump`,
    ),
  );
  for (const reg of r.regions) {
    row(
      `region ${reg.name}`,
      h(
        "td",
        null,
        `${fmtHex(reg.base)}..${fmtHex(reg.base + reg.size - 1)}, ${fmtBytes(reg.size)} (${
          fmtInt(reg.size / reg.pageSize)
        } pages of ${fmtBytes(reg.pageSize)})`,
      ),
    );
  }
  row(
    `devices (${r.devices.length})`,
    h(
      "td",
      { colspan: "3" },
      r.devices.map((d) => `${d.id}:${d.instance} v${d.version} ${d.encoding} ${fmtBytes(d.bytes)}`)
        .join(" · ") || "none",
    ),
  );
  row("index", keyed(`${k}.indexed`, String(r.indexed)));
  row("content digest", keyed(`${k}.digests.content`, r.digests.content ?? "-"));
  row("file digest", keyed(`${k}.digests.file`, r.digests.file ?? "-"));
  if (r.error !== null) row("error", h("td", { class: "bad" }, r.error.message));
  return t;
}

function qemuHeader(f: FileReport, i: number): HTMLElement {
  const t = h("table", { class: "kv" });
  const k = `f${i}.inspect`;
  const row = (name: string, ...cells: HTMLElement[]) =>
    t.append(h("tr", null, h("th", null, name), ...cells));
  const s = f.inspect;
  if (s === null || !("format" in s)) {
    row("QEMU stream", h("td", { class: "bad" }, "unreadable to its end: see the problems below"));
    return t;
  }
  row("format", keyed(`${k}.version`, s.version, `QEMU migration stream, version ${s.version}`));
  row("bytes", keyed(`${k}.bytes`, s.bytes, `${fmtInt(s.bytes)} (${fmtBytes(s.bytes)})`));
  row("machine", keyed(`${k}.machine`, s.machine));
  row("page size", keyed(`${k}.pageSize`, s.pageSize));
  if (s.capabilities.length > 0) row("capabilities", h("td", null, s.capabilities.join(", ")));
  row(
    "sections",
    h("td", null, Object.entries(s.sectionCounts).map(([x, n]) => `${n} ${x}`).join(", ")),
  );
  row("RAM page records", keyed(`${k}.ram.pageRecords`, s.ram.pageRecords));
  for (const [bi, b] of s.ram.blocks.entries()) {
    const kb = `${k}.ram.blocks.${bi}`;
    row(
      `block ${b.name}`,
      h("td", null, `${fmtBytes(b.size)}, ${fmtInt(b.pageCount)} pages`),
      keyed(`${kb}.normalRecords`, b.normalRecords, `${fmtInt(b.normalRecords)} whole`),
      keyed(`${kb}.zeroRecords`, b.zeroRecords, `${fmtInt(b.zeroRecords)} zero`),
      keyed(`${kb}.resentRecords`, b.resentRecords, `${fmtInt(b.resentRecords)} resent`),
      keyed(`${kb}.unsentPages`, b.unsentPages, `${fmtInt(b.unsentPages)} never sent`),
    );
  }
  for (const d of s.devices) {
    row(
      `device ${d.idstr}:${d.instanceId}`,
      h(
        "td",
        null,
        `section ${d.sectionId} at byte ${fmtInt(d.offset)}, version ${d.versionId}, ${
          fmtBytes(d.size)
        }${d.vmsdName ? `, ${d.vmsdName}` : ""}${d.decoded ? "" : " (not decoded)"}`,
      ),
    );
  }
  row(
    "JSON description",
    h(
      "td",
      null,
      s.vmdesc === null ? "none" : `${fmtBytes(s.vmdesc.bytes)} at byte ${fmtInt(s.vmdesc.offset)}`,
    ),
  );
  return t;
}

function problemsBlock(f: FileReport, i: number): HTMLElement {
  const box = h("div", { class: "problems" });
  box.append(
    h(
      "h3",
      { "data-key": `f${i}.problems`, "data-value": String(f.problems.length) },
      `Problems: ${f.problems.length}${f.problemsTruncated ? " (more may follow)" : ""}`,
    ),
  );
  box.append(
    pagedTable(
      ["kind", "record", "byte offset", "message"],
      f.problems.length,
      (k) => {
        const p = f.problems[k];
        return [p.kind, p.recordIndex < 0 ? "-" : p.recordIndex, p.offset, p.message];
      },
      { className: "bad-rows" },
    ),
  );
  return box;
}

/** Blends two colors `[r, g, b]` by `t` in [0, 1] into `out` at `at`. */
function mix(a: number[], b: number[], t: number, out: Uint8Array, at: number): void {
  for (let c = 0; c < 3; c++) out[at + c] = Math.round(a[c] + (b[c] - a[c]) * t);
}

function cssColor(c: number[]): string {
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** The palette of page maps. */
function pagePalette(): Record<string, number[]> {
  return {
    absent: [238, 240, 243],
    zero: [196, 202, 211],
    dataDense: [24, 64, 140],
    dataLight: [150, 192, 240],
    repeatedFew: [244, 170, 60],
    repeatedMany: [192, 40, 30],
    damaged: [220, 0, 140],
  };
}

function recordRatio(df: DecodedFile, rec: number, pageSize: number): number {
  const bytes = df.records.bytes[rec];
  return bytes > 0 ? (df.records.pages[rec] * pageSize) / bytes : Infinity;
}

function pageMap(
  ctx: PageContext,
  f: FileReport,
  df: DecodedFile,
  r: DecodedRegion,
  ri: number,
  i: number,
  sums: { present: number; zeroLast: number; extraCopies: number },
): HTMLElement {
  const pal = pagePalette();
  const n = r.count.length;
  const colors = new Uint8Array(n * 3);
  const weights = new Uint8Array(n).fill(1);
  const totals = { absent: 0, zero: 0, data: 0, repeated: 0, extraCopies: 0, zeroLast: 0 };
  const byCopies = new Map<number, number>();
  // The shade of data pages by their record's compression, once per record.
  const shade = new Uint8Array(df.records.offset.length * 3);
  for (let rec = 0; rec < df.records.offset.length; rec++) {
    const ratio = recordRatio(df, rec, r.pageSize);
    const t = Math.min(1, Math.max(0, Math.log2(Math.max(1, ratio)) / 4));
    mix(pal.dataDense, pal.dataLight, t, shade, rec * 3);
  }
  for (let k = 0; k < n; k++) {
    const pages = r.count[k];
    const copies = r.copies[k];
    const rec = r.record[k];
    if (r.kind[k] === 0) {
      totals.absent += pages;
      mix(pal.absent, pal.absent, 0, colors, k * 3);
      continue;
    }
    byCopies.set(copies, (byCopies.get(copies) ?? 0) + pages);
    if (r.kind[k] === 1) totals.zeroLast += pages;
    if (r.kind[k] === 2 || copies > 1) weights[k] = 16;
    totals.extraCopies += pages * (copies - 1);
    if (copies > 1) {
      totals.repeated += pages;
      mix(pal.repeatedFew, pal.repeatedMany, Math.min(1, (copies - 2) / 6), colors, k * 3);
    } else if (r.kind[k] === 1) {
      totals.zero += pages;
      mix(pal.zero, pal.zero, 0, colors, k * 3);
    } else {
      totals.data += pages;
      colors.set(shade.subarray(rec * 3, rec * 3 + 3), k * 3);
    }
    if (rec >= 0 && df.records.damaged[rec]) mix(pal.damaged, pal.damaged, 0, colors, k * 3);
  }
  const kinds = f.records.kinds;
  const encodings = f.records.encodings;
  const describe = (page: number, run: number): string => {
    const addr = r.base + page * r.pageSize;
    const lines = [`${r.name} page ${fmtInt(page)} at ${fmtHex(addr)}`];
    const kind = r.kind[run];
    if (kind === 0) return `${lines[0]}\nabsent (reads as zero)`;
    const rec = r.record[run];
    lines.push(
      `${kind === 1 ? "zero" : "data"}, ${r.copies[run]} cop${
        r.copies[run] === 1 ? "y" : "ies"
      } in the file`,
    );
    const stride = df.records.stride[rec];
    let at = df.records.offset[rec];
    if (stride > 0) {
      // A QEMU batch: this page's own record. Its pages are consecutive from the batch's first.
      at += (page - df.firstPage[rec]) * stride;
      lines.push(`last copy: page record at byte ${fmtInt(at)} (batch #${rec})`);
    } else {
      lines.push(
        `last copy: record #${rec} at byte ${fmtInt(at)}, ${kinds[df.records.kind[rec]]}, ${
          encodings[df.records.encoding[rec]] ?? "-"
        }, ${fmtRatio(recordRatio(df, rec, r.pageSize))}`,
      );
    }
    if (df.records.damaged[rec]) lines.push("DAMAGED record");
    return lines.join("\n");
  };
  const box = h("div", { class: "region" });
  box.append(
    h(
      "h4",
      null,
      `${r.name}: ${fmtHex(r.base)}..${fmtHex(r.base + r.size - 1)}, ${fmtBytes(r.size)}, ${
        fmtInt(r.pages)
      } pages`,
    ),
  );
  const legend: [string, string][] = [
    ["absent", cssColor(pal.absent)],
    ["zero", cssColor(pal.zero)],
    ["data, incompressible", cssColor(pal.dataDense)],
    ["data, 16:1 or better", cssColor(pal.dataLight)],
    ["repeated (2 copies)", cssColor(pal.repeatedFew)],
    ["repeated (8+ copies)", cssColor(pal.repeatedMany)],
  ];
  if (f.problems.length > 0) legend.push(["in a damaged record", cssColor(pal.damaged)]);
  box.append(
    mapWidget(ctx, {
      pages: r.pages,
      base: r.base,
      pageSize: r.pageSize,
      count: r.count,
      starts: r.starts,
      colors,
      weights,
      describe,
      legend,
    }),
  );
  const k = `f${i}.r${ri}`;
  const sum = h("table", { class: "counts" });
  sum.append(
    h(
      "tr",
      null,
      ...["absent", "zero", "data", "repeated", "present", "extra copies"].map((x) =>
        h("th", null, x)
      ),
    ),
    h(
      "tr",
      null,
      keyed(`${k}.absent`, totals.absent),
      keyed(`${k}.zero`, totals.zero),
      keyed(`${k}.data`, totals.data),
      keyed(`${k}.repeated`, totals.repeated),
      keyed(`${k}.present`, r.pages - totals.absent),
      keyed(`${k}.extraCopies`, totals.extraCopies),
    ),
  );
  box.append(sum);
  sums.present += r.pages - totals.absent;
  sums.zeroLast += totals.zeroLast;
  sums.extraCopies += totals.extraCopies;
  const copiesRows = [...byCopies.entries()].sort((a, b) => a[0] - b[0]);
  if (copiesRows.length > 1 || (copiesRows[0] && copiesRows[0][0] > 1)) {
    box.append(
      pagedTable(["copies in the file", "pages"], copiesRows.length, (x) => copiesRows[x], {
        caption: "Pages by number of copies",
      }),
    );
  }
  box.append(
    h(
      "details",
      null,
      h("summary", null, `Page runs (${fmtInt(n)}): the numbers behind the map`),
      pagedTable(
        [
          "first page",
          "pages",
          "addresses",
          "state",
          "copies",
          "last record",
          "record offset",
          "compression",
        ],
        n,
        (x) => {
          const first = r.starts[x];
          const cnt = r.count[x];
          const rec = r.record[x];
          const state = ["absent", "zero", "data"][r.kind[x]];
          return [
            first,
            cnt,
            `${fmtHex(r.base + first * r.pageSize)}..${
              fmtHex(r.base + (first + cnt) * r.pageSize - 1)
            }`,
            state,
            r.copies[x],
            rec < 0 ? "-" : `#${rec}`,
            rec < 0 ? "-" : df.records.offset[rec],
            rec < 0 || r.kind[x] === 0 ? "-" : fmtRatio(recordRatio(df, rec, r.pageSize)),
          ];
        },
      ),
    ),
  );
  return box;
}

/**
 * A canvas memory map: the view's pages laid out in rows, each cell one page or, when the view
 * holds more pages than cells, the blend of several. Drag across cells to zoom into them; the
 * buttons zoom out and back to the whole region; hovering names the page.
 */
function mapWidget(ctx: PageContext, src: MapSource): HTMLElement {
  const MARGIN = 96;
  const MAX_HEIGHT = 320;
  const box = h("div", { class: "map" });
  const bar = h("div", { class: "mapbar" });
  const info = h("span", { class: "mapinfo" });
  const out = h("button", { type: "button" }, "zoom out");
  const all = h("button", { type: "button" }, "whole region");
  bar.append(out, all, info);
  const canvas = document.createElement("canvas");
  canvas.className = "mapcanvas";
  const tip = h("div", { class: "tip" });
  const legend = h("div", { class: "legend" });
  for (const [label, color] of src.legend) {
    legend.append(h("span", null, h("i", { style: `background:${color}` }), label));
  }
  box.append(bar, canvas, tip, legend);
  const view = { first: 0, end: src.pages, ppc: 1, cell: 4, cols: 1, rows: 1, width: ctx.width };
  const history: [number, number][] = [];
  let dragFrom = -1;
  let dragTo = -1;

  const layout = () => {
    const width = Math.max(200, view.width - MARGIN);
    const n = view.end - view.first;
    for (const cell of [12, 10, 8, 6, 4, 3, 2]) {
      const cols = Math.floor(width / cell);
      const rows = Math.ceil(n / cols);
      if (rows * cell <= MAX_HEIGHT) {
        Object.assign(view, { cell, cols, rows, ppc: 1 });
        return;
      }
    }
    const cell = 2;
    const cols = Math.floor(width / cell);
    const maxRows = Math.floor(MAX_HEIGHT / cell);
    const ppc = Math.ceil(n / (cols * maxRows));
    Object.assign(view, { cell, cols, ppc, rows: Math.ceil(n / ppc / cols) });
  };

  const draw = () => {
    layout();
    const { first, end, ppc, cell, cols, rows } = view;
    const cells = cols * rows;
    const acc = new Float32Array(cells * 4);
    let run = runAt(src.starts, first);
    for (let p = first; p < end && run < src.count.length;) {
      const runEnd = Math.min(end, src.starts[run + 1]);
      // Pages p..runEnd-1 share this run's color: add them cell by cell.
      while (p < runEnd) {
        const c = Math.floor((p - first) / ppc);
        const cellEnd = Math.min(runEnd, first + (c + 1) * ppc);
        const w = (cellEnd - p) * src.weights[run];
        acc[c * 4] += src.colors[run * 3] * w;
        acc[c * 4 + 1] += src.colors[run * 3 + 1] * w;
        acc[c * 4 + 2] += src.colors[run * 3 + 2] * w;
        acc[c * 4 + 3] += w;
        p = cellEnd;
      }
      run++;
    }
    const off = document.createElement("canvas");
    off.width = cols;
    off.height = rows;
    const octx = off.getContext("2d")!;
    const img = octx.createImageData(cols, rows);
    for (let c = 0; c < cells; c++) {
      const w = acc[c * 4 + 3];
      if (w === 0) continue;
      img.data[c * 4] = acc[c * 4] / w;
      img.data[c * 4 + 1] = acc[c * 4 + 1] / w;
      img.data[c * 4 + 2] = acc[c * 4 + 2] / w;
      img.data[c * 4 + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    const dpr = globalThis.devicePixelRatio || 1;
    const cssW = MARGIN + cols * cell;
    const cssH = rows * cell;
    canvas.style.width = `${cssW}px`;
    canvas.style.height = `${cssH}px`;
    canvas.width = Math.ceil(cssW * dpr);
    canvas.height = Math.ceil(cssH * dpr);
    const ctx = canvas.getContext("2d")!;
    ctx.scale(dpr, dpr);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, MARGIN, 0, cols * cell, rows * cell);
    ctx.fillStyle = "#333";
    ctx.font = "11px ui-monospace, monospace";
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    const every = Math.max(1, Math.ceil(14 / cell));
    for (let row = 0; row < rows; row += every) {
      const page = first + row * cols * ppc;
      ctx.fillText(fmtHex(src.base + page * src.pageSize), MARGIN - 6, row * cell);
    }
    if (dragFrom >= 0 && dragTo >= 0) {
      const a = Math.min(dragFrom, dragTo);
      const b = Math.max(dragFrom, dragTo);
      ctx.fillStyle = "rgba(255, 200, 0, 0.45)";
      for (let c = a; c <= b;) {
        const row = Math.floor(c / cols);
        const rowEnd = Math.min(b, row * cols + cols - 1);
        ctx.fillRect(MARGIN + (c % cols) * cell, row * cell, (rowEnd - c + 1) * cell, cell);
        c = rowEnd + 1;
      }
    }
    const lastPage = end - 1;
    info.textContent = `pages ${fmtInt(first)}–${fmtInt(lastPage)} (${
      fmtHex(src.base + first * src.pageSize)
    }..${fmtHex(src.base + end * src.pageSize - 1)}), ${
      ppc === 1 ? "one page" : `${fmtInt(ppc)} pages`
    } per cell${ppc > 1 ? ", blended" : ""}; drag to zoom`;
  };

  const cellAt = (ev: MouseEvent): number => {
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left - MARGIN;
    const y = ev.clientY - rect.top;
    if (x < 0) return -1;
    const col = Math.floor(x / view.cell);
    const row = Math.floor(y / view.cell);
    if (col >= view.cols || row >= view.rows) return -1;
    const c = row * view.cols + col;
    return view.first + c * view.ppc < view.end ? c : -1;
  };

  const zoomTo = (first: number, end: number) => {
    history.push([view.first, view.end]);
    view.first = Math.max(0, first);
    view.end = Math.min(src.pages, Math.max(first + 1, end));
    draw();
  };

  canvas.addEventListener("mousedown", (ev) => {
    dragFrom = cellAt(ev);
    dragTo = dragFrom;
  });
  canvas.addEventListener("mousemove", (ev) => {
    const c = cellAt(ev);
    if (dragFrom >= 0 && c >= 0 && c !== dragTo) {
      dragTo = c;
      draw();
    }
    if (c < 0) {
      tip.style.display = "none";
      return;
    }
    const p0 = view.first + c * view.ppc;
    const p1 = Math.min(view.end, p0 + view.ppc);
    let text: string;
    if (p1 - p0 === 1) text = src.describe(p0, runAt(src.starts, p0));
    else {
      const parts: string[] = [];
      for (let run = runAt(src.starts, p0); run < src.count.length && src.starts[run] < p1; run++) {
        const a = Math.max(p0, src.starts[run]);
        const b = Math.min(p1, src.starts[run + 1]);
        parts.push(`${fmtInt(b - a)} × ${src.describe(a, run).split("\n").slice(1, 2).join("")}`);
        if (parts.length === 6) {
          parts.push("…");
          break;
        }
      }
      text = `pages ${fmtInt(p0)}–${fmtInt(p1 - 1)} (${fmtHex(src.base + p0 * src.pageSize)}..${
        fmtHex(src.base + p1 * src.pageSize - 1)
      })\n${parts.join("\n")}`;
    }
    tip.textContent = text;
    tip.style.display = "block";
    const rect = box.getBoundingClientRect();
    tip.style.left = `${ev.clientX - rect.left + 14}px`;
    tip.style.top = `${ev.clientY - rect.top + 14}px`;
  });
  canvas.addEventListener("mouseleave", () => tip.style.display = "none");
  globalThis.addEventListener("mouseup", () => {
    if (dragFrom < 0) return;
    const a = Math.min(dragFrom, dragTo);
    const b = Math.max(dragFrom, dragTo);
    dragFrom = -1;
    dragTo = -1;
    if (b > a || view.ppc > 1) zoomTo(view.first + a * view.ppc, view.first + (b + 1) * view.ppc);
    else draw();
  });
  out.addEventListener("click", () => {
    const back = history.pop();
    if (back) {
      [view.first, view.end] = back;
      draw();
    }
  });
  all.addEventListener("click", () => {
    history.length = 0;
    view.first = 0;
    view.end = src.pages;
    draw();
  });
  ctx.draws.push((width) => {
    view.width = width;
    draw();
  });
  return box;
}

/** A table of `rows` rows, `pageRows` at a time, each made by `row(i)` only when shown. */
function pagedTable(
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

/** Where page `page` of region `region` sits on the record-order chart's vertical axis. */
function regionStarts(df: DecodedFile): number[] {
  const starts = [0];
  for (const r of df.regions) starts.push(starts[starts.length - 1] + r.pages);
  return starts;
}

function addressAt(df: DecodedFile, starts: number[], y: number): string {
  for (let r = df.regions.length - 1; r >= 0; r--) {
    if (y >= starts[r]) {
      const reg = df.regions[r];
      const page = Math.min(reg.pages, Math.max(0, Math.round(y - starts[r])));
      return fmtHex(reg.base + page * reg.pageSize);
    }
  }
  return "";
}

function recordOrder(ctx: PageContext, f: FileReport, df: DecodedFile, i: number): HTMLElement {
  const box = h("div", { class: "order" });
  const rec = df.records;
  const seg = df.segments;
  const kinds = f.records.kinds;
  const encodings = f.records.encodings;
  const starts = regionStarts(df);
  const totalPages = starts[starts.length - 1];
  const fileEnd = rec.offset.length === 0
    ? 1
    : Math.max(f.size ?? 0, rec.offset[rec.offset.length - 1] + rec.bytes[rec.bytes.length - 1]);
  const readout = h("div", { class: "readout" }, "hover the chart: the record under the cursor");
  const note = seg.record.length === 0
    ? "no page records"
    : f.segments.gap > 1
    ? `each vertical line is one record's pages; runs closer than ${f.segments.gap} pages are drawn as one (${
      fmtInt(seg.record.length)
    } lines)`
    : `each vertical line is one record's run of pages (${fmtInt(seg.record.length)} lines)`;
  const sampledNote = f.segments.sampled > 1
    ? `; of the single pages scattered through records one in ${f.segments.sampled} is drawn (an even sample, to keep the page small), runs of several pages all are`
    : "";
  box.append(
    h(
      "p",
      { class: "note" },
      `Position in the file (across) against guest address (up): ${note}${sampledNote}. Device sections are orange, damaged records red${
        f.records.spans.length > 0 ? ", shaded bands are the stream's RAM sections (passes)" : ""
      }. Drag to zoom, double-click to zoom out.`,
    ),
  );
  const chartBox = h("div", { class: "chart" });
  box.append(chartBox, readout);
  // Segment colors as RGBA words in memory order (little-endian: 0xAABBGGRR): zstd, raw, zero,
  // damaged.
  const rgba = (r: number, g: number, b: number) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  const SEGMENT_RGBA = [
    rgba(47, 127, 216),
    rgba(24, 63, 140),
    rgba(138, 148, 163),
    rgba(221, 0, 0),
  ];
  const colorClass = new Uint8Array(rec.offset.length);
  for (let r = 0; r < rec.offset.length; r++) {
    const e = encodings[rec.encoding[r]];
    colorClass[r] = rec.damaged[r] ? 3 : e === "zero" ? 2 : e === "raw" ? 1 : 0;
  }
  const devices = new Set(f.records.devices.map((d) => d.record));
  const opts: uPlotClass.Options = {
    width: ctx.width,
    height: 300,
    legend: { show: false },
    cursor: { drag: { x: true, y: true, uni: 30 }, points: { show: false } },
    scales: {
      x: { time: false, range: (_u, min, max) => [Math.max(0, min), max] },
      y: { range: (_u, min, max) => [Math.max(0, min), Math.max(min + 1, max)] },
    },
    axes: [
      {
        label: "file offset",
        values: (_u, ticks) => ticks.map((t) => fmtBytes(t)),
        size: 40,
        space: 90,
      },
      {
        label: "guest address",
        values: (_u, ticks) => ticks.map((t) => addressAt(df, starts, t)),
        size: 90,
      },
    ],
    series: [{}, { stroke: "transparent", points: { show: false } }],
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        const { left, top, width: w, height: hgt } = u.bbox;
        ctx.save();
        ctx.beginPath();
        ctx.rect(left, top, w, hgt);
        ctx.clip();
        const xmin = u.scales.x.min!;
        const xmax = u.scales.x.max!;
        const px = globalThis.devicePixelRatio || 1;
        for (const sp of f.records.spans) {
          const x0 = u.valToPos(sp.offset, "x", true);
          const x1 = u.valToPos(sp.offset + sp.bytes, "x", true);
          ctx.fillStyle = "rgba(120, 160, 90, 0.12)";
          ctx.fillRect(x0, top, Math.max(1, x1 - x0), hgt);
        }
        if (df.regions.length > 1) {
          // Where each region starts on the vertical axis (regions are stacked in header order).
          ctx.fillStyle = "#667";
          ctx.font = `${11 * px}px sans-serif`;
          for (const [ri, reg] of df.regions.entries()) {
            const y = u.valToPos(starts[ri], "y", true);
            if (y < top || y > top + hgt) continue;
            ctx.fillRect(left, y, w, px);
            ctx.fillText(reg.name, left + 4 * px, y - 3 * px);
          }
        }
        // Both scales are linear: map values to canvas pixels directly and set the pixels of
        // each segment in an image of the plot area (hundreds of thousands of segments: drawing
        // each as a canvas shape would take the browser seconds), then draw the image once.
        const ymin = u.scales.y.min!;
        const ymax = u.scales.y.max!;
        const W = Math.max(1, Math.round(w));
        const H = Math.max(1, Math.round(hgt));
        const kx = W / Math.max(1e-9, xmax - xmin);
        const ky = H / Math.max(1e-9, ymax - ymin);
        const pixels = new Uint32Array(W * H);
        const cw = Math.max(1, Math.round(px));
        for (let s = 0; s < seg.record.length; s++) {
          const r = seg.record[s];
          const off = rec.offset[r];
          if (off < xmin || off > xmax) continue;
          const low = starts[seg.region[s]] + seg.first[s];
          const high = low + seg.count[s];
          if (high < ymin || low > ymax) continue;
          const x = Math.min(W - cw, Math.floor((off - xmin) * kx));
          // Rows from the top: the highest page is the smallest row.
          const top0 = Math.max(0, Math.floor(H - (high - ymin) * ky));
          const bottom = Math.min(H - 1, Math.max(top0, Math.ceil(H - (low - ymin) * ky) - 1));
          const color = SEGMENT_RGBA[colorClass[r]];
          for (let y = top0; y <= bottom; y++) {
            for (let dx = 0; dx < cw; dx++) pixels[y * W + x + dx] = color;
          }
        }
        const image = new ImageData(new Uint8ClampedArray(pixels.buffer), W, H);
        const tile = document.createElement("canvas");
        tile.width = W;
        tile.height = H;
        tile.getContext("2d")!.putImageData(image, 0, 0);
        ctx.drawImage(tile, left, top);
        for (let r = 0; r < rec.offset.length; r++) {
          const device = devices.has(r);
          if (!device && !rec.damaged[r]) continue;
          const x = u.valToPos(rec.offset[r], "x", true);
          ctx.fillStyle = rec.damaged[r] ? "rgba(220, 0, 0, 0.6)" : "rgba(240, 140, 0, 0.9)";
          const x1 = u.valToPos(rec.offset[r] + rec.bytes[r], "x", true);
          ctx.fillRect(x, top, Math.max(2 * px, x1 - x), hgt);
        }
        for (const p of f.problems) {
          const x = u.valToPos(p.offset, "x", true);
          ctx.fillStyle = "rgba(220, 0, 0, 0.8)";
          ctx.fillRect(x, top, 2 * px, hgt);
        }
        ctx.restore();
      }],
      setCursor: [(u) => {
        const left = u.cursor.left ?? -1;
        if (left < 0) return;
        const off = u.posToVal(left, "x");
        // The last record starting at or before the cursor.
        let lo = 0;
        let hi = rec.offset.length - 1;
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (rec.offset[mid] <= off) lo = mid;
          else hi = mid - 1;
        }
        const r = lo;
        const y = u.posToVal(u.cursor.top ?? 0, "y");
        const dev = f.records.devices.find((d) => d.record === r);
        readout.textContent = `byte ${fmtInt(Math.max(0, off))}, address ${
          addressAt(df, starts, y)
        } — record #${r} at byte ${fmtInt(rec.offset[r])}: ${kinds[rec.kind[r]]}${
          dev ? ` ${dev.id}:${dev.instance}` : ""
        }${rec.pages[r] ? `, ${fmtInt(rec.pages[r])} pages, ${encodings[rec.encoding[r]]}` : ""}, ${
          fmtBytes(rec.bytes[r])
        }${rec.damaged[r] ? ", DAMAGED" : ""}`;
      }],
    },
  };
  // The vertical extent of the pages the file holds, so that a few megabytes of a large region
  // are not a line at the bottom; zooming out goes back to it.
  let lowY = totalPages;
  let highY = 0;
  for (let s = 0; s < seg.record.length; s++) {
    const y = starts[seg.region[s]] + seg.first[s];
    if (y < lowY) lowY = y;
    if (y + seg.count[s] > highY) highY = y + seg.count[s];
  }
  if (highY <= lowY) [lowY, highY] = [0, Math.max(1, totalPages)];
  const pad = Math.max(1, (highY - lowY) * 0.03);
  const data: uPlotClass.AlignedData = [
    [0, fileEnd],
    [Math.max(0, lowY - pad), Math.min(Math.max(1, totalPages), highY + pad)],
  ];
  new uPlot(opts, data, chartBox);
  const recordsRows = rec.offset.length;
  const k = `f${i}.records`;
  const byEnc: Record<string, number> = {};
  let pageRecords = 0;
  for (let r = 0; r < recordsRows; r++) {
    if (kinds[rec.kind[r]] !== "pages") continue;
    pageRecords++;
    const e = encodings[rec.encoding[r]];
    byEnc[e] = (byEnc[e] ?? 0) + rec.bytes[r];
  }
  const counts = h("table", { class: "counts" });
  const encNames = Object.keys(byEnc).sort();
  counts.append(
    h(
      "tr",
      null,
      h("th", null, "records"),
      h("th", null, "page records"),
      ...encNames.map((e) => h("th", null, `${e} record bytes`)),
    ),
    h(
      "tr",
      null,
      keyed(`${k}.count`, recordsRows),
      keyed(`${k}.pageRecords`, pageRecords),
      ...encNames.map((e) => keyed(`${k}.bytes.${e}`, byEnc[e])),
    ),
  );
  box.append(counts);
  box.append(
    h(
      "details",
      null,
      h("summary", null, `Records (${fmtInt(recordsRows)}): the numbers behind the chart`),
      pagedTable(
        [
          "#",
          "byte offset",
          "bytes",
          "kind",
          "region",
          "pages",
          "encoding",
          "compression",
          "first address",
          "note",
        ],
        recordsRows,
        (r) => {
          const reg = rec.region[r];
          const region = reg >= 0 ? df.regions[reg] : null;
          const dev = f.records.devices.find((d) => d.record === r);
          const firstPage = df.firstPage[r];
          return [
            r,
            rec.offset[r],
            rec.bytes[r],
            kinds[rec.kind[r]],
            region ? region.name : "-",
            rec.pages[r] || "-",
            encodings[rec.encoding[r]] ?? "-",
            region ? fmtRatio(recordRatio(df, r, region.pageSize)) : "-",
            region && firstPage >= 0 ? fmtHex(region.base + firstPage * region.pageSize) : "-",
            [
              dev ? `${dev.id}:${dev.instance}, ${fmtBytes(dev.bytes)} of state` : "",
              rec.damaged[r] ? "DAMAGED" : "",
            ]
              .filter((x) => x).join("; "),
          ];
        },
        { pageRows: 25, startAt: rec.damaged.indexOf(1) },
      ),
    ),
  );
  if (f.records.spans.length > 0) {
    box.append(
      pagedTable(
        ["RAM section", "byte offset", "bytes"],
        f.records.spans.length,
        (x) => [f.records.spans[x].label, f.records.spans[x].offset, f.records.spans[x].bytes],
        { caption: "The stream's RAM sections" },
      ),
    );
  }
  return box;
}

async function renderDiff(
  ctx: PageContext,
  data: ReportData,
  d: DiffReport,
  i: number,
): Promise<HTMLElement> {
  const fa = data.files[d.a];
  const fb = data.files[d.b];
  const sec = h("section", { class: "diff", id: `diff-${i}` });
  sec.append(h("h2", null, `Changes from ${fa.path} to ${fb.path}`));
  const pal: Record<string, number[]> = {
    same: [238, 240, 243],
    changed: [214, 69, 65],
    zeroed: [110, 120, 130],
    filled: [46, 134, 222],
  };
  const names = ["same", "changed", "zeroed", "filled"];
  for (const [ri, r] of d.regions.entries()) {
    const count = await unpack(r.runs.count) as Uint32Array;
    const kind = await unpack(r.runs.kind) as Uint8Array;
    const starts = new Float64Array(count.length + 1);
    const colors = new Uint8Array(count.length * 3);
    const weights = new Uint8Array(count.length);
    for (let x = 0; x < count.length; x++) {
      starts[x + 1] = starts[x] + count[x];
      colors.set(pal[names[kind[x]]], x * 3);
      weights[x] = kind[x] === 0 ? 1 : 16;
    }
    sec.append(h("h4", null, `${r.name}: ${fmtInt(r.pages)} pages compared`));
    sec.append(
      mapWidget(ctx, {
        pages: r.pages,
        base: r.base,
        pageSize: r.pageSize,
        count,
        starts,
        colors,
        weights,
        describe: (page, run) =>
          `page ${fmtInt(page)} at ${fmtHex(r.base + page * r.pageSize)}\n${names[kind[run]]}`,
        legend: names.map((
          x,
        ) => [
          x === "zeroed"
            ? "zeroed (zero in B only)"
            : x === "filled"
            ? "filled (zero in A only)"
            : x,
          cssColor(pal[x]),
        ]),
      }),
    );
    const k = `d${i}.r${ri}`;
    const t = h("table", { class: "counts" });
    t.append(
      h("tr", null, ...["same", "changed", "zeroed", "filled"].map((x) => h("th", null, x))),
      h(
        "tr",
        null,
        keyed(`${k}.same`, r.pages - r.changed - r.zeroed - r.filled),
        keyed(`${k}.changed`, r.changed),
        keyed(`${k}.zeroed`, r.zeroed),
        keyed(`${k}.filled`, r.filled),
      ),
    );
    sec.append(t);
    sec.append(
      h(
        "details",
        null,
        h("summary", null, `Runs (${fmtInt(count.length)}): the numbers behind the map`),
        pagedTable(["first page", "pages", "addresses", "change"], count.length, (x) => [
          starts[x],
          count[x],
          `${fmtHex(r.base + starts[x] * r.pageSize)}..${
            fmtHex(r.base + starts[x + 1] * r.pageSize - 1)
          }`,
          names[kind[x]],
        ]),
      ),
    );
  }
  for (const u of d.unmatched) {
    sec.append(
      h(
        "p",
        { class: "note" },
        `Region ${u.name} of ${u.file === "a" ? fa.path : fb.path} not compared: ${u.reason}.`,
      ),
    );
  }
  sec.append(
    pagedTable(["device", "change"], d.devices.length, (x) => [
      `${d.devices[x].id}:${d.devices[x].instance}`,
      d.devices[x].change,
    ], { caption: `Device sections that differ: ${d.devices.length}` }),
  );
  return sec;
}

function renderTimelines(ctx: PageContext, data: ReportData): HTMLElement {
  const sec = h("section", { class: "timelines", id: "timelines" });
  sec.append(h("h2", null, `Timeline: ${data.metricsPath}`));
  if (data.timelines.length === 0) {
    sec.append(h("p", { class: "note" }, "The metrics file holds no snapshot."));
  }
  data.timelines.forEach((t, i) => sec.append(renderTimeline(ctx, data, t, i)));
  return sec;
}

function renderTimeline(
  ctx: PageContext,
  data: ReportData,
  t: TimelineReport,
  i: number,
): HTMLElement {
  const m = t.metrics;
  const box = h("div", { class: "timeline", id: `timeline-${i}` });
  const file = t.file >= 0 ? data.files[t.file].path : null;
  box.append(
    h(
      "h3",
      null,
      `Snapshot ${i + 1}: ${m.mode ?? "?"}${
        m.atInstruction !== undefined ? ` at instruction ${fmtInt(m.atInstruction)}` : ""
      }${file ? ` → ${file}` : m.path ? ` → ${m.path} (not among the files)` : ""}`,
    ),
  );
  const k = `t${i}`;
  const kv = h("table", { class: "kv" });
  const row = (name: string, ...cells: HTMLElement[]) =>
    kv.append(h("tr", null, h("th", null, name), ...cells));
  const num = (x: unknown) => typeof x === "number" ? x : null;
  if (num(m.pauseUs) !== null) {
    row("pause (longest)", keyed(`${k}.pauseUs`, m.pauseUs!, `${fmtInt(m.pauseUs!)} µs`));
  }
  if (num(m.totalMs) !== null) row("total", keyed(`${k}.totalMs`, m.totalMs!, fmtMs(m.totalMs!)));
  if (num(m.bytesWritten) !== null) {
    row("file", keyed(`${k}.bytesWritten`, m.bytesWritten!, fmtBytes(m.bytesWritten!)));
  }
  if (num(m.guestStallUs) !== null) {
    row(
      "guest stalls",
      keyed(`${k}.guestStallUs`, m.guestStallUs!, `${fmtInt(m.guestStallUs!)} µs`),
    );
  }
  if (num(m.bufferPeakBytes) !== null) {
    row(
      "buffer peak",
      keyed(
        `${k}.bufferPeakBytes`,
        m.bufferPeakBytes!,
        `${fmtBytes(m.bufferPeakBytes!)} of ${fmtBytes(m.cowBufferBytes ?? 0)}`,
      ),
    );
  }
  if (m.mode === "precopy") {
    row("precopy passes", keyed(`${k}.precopyPasses`, m.precopyPasses ?? 0));
    row("pages resent", keyed(`${k}.pagesResent`, m.pagesResent ?? 0));
  }
  box.append(kv);
  const tl = m.timeline as SnapshotTimeline | undefined;
  if (tl === undefined) {
    box.append(
      h(
        "p",
        { class: "note" },
        "This metrics line has no time series (an engine before the timeline was recorded): the numbers above are all it holds.",
      ),
    );
  } else box.append(timelineCharts(ctx, tl, k));
  box.append(
    h(
      "details",
      null,
      h("summary", null, "Every metric of this snapshot"),
      pagedTable(
        ["metric", "value"],
        Object.keys(m).filter((x) => x !== "timeline").length,
        (x) => {
          const key = Object.keys(m).filter((y) => y !== "timeline")[x];
          const v = m[key];
          return [key, typeof v === "object" ? JSON.stringify(v) : String(v)];
        },
        { pageRows: 60 },
      ),
    ),
  );
  return box;
}

function timelineCharts(ctx: PageContext, tl: SnapshotTimeline, k: string): HTMLElement {
  const box = h("div", null);
  const n = tl.ms.length;
  const rate = new Float64Array(n);
  const stallMs = new Float64Array(n);
  const bufferMiB = new Float64Array(n);
  const pagesSaved = new Float64Array(n);
  // Pages per second over a window (20 ms, or a hundredth of the span): the writer saves pages
  // in batches, so the rate between two samples a few milliseconds apart is all bursts.
  const window = n > 1 ? Math.max(20, (tl.ms[n - 1] - tl.ms[0]) / 100) : 20;
  let from = 0;
  for (let x = 0; x < n; x++) {
    while (from < x - 1 && tl.ms[x] - tl.ms[from + 1] >= window) from++;
    const dt = x === 0 ? tl.ms[0] : tl.ms[x] - tl.ms[from];
    const dp = x === 0 ? tl.pagesWritten[0] : tl.pagesWritten[x] - tl.pagesWritten[from];
    const ds = x === 0 ? tl.guestStallUs[0] : tl.guestStallUs[x] - tl.guestStallUs[x - 1];
    rate[x] = dt > 0 ? dp / (dt / 1000) : 0;
    stallMs[x] = ds / 1000;
    bufferMiB[x] = tl.bufferBytes[x] / 1048576;
    pagesSaved[x] = tl.pagesWritten[x];
  }
  const bands = (u: uPlotClass) => {
    const ctx = u.ctx;
    const { top, height } = u.bbox;
    ctx.save();
    for (const p of tl.passes) {
      const x0 = u.valToPos(p.startMs, "x", true);
      const x1 = u.valToPos(p.endMs, "x", true);
      ctx.fillStyle = p.pass % 2 === 0 ? "rgba(90, 150, 90, 0.12)" : "rgba(90, 150, 90, 0.22)";
      ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      ctx.fillStyle = "#355";
      ctx.font = `${11 * (globalThis.devicePixelRatio || 1)}px sans-serif`;
      ctx.fillText(
        `pass ${p.pass}: ${fmtInt(p.dirtyPages)} dirty`,
        x0 + 3,
        top + 12 * (globalThis.devicePixelRatio || 1),
      );
    }
    for (const p of tl.pauses) {
      const x0 = u.valToPos(p.startMs, "x", true);
      const x1 = u.valToPos(p.endMs, "x", true);
      ctx.fillStyle = "rgba(220, 40, 40, 0.35)";
      ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
    }
    ctx.restore();
  };
  const width = ctx.width;
  const sync = uPlot.sync(`${k}-sync`);
  const common = (title: string): Partial<uPlotClass.Options> => ({
    title,
    width,
    height: 220,
    cursor: { sync: { key: sync.key }, drag: { x: true, y: false } },
    // From the snapshot's start (the instant's pause is there), whenever the first sample came.
    scales: { x: { time: false, range: (_u, _min, max) => [0, Math.max(1, max)] } },
    hooks: { drawClear: [bands] },
  });
  const a = h("div", { class: "chart" });
  const b = h("div", { class: "chart" });
  const guestData = tl.bufferBytes.some((v) => v > 0) || tl.guestStallUs.some((v) => v > 0);
  box.append(
    a,
    guestData
      ? b
      : h("p", { class: "note" }, "No copy buffer was held and the guest never stalled."),
  );
  new uPlot(
    {
      ...common("Saving the pages (red: the guest's pauses; green: precopy's passes)"),
      axes: [
        { label: "ms since the snapshot started" },
        { label: "pages/s", scale: "rate", values: (_u, ts) => ts.map((v) => fmtInt(v)), size: 70 },
        {
          label: "pages saved",
          scale: "total",
          side: 1,
          grid: { show: false },
          values: (_u, ts) => ts.map((v) => fmtInt(v)),
          size: 70,
        },
      ],
      series: [
        { label: "ms" },
        {
          label: "pages/s written",
          scale: "rate",
          stroke: "#2f7fd8",
          width: 1.5,
          points: { show: false },
        },
        {
          label: "pages saved",
          scale: "total",
          stroke: "#555",
          dash: [4, 3],
          points: { show: false },
        },
      ],
    } as uPlotClass.Options,
    [Array.from(tl.ms), Array.from(rate), Array.from(pagesSaved)],
    a,
  );
  if (guestData) {
    new uPlot(
      {
        ...common("The guest: the copy buffer it holds and its stalls"),
        axes: [
          { label: "ms since the snapshot started" },
          { label: "buffer MiB", scale: "buf", size: 60 },
          { label: "stall ms per sample", scale: "stall", side: 1, grid: { show: false } },
        ],
        series: [
          { label: "ms" },
          {
            label: "copy buffer MiB (peak per sample)",
            scale: "buf",
            stroke: "#e08a00",
            fill: "rgba(224,138,0,0.15)",
            points: { show: false },
          },
          {
            label: "guest stall ms",
            scale: "stall",
            stroke: "#c0392b",
            paths: uPlot.paths.bars!({ size: [0.8, 8] }),
          },
        ],
      } as uPlotClass.Options,
      [Array.from(tl.ms), Array.from(bufferMiB), Array.from(stallMs)],
      b,
    );
  }
  const counts = h("table", { class: "counts" });
  counts.append(
    h(
      "tr",
      null,
      ...["samples", "interval", "pages written", "pauses", "passes"].map((x) => h("th", null, x)),
    ),
    h(
      "tr",
      null,
      keyed(`${k}.samples`, n),
      keyed(`${k}.intervalMs`, tl.intervalMs, fmtMs(tl.intervalMs)),
      keyed(`${k}.pagesWritten`, n > 0 ? tl.pagesWritten[n - 1] : 0),
      keyed(`${k}.pauses`, tl.pauses.length),
      keyed(`${k}.passes`, tl.passes.length),
    ),
  );
  box.append(counts);
  if (tl.pauses.length > 0) {
    box.append(
      pagedTable(["pause", "from ms", "to ms", "µs"], tl.pauses.length, (x) => {
        const p: TimelinePause = tl.pauses[x];
        return [
          p.reason,
          p.startMs.toFixed(3),
          p.endMs.toFixed(3),
          Math.round((p.endMs - p.startMs) * 1000),
        ];
      }, { caption: "Pauses of the guest" }),
    );
  }
  if (tl.passes.length > 0) {
    const tbl = pagedTable(
      ["pass", "from ms", "to ms", "pages sent", "dirty after", "throttle %"],
      tl.passes.length,
      (x) => {
        const p: TimelinePass = tl.passes[x];
        return [
          p.pass,
          p.startMs.toFixed(1),
          p.endMs.toFixed(1),
          p.pagesSent,
          p.dirtyPages,
          p.throttlePct,
        ];
      },
      { caption: "Precopy passes" },
    );
    tbl.setAttribute("data-key", `${k}.passTable`);
    box.append(tbl);
  }
  box.append(
    h(
      "details",
      null,
      h("summary", null, `Samples (${fmtInt(n)}): the numbers behind the charts`),
      pagedTable(
        ["ms", "pages saved", "pages/s", "buffer bytes", "guest stall µs (total)"],
        n,
        (x) => [
          tl.ms[x].toFixed(3),
          tl.pagesWritten[x],
          Math.round(rate[x]),
          tl.bufferBytes[x],
          tl.guestStallUs[x],
        ],
      ),
    ),
  );
  return box;
}

/**
 * The page's functions, in the order `html.ts` writes them; `reportMain` runs when the page
 * has loaded.
 */
export const PAGE_FUNCTIONS: readonly ((...args: never[]) => unknown)[] = [
  reportMain,
  h,
  fmtInt,
  fmtBytes,
  fmtHex,
  fmtRatio,
  fmtMs,
  keyed,
  unpack,
  decodeFile,
  runAt,
  renderSummary,
  renderFile,
  lsnapHeader,
  qemuHeader,
  problemsBlock,
  mix,
  cssColor,
  pagePalette,
  recordRatio,
  pageMap,
  mapWidget,
  pagedTable,
  regionStarts,
  addressAt,
  recordOrder,
  renderDiff,
  renderTimelines,
  renderTimeline,
  timelineCharts,
];
