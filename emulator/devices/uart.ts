/**
 * ns16550a UART, the subset that polled console drivers use (QEMU hw/char/serial.c is the
 * reference): THR/RBR, IER, IIR/FCR, LCR (with the DLAB divisor latch DLL/DLM), MCR, LSR, MSR,
 * SCR. Transmission is instantaneous, so LSR.THRE and LSR.TEMT are always set. Received bytes
 * come from a host-fed queue (LSR.DR while it is not empty). There is no PLIC on this machine, so
 * the UART raises no interrupts; IER is stored and read back.
 *
 * @module
 */

import type { MmioDevice } from "./device.ts";

/** Receives guest output, batched. The array is only valid during the call. */
export type UartSink = (bytes: Uint8Array) => void;

/** Version of {@linkcode UartState}. */
export const UART_STATE_VERSION = 1;
/** Device id in snapshots. */
export const UART_DEVICE_ID = "ns16550a";

/**
 * Saved UART.
 * NOTICE: changing this layout needs a version bump (UART_STATE_VERSION).
 */
export interface UartState {
  ier: number;
  lcr: number;
  mcr: number;
  scr: number;
  fcr: number;
  dll: number;
  dlm: number;
  /** Received bytes not yet read by the guest. */
  rx: Uint8Array;
}

const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LCR_DLAB = 0x80;

/** The ns16550a UART. */
export class Uart implements MmioDevice {
  #sink: UartSink;
  #out = new Uint8Array(4096);
  #outLen = 0;
  #rx: number[] = [];
  #rxHead = 0;
  ier = 0;
  lcr = 0;
  mcr = 0;
  scr = 0;
  fcr = 0;
  dll = 0;
  dlm = 0;

  constructor(sink: UartSink) {
    this.#sink = sink;
  }

  /** Replace the output sink (flushes what the old sink has not received yet). */
  setSink(sink: UartSink): void {
    this.flush();
    this.#sink = sink;
  }

  /** Queue bytes for the guest to read. */
  pushInput(bytes: Uint8Array): void {
    for (const b of bytes) this.#rx.push(b);
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

  load(offset: number, _size: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0: {
        if (dlab) return this.dll;
        if (this.#rxCount() === 0) return 0;
        const b = this.#rx[this.#rxHead++];
        if (this.#rxHead > 1024 && this.#rxHead * 2 > this.#rx.length) {
          this.#rx = this.#rx.slice(this.#rxHead);
          this.#rxHead = 0;
        }
        return b;
      }
      case 1:
        return dlab ? this.dlm : this.ier;
      case 2: // IIR: no interrupt pending; FIFOs-enabled bits mirror FCR bit 0
        return ((this.fcr & 1) !== 0 ? 0xc0 : 0) | 0x01;
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5:
        return LSR_THRE | LSR_TEMT | (this.#rxCount() > 0 ? LSR_DR : 0);
      case 6: // MSR: report CTS, DSR, DCD so flow-controlled drivers transmit
        return 0xb0;
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
        } else {
          this.#out[this.#outLen++] = v;
          if (this.#outLen === this.#out.length) this.flush();
        }
        return;
      case 1:
        if (dlab) this.dlm = v;
        else this.ier = v & 0x0f;
        return;
      case 2:
        this.fcr = v & 0xc9; // FIFO enable, DMA mode, trigger level; reset bits self-clear
        return;
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
    };
  }

  /** Load a state produced by {@linkcode Uart.save}; pending output is flushed first. */
  restore(s: UartState): void {
    if (!(s.rx instanceof Uint8Array)) {
      throw new TypeError("Cannot restore UART: rx must be bytes");
    }
    this.flush();
    this.ier = s.ier & 0x0f;
    this.lcr = s.lcr & 0xff;
    this.mcr = s.mcr & 0x1f;
    this.scr = s.scr & 0xff;
    this.fcr = s.fcr & 0xc9;
    this.dll = s.dll & 0xff;
    this.dlm = s.dlm & 0xff;
    this.#rx = Array.from(s.rx);
    this.#rxHead = 0;
  }
}
