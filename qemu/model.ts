/**
 * The records a QEMU migration stream is read into, and written back from.
 *
 * @module
 */

/** One RAM block as the `ram` section's block list declares it. */
export interface RamBlock {
  /** QEMU's block id string, e.g. `riscv_virt_board.ram` or `pc.ram`. */
  name: string;
  /** The block's used length in bytes. */
  size: number;
  /** The block's guest address, present only with the `x-ignore-shared` capability. */
  address?: number;
}

/** The configuration section: the machine type and the optional subsections QEMU sends. */
export interface QemuConfiguration {
  /** Machine type name, e.g. `virt` or `pc-q35-7.2`. */
  machine: string;
  /** Target page bits, when the stream states them (otherwise the target's default). */
  targetPageBits?: number;
  /** Migration capabilities the destination must also enable (`configuration/capabilities`). */
  capabilities: string[];
  /** The source VM's UUID in canonical text form, when sent (`configuration/uuid`). */
  uuid?: string;
  /** The whole section as it appears in the stream, from its type byte on. */
  bytes: Uint8Array;
}

/** The identity of a section, as its START or FULL header gives it. */
export interface SectionHeader {
  /** `SectionType.START` or `SectionType.FULL`. */
  sectionType: number;
  /** The per-stream number that PART, END and the footer refer to. */
  sectionId: number;
  /** The device's id string, e.g. `serial` or `0000:00:00.0/gpex_root`. */
  idstr: string;
  /** Which of several devices with this idstr (QEMU's instance id). */
  instanceId: number;
  /** The version of the device's vmstate layout the section was saved with. */
  versionId: number;
}

/** A device's state section, kept byte for byte. */
export interface QemuDeviceSection extends SectionHeader {
  /** The section's data: everything between its header and its footer. */
  data: Uint8Array;
}

/** Where a stream can be read: one variant per kind of record. */
export type QemuStreamRecord =
  | { kind: "header"; offset: number; version: number }
  | { kind: "configuration"; offset: number; configuration: QemuConfiguration }
  | {
    kind: "ram-blocks";
    offset: number;
    /** The `ram` section's id, instance and version, from its START header. */
    sectionId: number;
    instanceId: number;
    versionId: number;
    blocks: RamBlock[];
  }
  | {
    kind: "page";
    offset: number;
    /** The RAM block's name. */
    block: string;
    /** The page's byte offset within its block. */
    address: number;
    /** The page's bytes, absent when the page is one repeated fill byte. */
    data?: Uint8Array;
    /** The fill byte of a ZERO page record (0 in every stream QEMU writes today). */
    fill?: number;
  }
  | {
    kind: "ram-section";
    offset: number;
    /** Bytes from the section type byte through the footer. */
    length: number;
    sectionType: number;
    sectionId: number;
    /** Page records in this section. */
    pages: number;
  }
  | { kind: "device"; offset: number; section: QemuDeviceSection }
  | { kind: "command"; offset: number; command: number; data: Uint8Array }
  | { kind: "eof"; offset: number }
  | { kind: "vmdesc"; offset: number; text: string; description: VmDescription };

/** A field of the JSON device description (`vmsd_desc_field_*` in QEMU's vmstate.c). */
export interface VmDescField {
  /** The field's name (QEMU appends a suffix to a name the description repeats). */
  name: string;
  /** Its vmstate type: `uint32`, `int64`, `bool`, `buffer`, `struct`, `unused_buffer`… */
  type: string;
  /** Bytes one element takes in the section. */
  size: number;
  /** For an array described once for all its elements: how many there are. */
  array_len?: number;
  /** For an array described element by element: this element's index. */
  index?: number;
  /** For a `struct` field: the nested description. */
  struct?: VmDescStruct;
  /** Keys this reader does not use, kept as QEMU wrote them. */
  [key: string]: unknown;
}

/** A vmstate description: a device's or a struct field's. */
export interface VmDescStruct {
  /** The VMStateDescription's name; subsections are named `<parent vmsd_name>/<name>`. */
  vmsd_name?: string;
  /** The vmstate version the data was saved with. */
  version?: number;
  /** The fields in section order. */
  fields?: VmDescField[];
  /** The subsections the section holds after its fields, in order. */
  subsections?: VmDescStruct[];
  /** Keys this reader does not use, kept as QEMU wrote them. */
  [key: string]: unknown;
}

/** One device in the JSON description. */
export interface VmDescDevice extends VmDescStruct {
  /** The device section's idstr. */
  name: string;
  /** The device section's instance id. */
  instance_id: number;
}

/** The JSON description QEMU appends after the end of the stream. */
export interface VmDescription {
  /** The target page size in bytes, as QEMU states it. */
  page_size?: number;
  /** One entry per device section of the stream. */
  devices: VmDescDevice[];
  /** Keys this reader does not use, kept as QEMU wrote them. */
  [key: string]: unknown;
}
