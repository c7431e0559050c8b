/**
 * The report page's record-order chart (uPlot): position in the file against guest address, a
 * record's pages as a vertical line, with the record table behind it.
 *
 * Part of the report page's script: see `page_script.ts` for how these functions reach the page
 * (their source is written into it; they may use nothing at run time but each other, the DOM and
 * uPlot).
 *
 * @module
 */
import type { FileReport } from "./data.ts";
import type uPlotClass from "uplot";
import type { DecodedFile, PageContext } from "./page_common.ts";
import { fmtBytes, fmtHex, fmtInt, fmtRatio, h, keyed, pagedTable } from "./page_common.ts";
import { recordRatio } from "./page_map.ts";

declare const uPlot: typeof uPlotClass;

/** Where page `page` of region `region` sits on the record-order chart's vertical axis. */
export function regionStarts(df: DecodedFile): number[] {
  const starts = [0];
  for (const r of df.regions) starts.push(starts[starts.length - 1] + r.pages);
  return starts;
}

export function addressAt(df: DecodedFile, starts: number[], y: number): string {
  for (let r = df.regions.length - 1; r >= 0; r--) {
    if (y >= starts[r]) {
      const reg = df.regions[r];
      const page = Math.min(reg.pages, Math.max(0, Math.round(y - starts[r])));
      return fmtHex(reg.base + page * reg.pageSize);
    }
  }
  return "";
}

export function recordOrder(
  ctx: PageContext,
  f: FileReport,
  df: DecodedFile,
  i: number,
): HTMLElement {
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
