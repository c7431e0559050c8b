/**
 * Where a snapshot write's time goes: each stage of `livesnap convert --from raw` (reading the
 * image, zero detection, hashing, compression, framing, file digest, message passing, writing,
 * and the read-back check's decompression) timed alone on the benchmark's mixed RAM, on one
 * thread, as CPU seconds of this process (all its threads: a read's copy happens on a runtime
 * thread), the best of `--runs`. The last column compares each stage with the CPU time of native
 * `zstd -1` on the whole image, measured in the same run.
 *
 *   deno run -A bench/write_profile.ts [--mib 512] [--runs 3]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { createBLAKE3, createCRC32, createXXHash128 } from "hash-wasm";
import { isZero } from "../format/_bytes.ts";
import { zstdCompress, zstdDecompressExact } from "../format/_zstd.ts";
import { encodePageBatch } from "../format/_page_batch.ts";
import { mixedRam } from "./_mixed_ram.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs"],
  default: { mib: "512", runs: "3" },
});
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const PAGE = 4096;
const BATCH = 1 << 20;

/** CPU nanoseconds of this process so far: the sum over its threads. */
function processCpuNs(): number {
  let ns = 0;
  for (const t of Deno.readDirSync("/proc/self/task")) {
    try {
      ns += Number(Deno.readTextFileSync(`/proc/self/task/${t.name}/schedstat`).split(" ")[0]);
    } catch { /* the thread ended meanwhile */ }
  }
  return ns;
}

async function best(fn: () => void | Promise<void>): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const t = processCpuNs();
    await fn();
    min = Math.min(min, (processCpuNs() - t) / 1e9);
  }
  return min;
}

/** User + system seconds of a command, from /usr/bin/time (best of RUNS). */
async function commandCpu(args: string[]): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const o = await new Deno.Command("/usr/bin/time", {
      args: ["-f", "%U %S", ...args],
      stdout: "null",
      stderr: "piped",
    }).output();
    const lines = new TextDecoder().decode(o.stderr).trim().split("\n");
    const [u, s] = lines[lines.length - 1].split(" ").map(Number);
    min = Math.min(min, u + s);
  }
  return min;
}

const dir = await Deno.makeTempDir({ prefix: "livesnap-profile-" });
const rows: { stage: string; seconds: number; note: string }[] = [];
const add = (stage: string, seconds: number, note = "") => {
  rows.push({ stage, seconds, note });
  console.error(`${stage}: ${seconds.toFixed(3)} s`);
};
try {
  const ram = mixedRam((MIB << 20) / PAGE);
  const image = `${dir}/ram.img`;
  await Deno.writeFile(image, ram);
  const pages = ram.length / PAGE;
  const nonZero: number[] = [];
  for (let p = 0; p < pages; p++) {
    if (!isZero(ram.subarray(p * PAGE, (p + 1) * PAGE))) nonZero.push(p);
  }
  const data = new Uint8Array(nonZero.length * PAGE);
  nonZero.forEach((p, i) => data.set(ram.subarray(p * PAGE, (p + 1) * PAGE), i * PAGE));
  const batches: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += BATCH) batches.push(data.subarray(at, at + BATCH));

  const zstdCpu = await commandCpu(["sh", "-c", `zstd -1 -q -c ${image} > ${dir}/ram.zst`]);
  add("native `zstd -1` of the whole image (the yardstick)", zstdCpu);
  add("Deno start-up, empty module", await commandCpu([Deno.execPath(), "run", "-A", "-e", ""]));
  add(
    "Deno start-up + loading `convert` (modules, WebAssembly)",
    await commandCpu([
      Deno.execPath(),
      "run",
      "-A",
      new URL("../tools/cli.ts", import.meta.url).pathname,
      "convert",
      "--help",
    ]),
  );

  const buf = new Uint8Array(BATCH);
  add(
    "read the image, 1 MiB reads into one buffer",
    await best(async () => {
      const f = await Deno.open(image);
      while ((await f.read(buf)) !== null) { /* discard */ }
      f.close();
    }),
  );
  add(
    "zero detection, every page",
    await best(() => {
      for (let p = 0; p < pages; p++) isZero(ram.subarray(p * PAGE, (p + 1) * PAGE));
    }),
  );
  const xxh = await createXXHash128();
  add(
    "XXH3-128 of every non-zero page (hash-wasm)",
    await best(() => {
      for (let at = 0; at < data.length; at += PAGE) {
        xxh.init();
        xxh.update(data.subarray(at, at + PAGE));
        xxh.digest("binary");
      }
    }),
    `${nonZero.length} pages`,
  );
  add(
    "copy the non-zero pages into reused batch buffers",
    await best(() => {
      for (const b of batches) buf.set(b);
    }),
  );
  add(
    "copy the non-zero pages into fresh buffers (slice)",
    await best(() => {
      for (const b of batches) b.slice();
    }),
  );
  let compressed: Uint8Array[] = [];
  const { compress, decompress, init } = await import("@bokuweb/zstd-wasm");
  await init();
  add(
    "zstd level 1, 1 MiB batches, @bokuweb/zstd-wasm",
    await best(() => {
      for (const b of batches) compress(b, 1);
    }),
  );
  add(
    "zstd level 1, 1 MiB batches, native (node:zlib)",
    await best(() => {
      compressed = batches.map((b) => zstdCompress(b, 1));
    }),
  );
  const out = compressed.reduce((n, c) => n + c.length, 0);
  const crc = await createCRC32(0x82f63b78);
  add(
    "CRC32C of the records (hash-wasm)",
    await best(() => {
      for (const c of compressed) {
        crc.init();
        crc.update(c);
        crc.digest("binary");
      }
    }),
    `${(out / 1e6).toFixed(0)} MB`,
  );
  const b3 = await createBLAKE3(256);
  add(
    "BLAKE3 file digest of the records (hash-wasm)",
    await best(() => {
      b3.init();
      for (const c of compressed) b3.update(c);
      b3.digest("binary");
    }),
  );
  add(
    "a whole batch: hash, compress, frame (encodePageBatch)",
    await best(() => {
      for (let i = 0; i < batches.length; i++) {
        const first = i * (BATCH / PAGE);
        const n = batches[i].length / PAGE;
        encodePageBatch({
          region: 0,
          pages: Uint32Array.from({ length: n }, (_, k) => nonZero[first + k]),
          raw: batches[i],
          pageSize: PAGE,
          codec: "zstd",
          level: 1,
        });
      }
    }),
  );
  add(
    "write the records to a file",
    await best(async () => {
      const f = await Deno.open(`${dir}/out.bin`, { write: true, create: true, truncate: true });
      for (const c of compressed) {
        let n = 0;
        while (n < c.length) n += await f.write(c.subarray(n));
      }
      f.close();
    }),
  );
  const worker = new Worker(
    `data:application/javascript,onmessage=(e)=>postMessage(e.data,[e.data.buffer])`,
    { type: "module" },
  );
  const echo = (b: Uint8Array) =>
    new Promise<Uint8Array>((resolve) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.postMessage(b, [b.buffer as ArrayBuffer]);
    });
  let travelling = new Uint8Array(BATCH);
  add(
    "worker round trip of a transferred 1 MiB buffer, once per batch",
    await best(async () => {
      for (let i = 0; i < batches.length; i++) travelling = await echo(travelling);
    }),
  );
  worker.terminate();
  add(
    "read-back: zstd decompression, @bokuweb/zstd-wasm",
    await best(() => {
      for (const c of compressed) decompress(c, { defaultHeapSize: BATCH });
    }),
  );
  add(
    "read-back: zstd decompression, native (node:zlib)",
    await best(() => {
      for (let i = 0; i < compressed.length; i++) {
        zstdDecompressExact(compressed[i], batches[i].length);
      }
    }),
  );

  console.log(
    `Machine: ${MIB} MiB in 4 KiB pages, ${nonZero.length} non-zero (${
      (100 * nonZero.length / pages).toFixed(1)
    }%); CPU seconds of the process, best of ${RUNS}.\n`,
  );
  console.log("| stage | CPU seconds | vs `zstd -1` CPU | note |");
  console.log("|---|---:|---:|---|");
  for (const r of rows) {
    console.log(
      `| ${r.stage} | ${r.seconds.toFixed(3)} | ${(r.seconds / zstdCpu).toFixed(2)} | ${r.note} |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
