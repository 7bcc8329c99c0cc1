/* SHA-256 (csrc/core/digest.c) against FIPS 180-2's test vectors. */
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "harness.h"

int main(void) {
  char out[SS_SHA256_HEX_LEN + 1];
  char *million = malloc(1000000);
  CHECK(ss_sha256_hex("", 0, out) == 0);
  CHECK(strcmp(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
  CHECK(ss_sha256_hex("abc", 3, out) == 0);
  CHECK(strcmp(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
  CHECK(ss_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, out) == 0);
  CHECK(strcmp(out, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
  memset(million, 'a', 1000000);
  CHECK(ss_sha256_hex(million, 1000000, out) == 0);
  CHECK(strcmp(out, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
  free(million);
  CHECK(ss_sha256_hex("a\0b", 3, out) == 0); /* zero bytes are data */
  CHECK(strcmp(out, "59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138") == 0);
  DONE();
}
