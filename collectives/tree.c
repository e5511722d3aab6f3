/*
 * Trees: the double binary tree allreduce (as NCCL builds it), and the binary-tree and
 * pipelined-chain broadcast and reduce, all one engine.
 *
 * Binary tree over n ranks (NCCL's ncclGetBtree; root 0 has a single child, every other
 * rank at most two; interior ranks are the even ones, leaves the odd ones), and its
 * complement for the second tree: mirrored (r -> n-1-r) for even n, shifted (r -> r+1) for
 * odd n, so that every rank is a leaf in one tree and interior in the other:
 *
 *     tree 0 (n = 8)                 tree 1 (mirror)
 *     0                              7
 *      \                             /
 *       4                           3
 *      / \                         / \
 *     2   6                       5   1
 *    / \  / \                    / \ / \
 *   1  3 5   7                  6  4 2  0
 *
 * Allreduce: each tree carries half of the vector, cut in chunks. Up (reduce): a rank
 * combines chunk k from its children with its own input and writes the sum straight into
 * its parent's slot; the root completes chunk k (scaled once for AVG) into recvbuf. Down
 * (broadcast): the root sends chunk k back down; each rank copies it to recvbuf and into its
 * children's slots in one pass. Chunks pipeline: while chunk k is broadcast, chunk k+1 is
 * being reduced, and the two trees run at once on the same links.
 *
 * Broadcast and reduce use one binary tree rooted at `root` (ranks relabelled r - root), or
 * the chain root -> root+1 -> ... -> root-1 (a "tree" of out-degree one), pipelined the same
 * way: the chain is bandwidth-optimal for large vectors, the tree latency-optimal.
 *
 * Cost (alpha per message, beta per byte moved, gamma per byte reduced, N bytes, chunk s,
 * D = ceil(log2 n), M = chunks per tree):
 *   allreduce (double tree, M = N/2s): T = 2D (alpha + s beta + s gamma)
 *                                          + (M-1) (4 alpha + 4 s beta + 2 s gamma)
 *     (fill the pipeline up and down, then per chunk each rank sends 4 messages: 1 up and
 *      2 down in the tree where it is interior, 1 up and 0 down where it is a leaf... plus
 *      receives; large N: 2 N beta + N gamma, latency 2D alpha for small N)
 *   broadcast/reduce, binary tree (M = N/s): T = (D + 2(M-1)) (alpha + s beta [+ s gamma])
 *   broadcast/reduce, chain:                 T = (n - 1 + M - 1) (alpha + s beta [+ s gamma])
 *
 * Sharing links without deadlock. Between two ranks there is ONE FIFO per direction, and
 * with two trees it can carry several streams (rank a may be b's parent in tree 0 and its
 * child in tree 1). Every message gets a key, and both ends put messages on a link in
 * increasing key order:
 *     up   chunk k of tree t: key 4k + t
 *     down chunk k of tree t: key 4(k + L) + 2 + t      (L = lag, below)
 * A rank handles a message only when its key is the smallest still due on that link, in both
 * directions. Each event (consume a chunk from the children and send it up; consume it from
 * the parent and send it down) involves one key; the only cross-key dependency, "the root
 * may send chunk k down once it has reduced chunk k", goes from a smaller key to a larger
 * one. So take the smallest key whose events never happen: every message with a smaller key
 * was consumed, so every link it uses is empty (credit available with any slots >= 1) and
 * its turn has come; the events of that key form one tree, whose first event has all its
 * inputs: a contradiction. The lag L lets up-streams run L chunks ahead of down-streams on
 * a shared link instead of alternating in lockstep.
 */
#include "collectives/coll_util.h"

typedef enum { SHAPE_DOUBLE_TREE, SHAPE_TREE, SHAPE_CHAIN } tree_shape_t;

typedef struct tree_links {
    int parent;        /* communicator rank; -1 at the root */
    int child[2];      /* -1 when absent */
    int parent_tp;
    int child_tp[2];
} tree_links_t;

typedef struct tree_state {
    tree_links_t t[2];
    int ntrees;
    bool up, down;            /* phases present: reduce toward the root, broadcast from it */
    size_t esize, chunk_elems;
    size_t off[2], cnt[2];    /* element range of each tree */
    uint64_t nchunks[2];
    uint64_t upc[2], downc[2];/* next chunk of each stream at this rank */
    uint64_t lag;
    coll_wait_t w;            /* for describe(): last peer we could not move for */
} tree_state_t;

_Static_assert(sizeof(tree_state_t) <= sizeof(((rdx_coll_op_t *)0)->state),
               "tree state must fit in rdx_coll_op_t");

/* NCCL's binary tree over virtual ranks 0..n-1, rooted at 0. */
static void btree(int n, int v, int *up, int *d0, int *d1)
{
    int bit;
    for (bit = 1; bit < n; bit <<= 1)
        if (bit & v)
            break;
    if (v == 0) {
        *up = -1;
        *d0 = -1;
        *d1 = n > 1 ? bit >> 1 : -1;
        return;
    }
    int parent = (v ^ bit) | (bit << 1);
    if (parent >= n)
        parent = v ^ bit;
    *up = parent;
    int lowbit = bit >> 1;
    *d0 = lowbit ? v - lowbit : -1;
    int down1 = lowbit ? v + lowbit : -1;
    while (down1 >= n) {
        lowbit >>= 1;
        down1 = lowbit ? v + lowbit : -1;
    }
    *d1 = down1;
}

/* Links of virtual rank v in tree `which` of `shape`; virtual ranks are mapped to real ones
 * by +root (mod n). Children are ordered so that child[0] < child[1] in virtual ranks. */
static void tree_links(tree_shape_t shape, int which, int n, int v, int root, int out[3])
{
    int up, d0, d1;
    if (shape == SHAPE_CHAIN) {
        up = v > 0 ? v - 1 : -1;
        d0 = v + 1 < n ? v + 1 : -1;
        d1 = -1;
    } else if (which == 0) {
        btree(n, v, &up, &d0, &d1);
    } else if (n % 2) { /* shift by one */
        btree(n, coll_mod(v - 1, n), &up, &d0, &d1);
        up = up < 0 ? -1 : (up + 1) % n;
        d0 = d0 < 0 ? -1 : (d0 + 1) % n;
        d1 = d1 < 0 ? -1 : (d1 + 1) % n;
    } else { /* mirror */
        btree(n, n - 1 - v, &up, &d0, &d1);
        up = up < 0 ? -1 : n - 1 - up;
        d0 = d0 < 0 ? -1 : n - 1 - d0;
        d1 = d1 < 0 ? -1 : n - 1 - d1;
    }
    out[0] = up < 0 ? -1 : (up + root) % n;
    out[1] = d0 < 0 ? -1 : (d0 + root) % n;
    out[2] = d1 < 0 ? -1 : (d1 + root) % n;
}

/* Exposed for the unit test of the shapes: parent, child0, child1 of `rank`. */
void rdx_tree_links_for_test(int shape, int which, int n, int rank, int root, int out[3]);
void rdx_tree_links_for_test(int shape, int which, int n, int rank, int root, int out[3])
{
    tree_links((tree_shape_t)shape, which, n, coll_mod(rank - root, n), root, out);
}

static uint64_t key_up(uint64_t k, int t) { return 4 * k + (uint64_t)t; }
static uint64_t key_down(const tree_state_t *s, uint64_t k, int t)
{
    return 4 * (k + s->lag) + 2 + (uint64_t)t;
}

static bool is_child(const tree_links_t *l, int q) { return l->child[0] == q || l->child[1] == q; }

/* Smallest key still due on the link q -> me. */
static uint64_t in_next(const tree_state_t *s, int q)
{
    uint64_t best = UINT64_MAX;
    for (int t = 0; t < s->ntrees; t++) {
        const tree_links_t *l = &s->t[t];
        if (s->up && s->upc[t] < s->nchunks[t] && is_child(l, q) && key_up(s->upc[t], t) < best)
            best = key_up(s->upc[t], t);
        if (s->down && s->downc[t] < s->nchunks[t] && l->parent == q &&
            key_down(s, s->downc[t], t) < best)
            best = key_down(s, s->downc[t], t);
    }
    return best;
}

/* Smallest key still due on the link me -> q. */
static uint64_t out_next(const tree_state_t *s, int q)
{
    uint64_t best = UINT64_MAX;
    for (int t = 0; t < s->ntrees; t++) {
        const tree_links_t *l = &s->t[t];
        if (s->up && s->upc[t] < s->nchunks[t] && l->parent == q && key_up(s->upc[t], t) < best)
            best = key_up(s->upc[t], t);
        if (s->down && s->downc[t] < s->nchunks[t] && is_child(l, q) &&
            key_down(s, s->downc[t], t) < best)
            best = key_down(s, s->downc[t], t);
    }
    return best;
}

static void chunk_range(const tree_state_t *s, int t, uint64_t k, size_t *start, size_t *len)
{
    size_t lo = (size_t)k * s->chunk_elems;
    *start = s->off[t] + lo;
    *len = s->cnt[t] - lo < s->chunk_elems ? s->cnt[t] - lo : s->chunk_elems;
}

static rdx_status_t tree_init(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, tree_shape_t shape,
                              bool up, bool down)
{
    tree_state_t *s = (tree_state_t *)op->state;
    int n = ctx->size;
    memset(s, 0, sizeof(*s));
    s->up = up;
    s->down = down;
    s->ntrees = shape == SHAPE_DOUBLE_TREE && n > 1 && op->args.count > 1 ? 2 : 1;
    s->esize = rdx_dtype_size(op->args.dtype);
    s->chunk_elems = coll_chunk_elems(ctx, op, s->esize);
    int root = op->args.kind == RDX_COLL_ALLREDUCE ? 0 : op->args.root;
    s->cnt[0] = s->ntrees == 2 ? op->args.count - op->args.count / 2 : op->args.count;
    s->cnt[1] = s->ntrees == 2 ? op->args.count / 2 : 0;
    s->off[1] = s->cnt[0];
    int depth = coll_log2_ceil(n + 1);
    s->lag = (uint64_t)(ctx->slots > 2 * depth ? ctx->slots : 2 * depth);
    for (int t = 0; t < s->ntrees; t++) {
        int l[3];
        tree_links(shape, t, n, coll_mod(ctx->rank - root, n), root, l);
        s->t[t].parent = l[0];
        s->t[t].child[0] = l[1];
        s->t[t].child[1] = l[2];
        s->t[t].parent_tp = l[0] < 0 ? -1 : rdx_coll_peer(ctx, l[0]);
        s->t[t].child_tp[0] = l[1] < 0 ? -1 : rdx_coll_peer(ctx, l[1]);
        s->t[t].child_tp[1] = l[2] < 0 ? -1 : rdx_coll_peer(ctx, l[2]);
        s->nchunks[t] = coll_div_up(s->cnt[t], s->chunk_elems);
    }
    s->w.peer = -1;
    return RDX_SUCCESS;
}

/* Peeks the message of `key` from q into *buf (NULL: not there yet or not its turn). */
static rdx_status_t take_in(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, tree_state_t *s,
                            int q, uint64_t key, size_t bytes, const void **buf)
{
    *buf = NULL;
    if (in_next(s, q) != key)
        return RDX_SUCCESS;
    return coll_peek(ctx, op, &s->w, q, coll_tag(op, (uint32_t)key), bytes, buf);
}

/* Acquires the slot for the message of `key` to q into *buf (NULL: no turn or no credit). */
static rdx_status_t take_out(const rdx_coll_ctx_t *ctx, tree_state_t *s, int q, uint64_t key,
                             void **buf)
{
    *buf = NULL;
    if (out_next(s, q) != key)
        return RDX_SUCCESS;
    return coll_acquire(ctx, &s->w, q, buf);
}

/* Up: children's chunk k + own input -> parent's slot (or, at the root, recvbuf). */
static rdx_status_t try_up(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, tree_state_t *s, int t,
                           bool *moved)
{
    const tree_links_t *l = &s->t[t];
    uint64_t k = s->upc[t], key = key_up(k, t);
    size_t start, len;
    *moved = false;
    if (k >= s->nchunks[t])
        return RDX_SUCCESS;
    chunk_range(s, t, k, &start, &len);
    size_t bytes = len * s->esize;
    const void *in[2] = {NULL, NULL};
    int nin = 0;
    for (int c = 0; c < 2; c++) {
        if (l->child[c] < 0)
            continue;
        RDX_CHECK(take_in(ctx, op, s, l->child[c], key, bytes, &in[nin]));
        if (!in[nin])
            return RDX_SUCCESS;
        nin++;
    }
    void *out;
    int div = 0;
    if (l->parent >= 0) {
        RDX_CHECK(take_out(ctx, s, l->parent, key, &out));
        if (!out)
            return RDX_SUCCESS;
    } else {
        out = coll_ptr(op->args.recvbuf, start, s->esize);
        div = ctx->size;
    }
    const void *mine = coll_cptr(op->args.sendbuf, start, s->esize);
    if (nin == 0)
        rdx_copy2(out, NULL, mine, bytes);
    else if (nin == 1)
        coll_combine(op, out, NULL, in[0], mine, len, div);
    else {
        coll_combine(op, out, NULL, in[0], in[1], len, 0);
        coll_combine(op, out, NULL, out, mine, len, div);
    }
    if (l->parent >= 0)
        RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, l->parent_tp, bytes,
                                           coll_tag(op, (uint32_t)key)));
    for (int c = 0; c < 2; c++)
        if (l->child[c] >= 0)
            RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, l->child_tp[c]));
    s->upc[t]++;
    *moved = true;
    return RDX_SUCCESS;
}

/* Where the root's down-stream reads chunk data: recvbuf once reduced (allreduce), or the
 * root's input (broadcast). */
static const void *root_source(const rdx_coll_op_t *op, const tree_state_t *s, size_t start)
{
    if (op->args.kind == RDX_COLL_BROADCAST)
        return coll_cptr(op->args.sendbuf, start, s->esize);
    return coll_cptr(op->args.recvbuf, start, s->esize);
}

/* Down: parent's chunk k (or the root's data) -> recvbuf and the children's slots. */
static rdx_status_t try_down(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, tree_state_t *s,
                             int t, bool *moved)
{
    const tree_links_t *l = &s->t[t];
    uint64_t k = s->downc[t], key = key_down(s, k, t);
    size_t start, len;
    *moved = false;
    if (k >= s->nchunks[t] || (l->parent < 0 && s->up && s->upc[t] <= k))
        return RDX_SUCCESS;
    chunk_range(s, t, k, &start, &len);
    size_t bytes = len * s->esize;
    const void *src;
    if (l->parent >= 0) {
        RDX_CHECK(take_in(ctx, op, s, l->parent, key, bytes, &src));
        if (!src)
            return RDX_SUCCESS;
    } else {
        src = root_source(op, s, start);
    }
    void *out[2] = {NULL, NULL};
    for (int c = 0; c < 2; c++) {
        if (l->child[c] < 0)
            continue;
        RDX_CHECK(take_out(ctx, s, l->child[c], key, &out[c]));
        if (!out[c])
            return RDX_SUCCESS;
    }
    void *dst = coll_ptr(op->args.recvbuf, start, s->esize);
    void *o0 = out[0] ? out[0] : out[1], *o1 = out[0] ? out[1] : NULL;
    if (dst == src) { /* root in place, or allreduce root: recvbuf already holds it */
        if (o0)
            rdx_copy2(o0, o1, src, bytes);
    } else {
        rdx_copy2(dst, o0, src, bytes);
        if (o1)
            memcpy(o1, dst, bytes);
    }
    for (int c = 0; c < 2; c++)
        if (out[c])
            RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, l->child_tp[c], bytes,
                                               coll_tag(op, (uint32_t)key)));
    if (l->parent >= 0)
        RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, l->parent_tp));
    s->downc[t]++;
    *moved = true;
    return RDX_SUCCESS;
}

static bool tree_finished(const tree_state_t *s)
{
    for (int t = 0; t < s->ntrees; t++)
        if ((s->up && s->upc[t] < s->nchunks[t]) || (s->down && s->downc[t] < s->nchunks[t]))
            return false;
    return true;
}

static rdx_status_t tree_progress(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, bool *progressed,
                                  bool *done)
{
    tree_state_t *s = (tree_state_t *)op->state;
    *progressed = false;
    if (coll_trivial(ctx, op)) {
        *done = *progressed = true;
        return RDX_SUCCESS;
    }
    for (;;) {
        bool any = false;
        for (int t = 0; t < s->ntrees; t++) {
            bool moved;
            if (s->up) {
                RDX_CHECK(try_up(ctx, op, s, t, &moved));
                any |= moved;
            }
            if (s->down) {
                RDX_CHECK(try_down(ctx, op, s, t, &moved));
                any |= moved;
            }
        }
        if (!any)
            break;
        *progressed = true;
    }
    *done = tree_finished(s);
    return RDX_SUCCESS;
}

static void tree_describe(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, char *buf,
                          size_t len)
{
    const tree_state_t *s = (const tree_state_t *)op->state;
    size_t used = (size_t)snprintf(buf, len, "algo %s", op->algo->name);
    for (int t = 0; t < s->ntrees && used < len; t++)
        used += (size_t)snprintf(buf + used, len - used,
                                 ", tree %d (parent %d, children %d %d): up %llu/%llu, down "
                                 "%llu/%llu", t, s->t[t].parent, s->t[t].child[0],
                                 s->t[t].child[1], (unsigned long long)s->upc[t],
                                 (unsigned long long)(s->up ? s->nchunks[t] : 0),
                                 (unsigned long long)s->downc[t],
                                 (unsigned long long)(s->down ? s->nchunks[t] : 0));
    if (s->w.peer >= 0 && used < len)
        snprintf(buf + used, len - used, "; last waited for %s from peer %d",
                 s->w.credit ? "credit" : "data", s->w.peer);
    (void)ctx;
}

static rdx_status_t dtree_allreduce_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    return tree_init(ctx, op, SHAPE_DOUBLE_TREE, true, true);
}

static rdx_status_t tree_broadcast_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    return tree_init(ctx, op, SHAPE_TREE, false, true);
}

static rdx_status_t chain_broadcast_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    return tree_init(ctx, op, SHAPE_CHAIN, false, true);
}

static rdx_status_t tree_reduce_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    return tree_init(ctx, op, SHAPE_TREE, true, false);
}

static rdx_status_t chain_reduce_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    return tree_init(ctx, op, SHAPE_CHAIN, true, false);
}

const rdx_coll_algo_t rdx_algo_tree_allreduce = {
    .name = "tree", .start = dtree_allreduce_start, .progress = tree_progress,
    .describe = tree_describe,
};
const rdx_coll_algo_t rdx_algo_tree_broadcast = {
    .name = "tree", .start = tree_broadcast_start, .progress = tree_progress,
    .describe = tree_describe,
};
const rdx_coll_algo_t rdx_algo_chain_broadcast = {
    .name = "chain", .start = chain_broadcast_start, .progress = tree_progress,
    .describe = tree_describe,
};
const rdx_coll_algo_t rdx_algo_tree_reduce = {
    .name = "tree", .start = tree_reduce_start, .progress = tree_progress,
    .describe = tree_describe,
};
const rdx_coll_algo_t rdx_algo_chain_reduce = {
    .name = "chain", .start = chain_reduce_start, .progress = tree_progress,
    .describe = tree_describe,
};
