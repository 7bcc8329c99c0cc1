/* SHA-256 of bytes, as lowercase hex: documents' content hashes. */
#ifndef SS_DIGEST_H
#define SS_DIGEST_H

#include <stddef.h>

#define SS_SHA256_HEX_LEN 64

/* Writes the 64 hex digits and a zero byte into out; 0 on success, -1 when
 * OpenSSL could not make the digest (out is then the empty string). */
int ss_sha256_hex(const void *data, size_t len, char out[SS_SHA256_HEX_LEN + 1]);

#endif
