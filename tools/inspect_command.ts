/**
 * `livesnap inspect FILE`: describe a snapshot; the front end of {@linkcode inspectSnapshot}
 * and {@linkcode inspectDevice}, and of `inspectQemuStream` for a QEMU migration stream (told
 * apart by its first bytes, also on standard input).
 *
 * @module
 */
import { LsnapError } from "../format/errors.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import { SourceError } from "../format/random_access_source.ts";
import { QemuStreamError } from "../qemu/errors.ts";
import { formatQemuSummary, inspectQemuStream, isQemuStream } from "../qemu/inspect.ts";
import { parseSize } from "./_args.ts";
import { parseCommand } from "./_command.ts";
import { openInput } from "./_io.ts";
import { peekBytes } from "./_peek.ts";
import { colorEnabled, createProgress, formatBytes, formatRatio, palette } from "./_term.ts";
import {
  describeInstructionCount,
  DeviceNotFoundError,
  inspectChain,
  inspectDevice,
  type InspectResult,
  inspectSnapshot,
} from "./inspect.ts";

const USAGE = `Usage: livesnap inspect [options] FILE

Reads a .lsnap snapshot (FILE, an http:// or https:// URL, or - for standard input) and
describes it: format version, completeness, memory regions, pages by encoding, compression,
records, device sections, digests. A URL is read with HTTP Range requests, a few in flight (an
S3-compatible object store or any server that honours Range); with --device only its footer,
index and device records are fetched.

For a diff (a snapshot of the changes since a parent, written with --incremental) it also shows
the parent link (the parent's name, digests and the chain depth) and, when the parents are
present (beside the diff, or given with --parent), the whole chain with every link checked.

A QEMU migration stream (as written by migrate "exec:cat > FILE") is recognised by its first
bytes (QEVM), from a file or standard input, and summarised: sections, RAM blocks with their
page counts, device sections with their fields decoded through the stream's JSON description.

Options:
  --json                 print one JSON object instead of text (for a QEMU stream: with
                         every device's decoded fields)
  --pages                add the page map: runs of pages that are present, zero or
                         duplicated, and the record that holds their last occurrence
  --device ID[:INSTANCE] print one device's decoded state as JSON (lowest instance by default;
                         for a QEMU stream ID is the section's idstr, e.g. cpu or serial)
  --fields               QEMU stream: also print each device's decoded fields as text
  --page-size N          QEMU stream: the target page size when the stream does not state
                         it (default 4096)
  --parent FILE          a diff's parent file to use in the chain (repeatable; by default
                         parents are found by the names the diffs record, beside them)
  --help                 show this help

Examples:
  livesnap inspect vm.lsnap
  livesnap inspect --pages vm.lsnap | less
  livesnap inspect --device hart vm.lsnap
  livesnap inspect https://bucket.example.com/snaps/vm.lsnap
  livesnap inspect --device uart 'https://s3.example.com/b/vm.lsnap?X-Amz-Signature=...'
  livesnap inspect s-3.lsnap                       # a diff: its parent link and its chain
  cat vm.lsnap | livesnap inspect - --json | jq .compression
  livesnap inspect --fields guest.qemu
  livesnap inspect --json guest.qemu | jq '.devices[] | select(.idstr == "cpu")'

Exit status: 0 for a complete file, 1 for a damaged or incomplete one (or no such device, or a
diff whose chain cannot be used), 2 for usage or I/O errors.`;

/** An I/O error's message: a source's errors already say what they could not read. */
function readFailure(name: string, e: unknown): string {
  return e instanceof SourceError ? e.message : `Cannot read '${name}': ${(e as Error).message}`;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function text(r: InspectResult, color: boolean): string {
  const c = palette(color);
  const p = r.pages;
  const state = r.complete ? c.green("complete") : c.red("INCOMPLETE OR DAMAGED");
  const lines = [
    `format      ${r.formatVersion ?? "?"}  ${state}`,
    `creator     ${r.creator ?? "?"}`,
    `created     ${r.createdAt ?? "?"}`,
    `size        ${formatBytes(r.bytes)} in ${r.records} records` +
    (r.extensions ? ` (${r.extensions} unknown optional skipped)` : ""),
    `regions     ${r.regions.length}`,
    ...r.regions.map((x) =>
      `  ${x.name.padEnd(10)} ${hex(x.base)}..${hex(x.base + x.size - 1)}  ${formatBytes(x.size)}` +
      `  (${x.size / x.pageSize} pages of ${formatBytes(x.pageSize)})`
    ),
    `pages       ${p.present} present (${
      p.present - p.zero
    } data, ${p.zero} zero), ${p.duplicates} duplicates`,
    `  records   ${p.records}: zstd ${p.encodings.zstd}, raw ${p.encodings.raw}, zero ${p.encodings.zero}`,
    `  by enc.   zstd ${r.byEncoding.pages.zstd} pages in ${
      formatBytes(r.byEncoding.bytes.zstd)
    }, ` +
    `raw ${r.byEncoding.pages.raw} in ${formatBytes(r.byEncoding.bytes.raw)}, ` +
    `zero ${r.byEncoding.pages.zero} in ${formatBytes(r.byEncoding.bytes.zero)}`,
    `compression ${
      r.compression.pageData === null ? "n/a" : formatRatio(r.compression.pageData)
    } on page data, ` +
    `${
      r.compression.file === null ? "n/a" : formatRatio(r.compression.file)
    } against a flat dump of the regions`,
    `devices     ${r.devices.length}`,
    ...r.devices.map((d) =>
      `  ${d.id}:${d.instance}  version ${d.version}, ${d.encoding}, ${formatBytes(d.bytes)}`
    ),
    ...(r.instructions === null
      ? []
      : [`instructions ${describeInstructionCount(r.instructions)}`]),
    `index       ${r.indexed ? "yes" : "no"}`,
    `content     ${r.digests.content ?? "-"}`,
    `file        ${r.digests.file ?? "-"}`,
  ];
  if (r.parent !== null) {
    lines.push(
      `parent      ${r.parent.name} (this diff is at chain depth ${r.parent.depth}; its pages are ` +
        "the changes since the parent, its content digest the whole state's)",
      `  content   ${r.parent.contentDigest}`,
      `  file      ${r.parent.fileDigest}`,
      `  root file ${r.parent.rootFileDigest}`,
    );
  }
  if (r.chain !== undefined) {
    if (r.chain.ok) {
      lines.push(
        `chain       ${r.chain.files.length} files, every link checked (full snapshot first)`,
      );
      for (const f of r.chain.files) {
        lines.push(
          `  ${String(f.depth).padStart(4)}  ${f.path}  ${formatBytes(f.bytes)}  content ${
            f.contentDigest.slice(0, 16)
          }…`,
        );
      }
    } else lines.push(c.red(`chain       ${r.chain.message}`));
  }
  if (r.error) lines.push(c.red(`error       ${r.error.message}`));
  if (r.pageMap !== undefined) {
    lines.push("page map    (region, pages, addresses, contents, last record, occurrences)");
    for (const run of r.pageMap) {
      const last = run.first + run.count - 1;
      const size = r.regions.find((x) => x.name === run.region)!.pageSize;
      const dup = run.occurrences > 1 ? c.yellow(`  x${run.occurrences} (duplicated)`) : "";
      lines.push(
        `  ${run.region} ${run.count === 1 ? `${run.first}` : `${run.first}-${last}`}  ` +
          `${hex(run.address)}..${hex(run.address + run.count * size - 1)}  ${
            run.state.padEnd(4)
          }  ` +
          `record ${run.record.index} @${run.record.offset}${dup}`,
      );
    }
  }
  return lines.join("\n");
}

/** Entry point; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap inspect",
    usage: USAGE,
    boolean: ["json", "pages", "fields"],
    string: ["device", "page-size"],
    list: ["parent"],
  });
  if (typeof command === "number") return command;
  const { options: flags, positional: files, usageError } = command;
  if (files.length !== 1) return usageError("expected one FILE");
  const device = flags.device === undefined ? undefined : /^(.+?)(?::(\d+))?$/.exec(flags.device);
  if (device === null) {
    return usageError(`Cannot parse --device: '${flags.device}' is not ID or ID:INSTANCE`);
  }
  let pageSize: number | undefined;
  try {
    if (flags["page-size"] !== undefined) pageSize = parseSize(flags["page-size"], "--page-size");
  } catch (e) {
    return usageError(e);
  }
  if (pageSize !== undefined && pageSize < 512) {
    return usageError(`Cannot parse --page-size: '${flags["page-size"]}' is below 512 bytes`);
  }
  let input;
  try {
    input = await openInput(files[0]);
  } catch (e) {
    console.error(`livesnap inspect: ${(e as Error).message}`);
    return 2;
  }
  try {
    let readable: ReadableStream<Uint8Array>;
    let head: Uint8Array;
    try {
      if (input.source !== undefined) {
        // A URL: look at its first bytes without starting the stream (--device may not need it).
        head = await input.source.read(0, Math.min(8, input.source.size));
        readable = input.readable;
      } else {
        ({ head, readable } = await peekBytes(input.readable, 8));
      }
    } catch (e) {
      console.error(`livesnap inspect: ${readFailure(files[0], e)}`);
      return 2;
    }
    if (isQemuStream(head)) {
      return await inspectQemu(readable, {
        json: flags.json,
        fields: flags.fields,
        pageSize,
        pages: flags.pages,
        device: device === undefined ? undefined : [device[1], device[2]],
      });
    }
    if (device !== undefined) {
      const m = device;
      let reader: SnapshotFileReader | undefined;
      try {
        // A URL: the footer, the index and the device records only, not the whole file.
        if (input.source !== undefined) {
          reader = await SnapshotFileReader.open(input.source, { diffs: "read" });
        }
        const d = await inspectDevice(
          reader ?? readable,
          m[1],
          m[2] === undefined ? undefined : Number(m[2]),
        );
        console.log(JSON.stringify(d, null, 2));
        return 0;
      } catch (e) {
        console.error(`livesnap inspect: ${(e as Error).message}`);
        return e instanceof LsnapError || e instanceof DeviceNotFoundError ? 1 : 2;
      } finally {
        reader?.close();
      }
    }
    const progress = createProgress({ label: "inspect", total: input.size });
    let result: InspectResult;
    try {
      result = await inspectSnapshot(readable, {
        pages: flags.pages,
        onBytes: (n) => progress.add(n),
      });
    } catch (e) {
      console.error(`livesnap inspect: ${readFailure(files[0], e)}`);
      return 2;
    } finally {
      progress.done();
    }
    if (result.parent !== null && input.path !== undefined) {
      result.chain = await inspectChain(input.path, flags.parent);
    }
    console.log(
      flags.json ? JSON.stringify(result, null, 2) : text(result, colorEnabled(Deno.stdout)),
    );
    return result.complete && (result.chain === undefined || result.chain.ok) ? 0 : 1;
  } finally {
    input.close();
  }
}

/** `inspect` of a QEMU migration stream: the summary of `inspectQemuStream`, as text or JSON. */
async function inspectQemu(
  readable: ReadableStream<Uint8Array>,
  o: {
    json: boolean;
    fields: boolean;
    pages: boolean;
    pageSize: number | undefined;
    device: [string, string | undefined] | undefined;
  },
): Promise<number> {
  if (o.pages) {
    console.error("livesnap inspect: --pages describes .lsnap files; this is a QEMU stream");
    return 2;
  }
  let summary;
  try {
    summary = await inspectQemuStream(readable, { pageSize: o.pageSize });
  } catch (e) {
    if (e instanceof QemuStreamError) {
      console.error(`livesnap inspect: ${e.message}`);
      return 1;
    }
    throw e;
  }
  if (o.device !== undefined) {
    const [id, instance] = o.device;
    const d = summary.devices
      .filter((x) =>
        x.idstr === id && (instance === undefined || x.instanceId === Number(instance))
      )
      .sort((a, b) => a.instanceId - b.instanceId)[0];
    if (d === undefined) {
      const ids = [...new Set(summary.devices.map((x) => x.idstr))].join(", ");
      console.error(`livesnap inspect: Cannot find device '${id}' in the stream (it has: ${ids})`);
      return 1;
    }
    console.log(JSON.stringify(d, null, 2));
    return 0;
  }
  console.log(
    o.json ? JSON.stringify(summary, null, 2) : formatQemuSummary(summary, { fields: o.fields }),
  );
  return 0;
}
