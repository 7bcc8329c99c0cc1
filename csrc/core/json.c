#include "json.h"

#include <stdio.h>

#include "float_text.h"

int ss_json_integer(ss_buf *b, long long v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%lld", v);
  return ss_buf_append(b, tmp, (size_t)n);
}

int ss_json_double(ss_buf *b, double d) {
  char tmp[SS_DOUBLE_TEXT_SIZE];
  int n = ss_format_double(tmp, sizeof tmp, d);
  /* "1e+20" and "3" are valid JSON numbers as they are */
  return ss_buf_append(b, tmp, (size_t)n);
}

int ss_json_float32(ss_buf *b, float f) {
  char tmp[SS_FLOAT32_TEXT_SIZE];
  int n = ss_format_float32(tmp, sizeof tmp, f);
  return ss_buf_append(b, tmp, (size_t)n);
}

int ss_utf8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str, *end = s + len;
  while (s < end) {
    unsigned c = *s, cp, need, min;
    if (c < 0x80) {
      s++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)(end - s) <= need) return 0;
    for (s++; need > 0; need--, s++) {
      if ((*s & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (*s & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  }
  return 1;
}

int ss_json_string(ss_buf *b, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t i, run = 0;
  /* worst case: every byte becomes \u00XX */
  if (len > ((size_t)-1 - 2) / 6 || ss_buf_reserve(b, len + 2)) return -1;
  b->data[b->len++] = '"';
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6];
    size_t n;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    if (ss_buf_append(b, s + run, i - run)) return -1;
    run = i + 1;
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; n = 2; break;
    case '\\': esc[1] = '\\'; n = 2; break;
    case '\n': esc[1] = 'n'; n = 2; break;
    case '\r': esc[1] = 'r'; n = 2; break;
    case '\t': esc[1] = 't'; n = 2; break;
    case '\b': esc[1] = 'b'; n = 2; break;
    case '\f': esc[1] = 'f'; n = 2; break;
    default:
      esc[1] = 'u'; esc[2] = '0'; esc[3] = '0'; esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
      n = 6;
    }
    if (ss_buf_append(b, esc, n)) return -1;
  }
  if (ss_buf_append(b, s + run, len - run)) return -1;
  return ss_buf_putc(b, '"');
}
