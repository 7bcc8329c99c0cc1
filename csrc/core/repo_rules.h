/* The rules the repositories enforce before a statement reaches the
 * server: value formats, and the state machines of collections and
 * operations. Plain C, so the binding and the C tests share them. */
#ifndef SEMSTORE_REPO_RULES_H
#define SEMSTORE_REPO_RULES_H

#include <stddef.h>

/* Whether s is a UUID in the canonical lowercase 8-4-4-4-12 form, the only
 * spelling the schema's uuid_text domain accepts (the partition key hashes
 * the text, so one id must have one spelling). */
int ss_is_uuid(const char *s, size_t len);

/* Whether s is well-formed UTF-8 without zero bytes: what a PostgreSQL
 * text value in a UTF8 database can hold. */
int ss_is_text(const char *s, size_t len);

/* Writes a random (version 4) UUID and its terminator into out[37]; 0, or
 * -1 when the system has no randomness to give. */
int ss_uuid_v4(char out[37]);

/* The values of the schema's enums (and of the quantization CHECK),
 * NULL-terminated. */
extern const char *const ss_collection_statuses[];
extern const char *const ss_document_statuses[];
extern const char *const ss_operation_types[];
extern const char *const ss_operation_statuses[];
extern const char *const ss_quantizations[];

/* Whether name is one of choices. */
int ss_is_choice(const char *const *choices, const char *name);

/* The moves a collection's status may make (see the table in
 * repo_rules.c); 0 for a name that is not a status. */
int ss_collection_transition_ok(const char *from, const char *to);

/* An operation moves forward only: pending -> processing -> completed or
 * failed, and pending or processing -> cancelled (or failed). Once
 * completed, failed or cancelled it stays so. */
int ss_operation_transition_ok(const char *from, const char *to);

/* A constant-time comparison of two NUL-terminated strings: its duration
 * depends on the lengths only. 1 when equal. */
int ss_const_time_equal(const char *a, const char *b);

#endif
