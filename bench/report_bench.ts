/**
 * `livesnap report` at scale: for a live `cow` snapshot (16 MiB buffer) of memstress storing at
 * random over 3/4 of RAM (the layout that breaks a page map into the most runs: the pages the
 * guest touched first are scattered through the file), at each RAM size: the time `livesnap
 * report` takes (whole process), the size of the page, and the time to interactive in headless
 * Chromium: from the navigation's start to the page's `livesnap-interactive` mark, set once
 * every map and chart is drawn (median and worst of `--runs` loads, each in a fresh tab).
 *
 *   deno run -A bench/report_bench.ts [--sizes 64M,1G,2G] [--runs 5] [--json FILE] [--keep DIR]
 *
 * `--keep DIR` keeps each snapshot, metrics and report in DIR (`<size>.lsnap`, `.json`, `.html`).
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { LiveMachine } from "../emulator/snapshot/live_machine.ts";
import { memstressElf } from "../emulator/guests/memstress_config.ts";
import { Chromium } from "../tests/_chromium.ts";

const args = parseArgs(Deno.args, {
  string: ["sizes", "runs", "json", "keep"],
  default: { sizes: "64M,1G,2G", runs: "5" },
});
const MIB = 1024 * 1024;
const sizes = args.sizes.split(",").map((s: string) => {
  const m = /^(\d+)([MG])$/.exec(s.trim());
  if (m === null) throw new Error(`Cannot parse --sizes: '${s}' is not like 64M or 2G`);
  return Number(m[1]) * (m[2] === "G" ? 1024 * MIB : MIB);
});
const runs = Math.max(1, Number(args.runs));
const cli = new URL("../tools/cli.ts", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  ramBytes: number;
  snapshotBytes: number;
  pagesPresent: number;
  pagesViaBuffer: number;
  reportMs: number;
  reportBytes: number;
  interactiveMs: number[];
  busyMs: number[];
  loadAverage: number;
}

async function snapshot(ram: number, dir: string): Promise<{ path: string; metrics: string }> {
  const working = ram / 4 * 3;
  const lm = await LiveMachine.start({
    elf: memstressElf({ workingSetBytes: working, writesPerRound: 1 << 18, rounds: 0 }),
    ramSize: ram,
    uartSink: () => {},
  });
  try {
    // Let memstress touch its working set first (about 8 stores per page).
    const fill = (working / 4096) * 8 * 30;
    while ((await lm.status()).retired < fill) await sleep(100);
    const path = `${dir}/s.lsnap`;
    const m = await lm.snapshot({ mode: "cow", cowBuffer: 16 * MIB, path });
    const metrics = `${dir}/s.json`;
    await Deno.writeTextFile(metrics, JSON.stringify(m) + "\n");
    return { path, metrics };
  } finally {
    await lm.quit();
  }
}

async function measure(ram: number, browser: Chromium): Promise<Result> {
  const dir = await Deno.makeTempDir({ prefix: "livesnap-report-bench-" });
  try {
    const snap = await snapshot(ram, dir);
    const metricsLine = JSON.parse(await Deno.readTextFile(snap.metrics));
    const html = `${dir}/s.html`;
    const t0 = performance.now();
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, "report", snap.path, "--metrics", snap.metrics, "--out", html],
      stdout: "null",
      stderr: "inherit",
    }).output();
    const reportMs = performance.now() - t0;
    if (o.code !== 0) throw new Error(`livesnap report exited ${o.code}`);
    const data = JSON.parse(
      /<script type="application\/json" id="livesnap-data">(.*?)<\/script>/s.exec(
        await Deno.readTextFile(html),
      )![1],
    );
    const { wall: interactiveMs, busy: busyMs } = await load(browser, html);
    return {
      ramBytes: ram,
      snapshotBytes: (await Deno.stat(snap.path)).size,
      pagesPresent: data.files[0].inspect.pages.present,
      pagesViaBuffer: metricsLine.pagesViaBuffer,
      reportMs,
      reportBytes: (await Deno.stat(html)).size,
      interactiveMs,
      busyMs,
      loadAverage: Deno.loadavg()[0],
    };
  } finally {
    if (args.keep) {
      await Deno.mkdir(args.keep, { recursive: true });
      for (const ext of ["lsnap", "json", "html"]) {
        await Deno.rename(`${dir}/s.${ext}`, `${args.keep}/${fmt(ram).replace(" ", "")}.${ext}`)
          .catch(() => {});
      }
    }
    await Deno.remove(dir, { recursive: true });
  }
}

const fmt = (n: number) => n >= 1024 * MIB ? `${n / 1024 / MIB} GiB` : `${n / MIB} MiB`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Loads `html` `runs` times in fresh tabs: wall-clock ms to the mark, and main-thread task ms. */
async function load(browser: Chromium, html: string): Promise<{ wall: number[]; busy: number[] }> {
  const wall: number[] = [];
  const busy: number[] = [];
  for (let i = 0; i < runs; i++) {
    const page = await browser.newPage();
    await page.setViewport(1280, 900);
    await page.send("Performance.enable");
    await page.goto(`file://${html}`, `document.documentElement.dataset.ready`, 120_000);
    const ready = await page.evaluate<string>("document.documentElement.dataset.ready");
    if (ready !== "1") throw new Error(`the page failed: ${JSON.stringify(page.messages)}`);
    wall.push(
      await page.evaluate<number>(
        "performance.getEntriesByName('livesnap-interactive')[0].startTime",
      ),
    );
    const { metrics } = await page.send("Performance.getMetrics") as {
      metrics: { name: string; value: number }[];
    };
    busy.push(1000 * (metrics.find((m) => m.name === "TaskDuration")?.value ?? NaN));
    await page.send("Page.close").catch(() => {});
  }
  return { wall, busy };
}

const browser = await Chromium.launch();
const results: Result[] = [];
// The baseline, in the same browser and run: a page that only sets the same mark (what opening
// any page costs here, under the machine's load at the time).
const blankDir = await Deno.makeTempDir({ prefix: "livesnap-report-bench-" });
const blank = `${blankDir}/blank.html`;
await Deno.writeTextFile(
  blank,
  `<!doctype html><html><body><p>blank</p><script>requestAnimationFrame(() => { document.documentElement.dataset.ready = "1"; performance.mark("livesnap-interactive"); });</script></body></html>`,
);
try {
  const b = await load(browser, blank);
  console.error(`blank page: ${JSON.stringify(b)}`);
  results.push({
    ramBytes: 0,
    snapshotBytes: 0,
    pagesPresent: 0,
    pagesViaBuffer: 0,
    reportMs: 0,
    reportBytes: (await Deno.stat(blank)).size,
    interactiveMs: b.wall,
    busyMs: b.busy,
    loadAverage: Deno.loadavg()[0],
  });
} finally {
  await Deno.remove(blankDir, { recursive: true });
}
try {
  for (const ram of sizes) {
    const r = await measure(ram, browser);
    results.push(r);
    console.error(`${fmt(ram)}: ${JSON.stringify(r)}`);
  }
} finally {
  await browser.close();
}
console.log(
  "| RAM | snapshot | pages present | via the buffer | `livesnap report` | report size | interactive, median | worst | main thread busy, median | load |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const r of results) {
  if (r.ramBytes === 0) {
    console.log(
      `| blank page (baseline) | | | | | ${r.reportBytes} B | ${
        median(r.interactiveMs).toFixed(0)
      } ms | ${Math.max(...r.interactiveMs).toFixed(0)} ms | ${median(r.busyMs).toFixed(0)} ms | ${
        r.loadAverage.toFixed(1)
      } |`,
    );
    continue;
  }
  console.log(
    `| ${fmt(r.ramBytes)} | ${
      (r.snapshotBytes / MIB).toFixed(1)
    } MiB | ${r.pagesPresent} | ${r.pagesViaBuffer} | ${(r.reportMs / 1000).toFixed(1)} s | ${
      (r.reportBytes / MIB).toFixed(2)
    } MiB | ${median(r.interactiveMs).toFixed(0)} ms | ${
      Math.max(...r.interactiveMs).toFixed(0)
    } ms | ${median(r.busyMs).toFixed(0)} ms | ${r.loadAverage.toFixed(1)} |`,
  );
}
if (args.json) await Deno.writeTextFile(args.json, JSON.stringify(results, null, 2));
