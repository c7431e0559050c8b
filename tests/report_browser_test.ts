/**
 * `livesnap report` in a real browser: reports of a cow snapshot, a precopy snapshot, a QEMU
 * stream, a damaged file, a diff map and a chain of diffs (whole, then broken) are opened in
 * headless Chromium; the numbers the page renders
 * (computed by its script from the packed page and record columns) must equal what
 * `inspect --json`, `verify --json`, `diff --json` and the metrics file say, the page must log no
 * error and fetch nothing but itself, hovering the map must name the guest address and the
 * record's offset, and each page is screenshotted. Without Chromium the tests are skipped with a
 * warning, except under CI (`CI` set), where they fail.
 */
import { assert, assertEquals, assertGreater } from "@std/assert/mod.js";
import { Chromium, findChromium, type Page } from "./_chromium.ts";
import { inCi } from "./_external_tools.ts";
import { zstdDecompressExact, zstdFrameContentSize } from "../format/_zstd.ts";

const CLI = new URL("../tools/cli.ts", import.meta.url).pathname;
const MEMSTRESS = new URL("../emulator/guests/build/memstress.elf", import.meta.url).pathname;
const QEMU_FIXTURES = new URL("./fixtures/qemu/", import.meta.url);
const CHROMIUM = findChromium();
const IN_CI = inCi();

if (CHROMIUM === null && !IN_CI) {
  console.warn(
    "report_browser_test: Chromium is not installed (apt-get install chromium): skipping the browser tests",
  );
}

/** Runs the livesnap command line; at most `timeoutMs`. */
async function livesnap(
  args: string[],
  timeoutMs = 120_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

async function json<T>(args: string[]): Promise<T> {
  const r = await livesnap(args);
  return JSON.parse(r.stdout) as T;
}

/** The `data-key` values the page rendered, as numbers where they are numbers. */
async function renderedValues(page: Page): Promise<Record<string, string>> {
  return await page.evaluate<Record<string, string>>(
    `Object.fromEntries([...document.querySelectorAll("[data-key]")].map((e) => [e.dataset.key, e.dataset.value ?? e.textContent]))`,
  );
}

/** Opens a report, waits until it is drawn, checks what every report must satisfy. */
async function openReport(browser: Chromium, html: string, shot: string): Promise<Page> {
  const page = await browser.newPage();
  await page.setViewport(1280, 900);
  const url = `file://${html}`;
  await page.goto(url, `document.documentElement.dataset.ready`, 60_000);
  assertEquals(
    await page.evaluate("document.documentElement.dataset.ready"),
    "1",
    `the page failed to draw: ${JSON.stringify(page.messages)}`,
  );
  await page.screenshot(shot, { fullPage: true });
  const png = await Deno.readFile(shot);
  assertEquals([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG screenshot");
  assertGreater(png.length, 10_000);
  return page;
}

function assertQuiet(page: Page): void {
  const bad = page.messages.filter((m) => ["error", "exception", "warning"].includes(m.level));
  assertEquals(bad, [], "the page logs no error or warning");
  assertEquals(page.requests, [page.requests[0]], "the page fetches nothing but itself");
  assert(page.requests[0].startsWith("file://"));
}

/** Hovers the first cell of the first map; returns the tooltip's text. */
async function hoverFirstCell(page: Page): Promise<string> {
  await page.evaluate(`document.querySelector(".mapcanvas").scrollIntoView({ block: "center" })`);
  const box = await page.evaluate<{ x: number; y: number }>(
    `(() => { const r = document.querySelector(".mapcanvas").getBoundingClientRect(); return { x: r.left + 96 + 1, y: r.top + 1 }; })()`,
  );
  await page.hover(box.x, box.y);
  await page.waitFor(`document.querySelector(".tip").style.display === "block"`, 10_000);
  return await page.evaluate<string>(`document.querySelector(".tip").textContent`);
}

interface InspectJson {
  records: number;
  bytes: number;
  pages: { present: number; zero: number; duplicates: number; records: number };
  byEncoding: { bytes: Record<string, number> };
  digests: { content: string | null };
}

/** The report's embedded data set. */
async function embedded(html: string): Promise<{
  files: { inspect: unknown; intact: boolean; problems: unknown[] }[];
  timelines: { file: number; metrics: Record<string, unknown> }[];
}> {
  const text = await Deno.readTextFile(html);
  const m = /<script type="application\/json" id="livesnap-data">(.*?)<\/script>/s.exec(text);
  if (m === null) throw new Error("the page embeds no data set");
  return JSON.parse(m[1]);
}

/** Checks the rendered numbers of an .lsnap file against `inspect --json`. */
function checkAgainstInspect(v: Record<string, string>, i: number, inspect: InspectJson): void {
  assertEquals(Number(v[`f${i}.pages.present`]), inspect.pages.present, "pages present");
  assertEquals(Number(v[`f${i}.pages.zero`]), inspect.pages.zero, "pages whose last copy is zero");
  assertEquals(Number(v[`f${i}.pages.duplicates`]), inspect.pages.duplicates, "extra copies");
  assertEquals(Number(v[`f${i}.records.count`]), inspect.records, "records");
  assertEquals(Number(v[`f${i}.records.pageRecords`]), inspect.pages.records, "page records");
  for (const [enc, bytes] of Object.entries(inspect.byEncoding.bytes)) {
    if (bytes === 0) continue;
    assertEquals(Number(v[`f${i}.records.bytes.${enc}`]), bytes, `bytes of ${enc} records`);
  }
  assertEquals(v[`f${i}.inspect.digests.content`], inspect.digests.content ?? "-");
}

async function liveSnapshot(
  dir: string,
  name: string,
  mode: string[],
): Promise<{ path: string; metrics: string }> {
  const path = `${dir}/${name}.lsnap`;
  const metrics = `${dir}/${name}.json`;
  const r = await livesnap([
    "run",
    MEMSTRESS,
    "--ram",
    "16M",
    "--snapshot-at",
    "3000000",
    "--stop-at",
    "6000000",
    "--out",
    path,
    "--metrics",
    metrics,
    ...mode,
  ]);
  assertEquals(r.code, 0, r.stderr);
  return { path, metrics };
}

const browserTest = (name: string, fn: (browser: Chromium, dir: string) => Promise<void>) =>
  Deno.test({
    name,
    ignore: CHROMIUM === null && !IN_CI,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      if (CHROMIUM === null) {
        throw new Error(
          "Chromium is not installed and CI is set: the report's browser tests must run",
        );
      }
      const dir = await Deno.makeTempDir({ prefix: "livesnap-report-test-" });
      const browser = await Chromium.launch({ binary: CHROMIUM });
      try {
        await fn(browser, dir);
      } finally {
        await browser.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });

browserTest(
  "report of a cow snapshot renders inspect's numbers, its metrics and a hover",
  async (browser, dir) => {
    const snap = await liveSnapshot(dir, "cow", ["--mode", "cow", "--cow-buffer", "256K"]);
    const html = `${dir}/cow.html`;
    const made = await livesnap(["report", snap.path, "--metrics", snap.metrics, "--out", html]);
    assertEquals(made.code, 0, made.stderr);
    const inspect = await json<InspectJson>(["inspect", "--json", snap.path]);
    const data = await embedded(html);
    assertEquals(data.files[0].inspect, inspect, "the embedded inspect is inspect --json's");
    const page = await openReport(browser, html, `${dir}/cow.png`);
    const v = await renderedValues(page);
    checkAgainstInspect(v, 0, inspect);
    const metrics = JSON.parse((await Deno.readTextFile(snap.metrics)).trim().split("\n")[0]);
    assertEquals(data.timelines[0].file, 0, "the metrics are tied to the file by content digest");
    assertEquals(Number(v["t0.pauseUs"]), metrics.pauseUs);
    assertEquals(Number(v["t0.guestStallUs"]), metrics.guestStallUs);
    if (metrics.timeline !== undefined) {
      assertEquals(Number(v["t0.samples"]), metrics.timeline.ms.length);
      assertEquals(Number(v["t0.pauses"]), metrics.timeline.pauses.length);
    }
    const tip = await hoverFirstCell(page);
    assert(tip.includes("page 0 at 0x80000000"), tip);
    const runs = await page.evaluate<string>(
      `document.querySelector(".order .readout").textContent`,
    );
    assert(runs.length > 0);
    assert(
      /record #\d+ at byte [\d,]+/.test(tip),
      `the hover names the record and its offset: ${tip}`,
    );
    assertQuiet(page);
  },
);

browserTest(
  "report of a precopy snapshot shows its resent pages as extra copies",
  async (browser, dir) => {
    const snap = await liveSnapshot(dir, "precopy", ["--mode", "precopy"]);
    const html = `${dir}/precopy.html`;
    const made = await livesnap(["report", snap.path, "--metrics", snap.metrics, "--out", html]);
    assertEquals(made.code, 0, made.stderr);
    const inspect = await json<InspectJson>(["inspect", "--json", snap.path]);
    const page = await openReport(browser, html, `${dir}/precopy.png`);
    const v = await renderedValues(page);
    checkAgainstInspect(v, 0, inspect);
    const metrics = JSON.parse((await Deno.readTextFile(snap.metrics)).trim().split("\n")[0]);
    assertEquals(Number(v["t0.precopyPasses"]), metrics.precopyPasses);
    assertEquals(Number(v["t0.pagesResent"]), metrics.pagesResent);
    if (metrics.pagesResent > 0) assertGreater(Number(v["f0.pages.duplicates"]), 0);
    if (metrics.timeline !== undefined) {
      assertEquals(Number(v["t0.passes"]), metrics.timeline.passes.length);
    }
    assertQuiet(page);
  },
);

browserTest(
  "report of a QEMU migration stream renders the stream's page counts",
  async (browser, dir) => {
    const z = await Deno.readFile(new URL("multipass.qemu.zst", QEMU_FIXTURES));
    const size = zstdFrameContentSize(z);
    const bytes = typeof size === "number" ? zstdDecompressExact(z, size) : size;
    if (typeof bytes === "string") throw new Error(bytes);
    const stream = `${dir}/multipass.qemu`;
    await Deno.writeFile(stream, bytes);
    const html = `${dir}/qemu.html`;
    const made = await livesnap(["report", stream, "--out", html]);
    assertEquals(made.code, 0, made.stderr);
    const summary = await json<{
      ram: {
        pageRecords: number;
        blocks: {
          name: string;
          normalRecords: number;
          zeroRecords: number;
          resentRecords: number;
          unsentPages: number;
          pageCount: number;
        }[];
      };
    }>(["inspect", "--json", stream]);
    const data = await embedded(html);
    assertEquals(data.files[0].inspect, summary);
    const page = await openReport(browser, html, `${dir}/qemu.png`);
    const v = await renderedValues(page);
    let sent = 0;
    for (const [bi, b] of summary.ram.blocks.entries()) {
      assertEquals(Number(v[`f0.r${bi}.absent`]), b.unsentPages, `${b.name}: pages never sent`);
      assertEquals(Number(v[`f0.r${bi}.extraCopies`]), b.resentRecords, `${b.name}: resent`);
      sent += b.pageCount - b.unsentPages;
    }
    assertEquals(Number(v["f0.pages.present"]), sent);
    const normal = summary.ram.blocks.reduce((n, b) => n + b.normalRecords, 0);
    const zero = summary.ram.blocks.reduce((n, b) => n + b.zeroRecords, 0);
    // Page record batches: their bytes are 8 + 4096 per whole page, 8 + 1 per zero page, plus the
    // block names QEMU sends with a section's first page.
    assertGreater(Number(v["f0.records.bytes.raw"]), normal * 4104 - 1);
    assert(Number(v["f0.records.bytes.raw"]) < normal * 4104 + 4096);
    assertGreater(Number(v["f0.records.bytes.zero"]), zero * 9 - 1);
    const tip = await hoverFirstCell(page);
    assert(/page record at byte [\d,]+/.test(tip), tip);
    assertQuiet(page);
  },
);

browserTest(
  "report of a damaged file says so at the top, lists verify's problems and exits 1",
  async (browser, dir) => {
    const snap = await liveSnapshot(dir, "good", ["--mode", "stop"]);
    const bytes = await Deno.readFile(snap.path);
    const at = Math.floor(bytes.length / 2);
    bytes[at] ^= 0xff;
    const bad = `${dir}/bad.lsnap`;
    await Deno.writeFile(bad, bytes);
    const html = `${dir}/bad.html`;
    const made = await livesnap(["report", bad, "--out", html]);
    assertEquals(made.code, 1, "a damaged file: exit 1");
    assert(made.stderr.includes("damaged"), made.stderr);
    const verify = await json<{ problems: { offset: number; recordIndex: number }[] }>([
      "verify",
      "--json",
      bad,
    ]);
    const page = await openReport(browser, html, `${dir}/bad.png`);
    const v = await renderedValues(page);
    assertEquals(Number(v["damaged"]), 1, "the banner at the top counts the damaged file");
    assertEquals(Number(v["f0.problems"]), verify.problems.length);
    const bannerTop = await page.evaluate<number>(
      `document.querySelector(".banner.bad").getBoundingClientRect().top + scrollY`,
    );
    assert(bannerTop < 300, `the damage is said at the top (at ${bannerTop} px)`);
    const damagedRows = await page.evaluate<number>(
      `(() => { document.querySelectorAll("details").forEach((d) => d.open = true); return [...document.querySelectorAll(".order table.data td")].filter((t) => t.textContent.includes("DAMAGED")).length; })()`,
    );
    assertGreater(damagedRows, 0, "the record table marks the damaged record");
    assertQuiet(page);
  },
);

browserTest(
  "report of two files draws their diff with diff --json's counts",
  async (browser, dir) => {
    const a = await liveSnapshot(dir, "a", ["--mode", "stop"]);
    const b = `${dir}/b.lsnap`;
    const r = await livesnap([
      "run",
      MEMSTRESS,
      "--ram",
      "16M",
      "--snapshot-at",
      "4500000",
      "--stop-at",
      "5000000",
      "--out",
      b,
    ]);
    assertEquals(r.code, 0, r.stderr);
    const html = `${dir}/diff.html`;
    const made = await livesnap(["report", a.path, b, "--out", html]);
    assertEquals(made.code, 0, made.stderr);
    const diff = await json<
      { regions: { name: string; changed: number; zeroed: number; filled: number }[] }
    >([
      "diff",
      "--json",
      a.path,
      b,
    ]);
    const page = await openReport(browser, html, `${dir}/diff.png`);
    const v = await renderedValues(page);
    assertGreater(diff.regions[0].changed, 0, "memstress changed pages between the two");
    assertEquals(Number(v["d0.r0.changed"]), diff.regions[0].changed);
    assertEquals(Number(v["d0.r0.zeroed"]), diff.regions[0].zeroed);
    assertEquals(Number(v["d0.r0.filled"]), diff.regions[0].filled);
    assertQuiet(page);
  },
);

interface ChainInspectJson extends InspectJson {
  digests: { content: string | null; file: string | null };
  parent: {
    name: string;
    depth: number;
    contentDigest: string;
    fileDigest: string;
    rootFileDigest: string;
  } | null;
}

browserTest(
  "report of a chain from run --incremental renders each link's pages and parent digests as inspect --json; a replaced parent is marked and exits 1",
  async (browser, dir) => {
    const at = [2000000, 3000000, 4000000];
    const run = await livesnap([
      "run",
      MEMSTRESS,
      "--ram",
      "16M",
      ...at.flatMap((n) => ["--snapshot-at", String(n)]),
      "--stop-at",
      "4500000",
      "--mode",
      "cow",
      "--incremental",
      "--out",
      `${dir}/s-{n}.lsnap`,
    ]);
    assertEquals(run.code, 0, run.stderr);
    const paths = at.map((n) => `${dir}/s-${n}.lsnap`);
    const inspects: ChainInspectJson[] = [];
    for (const p of paths) inspects.push(await json<ChainInspectJson>(["inspect", "--json", p]));
    assertEquals(inspects.map((x) => x.parent?.depth ?? 0), [0, 1, 2], "a full snapshot, 2 diffs");
    // Given in another order than the chain's; and the newest alone (parents by name hints).
    for (const [name, order] of [["mixed", [2, 0, 1]], ["newest", [2]]] as const) {
      const html = `${dir}/chain-${name}.html`;
      const made = await livesnap(["report", ...order.map((k) => paths[k]), "--out", html]);
      assertEquals(made.code, 0, made.stderr);
      const page = await openReport(browser, html, `${dir}/chain-${name}.png`);
      const v = await renderedValues(page);
      assertEquals(v["c0.ok"], "true", name);
      for (const [k, want] of inspects.entries()) {
        const l = `c0.l${k}`;
        assertEquals(Number(v[`${l}.depth`]), k, `${name}: link ${k} in chain order`);
        assertEquals(Number(v[`${l}.pages.present`]), want.pages.present, `${name}: link ${k}`);
        assertEquals(Number(v[`${l}.pages.zero`]), want.pages.zero, `${name}: link ${k}`);
        assertEquals(v[`${l}.contentDigest`], want.digests.content);
        assertEquals(v[`${l}.fileDigest`], want.digests.file);
        assertEquals(v[`${l}.parent.contentDigest`], want.parent?.contentDigest ?? "-");
        assertEquals(v[`${l}.parent.fileDigest`], want.parent?.fileDigest ?? "-");
        assertEquals(v[`${l}.parent.name`], want.parent?.name ?? "-");
        assertEquals(v[`${l}.broken`], "false");
      }
      // Each input's header shows its parent link as inspect --json does.
      for (const [i, k] of order.entries()) {
        const p = inspects[k].parent;
        assertEquals(v[`f${i}.inspect.parent.contentDigest`], p?.contentDigest, `${name}: f${i}`);
        assertEquals(v[`f${i}.inspect.parent.fileDigest`], p?.fileDigest, `${name}: f${i}`);
        assertEquals(v[`f${i}.inspect.parent.name`], p?.name, `${name}: f${i}`);
        checkAgainstInspect(v, i, inspects[k]);
      }
      assertQuiet(page);
    }
    // Another run's diff put in place of the middle file: the link to it is refused.
    const other = await livesnap([
      "run",
      MEMSTRESS,
      "--ram",
      "16M",
      ...at.slice(0, 2).flatMap((n) => ["--snapshot-at", String(n + 7)]),
      "--stop-at",
      "3500000",
      "--incremental",
      "--out",
      `${dir}/o-{n}.lsnap`,
    ]);
    assertEquals(other.code, 0, other.stderr);
    await Deno.copyFile(`${dir}/o-${at[1] + 7}.lsnap`, paths[1]);
    const html = `${dir}/chain-broken.html`;
    const made = await livesnap(["report", paths[2], "--out", html]);
    assertEquals(made.code, 1, "a broken chain: exit 1");
    assert(made.stderr.includes("Cannot use the chain"), made.stderr);
    const page = await openReport(browser, html, `${dir}/chain-broken.png`);
    const v = await renderedValues(page);
    assertEquals(v["c0.ok"], "false");
    assertEquals(v["brokenChains"], "1", "the broken chain is said at the top");
    assertEquals(v["c0.l0.broken"], "true", "the refused link is marked");
    assertEquals(v["f0.inspect.chain.ok"], "false");
    assertQuiet(page);
  },
);
