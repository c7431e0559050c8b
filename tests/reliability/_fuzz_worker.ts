/**
 * Fuzz worker: runs a range of cases and reports each one's start and result, so the driver can
 * tell a hang (no result within the timeout) and terminate this worker.
 * Messages in: `{ target, seed, from, to, scratch, maxRss }`; out: `{ start: i }`, `{ done: i, ... }`,
 * `{ finished: true }`.
 *
 * @module
 */
import { caseSeed, Rng } from "./_mutators.ts";
import { type FuzzCase, type FuzzTarget, type LoadedTarget, loadTarget } from "./_fuzz_target.ts";

const loaded = new Map<FuzzTarget, Promise<LoadedTarget>>();
// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = async (
  e: MessageEvent<
    { target: FuzzTarget; seed: number; from: number; to: number; scratch: string; maxRss: number }
  >,
) => {
  const { target, seed, from, to, scratch, maxRss } = e.data;
  if (!loaded.has(target)) loaded.set(target, loadTarget(target));
  const t = await loaded.get(target)!;
  for (let i = from; i < to; i++) {
    scope.postMessage({ start: i });
    const chunk = 1 + new Rng(caseSeed(seed, i) ^ 0x5bd1e995).int(70_000);
    let c: FuzzCase = {
      bytes: new Uint8Array(0),
      source: -1,
      mutators: [],
    };
    let result;
    try {
      c = await t.make(seed, i);
      result = await t.run(c.bytes, scratch, chunk);
    } catch (err) {
      result = {
        problems: [`the harness itself failed: ${String(err)}`],
        skipped: [],
        outcome: "harness",
      };
    }
    const rss = Deno.memoryUsage().rss;
    if (rss > maxRss) result.problems.push(`resident memory ${rss} bytes exceeds ${maxRss}`);
    scope.postMessage({ done: i, ...result, mutators: c.mutators, source: c.source, rss });
  }
  scope.postMessage({ finished: true });
};
scope.postMessage({ ready: true });
