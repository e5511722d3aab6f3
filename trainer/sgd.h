/*
 * SGD with momentum and weight decay (weights only, not biases), a linear warmup and an
 * optional cosine decay:
 *
 *     v = mu * v + (g + wd * w);   w -= lr(t) * v
 *     lr(t) = lr * min(1, (t + 1) / warmup) * (cosine ? (1 + cos(pi t / total)) / 2 : 1)
 *
 * Applied per gradient range, so the optimizer can update a bucket as soon as its average
 * arrives while later buckets are still on the wire.
 */
#ifndef RDX_TRAINER_SGD_H
#define RDX_TRAINER_SGD_H

#include <stddef.h>

#include "mlp.h"

typedef struct sgd {
    float *mom;          /* momentum buffer, one per parameter */
    size_t n;
    double lr, momentum, wd;
    long warmup;         /* steps of linear warmup (0: none) */
    long total;          /* steps of the whole run (for the cosine) */
    int cosine;
} sgd_t;

int sgd_create(sgd_t *o, size_t n);
void sgd_destroy(sgd_t *o);
double sgd_lr(const sgd_t *o, long step);
void sgd_apply(sgd_t *o, mlp_t *m, size_t off, size_t count, float lr);

#endif
