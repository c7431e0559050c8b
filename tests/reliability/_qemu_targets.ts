/**
 * Feeds one QEMU fuzz case to every consumer of untrusted migration streams and judges the
 * outcome, by the rule the `.lsnap` targets follow: each ends in a documented error or a correct
 * result, and the consumers agree with each other.
 *
 * Documented errors: `QemuStreamError` subclasses (corrupt, truncated, unsupported; each with
 * the byte offset) from the readers, and the format's `LsnapError` subclasses from the `.lsnap`
 * writer for a stream whose machine no `.lsnap` file can describe (too many pages).
 *
 * Consumers: `readQemuStream` (fed in chunks of a random size), `inspectQemuStream` (which also
 * decodes every device through the JSON description), `readQemuSnapshot`, `openQemuStream`
 * (what `convert --from qemu` reads through), `convertQemuToLsnap` (its output read back and
 * verified), and `extractQemuRam` for blocks of at most 64 MiB.
 *
 * @module
 */
import { toHex } from "../../format/checksum.ts";
import { LsnapError } from "../../format/errors.ts";
import { verifySnapshot } from "../../tools/verify.ts";
import { QemuStreamError, QemuStreamUnsupportedError } from "../../qemu/errors.ts";
import { inspectQemuStream } from "../../qemu/inspect.ts";
import { readQemuStream } from "../../qemu/stream_reader.ts";
import { readQemuSnapshot } from "../../qemu/snapshot.ts";
import { convertQemuToLsnap, openQemuStream } from "../../qemu/convert.ts";
import { extractQemuRam } from "../../qemu/extract_ram.ts";
import { type CaseResult, describe, streamOf } from "./_targets.ts";

/** Blocks larger than this are not extracted whole into memory by the harness. */
const MAX_EXTRACT = 64 * 1024 * 1024;

async function guarded<T>(
  what: string,
  problems: string[],
  f: () => Promise<T>,
  lsnapErrorsToo = false,
): Promise<{ value?: T; error?: Error }> {
  try {
    return { value: await f() };
  } catch (e) {
    if (e instanceof QemuStreamError || (lsnapErrorsToo && e instanceof LsnapError)) {
      // A stack overflow or a failed allocation dressed as a format error is still a crash.
      if (e.cause instanceof RangeError) {
        problems.push(`${what}: a documented error caused by ${describe(e.cause)}`);
      }
      return { error: e as Error };
    }
    problems.push(`${what} threw an undocumented error: ${describe(e)}`);
    return {};
  }
}

const sameError = (a?: Error, b?: Error) =>
  a?.constructor === b?.constructor && a?.message === b?.message;

/** The final non-zero pages, by `block\0offset`, from a snapshot read by readQemuSnapshot. */
function pageKey(block: string, address: number): string {
  return `${block}\u0000${address}`;
}

/**
 * Runs one case through the QEMU stream consumers. `path` is a scratch file prefix; `chunk` the
 * stream chunk size.
 */
export async function runQemuCase(
  bytes: Uint8Array,
  path: string,
  chunk: number,
): Promise<CaseResult> {
  const problems: string[] = [];
  const skipped: string[] = [];
  const stream = await guarded("readQemuStream()", problems, async () => {
    let records = 0;
    for await (const _ of readQemuStream(streamOf(bytes, chunk))) records++;
    return records;
  });
  const inspect = await guarded("inspectQemuStream()", problems, () => inspectQemuStream(bytes));
  if (stream.value !== undefined && inspect.error !== undefined) {
    problems.push(`inspect refuses a stream the reader reads: ${describe(inspect.error)}`);
  }
  if (stream.error !== undefined && inspect.value !== undefined) {
    problems.push(`inspect accepts a stream the reader refuses: ${describe(stream.error)}`);
  }
  if (stream.error !== undefined && inspect.error !== undefined) {
    if (!sameError(stream.error, inspect.error)) {
      problems.push(
        `the reader and inspect refuse differently: ${describe(stream.error)} / ${
          describe(inspect.error)
        }`,
      );
    }
  }
  if (inspect.value !== undefined) {
    // JSON.stringify must not throw: inspect --json prints it.
    try {
      JSON.stringify(inspect.value);
    } catch (e) {
      problems.push(`inspect's summary does not serialise: ${describe(e)}`);
    }
  }

  const snap = await guarded("readQemuSnapshot()", problems, () => readQemuSnapshot(bytes));
  if (snap.value !== undefined && stream.value === undefined) {
    problems.push("readQemuSnapshot accepts a stream the reader refuses");
  }
  if (
    stream.error !== undefined && snap.error !== undefined && !sameError(stream.error, snap.error)
  ) {
    problems.push(
      `the reader and readQemuSnapshot refuse differently: ${describe(stream.error)} / ${
        describe(snap.error)
      }`,
    );
  }

  // openQemuStream: the same pages as readQemuSnapshot, and its digest.
  const opened = await guarded("openQemuStream()", problems, async () => {
    const s = await openQemuStream(streamOf(bytes, chunk), { createdAt: 0 });
    const final = new Map<string, Uint8Array>();
    const regions = s.description.regions;
    for await (const item of s.items()) {
      if (item.kind !== "pages") continue;
      const r = regions[item.region];
      item.pages.forEach((p, i) => {
        const key = pageKey(r.name, p * r.pageSize);
        const data = item.data?.subarray(i * r.pageSize, (i + 1) * r.pageSize);
        if (data === undefined || data.every((x) => x === 0)) final.delete(key);
        else final.set(key, data.slice());
      });
    }
    return { final, digest: toHex(await s.contentDigest()) };
  }, true);
  if ((opened.value !== undefined) !== (snap.value !== undefined)) {
    // A stream that reads but whose RAM no .lsnap file can hold is refused as unsupported.
    if (!(opened.error instanceof QemuStreamUnsupportedError && snap.value !== undefined)) {
      problems.push(
        `openQemuStream ${opened.value ? "accepts" : `refuses (${describe(opened.error)})`} ` +
          `what readQemuSnapshot ${snap.value ? "accepts" : `refuses (${describe(snap.error)})`}`,
      );
    }
  }
  if (opened.value !== undefined && snap.value !== undefined) {
    const want = new Map<string, Uint8Array>();
    for (const [block, m] of snap.value.pages) {
      for (const [address, data] of m) {
        if (data.some((x) => x !== 0)) want.set(pageKey(block, address), data);
      }
    }
    const got = opened.value.final;
    let same = want.size === got.size;
    for (const [k, v] of want) {
      const o = got.get(k);
      if (o === undefined || o.length !== v.length || o.some((x, i) => x !== v[i])) same = false;
    }
    if (!same) problems.push("openQemuStream and readQemuSnapshot disagree on the final pages");
  }

  // convert --from qemu: only what openQemuStream reads, and the output verifies with its digest.
  const out = `${path}.qemu.lsnap`;
  const conv = await guarded(
    "convertQemuToLsnap()",
    problems,
    () => convertQemuToLsnap(streamOf(bytes, chunk), out, { createdAt: 0, writer: { workers: 0 } }),
    true,
  );
  if (conv.value !== undefined) {
    if (opened.value === undefined) {
      problems.push("convert accepts a stream openQemuStream refuses");
    }
    // verify streams the file (no whole region in memory) and checks every digest.
    const back = await guarded("verify of convert's output", problems, async () => {
      const f = await Deno.open(out);
      return await verifySnapshot(f.readable);
    });
    if (back.value !== undefined && !back.value.ok) {
      problems.push(`convert wrote a file that does not verify: ${back.value.error?.message}`);
    }
    const digest = opened.value?.digest;
    if (digest !== undefined && back.value?.digests.content !== digest) {
      problems.push("the content digest of convert's output differs from openQemuStream's");
    }
  } else if (opened.value !== undefined) {
    problems.push(`convert refuses a stream openQemuStream reads: ${describe(conv.error)}`);
  }
  await Deno.remove(out).catch(() => {});

  // extract: each small block's bytes equal readQemuSnapshot's pages.
  if (snap.value !== undefined) {
    for (const b of snap.value.blocks) {
      if (b.size > MAX_EXTRACT) {
        skipped.push("extractQemuRam against readQemuSnapshot: a block over the harness's 64 MiB");
        continue;
      }
      const ram = await guarded("extractQemuRam()", problems, () => extractQemuRam(bytes, b.name));
      if (ram.value === undefined) {
        problems.push(`extractQemuRam refuses block '${b.name}' of a stream that reads`);
        continue;
      }
      const pages = snap.value.pages.get(b.name)!;
      const ps = snap.value.pageSize;
      for (let a = 0; a < b.size; a += ps) {
        const want = pages.get(a);
        const got = ram.value.subarray(a, a + ps);
        const same = want === undefined
          ? got.every((x) => x === 0)
          : got.every((x, i) => x === want[i]);
        if (!same) {
          problems.push(
            `extractQemuRam and readQemuSnapshot disagree on '${b.name}' at 0x${a.toString(16)}`,
          );
          break;
        }
      }
    }
  }
  return {
    problems,
    skipped,
    outcome: stream.value !== undefined ? "ok" : stream.error?.name ?? "crash",
  };
}
