/* SHA-256 through OpenSSL's libcrypto (libpq already depends on it), so no
 * hash code of our own. */
#include "digest.h"

#include <openssl/evp.h>

int ss_sha256_hex(const void *data, size_t len, char out[SS_SHA256_HEX_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0, i;
  out[0] = '\0';
  if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != SS_SHA256_HEX_LEN / 2) return -1;
  for (i = 0; i < n; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[2 * n] = '\0';
  return 0;
}
