/**
 * Assembles the report page: one self-contained HTML file holding the data set as JSON, uPlot
 * (its script and style sheet, from the `uplot` npm package, read at report time), the page's
 * style sheet and its script. Nothing is fetched when the page is opened.
 *
 * @module
 */
import uplotScript from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotStyle from "uplot/dist/uPlot.min.css" with { type: "text" };
import pageStyle from "./page.css" with { type: "text" };
import type { ReportData } from "./data.ts";
import { PAGE_FUNCTIONS } from "./page_script.ts";

/** Text that may sit inside `<script>`: no `</script`, no `<!--` (HTML 13.2.5.3). */
function scriptSafe(text: string): string {
  return text.replace(/<(?=\/script|!--)/gi, "\\u003c");
}

/** JSON that may sit inside `<script type="application/json">`. */
function jsonForScript(data: unknown): string {
  return JSON.stringify(data).replace(/</g, "\\u003c");
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

/** The page's script: its functions as Deno runs them, then the call that draws the page. */
export function pageScript(): string {
  const body = PAGE_FUNCTIONS.map((f) => f.toString()).join("\n\n");
  return `"use strict";\n(() => {\n${body}\n\nreportMain();\n})();\n`;
}

/**
 * The report page for `data`.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { renderReport } from "./html.ts";
 * import { REPORT_DATA_VERSION } from "./data.ts";
 * const html = renderReport({
 *   format: "livesnap-report", version: REPORT_DATA_VERSION, generator: "doc",
 *   createdAt: "2025-01-01T00:00:00.000Z", damaged: false, files: [], chains: [], diffs: [],
 *   metricsPath: null, timelines: [],
 * });
 * assert(html.includes('<script type="application/json" id="livesnap-data">'));
 * ```
 */
export function renderReport(data: ReportData): string {
  const title = data.files.length === 0
    ? "livesnap report"
    : `livesnap report: ${data.files.map((f) => f.path).join(", ")}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="${escapeHtml(data.generator)}">
<title>${escapeHtml(title)}</title>
<style>${uplotStyle}</style>
<style>${pageStyle}</style>
</head>
<body>
<header><h1>${escapeHtml(title)}</h1>
<p class="note">Made by ${escapeHtml(data.generator)} on ${
    escapeHtml(data.createdAt)
  }. Everything this page shows is in the JSON of <code>#livesnap-data</code> below.</p>
${
    data.damaged
      ? '<p class="banner bad" id="damaged-static">This report includes damaged or incomplete files: see the problems listed with each.</p>'
      : ""
  }
<noscript><p class="banner bad">This report draws its maps and charts with JavaScript.</p></noscript>
</header>
<main id="report"></main>
<script type="application/json" id="livesnap-data">${jsonForScript(data)}</script>
<script>${scriptSafe(uplotScript)}</script>
<script>${scriptSafe(pageScript())}</script>
</body>
</html>
`;
}
