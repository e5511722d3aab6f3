/*
 * verbs_perf: point-to-point latency and bandwidth of the verbs transport alone, measured
 * like perftest so the two can be compared on the same device in the same run:
 *   latency    ping-pong of SIZE bytes between two ranks (acquire, commit, peek, release
 *              each way); reports half the round trip, min / median / max, like
 *              ib_write_lat's t_min / t_typical / t_max
 *   bandwidth  rank 0 streams MSGS messages of SIZE bytes (pipelined over all slots), rank 1
 *              releases each and acknowledges the last; MiB/s over the whole stream, like
 *              ib_write_bw's "BW average[MB/sec]" (which is MiB/s)
 * Slots must hold the largest size: run with RDX_CHUNK_BYTES >= SIZE.
 *
 * By default both sides busy-poll, as perftest does; --block makes them spin RDX_SPIN_US and
 * then sleep in idle() on the completion channel, as collectives wait.
 *
 *   verbs_perf [--lat SIZE,...] [--bw SIZE,...] [-i ITERS] [-b MSGS] [--block] [--deadline S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/verbs/vt.h"

#define PERF_MAX_SIZES 16
#define PERF_WARMUP 100

typedef struct perf_opts {
    size_t lat[PERF_MAX_SIZES];
    int nlat;
    size_t bw[PERF_MAX_SIZES];
    int nbw;
    long iters;
    long msgs;
    int deadline_s;
    int block;
    char addr[64];
} perf_opts_t;

typedef struct perf_ctx {
    vt_rank_t v;
    double deadline;
    int block;                  /* wait in idle() after RDX_SPIN_US, as collectives do */
} perf_ctx_t;

/* Nothing to do yet: by default spin (the measurement is of the data path, as perftest
 * busy-polls), with --block spin RDX_SPIN_US then sleep in idle() like a collective. */
static rdx_status_t wait_more(perf_ctx_t *c, long i, double *since, const char *what, int peer)
{
    if (i == 0)
        *since = vt_now();
    if (c->block && (i & 15) == 15 && vt_now() - *since > (double)c->v.set.spin_us * 1e-6)
        RDX_CHECK(c->v.ops->idle(c->v.tp, 1000));
    else
        RDX_CHECK(c->v.ops->progress(c->v.tp));
    if ((i & 1023) == 1023 && vt_now() > c->deadline)
        return rdx_err(RDX_ERR_TIMEOUT, "rank %d: no %s from peer %d by the deadline",
                       c->v.rank, what, peer);
    return RDX_SUCCESS;
}

static rdx_status_t wait_acquire(perf_ctx_t *c, int peer, void **buf)
{
    double since = 0;
    for (long i = 0;; i++) {
        RDX_CHECK(c->v.ops->send_acquire(c->v.tp, peer, buf));
        if (*buf)
            return RDX_SUCCESS;
        RDX_CHECK(wait_more(c, i, &since, "credit", peer));
    }
}

static rdx_status_t wait_peek(perf_ctx_t *c, int peer, size_t *len)
{
    const void *buf;
    uint64_t tag;
    double since = 0;
    for (long i = 0;; i++) {
        RDX_CHECK(c->v.ops->recv_peek(c->v.tp, peer, &buf, len, &tag));
        if (buf)
            return RDX_SUCCESS;
        RDX_CHECK(wait_more(c, i, &since, "message", peer));
    }
}

static rdx_status_t send_one(perf_ctx_t *c, int peer, size_t len, uint64_t tag)
{
    void *buf;
    RDX_CHECK(wait_acquire(c, peer, &buf));
    return c->v.ops->send_commit(c->v.tp, peer, len, tag);
}

static rdx_status_t recv_one(perf_ctx_t *c, int peer)
{
    size_t len;
    RDX_CHECK(wait_peek(c, peer, &len));
    return c->v.ops->recv_release(c->v.tp, peer);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static rdx_status_t lat_run(perf_ctx_t *c, size_t size, long iters)
{
    int peer = 1 - c->v.rank;
    double *half = calloc((size_t)iters, sizeof(double));
    if (!half)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: out of memory", c->v.rank);
    rdx_status_t st = RDX_SUCCESS;
    for (long i = -PERF_WARMUP; i < iters && st == RDX_SUCCESS; i++) {
        double t0 = vt_now();
        if (c->v.rank == 0) {
            st = send_one(c, peer, size, (uint64_t)i);
            if (st == RDX_SUCCESS)
                st = recv_one(c, peer);
        } else {
            st = recv_one(c, peer);
            if (st == RDX_SUCCESS)
                st = send_one(c, peer, size, (uint64_t)i);
        }
        if (i >= 0)
            half[i] = (vt_now() - t0) * 1e6 / 2;
    }
    if (st == RDX_SUCCESS && c->v.rank == 0) {
        qsort(half, (size_t)iters, sizeof(double), cmp_double);
        printf("verbs_perf: lat %zu B: min %.2f median %.2f max %.2f us (half round trip, "
               "%ld iters%s)\n", size, half[0], half[iters / 2], half[iters - 1], iters,
               c->block ? ", blocking waits" : "");
    }
    free(half);
    return st;
}

static rdx_status_t bw_stream(perf_ctx_t *c, size_t size, long msgs)
{
    int peer = 1 - c->v.rank;
    if (c->v.rank == 0) {
        for (long i = 0; i < msgs; i++)
            RDX_CHECK(send_one(c, peer, size, (uint64_t)i));
        return recv_one(c, peer); /* the receiver's "all released" */
    }
    for (long i = 0; i < msgs; i++)
        RDX_CHECK(recv_one(c, peer));
    return send_one(c, peer, 0, 0);
}

static rdx_status_t bw_run(perf_ctx_t *c, size_t size, long msgs)
{
    RDX_CHECK(bw_stream(c, size, PERF_WARMUP / 10 + 1));
    double t0 = vt_now();
    RDX_CHECK(bw_stream(c, size, msgs));
    double t = vt_now() - t0;
    if (c->v.rank == 0)
        printf("verbs_perf: bw %zu B: %.2f MiB/s (%ld messages in %.3f s)\n", size,
               (double)size * (double)msgs / t / (1 << 20), msgs, t);
    return RDX_SUCCESS;
}

static int perf_rank(int rank, void *arg)
{
    const perf_opts_t *o = arg;
    perf_ctx_t c;
    rdx_status_t st;
    c.deadline = vt_now() + o->deadline_s;
    c.block = o->block;
    if (vt_rank_open(&c.v, rank, 2, o->addr, o->deadline_s, &st) != 0)
        return 1;
    if (st == RDX_SUCCESS && rank == 0)
        printf("verbs_perf: %s, %d slots of %zu bytes\n", c.v.props.detail, c.v.props.slots,
               c.v.props.slot_bytes);
    for (int i = 0; i < o->nlat && st == RDX_SUCCESS; i++)
        st = o->lat[i] > c.v.props.slot_bytes
                 ? rdx_err(RDX_ERR_CONFIG, "size %zu > slot: raise RDX_CHUNK_BYTES", o->lat[i])
                 : lat_run(&c, o->lat[i], o->iters);
    for (int i = 0; i < o->nbw && st == RDX_SUCCESS; i++)
        st = o->bw[i] > c.v.props.slot_bytes
                 ? rdx_err(RDX_ERR_CONFIG, "size %zu > slot: raise RDX_CHUNK_BYTES", o->bw[i])
                 : bw_run(&c, o->bw[i], o->msgs);
    if (st != RDX_SUCCESS)
        fprintf(stderr, "rank %d: FAIL: %s: %s\n", rank, rdx_strerror(st), rdx_err_last());
    vt_rank_close(&c.v);
    return st == RDX_SUCCESS ? 0 : 1;
}

static int sizes_parse(const char *arg, size_t *out, int *n)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", arg);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok && *n < PERF_MAX_SIZES; tok = strtok(NULL, ",")) {
        if (rdx_parse_size(tok, &out[*n]) != 0)
            return -1;
        (*n)++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    perf_opts_t o = {.lat = {8}, .nlat = 1, .bw = {1 << 20}, .nbw = 1, .iters = 2000,
                     .msgs = 200, .deadline_s = 300};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        int bad = 0;
        if (!strcmp(a, "--lat"))
            bad = sizes_parse(v, o.lat, &o.nlat), i++;
        else if (!strcmp(a, "--bw"))
            bad = sizes_parse(v, o.bw, &o.nbw), i++;
        else if (!strcmp(a, "-i"))
            o.iters = atol(v), i++;
        else if (!strcmp(a, "-b"))
            o.msgs = atol(v), i++;
        else if (!strcmp(a, "--deadline"))
            o.deadline_s = atoi(v), i++;
        else if (!strcmp(a, "--block"))
            o.block = 1;
        else
            bad = 1;
        if (bad || o.iters < 1 || o.msgs < 1 || o.deadline_s < 1) {
            fprintf(stderr, "usage: verbs_perf [--lat SIZE,...] [--bw SIZE,...] [-i ITERS] "
                            "[-b MSGS] [--block] [--deadline S]\n");
            return 2;
        }
    }
    vt_free_addr(o.addr, sizeof(o.addr));
    setvbuf(stdout, NULL, _IOLBF, 0);
    return vt_spawn(2, o.deadline_s, perf_rank, &o);
}
