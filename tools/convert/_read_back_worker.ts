/**
 * Worker side of `convert`'s read-back check (see `read_back.ts`): receives an `.lsnap` output's
 * bytes as they are written and reads them with {@linkcode readLsnapBack}.
 *
 * Messages in: `{ chunk: Uint8Array }`, then `{ end: true }`. Messages out: `{ ready: true }` once
 * it listens (the host sends nothing before), `{ ack: bytes }` after each chunk is consumed, then
 * `{ done: { complete, contentDigest } }` or `{ error: { name, message } }`.
 *
 * @module
 */
import { readLsnapBack } from "./read_back.ts";

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

// Not top-level await: a worker gets no messages until its module has finished evaluating.
readLsnapBack(stream).then(
  (done) => scope.postMessage({ done }),
  (e) => scope.postMessage({ error: { name: (e as Error).name, message: (e as Error).message } }),
);
// Messages sent before this module finished evaluating are lost, so the host waits for this.
scope.postMessage({ ready: true });
