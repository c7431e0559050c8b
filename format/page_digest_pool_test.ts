import { assert, assertEquals } from "@std/assert/mod.js";
import { digestPageData, type PageJob } from "./_page_digest.ts";
import { zstdCompress } from "./_zstd.ts";
import { startPageDigestPool } from "./page_digest_pool.ts";

function pages(count: number, seed: number): Uint8Array {
  const out = new Uint8Array(count * 4096);
  for (let i = 0; i < out.length; i++) out[i] = (i * seed) % 251;
  out.fill(0, 4096, 8192); // page 1 is all zero
  return out;
}

Deno.test("PageDigestPool with explicit workers runs every job in a worker and matches digestPageData()", async () => {
  const pool = startPageDigestPool({ workers: 2 })!;
  try {
    const jobs: PageJob[] = [];
    for (let k = 0; k < 6; k++) {
      const raw = pages(3 + k, 7 + k);
      jobs.push(
        k % 2 === 0
          ? { encoding: "raw", data: raw, count: 3 + k, pageSize: 4096 }
          : { encoding: "zstd", data: zstdCompress(raw, 1), count: 3 + k, pageSize: 4096 },
      );
    }
    const expected = jobs.map((j) => digestPageData(j));
    const results = [];
    for (const job of jobs) {
      const accepted = await pool.submit(job);
      assert(accepted !== null, "an explicit pool must not hand a job back to the caller");
      // The data was copied when the job was accepted: the caller may reuse its buffer.
      job.data.fill(0xee);
      results.push(accepted!.result);
    }
    assertEquals(await Promise.all(results), expected);
    assertEquals((expected[0] as { zero: Uint8Array }).zero, Uint8Array.of(0, 1, 0));
  } finally {
    pool.close();
  }
});

Deno.test("startPageDigestPool() starts no worker for a small input and one or more for a big one", () => {
  assertEquals(startPageDigestPool({ sizeHint: 1 << 20 }), undefined);
  assertEquals(startPageDigestPool({}), undefined);
  const big = startPageDigestPool({ sizeHint: 1 << 30 });
  assert(big !== undefined);
  big!.close();
});
