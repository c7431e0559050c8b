import { crc32c, createBlake3, hashPageInto } from "../format/checksum.ts";
import { zstdDecompressView } from "../format/_zstd.ts";
import { isZero } from "../format/_bytes.ts";
import { decodePageRecord } from "../format/page_record.ts";
import { decodeHeader } from "../format/header.ts";
const tcpu = () => Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]) / 1e6;
const buf = await Deno.readFile("/tmp/p1f/ram.lsnap");
const v = new DataView(buf.buffer);
const recs: [number, number, number][] = [];
let off = 16;
while (true) {
  const type = v.getUint16(off, true);
  const len = v.getUint32(off + 4, true);
  recs.push([off, type, len]);
  off += 12 + len;
  if (type === 5) break;
}
const desc = decodeHeader(buf.subarray(recs[0][0] + 8, recs[0][0] + 8 + recs[0][2]), 16, 0);
const items = recs.filter(([, t]) => t === 2).map(([o, , l]) =>
  decodePageRecord(buf.subarray(o + 8, o + 8 + l), desc.regions, o, 0)
).filter((p) => p.encoding === "zstd");
const h = await createBlake3();
const out = new Uint8Array(16);
const stages: Record<string, () => void> = {
  "CRC32C of every record": () => {
    for (const [o, , l] of recs) crc32c(buf.subarray(o, o + 8 + l));
  },
  "BLAKE3 of the file": () => {
    h.init();
    for (const [o, , l] of recs) h.update(buf.subarray(o, o + 12 + l));
    h.digest("binary");
  },
  "zstd decompression (into a reused heap)": () => {
    for (const p of items) zstdDecompressView(p.data, p.pages.length * 4096);
  },
  "zstd + zero check + XXH3-128 per page": () => {
    for (const p of items) {
      const d = zstdDecompressView(p.data, p.pages.length * 4096) as Uint8Array;
      for (let i = 0; i < d.length; i += 4096) {
        const pg = d.subarray(i, i + 4096);
        if (!isZero(pg)) hashPageInto(pg, out, 0);
      }
    }
  },
  "copy 116 MB (memcpy)": () => {
    const d = new Uint8Array(4 << 20);
    for (const [o, , l] of recs) d.set(buf.subarray(o, o + 12 + l));
  },
};
for (let round = 0; round < 3; round++) {
  for (const [name, fn] of Object.entries(stages)) {
    const c = tcpu();
    fn();
    if (round > 0) console.log(round, name, (tcpu() - c).toFixed(0), "ms cpu");
  }
}
