/*
 * Inputs and serial references for the multi-process collective checks (coll_check.c's
 * scheme, factored so that every collective can use it; see coll_check.c's top comment for
 * why these bounds hold).
 *
 * Element i of rank r's input vector in case `seed` is a function of hash(seed, r, i), so
 * every rank regenerates every rank's input itself: no communication is trusted to build a
 * reference. "i" is an index into the rank's whole input (reduce_scatter: n x count; the
 * others: count), so references of any block come from the same generator.
 *
 *  exact pass, integers: full-range values; SUM/PROD wrap modulo 2^bits (PROD inputs mostly
 *    odd), MIN/MAX signed or unsigned; AVG inputs bounded by MAX/n, result = sum/n truncated.
 *  exact pass, floats: integers in [-M, M] with n M <= 2^(mantissa+1), PROD in {+-0.5, 1, 2}:
 *    exact in any order; AVG within 2 eps |S/n|.
 *  random pass, floats: uniform [-1, 1) (PROD: sign x [0.5, 2)); SUM within
 *    (n-1) eps sum|x|, AVG within ((n-1) eps sum|x| + 2 eps |S|)/n, PROD within (n-1) eps |P|.
 *  The float reference is exact for the exact pass and, for the random pass, computed in
 *  double (fp16/bf16/fp32) or long double (fp64): its own error is below 1/2048 of the bounds.
 */
#ifndef RDX_TESTS_CHECK_COMMON_H
#define RDX_TESTS_CHECK_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rdx/rdx.h"
#include "src/reduce.h"

enum { CHK_PASS_EXACT = 0, CHK_PASS_RANDOM = 1 };

/* splitmix64 finaliser */
static inline uint64_t chk_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t chk_rank_base(uint64_t seed, int r)
{
    return chk_mix(seed ^ chk_mix(0x51ed27a1ULL + (uint64_t)r));
}

/* Per element: a one-multiply mix of a Weyl sequence (cheap: a reference regenerates n
 * inputs per case; the per-rank base is fully mixed). */
static inline uint64_t chk_hash(uint64_t base, size_t i)
{
    uint64_t x = base + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ULL;
    return x ^ (x >> 32);
}

static inline int chk_is_float(rdx_dtype_t dt)
{
    return dt == RDX_FLOAT16 || dt == RDX_BFLOAT16 || dt == RDX_FLOAT32 || dt == RDX_FLOAT64;
}

static inline int chk_is_signed(rdx_dtype_t dt)
{
    return dt == RDX_INT8 || dt == RDX_INT32 || dt == RDX_INT64;
}

static inline double chk_eps(rdx_dtype_t dt)
{
    switch (dt) {
    case RDX_FLOAT16: return ldexp(1.0, -10);
    case RDX_BFLOAT16: return ldexp(1.0, -7);
    case RDX_FLOAT32: return ldexp(1.0, -23);
    default: return ldexp(1.0, -52);
    }
}

static inline int chk_exact_bits(rdx_dtype_t dt)
{
    switch (dt) {
    case RDX_FLOAT16: return 11;
    case RDX_BFLOAT16: return 8;
    case RDX_FLOAT32: return 24;
    default: return 53;
    }
}

__extension__ typedef unsigned __int128 chk_u128;

/* h scaled to [0, range); range 0 stands for 2^64. */
static inline uint64_t chk_below(uint64_t h, uint64_t range)
{
    return range ? (uint64_t)(((chk_u128)h * range) >> 64) : h;
}

static inline uint64_t chk_int_avg_bound(rdx_dtype_t dt, int n)
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

/* Generator parameters of one case. */
typedef struct chk_gen {
    rdx_dtype_t dtype;
    rdx_op_t op;
    int pass;
    int n;
    uint64_t seed;
    uint64_t range;        /* ints, AVG */
    int64_t offset;
    int64_t m;             /* floats, exact pass: integers in [-m, m] */
} chk_gen_t;

static inline chk_gen_t chk_gen_make(rdx_dtype_t dt, rdx_op_t op, int pass, int n, uint64_t seed)
{
    chk_gen_t g = {.dtype = dt, .op = op, .pass = pass, .n = n, .seed = seed};
    if (!chk_is_float(dt) && op == RDX_AVG) {
        uint64_t b = chk_int_avg_bound(dt, n);
        g.range = chk_is_signed(dt) ? 2 * b + 1 : b + 1;
        g.offset = chk_is_signed(dt) ? (int64_t)b : 0;
    }
    if (chk_is_float(dt)) {
        g.m = ((int64_t)1 << chk_exact_bits(dt)) / n;
        if (g.m > ((int64_t)1 << 20))
            g.m = (int64_t)1 << 20;
    }
    return g;
}

static inline uint64_t chk_gen_int(const chk_gen_t *g, uint64_t h)
{
    if (g->op == RDX_PROD)
        return ((h >> 60) & 3) ? (h | 1) : h;
    if (g->op != RDX_AVG)
        return h;
    return chk_below(h, g->range) - (uint64_t)g->offset;
}

static inline double chk_gen_float(const chk_gen_t *g, uint64_t h)
{
    double unit = (double)(h >> 11) * 0x1p-53;
    double sign = (h & 1) ? -1.0 : 1.0;
    if (g->pass == CHK_PASS_RANDOM) {
        if (g->op == RDX_PROD)
            return sign * (0.5 + 1.5 * unit);
        return 2.0 * unit - 1.0;
    }
    if (g->op == RDX_PROD) {
        static const double pow2[3] = {0.5, 1.0, 2.0};
        return g->n <= 14 ? sign * pow2[chk_below(h, 3)] : sign;
    }
    return (double)((int64_t)chk_below(h, (uint64_t)(2 * g->m + 1)) - g->m);
}

#define CHK_GEN_LOOP(T, EXPR)                                                  \
    do {                                                                       \
        T *p_ = (T *)(void *)buf;                                              \
        for (size_t k = 0; k < count; k++) {                                   \
            uint64_t h = chk_hash(base, first + k);                            \
            p_[k] = (EXPR);                                                    \
        }                                                                      \
    } while (0)

/* buf[0 .. count) = elements first .. first+count of rank r's input. */
static inline void chk_gen(const chk_gen_t *g, int r, size_t first, size_t count, void *buf)
{
    uint64_t base = chk_rank_base(g->seed, r);
    switch (g->dtype) {
    case RDX_INT8: case RDX_UINT8: CHK_GEN_LOOP(uint8_t, (uint8_t)chk_gen_int(g, h)); break;
    case RDX_INT32: case RDX_UINT32: CHK_GEN_LOOP(uint32_t, (uint32_t)chk_gen_int(g, h)); break;
    case RDX_INT64: case RDX_UINT64: CHK_GEN_LOOP(uint64_t, chk_gen_int(g, h)); break;
    case RDX_FLOAT16:
        CHK_GEN_LOOP(uint16_t, rdx_float_to_half((float)chk_gen_float(g, h)));
        break;
    case RDX_BFLOAT16:
        CHK_GEN_LOOP(uint16_t, rdx_float_to_bf16((float)chk_gen_float(g, h)));
        break;
    case RDX_FLOAT32: CHK_GEN_LOOP(float, (float)chk_gen_float(g, h)); break;
    case RDX_FLOAT64: CHK_GEN_LOOP(double, chk_gen_float(g, h)); break;
    }
}

/* ---- widening and the reference ----------------------------------------------------------- */

#define CHK_WIDEN_LOOP(T, EXPR)                                                \
    do {                                                                       \
        const T *p_ = (const T *)(const void *)in;                             \
        for (size_t i = 0; i < count; i++)                                     \
            out[i] = (EXPR);                                                   \
    } while (0)

static inline void chk_widen_int(rdx_dtype_t dt, const void *in, size_t count, uint64_t *out)
{
    switch (dt) {
    case RDX_INT8: CHK_WIDEN_LOOP(int8_t, (uint64_t)(int64_t)p_[i]); break;
    case RDX_UINT8: CHK_WIDEN_LOOP(uint8_t, p_[i]); break;
    case RDX_INT32: CHK_WIDEN_LOOP(int32_t, (uint64_t)(int64_t)p_[i]); break;
    case RDX_UINT32: CHK_WIDEN_LOOP(uint32_t, p_[i]); break;
    default: CHK_WIDEN_LOOP(uint64_t, p_[i]); break;
    }
}

/* Floats widen to a "real": double for fp16/bf16/fp32 (29 or more extra mantissa bits,
 * vectorisable), long double (64-bit mantissa, 11 extra bits) for fp64. */
static inline int chk_real_is_long(rdx_dtype_t dt) { return dt == RDX_FLOAT64; }

static inline void chk_widen_float(rdx_dtype_t dt, const void *in, size_t count, void *wide)
{
    if (chk_real_is_long(dt)) {
        long double *out = wide;
        CHK_WIDEN_LOOP(double, p_[i]);
        return;
    }
    double *out = wide;
    switch (dt) {
    case RDX_FLOAT16: CHK_WIDEN_LOOP(uint16_t, rdx_half_to_float(p_[i])); break;
    case RDX_BFLOAT16: CHK_WIDEN_LOOP(uint16_t, rdx_bf16_to_float(p_[i])); break;
    default: CHK_WIDEN_LOOP(float, p_[i]); break;
    }
}

/* Working memory of the reference for up to `cap` elements. */
typedef struct chk_ref {
    size_t cap;
    unsigned char *scratch;   /* one rank's regenerated input (cap x 8 bytes) */
    uint64_t *wide_u, *ref_u;
    void *wide_f, *ref_f;     /* double or long double: chk_real_is_long */
    double *sumabs;
} chk_ref_t;

static inline int chk_ref_init(chk_ref_t *R, size_t cap)
{
    size_t c = cap ? cap : 1;
    R->cap = cap;
    R->scratch = malloc(c * 8);
    R->wide_u = malloc(c * sizeof(uint64_t));
    R->ref_u = malloc(c * sizeof(uint64_t));
    R->wide_f = malloc(c * sizeof(long double));
    R->ref_f = malloc(c * sizeof(long double));
    R->sumabs = calloc(c, sizeof(double));
    return R->scratch && R->wide_u && R->ref_u && R->wide_f && R->ref_f && R->sumabs ? 0 : -1;
}

static inline void chk_ref_free(chk_ref_t *R)
{
    free(R->scratch);
    free(R->wide_u);
    free(R->ref_u);
    free(R->wide_f);
    free(R->ref_f);
    free(R->sumabs);
}

static inline void chk_acc_int(chk_ref_t *R, const chk_gen_t *g, size_t n, int first)
{
    const uint64_t *x = R->wide_u;
    uint64_t *acc = R->ref_u;
    int sgn = chk_is_signed(g->dtype);
    if (first) {
        memcpy(acc, x, n * sizeof(*acc));
        return;
    }
    switch (g->op) {  /* outside the loops: they vectorise */
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

/* acc (op)= x over n reals; sa += |x| (sum of magnitudes, for the random-pass bounds). One
 * definition for both real types; loops without branches inside, so they vectorise. */
#define CHK_DEFINE_ACC_FLOAT(SFX, REAL)                                        \
    static inline void chk_acc_float_##SFX(rdx_op_t op, size_t n, const REAL *x, REAL *acc, \
                                           double *sa, int first)          \
    {                                                                          \
        for (size_t i = 0; sa && i < n; i++)                                   \
            sa[i] = (first ? 0 : sa[i]) + fabs((double)x[i]);                  \
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

CHK_DEFINE_ACC_FLOAT(d, double)
CHK_DEFINE_ACC_FLOAT(ld, long double)

static inline void chk_acc_float(chk_ref_t *R, const chk_gen_t *g, size_t n, int first)
{
    /* sum of |x|: only the random pass's SUM/AVG bounds read it (else it stays 0) */
    double *sa = g->pass == CHK_PASS_RANDOM && (g->op == RDX_SUM || g->op == RDX_AVG)
                 ? R->sumabs : NULL;
    if (chk_real_is_long(g->dtype))
        chk_acc_float_ld(g->op, n, R->wide_f, R->ref_f, sa, first);
    else
        chk_acc_float_d(g->op, n, R->wide_f, R->ref_f, sa, first);
}

/* Reference of elements first .. first+count of the reduction over ranks 0..n-1. */
static inline void chk_ref_build(chk_ref_t *R, const chk_gen_t *g, size_t first, size_t count)
{
    for (int r = 0; r < g->n; r++) {
        chk_gen(g, r, first, count, R->scratch);
        if (chk_is_float(g->dtype)) {
            chk_widen_float(g->dtype, R->scratch, count, R->wide_f);
            chk_acc_float(R, g, count, r == 0);
        } else {
            chk_widen_int(g->dtype, R->scratch, count, R->wide_u);
            chk_acc_int(R, g, count, r == 0);
        }
    }
}

/* Called for the first few wrong elements: index, got, expected, allowed error. */
typedef void (*chk_report_fn)(void *arg, size_t index, const char *got, const char *want);

/* Allowed error of one element (see the top comment): s is the exact reduction (sum,
 * product, min or max), sa the sum over ranks of |x|. */
static inline double chk_float_bound(const chk_gen_t *g, double s, double sa)
{
    double eps = chk_eps(g->dtype), n = (double)g->n;
    if (g->op == RDX_AVG)
        return (2 * eps * fabs(s) + (g->pass == CHK_PASS_RANDOM ? (n - 1) * eps * sa : 0)) / n;
    if (g->pass != CHK_PASS_RANDOM)
        return 0;
    if (g->op == RDX_SUM)
        return (n - 1) * eps * sa;
    if (g->op == RDX_PROD)
        return (n - 1) * eps * fabs(s);
    return 0;
}

#define CHK_DEFINE_COMPARE_FLOAT(SFX, REAL, FABS, FMT)                         \
    static inline size_t chk_compare_##SFX(const chk_gen_t *g, const REAL *got,  \
                                           const REAL *acc, const double *sa, \
                                           size_t count, chk_report_fn report, void *arg) \
    {                                                                          \
        size_t wrong = 0;                                                      \
        char gs[64], ws[96];                                                   \
        for (size_t i = 0; i < count; i++) {                                   \
            REAL want = g->op == RDX_AVG ? acc[i] / (REAL)g->n : acc[i];        \
            double bound = chk_float_bound(g, (double)acc[i], sa[i]);           \
            if (FABS(got[i] - want) <= (REAL)bound || wrong++ >= 3) /* NaN: wrong */ \
                continue;                                                      \
            snprintf(gs, sizeof(gs), "%.10" FMT, got[i]);                      \
            snprintf(ws, sizeof(ws), "%.10" FMT " (allowed error %.3g)", want, bound); \
            report(arg, i, gs, ws);                                            \
        }                                                                      \
        return wrong;                                                          \
    }

CHK_DEFINE_COMPARE_FLOAT(d, double, fabs, "g")
CHK_DEFINE_COMPARE_FLOAT(ld, long double, fabsl, "Lg")

/* Compares got[0 .. count) with the reference built by chk_ref_build; returns wrong count. */
static inline size_t chk_compare(chk_ref_t *R, const chk_gen_t *g, const void *got, size_t count,
                                 chk_report_fn report, void *arg)
{
    size_t wrong = 0;
    char gs[64], ws[96];
    if (!chk_is_float(g->dtype)) {
        size_t bits = 8 * rdx_dtype_size(g->dtype);
        int sgn = chk_is_signed(g->dtype);
        uint64_t mask = bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << bits) - 1;
        uint64_t top = (uint64_t)1 << (bits - 1), n = (uint64_t)g->n;
        chk_widen_int(g->dtype, got, count, R->wide_u);
        for (size_t i = 0; i < count; i++) {
            uint64_t want = R->ref_u[i];
            if (g->op == RDX_AVG)
                want = sgn ? (uint64_t)((int64_t)want / (int64_t)n) : want / n;
            want &= mask;
            if (sgn && (want & top))
                want |= ~mask;
            if (want == R->wide_u[i] || wrong++ >= 3)
                continue;
            snprintf(gs, sizeof(gs), sgn ? "%lld" : "%llu", (long long)R->wide_u[i]);
            snprintf(ws, sizeof(ws), sgn ? "%lld" : "%llu", (long long)want);
            report(arg, i, gs, ws);
        }
        return wrong;
    }
    chk_widen_float(g->dtype, got, count, R->wide_f);
    if (chk_real_is_long(g->dtype))
        return chk_compare_ld(g, R->wide_f, R->ref_f, R->sumabs, count, report, arg);
    return chk_compare_d(g, R->wide_f, R->ref_f, R->sumabs, count, report, arg);
}

#endif
