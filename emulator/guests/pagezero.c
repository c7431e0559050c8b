/*
 * pagezero: fills pages and zeroes them again, the workload of the incremental-snapshot tests
 * (a diff must carry a page that became zero as an explicit zero record).
 *
 * Over a working set of PAGEZERO_PAGES pages of the heap, round r (1, 2, ...) fills every page
 * whose number is not a multiple of (r % 3) + 2 with a pattern of r and the page number, and
 * zeroes (memset) the others, so from one round to the next some pages become zero, some
 * become non-zero again and some only change. After each round it prints the round's checksum
 * of the working set; after PAGEZERO_ROUNDS rounds it exits 0. Everything printed is a function
 * of the round, so a run restored from any snapshot prints what an uninterrupted run does.
 */
#include "runtime.h"

#define PAGEZERO_PAGES 96u
#define PAGEZERO_ROUNDS 40u
#define PAGE_WORDS 1024u

static uint32_t checksum_words(const uint32_t *p, uint32_t words) {
  uint32_t h = 0x811c9dc5u;
  for (uint32_t i = 0; i < words; i++) h = (h ^ p[i]) * 0x01000193u;
  return h;
}

int main(void) {
  uint32_t *mem = (uint32_t *)(((uintptr_t)__heap_start + 4095u) & ~(uintptr_t)4095u);
  printf("pagezero: %u pages at %p, %u rounds\n", PAGEZERO_PAGES, mem, PAGEZERO_ROUNDS);
  for (uint32_t round = 1; round <= PAGEZERO_ROUNDS; round++) {
    uint32_t every = round % 3 + 2;
    for (uint32_t page = 0; page < PAGEZERO_PAGES; page++) {
      uint32_t *p = mem + page * PAGE_WORDS;
      if (page % every == 0) {
        memset(p, 0, PAGE_WORDS * 4);
        continue;
      }
      for (uint32_t i = 0; i < PAGE_WORDS; i++) p[i] = (round << 20) ^ (page << 10) ^ i;
    }
    printf("round %02u sum 0x%08x\n", round, checksum_words(mem, PAGEZERO_PAGES * PAGE_WORDS));
  }
  printf("pagezero: done\n");
  return 0;
}
