/**
 * The report page's timelines (uPlot): pages saved per second, the copy buffer and the guest's
 * stalls over time, with the pauses and precopy's passes, and the tables behind them.
 *
 * Part of the report page's script: see `page_script.ts` for how these functions reach the page
 * (their source is written into it; they may use nothing at run time but each other, the DOM and
 * uPlot).
 *
 * @module
 */
import type {
  SnapshotTimeline,
  TimelinePass,
  TimelinePause,
} from "../../emulator/snapshot/metrics.ts";
import type { ReportData, TimelineReport } from "./data.ts";
import type uPlotClass from "uplot";
import type { PageContext } from "./page_common.ts";
import { fmtBytes, fmtInt, fmtMs, h, keyed, pagedTable } from "./page_common.ts";

declare const uPlot: typeof uPlotClass;

export function renderTimelines(ctx: PageContext, data: ReportData): HTMLElement {
  const sec = h("section", { class: "timelines", id: "timelines" });
  sec.append(h("h2", null, `Timeline: ${data.metricsPath}`));
  if (data.timelines.length === 0) {
    sec.append(h("p", { class: "note" }, "The metrics file holds no snapshot."));
  }
  data.timelines.forEach((t, i) => sec.append(renderTimeline(ctx, data, t, i)));
  return sec;
}

export function renderTimeline(
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

export function timelineCharts(ctx: PageContext, tl: SnapshotTimeline, k: string): HTMLElement {
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
