/* core.sha256: csrc/core/digest.c over a Lua string. */
#include "binding.h"
#include "digest.h"

/* core.sha256(s) -> 64 lowercase hex digits */
static int sha256(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char hex[SS_SHA256_HEX_LEN + 1];
  if (ss_sha256_hex(s, len, hex) != 0) return luaL_error(L, "sha256: libcrypto could not make the digest");
  lua_pushlstring(L, hex, SS_SHA256_HEX_LEN);
  return 1;
}

void ss_open_digest(lua_State *L) {
  lua_pushcfunction(L, sha256);
  lua_setfield(L, -2, "sha256");
}
