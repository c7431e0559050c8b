/**
 * Feeds one fuzz case to every consumer of untrusted snapshot bytes and judges the outcome: each
 * must end in a documented error or a correct result, and the consumers must agree with each
 * other. Returns the list of problems (empty when the case passed) and a short outcome label for
 * the statistics.
 *
 * Documented errors: the format's `LsnapError` subclasses (FORMAT.md §11) from the readers; the
 * tools report those in their result and never throw for them; `decodeDeviceState` throws
 * `Error("Cannot decode device state: …")`.
 *
 * @module
 */
import { toHex } from "../../format/checksum.ts";
import { decodeDeviceState } from "../../format/device_state.ts";
import { LsnapError } from "../../format/errors.ts";
import { SnapshotFileReader } from "../../format/file_reader.ts";
import { readSnapshot, type Snapshot } from "../../format/stream_reader.ts";
import { inspectSnapshot } from "../../tools/inspect.ts";
import { verifySnapshot } from "../../tools/verify.ts";
import { ConvertError, convertSnapshot } from "../../tools/convert/mod.ts";
import { restoreMachine } from "../../emulator/snapshot/restore.ts";
import { Machine } from "../../emulator/machine.ts";
import { SnapshotMismatchError } from "../../emulator/snapshot/machine_state.ts";

/** Largest machine the readers may load whole (larger ones are refused with UnsupportedError). */
const MAX_MACHINE = 256 * 1024 * 1024;

let reference: unknown;

/**
 * Where `v` (a restored machine's `save()`) differs in kind from `ref` (a fresh machine's): a
 * number that is not finite, a string where a number belongs, a missing key. Array lengths and
 * values may differ; kinds may not. Returns null when they agree.
 */
function shapeProblem(v: unknown, ref: unknown, at: string): string | null {
  if (typeof ref === "number") {
    return typeof v === "number" && Number.isFinite(v) ? null : `${at} is ${String(v)}`;
  }
  if (ref instanceof Uint8Array) return v instanceof Uint8Array ? null : `${at} is not bytes`;
  if (Array.isArray(ref)) {
    if (!Array.isArray(v)) return `${at} is not an array`;
    if (ref.length === 0) return null;
    for (let i = 0; i < v.length; i++) {
      const p = shapeProblem(v[i], ref[Math.min(i, ref.length - 1)], `${at}[${i}]`);
      if (p !== null) return p;
    }
    return null;
  }
  if (ref !== null && typeof ref === "object") {
    if (v === null || typeof v !== "object") return `${at} is not an object`;
    for (const k of Object.keys(ref)) {
      const p = shapeProblem(
        (v as Record<string, unknown>)[k],
        (ref as Record<string, unknown>)[k],
        `${at}.${k}`,
      );
      if (p !== null) return p;
    }
    return null;
  }
  return typeof v === typeof ref ? null : `${at} is a ${typeof v}, not a ${typeof ref}`;
}

/** What one case did. */
export interface CaseResult {
  /** Problems found; empty means no check failed. */
  problems: string[];
  /**
   * Checks that applied to the case but were not made, each with why (the harness caps what it
   * loads whole): such a case is counted as skipped, not passed.
   */
  skipped: string[];
  /** "ok" or the error kind the stream reader reported (for the statistics). */
  outcome: string;
}

/** `bytes` as a stream of `chunk`-byte pieces (the last one shorter). */
export function streamOf(bytes: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

/** An error's name and message, at most 300 characters, for a case's record. */
export function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`.slice(0, 300);
  return String(e).slice(0, 300);
}

/** Ran `f`; an error that is not a format error (or one of `documented`) is a problem. */
async function guarded<T>(
  what: string,
  problems: string[],
  f: () => Promise<T>,
  // deno-lint-ignore no-explicit-any
  documented: (new (...a: any[]) => Error)[] = [],
): Promise<{ value?: T; error?: Error }> {
  try {
    return { value: await f() };
  } catch (e) {
    if (e instanceof LsnapError || documented.some((c) => e instanceof c)) {
      return { error: e as Error };
    }
    problems.push(`${what} threw an undocumented error: ${describe(e)}`);
    return {};
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Runs one case through the stream reader, the file reader, `verify`, `inspect` and the device
 * state decoder. `path` is a scratch file the file reader may use; `chunk` the stream chunk size.
 */
export async function runCase(bytes: Uint8Array, path: string, chunk: number): Promise<CaseResult> {
  const problems: string[] = [];
  const skipped: string[] = [];
  const stream = await guarded(
    "readSnapshot()",
    problems,
    () => readSnapshot(streamOf(bytes, chunk), { maxMemoryBytes: MAX_MACHINE }),
  );
  const verify = await guarded(
    "verifySnapshot()",
    problems,
    () => verifySnapshot(streamOf(bytes, 4096)),
  );
  const inspect = await guarded(
    "inspectSnapshot()",
    problems,
    () => inspectSnapshot(streamOf(bytes, 65536)),
  );
  for (const [what, r] of [["verifySnapshot()", verify], ["inspectSnapshot()", inspect]] as const) {
    if (r.error !== undefined) {
      problems.push(`${what} threw ${describe(r.error)} instead of reporting it`);
    }
  }
  await Deno.writeFile(path, bytes);
  const file = await guarded("SnapshotFileReader", problems, async () => {
    const r = await SnapshotFileReader.open(path);
    try {
      const regions: Uint8Array[] = [];
      for (let i = 0; i < r.description.regions.length; i++) {
        regions.push(await r.readRegion(i, { maxMemoryBytes: MAX_MACHINE }));
      }
      return { complete: r.complete, regions, devices: await r.devices() };
    } finally {
      r.close();
    }
  });

  const snap: Snapshot | undefined = stream.value;
  const v = verify.value;
  // readSnapshot() alone refuses machines too large to hold in memory; verify streams them.
  const tooLarge = stream.error?.message.includes("this reader may allocate") ?? false;
  if (tooLarge) skipped.push("verify against readSnapshot: the machine is over the harness's cap");
  if (v !== undefined && !tooLarge) {
    // verify also decodes CBOR device state, which the readers treat as opaque bytes.
    const onlyState = !v.ok && v.problems.length > 0 &&
      v.problems.every((p) => / state does not decode: /.test(p.message));
    if (v.ok !== (snap !== undefined) && !(snap !== undefined && onlyState)) {
      problems.push(
        `verify says ok=${v.ok} but readSnapshot ${
          snap ? "succeeded" : `failed (${describe(stream.error)})`
        }`,
      );
    }
    if (!v.ok && v.error === null) problems.push("verify failed without naming a problem");
    if (v.error !== null && !(v.error.offset >= 0 && v.error.recordIndex >= -1)) {
      problems.push(`verify error without a location: ${JSON.stringify(v.error)}`);
    }
  }
  if (inspect.value !== undefined && snap !== undefined && !inspect.value.complete) {
    problems.push(
      `inspect says incomplete (${inspect.value.error?.message}) for a file readSnapshot accepts`,
    );
  }
  if (snap !== undefined) {
    if (v?.ok && v.digests.content !== toHex(snap.contentDigest)) {
      problems.push("verify and readSnapshot disagree on the content digest");
    }
    // A file the strict reader accepts must read the same through the random-access reader.
    const f = file.value;
    if (f === undefined) {
      problems.push(`the file reader refuses a file readSnapshot accepts: ${describe(file.error)}`);
    } else {
      if (!f.complete) problems.push("the file reader calls a valid file incomplete");
      f.regions.forEach((reg, i) => {
        if (!sameBytes(reg, snap.regions[i])) {
          problems.push(`region ${i} differs between the readers`);
        }
      });
      const key = (d: { id: string; instance: number; version: number; state: Uint8Array }) =>
        `${d.id}/${d.instance}/${d.version}/${toHex(d.state)}`;
      if (f.devices.map(key).join() !== snap.devices.map(key).join()) {
        problems.push("device sections differ between the readers");
      }
    }
  }
  // Device state as restore would decode it: from whichever reader yielded sections (the file
  // reader does not check digests, so hostile CBOR behind a fixed CRC reaches this).
  for (const d of file.value?.devices ?? snap?.devices ?? []) {
    if (d.encoding !== "cbor") continue;
    try {
      decodeDeviceState(d.state);
    } catch (e) {
      const cause = (e as Error).cause;
      const documented = e instanceof Error && e.message.startsWith("Cannot decode device state:");
      if (!documented || cause instanceof RangeError || cause instanceof TypeError) {
        problems.push(
          `decodeDeviceState() of '${d.id}': ${describe(e)} (cause ${describe(cause)})`,
        );
      }
    }
  }
  // convert (lsnap to lsnap): succeeds only for what the strict reader accepts, and keeps it.
  const out = `${path}.out`;
  const conv = await guarded(
    "convertSnapshot()",
    problems,
    () => convertSnapshot(path, out, { checkInWorker: false, progress: false, workers: 0 }),
    [ConvertError],
  );
  if (conv.value !== undefined) {
    if (tooLarge) {
      skipped.push("convert against readSnapshot: the machine is over the harness's cap");
    }
    if (snap === undefined && !tooLarge) {
      problems.push(`convert accepted a file readSnapshot refuses (${describe(stream.error)})`);
    }
    const back = await guarded("verify of convert's output", problems, async () => {
      const f = await Deno.open(out);
      return await verifySnapshot(f.readable);
    });
    // A copy verifies exactly when its input does (verify may refuse opaque device state).
    if (back.value?.ok !== v?.ok) {
      problems.push(
        `convert wrote a file that verify ${
          back.value?.ok ? "accepts" : `refuses (${back.value?.error?.message})`
        }, its input ${v?.ok ? "verifies" : "does not"}`,
      );
    } else if (
      back.value?.ok && snap !== undefined &&
      back.value.digests.content !== toHex(snap.contentDigest)
    ) {
      problems.push("convert changed the content digest");
    }
  }
  await Deno.remove(out).catch(() => {});

  // restore into the bundled machine, then run it: a guest fault is a value, never an exception.
  const restored = await guarded(
    "restoreMachine()",
    problems,
    () => restoreMachine(streamOf(bytes, chunk), { uartSink: () => {} }),
    [SnapshotMismatchError],
  );
  if (restored.value !== undefined) {
    const m = restored.value.machine;
    // (The harness caps readSnapshot at 256 MiB; restore builds machines of up to 2 GiB.)
    if (tooLarge) {
      skipped.push("restored RAM against the file: the machine is over the harness's cap");
    }
    if (snap === undefined && !tooLarge) {
      problems.push("restore accepted a file readSnapshot refuses");
    } else if (snap !== undefined && !sameBytes(m.ram.bytes, snap.regions[0])) {
      problems.push("restored RAM differs from the file's");
    }
    const shape = (when: string) => {
      const bad = shapeProblem(
        m.save(),
        reference ??= new Machine({ ramSize: 4096 }).save(),
        "state",
      );
      if (bad !== null) {
        problems.push(`${when}, the machine holds state no machine could have: ${bad}`);
      }
    };
    shape("after restore");
    try {
      m.run(20_000);
      shape("after running on");
    } catch (e) {
      problems.push(`the restored machine threw while running: ${describe(e)}`);
    }
  }
  return {
    problems,
    skipped,
    outcome: snap !== undefined ? "ok" : stream.error?.name ?? "crash",
  };
}
