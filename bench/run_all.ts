/**
 * `deno task bench`: runs every benchmark script in turn. Add one line per benchmark.
 *
 * @module
 */
const BENCHES = [
  "format_bench.ts",
  "write_bench.ts",
  "live_snapshot_bench.ts",
  "live_pause_bench.ts",
  "cow_copy_bench.ts",
  "tools_bench.ts",
  "verify_bench.ts",
  "incremental_bench.ts",
  "chain_bench.ts",
];

for (const name of BENCHES) {
  console.log(`\n## ${name}\n`);
  const path = new URL(`./${name}`, import.meta.url).pathname;
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", path],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!o.success) Deno.exit(o.code || 1);
}
