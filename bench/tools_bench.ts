/**
 * Tools benchmark: `verify` and `convert` on a snapshot of a 1 GiB machine (about 60% zero pages,
 * 25% text-like, 15% random bytes, the format benchmark's mix), against `sha256sum` and `zstd -d`
 * on the same raw image, in the same run. Prints a Markdown table; figures are MB/s of guest RAM
 * (1 MB = 10^6 bytes), medians of `--runs`. Files are read once beforehand so that every
 * contender reads from the page cache.
 *
 *   deno run -A bench/tools_bench.ts [--mib 1024] [--runs 3]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { SnapshotWriter } from "../format/writer.ts";
import { verifySnapshot } from "../tools/verify.ts";
import { convertSnapshot } from "../tools/convert/mod.ts";
import { mixedRam } from "./_mixed_ram.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs"],
  default: { mib: "1024", runs: "3" },
});
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const PAGE = 4096;
const PAGES = (MIB * 1024 * 1024) / PAGE;
const RAM_BYTES = PAGES * PAGE;

function synthesize(): Uint8Array {
  return mixedRam(PAGES);
}

async function median(fn: () => Promise<void>): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await fn();
    ts.push((performance.now() - t) / 1000);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

async function sh(cmd: string): Promise<void> {
  const o = await new Deno.Command("sh", { args: ["-c", cmd] }).output();
  if (!o.success) throw new Error(`${cmd} failed: ${new TextDecoder().decode(o.stderr)}`);
}

const dir = await Deno.makeTempDir({ prefix: "livesnap-tools-bench-" });
try {
  const image = `${dir}/ram.img`;
  const snap = `${dir}/ram.lsnap`;
  {
    const ram = synthesize();
    await Deno.writeFile(image, ram);
    const w = await SnapshotWriter.createFile(snap, {
      regions: [{ name: "ram", base: 0x8000_0000, size: RAM_BYTES, pageSize: PAGE }],
      creator: "livesnap tools bench",
      createdAt: 0,
    });
    for (let p = 0; p < PAGES; p += 256) {
      await w.writePages(0, p, ram.subarray(p * PAGE, (p + 256) * PAGE));
    }
    await w.close();
  }
  await sh(`zstd -1 -q -f ${image} -o ${dir}/ram.zst`);
  await sh(`cat ${image} ${snap} ${dir}/ram.zst > /dev/null`);
  const snapBytes = (await Deno.stat(snap)).size;

  const rows: { what: string; seconds: number }[] = [];
  const add = async (what: string, fn: () => Promise<void>) => {
    rows.push({ what, seconds: await median(fn) });
    console.error(`${what}: ${(RAM_BYTES / 1e6 / rows.at(-1)!.seconds).toFixed(0)} MB/s`);
  };
  await add("`sha256sum` of the raw image (baseline)", () => sh(`sha256sum ${image} > /dev/null`));
  await add(
    "`zstd -d` of the `zstd -1` image > /dev/null (baseline)",
    () => sh(`zstd -d -q -c ${dir}/ram.zst > /dev/null`),
  );
  await add(
    "`livesnap verify` (verifySnapshot: CRCs, file digest, content digest, index)",
    async () => {
      const f = await Deno.open(snap);
      const r = await verifySnapshot(f.readable);
      if (!r.ok) throw new Error(`verify failed: ${JSON.stringify(r.error)}`);
    },
  );
  await add(
    "`livesnap convert` .lsnap to .lsnap (zstd:1, read back and digest checked)",
    async () => {
      await convertSnapshot(snap, `${dir}/out.lsnap`, { progress: false });
    },
  );
  await add("`livesnap convert --compress none`", async () => {
    await convertSnapshot(snap, `${dir}/out.lsnap`, {
      progress: false,
      compress: { codec: "raw" },
    });
  });
  await add("`livesnap convert --to raw` (sparse file)", async () => {
    await convertSnapshot(snap, `${dir}/out.img`, { to: "raw", progress: false });
  });
  await add("`livesnap convert --from raw` (digest checked)", async () => {
    await convertSnapshot("", `${dir}/from-raw.lsnap`, {
      from: "raw",
      rawRegions: [{ name: "ram", base: 0x8000_0000, path: image }],
      progress: false,
    });
  });

  const sha = rows[0].seconds;
  const zstd = rows[1].seconds;
  const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "? ? ?")).split(" ");
  console.log(
    `Load average at the end: ${load.slice(0, 3).join(" ")} (1, 5, 15 minutes; 2 cores).\n`,
  );
  console.log(
    `Guest RAM ${MIB} MiB (${(RAM_BYTES / 1e6).toFixed(0)} MB), snapshot ${
      (snapBytes / 1e6).toFixed(0)
    } MB, median of ${RUNS} runs, ${new Date().toISOString().slice(0, 10)}.\n`,
  );
  console.log("| what | seconds | MB/s of guest RAM | vs `sha256sum` | vs `zstd -d` |");
  console.log("|---|---:|---:|---:|---:|");
  for (const r of rows) {
    const rate = RAM_BYTES / 1e6 / r.seconds;
    console.log(
      `| ${r.what} | ${r.seconds.toFixed(2)} | ${rate.toFixed(0)} | ${
        (sha / r.seconds).toFixed(2)
      }x | ${(zstd / r.seconds).toFixed(2)}x |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
