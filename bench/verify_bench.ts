/**
 * `livesnap verify` against `sha256sum`, whole process (Deno start-up included), the way a user
 * runs them: `bin/livesnap verify vm.lsnap` on a snapshot of a machine with 512 MiB of RAM of the
 * usual mix (60% zero pages, 25% text, 15% random; bench/_mixed_ram.ts) and `sha256sum` on the
 * raw image of the same RAM. The contenders run in turn, round by round, so that a change in the
 * machine's load moves neighbours alike; each speed ratio is taken within a round (sha256sum's
 * seconds over verify's), by the wall clock and by CPU time (user + system), and printed as the
 * median with the range. With `--also DIR` the `livesnap` of another checkout (for example the
 * main branch) runs in the same rounds.
 *
 *   deno task bench:verify [--mib 512] [--runs 7] [--also DIR]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { SnapshotWriter } from "../format/writer.ts";
import { mixedRam } from "./_mixed_ram.ts";
import {
  contender,
  livesnapCommand,
  loadAverage,
  rotate,
  speedRatios,
  spread,
} from "./_whole_process.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs", "also"],
  default: { mib: "512", runs: "7" },
});
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const PAGE = 4096;
const PAGES = (MIB * 1024 * 1024) / PAGE;
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

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
  const contenders = [
    contender("`sha256sum` of the raw image (baseline)", `exec sha256sum '${image}'`),
    contender("`livesnap verify` of the .lsnap", livesnapCommand(ROOT, `verify '${snap}'`)),
  ];
  if (flags.also !== undefined) {
    contenders.push(
      contender(
        `\`livesnap verify\` of ${flags.also}`,
        livesnapCommand(flags.also, `verify '${snap}'`),
      ),
    );
  }
  // The page cache holds both files for every contender.
  await new Deno.Command("sh", { args: ["-c", `cat '${image}' '${snap}' > /dev/null`] }).output();
  const loadBefore = await loadAverage();
  await rotate(contenders, RUNS);
  const snapBytes = (await Deno.stat(snap)).size;
  console.log(
    `Guest RAM ${MIB} MiB, snapshot ${snapBytes} bytes; ${RUNS} rounds, contenders in turn; ` +
      `load average ${loadBefore} before, ${await loadAverage()} after; ` +
      `${navigator.hardwareConcurrency} CPUs; ${new Date().toISOString().slice(0, 16)}Z.\n`,
  );
  console.log(
    "| command | wall s, median (min-max) | CPU s, median (min-max) | speed vs `sha256sum` by wall, median (min-max) | by CPU time |",
  );
  console.log("|---|---:|---:|---:|---:|");
  for (const c of contenders) {
    const r = speedRatios(c, contenders[0]);
    console.log(
      `| ${c.name} | ${spread(c.wall, 2)} | ${spread(c.cpu, 2)} | ${spread(r.wall, 2, "x")} | ${
        spread(r.cpu, 2, "x")
      } |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
