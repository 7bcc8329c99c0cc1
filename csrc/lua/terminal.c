/* What the REPL and the progress bar need from the terminal:
 * core.display_width(s), core.isatty(fd), and core.catch_interrupts(on),
 * Ctrl-C handling of its own. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "binding.h"
#include "pg.h"
#include "text_width.h"

/* core.display_width(s) -> the terminal columns s takes */
static int display_width(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushinteger(L, (lua_Integer)ss_text_width(s, len));
  return 1;
}

/* core.isatty(fd) -> whether the descriptor (0 stdin, 1 stdout, 2 stderr)
 * is a terminal */
static int is_a_tty(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  lua_pushboolean(L, fd >= 0 && fd <= 1024 && isatty((int)fd));
  return 1;
}

/* The state whose running Lua code a Ctrl-C stops, as lua.c does it: a
 * hook, set from the handler (lua_sethook is safe there), that raises
 * "interrupted!" at the next instruction. While interrupts are caught, the
 * state also keeps a hook every CHECK_EVERY instructions, which a
 * coroutine made meanwhile inherits (lua_newthread copies it), so a loop
 * inside a coroutine stops too, within that many instructions. */
#define CHECK_EVERY 1000
static lua_State *interrupted_state;
static struct sigaction previous;
static int catching;
/* at the prompt, a Ctrl-C stops nothing: readline (or the read, cut short)
 * deals with the line being typed */
static volatile sig_atomic_t prompting, pending;

static void check(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (!pending || prompting) return;
  pending = 0;
  lua_sethook(L, check, LUA_MASKCOUNT, CHECK_EVERY);
  luaL_error(L, "interrupted!");
}

static void on_interrupt(int sig) {
  (void)sig;
  ss_pg_interrupt(); /* a statement under way is cancelled on the server */
  if (interrupted_state && !prompting) {
    pending = 1;
    lua_sethook(interrupted_state, check, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
}

/* core.catch_interrupts(mode): with true, every Ctrl-C (not just the
 * first, as with lua.c's own handler) stops the Lua code under way with the
 * error "interrupted!" and cancels the statement it waits on; with
 * "prompt", it stops nothing (a Ctrl-C already pending is dropped); with
 * false, the handler that was there before comes back. */
static int catch_interrupts(lua_State *L) {
  int on = lua_toboolean(L, 1);
  prompting = lua_type(L, 1) == LUA_TSTRING && strcmp(lua_tostring(L, 1), "prompt") == 0;
  if (prompting) pending = 0;
  if (on && !catching) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    /* no SA_RESTART: a read or poll under way returns, so the REPL sees
     * the interrupt at once */
    interrupted_state = ss_main_thread(L);
    pending = 0;
    lua_sethook(interrupted_state, check, LUA_MASKCOUNT, CHECK_EVERY);
    if (sigaction(SIGINT, &sa, &previous) != 0) return luaL_error(L, "catch_interrupts: sigaction failed");
    catching = 1;
  } else if (on && interrupted_state) {
    /* back from the prompt: the hook in its quiet form */
    lua_sethook(interrupted_state, check, LUA_MASKCOUNT, CHECK_EVERY);
  } else if (!on && catching) {
    sigaction(SIGINT, &previous, NULL);
    lua_sethook(interrupted_state, NULL, 0, 0);
    interrupted_state = NULL;
    catching = 0;
  }
  return 0;
}

void ss_open_terminal(lua_State *L) {
  lua_pushcfunction(L, display_width);
  lua_setfield(L, -2, "display_width");
  lua_pushcfunction(L, is_a_tty);
  lua_setfield(L, -2, "isatty");
  lua_pushcfunction(L, catch_interrupts);
  lua_setfield(L, -2, "catch_interrupts");
}
