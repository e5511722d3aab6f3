/*
 * coll_check: multi-process correctness check of rdx_allreduce / rdx_iallreduce, run under
 * rdx-run (tests/mp/run_matrix.sh runs it for n = 1..4).
 *
 *   coll_check [--counts N,N,...] [--quick] [--dtype NAME,...] [--op NAME,...]
 *              [--seed S] [--nb-rounds K] [--no-random] [--max-print K] [-v]
 *
 * Every case (dtype x op x count x in place / out of place x pass) runs one allreduce and
 * compares EVERY element with a serial reference. Input element i of rank r is a function of
 * hash(case seed, r, i), so each rank regenerates every rank's input and reduces them in
 * rank order 0..n-1 itself: no communication is trusted to build the reference. Inputs,
 * reference and comparison are tests/mp/check_common.h, shared with coll_check_more.c.
 *
 * Passes and what "equal" means (u = unit roundoff, eps = 2u = machine epsilon of the dtype:
 * 2^-23 fp32, 2^-52 fp64, 2^-10 fp16, 2^-7 bf16):
 *  exact pass, integer types: full-range random values; SUM and PROD wrap modulo 2^bits
 *    (PROD inputs are mostly odd so products do not collapse to 0), MIN/MAX signed or
 *    unsigned as the type; AVG inputs bounded by MAX/n so the sum cannot overflow, and the
 *    result is sum/n truncated toward zero. Compared bit for bit.
 *  exact pass, float types: integers in [-M, M] with n*M <= 2^(mantissa+1) (so every partial
 *    sum in any order is exact, also in fp16/bf16), PROD inputs in {+-0.5, +-1, +-2} (powers
 *    of two: exact products). SUM/PROD/MIN/MAX compared exactly. AVG multiplies the exact
 *    sum S by a rounded 1/n and rounds once more: |got - S/n| <= 2 eps |S/n|.
 *  random pass, float types: non-integer values (uniform [-1,1) for SUM/AVG/MIN/MAX, sign
 *    times [0.5,2) for PROD). The reference is computed in long double (64-bit mantissa: 11
 *    or more extra bits): its own error is at most 1/2048 of the bounds below, which the 2x
 *    margin absorbs.
 *    Summing n terms in any order with n-1 roundings of relative size u each (fp16/bf16
 *    widen to fp32 and round back: at most u(1 + 2^-13)) gives |got - S| <= gamma_{n-1}
 *    sum|x_r| with gamma_k = k u / (1 - k u); we allow
 *      SUM:  |got - S|   <= (n-1) eps sum_r |x_r,i|               (2x margin over gamma)
 *      AVG:  |got - S/n| <= ((n-1) eps sum_r |x_r,i| + 2 eps |S|) / n
 *      PROD: |got - P|   <= (n-1) eps |P|
 *      MIN/MAX: exact.
 * Also checked for every case: a guard region before and after each buffer is untouched,
 * and out of place, the send buffer is unchanged. Buffers are 64-byte aligned or offset by
 * one element (varied per case), as user buffers may be.
 *
 * Nonblocking: rounds of four rdx_iallreduce on separate buffers (mixed dtypes, ops, counts,
 * in place or not) with a blocking rdx_allreduce issued between the second and third, then
 * an rdx_test polling loop (which also checks that completion follows issue order), then
 * rdx_wait on each, then the same checks.
 *
 * Output: mismatches (first few per rank: index, got, expected, case), then on rank 0
 * "coll_check: N cases passed, M failed". Exit 0 iff no case failed on any rank; 1 on a
 * failed case; 2 when an rdx call returns an error (the communicator is then unusable).
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rdx/rdx.h"
#include "src/reduce.h"
#include "tests/mp/check_common.h"

#define CC_MAX_COUNTS 32
#define CC_GUARD_FRONT 64
#define CC_GUARD_BACK 256
#define CC_GUARD_BYTE 0xCD
#define CC_POISON_BYTE 0xA5
#define CC_NB_REQS 4
#define CC_NB_TIMEOUT_S 120.0
#define CC_SPIN_BEFORE_YIELD 64

typedef struct cc_opts {
    size_t counts[CC_MAX_COUNTS];
    int ncounts;
    int dtype_on[RDX_DTYPE_COUNT];
    int op_on[RDX_OP_COUNT];
    uint64_t seed;
    int nb_rounds;
    int random_pass;
    int max_print;
    int verbose;
} cc_opts_t;

/* A buffer with guard regions: [mem .. data) and [data + bytes .. data + bytes + BACK). */
typedef struct cc_buf {
    unsigned char *mem;
    size_t cap;            /* bytes of mem */
    unsigned char *data;
} cc_buf_t;

typedef struct cc_case {
    rdx_dtype_t dtype;
    rdx_op_t op;
    size_t count;
    int in_place;
    int pass;
    size_t send_off;       /* misalignment of the data in bytes (0 or one element) */
    size_t recv_off;
    uint64_t seed;
    const char *what;      /* "blocking", "nonblocking" */
} cc_case_t;

typedef struct cc_ctx {
    rdx_comm_t *comm;
    int rank;
    int size;
    cc_opts_t opts;
    size_t max_count;
    cc_buf_t send, recv;
    cc_buf_t nb_send[CC_NB_REQS], nb_recv[CC_NB_REQS];
    cc_buf_t recv2;             /* the in-place twin of a case */
    chk_ref_t ref;              /* reference and scratch (check_common.h) */
    unsigned char *own;         /* this rank's input of the current blocking case */
    int32_t *failed;            /* per case: 1 if this rank saw it fail */
    size_t ncases;
    size_t cap_cases;
    long printed;
    long local_failed;
} cc_ctx_t;

/* ---- small helpers --------------------------------------------------------------------- */

static double cc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void cc_die(const cc_ctx_t *ctx, const char *what, rdx_status_t st)
{
    const char *detail = (ctx && ctx->comm) ? rdx_comm_last_error(ctx->comm) : "";
    fprintf(stderr, "coll_check: rank %d: %s failed: %s%s%s\n", ctx ? ctx->rank : -1, what,
            rdx_strerror(st), detail[0] ? ": " : "", detail);
    fflush(stdout);
    exit(2);
}

#define CC_CALL(ctx, call)                                                     \
    do {                                                                       \
        rdx_status_t cc_st_ = (call);                                          \
        if (cc_st_ != RDX_SUCCESS)                                             \
            cc_die((ctx), #call, cc_st_);                                      \
    } while (0)

static void *cc_xalloc(size_t bytes)
{
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "coll_check: cannot allocate %zu bytes\n", bytes);
        exit(2);
    }
    return p;
}

/* The API's dtype sizes as this checker assumes them (checked against rdx_dtype_size). */
static size_t cc_dtype_size(rdx_dtype_t dt)
{
    static const size_t sizes[RDX_DTYPE_COUNT] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
    return sizes[dt];
}

/* ---- inputs, reference, comparison: tests/mp/check_common.h ---------------------------- */

static chk_gen_t cc_gen_of(const cc_ctx_t *ctx, const cc_case_t *c)
{
    return chk_gen_make(c->dtype, c->op, c->pass, ctx->size, c->seed);
}

/* buf[0 .. count) = rank r's input of case c. */
static void cc_gen(const cc_ctx_t *ctx, const cc_case_t *c, int r, unsigned char *buf)
{
    chk_gen_t g = cc_gen_of(ctx, c);
    chk_gen(&g, r, 0, c->count, buf);
}

/* Builds the reference of case c from every rank's regenerated input (in rank order). When
 * send is not NULL, also checks that it still holds this rank's input (own, when not NULL,
 * is that input already generated); returns 0 if not. */
static int cc_ref_build(cc_ctx_t *ctx, const cc_case_t *c, const unsigned char *send,
                        const unsigned char *own)
{
    chk_gen_t g = cc_gen_of(ctx, c);
    chk_ref_build(&ctx->ref, &g, 0, c->count);
    if (!send)
        return 1;
    if (!own) {
        chk_gen(&g, ctx->rank, 0, c->count, ctx->ref.scratch);
        own = ctx->ref.scratch;
    }
    return memcmp(send, own, c->count * cc_dtype_size(c->dtype)) == 0;
}

/* ---- comparing ------------------------------------------------------------------------- */

static void cc_case_describe(const cc_case_t *c, char *out, size_t len)
{
    snprintf(out, len, "%s %s %s count=%zu %s pass=%s send_off=%zu recv_off=%zu", c->what,
             rdx_dtype_name(c->dtype), rdx_op_name(c->op), c->count,
             c->in_place ? "in-place" : "out-of-place",
             c->pass == CHK_PASS_EXACT ? "exact" : "random", c->send_off, c->recv_off);
}

static void cc_report(cc_ctx_t *ctx, const cc_case_t *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void cc_report(cc_ctx_t *ctx, const cc_case_t *c, const char *fmt, ...)
{
    if (ctx->printed++ >= ctx->opts.max_print)
        return;
    char desc[200], msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cc_case_describe(c, desc, sizeof(desc));
    fprintf(stderr, "coll_check: rank %d: MISMATCH %s: %s\n", ctx->rank, desc, msg);
}

typedef struct cc_report_arg {
    cc_ctx_t *ctx;
    const cc_case_t *c;
} cc_report_arg_t;

static void cc_report_elem(void *arg, size_t i, const char *got, const char *want)
{
    cc_report_arg_t *a = arg;
    cc_report(a->ctx, a->c, "index %zu: got %s, expected %s", i, got, want);
}

/* Elements of got that differ from the reference cc_ref_build made (beyond the bounds). */
static size_t cc_compare(cc_ctx_t *ctx, const cc_case_t *c, const unsigned char *got)
{
    chk_gen_t g = cc_gen_of(ctx, c);
    cc_report_arg_t a = {ctx, c};
    return chk_compare(&ctx->ref, &g, got, c->count, cc_report_elem, &a);
}

/* ---- buffers and guards ---------------------------------------------------------------- */

static void cc_buf_init(cc_buf_t *b, size_t max_bytes)
{
    b->cap = CC_GUARD_FRONT + 8 + max_bytes + CC_GUARD_BACK;
    b->mem = cc_xalloc(b->cap);
    memset(b->mem, CC_GUARD_BYTE, b->cap);
    b->data = b->mem + CC_GUARD_FRONT;
}

static void cc_buf_free(cc_buf_t *b)
{
    free(b->mem);
    b->mem = b->data = NULL;
}

/* Places data at offset `off` after the front guard and fills both guards. */
static void cc_buf_prepare(cc_buf_t *b, size_t off, size_t bytes)
{
    b->data = b->mem + CC_GUARD_FRONT + off;
    memset(b->mem, CC_GUARD_BYTE, CC_GUARD_FRONT + off);
    memset(b->data + bytes, CC_GUARD_BYTE, CC_GUARD_BACK);
}

static int cc_span_is(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static int cc_buf_guards_ok(const cc_buf_t *b, size_t bytes)
{
    return cc_span_is(b->mem, (size_t)(b->data - b->mem), CC_GUARD_BYTE) &&
           cc_span_is(b->data + bytes, CC_GUARD_BACK, CC_GUARD_BYTE);
}

/* ---- one case -------------------------------------------------------------------------- */

static void cc_case_record(cc_ctx_t *ctx, int failed)
{
    if (ctx->ncases == ctx->cap_cases) {
        ctx->cap_cases = ctx->cap_cases ? 2 * ctx->cap_cases : 1024;
        ctx->failed = realloc(ctx->failed, ctx->cap_cases * sizeof(*ctx->failed));
        if (!ctx->failed) {
            fprintf(stderr, "coll_check: rank %d: out of memory\n", ctx->rank);
            exit(2);
        }
    }
    ctx->failed[ctx->ncases++] = failed ? 1 : 0;
    ctx->local_failed += failed ? 1 : 0;
}

/* Lays out the buffers of case c and writes this rank's input (copied from own if not
 * NULL, else generated), poisoning recv out of place. */
static void cc_case_setup(cc_ctx_t *ctx, const cc_case_t *c, cc_buf_t *send, cc_buf_t *recv,
                          const unsigned char *own)
{
    size_t bytes = c->count * cc_dtype_size(c->dtype);
    cc_buf_prepare(recv, c->recv_off, bytes);
    unsigned char *in = recv->data;
    if (!c->in_place) {
        cc_buf_prepare(send, c->send_off, bytes);
        in = send->data;
        memset(recv->data, CC_POISON_BYTE, bytes);
    }
    if (own)
        memcpy(in, own, bytes);
    else
        cc_gen(ctx, c, ctx->rank, in);
}

/* Checks case c against the reference already built (send_ok: what cc_ref_build said about
 * the send buffer); records and returns 1 if it failed. */
static int cc_case_check(cc_ctx_t *ctx, const cc_case_t *c, const cc_buf_t *send,
                         const cc_buf_t *recv, int send_ok)
{
    size_t bytes = c->count * cc_dtype_size(c->dtype), wrong;
    int failed = 0;
    if (!send_ok) {
        cc_report(ctx, c, "the send buffer was modified");
        failed = 1;
    }
    if (!cc_buf_guards_ok(recv, bytes) || (!c->in_place && !cc_buf_guards_ok(send, bytes))) {
        cc_report(ctx, c, "a guard region around a buffer was overwritten");
        failed = 1;
    }
    wrong = cc_compare(ctx, c, recv->data);
    if (wrong) {
        cc_report(ctx, c, "%zu of %zu elements wrong", wrong, c->count);
        failed = 1;
    }
    cc_case_record(ctx, failed);
    return failed;
}

static int cc_case_verify(cc_ctx_t *ctx, const cc_case_t *c, const cc_buf_t *send,
                          const cc_buf_t *recv)
{
    int send_ok = cc_ref_build(ctx, c, c->in_place ? NULL : send->data, NULL);
    return cc_case_check(ctx, c, send, recv, send_ok);
}

/* Same seed for every rank and both variants of a case; offsets vary with the seed. */
static void cc_case_seed(cc_ctx_t *ctx, cc_case_t *c, uint64_t salt)
{
    size_t es = cc_dtype_size(c->dtype);
    c->seed = chk_mix(ctx->opts.seed ^ chk_mix(salt + 0x1234567ULL * (ctx->ncases + 1)));
    c->send_off = (c->seed >> 8) & 1 ? es : 0;
    c->recv_off = (c->seed >> (c->in_place ? 10 : 9)) & 1 ? es : 0;
}

static void cc_issue_blocking(cc_ctx_t *ctx, cc_case_t *c, cc_buf_t *send, cc_buf_t *recv,
                              const unsigned char *own)
{
    c->what = "blocking";
    cc_case_setup(ctx, c, send, recv, own);
    const void *sbuf = c->in_place ? recv->data : send->data;
    CC_CALL(ctx, rdx_allreduce(ctx->comm, sbuf, recv->data, c->count, c->dtype, c->op));
}

static int cc_run_blocking(cc_ctx_t *ctx, cc_case_t *c)
{
    cc_gen(ctx, c, ctx->rank, ctx->own);
    cc_issue_blocking(ctx, c, &ctx->send, &ctx->recv, ctx->own);
    return cc_case_verify(ctx, c, &ctx->send, &ctx->recv);
}

/* The out-of-place and the in-place case of one (dtype, op, count, pass) share their
 * inputs, so one reference serves both: it is the expensive part at large counts. */
static void cc_run_pair(cc_ctx_t *ctx, rdx_dtype_t dt, rdx_op_t op, size_t count, int pass)
{
    cc_case_t oop = {.dtype = dt, .op = op, .count = count, .in_place = 0, .pass = pass};
    cc_case_seed(ctx, &oop, ((uint64_t)dt << 24) ^ ((uint64_t)op << 16) ^ ((uint64_t)pass << 8));
    cc_case_t ip = oop;
    ip.in_place = 1;
    ip.recv_off = (oop.seed >> 10) & 1 ? cc_dtype_size(dt) : 0;
    cc_gen(ctx, &oop, ctx->rank, ctx->own);
    cc_issue_blocking(ctx, &oop, &ctx->send, &ctx->recv, ctx->own);
    cc_issue_blocking(ctx, &ip, &ctx->send, &ctx->recv2, ctx->own);
    int send_ok = cc_ref_build(ctx, &oop, ctx->send.data, ctx->own);
    cc_case_check(ctx, &oop, &ctx->send, &ctx->recv, send_ok);
    cc_case_check(ctx, &ip, &ctx->send, &ctx->recv2, 1);
}

/* ---- the matrix ------------------------------------------------------------------------ */

static void cc_run_matrix(cc_ctx_t *ctx)
{
    for (int d = 0; d < RDX_DTYPE_COUNT; d++) {
        if (!ctx->opts.dtype_on[d])
            continue;
        double t0 = cc_now();
        size_t cases0 = ctx->ncases;
        long failed0 = ctx->local_failed;
        int passes = chk_is_float((rdx_dtype_t)d) && ctx->opts.random_pass ? 2 : 1;
        for (int pass = 0; pass < passes; pass++)
            for (int o = 0; o < RDX_OP_COUNT; o++) {
                if (!ctx->opts.op_on[o])
                    continue;
                for (int k = 0; k < ctx->opts.ncounts; k++)
                    cc_run_pair(ctx, (rdx_dtype_t)d, (rdx_op_t)o, ctx->opts.counts[k], pass);
            }
        if (ctx->rank == 0 && ctx->opts.verbose)
            printf("coll_check: %-8s %4zu cases, %ld failed on rank 0, %.2f s\n",
                   rdx_dtype_name((rdx_dtype_t)d), ctx->ncases - cases0,
                   ctx->local_failed - failed0, cc_now() - t0);
    }
}

/* ---- nonblocking ----------------------------------------------------------------------- */

static int cc_nth_enabled(const int *on, int total, int k)
{
    int enabled = 0;
    for (int i = 0; i < total; i++)
        enabled += on[i] != 0;
    k %= enabled;
    for (int i = 0; i < total; i++)
        if (on[i] && k-- == 0)
            return i;
    return 0;
}

/* Polls every request with rdx_test until all are done; checks that a request is never
 * done before one issued earlier. Returns the number of order violations. */
static int cc_nb_poll(cc_ctx_t *ctx, rdx_request_t **req, int nreq, const cc_case_t *cases)
{
    int done[CC_NB_REQS] = {0}, reported[CC_NB_REQS] = {0}, all = 0, violations = 0;
    double deadline = cc_now() + CC_NB_TIMEOUT_S;
    for (long spin = 0; !all; spin++) {
        all = 1;
        for (int k = 0; k < nreq; k++) {
            if (!done[k])
                CC_CALL(ctx, rdx_test(req[k], &done[k]));
            all &= done[k] != 0;
        }
        for (int k = 1; k < nreq; k++) {
            if (!done[k] || reported[k])
                continue;
            for (int j = 0; j < k; j++) {
                if (!done[j])  /* it may have completed since it was tested: ask again */
                    CC_CALL(ctx, rdx_test(req[j], &done[j]));
                if (!done[j]) {
                    cc_report(ctx, &cases[k], "completed before request %d issued earlier", j);
                    violations++;
                    reported[k] = 1;
                    break;
                }
            }
        }
        if (cc_now() > deadline) {
            fprintf(stderr, "coll_check: rank %d: nonblocking requests not done after %.0f s\n",
                    ctx->rank, CC_NB_TIMEOUT_S);
            exit(2);
        }
        if (!all && spin % CC_SPIN_BEFORE_YIELD == CC_SPIN_BEFORE_YIELD - 1)
            sched_yield();  /* ranks may outnumber cores */
    }
    return violations;
}

/* One round: i0, i1, blocking, i2, i3, test loop, wait all, verify all. */
static void cc_nb_round(cc_ctx_t *ctx, int round)
{
    static const size_t nb_counts[] = {1, 7, 1023, 65537, 4099, 0, 131071};
    const size_t ncounts = sizeof(nb_counts) / sizeof(nb_counts[0]);
    cc_case_t cases[CC_NB_REQS], mid;
    rdx_request_t *req[CC_NB_REQS];
    for (int k = 0; k < CC_NB_REQS; k++) {
        cc_case_t *c = &cases[k];
        memset(c, 0, sizeof(*c));
        c->dtype = (rdx_dtype_t)cc_nth_enabled(ctx->opts.dtype_on, RDX_DTYPE_COUNT, 3 * round + k);
        c->op = (rdx_op_t)cc_nth_enabled(ctx->opts.op_on, RDX_OP_COUNT, round + 2 * k);
        c->count = nb_counts[(size_t)(round + 3 * k) % ncounts];
        c->in_place = (round + k) % 2;
        c->pass = CHK_PASS_EXACT;
        c->what = "nonblocking";
        cc_case_seed(ctx, c, 0xAB00000ULL + (uint64_t)(round * CC_NB_REQS + k));
        cc_case_setup(ctx, c, &ctx->nb_send[k], &ctx->nb_recv[k], NULL);
    }
    for (int k = 0; k < CC_NB_REQS; k++) {
        const cc_case_t *c = &cases[k];
        const void *sbuf = c->in_place ? ctx->nb_recv[k].data : ctx->nb_send[k].data;
        CC_CALL(ctx, rdx_iallreduce(ctx->comm, sbuf, ctx->nb_recv[k].data, c->count, c->dtype,
                                    c->op, &req[k]));
        if (k == 1) {  /* a blocking collective while two requests are outstanding */
            mid = (cc_case_t){.dtype = cases[0].dtype, .op = cases[1].op, .count = 1023,
                              .in_place = round % 2, .pass = CHK_PASS_EXACT};
            cc_case_seed(ctx, &mid, 0xCD00000ULL + (uint64_t)round);
            cc_run_blocking(ctx, &mid);
        }
    }
    int violations = cc_nb_poll(ctx, req, CC_NB_REQS, cases);
    for (int k = 0; k < CC_NB_REQS; k++)
        CC_CALL(ctx, rdx_wait(req[k]));
    for (int k = 0; k < CC_NB_REQS; k++)
        cc_case_verify(ctx, &cases[k], &ctx->nb_send[k], &ctx->nb_recv[k]);
    cc_case_record(ctx, violations != 0);  /* the completion-order check is a case too */
}

/* ---- command line ---------------------------------------------------------------------- */

static void cc_usage(FILE *out)
{
    fprintf(out,
            "usage: coll_check [--counts N,N,...] [--quick] [--dtype NAME,...] [--op NAME,...]\n"
            "                  [--seed S] [--nb-rounds K] [--no-random] [--max-print K] [-v]\n"
            "  default counts 0,1,7,1023,65537,1048579; --quick: 0,1,7,1023,65537\n"
            "  dtypes: int8 uint8 int32 uint32 int64 uint64 float16 bfloat16 float32 float64\n"
            "  ops: sum prod min max avg\n");
}

static int cc_parse_counts(cc_opts_t *o, const char *s)
{
    char *end;
    o->ncounts = 0;
    while (*s) {
        if (o->ncounts == CC_MAX_COUNTS)
            return -1;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || (*end && *end != ',') || s[0] == '-')
            return -1;
        o->counts[o->ncounts++] = (size_t)v;
        s = *end ? end + 1 : end;
    }
    return o->ncounts ? 0 : -1;
}

/* "a,b,c" against names[0..total): sets on[i] for each listed name. */
static int cc_parse_names(int *on, int total, const char *(*name)(int), const char *list)
{
    char buf[256];
    if (strlen(list) >= sizeof(buf))
        return -1;
    strcpy(buf, list);
    memset(on, 0, (size_t)total * sizeof(*on));
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < total; i++)
            if (strcasecmp(tok, name(i)) == 0)
                on[i] = found = 1;
        if (!found)
            return -1;
    }
    for (int i = 0; i < total; i++)
        if (on[i])
            return 0;
    return -1;
}

static const char *cc_dtype_name_i(int i) { return rdx_dtype_name((rdx_dtype_t)i); }
static const char *cc_op_name_i(int i) { return rdx_op_name((rdx_op_t)i); }

static void cc_opts_parse(cc_opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"counts", required_argument, NULL, 'C'}, {"quick", no_argument, NULL, 'Q'},
        {"dtype", required_argument, NULL, 'D'},  {"op", required_argument, NULL, 'O'},
        {"seed", required_argument, NULL, 'S'},   {"nb-rounds", required_argument, NULL, 'N'},
        {"no-random", no_argument, NULL, 'R'},    {"max-print", required_argument, NULL, 'P'},
        {"verbose", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    cc_parse_counts(o, "0,1,7,1023,65537,1048579");
    for (int i = 0; i < RDX_DTYPE_COUNT; i++)
        o->dtype_on[i] = 1;
    for (int i = 0; i < RDX_OP_COUNT; i++)
        o->op_on[i] = 1;
    o->seed = 20261128;
    o->nb_rounds = 6;
    o->random_pass = 1;
    o->max_print = 10;
    int c, bad = 0;
    while (!bad && (c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'C': bad = cc_parse_counts(o, optarg); break;
        case 'Q': cc_parse_counts(o, "0,1,7,1023,65537"); break;
        case 'D': bad = cc_parse_names(o->dtype_on, RDX_DTYPE_COUNT, cc_dtype_name_i, optarg); break;
        case 'O': bad = cc_parse_names(o->op_on, RDX_OP_COUNT, cc_op_name_i, optarg); break;
        case 'S': o->seed = strtoull(optarg, NULL, 0); break;
        case 'N': o->nb_rounds = atoi(optarg); bad = o->nb_rounds < 0; break;
        case 'R': o->random_pass = 0; break;
        case 'P': o->max_print = atoi(optarg); break;
        case 'v': o->verbose = 1; break;
        case 'h': cc_usage(stdout); exit(0);
        default: bad = 1; break;
        }
    }
    if (bad || optind < argc) {
        fprintf(stderr, "coll_check: bad arguments\n");
        cc_usage(stderr);
        exit(2);
    }
}

/* ---- main ------------------------------------------------------------------------------ */

static void cc_ctx_alloc(cc_ctx_t *ctx)
{
    ctx->max_count = 131071;  /* the largest nonblocking count */
    for (int k = 0; k < ctx->opts.ncounts; k++)
        if (ctx->opts.counts[k] > ctx->max_count)
            ctx->max_count = ctx->opts.counts[k];
    size_t n = ctx->max_count;
    cc_buf_init(&ctx->send, n * 8);
    cc_buf_init(&ctx->recv, n * 8);
    cc_buf_init(&ctx->recv2, n * 8);
    for (int k = 0; k < CC_NB_REQS; k++) {
        cc_buf_init(&ctx->nb_send[k], 131071 * 8);
        cc_buf_init(&ctx->nb_recv[k], 131071 * 8);
    }
    ctx->own = cc_xalloc(n * 8);
    if (chk_ref_init(&ctx->ref, n) != 0) {
        fprintf(stderr, "coll_check: rank %d: cannot allocate the reference\n", ctx->rank);
        exit(2);
    }
}

static void cc_ctx_free(cc_ctx_t *ctx)
{
    cc_buf_free(&ctx->send);
    cc_buf_free(&ctx->recv);
    cc_buf_free(&ctx->recv2);
    for (int k = 0; k < CC_NB_REQS; k++) {
        cc_buf_free(&ctx->nb_send[k]);
        cc_buf_free(&ctx->nb_recv[k]);
    }
    free(ctx->own);
    chk_ref_free(&ctx->ref);
    free(ctx->failed);
}

/* The API's own dtype table must agree with the sizes this checker assumes. */
static int cc_check_dtype_sizes(const cc_ctx_t *ctx)
{
    int ok = 1;
    for (int d = 0; d < RDX_DTYPE_COUNT; d++) {
        if (rdx_dtype_size((rdx_dtype_t)d) != cc_dtype_size((rdx_dtype_t)d)) {
            fprintf(stderr, "coll_check: rank %d: rdx_dtype_size(%s) = %zu, expected %zu\n",
                    ctx->rank, rdx_dtype_name((rdx_dtype_t)d), rdx_dtype_size((rdx_dtype_t)d),
                    cc_dtype_size((rdx_dtype_t)d));
            ok = 0;
        }
    }
    return ok;
}

/* Cases that failed on any rank (MAX over ranks of the per-case flags). */
static long cc_global_failed(cc_ctx_t *ctx)
{
    long failed = 0;
    if (ctx->ncases)
        CC_CALL(ctx, rdx_allreduce(ctx->comm, ctx->failed, ctx->failed, ctx->ncases, RDX_INT32,
                                   RDX_MAX));
    for (size_t k = 0; k < ctx->ncases; k++)
        failed += ctx->failed[k] != 0;
    return failed;
}

int main(int argc, char **argv)
{
    static cc_ctx_t ctx;
    ctx.rank = -1;
    cc_opts_parse(&ctx.opts, argc, argv);
    CC_CALL(&ctx, rdx_comm_init(&ctx.comm, NULL));
    ctx.rank = rdx_comm_rank(ctx.comm);
    ctx.size = rdx_comm_size(ctx.comm);
    if (!cc_check_dtype_sizes(&ctx))
        return 1;
    cc_ctx_alloc(&ctx);

    double t0 = cc_now();
    cc_run_matrix(&ctx);
    double t_matrix = cc_now() - t0;
    for (int r = 0; r < ctx.opts.nb_rounds; r++)
        cc_nb_round(&ctx, r);

    long global = cc_global_failed(&ctx);
    if (ctx.rank == 0) {
        printf("coll_check: %zu cases passed, %ld failed (ranks %d, transport %s, %.1f s: "
               "matrix %.1f s)\n",
               ctx.ncases - (size_t)global, global, ctx.size, rdx_comm_transport(ctx.comm),
               cc_now() - t0, t_matrix);
        fflush(stdout);
    }
    if (ctx.local_failed)
        fprintf(stderr, "coll_check: rank %d: %ld cases failed here\n", ctx.rank,
                ctx.local_failed);
    CC_CALL(&ctx, rdx_comm_destroy(ctx.comm));
    ctx.comm = NULL;
    cc_ctx_free(&ctx);
    return (global || ctx.local_failed) ? 1 : 0;
}
