/*
 * The second half of `rdx-info --calibrate`: times every allreduce algorithm, forced, at
 * rdx_coll_fit_bytes and stores measured / predicted per algorithm and size in the model
 * (select.c interpolates between the sizes). The first half (collectives/calibrate.c)
 * measures alpha, overhead, beta and gamma with raw transport messages; this half runs the
 * real collectives through the public API, so what the formulas leave out (cache against
 * memory, how each algorithm's steps use the transport, descheduling) is in the factor.
 *
 * Timing: float32 sum, out of place, from an 8 MiB vector that every rank has touched.
 * Batches rotate the order of the algorithms (so a noisy stretch of the host does not land
 * on one algorithm); a batch runs each (algorithm, size) for about FIT_BATCH_S, and the time
 * of a call is the slowest rank's mean (a max-allreduce, so every rank agrees). The factor
 * is the median over batches divided by the formula's time for the chunk auto would give
 * that algorithm.
 */
#include "tools/calibrate_fit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/comm.h"
#include "src/log.h"

#define FIT_BATCHES 7
#define FIT_BATCH_S 15e-3
#define FIT_MAX_ITERS 200

static const int k_fit_settings[RDX_COLL_FIT_ALGOS] = {RDX_ALGO_RING, RDX_ALGO_TREE,
                                                       RDX_ALGO_RD, RDX_ALGO_RABENSEIFNER};

static double fit_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fit_force(rdx_comm_t *comm, int setting)
{
    comm->settings.algo = setting;
    rdx_coll_cache_build(&comm->ctx, setting); /* the per-call path is the cached one */
}

/* Seconds per call of `iters` allreduces of `bytes`, the slowest rank's mean. */
static rdx_status_t fit_time(rdx_comm_t *comm, const float *src, float *dst, size_t bytes,
                             int iters, double *sec)
{
    size_t count = bytes / sizeof(float);
    RDX_CHECK(rdx_barrier(comm));
    double t0 = fit_now();
    for (int i = 0; i < iters; i++)
        RDX_CHECK(rdx_allreduce(comm, src, dst, count, RDX_FLOAT32, RDX_SUM));
    double t = (fit_now() - t0) / iters;
    RDX_CHECK(rdx_allreduce(comm, &t, sec, 1, RDX_FLOAT64, RDX_MAX));
    return RDX_SUCCESS;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The timing loop; meas[a][k][b] in seconds. */
static rdx_status_t fit_measure(rdx_comm_t *comm, const float *src, float *dst,
                                double meas[RDX_COLL_FIT_ALGOS][RDX_COLL_FIT_SIZES][FIT_BATCHES])
{
    int iters[RDX_COLL_FIT_ALGOS][RDX_COLL_FIT_SIZES];
    /* Warm-up call per (algorithm, size), which also sets how many calls fill a batch. */
    for (int a = 0; a < RDX_COLL_FIT_ALGOS; a++) {
        fit_force(comm, k_fit_settings[a]);
        for (int k = 0; k < RDX_COLL_FIT_SIZES; k++) {
            double t;
            RDX_CHECK(fit_time(comm, src, dst, rdx_coll_fit_bytes[k], 1, &t));
            RDX_CHECK(fit_time(comm, src, dst, rdx_coll_fit_bytes[k], 1, &t));
            double n = FIT_BATCH_S / (t > 1e-9 ? t : 1e-9);
            iters[a][k] = n < 1 ? 1 : n > FIT_MAX_ITERS ? FIT_MAX_ITERS : (int)n;
        }
    }
    for (int b = 0; b < FIT_BATCHES; b++)
        for (int i = 0; i < RDX_COLL_FIT_ALGOS; i++) {
            int a = (i + b) % RDX_COLL_FIT_ALGOS;
            fit_force(comm, k_fit_settings[a]);
            for (int k = 0; k < RDX_COLL_FIT_SIZES; k++)
                RDX_CHECK(fit_time(comm, src, dst, rdx_coll_fit_bytes[k], iters[a][k],
                                   &meas[a][k][b]));
        }
    return RDX_SUCCESS;
}

rdx_status_t rdx_info_fit(rdx_comm_t *comm, rdx_coll_model_t *m, FILE *report)
{
    /* Every rank must force the same chunks: rank 0's probe result is the model for all. */
    RDX_CHECK(rdx_broadcast(comm, m, m, sizeof(*m), RDX_UINT8, 0));
    m->fit_ranks = 0;
    comm->ctx.model = *m; /* the formulas alone, for the chunks and the predictions */
    size_t max = rdx_coll_fit_bytes[RDX_COLL_FIT_SIZES - 1];
    float *src = malloc(max), *dst = malloc(max);
    static double meas[RDX_COLL_FIT_ALGOS][RDX_COLL_FIT_SIZES][FIT_BATCHES];
    int saved = comm->settings.algo;
    rdx_status_t st = RDX_ERR_NO_MEMORY;
    if (src && dst) {
        for (size_t i = 0; i < max / sizeof(float); i++)
            src[i] = (float)(i % 7);
        memset(dst, 0, max);
        st = fit_measure(comm, src, dst, meas);
    }
    free(src);
    free(dst);
    fit_force(comm, saved);
    if (st != RDX_SUCCESS)
        return st;
    if (report && comm->rank == 0)
        fprintf(report, "  fit (measured / formula; measured us), %d ranks:\n", comm->size);
    for (int a = 0; a < RDX_COLL_FIT_ALGOS; a++) {
        const char *name = NULL;
        if (report && comm->rank == 0)
            fprintf(report, "   ");
        for (int k = 0; k < RDX_COLL_FIT_SIZES; k++) {
            qsort(meas[a][k], FIT_BATCHES, sizeof(double), cmp_double);
            double t = meas[a][k][FIT_BATCHES / 2];
            rdx_coll_choice_t c = rdx_coll_choose(&comm->ctx, k_fit_settings[a],
                                                  RDX_COLL_ALLREDUCE, rdx_coll_fit_bytes[k]);
            name = c.algo->name;
            m->fit[a][k] = (float)(c.predicted_us > 0 ? t * 1e6 / c.predicted_us : 1);
            if (report && comm->rank == 0)
                fprintf(report, " %zuB %.2f (%.1f)", rdx_coll_fit_bytes[k], (double)m->fit[a][k],
                        t * 1e6);
        }
        if (report && comm->rank == 0)
            fprintf(report, "  %s\n", name);
    }
    m->fit_ranks = comm->size;
    return RDX_SUCCESS;
}
