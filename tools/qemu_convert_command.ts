/**
 * `livesnap qemu-convert`: QEMU migration stream → `.lsnap`, `.lsnap` → QEMU migration stream,
 * and one RAM block or region → a raw image.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { LsnapError } from "../format/errors.ts";
import {
  convertLsnapToQemu,
  convertQemuToLsnap,
  extractLsnapRegionToFile,
} from "../qemu/convert.ts";
import { QemuStreamError } from "../qemu/errors.ts";
import { extractQemuRamToFile } from "../qemu/extract_ram.ts";
import { isQemuStream } from "../qemu/stream_reader.ts";

const USAGE = `Usage:
  livesnap qemu-convert --from qemu [--base NAME=ADDR]... [--codec zstd|raw] IN OUT.lsnap
  livesnap qemu-convert --to qemu IN.lsnap OUT
  livesnap qemu-convert --to raw --region NAME IN OUT.raw

--from qemu  reads a QEMU migration stream (IN may be - for standard input) and writes an
             .lsnap snapshot: one region per RAM block, device sections kept byte for byte.
--to qemu    writes a QEMU migration stream from an .lsnap made by --from qemu; QEMU loads it
             with -incoming "exec:cat OUT" (started with the same machine options).
--to raw     writes one RAM block (of a QEMU stream) or region (of an .lsnap) as a raw image,
             as QEMU's pmemsave would dump that memory.

Options:
  --base NAME=ADDR  guest-physical address of RAM block NAME (the riscv virt board's are known;
                    others are placed above 1 TiB)
  --codec zstd|raw  how the .lsnap stores pages (default zstd)
  -h, --help        show this help

Examples:
  livesnap qemu-convert --from qemu guest.qemu guest.lsnap
  (qemu) migrate "exec:livesnap qemu-convert --from qemu - guest.lsnap"
  livesnap qemu-convert --to qemu guest.lsnap back.qemu
  qemu-system-riscv32 -machine virt ... -incoming "exec:cat back.qemu"
  livesnap qemu-convert --to raw --region riscv_virt_board.ram guest.qemu ram.bin`;

function fail(message: string): number {
  console.error(`livesnap qemu-convert: ${message}`);
  return 2;
}

/** Runs the command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let bad: string | undefined;
  const flags = parseArgs(args, {
    boolean: ["help"],
    string: ["from", "to", "region", "codec"],
    collect: ["base"],
    alias: { h: "help" },
    unknown: (a: string) => {
      if (a.startsWith("-") && a !== "-") {
        bad = a;
        return false;
      }
      return true;
    },
  });
  if (bad !== undefined) return fail(`unknown option '${bad}'\n\n${USAGE}`);
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  const [input, output] = flags._.map(String);
  if (flags._.length !== 2) return fail(`expected IN and OUT\n\n${USAGE}`);
  const mode = flags.from === "qemu" && flags.to === undefined
    ? "from-qemu"
    : flags.to === "qemu" && flags.from === undefined
    ? "to-qemu"
    : flags.to === "raw"
    ? "to-raw"
    : undefined;
  if (mode === undefined) return fail(`give --from qemu, --to qemu or --to raw\n\n${USAGE}`);
  const bases: Record<string, number> = {};
  for (const b of (flags.base ?? []) as string[]) {
    const m = /^(.+)=(0x[0-9a-fA-F]+|[0-9]+)$/.exec(b);
    if (m === null) return fail(`--base '${b}' is not NAME=ADDR`);
    bases[m[1]] = Number(m[2]);
  }
  const codec = flags.codec ?? "zstd";
  if (codec !== "zstd" && codec !== "raw") return fail(`--codec '${codec}' is not zstd or raw`);
  if (mode === "to-raw" && flags.region === undefined) return fail("--to raw needs --region NAME");

  const open = async () => input === "-" ? Deno.stdin.readable : (await Deno.open(input)).readable;
  try {
    if (mode === "from-qemu") {
      const s = await convertQemuToLsnap(await open(), output, { bases, writer: { codec } });
      console.log(
        `${output}: ${s.regions.length} regions, ${s.pageRecords} page records, ` +
          `${s.devices} device sections, ${s.bytes} bytes`,
      );
    } else if (mode === "to-qemu") {
      const tmp = `${output}.tmp-${crypto.randomUUID().slice(0, 8)}`;
      const file = await Deno.open(tmp, { write: true, createNew: true });
      try {
        const s = await convertLsnapToQemu(await open(), file.writable);
        await Deno.rename(tmp, output);
        console.log(`${output}: ${s.pageRecords} page records, ${s.devices} device sections`);
      } catch (e) {
        await Deno.remove(tmp).catch(() => {});
        throw e;
      }
    } else {
      const head = new Uint8Array(8);
      if (input !== "-") {
        const f = await Deno.open(input);
        await f.read(head);
        f.close();
      }
      const region = flags.region!;
      const s = input !== "-" && !isQemuStream(head)
        ? await extractLsnapRegionToFile(await open(), region, output)
        : await extractQemuRamToFile(await open(), region, output);
      console.log(`${output}: ${s.size} bytes of ${region} from ${s.pageRecords} page records`);
    }
    return 0;
  } catch (e) {
    if (
      e instanceof QemuStreamError || e instanceof LsnapError ||
      e instanceof Deno.errors.NotFound || (e instanceof Error && e.message.startsWith("Cannot "))
    ) {
      console.error(`livesnap qemu-convert: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  }
}
