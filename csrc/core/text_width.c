/* Terminal columns through glibc's wcwidth: its tables follow Unicode, so
 * semstore keeps none of its own. The C.UTF-8 locale is set for the
 * calling thread alone (uselocale), never for the process. */
#include "text_width.h"

#include <locale.h>
#include <pthread.h>
#include <string.h>
#include <wchar.h>

static locale_t utf8_locale;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void open_locale(void) { utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

/* The locale lives as long as the library: freed when it is unloaded
 * (lua_close unloads the module), so nothing is left behind. */
__attribute__((destructor)) static void close_locale(void) {
  if (utf8_locale) freelocale(utf8_locale);
  utf8_locale = (locale_t)0;
}

size_t ss_text_width(const char *s, size_t len) {
  size_t width = 0, i = 0;
  locale_t previous;
  mbstate_t st;
  pthread_once(&once, open_locale);
  if (!utf8_locale) return len; /* no UTF-8 locale: a byte a column */
  previous = uselocale(utf8_locale);
  memset(&st, 0, sizeof st);
  while (i < len) {
    wchar_t wc;
    size_t n = mbrtowc(&wc, s + i, len - i, &st);
    int w;
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
      /* not UTF-8 (or a zero byte): one column, and start afresh */
      memset(&st, 0, sizeof st);
      width++;
      i++;
      continue;
    }
    w = wcwidth(wc);
    width += w < 0 ? 1 : (size_t)w;
    i += n;
  }
  uselocale(previous);
  return width;
}
