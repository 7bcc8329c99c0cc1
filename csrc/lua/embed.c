/* core.embed_dense and core.embed_sparse: the local embedder of
 * csrc/core/embed_hash.c over arrays of texts. */
#include <stdlib.h>

#include "binding.h"
#include "embed_hash.h"

#define MAX_DIM 65536

/* Checks texts (an array of strings) at idx; returns how many. */
static lua_Integer check_texts(lua_State *L, int idx) {
  lua_Integer n, i, entries = 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING) luaL_error(L, "texts[%d] is a %s, not a string", (int)i, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  /* a text after a hole would be dropped in silence: one vector per text */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    entries++;
    lua_pop(L, 1);
  }
  if (entries != n)
    luaL_error(L, "texts must be an array of strings: %d entries are not texts[1..%d] (a hole?)", (int)(entries - n),
               (int)n);
  return n;
}

/* core.embed_dense(texts, dim) -> an array of dim-number arrays */
static int embed_dense(lua_State *L) {
  lua_Integer n = check_texts(L, 1), i, dim = luaL_checkinteger(L, 2), k;
  float *v;
  luaL_argcheck(L, dim >= 1 && dim <= MAX_DIM, 2, "the dimension must be from 1 to 65536");
  v = lua_newuserdatauv(L, (size_t)dim * sizeof *v, 0); /* freed by the collector, whatever raises */
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, 1, i);
    s = lua_tolstring(L, -1, &len);
    ss_embed_dense(s, len, v, (size_t)dim);
    lua_pop(L, 1);
    lua_createtable(L, (int)dim, 0);
    for (k = 0; k < dim; k++) {
      lua_pushnumber(L, v[k]);
      lua_rawseti(L, -2, k + 1);
    }
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* core.embed_sparse(texts, avg_words) -> an array of { indices =, values = } */
static int embed_sparse(lua_State *L) {
  lua_Integer n = check_texts(L, 1), i;
  double avg = luaL_optnumber(L, 2, 256);
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
    size_t len, count, k;
    const char *s;
    uint32_t *idx;
    float *val;
    lua_rawgeti(L, 1, i);
    s = lua_tolstring(L, -1, &len);
    /* one term per two bytes at most */
    idx = lua_newuserdatauv(L, (len / 2 + 1) * (sizeof *idx + sizeof *val), 0);
    val = (float *)(void *)(idx + len / 2 + 1);
    count = ss_embed_sparse(s, len, avg, idx, val, len / 2 + 1);
    lua_createtable(L, 0, 2);
    lua_createtable(L, (int)count, 0);
    for (k = 0; k < count; k++) {
      lua_pushinteger(L, (lua_Integer)idx[k]);
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "indices");
    lua_createtable(L, (int)count, 0);
    for (k = 0; k < count; k++) {
      lua_pushnumber(L, val[k]);
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "values");
    lua_rawseti(L, -4, i);
    lua_pop(L, 2);
  }
  return 1;
}

void ss_open_embed(lua_State *L) {
  lua_pushcfunction(L, embed_dense);
  lua_setfield(L, -2, "embed_dense");
  lua_pushcfunction(L, embed_sparse);
  lua_setfield(L, -2, "embed_sparse");
}
