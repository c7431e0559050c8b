/*
 * Page hashes and record checksums for format/_wasm_hashes.ts, in WebAssembly with 128-bit SIMD.
 * Build with build.sh beside this file.
 *
 * XXH3-128 (seed 0, default secret) of inputs longer than 240 bytes, written from the algorithm
 * description in xxHash's doc/xxhash_spec.md ("XXH3 Algorithm Description (for large inputs)").
 * hash_pages(input, size, count, out): hashes `count` inputs of `size` bytes each, laid end to
 * end from `input`, and writes each 16-byte canonical hash (high half, then low half, both
 * big-endian, as XXH128_canonicalFromHash) to `out`. `size` must be more than 240.
 *
 * CRC32C (FORMAT.md §1: reflected polynomial 0x82F63B78), eight bytes per step through eight
 * tables ("slicing by 8"), four such steps interleaved ("braided", as zlib's crc32.c does it for
 * its own polynomial). crc32c_update(crc, input, length) continues `crc` (0 to start) over
 * `length` bytes, with the initial and final inversion applied, so that
 * crc32c_update(crc32c_update(0, a), b) is the CRC32C of a followed by b.
 *
 * digest_pages(input, size, count, zero, out) tells zero pages apart and hashes the others.
 *
 * All are checked against hash-wasm in format/checksum_test.ts.
 */
#include <stddef.h>
#include <stdint.h>
#include <wasm_simd128.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint8_t u8;

#define PRIME32_1 0x9E3779B1U
#define PRIME32_2 0x85EBCA77U
#define PRIME32_3 0xC2B2AE3DU
#define PRIME64_1 0x9E3779B185EBCA87ULL
#define PRIME64_2 0xC2B2AE3D27D4EB4FULL
#define PRIME64_3 0x165667B19E3779F9ULL
#define PRIME64_4 0x85EBCA77C2B2AE63ULL
#define PRIME64_5 0x27D4EB2F165667C5ULL
#define PRIME_MX1 0x165667919E3779F9ULL

#define SECRET_SIZE 192
#define STRIPE 64
#define STRIPES_PER_BLOCK ((SECRET_SIZE - STRIPE) / 8)
#define BLOCK (STRIPE * STRIPES_PER_BLOCK)

/* The default secret (xxhash_spec.md, "Seed and secret"). */
static const u8 SECRET[SECRET_SIZE] __attribute__((aligned(16))) = {
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
  0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
  0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
  0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
  0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
  0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
  0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
  0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
  0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
  0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
  0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* One stripe: acc[i ^ 1] += data[i]; acc[i] += lo32(data[i] ^ key[i]) * hi32(data[i] ^ key[i]). */
static inline void accumulate(v128_t acc[4], const u8 *data, const u8 *key) {
  for (int i = 0; i < 4; i++) {
    v128_t d = wasm_v128_load(data + 16 * i);
    v128_t k = wasm_v128_load(key + 16 * i);
    v128_t dk = wasm_v128_xor(d, k);
    /* [lo0, lo1] and [hi0, hi1] of the two 64-bit lanes, multiplied into two 64-bit products. */
    v128_t lo = wasm_i32x4_shuffle(dk, dk, 0, 2, 0, 2);
    v128_t hi = wasm_i32x4_shuffle(dk, dk, 1, 3, 1, 3);
    v128_t product = wasm_u64x2_extmul_low_u32x4(lo, hi);
    v128_t swapped = wasm_i64x2_shuffle(d, d, 1, 0);
    acc[i] = wasm_i64x2_add(acc[i], wasm_i64x2_add(product, swapped));
  }
}

static inline void scramble(v128_t acc[4], const u8 *key) {
  const v128_t prime = wasm_i64x2_splat(PRIME32_1);
  for (int i = 0; i < 4; i++) {
    v128_t a = acc[i];
    a = wasm_v128_xor(a, wasm_u64x2_shr(a, 47));
    a = wasm_v128_xor(a, wasm_v128_load(key + 16 * i));
    acc[i] = wasm_i64x2_mul(a, prime);
  }
}

static inline u64 read64(const u8 *p) {
  u64 v;
  __builtin_memcpy(&v, p, 8);
  return v; /* WebAssembly is little-endian, as the secret is read */
}

/* The low and high halves of the 128-bit product a * b, xor'ed (from 32-bit partial products:
 * there is no 128-bit multiply to link against). */
static inline u64 fold64(u64 a, u64 b) {
  u64 lo_lo = (u64)(u32)a * (u32)b;
  u64 hi_lo = (a >> 32) * (u32)b;
  u64 lo_hi = (u64)(u32)a * (b >> 32);
  u64 hi_hi = (a >> 32) * (b >> 32);
  u64 cross = (lo_lo >> 32) + (u32)hi_lo + lo_hi;
  u64 upper = (hi_lo >> 32) + (cross >> 32) + hi_hi;
  u64 lower = (cross << 32) | (u32)lo_lo;
  return lower ^ upper;
}

static inline u64 avalanche(u64 h) {
  h ^= h >> 37;
  h *= PRIME_MX1;
  return h ^ (h >> 32);
}

static u64 merge(const u64 acc[8], const u8 *key, u64 start) {
  u64 r = start;
  for (int i = 0; i < 4; i++) {
    r += fold64(acc[2 * i] ^ read64(key + 16 * i), acc[2 * i + 1] ^ read64(key + 16 * i + 8));
  }
  return avalanche(r);
}

static void store_be64(u8 *out, u64 v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (u8)v;
    v >>= 8;
  }
}

static void hash_long(const u8 *input, u32 len, u8 *out) {
  v128_t acc[4] = {
    wasm_u64x2_make(PRIME32_3, PRIME64_1),
    wasm_u64x2_make(PRIME64_2, PRIME64_3),
    wasm_u64x2_make(PRIME64_4, PRIME32_2),
    wasm_u64x2_make(PRIME64_5, PRIME32_1),
  };
  u32 blocks = (len - 1) / BLOCK;
  for (u32 b = 0; b < blocks; b++) {
    const u8 *block = input + (size_t)b * BLOCK;
    for (u32 s = 0; s < STRIPES_PER_BLOCK; s++) accumulate(acc, block + s * STRIPE, SECRET + s * 8);
    scramble(acc, SECRET + SECRET_SIZE - STRIPE);
  }
  const u8 *last = input + (size_t)blocks * BLOCK;
  u32 stripes = ((len - 1) - blocks * BLOCK) / STRIPE;
  for (u32 s = 0; s < stripes; s++) accumulate(acc, last + s * STRIPE, SECRET + s * 8);
  accumulate(acc, input + len - STRIPE, SECRET + SECRET_SIZE - STRIPE - 7);

  u64 a[8];
  for (int i = 0; i < 4; i++) {
    a[2 * i] = wasm_u64x2_extract_lane(acc[i], 0);
    a[2 * i + 1] = wasm_u64x2_extract_lane(acc[i], 1);
  }
  u64 low = merge(a, SECRET + 11, (u64)len * PRIME64_1);
  u64 high = merge(a, SECRET + SECRET_SIZE - 64 - 11, ~((u64)len * PRIME64_2));
  store_be64(out, high);
  store_be64(out + 8, low);
}

extern u8 __heap_base;

/* Where the caller may place inputs and outputs: everything from here on is free. */
__attribute__((export_name("heap_base"))) u32 heap_base(void) {
  return ((u32)(uintptr_t)&__heap_base + 15) & ~15U;
}

static u32 CRC_TABLE[8][256];

/* The braid tables: BRAID[k][b] is byte b, found at byte k of a word, carried over the
 * BRAIDS * 8 bytes that one step of the braided loop covers (zlib's crc32.c, "braid()"). */
#define BRAIDS 4
static u32 BRAID[8][256];

/* a * b modulo the polynomial, both reflected. */
static u32 multmodp(u32 a, u32 b) {
  u32 m = 1U << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = b & 1 ? (b >> 1) ^ 0x82F63B78U : b >> 1;
  }
  return p;
}

/* x^(8 * n) modulo the polynomial, reflected. */
static u32 x8nmodp(u32 n) {
  u32 p = 1U << 31; /* x^0 */
  u32 x8 = 1U << 23; /* x^8 */
  while (n) {
    if (n & 1) p = multmodp(x8, p);
    x8 = multmodp(x8, x8);
    n >>= 1;
  }
  return p;
}

__attribute__((export_name("crc32c_init"))) void crc32c_init(void) {
  for (u32 i = 0; i < 256; i++) {
    u32 crc = i;
    for (int j = 0; j < 8; j++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78U : crc >> 1;
    CRC_TABLE[0][i] = crc;
  }
  for (u32 i = 0; i < 256; i++) {
    for (int k = 1; k < 8; k++) {
      u32 prev = CRC_TABLE[k - 1][i];
      CRC_TABLE[k][i] = (prev >> 8) ^ CRC_TABLE[0][prev & 0xff];
    }
  }
  for (int k = 0; k < 8; k++) {
    u32 shift = x8nmodp(BRAIDS * 8 + 3 - k);
    BRAID[k][0] = 0;
    for (u32 i = 1; i < 256; i++) BRAID[k][i] = multmodp(i << 24, shift);
  }
}

/* One 64-bit word through the byte table (the end of the braided loop). */
static inline u32 crc_word(u64 data) {
  for (int k = 0; k < 8; k++) data = (data >> 8) ^ CRC_TABLE[0][data & 0xff];
  return (u32)data;
}

__attribute__((export_name("crc32c_update"))) u32 crc32c_update(u32 crc, u32 input, u32 length) {
  const u8 *p = (const u8 *)(uintptr_t)input;
  crc = ~crc;
  while (length > 0 && ((uintptr_t)p & 7) != 0) {
    crc = (crc >> 8) ^ CRC_TABLE[0][(crc ^ *p++) & 0xff];
    length--;
  }
  /* Braided: BRAIDS independent CRCs over interleaved words, so that the table look-ups of one
   * do not wait for another's (about 1.5x slicing by 8 alone here), combined in the last step. */
  u32 steps = length / (BRAIDS * 8);
  if (steps > 1) {
    length -= steps * BRAIDS * 8;
    u64 c[BRAIDS] = {crc};
    while (--steps) {
      u64 w[BRAIDS];
      for (int j = 0; j < BRAIDS; j++) w[j] = c[j] ^ read64(p + 8 * j);
      p += BRAIDS * 8;
      for (int j = 0; j < BRAIDS; j++) c[j] = BRAID[0][w[j] & 0xff];
      for (int k = 1; k < 8; k++) {
        for (int j = 0; j < BRAIDS; j++) c[j] ^= BRAID[k][(w[j] >> (k << 3)) & 0xff];
      }
    }
    u32 combined = 0;
    for (int j = 0; j < BRAIDS; j++) combined = crc_word(c[j] ^ read64(p + 8 * j) ^ combined);
    p += BRAIDS * 8;
    crc = combined;
  }
  while (length >= 8) {
    u64 v = read64(p) ^ crc;
    crc = CRC_TABLE[7][v & 0xff] ^ CRC_TABLE[6][(v >> 8) & 0xff] ^
          CRC_TABLE[5][(v >> 16) & 0xff] ^ CRC_TABLE[4][(v >> 24) & 0xff] ^
          CRC_TABLE[3][(v >> 32) & 0xff] ^ CRC_TABLE[2][(v >> 40) & 0xff] ^
          CRC_TABLE[1][(v >> 48) & 0xff] ^ CRC_TABLE[0][v >> 56];
    p += 8;
    length -= 8;
  }
  while (length-- > 0) crc = (crc >> 8) ^ CRC_TABLE[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

/* True when all `size` bytes at `p` (16-byte aligned, `size` a multiple of 64) are zero. */
static int all_zero(const u8 *p, u32 size) {
  for (u32 i = 0; i < size; i += 64) {
    v128_t a = wasm_v128_or(wasm_v128_load(p + i), wasm_v128_load(p + i + 16));
    v128_t b = wasm_v128_or(wasm_v128_load(p + i + 32), wasm_v128_load(p + i + 48));
    if (wasm_v128_any_true(wasm_v128_or(a, b))) return 0;
  }
  return 1;
}

/* For each of `count` pages of `size` bytes from `input` (16-byte aligned, `size` a multiple of
 * 64 and more than 240): zero[i] = 1 when page i is all zero bytes, else 0 and its XXH3-128 at
 * out + 16 * i (what the content digest needs of a page, FORMAT.md §10). */
__attribute__((export_name("digest_pages"))) void digest_pages(u32 input, u32 size, u32 count,
                                                              u32 zero, u32 out) {
  if (size <= 240 || (size & 63) != 0 || (input & 15) != 0) __builtin_trap();
  for (u32 i = 0; i < count; i++) {
    const u8 *page = (const u8 *)(uintptr_t)input + (size_t)i * size;
    u8 z = (u8)all_zero(page, size);
    ((u8 *)(uintptr_t)zero)[i] = z;
    if (!z) hash_long(page, size, (u8 *)(uintptr_t)out + (size_t)i * 16);
  }
}

__attribute__((export_name("hash_pages"))) void hash_pages(u32 input, u32 size, u32 count,
                                                          u32 out) {
  if (size <= 240) __builtin_trap();
  for (u32 i = 0; i < count; i++) {
    hash_long((const u8 *)(uintptr_t)input + (size_t)i * size, size,
              (u8 *)(uintptr_t)out + (size_t)i * 16);
  }
}
