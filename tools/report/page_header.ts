/**
 * The report page's summary at the top (damaged files said first) and each file's section: what
 * `inspect` shows, the problems, then its maps and record order.
 *
 * Part of the report page's script: see `page_script.ts` for how these functions reach the page
 * (their source is written into it; they may use nothing at run time but each other, the DOM and
 * uPlot).
 *
 * @module
 */
import type { FileReport, ReportData } from "./data.ts";
import type { Cell, DecodedFile, PageContext } from "./page_common.ts";
import { fmtBytes, fmtHex, fmtInt, fmtRatio, h, keyed, pagedTable } from "./page_common.ts";
import { pageMap } from "./page_map.ts";
import { recordOrder } from "./page_order.ts";

export function renderSummary(data: ReportData): HTMLElement {
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
  const broken = data.chains.filter((c) => !c.ok);
  if (broken.length > 0) {
    box.append(
      h(
        "div",
        { class: "banner bad", "data-key": "brokenChains", "data-value": String(broken.length) },
        h("b", null, `Broken chain: ${broken.length} of ${data.chains.length}. `),
        h("ul", null, ...broken.map((c) => h("li", null, c.message ?? ""))),
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

export function renderFile(
  ctx: PageContext,
  f: FileReport,
  df: DecodedFile,
  i: number,
): HTMLElement {
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

export function lsnapHeader(f: FileReport, i: number): HTMLElement {
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
  if (r.parent !== null) {
    // A diff (FORMAT.md §14.1): its pages are the changes since the parent.
    row(
      "parent",
      keyed(`${k}.parent.name`, r.parent.name),
      keyed(`${k}.parent.depth`, r.parent.depth, `diff at chain depth ${r.parent.depth}`),
    );
    row("parent content digest", keyed(`${k}.parent.contentDigest`, r.parent.contentDigest));
    row("parent file digest", keyed(`${k}.parent.fileDigest`, r.parent.fileDigest));
    row("root file digest", keyed(`${k}.parent.rootFileDigest`, r.parent.rootFileDigest));
  }
  if (r.chain !== undefined) {
    row(
      "chain (name hints)",
      r.chain.ok
        ? keyed(`${k}.chain.ok`, "true", `${r.chain.files.length} files, every link checked`)
        : h(
          "td",
          { class: "bad", "data-key": `${k}.chain.ok`, "data-value": "false" },
          r.chain.message,
        ),
    );
  }
  if (r.error !== null) row("error", h("td", { class: "bad" }, r.error.message));
  return t;
}

export function qemuHeader(f: FileReport, i: number): HTMLElement {
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

export function problemsBlock(f: FileReport, i: number): HTMLElement {
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
