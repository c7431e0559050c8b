/**
 * `livesnap report FILE... --out report.html`: the front end of {@linkcode makeReport}.
 *
 * @module
 */
import { parseCommand } from "./_command.ts";
import { createOutput } from "./_io.ts";
import { ReportInputError } from "./report/gather.ts";
import { MetricsError } from "./report/metrics_data.ts";
import { makeReport } from "./report/report.ts";

const USAGE = `Usage: livesnap report FILE... [--metrics FILE] --out REPORT.html

Writes one self-contained HTML page (no network: it opens from disk in any current browser)
that shows what each snapshot holds and how it was taken:

  - what 'livesnap inspect' shows, and every problem of a damaged file (said at the top);
  - per region, a memory map: each page absent, zero, data (shaded by its record's
    compression) or repeated (how many copies the file holds); drag to zoom, hover for the
    guest address and the record's offset in the file;
  - the record order: position in the file against guest address (dirty pages first, then
    the sweep; device sections marked);
  - for a diff (an incremental snapshot), its parent link, and the chain it ends: each
    file in chain order with its digests and the pages it changed, every link checked
    (parents are the other FILEs, matched by file digest, else found by the names the
    diffs record, beside them, as restore and flatten find them);
  - with two or more files, a diff map of each file against the next (a diff compared as
    the whole state its chain stands for);
  - with --metrics, the snapshot's timeline: pages per second written, copy buffer
    occupancy, guest stalls, the pause, precopy's passes with their dirty pages.

Every chart has its numbers in a table beside it, and the whole data set is embedded as JSON
in <script type="application/json" id="livesnap-data"> (each file's "inspect" is what
'livesnap inspect --json' prints; page and record columns are gzip+base64 typed arrays, see
tools/report/README.md). FILE is an .lsnap file or a QEMU migration stream (recognised by
its first bytes); - reads standard input.

Options:
  --out FILE       the page to write (- for standard output); written to a temporary file and
                   renamed into place when complete
  --metrics FILE   the metrics the snapshot's writer recorded ('livesnap run --metrics FILE':
                   one JSON line per snapshot), tied to the files by content digest

Exit status: 0 every file intact, 1 a file is damaged or incomplete or a chain cannot be
used (the report is still written and says so), 2 usage error or a file or the metrics could not be read.

Examples:
  livesnap run emulator/guests/build/memstress.elf --snapshot-at 5000000 --out m.lsnap \\
      --metrics m.json
  livesnap report m.lsnap --metrics m.json --out m.html
  livesnap report before.lsnap after.lsnap --out changes.html
  livesnap report guest.qemu --out guest.html
  livesnap report s-2.lsnap --out chain.html          # a diff: its chain, parents by name
  livesnap report s-0.lsnap s-1.lsnap s-2.lsnap --out chain.html`;

/** Entry point; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap report",
    usage: USAGE,
    string: ["out", "metrics"],
  });
  if (typeof command === "number") return command;
  const { options, positional: files, usageError } = command;
  if (files.length === 0) return usageError("expected at least one FILE");
  if (options.out === undefined) return usageError("--out FILE is required");
  if (files.filter((f) => f === "-").length > 1) {
    return usageError("standard input (-) can be read only once");
  }
  let report;
  try {
    report = await makeReport(files, { metrics: options.metrics });
  } catch (e) {
    if (e instanceof MetricsError || e instanceof ReportInputError) {
      console.error(`livesnap report: ${e.message}`);
      return 2;
    }
    throw e;
  }
  let out;
  try {
    out = await createOutput(options.out);
  } catch (e) {
    console.error(`livesnap report: ${(e as Error).message}`);
    return 2;
  }
  try {
    await out.write(new TextEncoder().encode(report.html));
    await out.commit();
  } catch (e) {
    await out.abort();
    console.error(`livesnap report: Cannot write ${options.out}: ${(e as Error).message}`);
    return 2;
  }
  for (const f of report.data.files) {
    if (!f.intact) {
      console.error(
        `livesnap report: ${f.path} is damaged or incomplete (${f.problems.length} problem(s)); the report shows it`,
      );
    }
  }
  for (const c of report.data.chains) {
    if (!c.ok) console.error(`livesnap report: ${c.message}; the report shows the chain`);
  }
  return report.data.damaged ? 1 : 0;
}
