/*
 * memstress: dirties a working set at a configurable rate, the workload for live-snapshot tests
 * and benchmarks.
 *
 * Its parameters are read at start-up from `memstress_config` (struct memstress_config below),
 * which link.ld places at the fixed address 0x8000_0040; the ELF symbol table names it too.
 * Tests patch it in the ELF image or in guest RAM before the first instruction runs.
 *
 * Each round makes `writes_per_round` read-modify-write 32-bit stores into the working set (the
 * first `working_set_bytes` of the heap) and prints the round's checksum; then, after `rounds`
 * rounds, a checksum of the whole working set. The working set starts as zeros (fresh RAM is
 * zero on QEMU and in livesnap's emulator), so everything printed is a function of the config.
 *
 * Exit status: 0 done, 2 bad magic or version, 3 bad parameter.
 */
#include "runtime.h"

#define MEMSTRESS_MAGIC 0x5254534du /* the bytes "MSTR" */
#define MEMSTRESS_VERSION 1

/* NOTICE: tests patch this layout by offset; change it only with a version bump. */
struct memstress_config {
  uint32_t magic;             /* +0  MEMSTRESS_MAGIC */
  uint32_t version;           /* +4  MEMSTRESS_VERSION */
  uint32_t working_set_bytes; /* +8  a multiple of 4096, > 0 */
  uint32_t writes_per_round;  /* +12 32-bit stores per round */
  uint32_t stride_bytes;      /* +16 0: random word in the working set; else a multiple of 4:
                                      a cursor advancing by this much, wrapping around */
  uint32_t compute_per_write; /* +20 extra PRNG steps between stores (lowers the write rate) */
  uint32_t rounds;            /* +24 0 = run forever */
  uint32_t seed;              /* +28 PRNG seed (0 is replaced by 1) */
};
_Static_assert(sizeof(struct memstress_config) == 32, "memstress_config is 32 bytes");

__attribute__((section(".guest_config"), used)) volatile struct memstress_config memstress_config = {
    .magic = MEMSTRESS_MAGIC,
    .version = MEMSTRESS_VERSION,
    .working_set_bytes = 4u << 20,
    .writes_per_round = 1u << 18,
    .stride_bytes = 0,
    .compute_per_write = 0,
    .rounds = 8,
    .seed = 1,
};

static inline uint32_t xorshift32(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static uint32_t checksum_words(const uint32_t *p, uint32_t words) {
  uint32_t h = 0x811c9dc5u;
  for (uint32_t i = 0; i < words; i++) h = (h ^ p[i]) * 0x01000193u;
  return h;
}

int main(void) {
  struct memstress_config c = {
      .magic = memstress_config.magic,
      .version = memstress_config.version,
      .working_set_bytes = memstress_config.working_set_bytes,
      .writes_per_round = memstress_config.writes_per_round,
      .stride_bytes = memstress_config.stride_bytes,
      .compute_per_write = memstress_config.compute_per_write,
      .rounds = memstress_config.rounds,
      .seed = memstress_config.seed,
  };
  if (c.magic != MEMSTRESS_MAGIC || c.version != MEMSTRESS_VERSION) {
    printf("memstress: Cannot start: config at %p has magic 0x%08x version %u, expected 0x%08x "
           "version %u\n",
           &memstress_config, c.magic, c.version, MEMSTRESS_MAGIC, MEMSTRESS_VERSION);
    return 2;
  }
  uint32_t base = (uint32_t)(uintptr_t)__heap_start;
  uint32_t limit = heap_limit();
  if (c.working_set_bytes == 0 || c.working_set_bytes % 4096 != 0 ||
      c.working_set_bytes > 0u - base || (limit != 0 && c.working_set_bytes > limit - base)) {
    printf("memstress: Cannot start: working_set_bytes %u must be a non-zero multiple of 4096 "
           "that fits between 0x%08x and 0x%08x\n",
           c.working_set_bytes, base, limit);
    return 3;
  }
  if (c.stride_bytes % 4 != 0 || c.stride_bytes >= c.working_set_bytes) {
    printf("memstress: Cannot start: stride_bytes %u must be a multiple of 4 below %u\n",
           c.stride_bytes, c.working_set_bytes);
    return 3;
  }

  printf("memstress: working set %u KiB at 0x%08x, %u writes per round, stride %u, compute %u, "
         "rounds %u, seed %u\n",
         c.working_set_bytes >> 10, base, c.writes_per_round, c.stride_bytes, c.compute_per_write,
         c.rounds, c.seed);

  uint32_t *mem = (uint32_t *)(uintptr_t)base;
  uint32_t words = c.working_set_bytes / 4;
  uint32_t state = c.seed != 0 ? c.seed : 1;
  uint32_t cursor = 0; /* byte offset, used when stride_bytes != 0 */
  uint32_t compute = 0x9e3779b9u;
  uint32_t total = 0;
  for (uint32_t round = 1; c.rounds == 0 || round <= c.rounds; round++) {
    uint32_t sum = round;
    for (uint32_t i = 0; i < c.writes_per_round; i++) {
      uint32_t x = xorshift32(&state);
      for (uint32_t k = 0; k < c.compute_per_write; k++) compute += xorshift32(&compute) >> 3;
      uint32_t idx;
      if (c.stride_bytes == 0) {
        idx = (uint32_t)(((uint64_t)x * words) >> 32); /* uniform in [0, words) */
      } else {
        idx = cursor / 4;
        cursor += c.stride_bytes;
        if (cursor >= c.working_set_bytes) cursor -= c.working_set_bytes;
      }
      uint32_t v = mem[idx] * 0x9e3779b1u + (x ^ compute);
      mem[idx] = v;
      sum = ((sum << 7) | (sum >> 25)) ^ v;
    }
    total = ((total << 1) | (total >> 31)) ^ sum;
    printf("round %06u sum 0x%08x\n", round, sum);
  }
  printf("memstress: done, running checksum 0x%08x, working set checksum 0x%08x\n", total,
         checksum_words(mem, words));
  return 0;
}
