/* The core's small pieces: error records, the byte buffer, redaction. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "harness.h"
#include "json.h"
#include "redact.h"

static int redacts_to(const char *in, const char *want) {
  char out[512];
  ss_redact(in, out, sizeof out);
  if (strcmp(out, want) != 0) printf("  redact(%s) = %s, want %s\n", in, out, want);
  return strcmp(out, want) == 0;
}

static void test_error(void) {
  ss_error e;
  char small[4];
  CHECK(ss_error_set(&e, SS_ERR_POOL, "pool %s after %d s", "main", 3) == -1);
  CHECK(e.kind == SS_ERR_POOL);
  CHECK(strcmp(e.message, "pool main after 3 s") == 0);
  CHECK(strcmp(ss_error_kind_name(e.kind), "pool") == 0);
  CHECK(strcmp(ss_error_kind_name(SS_ERR_POSTGRES), "postgres") == 0);
  CHECK(strcmp(ss_error_kind_name(SS_ERR_INPUT), "input") == 0);
  strcpy(e.code, "23505");
  ss_error_clear(&e);
  CHECK(e.kind == SS_OK && e.code[0] == '\0' && e.message[0] == '\0');
  ss_strlcpy(small, "abcdef", sizeof small);
  CHECK(strcmp(small, "abc") == 0);
  ss_strlcpy(small, NULL, sizeof small);
  CHECK(small[0] == '\0');
  /* a message longer than the buffer is cut, never overflows */
  {
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ss_error_set(&e, SS_ERR_INPUT, "%s", big);
    CHECK(strlen(e.message) == sizeof e.message - 1);
  }
}

static void test_buf(void) {
  ss_buf b;
  size_t i;
  int ok = 1;
  ss_buf_init(&b);
  CHECK(b.len == 0 && b.data == NULL);
  for (i = 0; i < 1000000; i++) ok &= ss_buf_putc(&b, (char)('a' + i % 26)) == 0;
  CHECK(ok);
  CHECK(b.len == 1000000 && b.cap >= b.len);
  for (i = 0; i < b.len; i += 4999) ok &= b.data[i] == (char)('a' + i % 26);
  CHECK(ok);
  CHECK(ss_buf_append(&b, "xyz", 3) == 0 && memcmp(b.data + 1000000, "xyz", 3) == 0);
  CHECK(ss_buf_reserve(&b, (size_t)-1) == -1); /* overflow is refused, the buffer stays */
  CHECK(b.len == 1000003 && b.data[0] == 'a');
  ss_buf_free(&b);
  CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_redact(void) {
  char out[8];
  CHECK(redacts_to("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"));
  CHECK(redacts_to("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"));
  CHECK(redacts_to("postgresql://u@h/db", "postgresql://u@h/db"));
  CHECK(redacts_to("postgresql://h:5432/db", "postgresql://h:5432/db"));
  CHECK(redacts_to("host=h password=secret user=u", "host=h password=*** user=u"));
  CHECK(redacts_to("password='se cret\\'x' dbname=d", "password=*** dbname=d"));
  CHECK(redacts_to("password = secret host=h", "password=*** host=h"));
  CHECK(redacts_to("PASSWORD=secret", "PASSWORD=***"));
  CHECK(redacts_to("postgresql://h/db?password=secret&sslmode=disable", "postgresql://h/db?password=***&sslmode=disable"));
  CHECK(redacts_to("invalid connection option \"postgresql://a:secret@h\" here",
                   "invalid connection option \"postgresql://a:***@h\" here"));
  CHECK(redacts_to("password authentication failed for user \"dev\"",
                   "password authentication failed for user \"dev\""));
  CHECK(redacts_to("", ""));
  ss_redact("postgresql://user:secret@host/db", out, sizeof out);
  CHECK(strlen(out) == sizeof out - 1 && strstr(out, "secret") == NULL);
}

static int json_is(ss_buf *b, const char *want) {
  int ok = b->len == strlen(want) && memcmp(b->data, want, b->len) == 0;
  if (!ok) printf("  json: %.*s, want %s\n", (int)b->len, b->data, want);
  b->len = 0;
  return ok;
}

static void test_json(void) {
  ss_buf b;
  char tmp[32];
  int i, exact = 1;
  unsigned long long bits = 0x9E3779B97F4A7C15ULL;
  ss_buf_init(&b);
  CHECK(ss_json_integer(&b, 4611686018427387905LL) == 0 && json_is(&b, "4611686018427387905"));
  CHECK(ss_json_integer(&b, -9223372036854775807LL - 1) == 0 && json_is(&b, "-9223372036854775808"));
  CHECK(ss_json_double(&b, 0.1) == 0 && json_is(&b, "0.1"));
  CHECK(ss_json_double(&b, 1.0 / 3) == 0 && json_is(&b, "0.3333333333333333"));
  CHECK(ss_json_double(&b, 1e300) == 0 && json_is(&b, "1e+300"));
  CHECK(ss_json_string(&b, "a\"b\\c\n\x01\xc3\xa9", 9) == 0 && json_is(&b, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\""));
  CHECK(ss_json_string(&b, "x\0y", 3) == 0 && json_is(&b, "\"x\\u0000y\""));
  CHECK(ss_json_string(&b, "", 0) == 0 && json_is(&b, "\"\""));
  /* 100,000 doubles from all over the range read back exactly */
  for (i = 0; i < 100000; i++) {
    double d;
    bits ^= bits << 13;
    bits ^= bits >> 7;
    bits ^= bits << 17;
    memcpy(&d, &bits, sizeof d);
    if (d != d || d - d != 0) continue;
    ss_format_double(tmp, sizeof tmp, d);
    exact &= strtod(tmp, NULL) == d;
  }
  CHECK(exact);
  CHECK(ss_format_double(tmp, sizeof tmp, 0.0 / 0.0) == 3 && strcmp(tmp, "NaN") == 0);
  ss_format_double(tmp, sizeof tmp, -1.0 / 0.0);
  CHECK(strcmp(tmp, "-Infinity") == 0);
  ss_buf_free(&b);
}

int main(void) {
  test_error();
  test_buf();
  test_redact();
  test_json();
  DONE();
}
