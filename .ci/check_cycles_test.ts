import { assertEquals, assertMatch } from "@std/assert/mod.js";

const SCRIPT = new URL("./check_cycles.ts", import.meta.url).pathname;

/** Runs the script over a scratch repository made of `files`; its exit code and output. */
async function checkCycles(files: Record<string, string>) {
  const dir = await Deno.makeTempDir({ prefix: "check_cycles_test_" });
  try {
    await Deno.writeTextFile(`${dir}/deno.json`, "{}");
    for (const [name, text] of Object.entries(files)) {
      await Deno.mkdir(`${dir}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", SCRIPT, dir],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: out.code, text: decode(out.stdout) + decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check_cycles.ts passes a graph without a circle", async () => {
  const r = await checkCycles({
    "a.ts": 'import { b } from "./lib/b.ts";\nexport const a = b;\n',
    "lib/b.ts": "export const b = 1;\n",
  });
  assertEquals(r.code, 0, r.text);
  assertMatch(r.text, /no import cycle among 2 modules/);
});

Deno.test("check_cycles.ts fails on a circle of type-only imports and names it", async () => {
  const r = await checkCycles({
    "a.ts": 'import type { B } from "./lib/b.ts";\nexport type A = B | 1;\n',
    "lib/b.ts": 'import type { A } from "../a.ts";\nexport type B = { a?: A };\n',
    "c.ts": 'import "./a.ts";\n',
  });
  assertEquals(r.code, 1, r.text);
  assertMatch(r.text, /1 import cycle\(s\):\n {2}a\.ts -> lib\/b\.ts -> a\.ts/);
});

Deno.test("check_cycles.ts follows dynamic import() too", async () => {
  const r = await checkCycles({
    "a.ts": 'export const load = () => import("./b.ts");\n',
    "b.ts": 'import { load } from "./a.ts";\nexport const again = load;\n',
  });
  assertEquals(r.code, 1, r.text);
  assertMatch(r.text, /a\.ts -> b\.ts -> a\.ts/);
});
