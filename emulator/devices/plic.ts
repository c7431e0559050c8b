/**
 * The platform-level interrupt controller, laid out and behaving as QEMU 7.2's `virt` board
 * configures its SiFive PLIC (hw/intc/sifive_plic.c, hw/riscv/virt.c, include/hw/riscv/virt.h):
 * 96 sources (0 is reserved), priorities 0..7 (VIRT_IRQCHIP_NUM_PRIO_BITS = 3), and two
 * contexts for the one hart, hart config "MS": context 0 is the hart's machine mode (drives
 * mip.MEIP), context 1 its supervisor mode (would drive mip.SEIP; this hart has no S-mode, so
 * its output is kept only as state).
 *
 * ```
 * +0x000000 + 4*n            source n priority (WARL: written value modulo 8)
 * +0x001000 + 4*w            pending bits of sources 32w..32w+31 (read-only)
 * +0x002000 + 0x80*c + 4*w   context c enable bits
 * +0x200000 + 0x1000*c       context c priority threshold (WARL, modulo 8)
 * +0x200004 + 0x1000*c       context c claim (read) / complete (write)
 * ```
 *
 * Semantics kept from QEMU's model, because a QEMU stream carries its state in these terms
 * (vmstate `riscv_sifive_plic`: source_priority, target_priority, pending, claimed, enable):
 *
 * - a source's pending bit is set each time the device drives its line high, claimed or not, and
 *   cleared only by a claim: driving the line low leaves it set (`sifive_plic_irq_request` as in
 *   QEMU 7.2.x stable, which sets pending only for level > 0; checked against QEMU 7.2 by the
 *   `interrupts` guest);
 * - a context's output is raised while some source is pending, enabled for it, not claimed and of
 *   a priority above the context's threshold;
 * - reading claim returns the highest-priority such source (the lowest number on a tie), clears
 *   its pending bit and marks it claimed; writing complete with a source number below 96 clears
 *   that claim, enabled or not. A line still high after completion raises no new interrupt until
 *   the device drives it again (as on QEMU 7.2).
 *
 * Only 32-bit accesses are valid (`.valid` 4..4 in QEMU): others raise an access fault
 * ({@linkcode Plic.accessSizes}).
 *
 * @module
 */

import { MIP_MEIP } from "../hart.ts";
import type { MmioDevice } from "./device.ts";

/** Version of {@linkcode PlicState}. */
export const PLIC_STATE_VERSION = 1;
/** Device id in snapshots. */
export const PLIC_DEVICE_ID = "plic";
/** Interrupt sources, source 0 (reserved) included (VIRT_IRQCHIP_NUM_SOURCES). */
export const PLIC_SOURCES = 96;
/** Contexts: hart 0 M-mode, hart 0 S-mode. */
export const PLIC_CONTEXTS = 2;
/** Highest priority ((1 << VIRT_IRQCHIP_NUM_PRIO_BITS) - 1). */
export const PLIC_MAX_PRIORITY = 7;
/** 32-bit words of pending / claimed bits ((96 + 31) >> 5). */
export const PLIC_WORDS = 3;
/** The UART's source number on the `virt` board (UART0_IRQ). */
export const UART0_IRQ = 10;

const PENDING_BASE = 0x1000;
const ENABLE_BASE = 0x2000;
const ENABLE_STRIDE = 0x80;
const CONTEXT_BASE = 0x20_0000;
const CONTEXT_STRIDE = 0x1000;

/**
 * Saved PLIC, as QEMU's vmstate `riscv_sifive_plic` holds it (unsigned 32-bit values).
 * NOTICE: changing this layout needs a version bump (PLIC_STATE_VERSION).
 */
export interface PlicState {
  /** Priority per source (PLIC_SOURCES entries; QEMU: source_priority). */
  priority: number[];
  /** Priority threshold per context (QEMU: target_priority). */
  threshold: number[];
  /** Pending bits, PLIC_WORDS words. */
  pending: number[];
  /** Claimed bits, PLIC_WORDS words. */
  claimed: number[];
  /** Enable bits, PLIC_WORDS words per context (QEMU: enable). */
  enable: number[];
}

/** The state of a PLIC after reset: everything zero. */
export function plicResetState(): PlicState {
  return {
    priority: new Array(PLIC_SOURCES).fill(0),
    threshold: new Array(PLIC_CONTEXTS).fill(0),
    pending: new Array(PLIC_WORDS).fill(0),
    claimed: new Array(PLIC_WORDS).fill(0),
    enable: new Array(PLIC_WORDS * PLIC_CONTEXTS).fill(0),
  };
}

/** The PLIC. */
export class Plic implements MmioDevice {
  /** Only 32-bit accesses are valid (bit n set: n-byte accesses are allowed). */
  readonly accessSizes: number = 4;
  /** Priority per source. */
  readonly priority: Uint32Array = new Uint32Array(PLIC_SOURCES);
  /** Priority threshold per context. */
  readonly threshold: Uint32Array = new Uint32Array(PLIC_CONTEXTS);
  /** Pending bits. */
  readonly pending: Uint32Array = new Uint32Array(PLIC_WORDS);
  /** Claimed bits. */
  readonly claimed: Uint32Array = new Uint32Array(PLIC_WORDS);
  /** Enable bits, PLIC_WORDS words per context. */
  readonly enable: Uint32Array = new Uint32Array(PLIC_WORDS * PLIC_CONTEXTS);
  /** mip bits this PLIC drives: MEIP while context 0's output is raised. */
  mip = 0;
  /** Context 1's output (the hart's S-mode external interrupt, which this hart cannot take). */
  seip = false;

  /** Drive source `irq`'s line (a device calls this every time it updates its line). */
  setSource(irq: number, level: boolean): void {
    if (!level) return;
    this.pending[irq >>> 5] |= 1 << (irq & 31);
    this.#update();
  }

  /** The source context `ctx` would claim now, 0 when none. */
  #best(ctx: number): number {
    let best = 0;
    let bestPriority = this.threshold[ctx];
    for (let w = 0; w < PLIC_WORDS; w++) {
      const ready = this.pending[w] & ~this.claimed[w] & this.enable[ctx * PLIC_WORDS + w];
      if (ready === 0) continue;
      for (let b = 0; b < 32; b++) {
        const irq = w * 32 + b;
        if ((ready & (1 << b)) !== 0 && irq < PLIC_SOURCES && this.priority[irq] > bestPriority) {
          best = irq;
          bestPriority = this.priority[irq];
        }
      }
    }
    return best;
  }

  #update(): void {
    this.mip = this.#best(0) !== 0 ? MIP_MEIP : 0;
    this.seip = this.#best(1) !== 0;
  }

  load(offset: number, size: number): number {
    if (size !== 4) return 0;
    if (offset < PLIC_SOURCES * 4) return this.priority[offset >>> 2] | 0;
    if (offset >= PENDING_BASE && offset < PENDING_BASE + PLIC_WORDS * 4) {
      return this.pending[(offset - PENDING_BASE) >>> 2] | 0;
    }
    if (offset >= ENABLE_BASE && offset < ENABLE_BASE + PLIC_CONTEXTS * ENABLE_STRIDE) {
      const ctx = (offset - ENABLE_BASE) >>> 7;
      const word = (offset & (ENABLE_STRIDE - 1)) >>> 2;
      return word < PLIC_WORDS ? this.enable[ctx * PLIC_WORDS + word] | 0 : 0;
    }
    if (offset >= CONTEXT_BASE && offset < CONTEXT_BASE + PLIC_CONTEXTS * CONTEXT_STRIDE) {
      const ctx = (offset - CONTEXT_BASE) >>> 12;
      const reg = offset & (CONTEXT_STRIDE - 1);
      if (reg === 0) return this.threshold[ctx];
      if (reg === 4) {
        const irq = this.#best(ctx);
        if (irq !== 0) {
          this.pending[irq >>> 5] &= ~(1 << (irq & 31));
          this.claimed[irq >>> 5] |= 1 << (irq & 31);
        }
        this.#update();
        return irq;
      }
    }
    return 0;
  }

  store(offset: number, size: number, value: number): void {
    if (size !== 4) return;
    const v = value >>> 0;
    if (offset < PLIC_SOURCES * 4) {
      this.priority[offset >>> 2] = v % (PLIC_MAX_PRIORITY + 1);
      this.#update();
    } else if (offset >= ENABLE_BASE && offset < ENABLE_BASE + PLIC_CONTEXTS * ENABLE_STRIDE) {
      const ctx = (offset - ENABLE_BASE) >>> 7;
      const word = (offset & (ENABLE_STRIDE - 1)) >>> 2;
      // QEMU stores the enable word without updating the outputs; the next update sees it.
      if (word < PLIC_WORDS) this.enable[ctx * PLIC_WORDS + word] = v;
    } else if (
      offset >= CONTEXT_BASE && offset < CONTEXT_BASE + PLIC_CONTEXTS * CONTEXT_STRIDE
    ) {
      const ctx = (offset - CONTEXT_BASE) >>> 12;
      const reg = offset & (CONTEXT_STRIDE - 1);
      if (reg === 0) {
        this.threshold[ctx] = v % (PLIC_MAX_PRIORITY + 1);
        this.#update();
      } else if (reg === 4 && v < PLIC_SOURCES) {
        this.claimed[v >>> 5] &= ~(1 << (v & 31));
        this.#update();
      }
    }
  }

  /** Plain-data copy. */
  save(): PlicState {
    return {
      priority: Array.from(this.priority),
      threshold: Array.from(this.threshold),
      pending: Array.from(this.pending),
      claimed: Array.from(this.claimed),
      enable: Array.from(this.enable),
    };
  }

  /** Load a state produced by {@linkcode Plic.save}. */
  restore(s: PlicState): void {
    const take = (name: keyof PlicState, into: Uint32Array, max: number) => {
      const a = s[name];
      if (!Array.isArray(a) || a.length !== into.length) {
        throw new RangeError(
          `Cannot restore PLIC: ${name} must be an array of ${into.length} numbers`,
        );
      }
      for (let i = 0; i < a.length; i++) {
        const v = a[i];
        if (!Number.isInteger(v) || v < 0 || v > max) {
          throw new RangeError(`Cannot restore PLIC: ${name}[${i}] ${v} is outside 0..${max}`);
        }
      }
      into.set(a);
    };
    take("priority", this.priority, PLIC_MAX_PRIORITY);
    take("threshold", this.threshold, PLIC_MAX_PRIORITY);
    take("pending", this.pending, 0xffff_ffff);
    take("claimed", this.claimed, 0xffff_ffff);
    take("enable", this.enable, 0xffff_ffff);
    this.#update();
  }
}
