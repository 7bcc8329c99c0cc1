#include "float_text.h"

#include <string.h>

#include <double-conversion/double-conversion.h>

using double_conversion::DoubleToStringConverter;
using double_conversion::StringBuilder;

namespace {

bool shortest(const DoubleToStringConverter &c, double d, StringBuilder *b) { return c.ToShortest(d, b); }
bool shortest(const DoubleToStringConverter &c, float f, StringBuilder *b) { return c.ToShortestSingle(f, b); }

/* The builder asserts rather than truncates, so it gets room for the
 * longest text and the caller's buffer receives a copy cut to its size.
 * double-conversion throws nothing and allocates nothing; with NaN and
 * infinity symbols given, ToShortest cannot fail. */
template <typename T, int text_size>
int format_shortest(char *out, size_t size, T value) {
  /* On the stack, not static: GCC would construct a static one with a
   * load-time initializer, and this one is only nine stores. */
  const DoubleToStringConverter converter(DoubleToStringConverter::EMIT_POSITIVE_EXPONENT_SIGN, "Infinity", "NaN",
                                          'e', -4, 15, /* float8out's switch to an exponent */
                                          0, 0,        /* precision mode, unused */
                                          2);          /* float8out's "1e-07", not "1e-7" */
  char text[text_size];
  StringBuilder b(text, text_size);
  shortest(converter, value, &b);
  int len = b.position();
  b.Finalize();
  if (size) {
    size_t n = (size_t)len < size ? (size_t)len : size - 1;
    memcpy(out, text, n);
    out[n] = '\0';
  }
  return len;
}

} // namespace

extern "C" int ss_format_double(char *out, size_t size, double d) {
  return format_shortest<double, SS_DOUBLE_TEXT_SIZE>(out, size, d);
}

extern "C" int ss_format_float32(char *out, size_t size, float f) {
  return format_shortest<float, SS_FLOAT32_TEXT_SIZE>(out, size, f);
}
