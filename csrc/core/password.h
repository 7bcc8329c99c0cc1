/* Users' passwords, hashed with libxcrypt (yescrypt, its recommended
 * method). The plain password is never stored or logged. */
#ifndef SEMSTORE_PASSWORD_H
#define SEMSTORE_PASSWORD_H

#include <stddef.h>

#include "error.h"

/* Room for any hash libxcrypt writes (CRYPT_OUTPUT_SIZE). */
#define SS_PASSWORD_HASH_SIZE 384

/* Hashes password with a fresh random salt into out; 0, or -1 with err set. */
int ss_password_hash(const char *password, char out[SS_PASSWORD_HASH_SIZE], ss_error *err);

/* 1 when password matches hash, else 0 (also for a malformed hash). The
 * comparison takes the same time wherever the strings differ; with hash
 * NULL (no such user) it hashes all the same and returns 0, so the answer
 * takes as long whether or not the user exists. */
int ss_password_verify(const char *password, const char *hash);

#endif
