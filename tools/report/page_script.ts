/**
 * The report page's script, run by the browser that opens the report. `html.ts` writes the
 * source of the functions listed in {@linkcode PAGE_FUNCTIONS} into one scope of the page as Deno
 * runs them (TypeScript with the types removed), so they are type-checked and linted here. They
 * live in `page_common.ts`, `page_header.ts`, `page_chain.ts`, `page_map.ts`, `page_order.ts` and
 * `page_timeline.ts` and import each other by name for the type checker; in the page they find
 * each other by those same names. So they may use nothing at run time but each other, the DOM
 * and uPlot (bundled into the page): no module-level value and no renamed import. Their DOM types
 * come from deno.json's `compilerOptions.lib`.
 *
 * The page reads the data set from `#livesnap-data`, unpacks its columns, draws each file's
 * memory maps (canvas, pages aggregated into cells: never one element per page), its record order
 * and the timelines (uPlot), with every number behind a chart in a table beside it (long tables
 * paged), then sets `data-ready="1"` on `<html>` and the performance mark
 * `livesnap-interactive`. Values the tests read carry `data-key` attributes.
 *
 * @module
 */
import type { ReportData } from "./data.ts";
import type { DecodedFile, PageContext } from "./page_common.ts";
import {
  cssColor,
  decodeFile,
  fmtBytes,
  fmtHex,
  fmtInt,
  fmtMs,
  fmtRatio,
  h,
  keyed,
  mix,
  pagedTable,
  runAt,
  unpack,
} from "./page_common.ts";
import {
  lsnapHeader,
  problemsBlock,
  qemuHeader,
  renderFile,
  renderSummary,
} from "./page_header.ts";
import { renderChain } from "./page_chain.ts";
import { mapWidget, pageMap, pagePalette, recordRatio, renderDiff } from "./page_map.ts";
import { addressAt, recordOrder, regionStarts } from "./page_order.ts";
import { renderTimeline, renderTimelines, timelineCharts } from "./page_timeline.ts";

/** Entry point: draws the whole report. */
export async function reportMain(): Promise<void> {
  performance.mark("livesnap-start");
  const root = document.getElementById("report")!;
  try {
    const source = document.getElementById("livesnap-data")!.textContent!;
    const data = JSON.parse(source) as ReportData;
    const decoded: DecodedFile[] = [];
    for (const f of data.files) decoded.push(await decodeFile(f));
    const ctx: PageContext = { width: Math.max(400, root.clientWidth || 900), draws: [] };
    root.append(renderSummary(data));
    for (const [ci, c] of data.chains.entries()) root.append(renderChain(data, c, ci));
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
  renderChain,
  renderTimelines,
  renderTimeline,
  timelineCharts,
];
