/*
 * coll_check_more: multi-process correctness of every collective under every algorithm that
 * can be forced, plus nonblocking mixes and sub-communicators; run under rdx-run
 * (tests/mp/run_matrix.sh with COLL_CHECK=.../coll_check_more runs it for n = 1..8).
 *
 *   coll_check_more [--quick] [--kinds LIST] [--algos LIST] [--dtype LIST] [--seed S]
 *                   [--max-print K] [--no-split] [--no-nb] [-v]
 *
 * For each collective (allreduce, reduce_scatter, allgather, broadcast, reduce, barrier) and
 * each RDX_ALGO value that selects a distinct algorithm for it (allreduce: ring tree rd
 * rabenseifner auto; broadcast/reduce: ring (= chain) tree auto; reduce_scatter/allgather:
 * ring auto), every dtype x op (reducing collectives) x count (0, 1, 2, 7, 13, 1021, 4099,
 * 65537, and 1048579 for int32/float32), in place and out of place alternately, blocking and
 * nonblocking (i* + rdx_wait) alternately, roots rotating.
 * --quick: counts 0, 1, 7, 1021, 4099, and 65537 for int32/float32; dtypes int32 uint8
 * float32 bfloat16 float64; exact pass only (for the larger rank counts, where every case
 * costs more: oversubscribed, and the reference regenerates n inputs).
 * Inputs and references come from tests/mp/check_common.h (the scheme of coll_check.c: every rank regenerates every rank's
 * input; exact passes compare bit for bit, random float passes within stated bounds).
 * Allgather and broadcast results must equal the inputs bit for bit. Every case also checks
 * the guard bytes around each buffer, that out-of-place send buffers are unchanged and that
 * non-root receive buffers of reduce are untouched.
 *
 * Then: a round of all six nonblocking collectives outstanding at once, each posted under a
 * different algorithm; rdx_comm_split into even/odd ranks (key reverses the order) with every
 * collective on the child, interleaved with the parent's, a nested split, and a rank that
 * opts out (color < 0); and a timed barrier (no rank leaves before the last one entered).
 *
 * The algorithm is forced by setting the communicator's RDX_ALGO setting between calls (all
 * ranks alike): this is an internal test and links the library's internals.
 *
 * Output: the first mismatches per rank, then on rank 0 "coll_check_more: N cases passed, M
 * failed". Exit 0 iff no case failed on any rank; 1 on a failed case; 2 when an rdx call
 * fails (the communicator is then unusable).
 */
#include <getopt.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "rdx/rdx.h"
#include "src/comm.h"
#include "src/comm_split.h"
#include "src/config.h"
#include "tests/mp/check_common.h"

#define CM_GUARD 64
#define CM_GUARD_BYTE 0xCD
#define CM_POISON_BYTE 0xA5
#define CM_MAX_TOTAL (1u << 21)   /* elements of the largest buffer (n x count) */

typedef enum { K_ALLREDUCE, K_RS, K_AG, K_BCAST, K_REDUCE, K_BARRIER, K_COUNT } cm_kind_t;
static const char *const k_kind_names[K_COUNT] = {"allreduce", "reduce_scatter", "allgather",
                                                  "broadcast", "reduce", "barrier"};

typedef struct cm_opts {
    int quick, verbose, no_split, no_nb, max_print;
    int kind_on[K_COUNT];
    int algo_on[5];             /* rdx_algo_t */
    int dtype_on[RDX_DTYPE_COUNT];
    uint64_t seed;
} cm_opts_t;

typedef struct cm_buf {
    unsigned char *mem, *data;
    size_t cap;
} cm_buf_t;

typedef struct cm {
    rdx_comm_t *world;
    int wrank;
    cm_opts_t o;
    cm_buf_t send, recv;
    chk_ref_t ref;
    unsigned char *scratch;
    long ncases, failed, printed;
} cm_t;

/* One collective call to check. */
typedef struct cm_case {
    cm_kind_t kind;
    int algo;           /* RDX_ALGO value in force */
    rdx_dtype_t dtype;
    rdx_op_t op;
    size_t count;
    int root, in_place, pass, nonblocking;
    uint64_t seed;
} cm_case_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(rdx_comm_t *comm, int rank, const char *what, rdx_status_t st)
{
    fprintf(stderr, "coll_check_more: rank %d: %s failed: %s: %s\n", rank, what,
            rdx_strerror(st), comm ? rdx_comm_last_error(comm) : "");
    fflush(stdout);
    exit(2);
}

#define CALL(comm, call)                                                       \
    do {                                                                       \
        rdx_status_t st_ = (call);                                             \
        if (st_ != RDX_SUCCESS)                                                \
            die((comm), rdx_comm_rank(comm), #call, st_);                      \
    } while (0)

static void case_describe(const cm_case_t *c, const rdx_comm_t *comm, char *buf, size_t len)
{
    snprintf(buf, len, "%s algo=%s %s %s count=%zu root=%d %s %s pass=%s comm=%d/%d",
             k_kind_names[c->kind], rdx_algo_name(c->algo), rdx_dtype_name(c->dtype),
             rdx_op_name(c->op), c->count, c->root, c->in_place ? "in-place" : "out-of-place",
             c->nonblocking ? "nonblocking" : "blocking", c->pass ? "random" : "exact",
             rdx_comm_rank(comm), rdx_comm_size(comm));
}

typedef struct report_arg {
    cm_t *m;
    const cm_case_t *c;
    const rdx_comm_t *comm;
    size_t offset;
} report_arg_t;

static void report(cm_t *m, const cm_case_t *c, const rdx_comm_t *comm, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(cm_t *m, const cm_case_t *c, const rdx_comm_t *comm, const char *fmt, ...)
{
    if (m->printed++ >= m->o.max_print)
        return;
    char desc[256], msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    case_describe(c, comm, desc, sizeof(desc));
    fprintf(stderr, "coll_check_more: world rank %d: MISMATCH %s: %s\n", m->wrank, desc, msg);
}

static void report_elem(void *arg, size_t i, const char *got, const char *want)
{
    report_arg_t *a = arg;
    report(a->m, a->c, a->comm, "index %zu: got %s, expected %s", a->offset + i, got, want);
}

/* ---- buffers --------------------------------------------------------------------------- */

static void buf_init(cm_buf_t *b, size_t bytes)
{
    b->cap = bytes + 2 * CM_GUARD;
    b->mem = aligned_alloc(64, (b->cap + 63) & ~(size_t)63);
    if (!b->mem) {
        fprintf(stderr, "coll_check_more: out of memory\n");
        exit(2);
    }
    b->data = b->mem + CM_GUARD;
}

/* Guards on both sides of [data, data + bytes); the data poisoned. */
static void buf_prepare(cm_buf_t *b, size_t bytes)
{
    memset(b->mem, CM_GUARD_BYTE, CM_GUARD);
    memset(b->data, CM_POISON_BYTE, bytes);
    memset(b->data + bytes, CM_GUARD_BYTE, CM_GUARD);
}

static int span_is(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static int guards_ok(const cm_buf_t *b, size_t bytes)
{
    return span_is(b->mem, CM_GUARD, CM_GUARD_BYTE) &&
           span_is(b->data + bytes, CM_GUARD, CM_GUARD_BYTE);
}

/* ---- one case -------------------------------------------------------------------------- */

/* Element counts of this rank's input and output, and of the shared buffer in place. */
static void case_shape(const cm_case_t *c, int n, size_t *in, size_t *out, size_t *big)
{
    *in = *out = c->count;
    if (c->kind == K_RS)
        *in = c->count * (size_t)n;
    if (c->kind == K_AG)
        *out = c->count * (size_t)n;
    if (c->kind == K_BARRIER)
        *in = *out = 0;
    *big = *in > *out ? *in : *out;
}

/* Sets up buffers; returns the send and recv pointers to pass. */
static void case_setup(cm_t *m, const cm_case_t *c, int rank, int n, void **send, void **recv)
{
    size_t es = rdx_dtype_size(c->dtype), in, out, big;
    case_shape(c, n, &in, &out, &big);
    chk_gen_t g = chk_gen_make(c->dtype, c->op, c->pass, n, c->seed);
    bool has_input = c->kind != K_BCAST || rank == c->root;
    if (c->in_place) {
        buf_prepare(&m->recv, big * es);
        unsigned char *base = m->recv.data;
        *send = *recv = base;
        if (c->kind == K_RS)
            *recv = base + (size_t)rank * c->count * es;
        if (c->kind == K_AG)
            *send = base + (size_t)rank * c->count * es;
        if (has_input)
            chk_gen(&g, rank, 0, in, *send);
        return;
    }
    buf_prepare(&m->send, in * es);
    buf_prepare(&m->recv, out * es);
    *send = m->send.data;
    *recv = m->recv.data;
    if (has_input)
        chk_gen(&g, rank, 0, in, *send);
    if (c->kind == K_BCAST && rank != c->root)
        *send = NULL;   /* ignored off the root */
    if (c->kind == K_REDUCE && rank != c->root)
        *recv = NULL;   /* ignored off the root */
}

static rdx_status_t case_issue(const cm_case_t *c, rdx_comm_t *comm, const void *send,
                               void *recv, rdx_request_t **req)
{
    size_t k = c->count;
    switch (c->kind) {
    case K_ALLREDUCE:
        return req ? rdx_iallreduce(comm, send, recv, k, c->dtype, c->op, req)
                   : rdx_allreduce(comm, send, recv, k, c->dtype, c->op);
    case K_RS:
        return req ? rdx_ireduce_scatter(comm, send, recv, k, c->dtype, c->op, req)
                   : rdx_reduce_scatter(comm, send, recv, k, c->dtype, c->op);
    case K_AG:
        return req ? rdx_iallgather(comm, send, recv, k, c->dtype, req)
                   : rdx_allgather(comm, send, recv, k, c->dtype);
    case K_BCAST:
        return req ? rdx_ibroadcast(comm, send, recv, k, c->dtype, c->root, req)
                   : rdx_broadcast(comm, send, recv, k, c->dtype, c->root);
    case K_REDUCE:
        return req ? rdx_ireduce(comm, send, recv, k, c->dtype, c->op, c->root, req)
                   : rdx_reduce(comm, send, recv, k, c->dtype, c->op, c->root);
    default:
        return req ? rdx_ibarrier(comm, req) : rdx_barrier(comm);
    }
}

/* Compares got[0..count) with rank r's regenerated input elements [first, first+count). */
static size_t compare_input(cm_t *m, const cm_case_t *c, const rdx_comm_t *comm, int r,
                            size_t first, const unsigned char *got, size_t count)
{
    size_t es = rdx_dtype_size(c->dtype), wrong = 0;
    chk_gen_t g = chk_gen_make(c->dtype, c->op, c->pass, rdx_comm_size(comm), c->seed);
    chk_gen(&g, r, first, count, m->scratch);
    for (size_t i = 0; i < count; i++)
        if (memcmp(got + i * es, m->scratch + i * es, es) != 0 && wrong++ < 3)
            report(m, c, comm, "index %zu: differs from rank %d's input element %zu",
                   first + i, r, first + i);
    return wrong;
}

static size_t compare_reduced(cm_t *m, const cm_case_t *c, const rdx_comm_t *comm, size_t first,
                              const unsigned char *got, size_t count)
{
    chk_gen_t g = chk_gen_make(c->dtype, c->op, c->pass, rdx_comm_size(comm), c->seed);
    chk_ref_build(&m->ref, &g, first, count);
    report_arg_t a = {m, c, comm, 0};
    return chk_compare(&m->ref, &g, got, count, report_elem, &a);
}

/* Checks the result of case c on this rank; returns 1 if it failed. */
static int case_check(cm_t *m, const cm_case_t *c, rdx_comm_t *comm, const void *send,
                      const void *recv)
{
    int rank = rdx_comm_rank(comm), n = rdx_comm_size(comm), failed = 0;
    size_t es = rdx_dtype_size(c->dtype), in, out, big, wrong = 0;
    case_shape(c, n, &in, &out, &big);
    if (c->in_place ? !guards_ok(&m->recv, big * es)
                    : !guards_ok(&m->send, in * es) || !guards_ok(&m->recv, out * es)) {
        report(m, c, comm, "a guard region around a buffer was overwritten");
        failed = 1;
    }
    if (!c->in_place && send && compare_input(m, c, comm, rank, 0, send, in)) {
        report(m, c, comm, "the send buffer was modified");
        failed = 1;
    }
    switch (c->kind) {
    case K_ALLREDUCE:
        wrong = compare_reduced(m, c, comm, 0, recv, c->count);
        break;
    case K_RS:
        wrong = compare_reduced(m, c, comm, (size_t)rank * c->count, recv, c->count);
        break;
    case K_AG:
        for (int q = 0; q < n; q++)
            wrong += compare_input(m, c, comm, q, 0, (const unsigned char *)recv +
                                   (size_t)q * c->count * es, c->count);
        break;
    case K_BCAST:
        wrong = compare_input(m, c, comm, c->root, 0, recv, c->count);
        break;
    case K_REDUCE:
        if (rank == c->root)
            wrong = compare_reduced(m, c, comm, 0, recv, c->count);
        else if (c->in_place)
            wrong = compare_input(m, c, comm, rank, 0, m->recv.data, c->count);
        else if (!span_is(m->recv.data, c->count * es, CM_POISON_BYTE))
            wrong = 1, report(m, c, comm, "a non-root receive buffer was written");
        break;
    default:
        break;
    }
    if (wrong) {
        report(m, c, comm, "%zu elements wrong", wrong);
        failed = 1;
    }
    m->ncases++;
    m->failed += failed;
    return failed;
}

static void case_run(cm_t *m, const cm_case_t *c, rdx_comm_t *comm)
{
    void *send, *recv;
    case_setup(m, c, rdx_comm_rank(comm), rdx_comm_size(comm), &send, &recv);
    comm->settings.algo = c->algo;
    if (c->nonblocking) {
        rdx_request_t *req;
        CALL(comm, case_issue(c, comm, send, recv, &req));
        CALL(comm, rdx_wait(req));
    } else {
        CALL(comm, case_issue(c, comm, send, recv, NULL));
    }
    case_check(m, c, comm, send, recv);
}

/* ---- the matrix ------------------------------------------------------------------------ */

/* The RDX_ALGO values that select distinct algorithms for a collective. */
static int kind_algos(cm_kind_t k, int *out)
{
    int n = 0;
    switch (k) {
    case K_ALLREDUCE:
        for (int a = RDX_ALGO_RING; a <= RDX_ALGO_RABENSEIFNER; a++)
            out[n++] = a;
        break;
    case K_BCAST: case K_REDUCE:
        out[n++] = RDX_ALGO_RING;
        out[n++] = RDX_ALGO_TREE;
        break;
    case K_RS: case K_AG:
        out[n++] = RDX_ALGO_RING;
        break;
    default:
        break;
    }
    out[n++] = RDX_ALGO_AUTO;
    return n;
}

static uint64_t case_seed(cm_t *m, uint64_t salt)
{
    return chk_mix(m->o.seed ^ chk_mix(salt + 0x9e3779b9ULL * (uint64_t)(m->ncases + 1)));
}

static void run_kind_algo(cm_t *m, rdx_comm_t *comm, cm_kind_t k, int algo)
{
    /* 0, 1, primes (divisible by no rank count > 1), 65537 elements: a 4-byte type is one
     * element past the default 256 KiB chunk */
    static const size_t counts[] = {0, 1, 2, 7, 13, 1021, 4099, 65537};
    static const size_t quick_counts[] = {0, 1, 7, 1021, 4099};
    const size_t *cs = m->o.quick ? quick_counts : counts;
    size_t ncs = m->o.quick ? sizeof(quick_counts) / sizeof(*cs) : sizeof(counts) / sizeof(*cs);
    int n = rdx_comm_size(comm), reduces = k == K_ALLREDUCE || k == K_RS || k == K_REDUCE;
    long idx = 0;
    for (int d = 0; d < RDX_DTYPE_COUNT; d++) {
        if (!m->o.dtype_on[d] || k == K_BARRIER)
            continue;
        int passes = chk_is_float((rdx_dtype_t)d) && !m->o.quick ? 2 : 1;
        for (int pass = 0; pass < passes; pass++)
            for (int op = 0; op < (reduces ? RDX_OP_COUNT : 1); op++)
                for (size_t ci = 0; ci < ncs + 1; ci++, idx++) {
                    size_t count = ci < ncs ? cs[ci] : (m->o.quick ? 65537 : 1048579);
                    if (ci == ncs && !(d == RDX_INT32 || d == RDX_FLOAT32) )
                        continue; /* the large count: two dtypes are enough */
                    if ((k == K_RS || k == K_AG) && count * (size_t)n > CM_MAX_TOTAL)
                        count = CM_MAX_TOTAL / (size_t)n - 1;
                    cm_case_t c = {.kind = k, .algo = algo, .dtype = (rdx_dtype_t)d,
                                   .op = (rdx_op_t)op, .count = count,
                                   .root = (int)(idx % n), .in_place = idx % 2 == 1,
                                   .pass = pass, .nonblocking = idx % 3 == 2};
                    c.seed = case_seed(m, ((uint64_t)k << 40) ^ ((uint64_t)d << 32) ^
                                          ((uint64_t)op << 24) ^ ci);
                    case_run(m, &c, comm);
                }
    }
    if (k == K_BARRIER)
        for (int i = 0; i < 3; i++) {
            cm_case_t c = {.kind = K_BARRIER, .algo = algo, .dtype = RDX_UINT8,
                           .nonblocking = i == 1};
            case_run(m, &c, comm);
        }
}

static void run_matrix(cm_t *m, rdx_comm_t *comm)
{
    for (int k = 0; k < K_COUNT; k++) {
        if (!m->o.kind_on[k])
            continue;
        int algos[6], na = kind_algos((cm_kind_t)k, algos);
        for (int a = 0; a < na; a++) {
            if (!m->o.algo_on[algos[a]])
                continue;
            double t0 = now_s();
            long c0 = m->ncases, f0 = m->failed;
            run_kind_algo(m, comm, (cm_kind_t)k, algos[a]);
            if (m->wrank == 0 && m->o.verbose)
                printf("coll_check_more: %-14s %-12s %5ld cases, %ld failed on rank 0, %.2f s\n",
                       k_kind_names[k], rdx_algo_name(algos[a]), m->ncases - c0, m->failed - f0,
                       now_s() - t0);
        }
    }
}

/* ---- nonblocking: every collective outstanding at once, each under another algorithm --- */

typedef struct nb_slot {
    cm_case_t c;
    cm_buf_t send, recv;
    void *sp, *rp;
    rdx_request_t *req;
} nb_slot_t;

static void nb_round(cm_t *m, rdx_comm_t *comm, int round)
{
    static const int algos[] = {RDX_ALGO_RING, RDX_ALGO_TREE, RDX_ALGO_RD,
                                RDX_ALGO_RABENSEIFNER, RDX_ALGO_AUTO};
    int n = rdx_comm_size(comm), rank = rdx_comm_rank(comm);
    nb_slot_t s[K_COUNT];
    cm_buf_t keep_send = m->send, keep_recv = m->recv;
    for (int k = 0; k < K_COUNT; k++) {
        size_t count = (size_t)(round * 977 + k * 4099 + 1) % 70001;
        s[k].c = (cm_case_t){.kind = (cm_kind_t)k, .algo = algos[(k + round) % 5],
                             .dtype = k % 2 ? RDX_FLOAT32 : RDX_INT32,
                             .op = (rdx_op_t)((k + round) % RDX_OP_COUNT), .count = count,
                             .root = (k + round) % n, .in_place = (k + round) % 2,
                             .nonblocking = 1};
        s[k].c.seed = case_seed(m, 0xabcdef00ULL + (uint64_t)k + ((uint64_t)round << 8));
        size_t in, out, big, es = rdx_dtype_size(s[k].c.dtype);
        case_shape(&s[k].c, n, &in, &out, &big);
        buf_init(&s[k].send, big * es);
        buf_init(&s[k].recv, big * es);
        m->send = s[k].send;
        m->recv = s[k].recv;
        case_setup(m, &s[k].c, rank, n, &s[k].sp, &s[k].rp);
        comm->settings.algo = s[k].c.algo;
        CALL(comm, case_issue(&s[k].c, comm, s[k].sp, s[k].rp, &s[k].req));
    }
    for (int done = 0, spins = 0; !done; spins++) {
        done = 1;
        for (int k = 0; k < K_COUNT; k++) {
            int d;
            CALL(comm, rdx_test(s[k].req, &d));
            done &= d;
        }
        if (spins % 64 == 63)
            sched_yield();
    }
    for (int k = 0; k < K_COUNT; k++) {
        CALL(comm, rdx_wait(s[k].req));
        m->send = s[k].send;
        m->recv = s[k].recv;
        case_check(m, &s[k].c, comm, s[k].sp, s[k].rp);
        free(s[k].send.mem);
        free(s[k].recv.mem);
    }
    m->send = keep_send;
    m->recv = keep_recv;
}

/* ---- sub-communicators ----------------------------------------------------------------- */

/* Every collective once on comm under its default choice and one forced algorithm. */
static void run_some(cm_t *m, rdx_comm_t *comm, int salt)
{
    for (int k = 0; k < K_COUNT; k++) {
        cm_case_t c = {.kind = (cm_kind_t)k, .algo = (k + salt) % 2 ? RDX_ALGO_TREE : RDX_ALGO_AUTO,
                       .dtype = RDX_FLOAT32, .op = (rdx_op_t)((k + salt) % RDX_OP_COUNT),
                       .count = (size_t)(k * 1237 + salt * 31 + 3), .root = salt % rdx_comm_size(comm),
                       .in_place = (k + salt) % 2, .nonblocking = k % 2};
        c.seed = case_seed(m, 0x5917ULL + (uint64_t)k * 7 + (uint64_t)salt);
        case_run(m, &c, comm);
    }
}

static void split_destroy(rdx_comm_t *c)
{
    rdx_status_t st = rdx_comm_destroy(c);  /* a child: frees only what the child owns */
    if (st != RDX_SUCCESS)
        die(NULL, -1, "rdx_comm_destroy (sub-communicator)", st);
}

static void run_split(cm_t *m)
{
    rdx_comm_t *w = m->world, *half, *quarter, *none;
    int n = rdx_comm_size(w), r = m->wrank;
    CALL(w, rdx_comm_split(w, r % 2, -r, &half));
    int hn = (n + 1 - r % 2) / 2;
    if (!half || rdx_comm_size(half) != hn || rdx_comm_rank(half) != hn - 1 - r / 2) {
        fprintf(stderr, "coll_check_more: rank %d: split gave rank %d of %d, expected %d of %d\n",
                r, half ? rdx_comm_rank(half) : -1, half ? rdx_comm_size(half) : -1,
                hn - 1 - r / 2, hn);
        m->failed++;
        m->ncases++;
        return;
    }
    /* parent and child alternate: sequential use of the shared FIFOs is allowed */
    for (int i = 0; i < 2; i++) {
        run_some(m, half, i);
        run_some(m, w, i + 5);
    }
    CALL(half, rdx_comm_split(half, rdx_comm_rank(half) / 2, 0, &quarter));
    run_some(m, quarter, 3);
    run_some(m, half, 4);
    split_destroy(quarter);
    /* the last world rank opts out */
    CALL(w, rdx_comm_split(w, r == n - 1 ? -1 : 0, r, &none));
    if ((r == n - 1) != (none == NULL) || (none && rdx_comm_size(none) != n - 1)) {
        fprintf(stderr, "coll_check_more: rank %d: color -1 split wrong\n", r);
        m->failed++;
    }
    m->ncases++;
    if (none) {
        run_some(m, none, 6);
        split_destroy(none);
    }
    split_destroy(half);
    /* the parent refuses to go while children live: checked with a fresh child */
    rdx_comm_t *child;
    CALL(w, rdx_comm_split(w, 0, r, &child));
    m->ncases++;
    if (rdx_comm_split_check_destroy(w) != RDX_ERR_INVALID_ARG) {
        fprintf(stderr, "coll_check_more: rank %d: parent destroy not refused\n", r);
        m->failed++;
    }
    split_destroy(child);
}

/* ---- barrier timing -------------------------------------------------------------------- */

static void run_barrier_timing(cm_t *m)
{
    rdx_comm_t *w = m->world;
    int n = rdx_comm_size(w);
    if (n < 2)
        return;
    for (int late = 0; late < n && late < 3; late++) {
        w->settings.algo = RDX_ALGO_AUTO;
        CALL(w, rdx_barrier(w));
        double t0 = now_s();
        if (m->wrank == late)
            usleep(200000);
        CALL(w, rdx_barrier(w));
        double waited = now_s() - t0;
        m->ncases++;
        if (m->wrank != late && waited < 0.1) {
            fprintf(stderr, "coll_check_more: rank %d: left the barrier after %.3f s while "
                    "rank %d entered it 0.2 s late\n", m->wrank, waited, late);
            m->failed++;
        }
    }
}

/* ---- options and main ------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out, "usage: coll_check_more [--quick] [--kinds LIST] [--algos LIST] [--dtype LIST]\n"
                 "                       [--seed S] [--max-print K] [--no-split] [--no-nb] [-v]\n"
                 "  LIST: comma-separated names (kinds: allreduce reduce_scatter allgather\n"
                 "  broadcast reduce barrier; algos: auto ring tree rd rabenseifner)\n");
}

static int parse_list(int *on, int total, const char *(*name)(int), const char *list)
{
    memset(on, 0, (size_t)total * sizeof(*on));
    char *copy = strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < total; i++)
            if (!strcasecmp(t, name(i)))
                on[i] = found = 1;
        if (!found) {
            fprintf(stderr, "coll_check_more: unknown name '%s'\n", t);
            free(copy);
            return -1;
        }
    }
    free(copy);
    return 0;
}

static const char *kind_name_i(int i) { return k_kind_names[i]; }
static const char *algo_name_i(int i) { return rdx_algo_name(i); }
static const char *dtype_name_i(int i) { return rdx_dtype_name((rdx_dtype_t)i); }

static void opts_parse(cm_opts_t *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"quick", no_argument, 0, 'q'}, {"kinds", required_argument, 0, 'k'},
        {"algos", required_argument, 0, 'a'}, {"dtype", required_argument, 0, 'd'},
        {"seed", required_argument, 0, 's'}, {"max-print", required_argument, 0, 'p'},
        {"no-split", no_argument, 0, 'S'}, {"no-nb", no_argument, 0, 'N'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    *o = (cm_opts_t){.max_print = 10, .seed = 20261128};
    for (int i = 0; i < K_COUNT; i++) o->kind_on[i] = 1;
    for (int i = 0; i < 5; i++) o->algo_on[i] = 1;
    for (int i = 0; i < RDX_DTYPE_COUNT; i++) o->dtype_on[i] = 1;
    int ch, rc = 0;
    while ((ch = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        switch (ch) {
        case 'q': o->quick = 1; break;
        case 'k': rc |= parse_list(o->kind_on, K_COUNT, kind_name_i, optarg); break;
        case 'a': rc |= parse_list(o->algo_on, 5, algo_name_i, optarg); break;
        case 'd': rc |= parse_list(o->dtype_on, RDX_DTYPE_COUNT, dtype_name_i, optarg); break;
        case 's': o->seed = strtoull(optarg, NULL, 0); break;
        case 'p': o->max_print = atoi(optarg); break;
        case 'S': o->no_split = 1; break;
        case 'N': o->no_nb = 1; break;
        case 'v': o->verbose = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (rc || optind < argc) {
        usage(stderr);
        exit(2);
    }
    if (o->quick) /* a representative subset: integers, both halves, a wide float */
        for (int i = 0; i < RDX_DTYPE_COUNT; i++)
            o->dtype_on[i] &= i == RDX_INT32 || i == RDX_UINT8 || i == RDX_FLOAT32 ||
                              i == RDX_BFLOAT16 || i == RDX_FLOAT64;
}

int main(int argc, char **argv)
{
    static cm_t m;
    opts_parse(&m.o, argc, argv);
    rdx_status_t st = rdx_comm_init(&m.world, NULL);
    if (st != RDX_SUCCESS)
        die(NULL, -1, "rdx_comm_init", st);
    m.wrank = rdx_comm_rank(m.world);
    size_t bytes = (size_t)CM_MAX_TOTAL * 8;
    buf_init(&m.send, bytes);
    buf_init(&m.recv, bytes);
    m.scratch = malloc(bytes);
    if (!m.scratch || chk_ref_init(&m.ref, CM_MAX_TOTAL) != 0)
        die(NULL, m.wrank, "allocation", RDX_ERR_NO_MEMORY);

    double t0 = now_s();
    run_matrix(&m, m.world);
    if (!m.o.no_nb)
        for (int r = 0; r < 4; r++)
            nb_round(&m, m.world, r);
    if (!m.o.no_split)
        run_split(&m);
    run_barrier_timing(&m);

    int64_t totals[2] = {m.ncases, m.failed};
    m.world->settings.algo = RDX_ALGO_AUTO;
    CALL(m.world, rdx_allreduce(m.world, totals, totals, 2, RDX_INT64, RDX_MAX));
    if (m.wrank == 0) {
        printf("coll_check_more: %lld cases passed, %lld failed (ranks %d, transport %s, %.1f s)\n",
               (long long)(totals[0] - totals[1]), (long long)totals[1],
               rdx_comm_size(m.world), rdx_comm_transport(m.world), now_s() - t0);
        fflush(stdout);
    }
    if (m.failed)
        fprintf(stderr, "coll_check_more: rank %d: %ld cases failed here\n", m.wrank, m.failed);
    CALL(m.world, rdx_comm_destroy(m.world));
    chk_ref_free(&m.ref);
    free(m.scratch);
    free(m.send.mem);
    free(m.recv.mem);
    return totals[1] || m.failed ? 1 : 0;
}
