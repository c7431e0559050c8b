/**
 * Makes the fixtures of cross-emulator resume in tests/fixtures/qemu-virt/: QEMU 7.2 streams of
 * guests that livesnap's machine must resume, zstd-compressed, and manifest.json with what each
 * must print from its restore point on (taken from QEMU itself):
 *
 * - `checkpoint-{paused,live,multipass,background}.qemu.zst`: the checkpoint guest saved in
 *   each way; `txCount` is how many bytes it had handed to its UART (read from the stream's
 *   RAM), `expected` the bytes an uninterrupted QEMU run prints from there on.
 * - `sleeper-halted.qemu.zst`: the sleeper guest paused while it sleeps in wfi
 *   (cpu_common.halted = 1); `expected` is what QEMU's own run prints after what it had printed.
 * - `hello-reset.qemu.zst`: the hello guest saved before its first instruction (`-S`: the hart is
 *   in the mask ROM's reset vector at 0x1000); `expected` is its whole output.
 *
 * Run: `npx -y deno@2.9.6 run -A qemu/testdata/make_virt_fixtures.ts` (needs qemu-system-riscv32
 * and the zstd command).
 *
 * @module
 */
import { parseElf } from "../../emulator/elf.ts";
import { makeStream, STREAM_KINDS, uninterruptedOutput, waitForBytes } from "../_make_stream.ts";
import { startQemu, waitForMigration } from "../_qmp.ts";
import { readQemuSnapshot } from "../snapshot.ts";
import { decodeVmState } from "../vmstate_decode.ts";

const GUESTS = new URL("../../emulator/guests/", import.meta.url);
const OUT = new URL("../../tests/fixtures/qemu-virt/", import.meta.url).pathname;
const MEMORY = "16M";
/** Bytes of output each fixture must reproduce after its restore point. */
const CONTINUATION = 2000;

const elf = (name: string) => new URL(`build/${name}.elf`, GUESTS).pathname;
const dir = await Deno.makeTempDir({ prefix: "livesnap-virt-fixtures-" });
await Deno.mkdir(OUT, { recursive: true });

async function compress(path: string, name: string): Promise<number> {
  const z = await new Deno.Command("zstd", {
    args: ["-19", "-q", "-f", path, "-o", `${OUT}${name}`],
  }).output();
  if (!z.success) throw new Error(`Cannot compress ${path}`);
  return (await Deno.stat(path)).size;
}

/** A device's decoded field from a stream, through its own JSON description. */
async function field(path: string, idstr: string, name: string): Promise<string> {
  const snap = await readQemuSnapshot([await Deno.readFile(path)]);
  const d = snap.devices.find((x) => x.idstr === idstr)!;
  const desc = snap.vmdesc!.devices.find((x) => x.name === idstr)!;
  return decodeVmState(d.data, desc).fields[name] as string;
}

/** The guest's `tx_count` word as the stream's RAM holds it. */
async function txCount(path: string): Promise<number> {
  const at = parseElf(await Deno.readFile(elf("checkpoint"))).symbols.get("tx_count")! -
    0x8000_0000;
  const snap = await readQemuSnapshot([await Deno.readFile(path)]);
  const page = snap.pages.get("riscv_virt_board.ram")!.get(at & ~4095);
  return page === undefined
    ? 0
    : new DataView(page.buffer, page.byteOffset).getUint32(at & 4095, true);
}

const manifest: Record<string, unknown> = {
  note: "Made by qemu/testdata/make_virt_fixtures.ts with " + (await qemuVersion()),
  memory: MEMORY,
  streams: {},
};
const streams = manifest.streams as Record<string, unknown>;

const checkpoint: Record<string, { tx: number; facts: Record<string, unknown> }> = {};
for (const kind of STREAM_KINDS) {
  const path = `${dir}/checkpoint-${kind}.qemu`;
  const made = await makeStream(kind, path, dir, {
    kernel: elf("checkpoint"),
    lines: 20,
    memory: MEMORY,
  });
  const tx = await txCount(path);
  checkpoint[kind] = {
    tx,
    facts: {
      file: `checkpoint-${kind}.qemu.zst`,
      guest: "checkpoint",
      size: await compress(path, `checkpoint-${kind}.qemu.zst`),
      passes: made.passes,
      txCount: tx,
    },
  };
  console.log(kind, checkpoint[kind].facts);
}
const most = Math.max(...Object.values(checkpoint).map((c) => c.tx));
const reference = await uninterruptedOutput(
  elf("checkpoint"),
  dir,
  most + CONTINUATION,
  MEMORY,
  120_000,
);
for (const [kind, c] of Object.entries(checkpoint)) {
  streams[`checkpoint-${kind}`] = {
    ...c.facts,
    expected: reference.slice(c.tx, c.tx + CONTINUATION),
  };
}

// sleeper, paused while asleep in wfi: try until the stream says halted.
for (let attempt = 0;; attempt++) {
  const path = `${dir}/sleeper-halted.qemu`;
  const made = await makeStream("paused", path, dir, {
    kernel: elf("sleeper"),
    lines: 2,
    memory: MEMORY,
  });
  if ((await field(path, "cpu_common", "halted")) === "0x00000001") {
    const recorded = await Deno.readTextFile(new URL("expected/sleeper.txt", GUESTS));
    if (!recorded.startsWith(made.serial)) throw new Error("sleeper printed something else");
    streams["sleeper-halted"] = {
      file: "sleeper-halted.qemu.zst",
      guest: "sleeper",
      size: await compress(path, "sleeper-halted.qemu.zst"),
      printed: made.serial.length,
      expected: recorded.slice(made.serial.length),
      exit: 0,
    };
    break;
  }
  if (attempt === 5) throw new Error("Cannot catch sleeper asleep in wfi");
}

// hello, saved before its first instruction.
{
  const path = `${dir}/hello-reset.qemu`;
  const q = await startQemu({
    kernel: elf("hello"),
    serialFile: `${dir}/hello.serial`,
    memory: MEMORY,
    extra: ["-S"],
  });
  try {
    await q.qmp.execute("migrate", { uri: `exec:cat > '${path}'` });
    await waitForMigration(q.qmp);
  } finally {
    await q.stop();
  }
  const expected = await Deno.readTextFile(new URL("expected/hello.txt", GUESTS));
  streams["hello-reset"] = {
    file: "hello-reset.qemu.zst",
    guest: "hello",
    size: await compress(path, "hello-reset.qemu.zst"),
    pc: await field(path, "cpu", "env.pc"),
    expected,
    exit: 0,
  };
  // The stream must not be of a hart that already ran: nothing printed yet.
  await waitForBytes(`${dir}/hello.serial`, 0, 1000);
}

await Deno.writeTextFile(`${OUT}manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
await Deno.remove(dir, { recursive: true });

async function qemuVersion(): Promise<string> {
  const o = await new Deno.Command("qemu-system-riscv32", { args: ["--version"] }).output();
  return new TextDecoder().decode(o.stdout).split("\n")[0];
}
