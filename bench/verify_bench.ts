/**
 * `livesnap verify` against `sha256sum`, whole process (Deno start-up included), the way a user
 * runs them: `bin/livesnap verify vm.lsnap` on a snapshot of a machine with 512 MiB of RAM of the
 * usual mix (60% zero pages, 25% text, 15% random; bench/_mixed_ram.ts) and `sha256sum` on the
 * raw image of the same RAM. The two run in turn, pair by pair, so that a change in the machine's
 * load moves both; the ratio is taken per pair and its median printed. With `--ref REV` the
 * verify of another revision (e.g. `main`) runs in the same rounds, from a copy of its tree.
 *
 *   deno run -A bench/verify_bench.ts [--mib 512] [--runs 7] [--ref main]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { SnapshotWriter } from "../format/writer.ts";
import { mixedRam } from "./_mixed_ram.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs", "ref"],
  default: { mib: "512", runs: "7" },
});
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const PAGE = 4096;
const PAGES = (MIB * 1024 * 1024) / PAGE;
const ROOT = new URL("..", import.meta.url).pathname;

async function run(cmd: string[]): Promise<number> {
  const t = performance.now();
  const o = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "null", stderr: "piped" })
    .output();
  const seconds = (performance.now() - t) / 1000;
  if (!o.success) {
    throw new Error(`${cmd.join(" ")} failed: ${new TextDecoder().decode(o.stderr)}`);
  }
  return seconds;
}

async function sh(cmd: string): Promise<void> {
  const o = await new Deno.Command("sh", { args: ["-c", cmd] }).output();
  if (!o.success) throw new Error(`${cmd} failed: ${new TextDecoder().decode(o.stderr)}`);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const dir = await Deno.makeTempDir({ prefix: "livesnap-verify-bench-" });
try {
  const image = `${dir}/ram.img`;
  const snap = `${dir}/ram.lsnap`;
  {
    const ram = mixedRam(PAGES);
    await Deno.writeFile(image, ram);
    const w = await SnapshotWriter.createFile(snap, {
      regions: [{ name: "ram", base: 0x8000_0000, size: ram.length, pageSize: PAGE }],
      creator: "livesnap verify bench",
      createdAt: 0,
    });
    for (let p = 0; p < PAGES; p += 256) {
      await w.writePages(0, p, ram.subarray(p * PAGE, (p + 256) * PAGE));
    }
    await w.close();
  }
  const contenders: { name: string; cmd: string[] }[] = [
    { name: "`sha256sum` of the raw image (baseline)", cmd: ["sha256sum", image] },
    { name: "`livesnap verify` of the .lsnap", cmd: [`${ROOT}bin/livesnap`, "verify", snap] },
  ];
  if (flags.ref !== undefined) {
    const tree = `${dir}/ref`;
    await Deno.mkdir(tree);
    await sh(`git -C '${ROOT}' archive '${flags.ref}' | tar -x -C '${tree}'`);
    await Deno.symlink(`${ROOT}node_modules`, `${tree}/node_modules`);
    contenders.push({
      name: `\`livesnap verify\` as of ${flags.ref}`,
      cmd: [`${tree}/bin/livesnap`, "verify", snap],
    });
  }
  // Every contender once unmeasured: the page cache holds both files, Deno its module cache.
  await sh(`cat '${image}' '${snap}' > /dev/null`);
  for (const c of contenders) await run(c.cmd);
  const times = contenders.map(() => [] as number[]);
  for (let i = 0; i < RUNS; i++) {
    for (const [k, c] of contenders.entries()) times[k].push(await run(c.cmd));
  }
  const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "? ? ?")).split(" ");
  const snapBytes = (await Deno.stat(snap)).size;
  console.log(
    `Guest RAM ${MIB} MiB, snapshot ${(snapBytes / 1e6).toFixed(0)} MB; ${RUNS} rounds, ` +
      `contenders in turn; load average at the end ${load.slice(0, 3).join(" ")}; ${
        new Date().toISOString().slice(0, 10)
      }.\n`,
  );
  console.log(
    "| what | median wall s | min | max | speed vs `sha256sum` (median of pairs) | worst pair |",
  );
  console.log("|---|---:|---:|---:|---:|---:|");
  for (const [k, c] of contenders.entries()) {
    const ratios = times[k].map((t, i) => times[0][i] / t);
    console.log(
      `| ${c.name} | ${median(times[k]).toFixed(3)} | ${Math.min(...times[k]).toFixed(3)} | ${
        Math.max(...times[k]).toFixed(3)
      } | ${median(ratios).toFixed(2)}x | ${Math.min(...ratios).toFixed(2)}x |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
