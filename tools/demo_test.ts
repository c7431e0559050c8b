// `deno task demo` checks what it shows: a small run passes every check, and its exit status
// follows them (tools/demo.ts's main ends with "demo: all N checks passed" or exits 1).
import { assert, assertEquals } from "@std/assert/mod.js";
import { demo } from "./demo.ts";

Deno.test("demo() checks each claim it shows and all of them hold", async () => {
  const lines: string[] = [];
  const r = await demo({
    ram: 16 << 20,
    workingSet: 2 << 20,
    snapshotAt: 3_000_000,
    stopAt: 8_000_000,
    print: (l) => lines.push(l),
  });
  assertEquals(r.failed, []);
  assertEquals(r.checks, 8);
  const text = lines.join("\n");
  assert(text.includes("restored output = the original's output after the snapshot: true"), text);
  assert(text.includes("restored vs original: identical"), text);
});
