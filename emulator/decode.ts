/**
 * Instruction decoder: turns a raw RV32IMAC instruction (32-bit, or 16-bit compressed) into an
 * operation number and operand fields, stored packed in two integers so the CPU's decoded
 * instruction cache is two typed-array reads per instruction.
 *
 * Packed layout of `meta`: bits 0-7 op, 8-13 rd, 14-19 rs1, 20-25 rs2, 26-28 length in bytes.
 * rd = 0 is decoded as register 32 (a scratch slot that is never read) so that the CPU never has
 * to test for x0 on a write.
 *
 * Compressed instructions (unprivileged spec chapter 16, "C" Standard Extension) are expanded to
 * their base equivalents here; their length field is 2.
 *
 * @module
 */

// Operation numbers. Dense, so the CPU's `switch` compiles to a jump table.
export const OP_ILLEGAL = 0;
export const OP_LUI = 1;
export const OP_AUIPC = 2;
export const OP_JAL = 3;
export const OP_JALR = 4;
export const OP_BEQ = 5;
export const OP_BNE = 6;
export const OP_BLT = 7;
export const OP_BGE = 8;
export const OP_BLTU = 9;
export const OP_BGEU = 10;
export const OP_LB = 11;
export const OP_LH = 12;
export const OP_LW = 13;
export const OP_LBU = 14;
export const OP_LHU = 15;
export const OP_SB = 16;
export const OP_SH = 17;
export const OP_SW = 18;
export const OP_ADDI = 19;
export const OP_SLTI = 20;
export const OP_SLTIU = 21;
export const OP_XORI = 22;
export const OP_ORI = 23;
export const OP_ANDI = 24;
export const OP_SLLI = 25;
export const OP_SRLI = 26;
export const OP_SRAI = 27;
export const OP_ADD = 28;
export const OP_SUB = 29;
export const OP_SLL = 30;
export const OP_SLT = 31;
export const OP_SLTU = 32;
export const OP_XOR = 33;
export const OP_SRL = 34;
export const OP_SRA = 35;
export const OP_OR = 36;
export const OP_AND = 37;
export const OP_FENCE = 38;
export const OP_FENCE_I = 39;
export const OP_ECALL = 40;
export const OP_EBREAK = 41;
export const OP_MRET = 42;
export const OP_WFI = 43;
export const OP_CSRRW = 44;
export const OP_CSRRS = 45;
export const OP_CSRRC = 46;
export const OP_CSRRWI = 47;
export const OP_CSRRSI = 48;
export const OP_CSRRCI = 49;
export const OP_MUL = 50;
export const OP_MULH = 51;
export const OP_MULHSU = 52;
export const OP_MULHU = 53;
export const OP_DIV = 54;
export const OP_DIVU = 55;
export const OP_REM = 56;
export const OP_REMU = 57;
export const OP_LR_W = 58;
export const OP_SC_W = 59;
export const OP_AMOSWAP_W = 60;
export const OP_AMOADD_W = 61;
export const OP_AMOXOR_W = 62;
export const OP_AMOAND_W = 63;
export const OP_AMOOR_W = 64;
export const OP_AMOMIN_W = 65;
export const OP_AMOMAX_W = 66;
export const OP_AMOMINU_W = 67;
export const OP_AMOMAXU_W = 68;
/** Highest operation number. */
export const OP_LAST = 68;

/** Register slot used in place of x0 as a destination. */
export const X0_SINK = 32;

/** A decoded instruction (for tests and tools; the CPU uses the packed form). */
export interface Decoded {
  op: number;
  rd: number;
  rs1: number;
  rs2: number;
  imm: number;
  length: 2 | 4;
}

function pack(op: number, rd: number, rs1: number, rs2: number, len: number): number {
  return op | ((rd === 0 ? X0_SINK : rd) << 8) | (rs1 << 14) | (rs2 << 20) | (len << 26);
}

const ILLEGAL32 = pack(OP_ILLEGAL, 0, 0, 0, 4);
const ILLEGAL16 = pack(OP_ILLEGAL, 0, 0, 0, 2);

/** Sign-extend the low `bits` bits of v. */
function sext(v: number, bits: number): number {
  const s = 32 - bits;
  return (v << s) >> s;
}

// The immediate of the last decode (returned through a module variable to avoid allocating).
let lastImm = 0;

/**
 * Decode a 32-bit instruction (unprivileged spec chapter 2 "RV32I", chapter 7 "M", chapter 8 "A",
 * "Zicsr", "Zifencei"; privileged spec 3.3 for mret/wfi). Returns the packed meta; the immediate
 * is left in `lastImm`.
 */
function decode32(w: number): number {
  const opcode = w & 0x7f;
  const rd = (w >>> 7) & 31;
  const f3 = (w >>> 12) & 7;
  const rs1 = (w >>> 15) & 31;
  const rs2 = (w >>> 20) & 31;
  const f7 = w >>> 25;
  const immI = w >> 20;
  lastImm = 0;
  switch (opcode) {
    case 0x37:
      lastImm = w & 0xffff_f000;
      return pack(OP_LUI, rd, 0, 0, 4);
    case 0x17:
      lastImm = w & 0xffff_f000;
      return pack(OP_AUIPC, rd, 0, 0, 4);
    case 0x6f:
      lastImm = sext(
        ((w >>> 31) << 20) | (((w >>> 12) & 0xff) << 12) | (((w >>> 20) & 1) << 11) |
          (((w >>> 21) & 0x3ff) << 1),
        21,
      );
      return pack(OP_JAL, rd, 0, 0, 4);
    case 0x67:
      if (f3 !== 0) return ILLEGAL32;
      lastImm = immI;
      return pack(OP_JALR, rd, rs1, 0, 4);
    case 0x63: {
      const ops = [OP_BEQ, OP_BNE, -1, -1, OP_BLT, OP_BGE, OP_BLTU, OP_BGEU];
      const op = ops[f3];
      if (op < 0) return ILLEGAL32;
      lastImm = sext(
        ((w >>> 31) << 12) | (((w >>> 7) & 1) << 11) | (((w >>> 25) & 0x3f) << 5) |
          (((w >>> 8) & 0xf) << 1),
        13,
      );
      return pack(op, 0, rs1, rs2, 4);
    }
    case 0x03: {
      const ops = [OP_LB, OP_LH, OP_LW, -1, OP_LBU, OP_LHU, -1, -1];
      const op = ops[f3];
      if (op < 0) return ILLEGAL32;
      lastImm = immI;
      return pack(op, rd, rs1, 0, 4);
    }
    case 0x23: {
      const ops = [OP_SB, OP_SH, OP_SW, -1, -1, -1, -1, -1];
      const op = ops[f3];
      if (op < 0) return ILLEGAL32;
      lastImm = ((w >> 25) << 5) | ((w >>> 7) & 31);
      return pack(op, 0, rs1, rs2, 4);
    }
    case 0x13: {
      lastImm = immI;
      switch (f3) {
        case 0:
          return pack(OP_ADDI, rd, rs1, 0, 4);
        case 2:
          return pack(OP_SLTI, rd, rs1, 0, 4);
        case 3:
          return pack(OP_SLTIU, rd, rs1, 0, 4);
        case 4:
          return pack(OP_XORI, rd, rs1, 0, 4);
        case 6:
          return pack(OP_ORI, rd, rs1, 0, 4);
        case 7:
          return pack(OP_ANDI, rd, rs1, 0, 4);
        case 1:
          if (f7 !== 0) return ILLEGAL32;
          lastImm = rs2;
          return pack(OP_SLLI, rd, rs1, 0, 4);
        default: // 5
          lastImm = rs2;
          if (f7 === 0) return pack(OP_SRLI, rd, rs1, 0, 4);
          if (f7 === 0x20) return pack(OP_SRAI, rd, rs1, 0, 4);
          return ILLEGAL32;
      }
    }
    case 0x33: {
      if (f7 === 0) {
        const ops = [OP_ADD, OP_SLL, OP_SLT, OP_SLTU, OP_XOR, OP_SRL, OP_OR, OP_AND];
        return pack(ops[f3], rd, rs1, rs2, 4);
      }
      if (f7 === 1) {
        const ops = [OP_MUL, OP_MULH, OP_MULHSU, OP_MULHU, OP_DIV, OP_DIVU, OP_REM, OP_REMU];
        return pack(ops[f3], rd, rs1, rs2, 4);
      }
      if (f7 === 0x20) {
        if (f3 === 0) return pack(OP_SUB, rd, rs1, rs2, 4);
        if (f3 === 5) return pack(OP_SRA, rd, rs1, rs2, 4);
      }
      return ILLEGAL32;
    }
    case 0x0f:
      // FENCE (any fm/pred/succ; rd and rs1 are reserved and ignored as the spec allows)
      if (f3 === 0) return pack(OP_FENCE, 0, 0, 0, 4);
      if (f3 === 1) return pack(OP_FENCE_I, 0, 0, 0, 4);
      return ILLEGAL32;
    case 0x73: {
      if (f3 === 0) {
        if (rd !== 0) return ILLEGAL32;
        if (w === 0x0000_0073) return pack(OP_ECALL, 0, 0, 0, 4);
        if (w === 0x0010_0073) return pack(OP_EBREAK, 0, 0, 0, 4);
        if (w === 0x3020_0073) return pack(OP_MRET, 0, 0, 0, 4);
        if (w === 0x1050_0073) return pack(OP_WFI, 0, 0, 0, 4);
        return ILLEGAL32; // sret, uret, sfence.vma: no S-mode on this hart
      }
      if (f3 === 4) return ILLEGAL32;
      lastImm = w >>> 20; // CSR number
      const ops = [-1, OP_CSRRW, OP_CSRRS, OP_CSRRC, -1, OP_CSRRWI, OP_CSRRSI, OP_CSRRCI];
      return pack(ops[f3], rd, rs1, 0, 4);
    }
    case 0x2f: {
      if (f3 !== 2) return ILLEGAL32;
      const f5 = w >>> 27;
      switch (f5) {
        case 0x02:
          return rs2 === 0 ? pack(OP_LR_W, rd, rs1, 0, 4) : ILLEGAL32;
        case 0x03:
          return pack(OP_SC_W, rd, rs1, rs2, 4);
        case 0x01:
          return pack(OP_AMOSWAP_W, rd, rs1, rs2, 4);
        case 0x00:
          return pack(OP_AMOADD_W, rd, rs1, rs2, 4);
        case 0x04:
          return pack(OP_AMOXOR_W, rd, rs1, rs2, 4);
        case 0x0c:
          return pack(OP_AMOAND_W, rd, rs1, rs2, 4);
        case 0x08:
          return pack(OP_AMOOR_W, rd, rs1, rs2, 4);
        case 0x10:
          return pack(OP_AMOMIN_W, rd, rs1, rs2, 4);
        case 0x14:
          return pack(OP_AMOMAX_W, rd, rs1, rs2, 4);
        case 0x18:
          return pack(OP_AMOMINU_W, rd, rs1, rs2, 4);
        case 0x1c:
          return pack(OP_AMOMAXU_W, rd, rs1, rs2, 4);
        default:
          return ILLEGAL32;
      }
    }
    default:
      return ILLEGAL32;
  }
}

/**
 * Expand a 16-bit compressed instruction (unprivileged spec 16.3-16.7, RV32C; the F/D load and
 * store forms are illegal on this hart, which has no floating point). Reserved encodings decode
 * as illegal.
 */
function decode16(h: number): number {
  const quadrant = h & 3;
  const f3 = (h >>> 13) & 7;
  const b12 = (h >>> 12) & 1;
  const r2 = (h >>> 2) & 31; // bits 6:2
  const r7 = (h >>> 7) & 31; // bits 11:7
  const rp2 = ((h >>> 2) & 7) + 8; // rs2' / rd'
  const rp7 = ((h >>> 7) & 7) + 8; // rs1' / rd'
  lastImm = 0;
  if (quadrant === 0) {
    switch (f3) {
      case 0: { // c.addi4spn
        const nz = (((h >>> 7) & 0xf) << 6) | (((h >>> 11) & 3) << 4) | (((h >>> 5) & 1) << 3) |
          (((h >>> 6) & 1) << 2);
        if (nz === 0) return ILLEGAL16; // includes the all-zero "defined illegal" instruction
        lastImm = nz;
        return pack(OP_ADDI, rp2, 2, 0, 2);
      }
      case 2: // c.lw
        lastImm = (((h >>> 10) & 7) << 3) | (((h >>> 6) & 1) << 2) | (((h >>> 5) & 1) << 6);
        return pack(OP_LW, rp2, rp7, 0, 2);
      case 6: // c.sw
        lastImm = (((h >>> 10) & 7) << 3) | (((h >>> 6) & 1) << 2) | (((h >>> 5) & 1) << 6);
        return pack(OP_SW, 0, rp7, rp2, 2);
      default:
        return ILLEGAL16;
    }
  }
  if (quadrant === 1) {
    const imm6 = sext((b12 << 5) | r2, 6);
    switch (f3) {
      case 0: // c.addi (c.nop when rd = 0)
        lastImm = imm6;
        return pack(OP_ADDI, r7, r7, 0, 2);
      case 1: // c.jal (RV32)
      case 5: { // c.j
        lastImm = sext(
          (b12 << 11) | (((h >>> 11) & 1) << 4) | (((h >>> 9) & 3) << 8) |
            (((h >>> 8) & 1) << 10) | (((h >>> 7) & 1) << 6) | (((h >>> 6) & 1) << 7) |
            (((h >>> 3) & 7) << 1) | (((h >>> 2) & 1) << 5),
          12,
        );
        return pack(OP_JAL, f3 === 1 ? 1 : 0, 0, 0, 2);
      }
      case 2: // c.li
        lastImm = imm6;
        return pack(OP_ADDI, r7, 0, 0, 2);
      case 3:
        if (r7 === 2) { // c.addi16sp
          const v = sext(
            (b12 << 9) | (((h >>> 6) & 1) << 4) | (((h >>> 5) & 1) << 6) |
              (((h >>> 3) & 3) << 7) | (((h >>> 2) & 1) << 5),
            10,
          );
          if (v === 0) return ILLEGAL16;
          lastImm = v;
          return pack(OP_ADDI, 2, 2, 0, 2);
        }
        // c.lui
        if (imm6 === 0) return ILLEGAL16;
        lastImm = imm6 << 12;
        return pack(OP_LUI, r7, 0, 0, 2);
      case 4: {
        const f2 = (h >>> 10) & 3;
        if (f2 === 0 || f2 === 1) { // c.srli, c.srai
          if (b12 !== 0) return ILLEGAL16; // shamt[5] = 1 is reserved on RV32
          lastImm = r2;
          return pack(f2 === 0 ? OP_SRLI : OP_SRAI, rp7, rp7, 0, 2);
        }
        if (f2 === 2) { // c.andi
          lastImm = imm6;
          return pack(OP_ANDI, rp7, rp7, 0, 2);
        }
        if (b12 !== 0) return ILLEGAL16; // c.subw / c.addw are RV64 only
        const ops = [OP_SUB, OP_XOR, OP_OR, OP_AND];
        return pack(ops[(h >>> 5) & 3], rp7, rp7, rp2, 2);
      }
      default: { // 6 c.beqz, 7 c.bnez
        lastImm = sext(
          (b12 << 8) | (((h >>> 10) & 3) << 3) | (((h >>> 5) & 3) << 6) |
            (((h >>> 3) & 3) << 1) | (((h >>> 2) & 1) << 5),
          9,
        );
        return pack(f3 === 6 ? OP_BEQ : OP_BNE, 0, rp7, 0, 2);
      }
    }
  }
  // quadrant 2
  switch (f3) {
    case 0: // c.slli
      if (b12 !== 0) return ILLEGAL16;
      lastImm = r2;
      return pack(OP_SLLI, r7, r7, 0, 2);
    case 2: // c.lwsp
      if (r7 === 0) return ILLEGAL16;
      lastImm = (b12 << 5) | (((h >>> 4) & 7) << 2) | (((h >>> 2) & 3) << 6);
      return pack(OP_LW, r7, 2, 0, 2);
    case 4:
      if (b12 === 0) {
        if (r2 === 0) { // c.jr
          if (r7 === 0) return ILLEGAL16;
          return pack(OP_JALR, 0, r7, 0, 2);
        }
        return pack(OP_ADD, r7, 0, r2, 2); // c.mv
      }
      if (r2 === 0) {
        if (r7 === 0) return pack(OP_EBREAK, 0, 0, 0, 2); // c.ebreak
        return pack(OP_JALR, 1, r7, 0, 2); // c.jalr
      }
      return pack(OP_ADD, r7, r7, r2, 2); // c.add
    case 6: // c.swsp
      lastImm = (((h >>> 9) & 0xf) << 2) | (((h >>> 7) & 3) << 6);
      return pack(OP_SW, 0, 2, r2, 2);
    default:
      return ILLEGAL16;
  }
}

/**
 * Decode `raw` (a 16-bit instruction when its low two bits are not 0b11, else 32 bits) into
 * `out[i]` (packed meta) and `out[i + 1]` (immediate).
 */
export function decodeInto(raw: number, out: Int32Array, i: number): void {
  out[i] = (raw & 3) === 3 ? decode32(raw) : decode16(raw & 0xffff);
  out[i + 1] = lastImm;
}

/** Decode one instruction into a plain object (tests, disassembly, tools). */
export function decode(raw: number): Decoded {
  const out = new Int32Array(2);
  decodeInto(raw, out, 0);
  const v = out[0];
  const rd = (v >>> 8) & 63;
  return {
    op: v & 0xff,
    rd: rd === X0_SINK ? 0 : rd,
    rs1: (v >>> 14) & 63,
    rs2: (v >>> 20) & 63,
    imm: out[1],
    length: ((v >>> 26) & 7) === 2 ? 2 : 4,
  };
}
