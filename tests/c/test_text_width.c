/* Terminal columns of UTF-8 text (csrc/core/text_width.c). */
#include <string.h>

#include "harness.h"
#include "text_width.h"

static size_t w(const char *s) { return ss_text_width(s, strlen(s)); }

int main(void) {
  CHECK(w("") == 0);
  CHECK(w("abc") == 3);
  CHECK(w("h\xc3\xa9llo") == 5);                     /* é: one column */
  CHECK(w("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e") == 6); /* 日本語: two each */
  CHECK(w("e\xcc\x81") == 1);                        /* e + combining acute */
  CHECK(w("\xff\xfe") == 2);                         /* not UTF-8: a byte a column */
  CHECK(w("a\tb") == 3);                             /* a control character: one */
  CHECK(ss_text_width("a\0b", 3) == 3);
  CHECK(w("\xe6\x97") == 2);                         /* cut inside a character */
  DONE();
}
