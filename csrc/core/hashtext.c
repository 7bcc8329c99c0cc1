/* Bob Jenkins' lookup3 hash as PostgreSQL's hash_bytes() computes it
 * (src/common/hashfn.c). The bytes are assembled little-endian by hand, so
 * the result does not depend on this host's byte order or alignment. */
#include "hashtext.h"

#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

#define MIX(a, b, c)         \
  do {                       \
    a -= c; a ^= ROT(c, 4);  c += b; \
    b -= a; b ^= ROT(a, 6);  a += c; \
    c -= b; c ^= ROT(b, 8);  b += a; \
    a -= c; a ^= ROT(c, 16); c += b; \
    b -= a; b ^= ROT(a, 19); a += c; \
    c -= b; c ^= ROT(b, 4);  b += a; \
  } while (0)

#define FINAL(a, b, c)        \
  do {                        \
    c ^= b; c -= ROT(b, 14);  \
    a ^= c; a -= ROT(c, 11);  \
    b ^= a; b -= ROT(a, 25);  \
    c ^= b; c -= ROT(b, 16);  \
    a ^= c; a -= ROT(c, 4);   \
    b ^= a; b -= ROT(a, 14);  \
    c ^= b; c -= ROT(b, 24);  \
  } while (0)

static uint32_t le32(const unsigned char *k) {
  return (uint32_t)k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
}

int32_t ss_hashtext(const void *s, size_t len) {
  const unsigned char *k = s;
  /* PostgreSQL's length is an int: its texts never reach 2^32 bytes */
  uint32_t a, b, c;
  a = b = c = 0x9e3779b9u + (uint32_t)len + 3923095u;
  while (len >= 12) {
    a += le32(k);
    b += le32(k + 4);
    c += le32(k + 8);
    MIX(a, b, c);
    k += 12;
    len -= 12;
  }
  /* the tail; c's low byte is reserved for the length in lookup3 */
  switch (len) {
    case 11: c += (uint32_t)k[10] << 24; /* fall through */
    case 10: c += (uint32_t)k[9] << 16;  /* fall through */
    case 9: c += (uint32_t)k[8] << 8;    /* fall through */
    case 8: b += (uint32_t)k[7] << 24;   /* fall through */
    case 7: b += (uint32_t)k[6] << 16;   /* fall through */
    case 6: b += (uint32_t)k[5] << 8;    /* fall through */
    case 5: b += k[4];                   /* fall through */
    case 4: a += (uint32_t)k[3] << 24;   /* fall through */
    case 3: a += (uint32_t)k[2] << 16;   /* fall through */
    case 2: a += (uint32_t)k[1] << 8;    /* fall through */
    case 1: a += k[0];
  }
  FINAL(a, b, c);
  return (int32_t)c;
}

int ss_partition_key(const void *s, size_t len, int n) {
  int64_t h = ss_hashtext(s, len);
  return (int)((h < 0 ? -h : h) % n);
}
