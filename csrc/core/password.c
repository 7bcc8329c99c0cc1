#include "password.h"

#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "repo_rules.h"

int ss_password_hash(const char *password, char out[SS_PASSWORD_HASH_SIZE], ss_error *err) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  struct crypt_data *data;
  const char *h;
  /* count 0: libxcrypt's default cost; NULL entropy: it reads the OS's */
  if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting))
    return ss_error_set(err, SS_ERR_INPUT, "could not make a password salt");
  /* struct crypt_data is about 32 KB: too big for a coroutine-sized stack */
  if (!(data = calloc(1, sizeof *data))) return ss_error_set(err, SS_ERR_MEMORY, "out of memory");
  h = crypt_r(password, setting, data);
  /* libxcrypt marks failure with a hash starting with '*' */
  if (!h || h[0] == '*' || strlen(h) >= SS_PASSWORD_HASH_SIZE) {
    free(data);
    return ss_error_set(err, SS_ERR_INPUT, "could not hash the password");
  }
  strcpy(out, h);
  explicit_bzero(data, sizeof *data);
  free(data);
  return 0;
}

int ss_password_verify(const char *password, const char *hash) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  struct crypt_data *data = calloc(1, sizeof *data);
  const char *h;
  int ok;
  if (!data) return 0;
  if (!hash) {
    /* no such user: spend the time a real check takes */
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting)) crypt_r(password, setting, data);
    explicit_bzero(data, sizeof *data);
    free(data);
    return 0;
  }
  h = crypt_r(password, hash, data);
  ok = h && h[0] != '*' && ss_const_time_equal(h, hash);
  explicit_bzero(data, sizeof *data);
  free(data);
  return ok;
}
