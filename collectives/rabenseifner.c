/*
 * Rabenseifner's allreduce: reduce-scatter by recursive halving, then allgather by recursive
 * doubling. For mid-size vectors: log2 p steps each way like recursive doubling, but each
 * step moves half as much as the one before, so the bandwidth term is the ring's.
 *
 *   p = 2^L ranks, vector cut into p blocks A..H (p = 8). Halving step i: partner = v xor
 *   p/2^(i+1); send the half of the current range the partner keeps, reduce the half kept:
 *
 *     v=0 range A-H --step 0 (with 4)--> keeps A-D --(with 2)--> A-B --(with 1)--> A (final)
 *     v=5 range A-H --step 0 (with 1)--> keeps E-H --(with 7)--> E-F --(with 4)--> F (final)
 *
 *   Rank v ends with block v fully reduced (scaled once for AVG). Doubling step j: partner =
 *   v xor 2^j; send everything held so far (2^j blocks), receive as much: after L steps
 *   every rank has all p blocks.
 *
 *   n not a power of two: fold-in first (coll_util.h): the extras hand their vectors to their
 *   proxies before, and get the result from them after.
 *
 * Cost (Thakur, Rabenseifner, Gropp 2005; N bytes, p = 2^L):
 *   T = 2 L alpha + 2 (p-1)/p N beta + (p-1)/p N gamma
 *       (+ 2 alpha + 2 N beta + N gamma for the fold when n != p).
 *
 * Chunks: blocks larger than a slot move in chunks (chunk ids are global: block by block).
 * The halving combine writes straight into the next step's partner's slot when the chunk is
 * part of the half sent next, else into recvbuf; the doubling sends copy from recvbuf as
 * soon as each chunk is final there. A rank talks to the same partner in halving step i and
 * doubling step L-1-i, so each link carries first all halving messages, then the doubling
 * ones: a doubling send waits until the halving sends on that link are done, and a doubling
 * receive until the halving receives on it are. Deadlock freedom: every event depends only
 * on events of an earlier phase, or of the same phase with a smaller chunk id (and credit
 * only on the partner having consumed earlier messages of the same link).
 */
#include "collectives/coll_util.h"

#define RAB_MAX_STEPS 16

typedef struct crange {
    uint64_t lo, hi; /* chunk ids [lo, hi) */
} crange_t;

typedef struct rab_state {
    int role;                 /* coll_fold_role_t */
    int v, L, p, rem;
    int fold, fold_tp;
    size_t esize, chunk_elems;
    size_t blk_base, blk_rem; /* blocks: the first blk_rem have blk_base + 1 elements */
    uint64_t c1, c0;          /* chunks per long / short block */
    uint64_t total;           /* chunks in the vector */
    uint64_t fresh;           /* first-message sends from sendbuf (plain: halving step 0;
                                 extra: the whole vector to the proxy) */
    uint64_t fold_rc;         /* proxy: fold-in receives; extra: result receives */
    uint64_t fb;              /* proxy: fold-back sends */
    uint64_t hr[RAB_MAX_STEPS];   /* halving receive cursors (chunk ids) */
    uint64_t as[RAB_MAX_STEPS];   /* doubling send cursors */
    uint64_t ar[RAB_MAX_STEPS];   /* doubling receive cursors */
    coll_wait_t wait;
} rab_state_t;

_Static_assert(sizeof(rab_state_t) <= sizeof(((rdx_coll_op_t *)0)->state),
               "rabenseifner state must fit in rdx_coll_op_t");

/* Phases in tags: 0 fold-in, 1..L halving, L+1..2L doubling, 2L+1 fold-back. */
static uint64_t rab_tag(const rdx_coll_op_t *op, int phase, uint64_t u)
{
    return coll_tag(op, ((uint32_t)phase << 24) | (uint32_t)(u & 0xffffff));
}

static uint64_t first_chunk(const rab_state_t *s, uint64_t b)
{
    uint64_t longb = b < s->blk_rem ? b : s->blk_rem;
    return longb * s->c1 + (b - longb) * s->c0;
}

static crange_t blocks(const rab_state_t *s, int b0, int b1)
{
    return (crange_t){first_chunk(s, (uint64_t)b0), first_chunk(s, (uint64_t)b1)};
}

static int block_of(const rab_state_t *s, uint64_t u)
{
    uint64_t long_chunks = s->blk_rem * s->c1;
    if (u < long_chunks)
        return (int)(u / s->c1);
    return (int)(s->blk_rem + (u - long_chunks) / s->c0);
}

/* Element range of chunk u. */
static void chunk_range(const rab_state_t *s, uint64_t u, size_t *start, size_t *len)
{
    int b = block_of(s, u);
    size_t blo, blen;
    coll_part(s->blk_base * (size_t)s->p + s->blk_rem, (size_t)s->p, (size_t)b, &blo, &blen);
    size_t j = (size_t)(u - first_chunk(s, (uint64_t)b));
    *start = blo + j * s->chunk_elems;
    size_t left = blen - j * s->chunk_elems;
    *len = left < s->chunk_elems ? left : s->chunk_elems;
}

/* Halving step i: the half of the current range this rank keeps, and the half it sends. */
static crange_t kept(const rab_state_t *s, int i)
{
    int m = s->p >> (i + 1), lo = s->v & ~(2 * m - 1);
    return s->v & m ? blocks(s, lo + m, lo + 2 * m) : blocks(s, lo, lo + m);
}

static crange_t sent(const rab_state_t *s, int i)
{
    int m = s->p >> (i + 1), lo = s->v & ~(2 * m - 1);
    return s->v & m ? blocks(s, lo, lo + m) : blocks(s, lo + m, lo + 2 * m);
}

/* Doubling step j: what this rank holds and sends, and what it receives. */
static crange_t ag_sent(const rab_state_t *s, int j)
{
    int m = 1 << j, lo = s->v & ~(m - 1);
    return blocks(s, lo, lo + m);
}

static crange_t ag_recv(const rab_state_t *s, int j)
{
    int m = 1 << j, lo = (s->v ^ m) & ~(m - 1);
    return blocks(s, lo, lo + m);
}

static int halving_partner(const rab_state_t *s, int i)
{
    return coll_fold_real(s->v ^ (s->p >> (i + 1)), s->rem);
}

static int doubling_partner(const rab_state_t *s, int j)
{
    return coll_fold_real(s->v ^ (1 << j), s->rem);
}

static rdx_status_t rab_start(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op)
{
    rab_state_t *s = (rab_state_t *)op->state;
    int n = ctx->size;
    memset(s, 0, sizeof(*s));
    s->L = coll_log2_floor(n);
    if (s->L > RAB_MAX_STEPS)
        return rdx_err(RDX_ERR_UNSUPPORTED, "rank %d: rabenseifner supports at most 2^%d "
                       "ranks (got %d)", ctx->rank, RAB_MAX_STEPS, n);
    s->p = 1 << s->L;
    s->rem = n - s->p;
    s->role = coll_fold_role(ctx->rank, s->rem);
    s->v = coll_fold_vrank(ctx->rank, s->rem);
    s->fold = s->role == FOLD_PROXY ? ctx->rank - 1 : s->role == FOLD_EXTRA ? ctx->rank + 1 : -1;
    s->fold_tp = s->fold < 0 ? -1 : rdx_coll_peer(ctx, s->fold);
    s->esize = rdx_dtype_size(op->args.dtype);
    s->chunk_elems = coll_chunk_elems(ctx, op, s->esize);
    s->blk_base = op->args.count / (size_t)s->p;
    s->blk_rem = op->args.count % (size_t)s->p;
    s->c1 = coll_div_up(s->blk_base + 1, s->chunk_elems);
    s->c0 = coll_div_up(s->blk_base, s->chunk_elems);
    s->total = first_chunk(s, (uint64_t)s->p);
    s->wait.peer = -1;
    if (s->role == FOLD_EXTRA)
        return RDX_SUCCESS;
    s->fresh = s->role == FOLD_PLAIN ? sent(s, 0).lo : 0;
    for (int i = 0; i < s->L; i++) {
        s->hr[i] = kept(s, i).lo;
        s->as[i] = ag_sent(s, i).lo;
        s->ar[i] = ag_recv(s, i).lo;
    }
    return RDX_SUCCESS;
}

/* Sends chunk u of buffer `src` to peer as `phase`; *moved when it went. */
static rdx_status_t send_copy(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                              int peer, int phase, const void *src, uint64_t u, bool *moved)
{
    void *slot;
    *moved = false;
    RDX_CHECK(coll_acquire(ctx, &s->wait, peer, &slot));
    if (!slot)
        return RDX_SUCCESS;
    size_t start, len;
    chunk_range(s, u, &start, &len);
    memcpy(slot, coll_cptr(src, start, s->esize), len * s->esize);
    RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, rdx_coll_peer(ctx, peer), len * s->esize,
                                       rab_tag(op, phase, u)));
    *moved = true;
    return RDX_SUCCESS;
}

/* Whether chunk u holds its final value in recvbuf. */
static bool chunk_final(const rab_state_t *s, uint64_t u)
{
    int b = block_of(s, u);
    if (b == s->v)
        return s->hr[s->L - 1] > u;
    return s->ar[coll_log2_floor(b ^ s->v)] > u;
}

/* Halving step i's sends are all out (the link may carry doubling messages now). */
static bool halving_sent(const rab_state_t *s, int i)
{
    crange_t r = sent(s, i);
    if (i > 0)
        return s->hr[i - 1] >= r.hi;
    return s->role == FOLD_PROXY ? s->fold_rc >= r.hi : s->fresh >= r.hi;
}

/* The fused receive of halving step `step` (-1: fold-in at a proxy): chunk u combined, then
 * written to the next partner's slot if it is in the half sent next, else to recvbuf. */
static rdx_status_t recv_halving(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                                 int step, bool *moved)
{
    uint64_t *cur = step < 0 ? &s->fold_rc : &s->hr[step];
    crange_t r = step < 0 ? (crange_t){0, s->total} : kept(s, step);
    uint64_t u = *cur;
    *moved = false;
    if (u >= r.hi)
        return RDX_SUCCESS;
    if (step == 0 && s->role == FOLD_PROXY && s->fold_rc <= u)
        return RDX_SUCCESS; /* own partial (fold result) not there yet */
    if (step > 0 && s->hr[step - 1] <= u)
        return RDX_SUCCESS;
    size_t start, len;
    chunk_range(s, u, &start, &len);
    size_t bytes = len * s->esize;
    int from = step < 0 ? s->fold : halving_partner(s, step);
    const void *in;
    RDX_CHECK(coll_peek(ctx, op, &s->wait, from, rab_tag(op, step + 1, u), bytes, &in));
    if (!in)
        return RDX_SUCCESS;
    int next = step + 1;
    void *out = NULL;
    if (next < s->L) {
        crange_t nr = sent(s, next);
        if (u >= nr.lo && u < nr.hi) {
            RDX_CHECK(coll_acquire(ctx, &s->wait, halving_partner(s, next), &out));
            if (!out)
                return RDX_SUCCESS;
        }
    }
    bool first = step < 0 || (step == 0 && s->role == FOLD_PLAIN);
    const void *mine = coll_cptr(first ? op->args.sendbuf : op->args.recvbuf, start, s->esize);
    void *dst = out ? out : coll_ptr(op->args.recvbuf, start, s->esize);
    coll_combine(op, dst, NULL, in, mine, len, step == s->L - 1 ? ctx->size : 0);
    if (out)
        RDX_CHECK(ctx->tp_ops->send_commit(ctx->tp, rdx_coll_peer(ctx, halving_partner(s, next)),
                                           bytes, rab_tag(op, next + 1, u)));
    RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, rdx_coll_peer(ctx, from)));
    (*cur)++;
    *moved = true;
    return RDX_SUCCESS;
}

/* Plain rank: halving step 0 sends the partner's half of the input. Extra: the whole input
 * to the proxy. */
static rdx_status_t send_fresh(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                               bool *moved)
{
    *moved = false;
    if (s->role == FOLD_EXTRA) {
        if (s->fresh >= s->total)
            return RDX_SUCCESS;
        RDX_CHECK(send_copy(ctx, op, s, s->fold, 0, op->args.sendbuf, s->fresh, moved));
    } else {
        if (s->role != FOLD_PLAIN || s->fresh >= sent(s, 0).hi)
            return RDX_SUCCESS;
        RDX_CHECK(send_copy(ctx, op, s, halving_partner(s, 0), 1, op->args.sendbuf, s->fresh,
                            moved));
    }
    if (*moved)
        s->fresh++;
    return RDX_SUCCESS;
}

static rdx_status_t send_doubling(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                                  int j, bool *moved)
{
    uint64_t u = s->as[j];
    *moved = false;
    if (u >= ag_sent(s, j).hi || !chunk_final(s, u) || !halving_sent(s, s->L - 1 - j))
        return RDX_SUCCESS;
    RDX_CHECK(send_copy(ctx, op, s, doubling_partner(s, j), s->L + 1 + j, op->args.recvbuf, u,
                        moved));
    if (*moved)
        s->as[j]++;
    return RDX_SUCCESS;
}

static rdx_status_t recv_doubling(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                                  int j, bool *moved)
{
    uint64_t u = s->ar[j];
    int hi = s->L - 1 - j; /* the halving step that used this link first */
    *moved = false;
    if (u >= ag_recv(s, j).hi || s->hr[hi] < kept(s, hi).hi)
        return RDX_SUCCESS;
    size_t start, len;
    chunk_range(s, u, &start, &len);
    const void *in;
    int from = doubling_partner(s, j);
    RDX_CHECK(coll_peek(ctx, op, &s->wait, from, rab_tag(op, s->L + 1 + j, u), len * s->esize,
                        &in));
    if (!in)
        return RDX_SUCCESS;
    memcpy(coll_ptr(op->args.recvbuf, start, s->esize), in, len * s->esize);
    RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, rdx_coll_peer(ctx, from)));
    s->ar[j]++;
    *moved = true;
    return RDX_SUCCESS;
}

/* Proxy: the result back to the extra, chunk by chunk as it becomes final. */
static rdx_status_t send_fold_back(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                                   bool *moved)
{
    *moved = false;
    if (s->fb >= s->total || !chunk_final(s, s->fb))
        return RDX_SUCCESS;
    RDX_CHECK(send_copy(ctx, op, s, s->fold, 2 * s->L + 1, op->args.recvbuf, s->fb, moved));
    if (*moved)
        s->fb++;
    return RDX_SUCCESS;
}

/* Extra: receives the result (after its own chunk left: in place they share memory). */
static rdx_status_t recv_extra(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                               bool *moved)
{
    uint64_t u = s->fold_rc;
    *moved = false;
    if (u >= s->total || s->fresh <= u)
        return RDX_SUCCESS;
    size_t start, len;
    chunk_range(s, u, &start, &len);
    const void *in;
    RDX_CHECK(coll_peek(ctx, op, &s->wait, s->fold, rab_tag(op, 2 * s->L + 1, u),
                        len * s->esize, &in));
    if (!in)
        return RDX_SUCCESS;
    memcpy(coll_ptr(op->args.recvbuf, start, s->esize), in, len * s->esize);
    RDX_CHECK(ctx->tp_ops->recv_release(ctx->tp, s->fold_tp));
    s->fold_rc++;
    *moved = true;
    return RDX_SUCCESS;
}

static bool rab_finished(const rab_state_t *s)
{
    if (s->role == FOLD_EXTRA)
        return s->fresh >= s->total && s->fold_rc >= s->total;
    if (s->role == FOLD_PROXY && (s->fold_rc < s->total || s->fb < s->total))
        return false;
    if (s->role == FOLD_PLAIN && s->fresh < sent(s, 0).hi)
        return false;
    for (int i = 0; i < s->L; i++)
        if (s->hr[i] < kept(s, i).hi || s->as[i] < ag_sent(s, i).hi ||
            s->ar[i] < ag_recv(s, i).hi)
            return false;
    return true;
}

static rdx_status_t rab_pass(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, rab_state_t *s,
                             bool *any)
{
    bool moved;
    *any = false;
    RDX_CHECK(send_fresh(ctx, op, s, &moved));
    *any |= moved;
    if (s->role == FOLD_EXTRA) {
        RDX_CHECK(recv_extra(ctx, op, s, &moved));
        *any |= moved;
        return RDX_SUCCESS;
    }
    for (int i = s->role == FOLD_PROXY ? -1 : 0; i < s->L; i++) {
        RDX_CHECK(recv_halving(ctx, op, s, i, &moved));
        *any |= moved;
    }
    for (int j = 0; j < s->L; j++) {
        RDX_CHECK(send_doubling(ctx, op, s, j, &moved));
        *any |= moved;
        RDX_CHECK(recv_doubling(ctx, op, s, j, &moved));
        *any |= moved;
    }
    if (s->role == FOLD_PROXY) {
        RDX_CHECK(send_fold_back(ctx, op, s, &moved));
        *any |= moved;
    }
    return RDX_SUCCESS;
}

static rdx_status_t rab_progress(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, bool *progressed,
                                 bool *done)
{
    rab_state_t *s = (rab_state_t *)op->state;
    *progressed = false;
    if (coll_trivial(ctx, op)) {
        *done = *progressed = true;
        return RDX_SUCCESS;
    }
    for (;;) {
        bool any;
        RDX_CHECK(rab_pass(ctx, op, s, &any));
        if (!any)
            break;
        *progressed = true;
    }
    *done = rab_finished(s);
    return RDX_SUCCESS;
}

static void rab_describe(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, char *buf,
                         size_t len)
{
    const rab_state_t *s = (const rab_state_t *)op->state;
    static const char *const roles[] = {"plain", "proxy", "extra"};
    size_t used = (size_t)snprintf(buf, len, "algo rabenseifner, %s rank (virtual %d of %d), "
                                   "%llu chunks; fresh %llu fold %llu back %llu; halving/"
                                   "doubling-send/doubling-recv cursors:", roles[s->role], s->v,
                                   s->p, (unsigned long long)s->total,
                                   (unsigned long long)s->fresh, (unsigned long long)s->fold_rc,
                                   (unsigned long long)s->fb);
    for (int i = 0; i < s->L && used < len && s->role != FOLD_EXTRA; i++)
        used += (size_t)snprintf(buf + used, len - used, " [%llu %llu %llu]",
                                 (unsigned long long)s->hr[i], (unsigned long long)s->as[i],
                                 (unsigned long long)s->ar[i]);
    if (s->wait.peer >= 0 && used < len)
        snprintf(buf + used, len - used, "; last waited for %s from peer %d",
                 s->wait.credit ? "credit" : "data", s->wait.peer);
    (void)ctx;
}

const rdx_coll_algo_t rdx_algo_rabenseifner_allreduce = {
    .name = "rabenseifner", .start = rab_start, .progress = rab_progress,
    .describe = rab_describe,
};
