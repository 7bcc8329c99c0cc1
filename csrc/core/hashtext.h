/* PostgreSQL's hashtext() and the chunk partition key built on it, so that
 * writers can route a chunk to its partition without asking the server. */
#ifndef SEMSTORE_HASHTEXT_H
#define SEMSTORE_HASHTEXT_H

#include <stddef.h>
#include <stdint.h>

/* The partitions of `chunks` unless the schema was migrated with another
 * CHUNK_PARTITION_COUNT. */
#define SS_DEFAULT_PARTITIONS 100

/* What PostgreSQL's hashtext(s) returns for these bytes on a little-endian
 * server (every platform PostgreSQL ships for today), whatever the byte
 * order of this host. */
int32_t ss_hashtext(const void *s, size_t len);

/* abs(hashtext(s)::int8) % n, the schema's chunk_partition_key(); n >= 1. */
int ss_partition_key(const void *s, size_t len, int n);

#endif
