/* Helpers shared by the algorithms: see coll_util.h. */
#include "collectives/coll_util.h"

rdx_status_t coll_check_msg(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, int peer,
                            uint64_t got_tag, size_t got_len, uint64_t want_tag,
                            size_t want_len)
{
    /* RDX_CHECK=0 drops the fingerprint half of the comparison (about 10 ns a call at 8 B);
     * the position and the length are always checked: a message is never reduced into the
     * wrong place or past its end. */
    uint64_t mask = ctx->check ? ~0ull : 0xffffffffull;
    if (((got_tag ^ want_tag) & mask) == 0 && got_len == want_len)
        return RDX_SUCCESS;
    return rdx_err(RDX_ERR_MISMATCH,
                   "rank %d: %s #%u (algo %s, %s %s count %zu root %d): message from peer %d "
                   "does not match: got fingerprint %08x position %08x len %zu, expected "
                   "%08x position %08x len %zu: ranks called different collectives, counts, "
                   "types, ops, roots or algorithms (RDX_ALGO must be equal on every rank), "
                   "or two communicators sharing a transport ran at once",
                   ctx->rank, rdx_coll_kind_name(op->args.kind), op->seq, op->algo->name,
                   rdx_dtype_name(op->args.dtype), rdx_op_name(op->args.op), op->args.count,
                   op->args.root, peer, (unsigned)(got_tag >> 32), (unsigned)got_tag, got_len,
                   (unsigned)(want_tag >> 32), (unsigned)want_tag, want_len);
}

rdx_status_t coll_acquire(const rdx_coll_ctx_t *ctx, coll_wait_t *w, int peer, void **slot)
{
    RDX_CHECK(ctx->tp_ops->send_acquire(ctx->tp, rdx_coll_peer(ctx, peer), slot));
    if (!*slot) {
        w->peer = peer;
        w->credit = true;
    }
    return RDX_SUCCESS;
}

rdx_status_t coll_peek(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, coll_wait_t *w,
                       int peer, uint64_t want, size_t bytes, const void **buf)
{
    size_t len;
    uint64_t tag;
    RDX_CHECK(ctx->tp_ops->recv_peek(ctx->tp, rdx_coll_peer(ctx, peer), buf, &len, &tag));
    if (!*buf) {
        w->peer = peer;
        w->credit = false;
        return RDX_SUCCESS;
    }
    return coll_check_msg(ctx, op, peer, tag, len, want, bytes);
}

static void copy_if_apart(void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src)
        memcpy(dst, src, bytes);
}

bool coll_trivial(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op)
{
    const rdx_coll_args_t *a = &op->args;
    size_t bytes = a->count * rdx_dtype_size(a->dtype);
    if (a->kind == RDX_COLL_BARRIER)
        return ctx->size == 1;
    if (ctx->size > 1 && a->count > 0)
        return false;
    if (ctx->size > 1)
        return true; /* count 0: every rank has nothing to move */
    switch (a->kind) {
    case RDX_COLL_BROADCAST:
    case RDX_COLL_REDUCE:
        if (a->root == ctx->rank)
            copy_if_apart(a->recvbuf, a->sendbuf, bytes);
        break;
    default: /* allreduce, reduce_scatter, allgather: one block, the rank's own */
        copy_if_apart(a->recvbuf, a->sendbuf, bytes);
        break;
    }
    return true;
}
