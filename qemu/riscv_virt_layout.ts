/**
 * The vmstate layouts of QEMU 7.2's riscv32 `virt` board for the device sections livesnap
 * writes when it turns one of its own snapshots into a QEMU stream, and reads when a stream
 * carries no JSON description. Each is a description in the JSON form QEMU appends to its
 * streams (`qemu/model.ts`), taken from what QEMU 7.2 itself describes (the test beside this file
 * compares them with the description in real streams); the serial device's optional subsections
 * follow hw/char/serial.c (`vmstate_serial_*`) and util/fifo8.c (`vmstate_fifo8`).
 *
 * Also here: the values QEMU 7.2's default rv32 hart holds in the fields livesnap does not
 * model, so a stream written for QEMU describes the hart QEMU would build
 * (`qemu-system-riscv32 -machine virt`, default CPU), and the section ids QEMU gives the devices.
 *
 * @module
 */
import type { VmDescField, VmDescStruct } from "./model.ts";

function field(name: string, type: string, size: number, arrayLen?: number): VmDescField {
  return arrayLen === undefined ? { name, type, size } : { name, type, size, array_len: arrayLen };
}

function struct(name: string, desc: VmDescStruct, arrayLen?: number): VmDescField {
  const f: VmDescField = { name, type: "struct", size: 0, struct: desc };
  if (arrayLen !== undefined) f.array_len = arrayLen;
  return f;
}

/** vmstate `timer` version 2. */
export const TIMER: VmDescStruct = {
  vmsd_name: "timer",
  version: 2,
  fields: [
    field("cpu_ticks_offset", "int64", 8),
    field("unused", "unused_buffer", 8),
    field("cpu_clock_offset", "int64", 8),
  ],
};

/** vmstate `cpu_common` version 1. */
export const CPU_COMMON: VmDescStruct = {
  vmsd_name: "cpu_common",
  version: 1,
  fields: [
    field("halted", "uint32", 4),
    field("interrupt_request", "uint32", 4),
  ],
};

/** vmstate `cpu` version 5. */
export const CPU: VmDescStruct = {
  vmsd_name: "cpu",
  version: 5,
  fields: [
    field("env.gpr", "uint32", 4, 32),
    field("env.fpr", "uint64", 8, 32),
    field("env.miprio", "uint8", 1, 64),
    field("env.siprio", "uint8", 1, 64),
    field("env.pc", "uint32", 4),
    field("env.load_res", "uint32", 4),
    field("env.load_val", "uint32", 4),
    field("env.frm", "uint32", 4),
    field("env.badaddr", "uint32", 4),
    field("env.guest_phys_fault_addr", "uint32", 4),
    field("env.priv_ver", "uint32", 4),
    field("env.vext_ver", "uint32", 4),
    field("env.misa_mxl", "uint32", 4),
    field("env.misa_ext", "uint32", 4),
    field("env.misa_mxl_max", "uint32", 4),
    field("env.misa_ext_mask", "uint32", 4),
    field("env.features", "uint32", 4),
    field("env.priv", "uint32", 4),
    field("env.virt", "uint32", 4),
    field("env.resetvec", "uint64", 8),
    field("env.mhartid", "uint32", 4),
    field("env.mstatus", "uint64", 8),
    field("env.mip", "uint64", 8),
    field("env.miclaim", "uint64", 8),
    field("env.mie", "uint64", 8),
    field("env.mideleg", "uint64", 8),
    field("env.satp", "uint32", 4),
    field("env.stval", "uint32", 4),
    field("env.medeleg", "uint32", 4),
    field("env.stvec", "uint32", 4),
    field("env.sepc", "uint32", 4),
    field("env.scause", "uint32", 4),
    field("env.mtvec", "uint32", 4),
    field("env.mepc", "uint32", 4),
    field("env.mcause", "uint32", 4),
    field("env.mtval", "uint32", 4),
    field("env.miselect", "uint32", 4),
    field("env.siselect", "uint32", 4),
    field("env.scounteren", "uint32", 4),
    field("env.mcounteren", "uint32", 4),
    field("env.mcountinhibit", "uint32", 4),
    struct("env.pmu_ctrs", {
      vmsd_name: "cpu/pmu",
      version: 1,
      fields: [
        field("mhpmcounter_val", "uint32", 4),
        field("mhpmcounterh_val", "uint32", 4),
        field("mhpmcounter_prev", "uint32", 4),
        field("mhpmcounterh_prev", "uint32", 4),
        field("started", "bool", 1),
      ],
    }, 32),
    field("env.mhpmevent_val", "uint32", 4, 32),
    field("env.mhpmeventh_val", "uint32", 4, 32),
    field("env.sscratch", "uint32", 4),
    field("env.mscratch", "uint32", 4),
    field("env.mfromhost", "uint64", 8),
    field("env.mtohost", "uint64", 8),
    field("env.stimecmp", "uint64", 8),
  ],
  subsections: [
    {
      vmsd_name: "cpu/pmp",
      version: 1,
      fields: [
        struct("env.pmp_state.pmp", {
          vmsd_name: "cpu/pmp/entry",
          version: 1,
          fields: [
            field("addr_reg", "uint32", 4),
            field("cfg_reg", "uint8", 1),
          ],
        }, 16),
      ],
    },
    {
      vmsd_name: "cpu/hyper",
      version: 2,
      fields: [
        field("env.hstatus", "uint32", 4),
        field("env.hedeleg", "uint32", 4),
        field("env.hideleg", "uint64", 8),
        field("env.hcounteren", "uint32", 4),
        field("env.htval", "uint32", 4),
        field("env.htinst", "uint32", 4),
        field("env.hgatp", "uint32", 4),
        field("env.hgeie", "uint32", 4),
        field("env.hgeip", "uint32", 4),
        field("env.htimedelta", "uint64", 8),
        field("env.vstimecmp", "uint64", 8),
        field("env.hvictl", "uint32", 4),
        field("env.hviprio", "uint8", 1, 64),
        field("env.vsstatus", "uint64", 8),
        field("env.vstvec", "uint32", 4),
        field("env.vsscratch", "uint32", 4),
        field("env.vsepc", "uint32", 4),
        field("env.vscause", "uint32", 4),
        field("env.vstval", "uint32", 4),
        field("env.vsatp", "uint32", 4),
        field("env.vsiselect", "uint32", 4),
        field("env.mtval2", "uint32", 4),
        field("env.mtinst", "uint32", 4),
        field("env.stvec_hs", "uint32", 4),
        field("env.sscratch_hs", "uint32", 4),
        field("env.sepc_hs", "uint32", 4),
        field("env.scause_hs", "uint32", 4),
        field("env.stval_hs", "uint32", 4),
        field("env.satp_hs", "uint32", 4),
        field("env.mstatus_hs", "uint64", 8),
      ],
    },
    {
      vmsd_name: "cpu/envcfg",
      version: 1,
      fields: [
        field("env.menvcfg", "uint64", 8),
        field("env.senvcfg", "uint32", 4),
        field("env.henvcfg", "uint64", 8),
      ],
    },
    {
      vmsd_name: "cpu/debug",
      version: 2,
      fields: [
        field("env.trigger_cur", "uint32", 4),
        field("env.tdata1", "uint32", 4, 2),
        field("env.tdata2", "uint32", 4, 2),
        field("env.tdata3", "uint32", 4, 2),
      ],
    },
  ],
};

/** vmstate `riscv_mtimer` version 1. */
export const MTIMER: VmDescStruct = {
  vmsd_name: "riscv_mtimer",
  version: 1,
  fields: [
    field("timecmp", "uint64", 8),
  ],
};

/** vmstate `riscv_sifive_plic` version 1. */
export const PLIC: VmDescStruct = {
  vmsd_name: "riscv_sifive_plic",
  version: 1,
  fields: [
    field("source_priority", "uint32", 4, 96),
    field("target_priority", "uint32", 4, 2),
    field("pending", "uint32", 4, 3),
    field("claimed", "uint32", 4, 3),
    field("enable", "uint32", 4, 6),
  ],
};

/** vmstate `globalstate` version 1. */
export const GLOBALSTATE: VmDescStruct = {
  vmsd_name: "globalstate",
  version: 1,
  fields: [
    field("size", "uint32", 4),
    field("runstate", "buffer", 100),
  ],
};

/** `vmstate_fifo8` (util/fifo8.c): a 16-byte FIFO, its head index and fill count. */
const FIFO8: VmDescStruct = {
  vmsd_name: "Fifo8",
  version: 1,
  fields: [field("data", "buffer", 16), field("head", "uint32", 4), field("num", "uint32", 4)],
};

/**
 * The serial device's optional subsections (hw/char/serial.c), each sent only when its
 * `.needed` says so; by name.
 */
export const SERIAL_SUBSECTIONS: Readonly<Record<string, VmDescStruct>> = {
  "serial/thr_ipending": {
    vmsd_name: "serial/thr_ipending",
    version: 1,
    fields: [field("thr_ipending", "int32", 4)],
  },
  "serial/tsr": {
    vmsd_name: "serial/tsr",
    version: 1,
    fields: [field("tsr_retry", "uint32", 4), field("thr", "uint8", 1), field("tsr", "uint8", 1)],
  },
  "serial/recv_fifo": {
    vmsd_name: "serial/recv_fifo",
    version: 1,
    fields: [struct("recv_fifo", FIFO8)],
  },
  "serial/xmit_fifo": {
    vmsd_name: "serial/xmit_fifo",
    version: 1,
    fields: [struct("xmit_fifo", FIFO8)],
  },
  "serial/fifo_timeout_timer": {
    vmsd_name: "serial/fifo_timeout_timer",
    version: 1,
    fields: [field("fifo_timeout_timer", "timer", 8)],
  },
  "serial/timeout_ipending": {
    vmsd_name: "serial/timeout_ipending",
    version: 1,
    fields: [field("timeout_ipending", "int32", 4)],
  },
  "serial/poll": {
    vmsd_name: "serial/poll",
    version: 1,
    fields: [field("poll_msl", "int32", 4), field("modem_status_poll", "timer", 8)],
  },
};

/**
 * vmstate `serial` version 3: the memory-mapped UART (`serial_mm`) wraps the 16550's own
 * `serial` vmstate in a struct field; the optional subsections belong to the inner one.
 */
export const SERIAL: VmDescStruct = {
  vmsd_name: "serial",
  version: 3,
  fields: [
    struct("serial", {
      vmsd_name: "serial",
      version: 3,
      fields: [
        field("divider", "uint16", 2),
        field("rbr", "uint8", 1),
        field("ier", "uint8", 1),
        field("iir", "uint8", 1),
        field("lcr", "uint8", 1),
        field("mcr", "uint8", 1),
        field("lsr", "uint8", 1),
        field("msr", "uint8", 1),
        field("scr", "uint8", 1),
        field("fcr_vmstate", "uint8", 1),
      ],
      subsections: Object.values(SERIAL_SUBSECTIONS),
    }),
  ],
};

/** Every layout by section idstr. */
export const VIRT_LAYOUTS: Readonly<Record<string, VmDescStruct>> = {
  timer: TIMER,
  cpu_common: CPU_COMMON,
  cpu: CPU,
  riscv_mtimer: MTIMER,
  riscv_sifive_plic: PLIC,
  serial: SERIAL,
  globalstate: GLOBALSTATE,
};

/**
 * The section ids QEMU 7.2 gives these devices on `virt` (its registration order; `ram` is 2).
 * QEMU's loader does not check them; they are kept so that a written stream reads like QEMU's.
 */
export const VIRT_SECTION_IDS: Readonly<Record<string, number>> = {
  timer: 0,
  ram: 2,
  cpu_common: 5,
  cpu: 6,
  riscv_mtimer: 7,
  riscv_sifive_plic: 8,
  serial: 12,
  globalstate: 17,
};

/** Interrupt priorities (AIA iprio) QEMU 7.2 gives a hart at reset: env.miprio. */
const MIPRIO = [
  0xff,
  0x14,
  0x18,
  0x11,
  0xff,
  0x15,
  0x19,
  0x12,
  0xff,
  0x13,
  0x17,
  0x00,
  0x16,
  0xff,
  0xff,
  0xff,
  0x24,
  0x21,
  0x1e,
  0x1b,
  0x0e,
  0x0b,
  0x08,
  0x05,
  0xff,
  0xff,
  0xff,
  0xff,
  0xff,
  0xff,
  0xff,
  0xff,
  0x25,
  0x23,
  0x22,
  0x20,
  0x1f,
  0x1d,
  0x1c,
  0x1a,
  0x0f,
  0x0d,
  0x0c,
  0x0a,
  0x09,
  0x07,
  0x06,
  0x04,
  ...new Array(16).fill(0xff),
];

/**
 * The fields of QEMU 7.2's default rv32 hart (`-machine virt`, no `-cpu`) that livesnap's hart
 * does not model, as QEMU holds them after reset (read from a stream of a hart that never ran):
 * extensions A C D F H I M S U, privileged spec 1.12, PMP and debug triggers present.
 */
export const QEMU_RV32_RESET: Readonly<Record<string, number | number[]>> = {
  "env.miprio": MIPRIO,
  "env.siprio": MIPRIO.map((v, i) => (i === 9 ? 0x00 : i === 11 ? 0x10 : v)),
  "env.priv_ver": 2,
  "env.misa_mxl": 1,
  "env.misa_ext": 0x0014_11ad,
  "env.misa_mxl_max": 1,
  "env.misa_ext_mask": 0x0014_11ad,
  "env.features": 0x13,
  "env.resetvec": 0x1000,
  "env.miclaim": 0x1000,
  "env.hviprio": [
    0x00,
    0x14,
    0x00,
    0x00,
    0x00,
    0x15,
    0x00,
    0x00,
    0x00,
    0x00,
    0x00,
    0x00,
    0x00,
    0xff,
    0xff,
    0xff,
    0x24,
    0x21,
    0x1e,
    0x1b,
    0x0e,
    0x0b,
    0x08,
    0x05,
    ...new Array(40).fill(0x00),
  ],
  "env.tdata1": [0x2000_0000, 0x2000_0000],
};
