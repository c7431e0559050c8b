/**
 * `livesnap convert IN OUT`: the command-line front end of {@linkcode convertSnapshot}.
 *
 * @module
 */
import { CorruptError, LsnapError } from "../format/errors.ts";
import { QemuStreamError } from "../qemu/errors.ts";
import { parseAddress, parseCompression, parseRegionSpec, parseSize } from "./_args.ts";
import { parseCommand, UsageError } from "./_command.ts";
import { formatBytes } from "./_term.ts";
import {
  ConvertError,
  type ConvertOptions,
  convertSnapshot,
  inputFormats,
  outputFormats,
} from "./convert/mod.ts";

function usage(): string {
  const list = (m: ReadonlyMap<string, { summary: string }>) =>
    [...m].map(([name, f]) => `    ${name.padEnd(10)} ${f.summary}`).join("\n");
  return `Usage: livesnap convert [options] IN OUT
       livesnap convert --from raw --region NAME:BASE:FILE [--region ...] OUT

Rewrites a snapshot. IN and OUT are paths; - is standard input or output. Options combine.
Every conversion that keeps the state (.lsnap to .lsnap, raw or QEMU to .lsnap) keeps the
content digest, and the output is read back and checked before the command reports success;
on any failure the output is removed.

QEMU migration streams: IN is read as one when it starts with QEMU's magic (QEVM), or with
--from qemu (needed when IN is -). Each RAM block becomes a region, each device section is
kept byte for byte. --to qemu writes the stream back from such an .lsnap (QEMU loads it with
-incoming "exec:cat OUT", started with the same machine options). What --to qemu checks: the
stream written is re-read by the QEMU stream reader and its RAM pages, device sections and
stream data must give the input's content digest. What it cannot check here: that QEMU's own
device models accept the device state (that needs the QEMU that wrote it).

--to qemu of a snapshot livesnap's own machine took writes a stream of QEMU's riscv32 'virt'
board (hart, timer, PLIC, UART, RAM and mask ROM), which QEMU resumes without -kernel:
  qemu-system-riscv32 -machine virt -bios none -m SIZE -incoming "exec:cat OUT"
with SIZE the snapshot's RAM size. The stream is read back, mapped to livesnap's machine again
and compared with the snapshot (RAM and state); what QEMU cannot take (HTIF, more waiting UART
input than it holds, a RAM size -m cannot give) is refused, and a timer QEMU 7.2 will not re-arm
is warned about. See the README's field-by-field table.

Options:
  --compress none|zstd[:LEVEL]  how pages are stored in an .lsnap output (default zstd:1)
  --batch SIZE                  uncompressed bytes per page record, e.g. 64K or 4M
                                (default 1M, at most 16M)
  --address-order               write pages in address order, each once (holds the pages'
                                contents in memory, up to the size of the guest's RAM)
  --drop-duplicates             keep only the last occurrence of each page and device (in file
                                order when IN is an .lsnap file, else in address order)
  --no-index                    write no INDEX record (by default one is written, so a
                                missing index is rebuilt)
  --from FORMAT                 input format (default lsnap)
  --to FORMAT                   output format (default lsnap)
  --region NAME                 with --to raw: the region to write (optional with one region)
  --region NAME:BASE:FILE       with --from raw: a flat image and its guest address (repeat;
                                FILE - reads one image from standard input)
  --page-size SIZE              with --from raw: page size of the regions (default 4096);
                                with --from qemu: the target page size when the stream does
                                not state it (default 4096)
  --base NAME=ADDR              with --from qemu: guest-physical address of RAM block NAME
                                (repeat; the riscv virt board's are known, others are placed
                                above 1 TiB)
  --quiet                       no summary line
  --help                        show this help

Formats:
  input:
${list(inputFormats())}
  output:
${list(outputFormats())}

Examples:
  livesnap convert --compress zstd:9 --address-order vm.lsnap vm-small.lsnap
  livesnap convert --drop-duplicates old.lsnap new.lsnap      # also rebuilds the index
  livesnap convert --to raw --region ram vm.lsnap ram.img
  livesnap convert --from raw --region ram:0x80000000:ram.img vm.lsnap
  ssh host 'dd if=/dev/mem ...' | livesnap convert --from raw --region ram:0x80000000:- vm.lsnap
  livesnap convert --to elf-core vm.lsnap vm.core
  gdb-multiarch guest.elf vm.core
  ssh host cat vm.lsnap | livesnap convert --compress none - - > plain.lsnap
  livesnap convert guest.qemu guest.lsnap                     # a QEMU stream, recognised
  (qemu) migrate "exec:livesnap convert --from qemu - guest.lsnap"
  livesnap convert --to qemu guest.lsnap back.qemu
  qemu-system-riscv32 -machine virt ... -incoming "exec:cat back.qemu"
  livesnap run guest.elf --ram 64M --snapshot-at 5000000 --out g.lsnap
  livesnap convert --to qemu g.lsnap g.qemu                   # livesnap's own snapshot
  qemu-system-riscv32 -machine virt -bios none -m 64M -incoming "exec:cat g.qemu"
  livesnap convert --to raw --region riscv_virt_board.ram guest.qemu ram.bin

Exit status: 0 converted and checked, 1 the input is damaged or a check failed (nothing is
left at OUT), 2 usage or I/O error.`;
}

/** Entry point; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const command = parseCommand(args, {
    name: "livesnap convert",
    usage: usage(),
    boolean: ["address-order", "drop-duplicates", "index", "quiet"],
    string: ["compress", "batch", "from", "to", "page-size"],
    list: ["region", "base"],
    negatable: { index: true },
  });
  if (typeof command === "number") return command;
  const { options: flags, positional, usageError } = command;
  const from = flags.from ?? "lsnap";
  let input: string;
  let output: string;
  if (from === "raw" && positional.length === 1) {
    input = "";
    output = positional[0];
  } else if (positional.length === 2) {
    [input, output] = positional;
  } else {
    return usageError(`expected IN and OUT, got ${positional.length} arguments`);
  }
  const options: ConvertOptions = {
    // Without --from, convertSnapshot recognises a QEMU stream by its magic.
    from: flags.from,
    to: flags.to ?? "lsnap",
    addressOrder: flags["address-order"],
    dropDuplicates: flags["drop-duplicates"],
    index: flags.index,
    warn: (m) => console.error(`livesnap convert: warning: ${m}`),
  };
  const regions = flags.region;
  try {
    if (flags.compress !== undefined) options.compress = parseCompression(flags.compress);
    if (flags.batch !== undefined) options.batchBytes = parseSize(flags.batch, "--batch");
    if (flags["page-size"] !== undefined) {
      options.pageSize = parseSize(flags["page-size"], "--page-size");
    }
    if (flags.base.length > 0) {
      options.bases = {};
      for (const b of flags.base) {
        const eq = b.lastIndexOf("=");
        if (eq <= 0) throw new UsageError(`Cannot parse --base: '${b}' is not NAME=ADDR`);
        options.bases[b.slice(0, eq)] = parseAddress(b.slice(eq + 1), "--base");
      }
    }
    if (from === "raw") options.rawRegions = regions.map(parseRegionSpec);
    else if (regions.length > 1) return usageError("--region NAME may be given once");
    else options.region = regions[0];
  } catch (e) {
    return usageError(e);
  }
  if (from !== "raw" && input === "") return usageError("expected IN");
  try {
    const r = await convertSnapshot(input, output, options);
    if (!flags.quiet) {
      const digest = r.contentDigest === null
        ? ""
        : `, content ${r.contentDigest}${r.digestChecked ? " (checked)" : ""}`;
      console.error(
        `${r.output === "-" ? "<stdout>" : r.output}: ${r.to}, ${formatBytes(r.bytesOut)}, ` +
          `${r.pages} pages, ${r.devices} devices${digest}`,
      );
    }
    return 0;
  } catch (e) {
    const damagedOrFailedCheck = e instanceof LsnapError || e instanceof QemuStreamError ||
      e instanceof ConvertError;
    // Standard input that does not start like an .lsnap file may be a QEMU stream, which is
    // recognised only in a file (the bytes looked at would be lost to the reader).
    const hint = flags.from === undefined && input === "-" && e instanceof CorruptError &&
        e.offset === 0
      ? " (a QEMU stream on standard input needs --from qemu)"
      : "";
    console.error(`livesnap convert: ${(e as Error).message}${hint}`);
    return damagedOrFailedCheck ? 1 : 2;
  }
}
