/* A deterministic local embedder, for demos and tests that need no model
 * or network: the feature-hashing trick. Bytes in, numbers out; no Lua.
 *
 * Dense: the text's character trigrams (between spaces, so word starts and
 * ends count) and its words, each hashed to one of `dim` slots with a
 * hashed sign, then L2-normalised: texts that share words and word pieces
 * have a high cosine. Sparse: the text's words hashed to 32-bit indices,
 * weighted by BM25's term-frequency part (Qdrant's `idf` modifier adds the
 * inverse document frequency at query time). Case is folded for ASCII;
 * other UTF-8 bytes count as letters, so non-English words stay whole. */
#ifndef SEMSTORE_EMBED_HASH_H
#define SEMSTORE_EMBED_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Writes the dense vector of text into out[0..dim) (dim >= 1). A text
 * with no features (empty, only spaces) gives the zero vector. */
void ss_embed_dense(const char *text, size_t len, float *out, size_t dim);

/* The sparse vector of text: at most `cap` entries written into indices
 * and values, sorted by index with no repeats; returns how many there are
 * (which may be more than cap: then call again with more room).
 * avg_words: the typical text length in words, for BM25's length part. */
size_t ss_embed_sparse(const char *text, size_t len, double avg_words, uint32_t *indices, float *values, size_t cap);

#endif
