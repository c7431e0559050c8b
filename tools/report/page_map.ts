/**
 * The report page's memory maps: a canvas of cells, each one page or a blend of several, with
 * zoom, hover and the runs behind it; the page map of a region and the diff map of two files.
 *
 * Part of the report page's script: see `page_script.ts` for how these functions reach the page
 * (their source is written into it; they may use nothing at run time but each other, the DOM and
 * uPlot).
 *
 * @module
 */
import type { DiffReport, FileReport, ReportData } from "./data.ts";
import type { DecodedFile, DecodedRegion, MapSource, PageContext } from "./page_common.ts";
import {
  cssColor,
  fmtBytes,
  fmtHex,
  fmtInt,
  fmtRatio,
  h,
  keyed,
  mix,
  pagedTable,
  runAt,
  unpack,
} from "./page_common.ts";

/** The palette of page maps. */
export function pagePalette(): Record<string, number[]> {
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

export function recordRatio(df: DecodedFile, rec: number, pageSize: number): number {
  const bytes = df.records.bytes[rec];
  return bytes > 0 ? (df.records.pages[rec] * pageSize) / bytes : Infinity;
}

export function pageMap(
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
  // In a diff, a page absent is unchanged since the parent, never zero (FORMAT.md §14.2).
  const diff = f.parent !== null;
  const kinds = f.records.kinds;
  const encodings = f.records.encodings;
  const describe = (page: number, run: number): string => {
    const addr = r.base + page * r.pageSize;
    const lines = [`${r.name} page ${fmtInt(page)} at ${fmtHex(addr)}`];
    const kind = r.kind[run];
    if (kind === 0) {
      return `${lines[0]}\n${
        diff ? "not in this diff: unchanged since the parent" : "absent (reads as zero)"
      }`;
    }
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
    [diff ? "not in the diff (parent's)" : "absent", cssColor(pal.absent)],
    [diff ? "zero (zeroed since the parent)" : "zero", cssColor(pal.zero)],
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
export function mapWidget(ctx: PageContext, src: MapSource): HTMLElement {
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

export async function renderDiff(
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
