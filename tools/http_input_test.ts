/**
 * The commands read an http(s) URL as they read a file: inspect, verify and restore, against a
 * Range server on the loopback address.
 */
import { assert, assertEquals, assertRejects } from "@std/assert/mod.js";
import { Machine } from "../emulator/machine.ts";
import { saveMachine } from "../emulator/snapshot/save.ts";
import { SourceHttpError } from "../format/random_access_source.ts";
import { startRangeServer } from "../tests/_range_server.ts";
import { description, makeRam, writeToBytes } from "../tests/_snapshots.ts";
import { restoreSnapshot } from "./restore.ts";

const CLI = new URL("./cli.ts", import.meta.url).pathname;
const BASIC = new URL("../tests/fixtures/v1_basic.lsnap", import.meta.url).pathname;
const ELF = Deno.readFileSync(new URL("../emulator/guests/build/counter.elf", import.meta.url));

async function livesnap(...args: string[]) {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code: o.code, out: text.decode(o.stdout), err: text.decode(o.stderr) };
}

Deno.test("inspect and verify read a URL as they read the file", async () => {
  const bytes = await Deno.readFile(BASIC);
  const server = startRangeServer({ body: bytes });
  try {
    const [fromFile, fromUrl] = [
      await livesnap("inspect", "--json", BASIC),
      await livesnap(
        "inspect",
        "--json",
        server.url,
      ),
    ];
    assertEquals([fromUrl.code, fromUrl.err], [0, ""]);
    assertEquals(JSON.parse(fromUrl.out), JSON.parse(fromFile.out));
    const verified = await livesnap("verify", "--json", server.url);
    assertEquals(verified.code, 0, verified.err);
    assertEquals(
      JSON.parse(verified.out),
      JSON.parse((await livesnap("verify", "--json", BASIC)).out),
    );
  } finally {
    await server.close();
  }
});

Deno.test("inspect --device reads a URL's footer, index and device records only", async () => {
  // 8 MiB of RAM, a third of it random: the device records are a small part of the file.
  const bytes = await writeToBytes({ description: description(2048), ram: makeRam(2048, 3) });
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.lsnap`;
  await Deno.writeFile(path, bytes);
  const server = startRangeServer({ body: bytes });
  try {
    const fromUrl = await livesnap("inspect", "--device", "uart", server.url);
    assertEquals(fromUrl.code, 0, fromUrl.err);
    assertEquals(fromUrl.out, (await livesnap("inspect", "--device", "uart", path)).out);
    const fetched = server.ranges.map((r) => {
      const [a, b] = r.slice("bytes=".length).split("-").map(Number);
      return b - a + 1;
    }).reduce((x, y) => x + y, 0);
    assert(
      fetched < bytes.length / 10,
      `fetched ${fetched} of ${bytes.length} bytes: ${server.ranges.join(" ")}`,
    );
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restoreSnapshot() from a URL continues exactly as from the file", async () => {
  const m = Machine.fromElf(ELF, { ramSize: 4 << 20, uartSink: () => {} });
  m.run(300_000);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.lsnap`;
  await saveMachine(m, path);
  const server = startRangeServer({ body: await Deno.readFile(path) });
  try {
    const outputs: string[] = [];
    const digests: string[] = [];
    for (const input of [path, server.url]) {
      let out = "";
      const r = await restoreSnapshot({
        path: input,
        stopAt: 900_000,
        sink: (b) => out += new TextDecoder().decode(b),
      });
      outputs.push(out);
      digests.push(r.contentDigest);
      assertEquals(r.retired, 900_000);
    }
    assert(outputs[0].length > 0);
    assertEquals(outputs[1], outputs[0]);
    assertEquals(digests[1], digests[0]);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("restore from a URL whose server goes away mid-read: a clear error, exit 1", async () => {
  const m = Machine.fromElf(ELF, { ramSize: 4 << 20, uartSink: () => {} });
  m.run(100_000);
  // Random bytes the guest never reads, so the file is larger than the first request.
  crypto.getRandomValues(m.ram.bytes.subarray(2 << 20, (2 << 20) + 65536));
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.lsnap`;
  await saveMachine(m, path);
  // The probe is answered; every later answer is cut off halfway.
  const server = startRangeServer({
    body: await Deno.readFile(path),
    misbehaveAfter: 1,
    dropBodies: 1000,
  });
  try {
    const e = await assertRejects(
      () => restoreSnapshot({ path: server.url, stopAt: 200_000, sink: () => {} }),
      SourceHttpError,
    );
    assert(e.message.startsWith(`Cannot read ${server.url} at byte `), e.message);
    const cli = await livesnap("restore", server.url, "--stop-at", "200000");
    assertEquals(cli.code, 1);
    assert(
      /^livesnap restore: Cannot read http:\/\/127\.0\.0\.1:\d+\/vm\.lsnap at byte \d+ \(\d+ bytes\): the answer was cut off after \d+ of \d+ bytes: .*\n$/
        .test(cli.err),
      cli.err,
    );
    const live = await livesnap("restore", server.url, "--snapshot-at", "0", "--out", "x.lsnap");
    assertEquals(live.code, 2);
    assert(live.err.includes("a live restore reads a local file"), live.err);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
