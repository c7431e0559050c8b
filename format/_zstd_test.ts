import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert/mod.js";
import {
  zstdBackend,
  zstdCompress,
  zstdCompressBound,
  zstdCompressInto,
  zstdCompressionPath,
  zstdDecompressExact,
  zstdDecompressInto,
  zstdDecompressionPath,
  zstdDecompressView,
  zstdFrameContentSize,
} from "./_zstd.ts";
import { inCi } from "../tests/_external_tools.ts";

const PAGE = new Uint8Array(4096).map((_, i) => (i * 7) & 0xff);
const FRAME = zstdCompress(PAGE, 1);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A frame header (not single-segment) with a window byte and a 4- or 8-byte content size. */
function header(window: number, size: bigint, fcsBytes: 4 | 8): Uint8Array {
  const fcs = new Uint8Array(fcsBytes);
  for (let i = 0; i < fcsBytes; i++) fcs[i] = Number((size >> BigInt(8 * i)) & 0xffn);
  return concat(
    new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, fcsBytes === 4 ? 0x80 : 0xc0, window]),
    fcs,
  );
}
/** One last raw block holding `n` bytes. */
function rawBlock(n: number): Uint8Array {
  const bh = 1 | (n << 3);
  return concat(new Uint8Array([bh & 0xff, (bh >> 8) & 0xff, bh >> 16]), new Uint8Array(n));
}

Deno.test("zstdDecompressExact() round-trips a frame and checks its size", () => {
  assertEquals(zstdFrameContentSize(FRAME), 4096);
  assertEquals(zstdDecompressExact(FRAME, 4096), PAGE);
  assertEquals(
    zstdDecompressExact(FRAME, 8192),
    "zstd frame declares 4096 bytes, the record implies 8192",
  );
});

Deno.test("zstdDecompressExact() refuses hostile frames before zstd sees them", async (t) => {
  const empty = zstdCompress(new Uint8Array(0), 1);
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
  const cases: [string, Uint8Array, string][] = [
    ["an empty frame after the frame", concat(FRAME, empty), "9 bytes follow the zstd frame"],
    [
      "a skippable frame after the frame",
      concat(FRAME, skippable),
      "12 bytes follow the zstd frame",
    ],
    ["one stray byte after the frame", concat(FRAME, new Uint8Array([0])), "1 bytes follow"],
    [
      "a frame cut inside its blocks",
      FRAME.subarray(0, FRAME.length - 2),
      "cut off inside its blocks",
    ],
    ["a skippable frame alone", skippable, "bad zstd frame magic"],
    ["a window of 2^41 bytes", concat(header(0xf8, 4096n, 4), rawBlock(4096)), "2^41-byte window"],
    // zstd-wasm truncates the 64-bit size to 32 bits: 2^32 + 4096 would look like 4096 to it.
    [
      "a size of 2^32 + 4096",
      concat(header(0x48, 2n ** 32n + 4096n, 8), rawBlock(4096)),
      "declares 4294971392 bytes",
    ],
    // ... and 0xFFFFFFF0 would be -16, a malloc of 4 GiB that fails and returns address 0.
    [
      "a size of 0xFFFFFFF0",
      concat(header(0x48, 0xfffffff0n, 4), rawBlock(4096)),
      "declares 4294967280 bytes",
    ],
    [
      "a reserved block type",
      concat(header(0x48, 4096n, 4), new Uint8Array([0x07, 0, 0])),
      "reserved type",
    ],
    [
      "no content size",
      new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x48, 1, 0, 0]),
      "does not declare",
    ],
  ];
  for (const [name, frame, reason] of cases) {
    await t.step(name, () => {
      const r = zstdDecompressExact(frame, 4096);
      assertStringIncludes(typeof r === "string" ? r : `accepted ${r.length} bytes`, reason);
    });
  }
  // The raw-block frame with a sane header decodes, so the refusals above are the checks at work.
  assertEquals(
    zstdDecompressExact(concat(header(0x48, 4096n, 4), rawBlock(4096)), 4096),
    new Uint8Array(4096),
  );
});

Deno.test("zstdCompress() still writes frames native zstd accepts after hostile frames were refused", async () => {
  for (const size of [0xfffffff0n, 2n ** 32n + 64n, 0x80000000n]) {
    zstdDecompressExact(concat(header(0x48, size, size > 0xffffffffn ? 8 : 4), rawBlock(64)), 64);
  }
  const data = new Uint8Array(1 << 20).map((_, i) => (i * 31 + (i >> 9)) & 0xff);
  const z = zstdCompress(data, 1);
  assertEquals(zstdDecompressExact(z, data.length), data);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("zstd", { args: ["-t", "-q"], stdin: "piped", stderr: "piped" })
      .spawn();
  } catch (e) {
    // In CI a missing program is a failure (tests/_external_tools.ts), never a skip.
    if (inCi()) throw new Error("Cannot run `zstd -t`: zstd is not installed", { cause: e });
    console.log("  (native zstd not installed: `zstd -t` check skipped)");
    return;
  }
  const w = child.stdin.getWriter();
  await w.write(z);
  await w.close();
  const out = await child.output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
});

Deno.test("zstdCompress() makes the same frames through the reusable context and zstdCompressSync", () => {
  // The reusable native context is the runtime's handle behind its public classes (not a
  // documented interface): on this runtime it must be in use, and give the public function's bytes.
  assertEquals(zstdCompressionPath(), "context");
  const inputs = [
    new Uint8Array(4096).fill(3),
    new Uint8Array(1 << 20).map((_, i) => (i * 31 + (i >> 9)) & 0xff),
    crypto.getRandomValues(new Uint8Array(65536)), // incompressible: the frame is larger
    new Uint8Array(0),
  ];
  const viaContext = inputs.map((d) => zstdCompress(d, 1));
  const into = new Uint8Array(zstdCompressBound(inputs[1].length) + 7);
  const n = zstdCompressInto(inputs[1], 1, into, 7);
  try {
    assertEquals(zstdCompressionPath(true), "public");
    const viaPublic = inputs.map((d) => zstdCompress(d, 1));
    // Lengths and the first differing byte: a failure must not diff megabytes.
    const firstDifference = (a: Uint8Array, b: Uint8Array) =>
      a.length !== b.length
        ? `lengths ${a.length} and ${b.length}`
        : a.findIndex((x, i) => x !== b[i]);
    for (const [i, frame] of viaPublic.entries()) {
      assertEquals(firstDifference(viaContext[i], frame), -1, `input ${i}`);
    }
    assertEquals(firstDifference(into.subarray(7, 7 + n), viaPublic[1]), -1);
  } finally {
    zstdCompressionPath(false);
  }
  for (const [i, d] of inputs.entries()) {
    assertEquals(zstdDecompressExact(viaContext[i], d.length), d);
  }
  assertThrows(
    () => zstdCompressInto(inputs[1], 1, new Uint8Array(1000), 0),
    RangeError,
    "1000 bytes of room",
  );
});

Deno.test("zstdDecompressExact() reports damaged blocks as a reason, never more than asked", () => {
  const data = new Uint8Array(65536).map((_, i) => (i * 31 + (i >> 9)) & 0xff);
  const frame = zstdCompress(data, 1);
  let refused = 0;
  let seed = 12345;
  for (let k = 0; k < 2000; k++) {
    const bad = frame.slice();
    for (let j = 0; j <= k % 3; j++) {
      seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
      bad[6 + (seed % (bad.length - 6))] ^= 1 + ((seed >>> 24) % 255);
    }
    const r = zstdDecompressExact(bad, data.length);
    if (typeof r === "string") refused++;
    else assertEquals(r.length, data.length); // damage inside literals can decode: the CRC catches it
  }
  assert(refused > 1000, `only ${refused} of 2000 damaged frames refused`);
});

Deno.test("zstd decompresses alike through the native context, zstdDecompressSync and zstd-wasm", async () => {
  // This runtime has zstd in node:zlib, and its reusable context must be in use.
  assertEquals(await zstdBackend(), {
    backend: "native",
    compress: "context",
    decompress: "context",
  });
  const data = new Uint8Array(65536).map((_, i) => (i * 31 + (i >> 9)) & 0xff);
  const frame = zstdCompress(data, 1);
  const frames: [Uint8Array, number][] = [[frame, data.length], [frame, data.length - 1]];
  let seed = 777;
  for (let k = 0; k < 600; k++) {
    const bad = frame.slice();
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    bad[6 + (seed % (bad.length - 6))] ^= 1 + ((seed >>> 24) % 255);
    frames.push([bad, data.length]);
  }
  const run = () =>
    frames.map(([f, n]) => {
      const exact = zstdDecompressExact(f, n);
      const view = zstdDecompressView(f, n);
      const into = new Uint8Array(n);
      const reason = zstdDecompressInto(f, into);
      if (typeof exact === "string") {
        assertEquals(typeof view, "string");
        assertEquals(typeof reason, "string");
        return null;
      }
      assertEquals(exact.length, n);
      assertEquals(view, exact);
      assertEquals(reason, null);
      assertEquals(into, exact);
      return exact;
    });
  const viaContext = run();
  let viaPublic, viaWasm;
  try {
    assertEquals(zstdDecompressionPath(true), "public");
    viaPublic = run();
  } finally {
    zstdDecompressionPath(false);
  }
  try {
    assertEquals((await zstdBackend("wasm")).backend, "wasm");
    viaWasm = run();
    // Frames made by zstd-wasm read back natively.
    assertEquals(zstdDecompressExact(zstdCompress(data, 1), data.length), data);
  } finally {
    assertEquals((await zstdBackend("native")).backend, "native");
  }
  assertEquals(viaContext[0], data);
  assertEquals(viaContext[1], null);
  const refused = (xs: (Uint8Array | null)[]) => xs.filter((x) => x === null).length;
  assert(refused(viaContext) > 200, `only ${refused(viaContext)} of 600 damaged frames refused`);
  // The same verdict and the same bytes from each backend, frame by frame.
  for (const [i, x] of viaContext.entries()) {
    assertEquals(viaPublic[i], x, `frame ${i}: context and zstdDecompressSync differ`);
    assertEquals(viaWasm[i], x, `frame ${i}: native and zstd-wasm differ`);
  }
});
