import { assert, assertEquals, assertMatch } from "@std/assert/mod.js";
import { loadFixture } from "../qemu/_fixtures_test_util.ts";
import { main as convert } from "./qemu_convert_command.ts";
import { main as inspect } from "./qemu_inspect_command.ts";

async function capture(
  fn: () => Promise<number>,
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    return { code: await fn(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("qemu-inspect --json prints the summary of a stream", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/s.qemu`, await loadFixture("background"));
    const r = await capture(() => inspect(["--json", `${dir}/s.qemu`]));
    assertEquals(r.code, 0, r.err);
    const s = JSON.parse(r.out);
    assertEquals([s.format, s.machine, s.devices.length], ["qemu-migration-stream", "virt", 15]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu-inspect and qemu-convert report a damaged stream with its offset and exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/cut.qemu`, (await loadFixture("paused")).subarray(0, 5000));
    const a = await capture(() => inspect([`${dir}/cut.qemu`]));
    assertEquals(a.code, 1);
    assertMatch(
      a.err,
      /^livesnap qemu-inspect: Cannot read QEMU stream at byte \d+: the stream ends/,
    );
    const b = await capture(() =>
      convert(["--from", "qemu", `${dir}/cut.qemu`, `${dir}/out.lsnap`])
    );
    assertEquals(b.code, 1);
    assertMatch(b.err, /Cannot read QEMU stream at byte \d+/);
    // A failed conversion leaves no output file behind.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["cut.qemu"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu-convert refuses bad arguments with exit code 2", async () => {
  for (
    const args of [
      ["a", "b"],
      ["--to", "raw", "a", "b"],
      ["--from", "qemu", "a"],
      ["--from", "qemu", "--base", "ram", "a", "b"],
      ["--bogus", "a", "b"],
    ]
  ) {
    const r = await capture(() => convert(args));
    assertEquals(r.code, 2, args.join(" "));
    assert(r.err.startsWith("livesnap qemu-convert: "), r.err);
  }
});
