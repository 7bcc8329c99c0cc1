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

/* Collection statuses and the moves between them (the seed design's
 * transition table). -1 when name is not a status. */
int ss_collection_status(const char *name);
int ss_collection_transition_ok(const char *from, const char *to);

/* Operation statuses: -1 when name is not one; terminal ones are final. */
int ss_operation_status(const char *name);
int ss_operation_status_terminal(const char *name);

/* A constant-time comparison of two NUL-terminated strings: its duration
 * depends on the lengths only. 1 when equal. */
int ss_const_time_equal(const char *a, const char *b);

#endif
