#include "value.h"

#include <stdio.h>

#include "error.h"
#include "float_text.h"

const char *ss_value_type_name(const ss_value *v) {
  switch (v->type) {
  case SS_VAL_NULL:
    return "null";
  case SS_VAL_BOOL:
    return "boolean";
  case SS_VAL_INT:
  case SS_VAL_DOUBLE:
    return "number";
  case SS_VAL_TEXT:
    return "string";
  case SS_VAL_JSON:
    return "JSON value";
  case SS_VAL_ARRAY:
    return "array";
  case SS_VAL_OTHER:
    return v->as.str.s ? v->as.str.s : "value of another kind";
  }
  return "?";
}

const char *ss_value_param(const ss_value *v, char *num) {
  switch (v->type) {
  case SS_VAL_BOOL:
    return v->as.b ? "t" : "f";
  case SS_VAL_INT:
    snprintf(num, SS_VALUE_NUM_SIZE, "%lld", (long long)v->as.i);
    return num;
  case SS_VAL_DOUBLE:
    ss_format_double(num, SS_VALUE_NUM_SIZE, v->as.d);
    return num;
  case SS_VAL_TEXT:
  case SS_VAL_JSON:
  case SS_VAL_ARRAY:
    return v->as.str.s;
  case SS_VAL_NULL:
  case SS_VAL_OTHER:
    break;
  }
  return NULL;
}

const char *ss_value_format(const ss_value *v, char *out, size_t size) {
  char num[SS_VALUE_NUM_SIZE];
  switch (v->type) {
  case SS_VAL_TEXT:
  case SS_VAL_JSON:
  case SS_VAL_ARRAY:
    snprintf(out, size, "%.*s", (int)(v->as.str.len < size ? v->as.str.len : size - 1), v->as.str.s);
    return out;
  case SS_VAL_NULL:
  case SS_VAL_OTHER:
    ss_strlcpy(out, ss_value_type_name(v), size);
    return out;
  default:
    ss_strlcpy(out, ss_value_param(v, num), size);
    return out;
  }
}

int ss_decimal_digits(const char *s, size_t len, int *neg, uint64_t *magnitude) {
  size_t k = len && s[0] == '-' ? 1 : 0;
  uint64_t n = 0;
  if (k == len || s[k] < '0' || s[k] > '9' || (s[k] == '0' && len != k + 1)) return 0;
  for (; k < len; k++) {
    unsigned d = (unsigned)(s[k] - '0');
    if (s[k] < '0' || s[k] > '9' || n > (UINT64_MAX - d) / 10) return 0;
    n = n * 10 + d;
  }
  *neg = s[0] == '-';
  *magnitude = n;
  return 1;
}

int ss_array_quote(ss_buf *b, const char *s, size_t len) {
  size_t k;
  if (ss_buf_reserve(b, len * 2 + 2)) return -1;
  b->data[b->len++] = '"';
  for (k = 0; k < len; k++) {
    if (s[k] == '"' || s[k] == '\\') b->data[b->len++] = '\\';
    b->data[b->len++] = s[k];
  }
  b->data[b->len++] = '"';
  return 0;
}
