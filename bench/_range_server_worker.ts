/**
 * The loopback Range server of tests/_range_server.ts in a worker thread, so that the benchmark's
 * client and server do not share one event loop. Started with `{ path, latencyMs }`, it answers
 * `{ url }`; `"close"` stops it.
 *
 * @module
 */
import { startRangeServer } from "../tests/_range_server.ts";

const self = globalThis as unknown as {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
};
let server: ReturnType<typeof startRangeServer> | null = null;
self.onmessage = async (e: MessageEvent) => {
  if (e.data === "close") {
    await server?.close();
    self.postMessage({ closed: true });
    self.close();
    return;
  }
  const { path, latencyMs } = e.data as { path: string; latencyMs: number };
  server = startRangeServer({ body: await Deno.readFile(path), latencyMs });
  self.postMessage({ url: server.url });
};
