/*
 * kvstore: an in-memory key-value store (open addressing, linear probing, tombstones) fed a
 * deterministic stream of put/get/delete requests. The hash table is large (64 MiB by default)
 * and keys hash uniformly, so the workload touches pages all over RAM the way a real cache
 * server does: the large-footprint workload for live-snapshot tests and benchmarks.
 *
 * Every value is a pure function of (key, version), so each get verifies what it reads: a page
 * that a snapshot/restore lost or corrupted shows up as "corrupt value" and exit status 4.
 *
 * Configured through `kvstore_config` at 0x8000_0040 (layout below), like memstress.
 * Exit status: 0 done, 2 bad magic or version, 3 bad parameter, 4 corrupt value, 5 table full.
 */
#include "runtime.h"

#define KVSTORE_MAGIC 0x5453564bu /* the bytes "KVST" */
#define KVSTORE_VERSION 1

/* NOTICE: tests patch this layout by offset; change it only with a version bump. */
struct kvstore_config {
  uint32_t magic;        /* +0  KVSTORE_MAGIC */
  uint32_t version;      /* +4  KVSTORE_VERSION */
  uint32_t table_log2;   /* +8  the table has 2^table_log2 slots of 32 bytes (4..25) */
  uint32_t key_space;    /* +12 keys are 1..key_space (at most 3/4 of the slots) */
  uint32_t requests;     /* +16 requests to serve */
  uint32_t report_every; /* +20 print a progress line every this many requests (0: never) */
  uint32_t seed;         /* +24 PRNG seed (0 is replaced by 1) */
  uint32_t reserved;     /* +28 0 */
};
_Static_assert(sizeof(struct kvstore_config) == 32, "kvstore_config is 32 bytes");

__attribute__((section(".guest_config"), used)) volatile struct kvstore_config kvstore_config = {
    .magic = KVSTORE_MAGIC,
    .version = KVSTORE_VERSION,
    .table_log2 = 21,
    .key_space = 1u << 18,
    .requests = 1u << 20,
    .report_every = 1u << 17,
    .seed = 7,
    .reserved = 0,
};

#define EMPTY 0u
#define TOMBSTONE 0xffffffffu
#define VALUE_WORDS 6

struct slot {
  uint32_t key;
  uint32_t version;
  uint32_t value[VALUE_WORDS];
};
_Static_assert(sizeof(struct slot) == 32, "a slot is 32 bytes");

static struct slot *table;
static uint32_t mask, shift;

static inline uint32_t xorshift32(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static inline uint32_t value_word(uint32_t key, uint32_t version, uint32_t i) {
  uint32_t h = key * 0x9e3779b1u ^ version * 0x85ebca77u ^ (i + 1) * 0xc2b2ae3du;
  h ^= h >> 15;
  h *= 0x2c1b3c6du;
  h ^= h >> 12;
  return h;
}

/* The slot holding key, or (if absent) the slot a put should use: the first tombstone on the
 * probe path, else the empty slot that ended it. *found tells which. NULL if the table is full. */
static struct slot *lookup(uint32_t key, int *found) {
  uint32_t i = (key * 0x9e3779b1u) >> shift; /* Fibonacci hashing */
  struct slot *reuse = 0;
  for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
    struct slot *s = &table[i];
    if (s->key == key) {
      *found = 1;
      return s;
    }
    if (s->key == EMPTY) {
      *found = 0;
      return reuse ? reuse : s;
    }
    if (s->key == TOMBSTONE && !reuse) reuse = s;
  }
  *found = 0;
  return reuse;
}

int main(void) {
  struct kvstore_config c = {
      .magic = kvstore_config.magic,
      .version = kvstore_config.version,
      .table_log2 = kvstore_config.table_log2,
      .key_space = kvstore_config.key_space,
      .requests = kvstore_config.requests,
      .report_every = kvstore_config.report_every,
      .seed = kvstore_config.seed,
  };
  if (c.magic != KVSTORE_MAGIC || c.version != KVSTORE_VERSION) {
    printf("kvstore: Cannot start: config at %p has magic 0x%08x version %u, expected 0x%08x "
           "version %u\n",
           &kvstore_config, c.magic, c.version, KVSTORE_MAGIC, KVSTORE_VERSION);
    return 2;
  }
  uint32_t base = (uint32_t)(uintptr_t)__heap_start;
  uint32_t limit = heap_limit();
  if (c.table_log2 < 4 || c.table_log2 > 25) {
    printf("kvstore: Cannot start: table_log2 %u is outside 4..25\n", c.table_log2);
    return 3;
  }
  uint32_t slots = 1u << c.table_log2;
  uint32_t bytes = slots * (uint32_t)sizeof(struct slot);
  if (bytes > 0u - base || (limit != 0 && bytes > limit - base)) {
    printf("kvstore: Cannot start: a table of %u bytes does not fit between 0x%08x and 0x%08x\n",
           bytes, base, limit);
    return 3;
  }
  if (c.key_space == 0 || c.key_space > slots / 4 * 3) {
    printf("kvstore: Cannot start: key_space %u must be 1..%u (3/4 of %u slots)\n", c.key_space,
           slots / 4 * 3, slots);
    return 3;
  }

  printf("kvstore: %u slots (%u KiB) at 0x%08x, keys 1..%u, %u requests, seed %u\n", slots,
         bytes >> 10, base, c.key_space, c.requests, c.seed);

  /* The table starts as zeros (EMPTY): fresh RAM is zero on QEMU and in livesnap's emulator. */
  table = (struct slot *)(uintptr_t)base;
  mask = slots - 1;
  shift = 32 - c.table_log2;

  uint32_t state = c.seed != 0 ? c.seed : 1;
  uint32_t sum = 0;
  uint32_t live = 0;
  uint32_t puts = 0, hits = 0, misses = 0, deletes = 0;
  for (uint32_t r = 1; r <= c.requests; r++) {
    uint32_t op = xorshift32(&state) >> 24;
    uint32_t key = 1 + (uint32_t)(((uint64_t)xorshift32(&state) * c.key_space) >> 32);
    int found;
    struct slot *s = lookup(key, &found);
    if (s == 0) {
      printf("kvstore: Cannot serve request %u: the table is full (%u live keys)\n", r, live);
      return 5;
    }
    if (op < 128) { /* put, 50% */
      uint32_t version = found ? s->version + 1 : 1;
      if (!found) live++;
      s->key = key;
      s->version = version;
      for (uint32_t i = 0; i < VALUE_WORDS; i++) s->value[i] = value_word(key, version, i);
      sum = ((sum << 3) | (sum >> 29)) ^ (key + version);
      puts++;
    } else if (op < 230) { /* get, 40% */
      if (found) {
        for (uint32_t i = 0; i < VALUE_WORDS; i++) {
          uint32_t want = value_word(key, s->version, i);
          if (s->value[i] != want) {
            printf("kvstore: corrupt value: request %u key %u version %u word %u at %p is "
                   "0x%08x, expected 0x%08x\n",
                   r, key, s->version, i, &s->value[i], s->value[i], want);
            return 4;
          }
          sum = ((sum << 3) | (sum >> 29)) ^ s->value[i];
        }
        hits++;
      } else {
        sum = ((sum << 3) | (sum >> 29)) ^ ~key;
        misses++;
      }
    } else if (found) { /* delete, 10% */
      s->key = TOMBSTONE;
      live--;
      deletes++;
    }
    if (c.report_every != 0 && r % c.report_every == 0) {
      printf("req %08u live %07u sum 0x%08x\n", r, live, sum);
    }
  }

  uint32_t digest = 0x811c9dc5u, counted = 0, tombstones = 0;
  for (uint32_t i = 0; i <= mask; i++) {
    uint32_t key = table[i].key;
    if (key == TOMBSTONE) {
      tombstones++;
    } else if (key != EMPTY) {
      counted++;
      digest = (digest ^ i) * 0x01000193u;
      digest = (digest ^ key) * 0x01000193u;
      digest = (digest ^ table[i].version) * 0x01000193u;
    }
  }
  printf("kvstore: done: %u puts, %u hits, %u misses, %u deletes; %u live keys, %u tombstones, "
         "table digest 0x%08x, sum 0x%08x\n",
         puts, hits, misses, deletes, counted, tombstones, digest, sum);
  if (counted != live) {
    printf("kvstore: corrupt table: counted %u live keys, expected %u\n", counted, live);
    return 4;
  }
  return 0;
}
