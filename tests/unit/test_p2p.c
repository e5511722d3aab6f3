/*
 * Point-to-point send/receive (collectives/p2p.c) on the in-memory transport: n ranks in
 * one process, each with a list of outstanding operations that all progress at once (as a
 * run of sends and receives does in src/request.c), stepped in random interleavings. Checks
 * data, per-pair order, the exchange of messages larger than the FIFO in both directions at
 * once (must not deadlock), mismatches (count, dtype, a collective where a send was expected)
 * and the zero-copy transport op (used, waited for, and the fallback when it declines).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/error.h"
#include "tests/unit/memworld.h"

#define MAXOPS 32

/* ---- a zero-copy variant of the memory transport ------------------------------------- */

/* send_commit_zcopy copies from src itself (as a NIC would read it) but declines messages
 * below ZC_MIN; send_zcopy_flushed says "done" only after ZC_LAG calls, so a send that
 * completes before its flush fails the check that src was not reused early. */
#define ZC_MIN 32
#define ZC_LAG 3
static int zc_sent[MAXR];      /* zero-copy commits per rank */
static int zc_pending[MAXR];   /* flush calls still to refuse */

static rdx_status_t zc_commit(rdx_tp_t *tp, int peer, const void *src, size_t len,
                              uint64_t tag, bool *sent)
{
    *sent = false;
    if (len < ZC_MIN)
        return RDX_SUCCESS;
    void *slot;
    cr_assert_eq(m_acquire(tp, peer, &slot), RDX_SUCCESS);
    cr_assert_not_null(slot, "zero-copy commit without a slot from send_acquire");
    memcpy(slot, src, len);
    zc_sent[tp->rank]++;
    zc_pending[tp->rank] = ZC_LAG;
    *sent = true;
    return m_commit(tp, peer, len, tag);
}

static rdx_status_t zc_flushed(rdx_tp_t *tp, int peer, bool *done)
{
    (void)peer;
    if (zc_pending[tp->rank] > 0)
        zc_pending[tp->rank]--;
    *done = zc_pending[tp->rank] == 0;
    return RDX_SUCCESS;
}

static const rdx_tp_ops_t zc_ops = {
    .name = "mem-zcopy", .send_acquire = m_acquire, .send_commit = m_commit,
    .recv_peek = m_peek, .recv_release = m_release, .send_commit_zcopy = zc_commit,
    .send_zcopy_flushed = zc_flushed,
};

/* ---- the harness ------------------------------------------------------------------------ */

typedef struct {
    rdx_coll_kind_t kind;  /* SEND, RECV, or a collective (then args are taken as given) */
    int peer;
    size_t count;
    rdx_dtype_t dtype;
    void *buf;
    rdx_coll_args_t coll;  /* for a collective */
} p2p_call_t;

typedef struct {
    int n;
    int ncalls[MAXR];
    p2p_call_t calls[MAXR][MAXOPS];
} plan_t;

/* Runs every rank's calls, all outstanding at once, in a random interleaving. Returns the
 * first error (and which rank saw it in *who), or RDX_SUCCESS; fails on deadlock. */
static rdx_status_t run_plan(const plan_t *p, int nslots, size_t slot_bytes,
                             const rdx_tp_ops_t *ops, unsigned seed, int *who)
{
    world_t *w = malloc(sizeof(*w));
    world_init(w, p->n, nslots, slot_bytes);
    struct rdx_tp tps[MAXR];
    rdx_coll_ctx_t ctx[MAXR];
    static rdx_coll_op_t op[MAXR][MAXOPS];
    bool done[MAXR][MAXOPS];
    memset(done, 0, sizeof(done));
    int left = 0;
    rdx_status_t result = RDX_SUCCESS;
    for (int r = 0; r < p->n; r++) {
        tps[r] = (struct rdx_tp){.w = w, .rank = r};
        ctx[r] = (rdx_coll_ctx_t){.tp_ops = ops, .tp = &tps[r], .rank = r, .size = p->n,
                                  .slot_bytes = slot_bytes, .slots = nslots, .check = true,
                                  .comm_id = 0x1234};
        for (int i = 0; i < p->ncalls[r]; i++) {
            const p2p_call_t *c = &p->calls[r][i];
            rdx_status_t st;
            if (rdx_coll_kind_is_p2p(c->kind)) {
                rdx_coll_args_t a = {.kind = c->kind, .count = c->count, .dtype = c->dtype,
                                     .root = c->peer, .op = RDX_SUM};
                if (c->kind == RDX_COLL_SEND)
                    a.sendbuf = c->buf;
                else
                    a.recvbuf = c->buf;
                st = rdx_p2p_start(&ctx[r], &a, &op[r][i]);
            } else {
                st = rdx_coll_start(&ctx[r], 0, &c->coll, 0, &op[r][i]);
            }
            cr_assert_eq(st, RDX_SUCCESS, "rank %d call %d start: %s", r, i, rdx_err_last());
            left++;
        }
    }
    srand(seed);
    int idle = 0;
    while (left > 0 && result == RDX_SUCCESS) {
        bool any = false;
        int r = rand() % p->n;
        /* any order, not just issue order: the per-peer turn must hold by itself */
        int first = p->ncalls[r] ? rand() % p->ncalls[r] : 0;
        for (int j = 0; j < p->ncalls[r] && result == RDX_SUCCESS; j++) {
            int i = (first + j) % p->ncalls[r];
            if (done[r][i])
                continue;
            bool moved = false, fin = false;
            rdx_status_t st = op[r][i].algo->progress(&ctx[r], &op[r][i], &moved, &fin);
            if (st != RDX_SUCCESS) {
                result = st;
                *who = r;
                break;
            }
            any |= moved;
            if (fin) {
                done[r][i] = true;
                left--;
                any = true;
            }
        }
        idle = any ? 0 : idle + 1;
        cr_assert(idle < 200 * p->n + 50 * ZC_LAG, "deadlock: %d operations left", left);
    }
    for (int r = 0; r < p->n; r++)
        rdx_p2p_state_free(&ctx[r]);
    world_free(w, p->n);
    free(w);
    return result;
}

static unsigned char pattern(int from, int to, int k, size_t i)
{
    return (unsigned char)(from * 37 + to * 11 + k * 5 + i * 13 + (i >> 8));
}

static void *make_send(int from, int to, int k, size_t bytes)
{
    unsigned char *b = malloc(bytes ? bytes : 1);
    for (size_t i = 0; i < bytes; i++)
        b[i] = pattern(from, to, k, i);
    return b;
}

static void *make_recv(size_t bytes)
{
    void *b = malloc(bytes ? bytes + 16 : 16);
    memset(b, 0xEE, bytes + 16);
    return b;
}

static void check_recv(const unsigned char *b, int from, int to, int k, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        if (b[i] != pattern(from, to, k, i))
            cr_assert_fail("message %d from %d to %d: byte %zu is %02x, expected %02x", k, from, to, i,
                     b[i], pattern(from, to, k, i));
    for (size_t i = bytes; i < bytes + 16; i++)
        cr_assert_eq(b[i], 0xEE, "message %d from %d to %d: wrote past the end", k, from, to);
}

static void add(plan_t *p, int r, rdx_coll_kind_t kind, int peer, size_t count,
                rdx_dtype_t dtype, void *buf)
{
    cr_assert_lt(p->ncalls[r], MAXOPS);
    p->calls[r][p->ncalls[r]++] = (p2p_call_t){.kind = kind, .peer = peer, .count = count,
                                               .dtype = dtype, .buf = buf};
}

static void plan_free(plan_t *p)
{
    for (int r = 0; r < p->n; r++)
        for (int i = 0; i < p->ncalls[r]; i++)
            free(p->calls[r][i].buf);
}

/* Every rank sends `per` messages to every other rank (sizes from `sizes`) and receives
 * theirs; sends and receives are interleaved in a rank-dependent order. */
static void all_to_all(int n, int per, const size_t *sizes, int nsizes, int nslots,
                       size_t slot, const rdx_tp_ops_t *ops, unsigned seed)
{
    plan_t *p = calloc(1, sizeof(*p));
    p->n = n;
    int idx[MAXR][MAXR][8];
    for (int r = 0; r < n; r++)
        for (int k = 0; k < per; k++)
            for (int d = 1; d < n; d++) {
                int to = (r + d) % n, from = (r - d + n) % n;
                size_t sb = sizes[(r + to + k) % nsizes], rb = sizes[(from + r + k) % nsizes];
                /* odd ranks post receives first: the order within a run must not matter */
                if (r % 2) {
                    idx[r][from][k] = p->ncalls[r];
                    add(p, r, RDX_COLL_RECV, from, rb, RDX_UINT8, make_recv(rb));
                    add(p, r, RDX_COLL_SEND, to, sb, RDX_UINT8, make_send(r, to, k, sb));
                } else {
                    add(p, r, RDX_COLL_SEND, to, sb, RDX_UINT8, make_send(r, to, k, sb));
                    idx[r][from][k] = p->ncalls[r];
                    add(p, r, RDX_COLL_RECV, from, rb, RDX_UINT8, make_recv(rb));
                }
            }
    int who = -1;
    rdx_status_t st = run_plan(p, nslots, slot, ops, seed, &who);
    cr_assert_eq(st, RDX_SUCCESS, "rank %d: %s", who, rdx_err_last());
    for (int r = 0; r < n; r++)
        for (int k = 0; k < per; k++)
            for (int d = 1; d < n; d++) {
                int from = (r - d + n) % n;
                check_recv(p->calls[r][idx[r][from][k]].buf, from, r, k,
                           sizes[(from + r + k) % nsizes]);
            }
    plan_free(p);
    free(p);
}

/* ---- tests ------------------------------------------------------------------------------ */

Test(p2p, exchange_larger_than_fifo_both_ways)
{
    /* 2 slots of 64 B: a 5000-byte message is 79 chunks, ~40x the FIFO, in both directions
     * at once. A send that waited for its own completion before the receive could move
     * would deadlock here. */
    static const size_t sizes[] = {5000};
    for (unsigned seed = 1; seed <= 20; seed++)
        all_to_all(2, 1, sizes, 1, 2, 64, &mem_ops, seed);
}

Test(p2p, sizes_and_order_many_messages)
{
    /* 0 B, 1 B, exactly one slot, one slot + 1, exactly the FIFO, more: several messages to
     * each peer, so later sends queue behind earlier ones and must arrive in order. */
    static const size_t sizes[] = {0, 1, 256, 257, 1024, 1025, 3000};
    for (unsigned seed = 1; seed <= 10; seed++)
        all_to_all(2, 4, sizes, 7, 4, 256, &mem_ops, seed);
}

Test(p2p, all_to_all_3_to_5_ranks)
{
    static const size_t sizes[] = {0, 7, 300, 2049};
    for (int n = 3; n <= 5; n++)
        for (unsigned seed = 1; seed <= 5; seed++)
            all_to_all(n, 3, sizes, 4, 2, 128, &mem_ops, seed * 100 + (unsigned)n);
}

Test(p2p, typed_counts)
{
    plan_t *p = calloc(1, sizeof(*p));
    p->n = 2;
    size_t count = 1000; /* 8000 bytes of float64 over 3 x 512 B slots */
    double *src = malloc(count * sizeof(double)), *dst = calloc(count, sizeof(double));
    for (size_t i = 0; i < count; i++)
        src[i] = (double)i * 0.5 - 17.0;
    add(p, 0, RDX_COLL_SEND, 1, count, RDX_FLOAT64, src);
    add(p, 1, RDX_COLL_RECV, 0, count, RDX_FLOAT64, dst);
    int who;
    cr_assert_eq(run_plan(p, 3, 512, &mem_ops, 7, &who), RDX_SUCCESS, "%s", rdx_err_last());
    for (size_t i = 0; i < count; i++)
        cr_assert_eq(dst[i], src[i], "element %zu", i);
    plan_free(p);
    free(p);
}

static void expect_mismatch(plan_t *p, int receiver)
{
    int who = -1;
    rdx_status_t st = run_plan(p, 2, 64, &mem_ops, 3, &who);
    cr_assert_eq(st, RDX_ERR_MISMATCH, "got %s", rdx_strerror(st));
    cr_assert_eq(who, receiver);
    cr_assert(strstr(rdx_err_last(), "peer 0"), "message names the peer: %s", rdx_err_last());
}

Test(p2p, count_mismatch)
{
    plan_t *p = calloc(1, sizeof(*p));
    p->n = 2;
    add(p, 0, RDX_COLL_SEND, 1, 100, RDX_UINT8, make_send(0, 1, 0, 100));
    add(p, 1, RDX_COLL_RECV, 0, 101, RDX_UINT8, make_recv(101));
    expect_mismatch(p, 1);
    plan_free(p);
    free(p);
}

Test(p2p, dtype_mismatch)
{
    plan_t *p = calloc(1, sizeof(*p));
    p->n = 2;
    add(p, 0, RDX_COLL_SEND, 1, 16, RDX_INT32, make_send(0, 1, 0, 64));
    add(p, 1, RDX_COLL_RECV, 0, 16, RDX_FLOAT32, make_recv(64));
    expect_mismatch(p, 1);
    plan_free(p);
    free(p);
}

Test(p2p, mismatch_after_a_matching_pair)
{
    /* The first pair matches and goes through; the second differs in count. */
    plan_t *p = calloc(1, sizeof(*p));
    p->n = 2;
    add(p, 0, RDX_COLL_SEND, 1, 40, RDX_UINT8, make_send(0, 1, 0, 40));
    add(p, 0, RDX_COLL_SEND, 1, 40, RDX_UINT8, make_send(0, 1, 1, 40));
    add(p, 1, RDX_COLL_RECV, 0, 40, RDX_UINT8, make_recv(40));
    add(p, 1, RDX_COLL_RECV, 0, 41, RDX_UINT8, make_recv(41));
    expect_mismatch(p, 1);
    plan_free(p);
    free(p);
}

Test(p2p, collective_where_a_send_was_expected)
{
    plan_t *p = calloc(1, sizeof(*p));
    p->n = 2;
    /* rank 0 starts an allreduce towards rank 1; rank 1 waits for a point-to-point message */
    static int32_t in[64], out[64];
    p->calls[0][0] = (p2p_call_t){.kind = RDX_COLL_ALLREDUCE,
                                  .coll = {.kind = RDX_COLL_ALLREDUCE, .sendbuf = in,
                                           .recvbuf = out, .count = 64, .dtype = RDX_INT32,
                                           .op = RDX_SUM, .root = -1}};
    p->ncalls[0] = 1;
    add(p, 1, RDX_COLL_RECV, 0, 256, RDX_UINT8, make_recv(256));
    int who = -1;
    rdx_status_t st = run_plan(p, 2, 64, &mem_ops, 5, &who);
    cr_assert_eq(st, RDX_ERR_MISMATCH, "got %s", rdx_strerror(st));
    free(p->calls[1][0].buf);
    free(p);
}

Test(p2p, bad_peer_rejected)
{
    rdx_coll_ctx_t ctx = {.tp_ops = &mem_ops, .rank = 1, .size = 3, .slot_bytes = 64,
                          .slots = 2};
    rdx_coll_op_t op;
    char b[4];
    rdx_coll_args_t a = {.kind = RDX_COLL_SEND, .sendbuf = b, .count = 4, .dtype = RDX_UINT8,
                         .root = 3};
    cr_assert_eq(rdx_p2p_start(&ctx, &a, &op), RDX_ERR_INVALID_ARG);
    a.root = 1;
    cr_assert_eq(rdx_p2p_start(&ctx, &a, &op), RDX_ERR_UNSUPPORTED);
    cr_assert(strstr(rdx_err_last(), "itself"), "%s", rdx_err_last());
    a.root = -1;
    cr_assert_eq(rdx_p2p_start(&ctx, &a, &op), RDX_ERR_INVALID_ARG);
    rdx_p2p_state_free(&ctx);
}

Test(p2p, split_copy_gets_its_own_sequence)
{
    /* rdx_comm_split copies the parent's ctx (pointer included): the child must not share
     * or free the parent's sequence numbers. */
    rdx_coll_ctx_t parent = {.tp_ops = &mem_ops, .rank = 0, .size = 2, .slot_bytes = 64,
                             .slots = 2};
    rdx_coll_op_t op;
    char b[4];
    rdx_coll_args_t a = {.kind = RDX_COLL_SEND, .sendbuf = b, .count = 4, .dtype = RDX_UINT8,
                         .root = 1};
    cr_assert_eq(rdx_p2p_start(&parent, &a, &op), RDX_SUCCESS);
    cr_assert_eq(op.seq, 0u);
    uint32_t fp0 = op.fingerprint;
    cr_assert_eq(rdx_p2p_start(&parent, &a, &op), RDX_SUCCESS);
    cr_assert_eq(op.seq, 1u);
    cr_assert_neq(op.fingerprint, fp0, "the sequence is in the tag: messages #0 and #1 of "
                  "equal count and dtype are told apart");
    rdx_coll_ctx_t child = parent;
    cr_assert_eq(rdx_p2p_start(&child, &a, &op), RDX_SUCCESS);
    cr_assert_eq(op.seq, 0u, "the child counts from 0");
    cr_assert_neq(child.p2p, parent.p2p);
    rdx_p2p_state_free(&child);
    cr_assert_eq(rdx_p2p_start(&parent, &a, &op), RDX_SUCCESS);
    cr_assert_eq(op.seq, 2u, "the parent's count survived the child");
    rdx_p2p_state_free(&parent);
}

Test(p2p, zero_copy_used_and_waited_for)
{
    /* Messages of 0..31 B are declined by the zero-copy op (copied), larger ones go
     * zero-copy; a send completes only after the transport reports the flush. */
    memset(zc_sent, 0, sizeof(zc_sent));
    static const size_t sizes[] = {0, 5, 31, 32, 100, 1000};
    for (unsigned seed = 1; seed <= 8; seed++)
        all_to_all(3, 2, sizes, 6, 2, 64, &zc_ops, seed);
    for (int r = 0; r < 3; r++)
        cr_assert_gt(zc_sent[r], 0, "rank %d never used the zero-copy op", r);
}

Test(p2p, zero_copy_send_not_done_before_flush)
{
    memset(zc_sent, 0, sizeof(zc_sent));
    memset(zc_pending, 0, sizeof(zc_pending));
    world_t *w = malloc(sizeof(*w));
    world_init(w, 2, 4, 64);
    struct rdx_tp tp0 = {.w = w, .rank = 0};
    rdx_coll_ctx_t ctx = {.tp_ops = &zc_ops, .tp = &tp0, .rank = 0, .size = 2, .slot_bytes = 64,
                          .slots = 4};
    char src[100];
    memset(src, 7, sizeof(src));
    rdx_coll_args_t a = {.kind = RDX_COLL_SEND, .sendbuf = src, .count = 100,
                         .dtype = RDX_UINT8, .root = 1};
    rdx_coll_op_t op;
    cr_assert_eq(rdx_p2p_start(&ctx, &a, &op), RDX_SUCCESS);
    bool moved, done;
    int calls = 0;
    do {
        cr_assert_eq(op.algo->progress(&ctx, &op, &moved, &done), RDX_SUCCESS);
        calls++;
    } while (!done && calls < 100);
    cr_assert(done);
    cr_assert_eq(zc_sent[0], 2, "both chunks (64 + 36 B) went zero-copy");
    cr_assert_eq(calls, ZC_LAG, "done exactly when the transport reported the flush");
    rdx_p2p_state_free(&ctx);
    world_free(w, 2);
    free(w);
}
