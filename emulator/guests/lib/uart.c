/* Output through the ns16550a UART at 0x1000_0000: poll LSR.THRE, then write THR. */
#include <stdarg.h>

#include "runtime.h"

#define UART_THR 0
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void uart_putc(char c) {
  volatile uint8_t *uart = (volatile uint8_t *)(uintptr_t)UART0_BASE;
  while ((uart[UART_LSR] & UART_LSR_THRE) == 0) {
  }
  uart[UART_THR] = (uint8_t)c;
}

void print(const char *s) {
  while (*s) uart_putc(*s++);
}

static void print_padded(const char *digits, int len, int width, char pad) {
  for (int i = len; i < width; i++) uart_putc(pad);
  for (int i = len - 1; i >= 0; i--) uart_putc(digits[i]);
}

static void print_unsigned(uint32_t v, uint32_t base, int upper, int width, char pad) {
  const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char buf[12];
  int n = 0;
  do {
    buf[n++] = set[v % base];
    v /= base;
  } while (v != 0);
  print_padded(buf, n, width, pad);
}

static void print_hex64(uint64_t v, int upper, int width, char pad) {
  const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char buf[16];
  int n = 0;
  do {
    buf[n++] = set[(uint32_t)v & 0xf];
    v >>= 4;
  } while (v != 0);
  print_padded(buf, n, width, pad);
}

void print_hex32(uint32_t v) {
  print("0x");
  print_unsigned(v, 16, 0, 8, '0');
}

void print_u32(uint32_t v) { print_unsigned(v, 10, 0, 0, ' '); }

void printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  for (const char *p = fmt; *p; p++) {
    if (*p != '%') {
      uart_putc(*p);
      continue;
    }
    p++;
    char pad = ' ';
    int width = 0;
    int longlong = 0;
    int left = 0;
    if (*p == '-') {
      left = 1;
      p++;
    } else if (*p == '0') {
      pad = '0';
      p++;
    }
    while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
    if (p[0] == 'l' && p[1] == 'l') {
      longlong = 1;
      p += 2;
    }
    switch (*p) {
      case 's': {
        const char *s = va_arg(ap, const char *);
        int len = 0;
        while (s[len]) len++;
        if (!left) for (int i = len; i < width; i++) uart_putc(' ');
        print(s);
        if (left) for (int i = len; i < width; i++) uart_putc(' ');
        break;
      }
      case 'c':
        uart_putc((char)va_arg(ap, int));
        break;
      case 'd': {
        int32_t v = va_arg(ap, int32_t);
        if (v < 0) {
          uart_putc('-');
          print_unsigned(0u - (uint32_t)v, 10, 0, width > 0 ? width - 1 : 0, pad);
        } else {
          print_unsigned((uint32_t)v, 10, 0, width, pad);
        }
        break;
      }
      case 'u':
        print_unsigned(va_arg(ap, uint32_t), 10, 0, width, pad);
        break;
      case 'x':
      case 'X':
        if (longlong) {
          print_hex64(va_arg(ap, uint64_t), *p == 'X', width, pad);
        } else {
          print_unsigned(va_arg(ap, uint32_t), 16, *p == 'X', width, pad);
        }
        break;
      case 'p':
        print_hex32((uint32_t)(uintptr_t)va_arg(ap, void *));
        break;
      case '%':
        uart_putc('%');
        break;
      case '\0':
        p--; /* a lone '%' at the end */
        break;
      default:
        uart_putc('%');
        uart_putc(*p);
        break;
    }
  }
  va_end(ap);
}
