/**
 * Format benchmark: writes and reads a 256 MiB machine (about 60% zero pages, 25% text-like,
 * 15% random bytes) and, in the same run, times native `zstd -1` and `cat` of the same raw
 * image. Prints a Markdown table; figures are MB/s of guest RAM (1 MB = 10^6 bytes).
 *
 *   deno run -A bench/format_bench.ts [--mib 256] [--runs 3] [--workers N] [--level 1]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { SnapshotWriter } from "../format/writer.ts";
import { readSnapshot } from "../format/stream_reader.ts";
import { SnapshotFileReader } from "../format/file_reader.ts";
import { mixedRam } from "./_mixed_ram.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs", "workers", "level"],
  default: { mib: "256", runs: "3", level: "1" },
});
const LEVEL = Number(flags.level);
const WORKERS = flags.workers === undefined ? undefined : Number(flags.workers);
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const PAGE = 4096;
const PAGES = (MIB * 1024 * 1024) / PAGE;

function synthesize(): Uint8Array {
  return mixedRam(PAGES);
}

async function time(fn: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

async function median(fn: () => Promise<void>): Promise<number> {
  const ts = [];
  for (let i = 0; i < RUNS; i++) ts.push(await time(fn));
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

async function sh(cmd: string): Promise<void> {
  const o = await new Deno.Command("sh", { args: ["-c", cmd] }).output();
  if (!o.success) throw new Error(`${cmd} failed: ${new TextDecoder().decode(o.stderr)}`);
}

const dir = await Deno.makeTempDir({ prefix: "livesnap-bench-" });
try {
  const ram = synthesize();
  let zero = 0;
  for (let p = 0; p < PAGES; p++) {
    if (ram.subarray(p * PAGE, (p + 1) * PAGE).every((b) => b === 0)) zero++;
  }
  const image = `${dir}/ram.img`;
  await Deno.writeFile(image, ram);
  const description = {
    regions: [{ name: "ram", base: 0x8000_0000, size: ram.length, pageSize: PAGE }],
    creator: "livesnap bench",
    createdAt: 0,
  };
  const snap = `${dir}/ram.lsnap`;
  const order = [...Array(PAGES).keys()];
  let s = 7;
  for (let i = order.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }

  const results: { what: string; seconds: number; bytes?: number }[] = [];
  results.push({
    what: "`cat` raw image > file",
    seconds: await median(() => sh(`cat ${image} > ${dir}/copy.img`)),
  });
  results.push({
    what: "`zstd -1` raw image > file",
    seconds: await median(() => sh(`zstd -1 -q -f ${image} -o ${dir}/ram.zst`)),
    bytes: (await Deno.stat(`${dir}/ram.zst`)).size,
  });
  const writeOrdered = async () => {
    const w = await SnapshotWriter.createFile(snap, description, {
      workers: WORKERS,
      level: LEVEL,
    });
    for (let p = 0; p < PAGES; p += 256) {
      await w.writePages(0, p, ram.subarray(p * PAGE, (p + 256) * PAGE));
    }
    await w.close();
  };
  results.push({
    what: "SnapshotWriter, address order, 1 MiB calls",
    seconds: await median(writeOrdered),
    bytes: (await Deno.stat(snap)).size,
  });
  const writeRandom = async () => {
    const w = await SnapshotWriter.createFile(`${dir}/random.lsnap`, description, {
      workers: WORKERS,
      level: LEVEL,
    });
    for (const p of order) await w.writePages(0, p, ram.subarray(p * PAGE, (p + 1) * PAGE));
    await w.close();
  };
  results.push({
    what: "SnapshotWriter, random order, 1 page calls",
    seconds: await median(writeRandom),
    bytes: (await Deno.stat(`${dir}/random.lsnap`)).size,
  });
  results.push({
    what: "`zstd -d` of the `zstd -1` file > file",
    seconds: await median(() => sh(`zstd -d -q -f ${dir}/ram.zst -o ${dir}/back.img`)),
  });
  results.push({
    what: "readSnapshot (stream, all checks + digests)",
    seconds: await median(async () => {
      const r = await readSnapshot((await Deno.open(snap)).readable);
      if (r.regions[0].length !== ram.length) throw new Error("bad read");
    }),
  });
  results.push({
    what: "SnapshotFileReader.readRegion (index)",
    seconds: await median(async () => {
      const r = await SnapshotFileReader.open(snap);
      await r.readRegion(0);
      r.close();
    }),
  });

  const zstd = results[1];
  console.log(
    `Machine: ${MIB} MiB, ${PAGES} pages: ${
      (100 * zero / PAGES).toFixed(1)
    }% zero, ~25% text-like, ~15% random; median of ${RUNS} runs.\n`,
  );
  console.log(
    "| operation | seconds | MB/s of guest RAM | vs `zstd -1` | output bytes | vs `zstd -1` size |",
  );
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const r of results) {
    const mbs = ram.length / 1e6 / r.seconds;
    const speed = (zstd.seconds / r.seconds).toFixed(2);
    const size = r.bytes === undefined ? "" : String(r.bytes);
    const ratio = r.bytes === undefined ? "" : (r.bytes / zstd.bytes!).toFixed(3);
    console.log(
      `| ${r.what} | ${r.seconds.toFixed(3)} | ${
        mbs.toFixed(0)
      } | ${speed}× | ${size} | ${ratio} |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
