#include "sgd.h"

#include <math.h>
#include <stdlib.h>

int sgd_create(sgd_t *o, size_t n)
{
    o->mom = calloc(n, sizeof(float));
    o->n = n;
    return o->mom ? 0 : -1;
}

void sgd_destroy(sgd_t *o)
{
    free(o->mom);
    o->mom = NULL;
}

double sgd_lr(const sgd_t *o, long step)
{
    double lr = o->lr;
    if (o->warmup > 0 && step < o->warmup)
        lr *= (double)(step + 1) / (double)o->warmup;
    if (o->cosine && o->total > 0)
        lr *= 0.5 * (1.0 + cos(M_PI * (double)step / (double)o->total));
    return lr;
}

static void sgd_run(float *w, float *v, const float *g, size_t n, float mu, float wd, float lr)
{
    for (size_t i = 0; i < n; i++) {
        v[i] = mu * v[i] + (g[i] + wd * w[i]);
        w[i] -= lr * v[i];
    }
}

void sgd_apply(sgd_t *o, mlp_t *m, size_t off, size_t count, float lr)
{
    size_t end = off + count;
    while (off < end) {
        size_t run;
        int bias = mlp_is_bias_range(m, off, &run);
        if (run == 0)
            return; /* past the parameters: a caller bug, never write out of range */
        if (run > end - off)
            run = end - off;
        sgd_run(m->params + off, o->mom + off, m->grads + off, run, (float)o->momentum,
                bias ? 0.0f : (float)o->wd, lr);
        off += run;
    }
}
