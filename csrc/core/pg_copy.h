/* PostgreSQL's binary COPY format, written into an ss_buf: bytes in, bytes
 * out, no I/O, so it is tested alone and fed to any transport. All numbers
 * are big-endian. A stream is the header, rows (a field count, then each
 * field as an int32 length, -1 for NULL, and its bytes), and the trailer.
 * Every writer returns 0, or -1 when memory runs out (the buffer stays
 * valid, possibly holding part of the row: the caller abandons the COPY). */
#ifndef SEMSTORE_PG_COPY_H
#define SEMSTORE_PG_COPY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 UTC. */
#define SS_PG_EPOCH_US INT64_C(946684800000000)

int ss_copy_header(ss_buf *b);
int ss_copy_trailer(ss_buf *b);
int ss_copy_row(ss_buf *b, int nfields);
int ss_copy_null(ss_buf *b);
int ss_copy_int4(ss_buf *b, int32_t v);
int ss_copy_int8(ss_buf *b, int64_t v);
/* text, varchar and domains over text: the raw bytes (no zero byte) */
int ss_copy_text(ss_buf *b, const char *s, size_t len);
/* jsonb: version byte 1, then the JSON text */
int ss_copy_jsonb(ss_buf *b, const char *json, size_t len);
/* timestamptz from microseconds since the Unix epoch */
int ss_copy_timestamptz(ss_buf *b, int64_t unix_us);

/* A field whose bytes are written afterwards (for example JSON produced in
 * place): reserves its length word and returns its offset, or -1; close it
 * with ss_copy_field_end once the bytes are appended. */
long ss_copy_field_begin(ss_buf *b);
void ss_copy_field_end(ss_buf *b, long at);

#endif
