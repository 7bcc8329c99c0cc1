/* A tiny test harness for the C unit tests: CHECK counts, a failed check
 * prints where and what, and DONE prints the line scripts/test.sh reads. */
#ifndef SEMSTORE_TEST_HARNESS_H
#define SEMSTORE_TEST_HARNESS_H

#include <stdio.h>

static int test_passed, test_failed;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (cond) {                                                         \
      test_passed++;                                                    \
    } else {                                                            \
      test_failed++;                                                    \
      printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
    }                                                                   \
  } while (0)

#define DONE()                                                          \
  do {                                                                  \
    printf("%d passed, %d failed\n", test_passed, test_failed);         \
    return test_failed ? 1 : 0;                                         \
  } while (0)

#endif
