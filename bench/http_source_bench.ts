/**
 * Reading every PAGES record of a snapshot through `SnapshotFileReader.readPageRecords` (fetch,
 * CRC32C, zstd decompression): from a local HTTP server on the loopback address with one request
 * at a time (the baseline), with several ranges in flight, with neighbouring records merged into
 * one request, and from the local file. The server (tests/_range_server.ts, in a worker thread)
 * waits `--latency-ms` before each answer, as a network round trip does, so that what in-flight
 * requests hide shows. Rounds run every contender in turn; each ratio is taken within a round (the
 * baseline's seconds over the contender's), printed as median (min-max).
 *
 *   deno task bench:http [--mib 256] [--latency-ms 2] [--rounds 5] [--record-kib 1024]
 *
 * `--record-kib` sets the writer's batch (uncompressed bytes per PAGES record; 1024 is its
 * default): smaller records mean more requests, where merging neighbours matters most.
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { SnapshotFileReader } from "../format/file_reader.ts";
import type { HttpSourceOptions } from "../format/http_source.ts";
import { SnapshotWriter } from "../format/writer.ts";
import { mixedRam } from "./_mixed_ram.ts";
import { loadAverage, median, spread } from "./_whole_process.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "latency-ms", "rounds", "record-kib"],
  default: { mib: "256", "latency-ms": "2", rounds: "5", "record-kib": "1024" },
});
const MIB = Number(flags.mib);
const LATENCY_MS = Number(flags["latency-ms"]);
const ROUNDS = Number(flags.rounds);
const RECORD_BYTES = Number(flags["record-kib"]) * 1024;
const PAGE = 4096;
const PAGES = (MIB * 1024 * 1024) / PAGE;

interface Contender {
  name: string;
  input: "file" | "http";
  http?: HttpSourceOptions;
  seconds: number[];
  requests: number;
}

const contenders: Contender[] = [
  {
    name: "HTTP, one request at a time (baseline)",
    input: "http",
    // maxLength 1: no two records share a request.
    http: { concurrency: 1, coalesce: { maxLength: 1 } },
    seconds: [],
    requests: 0,
  },
  {
    name: "HTTP, 4 in flight",
    input: "http",
    http: { concurrency: 4, coalesce: { maxLength: 1 } },
    seconds: [],
    requests: 0,
  },
  {
    name: "HTTP, 4 in flight, neighbours merged (default)",
    input: "http",
    http: { concurrency: 4 },
    seconds: [],
    requests: 0,
  },
  {
    name: "HTTP, 8 in flight, neighbours merged",
    input: "http",
    http: { concurrency: 8 },
    seconds: [],
    requests: 0,
  },
  { name: "local file", input: "file", seconds: [], requests: 0 },
];

const dir = await Deno.makeTempDir({ prefix: "livesnap-http-bench-" });
const worker = new Worker(new URL("./_range_server_worker.ts", import.meta.url), {
  type: "module",
});
try {
  const path = `${dir}/ram.lsnap`;
  {
    const ram = mixedRam(PAGES);
    const w = await SnapshotWriter.createFile(path, {
      regions: [{ name: "ram", base: 0x8000_0000, size: ram.length, pageSize: PAGE }],
      creator: "livesnap http bench",
      createdAt: 0,
    }, { batchBytes: RECORD_BYTES });
    for (let p = 0; p < PAGES; p += 256) {
      await w.writePages(0, p, ram.subarray(p * PAGE, (p + 256) * PAGE));
    }
    await w.close();
  }
  const url = await new Promise<string>((resolve) => {
    worker.onmessage = (e) => resolve(e.data.url);
    worker.postMessage({ path, latencyMs: LATENCY_MS });
  });
  const size = (await Deno.stat(path)).size;
  let records = 0;
  let pages = 0;
  const runOnce = async (c: Contender) => {
    const t0 = performance.now();
    const r = await SnapshotFileReader.open(c.input === "file" ? path : url, { http: c.http });
    let n = 0;
    let p = 0;
    try {
      for await (const rec of r.readPageRecords(r.pageRecordOffsets())) {
        n++;
        p += rec.pages.length;
      }
    } finally {
      r.close();
    }
    records = n;
    pages = p;
    c.requests = r.source.stats.requests;
    return (performance.now() - t0) / 1000;
  };
  for (const c of contenders) await runOnce(c); // warm-up: JIT, page cache
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of contenders) {
      const s = await runOnce(c);
      c.seconds.push(s);
      console.error(`${c.name}: ${s.toFixed(3)} s`);
    }
  }
  const base = contenders[0];
  console.log(
    `Guest RAM ${MIB} MiB (60% zero, 25% text, 15% random pages), snapshot ${size} bytes in ` +
      `${records} PAGES records (${pages} page entries, at most ${
        RECORD_BYTES / 1024
      } KiB each before compression); server latency ${LATENCY_MS} ms per ` +
      `request; ${ROUNDS} rounds, contenders in turn; load average ${await loadAverage()}; ` +
      `${navigator.hardwareConcurrency} CPUs; ${new Date().toISOString().slice(0, 16)}Z.\n`,
  );
  console.log(
    "| contender | requests | seconds, median (min-max) | MB/s of file | speed vs one at a time, median (min-max) |",
  );
  console.log("|---|---:|---:|---:|---:|");
  for (const c of contenders) {
    const ratios = c.seconds.map((s, i) => base.seconds[i] / s);
    console.log(
      `| ${c.name} | ${c.requests} | ${spread(c.seconds, 3)} | ${
        (size / 1e6 / median(c.seconds)).toFixed(0)
      } | ${spread(ratios, 2, "x")} |`,
    );
  }
} finally {
  await new Promise<void>((resolve) => {
    worker.onmessage = () => resolve();
    worker.postMessage("close");
  });
  await Deno.remove(dir, { recursive: true });
}
