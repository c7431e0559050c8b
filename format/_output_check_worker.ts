/**
 * Worker side of the read-back in `_output_check.ts`: the streaming checker (every rule, both
 * digests recomputed) on a core of its own, reading the output file as it grows, or the chunks it
 * is sent.
 *
 * Messages in: `{ start: { path, claims } }` first (`path` null: chunks follow; `claims` null:
 * no share), then `{ chunk }` (chunk mode) or `{ written: length }` (file mode), and `end: true`
 * on the last; in file mode with `claims`, `{ share: SharedPageResult }` (the writing thread's
 * share of the page work, see `ShareOptions`). Messages out: `{ ack: bytes }` as chunks are
 * consumed (chunk mode), then `{ done: OutputCheckResult }` or `{ error: { message, offset } }`
 * (`offset` in the output, or null).
 *
 * @module
 */
import {
  checkOutput,
  OutputFeed,
  type OutputReadBackError,
  type SharedPageResult,
  SharedPageWork,
} from "./_output_check.ts";

/** The worker's global scope, typed for the two members used here. */
const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage:
    | ((
      e: MessageEvent<
        {
          start?: { path: string | null; claims?: Int32Array | null };
          chunk?: Uint8Array;
          written?: number;
          end?: boolean;
          share?: SharedPageResult;
        }
      >,
    ) => void)
    | null;
};

let feed: OutputFeed | null = null;
let shared: SharedPageWork | null = null;

scope.onmessage = (e) => {
  const m = e.data;
  if (m.start !== undefined) {
    const path = m.start.path;
    try {
      feed = new OutputFeed(
        path === null ? null : Deno.openSync(path, { read: true }),
        path === null ? (n) => scope.postMessage({ ack: n }) : undefined,
      );
    } catch (e) {
      scope.postMessage({ error: { message: `cannot open the output: ${(e as Error).message}` } });
      return;
    }
    const claims = m.start.claims ?? null;
    if (claims !== null) shared = new SharedPageWork(claims);
    checkOutput(feed, shared ?? undefined).then(
      (done) => {
        shared?.stop();
        scope.postMessage({ done });
      },
      (e) => {
        shared?.stop();
        scope.postMessage({
          error: { message: (e as Error).message, offset: (e as OutputReadBackError).offset },
        });
      },
    );
    return;
  }
  if (m.share !== undefined) shared?.deliver(m.share);
  if (feed === null) return;
  if (m.chunk !== undefined) feed.addChunk(m.chunk);
  if (m.written !== undefined) feed.setWritten(m.written);
  if (m.end) feed.end();
};
