/**
 * The report page's chains (FORMAT.md §14): for each chain, whether every link was checked, then
 * each file in chain order (the full snapshot first) with its digests, its PARENT record and the
 * pages it holds (for a diff: the pages written since its parent, explicit zero pages counted
 * apart); a refused link is marked in red with the chain's message.
 *
 * Part of the report page's script: see `page_script.ts` for how these functions reach the page
 * (their source is written into it; they may use nothing at run time but each other, the DOM and
 * uPlot).
 *
 * @module
 */
import type { ReportChain, ReportData } from "./data.ts";
import { fmtBytes, fmtInt, h, keyed } from "./page_common.ts";

export function renderChain(data: ReportData, c: ReportChain, ci: number): HTMLElement {
  const sec = h("section", { class: "chain", id: `chain-${ci}` });
  const head = data.files[c.head];
  sec.append(
    h(
      "h2",
      null,
      `Chain ending at ${head.path} `,
      h("span", { class: c.ok ? "tag ok" : "tag bad" }, c.ok ? "every link checked" : "broken"),
    ),
  );
  sec.append(
    h(
      "div",
      {
        class: c.ok ? "banner" : "banner bad",
        "data-key": `c${ci}.ok`,
        "data-value": String(c.ok),
      },
      c.ok
        ? `${c.links.length} files, the full snapshot first. Each parent is complete and its ` +
          "digests, depth, chain and regions are those its child's PARENT record names " +
          "(FORMAT.md §14.4); 'livesnap verify --chain' also proves the digests by reading " +
          "every byte."
        : `${c.problem}: ${c.message}`,
    ),
  );
  const t = h("table", { class: "data chain-links" });
  t.append(
    h(
      "thead",
      null,
      h(
        "tr",
        null,
        ...[
          "depth",
          "file",
          "bytes",
          "pages held",
          "data",
          "zero",
          "content digest",
          "file digest",
          "parent name",
          "parent content digest",
          "parent file digest",
          "link",
        ].map((x) => h("th", null, x)),
      ),
    ),
  );
  const body = h("tbody", null);
  // Digests shown shortened; the whole one in data-value and on hover.
  const digest = (key: string, hex: string | undefined) => {
    const td = keyed(key, hex ?? "-", hex === undefined ? "-" : `${hex.slice(0, 16)}…`);
    if (hex !== undefined) td.title = hex;
    return td;
  };
  c.links.forEach((l, j) => {
    const k = `c${ci}.l${j}`;
    const file = l.file >= 0
      ? h("td", null, h("a", { href: `#file-${l.file}` }, l.path))
      : h("td", null, `${l.path} (found by its name)`);
    const p = l.parent;
    body.append(
      h(
        "tr",
        { class: l.broken === null ? "" : "bad" },
        keyed(`${k}.depth`, l.depth),
        file,
        keyed(`${k}.bytes`, l.bytes, fmtBytes(l.bytes)),
        keyed(`${k}.pages.present`, l.pages?.present ?? "-"),
        keyed(`${k}.pages.data`, l.pages?.data ?? "-"),
        keyed(`${k}.pages.zero`, l.pages?.zero ?? "-"),
        digest(`${k}.contentDigest`, l.contentDigest),
        digest(`${k}.fileDigest`, l.fileDigest),
        keyed(`${k}.parent.name`, p?.name ?? "-"),
        digest(`${k}.parent.contentDigest`, p?.contentDigest),
        digest(`${k}.parent.fileDigest`, p?.fileDigest),
        h(
          "td",
          { "data-key": `${k}.broken`, "data-value": String(l.broken !== null) },
          l.broken === null ? (p === null ? "full snapshot" : "checked") : `REFUSED: ${l.broken}`,
        ),
      ),
    );
  });
  t.append(body);
  sec.append(t);
  const total = c.links.reduce((n, l) => n + (l.pages?.present ?? 0), 0);
  sec.append(
    h(
      "p",
      null,
      `${fmtInt(total)} page copies in the chain's files; in a diff, a page not held is its ` +
        "parent's, and a zero page is one that became zero since the parent.",
    ),
  );
  return sec;
}
