#include "ddp.h"

#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coll.h"
#include "half.h"
#include "topk.h"

/*
 * Waiting. rdx_wait spins RDX_SPIN_US and then blocks in the transport; with ranks sharing
 * cores that costs about a scheduler tick per ring step, and measured 3-4x slower steps
 * here than polling (rdx_progress + rdx_test). But polling is not free either: on this
 * machine a CPU that polls slows the other CPU's sgemm (docs/trainer.md). So the poller
 * yields for DDP_SPIN_MS after the last sign of progress, then naps for a quarter of the
 * time it has been idle (20 to 100 us; longer naps starved UCX TCP): late progress costs
 * at most ~25 % more wait, long waits few wake-ups. The helper does not poll at all while
 * nothing is in flight: it sleeps until backward passes the next bucket. The deadline still
 * bounds every wait: after DDP_POLL_MS without a completion the poller falls back to
 * rdx_wait, which fails after RDX_TIMEOUT_MS without progress.
 */
#define DDP_SPIN_MS 0.05
#define DDP_NAP_MIN_MS 0.02
#define DDP_NAP_MAX_MS 0.1
#define DDP_NAP_FRACTION 0.25
#define DDP_POLL_MS 1000.0

double ddp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static const char *ddp_wire_name(const ddp_t *d)
{
    if (d->cfg.topk > 0)
        return "top-k";
    return d->cfg.wire == DDP_WIRE_FP16 ? "fp16" : d->cfg.wire == DDP_WIRE_BF16 ? "bf16" : "fp32";
}

/* Prints the first failure with the bucket and operation; later calls are no-ops. */
static void ddp_fail(ddp_t *d, rdx_status_t st, const char *op, int i)
{
    if (atomic_exchange(&d->failed, 1))
        return;
    char what[160];
    if (i < d->nbuckets)
        snprintf(what, sizeof what, "%s (gradient bucket %d of %d, %zu %s values)", op, i,
                 d->nbuckets, d->b[i].count, ddp_wire_name(d));
    else
        snprintf(what, sizeof what, "%s (loss sum after the %d gradient buckets)", op,
                 d->nbuckets);
    coll_report(d->comm, st, what);
}

/* ---- plan --------------------------------------------------------------------------- */

/* A quarter-size first bucket, then full ones; a tail smaller than a quarter joins the
 * last bucket. Without overlap: one bucket. */
static int ddp_buckets_plan(ddp_t *d)
{
    size_t cap = (size_t)(d->cfg.bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    if (!d->cfg.overlap || cap == 0 || cap >= d->n)
        cap = d->n;
    size_t quarter = cap / 4 ? cap / 4 : 1;
    int nb = 0;
    for (size_t off = 0; off < d->n; nb++)
        off += nb == 0 ? quarter : cap;
    d->b = calloc((size_t)nb, sizeof *d->b);
    if (!d->b)
        return -1;
    for (size_t off = 0; off < d->n; d->nbuckets++) {
        size_t want = d->nbuckets == 0 ? quarter : cap, left = d->n - off;
        if (want > left || left - want < quarter)
            want = left;
        d->b[d->nbuckets].off = off;
        d->b[d->nbuckets].count = want;
        off += want;
    }
    return 0;
}

static int ddp_topk_alloc(ddp_t *d)
{
    d->resid = calloc(d->n, sizeof(float));
    d->mag = malloc(d->n * sizeof(float));
    if (!d->resid || !d->mag)
        return -1;
    for (int i = 0; i < d->nbuckets; i++) {
        ddp_bucket_t *b = &d->b[i];
        double k = ceil(d->cfg.topk * (double)b->count);
        b->k = k < 1 ? 1 : k > (double)b->count ? b->count : (size_t)k;
        b->gather = calloc((size_t)d->size * 2 * b->k, sizeof(uint32_t));
        if (!b->gather)
            return -1;
    }
    return 0;
}

/* ---- one bucket: pack and start, finish and unpack ---------------------------------- */

static uint64_t ddp_bucket_wire_bytes(const ddp_t *d, const ddp_bucket_t *b)
{
    if (d->cfg.topk > 0)  /* every rank's (index, value) pairs, allgathered */
        return coll_allgather_wire_bytes((size_t)d->size * 2 * b->k * 4, d->size);
    return coll_allreduce_wire_bytes(b->count * (d->cfg.wire == DDP_WIRE_FP32 ? 4 : 2),
                                     d->size);
}

uint64_t ddp_step_wire_bytes(const ddp_t *d)
{
    uint64_t sum = 0;
    for (int i = 0; i < d->nbuckets; i++)
        sum += ddp_bucket_wire_bytes(d, &d->b[i]);
    return sum;
}

/* Top-k with error feedback: acc = resid + g; send the k largest |acc|; resid = acc - sent. */
static rdx_status_t ddp_topk_start(ddp_t *d, ddp_bucket_t *b)
{
    float *acc = d->resid + b->off;
    const float *g = d->grad + b->off;
    for (size_t i = 0; i < b->count; i++)
        acc[i] += g[i];
    uint32_t *idx = b->gather + (size_t)d->rank * 2 * b->k;
    topk_take(acc, d->mag + b->off, b->count, b->k, idx, idx + b->k);
    return coll_allgather_start(d->comm, b->gather, 2 * b->k, &b->req);
}

/* Sums every rank's pairs into the bucket (same order on every rank), then averages. */
static rdx_status_t ddp_topk_finish(ddp_t *d, ddp_bucket_t *b)
{
    float *g = d->grad + b->off;
    memset(g, 0, b->count * sizeof(float));
    for (int r = 0; r < d->size; r++) {
        const uint32_t *idx = b->gather + (size_t)r * 2 * b->k, *val = idx + b->k;
        for (size_t j = 0; j < b->k; j++) {
            float v;
            if (idx[j] >= b->count)
                return RDX_ERR_INTERNAL; /* a corrupted gather: never write out of range */
            memcpy(&v, &val[j], sizeof v);
            g[idx[j]] += v;
        }
    }
    float s = 1.0f / (float)d->size;
    for (size_t i = 0; i < b->count; i++)
        g[i] *= s;
    return RDX_SUCCESS;
}

static void ddp_bucket_start(ddp_t *d, int i)
{
    ddp_bucket_t *b = &d->b[i];
    float *g = d->grad + b->off;
    rdx_status_t st;
    if (d->cfg.topk > 0) {
        st = ddp_topk_start(d, b);
    } else if (d->cfg.wire == DDP_WIRE_FP32) {
        st = rdx_iallreduce(d->comm, g, g, b->count, RDX_FLOAT32, RDX_AVG, &b->req);
    } else {
        /* Round each rank's share to half, SUM on the wire, divide in fp32 afterwards. */
        uint16_t *w = d->wire16 + b->off;
        int fp16 = d->cfg.wire == DDP_WIRE_FP16;
        (fp16 ? half_pack : bf16_pack)(w, g, b->count, 1.0f);
        st = rdx_iallreduce(d->comm, w, w, b->count, fp16 ? RDX_FLOAT16 : RDX_BFLOAT16,
                            RDX_SUM, &b->req);
    }
    if (st != RDX_SUCCESS) {
        b->req = NULL;
        ddp_fail(d, st, d->cfg.topk > 0 ? "iallgather (top-k pairs)" : "iallreduce", i);
        return;
    }
    if (i == 0)
        d->t_first = ddp_now_ms();
    d->bytes += ddp_bucket_wire_bytes(d, b);
    d->started = i + 1;
}

/* rdx_wait (immediate if already complete), unpack, publish. */
static void ddp_bucket_finish(ddp_t *d, int i)
{
    ddp_bucket_t *b = &d->b[i];
    rdx_status_t st = rdx_wait(b->req);
    b->req = NULL;
    if (st != RDX_SUCCESS) {
        ddp_fail(d, st, "wait", i);
        return;
    }
    d->t_last = ddp_now_ms();
    if (d->cfg.topk > 0)
        st = ddp_topk_finish(d, b);
    else if (d->cfg.wire != DDP_WIRE_FP32)
        (d->cfg.wire == DDP_WIRE_FP16 ? half_unpack : bf16_unpack)(
            d->grad + b->off, d->wire16 + b->off, b->count, 1.0f / (float)d->size);
    if (st != RDX_SUCCESS) {
        ddp_fail(d, st, "top-k unpack: index out of range", i);
        return;
    }
    atomic_store_explicit(&d->finished, i + 1, memory_order_release);
}

/* ---- the driver: whoever owns the communicator runs these ---------------------------- */

/* The step's last operation, behind the buckets: the caller's scalars, FLOAT64 SUM. */
static void ddp_scalars_start(ddp_t *d)
{
    if (d->nscalars == 0) {
        d->started = d->nbuckets + 1; /* nothing to send: finishes at once */
        return;
    }
    rdx_status_t st = rdx_iallreduce(d->comm, d->scalars, d->scalars, (size_t)d->nscalars,
                                     RDX_FLOAT64, RDX_SUM, &d->scalar_req);
    if (st != RDX_SUCCESS) {
        d->scalar_req = NULL;
        ddp_fail(d, st, "iallreduce", d->nbuckets);
        return;
    }
    d->started = d->nbuckets + 1;
}

/* Starts every bucket the frontier has passed, then the scalars once it is at the end. */
static void ddp_drive_start(ddp_t *d, size_t ready)
{
    while (!atomic_load(&d->failed) && d->started < d->nbuckets &&
           d->b[d->started].off + d->b[d->started].count <= ready)
        ddp_bucket_start(d, d->started);
    if (!atomic_load(&d->failed) && d->started == d->nbuckets && ready >= d->n)
        ddp_scalars_start(d);
}

static rdx_request_t *ddp_op_req(const ddp_t *d, int i)
{
    return i < d->nbuckets ? d->b[i].req : d->scalar_req;
}

/* rdx_wait (immediate once complete) and publish operation i: a bucket or the scalars. */
static void ddp_op_finish(ddp_t *d, int i)
{
    if (i < d->nbuckets) {
        ddp_bucket_finish(d, i);
        return;
    }
    rdx_status_t st = d->scalar_req ? rdx_wait(d->scalar_req) : RDX_SUCCESS;
    d->scalar_req = NULL;
    if (st != RDX_SUCCESS)
        ddp_fail(d, st, "wait", i);
    else
        atomic_store_explicit(&d->finished, i + 1, memory_order_release);
}

/* Drives the library and finishes, in issue order, every operation that completed.
 * Returns 1 if one finished. */
static int ddp_drive_poll(ddp_t *d)
{
    int fin = atomic_load_explicit(&d->finished, memory_order_relaxed), any = 0;
    if (fin == d->started || atomic_load(&d->failed))
        return 0;
    rdx_status_t st = rdx_progress(d->comm);
    while (st == RDX_SUCCESS && fin < d->started && !atomic_load(&d->failed)) {
        rdx_request_t *req = ddp_op_req(d, fin);
        int done = req == NULL; /* the scalars, when there are none */
        if (req)
            st = rdx_test(req, &done);
        if (st != RDX_SUCCESS || !done)
            break;
        ddp_op_finish(d, fin++);
        any = 1;
    }
    if (st != RDX_SUCCESS)
        ddp_fail(d, st, "progress", fin);
    return any;
}

/* ---- progress thread ---------------------------------------------------------------- */

/* Yields while idle for less than DDP_SPIN_MS, then naps a quarter of the idle time. */
static void ddp_idle(double idle_ms)
{
    if (idle_ms < DDP_SPIN_MS) {
        sched_yield();
        return;
    }
    double nap = idle_ms * DDP_NAP_FRACTION;
    nap = nap < DDP_NAP_MIN_MS ? DDP_NAP_MIN_MS : nap > DDP_NAP_MAX_MS ? DDP_NAP_MAX_MS : nap;
    struct timespec ts = {0, (long)(nap * 1e6)};
    nanosleep(&ts, NULL);
}

/* Frontier offset the next operation to start waits for (the scalars wait for the end). */
static size_t ddp_next_need(const ddp_t *d)
{
    return d->started < d->nbuckets ? d->b[d->started].off + d->b[d->started].count : d->n;
}

/* Helper thread, nothing in flight: sleep until backward passes `need` (ddp_hook wakes). */
static void ddp_thread_await_frontier(ddp_t *d, size_t need)
{
    pthread_mutex_lock(&d->mu);
    while (atomic_load_explicit(&d->ready, memory_order_acquire) < need && !d->quit &&
           !atomic_load(&d->failed))
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

/*
 * Drives until operation `last` is finished (a bucket, or nbuckets: the scalars), starting
 * buckets as the frontier (d->ready) passes them. Runs on whichever thread owns the
 * communicator.
 */
static void ddp_drive_until(ddp_t *d, int last)
{
    double since = ddp_now_ms();
    while (!atomic_load(&d->failed) && !atomic_load(&d->quit) &&
           atomic_load_explicit(&d->finished, memory_order_relaxed) <= last) {
        int before = d->started;
        ddp_drive_start(d, atomic_load_explicit(&d->ready, memory_order_acquire));
        double now = ddp_now_ms();
        if (ddp_drive_poll(d) || d->started != before) {
            since = now;
            continue;
        }
        int head = atomic_load_explicit(&d->finished, memory_order_relaxed);
        if (d->cfg.progress_thread && head == d->started) {
            ddp_thread_await_frontier(d, ddp_next_need(d));
            since = ddp_now_ms();
        } else if (now - since > DDP_POLL_MS && head < d->started) {
            ddp_op_finish(d, head); /* blocking, under the library's deadline */
            since = ddp_now_ms();
        } else {
            ddp_idle(now - since);
        }
    }
}

static void *ddp_thread_main(void *arg)
{
    ddp_t *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->job && !d->quit)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->quit)
            break;
        pthread_mutex_unlock(&d->mu);
        ddp_drive_until(d, d->nbuckets); /* the buckets, then the scalars */
        pthread_mutex_lock(&d->mu);
        d->job = 0; /* no rdx call from here on: the training thread may take over */
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Hands the communicator to the helper for this step's buckets (once per step). */
static void ddp_thread_hand_over(ddp_t *d)
{
    pthread_mutex_lock(&d->mu);
    d->job = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Wakes a helper waiting for the frontier, once per bucket boundary crossed (and at the
 * end, for the scalars): a handful of futex wakes per step instead of polling. */
static void ddp_thread_wake(ddp_t *d, size_t ready)
{
    int crossed = 0;
    while (d->wake_next < d->nbuckets &&
           d->b[d->wake_next].off + d->b[d->wake_next].count <= ready) {
        d->wake_next++;
        crossed = 1;
    }
    if (d->wake_next == d->nbuckets && ready >= d->n) {
        d->wake_next++; /* the scalars */
        crossed = 1;
    }
    if (crossed) {
        pthread_mutex_lock(&d->mu);
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
    }
}

/* Waits until the helper is done with the communicator. */
static void ddp_thread_take_back(ddp_t *d)
{
    pthread_mutex_lock(&d->mu);
    while (d->job)
        pthread_cond_wait(&d->cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

/* ---- public ------------------------------------------------------------------------- */

rdx_status_t ddp_create(ddp_t *d, rdx_comm_t *comm, float *grad, size_t n,
                        const ddp_config_t *cfg)
{
    memset(d, 0, sizeof *d);
    d->comm = comm;
    d->rank = rdx_comm_rank(comm);
    d->size = rdx_comm_size(comm);
    d->cfg = *cfg;
    if (!cfg->overlap)
        d->cfg.progress_thread = 0;
    d->grad = grad;
    d->n = n;
    int rc = ddp_buckets_plan(d);
    if (rc == 0 && cfg->topk > 0)
        rc = ddp_topk_alloc(d);
    else if (rc == 0 && cfg->wire != DDP_WIRE_FP32)
        rc = (d->wire16 = malloc(n * sizeof(uint16_t))) ? 0 : -1;
    if (rc == 0 && d->cfg.progress_thread) {
        pthread_mutex_init(&d->mu, NULL);
        pthread_cond_init(&d->cv, NULL);
        rc = pthread_create(&d->thread, NULL, ddp_thread_main, d);
        d->thread_up = rc == 0;
    }
    if (rc) {
        ddp_destroy(d);
        return RDX_ERR_NO_MEMORY;
    }
    return RDX_SUCCESS;
}

void ddp_destroy(ddp_t *d)
{
    if (d->thread_up) {
        pthread_mutex_lock(&d->mu);
        d->quit = 1;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
    }
    if (d->scalar_req)
        rdx_wait(d->scalar_req);
    for (int i = 0; i < d->nbuckets; i++) {
        if (d->b[i].req)
            rdx_wait(d->b[i].req); /* never free memory the library may still write */
        free(d->b[i].gather);
    }
    free(d->b);
    free(d->mag);
    free(d->resid);
    free(d->wire16);
    memset(d, 0, sizeof *d);
}

void ddp_set_scalars(ddp_t *d, double *v, int n)
{
    d->scalars = v;
    d->nscalars = n;
}

rdx_status_t ddp_wait_scalars(ddp_t *d)
{
    return ddp_wait(d, d->nbuckets);
}

void ddp_begin(ddp_t *d, int active, int new_step)
{
    d->active = active;
    if (!new_step)
        return;
    memset(&d->stats, 0, sizeof d->stats);
    d->started = 0;
    d->bytes = 0;
    d->t_first = d->t_last = 0;
    d->wake_next = 0;
    atomic_store(&d->finished, 0);
    atomic_store(&d->ready, 0);
}

int ddp_hook(void *ctx, size_t ready)
{
    ddp_t *d = ctx;
    if (!d->active || !d->cfg.overlap)
        return 0;
    if (d->cfg.progress_thread) {
        /* release: the gradient written so far is visible to the helper with the frontier */
        if (atomic_exchange_explicit(&d->ready, ready, memory_order_release) == 0)
            ddp_thread_hand_over(d);
        else
            ddp_thread_wake(d, ready);
        return atomic_load(&d->failed);
    }
    double t0 = ddp_now_ms();
    ddp_drive_start(d, ready);
    ddp_drive_poll(d);
    d->stats.exposed_ms += ddp_now_ms() - t0;
    return atomic_load(&d->failed);
}

rdx_status_t ddp_flush(ddp_t *d)
{
    if (d->cfg.progress_thread) {
        if (atomic_exchange_explicit(&d->ready, d->n, memory_order_release) == 0)
            ddp_thread_hand_over(d);
        else
            ddp_thread_wake(d, d->n);
        return atomic_load(&d->failed) ? RDX_ERR_TRANSPORT : RDX_SUCCESS;
    }
    double t0 = ddp_now_ms();
    atomic_store_explicit(&d->ready, d->n, memory_order_relaxed);
    ddp_drive_start(d, d->n);
    d->stats.exposed_ms += ddp_now_ms() - t0;
    for (int i = 0; !d->cfg.overlap && i < d->nbuckets; i++)
        ddp_wait(d, i);
    return atomic_load(&d->failed) ? RDX_ERR_TRANSPORT : RDX_SUCCESS;
}

/* Publishes the step's communication figures once the last bucket is in. */
static void ddp_stats_close(ddp_t *d)
{
    d->stats.comm_ms = d->t_last - d->t_first;
    d->stats.bytes_sent = d->bytes;
}

rdx_status_t ddp_wait(ddp_t *d, int i)
{
    double t0 = ddp_now_ms();
    if (d->cfg.progress_thread) {
        /* acquire: the helper's unpacked gradient is visible once the counter passes i */
        double since = t0;
        while (atomic_load_explicit(&d->finished, memory_order_acquire) <= i &&
               !atomic_load(&d->failed))
            ddp_idle(ddp_now_ms() - since);
        if (i == d->nbuckets || atomic_load(&d->failed))
            ddp_thread_take_back(d);
    } else {
        ddp_drive_until(d, i);
    }
    d->stats.exposed_ms += ddp_now_ms() - t0;
    if (i == d->nbuckets - 1)
        ddp_stats_close(d);
    return atomic_load(&d->failed) ? RDX_ERR_TRANSPORT : RDX_SUCCESS;
}
