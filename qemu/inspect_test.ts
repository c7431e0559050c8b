import { assert, assertEquals } from "@std/assert/mod.js";
import { loadFixture, loadManifest } from "./_fixtures_test_util.ts";
import { STREAM_KINDS } from "./_make_stream.ts";
import { formatQemuSummary, inspectQemuStream } from "./inspect.ts";

Deno.test("inspectQemuStream() counts sections and pages like QEMU's own counters", async () => {
  const manifest = await loadManifest();
  for (const kind of STREAM_KINDS) {
    const bytes = await loadFixture(kind);
    const s = await inspectQemuStream([bytes]);
    assertEquals([s.version, s.machine, s.pageSize, s.bytes], [3, "virt", 4096, bytes.length]);
    const normal = s.ram.blocks.reduce((n, b) => n + b.normalRecords, 0);
    const zero = s.ram.blocks.reduce((n, b) => n + b.zeroRecords, 0);
    assertEquals([normal, zero], [
      manifest.streams[kind].normalPages,
      manifest.streams[kind].zeroPages,
    ]);
    assertEquals(s.sectionCounts.FULL, 15);
    assertEquals(s.sectionCounts.START, 1);
    // A background snapshot ends RAM with PART sections only; precopy sends END.
    assertEquals(s.sectionCounts.END, kind === "background" ? undefined : 1);
    assert(s.ram.blocks.every((b) => b.unsentPages === 0));
    const resent = s.ram.blocks.reduce((n, b) => n + b.resentRecords, 0);
    assertEquals(resent > 0, kind === "live" || kind === "multipass", `${kind}: ${resent} resent`);
    assertEquals(JSON.parse(JSON.stringify(s)), s);
  }
});

Deno.test("inspectQemuStream() decodes every device through the JSON description", async () => {
  const s = await inspectQemuStream([await loadFixture("paused")]);
  for (const d of s.devices) assert(d.decoded, `${d.idstr}: ${d.decodeError}`);
  const cpu = s.devices.find((d) => d.idstr === "cpu")!;
  assertEquals(cpu.vmsdName, "cpu");
  // The paused guest is somewhere in its own code, which starts at 0x8000_0000.
  const pc = Number(cpu.fields!["env.pc"]);
  assert(pc >= 0x8000_0000 && pc < 0x8000_1000, `pc ${pc.toString(16)}`);
  const gpr = cpu.fields!["env.gpr"] as string[];
  assertEquals(gpr.length, 32);
  assertEquals(gpr[0], "0x00000000");
  const state = s.devices.find((d) => d.idstr === "globalstate")!;
  assert(String(state.fields!["runstate"]).startsWith("70 61 75 73 65 64"), "runstate 'paused'");
  const text = formatQemuSummary(s, { fields: true });
  assert(text.includes("riscv_virt_board.ram: 64 MiB, 16384 pages"), text);
  assert(text.includes("env.pc = 0x800"), text);
});
