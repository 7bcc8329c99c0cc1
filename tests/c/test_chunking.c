/* The chunker (csrc/core/chunking.c): character counts, UTF-8-safe cuts,
 * word boundaries, overlap. */
#include <string.h>

#include "chunking.h"
#include "harness.h"

static int valid_cut(const char *s, size_t len, size_t at) {
  return at == 0 || at == len || (((unsigned char)s[at]) & 0xC0) != 0x80;
}

int main(void) {
  ss_chunk c[64];
  size_t n, i;
  const char *words = "alpha beta gamma delta epsilon";
  const char *utf = "\xc3\xa9\xc3\xa9\xc3\xa9\xe2\x82\xac\xe2\x82\xac\xf0\x9f\x98\x80\xf0\x9f\x98\x80"; /* 7 characters */
  /* the whole text fits */
  CHECK(ss_chunk_text(words, strlen(words), 100, 10, c, 64) == 1 && c[0].start == 0 && c[0].end == strlen(words));
  CHECK(ss_chunk_text("", 0, 10, 2, c, 64) == 0);
  /* cuts prefer whitespace: "alpha beta " then the rest */
  n = ss_chunk_text(words, strlen(words), 12, 0, c, 64);
  CHECK(n >= 3 && c[0].start == 0 && c[0].end == 11 && memcmp(words + c[0].end, "gamma", 5) == 0);
  for (i = 1; i < n; i++) CHECK(c[i].start == c[i - 1].end);
  CHECK(c[n - 1].end == strlen(words));
  /* overlap: each chunk starts before the previous one ends, and moves on */
  n = ss_chunk_text(words, strlen(words), 12, 4, c, 64);
  for (i = 1; i < n; i++) CHECK(c[i].start < c[i - 1].end && c[i].start > c[i - 1].start);
  /* sizes in characters, never a cut inside one */
  n = ss_chunk_text(utf, strlen(utf), 2, 0, c, 64);
  CHECK(n == 4);
  for (i = 0; i < n; i++) CHECK(valid_cut(utf, strlen(utf), c[i].start) && valid_cut(utf, strlen(utf), c[i].end));
  CHECK(c[0].end == 4 && c[1].end == 9 && c[2].end == 16 && c[3].end == strlen(utf));
  n = ss_chunk_text(utf, strlen(utf), 3, 2, c, 64);
  for (i = 0; i < n; i++) CHECK(valid_cut(utf, strlen(utf), c[i].start) && valid_cut(utf, strlen(utf), c[i].end));
  CHECK(c[n - 1].end == strlen(utf));
  /* a long word with no space is cut at the size; overlap >= size is capped */
  n = ss_chunk_text("abcdefghij", 10, 4, 9, c, 64);
  CHECK(n >= 3 && c[0].end == 4 && c[n - 1].end == 10);
  /* an invalid byte is a character of its own: stray continuation bytes
   * (no lead), and those beyond what a lead announces */
  {
    char stray[100];
    memset(stray, 0x80, sizeof stray);
    n = ss_chunk_text(stray, sizeof stray, 10, 0, c, 64);
    CHECK(n == 10);
    for (i = 0; i < n; i++) CHECK(c[i].end - c[i].start == 10);
    memcpy(stray, "\xc3\xa9", 2); /* "é", then 98 stray bytes */
    n = ss_chunk_text(stray, sizeof stray, 10, 0, c, 64);
    CHECK(n == 10 && c[0].end == 11 && c[1].end - c[1].start == 10);
    /* a valid character after stray bytes is still never cut */
    n = ss_chunk_text("\x80\xe2\x82\xac\x80", 5, 1, 0, c, 64);
    CHECK(n == 3 && c[0].end == 1 && c[1].end == 4 && c[2].end == 5);
  }
  /* an overlap reaching back to a chunk's start (its cut made it short)
   * still overlaps: the next chunk starts one character in */
  n = ss_chunk_text("aaaaaaaa bbbbbbbbbb", 19, 10, 9, c, 64);
  CHECK(n >= 2 && c[0].end == 9 && c[1].start == 1);
  for (i = 1; i < n; i++) CHECK(c[i].start > c[i - 1].start && c[i].start < c[i - 1].end);
  /* no overlap: each chunk starts where the one before ends, even when
   * that cut fell inside a word */
  n = ss_chunk_text("abcdefg hijklmnop", 17, 10, 0, c, 64);
  CHECK(n == 2 && c[0].end == 10 && c[1].start == 10);
  /* room for fewer: the count says how many there are */
  CHECK(ss_chunk_text("abcdefghij", 10, 2, 0, c, 1) == 5 && c[0].end == 2);
  DONE();
}
