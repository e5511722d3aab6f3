/*
 * Recursive doubling allreduce: the latency-optimal choice for tiny vectors.
 *
 *   p = 2^L ranks; at step i every rank exchanges its whole partial result with the rank
 *   whose (virtual) number differs in bit i, and combines:
 *
 *     step 0:   0 <-> 1     2 <-> 3     4 <-> 5     6 <-> 7      partials of 2 ranks
 *     step 1:   0 <-> 2     1 <-> 3     4 <-> 6     5 <-> 7      partials of 4 ranks
 *     step 2:   0 <-> 4     1 <-> 5     2 <-> 6     3 <-> 7      everything, on every rank
 *
 *   n not a power of two: fold-in first (see coll_util.h): n = 6 -> p = 4, ranks 0 and 2
 *   hand their vectors to 1 and 3, which run the 4-rank exchange as virtual ranks 0 and 1
 *   with ranks 4, 5 (virtual 2, 3), then send the result back to 0 and 2.
 *
 * Every rank computes the result itself, so the combine puts the lower virtual rank's
 * partial first: both partners evaluate the same expression (same bits, also for MIN/MAX
 * of -0/+0 and NaN). AVG: the last step divides by n, once.
 *
 * Cost (Thakur et al. 2005; N bytes): T = L (alpha + N beta + N gamma), plus
 * 2 alpha + 2 N beta + N gamma for the fold when n is not a power of two. Latency-optimal
 * (log2 n messages), but moves N bytes per step: only for small N.
 *
 * Chunks: a vector larger than one slot moves in chunks, and chunk c goes through every step
 * as soon as it has arrived (the combine of step i writes straight into the slot of step
 * i+1's partner: no staging copy). Each link carries the messages of one step only, in chunk
 * order. Deadlock freedom: the event "consume chunk c of step i" needs chunk c of step i-1
 * (here), the partner's chunk c of step i, and a free slot to the step-(i+1) partner, i.e.
 * that partner consumed chunk c - slots of step i+1; all of those have a smaller
 * c x (L + 2) + i, so some event can always fire.
 */
#include "collectives/coll_util.h"

#define RD_MAX_STEPS 16 /* 2^16 ranks */

typedef struct rd_state {
    int role;                /* coll_fold_role_t */
    int v;                   /* virtual rank (-1 for an extra) */
    int L;                   /* log2 p */
    int rem;                 /* n - p */
    int fold, fold_tp;       /* fold partner (proxy <-> extra), or -1 */
    size_t esize, chunk_elems;
    uint64_t nchunks;
    uint64_t fresh;          /* chunks sent from sendbuf (first message) */
    uint64_t rc[RD_MAX_STEPS + 1]; /* receive cursor of step i at rc[i + 1]; rc[0]: fold */
    coll_wait_t wait;
} rd_state_t;

_Static_assert(sizeof(rd_state_t) <= sizeof(((rdx_coll_op_t *)0)->state),
               "rd state must fit in rdx_coll_op_t");

/* Phase numbers in tags: 0 fold-in, 1..L the steps, L+1 fold-back. */
static uint64_t rd_tag(const rdx_coll_op_t *op, int phase, uint64_t c)
{
    return coll_tag(op, ((uint32_t)phase << 24) | (uint32_t)(c & 0xffffff));
}

static int partner(const rd_state_t *s, int step)
{
    return coll_fold_real(s->v ^ (1 << step), s->rem);
}

static rdx_status_t rd_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    rd_state_t *s = (rd_state_t *)op->state;
    int n = ctx->size;
    memset(s, 0, sizeof(*s));
    s->L = coll_log2_floor(n);
    if (s->L > RD_MAX_STEPS)
        return rdx_err(RDX_ERR_UNSUPPORTED, "rank %d: recursive doubling supports at most "
                       "2^%d ranks (got %d)", ctx->rank, RD_MAX_STEPS, n);
    s->rem = n - (1 << s->L);
    s->role = coll_fold_role(ctx->rank, s->rem);
    s->v = coll_fold_vrank(ctx->rank, s->rem);
    s->fold = s->role == FOLD_PROXY ? ctx->rank - 1 : s->role == FOLD_EXTRA ? ctx->rank + 1 : -1;
    s->fold_tp = s->fold < 0 ? -1 : rdx_coll_peer(ctx, s->fold);
    s->esize = rdx_dtype_size(op->args.dtype);
    s->chunk_elems = coll_chunk_elems(ctx, op, s->esize);
    s->nchunks = coll_div_up(op->args.count, s->chunk_elems);
    s->wait.peer = -1;
    return RDX_SUCCESS;
}

static void chunk_range(const rd_state_t *s, const rdx_coll_op_t *op, uint64_t c, size_t *start,
                        size_t *len)
{
    *start = (size_t)c * s->chunk_elems;
    size_t left = op->args.count - *start;
    *len = left < s->chunk_elems ? left : s->chunk_elems;
}

/* The first message: the rank's input, to step 0's partner (or, for an extra, its proxy). */
static rdx_status_t send_fresh(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rd_state_t *s,
                               bool *moved)
{
    *moved = false;
    if (s->fresh >= s->nchunks || s->role == FOLD_PROXY)
        return RDX_SUCCESS;
    int to = s->role == FOLD_EXTRA ? s->fold : partner(s, 0);
    void *slot;
    RDX_CHECK(coll_acquire(ctx, &s->wait, to, &slot));
    if (!slot)
        return RDX_SUCCESS;
    size_t start, len;
    chunk_range(s, op, s->fresh, &start, &len);
    memcpy(slot, coll_cptr(op->args.sendbuf, start, s->esize), len * s->esize);
    RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, rdx_coll_peer(ctx, to), len * s->esize,
                                       rd_tag(op, s->role == FOLD_EXTRA ? 0 : 1, s->fresh)));
    s->fresh++;
    *moved = true;
    return RDX_SUCCESS;
}

/* Extra: the result comes back from the proxy. */
static rdx_status_t recv_extra(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rd_state_t *s,
                               bool *moved)
{
    uint64_t c = s->rc[0];
    *moved = false;
    if (c >= s->nchunks || s->fresh <= c) /* in place: chunk c must have left first */
        return RDX_SUCCESS;
    size_t start, len;
    chunk_range(s, op, c, &start, &len);
    const void *in;
    RDX_CHECK(coll_peek(ctx, op, &s->wait, s->fold, rd_tag(op, s->L + 1, c), len * s->esize, &in));
    if (!in)
        return RDX_SUCCESS;
    memcpy(coll_ptr(op->args.recvbuf, start, s->esize), in, len * s->esize);
    RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, s->fold_tp));
    s->rc[0]++;
    *moved = true;
    return RDX_SUCCESS;
}

/* Whether chunk c of step `step` (-1: fold-in) may be consumed: the partial it combines with
 * is ready, and in place, the rank's own chunk c has been sent before being overwritten. */
static bool step_ready(const rd_state_t *s, int step, uint64_t c)
{
    if (step == -1)
        return true;
    if (step == 0)
        return s->role == FOLD_PROXY ? s->rc[0] > c : s->fresh > c;
    return s->rc[step] > c;
}

/* Active rank: chunk c of step `step` arrives; combine and write to recvbuf and straight
 * into the next step's partner's slot. */
static rdx_status_t recv_step(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rd_state_t *s,
                              int step, bool *moved)
{
    uint64_t c = s->rc[step + 1];
    *moved = false;
    if (c >= s->nchunks || !step_ready(s, step, c))
        return RDX_SUCCESS;
    size_t start, len;
    chunk_range(s, op, c, &start, &len);
    size_t bytes = len * s->esize;
    int from = step < 0 ? s->fold : partner(s, step);
    const void *in;
    RDX_CHECK(coll_peek(ctx, op, &s->wait, from, rd_tag(op, step + 1, c), bytes, &in));
    if (!in)
        return RDX_SUCCESS;
    int to = step + 1 < s->L ? partner(s, step + 1) : s->role == FOLD_PROXY ? s->fold : -1;
    void *out = NULL;
    if (to >= 0) {
        RDX_CHECK(coll_acquire(ctx, &s->wait, to, &out));
        if (!out)
            return RDX_SUCCESS;
    }
    bool first = step == -1 || (step == 0 && s->role == FOLD_PLAIN);
    const void *mine = coll_cptr(first ? op->args.sendbuf : op->args.recvbuf, start, s->esize);
    void *dst = coll_ptr(op->args.recvbuf, start, s->esize);
    int div = step == s->L - 1 ? ctx->size : 0;
    /* Both partners must evaluate lower-rank-partial op higher-rank-partial. */
    bool mine_first = step >= 0 && s->v < (s->v ^ (1 << step));
    coll_combine(op, dst, out, mine_first ? mine : in, mine_first ? in : mine, len, div);
    if (out)
        RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, rdx_coll_peer(ctx, to), bytes,
                                           rd_tag(op, step + 2, c)));
    RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, rdx_coll_peer(ctx, from)));
    s->rc[step + 1]++;
    *moved = true;
    return RDX_SUCCESS;
}

static bool rd_finished(const rd_state_t *s)
{
    if (s->role == FOLD_EXTRA)
        return s->fresh >= s->nchunks && s->rc[0] >= s->nchunks;
    for (int i = s->role == FOLD_PROXY ? 0 : 1; i <= s->L; i++)
        if (s->rc[i] < s->nchunks)
            return false;
    return s->role == FOLD_PROXY || s->fresh >= s->nchunks;
}

static rdx_status_t rd_progress(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, bool *progressed,
                                bool *done)
{
    rd_state_t *s = (rd_state_t *)op->state;
    *progressed = false;
    if (coll_trivial(ctx, op)) {
        *done = *progressed = true;
        return RDX_SUCCESS;
    }
    for (;;) {
        bool any = false, moved;
        RDX_CHECK(send_fresh(ctx, op, s, &moved));
        any |= moved;
        if (s->role == FOLD_EXTRA) {
            RDX_CHECK(recv_extra(ctx, op, s, &moved));
            any |= moved;
        } else {
            for (int step = s->role == FOLD_PROXY ? -1 : 0; step < s->L; step++) {
                RDX_CHECK(recv_step(ctx, op, s, step, &moved));
                any |= moved;
            }
        }
        if (!any)
            break;
        *progressed = true;
    }
    *done = rd_finished(s);
    return RDX_SUCCESS;
}

static void rd_describe(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, char *buf, size_t len)
{
    const rd_state_t *s = (const rd_state_t *)op->state;
    static const char *const roles[] = {"plain", "proxy", "extra"};
    size_t used = (size_t)snprintf(buf, len, "algo rd, %s rank (virtual %d of %d), %llu chunks, "
                                   "sent %llu first chunks, received per step:",
                                   roles[s->role], s->v, 1 << s->L,
                                   (unsigned long long)s->nchunks,
                                   (unsigned long long)s->fresh);
    for (int i = 0; i <= s->L && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, " %llu", (unsigned long long)s->rc[i]);
    if (s->wait.peer >= 0 && used < len)
        snprintf(buf + used, len - used, "; last waited for %s from peer %d",
                 s->wait.credit ? "credit" : "data", s->wait.peer);
    (void)ctx;
}

const rdx_coll_algo_t rdx_algo_rd_allreduce = {
    .name = "rd", .start = rd_start, .progress = rd_progress, .describe = rd_describe,
};
