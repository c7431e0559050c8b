/**
 * The `livesnap-virt-rv32` machine: one RV32IMAC hart, RAM, an ns16550a UART wired to a PLIC, a
 * CLINT, the SiFive test device, the mask ROM and (when the ELF defines `tohost`) HTIF, laid out
 * as on QEMU's riscv32 `virt` board (memory_map.ts).
 *
 * `run(n)` executes at most n retired instructions and returns an {@linkcode ExitReason};
 * `run(a)` then `run(b)` behaves exactly like `run(a + b)`, and so does
 * `run(a)`, `save()`, `restore()` into a fresh machine with the same RAM, `run(b)`.
 *
 * Determinism: mtime advances by one tick per INSTRUCTIONS_PER_TICK (10) retired instructions.
 * Interrupts are checked between instructions whenever something that can change them happens
 * (a CSR access, mret, wfi, an MMIO store, mtime reaching mtimecmp while MTIE is set), so they
 * are taken at the same instruction whatever the budget of each `run()` call. `wfi` completes at
 * once when an enabled interrupt is pending; when only the timer can wake the hart it moves mtime
 * forward to mtimecmp (no instructions pass) and completes; when nothing can ever wake the hart
 * (only the timer can become pending while the hart waits: the PLIC's only source, the UART,
 * changes only when the guest touches it or the host queues input between runs, and there is no
 * other hart; and not when mtimecmp is 2^64 - 1) `run()` returns `{ reason: "idle" }` with pc
 * still at the wfi.
 *
 * @module
 */

import { GATE_CODE, GATE_WATCH, Ram, type StoreHook } from "./ram.ts";
import {
  CAUSE,
  Hart,
  HART_STATE_VERSION,
  type HartState,
  INTERRUPT_BIT,
  IRQ,
  MIP_MEIP,
  MIP_MSIP,
  MIP_MTIP,
  MSTATUS_MIE,
  PRIV_M,
} from "./hart.ts";
import { csrAccess, csrIllegal } from "./csr.ts";
import * as D from "./decode.ts";
import { DECODE_CACHE_SIZE, execute } from "./cpu.ts";
import {
  CLINT_BASE,
  CLINT_SIZE,
  DEFAULT_RAM_SIZE,
  MACHINE_NAME,
  PAGE_SHIFT,
  PAGE_SIZE,
  PLIC_BASE,
  PLIC_SIZE,
  RAM_BASE,
  SIFIVE_TEST_BASE,
  SIFIVE_TEST_SIZE,
  UART_BASE,
  UART_SIZE,
} from "./memory_map.ts";
import type { MmioDevice } from "./devices/device.ts";
import {
  Plic,
  PLIC_DEVICE_ID,
  PLIC_STATE_VERSION,
  type PlicState,
  UART0_IRQ,
} from "./devices/plic.ts";
import {
  Mrom,
  MROM_BASE,
  MROM_DEVICE_ID,
  MROM_SIZE,
  MROM_STATE_VERSION,
  type MromState,
} from "./devices/mrom.ts";
import {
  Uart,
  UART_DEVICE_ID,
  UART_STATE_VERSION,
  type UartSink,
  type UartState,
} from "./devices/uart.ts";
import { Clint, CLINT_DEVICE_ID, CLINT_STATE_VERSION, type ClintState } from "./devices/clint.ts";
import {
  SIFIVE_TEST_DEVICE_ID,
  SIFIVE_TEST_STATE_VERSION,
  SifiveTest,
  type SifiveTestState,
} from "./devices/sifive_test_device.ts";
import {
  decodeTohost,
  HTIF_DEVICE_ID,
  HTIF_STATE_VERSION,
  type HtifState,
} from "./devices/htif.ts";
import { ElfError, parseElf } from "./elf.ts";

/** Why `run()` returned. */
export type ExitReason =
  /** The instruction budget given to `run()` was used up. */
  | { reason: "budget" }
  /** The guest powered off (SiFive test device or HTIF); code 0 is success. */
  | { reason: "exit"; code: number; device: "sifive_test" | "htif" }
  /** The guest asked the SiFive test device for a reset. */
  | { reason: "reset" }
  /** `requestPause()` was called (from a store hook or another thread). */
  | { reason: "paused" }
  /** wfi with no interrupt source that could ever wake the hart. */
  | { reason: "idle"; pc: number }
  /** The hart keeps trapping without retiring anything (e.g. mtvec points at unmapped memory). */
  | { reason: "lockup"; pc: number; cause: number };

/** Options for {@linkcode Machine}. */
export interface MachineOptions {
  /** RAM size in bytes (multiple of 4096, at most 2 GiB). Default 128 MiB. */
  ramSize?: number;
  /** Every page of RAM starts absent (`Ram` `absentAtStart`, for a lazy restore): install the
   * absent-page handler before the machine runs or touches RAM. Default false. */
  absentRam?: boolean;
  /** Receives guest UART output (batched). Default: written to stdout. */
  uartSink?: UartSink;
}

/** One saved device, as the snapshot engine stores it. */
export interface SavedDevice {
  /** Device id, as in the snapshot's device section (`ns16550a`, `clint`, `sifive_test`, …). */
  id: string;
  /** Which of several devices with this id (0 for each device of this machine). */
  instance: number;
  /** Version of the state's layout (the device's `*_STATE_VERSION`). */
  version: number;
  /** The device's `save()` result, CBOR-encoded into the section. */
  state: UartState | ClintState | SifiveTestState | HtifState | PlicState | MromState;
}

/** `machine.save()`: plain data (RAM is not included; the snapshot engine saves it). */
export interface MachineState {
  /** The hart's registers, with the version of {@linkcode HartState}'s layout. */
  hart: HartState & { version: number };
  /** Every device's state, in the machine's fixed order. */
  devices: SavedDevice[];
}

/** A memory region for the snapshot format's machine description. */
export interface RegionDescription {
  /** Region name, unique in the snapshot (`ram` on this machine). */
  name: string;
  /** Guest-physical address of the region's first byte. */
  base: number;
  /** Size in bytes, a multiple of `pageSize`. */
  size: number;
  /** Page size in bytes (4096 on this machine). */
  pageSize: number;
}

/** What a snapshot records about the machine's shape. */
export interface MachineDescription {
  /** Machine name a restore must match ({@linkcode MACHINE_NAME} for this emulator). */
  machine: string;
  /** Memory regions, in the order the snapshot's region indices count them. */
  regions: RegionDescription[];
}

/** Device id of the hart in snapshots' device sections. */
export const HART_DEVICE_ID = "hart";

/**
 * The saved machine as one list of device sections, the hart first (id "hart", its state without
 * the `version` field, which becomes the section's version). This is the single mapping from
 * `machine.save()` to what a snapshot records and what the content digest covers: the snapshot
 * engine and `run --digest` both use it, so they cannot disagree.
 */
export function deviceSections(saved: MachineState): SavedDeviceSection[] {
  const { version, ...hart } = saved.hart;
  return [
    { id: HART_DEVICE_ID, instance: 0, version, state: hart },
    ...saved.devices,
  ];
}

/** A device section before CBOR encoding: the hart or one of the devices. */
export interface SavedDeviceSection {
  id: string;
  instance: number;
  version: number;
  state: HartState | SavedDevice["state"];
}

function writeToStdout(bytes: Uint8Array): void {
  let o = 0;
  while (o < bytes.length) o += Deno.stdout.writeSync(bytes.subarray(o));
}

/** Consecutive traps without a retired instruction before `run()` reports a lockup. */
const LOCKUP_TRAPS = 64;
/** Most instructions per chunk between checks of the pause flag. */
const CHUNK = 1 << 16;

interface MmioRange {
  base: number;
  size: number;
  device: MmioDevice;
}

/**
 * The machine.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert/mod.js";
 * import { Machine } from "./machine.ts";
 * const out: number[] = [];
 * const elf = Deno.readFileSync(new URL("./guests/build/hello.elf", import.meta.url));
 * const m = Machine.fromElf(elf, { ramSize: 1 << 20, uartSink: (b) => out.push(...b) });
 * const exit = m.run(1_000_000);
 * assert(exit.reason === "exit" && exit.code === 0);
 * assert(new TextDecoder().decode(Uint8Array.from(out)).startsWith("Hello"));
 * ```
 */
export class Machine {
  /** The one RV32IMAC hart. */
  readonly hart: Hart = new Hart();
  /** Guest RAM at {@linkcode RAM_BASE}, with the snapshot engine's per-page store gate. */
  readonly ram: Ram;
  /** The ns16550a UART at 0x1000_0000, interrupt on PLIC source 10. */
  readonly uart: Uart;
  /** The CLINT at 0x0200_0000: mtime, mtimecmp, msip. */
  readonly clint: Clint = new Clint();
  /** The SiFive test device at 0x0010_0000: writes to it power off or reset. */
  readonly sifiveTest: SifiveTest = new SifiveTest();
  /** The PLIC at 0x0c00_0000, routing the UART's line to mip.MEIP. */
  readonly plic: Plic = new Plic();
  /** The mask ROM at 0x1000 (QEMU's reset vector); all zero on a machine booted from an ELF. */
  readonly mrom: Mrom = new Mrom();
  /**
   * Where `hart.retired` counts from: "reset" (the guest's reset, in this emulator) or
   * "qemu-stream" (the restore of a QEMU stream, which records no instruction count). Snapshots
   * record it in their metadata.
   */
  instructionsCountedFrom: "reset" | "qemu-stream" = "reset";
  /** Decoded-instruction cache (see cpu.ts): per slot pc tag, packed fields, immediate, raw. */
  readonly decodeCache: Int32Array = new Int32Array(DECODE_CACHE_SIZE * 4);
  /** Pause request flag, over a SharedArrayBuffer so another thread may set it. */
  readonly pauseFlag: Int32Array = new Int32Array(new SharedArrayBuffer(4));
  /** Set by a slow path that took a trap; the CPU loop picks up the new pc. */
  trapped = false;
  /** Set by the first `run()`: before it no instruction was decoded (`invalidateDecodeCache`). */
  #hasRun = false;
  /** Set when the current `run()` must end (its reason is in `#exit`). */
  stopped = false;
  #exit: ExitReason | null = null;
  #mmio: MmioRange[];
  #tohost = -1;
  #fromhost = -1;
  #lastTrapRetired = -1;
  #trapStreak = 0;

  /** A machine at reset with zeroed RAM and no program loaded (see {@linkcode Machine.fromElf}). */
  constructor(options: MachineOptions = {}) {
    this.ram = new Ram(options.ramSize ?? DEFAULT_RAM_SIZE, {
      absentAtStart: options.absentRam === true,
    });
    this.uart = new Uart(
      options.uartSink ?? writeToStdout,
      (level) => this.plic.setSource(UART0_IRQ, level),
    );
    this.#mmio = [
      { base: UART_BASE, size: UART_SIZE, device: this.uart },
      { base: CLINT_BASE, size: CLINT_SIZE, device: this.clint },
      { base: PLIC_BASE, size: PLIC_SIZE, device: this.plic },
      { base: SIFIVE_TEST_BASE, size: SIFIVE_TEST_SIZE, device: this.sifiveTest },
      { base: MROM_BASE, size: MROM_SIZE, device: this.mrom },
    ];
    this.ram.onCodeWrite = (start, end) => this.invalidateCode(start, end);
    this.hart.reset(RAM_BASE);
  }

  /** Create a machine and load a statically linked ELF into it. */
  static fromElf(elf: Uint8Array, options: MachineOptions = {}): Machine {
    const m = new Machine(options);
    m.loadElf(elf);
    return m;
  }

  /**
   * Load an ELF's segments into RAM (through the page gate), reset the hart to its entry point
   * with a0 = hartid (0) and a1 = 0 (no device tree), and enable HTIF if it defines `tohost`.
   * Throws ElfError when a segment does not fit in RAM.
   */
  loadElf(file: Uint8Array): void {
    const image = parseElf(file);
    for (const seg of image.segments) {
      if (!this.ram.contains(seg.paddr, seg.memSize)) {
        throw new ElfError(
          `Cannot load ELF: segment at 0x${seg.paddr.toString(16)} (${seg.memSize} bytes) ` +
            `is outside RAM 0x${RAM_BASE.toString(16)}..0x${
              (RAM_BASE + this.ram.size).toString(16)
            }`,
        );
      }
      this.ram.write(seg.paddr, seg.data);
      if (seg.memSize > seg.data.length) {
        this.ram.fill(seg.paddr + seg.data.length, seg.memSize - seg.data.length);
      }
    }
    this.hart.reset(image.entry);
    const tohost = image.symbols.get("tohost");
    const fromhost = image.symbols.get("fromhost");
    this.#setHtif(
      tohost !== undefined && this.ram.contains(tohost, 8) ? tohost : -1,
      fromhost !== undefined && this.ram.contains(fromhost, 8) ? fromhost : -1,
    );
  }

  #setHtif(tohost: number, fromhost: number): void {
    if (this.#tohost >= 0) {
      Atomics.and(this.ram.pageGate, (this.#tohost - RAM_BASE) >>> PAGE_SHIFT, ~GATE_WATCH);
    }
    this.#tohost = tohost;
    this.#fromhost = fromhost;
    if (tohost >= 0) {
      Atomics.or(this.ram.pageGate, (tohost - RAM_BASE) >>> PAGE_SHIFT, GATE_WATCH);
    }
  }

  /**
   * Drop cached decoded instructions that overlap RAM offsets [start, end) (an instruction
   * starting up to 2 bytes before `start` can reach into it). The page gate calls this for every
   * write into a page holding decoded code.
   */
  invalidateCode(start: number, end: number): void {
    const c = this.decodeCache;
    const mask = DECODE_CACHE_SIZE - 1;
    for (let o = Math.max(0, (start & ~1) - 2); o < end; o += 2) {
      const pc = (o + RAM_BASE) | 0;
      const ci = ((pc >>> 1) & mask) << 2;
      if (c[ci] === pc) c[ci] = 0;
    }
  }

  /**
   * Forget every decoded instruction. Call it after writing RAM other than through the guest,
   * `ram.write` or `ram.fill` (e.g. straight into `ram.bytes`); `restore()` calls it.
   */
  invalidateDecodeCache(): void {
    // A machine that has never run has decoded nothing and marked no page as code: nothing to
    // forget, and the cache's megabyte of fresh memory stays untouched (a restore's first
    // instruction comes sooner).
    if (!this.#hasRun) return;
    this.decodeCache.fill(0);
    const gate = this.ram.pageGate;
    for (let p = 0; p < gate.length; p++) {
      if ((gate[p] & GATE_CODE) !== 0) Atomics.and(gate, p, ~GATE_CODE);
    }
  }

  /** The machine's shape for snapshots: one RAM region. */
  machineDescription(): MachineDescription {
    return {
      machine: MACHINE_NAME,
      regions: [{ name: "ram", base: RAM_BASE, size: this.ram.size, pageSize: PAGE_SIZE }],
    };
  }

  /** Install (or remove) the snapshot engine's store hook; see ram.ts for the gate's bits. */
  setStoreHook(hook: StoreHook | null): void {
    this.ram.setStoreHook(hook);
  }

  /** The per-page store gate (see ram.ts). */
  get pageGate(): Int32Array {
    return this.ram.pageGate;
  }

  /** Make the current or next `run()` return `{ reason: "paused" }` at an instruction boundary. */
  requestPause(): void {
    Atomics.store(this.pauseFlag, 0, 1);
  }

  /**
   * Run at most `maxInstructions` retired instructions. Returns why it stopped. Exactly
   * `maxInstructions` have retired when the reason is "budget".
   */
  run(maxInstructions: number): ExitReason {
    this.#hasRun = true;
    if (!Number.isSafeInteger(maxInstructions) || maxInstructions < 0) {
      throw new RangeError(`Cannot run: budget ${maxInstructions} is not a non-negative integer`);
    }
    const h = this.hart;
    const target = h.retired + maxInstructions;
    this.#exit = null;
    this.stopped = false;
    try {
      for (;;) {
        const left = target - h.retired;
        if (left <= 0) return { reason: "budget" };
        if (Atomics.load(this.pauseFlag, 0) !== 0) {
          Atomics.store(this.pauseFlag, 0, 0);
          return { reason: "paused" };
        }
        this.#takeInterrupt();
        if (this.stopped) break;
        let chunk = left < CHUNK ? left : CHUNK;
        if ((h.mie & MIP_MTIP) !== 0) {
          const t = this.clint.instructionsUntilTimer(chunk);
          if (t > 0) chunk = t;
        }
        execute(this, chunk);
        if (this.stopped) break;
        this.#afterChunk();
        if (this.stopped) break;
      }
      return this.#exit ?? { reason: "budget" };
    } finally {
      this.uart.flush();
    }
  }

  #stop(reason: ExitReason): void {
    if (this.#exit === null) this.#exit = reason;
    this.stopped = true;
  }

  /** Look at what the last instructions asked for: power-off, HTIF. */
  #afterChunk(): void {
    const req = this.sifiveTest.request;
    if (req !== null) {
      this.sifiveTest.request = null;
      this.#stop(
        req.kind === "exit"
          ? { reason: "exit", code: req.code, device: "sifive_test" }
          : { reason: "reset" },
      );
      return;
    }
    const hit = this.ram.watchHit;
    if (hit >= 0) {
      this.ram.watchHit = -1;
      // As QEMU's htif (hw/char/riscv_htif.c) does, act when the upper word is written.
      if (this.#tohost >= 0 && (hit & ~3) === this.#tohost - RAM_BASE + 4) this.#serviceHtif();
    }
  }

  #serviceHtif(): void {
    const off = this.#tohost - RAM_BASE;
    const dv = new DataView(this.ram.bytes.buffer, off, 8);
    const req = decodeTohost(dv.getUint32(0, true), dv.getUint32(4, true));
    if (req.kind === "exit") {
      this.#stop({ reason: "exit", code: req.code, device: "htif" });
    } else if (req.kind === "putchar") {
      this.uart.store(0, 1, req.byte); // shares the console sink, in order with UART output
      this.ram.fill(this.#tohost, 8);
      if (this.#fromhost >= 0) {
        const reply = new Uint8Array(8);
        new DataView(reply.buffer).setUint32(0, 1, true);
        new DataView(reply.buffer).setUint32(4, 0x0101_0000, true);
        this.ram.write(this.#fromhost, reply);
      }
    }
  }

  /** Interrupt-pending bits (mip) from the devices: MSIP and MTIP (CLINT), MEIP (PLIC). */
  pendingInterrupts(): number {
    return this.clint.pendingInterrupts() | this.plic.mip;
  }

  /**
   * The instruction at `pc` when pc lies outside RAM: the mask ROM's, or -1 (the fetch raises an
   * instruction access fault). The CPU loop calls this only on a decode-cache miss.
   */
  fetchOutsideRam(pc: number): number {
    const off = (pc >>> 0) - MROM_BASE;
    return off >= 0 && off < MROM_SIZE ? this.mrom.fetch(off) : -1;
  }

  /** Current mtime. */
  mtime(): bigint {
    return this.clint.mtime();
  }

  /**
   * Take the highest-priority pending and enabled interrupt, if any (privileged spec 3.1.9:
   * MEI > MSI > MTI; enabled when in U-mode or when mstatus.MIE is set).
   */
  #takeInterrupt(): void {
    const h = this.hart;
    const pending = this.pendingInterrupts() & h.mie;
    if (pending === 0) return;
    if (h.priv === PRIV_M && (h.mstatus & MSTATUS_MIE) === 0) return;
    const irq = (pending & MIP_MEIP) !== 0
      ? IRQ.MEI
      : (pending & MIP_MSIP) !== 0
      ? IRQ.MSI
      : IRQ.MTI;
    this.trap(h.pc, (INTERRUPT_BIT | irq) | 0, 0, 0);
  }

  /** Add `n` retired instructions to the hart and the clock. */
  commit(n: number): void {
    if (n === 0) return;
    this.hart.retired += n;
    this.clint.advance(n);
  }

  /**
   * Take a trap at `pc` (the CPU loop has retired `n` instructions this chunk, not yet
   * committed). Returns the handler's pc. Stops the run on a lockup.
   */
  trap(pc: number, cause: number, tval: number, n: number): number {
    const retired = this.hart.retired + n;
    if (retired === this.#lastTrapRetired) {
      if (++this.#trapStreak >= LOCKUP_TRAPS) {
        this.#stop({ reason: "lockup", pc: pc >>> 0, cause: cause >>> 0 });
      }
    } else {
      this.#lastTrapRetired = retired;
      this.#trapStreak = 0;
    }
    return this.hart.enterTrap(pc, cause, tval);
  }

  /** Called by the CPU loop after a slow path reported `trapped`: the handler's pc. */
  resumeAfterTrap(): number {
    this.trapped = false;
    return this.hart.pc;
  }

  #findMmio(addr: number, size: number): MmioRange | null {
    const a = addr >>> 0;
    for (const r of this.#mmio) {
      if (a >= r.base && a + size <= r.base + r.size) return r;
    }
    return null;
  }

  /**
   * Load that missed the RAM fast path (the loop has committed everything before it, so mtime
   * is current). Misaligned loads from RAM are performed, as on QEMU (the unprivileged spec 2.6
   * lets the execution environment support them); misaligned MMIO loads raise load address
   * misaligned; anything else unmapped raises a load access fault. Sets `trapped` on a trap.
   */
  loadSlow(addr: number, size: number): number {
    const off = (addr - RAM_BASE) >>> 0;
    if (off < this.ram.size) {
      if (off + size > this.ram.size) return this.#loadTrap(CAUSE.LOAD_ACCESS_FAULT, addr);
      this.ram.ensurePresent(off, size);
      const b = this.ram.bytes;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = (v << 8) | b[off + i];
      return v;
    }
    const r = this.#findMmio(addr, size);
    if (r === null || ((r.device.accessSizes ?? 7) & size) === 0) {
      return this.#loadTrap(CAUSE.LOAD_ACCESS_FAULT, addr);
    }
    if ((addr & (size - 1)) !== 0) return this.#loadTrap(CAUSE.LOAD_MISALIGNED, addr);
    return r.device.load((addr >>> 0) - r.base, size);
  }

  #loadTrap(cause: number, addr: number): number {
    this.hart.pc = this.trap(this.hart.pc, cause, addr, 0);
    this.trapped = true;
    return 0;
  }

  /**
   * Store that missed the RAM fast path; see loadSlow. A misaligned store into RAM passes the
   * page gate for every page it touches (two when it straddles a page boundary) before writing.
   */
  storeSlow(addr: number, size: number, value: number): void {
    const off = (addr - RAM_BASE) >>> 0;
    if (off < this.ram.size) {
      if (off + size > this.ram.size) {
        this.#storeTrap(CAUSE.STORE_ACCESS_FAULT, addr);
        return;
      }
      const gate = this.ram.pageGate;
      const first = off >>> PAGE_SHIFT;
      const last = (off + size - 1) >>> PAGE_SHIFT;
      const open = this.ram.gateOpen;
      if (gate[first] !== open) this.ram.gatedStore(first, off);
      if (last !== first && gate[last] !== open) this.ram.gatedStore(last, last << PAGE_SHIFT);
      const b = this.ram.bytes;
      for (let i = 0; i < size; i++) b[off + i] = value >>> (8 * i);
      return;
    }
    const r = this.#findMmio(addr, size);
    if (r === null || ((r.device.accessSizes ?? 7) & size) === 0) {
      this.#storeTrap(CAUSE.STORE_ACCESS_FAULT, addr);
      return;
    }
    if ((addr & (size - 1)) !== 0) {
      this.#storeTrap(CAUSE.STORE_MISALIGNED, addr);
      return;
    }
    r.device.store((addr >>> 0) - r.base, size, value);
  }

  #storeTrap(cause: number, addr: number): void {
    this.hart.pc = this.trap(this.hart.pc, cause, addr, 0);
    this.trapped = true;
  }

  /** A CSR instruction (the loop has committed everything before it). */
  csrInstruction(op: number, rd: number, rs1: number, csr: number): void {
    const h = this.hart;
    const imm = op >= D.OP_CSRRWI;
    const src = imm ? rs1 : h.x[rs1];
    let write: boolean;
    if (op === D.OP_CSRRW || op === D.OP_CSRRWI) write = true;
    else write = rs1 !== 0; // csrrs/csrrc with x0 or zimm 0 do not write (Zicsr 9.1)
    const old = csrAccess(h, this, csr, false, 0);
    if (csrIllegal || (write && (csr >>> 10) === 3)) {
      this.#illegalAtPc();
      return;
    }
    if (write) {
      let v: number;
      if (op === D.OP_CSRRW || op === D.OP_CSRRWI) v = src;
      else if (op === D.OP_CSRRS || op === D.OP_CSRRSI) v = old | src;
      else v = old & ~src;
      csrAccess(h, this, csr, true, v);
    }
    h.x[rd] = old;
  }

  #illegalAtPc(): void {
    const h = this.hart;
    const off = (h.pc - RAM_BASE) >>> 0;
    const lo = this.ram.u16[off >>> 1];
    const raw = (lo & 3) === 3 ? (lo | (this.ram.u16[(off >>> 1) + 1] << 16)) : lo;
    h.pc = this.trap(h.pc, CAUSE.ILLEGAL_INSTRUCTION, raw, 0);
    this.trapped = true;
  }

  /**
   * wfi (privileged spec 3.3.3). Returns false when no interrupt can ever wake the hart (run
   * stops with "idle" and the wfi does not retire).
   */
  waitForInterrupt(): boolean {
    const h = this.hart;
    if ((this.pendingInterrupts() & h.mie) !== 0) return true;
    if ((h.mie & MIP_MTIP) !== 0 && this.clint.timerCanFire()) {
      this.clint.skipToTimer();
      return true;
    }
    this.#stop({ reason: "idle", pc: h.pc >>> 0 });
    return false;
  }

  /** Plain-data copy of the hart and devices (RAM excluded). Call between `run()`s. */
  save(): MachineState {
    const devices: SavedDevice[] = [
      { id: UART_DEVICE_ID, instance: 0, version: UART_STATE_VERSION, state: this.uart.save() },
      { id: CLINT_DEVICE_ID, instance: 0, version: CLINT_STATE_VERSION, state: this.clint.save() },
      {
        id: SIFIVE_TEST_DEVICE_ID,
        instance: 0,
        version: SIFIVE_TEST_STATE_VERSION,
        state: this.sifiveTest.save(),
      },
      {
        id: HTIF_DEVICE_ID,
        instance: 0,
        version: HTIF_STATE_VERSION,
        state: { tohost: this.#tohost, fromhost: this.#fromhost } satisfies HtifState,
      },
      { id: PLIC_DEVICE_ID, instance: 0, version: PLIC_STATE_VERSION, state: this.plic.save() },
      { id: MROM_DEVICE_ID, instance: 0, version: MROM_STATE_VERSION, state: this.mrom.save() },
    ];
    return { hart: { version: HART_STATE_VERSION, ...this.hart.save() }, devices };
  }

  /**
   * Load a state from {@linkcode Machine.save}. RAM is restored separately: through `ram.write`
   * at any time, or straight into `ram.bytes` before this call (or followed by
   * `invalidateDecodeCache()`). Throws on unknown devices or versions.
   */
  restore(saved: MachineState): void {
    if (saved.hart.version !== HART_STATE_VERSION) {
      throw new RangeError(
        `Cannot restore hart: state version ${saved.hart.version}, expected ${HART_STATE_VERSION}`,
      );
    }
    const seen = new Set<string>();
    for (const d of saved.devices) {
      const expect = (v: number) => {
        if (d.version !== v) {
          throw new RangeError(
            `Cannot restore device ${d.id}: state version ${d.version}, expected ${v}`,
          );
        }
      };
      if (d.instance !== 0) {
        throw new RangeError(`Cannot restore device ${d.id}: no instance ${d.instance}`);
      }
      switch (d.id) {
        case UART_DEVICE_ID:
          expect(UART_STATE_VERSION);
          this.uart.restore(d.state as UartState);
          break;
        case CLINT_DEVICE_ID:
          expect(CLINT_STATE_VERSION);
          this.clint.restore(d.state as ClintState);
          break;
        case SIFIVE_TEST_DEVICE_ID:
          expect(SIFIVE_TEST_STATE_VERSION);
          this.sifiveTest.restore(d.state as SifiveTestState);
          break;
        case HTIF_DEVICE_ID: {
          expect(HTIF_STATE_VERSION);
          const s = d.state as HtifState;
          // Each is -1 or the address of a doubleword in RAM, as the ELF loader sets them.
          for (const [name, a] of [["tohost", s.tohost], ["fromhost", s.fromhost]] as const) {
            if (a !== -1 && !(Number.isSafeInteger(a) && this.ram.contains(a, 8))) {
              throw new RangeError(
                `Cannot restore device ${d.id}: ${name} ${a} is not -1 or a doubleword in RAM`,
              );
            }
          }
          this.#setHtif(s.tohost, s.fromhost);
          break;
        }
        case PLIC_DEVICE_ID:
          expect(PLIC_STATE_VERSION);
          this.plic.restore(d.state as PlicState);
          break;
        case MROM_DEVICE_ID:
          expect(MROM_STATE_VERSION);
          this.mrom.restore(d.state as MromState);
          break;
        default:
          throw new RangeError(`Cannot restore device ${d.id}: this machine has no such device`);
      }
      seen.add(d.id);
    }
    for (
      const id of [
        UART_DEVICE_ID,
        CLINT_DEVICE_ID,
        SIFIVE_TEST_DEVICE_ID,
        HTIF_DEVICE_ID,
        PLIC_DEVICE_ID,
        MROM_DEVICE_ID,
      ]
    ) {
      if (!seen.has(id)) throw new RangeError(`Cannot restore machine: device ${id} is missing`);
    }
    this.hart.restore(saved.hart);
    this.invalidateDecodeCache();
    this.#lastTrapRetired = -1;
    this.#trapStreak = 0;
    this.ram.watchHit = -1;
  }
}
