/*
 * A multi-layer perceptron: Linear -> ReLU -> ... -> Linear -> softmax cross-entropy,
 * forward and backward on OpenBLAS sgemm, row-major, one sample per row.
 *
 * Parameters and gradients live in one flat array each, laid out in REVERSE layer order,
 * bias before weights:
 *
 *     [ b[L-1] | W[L-1] | b[L-2] | W[L-2] | ... | b[0] | W[0] ]
 *       ^ produced first by backward                     ^ produced last
 *
 * so backward fills the gradient array front to back. Its progress is one number, the
 * "ready" frontier: gradient elements [0, ready) are final. The gradient bucketing in
 * ddp.c is then just ranges of this array that can be sent once the frontier passes them.
 * W[l] is dout x din (row r holds the weights into output unit r).
 */
#ifndef RDX_TRAINER_MLP_H
#define RDX_TRAINER_MLP_H

#include <stddef.h>
#include <stdint.h>

#define MLP_MAX_LAYERS 16

typedef struct mlp_layer {
    int din, dout;
    size_t b_off, w_off; /* offsets into params / grads */
} mlp_layer_t;

/*
 * Called during backward whenever the frontier moves, and between BLAS calls that do not
 * move it, so communication can be driven from inside backward. Nonzero return aborts.
 */
typedef int (*mlp_hook_t)(void *ctx, size_t ready);

typedef struct mlp {
    int nlayers;
    mlp_layer_t layer[MLP_MAX_LAYERS];
    size_t nparams;
    float *params;
    float *grads;
    int cap;                           /* max rows per forward/backward */
    const float *input;                /* rows x layer[0].din, owned by the caller */
    float *act[MLP_MAX_LAYERS + 1];    /* act[l+1]: output of layer l (last: logits/probs) */
    float *dz, *da;                    /* backward scratch, cap x widest layer */
    size_t gemm_flops;                 /* split sgemm into pieces of about this many flops */
} mlp_t;

/* dims[0..ndims-1], e.g. {784, 512, 512, 10}. Returns -1 on bad dims or no memory. */
int mlp_create(mlp_t *m, const int *dims, int ndims, int cap);
void mlp_destroy(mlp_t *m);

/* He-normal weights, zero biases, from the seed (every rank could do it; rank 0's win). */
void mlp_init_params(mlp_t *m, uint64_t seed);

/* Forward on rows samples (x: rows x din). Leaves logits in act[nlayers]. */
void mlp_forward(mlp_t *m, const float *x, int rows);

/*
 * After mlp_forward: softmax in place, returns the summed cross-entropy (double), counts
 * correct argmax predictions into *correct, and sets dz = (probs - onehot) * scale, the
 * gradient of scale * sum(loss) with respect to the logits.
 */
double mlp_loss(mlp_t *m, const uint8_t *labels, int rows, float scale, int *correct);

/* Summed cross-entropy and correct count only (evaluation; no dz). */
double mlp_eval(mlp_t *m, const uint8_t *labels, int rows, int *correct);

/*
 * Backward from dz (set by mlp_loss) into grads: overwrite, or add when accumulate is set.
 * hook may be NULL. Returns 0, or the hook's nonzero value.
 */
int mlp_backward(mlp_t *m, int rows, int accumulate, mlp_hook_t hook, void *ctx);

/* True when the flat element at off belongs to a bias (no weight decay there). */
int mlp_is_bias_range(const mlp_t *m, size_t off, size_t *run);

#endif
