/**
 * Worker of {@linkcode PageDigestPool}: runs {@linkcode digestPageData} on the jobs it is sent and
 * hands each job's buffer back with the result.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { digestPageData, type PageDigestMessage, type PageJobMessage } from "./_page_digest.ts";

self.onmessage = (e: MessageEvent<PageJobMessage>) => {
  const m = e.data;
  const result = digestPageData({
    encoding: m.encoding,
    data: new Uint8Array(m.buffer, 0, m.length),
    count: m.count,
    pageSize: m.pageSize,
  });
  const reply: PageDigestMessage = { id: m.id, buffer: m.buffer, result };
  const transfer: ArrayBuffer[] = [m.buffer];
  if ("hashes" in result) {
    transfer.push(result.hashes.buffer as ArrayBuffer, result.zero.buffer as ArrayBuffer);
  }
  self.postMessage(reply, transfer);
};
self.postMessage({ ready: true } satisfies PageDigestMessage);
