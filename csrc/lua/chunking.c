/* core.chunk_text: the chunker of csrc/core/chunking.c over a Lua string. */
#include <stdlib.h>

#include "binding.h"
#include "chunking.h"

/* core.chunk_text(text, size, overlap) -> an array of { content =,
 * start_offset =, end_offset = } (byte offsets from 0, the end exclusive) */
static int chunk_text(lua_State *L) {
  size_t len, n, i;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer size = luaL_checkinteger(L, 2), overlap = luaL_optinteger(L, 3, 0);
  ss_chunk *chunks;
  luaL_argcheck(L, size >= 1, 2, "the chunk size must be at least 1 character");
  luaL_argcheck(L, overlap >= 0 && overlap < size, 3, "the overlap must be from 0 to less than the chunk size");
  n = ss_chunk_text(s, len, (size_t)size, (size_t)overlap, NULL, 0);
  /* held by a userdata, so a raise while building the table frees it */
  chunks = lua_newuserdatauv(L, (n ? n : 1) * sizeof *chunks, 0);
  ss_chunk_text(s, len, (size_t)size, (size_t)overlap, chunks, n);
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, s + chunks[i].start, chunks[i].end - chunks[i].start);
    lua_setfield(L, -2, "content");
    lua_pushinteger(L, (lua_Integer)chunks[i].start);
    lua_setfield(L, -2, "start_offset");
    lua_pushinteger(L, (lua_Integer)chunks[i].end);
    lua_setfield(L, -2, "end_offset");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

void ss_open_chunking(lua_State *L) {
  lua_pushcfunction(L, chunk_text);
  lua_setfield(L, -2, "chunk_text");
}
