/*
 * Ring allreduce: reduce-scatter then allgather, pipelined in slices.
 *
 *   n ranks in a ring, each sends to r+1 and receives from r-1. The buffer is processed in
 *   rounds; a round is split into n segments, one "owned" by each rank at the end of the
 *   reduce-scatter. Example n = 4, segments A B C D, subscript = ranks summed so far:
 *
 *            rank0      rank1      rank2      rank3
 *   step 0:  A0 ->      B1 ->      C2 ->      D3 ->        (send own segment r)
 *   step 1:  D3+0 ->    A0+1 ->    B1+2 ->    C2+3 ->      (reduce what arrived, forward)
 *   step 2:  C23+0 ->   D30+1 ->   A01+2 ->   B12+3 ->
 *            rank0 now owns B (all 4), rank1 C, rank2 D, rank3 A: final result, scaled once
 *            for AVG, written to recvbuf AND forwarded in the same pass
 *   steps 3..5: allgather: copy what arrives to recvbuf and forward it
 *
 *   2(n-1) steps. Each step moves one segment of every round in K slices; the receiver
 *   reduces slice s straight out of the transport slot while slice s+1 is in flight, and
 *   writes the output directly into the right neighbour's slot (on shared memory that IS the
 *   neighbour's memory): moving slice k+1 overlaps reducing slice k, and no staging copy.
 *
 * Cost (Thakur, Rabenseifner, Gropp 2005; alpha = per-message latency, beta = s/byte moved,
 * gamma = s/byte reduced, N bytes):  T = 2(n-1) alpha + 2 (n-1)/n N beta + (n-1)/n N gamma.
 * Bandwidth-optimal; latency grows linearly in n (the tree and recursive doubling in
 * issue 4 take over for small messages).
 *
 * The same machinery runs the ring reduce_scatter (only the first n-1 steps; segment = the
 * user's block, shifted so rank r finishes with block r) and the ring allgather (only the
 * last n-1 steps; step 0 sends the rank's own block):
 *   reduce_scatter: T = (n-1) alpha + (n-1)/n N beta + (n-1)/n N gamma   (N = n x recvcount)
 *   allgather:      T = (n-1) alpha + (n-1)/n N beta                      (N = n x sendcount)
 * For these two the "segments" of a round are slices of the n user blocks (the "blocked"
 * geometry) instead of n parts of one contiguous range.
 *
 * Deadlock freedom: every rank sends and receives in the same global order
 * P = for round: for step: for slice, and a slice received at step m is forwarded as step
 * m+1. The FIFO to the right holds `slots` = 2K messages, i.e. two steps' worth, which is
 * the invariant NCCL relies on (NCCL_STEPS = 2 x chunk steps): a rank can always finish
 * the current step while the next one is being filled.
 */
#include "collectives/coll_util.h"

/* Slices smaller than this only add per-message overhead (measured on shared memory). */
#define RING_MIN_SLICE_BYTES 8192

typedef struct ring_cursor {
    uint32_t round;
    uint32_t step;
    uint32_t slice;
} ring_cursor_t;

typedef struct ring_state {
    int left, right;        /* communicator ranks */
    int left_tp, right_tp;  /* the same as transport peers */
    int nsteps;             /* rs_steps + ag_steps: 2(n-1) for allreduce */
    int rs_steps;           /* reduce-scatter steps: n-1, or 0 (allgather) */
    int rs_shift, ag_shift; /* segment offsets: which block each rank starts/ends with */
    bool blocked;           /* segments are the user's n blocks of `count` (RS, AG) */
    size_t esize;
    size_t slice_elems;     /* most elements one slot carries */
    size_t round_elems;     /* elements per full round */
    uint32_t nrounds;
    uint32_t kmax;          /* slices per segment per step (slots / 2) */
    ring_cursor_t send;     /* next message to send, in P order */
    ring_cursor_t recv;     /* next message expected from the left */
    bool waiting_credit;    /* for describe(): blocked on the right neighbour */
} ring_state_t;

_Static_assert(sizeof(ring_state_t) <= sizeof(((rdx_coll_op_t *)0)->state),
               "ring state must fit in rdx_coll_op_t");

/* Geometry of one round: its element range and slices per segment. Pure function of
 * (count, n, slot size): every rank computes the same. */
typedef struct round_geom {
    size_t off;      /* first element of the round */
    size_t cnt;      /* elements in the round */
    uint32_t k;      /* slices per segment */
} round_geom_t;

static round_geom_t round_geom(const ring_state_t *s, const rdx_coll_op_t *op, int n,
                               uint32_t round)
{
    round_geom_t g;
    g.off = (size_t)round * s->round_elems;
    size_t left = op->args.count - g.off;
    g.cnt = left < s->round_elems ? left : s->round_elems;
    /* blocked: g.off/g.cnt are within each block, and a segment is that part of its block */
    size_t seg_max = s->blocked ? g.cnt : (g.cnt + (size_t)n - 1) / (size_t)n;
    size_t min_slice = RING_MIN_SLICE_BYTES / s->esize;
    if (min_slice > s->slice_elems)
        min_slice = s->slice_elems;
    size_t k = (seg_max + min_slice - 1) / min_slice;
    if (k < 1)
        k = 1;
    if (k > s->kmax)
        k = s->kmax;
    g.k = (uint32_t)k;
    return g;
}

/* Element range [*start, *start + *len) of (segment, slice) within round g, as an index
 * into the full buffer (n x count for the blocked geometry). */
static void slice_range(const ring_state_t *s, const rdx_coll_op_t *op, const round_geom_t *g,
                        int n, int seg, uint32_t slice, size_t *start, size_t *len)
{
    size_t seg_lo, seg_len;
    if (s->blocked) {
        seg_lo = (size_t)seg * op->args.count + g->off;
        seg_len = g->cnt;
    } else {
        seg_lo = g->off + g->cnt * (size_t)seg / (size_t)n;
        seg_len = g->off + g->cnt * (size_t)(seg + 1) / (size_t)n - seg_lo;
    }
    size_t lo = seg_len * slice / g->k, hi = seg_len * (slice + 1) / g->k;
    *start = seg_lo + lo;
    *len = hi - lo;
}

static inline int mod(int a, int n) { return coll_mod(a, n); }

/* Which segment a message of `step` carries when sent by rank `from`. Allreduce: rank r
 * starts the reduce-scatter with segment r and ends owning r+1, which the allgather sends
 * first. Reduce_scatter shifts by one so that rank r ends owning block r; allgather starts
 * with the rank's own block. */
static int step_segment(const ring_state_t *s, int from, int step, int n)
{
    if (step < s->rs_steps)
        return mod(from - step + s->rs_shift, n);
    return mod(from + s->ag_shift - (step - s->rs_steps), n);
}

static uint64_t make_tag(const rdx_coll_op_t *op, const ring_cursor_t *c)
{
    return ((uint64_t)op->fingerprint << 32) | ((uint64_t)(c->round & 0xfff) << 20) |
           ((uint64_t)(c->step & 0xfff) << 8) | (c->slice & 0xff);
}

static void cursor_next(const ring_state_t *s, const rdx_coll_op_t *op, int n, ring_cursor_t *c)
{
    round_geom_t g = round_geom(s, op, n, c->round);
    if (++c->slice < g.k)
        return;
    c->slice = 0;
    if (++c->step < (uint32_t)s->nsteps)
        return;
    c->step = 0;
    c->round++;
}

static const char *elem_ptr(const void *base, size_t i, size_t esize)
{
    return (const char *)base + i * esize;
}

static rdx_status_t ring_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    ring_state_t *s = (ring_state_t *)op->state;
    int n = ctx->size;
    memset(s, 0, sizeof(*s));
    s->left = mod(ctx->rank - 1, n);
    s->right = mod(ctx->rank + 1, n);
    s->left_tp = rdx_coll_peer(ctx, s->left);
    s->right_tp = rdx_coll_peer(ctx, s->right);
    switch (op->args.kind) {
    case RDX_COLL_REDUCE_SCATTER:
        s->rs_steps = n - 1;
        s->rs_shift = -1;
        s->blocked = true;
        break;
    case RDX_COLL_ALLGATHER:
        s->ag_shift = 0;
        s->blocked = true;
        break;
    default:
        s->rs_steps = n - 1;
        s->ag_shift = 1;
        break;
    }
    s->nsteps = s->rs_steps + (op->args.kind == RDX_COLL_REDUCE_SCATTER ? 0 : n - 1);
    s->esize = rdx_dtype_size(op->args.dtype);
    s->slice_elems = coll_chunk_elems(ctx, op, s->esize);
    s->kmax = (uint32_t)(ctx->slots / 2);
    if (s->kmax > 255)
        s->kmax = 255;
    s->round_elems = (s->blocked ? 1 : (size_t)n) * s->kmax * s->slice_elems;
    s->nrounds = (uint32_t)((op->args.count + s->round_elems - 1) / s->round_elems);
    if (n > 2048)
        return rdx_err(RDX_ERR_UNSUPPORTED, "rank %d: ring %s supports at most 2048 "
                       "ranks (got %d)", ctx->rank, rdx_coll_kind_name(op->args.kind), n);
    return RDX_SUCCESS;
}

/* Where a segment element lives in the caller's buffers: the full-buffer index `start` is
 * also the index into sendbuf (allreduce, reduce_scatter) and recvbuf (allreduce,
 * allgather); reduce_scatter's recvbuf holds only block `rank`, allgather's sendbuf only
 * block `rank`. */
static size_t own_block_index(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, size_t start)
{
    return start - (size_t)ctx->rank * op->args.count;
}

/* Step 0: send this rank's own contribution of its segment. */
static rdx_status_t send_fresh(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, ring_state_t *s,
                               bool *sent)
{
    int n = ctx->size;
    void *slot;
    *sent = false;
    RDX_CHECK(ctx->tp_ops->send_acquire(ctx->tp, s->right_tp, &slot));
    if (!slot) {
        s->waiting_credit = true;
        return RDX_SUCCESS;
    }
    round_geom_t g = round_geom(s, op, n, s->send.round);
    size_t start, len;
    slice_range(s, op, &g, n, step_segment(s, ctx->rank, 0, n), s->send.slice, &start, &len);
    if (op->args.kind == RDX_COLL_ALLGATHER) {
        /* The own block goes to the right and, out of place, into recvbuf in one pass. */
        const char *src = elem_ptr(op->args.sendbuf, own_block_index(ctx, op, start), s->esize);
        char *dst = coll_ptr(op->args.recvbuf, start, s->esize);
        rdx_copy2(slot, dst == src ? NULL : dst, src, len * s->esize);
    } else {
        rdx_copy2(slot, NULL, elem_ptr(op->args.sendbuf, start, s->esize), len * s->esize);
    }
    RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, s->right_tp, len * s->esize,
                                       make_tag(op, &s->send)));
    cursor_next(s, op, n, &s->send);
    *sent = true;
    return RDX_SUCCESS;
}

/* Handles the message at the receive cursor: reduce or copy it, forward it fused. */
static rdx_status_t recv_one(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, ring_state_t *s,
                             bool *moved)
{
    int n = ctx->size;
    const void *in;
    size_t in_len;
    uint64_t tag;
    *moved = false;
    RDX_CHECK(ctx->tp_ops->recv_peek(ctx->tp, s->left_tp, &in, &in_len, &tag));
    if (!in)
        return RDX_SUCCESS;

    int step = (int)s->recv.step;
    bool forward = step < s->nsteps - 1;
    void *out = NULL;
    if (forward) {
        /* The forwarded message must be the next one in P order on the right link. */
        if (s->send.round != s->recv.round || s->send.step != s->recv.step + 1 ||
            s->send.slice != s->recv.slice)
            return RDX_SUCCESS; /* fresh sends of this round still need credit */
        RDX_CHECK(ctx->tp_ops->send_acquire(ctx->tp, s->right_tp, &out));
        if (!out) {
            s->waiting_credit = true;
            return RDX_SUCCESS;
        }
    }

    round_geom_t g = round_geom(s, op, n, s->recv.round);
    size_t start, len;
    slice_range(s, op, &g, n, step_segment(s, s->left, step, n), s->recv.slice, &start, &len);
    size_t bytes = len * s->esize;
    RDX_CHECK(coll_check_msg(ctx, op, s->left, tag, in_len, make_tag(op, &s->recv), bytes));

    size_t dst_index = op->args.kind == RDX_COLL_REDUCE_SCATTER ? own_block_index(ctx, op, start)
                                                                : start;
    void *dst = (char *)op->args.recvbuf + dst_index * s->esize;
    if (step < s->rs_steps - 1) {
        const void *mine = elem_ptr(op->args.sendbuf, start, s->esize);
        rdx_reduce_local(op->args.dtype, op->args.op, out, NULL, in, mine, len, 0);
    } else if (step == s->rs_steps - 1) {
        const void *mine = elem_ptr(op->args.sendbuf, start, s->esize);
        int div = op->args.op == RDX_AVG ? n : 0;
        rdx_reduce_local(op->args.dtype, op->args.op, dst, out, in, mine, len, div);
    } else {
        rdx_copy2(dst, out, in, bytes);
    }
    if (forward) {
        RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, s->right_tp, bytes, make_tag(op, &s->send)));
        cursor_next(s, op, n, &s->send);
    }
    RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, s->left_tp));
    cursor_next(s, op, n, &s->recv);
    *moved = true;
    return RDX_SUCCESS;
}

static rdx_status_t ring_progress(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, bool *progressed,
                                  bool *done)
{
    ring_state_t *s = (ring_state_t *)op->state;
    *progressed = false;
    if (coll_trivial(ctx, op)) {
        *done = *progressed = true;
        return RDX_SUCCESS;
    }
    for (;;) {
        bool moved = false;
        s->waiting_credit = false;
        if (s->send.step == 0 && s->send.round < s->nrounds)
            RDX_CHECK(send_fresh(ctx, op, s, &moved));
        if (!moved && s->recv.round < s->nrounds)
            RDX_CHECK(recv_one(ctx, op, s, &moved));
        if (!moved)
            break;
        *progressed = true;
    }
    /* Both cursors: with one step (n = 2 reduce_scatter/allgather) the sends are not fused
     * with receives, and a rank may have received everything while its own last messages
     * still wait for credit. */
    *done = s->recv.round >= s->nrounds && s->send.round >= s->nrounds;
    return RDX_SUCCESS;
}

static void ring_describe(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, char *buf,
                          size_t len)
{
    const ring_state_t *s = (const ring_state_t *)op->state;
    snprintf(buf, len, "algo ring, round %u/%u, receive step %u/%d slice %u (waiting for data "
             "from peer %d), send step %u%s", s->recv.round, s->nrounds, s->recv.step,
             s->nsteps, s->recv.slice, s->left, s->send.step,
             s->waiting_credit ? " (waiting for credit from peer " : "");
    if (s->waiting_credit) {
        size_t l = strlen(buf);
        snprintf(buf + l, len - l, "%d)", s->right);
    }
    (void)ctx;
}

const rdx_coll_algo_t rdx_algo_ring_allreduce = {
    .name = "ring",
    .start = ring_start,
    .progress = ring_progress,
    .describe = ring_describe,
};

const rdx_coll_algo_t rdx_algo_ring_reduce_scatter = {
    .name = "ring",
    .start = ring_start,
    .progress = ring_progress,
    .describe = ring_describe,
};

const rdx_coll_algo_t rdx_algo_ring_allgather = {
    .name = "ring",
    .start = ring_start,
    .progress = ring_progress,
    .describe = ring_describe,
};
