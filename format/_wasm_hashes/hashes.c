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
 * tables ("slicing by 8"). crc32c_update(crc, input, length) continues `crc` (0 to start) over
 * `length` bytes, with the initial and final inversion applied, so that
 * crc32c_update(crc32c_update(0, a), b) is the CRC32C of a followed by b.
 *
 * Both are checked against hash-wasm in format/checksum_test.ts.
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
}

__attribute__((export_name("crc32c_update"))) u32 crc32c_update(u32 crc, u32 input, u32 length) {
  const u8 *p = (const u8 *)(uintptr_t)input;
  crc = ~crc;
  while (length > 0 && ((uintptr_t)p & 7) != 0) {
    crc = (crc >> 8) ^ CRC_TABLE[0][(crc ^ *p++) & 0xff];
    length--;
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

__attribute__((export_name("hash_pages"))) void hash_pages(u32 input, u32 size, u32 count,
                                                          u32 out) {
  if (size <= 240) __builtin_trap();
  for (u32 i = 0; i < count; i++) {
    hash_long((const u8 *)(uintptr_t)input + (size_t)i * size, size,
              (u8 *)(uintptr_t)out + (size_t)i * 16);
  }
}
