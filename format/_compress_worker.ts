/**
 * Compression worker for {@linkcode SnapshotWriter}: encodes page batches off the writer's thread.
 * Messages: `{ ready: true }` once loaded, then `{ id, batch }` in, `{ id, record, hashes, raw }` or
 * `{ id, error }` out.
 *
 * @module
 */
import { encodePageBatch, type PageBatch } from "./_page_batch.ts";

// deno-lint-ignore no-explicit-any
const scope = self as any;
scope.onmessage = (e: MessageEvent<{ id: number; batch: PageBatch }>) => {
  const { id, batch } = e.data;
  try {
    const { record, hashes } = encodePageBatch(batch);
    scope.postMessage({ id, record, hashes, raw: batch.raw }, [
      record.buffer,
      hashes.buffer,
      batch.raw.buffer,
    ]);
  } catch (err) {
    scope.postMessage({ id, error: String((err as Error)?.message ?? err) });
  }
};
scope.postMessage({ ready: true });
