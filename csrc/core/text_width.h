/* How many terminal columns UTF-8 text takes: the REPL's tables. */
#ifndef SS_TEXT_WIDTH_H
#define SS_TEXT_WIDTH_H

#include <stddef.h>

/* Columns of the UTF-8 text s (len bytes), by the C library's wcwidth in
 * the C.UTF-8 locale: wide (East Asian) characters take 2, combining marks
 * 0, other printable ones 1. A byte that is not UTF-8, and a control
 * character, count 1 each. */
size_t ss_text_width(const char *s, size_t len);

#endif
