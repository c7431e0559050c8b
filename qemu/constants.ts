/**
 * The constants of QEMU's migration stream (the `savevm` format, version 3), as QEMU 7.2 and
 * later write it. Learned from QEMU's `migration/savevm.c`, `migration/ram.c` and
 * `scripts/analyze-migration.py`; all multi-byte integers in the stream are big-endian.
 *
 * ```
 * stream   = magic "QEVM" u32 | version u32 (3) | configuration | section* | EOF u8 (0x00)
 *            | [VMDESCRIPTION u8 (0x06) | length u32 | JSON text]
 * config   = 0x07 | name length u32 | machine name | subsection*
 * START    = 0x01 | section id u32 | idstr length u8 | idstr | instance id u32 | version id u32
 *            | data | footer
 * FULL     = 0x04 | (same header as START) | data | footer
 * PART/END = 0x02/0x03 | section id u32 | data | footer
 * footer   = 0x7e | section id u32
 * command  = 0x08 | command u16 | length u16 | data
 * ```
 *
 * The `ram` section's data is a list of records, each opening with a u64 whose low bits (below
 * the target page size) are flags and whose high bits are a page offset within a RAM block.
 *
 * @module
 */

/** "QEVM", the stream's first four bytes. */
export const QEMU_VM_FILE_MAGIC = 0x5145_564d;
/** The only stream version QEMU has written since 2.x. */
export const QEMU_VM_FILE_VERSION = 3;

/** Top-level section type bytes (`QEMU_VM_*` in savevm.c). */
export const SectionType = {
  EOF: 0x00,
  START: 0x01,
  PART: 0x02,
  END: 0x03,
  FULL: 0x04,
  SUBSECTION: 0x05,
  VMDESCRIPTION: 0x06,
  CONFIGURATION: 0x07,
  COMMAND: 0x08,
  FOOTER: 0x7e,
} as const;

/** A section type's name, for messages and inspect output. */
export function sectionTypeName(type: number): string {
  for (const [name, value] of Object.entries(SectionType)) if (value === type) return name;
  return `0x${type.toString(16).padStart(2, "0")}`;
}

/** Flags in the low bits of a `ram` record's leading u64 (`RAM_SAVE_FLAG_*` in ram.c). */
export const RamFlag = {
  /** A page whose every byte equals the one fill byte that follows (0 in practice). */
  ZERO: 0x02,
  /** The block list: the high bits hold the total size of all blocks. */
  MEM_SIZE: 0x04,
  /** A page sent whole. */
  PAGE: 0x08,
  /** End of this section's RAM data. */
  EOS: 0x10,
  /** The page is in the block of the previous page record, so no block name follows. */
  CONTINUE: 0x20,
  /** An XBZRLE-encoded delta page (not supported). */
  XBZRLE: 0x40,
  /** An RDMA hook (not supported). */
  HOOK: 0x80,
  /** A zlib-compressed page (not supported). */
  COMPRESS_PAGE: 0x100,
  /** A multifd synchronisation point (not supported: multifd pages travel on other channels). */
  MULTIFD_FLUSH: 0x200,
} as const;

/** The `idstr` of the section that carries guest RAM. */
export const RAM_SECTION_IDSTR = "ram";
/** The `ram` section version QEMU has written since 2.x. */
export const RAM_SECTION_VERSION = 4;
/** TARGET_PAGE_SIZE of riscv, x86 and most targets, used when the stream does not state it. */
export const DEFAULT_TARGET_PAGE_SIZE = 4096;

/** Configuration subsections this reader understands (configuration vmstate in savevm.c). */
export const ConfigSubsection = {
  TARGET_PAGE_BITS: "configuration/target-page-bits",
  CAPABILITIES: "configuration/capabilities",
  UUID: "configuration/uuid",
} as const;

/**
 * The most bytes of device state (everything from the first device section to the end of the
 * stream) a reader holds in memory. Device state is kilobytes in practice; the cap keeps a
 * damaged or hostile stream from exhausting memory.
 */
export const MAX_DEVICE_STATE_BYTES = 64 * 1024 * 1024;
