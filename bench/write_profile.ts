/**
 * Where a snapshot write's time goes, stage by stage, before and after the writer's rework: each
 * stage of `livesnap convert --from raw` (reading the image, zero detection, page hashes,
 * compression, record checksums, the file digest, copies, message passing, writing, and the
 * read-back check's decompression) timed alone on the benchmarks' mixed RAM, on one thread, as
 * CPU seconds of this process (all its threads: a read's copy happens on a runtime thread), the
 * best of `--runs`. "Before" is how the stage was done until then (hash-wasm, zstd-wasm, a copy),
 * "after" how it is done now; both run in the same process, one after the other. The last
 * column compares each with native `zstd -1` compressing the whole image, measured in the same
 * run.
 *
 *   deno run -A bench/write_profile.ts [--mib 512] [--runs 3]
 *
 * @module
 */
import { parseArgs } from "@std/cli/parse_args.js";
import { compress, decompress, init } from "@bokuweb/zstd-wasm";
import { createBLAKE3, createCRC32, createXXHash128 } from "hash-wasm";
import process from "node:process";
import { isZero } from "../format/_bytes.ts";
import { zstdCompressBound, zstdCompressInto, zstdDecompressExact } from "../format/_zstd.ts";
import { checksumBackends, crc32c, createBlake3, hashPagesInto } from "../format/checksum.ts";
import { SnapshotWriter } from "../format/writer.ts";
import { mixedRam } from "./_mixed_ram.ts";

const flags = parseArgs(Deno.args, {
  string: ["mib", "runs"],
  default: { mib: "512", runs: "3" },
});
const MIB = Number(flags.mib);
const RUNS = Number(flags.runs);
const PAGE = 4096;
const BATCH = 1 << 20;

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function best(fn: () => void | Promise<void>): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const t = cpuSeconds();
    await fn();
    min = Math.min(min, cpuSeconds() - t);
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

/** The zero test the writer used before: one 32-bit word at a time. */
function isZeroByWords(b: Uint8Array): boolean {
  const words = new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
  for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
  return true;
}

const dir = await Deno.makeTempDir({ prefix: "livesnap-profile-" });
const rows: { stage: string; before?: number; after: number; note: string }[] = [];
const add = (stage: string, before: number | undefined, after: number, note = "") => {
  rows.push({ stage, before, after, note });
  console.error(`${stage}: ${before?.toFixed(3) ?? "-"} -> ${after.toFixed(3)} s`);
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
  await init();

  const zstdCpu = await commandCpu(["sh", "-c", `zstd -1 -q -c ${image} > ${dir}/ram.zst`]);
  add("native `zstd -1` of the whole image (the yardstick)", undefined, zstdCpu);
  add(
    "Deno start-up and loading `convert` (`livesnap convert --help`)",
    undefined,
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
    undefined,
    await best(async () => {
      const f = await Deno.open(image);
      while ((await f.read(buf)) !== null) { /* discard */ }
      f.close();
    }),
  );
  const zeroBefore = await best(() => {
    for (let p = 0; p < pages; p++) isZeroByWords(ram.subarray(p * PAGE, (p + 1) * PAGE));
  });
  const zeroAfter = await best(() => {
    for (let p = 0; p < pages; p++) isZero(ram.subarray(p * PAGE, (p + 1) * PAGE));
  });
  add("zero detection of every page (word loop -> 8 words per OR)", zeroBefore, zeroAfter);
  const xxh = await createXXHash128();
  const hashes = new Uint8Array(nonZero.length * 16);
  const hashBefore = await best(() => {
    for (let i = 0; i < nonZero.length; i++) {
      xxh.init();
      xxh.update(data.subarray(i * PAGE, (i + 1) * PAGE));
      hashes.set(xxh.digest("binary"), i * 16);
    }
  });
  const hashAfter = await best(() => {
    for (let at = 0; at < data.length; at += BATCH) {
      const b = data.subarray(at, at + BATCH);
      hashPagesInto(b, PAGE, hashes, (at / PAGE) * 16);
    }
  });
  add(
    "XXH3-128 of every non-zero page, one pass (hash-wasm -> SIMD module)",
    hashBefore,
    hashAfter,
    `${nonZero.length} pages; up to 3 passes in a convert`,
  );
  const copyBefore = await best(() => {
    for (const b of batches) b.slice();
  });
  add("convert's source: a fresh copy of each run of pages -> a view", copyBefore, 0);
  add(
    "copy the non-zero pages into reused batch buffers",
    undefined,
    await best(() => {
      for (const b of batches) buf.set(b);
    }),
  );
  const zBefore = await best(() => {
    for (const b of batches) compress(b, 1);
  });
  let compressed: Uint8Array[] = [];
  const scratch = new Uint8Array(zstdCompressBound(BATCH));
  const zAfter = await best(() => {
    compressed = batches.map((b) => scratch.slice(0, zstdCompressInto(b, 1, scratch, 0)));
  });
  add("zstd level 1 of the non-zero pages, 1 MiB batches (zstd-wasm -> native)", zBefore, zAfter);
  const out = compressed.reduce((n, c) => n + c.length, 0);
  const crc = await createCRC32(0x82f63b78);
  const crcBefore = await best(() => {
    for (const c of compressed) {
      crc.init();
      crc.update(c);
      crc.digest("binary");
    }
  });
  const crcAfter = await best(() => {
    for (const c of compressed) crc32c(c);
  });
  add(
    "CRC32C of the records, one pass (hash-wasm -> SIMD module)",
    crcBefore,
    crcAfter,
    `${(out / 1e6).toFixed(0)} MB; 2 passes in a convert`,
  );
  const b3 = await createBLAKE3(256);
  const blakeBefore = await best(() => {
    b3.init();
    for (const c of compressed) b3.update(c);
    b3.digest("binary");
  });
  const native = await createBlake3();
  const blakeAfter = await best(() => {
    native.init();
    for (const c of compressed) native.update(c);
    native.digest("binary");
  });
  add(
    "BLAKE3 file digest of the records, one pass (hash-wasm -> addon)",
    blakeBefore,
    blakeAfter,
    "2 passes in a convert",
  );
  add(
    "write the records to a file",
    undefined,
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
  let travelling: Uint8Array = new Uint8Array(BATCH);
  add(
    "worker round trip of a transferred 1 MiB buffer, once per batch",
    undefined,
    await best(async () => {
      for (let i = 0; i < batches.length; i++) travelling = await echo(travelling);
    }),
  );
  worker.terminate();
  const dBefore = await best(() => {
    for (const c of compressed) decompress(c, { defaultHeapSize: BATCH });
  });
  const dAfter = await best(() => {
    for (let i = 0; i < compressed.length; i++) {
      zstdDecompressExact(compressed[i], batches[i].length);
    }
  });
  add("read-back: zstd decompression (zstd-wasm -> native)", dBefore, dAfter);
  const size = ram.length;
  add(
    "the whole writer on one thread (workers 0): image in 1 MiB reads to an fsync'd file",
    undefined,
    await best(async () => {
      const w = await SnapshotWriter.createFile(`${dir}/one.lsnap`, {
        regions: [{ name: "ram", base: 0x8000_0000, size, pageSize: PAGE }],
        creator: "profile",
        createdAt: 0,
      }, { workers: 0 });
      const f = await Deno.open(image);
      for (let at = 0; at < size; at += BATCH) {
        let n = 0;
        while (n < BATCH) {
          const k = await f.read(buf.subarray(n));
          if (k === null) break;
          n += k;
        }
        await w.writePages(0, at / PAGE, buf.subarray(0, n));
      }
      f.close();
      await w.close();
    }),
  );

  console.log(
    `Machine: ${MIB} MiB in 4 KiB pages, ${nonZero.length} non-zero (${
      (100 * nonZero.length / pages).toFixed(1)
    }%); CPU seconds of the process, best of ${RUNS}; load average ${
      (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ")
    }; checksum backends ${JSON.stringify(await checksumBackends())}.\n`,
  );
  console.log("| stage | before, CPU s | after, CPU s | after vs `zstd -1` CPU | note |");
  console.log("|---|---:|---:|---:|---|");
  for (const r of rows) {
    console.log(
      `| ${r.stage} | ${r.before?.toFixed(3) ?? ""} | ${r.after.toFixed(3)} | ${
        (r.after / zstdCpu).toFixed(2)
      } | ${r.note} |`,
    );
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
