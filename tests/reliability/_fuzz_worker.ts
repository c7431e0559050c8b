/**
 * Fuzz worker: runs a range of cases and reports each one's start and result, so the driver can
 * tell a hang (no result within the timeout) and terminate this worker.
 * Messages in: `{ seed, from, to, scratch, maxRss }`; out: `{ start: i }`, `{ done: i, ... }`,
 * `{ finished: true }`.
 *
 * @module
 */
import { buildCorpus } from "./_corpus.ts";
import { caseSeed, makeCase, Rng } from "./_mutators.ts";
import { runCase } from "./_targets.ts";

const corpus = await buildCorpus();
// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = async (
  e: MessageEvent<{ seed: number; from: number; to: number; scratch: string; maxRss: number }>,
) => {
  const { seed, from, to, scratch, maxRss } = e.data;
  for (let i = from; i < to; i++) {
    scope.postMessage({ start: i });
    const chunk = 1 + new Rng(caseSeed(seed, i) ^ 0x5bd1e995).int(70_000);
    let c: Awaited<ReturnType<typeof makeCase>> = {
      bytes: new Uint8Array(0),
      source: -1,
      mutators: [],
    };
    let result;
    try {
      c = await makeCase(seed, i, corpus);
      result = await runCase(c.bytes, scratch, chunk);
    } catch (err) {
      result = { problems: [`the harness itself failed: ${String(err)}`], outcome: "harness" };
    }
    const rss = Deno.memoryUsage().rss;
    if (rss > maxRss) result.problems.push(`resident memory ${rss} bytes exceeds ${maxRss}`);
    scope.postMessage({ done: i, ...result, mutators: c.mutators, source: c.source, rss });
  }
  scope.postMessage({ finished: true });
};
scope.postMessage({ ready: true });
