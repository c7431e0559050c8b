/**
 * `livesnap diff A B`: the command-line front end of {@linkcode diffSnapshots}.
 *
 * @module
 */
import { parseCount } from "./_args.ts";
import { parseCommand } from "./_command.ts";
import { colorEnabled, formatBytes, palette } from "./_term.ts";
import { type DiffResult, diffSnapshots } from "./diff.ts";

const USAGE = `Usage: livesnap diff [options] A B

Compares two .lsnap snapshots: which pages differ (counted per region, listed with --pages) and
which device sections differ, field by field. One of A and B may be - (standard input). Both
files are fully checked while they are read.

Options:
  --pages          list every differing page with its address
  --max-pages N    list at most N pages per region (default 100000)
  --json           print one JSON object
  --help           show this help

Examples:
  livesnap diff before.lsnap after.lsnap
  livesnap diff --pages --json a.lsnap b.lsnap | jq '.regions[0].pages[:10]'
  ssh host cat vm.lsnap | livesnap diff - local.lsnap

Exit status: 0 the states are equal, 1 they differ, 2 usage error or a damaged file.`;

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function show(v: unknown): string {
  if (v === undefined) return "(absent)";
  if (typeof v === "number" && Number.isInteger(v) && Math.abs(v) > 9) {
    return `${v} (${hex(v >>> 0)})`;
  }
  return JSON.stringify(v);
}

function text(r: DiffResult, color: boolean): string {
  const c = palette(color);
  const lines: string[] = [];
  lines.push(r.equal ? c.green("equal") : c.red("different"));
  lines.push(`content A  ${r.contentDigests.a}`);
  lines.push(`content B  ${r.contentDigests.b}`);
  for (const g of r.regions) {
    const n = g.changed + g.zeroed + g.filled;
    let line = `region ${c.bold(g.name)}: `;
    if (g.a === null || g.b === null) {
      line += g.a === null ? "only in B" : "only in A";
    } else {
      line += `${n} of ${g.pagesCompared} pages differ`;
      if (n > 0) line += ` (${g.changed} changed, ${g.zeroed} zeroed, ${g.filled} filled)`;
      if (g.layoutDiffers) {
        line += c.yellow(
          `; layout differs: A ${hex(g.a.base)}+${formatBytes(g.a.size)}/${g.a.pageSize}, ` +
            `B ${hex(g.b.base)}+${formatBytes(g.b.size)}/${g.b.pageSize}`,
        );
      }
    }
    lines.push(line);
    for (const p of g.pages ?? []) lines.push(`  page ${p.page} ${hex(p.address)} ${p.change}`);
    if (g.pages !== undefined && g.pages.length < n) lines.push(`  ... ${n - g.pages.length} more`);
  }
  if (r.devices.length === 0) lines.push("devices: equal");
  for (const d of r.devices) {
    const name = `${c.bold(d.id)}#${d.instance}`;
    if (d.change === "only-in-a") lines.push(`device ${name}: only in A (version ${d.versionA})`);
    else if (d.change === "only-in-b") {
      lines.push(`device ${name}: only in B (version ${d.versionB})`);
    } else {
      const v = d.versionA === d.versionB ? "" : ` (version ${d.versionA} -> ${d.versionB})`;
      lines.push(`device ${name}: ${d.fields?.length ?? 0} fields differ${v}`);
      for (const f of d.fields ?? []) {
        lines.push(`  ${f.path || "(state)"}: ${show(f.a)} -> ${show(f.b)}`);
      }
    }
  }
  return lines.join("\n");
}

/** Entry point; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap diff",
    usage: USAGE,
    boolean: ["pages", "json"],
    string: ["max-pages"],
  });
  if (typeof command === "number") return command;
  const { options: flags, positional: files, usageError } = command;
  if (files.length !== 2) return usageError(`expected A and B, got ${files.length} arguments`);
  let maxPages: number | undefined;
  try {
    if (flags["max-pages"] !== undefined) {
      maxPages = parseCount(flags["max-pages"], "--max-pages", { what: "a number of pages" });
    }
  } catch (e) {
    return usageError(e);
  }
  let result: DiffResult;
  try {
    result = await diffSnapshots(files[0], files[1], { pages: flags.pages, maxPages });
  } catch (e) {
    console.error(`livesnap diff: ${(e as Error).message}`);
    return 2;
  }
  console.log(
    flags.json ? JSON.stringify(result, null, 2) : text(result, colorEnabled(Deno.stdout)),
  );
  return result.equal ? 0 : 1;
}
