/* hello: the smallest guest. Prints a greeting and powers off with status 0. */
#include "runtime.h"

int main(void) {
  print("Hello from livesnap's RISC-V guest!\n");
  uint32_t sum = 0;
  for (uint32_t i = 1; i <= 100; i++) sum += i * i;
  printf("hart %u: sum of squares 1..100 = %u, 1000003 / 7 = %u rem %u\n", csr_read(mhartid), sum,
         1000003u / (sum % 7 + 7), 1000003u % (sum % 7 + 7));
  print("bye\n");
  return 0;
}
