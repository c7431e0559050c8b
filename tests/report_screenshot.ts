/**
 * `deno task report:screenshot [OUT.png]`: makes the README's picture of a real report. It runs
 * memstress on the bundled machine, takes a live `cow` snapshot with a small copy buffer, writes
 * its report with the engine's metrics, opens it in headless Chromium, hovers the memory map and
 * saves the top of the page (default `docs/report.png`).
 *
 * @module
 */
import { Chromium } from "./_chromium.ts";

const out = Deno.args[0] ?? new URL("../docs/report.png", import.meta.url).pathname;
const cli = new URL("../tools/cli.ts", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "livesnap-screenshot-" });

async function livesnap(args: string[]): Promise<void> {
  // From the temporary directory, so that the page names the files as a reader would.
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", cli, ...args],
    cwd: dir,
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (o.code > 1) throw new Error(`livesnap ${args[0]} exited ${o.code}`);
}

try {
  // memstress as built (stores at random over a 4 MiB working set) in 16 MiB of RAM, a small
  // copy buffer: the pages the guest stores to first reach the file first and scattered, the
  // sweep writes the rest in address order, and the guest sometimes waits for a slot.
  const snap = "vm.lsnap";
  await livesnap([
    "run",
    new URL("../emulator/guests/build/memstress.elf", import.meta.url).pathname,
    "--ram",
    "16M",
    "--snapshot-at",
    "3000000",
    "--stop-at",
    "9000000",
    "--mode",
    "cow",
    "--cow-buffer",
    "256K",
    "--metrics",
    "vm.json",
    "--out",
    snap,
  ]);
  const html = `${dir}/vm.html`;
  await livesnap(["report", snap, "--metrics", "vm.json", "--out", html]);
  const browser = await Chromium.launch();
  try {
    const page = await browser.newPage();
    await page.setViewport(1200, 2300);
    await page.goto(`file://${html}`, `document.documentElement.dataset.ready === "1"`);
    // Show a hover on the map, as a reader would see it.
    const at = await page.evaluate<{ x: number; y: number }>(
      `(() => { const r = document.querySelector(".mapcanvas").getBoundingClientRect(); return { x: r.left + 96 + 200, y: r.top + 30 }; })()`,
    );
    await page.hover(at.x, at.y);
    await page.waitFor(`document.querySelector(".tip").style.display === "block"`, 10_000);
    await Deno.mkdir(new URL(".", `file://${out}`), { recursive: true });
    await page.screenshot(out);
    console.log(`wrote ${out}`);
  } finally {
    await browser.close();
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
