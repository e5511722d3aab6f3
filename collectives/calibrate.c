/*
 * The calibration probe behind `rdx-info --calibrate`: measures the cost model's inputs on
 * the transport in use, over the same FIFO interface the collectives use (so it measures
 * what they will see, slot copies included).
 *
 *   alpha     time per round of a dissemination exchange of empty messages (round k: send to
 *             r + 2^k, receive from r - 2^k, every rank at once): with two ranks half a
 *             ping-pong; with more ranks than cores it includes the descheduling a collective
 *             step sees. Every rank is busy at once, as in every algorithm's steps (a ring
 *             step, a tree level, a recursive-doubling exchange): a token passed around the
 *             ranks one at a time measured up to 10x more per hop on an oversubscribed host
 *             (each hop waits for one particular rank to be scheduled), so the model chose
 *             the fewest-hop algorithm far beyond the sizes where it wins (docs/algorithms.md)
 *   overhead  time per message of a stream of empty messages both ways at once (as many in
 *             flight as credits allow), i.e. what one more pipelined message costs
 *   beta      time per byte of a stream of slot-sized messages both ways at once, the sender
 *             copying a 32 MiB vector into the slots and the receiver copying out into
 *             another (as a collective on a large vector does: memory, not cache)
 *   gamma     time per byte of a float32 sum of two 32 MiB vectors (local, rank 0)
 * Each is the median of several short batches (gamma: the best); the whole probe takes
 * well under a second on shared memory. The exchanges run in all pairs (0,1), (2,3), ... at
 * the same time, the rounds among all ranks: run the probe with the layout the jobs use
 * (ranks per host). Rank 0's values are the result.
 */
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "collectives/coll_util.h"

#define PROBE_TAG 0xCA11B8A7ull
#define PROBE_BATCHES 5
#define PROBE_SPIN_S 50e-6

static double probe_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct probe {
    const rdx_coll_ctx_t *ctx;
    int peer, peer_tp;          /* the pair partner (rank ^ 1), or -1 */
    double deadline;
    unsigned char *src, *dst;   /* payload source (sender) and sink (receiver) */
} probe_t;

static uint64_t probe_tag(int phase, uint64_t i)
{
    return (PROBE_TAG << 32) | ((uint64_t)phase << 24) | (i & 0xffffff);
}

static rdx_status_t probe_progress(probe_t *p)
{
    const rdx_coll_ctx_t *ctx = p->ctx;
    return ctx->tp_ops->progress ? ctx->tp_ops->progress(ctx->tp) : RDX_SUCCESS;
}

/* Nothing arrived (or no credit) even after a progress call: spin briefly, then let the
 * transport yield or block. The caller calls progress again before it looks again, so a
 * message that the progress call itself delivered is seen before any sleep. */
static rdx_status_t probe_wait(probe_t *p, int peer, double since)
{
    const rdx_coll_ctx_t *ctx = p->ctx;
    double t = probe_now();
    if (t > p->deadline)
        return rdx_err(RDX_ERR_TIMEOUT, "rank %d: calibration: peer %d did not answer in time",
                       ctx->rank, peer);
    if (t - since > PROBE_SPIN_S) {
        if (ctx->tp_ops->idle)
            RDX_CHECK(ctx->tp_ops->idle(ctx->tp, 1000));
        else
            sched_yield();
    }
    return RDX_SUCCESS;
}

static rdx_status_t probe_send(probe_t *p, int peer, size_t len, uint64_t tag)
{
    const rdx_coll_ctx_t *ctx = p->ctx;
    int tp = rdx_coll_peer(ctx, peer);
    double since = probe_now();
    for (;;) {
        void *slot;
        RDX_CHECK(ctx->tp_ops->send_acquire(ctx->tp, tp, &slot));
        if (slot) {
            if (len)
                memcpy(slot, p->src, len);
            RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, tp, len, tag));
            return probe_progress(p); /* start moving it now */
        }
        RDX_CHECK(probe_wait(p, peer, since));
        RDX_CHECK(probe_progress(p));
    }
}

static rdx_status_t probe_recv(probe_t *p, int peer, size_t len, uint64_t tag)
{
    const rdx_coll_ctx_t *ctx = p->ctx;
    int tp = rdx_coll_peer(ctx, peer);
    double since = probe_now();
    for (;;) {
        const void *buf;
        size_t got;
        uint64_t t;
        RDX_CHECK(ctx->tp_ops->recv_peek(ctx->tp, tp, &buf, &got, &t));
        if (buf) {
            if (t != tag || got != len)
                return rdx_err(RDX_ERR_MISMATCH, "rank %d: calibration: peer %d sent tag "
                               "%016llx len %zu, expected %016llx len %zu: every rank must run "
                               "the probe", ctx->rank, peer, (unsigned long long)t, got,
                               (unsigned long long)tag, len);
            if (len)
                memcpy(p->dst, buf, len);
            return ctx->tp_ops->recv_release(ctx->tp, tp);
        }
        RDX_CHECK(probe_wait(p, peer, since));
        RDX_CHECK(probe_progress(p));
    }
}

/* `rounds` dissemination exchanges of empty messages (ceil(log2 n) steps each: send to
 * r + 2^k, receive from r - 2^k); returns the time per step. Every rank takes part at once,
 * as in a collective's steps, descheduling included when ranks outnumber cores. */
static rdx_status_t probe_rounds(probe_t *p, int phase, int rounds, double *step)
{
    int n = p->ctx->size, r = p->ctx->rank, D = coll_log2_ceil(n);
    double t0 = 0;
    /* Round 0 is untimed: it is a barrier. Without it the time would include waiting for
     * ranks still busy with the pair exchanges before (pairs finish at different times). */
    for (int i = 0; i <= rounds; i++) {
        uint64_t tag = probe_tag(phase, (uint64_t)i);
        for (int k = 0, d = 1; k < D; k++, d *= 2) {
            RDX_CHECK(probe_send(p, (r + d) % n, 0, tag));
            RDX_CHECK(probe_recv(p, coll_mod(r - d, n), 0, tag));
        }
        if (i == 0)
            t0 = probe_now();
    }
    *step = (probe_now() - t0) / ((double)rounds * D);
    return RDX_SUCCESS;
}

/* Both ranks of the pair stream count messages of len bytes to each other at the same time,
 * as the ranks of a collective do (a link is full duplex, and a transport that stalls when
 * both directions are busy must show it here); returns the elapsed time. */
static rdx_status_t probe_exchange(probe_t *p, int phase, int count, size_t len,
                                   double *elapsed)
{
    const rdx_coll_ctx_t *ctx = p->ctx;
    int sent = 0, got = 0;
    double t0 = probe_now(), since = t0;
    while (sent < count || got < count) {
        bool moved = false;
        RDX_CHECK(probe_progress(p));
        if (sent < count) {
            void *slot;
            RDX_CHECK(ctx->tp_ops->send_acquire(ctx->tp, p->peer_tp, &slot));
            if (slot) {
                if (len)
                    memcpy(slot, p->src + (size_t)sent * len, len);
                RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, p->peer_tp, len,
                                                   probe_tag(phase, (uint64_t)sent)));
                sent++;
                moved = true;
            }
        }
        if (got < count) {
            const void *buf;
            size_t n;
            uint64_t tag;
            RDX_CHECK(ctx->tp_ops->recv_peek(ctx->tp, p->peer_tp, &buf, &n, &tag));
            if (buf) {
                if (tag != probe_tag(phase, (uint64_t)got) || n != len)
                    return rdx_err(RDX_ERR_MISMATCH, "rank %d: calibration: peer %d sent tag "
                                   "%016llx len %zu, expected %016llx len %zu", ctx->rank,
                                   p->peer, (unsigned long long)tag, n,
                                   (unsigned long long)probe_tag(phase, (uint64_t)got), len);
                if (len)
                    memcpy(p->dst + (size_t)got * len, buf, len);
                RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, p->peer_tp));
                got++;
                moved = true;
            }
        }
        if (moved)
            since = probe_now();
        else
            RDX_CHECK(probe_wait(p, p->peer, since));
    }
    *elapsed = probe_now() - t0;
    return RDX_SUCCESS;
}

/* Seconds per byte of a float32 sum of two 32 MiB vectors (best of a few): larger than the
 * caches, like the vectors whose reduction time matters. */
static double probe_gamma(void)
{
    size_t n = 8u << 20;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    double best = 0;
    if (a && b) {
        for (size_t i = 0; i < n; i++)
            a[i] = b[i] = (float)(i & 1023);
        for (int k = 0; k < PROBE_BATCHES; k++) {
            double t0 = probe_now();
            rdx_reduce_local(RDX_FLOAT32, RDX_SUM, a, NULL, a, b, n, 0);
            double t = (probe_now() - t0) / (double)(n * sizeof(float));
            if (k == 0 || t < best)
                best = t;
        }
    }
    free(a);
    free(b);
    return best;
}

/* Messages of the big exchange: 32 MiB of slot-sized messages (at least 16). */
static int probe_big_count(size_t slot_bytes)
{
    int n = (int)((32u << 20) / slot_bytes);
    return n < 16 ? 16 : n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static rdx_status_t probe_run(probe_t *p, rdx_coll_model_t *m)
{
    size_t len = p->ctx->slot_bytes;
    int n = p->ctx->size, nbig = probe_big_count(len), nsmall = 2000;
    int rounds = 400 / n > 10 ? 400 / n : 10;
    double hop[PROBE_BATCHES], small[PROBE_BATCHES], big[PROBE_BATCHES];
    RDX_CHECK(probe_rounds(p, 1, rounds / 4 + 1, &hop[0])); /* warm-up: connections, caches */
    for (int b = 0; b < PROBE_BATCHES; b++) {
        RDX_CHECK(probe_rounds(p, 2, rounds, &hop[b]));
        if (p->peer < 0)
            continue; /* the last of an odd number of ranks has no pair */
        RDX_CHECK(probe_exchange(p, 3, nsmall, 0, &small[b]));
        RDX_CHECK(probe_exchange(p, 4, nbig, len, &big[b]));
    }
    /* The median batch, not the best: with more ranks than cores (or other jobs) on a host,
     * being descheduled is part of what every message typically costs. */
    m->alpha_s = median(hop, PROBE_BATCHES);
    m->gamma_s = probe_gamma();
    if (p->peer < 0)
        return RDX_SUCCESS;
    double sm = median(small, PROBE_BATCHES), bg = median(big, PROBE_BATCHES);
    m->overhead_s = (sm - m->alpha_s) / nsmall;
    if (m->overhead_s < m->alpha_s / 20)
        m->overhead_s = m->alpha_s / 20;
    double per_byte = (bg - m->alpha_s - nbig * m->overhead_s) / ((double)nbig * (double)len);
    double floor = bg / ((double)nbig * (double)len) / 2;
    m->beta_s = per_byte > floor ? per_byte : floor;
    snprintf(m->source, sizeof(m->source), "probe: %d-rank dissemination, %d x %zu B exchange", n,
             nbig, len);
    return RDX_SUCCESS;
}

rdx_status_t rdx_coll_calibrate(const rdx_coll_ctx_t *ctx, long timeout_ms,
                                rdx_coll_model_t *out)
{
    memset(out, 0, sizeof(*out));
    if (ctx->size < 2) {
        out->gamma_s = probe_gamma();
        return RDX_SUCCESS;
    }
    probe_t p = {.ctx = ctx, .peer = (ctx->rank ^ 1) < ctx->size ? ctx->rank ^ 1 : -1};
    p.peer_tp = p.peer < 0 ? -1 : rdx_coll_peer(ctx, p.peer);
    p.deadline = probe_now() + (double)timeout_ms / 1000;
    /* the big exchange streams a whole vector in and out (as a collective on a large
     * vector does, from and to memory), not one cache-hot slot-sized buffer: that measured
     * beta 6x too small on shared memory (29 GB/s per link) */
    size_t big = (size_t)probe_big_count(ctx->slot_bytes) * ctx->slot_bytes;
    p.src = malloc(big);
    p.dst = malloc(big);
    rdx_status_t st = RDX_ERR_NO_MEMORY;
    if (p.src && p.dst) {
        memset(p.src, 0x3c, big);
        memset(p.dst, 0, big);  /* touch every page before timing */
        st = probe_run(&p, out);
    }
    free(p.src);
    free(p.dst);
    return st;
}
