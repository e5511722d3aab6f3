/*
 * Point-to-point send and receive as resumable operations over the transport FIFOs, driven
 * by the same request machinery as the collectives (src/request.c).
 *
 * A message of B bytes from rank a to rank b is ceil(B / slot) chunks (one empty chunk when
 * B = 0, so every send is matched by exactly one receive) on the a -> b FIFO:
 *
 *   a: rdx_isend #k to b                                  b: rdx_irecv #k from a
 *   for chunk i: send_acquire(b)   -- needs b's credit --
 *                copy chunk i into the slot, or            recv_peek(a): check tag, length
 *                send_commit_zcopy from the user buffer    copy into recvbuf
 *                send_commit(len, tag = fp(k) << 32 | i)   recv_release(a) -> credit to a
 *
 * Matching: the k-th send from a to b pairs with the k-th receive posted on b for a (no
 * tags, as in NCCL). fp(k) hashes the communicator, k, the dtype and the count, so a
 * receive whose count or dtype differs from the send, or a collective message where a
 * point-to-point one was expected (and the reverse), is RDX_ERR_MISMATCH naming the peer,
 * never a wrong result.
 *
 * Concurrency: only the oldest unfinished send to a peer moves (turn[SEND][peer] == k), so
 * two sends to the same peer never interleave chunks; the same for receives. Everything
 * else moves at once: sends to different peers, and a send and a receive with the same
 * peer (they use the two one-way FIFOs, whose credits do not depend on each other). That is
 * what makes a large exchange (isend + irecv with the same peer, each larger than the FIFO)
 * deadlock-free. A zero-copy send hands the turn on as soon as its last chunk is committed
 * but completes only when the transport says the user buffer is no longer read.
 */
#include <stdlib.h>
#include <string.h>

#include "collectives/coll_util.h"

enum { P2P_SEND = 0, P2P_RECV = 1 };

struct rdx_p2p_state {
    const rdx_coll_ctx_t *owner; /* a split communicator's ctx is a copy: not the owner */
    int size;
    uint32_t *issued;            /* [dir * size + rank]: operations posted so far */
    uint32_t *turn;              /* [dir * size + rank]: sequence of the one that may move */
};

typedef struct p2p_op_state {
    int peer;               /* communicator rank */
    int tp_peer;            /* transport peer */
    size_t bytes;
    size_t chunk;           /* payload per message: one slot */
    uint64_t nchunks;       /* messages of this operation (>= 1) */
    uint64_t moved;         /* messages committed (send) or copied out (receive) */
    size_t off;             /* bytes committed or copied out */
    bool my_turn;           /* the oldest unfinished operation in its direction to peer */
    bool passed;            /* turn handed to the next operation */
    bool zcopy;             /* a chunk went zero-copy: wait for the transport's flush */
} p2p_op_state_t;

_Static_assert(sizeof(p2p_op_state_t) <= sizeof(((rdx_coll_op_t *)0)->state),
               "p2p state must fit in rdx_coll_op_t");

static uint64_t p2p_mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* Identical for the k-th send from a to b and the k-th receive on b from a. */
static uint32_t p2p_fingerprint(const rdx_coll_ctx_t *ctx, const rdx_coll_args_t *a,
                                uint32_t seq)
{
    uint64_t h = 0x7032702070327032ull; /* "p2p": never a collective's start value */
    h = p2p_mix(h, ctx->comm_id);
    h = p2p_mix(h, seq);
    h = p2p_mix(h, (uint64_t)a->dtype);
    h = p2p_mix(h, (uint64_t)a->count);
    return (uint32_t)(h ^ (h >> 32));
}

static rdx_status_t state_get(rdx_coll_ctx_t *ctx, struct rdx_p2p_state **out)
{
    struct rdx_p2p_state *P = ctx->p2p;
    if (P && P->owner == ctx) {
        *out = P;
        return RDX_SUCCESS;
    }
    size_t n = 2 * (size_t)ctx->size;
    P = calloc(1, sizeof(*P) + 2 * n * sizeof(uint32_t));
    if (!P)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: point-to-point state for %d ranks: out "
                       "of memory", ctx->rank, ctx->size);
    P->owner = ctx;
    P->size = ctx->size;
    P->issued = (uint32_t *)(P + 1);
    P->turn = P->issued + n;
    ctx->p2p = P;
    *out = P;
    return RDX_SUCCESS;
}

void rdx_p2p_state_free(rdx_coll_ctx_t *ctx)
{
    if (ctx->p2p && ctx->p2p->owner == ctx)
        free(ctx->p2p);
    ctx->p2p = NULL;
}

static int p2p_dir(const rdx_coll_op_t *op)
{
    return op->args.kind == RDX_COLL_SEND ? P2P_SEND : P2P_RECV;
}

static uint32_t *turn_of(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op)
{
    const p2p_op_state_t *s = (const p2p_op_state_t *)op->state;
    return &ctx->p2p->turn[p2p_dir(op) * ctx->p2p->size + s->peer];
}

rdx_status_t rdx_p2p_start(rdx_coll_ctx_t *ctx, const rdx_coll_args_t *args, rdx_coll_op_t *op)
{
    if (args->root < 0 || args->root >= ctx->size || args->root == ctx->rank)
        return rdx_err(args->root == ctx->rank ? RDX_ERR_UNSUPPORTED : RDX_ERR_INVALID_ARG,
                       "rank %d: %s: peer %d is not another rank of this communicator (size "
                       "%d)%s", ctx->rank, rdx_coll_kind_name(args->kind), args->root,
                       ctx->size, args->root == ctx->rank ? ": a rank cannot send to or "
                       "receive from itself (copy the buffer instead)" : "");
    struct rdx_p2p_state *P = NULL;
    RDX_CHECK(state_get(ctx, &P));
    int dir = args->kind == RDX_COLL_SEND ? P2P_SEND : P2P_RECV;
    memset(op, 0, offsetof(rdx_coll_op_t, state));
    op->algo = dir == P2P_SEND ? &rdx_algo_p2p_send : &rdx_algo_p2p_recv;
    op->args = *args;
    op->seq = P->issued[dir * P->size + args->root]++;
    op->fingerprint = p2p_fingerprint(ctx, args, op->seq);
    op->chunk_bytes = ctx->slot_bytes;
    return op->algo->start(ctx, op);
}

static rdx_status_t p2p_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    p2p_op_state_t *s = (p2p_op_state_t *)op->state;
    memset(s, 0, sizeof(*s));
    if (!ctx->slot_bytes)
        return rdx_err(RDX_ERR_INTERNAL, "rank %d: point-to-point without transport slots",
                       ctx->rank);
    s->peer = op->args.root;
    s->tp_peer = rdx_coll_peer(ctx, s->peer);
    s->bytes = op->args.count * rdx_dtype_size(op->args.dtype);
    s->chunk = ctx->slot_bytes;
    s->nchunks = s->bytes ? coll_div_up(s->bytes, s->chunk) : 1;
    return RDX_SUCCESS;
}

/* True when op is the oldest unfinished operation of its direction with its peer. */
static bool p2p_my_turn(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    p2p_op_state_t *s = (p2p_op_state_t *)op->state;
    if (!s->my_turn && *turn_of(ctx, op) == op->seq)
        s->my_turn = true;
    return s->my_turn;
}

static void p2p_pass_turn(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    p2p_op_state_t *s = (p2p_op_state_t *)op->state;
    if (!s->passed) {
        (*turn_of(ctx, op))++;
        s->passed = true;
    }
}

static uint64_t chunk_tag(const rdx_coll_op_t *op, uint64_t i)
{
    return coll_tag(op, (uint32_t)i);
}

/* One chunk out: straight from the user buffer when the transport can, else through the
 * acquired slot. */
static rdx_status_t send_chunk(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, void *slot,
                               const char *src, size_t len)
{
    p2p_op_state_t *s = (p2p_op_state_t *)op->state;
    uint64_t tag = chunk_tag(op, s->moved);
    bool sent = false;
    if (len && ctx->tp_ops->send_commit_zcopy) {
        RDX_CHECK(ctx->tp_ops->send_commit_zcopy(ctx->tp, s->tp_peer, src, len, tag, &sent));
        s->zcopy |= sent;
    }
    if (!sent) {
        if (len)
            memcpy(slot, src, len);
        RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, s->tp_peer, len, tag));
    }
    return RDX_SUCCESS;
}

static rdx_status_t send_progress(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op,
                                  bool *progressed, bool *done)
{
    p2p_op_state_t *s = (p2p_op_state_t *)op->state;
    *progressed = false;
    *done = false;
    if (!p2p_my_turn(ctx, op))
        return RDX_SUCCESS;
    const char *src = op->args.sendbuf;
    while (s->moved < s->nchunks) {
        void *slot;
        RDX_CHECK(ctx->tp_ops->send_acquire(ctx->tp, s->tp_peer, &slot));
        if (!slot)
            return RDX_SUCCESS;
        size_t len = s->bytes - s->off < s->chunk ? s->bytes - s->off : s->chunk;
        RDX_CHECK(send_chunk(ctx, op, slot, src + s->off, len));
        s->off += len;
        s->moved++;
        *progressed = true;
    }
    p2p_pass_turn(ctx, op);
    if (s->zcopy) {
        bool flushed = false;
        RDX_CHECK(ctx->tp_ops->send_zcopy_flushed(ctx->tp, s->tp_peer, &flushed));
        if (!flushed)
            return RDX_SUCCESS;
    }
    *done = true;
    return RDX_SUCCESS;
}

static rdx_status_t recv_mismatch(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op,
                                  uint64_t got_tag, size_t got_len, uint64_t want_tag,
                                  size_t max_len)
{
    const p2p_op_state_t *s = (const p2p_op_state_t *)op->state;
    return rdx_err(RDX_ERR_MISMATCH,
                   "rank %d: recv #%u from peer %d (%s count %zu): message %llu does not "
                   "match: got fingerprint %08x position %08x len %zu, expected %08x position "
                   "%08x len <= %zu: the peer's send #%u to this rank has another count or "
                   "dtype, or the two ranks issued their sends, receives and collectives with "
                   "each other in a different order",
                   ctx->rank, op->seq, s->peer, rdx_dtype_name(op->args.dtype), op->args.count,
                   (unsigned long long)s->moved, (unsigned)(got_tag >> 32), (unsigned)got_tag,
                   got_len, (unsigned)(want_tag >> 32), (unsigned)want_tag, max_len, op->seq);
}

static rdx_status_t recv_progress(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op,
                                  bool *progressed, bool *done)
{
    p2p_op_state_t *s = (p2p_op_state_t *)op->state;
    *progressed = false;
    *done = false;
    if (!p2p_my_turn(ctx, op))
        return RDX_SUCCESS;
    char *dst = op->args.recvbuf;
    while (s->moved < s->nchunks) {
        const void *buf;
        size_t len;
        uint64_t tag;
        RDX_CHECK(ctx->tp_ops->recv_peek(ctx->tp, s->tp_peer, &buf, &len, &tag));
        if (!buf)
            return RDX_SUCCESS;
        size_t left = s->bytes - s->off;
        size_t want = left < s->chunk ? left : s->chunk;
        uint64_t want_tag = chunk_tag(op, s->moved);
        if (tag != want_tag || len != want)
            return recv_mismatch(ctx, op, tag, len, want_tag, want);
        if (len)
            memcpy(dst + s->off, buf, len);
        RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, s->tp_peer));
        s->off += len;
        s->moved++;
        *progressed = true;
    }
    p2p_pass_turn(ctx, op);
    *done = true;
    return RDX_SUCCESS;
}

static void p2p_describe(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, char *buf,
                         size_t len)
{
    const p2p_op_state_t *s = (const p2p_op_state_t *)op->state;
    bool send = op->args.kind == RDX_COLL_SEND;
    const char *why;
    if (!s->my_turn)
        why = send ? "an earlier send to this peer has not finished"
                   : "an earlier receive from this peer has not finished";
    else if (s->moved == s->nchunks)
        why = "waiting for the transport to finish reading the user buffer (zero-copy)";
    else if (send)
        why = "waiting for credit (the peer has not received earlier chunks: did it post "
              "the matching receive?)";
    else
        why = "waiting for the peer's data (did it post the matching send?)";
    snprintf(buf, len, "rank %d: %s #%u %s peer %d: %llu of %llu chunks %s; %s", ctx->rank,
             send ? "send" : "recv", op->seq, send ? "to" : "from", s->peer,
             (unsigned long long)s->moved, (unsigned long long)s->nchunks,
             send ? "sent" : "received", why);
}

const rdx_coll_algo_t rdx_algo_p2p_send = {
    .name = "p2p", .start = p2p_start, .progress = send_progress, .describe = p2p_describe,
};

const rdx_coll_algo_t rdx_algo_p2p_recv = {
    .name = "p2p", .start = p2p_start, .progress = recv_progress, .describe = p2p_describe,
};
