#include "chunking.h"

/* The byte after the character at i: a lead byte and at most the
 * continuation bytes it announces. Any other byte (a stray continuation,
 * 0xF8-0xFF) is a character of its own, so invalid text is still cut every
 * `size` bytes at most. */
static size_t next_char(const unsigned char *s, size_t len, size_t i) {
  unsigned char c = s[i];
  size_t want = c >= 0xF8 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
  i++;
  while (want > 0 && i < len && (s[i] & 0xC0) == 0x80) {
    i++;
    want--;
  }
  return i;
}

/* The start of the character that ends at i (next_char's inverse): a
 * continuation byte belongs to the lead byte up to 3 before it whose
 * sequence reaches it, else it stands alone. */
static size_t prev_char(const unsigned char *s, size_t i) {
  size_t j, k;
  if (i == 0) return 0;
  j = i - 1;
  for (k = 1; k <= 3 && k <= j && (s[j] & 0xC0) == 0x80; k++) {
    if ((s[j - k] & 0xC0) != 0x80) return next_char(s, i, j - k) > j ? j - k : j;
  }
  return j;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

size_t ss_chunk_text(const char *text, size_t len, size_t size, size_t overlap, ss_chunk *out, size_t cap) {
  const unsigned char *s = (const unsigned char *)text;
  size_t start = 0, n = 0;
  if (size == 0) return 0;
  if (overlap >= size) overlap = size - 1;
  while (start < len) {
    size_t end = start, chars = 0, cut, next, back;
    while (end < len && chars < size) {
      end = next_char(s, len, end);
      chars++;
    }
    cut = end;
    /* a cut just before whitespace is already between words */
    if (end < len && !is_space(s[end])) {
      /* prefer to cut just after whitespace in the chunk's last fifth,
       * so words stay whole */
      size_t look = size / 5 ? size / 5 : 1, p = end, k;
      for (k = 0; k < look && p > start; k++) {
        p = prev_char(s, p);
        if (is_space(s[p])) {
          cut = next_char(s, len, p);
          break;
        }
      }
    }
    if (n < cap) {
      out[n].start = start;
      out[n].end = cut;
    }
    n++;
    if (cut >= len) break;
    /* the next chunk starts `overlap` characters before this one ends,
     * and always after this one's start */
    next = cut;
    for (back = 0; back < overlap && next > start; back++) next = prev_char(s, next);
    /* an overlap that reaches back to this chunk's start (its cut made it
     * shorter than size) overlaps all but its first character */
    if (overlap > 0 && next == start) next = next_char(s, len, start);
    /* and, with an overlap (without one the next chunk starts at the cut,
     * repeating nothing), at a word's start: the start of the word it falls in, when that
     * is at most a fifth of a chunk further back, else the next word's
     * start within the overlap */
    if (overlap > 0 && next > 0 && !is_space(s[prev_char(s, next)])) {
      size_t p = next, k, look = size / 5 ? size / 5 : 1;
      for (k = 0; k < look && p > start && !is_space(s[prev_char(s, p)]); k++) p = prev_char(s, p);
      if (p > start && is_space(s[prev_char(s, p)])) {
        next = p;
      } else {
        p = next;
        while (p < cut && !is_space(s[p])) p = next_char(s, len, p);
        while (p < cut && is_space(s[p])) p = next_char(s, len, p);
        if (p < cut) next = p;
      }
    }
    start = next > start ? next : cut;
  }
  return n;
}
