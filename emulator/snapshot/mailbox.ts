/**
 * The host's commands to the guest thread. The guest thread does not return to its event loop
 * while the guest runs (that would cost a timer tick per slice), so commands travel through
 * shared memory: the host writes the arguments, then bumps the doorbell; the guest thread looks
 * at the doorbell between slices (one atomic load). Replies come back as messages.
 *
 * @module
 */

/** Int32 index: bumped by the host after each command. */
export const MAIL_DOORBELL = 0;
/** Int32 index: the command (MAIL_* kinds). */
export const MAIL_KIND = 1;
/** Float64 index (over the same buffer, after the Int32 words) of the first argument. */
const MAIL_ARGS_F64 = 1;
const MAIL_ARG_COUNT = 4;

/** Command kinds. */
export const CMD_SNAPSHOT = 1;
/** `CMD_SNAPSHOT`'s third argument: a full snapshot; a diff on the machine's last snapshot
 * (refused if it has none); a diff if it has one, else a full snapshot. */
export const SNAPSHOT_FULL = 0;
export const SNAPSHOT_DIFF = 1;
export const SNAPSHOT_DIFF_IF_PARENT = 2;
export const CMD_PAUSE = 2;
export const CMD_RESUME = 3;
export const CMD_STATUS = 4;
export const CMD_QUIT = 5;
export const CMD_SAVE_STATE = 6;

export { MODE_CODES, MODE_NAMES } from "./session.ts";

/** One command as read by the guest. */
export interface MailCommand {
  kind: number;
  /** The doorbell value it arrived with: the reply's sequence number. */
  seq: number;
  args: number[];
}

/** A mailbox over one SharedArrayBuffer, usable from either side. */
export class Mailbox {
  readonly buffer: SharedArrayBuffer;
  readonly #words: Int32Array;
  readonly #args: Float64Array;
  #seen = 0;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(8 * (MAIL_ARGS_F64 + MAIL_ARG_COUNT));
    this.#words = new Int32Array(this.buffer, 0, 2);
    this.#args = new Float64Array(this.buffer, 8 * MAIL_ARGS_F64, MAIL_ARG_COUNT);
  }

  /** Host: posts a command and returns its sequence number. The host sends one at a time and
   * waits for the reply before the next. */
  post(kind: number, args: number[] = []): number {
    for (let i = 0; i < MAIL_ARG_COUNT; i++) this.#args[i] = args[i] ?? 0;
    Atomics.store(this.#words, MAIL_KIND, kind);
    const seq = Atomics.add(this.#words, MAIL_DOORBELL, 1) + 1;
    Atomics.notify(this.#words, MAIL_DOORBELL);
    return seq;
  }

  /** Host: the sequence number the next `post` will return. */
  nextSeq(): number {
    return Atomics.load(this.#words, MAIL_DOORBELL) + 1;
  }

  /** Guest: the new command, if the doorbell moved since the last call. */
  take(): MailCommand | null {
    const bell = Atomics.load(this.#words, MAIL_DOORBELL);
    if (bell === this.#seen) return null;
    this.#seen = bell;
    return {
      kind: Atomics.load(this.#words, MAIL_KIND),
      seq: bell,
      args: Array.from(this.#args),
    };
  }

  /** Guest: blocks until the doorbell moves or `ms` pass. */
  wait(ms: number): void {
    Atomics.wait(this.#words, MAIL_DOORBELL, this.#seen, ms);
  }
}
