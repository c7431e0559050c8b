/**
 * What every memory-mapped device offers the bus.
 *
 * @module
 */

/** A device in the MMIO range table. Offsets are relative to the device's base address. */
export interface MmioDevice {
  /** Read `size` (1, 2 or 4) bytes at `offset`; returns the value zero-extended. */
  load(offset: number, size: number): number;
  /** Write the low `size` bytes of `value` at `offset`. */
  store(offset: number, size: number, value: number): void;
  /**
   * The access widths the device accepts, as a bit mask of byte counts (4: 32-bit only);
   * other widths raise access faults. Absent: every width (1, 2, 4).
   */
  readonly accessSizes?: number;
}
