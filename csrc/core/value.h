/* The tagged C value the engines take: one statement parameter of the
 * repositories (repo.c), one field of a bulk row (chunks_bulk.c). The
 * binding reads Lua values into these; the C tests write them directly.
 *
 * Ownership: an ss_value never owns what it points to. The bytes of text,
 * json and array values belong to the caller and must stay valid and
 * unchanged until the engine call that takes them returns; an engine that
 * needs them longer copies them (the bulk engine encodes them into its COPY
 * buffers at once). Where an engine hands them to libpq as text parameters
 * (ss_repo_run), libpq reads up to a zero byte: the bytes must be followed
 * by one (Lua strings are; a C literal is). */
#ifndef SEMSTORE_VALUE_H
#define SEMSTORE_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum {
  SS_VAL_NULL,   /* SQL NULL, also what a caller passes for "not given" */
  SS_VAL_BOOL,
  SS_VAL_INT,    /* a 64-bit integer */
  SS_VAL_DOUBLE, /* a number that is not an integer */
  SS_VAL_TEXT,   /* bytes meant as UTF-8 text; the engines check them */
  SS_VAL_JSON,   /* JSON text, already encoded (the binding's one JSON writer) */
  SS_VAL_ARRAY,  /* a PostgreSQL array literal, already encoded: {1,"two",NULL} */
  /* a caller's value with no C form (a Lua function or table where no JSON
   * is taken): str.s names its type, so an engine's error can say what it got */
  SS_VAL_OTHER
} ss_value_type;

typedef struct {
  ss_value_type type;
  union {
    int b;
    int64_t i;
    double d;
    struct {
      const char *s;
      size_t len;
    } str; /* TEXT, JSON, ARRAY, OTHER */
  } as;
} ss_value;

static inline ss_value ss_null(void) {
  ss_value v;
  v.type = SS_VAL_NULL;
  v.as.i = 0;
  return v;
}

static inline ss_value ss_bool(int b) {
  ss_value v;
  v.type = SS_VAL_BOOL;
  v.as.b = b != 0;
  return v;
}

static inline ss_value ss_int(int64_t i) {
  ss_value v;
  v.type = SS_VAL_INT;
  v.as.i = i;
  return v;
}

static inline ss_value ss_double(double d) {
  ss_value v;
  v.type = SS_VAL_DOUBLE;
  v.as.d = d;
  return v;
}

static inline ss_value ss_bytes_value(ss_value_type type, const char *s, size_t len) {
  ss_value v;
  v.type = type;
  v.as.str.s = s;
  v.as.str.len = len;
  return v;
}

static inline ss_value ss_text(const char *s, size_t len) { return ss_bytes_value(SS_VAL_TEXT, s, len); }
static inline ss_value ss_json(const char *s, size_t len) { return ss_bytes_value(SS_VAL_JSON, s, len); }
static inline ss_value ss_array(const char *s, size_t len) { return ss_bytes_value(SS_VAL_ARRAY, s, len); }
/* type_name is a static string ("function") */
static inline ss_value ss_other(const char *type_name) { return ss_bytes_value(SS_VAL_OTHER, type_name, 0); }

/* What v is, for errors: "null", "boolean", "number", "string",
 * "JSON value", "array", or the type an SS_VAL_OTHER names. */
const char *ss_value_type_name(const ss_value *v);

/* The text form of v as a libpq text-format parameter: NULL for SQL NULL
 * (and SS_VAL_OTHER, which no engine binds); "t"/"f"; an integer in
 * decimal; a double as its shortest round-trip text (both written into
 * num, of at least SS_VALUE_NUM_SIZE bytes); the bytes themselves for text,
 * json and array values (see the zero-byte rule above). */
#define SS_VALUE_NUM_SIZE 32
const char *ss_value_param(const ss_value *v, char *num);

/* v as text for a message ("42", "550e8400-...", "null"), cut to fit
 * out (size >= 1); returns out. */
const char *ss_value_format(const ss_value *v, char *out, size_t size);

/* Reads s as an integer's canonical decimal digits, -?(0|[1-9][0-9]*):
 * *neg gets the sign and *magnitude the digits' value. 0 when s is not
 * that, or its magnitude passes 2^64-1; each caller bounds it further (an
 * int8, a JSON integer). */
int ss_decimal_digits(const char *s, size_t len, int *neg, uint64_t *magnitude);

/* Appends s as a quoted element of an array literal ("a\"b"): " and \
 * escaped. The caller checked s holds no zero byte. 0, or -1 when memory
 * runs out. */
int ss_array_quote(ss_buf *b, const char *s, size_t len);

#endif
