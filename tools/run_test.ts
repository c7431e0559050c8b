import { assertEquals, assertMatch, assertNotEquals, assertThrows } from "@std/assert/mod.js";
import { parseRamSize, runGuest } from "./run.ts";
import { machineDigest } from "./machine_digest.ts";
import { Machine } from "../emulator/machine.ts";

const GUESTS = new URL("../emulator/guests/build/", import.meta.url);
const HELLO = Deno.readFileSync(new URL("hello.elf", GUESTS));
const COUNTER = Deno.readFileSync(new URL("counter.elf", GUESTS));
const HAS_FORMAT = (() => {
  try {
    Deno.statSync(new URL("../format/content_digest.ts", import.meta.url));
    return true;
  } catch {
    return false;
  }
})();

Deno.test("parseRamSize() accepts binary units and rejects sizes the machine cannot have", () => {
  assertEquals(parseRamSize("128M"), 128 << 20);
  assertEquals(parseRamSize("1G"), 1 << 30);
  assertEquals(parseRamSize("64MiB"), 64 << 20);
  assertEquals(parseRamSize("8192"), 8192);
  assertThrows(() => parseRamSize("12x"), RangeError, "Cannot parse RAM size '12x'");
  assertThrows(() => parseRamSize("1000"), RangeError, "multiple of 4096");
  assertThrows(() => parseRamSize("3G"), RangeError, "to 2 GiB");
});

Deno.test("runGuest() runs to power-off and reports the exit", () => {
  const out: number[] = [];
  const r = runGuest({ elf: HELLO, ramSize: 1 << 20, sink: (b) => out.push(...b) });
  assertEquals(r.exit, { reason: "exit", code: 0, device: "sifive_test" });
  assertMatch(new TextDecoder().decode(Uint8Array.from(out)), /^Hello from/);
});

Deno.test("runGuest() with stopAt retires exactly that many instructions", () => {
  const r = runGuest({ elf: COUNTER, ramSize: 16 << 20, stopAt: 123_457 });
  assertEquals(r.exit, { reason: "budget" });
  assertEquals(r.retired, 123_457);
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./cli.ts", import.meta.url).pathname, "run", ...args],
    stdout: "piped",
    stderr: "piped",
  });
  const o = await cmd.output();
  const dec = new TextDecoder();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

Deno.test("livesnap run prints the guest's output and exits with its code", async () => {
  const r = await cli(new URL("hello.elf", GUESTS).pathname, "--ram", "16M");
  assertEquals(r.code, 0);
  assertEquals(
    r.stdout,
    Deno.readTextFileSync(new URL("../expected/hello.txt", GUESTS)),
  );
});

Deno.test("livesnap run rejects bad options with status 2", async () => {
  const hello = new URL("hello.elf", GUESTS).pathname;
  assertEquals((await cli(hello, "--bogus")).code, 2);
  assertEquals((await cli(hello, "--ram", "7")).code, 2);
  assertEquals((await cli(hello, "--stop-at", "-5")).code, 2);
  const d = await cli(hello, "--digest");
  assertEquals(d.code, 2);
  assertMatch(d.stderr, /--digest needs --stop-at/);
});

Deno.test({
  name: "machineDigest() is the same for run N and run N/2 + save/restore + run N/2",
  ignore: !HAS_FORMAT,
  fn: async () => {
    const a = Machine.fromElf(COUNTER, { ramSize: 16 << 20 });
    a.run(2_000_000);
    const b = Machine.fromElf(COUNTER, { ramSize: 16 << 20 });
    b.run(1_000_000);
    const c = new Machine({ ramSize: 16 << 20 });
    c.ram.bytes.set(b.ram.bytes);
    c.restore(b.save());
    c.run(1_000_000);
    const da = await machineDigest(a);
    assertMatch(da, /^[0-9a-f]{64}$/);
    assertEquals(await machineDigest(c), da);
    a.run(1);
    assertNotEquals(await machineDigest(a), da);
  },
});

Deno.test({
  name: "livesnap run --stop-at N --digest prints the digest on its own line",
  ignore: !HAS_FORMAT,
  fn: async () => {
    const counter = new URL("counter.elf", GUESTS).pathname;
    const r = await cli(counter, "--ram", "16M", "--stop-at", "2000000", "--digest");
    assertEquals(r.code, 0);
    const m = Machine.fromElf(COUNTER, { ramSize: 16 << 20 });
    m.run(2_000_000);
    assertEquals(r.stdout.trimEnd().split("\n").at(-1), await machineDigest(m));
  },
});
