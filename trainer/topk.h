/*
 * Top-k selection for gradient sparsification with error feedback.
 */
#ifndef RDX_TRAINER_TOPK_H
#define RDX_TRAINER_TOPK_H

#include <stddef.h>
#include <stdint.h>

/*
 * Moves the k entries of acc[0..n) with the largest magnitude out of acc: their indices go
 * to idx[0..k), their fp32 bit patterns to val[0..k), and acc keeps zeros there (what
 * stays in acc is the residual fed back next step). Ties at the k-th magnitude are broken
 * by index, so every run selects the same entries; idx comes out ascending. Zero entries
 * are never sent; if fewer than k are non-zero the rest is padded with (0, +0.0f), which
 * adds nothing. scratch holds n floats. 1 <= k <= n. Cost: about three passes over acc
 * (a strided sample bounds the candidates, the exact selection runs among them).
 */
void topk_take(float *acc, float *scratch, size_t n, size_t k, uint32_t *idx, uint32_t *val);

/* The k-th largest of v[0..n) (k >= 1); reorders v. Exposed for tests. */
float topk_kth_largest(float *v, size_t n, size_t k);

#endif
