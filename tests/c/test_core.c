/* The core's small pieces: error records, the byte buffer, redaction,
 * PostgreSQL's hashtext, the binary COPY encoder and the repository rules. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "error.h"
#include "harness.h"
#include "hashtext.h"
#include "json.h"
#include "pg_copy.h"
#include "pg_quote.h"
#include "redact.h"
#include "repo.h"
#include "repo_rules.h"
#include "value.h"

static int redacts_to(const char *in, const char *want) {
  char out[512];
  ss_redact(in, out, sizeof out);
  if (strcmp(out, want) != 0) printf("  redact(%s) = %s, want %s\n", in, out, want);
  return strcmp(out, want) == 0;
}

/* ss_redact_message: the message as ss_redact leaves it, and the password
 * literals of `statement` that it quotes hidden too */
static int message_redacts_to(const char *msg, const char *statement, const char *want) {
  char out[512];
  ss_redact_message(msg, statement, out, sizeof out);
  if (strcmp(out, want) != 0) printf("  redact_message(%s | %s) = %s, want %s\n", msg, statement, out, want);
  return strcmp(out, want) == 0;
}

static void test_error(void) {
  ss_error e;
  char small[4];
  CHECK(ss_error_set(&e, SS_ERR_POOL, "pool %s after %d s", "main", 3) == -1);
  CHECK(e.kind == SS_ERR_POOL);
  CHECK(strcmp(e.message, "pool main after 3 s") == 0);
  CHECK(strcmp(ss_error_kind_name(e.kind), "pool") == 0);
  CHECK(strcmp(ss_error_kind_name(SS_ERR_POSTGRES), "postgres") == 0);
  CHECK(strcmp(ss_error_kind_name(SS_ERR_INPUT), "input") == 0);
  strcpy(e.code, "23505");
  ss_error_clear(&e);
  CHECK(e.kind == SS_OK && e.code[0] == '\0' && e.message[0] == '\0');
  ss_strlcpy(small, "abcdef", sizeof small);
  CHECK(strcmp(small, "abc") == 0);
  ss_strlcpy(small, NULL, sizeof small);
  CHECK(small[0] == '\0');
  /* a message longer than the buffer is cut, never overflows */
  {
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ss_error_set(&e, SS_ERR_INPUT, "%s", big);
    CHECK(strlen(e.message) == sizeof e.message - 1);
  }
}

static void test_buf(void) {
  ss_buf b;
  size_t i;
  int ok = 1;
  ss_buf_init(&b);
  CHECK(b.len == 0 && b.data == NULL);
  for (i = 0; i < 1000000; i++) ok &= ss_buf_putc(&b, (char)('a' + i % 26)) == 0;
  CHECK(ok);
  CHECK(b.len == 1000000 && b.cap >= b.len);
  for (i = 0; i < b.len; i += 4999) ok &= b.data[i] == (char)('a' + i % 26);
  CHECK(ok);
  CHECK(ss_buf_append(&b, "xyz", 3) == 0 && memcmp(b.data + 1000000, "xyz", 3) == 0);
  CHECK(ss_buf_reserve(&b, (size_t)-1) == -1); /* overflow is refused, the buffer stays */
  CHECK(b.len == 1000003 && b.data[0] == 'a');
  ss_buf_free(&b);
  CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_redact(void) {
  char out[8];
  CHECK(redacts_to("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"));
  CHECK(redacts_to("postgres://u:p%40ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"));
  CHECK(redacts_to("postgresql://u@h/db", "postgresql://u@h/db"));
  CHECK(redacts_to("postgresql://h:5432/db", "postgresql://h:5432/db"));
  CHECK(redacts_to("host=h password=secret user=u", "host=h password=*** user=u"));
  CHECK(redacts_to("password='se cret\\'x' dbname=d", "password=*** dbname=d"));
  CHECK(redacts_to("password = secret host=h", "password=*** host=h"));
  CHECK(redacts_to("PASSWORD=secret", "PASSWORD=***"));
  CHECK(redacts_to("postgresql://h/db?password=secret&sslmode=disable", "postgresql://h/db?password=***&sslmode=disable"));
  CHECK(redacts_to("invalid connection option \"postgresql://a:secret@h\" here",
                   "invalid connection option \"postgresql://a:***@h\" here"));
  CHECK(redacts_to("password authentication failed for user \"dev\"",
                   "password authentication failed for user \"dev\""));
  CHECK(redacts_to("", ""));
  ss_redact("postgresql://user:secret@host/db", out, sizeof out);
  CHECK(strlen(out) == sizeof out - 1 && strstr(out, "secret") == NULL);
}

/* SQL: the literal after the keyword PASSWORD, whatever its quoting */
static void test_redact_sql(void) {
  char once[512], twice[512];
  CHECK(redacts_to("ALTER ROLE x PASSWORD 'secret'", "ALTER ROLE x PASSWORD '***'"));
  CHECK(redacts_to("alter role x with encrypted password 'secret' valid until 'infinity'",
                   "alter role x with encrypted password '***' valid until 'infinity'"));
  CHECK(redacts_to("CREATE ROLE x LOGIN Password E'se\\'cr''et\\\\' CREATEDB", "CREATE ROLE x LOGIN Password '***' CREATEDB"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD e'a\\''' b' LOGIN", "ALTER ROLE x PASSWORD '***' LOGIN"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD 'it''s secret';", "ALTER ROLE x PASSWORD '***';"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD 'C:\\';", "ALTER ROLE x PASSWORD '***';"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD $$sec'ret$$; SELECT 1", "ALTER ROLE x PASSWORD '***'; SELECT 1"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD $pw$se$$cret$pw$ LOGIN", "ALTER ROLE x PASSWORD '***' LOGIN"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD\n\t'secret'", "ALTER ROLE x PASSWORD\n\t'***'"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD /* new */ 'secret'", "ALTER ROLE x PASSWORD /* new */ '***'"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD U&'s\\0065cret'", "ALTER ROLE x PASSWORD '***'"));
  CHECK(redacts_to("ALTER ROLE a PASSWORD 'one'; ALTER ROLE b PASSWORD 'two'",
                   "ALTER ROLE a PASSWORD '***'; ALTER ROLE b PASSWORD '***'"));
  CHECK(redacts_to("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password 'secret')",
                   "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', password '***')"));
  /* an unterminated literal hides everything after it */
  CHECK(redacts_to("ALTER ROLE x PASSWORD 'secret; SELECT 1", "ALTER ROLE x PASSWORD '***'"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD $q$secret", "ALTER ROLE x PASSWORD '***'"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD E'secret\\'", "ALTER ROLE x PASSWORD '***'"));
  /* inside a DO block's body, and in comments */
  CHECK(redacts_to("DO $$BEGIN ALTER ROLE x PASSWORD 'secret'; END$$", "DO $$BEGIN ALTER ROLE x PASSWORD '***'; END$$"));
  CHECK(redacts_to("-- ALTER ROLE x PASSWORD 'old';\nALTER ROLE x PASSWORD 'new'",
                   "-- ALTER ROLE x PASSWORD '***';\nALTER ROLE x PASSWORD '***'"));
  CHECK(redacts_to("/* PASSWORD 'a' /* nested */ */ SELECT 'password'", "/* PASSWORD '***' /* nested */ */ SELECT 'password'"));
  CHECK(redacts_to("-- don't\nALTER ROLE x PASSWORD 'secret'", "-- don't\nALTER ROLE x PASSWORD '***'"));
  /* the word in a name, in another string, or not before a literal */
  CHECK(redacts_to("CREATE TABLE t (user_password text, password_hash text, \"password\" text, passwords text)",
                   "CREATE TABLE t (user_password text, password_hash text, \"password\" text, passwords text)"));
  CHECK(redacts_to("INSERT INTO t VALUES ('my password', 'hunter2'), ($$password$$, 'x')",
                   "INSERT INTO t VALUES ('my password', 'hunter2'), ($$password$$, 'x')"));
  CHECK(redacts_to("SELECT 'enter password' , 'x', \"password\" 'y', e'\\' password' FROM t",
                   "SELECT 'enter password' , 'x', \"password\" 'y', e'\\' password' FROM t"));
  CHECK(redacts_to("SELECT mypassword 'x', password$1 'y' FROM t", "SELECT mypassword 'x', password$1 'y' FROM t"));
  CHECK(redacts_to("ALTER ROLE x PASSWORD NULL", "ALTER ROLE x PASSWORD NULL"));
  CHECK(redacts_to("SELECT $1 AS password, $2 password", "SELECT $1 AS password, $2 password"));
  CHECK(redacts_to("x PASSWORD $", "x PASSWORD $"));
  CHECK(redacts_to("x PASSWORD '", "x PASSWORD '***'"));
  CHECK(redacts_to("x PASSWORD E'", "x PASSWORD '***'"));
  CHECK(redacts_to("x PASSWORD -- 'not this'\n 'this'", "x PASSWORD -- 'not this'\n '***'"));
  CHECK(redacts_to("-- PASSWORD 'cut", "-- PASSWORD '***'"));
  CHECK(redacts_to("/* PASSWORD 'cut", "/* PASSWORD '***'"));
  CHECK(redacts_to("SELECT password", "SELECT password"));
  /* the other rules still apply inside SQL strings */
  CHECK(redacts_to("SELECT dblink_connect('host=h password=secret dbname=d')", "SELECT dblink_connect('host=h password=*** dbname=d')"));
  CHECK(redacts_to("SELECT 'postgresql://u:secret@h/d'", "SELECT 'postgresql://u:***@h/d'"));
  /* redacting twice changes nothing more */
  ss_redact("ALTER ROLE x PASSWORD E'a\\'b' LOGIN; -- password 'c'", once, sizeof once);
  ss_redact(once, twice, sizeof twice);
  CHECK(strcmp(once, twice) == 0 && strstr(once, "a\\'b") == NULL && strstr(once, "'c'") == NULL);
}

/* a server message that quotes a statement's password literal */
static void test_redact_message(void) {
  CHECK(message_redacts_to("unterminated quoted string at or near \"'secret\"", "ALTER ROLE x PASSWORD 'secret",
                           "unterminated quoted string at or near \"'***'\""));
  CHECK(message_redacts_to("unterminated dollar-quoted string at or near \"$$secret\"", "ALTER ROLE x PASSWORD $$secret",
                           "unterminated dollar-quoted string at or near \"'***'\""));
  CHECK(message_redacts_to("syntax error at or near \"E'sec\\'ret'\"", "ALTER ROLE x PASSWORD E'sec\\'ret' 1",
                           "syntax error at or near \"'***'\""));
  /* a message cut short quotes the start of the literal only */
  CHECK(message_redacts_to("syntax error at or near \"'secr", "ALTER ROLE x PASSWORD 'secret",
                           "syntax error at or near \"'***'"));
  CHECK(message_redacts_to("role \"x\" does not exist", "ALTER ROLE x PASSWORD 'x'", "role \"x\" does not exist"));
  CHECK(message_redacts_to("it's 'here'", "ALTER ROLE x PASSWORD ''", "it's 'here'"));
  CHECK(message_redacts_to("password=secret from 'a' and 'b'", "ALTER ROLE x PASSWORD 'b'; ALTER ROLE y PASSWORD 'a'",
                           "password=*** from '***' and '***'"));
  CHECK(message_redacts_to("postgresql://u:secret@h", NULL, "postgresql://u:***@h"));
}

static int quotes_to(const char *in, size_t len, int as_ident, const char *want) {
  char out[256];
  size_t n = 0;
  ss_error err;
  int ok = ss_pg_quote(in, len, as_ident, out, sizeof out, &n, &err) == 0 && n == strlen(want) && strcmp(out, want) == 0;
  if (!ok) printf("  quote(%.*s) = %s, want %s\n", (int)len, in, out, want);
  return ok;
}

static int quote_refuses(const char *in, size_t len, int as_ident) {
  char out[256];
  size_t n;
  ss_error err;
  return ss_pg_quote(in, len, as_ident, out, sizeof out, &n, &err) == -1 && err.kind == SS_ERR_INPUT;
}

/* many threads quote at once through the one offline PGconn */
static void *quote_many(void *arg) {
  char out[64];
  size_t n;
  ss_error err;
  int i, *ok = arg;
  for (i = 0; i < 20000; i++) {
    *ok &= ss_pg_quote("it's \\ \xc3\xbc", 9, i & 1, out, sizeof out, &n, &err) == 0;
    *ok &= strcmp(out, i & 1 ? "\"it's \\ \xc3\xbc\"" : " E'it''s \\\\ \xc3\xbc'") == 0;
  }
  return NULL;
}

static void test_pg_quote(void) {
  pthread_t t[4];
  int ok[4] = {1, 1, 1, 1}, i;
  CHECK(quotes_to("a\"b", 3, 1, "\"a\"\"b\""));
  CHECK(quotes_to("my table \xc3\xbc", 11, 1, "\"my table \xc3\xbc\""));
  CHECK(quotes_to("it's", 4, 0, "'it''s'"));
  CHECK(quotes_to("a\\b", 3, 0, " E'a\\\\b'"));
  CHECK(quotes_to("\xf0\x9f\x98\x80'", 5, 0, "'\xf0\x9f\x98\x80'''"));
  CHECK(quotes_to("", 0, 0, "''"));
  CHECK(quote_refuses("", 0, 1));
  CHECK(quote_refuses("a\0b", 3, 0));
  CHECK(quote_refuses("a\0b", 3, 1));
  CHECK(quote_refuses("caf\xe9", 4, 0));
  CHECK(quote_refuses("\xc3", 1, 1));
  CHECK(quote_refuses("\xed\xa0\x80", 3, 0));
  for (i = 0; i < 4; i++) pthread_create(&t[i], NULL, quote_many, &ok[i]);
  for (i = 0; i < 4; i++) pthread_join(t[i], NULL);
  CHECK(ok[0] && ok[1] && ok[2] && ok[3]);
}

static int json_is(ss_buf *b, const char *want) {
  int ok = b->len == strlen(want) && memcmp(b->data, want, b->len) == 0;
  if (!ok) printf("  json: %.*s, want %s\n", (int)b->len, b->data, want);
  b->len = 0;
  return ok;
}

static void test_json(void) {
  /* UTF-8: what JSON text must be */
  CHECK(ss_utf8_valid("", 0) && ss_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
  CHECK(ss_utf8_valid("a\0b", 3));
  CHECK(!ss_utf8_valid("caf\xe9", 4));                /* Latin-1 */
  CHECK(!ss_utf8_valid("\xc0\xaf", 2));               /* overlong */
  CHECK(!ss_utf8_valid("\xed\xa0\x80", 3));           /* a surrogate */
  CHECK(!ss_utf8_valid("\xf4\x90\x80\x80", 4));       /* above U+10FFFF */
  CHECK(!ss_utf8_valid("\xe2\x82", 2));               /* cut short */
  CHECK(!ss_utf8_valid("\x80", 1));
  ss_buf b;
  ss_buf_init(&b);
  CHECK(ss_json_integer(&b, 4611686018427387905LL) == 0 && json_is(&b, "4611686018427387905"));
  CHECK(ss_json_integer(&b, -9223372036854775807LL - 1) == 0 && json_is(&b, "-9223372036854775808"));
  /* the texts themselves are test_float_text.c's */
  CHECK(ss_json_double(&b, 0.1) == 0 && json_is(&b, "0.1"));
  CHECK(ss_json_double(&b, 1.0 / 3) == 0 && json_is(&b, "0.3333333333333333"));
  CHECK(ss_json_double(&b, 1e300) == 0 && json_is(&b, "1e+300"));
  CHECK(ss_json_float32(&b, 0.1f) == 0 && json_is(&b, "0.1"));
  CHECK(ss_json_float32(&b, -1.0f / 3) == 0 && json_is(&b, "-0.33333334"));
  CHECK(ss_json_string(&b, "a\"b\\c\n\x01\xc3\xa9", 9) == 0 && json_is(&b, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\""));
  CHECK(ss_json_string(&b, "x\0y", 3) == 0 && json_is(&b, "\"x\\u0000y\""));
  CHECK(ss_json_string(&b, "", 0) == 0 && json_is(&b, "\"\""));
  ss_buf_free(&b);
}

/* hashtext() as PostgreSQL 15 computes it (SELECT hashtext(s)) */
static int hashes_to(const char *s, size_t len, int32_t want) {
  int32_t got = ss_hashtext(s, len);
  if (got != want) printf("  hashtext(%.*s) = %d, want %d\n", (int)len, s, (int)got, (int)want);
  return got == want;
}

#define HASHES_TO(lit, want) hashes_to(lit, sizeof lit - 1, want)

/* An 11-byte string whose hashtext is INT32_MIN (found by running lookup3's
 * final mix backwards; the server agrees: hashtext('4FBvFnCdU3R') is
 * -2147483648), the one value whose abs() overflows an int4. */
static const char int32_min_string[] = "4FBvFnCdU3R";

static void test_hashtext(void) {
  CHECK(HASHES_TO("", -1477818771));
  CHECK(HASHES_TO("a", 1075015857));
  CHECK(HASHES_TO("abc", -785388649));
  CHECK(HASHES_TO("hello world", 1021725223));
  CHECK(HASHES_TO("550e8400-e29b-41d4-a716-446655440000", 428265705));
  /* a whole block, a block and a tail, bytes above 0x7f (no sign extension) */
  CHECK(HASHES_TO("abcdefghijkl", -1586087212));
  CHECK(HASHES_TO("abcdefghijklm", 405849808));
  CHECK(HASHES_TO("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", -1645874405));
  CHECK(HASHES_TO("\xe2\x82\xac\xc3\xbc\xf0\x9f\x98\x80 the quick brown fox", 1574395127));
  CHECK(HASHES_TO("4FBvFnCdU3R", INT32_MIN));
  /* the length counts, not a terminator; the bytes need no alignment */
  {
    char buf[64];
    CHECK(ss_hashtext("a\0", 2) != ss_hashtext("a", 1));
    memcpy(buf + 1, "550e8400-e29b-41d4-a716-446655440000", 36);
    CHECK(ss_hashtext(buf + 1, 36) == 428265705);
  }
}

static void test_partition_key(void) {
  /* abs(hashtext(s)::int8) % n */
  CHECK(ss_partition_key("", 0, 100) == 71);         /* -1477818771 */
  CHECK(ss_partition_key("a", 1, 100) == 57);        /* 1075015857 */
  CHECK(ss_partition_key("abc", 3, 100) == 49);      /* -785388649 */
  CHECK(ss_partition_key("hello world", 11, 100) == 23);
  CHECK(ss_partition_key("550e8400-e29b-41d4-a716-446655440000", 36, 100) == 5);
  CHECK(ss_partition_key("abc", 3, 7) == 785388649 % 7);
  CHECK(ss_partition_key("abc", 3, 1) == 0);
  CHECK(ss_partition_key("abc", 3, SS_DEFAULT_PARTITIONS) == 49);
  /* abs(-2147483648) = 2147483648 as an int8, never negative */
  CHECK(ss_partition_key(int32_min_string, 11, 100) == 48);
  CHECK(ss_partition_key(int32_min_string, 11, 1000) == 648);
  CHECK(ss_partition_key(int32_min_string, 11, INT32_MAX) == 1);
  {
    int i, ok = 1;
    char s[16];
    for (i = 0; i < 10000; i++) {
      int k, len = snprintf(s, sizeof s, "k%d", i);
      int64_t h = ss_hashtext(s, (size_t)len);
      k = ss_partition_key(s, (size_t)len, 100);
      ok &= k >= 0 && k < 100 && k == (int)((h < 0 ? -h : h) % 100);
    }
    CHECK(ok);
  }
}

static int bytes_are(const ss_buf *b, const void *want, size_t len) {
  size_t i;
  if (b->len == len && memcmp(b->data, want, len) == 0) return 1;
  printf("  got %zu bytes:", b->len);
  for (i = 0; i < b->len; i++) printf(" %02x", (unsigned char)b->data[i]);
  printf("\n");
  return 0;
}

static void test_copy(void) {
  static const unsigned char want[] = {
      'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0,  /* signature */
      0, 0, 0, 0,                                             /* flags */
      0, 0, 0, 0,                                             /* header extension length */
      0, 7,                                                   /* a row of 7 fields */
      0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe,                     /* int4 -2 */
      0, 0, 0, 8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* int8 */
      0xff, 0xff, 0xff, 0xff,                                 /* NULL */
      0, 0, 0, 3, 'h', 0xc3, 0xa9,                            /* text */
      0, 0, 0, 8, 1, '{', '"', 'a', '"', ':', '1', '}',       /* jsonb: version 1 */
      0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0,                     /* 2000-01-01 UTC */
      0, 0, 0, 8, 0xff, 0xfc, 0xa2, 0xfe, 0xc4, 0xc8, 0x20, 0x00, /* 1970-01-01 UTC */
      0, 1,                                                   /* a row of 1 field */
      0, 0, 0, 0,                                             /* empty text */
      0xff, 0xff,                                             /* trailer */
  };
  ss_buf b;
  long at;
  ss_buf_init(&b);
  CHECK(ss_copy_header(&b) == 0 && b.len == 19);
  CHECK(ss_copy_row(&b, 7) == 0);
  CHECK(ss_copy_int4(&b, -2) == 0);
  CHECK(ss_copy_int8(&b, INT64_C(0x0102030405060708)) == 0);
  CHECK(ss_copy_null(&b) == 0);
  CHECK(ss_copy_text(&b, "h\xc3\xa9", 3) == 0);
  CHECK(ss_copy_jsonb(&b, "{\"a\":1}", 7) == 0);
  CHECK(ss_copy_timestamptz(&b, SS_PG_EPOCH_US) == 0);
  CHECK(ss_copy_timestamptz(&b, 0) == 0); /* -946684800000000 microseconds */
  CHECK(ss_copy_row(&b, 1) == 0);
  CHECK(ss_copy_text(&b, "", 0) == 0);
  CHECK(ss_copy_trailer(&b) == 0);
  CHECK(bytes_are(&b, want, sizeof want));

  /* a field written in place: the length word is filled in afterwards */
  b.len = 0;
  at = ss_copy_field_begin(&b);
  CHECK(at == 0);
  CHECK(ss_buf_append(&b, "\x01[1,2]", 6) == 0);
  ss_copy_field_end(&b, at);
  CHECK(bytes_are(&b, "\0\0\0\x06\x01[1,2]", 10));
  at = ss_copy_field_begin(&b);
  CHECK(at == 10);
  ss_copy_field_end(&b, at);
  CHECK(bytes_are(&b, "\0\0\0\x06\x01[1,2]\0\0\0\0", 14));
  /* extremes are written as they are */
  b.len = 0;
  CHECK(ss_copy_int4(&b, INT32_MIN) == 0 && ss_copy_int8(&b, INT64_MAX) == 0);
  CHECK(bytes_are(&b, "\0\0\0\x04\x80\0\0\0\0\0\0\x08\x7f\xff\xff\xff\xff\xff\xff\xff", 20));
  ss_buf_free(&b);
}

#define IS_UUID(lit) ss_is_uuid(lit, sizeof lit - 1)
#define IS_TEXT(lit) ss_is_text(lit, sizeof lit - 1)

static void test_is_uuid(void) {
  CHECK(IS_UUID("550e8400-e29b-41d4-a716-446655440000"));
  CHECK(IS_UUID("00000000-0000-0000-0000-000000000000"));
  CHECK(IS_UUID("ffffffff-ffff-ffff-ffff-ffffffffffff"));
  CHECK(!IS_UUID("550E8400-E29B-41D4-A716-446655440000")); /* upper case */
  CHECK(!IS_UUID("550e8400-e29b-41d4-a716-44665544000A"));
  CHECK(!IS_UUID("550e8400e29b-41d4-a716-4466554400000"));  /* a dash moved */
  CHECK(!IS_UUID("550e8400-e29b-41d4-a7164-46655440000"));
  CHECK(!IS_UUID("550e8400-e29b-41d4_a716-446655440000"));  /* not a dash */
  CHECK(!IS_UUID("550e8400-e29b-41d4-a716-44665544000-"));
  CHECK(!IS_UUID("550e8400e29b41d4a716446655440000"));      /* no dashes */
  CHECK(!IS_UUID("{550e8400-e29b-41d4-a716-446655440000}"));
  CHECK(!IS_UUID("550e8400-e29b-41d4-a716-44665544000"));   /* short */
  CHECK(!IS_UUID("550e8400-e29b-41d4-a716-4466554400000")); /* long */
  CHECK(!IS_UUID("550e8400-e29b-41d4-a716-44665544000g"));
  CHECK(!IS_UUID(" 50e8400-e29b-41d4-a716-446655440000"));
  CHECK(!IS_UUID("550e8400-e29b-41d4-a716-44665544000\0"));
  CHECK(!IS_UUID(""));
}

static void test_is_text(void) {
  CHECK(IS_TEXT(""));
  CHECK(IS_TEXT("plain ascii \x01\x7f"));
  CHECK(IS_TEXT("\xc2\x80 \xc3\xa9 \xdf\xbf"));          /* 2 bytes: U+0080, U+00E9, U+07FF */
  CHECK(IS_TEXT("\xe0\xa0\x80 \xe2\x82\xac \xef\xbf\xbf")); /* 3 bytes: U+0800, U+20AC, U+FFFF */
  CHECK(IS_TEXT("\xed\x9f\xbf \xee\x80\x80"));          /* around the surrogates: U+D7FF, U+E000 */
  CHECK(IS_TEXT("\xf0\x90\x80\x80 \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf")); /* 4 bytes up to U+10FFFF */
  /* zero bytes */
  CHECK(!IS_TEXT("\0"));
  CHECK(!IS_TEXT("a\0b"));
  CHECK(!IS_TEXT("abc\0"));
  /* overlong forms */
  CHECK(!IS_TEXT("\xc0\x80"));
  CHECK(!IS_TEXT("\xc0\xaf"));
  CHECK(!IS_TEXT("\xc1\xbf"));
  CHECK(!IS_TEXT("\xe0\x80\x80"));
  CHECK(!IS_TEXT("\xe0\x9f\xbf"));
  CHECK(!IS_TEXT("\xf0\x80\x80\x80"));
  CHECK(!IS_TEXT("\xf0\x8f\xbf\xbf"));
  /* surrogates */
  CHECK(!IS_TEXT("\xed\xa0\x80"));
  CHECK(!IS_TEXT("\xed\xbf\xbf"));
  CHECK(!IS_TEXT("a\xed\xb2\x80z"));
  /* beyond U+10FFFF, bytes that never lead */
  CHECK(!IS_TEXT("\xf4\x90\x80\x80"));
  CHECK(!IS_TEXT("\xf5\x80\x80\x80"));
  CHECK(!IS_TEXT("\xf8\x88\x80\x80\x80"));
  CHECK(!IS_TEXT("\xfe"));
  CHECK(!IS_TEXT("\xff"));
  /* stray continuation bytes */
  CHECK(!IS_TEXT("\x80"));
  CHECK(!IS_TEXT("a\xbf"));
  CHECK(!IS_TEXT("\xc3\xa9\xa9"));
  /* truncated sequences, at the end and before another character */
  CHECK(!IS_TEXT("\xc3"));
  CHECK(!IS_TEXT("abc\xe2\x82"));
  CHECK(!IS_TEXT("\xf0\x9f\x98"));
  CHECK(!IS_TEXT("\xe2\x82z"));
  CHECK(!IS_TEXT("\xf0\x9f\x98\xc3\xa9"));
  /* the length bounds the check: a valid prefix of an invalid buffer */
  CHECK(ss_is_text("ab\xff", 2));
  CHECK(!ss_is_text("\xc3\xa9", 1));
  /* ASCII is checked eight bytes at a time: what it finds at every place
   * in a word, and across words */
  {
    char buf[40];
    int at;
    for (at = 0; at < 24; at++) {
      memset(buf, 'a', sizeof buf);
      CHECK(ss_is_text(buf, sizeof buf));
      buf[at] = 0;
      CHECK(!ss_is_text(buf, sizeof buf));
      buf[at] = (char)0xff;
      CHECK(!ss_is_text(buf, sizeof buf));
      buf[at] = (char)0x80;
      CHECK(!ss_is_text(buf, sizeof buf));
      buf[at] = 0x7f;
      buf[at + 1] = 0x01;
      CHECK(ss_is_text(buf, sizeof buf));
      memcpy(buf + at, "\xe2\x82\xac", 3); /* straddling a word's end somewhere */
      CHECK(ss_is_text(buf, sizeof buf));
      memcpy(buf + at, "\xed\xa0\x80", 3);
      CHECK(!ss_is_text(buf, sizeof buf));
      CHECK(ss_is_text(buf, (size_t)at)); /* the length bounds it */
    }
  }
}

static void test_uuid_v4(void) {
  char a[37], b[37];
  int i, ok = 1;
  memset(a, 'x', sizeof a);
  CHECK(ss_uuid_v4(a) == 0);
  CHECK(ss_uuid_v4(b) == 0);
  CHECK(strlen(a) == 36 && strlen(b) == 36);
  CHECK(ss_is_uuid(a, 36) && ss_is_uuid(b, 36));
  CHECK(a[14] == '4' && b[14] == '4');                      /* version 4 */
  CHECK(strchr("89ab", a[19]) != NULL && strchr("89ab", b[19]) != NULL); /* RFC 4122 variant */
  CHECK(strcmp(a, b) != 0);
  /* many: always well-formed, every variant nibble turns up */
  {
    int variants[4] = {0, 0, 0, 0};
    for (i = 0; i < 2000; i++) {
      char u[37];
      ok &= ss_uuid_v4(u) == 0 && ss_is_uuid(u, 36) && u[14] == '4' && strchr("89ab", u[19]) != NULL;
      if (u[19] >= '8' && u[19] <= '9') variants[u[19] - '8']++;
      if (u[19] >= 'a' && u[19] <= 'b') variants[u[19] - 'a' + 2]++;
    }
    CHECK(ok);
    CHECK(variants[0] && variants[1] && variants[2] && variants[3]);
  }
}

static void test_statuses(void) {
  CHECK(ss_is_choice(ss_collection_statuses, "pending"));
  CHECK(ss_is_choice(ss_collection_statuses, "degraded"));
  CHECK(!ss_is_choice(ss_collection_statuses, "bogus"));
  CHECK(!ss_is_choice(ss_collection_statuses, ""));
  CHECK(!ss_is_choice(ss_collection_statuses, "Pending"));
  CHECK(ss_is_choice(ss_document_statuses, "deleted"));
  CHECK(ss_is_choice(ss_operation_types, "remove_source"));
  CHECK(ss_is_choice(ss_quantizations, "int8"));
  CHECK(!ss_is_choice(ss_quantizations, "int4"));
  CHECK(ss_collection_transition_ok("pending", "processing"));
  CHECK(ss_collection_transition_ok("processing", "ready"));
  CHECK(ss_collection_transition_ok("ready", "processing"));
  CHECK(ss_collection_transition_ok("ready", "degraded"));
  CHECK(ss_collection_transition_ok("processing", "error"));
  CHECK(ss_collection_transition_ok("error", "processing"));
  CHECK(ss_collection_transition_ok("error", "pending"));
  CHECK(ss_collection_transition_ok("degraded", "ready"));
  CHECK(ss_collection_transition_ok("ready", "ready")); /* same status: the message changes */
  CHECK(!ss_collection_transition_ok("error", "ready"));
  CHECK(!ss_collection_transition_ok("error", "degraded"));
  CHECK(!ss_collection_transition_ok("ready", "pending"));
  CHECK(!ss_collection_transition_ok("pending", "degraded"));
  CHECK(!ss_collection_transition_ok("pending", "bogus"));
  CHECK(!ss_collection_transition_ok("bogus", "pending"));
  CHECK(!ss_collection_transition_ok("bogus", "bogus"));
  CHECK(!ss_collection_transition_ok("READY", "processing"));

  CHECK(ss_is_choice(ss_operation_statuses, "cancelled"));
  CHECK(!ss_is_choice(ss_operation_statuses, "canceled"));
  CHECK(ss_operation_transition_ok("pending", "processing"));
  CHECK(ss_operation_transition_ok("pending", "cancelled"));
  CHECK(ss_operation_transition_ok("pending", "failed"));
  CHECK(ss_operation_transition_ok("processing", "completed"));
  CHECK(ss_operation_transition_ok("processing", "failed"));
  CHECK(ss_operation_transition_ok("processing", "cancelled"));
  CHECK(!ss_operation_transition_ok("pending", "completed"));
  CHECK(!ss_operation_transition_ok("processing", "pending"));
  CHECK(!ss_operation_transition_ok("completed", "processing"));
  CHECK(!ss_operation_transition_ok("completed", "failed"));
  CHECK(!ss_operation_transition_ok("failed", "pending"));
  CHECK(!ss_operation_transition_ok("cancelled", "processing"));
  CHECK(!ss_operation_transition_ok("cancelled", "cancelled"));
  CHECK(!ss_operation_transition_ok("pending", "bogus"));
  CHECK(!ss_operation_transition_ok("bogus", "processing"));
}

static void test_const_time_equal(void) {
  CHECK(ss_const_time_equal("", ""));
  CHECK(ss_const_time_equal("secret-key-123", "secret-key-123"));
  CHECK(!ss_const_time_equal("secret-key-123", "secret-key-124"));
  CHECK(!ss_const_time_equal("Secret-key-123", "secret-key-123"));
  CHECK(!ss_const_time_equal("abc", "abcd"));
  CHECK(!ss_const_time_equal("abcd", "abc"));
  CHECK(!ss_const_time_equal("", "a"));
  CHECK(!ss_const_time_equal("a", ""));
  CHECK(!ss_const_time_equal("\x80", "\x00"));
  /* the prefix shared by different lengths does not make them equal */
  CHECK(!ss_const_time_equal("aaaa", "a"));
  CHECK(!ss_const_time_equal("a", "aaaa"));
}

/* The engines' tagged value: libpq's text form, messages, array quoting,
 * and the checks the repositories and the bulk share. */
static void test_value(void) {
  char num[SS_VALUE_NUM_SIZE], out[16];
  ss_value v;
  ss_buf b;
  ss_error err;
  static const ss_param_spec count4 = {"n", SS_V_COUNT4, 1, 0, NULL};
  CHECK(ss_value_param(&(ss_value){SS_VAL_NULL, {0}}, num) == NULL);
  v = ss_bool(7);
  CHECK(strcmp(ss_value_param(&v, num), "t") == 0);
  v = ss_int(INT64_MIN);
  CHECK(strcmp(ss_value_param(&v, num), "-9223372036854775808") == 0);
  v = ss_double(0.1);
  CHECK(strcmp(ss_value_param(&v, num), "0.1") == 0 && strcmp(ss_value_type_name(&v), "number") == 0);
  v = ss_text("abcdefghijklmnopqrstuvwxyz", 26);
  CHECK(strcmp(ss_value_format(&v, out, sizeof out), "abcdefghijklmno") == 0);
  v = ss_other("function");
  CHECK(strcmp(ss_value_type_name(&v), "function") == 0 && ss_value_param(&v, num) == NULL);
  ss_buf_init(&b);
  CHECK(ss_array_quote(&b, "a\"b\\c", 5) == 0 && b.len == 9 && memcmp(b.data, "\"a\\\"b\\\\c\"", 9) == 0);
  ss_buf_free(&b);
  /* integers: an integral double becomes the integer, NaN and fractions do not */
  v = ss_double(12.0);
  CHECK(ss_repo_check_value(&count4, &v, &err) == 0 && v.type == SS_VAL_INT && v.as.i == 12);
  v = ss_double(0.0 / 0.0);
  CHECK(ss_repo_check_value(&count4, &v, &err) == -1 && strcmp(err.message, "n must be an integer") == 0);
  v = ss_int(2147483648LL);
  CHECK(ss_repo_check_value(&count4, &v, &err) == -1 && strstr(err.message, "from 0 to 2147483647"));
  /* a canonical decimal string within int64 is an integer (LuaJIT's int8 beyond 2^53), no other string is */
  {
    static const ss_param_spec any_int = {"id", SS_V_INT, 1, 0, NULL};
    static const char *const good[] = {"0", "7", "-7", "9007199254740993", "9223372036854775807", "-9223372036854775808"};
    static const int64_t want[] = {0, 7, -7, 9007199254740993LL, INT64_MAX, INT64_MIN};
    static const char *const bad[] = {"", "-", "-0", "007", "+7", " 7", "7 ", "1e3", "7.0", "0x10",
                                      "9223372036854775808", "-9223372036854775809", "99999999999999999999"};
    size_t k;
    for (k = 0; k < sizeof good / sizeof *good; k++) {
      v = ss_text(good[k], strlen(good[k]));
      CHECK(ss_repo_check_value(&any_int, &v, &err) == 0 && v.type == SS_VAL_INT && v.as.i == want[k]);
    }
    for (k = 0; k < sizeof bad / sizeof *bad; k++) {
      v = ss_text(bad[k], strlen(bad[k]));
      CHECK(ss_repo_check_value(&any_int, &v, &err) == -1 && strcmp(err.message, "id must be an integer") == 0);
    }
    v = ss_text("2147483648", 10);
    CHECK(ss_repo_check_value(&count4, &v, &err) == -1 && strstr(err.message, "from 0 to 2147483647"));
  }
  v = ss_null();
  CHECK(ss_repo_check_value(&count4, &v, &err) == -1 && strcmp(err.message, "n is required") == 0);
}

int main(void) {
  test_value();
  test_error();
  test_buf();
  test_redact();
  test_redact_sql();
  test_redact_message();
  test_pg_quote();
  test_json();
  test_hashtext();
  test_partition_key();
  test_copy();
  test_is_uuid();
  test_is_text();
  test_uuid_v4();
  test_statuses();
  test_const_time_equal();
  DONE();
}
