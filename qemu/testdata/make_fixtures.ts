/**
 * Makes the QEMU stream fixtures in tests/fixtures/qemu/: one stream of each kind, compressed
 * with zstd, and manifest.json with what QEMU itself said about each (page counts from
 * `query-migrate`, the SHA-256 of its `pmemsave` dump of guest RAM).
 *
 * Run: `npx -y deno@2.9.6 run -A qemu/testdata/make_fixtures.ts` (needs qemu-system-riscv32 and
 * the zstd command).
 *
 * @module
 */
import { GUEST_RAM, makeStream, STREAM_KINDS } from "../_make_stream.ts";

const out = new URL("../../tests/fixtures/qemu/", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "livesnap-fixtures-" });
const manifest: Record<string, unknown> = {
  note: "Made by qemu/testdata/make_fixtures.ts with " + (await qemuVersion()),
  ram: GUEST_RAM,
  streams: {},
};
for (const kind of STREAM_KINDS) {
  const made = await makeStream(kind, `${dir}/${kind}.qemu`, dir);
  const entry: Record<string, unknown> = {
    file: `${kind}.qemu.zst`,
    size: (await Deno.stat(made.path)).size,
    passes: made.passes,
    normalPages: made.normalPages,
    zeroPages: made.zeroPages,
  };
  if (made.ramDump !== undefined) {
    const dump = await Deno.readFile(made.ramDump);
    entry.pmemsaveSha256 = toHex(await crypto.subtle.digest("SHA-256", dump));
  }
  const z = await new Deno.Command("zstd", {
    args: ["-19", "-q", "-f", made.path, "-o", `${out}${kind}.qemu.zst`],
  }).output();
  if (!z.success) throw new Error(`Cannot compress ${made.path}`);
  (manifest.streams as Record<string, unknown>)[kind] = entry;
  console.log(kind, entry);
}
await Deno.writeTextFile(`${out}manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
await Deno.remove(dir, { recursive: true });

function toHex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function qemuVersion(): Promise<string> {
  const o = await new Deno.Command("qemu-system-riscv32", { args: ["--version"] }).output();
  return new TextDecoder().decode(o.stdout).split("\n")[0];
}
