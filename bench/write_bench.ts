/**
 * Writing a snapshot against native zstd, whole process, as a user runs them: `livesnap convert
 * --from raw` of a RAM image (Deno start-up, module loading, the read-back check and the fsync
 * included) against `zstd -1` and `zstd -1 -T0` writing the same image to a file, in turn
 * (convert, zstd, zstd -T0, convert, ...), so that each ratio is taken between neighbouring runs
 * under the same load. The image is the benchmarks' mix (60% zero pages, 25% text-like, 15%
 * random; bench/_mixed_ram.ts) and is read once beforehand, so every contender reads it from the
 * page cache.
 *
 *   deno task bench:write [--mib 512] [--runs 5] [--also DIR]
 *
 * `--also DIR` adds the `livesnap` of another checkout (for example the main branch) to the same
 * rotation, for a before/after ratio. Prints a Markdown table: wall seconds (median, min-max),
 * CPU seconds (user + system, median), the speed ratio against each zstd (its wall time over
 * convert's, per rotation; median and min-max) and output bytes.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { mixedRam } from "./_mixed_ram.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs", "also"],
  default: { mib: "512", runs: "5" },
});
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const root = new URL("..", import.meta.url).pathname;

interface Contender {
  name: string;
  /** A shell command; `$OUT` is its output file. */
  command: string;
  out: string;
  wall: number[];
  cpu: number[];
}

/** Runs `command` under /usr/bin/time: wall seconds and user + system seconds. */
async function timed(command: string): Promise<{ wall: number; cpu: number }> {
  const o = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "%e %U %S", "sh", "-c", command],
    stdout: "null",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(o.stderr).trim().split("\n");
  if (!o.success) throw new Error(`${command} failed: ${err.join("\n")}`);
  const [wall, user, sys] = err[err.length - 1].split(" ").map(Number);
  return { wall, cpu: user + sys };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function range(xs: number[], digits: number): string {
  return `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)}`;
}

const dir = await Deno.makeTempDir({ prefix: "livesnap-write-bench-" });
try {
  const image = `${dir}/ram.img`;
  await Deno.writeFile(image, mixedRam((MIB << 20) / 4096));
  const livesnap = (tree: string, out: string) =>
    `cd '${tree}' && '${Deno.execPath()}' run -A --v8-flags=--expose-gc tools/cli.ts convert ` +
    `--quiet --from raw --region ram:0x80000000:'${image}' '${out}'`;
  const contenders: Contender[] = [
    {
      name: "`livesnap convert --from raw`",
      command: "",
      out: `${dir}/out.lsnap`,
      wall: [],
      cpu: [],
    },
    { name: "`zstd -1`", command: "", out: `${dir}/out.zst`, wall: [], cpu: [] },
    { name: "`zstd -1 -T0`", command: "", out: `${dir}/out-mt.zst`, wall: [], cpu: [] },
  ];
  contenders[0].command = livesnap(root, contenders[0].out);
  contenders[1].command = `zstd -1 -q -c '${image}' > '${contenders[1].out}'`;
  contenders[2].command = `zstd -1 -T0 -q -c '${image}' > '${contenders[2].out}'`;
  if (flags.also !== undefined) {
    const out = `${dir}/also.lsnap`;
    contenders.push({
      name: `\`livesnap convert --from raw\` of ${flags.also}`,
      command: livesnap(flags.also, out),
      out,
      wall: [],
      cpu: [],
    });
  }
  await timed(`cat '${image}' > /dev/null`);
  // One unmeasured round: Deno's module cache, the disk cache of every program.
  for (const c of contenders) await timed(c.command);
  for (let r = 0; r < RUNS; r++) {
    for (const c of contenders) {
      const t = await timed(c.command);
      c.wall.push(t.wall);
      c.cpu.push(t.cpu);
      console.error(`${c.name}: ${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(2)} s CPU`);
    }
  }
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(
    `Image: ${MIB} MiB, the benchmarks' mix; ${RUNS} rotations; load average at the end ${load}; ` +
      `${navigator.hardwareConcurrency} CPUs.\n`,
  );
  console.log(
    "| command | wall s, median (min-max) | CPU s, median | speed vs `zstd -1`, median (min-max) | vs `zstd -1 -T0` | bytes | size vs `zstd -1` |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  const zstdBytes = (await Deno.stat(contenders[1].out)).size;
  for (const c of contenders) {
    const vs = (k: number) => c.wall.map((w, i) => contenders[k].wall[i] / w);
    const bytes = (await Deno.stat(c.out)).size;
    console.log(
      `| ${c.name} | ${median(c.wall).toFixed(2)} (${range(c.wall, 2)}) | ${
        median(c.cpu).toFixed(2)
      } | ${median(vs(1)).toFixed(2)}x (${range(vs(1), 2)}) | ${
        median(vs(2)).toFixed(2)
      }x | ${bytes} | ${(bytes / zstdBytes).toFixed(3)} |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
