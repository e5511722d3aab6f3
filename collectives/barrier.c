/*
 * Dissemination barrier (Hensgen, Finkel, Manber 1988): ceil(log2 n) rounds of empty
 * messages; in round k rank r signals r + 2^k and waits for r - 2^k.
 *
 *   n = 5     round 0 (+1)        round 1 (+2)        round 2 (+4)
 *             0->1 1->2 2->3      0->2 1->3 2->4      0->4 1->0 2->1
 *             3->4 4->0           3->0 4->1           3->2 4->3
 *
 * After round k, rank r knows that ranks r-1 .. r-(2^(k+1)-1) have entered: after
 * ceil(log2 n) rounds, all of them. Works for any n, unlike a butterfly.
 *
 * Cost: T = ceil(log2 n) alpha (no data). Each directed link is used in one round only
 * (distances 2^k < n are distinct), so the per-pair FIFO order is trivial; the message of
 * round k+1 is sent only once round k's has arrived.
 */
#include "collectives/coll_util.h"

typedef struct barrier_state {
    int rounds;
    int round;      /* current round */
    bool sent;      /* this round's signal is out */
    coll_wait_t w;  /* for describe() */
} barrier_state_t;

static rdx_status_t barrier_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    barrier_state_t *s = (barrier_state_t *)op->state;
    memset(s, 0, sizeof(*s));
    s->rounds = coll_log2_ceil(ctx->size);
    s->w.peer = -1;
    return RDX_SUCCESS;
}

static rdx_status_t barrier_step(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op,
                                 barrier_state_t *s, bool *moved)
{
    int n = ctx->size, dist = 1 << s->round;
    int to = (ctx->rank + dist) % n, from = coll_mod(ctx->rank - dist, n);
    uint64_t tag = coll_tag(op, (uint32_t)s->round);
    *moved = false;
    if (!s->sent) {
        void *slot;
        RDX_CHECK(coll_acquire(ctx, &s->w, to, &slot));
        if (!slot)
            return RDX_SUCCESS;
        RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, rdx_coll_peer(ctx, to), 0, tag));
        s->sent = *moved = true;
    }
    const void *buf;
    RDX_CHECK(coll_peek(ctx, op, &s->w, from, tag, 0, &buf));
    if (!buf)
        return RDX_SUCCESS;
    RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, rdx_coll_peer(ctx, from)));
    s->round++;
    s->sent = false;
    *moved = true;
    return RDX_SUCCESS;
}

static rdx_status_t barrier_progress(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op,
                                     bool *progressed, bool *done)
{
    barrier_state_t *s = (barrier_state_t *)op->state;
    *progressed = false;
    if (coll_trivial(ctx, op)) {
        *done = *progressed = true;
        return RDX_SUCCESS;
    }
    while (s->round < s->rounds) {
        bool moved;
        RDX_CHECK(barrier_step(ctx, op, s, &moved));
        if (!moved)
            break;
        *progressed = true;
    }
    *done = s->round >= s->rounds;
    return RDX_SUCCESS;
}

static void barrier_describe(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, char *buf,
                             size_t len)
{
    const barrier_state_t *s = (const barrier_state_t *)op->state;
    snprintf(buf, len, "algo dissemination, round %d/%d (%s), waiting for %s from peer %d",
             s->round, s->rounds, s->sent ? "signal sent" : "signal not sent",
             s->w.credit ? "credit" : "the signal", s->w.peer);
    (void)ctx;
}

const rdx_coll_algo_t rdx_algo_dissemination_barrier = {
    .name = "dissemination", .start = barrier_start, .progress = barrier_progress,
    .describe = barrier_describe,
};
