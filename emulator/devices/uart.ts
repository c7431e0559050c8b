/**
 * ns16550a UART with its interrupt, modelled on QEMU's (hw/char/serial.c), which is what QEMU's
 * `virt` board puts at 0x1000_0000 with its line on PLIC source 10: THR/RBR, IER, IIR/FCR, LCR
 * (with the DLAB divisor latch DLL/DLM), MCR (loopback included), LSR, MSR, SCR.
 *
 * - Transmission is instantaneous: LSR.THRE and LSR.TEMT always read set, and after every THR
 *   write the "THR empty" interrupt is pending again (QEMU's `thr_ipending`), as on QEMU whose
 *   character backends accept a byte at once.
 * - Received bytes come from a host-fed queue. The first bytes of the queue are the ones "in the
 *   UART": one in RBR without the FIFO, up to 16 with FCR.FE; the rest wait on the host side
 *   (QEMU's character backend) and move in as the guest reads. A receive-FIFO reset (FCR bit 1)
 *   drops no queued input (QEMU would drop what already sat in its FIFO).
 * - The interrupt identification follows QEMU's `serial_update_irq` priority: line status
 *   (LSR.OE/PE/FE/BI with IER.RLSI), character timeout, received data at the FIFO trigger level,
 *   THR empty, modem status. The FIFO's character timeout (QEMU: 4 character times of virtual
 *   time) elapses at once here: with the FIFO on, fewer bytes than the trigger level in the FIFO
 *   signal a timeout (IIR 0xC) immediately.
 * - The line is driven (`irq(level)`) wherever QEMU calls `serial_update_irq`, so that a PLIC
 *   that latches its pending bit on every drive (as QEMU's does) sees the same sequence.
 *
 * @module
 */

import type { MmioDevice } from "./device.ts";

/** Receives guest output, batched. The array is only valid during the call. */
export type UartSink = (bytes: Uint8Array) => void;

/** Drives the UART's interrupt line. */
export type IrqLine = (level: boolean) => void;

/** Version of {@linkcode UartState}. */
export const UART_STATE_VERSION = 2;
/** Device id in snapshots. */
export const UART_DEVICE_ID = "ns16550a";

/**
 * Saved UART.
 * NOTICE: changing this layout needs a version bump (UART_STATE_VERSION).
 */
export interface UartState {
  /** Interrupt enable register: RDI 0x01, THRI 0x02, RLSI 0x04, MSI 0x08. */
  ier: number;
  /** Line control register; bit 7 (DLAB) maps DLL/DLM over RBR/THR and IER. */
  lcr: number;
  /** Modem control register (bits 0-4; 0x10 is loopback, 0x08 OUT2 at reset). */
  mcr: number;
  /** Scratch register: a byte the guest stores and reads back. */
  scr: number;
  /** The FIFO control bits that stick: FIFO enable 0x01, DMA mode 0x08, trigger level 7:6. */
  fcr: number;
  /** Divisor latch, low byte (12 at reset: 9600 baud). */
  dll: number;
  /** Divisor latch, high byte. */
  dlm: number;
  /** Received bytes not yet read by the guest (the FIFO's, then the host's). */
  rx: Uint8Array;
  /** The last byte read from RBR (what RBR reads when no byte is waiting, FIFO off). */
  rbr: number;
  /** The "THR empty" interrupt is pending (QEMU's `thr_ipending`). */
  thrIpending: boolean;
  /** LSR error bits set and not yet cleared: OE 0x02, PE 0x04, FE 0x08, BI 0x10. */
  lsrErrors: number;
}

export const IER_RDI = 0x01;
export const IER_THRI = 0x02;
export const IER_RLSI = 0x04;
export const IER_MSI = 0x08;
export const IIR_NO_INT = 0x01;
export const IIR_THRI = 0x02;
export const IIR_RDI = 0x04;
export const IIR_RLSI = 0x06;
export const IIR_CTI = 0x0c;
export const LSR_DR = 0x01;
export const LSR_OE = 0x02;
export const LSR_BI = 0x10;
export const LSR_ERRORS = 0x1e;
export const LSR_THRE = 0x20;
export const LSR_TEMT = 0x40;
export const LCR_DLAB = 0x80;
export const MCR_LOOP = 0x10;
export const FCR_FE = 0x01;
const FCR_RFR = 0x02;
const FCR_XFR = 0x04;
/** FCR bits that stick (FIFO enable, DMA mode, trigger level). */
const FCR_KEPT = 0xc9;
/** MSR with DCD, DSR and CTS: what QEMU's UART reports on a backend without modem lines. */
export const MSR_DEFAULT = 0xb0;
/** Bytes the receive FIFO holds. */
export const FIFO_SIZE = 16;
/** The receive FIFO's trigger level for FCR bits 7:6. */
const TRIGGER_LEVELS = [1, 4, 8, 14];

/** The state after reset, as QEMU's `serial_reset` leaves it (9600 baud: divisor 12; OUT2). */
export function uartResetState(): UartState {
  return {
    ier: 0,
    lcr: 0,
    mcr: 0x08,
    scr: 0,
    fcr: 0,
    dll: 0x0c,
    dlm: 0,
    rx: new Uint8Array(0),
    rbr: 0,
    thrIpending: false,
    lsrErrors: 0,
  };
}

/** The ns16550a UART. */
export class Uart implements MmioDevice {
  #sink: UartSink;
  #irq: IrqLine;
  #out = new Uint8Array(4096);
  #outLen = 0;
  #rx: number[] = [];
  #rxHead = 0;
  /** Interrupt enable register (see {@linkcode UartState.ier}). */
  ier = 0;
  /** Line control register; bit 7 is DLAB. */
  lcr = 0;
  /** Modem control register; 0x10 is loopback. */
  mcr = 0x08;
  /** Scratch register. */
  scr = 0;
  /** The FIFO control bits that stick (FIFO enable, DMA mode, trigger level). */
  fcr = 0;
  /** Divisor latch, low byte. */
  dll = 0x0c;
  /** Divisor latch, high byte. */
  dlm = 0;
  /** The last byte read from RBR (what RBR reads when no byte is waiting, FIFO off). */
  rbr = 0;
  /** The "THR empty" interrupt is pending (QEMU's `thr_ipending`). */
  thrIpending = false;
  /** LSR error bits set and not yet cleared: OE 0x02, PE 0x04, FE 0x08, BI 0x10. */
  lsrErrors = 0;

  /**
   * A UART in its reset state whose output goes to `sink` (batched, see
   * {@linkcode Uart.flush}) and whose interrupt drives `irq` (PLIC source 10 on the machine).
   */
  constructor(sink: UartSink, irq: IrqLine = () => {}) {
    this.#sink = sink;
    this.#irq = irq;
  }

  /** Replace the output sink (flushes what the old sink has not received yet). */
  setSink(sink: UartSink): void {
    this.flush();
    this.#sink = sink;
  }

  /** Queue bytes for the guest to read. */
  pushInput(bytes: Uint8Array): void {
    for (const b of bytes) this.#rx.push(b);
    if (bytes.length > 0) this.#update();
  }

  /** Hand buffered output to the sink. */
  flush(): void {
    if (this.#outLen === 0) return;
    const n = this.#outLen;
    this.#outLen = 0;
    this.#sink(this.#out.subarray(0, n));
  }

  #rxCount(): number {
    return this.#rx.length - this.#rxHead;
  }

  #popRx(): number {
    const b = this.#rx[this.#rxHead++];
    if (this.#rxHead > 1024 && this.#rxHead * 2 > this.#rx.length) {
      this.#rx = this.#rx.slice(this.#rxHead);
      this.#rxHead = 0;
    }
    return b;
  }

  /** Bytes in the UART itself (RBR or the FIFO), the rest of the queue waits on the host side. */
  fifoCount(): number {
    return Math.min(this.#rxCount(), (this.fcr & FCR_FE) !== 0 ? FIFO_SIZE : 1);
  }

  /** The interrupt identification (IIR bits 3:0), as QEMU's `serial_update_irq` computes it. */
  interruptId(): number {
    const data = this.#rxCount() > 0;
    const fifo = (this.fcr & FCR_FE) !== 0;
    const level = TRIGGER_LEVELS[this.fcr >>> 6];
    if ((this.ier & IER_RLSI) !== 0 && (this.lsrErrors & LSR_ERRORS) !== 0) return IIR_RLSI;
    if ((this.ier & IER_RDI) !== 0 && data) {
      if (!fifo || this.fifoCount() >= level) return IIR_RDI;
      return IIR_CTI; // the character timeout has elapsed at once (see the module comment)
    }
    if ((this.ier & IER_THRI) !== 0 && this.thrIpending) return IIR_THRI;
    // Modem status: MSR never has a delta bit set here, so no MSI interrupt.
    return IIR_NO_INT;
  }

  /** Whether the interrupt line is high. */
  irqLevel(): boolean {
    return this.interruptId() !== IIR_NO_INT;
  }

  #update(): void {
    this.#irq(this.interruptId() !== IIR_NO_INT);
  }

  /** LSR as the guest reads it. */
  lsr(): number {
    return LSR_THRE | LSR_TEMT | (this.#rxCount() > 0 ? LSR_DR : 0) | this.lsrErrors;
  }

  /** MSR as the guest reads it: in loopback, the modem outputs wired back to the inputs. */
  msr(): number {
    if ((this.mcr & MCR_LOOP) === 0) return MSR_DEFAULT;
    return ((this.mcr & 0x0c) << 4) | ((this.mcr & 0x02) << 3) | ((this.mcr & 0x01) << 5);
  }

  /** A byte received in loopback mode: it enters the UART ahead of bytes still on the host. */
  #receiveLoopback(b: number): void {
    const inUart = this.fifoCount();
    if ((this.fcr & FCR_FE) === 0 && inUart > 0) {
      this.lsrErrors |= LSR_OE; // overrun: the unread byte is replaced
      this.#rx[this.#rxHead] = b;
    } else if (inUart >= FIFO_SIZE) {
      this.lsrErrors |= LSR_OE; // a full FIFO keeps its contents
    } else {
      this.#rx.splice(this.#rxHead + inUart, 0, b);
    }
    this.#update();
  }

  load(offset: number, _size: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0: {
        if (dlab) return this.dll;
        let v: number;
        if ((this.fcr & FCR_FE) !== 0) {
          v = this.#rxCount() > 0 ? this.#popRx() : 0;
        } else {
          if (this.#rxCount() > 0) this.rbr = this.#popRx();
          v = this.rbr;
        }
        if (this.#rxCount() === 0) this.lsrErrors &= ~LSR_BI;
        this.#update();
        return v;
      }
      case 1:
        return dlab ? this.dlm : this.ier;
      case 2: {
        const id = this.interruptId();
        if (id === IIR_THRI) {
          this.thrIpending = false;
          this.#update();
        }
        return id | ((this.fcr & FCR_FE) !== 0 ? 0xc0 : 0);
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const v = this.lsr();
        if ((this.lsrErrors & (LSR_BI | LSR_OE)) !== 0) {
          this.lsrErrors &= ~(LSR_BI | LSR_OE);
          this.#update();
        }
        return v;
      }
      case 6:
        return this.msr();
      case 7:
        return this.scr;
      default:
        return 0;
    }
  }

  store(offset: number, _size: number, value: number): void {
    const v = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) {
          this.dll = v;
          return;
        }
        this.thrIpending = false;
        this.#update();
        this.thrIpending = true; // sent at once: THR is empty again
        this.#update();
        if ((this.mcr & MCR_LOOP) !== 0) {
          this.#receiveLoopback(v);
        } else {
          this.#out[this.#outLen++] = v;
          if (this.#outLen === this.#out.length) this.flush();
        }
        return;
      case 1: {
        if (dlab) {
          this.dlm = v;
          return;
        }
        const changed = (this.ier ^ v) & 0x0f;
        this.ier = v & 0x0f;
        // QEMU: turning IER.THRI on samples LSR.THRE (always set here); turning it off clears.
        if ((changed & IER_THRI) !== 0) this.thrIpending = (this.ier & IER_THRI) !== 0;
        if (changed !== 0) this.#update();
        return;
      }
      case 2: {
        let f = v;
        if (((f ^ this.fcr) & FCR_FE) !== 0) f |= FCR_RFR | FCR_XFR;
        if ((f & FCR_RFR) !== 0) this.lsrErrors &= ~LSR_BI;
        if ((f & FCR_XFR) !== 0) this.thrIpending = true;
        this.fcr = f & FCR_KEPT;
        this.#update();
        return;
      }
      case 3:
        this.lcr = v;
        return;
      case 4:
        this.mcr = v & 0x1f;
        return;
      case 7:
        this.scr = v;
        return;
      default:
        return; // LSR and MSR are read-only
    }
  }

  /** Plain-data copy (output already handed to the sink is not state). */
  save(): UartState {
    return {
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      fcr: this.fcr,
      dll: this.dll,
      dlm: this.dlm,
      rx: Uint8Array.from(this.#rx.slice(this.#rxHead)),
      rbr: this.rbr,
      thrIpending: this.thrIpending,
      lsrErrors: this.lsrErrors,
    };
  }

  /**
   * Load a state produced by {@linkcode Uart.save}; pending output is flushed first. The line is
   * not driven: the interrupt controller's own saved state says what it latched (QEMU's
   * `serial_post_load` does not drive it either); the next register access does.
   */
  restore(s: UartState): void {
    if (!(s.rx instanceof Uint8Array)) {
      throw new TypeError("Cannot restore UART: rx must be bytes");
    }
    for (
      const k of ["ier", "lcr", "mcr", "scr", "fcr", "dll", "dlm", "rbr", "lsrErrors"] as const
    ) {
      if (!Number.isInteger(s[k]) || s[k] < 0 || s[k] > 0xff) {
        throw new RangeError(`Cannot restore UART: ${k} ${s[k]} is not a byte`);
      }
    }
    if (typeof s.thrIpending !== "boolean") {
      throw new TypeError("Cannot restore UART: thrIpending must be true or false");
    }
    this.flush();
    this.ier = s.ier & 0x0f;
    this.lcr = s.lcr;
    this.mcr = s.mcr & 0x1f;
    this.scr = s.scr;
    this.fcr = s.fcr & FCR_KEPT;
    this.dll = s.dll;
    this.dlm = s.dlm;
    this.rbr = s.rbr;
    this.thrIpending = s.thrIpending;
    this.lsrErrors = s.lsrErrors & LSR_ERRORS;
    this.#rx = Array.from(s.rx);
    this.#rxHead = 0;
  }
}
