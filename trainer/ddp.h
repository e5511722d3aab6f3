/*
 * Data-parallel gradient averaging, overlapped with backward.
 *
 * The flat gradient (mlp.h: reverse layer order, so backward fills it front to back) is
 * cut into buckets: a small first one (a quarter of --bucket-mb) so communication starts
 * early, then --bucket-mb each, as PyTorch DDP does. During backward the model calls
 * ddp_hook with its frontier; every bucket the frontier has passed is started at once
 * (rdx_iallreduce) and driven while the earlier layers' backward runs. The optimizer then
 * calls ddp_wait(b) for bucket b just before applying it: it waits only for what it is
 * about to use. A few scalars (loss sum, stop flag) follow the last bucket.
 *
 *   backward:  [L2 b,W   ][ L1 b,W: row pieces ][ L0 b,W: row pieces            ]
 *   buckets:    b0 ->       b1 ------>  b2 ------->   b3 ------>   b4 ---->  scalars
 *   optimizer:                                                    w(b0) w(b1) ... w(b4)
 *
 * Wire formats: fp32 (AVG), fp16/bf16 (each rank rounds its gradient, SUM, then /n in
 * fp32), top-k (each rank sends the k largest |g + residual| of a bucket as (index, value)
 * pairs via an allgather; what is not sent stays in the residual: error feedback).
 * With overlap off, one bucket holds everything and is reduced after backward.
 *
 * Who drives the library (rdx allows one thread per communicator at a time):
 *  - progress "thread" (default): a helper thread. The hook only publishes the frontier
 *    (an atomic store, plus a condition-variable wake when it crosses a bucket boundary)
 *    and ddp_wait watches a counter. The helper owns the communicator from the first hook
 *    call of an active backward (or ddp_flush) until ddp_wait_scalars returns: the caller
 *    must not use the communicator in between. Between steps the helper sleeps.
 *  - progress "calls": the training thread, from the hook between sgemm pieces, and in
 *    ddp_wait.
 * Either way waiting polls (rdx_progress, rdx_test) with yields and growing naps rather
 * than rdx_wait; ddp.c says why.
 */
#ifndef RDX_TRAINER_DDP_H
#define RDX_TRAINER_DDP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rdx/rdx.h"

typedef enum { DDP_WIRE_FP32 = 0, DDP_WIRE_FP16, DDP_WIRE_BF16 } ddp_wire_t;

typedef struct ddp_config {
    int overlap;         /* start buckets from inside backward */
    int wire;            /* ddp_wire_t */
    double topk;         /* 0: dense; else the fraction of each bucket a rank sends */
    double bucket_mb;    /* bucket size (MiB of fp32 gradient); the first is a quarter */
    int progress_thread; /* drive the library from a helper thread instead of the hook */
} ddp_config_t;

typedef struct ddp_bucket {
    size_t off, count;   /* range of the flat gradient */
    size_t k;            /* top-k: pairs sent per rank */
    uint32_t *gather;    /* top-k: n slices of k indices then k value bit patterns */
    rdx_request_t *req;  /* in flight until ddp_wait */
} ddp_bucket_t;

/* Per optimizer step; reset by ddp_begin(d, 1, 1). */
typedef struct ddp_stats {
    double comm_ms;      /* first bucket start to the last one seen complete */
    double exposed_ms;   /* calling-thread time in communication code (start, pack,
                            progress, wait, unpack): what communication added to the step */
    uint64_t bytes_sent; /* by this rank, ring-allreduce model (coll_allreduce_wire_bytes) */
} ddp_stats_t;

typedef struct ddp {
    rdx_comm_t *comm;
    int rank, size;
    ddp_config_t cfg;
    float *grad;         /* the model's flat gradient (not owned) */
    size_t n;
    int nbuckets;
    ddp_bucket_t *b;
    int active;          /* this backward's gradients are to be reduced */
    int started;         /* operations started in this step (driver only): the buckets,
                            then the scalars as operation number nbuckets */
    atomic_int finished; /* operations [0, finished) are done (buckets averaged in grad) */
    atomic_size_t ready; /* backward's frontier, published to the helper thread */
    atomic_int failed;   /* the driver hit an error (printed where it happened) */
    double *scalars;     /* summed over ranks behind the last bucket (caller's buffer) */
    int nscalars;
    rdx_request_t *scalar_req;
    uint16_t *wire16;    /* fp16/bf16 wire copy of the gradient */
    float *resid;        /* top-k error feedback, n elements */
    float *mag;          /* top-k selection scratch */
    double t_first, t_last;   /* driver: first start, last completion (ms) */
    uint64_t bytes;           /* driver: bytes sent this step */
    ddp_stats_t stats;
    /* progress thread */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int thread_up;
    int job;             /* under mu: the helper owns the communicator for this step */
    int wake_next;       /* training thread: next operation whose start wakes the helper */
    atomic_int quit;     /* set under mu; also read by the helper's loops */
} ddp_t;

rdx_status_t ddp_create(ddp_t *d, rdx_comm_t *comm, float *grad, size_t n,
                        const ddp_config_t *cfg);
void ddp_destroy(ddp_t *d);

/* Before each backward. active: reduce after this backward (last micro-batch of a step);
 * new_step: first micro-batch of a step (resets stats). */
void ddp_begin(ddp_t *d, int active, int new_step);

/* mlp_hook_t: starts buckets the frontier passed and drives progress (or tells the helper
 * thread). Nonzero on failure. */
int ddp_hook(void *ctx, size_t ready);

/* After backward of the last micro-batch: starts what is left (all of it without overlap,
 * and then also waits for it). */
rdx_status_t ddp_flush(ddp_t *d);

/* Waits for bucket i; on return grad[off, off+count) holds the average over ranks. */
rdx_status_t ddp_wait(ddp_t *d, int i);

/*
 * A few doubles (the loss sum, a stop flag) to sum over ranks as the step's last operation,
 * right behind the last bucket and driven like it: no extra round trip at the end of the
 * step. Set before the backward that reduces; v must stay valid until ddp_wait_scalars,
 * which waits for it after the optimizer and gives the communicator back to the caller.
 */
void ddp_set_scalars(ddp_t *d, double *v, int n);
rdx_status_t ddp_wait_scalars(ddp_t *d);

/* Wire bytes one step sends when every bucket goes out (for reports). */
uint64_t ddp_step_wire_bytes(const ddp_t *d);

double ddp_now_ms(void);

#endif
