/*
 * Algorithm choice: an alpha-beta-gamma cost model per algorithm, evaluated per
 * (collective, bytes, ranks), with the pipelining chunk chosen by the same model.
 *
 * Model inputs (rdx_coll_model_t), per transport:
 *   alpha     one-way latency of a small message (critical-path hop)
 *   o         cost of one more message in a pipelined stream (what overlapping does not hide)
 *   beta      seconds per byte moved over one link
 *   gamma     seconds per byte reduced
 * They come from `rdx-info --calibrate` (a ping-pong and a stream between ranks 0 and 1, and
 * a local reduction; written to the calibration file, one line per transport class), else
 * from the transport's own estimate (rdx_tp_props_t latency_us, bandwidth_gbs), else from
 * built-in defaults. Rank 0's values are broadcast so every rank chooses the same.
 *
 * The formulas (N bytes, n ranks, s chunk, D = ceil(log2 n), L = floor(log2 n), p = 2^L,
 * f = 1 if n != p, M = chunks) are stated in each algorithm's file and in
 * docs/algorithms.md; pipelined algorithms cost "fill + (M-1) x per-chunk bottleneck". The
 * chunk is the power of two (4 KiB .. slot size) with the least predicted time.
 *
 * Measured fit: the formulas carry what an algorithm moves and reduces, not how well it
 * runs on this machine (in cache or from memory, how its step-synchronous exchanges use
 * TCP, who gets descheduled). `rdx-info --calibrate` also times each allreduce algorithm at
 * a few sizes (rdx_coll_fit_bytes) and stores measured/predicted per algorithm and size;
 * the choice multiplies each algorithm's formula by its factor, interpolated in log(size)
 * between those sizes (NCCL's per-algorithm efficiencies, measured instead of constant).
 * Within an algorithm the chunk is still chosen by the formula alone.
 *
 * RDX_ALGO=ring|tree|rd|rabenseifner forces the allreduce algorithm; for broadcast and reduce
 * "ring" means the pipelined chain and "tree" the binary tree; a collective that has no
 * algorithm of that name (reduce_scatter/allgather: ring only; barrier: dissemination only;
 * broadcast/reduce under rd/rabenseifner) uses the model's choice.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collectives/coll_util.h"
#include "src/config.h"

/* Built-in defaults when neither a calibration nor a transport estimate exists (measured on
 * the 2-core development host, UCX shared memory; see docs/algorithms.md). */
#define DEFAULT_ALPHA_S 2e-6
#define DEFAULT_OVERHEAD_S 0.5e-6
#define DEFAULT_BETA_S (1.0 / 5e9)
#define DEFAULT_GAMMA_S (1.0 / 8e9)
#define MIN_CHUNK_BYTES 4096

/* A multiply-xorshift hash over the fields every rank must agree on, word by word (cheap:
 * it runs for every collective). */
static uint64_t fp_mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

uint32_t rdx_coll_fingerprint(const rdx_coll_args_t *args, uint32_t seq)
{
    uint64_t h = 0x243f6a8885a308d3ull;
    h = fp_mix(h, seq);
    h = fp_mix(h, ((uint64_t)args->kind << 32) | ((uint64_t)args->dtype << 16) |
                      (uint64_t)args->op);
    h = fp_mix(h, (uint64_t)args->count);
    h = fp_mix(h, (uint64_t)(int64_t)args->root);
    return (uint32_t)(h ^ (h >> 32));
}

const char *rdx_coll_kind_name(rdx_coll_kind_t kind)
{
    switch (kind) {
    case RDX_COLL_ALLREDUCE: return "allreduce";
    case RDX_COLL_REDUCE_SCATTER: return "reduce_scatter";
    case RDX_COLL_ALLGATHER: return "allgather";
    case RDX_COLL_BROADCAST: return "broadcast";
    case RDX_COLL_REDUCE: return "reduce";
    case RDX_COLL_BARRIER: return "barrier";
    case RDX_COLL_SEND: return "send";
    case RDX_COLL_RECV: return "recv";
    }
    return "?";
}

/* ---- the cost model ---------------------------------------------------------------------- */

typedef struct cost_in {
    double a, o, b, g;   /* alpha, overhead, beta, gamma */
    double N;            /* bytes */
    int n;
    double s;            /* chunk bytes */
    double slot;         /* slot bytes (the ring's slice) */
} cost_in_t;

static double chunks(double bytes, double s) { return bytes <= s ? 1 : ceil(bytes / s); }

static double cost_ring_allreduce(const cost_in_t *c)
{
    int n = c->n;
    double M = chunks(c->N / n, c->slot);
    return 2 * (n - 1) * c->a + 2 * (n - 1) * (M - 1) * c->o + 2.0 * (n - 1) / n * c->N * c->b +
           (double)(n - 1) / n * c->N * c->g;
}

static double cost_ring_rs(const cost_in_t *c)
{
    int n = c->n;
    double M = chunks(c->N / n, c->slot);
    return (n - 1) * c->a + (n - 1) * (M - 1) * c->o + (double)(n - 1) / n * c->N * (c->b + c->g);
}

static double cost_ring_ag(const cost_in_t *c)
{
    int n = c->n;
    double M = chunks(c->N / n, c->slot);
    return (n - 1) * c->a + (n - 1) * (M - 1) * c->o + (double)(n - 1) / n * c->N * c->b;
}

static double cost_dtree(const cost_in_t *c)
{
    double half = c->N / 2, s = half < c->s ? half : c->s, M = chunks(half, s);
    int D = coll_log2_ceil(c->n);
    /* The first chunk climbs D levels, reduced at each, and comes down D levels, only copied:
     * gamma is paid on the way up alone. */
    return 2 * D * (c->a + s * c->b) + D * s * c->g +
           (M - 1) * (4 * (c->o + s * c->b) + 2 * s * c->g);
}

static double cost_rd(const cost_in_t *c)
{
    int L = coll_log2_floor(c->n), f = c->n != (1 << L);
    double s = c->N < c->s ? c->N : c->s, M = chunks(c->N, s), h = L + 2 * f;
    return h * (c->a + s * c->b + s * c->g) + (M - 1) * h * (c->o + s * c->b + s * c->g);
}

/* One exchange step of `bytes` in chunks of s: the first chunk alone, the rest streaming. */
static double step_cost(const cost_in_t *c, double bytes, double per_byte_extra)
{
    double s = bytes < c->s ? bytes : c->s, M = chunks(bytes, s);
    return c->a + s * (c->b + per_byte_extra) + (M - 1) * (c->o + s * (c->b + per_byte_extra));
}

static double cost_rabenseifner(const cost_in_t *c)
{
    int L = coll_log2_floor(c->n), p = 1 << L, f = c->n != p;
    double t = 0;
    /* halving steps reduce what they receive; the doubling steps copy it in, and copy from
     * recvbuf into the slot to send (not fused like the ring's): costed like reduction
     * passes (memory-bound, both) */
    for (int i = 0; i < L; i++)
        t += step_cost(c, c->N / (2 << i), c->g) + step_cost(c, c->N / (2 << i), c->g);
    if (f)
        t += step_cost(c, c->N, c->g) + step_cost(c, c->N, 0);
    return t;
}

static double cost_tree_bcast(const cost_in_t *c)
{
    double s = c->N < c->s ? c->N : c->s, M = chunks(c->N, s);
    int D = coll_log2_ceil(c->n);
    return D * (c->a + s * c->b) + (M - 1) * 2 * (c->o + s * c->b);
}

static double cost_chain_bcast(const cost_in_t *c)
{
    double s = c->N < c->s ? c->N : c->s, M = chunks(c->N, s);
    return (c->n - 1) * (c->a + s * c->b) + (M - 1) * (c->o + s * c->b);
}

static double cost_tree_reduce(const cost_in_t *c)
{
    double s = c->N < c->s ? c->N : c->s, M = chunks(c->N, s);
    int D = coll_log2_ceil(c->n);
    return D * (c->a + s * c->b + 2 * s * c->g) + (M - 1) * (c->o + s * c->b + 2 * s * c->g);
}

static double cost_chain_reduce(const cost_in_t *c)
{
    double s = c->N < c->s ? c->N : c->s, M = chunks(c->N, s);
    return (c->n - 1) * (c->a + s * c->b + s * c->g) +
           (M - 1) * (c->o + s * c->b + s * c->g);
}

static double cost_barrier(const cost_in_t *c) { return coll_log2_ceil(c->n) * c->a; }

typedef struct algo_entry {
    const rdx_coll_algo_t *algo;
    rdx_coll_kind_t kind;
    int setting;               /* the RDX_ALGO value that forces it */
    bool chunked;              /* the model chooses its chunk */
    double (*cost)(const cost_in_t *c);
    int fit;                   /* row of rdx_coll_model_t.fit, or -1 */
} algo_entry_t;

static const algo_entry_t k_algos[] = {
    {&rdx_algo_ring_allreduce, RDX_COLL_ALLREDUCE, RDX_ALGO_RING, false, cost_ring_allreduce,
     0},
    {&rdx_algo_tree_allreduce, RDX_COLL_ALLREDUCE, RDX_ALGO_TREE, true, cost_dtree, 1},
    {&rdx_algo_rd_allreduce, RDX_COLL_ALLREDUCE, RDX_ALGO_RD, true, cost_rd, 2},
    {&rdx_algo_rabenseifner_allreduce, RDX_COLL_ALLREDUCE, RDX_ALGO_RABENSEIFNER, true,
     cost_rabenseifner, 3},
    {&rdx_algo_ring_reduce_scatter, RDX_COLL_REDUCE_SCATTER, RDX_ALGO_RING, false, cost_ring_rs,
     -1},
    {&rdx_algo_ring_allgather, RDX_COLL_ALLGATHER, RDX_ALGO_RING, false, cost_ring_ag, -1},
    {&rdx_algo_chain_broadcast, RDX_COLL_BROADCAST, RDX_ALGO_RING, true, cost_chain_bcast, -1},
    {&rdx_algo_tree_broadcast, RDX_COLL_BROADCAST, RDX_ALGO_TREE, true, cost_tree_bcast, -1},
    {&rdx_algo_chain_reduce, RDX_COLL_REDUCE, RDX_ALGO_RING, true, cost_chain_reduce, -1},
    {&rdx_algo_tree_reduce, RDX_COLL_REDUCE, RDX_ALGO_TREE, true, cost_tree_reduce, -1},
    {&rdx_algo_dissemination_barrier, RDX_COLL_BARRIER, RDX_ALGO_AUTO, false, cost_barrier, -1},
};
#define N_ALGOS (sizeof(k_algos) / sizeof(k_algos[0]))

/* 16 B (latency) to 8 MiB (past the 32 MiB L3 once send, receive and slots of a few ranks
 * are counted), 8-16x apart: between two of them the factor is interpolated. They sit
 * between perf/sweep.sh's sizes (8 x 8^k), so a sweep tests the interpolation too. */
const size_t rdx_coll_fit_bytes[RDX_COLL_FIT_SIZES] = {16, 1 << 10, 16 << 10, 128 << 10,
                                                       1 << 20, 8 << 20};

/* e's measured factor at `bytes` on n ranks: linear in log2(bytes) between the fitted
 * sizes, flat beyond them; 1 without a fit for n ranks. */
static double fit_factor(const rdx_coll_model_t *m, const algo_entry_t *e, size_t bytes, int n)
{
    if (e->fit < 0 || m->fit_ranks != n || n < 2)
        return 1;
    const float *f = m->fit[e->fit];
    const size_t *x = rdx_coll_fit_bytes;
    if (bytes <= x[0])
        return f[0];
    for (int k = 1; k < RDX_COLL_FIT_SIZES; k++)
        if (bytes <= x[k]) {
            double w = log2((double)bytes / (double)x[k - 1]) /
                       log2((double)x[k] / (double)x[k - 1]);
            return f[k - 1] + w * (f[k] - f[k - 1]);
        }
    return f[RDX_COLL_FIT_SIZES - 1];
}

static const algo_entry_t *entry_of(const rdx_coll_algo_t *algo, rdx_coll_kind_t kind)
{
    for (size_t i = 0; i < N_ALGOS; i++)
        if (k_algos[i].algo == algo && k_algos[i].kind == kind)
            return &k_algos[i];
    return NULL;
}

/* The model in use: ctx's, or the built-in defaults where it has none. */
static rdx_coll_model_t model_or_default(const rdx_coll_model_t *m)
{
    rdx_coll_model_t d = {.alpha_s = DEFAULT_ALPHA_S, .overhead_s = DEFAULT_OVERHEAD_S,
                          .beta_s = DEFAULT_BETA_S, .gamma_s = DEFAULT_GAMMA_S,
                          .source = "built-in defaults"};
    if (!m || m->alpha_s <= 0 || m->beta_s <= 0)
        return d;
    d = *m;
    if (d.gamma_s <= 0)
        d.gamma_s = DEFAULT_GAMMA_S;
    if (d.overhead_s <= 0)
        d.overhead_s = d.alpha_s / 2;
    return d;
}

static double entry_cost(const algo_entry_t *e, const rdx_coll_model_t *m, size_t bytes, int n,
                         size_t chunk, size_t slot)
{
    cost_in_t c = {m->alpha_s, m->overhead_s, m->beta_s, m->gamma_s, (double)bytes, n,
                   (double)chunk, (double)slot};
    return e->cost(&c);
}

/* Seconds for e: its formula times its measured fit. */
static double entry_time(const algo_entry_t *e, const rdx_coll_model_t *m, size_t bytes, int n,
                         size_t chunk, size_t slot)
{
    return entry_cost(e, m, bytes, n, chunk, slot) * fit_factor(m, e, bytes, n);
}

double rdx_coll_predict_us(const rdx_coll_model_t *m, const rdx_coll_algo_t *algo,
                           rdx_coll_kind_t kind, size_t bytes, int ranks, size_t chunk_bytes)
{
    const algo_entry_t *e = entry_of(algo, kind);
    if (!e || ranks < 1)
        return -1;
    rdx_coll_model_t mm = model_or_default(m);
    size_t chunk = chunk_bytes ? chunk_bytes : 256 << 10;
    return ranks == 1 ? 0 : 1e6 * entry_time(e, &mm, bytes, ranks, chunk, chunk);
}

/* Best chunk for e: powers of two from the slot size down to MIN_CHUNK_BYTES. */
static rdx_coll_choice_t entry_best(const algo_entry_t *e, const rdx_coll_model_t *m,
                                    size_t bytes, int n, size_t slot)
{
    rdx_coll_choice_t best = {e->algo, e->chunked ? slot : 0,
                              entry_cost(e, m, bytes, n, slot, slot)};
    if (!e->chunked)
        return best;
    for (size_t s = slot / 2; s >= MIN_CHUNK_BYTES; s /= 2) {
        double t = entry_cost(e, m, bytes, n, s, slot);
        if (t < best.predicted_us * (1 - 1e-9)) {
            best.chunk_bytes = s;
            best.predicted_us = t;
        }
    }
    return best;
}

/* Size buckets: bucket b > 0 holds [2^(b-1), 2^b) and is decided at 2^(b-1). */
static int size_bucket(size_t bytes)
{
    int b = 0;
    while (bytes) {
        b++;
        bytes >>= 1;
    }
    return b;
}

static size_t bucket_bytes(int b) { return b ? (size_t)1 << (b - 1) : 0; }

static size_t slot_of(const rdx_coll_ctx_t *ctx)
{
    return ctx->slot_bytes ? ctx->slot_bytes : 256 << 10;
}

/* The cheapest (algorithm, chunk) for kind at `bytes` under ctx's model and the setting. */
static rdx_coll_choice_t choose_at(const rdx_coll_ctx_t *ctx, int algo_setting,
                                   rdx_coll_kind_t kind, size_t bytes, const algo_entry_t **ep)
{
    rdx_coll_model_t m = model_or_default(&ctx->model);
    size_t slot = ctx->slot_bytes ? ctx->slot_bytes : 256 << 10;
    rdx_coll_choice_t best = {NULL, 0, 0};
    bool forced = false;
    *ep = NULL;
    for (size_t i = 0; i < N_ALGOS; i++)
        if (k_algos[i].kind == kind && algo_setting != RDX_ALGO_AUTO &&
            k_algos[i].setting == algo_setting)
            forced = true;
    for (size_t i = 0; i < N_ALGOS; i++) {
        const algo_entry_t *e = &k_algos[i];
        if (e->kind != kind || (forced && e->setting != algo_setting))
            continue;
        rdx_coll_choice_t c = entry_best(e, &m, bytes, ctx->size, slot);
        c.predicted_us *= fit_factor(&m, e, bytes, ctx->size);
        if (!best.algo || c.predicted_us < best.predicted_us) {
            best = c;
            *ep = e;
        }
    }
    return best;
}

rdx_coll_choice_t rdx_coll_choose(const rdx_coll_ctx_t *ctx, int algo_setting,
                                  rdx_coll_kind_t kind, size_t bytes)
{
    const algo_entry_t *e;
    rdx_coll_choice_t c = choose_at(ctx, algo_setting, kind,
                                    bucket_bytes(size_bucket(bytes)), &e);
    if (e) {
        rdx_coll_model_t m = model_or_default(&ctx->model);
        size_t slot = ctx->slot_bytes ? ctx->slot_bytes : 256 << 10;
        c.predicted_us = 1e6 * entry_time(e, &m, bytes, ctx->size,
                                          c.chunk_bytes ? c.chunk_bytes : slot, slot);
    }
    return c;
}

void rdx_coll_cache_build(rdx_coll_ctx_t *ctx, int algo_setting)
{
    rdx_coll_cache_t *cache = &ctx->cache;
    memset(cache, 0, sizeof(*cache));
    for (int k = RDX_COLL_ALLREDUCE; k <= RDX_COLL_BARRIER; k++)
        for (int b = 0; b < RDX_COLL_BUCKETS; b++) {
            const algo_entry_t *e;
            rdx_coll_choice_t c = choose_at(ctx, algo_setting, (rdx_coll_kind_t)k,
                                            bucket_bytes(b), &e);
            cache->algo[k][b] = e ? (uint8_t)(e - k_algos + 1) : 0;
            int shift = 0;
            while (c.chunk_bytes && (slot_of(ctx) >> shift) > c.chunk_bytes)
                shift++;
            cache->chunk_shift[k][b] = (uint8_t)(c.chunk_bytes ? shift : 0xff);
        }
    cache->size = ctx->size;
    cache->setting = algo_setting;
    cache->valid = true;
}

/* The choice for one call: from the cache when it was built for this size and setting. */
static rdx_coll_choice_t choose_fast(const rdx_coll_ctx_t *ctx, int algo_setting,
                                     rdx_coll_kind_t kind, size_t bytes)
{
    const rdx_coll_cache_t *cache = &ctx->cache;
    int b = size_bucket(bytes);
    if (cache->valid && cache->size == ctx->size && cache->setting == algo_setting &&
        kind >= RDX_COLL_ALLREDUCE && kind <= RDX_COLL_BARRIER && cache->algo[kind][b]) {
        uint8_t sh = cache->chunk_shift[kind][b];
        return (rdx_coll_choice_t){k_algos[cache->algo[kind][b] - 1].algo,
                                   sh == 0xff ? 0 : slot_of(ctx) >> sh, 0};
    }
    const algo_entry_t *e;
    return choose_at(ctx, algo_setting, kind, bucket_bytes(b), &e);
}

/* ---- starting an operation --------------------------------------------------------------- */

static size_t args_bytes(const rdx_coll_ctx_t *ctx, const rdx_coll_args_t *a)
{
    size_t b = a->kind == RDX_COLL_BARRIER ? 0 : a->count * rdx_dtype_size(a->dtype);
    if (a->kind == RDX_COLL_REDUCE_SCATTER || a->kind == RDX_COLL_ALLGATHER)
        b *= (size_t)ctx->size;
    return b;
}

rdx_status_t rdx_coll_start_algo(const rdx_coll_ctx_t *ctx, const rdx_coll_algo_t *algo,
                                 size_t chunk_bytes, const rdx_coll_args_t *args, uint32_t seq,
                                 rdx_coll_op_t *op)
{
    const algo_entry_t *e = entry_of(algo, args->kind);
    if (!e)
        return rdx_err(RDX_ERR_UNSUPPORTED, "rank %d: algorithm %s cannot run %s", ctx->rank,
                       algo ? algo->name : "(none)", rdx_coll_kind_name(args->kind));
    if (chunk_bytes == 0 && e->chunked)
        chunk_bytes = entry_best(e, &ctx->model, args_bytes(ctx, args), ctx->size,
                                 ctx->slot_bytes ? ctx->slot_bytes : 256 << 10).chunk_bytes;
    memset(op, 0, offsetof(rdx_coll_op_t, state));
    op->algo = algo;
    op->args = *args;
    op->seq = seq;
    op->chunk_bytes = e->chunked ? chunk_bytes : 0;
    /* The communicator and the algorithm (its place in k_algos: equal in equal builds) are
     * part of the fingerprint: another communicator's message, or ranks that chose
     * differently, are a mismatch. */
    uint64_t h = fp_mix(rdx_coll_fingerprint(args, seq),
                        ((uint64_t)ctx->comm_id << 8) | (uint64_t)(e - k_algos));
    op->fingerprint = (uint32_t)(h ^ (h >> 32));
    return algo->start(ctx, op);
}

rdx_status_t rdx_coll_start(const rdx_coll_ctx_t *ctx, int algo_setting,
                            const rdx_coll_args_t *args, uint32_t seq, rdx_coll_op_t *op)
{
    rdx_coll_choice_t c = choose_fast(ctx, algo_setting, args->kind, args_bytes(ctx, args));
    if (!c.algo)
        return rdx_err(RDX_ERR_UNSUPPORTED, "rank %d: no algorithm for %s", ctx->rank,
                       rdx_coll_kind_name(args->kind));
    return rdx_coll_start_algo(ctx, c.algo, c.chunk_bytes, args, seq, op);
}

/* ---- calibration file -------------------------------------------------------------------- */

const char *rdx_coll_calibration_path(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0])
        snprintf(buf, len, "%s/rdx/calibration", xdg);
    else if (home && home[0])
        snprintf(buf, len, "%s/.cache/rdx/calibration", home);
    else
        return NULL;
    return buf;
}

void rdx_coll_calibration_key(const rdx_tp_props_t *props, char *buf, size_t len)
{
    const char *d = props->detail, *cls = "net";
    if (strstr(d, "tcp"))
        cls = "tcp";
    else if (strstr(d, "shm") || strstr(d, "sysv") || strstr(d, "posix") || strstr(d, "cma") ||
             strstr(d, "xpmem"))
        cls = "shm";
    snprintf(buf, len, "%s:%s", props->name ? props->name : "?", cls);
}

static const algo_entry_t *fit_entry(int row)
{
    for (size_t i = 0; i < N_ALGOS; i++)
        if (k_algos[i].fit == row)
            return &k_algos[i];
    return NULL;
}

/* The optional tail " fit_ranks=N ring=f,..,f tree=.. rd=.. rabenseifner=..": all of it or
 * none (m->fit_ranks stays 0); 0 on success or absence, -1 when present but malformed. */
static int calib_parse_fit(const char *line, rdx_coll_model_t *m)
{
    const char *p = strstr(line, " fit_ranks=");
    if (!p)
        return 0;
    int ranks;
    if (sscanf(p, " fit_ranks=%d", &ranks) != 1 || ranks < 2)
        return -1;
    rdx_coll_model_t t = *m;
    for (int a = 0; a < RDX_COLL_FIT_ALGOS; a++) {
        char name[40];
        snprintf(name, sizeof(name), " %s=", fit_entry(a)->algo->name);
        const char *q = strstr(p, name);
        if (!q)
            return -1;
        q += strlen(name);
        for (int k = 0; k < RDX_COLL_FIT_SIZES; k++) {
            char *end;
            double v = strtod(q, &end);
            if (end == q || !(v > 0 && v < 1e6) || (k + 1 < RDX_COLL_FIT_SIZES && *end != ','))
                return -1;
            t.fit[a][k] = (float)v;
            q = end + 1;
        }
    }
    t.fit_ranks = ranks;
    *m = t;
    return 0;
}

/* Parses "KEY alpha_us=.. overhead_us=.. beta_ns=.. gamma_ns=..[ fit..]" into m; 0 on
 * success. */
static int calib_parse(const char *line, const char *key, rdx_coll_model_t *m)
{
    size_t kl = strlen(key);
    if (strncmp(line, key, kl) != 0 || (line[kl] != ' ' && line[kl] != '\t'))
        return -1;
    double a, o, b, g;
    if (sscanf(line + kl, " alpha_us=%lf overhead_us=%lf beta_ns=%lf gamma_ns=%lf", &a, &o, &b,
               &g) != 4 || !(a > 0) || !(o > 0) || !(b > 0) || !(g > 0))
        return -1;
    m->alpha_s = a * 1e-6;
    m->overhead_s = o * 1e-6;
    m->beta_s = b * 1e-9;
    m->gamma_s = g * 1e-9;
    m->fit_ranks = 0;
    return calib_parse_fit(line, m);
}

/* 0: found; 1: no file or no line for key; -1: a line for key that does not parse. */
static int calib_load(const char *path, const char *key, rdx_coll_model_t *m)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    char line[1024];
    int rc = 1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, kl) != 0 || (line[kl] != ' ' && line[kl] != '\t'))
            continue;
        rc = calib_parse(line, key, m) == 0 ? 0 : -1;
    }
    fclose(f);
    return rc;
}

static int mkdir_parents(const char *path)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

rdx_status_t rdx_coll_calibration_save(const char *path, const char *key,
                                       const rdx_coll_model_t *m)
{
    char tmp[600], line[1024];
    if (mkdir_parents(path) != 0)
        return rdx_err(RDX_ERR_CONFIG, "calibration: cannot create the folder of %s: %s", path,
                       strerror(errno));
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out)
        return rdx_err(RDX_ERR_CONFIG, "calibration: cannot write %s: %s", tmp, strerror(errno));
    FILE *in = fopen(path, "r");
    size_t kl = strlen(key);
    fprintf(out, "# rdx calibration (rdx-info --calibrate); one line per transport class\n");
    while (in && fgets(line, sizeof(line), in)) {
        bool same_key = strncmp(line, key, kl) == 0 && (line[kl] == ' ' || line[kl] == '\t');
        if (line[0] != '#' && !same_key)
            fputs(line, out);
    }
    if (in)
        fclose(in);
    fprintf(out, "%s alpha_us=%.4f overhead_us=%.4f beta_ns=%.6f gamma_ns=%.6f", key,
            m->alpha_s * 1e6, m->overhead_s * 1e6, m->beta_s * 1e9, m->gamma_s * 1e9);
    if (m->fit_ranks > 1) {
        fprintf(out, " fit_ranks=%d", m->fit_ranks);
        for (int a = 0; a < RDX_COLL_FIT_ALGOS; a++) {
            fprintf(out, " %s=", fit_entry(a)->algo->name);
            for (int k = 0; k < RDX_COLL_FIT_SIZES; k++)
                fprintf(out, "%s%.4f", k ? "," : "", (double)m->fit[a][k]);
        }
    }
    fputc('\n', out);
    if (fclose(out) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return rdx_err(RDX_ERR_CONFIG, "calibration: cannot write %s: %s", path, strerror(e));
    }
    return RDX_SUCCESS;
}

/* Rank 0's view: the calibration line for this transport, else the transport's estimate. */
static void tune_local(rdx_coll_model_t *m, const rdx_tp_props_t *props, const char *path)
{
    char key[96], def[512];
    *m = model_or_default(NULL);
    if (props && props->latency_us > 0 && props->bandwidth_gbs > 0) {
        m->alpha_s = props->latency_us * 1e-6;
        m->overhead_s = m->alpha_s / 2 > DEFAULT_OVERHEAD_S ? m->alpha_s / 2 : DEFAULT_OVERHEAD_S;
        m->beta_s = 1.0 / (props->bandwidth_gbs * 1e9);
        snprintf(m->source, sizeof(m->source), "transport estimate");
    }
    if (!props)
        return;
    if (!path)
        path = rdx_coll_calibration_path(def, sizeof(def));
    if (!path)
        return;
    rdx_coll_calibration_key(props, key, sizeof(key));
    rdx_coll_model_t c = *m;
    int rc = calib_load(path, key, &c);
    if (rc == 0) {
        *m = c;
        snprintf(m->source, sizeof(m->source), "calibration %.80s", path);
    } else if (rc < 0) {
        rdx_log_warn("calibration: the line for %s in %s does not parse (expected \"%s "
                     "alpha_us=X overhead_us=X beta_ns=X gamma_ns=X\"): ignored; rerun "
                     "rdx-info --calibrate", key, path, key);
    }
}

rdx_status_t rdx_coll_tune(rdx_coll_ctx_t *ctx, const rdx_tp_props_t *props, const char *path,
                           rdx_bootstrap_t *bs, int algo_setting)
{
    rdx_coll_model_t m;
    memset(&m, 0, sizeof(m));
    if (ctx->rank == 0)
        tune_local(&m, props, path);
    if (bs && ctx->size > 1)
        RDX_CHECK(rdx_bootstrap_bcast(bs, &m, sizeof(m), 0));
    m.source[sizeof(m.source) - 1] = '\0';
    ctx->model = m;
    rdx_log_debug("cost model (%s): alpha %.2f us, overhead %.2f us, beta %.4f ns/B (%.2f GB/s), "
                  "gamma %.4f ns/B", m.source, m.alpha_s * 1e6, m.overhead_s * 1e6,
                  m.beta_s * 1e9, 1e-9 / m.beta_s, m.gamma_s * 1e9);
    rdx_coll_cache_build(ctx, algo_setting);
    return RDX_SUCCESS;
}

/* ---- the table --------------------------------------------------------------------------- */

static void fmt_bytes(size_t b, char *buf, size_t len)
{
    if (b >= (1u << 30) && b % (1u << 30) == 0)
        snprintf(buf, len, "%zuG", b >> 30);
    else if (b >= (1u << 20) && b % (1u << 20) == 0)
        snprintf(buf, len, "%zuM", b >> 20);
    else if (b >= 1024 && b % 1024 == 0)
        snprintf(buf, len, "%zuK", b >> 10);
    else
        snprintf(buf, len, "%zu", b);
}

/* One line per collective: size ranges (powers of two 4 B .. 1 GiB) with the same choice. */
static void table_line(const rdx_coll_ctx_t *ctx, int algo_setting, rdx_coll_kind_t kind,
                       char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "%-14s", rdx_coll_kind_name(kind));
    rdx_coll_choice_t prev = {NULL, 0, 0};
    for (size_t b = 4; b <= (1ull << 30) && used < len; b *= 2) {
        rdx_coll_choice_t c = rdx_coll_choose(ctx, algo_setting, kind, b);
        if (c.algo == prev.algo && c.chunk_bytes == prev.chunk_bytes)
            continue;
        char sb[24], cb[24];
        fmt_bytes(b, sb, sizeof(sb));
        fmt_bytes(c.chunk_bytes, cb, sizeof(cb));
        if (c.chunk_bytes)
            used += (size_t)snprintf(buf + used, len - used, " %s+: %s/%s (%.1fus)", sb,
                                     c.algo->name, cb, c.predicted_us);
        else
            used += (size_t)snprintf(buf + used, len - used, " %s+: %s (%.1fus)", sb,
                                     c.algo->name, c.predicted_us);
        prev = c;
    }
}

static const rdx_coll_kind_t k_table_kinds[] = {RDX_COLL_ALLREDUCE, RDX_COLL_REDUCE_SCATTER,
                                                RDX_COLL_ALLGATHER, RDX_COLL_BROADCAST,
                                                RDX_COLL_REDUCE};

void rdx_coll_print_table(const rdx_coll_ctx_t *ctx, int algo_setting, FILE *out)
{
    rdx_coll_model_t m = model_or_default(&ctx->model);
    fprintf(out, "algorithm table for %d ranks, RDX_ALGO=%s; model (%s): alpha %.2f us, "
            "overhead %.2f us, beta %.4f ns/B, gamma %.4f ns/B; size+: algo/chunk "
            "(predicted)\n", ctx->size, rdx_algo_name(algo_setting), m.source, m.alpha_s * 1e6,
            m.overhead_s * 1e6, m.beta_s * 1e9, m.gamma_s * 1e9);
    for (size_t i = 0; i < sizeof(k_table_kinds) / sizeof(k_table_kinds[0]); i++) {
        char line[1024];
        table_line(ctx, algo_setting, k_table_kinds[i], line, sizeof(line));
        fprintf(out, "  %s\n", line);
    }
}

void rdx_coll_log_table(const rdx_coll_ctx_t *ctx, int algo_setting)
{
    if (rdx_log_level() < RDX_LOG_INFO)
        return;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return;
    rdx_coll_print_table(ctx, algo_setting, f);
    fclose(f);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        rdx_log_info("%s", line);
    free(text);
}
