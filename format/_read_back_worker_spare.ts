/**
 * A read-back worker (`_output_check_worker.ts`) started ahead of need: a command that will flatten
 * starts it before it loads the rest and opens the chain, so that the worker loads its modules on
 * the core that is idle meanwhile. `_output_check.ts` takes it when it starts a read-back in a
 * worker. This module imports nothing, so that starting the worker waits for nothing.
 *
 * @module
 */

let spare: Worker | null = null;

function startWorker(): Worker {
  return new Worker(new URL("./_output_check_worker.ts", import.meta.url).href, {
    type: "module",
  });
}

/** Starts the spare worker, unless one is waiting already. */
export function prestartReadBackWorker(): void {
  spare ??= startWorker();
}

/** The spare worker (which the caller then owns), or a new one. */
export function takeReadBackWorker(): Worker {
  const w = spare ?? startWorker();
  spare = null;
  return w;
}

/** Stops the spare worker if no read-back took it (an idle worker keeps the process alive). */
export function releaseReadBackWorker(): void {
  spare?.terminate();
  spare = null;
}
