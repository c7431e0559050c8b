/**
 * The loader thread of a lazy restore: a Worker entry that installs its message handler before
 * loading anything, so the boot message posted right after `new Worker()` is never lost (the
 * format's modules await WebAssembly at top level), and then runs `lazy_loader.ts`.
 *
 * @module
 */

import type { LoaderBoot, LoaderEvent } from "./lazy_pages.ts";

const port = globalThis as unknown as {
  postMessage(message: LoaderEvent): void;
  onmessage: ((e: MessageEvent<LoaderBoot>) => void) | null;
  close(): void;
};

// Loaded and compiled now, while the thread waits for its work (a restore makes its loaders before
// its clock starts): not at the boot message, where it would take a core from the guest's start.
const loading = import("./lazy_loader.ts");
// "ready" once loaded and its record path run once (`warmLoader`; `loadersReady` waits for it);
// a failure is reported when the boot message awaits it.
loading.then((m) => {
  try {
    m.warmLoader();
  } catch {
    // Cold code is slower, not wrong.
  }
  port.postMessage({ type: "ready" });
}, () => {});

port.onmessage = async (e) => {
  port.onmessage = null;
  const boot = e.data;
  const { runLoader, failLoader } = await loading;
  try {
    port.postMessage(await runLoader(boot));
  } catch (err) {
    failLoader(boot, (err as Error).message);
    port.postMessage({ type: "failed", id: boot.id, message: (err as Error).message });
  }
  port.close();
};
