/* float_text.cc: exact texts for the cases that matter (zeros, the ends of
 * the ranges, denormals, where the layout switches to an exponent, the
 * specials), then a million pseudo-random bit patterns of each width that
 * must read back bitwise through strtod/strtof as JSON numbers, and on a
 * sample, that no shorter %.Ng text would have read back. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "float_text.h"
#include "harness.h"

#define ROUNDS 1000000
/* the shortest check tries every shorter precision: a sample is enough */
#define SHORTEST_EVERY 50

static uint64_t xorshift(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static int double_is(double d, const char *want) {
  char out[SS_DOUBLE_TEXT_SIZE];
  int n = ss_format_double(out, sizeof out, d);
  int ok = strcmp(out, want) == 0 && n == (int)strlen(want);
  if (!ok) printf("  format_double(%.17g) = %s (%d), want %s\n", d, out, n, want);
  return ok;
}

static int float32_is(float f, const char *want) {
  char out[SS_FLOAT32_TEXT_SIZE];
  int n = ss_format_float32(out, sizeof out, f);
  int ok = strcmp(out, want) == 0 && n == (int)strlen(want);
  if (!ok) printf("  format_float32(%.9g) = %s (%d), want %s\n", (double)f, out, n, want);
  return ok;
}

static float float_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* RFC 8259: -? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)? */
static int is_json_number(const char *s) {
  if (*s == '-') s++;
  if (*s == '0') s++;
  else if (*s >= '1' && *s <= '9') while (*s >= '0' && *s <= '9') s++;
  else return 0;
  if (*s == '.') {
    if (!(*++s >= '0' && *s <= '9')) return 0;
    while (*s >= '0' && *s <= '9') s++;
  }
  if (*s == 'e' || *s == 'E') {
    s++;
    if (*s == '+' || *s == '-') s++;
    if (!(*s >= '0' && *s <= '9')) return 0;
    while (*s >= '0' && *s <= '9') s++;
  }
  return *s == '\0';
}

/* significant digits of a finite text: leading and trailing zeros of the
 * mantissa carry no information */
static int significant_digits(const char *s) {
  char digits[32];
  int n = 0, first = 0;
  for (; *s && *s != 'e'; s++)
    if (*s >= '0' && *s <= '9') digits[n++] = *s;
  while (first < n && digits[first] == '0') first++;
  while (n > first && digits[n - 1] == '0') n--;
  return n - first;
}

static void test_double_cases(void) {
  CHECK(double_is(0.0, "0"));
  CHECK(double_is(-0.0, "-0"));
  CHECK(double_is(1.0, "1"));
  CHECK(double_is(-1.5, "-1.5"));
  CHECK(double_is(0.1, "0.1"));
  CHECK(double_is(1.0 / 3, "0.3333333333333333"));
  CHECK(double_is(0.1 + 0.2, "0.30000000000000004"));
  /* float8out's layout: plain from 1e-4 up to below 1e15 */
  CHECK(double_is(0.0001, "0.0001"));
  CHECK(double_is(0.00001, "1e-05"));
  CHECK(double_is(1e-7, "1e-07"));
  CHECK(double_is(123456789012345.0, "123456789012345"));
  CHECK(double_is(1e15, "1e+15"));
  CHECK(double_is(9007199254740993.0, "9.007199254740992e+15"));
  CHECK(double_is(1e21, "1e+21"));
  CHECK(double_is(1e300, "1e+300"));
  CHECK(double_is(-1.5e200, "-1.5e+200"));
  CHECK(double_is(5e-324, "5e-324"));
  CHECK(double_is(DBL_MIN, "2.2250738585072014e-308"));
  CHECK(double_is(DBL_MAX, "1.7976931348623157e+308"));
  CHECK(double_is(-DBL_MAX, "-1.7976931348623157e+308"));
  CHECK(double_is(NAN, "NaN"));
  CHECK(double_is(INFINITY, "Infinity"));
  CHECK(double_is(-INFINITY, "-Infinity"));
}

static void test_float32_cases(void) {
  CHECK(float32_is(0.0f, "0"));
  CHECK(float32_is(-0.0f, "-0"));
  CHECK(float32_is(1.0f, "1"));
  CHECK(float32_is(0.1f, "0.1"));
  CHECK(float32_is(-0.5f, "-0.5"));
  CHECK(float32_is(1.0f / 3, "0.33333334"));
  CHECK(float32_is(16777217.0f, "16777216"));
  CHECK(float32_is(1e-5f, "1e-05"));
  CHECK(float32_is(1e15f, "1e+15"));
  CHECK(float32_is(FLT_MIN, "1.1754944e-38"));
  CHECK(float32_is(FLT_MAX, "3.4028235e+38"));
  /* denormals: the smallest, the largest, one between */
  CHECK(float32_is(float_from_bits(0x00000001), "1e-45"));
  CHECK(float32_is(float_from_bits(0x007fffff), "1.1754942e-38"));
  CHECK(float32_is(float_from_bits(0x00012345), "1.04488e-40"));
  CHECK(float32_is(float_from_bits(0x80000001), "-1e-45"));
  /* as long as a float32 text gets: SS_FLOAT32_TEXT_SIZE */
  CHECK(float32_is(-999999940000000.0f, "-999999900000000"));
  CHECK(float32_is(NAN, "NaN"));
  CHECK(float32_is(INFINITY, "Infinity"));
  CHECK(float32_is(-INFINITY, "-Infinity"));
}

/* like snprintf: cut to the buffer, the full length returned */
static void test_small_buffers(void) {
  char out[8];
  memset(out, 'x', sizeof out);
  CHECK(ss_format_double(out, 4, 0.125) == 5 && strcmp(out, "0.1") == 0);
  CHECK(ss_format_double(out, 1, 0.125) == 5 && out[0] == '\0');
  out[0] = 'x';
  CHECK(ss_format_double(NULL, 0, 0.125) == 5);
  CHECK(ss_format_float32(out, 3, 0.25f) == 4 && strcmp(out, "0.") == 0);
  CHECK(ss_format_float32(NULL, 0, -INFINITY) == 9);
}

static void test_double_round_trips(void) {
  uint64_t s = 0x9E3779B97F4A7C15ULL;
  long bad_back = 0, bad_json = 0, too_long = 0, not_shortest = 0, sampled = 0;
  int i;
  for (i = 0; i < ROUNDS; i++) {
    uint64_t bits = xorshift(&s), back_bits;
    char out[SS_DOUBLE_TEXT_SIZE + 8];
    double d, back;
    int n;
    memcpy(&d, &bits, sizeof d);
    if (isnan(d)) continue;
    n = ss_format_double(out, sizeof out, d);
    too_long += n >= SS_DOUBLE_TEXT_SIZE;
    back = strtod(out, NULL);
    memcpy(&back_bits, &back, sizeof back);
    if (back_bits != bits && bad_back++ < 5) printf("  %016llx -> %s\n", (unsigned long long)bits, out);
    if (isinf(d)) continue;
    if (!is_json_number(out) && bad_json++ < 5) printf("  not JSON: %s\n", out);
    if (i % SHORTEST_EVERY == 0) {
      int digits = significant_digits(out), p;
      sampled++;
      /* p < 18 holds anyway; it tells GCC that %.*g fits */
      for (p = 1; p < digits && p < 18; p++) {
        char shorter[40];
        snprintf(shorter, sizeof shorter, "%.*g", p, d);
        if (strtod(shorter, NULL) == d) {
          if (not_shortest++ < 5) printf("  %s, yet %s reads back\n", out, shorter);
          break;
        }
      }
    }
  }
  printf("  doubles: %d bit patterns, %ld checked for shortest\n", ROUNDS, sampled);
  CHECK(bad_back == 0);
  CHECK(bad_json == 0);
  CHECK(too_long == 0);
  CHECK(not_shortest == 0);
}

static void test_float32_round_trips(void) {
  uint64_t s = 0x2545F4914F6CDD1DULL;
  long bad_back = 0, bad_json = 0, too_long = 0, not_shortest = 0, sampled = 0;
  int i;
  for (i = 0; i < ROUNDS; i++) {
    uint32_t bits = (uint32_t)(xorshift(&s) >> 32), back_bits;
    char out[SS_FLOAT32_TEXT_SIZE + 8];
    float f = float_from_bits(bits), back;
    int n;
    if (isnan(f)) continue;
    n = ss_format_float32(out, sizeof out, f);
    too_long += n >= SS_FLOAT32_TEXT_SIZE;
    back = strtof(out, NULL);
    memcpy(&back_bits, &back, sizeof back);
    if (back_bits != bits && bad_back++ < 5) printf("  %08x -> %s\n", (unsigned)bits, out);
    if (isinf(f)) continue;
    if (!is_json_number(out) && bad_json++ < 5) printf("  not JSON: %s\n", out);
    if (i % SHORTEST_EVERY == 0) {
      int digits = significant_digits(out), p;
      sampled++;
      for (p = 1; p < digits && p < 18; p++) {
        char shorter[40];
        snprintf(shorter, sizeof shorter, "%.*g", p, (double)f);
        if (strtof(shorter, NULL) == f) {
          if (not_shortest++ < 5) printf("  %s, yet %s reads back\n", out, shorter);
          break;
        }
      }
    }
  }
  printf("  float32: %d bit patterns, %ld checked for shortest\n", ROUNDS, sampled);
  CHECK(bad_back == 0);
  CHECK(bad_json == 0);
  CHECK(too_long == 0);
  CHECK(not_shortest == 0);
}

int main(void) {
  test_double_cases();
  test_float32_cases();
  test_small_buffers();
  test_double_round_trips();
  test_float32_round_trips();
  DONE();
}
