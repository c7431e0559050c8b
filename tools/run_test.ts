import { assertEquals, assertMatch, assertNotEquals, assertThrows } from "@std/assert/mod.js";
import { UsageError } from "./_command.ts";
import { LIMIT_EXIT_STATUS, parseRamSize, runGuest } from "./run.ts";
import { exitElf } from "../tests/_guests.ts";
import { machineContentDigest as machineDigest } from "../emulator/snapshot/machine_state.ts";
import { Machine } from "../emulator/machine.ts";

/** Discards guest UART output (the default sink is stdout). */
const QUIET = (_: Uint8Array) => {};

const GUESTS = new URL("../emulator/guests/build/", import.meta.url);
const HELLO = Deno.readFileSync(new URL("hello.elf", GUESTS));
const COUNTER = Deno.readFileSync(new URL("counter.elf", GUESTS));

Deno.test("parseRamSize() accepts binary units and rejects sizes the machine cannot have", () => {
  assertEquals(parseRamSize("128M"), 128 << 20);
  assertEquals(parseRamSize("1G"), 1 << 30);
  assertEquals(parseRamSize("64MiB"), 64 << 20);
  assertEquals(parseRamSize("8192"), 8192);
  assertThrows(() => parseRamSize("12x"), UsageError, "Cannot parse --ram: '12x' is not a size");
  assertThrows(
    () => parseRamSize("0"),
    UsageError,
    "Cannot parse --ram: '0' is not a positive size",
  );
  assertThrows(() => parseRamSize("1000"), UsageError, "multiple of 4096");
  assertThrows(() => parseRamSize("3G"), UsageError, "to 2 GiB");
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
  return await cliWithStdin(null, ...args);
}

async function cliWithStdin(
  stdin: string | null,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./cli.ts", import.meta.url).pathname, "run", ...args],
    stdin: stdin === null ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  if (stdin !== null) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await child.output();
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

const ECHO = new URL("../emulator/testdata/echo.elf", import.meta.url).pathname;

Deno.test("runGuest() feeds input to the guest's UART", () => {
  const out: number[] = [];
  const r = runGuest({
    elf: Deno.readFileSync(ECHO),
    ramSize: 1 << 20,
    input: new TextEncoder().encode("abc!"),
    sink: (b) => out.push(...b),
  });
  assertEquals(new TextDecoder().decode(Uint8Array.from(out)), "ABC!");
  assertEquals(r.exit, { reason: "exit", code: 4, device: "sifive_test" });
});

Deno.test("livesnap run --input reads a file or stdin; without it the guest sees no input", async () => {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, "xyz");
    const a = await cli(ECHO, "--ram", "1M", "--input", file);
    assertEquals([a.stdout, a.code], ["XYZ", 3]);
    const b = await cliWithStdin("hi", ECHO, "--ram", "1M", "--input", "-");
    assertEquals([b.stdout, b.code], ["HI", 2]);
    const c = await cliWithStdin("ignored", ECHO, "--ram", "1M");
    assertEquals([c.stdout, c.code], ["", 0]);
  } finally {
    await Deno.remove(file);
  }
});

// exitElf(7, 1000) exits with code 7 on its 3007th instruction.
const EXIT_7 = exitElf(7, 1000);
const EXIT_7_AT = 3007;

Deno.test("runGuest() maxInstructions stops a guest that has not finished, and only then", () => {
  const cut = runGuest({ elf: EXIT_7, ramSize: 1 << 20, maxInstructions: EXIT_7_AT - 1 });
  assertEquals([cut.exit, cut.limitReached, cut.retired], [
    { reason: "budget" },
    true,
    EXIT_7_AT - 1,
  ]);
  const done = runGuest({ elf: EXIT_7, ramSize: 1 << 20, maxInstructions: EXIT_7_AT });
  assertEquals([done.exit, done.limitReached], [
    { reason: "exit", code: 7, device: "sifive_test" },
    false,
  ]);
  // --stop-at is what was asked for: before the guard, or at the same count, it is no failure.
  for (const stopAt of [100, 200]) {
    const r = runGuest({ elf: COUNTER, ramSize: 1 << 20, stopAt, maxInstructions: 200 });
    assertEquals([r.exit, r.limitReached, r.retired], [{ reason: "budget" }, false, stopAt]);
  }
  const later = runGuest({ elf: COUNTER, ramSize: 1 << 20, stopAt: 300, maxInstructions: 200 });
  assertEquals([later.limitReached, later.retired], [true, 200]);
});

Deno.test("livesnap run --max-instructions exits 124 for a guest that hangs, the guest's own status otherwise", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const elf = `${dir}/exit7.elf`;
    await Deno.writeFile(elf, EXIT_7);
    const counter = new URL("counter.elf", GUESTS).pathname;
    const [hangs, live, ends, cut] = await Promise.all([
      cli(counter, "--ram", "1M", "--max-instructions", "300000"),
      cli(counter, "--ram", "1M", "--max-instructions", "300000", "--control", `${dir}/vm.sock`),
      cli(elf, "--ram", "1M", "--max-instructions", String(EXIT_7_AT)),
      cli(elf, "--ram", "1M", "--max-instructions", String(EXIT_7_AT - 1)),
    ]);
    for (const r of [hangs, live]) {
      assertEquals(r.code, LIMIT_EXIT_STATUS, r.stderr);
      assertEquals(
        r.stderr,
        "livesnap run: the guest did not finish within --max-instructions 300000; stopped (exit status 124)\n",
      );
    }
    assertEquals([ends.code, ends.stderr], [7, ""]);
    assertEquals(cut.code, LIMIT_EXIT_STATUS, cut.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("livesnap run rejects bad options with status 2", async () => {
  const hello = new URL("hello.elf", GUESTS).pathname;
  assertEquals((await cli(hello, "--bogus")).code, 2);
  for (const bad of ["x", "1e9", "12k"]) {
    const r = await cli(hello, "--max-instructions", bad);
    assertEquals(r.code, 2);
    assertEquals(
      r.stderr,
      `livesnap run: Cannot parse --max-instructions: '${bad}' is not an instruction count\n\n` +
        "Run 'livesnap run --help' for usage.\n",
    );
  }
  assertEquals((await cli(hello, "--ram", "7")).code, 2);
  assertEquals((await cli(hello, "--stop-at", "-5")).code, 2);
  const missing = await cli("no_such_guest.elf");
  assertEquals(missing.code, 1);
  assertMatch(missing.stderr, /Cannot read no_such_guest\.elf: /);
  const d = await cli(hello, "--digest");
  assertEquals(d.code, 2);
  assertMatch(d.stderr, /--digest needs --stop-at/);
});

Deno.test({
  name: "machineDigest() is the same for run N and run N/2 + save/restore + run N/2",
  fn: async () => {
    const a = Machine.fromElf(COUNTER, { ramSize: 16 << 20, uartSink: QUIET });
    a.run(2_000_000);
    const b = Machine.fromElf(COUNTER, { ramSize: 16 << 20, uartSink: QUIET });
    b.run(1_000_000);
    const c = new Machine({ ramSize: 16 << 20, uartSink: QUIET });
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
  fn: async () => {
    const counter = new URL("counter.elf", GUESTS).pathname;
    const r = await cli(counter, "--ram", "16M", "--stop-at", "2000000", "--digest");
    assertEquals(r.code, 0);
    const m = Machine.fromElf(COUNTER, { ramSize: 16 << 20, uartSink: QUIET });
    m.run(2_000_000);
    assertEquals(r.stdout.trimEnd().split("\n").at(-1), await machineDigest(m));
  },
});
