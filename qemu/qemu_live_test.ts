/**
 * Runs the real qemu-system-riscv32 when it is installed: makes a stream of each kind, converts
 * it with the `livesnap convert` command and checks what QEMU itself says (pmemsave, and that a
 * guest resumed from the written-back stream prints what a guest resumed from the original
 * prints).
 */
import { assert, assertEquals } from "@std/assert/mod.js";
import { main as livesnapConvert } from "../tools/convert_command.ts";
import { qemuTestGate } from "./_qmp.ts";
import { GUEST_RAM, makeStream, resumeStream, STREAM_KINDS } from "./_make_stream.ts";
import { readQemuSnapshot } from "./snapshot.ts";

const { ignore, suffix } = await qemuTestGate();

async function convert(...args: string[]): Promise<void> {
  const code = await livesnapConvert(["--quiet", ...args]);
  assertEquals(code, 0, `convert ${args.join(" ")}`);
}

for (const kind of STREAM_KINDS) {
  Deno.test({
    name: `livesnap convert round-trips a real QEMU ${kind} stream${suffix}`,
    ignore,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: `livesnap-qemu-${kind}-` });
      try {
        const made = await makeStream(kind, `${dir}/${kind}.qemu`, dir);
        if (kind === "multipass") assert(made.passes > 2, `passes: ${made.passes}`);
        await convert("--from", "qemu", made.path, `${dir}/${kind}.lsnap`);
        await convert("--to", "qemu", `${dir}/${kind}.lsnap`, `${dir}/back.qemu`);

        if (made.ramDump !== undefined) {
          await convert(
            "--to",
            "raw",
            "--region",
            GUEST_RAM.block,
            `${dir}/${kind}.lsnap`,
            `${dir}/ram.raw`,
          );
          const ours = await Deno.readFile(`${dir}/ram.raw`);
          const qemus = await Deno.readFile(made.ramDump);
          assertEquals(ours.length, qemus.length);
          assert(ours.every((b, i) => b === qemus[i]), "RAM differs from QEMU's pmemsave dump");
        }

        const original = await readQemuSnapshot([await Deno.readFile(made.path)]);
        const back = await readQemuSnapshot([await Deno.readFile(`${dir}/back.qemu`)]);
        assertEquals(back.devices, original.devices);

        const fromOriginal = await resumeStream(made.path, dir, 12);
        const fromBack = await resumeStream(`${dir}/back.qemu`, dir, 12);
        assertEquals(fromBack, fromOriginal);
        assert(fromOriginal.some((l) => /^round \d+ sum [0-9a-f]{8}$/.test(l)), fromOriginal[0]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
