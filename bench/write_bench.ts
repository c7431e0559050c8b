/**
 * Writing a snapshot against native zstd, whole process, as a user runs them: `livesnap convert
 * --from raw` of a RAM image (Deno start-up, module loading, the read-back check of the output's
 * content digest and the fsync included) against `zstd -1` and `zstd -1 -T0` writing the same
 * image to a file, in turn (convert, zstd, zstd -T0, convert, ...), so that each ratio is taken
 * between neighbouring runs under the same load. The image is the benchmarks' mix (60% zero pages,
 * 25% text-like, 15% random; bench/_mixed_ram.ts) and is read once beforehand, so every contender
 * reads it from the page cache.
 *
 *   deno task bench:write [--mib 512] [--runs 7] [--also DIR]
 *
 * `--also DIR` adds the `livesnap` of another checkout (for example the main branch) to the same
 * rotation, for a before/after ratio. Prints a Markdown table: wall and CPU seconds (user +
 * system) as median (min-max), the speed ratio against `zstd -1` (its seconds over the
 * contender's, round by round) by the wall clock and by CPU time, against `zstd -1 -T0` by the
 * wall clock, and the output's size against `zstd -1`'s.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
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
const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

const dir = await Deno.makeTempDir({ prefix: "livesnap-write-bench-" });
try {
  const image = `${dir}/ram.img`;
  await Deno.writeFile(image, mixedRam((MIB << 20) / 4096));
  const convert = (tree: string, out: string) =>
    livesnapCommand(tree, `convert --quiet --from raw --region ram:0x80000000:'${image}' '${out}'`);
  const outputs = [`${dir}/out.lsnap`, `${dir}/out.zst`, `${dir}/out-mt.zst`];
  const contenders = [
    contender("`livesnap convert --from raw`", convert(ROOT, outputs[0])),
    contender("`zstd -1`", `exec zstd -1 -q -c '${image}' > '${outputs[1]}'`),
    contender("`zstd -1 -T0`", `exec zstd -1 -T0 -q -c '${image}' > '${outputs[2]}'`),
  ];
  if (flags.also !== undefined) {
    outputs.push(`${dir}/also.lsnap`);
    contenders.push(
      contender(
        `\`livesnap convert --from raw\` of ${flags.also}`,
        convert(flags.also, outputs[3]),
      ),
    );
  }
  await new Deno.Command("sh", { args: ["-c", `cat '${image}' > /dev/null`] }).output();
  const loadBefore = await loadAverage();
  await rotate(contenders, RUNS);
  console.log(
    `Image: ${MIB} MiB, the benchmarks' mix; ${RUNS} rounds, contenders in turn; load average ` +
      `${loadBefore} before, ${await loadAverage()} after; ${navigator.hardwareConcurrency} CPUs; ` +
      `${new Date().toISOString().slice(0, 16)}Z.\n`,
  );
  console.log(
    "| command | wall s, median (min-max) | CPU s, median (min-max) | speed vs `zstd -1` by wall, median (min-max) | by CPU time | vs `zstd -1 -T0` by wall | bytes | size vs `zstd -1` |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
  const zstdBytes = (await Deno.stat(outputs[1])).size;
  for (const [k, c] of contenders.entries()) {
    const vs = speedRatios(c, contenders[1]);
    const vsThreads = speedRatios(c, contenders[2]);
    const bytes = (await Deno.stat(outputs[k])).size;
    console.log(
      `| ${c.name} | ${spread(c.wall, 2)} | ${spread(c.cpu, 2)} | ${spread(vs.wall, 2, "x")} | ${
        spread(vs.cpu, 2, "x")
      } | ${spread(vsThreads.wall, 2, "x")} | ${bytes} | ${(bytes / zstdBytes).toFixed(3)} |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
