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
 * rank order 0..n-1 itself: no communication is trusted to build the reference.
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
 *    times [0.5,2) for PROD). The reference is computed in double for fp16/bf16/fp32 (29 or
 *    more extra mantissa bits) and in long double (64-bit mantissa, 11 extra bits) for fp64:
 *    its own error is at most 1/2048 of the bounds below, which the 2x margin absorbs.
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

#define CC_MAX_COUNTS 32
#define CC_GUARD_FRONT 64
#define CC_GUARD_BACK 256
#define CC_GUARD_BYTE 0xCD
#define CC_POISON_BYTE 0xA5
#define CC_NB_REQS 4
#define CC_NB_TIMEOUT_S 120.0
#define CC_SPIN_BEFORE_YIELD 64

enum { CC_PASS_EXACT = 0, CC_PASS_RANDOM = 1 };

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
    unsigned char *scratch;     /* one rank's regenerated input */
    unsigned char *own;         /* this rank's input of the current blocking case */
    uint64_t *wide_u;           /* one buffer widened: integers */
    void *wide_f;               /* one buffer widened: floats (double or long double) */
    uint64_t *ref_u;            /* integer reference */
    void *ref_f;                /* float reference (double or long double) */
    double *sumabs;             /* float: sum over ranks of |x| */
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

/* splitmix64 finaliser: a good 64-bit mix; the stream of (base + i * golden) is splitmix64. */
static inline uint64_t cc_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t cc_rank_base(uint64_t seed, int r)
{
    return cc_mix(seed ^ cc_mix(0x51ed27a1ULL + (uint64_t)r));
}

/* Per element: a one-multiply mix of a Weyl sequence (cheap: the reference regenerates
 * n inputs per case; the per-rank base is fully mixed). */
static inline uint64_t cc_hash(uint64_t base, size_t i)
{
    uint64_t x = base + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    return x ^ (x >> 32);
}

static size_t cc_dtype_size(rdx_dtype_t dt)
{
    static const size_t sizes[RDX_DTYPE_COUNT] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
    return sizes[dt];
}

static int cc_is_float(rdx_dtype_t dt)
{
    return dt == RDX_FLOAT16 || dt == RDX_BFLOAT16 || dt == RDX_FLOAT32 || dt == RDX_FLOAT64;
}

static int cc_is_signed(rdx_dtype_t dt)
{
    return dt == RDX_INT8 || dt == RDX_INT32 || dt == RDX_INT64;
}

/* Machine epsilon and exact-integer bits (mantissa + 1) of the float types. */
static double cc_eps(rdx_dtype_t dt)
{
    switch (dt) {
    case RDX_FLOAT16: return ldexp(1.0, -10);
    case RDX_BFLOAT16: return ldexp(1.0, -7);
    case RDX_FLOAT32: return ldexp(1.0, -23);
    default: return ldexp(1.0, -52);
    }
}

static int cc_exact_bits(rdx_dtype_t dt)
{
    switch (dt) {
    case RDX_FLOAT16: return 11;
    case RDX_BFLOAT16: return 8;
    case RDX_FLOAT32: return 24;
    default: return 53;
    }
}

static const char *cc_dtype_name(rdx_dtype_t dt)
{
    static const char *names[RDX_DTYPE_COUNT] = {"int8", "uint8", "int32", "uint32", "int64",
                                                 "uint64", "float16", "bfloat16", "float32",
                                                 "float64"};
    return names[dt];
}

static const char *cc_op_name(rdx_op_t op)
{
    static const char *names[RDX_OP_COUNT] = {"sum", "prod", "min", "max", "avg"};
    return names[op];
}

/* ---- inputs ---------------------------------------------------------------------------- */

__extension__ typedef unsigned __int128 cc_u128;

/* h scaled to [0, range); range 0 stands for 2^64. Multiply-high: no 64-bit division. */
static inline uint64_t cc_below(uint64_t h, uint64_t range)
{
    return range ? (uint64_t)(((cc_u128)h * range) >> 64) : h;
}

/* Largest magnitude B such that any partial AVG sum of n values in [-B, B] fits the type. */
static uint64_t cc_int_avg_bound(rdx_dtype_t dt, int n)
{
    uint64_t max;
    switch (dt) {
    case RDX_INT8: max = INT8_MAX; break;
    case RDX_UINT8: max = UINT8_MAX; break;
    case RDX_INT32: max = INT32_MAX; break;
    case RDX_UINT32: max = UINT32_MAX; break;
    case RDX_INT64: max = INT64_MAX; break;
    default: max = UINT64_MAX; break;
    }
    return max / (uint64_t)n;
}

/* What the generator needs, computed once per case rather than per element. */
typedef struct cc_genp {
    rdx_op_t op;
    int pass;
    int n;
    uint64_t range;        /* ints, AVG: values below range (then shifted by -offset) */
    int64_t offset;
    int64_t m;             /* floats, exact pass: integers in [-m, m] */
} cc_genp_t;

static cc_genp_t cc_genp_make(const cc_case_t *c, int n)
{
    cc_genp_t g = {.op = c->op, .pass = c->pass, .n = n};
    if (!cc_is_float(c->dtype) && c->op == RDX_AVG) {
        uint64_t b = cc_int_avg_bound(c->dtype, n);
        g.range = cc_is_signed(c->dtype) ? 2 * b + 1 : b + 1;  /* uint64, n=1: 0 = 2^64 */
        g.offset = cc_is_signed(c->dtype) ? (int64_t)b : 0;
    }
    if (cc_is_float(c->dtype)) {
        g.m = ((int64_t)1 << cc_exact_bits(c->dtype)) / n;
        if (g.m > ((int64_t)1 << 20))
            g.m = (int64_t)1 << 20;
    }
    return g;
}

static inline uint64_t cc_gen_int(const cc_genp_t *g, uint64_t h)
{
    if (g->op == RDX_PROD)
        return ((h >> 60) & 3) ? (h | 1) : h;  /* 3 in 4 odd: products stay non-zero */
    if (g->op != RDX_AVG)
        return h;
    return cc_below(h, g->range) - (uint64_t)g->offset;
}

static inline double cc_gen_float(const cc_genp_t *g, uint64_t h)
{
    double unit = (double)(h >> 11) * 0x1p-53;                      /* [0, 1) */
    double sign = (h & 1) ? -1.0 : 1.0;
    if (g->pass == CC_PASS_RANDOM) {
        if (g->op == RDX_PROD)
            return sign * (0.5 + 1.5 * unit);                       /* [0.5, 2) */
        return 2.0 * unit - 1.0;                                    /* [-1, 1) */
    }
    if (g->op == RDX_PROD) {
        static const double pow2[3] = {0.5, 1.0, 2.0};
        return g->n <= 14 ? sign * pow2[cc_below(h, 3)] : sign;     /* fp16: 2^+-14 */
    }
    return (double)((int64_t)cc_below(h, (uint64_t)(2 * g->m + 1)) - g->m);
}

#define CC_GEN_LOOP(T, EXPR)                                                   \
    do {                                                                       \
        T *p_ = (T *)(void *)buf;                                              \
        for (size_t i = 0; i < c->count; i++) {                                \
            uint64_t h = cc_hash(base, i);                                     \
            p_[i] = (EXPR);                                                    \
        }                                                                      \
    } while (0)

/* buf[0 .. count) = rank r's input of case c (buf is element-aligned). */
static void cc_gen(const cc_ctx_t *ctx, const cc_case_t *c, int r, unsigned char *buf)
{
    uint64_t base = cc_rank_base(c->seed, r);
    cc_genp_t g = cc_genp_make(c, ctx->size);
    switch (c->dtype) {
    case RDX_INT8: case RDX_UINT8: CC_GEN_LOOP(uint8_t, (uint8_t)cc_gen_int(&g, h)); break;
    case RDX_INT32: case RDX_UINT32: CC_GEN_LOOP(uint32_t, (uint32_t)cc_gen_int(&g, h)); break;
    case RDX_INT64: case RDX_UINT64: CC_GEN_LOOP(uint64_t, cc_gen_int(&g, h)); break;
    case RDX_FLOAT16:
        CC_GEN_LOOP(uint16_t, rdx_float_to_half((float)cc_gen_float(&g, h)));
        break;
    case RDX_BFLOAT16:
        CC_GEN_LOOP(uint16_t, rdx_float_to_bf16((float)cc_gen_float(&g, h)));
        break;
    case RDX_FLOAT32: CC_GEN_LOOP(float, (float)cc_gen_float(&g, h)); break;
    case RDX_FLOAT64: CC_GEN_LOOP(double, cc_gen_float(&g, h)); break;
    }
}

/* ---- widening: every element as uint64 (sign-extended) or as a float "real" (exact) ---- */

#define CC_WIDEN_LOOP(T, EXPR)                                                 \
    do {                                                                       \
        const T *p_ = (const T *)(const void *)in;                             \
        for (size_t i = 0; i < count; i++)                                     \
            out[i] = (EXPR);                                                   \
    } while (0)

static void cc_widen_int(rdx_dtype_t dt, const unsigned char *in, size_t count, uint64_t *out)
{
    switch (dt) {
    case RDX_INT8: CC_WIDEN_LOOP(int8_t, (uint64_t)(int64_t)p_[i]); break;
    case RDX_UINT8: CC_WIDEN_LOOP(uint8_t, p_[i]); break;
    case RDX_INT32: CC_WIDEN_LOOP(int32_t, (uint64_t)(int64_t)p_[i]); break;
    case RDX_UINT32: CC_WIDEN_LOOP(uint32_t, p_[i]); break;
    default: CC_WIDEN_LOOP(uint64_t, p_[i]); break;
    }
}

/* fp16/bf16/fp32 widen to double, fp64 to long double: see cc_real below. */
static void cc_widen_float(rdx_dtype_t dt, const unsigned char *in, size_t count, void *wide)
{
    if (dt == RDX_FLOAT64) {
        long double *out = wide;
        CC_WIDEN_LOOP(double, p_[i]);
        return;
    }
    double *out = wide;
    switch (dt) {
    case RDX_FLOAT16: CC_WIDEN_LOOP(uint16_t, rdx_half_to_float(p_[i])); break;
    case RDX_BFLOAT16: CC_WIDEN_LOOP(uint16_t, rdx_bf16_to_float(p_[i])); break;
    default: CC_WIDEN_LOOP(float, p_[i]); break;
    }
}

/* ---- the serial reference -------------------------------------------------------------- */

static void cc_ref_accumulate_int(cc_ctx_t *ctx, const cc_case_t *c, int first)
{
    const uint64_t *x = ctx->wide_u;
    uint64_t *acc = ctx->ref_u;
    size_t n = c->count;
    if (first) {
        memcpy(acc, x, n * sizeof(*acc));
        return;
    }
    int sgn = cc_is_signed(c->dtype);
    switch (c->op) {
    case RDX_SUM: case RDX_AVG:
        for (size_t i = 0; i < n; i++) acc[i] += x[i];
        break;
    case RDX_PROD:
        for (size_t i = 0; i < n; i++) acc[i] *= x[i];
        break;
    case RDX_MIN:
        for (size_t i = 0; i < n; i++)
            if (sgn ? (int64_t)x[i] < (int64_t)acc[i] : x[i] < acc[i]) acc[i] = x[i];
        break;
    case RDX_MAX:
        for (size_t i = 0; i < n; i++)
            if (sgn ? (int64_t)x[i] > (int64_t)acc[i] : x[i] > acc[i]) acc[i] = x[i];
        break;
    }
}

/*
 * The float reference is kept in "real": double for fp16/bf16/fp32, whose integer-valued
 * inputs it sums exactly and whose random inputs it sums with an error below 2^-50
 * relative (negligible against the bounds, and vectorisable), and long double (64-bit
 * mantissa) for fp64. One definition, instantiated for both types.
 */
#define CC_DEFINE_FLOAT_ACCUMULATE(SFX, REAL)                                  \
    static void cc_accumulate_##SFX(rdx_op_t op, size_t n, const REAL *x,      \
                                    REAL *acc, double *sa, int first)          \
    {                                                                          \
        if (sa) /* sum of |x|: only the random SUM/AVG bounds need it */       \
            for (size_t i = 0; i < n; i++)                                     \
                sa[i] = (first ? 0 : sa[i]) + fabs((double)x[i]);              \
        if (first) {                                                           \
            memcpy(acc, x, n * sizeof(*acc));                                  \
            return;                                                            \
        }                                                                      \
        switch (op) {                                                          \
        case RDX_SUM: case RDX_AVG:                                            \
            for (size_t i = 0; i < n; i++) acc[i] += x[i];                     \
            break;                                                             \
        case RDX_PROD:                                                         \
            for (size_t i = 0; i < n; i++) acc[i] *= x[i];                     \
            break;                                                             \
        case RDX_MIN:                                                          \
            for (size_t i = 0; i < n; i++) acc[i] = x[i] < acc[i] ? x[i] : acc[i]; \
            break;                                                             \
        case RDX_MAX:                                                          \
            for (size_t i = 0; i < n; i++) acc[i] = x[i] > acc[i] ? x[i] : acc[i]; \
            break;                                                             \
        }                                                                      \
    }

CC_DEFINE_FLOAT_ACCUMULATE(d, double)
CC_DEFINE_FLOAT_ACCUMULATE(ld, long double)

static void cc_ref_accumulate_float(cc_ctx_t *ctx, const cc_case_t *c, int first)
{
    int need_sa = c->pass == CC_PASS_RANDOM && (c->op == RDX_SUM || c->op == RDX_AVG);
    double *sa = need_sa ? ctx->sumabs : NULL;
    if (c->dtype == RDX_FLOAT64)
        cc_accumulate_ld(c->op, c->count, ctx->wide_f, ctx->ref_f, sa, first);
    else
        cc_accumulate_d(c->op, c->count, ctx->wide_f, ctx->ref_f, sa, first);
}

/* Builds the reference from every rank's regenerated input, in rank order 0..n-1 (own:
 * this rank's input if already generated, else NULL). When send is not NULL, also checks
 * that it still holds this rank's input; returns 0 if not. */
static int cc_ref_build(cc_ctx_t *ctx, const cc_case_t *c, const unsigned char *send,
                        const unsigned char *own)
{
    int send_ok = 1;
    for (int r = 0; r < ctx->size; r++) {
        const unsigned char *in = ctx->scratch;
        if (r == ctx->rank && own)
            in = own;
        else
            cc_gen(ctx, c, r, ctx->scratch);
        if (r == ctx->rank && send && memcmp(send, in, c->count * cc_dtype_size(c->dtype)))
            send_ok = 0;
        if (cc_is_float(c->dtype)) {
            cc_widen_float(c->dtype, in, c->count, ctx->wide_f);
            cc_ref_accumulate_float(ctx, c, r == 0);
        } else {
            cc_widen_int(c->dtype, in, c->count, ctx->wide_u);
            cc_ref_accumulate_int(ctx, c, r == 0);
        }
    }
    return send_ok;
}

/* ---- comparing ------------------------------------------------------------------------- */

static void cc_case_describe(const cc_case_t *c, char *out, size_t len)
{
    snprintf(out, len, "%s %s %s count=%zu %s pass=%s send_off=%zu recv_off=%zu", c->what,
             cc_dtype_name(c->dtype), cc_op_name(c->op), c->count,
             c->in_place ? "in-place" : "out-of-place",
             c->pass == CC_PASS_EXACT ? "exact" : "random", c->send_off, c->recv_off);
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

static size_t cc_compare_int(cc_ctx_t *ctx, const cc_case_t *c, const unsigned char *got)
{
    size_t bits = 8 * cc_dtype_size(c->dtype), wrong = 0;
    int sgn = cc_is_signed(c->dtype), avg = c->op == RDX_AVG;
    uint64_t n = (uint64_t)ctx->size;
    uint64_t mask = bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1;
    uint64_t top = (uint64_t)1 << (bits - 1);
    cc_widen_int(c->dtype, got, c->count, ctx->wide_u);
    for (size_t i = 0; i < c->count; i++) {
        uint64_t want = ctx->ref_u[i];
        if (avg)  /* the true sum fits (inputs bounded): truncating division */
            want = sgn ? (uint64_t)((int64_t)want / (int64_t)n) : want / n;
        want &= mask;  /* wrap to the type, then sign-extend as the widened result is */
        if (sgn && (want & top))
            want |= ~mask;
        if (want == ctx->wide_u[i])
            continue;
        if (wrong++ >= 3)
            continue;
        if (sgn)
            cc_report(ctx, c, "index %zu: got %" PRId64 ", expected %" PRId64, i,
                      (int64_t)ctx->wide_u[i], (int64_t)want);
        else
            cc_report(ctx, c, "index %zu: got %" PRIu64 ", expected %" PRIu64, i,
                      ctx->wide_u[i], want);
    }
    return wrong;
}

/* Allowed error of one element (see the top comment): ref is the exact reduction S
 * (sum, product, min or max) and sa = sum over ranks of |x|. */
static inline double cc_float_bound(const cc_case_t *c, double eps, double n, double ref,
                                    double sa)
{
    if (c->op == RDX_AVG)
        return (2 * eps * fabs(ref) + (c->pass == CC_PASS_RANDOM ? (n - 1) * eps * sa : 0)) / n;
    if (c->pass != CC_PASS_RANDOM)
        return 0;
    if (c->op == RDX_SUM)
        return (n - 1) * eps * sa;
    if (c->op == RDX_PROD)
        return (n - 1) * eps * fabs(ref);
    return 0;
}

#define CC_DEFINE_FLOAT_COMPARE(SFX, REAL, FABS, FMT)                          \
    static size_t cc_compare_##SFX(cc_ctx_t *ctx, const cc_case_t *c, const REAL *got, \
                                   const REAL *acc)                            \
    {                                                                          \
        double eps = cc_eps(c->dtype), n = (double)ctx->size;                  \
        size_t wrong = 0;                                                      \
        for (size_t i = 0; i < c->count; i++) {                                \
            REAL want = c->op == RDX_AVG ? acc[i] / (REAL)n : acc[i];          \
            double bound = cc_float_bound(c, eps, n, (double)acc[i], ctx->sumabs[i]); \
            if (FABS(got[i] - want) <= (REAL)bound)  /* false for NaN */       \
                continue;                                                      \
            if (wrong++ < 3)                                                   \
                cc_report(ctx, c, "index %zu: got %.10" FMT ", expected %.10" FMT \
                          " (allowed error %.3g)", i, got[i], want, bound);    \
        }                                                                      \
        return wrong;                                                          \
    }

CC_DEFINE_FLOAT_COMPARE(d, double, fabs, "g")
CC_DEFINE_FLOAT_COMPARE(ld, long double, fabsl, "Lg")

static size_t cc_compare_float(cc_ctx_t *ctx, const cc_case_t *c, const unsigned char *got)
{
    cc_widen_float(c->dtype, got, c->count, ctx->wide_f);
    if (c->dtype == RDX_FLOAT64)
        return cc_compare_ld(ctx, c, ctx->wide_f, ctx->ref_f);
    return cc_compare_d(ctx, c, ctx->wide_f, ctx->ref_f);
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
    if (cc_is_float(c->dtype))
        wrong = cc_compare_float(ctx, c, recv->data);
    else
        wrong = cc_compare_int(ctx, c, recv->data);
    if (wrong) {
        cc_report(ctx, c, "%zu of %zu elements wrong", wrong, c->count);
        failed = 1;
    }
    cc_case_record(ctx, failed);
    return failed;
}

static int cc_case_verify(cc_ctx_t *ctx, const cc_case_t *c, const cc_buf_t *send,
                          const cc_buf_t *recv, const unsigned char *own)
{
    int send_ok = cc_ref_build(ctx, c, c->in_place ? NULL : send->data, own);
    return cc_case_check(ctx, c, send, recv, send_ok);
}

/* Same seed for every rank and both variants of a case; offsets vary with the seed. */
static void cc_case_seed(cc_ctx_t *ctx, cc_case_t *c, uint64_t salt)
{
    size_t es = cc_dtype_size(c->dtype);
    c->seed = cc_mix(ctx->opts.seed ^ cc_mix(salt + 0x1234567ULL * (ctx->ncases + 1)));
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
    return cc_case_verify(ctx, c, &ctx->send, &ctx->recv, ctx->own);
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
        int passes = cc_is_float((rdx_dtype_t)d) && ctx->opts.random_pass ? 2 : 1;
        for (int pass = 0; pass < passes; pass++)
            for (int o = 0; o < RDX_OP_COUNT; o++) {
                if (!ctx->opts.op_on[o])
                    continue;
                for (int k = 0; k < ctx->opts.ncounts; k++)
                    cc_run_pair(ctx, (rdx_dtype_t)d, (rdx_op_t)o, ctx->opts.counts[k], pass);
            }
        if (ctx->rank == 0 && ctx->opts.verbose)
            printf("coll_check: %-8s %4zu cases, %ld failed on rank 0, %.2f s\n",
                   cc_dtype_name((rdx_dtype_t)d), ctx->ncases - cases0,
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
        c->pass = CC_PASS_EXACT;
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
                              .in_place = round % 2, .pass = CC_PASS_EXACT};
            cc_case_seed(ctx, &mid, 0xCD00000ULL + (uint64_t)round);
            cc_run_blocking(ctx, &mid);
        }
    }
    int violations = cc_nb_poll(ctx, req, CC_NB_REQS, cases);
    for (int k = 0; k < CC_NB_REQS; k++)
        CC_CALL(ctx, rdx_wait(req[k]));
    for (int k = 0; k < CC_NB_REQS; k++)
        cc_case_verify(ctx, &cases[k], &ctx->nb_send[k], &ctx->nb_recv[k], NULL);
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

static const char *cc_dtype_name_i(int i) { return cc_dtype_name((rdx_dtype_t)i); }
static const char *cc_op_name_i(int i) { return cc_op_name((rdx_op_t)i); }

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
    ctx->scratch = cc_xalloc(n * 8);
    ctx->own = cc_xalloc(n * 8);
    ctx->wide_u = cc_xalloc(n * sizeof(*ctx->wide_u));
    ctx->wide_f = cc_xalloc(n * sizeof(long double));
    ctx->ref_u = cc_xalloc(n * sizeof(*ctx->ref_u));
    ctx->ref_f = cc_xalloc(n * sizeof(long double));
    ctx->sumabs = cc_xalloc(n * sizeof(*ctx->sumabs));
    memset(ctx->sumabs, 0, n * sizeof(*ctx->sumabs));  /* read (unused) by exact cases */
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
    free(ctx->scratch);
    free(ctx->own);
    free(ctx->wide_u);
    free(ctx->wide_f);
    free(ctx->ref_u);
    free(ctx->ref_f);
    free(ctx->sumabs);
    free(ctx->failed);
}

/* The API's own dtype table must agree with the sizes this checker assumes. */
static int cc_check_dtype_sizes(const cc_ctx_t *ctx)
{
    int ok = 1;
    for (int d = 0; d < RDX_DTYPE_COUNT; d++) {
        if (rdx_dtype_size((rdx_dtype_t)d) != cc_dtype_size((rdx_dtype_t)d)) {
            fprintf(stderr, "coll_check: rank %d: rdx_dtype_size(%s) = %zu, expected %zu\n",
                    ctx->rank, cc_dtype_name((rdx_dtype_t)d), rdx_dtype_size((rdx_dtype_t)d),
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
