/**
 * The physical memory map of the `livesnap-virt-rv32` machine. It follows QEMU's riscv32 `virt`
 * board (hw/riscv/virt.c) for every device the machine has, so the same statically linked guest
 * ELF runs on both.
 *
 * @module
 */

/** The machine's name as recorded in snapshots. */
export const MACHINE_NAME = "livesnap-virt-rv32";

/** SiFive test device ("finisher"): power off with success or failure. */
export const SIFIVE_TEST_BASE = 0x0010_0000;
/** Size of the SiFive test device's register window. */
export const SIFIVE_TEST_SIZE = 0x1000;

/** Core-local interruptor (msip, mtimecmp, mtime), SiFive CLINT layout. */
export const CLINT_BASE = 0x0200_0000;
/** Size of the CLINT's register window. */
export const CLINT_SIZE = 0x1_0000;

/** Platform-level interrupt controller (QEMU virt's SiFive PLIC, hart config "MS"). */
export const PLIC_BASE = 0x0c00_0000;
/** Size of the PLIC's register window for one hart (VIRT_PLIC_SIZE(2) in QEMU). */
export const PLIC_SIZE = 0x20_2000;

/** ns16550a UART. */
export const UART_BASE = 0x1000_0000;
/** Size of the UART's register window. */
export const UART_SIZE = 0x100;

/** Start of RAM, as on QEMU's `virt`. */
export const RAM_BASE = 0x8000_0000;
/** Default RAM size (QEMU's default for `virt` is 128 MiB as well). */
export const DEFAULT_RAM_SIZE = 128 * 1024 * 1024;
/** Largest RAM this machine supports: RAM must end at or below 0xFFFF_FFFF. */
export const MAX_RAM_SIZE = 0x8000_0000;
/** Page size for the page gate and snapshots. */
export const PAGE_SIZE = 4096;
/** log2(PAGE_SIZE). */
export const PAGE_SHIFT = 12;

/**
 * Guest timebase: `mtime` advances by one tick every `INSTRUCTIONS_PER_TICK` retired
 * instructions (not with the wall clock), so a run is a pure function of the ELF and its input.
 * QEMU's `virt` timebase is 10 MHz; at 10 instructions per tick a guest that believes that
 * frequency sees itself run at a nominal 100 MHz.
 */
export const INSTRUCTIONS_PER_TICK = 10;
/** The timebase frequency a guest should assume, as in QEMU's device tree. */
export const TIMEBASE_FREQUENCY = 10_000_000;
