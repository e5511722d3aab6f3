#include "mlp.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* About 4 MFLOP per sgemm piece: ~40 us at 100 GFLOP/s, a fine grain for progress calls,
 * and pieces of >= 16 rows keep sgemm near its full speed. */
#define MLP_GEMM_FLOPS (4u << 20)
#define MLP_GEMM_MIN_ROWS 16

int mlp_create(mlp_t *m, const int *dims, int ndims, int cap)
{
    memset(m, 0, sizeof *m);
    if (ndims < 2 || ndims > MLP_MAX_LAYERS + 1 || cap <= 0)
        return -1;
    int widest = 0;
    for (int i = 0; i < ndims; i++) {
        if (dims[i] <= 0 || dims[i] > (1 << 20))
            return -1;
        if (dims[i] > widest)
            widest = dims[i];
    }
    m->nlayers = ndims - 1;
    m->cap = cap;
    m->gemm_flops = MLP_GEMM_FLOPS;
    size_t off = 0;
    for (int l = m->nlayers - 1; l >= 0; l--) {
        mlp_layer_t *ly = &m->layer[l];
        ly->din = dims[l];
        ly->dout = dims[l + 1];
        ly->b_off = off;
        off += (size_t)ly->dout;
        ly->w_off = off;
        off += (size_t)ly->dout * ly->din;
    }
    m->nparams = off;
    m->params = calloc(off, sizeof(float));
    m->grads = calloc(off, sizeof(float));
    m->dz = malloc((size_t)cap * widest * sizeof(float));
    m->da = malloc((size_t)cap * widest * sizeof(float));
    int ok = m->params && m->grads && m->dz && m->da;
    for (int l = 1; l <= m->nlayers && ok; l++) {
        m->act[l] = malloc((size_t)cap * dims[l] * sizeof(float));
        ok = m->act[l] != NULL;
    }
    if (!ok) {
        mlp_destroy(m);
        return -1;
    }
    return 0;
}

void mlp_destroy(mlp_t *m)
{
    for (int l = 1; l <= m->nlayers; l++)
        free(m->act[l]);
    free(m->da);
    free(m->dz);
    free(m->grads);
    free(m->params);
    memset(m, 0, sizeof *m);
}

void mlp_init_params(mlp_t *m, uint64_t seed)
{
    rng_t r;
    rng_seed(&r, seed, 1);
    for (int l = 0; l < m->nlayers; l++) {
        mlp_layer_t *ly = &m->layer[l];
        double sd = sqrt(2.0 / ly->din);
        float *w = m->params + ly->w_off;
        for (size_t i = 0; i < (size_t)ly->dout * ly->din; i++)
            w[i] = (float)(sd * rng_normal(&r));
        memset(m->params + ly->b_off, 0, (size_t)ly->dout * sizeof(float));
    }
}

void mlp_forward(mlp_t *m, const float *x, int rows)
{
    m->input = x;
    const float *a = x;
    for (int l = 0; l < m->nlayers; l++) {
        const mlp_layer_t *ly = &m->layer[l];
        float *z = m->act[l + 1];
        const float *b = m->params + ly->b_off;
        /* z = a W^T: (rows x din) (din x dout) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, ly->dout, ly->din, 1.0f,
                    a, ly->din, m->params + ly->w_off, ly->din, 0.0f, z, ly->dout);
        int relu = l < m->nlayers - 1;
        for (int r = 0; r < rows; r++) {
            float *zr = z + (size_t)r * ly->dout;
            for (int j = 0; j < ly->dout; j++) {
                float v = zr[j] + b[j];
                zr[j] = relu && v < 0.0f ? 0.0f : v;
            }
        }
        a = z;
    }
}

/* Softmax of one row in place; returns log(sum exp(z - max)) + max = logsumexp. */
static double mlp_softmax_row(float *z, int n)
{
    float mx = z[0];
    for (int j = 1; j < n; j++)
        if (z[j] > mx)
            mx = z[j];
    double sum = 0.0;
    for (int j = 0; j < n; j++)
        sum += exp((double)(z[j] - mx));
    double lse = log(sum) + mx;
    for (int j = 0; j < n; j++)
        z[j] = (float)exp((double)z[j] - lse);
    return lse;
}

static int mlp_argmax(const float *z, int n)
{
    int best = 0;
    for (int j = 1; j < n; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

static double mlp_loss_rows(mlp_t *m, const uint8_t *labels, int rows, float scale,
                            int *correct, float *dz)
{
    int n = m->layer[m->nlayers - 1].dout;
    float *z = m->act[m->nlayers];
    double loss = 0.0;
    int ok = 0;
    for (int r = 0; r < rows; r++) {
        float *zr = z + (size_t)r * n;
        int y = labels[r];
        ok += mlp_argmax(zr, n) == y;
        double logit_y = zr[y];
        loss += mlp_softmax_row(zr, n) - logit_y;
        if (dz) {
            float *d = dz + (size_t)r * n;
            for (int j = 0; j < n; j++)
                d[j] = (zr[j] - (j == y ? 1.0f : 0.0f)) * scale;
        }
    }
    *correct = ok;
    return loss;
}

double mlp_loss(mlp_t *m, const uint8_t *labels, int rows, float scale, int *correct)
{
    return mlp_loss_rows(m, labels, rows, scale, correct, m->dz);
}

double mlp_eval(mlp_t *m, const uint8_t *labels, int rows, int *correct)
{
    return mlp_loss_rows(m, labels, rows, 0.0f, correct, NULL);
}

/* Rows per sgemm piece when the piece costs 2 * k * n flops per row. */
static int mlp_piece_rows(const mlp_t *m, int k, int n)
{
    size_t per_row = 2u * (size_t)k * (size_t)n;
    size_t rows = per_row ? m->gemm_flops / per_row : 0;
    return rows < MLP_GEMM_MIN_ROWS ? MLP_GEMM_MIN_ROWS : (int)(rows > (1u << 20) ? 1u << 20 : rows);
}

static int mlp_hook_call(mlp_hook_t hook, void *ctx, size_t ready)
{
    return hook ? hook(ctx, ready) : 0;
}

/* Bias and weight gradients of layer l from dz, in row pieces, reporting the frontier. */
static int mlp_backward_params(mlp_t *m, int l, int rows, int accumulate, mlp_hook_t hook,
                               void *ctx)
{
    const mlp_layer_t *ly = &m->layer[l];
    const float *a = l == 0 ? m->input : m->act[l];
    /* Bias: column sums of dz, into scratch first so that accumulating adds one finished
     * sum (as sgemm's beta = 1 does for dW): k micro-batches give exactly g1 + ... + gk. */
    float *db = m->grads + ly->b_off, *sum = accumulate ? m->da : db;
    memset(sum, 0, (size_t)ly->dout * sizeof(float));
    for (int r = 0; r < rows; r++) {
        const float *d = m->dz + (size_t)r * ly->dout;
        for (int j = 0; j < ly->dout; j++)
            sum[j] += d[j];
    }
    for (int j = 0; accumulate && j < ly->dout; j++)
        db[j] += sum[j];
    int rc = mlp_hook_call(hook, ctx, ly->w_off);
    /* dW = dz^T a: (dout x rows) (rows x din), in pieces of output rows of dW */
    int piece = mlp_piece_rows(m, rows, ly->din);
    for (int r0 = 0; r0 < ly->dout && rc == 0; r0 += piece) {
        int nr = ly->dout - r0 < piece ? ly->dout - r0 : piece;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nr, ly->din, rows, 1.0f,
                    m->dz + r0, ly->dout, a, ly->din, accumulate ? 1.0f : 0.0f,
                    m->grads + ly->w_off + (size_t)r0 * ly->din, ly->din);
        rc = mlp_hook_call(hook, ctx, ly->w_off + (size_t)(r0 + nr) * ly->din);
    }
    return rc;
}

/* dz of layer l-1 = (dz W) masked by ReLU'(act[l]), in pieces of batch rows. */
static int mlp_backward_input(mlp_t *m, int l, int rows, mlp_hook_t hook, void *ctx)
{
    const mlp_layer_t *ly = &m->layer[l];
    const float *act = m->act[l];
    size_t ready = ly->w_off + (size_t)ly->dout * ly->din;
    int piece = mlp_piece_rows(m, ly->dout, ly->din), rc = 0;
    for (int r0 = 0; r0 < rows && rc == 0; r0 += piece) {
        int nr = rows - r0 < piece ? rows - r0 : piece;
        float *da = m->da + (size_t)r0 * ly->din;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, ly->din, ly->dout, 1.0f,
                    m->dz + (size_t)r0 * ly->dout, ly->dout, m->params + ly->w_off, ly->din,
                    0.0f, da, ly->din);
        const float *ar = act + (size_t)r0 * ly->din;
        for (size_t i = 0; i < (size_t)nr * ly->din; i++)
            if (ar[i] <= 0.0f)
                da[i] = 0.0f;
        rc = mlp_hook_call(hook, ctx, ready);
    }
    float *t = m->dz;
    m->dz = m->da;
    m->da = t;
    return rc;
}

int mlp_backward(mlp_t *m, int rows, int accumulate, mlp_hook_t hook, void *ctx)
{
    int rc = 0;
    /* Parameter gradients first, so they can leave while dz of the layer below is computed. */
    for (int l = m->nlayers - 1; l >= 0 && rc == 0; l--) {
        rc = mlp_backward_params(m, l, rows, accumulate, hook, ctx);
        if (rc == 0 && l > 0)
            rc = mlp_backward_input(m, l, rows, hook, ctx);
    }
    return rc;
}

int mlp_is_bias_range(const mlp_t *m, size_t off, size_t *run)
{
    for (int l = 0; l < m->nlayers; l++) {
        const mlp_layer_t *ly = &m->layer[l];
        if (off >= ly->b_off && off < ly->w_off) {
            *run = ly->w_off - off;
            return 1;
        }
        size_t w_end = ly->w_off + (size_t)ly->dout * ly->din;
        if (off >= ly->w_off && off < w_end) {
            *run = w_end - off;
            return 0;
        }
    }
    *run = 0;
    return 0;
}
