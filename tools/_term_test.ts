import { assertEquals, assertMatch } from "@std/assert/mod.js";
import {
  colorEnabled,
  createProgress,
  formatBytes,
  formatDuration,
  formatRate,
  palette,
} from "./_term.ts";

Deno.test("formatBytes() prints binary units with three significant digits", () => {
  assertEquals(formatBytes(0), "0 B");
  assertEquals(formatBytes(1023), "1023 B");
  assertEquals(formatBytes(1024), "1.00 KiB");
  assertEquals(formatBytes(1536), "1.50 KiB");
  assertEquals(formatBytes(10 * 1024 * 1024), "10.0 MiB");
  assertEquals(formatBytes(300 * 1024 * 1024), "300 MiB");
  assertEquals(formatBytes(1024 ** 3), "1.00 GiB");
  assertEquals(formatBytes(-2048), "-2.00 KiB");
});

Deno.test("formatRate() and formatDuration() print human units", () => {
  assertEquals(formatRate(512 * 1024 * 1024), "512 MiB/s");
  assertEquals(formatRate(-1), "? B/s");
  assertEquals(formatDuration(42), "42s");
  assertEquals(formatDuration(185), "3m05s");
  assertEquals(formatDuration(3720), "1h02m");
  assertEquals(formatDuration(Infinity), "?");
});

Deno.test("colorEnabled() is false when NO_COLOR is set, whatever the stream", () => {
  const before = Deno.env.get("NO_COLOR");
  const tty = { isTerminal: () => true };
  try {
    Deno.env.set("NO_COLOR", "1");
    assertEquals(colorEnabled(tty), false);
    Deno.env.delete("NO_COLOR");
    assertEquals(colorEnabled(tty), true);
    assertEquals(colorEnabled({ isTerminal: () => false }), false);
  } finally {
    if (before === undefined) Deno.env.delete("NO_COLOR");
    else Deno.env.set("NO_COLOR", before);
  }
});

Deno.test("palette() adds ANSI codes only when enabled", () => {
  assertEquals(palette(false).red("x"), "x");
  assertEquals(palette(true).red("x"), "\x1b[31mx\x1b[39m");
});

Deno.test("createProgress() draws bytes, rate and time left when enabled", () => {
  const out: string[] = [];
  let clock = 0;
  const p = createProgress({
    label: "verify",
    total: 4 * 1024 * 1024,
    enabled: true,
    write: (t) => out.push(t),
    now: () => clock,
    intervalMs: 0,
  });
  clock = 1000;
  p.add(1024 * 1024);
  assertEquals(p.bytes, 1024 * 1024);
  assertMatch(out.at(-1)!, /verify: 1\.00 MiB of 4\.00 MiB \(25%\), 1\.00 MiB\/s, 3s left/);
  p.done();
  assertEquals(out.at(-1), "\r\x1b[2K");
});

Deno.test("createProgress() writes nothing when disabled", () => {
  const out: string[] = [];
  const p = createProgress({ label: "x", enabled: false, write: (t) => out.push(t) });
  p.add(10);
  p.set(20);
  p.done();
  assertEquals(out, []);
  assertEquals(p.bytes, 20);
});

Deno.test("createProgress() redraws at most once per interval", () => {
  const out: string[] = [];
  let clock = 0;
  const p = createProgress({
    label: "x",
    enabled: true,
    write: (t) => out.push(t),
    now: () => clock,
    intervalMs: 100,
  });
  p.add(1);
  p.add(1);
  clock = 50;
  p.add(1);
  clock = 150;
  p.add(1);
  assertEquals(out.length, 2);
});
