/* The memory functions clang may call even in freestanding code. Word-at-a-time when aligned. */
#include "runtime.h"

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = dst;
  uint8_t b = (uint8_t)c;
  while (n > 0 && ((uintptr_t)d & 3) != 0) {
    *d++ = b;
    n--;
  }
  uint32_t w = b * 0x01010101u;
  while (n >= 4) {
    /* volatile keeps clang from turning this loop back into a call to memset */
    *(volatile uint32_t *)d = w;
    d += 4;
    n -= 4;
  }
  while (n > 0) {
    *(volatile uint8_t *)d++ = b;
    n--;
  }
  return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  if ((((uintptr_t)d | (uintptr_t)s) & 3) == 0) {
    while (n >= 4) {
      *(volatile uint32_t *)d = *(const uint32_t *)s;
      d += 4;
      s += 4;
      n -= 4;
    }
  }
  while (n > 0) {
    *(volatile uint8_t *)d++ = *s++;
    n--;
  }
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  if (d <= s || d >= s + n) return memcpy(dst, src, n);
  while (n > 0) {
    n--;
    *(volatile uint8_t *)(d + n) = s[n];
  }
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a;
  const uint8_t *y = b;
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}
