#include "float_text.h"

#include <string.h>

#include <double-conversion/double-conversion.h>

using double_conversion::DoubleToStringConverter;

namespace {

/* The layout of PostgreSQL's float8out, written here from the digits
 * double-conversion finds (DoubleToAscii): the converter class would lay
 * them out the same way, but through a StringBuilder and a copy that cost
 * a tenth of the time of a vector of floats. v = 0.DIGITS x 10^point. */
int lay_out(char *out, size_t size, bool negative, const char *digits, int len, int point) {
  char buffer[40];
  /* straight into out when it has room for any text, as a vector's
   * numbers are written: no copy */
  char *text = size > sizeof buffer ? out : buffer;
  int n = 0, e = point - 1, i;
  if (negative) text[n++] = '-';
  if (e >= -4 && e < 15) {
    if (point <= 0) {
      text[n++] = '0';
      text[n++] = '.';
      for (i = point; i < 0; i++) text[n++] = '0';
      memcpy(text + n, digits, (size_t)len);
      n += len;
    } else if (point >= len) {
      memcpy(text + n, digits, (size_t)len);
      n += len;
      for (i = len; i < point; i++) text[n++] = '0';
    } else {
      memcpy(text + n, digits, (size_t)point);
      n += point;
      text[n++] = '.';
      memcpy(text + n, digits + point, (size_t)(len - point));
      n += len - point;
    }
  } else {
    text[n++] = digits[0];
    if (len > 1) {
      text[n++] = '.';
      memcpy(text + n, digits + 1, (size_t)(len - 1));
      n += len - 1;
    }
    text[n++] = 'e';
    text[n++] = e < 0 ? '-' : '+';
    if (e < 0) e = -e;
    if (e >= 100) text[n++] = (char)('0' + e / 100);
    text[n++] = (char)('0' + e / 10 % 10);
    text[n++] = (char)('0' + e % 10);
  }
  if (text == out) {
    out[n] = '\0';
  } else if (size) {
    size_t copy = (size_t)n < size ? (size_t)n : size - 1;
    memcpy(out, text, copy);
    out[copy] = '\0';
  }
  return n;
}

/* NaN and infinities as PostgreSQL spells them, which JSON has no form for. */
int special(char *out, size_t size, double d) {
  const char *t = d != d ? "NaN" : d > 0 ? "Infinity" : "-Infinity";
  size_t n = strlen(t), copy = n < size ? n : (size ? size - 1 : 0);
  if (size) {
    memcpy(out, t, copy);
    out[copy] = '\0';
  }
  return (int)n;
}

int format_shortest(char *out, size_t size, double value, DoubleToStringConverter::DtoaMode mode) {
  char digits[DoubleToStringConverter::kBase10MaximalLength + 1];
  bool negative;
  int len, point;
  if (value != value || value - value != 0) return special(out, size, value);
  DoubleToStringConverter::DoubleToAscii(value, mode, 0, digits, sizeof digits, &negative, &len, &point);
  return lay_out(out, size, negative, digits, len, point);
}

} // namespace

extern "C" int ss_format_double(char *out, size_t size, double d) {
  return format_shortest(out, size, d, DoubleToStringConverter::SHORTEST);
}

extern "C" int ss_format_float32(char *out, size_t size, float f) {
  return format_shortest(out, size, f, DoubleToStringConverter::SHORTEST_SINGLE);
}
