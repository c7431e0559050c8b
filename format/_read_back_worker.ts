/**
 * Worker side of the read-back of flatten (flatten.ts) and convert (tools/convert/read_back.ts):
 * receives the output's bytes as they are written and reads them with the streaming checker
 * (every rule of FORMAT.md, the file digest and the content digest recomputed from the output's
 * records), on a core of its own.
 *
 * Messages in: `{ chunk: Uint8Array }`, then `{ end: true }`. Messages out: `{ ready: true }` once
 * it listens (the host sends nothing before), `{ ack: bytes }` after each chunk is consumed, then
 * `{ done: { complete, contentDigest } }` or `{ error: { message } }`.
 *
 * @module
 */
import { SnapshotChecker } from "./file_checks.ts";
import { streamSource } from "./record_scanner.ts";

/** The worker's global scope, typed for the two members used here. */
const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<{ chunk?: Uint8Array; end?: boolean }>) => void) | null;
};

const queue: Uint8Array[] = [];
let ended = false;
let wake: (() => void) | null = null;

const stream = new ReadableStream<Uint8Array>({
  async pull(controller) {
    while (queue.length === 0 && !ended) await new Promise<void>((r) => (wake = r));
    const chunk = queue.shift();
    if (chunk === undefined) {
      controller.close();
      return;
    }
    controller.enqueue(chunk);
    scope.postMessage({ ack: chunk.length });
  },
});

scope.onmessage = (e) => {
  if (e.data.chunk !== undefined) queue.push(e.data.chunk);
  if (e.data.end) ended = true;
  const w = wake;
  wake = null;
  w?.();
};

async function check(): Promise<{ complete: boolean; contentDigest: Uint8Array | null }> {
  const checker = new SnapshotChecker(streamSource(stream), {
    report: (e) => {
      throw e;
    },
    pages: "digest",
  });
  for await (const _ of checker.records()) { /* every rule is applied */ }
  return { complete: checker.complete, contentDigest: checker.contentDigest };
}

// Not top-level await: a worker gets no messages until its module has finished evaluating.
check().then(
  (done) => scope.postMessage({ done }),
  (e) => scope.postMessage({ error: { message: (e as Error).message } }),
);
// Messages sent before this module finished evaluating are lost, so the host waits for this.
scope.postMessage({ ready: true });
