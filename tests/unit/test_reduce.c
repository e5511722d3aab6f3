/*
 * Reduction kernels against a scalar reference computed here, on every instruction set the
 * CPU has. Integers: exact, wrapping modulo 2^bits, computed in 64-bit. Floats: one IEEE
 * op per element, so bit equality (a NaN only has to stay a NaN). Half types: "widen, op in
 * fp32, round once", with the scalar conversions, which are themselves checked against a
 * nearest-value search done in double.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/reduce.h"
#include "src/reduce_isa.h"

static const size_t k_sizes[] = {0, 1, 3, 7, 15, 16, 17, 31, 33, 1023, 4099};
#define NSIZES (sizeof(k_sizes) / sizeof(k_sizes[0]))

/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float f32_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Uses ISA `isa` for the following calls; 0 if this CPU does not have it. */
static int isa_use(int isa)
{
    if (!rdx_reduce_isa_supported((rdx_isa_t)isa)) return 0;
    cr_assert_eq(rdx_reduce_isa_force((rdx_isa_t)isa), RDX_SUCCESS);
    return 1;
}

static const char *const k_isa_names[RDX_ISA_COUNT] = {"sse2", "avx2", "avx512"};

/* A random value of type dt, with specials (NaN, inf, -0, subnormals, extremes) mixed in. */
static void gen_value(rdx_dtype_t dt, void *out)
{
    uint64_t r = rng_next();
    int kind = (int)(r & 7);
    double v = (double)((int64_t)(r >> 12) % 2000001 - 1000000) / 1024.0;
    switch (dt) {
    case RDX_FLOAT16: {
        static const uint16_t sp[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x0001,
                                      0x83ff, 0x0400, 0x7bff, 0xfbff, 0x3c00, 0x7d01};
        uint16_t h = kind == 0 ? sp[(r >> 8) % 13]
                     : kind == 1 ? (uint16_t)(r >> 20)
                                 : rdx_float_to_half((float)(v / 4096.0));
        memcpy(out, &h, 2);
        break;
    }
    case RDX_BFLOAT16: {
        static const uint16_t sp[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xff81, 0x0001,
                                      0x807f, 0x0080, 0x7f7f, 0xff7f, 0x3f80, 0x7f81};
        uint16_t h = kind == 0 ? sp[(r >> 8) % 13]
                     : kind == 1 ? (uint16_t)(r >> 20)
                                 : rdx_float_to_bf16((float)v);
        memcpy(out, &h, 2);
        break;
    }
    case RDX_FLOAT32: {
        static const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MIN,
                                   1e-40f, -1e-42f, FLT_MAX, -FLT_MAX, 1.0f, -1.0f};
        float f = kind == 0   ? sp[(r >> 8) % 13]
                  : kind == 1 ? f32_of((uint32_t)(r >> 20))
                              : (float)v;
        memcpy(out, &f, 4);
        break;
    }
    case RDX_FLOAT64: {
        static const double sp[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, -NAN, DBL_MIN,
                                    1e-310, -1e-320, DBL_MAX, -DBL_MAX, 1.0, -1.0};
        double d = kind == 0 ? sp[(r >> 8) % 13] : kind == 1 ? (double)(r >> 20) * 1e-3 : v;
        uint64_t bits = rng_next();
        if (kind == 2) memcpy(&d, &bits, 8); /* any pattern, NaN payloads included */
        memcpy(out, &d, 8);
        break;
    }
    default: /* integers: any bit pattern, so sums and products wrap */
        memcpy(out, &r, rdx_dtype_size(dt));
        break;
    }
}

static void fill_random(rdx_dtype_t dt, void *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) gen_value(dt, (char *)buf + i * rdx_dtype_size(dt));
}

/* ---- the reference ---------------------------------------------------------------------- */

static int int_signed(rdx_dtype_t dt)
{
    return dt == RDX_INT8 || dt == RDX_INT32 || dt == RDX_INT64;
}

/* Integer element i of dt as a 64-bit value: sign-extended for signed types. */
static uint64_t int_load(rdx_dtype_t dt, const void *p, size_t i)
{
    const char *e = (const char *)p + i * rdx_dtype_size(dt);
    switch (dt) {
    case RDX_INT8: { int8_t v; memcpy(&v, e, 1); return (uint64_t)(int64_t)v; }
    case RDX_UINT8: { uint8_t v; memcpy(&v, e, 1); return v; }
    case RDX_INT32: { int32_t v; memcpy(&v, e, 4); return (uint64_t)(int64_t)v; }
    case RDX_UINT32: { uint32_t v; memcpy(&v, e, 4); return v; }
    default: { uint64_t v; memcpy(&v, e, 8); return v; }
    }
}

/* Keeps the low bits of v, sign-extending for signed types (the wrapped value). */
static uint64_t int_wrap(rdx_dtype_t dt, uint64_t v)
{
    int bits = (int)rdx_dtype_size(dt) * 8;
    if (bits == 64) return v;
    uint64_t low = v & ((1ull << bits) - 1);
    if (int_signed(dt) && (low >> (bits - 1))) low |= ~((1ull << bits) - 1);
    return low;
}

static void ref_int(rdx_dtype_t dt, rdx_op_t op, int div, uint64_t x, uint64_t y, void *out)
{
    int sgn = int_signed(dt);
    int lt = sgn ? (int64_t)x < (int64_t)y : x < y;
    uint64_t r;
    switch (op) {
    case RDX_PROD: r = x * y; break;
    case RDX_MIN: r = lt ? x : y; break;
    case RDX_MAX: r = lt ? y : x; break;
    default: r = x + y; break;
    }
    r = int_wrap(dt, r);
    if (div > 1) r = sgn ? (uint64_t)((int64_t)r / div) : r / (uint64_t)div;
    memcpy(out, &r, rdx_dtype_size(dt)); /* little-endian: the low bytes */
}

#define REF_FLOAT(T, x, y, op, div, out)                                                 \
    do {                                                                                 \
        T r_;                                                                            \
        switch (op) {                                                                    \
        case RDX_PROD: r_ = (x) * (y); break;                                            \
        case RDX_MIN: r_ = isnan(x) || isnan(y) ? (T)NAN : (x) < (y) ? (x) : (y); break; \
        case RDX_MAX: r_ = isnan(x) || isnan(y) ? (T)NAN : (x) > (y) ? (x) : (y); break; \
        default: r_ = (x) + (y); break;                                                  \
        }                                                                                \
        if ((div) > 1) r_ = r_ * ((T)1 / (T)(div));                                      \
        (out) = r_;                                                                      \
    } while (0)

/* Expected dst[i]. Non-AVG ops with div > 1 are combined, stored, then scaled. */
static void ref_elem(rdx_dtype_t dt, rdx_op_t op, int div, const void *a, const void *b,
                     size_t i, void *out)
{
    int fused = op == RDX_AVG;
    switch (dt) {
    case RDX_FLOAT32: {
        float x, y, r;
        memcpy(&x, (const char *)a + 4 * i, 4);
        memcpy(&y, (const char *)b + 4 * i, 4);
        REF_FLOAT(float, x, y, op, div, r);
        memcpy(out, &r, 4);
        return;
    }
    case RDX_FLOAT64: {
        double x, y, r;
        memcpy(&x, (const char *)a + 8 * i, 8);
        memcpy(&y, (const char *)b + 8 * i, 8);
        REF_FLOAT(double, x, y, op, div, r);
        memcpy(out, &r, 8);
        return;
    }
    case RDX_FLOAT16:
    case RDX_BFLOAT16: {
        float (*widen)(uint16_t) = dt == RDX_FLOAT16 ? rdx_half_to_float : rdx_bf16_to_float;
        uint16_t (*narrow)(float) = dt == RDX_FLOAT16 ? rdx_float_to_half : rdx_float_to_bf16;
        uint16_t ha, hb, h;
        memcpy(&ha, (const char *)a + 2 * i, 2);
        memcpy(&hb, (const char *)b + 2 * i, 2);
        float x = widen(ha), y = widen(hb), r;
        REF_FLOAT(float, x, y, op, fused ? div : 1, r); /* AVG: scaled before rounding */
        h = narrow(r);
        if (!fused && div > 1) h = narrow(widen(h) * (1.0f / (float)div));
        memcpy(out, &h, 2);
        return;
    }
    default:
        ref_int(dt, op, div, int_load(dt, a, i), int_load(dt, b, i), out);
        return;
    }
}

static int is_nan(rdx_dtype_t dt, const void *p)
{
    uint16_t h;
    switch (dt) {
    case RDX_FLOAT16: memcpy(&h, p, 2); return (h & 0x7fff) > 0x7c00;
    case RDX_BFLOAT16: memcpy(&h, p, 2); return (h & 0x7fff) > 0x7f80;
    case RDX_FLOAT32: { float f; memcpy(&f, p, 4); return isnan(f); }
    case RDX_FLOAT64: { double d; memcpy(&d, p, 8); return isnan(d); }
    default: return 0;
    }
}

/* Bit equality, except that any NaN matches any NaN. */
static int elem_equal(rdx_dtype_t dt, const void *got, const void *want)
{
    if (is_nan(dt, want)) return is_nan(dt, got);
    return memcmp(got, want, rdx_dtype_size(dt)) == 0;
}

static void hex_of(const void *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", ((const uint8_t *)p)[n - 1 - i]);
}

/* Asserts got[i] == reference(a[i], b[i]) for all i < n. */
static void check_result(const char *what, rdx_dtype_t dt, rdx_op_t op, int div, const void *got,
                         const void *a, const void *b, size_t n)
{
    size_t es = rdx_dtype_size(dt);
    for (size_t i = 0; i < n; i++) {
        uint8_t want[8];
        ref_elem(dt, op, div, a, b, i, want);
        const char *g = (const char *)got + i * es;
        if (elem_equal(dt, g, want)) continue;
        char hg[17], hw[17], ha[17], hb[17];
        hex_of(g, es, hg);
        hex_of(want, es, hw);
        hex_of((const char *)a + i * es, es, ha);
        hex_of((const char *)b + i * es, es, hb);
        cr_assert_fail("%s: isa %s dtype %d op %d div %d n %zu: [%zu] = %s op %s: got 0x%s, "
                       "want 0x%s", what, rdx_reduce_isa(), (int)dt, (int)op, div, n, i, ha, hb,
                       hg, hw);
    }
}

/*
 * A buffer of n elements with guard bytes around it, the data starting `skew` elements
 * past a 64-byte boundary; the guards catch a tail that writes past n.
 */
#define GUARD 64
typedef struct { uint8_t *raw; uint8_t *p; size_t bytes; } gbuf_t;

static gbuf_t gbuf_make(rdx_dtype_t dt, size_t n, int skew)
{
    gbuf_t g;
    g.bytes = n * rdx_dtype_size(dt);
    size_t total = (2 * GUARD + 64 + g.bytes + 63) / 64 * 64;
    g.raw = aligned_alloc(64, total);
    cr_assert_not_null(g.raw);
    memset(g.raw, 0xa5, total);
    g.p = g.raw + GUARD + (size_t)skew * rdx_dtype_size(dt);
    return g;
}

static void gbuf_check_guards(const gbuf_t *g, const char *what)
{
    for (uint8_t *q = g->raw; q < g->p; q++)
        cr_assert_eq(*q, 0xa5, "%s: isa %s wrote before the buffer", what, rdx_reduce_isa());
    for (uint8_t *q = g->p + g->bytes; q < g->p + g->bytes + GUARD; q++)
        cr_assert_eq(*q, 0xa5, "%s: isa %s wrote past the end (%zu bytes)", what,
                     rdx_reduce_isa(), g->bytes);
}

static void gbuf_free(gbuf_t *g) { free(g->raw); }

/* ---- dtype x op x size x alignment, out of place, in place, with dst2 ------------------ */

static void run_case(int isa, rdx_dtype_t dt, rdx_op_t op, int div, size_t n, int skew)
{
    (void)isa;
    size_t bytes = n * rdx_dtype_size(dt);
    gbuf_t a = gbuf_make(dt, n, skew), b = gbuf_make(dt, n, skew);
    gbuf_t d = gbuf_make(dt, n, skew), d2 = gbuf_make(dt, n, skew);
    fill_random(dt, a.p, n);
    fill_random(dt, b.p, n);
    uint8_t *a0 = malloc(bytes + 1), *b0 = malloc(bytes + 1);
    cr_assert(a0 && b0);
    memcpy(a0, a.p, bytes);
    memcpy(b0, b.p, bytes);

    rdx_reduce_local(dt, op, d.p, NULL, a.p, b.p, n, div);
    check_result("dst = a op b", dt, op, div, d.p, a0, b0, n);
    cr_assert(memcmp(a.p, a0, bytes) == 0 && memcmp(b.p, b0, bytes) == 0, "inputs modified");
    gbuf_check_guards(&d, "dst");

    memset(d.p, 0, bytes);
    rdx_reduce_local(dt, op, d.p, d2.p, a.p, b.p, n, div);
    check_result("dst with dst2", dt, op, div, d.p, a0, b0, n);
    cr_assert(memcmp(d.p, d2.p, bytes) == 0, "dst2 differs from dst (isa %s dtype %d op %d n %zu)",
              rdx_reduce_isa(), (int)dt, (int)op, n);
    gbuf_check_guards(&d, "dst with dst2");
    gbuf_check_guards(&d2, "dst2");

    rdx_reduce_local(dt, op, a.p, NULL, a.p, b.p, n, div); /* dst == a */
    check_result("dst == a", dt, op, div, a.p, a0, b0, n);
    gbuf_check_guards(&a, "dst == a");

    memcpy(a.p, a0, bytes);
    rdx_reduce_local(dt, op, b.p, d2.p, a.p, b.p, n, div); /* dst == b, and dst2 */
    check_result("dst == b", dt, op, div, b.p, a0, b0, n);
    cr_assert(memcmp(b.p, d2.p, bytes) == 0, "dst2 differs from dst == b");
    gbuf_check_guards(&b, "dst == b");

    free(a0), free(b0);
    gbuf_free(&a), gbuf_free(&b), gbuf_free(&d), gbuf_free(&d2);
}

static void run_matrix(rdx_dtype_t dt)
{
    int ran = 0;
    for (int isa = 0; isa < RDX_ISA_COUNT; isa++) {
        if (!isa_use(isa)) continue;
        cr_assert_str_eq(rdx_reduce_isa(), k_isa_names[isa]);
        ran++;
        for (int op = 0; op < RDX_OP_COUNT; op++)
            for (size_t s = 0; s < NSIZES; s++)
                for (int skew = 0; skew < 2; skew++) {
                    run_case(isa, dt, (rdx_op_t)op, 1, k_sizes[s], skew);
                    run_case(isa, dt, (rdx_op_t)op, 3, k_sizes[s], skew);
                }
        /* More than one block of the dst2/scale path (8 KiB), odd length. */
        run_case(isa, dt, RDX_AVG, 7, 20011, 1);
        run_case(isa, dt, RDX_MAX, 2, 20011, 0);
    }
    cr_assert_geq(ran, 1);
}

#define MATRIX_TEST(dt)                                                                  \
    Test(reduce_matrix, dt, .timeout = 60) { run_matrix(RDX_##dt); }
MATRIX_TEST(INT8)
MATRIX_TEST(UINT8)
MATRIX_TEST(INT32)
MATRIX_TEST(UINT32)
MATRIX_TEST(INT64)
MATRIX_TEST(UINT64)
MATRIX_TEST(FLOAT16)
MATRIX_TEST(BFLOAT16)
MATRIX_TEST(FLOAT32)
MATRIX_TEST(FLOAT64)

/* ---- hand-picked values ----------------------------------------------------------------- */

/* One element through every ISA: checks a kernel result against a literal expectation. */
#define EXPECT1(T, dt, op, div, x, y, want)                                              \
    do {                                                                                 \
        for (int isa_ = 0; isa_ < RDX_ISA_COUNT; isa_++) {                               \
            if (!isa_use(isa_)) continue;                                                \
            T xs_[19], ys_[19], ds_[19], w_ = (want);                                    \
            for (int k_ = 0; k_ < 19; k_++) xs_[k_] = (x), ys_[k_] = (y);                \
            rdx_reduce_local(dt, op, ds_, NULL, xs_, ys_, 19, div);                            \
            for (int k_ = 0; k_ < 19; k_++)                                              \
                cr_assert(elem_equal(dt, &ds_[k_], &w_), "%s: %s [%d] %s", #x " op " #y, \
                          k_isa_names[isa_], k_, #want);                                 \
        }                                                                                \
    } while (0)

Test(reduce_values, integer_wraparound, .timeout = 30)
{
    EXPECT1(int32_t, RDX_INT32, RDX_SUM, 1, INT32_MAX, 1, INT32_MIN);
    EXPECT1(int32_t, RDX_INT32, RDX_PROD, 1, INT32_MIN, -1, INT32_MIN);
    EXPECT1(uint8_t, RDX_UINT8, RDX_SUM, 1, 200, 100, 44);
    EXPECT1(int8_t, RDX_INT8, RDX_SUM, 1, 127, 1, -128);
    EXPECT1(int8_t, RDX_INT8, RDX_PROD, 1, -128, -1, -128);
    EXPECT1(uint8_t, RDX_UINT8, RDX_PROD, 1, 16, 17, 16);
    EXPECT1(int64_t, RDX_INT64, RDX_SUM, 1, INT64_MAX, 1, INT64_MIN);
    EXPECT1(uint64_t, RDX_UINT64, RDX_PROD, 1, 1ull << 63, 2, 0);
    EXPECT1(uint32_t, RDX_UINT32, RDX_SUM, 1, UINT32_MAX, 2, 1);
    EXPECT1(int8_t, RDX_INT8, RDX_MIN, 1, -128, 127, -128);
    EXPECT1(uint8_t, RDX_UINT8, RDX_MAX, 1, 255, 0, 255);
    EXPECT1(int64_t, RDX_INT64, RDX_MIN, 1, INT64_MIN, 0, INT64_MIN);
    EXPECT1(uint64_t, RDX_UINT64, RDX_MAX, 1, UINT64_MAX, 1, UINT64_MAX);
}

Test(reduce_values, integer_average_truncates, .timeout = 30)
{
    EXPECT1(int32_t, RDX_INT32, RDX_AVG, 2, -7, 0, -3);
    EXPECT1(int32_t, RDX_INT32, RDX_AVG, 4, 7, 2, 2);
    EXPECT1(int8_t, RDX_INT8, RDX_AVG, 3, -128, -1, 42); /* the sum wraps to 127 first */
    EXPECT1(int8_t, RDX_INT8, RDX_AVG, 200, -100, -27, 0);
    EXPECT1(uint8_t, RDX_UINT8, RDX_AVG, 300, 255, 0, 0); /* div larger than the type */
    EXPECT1(uint8_t, RDX_UINT8, RDX_AVG, 2, 255, 1, 0);
    EXPECT1(uint64_t, RDX_UINT64, RDX_AVG, 3, UINT64_MAX, 0, UINT64_MAX / 3);
    EXPECT1(int64_t, RDX_INT64, RDX_AVG, 5, -11, 0, -2);
    EXPECT1(int32_t, RDX_INT32, RDX_SUM, 1, 5, 6, 11); /* div 1: no scaling */
}

Test(reduce_values, float_specials, .timeout = 30)
{
    EXPECT1(float, RDX_FLOAT32, RDX_MIN, 1, NAN, 1.0f, NAN);
    EXPECT1(float, RDX_FLOAT32, RDX_MIN, 1, 1.0f, NAN, NAN);
    EXPECT1(float, RDX_FLOAT32, RDX_MAX, 1, NAN, -INFINITY, NAN);
    EXPECT1(float, RDX_FLOAT32, RDX_MAX, 1, INFINITY, NAN, NAN);
    EXPECT1(float, RDX_FLOAT32, RDX_SUM, 1, INFINITY, -INFINITY, NAN);
    EXPECT1(float, RDX_FLOAT32, RDX_PROD, 1, 0.0f, INFINITY, NAN);
    EXPECT1(float, RDX_FLOAT32, RDX_SUM, 1, INFINITY, 1.0f, INFINITY);
    EXPECT1(float, RDX_FLOAT32, RDX_MAX, 1, -INFINITY, -FLT_MAX, -FLT_MAX);
    EXPECT1(float, RDX_FLOAT32, RDX_SUM, 1, -0.0f, -0.0f, -0.0f);
    EXPECT1(float, RDX_FLOAT32, RDX_SUM, 1, -0.0f, 0.0f, 0.0f);
    EXPECT1(float, RDX_FLOAT32, RDX_AVG, 2, -0.0f, -0.0f, -0.0f);
    EXPECT1(float, RDX_FLOAT32, RDX_MIN, 1, -0.0f, 0.0f, 0.0f); /* equal: y is returned */
    EXPECT1(float, RDX_FLOAT32, RDX_MIN, 1, 0.0f, -0.0f, -0.0f);
    EXPECT1(float, RDX_FLOAT32, RDX_SUM, 1, FLT_MAX, FLT_MAX, INFINITY);
    EXPECT1(float, RDX_FLOAT32, RDX_SUM, 1, 0x1p-149f, 0x1p-149f, 0x1p-148f); /* subnormals kept */
    EXPECT1(float, RDX_FLOAT32, RDX_AVG, 3, 1.0f, 2.0f, 3.0f * (1.0f / 3.0f));
    EXPECT1(double, RDX_FLOAT64, RDX_MIN, 1, 2.0, NAN, NAN);
    EXPECT1(double, RDX_FLOAT64, RDX_MAX, 1, NAN, 2.0, NAN);
    EXPECT1(double, RDX_FLOAT64, RDX_SUM, 1, -0.0, -0.0, -0.0);
    EXPECT1(double, RDX_FLOAT64, RDX_SUM, 1, 0x1p-1074, 0x1p-1074, 0x1p-1073);
    EXPECT1(double, RDX_FLOAT64, RDX_AVG, 3, 1.0, 2.0, 3.0 * (1.0 / 3.0));
}

Test(reduce_values, half_specials_and_ties, .timeout = 30)
{
    /* fp16: NaN propagates through MIN/MAX, inf and -0 survive, ties round to even. */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_MIN, 1, 0x7e00, 0x3c00, 0x7e00);
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_MAX, 1, 0x3c00, 0xfe00, 0x7e00);
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x7c00, 0x3c00, 0x7c00);
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x7c00, 0xfc00, 0x7e00);
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x8000, 0x8000, 0x8000);
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x3c00, 0x1000, 0x3c00); /* 1 + 2^-11: tie, even */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x3c01, 0x1000, 0x3c02); /* odd: rounds up */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x7bff, 0x4c00, 0x7c00); /* 65504+16: inf */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x7bff, 0x4800, 0x7bff); /* 65504+8 */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_PROD, 1, 0x0001, 0x3800, 0x0000); /* 2^-25: tie to 0 */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_PROD, 1, 0x0003, 0x3800, 0x0002); /* 1.5 units: 2 */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x0001, 0x0001, 0x0002); /* subnormal sum */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_SUM, 1, 0x03ff, 0x0001, 0x0400); /* into normals */
    /* AVG rounds once: (1 + (1 + 2^-10)) / 3 = 0x3956 exactly; rounding the sum first
     * (a tie, to 2.0) would give 2/3 = 0x3955. */
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_AVG, 3, 0x3c00, 0x3c01, 0x3956);
    EXPECT1(uint16_t, RDX_FLOAT16, RDX_AVG, 2, 0x3c01, 0x3c00, 0x3c00); /* 1 + 2^-11: even */
    /* bf16 */
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_MIN, 1, 0x7fc0, 0x3f80, 0x7fc0);
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_MAX, 1, 0x3f80, 0xffc0, 0x7fc0);
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_SUM, 1, 0x7f80, 0xff80, 0x7fc0);
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_SUM, 1, 0x8000, 0x8000, 0x8000);
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_SUM, 1, 0x3f80, 0x3b80, 0x3f80); /* 1 + 2^-8: even */
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_SUM, 1, 0x3f81, 0x3b80, 0x3f82); /* odd: up */
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_SUM, 1, 0x7f7f, 0x7f7f, 0x7f80); /* overflow: inf */
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_SUM, 1, 0x0001, 0x0001, 0x0002); /* subnormals */
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_AVG, 2, 0x3f81, 0x3f80, 0x3f80);
    EXPECT1(uint16_t, RDX_BFLOAT16, RDX_AVG, 3, 0x3f80, 0x3f85, 0x3f2e); /* rounded once */
}

/* ---- scale and copy2 -------------------------------------------------------------------- */

Test(reduce_scale, all_dtypes, .timeout = 60)
{
    for (int isa = 0; isa < RDX_ISA_COUNT; isa++) {
        if (!isa_use(isa)) continue;
        for (int dt = 0; dt < RDX_DTYPE_COUNT; dt++)
            for (size_t s = 0; s < NSIZES; s++)
                for (int div = 1; div <= 7; div += 2) {
                    size_t n = k_sizes[s], bytes = n * rdx_dtype_size(dt);
                    gbuf_t src = gbuf_make(dt, n, 1), d = gbuf_make(dt, n, 1);
                    fill_random(dt, src.p, n);
                    uint8_t *zero = calloc(n + 1, rdx_dtype_size(dt));
                    cr_assert_not_null(zero);
                    /* scale(x) == AVG(x, z) with z = 0 for integers and -0 for floats
                     * (x + -0 == x exactly, -0 included; x + +0 would turn -0 into +0). */
                    if (dt >= RDX_FLOAT16) {
                        uint8_t nz[8] = {0};
                        nz[rdx_dtype_size(dt) - 1] = 0x80; /* -0 in every float format */
                        for (size_t i = 0; i < n; i++)
                            memcpy(zero + i * rdx_dtype_size(dt), nz, rdx_dtype_size(dt));
                    }
                    rdx_reduce_scale((rdx_dtype_t)dt, d.p, src.p, n, div);
                    check_result("scale", (rdx_dtype_t)dt, RDX_AVG, div, d.p, src.p, zero, n);
                    gbuf_check_guards(&d, "scale");
                    rdx_reduce_scale((rdx_dtype_t)dt, src.p, src.p, n, div); /* in place */
                    cr_assert(memcmp(src.p, d.p, bytes) == 0, "scale in place differs");
                    free(zero);
                    gbuf_free(&src), gbuf_free(&d);
                }
    }
}

Test(reduce_copy2, sizes_and_offsets, .timeout = 30)
{
    static const size_t sizes[] = {0, 1, 15, 16, 17, 63, 64, 65, 255, 4097, 100003};
    for (int isa = 0; isa < RDX_ISA_COUNT; isa++) {
        if (!isa_use(isa)) continue;
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
            for (int skew = 0; skew < 4; skew++) {
                size_t n = sizes[s];
                gbuf_t src = gbuf_make(RDX_UINT8, n, skew), d = gbuf_make(RDX_UINT8, n, 3 - skew);
                gbuf_t d2 = gbuf_make(RDX_UINT8, n, skew);
                fill_random(RDX_UINT8, src.p, n);
                rdx_copy2(d.p, d2.p, src.p, n);
                cr_assert(memcmp(d.p, src.p, n) == 0 && memcmp(d2.p, src.p, n) == 0,
                          "copy2 %zu bytes, isa %s", n, rdx_reduce_isa());
                gbuf_check_guards(&d, "copy2 dst");
                gbuf_check_guards(&d2, "copy2 dst2");
                memset(d.p, 0, n);
                rdx_copy2(d.p, NULL, src.p, n);
                cr_assert(memcmp(d.p, src.p, n) == 0, "copy2 without dst2, %zu bytes", n);
                gbuf_check_guards(&d, "copy2 single");
                gbuf_free(&src), gbuf_free(&d), gbuf_free(&d2);
            }
    }
}

/* ---- conversions ------------------------------------------------------------------------ */

/* Value of a half/bf16 pattern with the all-ones exponent read as one more finite binade
 * (65536 for fp16, 2^128 for bf16): the value a rounding has to exceed to give infinity. */
static double fmt_value(int bf16, uint16_t h)
{
    int mbits = bf16 ? 7 : 10, ebits = bf16 ? 8 : 5, bias = bf16 ? 127 : 15;
    int e = (h >> mbits) & ((1 << ebits) - 1), m = h & ((1 << mbits) - 1);
    double v = e == 0 ? ldexp(m, 1 - bias - mbits) : ldexp(m + (1 << mbits), e - bias - mbits);
    return (h & 0x8000) ? -v : v;
}

/* Nearest pattern to finite f by search over the ordered positive patterns; ties to even. */
static uint16_t ref_round(int bf16, float f)
{
    uint16_t inf = bf16 ? 0x7f80 : 0x7c00;
    double v = fabs((double)f);
    uint16_t lo = 0, hi = inf; /* invariant: value(lo) <= v, and v < value(hi) or hi = inf */
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (fmt_value(bf16, mid) <= v) lo = mid; else hi = mid;
    }
    if (fmt_value(bf16, hi) <= v) lo = hi; /* v at or past the infinity point */
    uint16_t r = lo;
    if (lo < inf) {
        double dl = v - fmt_value(bf16, lo), dh = fmt_value(bf16, (uint16_t)(lo + 1)) - v;
        if (dh < dl || (dh == dl && (lo & 1))) r = (uint16_t)(lo + 1);
    }
    return (uint16_t)(r | (signbit(f) ? 0x8000 : 0));
}

Test(reduce_convert, fp16_exhaustive, .timeout = 60)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = rdx_half_to_float((uint16_t)h);
        int nan = (h & 0x7fff) > 0x7c00;
        if (nan) {
            cr_assert(isnan(f), "half 0x%04x must widen to NaN", h);
            uint16_t back = rdx_float_to_half(f);
            cr_assert((back & 0x7fff) > 0x7c00 && (back & 0x8000) == (h & 0x8000),
                      "NaN 0x%04x narrowed to 0x%04x", h, back);
            continue;
        }
        double want = (h & 0x7fff) == 0x7c00 ? ((h & 0x8000) ? -INFINITY : INFINITY)
                                             : fmt_value(0, (uint16_t)h);
        cr_assert((double)f == want && !!signbit(f) == !!(h & 0x8000),
                  "half 0x%04x widened to %a, want %a", h, f, want);
        cr_assert_eq(rdx_float_to_half(f), h, "round trip of 0x%04x", h);
        /* Midpoint to the next pattern, and one fp32 ulp either side of it. */
        if ((h & 0x7fff) < 0x7c00) {
            double mid = (fmt_value(0, (uint16_t)h) + fmt_value(0, (uint16_t)(h + 1))) / 2;
            float fm = (float)mid; /* exact: halves have 11 bits */
            float probes[3] = {fm, nextafterf(fm, 0.0f), nextafterf(fm, fm * 2)};
            for (int k = 0; k < 3; k++) {
                uint16_t got = rdx_float_to_half(probes[k]), want_h = ref_round(0, probes[k]);
                cr_assert_eq(got, want_h, "fp16 of %a (near 0x%04x): got 0x%04x want 0x%04x",
                             probes[k], h, got, want_h);
            }
        }
    }
}

Test(reduce_convert, bf16_exhaustive, .timeout = 60)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = rdx_bf16_to_float((uint16_t)h);
        cr_assert_eq(f32_bits(f), h << 16);
        uint16_t back = rdx_float_to_bf16(f);
        if ((h & 0x7fff) > 0x7f80) {
            cr_assert((back & 0x7fff) > 0x7f80, "bf16 NaN 0x%04x became 0x%04x", h, back);
            continue;
        }
        cr_assert_eq(back, h, "round trip of 0x%04x", h);
        if ((h & 0x7fff) < 0x7f80) {
            uint32_t mid = (h << 16) | 0x8000;
            uint32_t probes[3] = {mid, mid - 1, mid + 1};
            for (int k = 0; k < 3; k++) {
                float p = f32_of(probes[k]);
                uint16_t got = rdx_float_to_bf16(p), want_h = ref_round(1, p);
                cr_assert_eq(got, want_h, "bf16 of 0x%08x: got 0x%04x want 0x%04x", probes[k],
                             got, want_h);
            }
        }
    }
    /* NaNs whose payload is only in the dropped bits must not become infinity. */
    cr_assert_eq(rdx_float_to_bf16(f32_of(0x7f800001u)) & 0x7fc0, 0x7fc0);
    cr_assert_eq(rdx_float_to_bf16(f32_of(0xff80ffffu)) & 0xffc0, 0xffc0);
    cr_assert_eq(rdx_float_to_bf16(FLT_MAX), 0x7f80);
    cr_assert_eq(rdx_float_to_bf16(-FLT_MAX), 0xff80);
}

Test(reduce_convert, random_floats, .timeout = 60)
{
    for (int i = 0; i < (1 << 18); i++) {
        float f = f32_of((uint32_t)rng_next());
        if (isnan(f)) {
            cr_assert((rdx_float_to_half(f) & 0x7fff) > 0x7c00);
            cr_assert((rdx_float_to_bf16(f) & 0x7fff) > 0x7f80);
            continue;
        }
        cr_assert_eq(rdx_float_to_half(f), ref_round(0, f), "fp16 of %a", f);
        cr_assert_eq(rdx_float_to_bf16(f), ref_round(1, f), "bf16 of %a", f);
        /* The same in the fp16 range, where random bit patterns rarely land. */
        float g = ldexpf((float)(rng_next() >> 40) / (float)(1 << 24), (int)(rng_next() % 44) - 28);
        cr_assert_eq(rdx_float_to_half(g), ref_round(0, g), "fp16 of %a", g);
    }
}

/*
 * Every fp16/bf16 pattern through the vector kernels: x + (-0) == x exactly (including
 * -0 + -0 = -0), so SUM with -0 is a widen/narrow round trip on each ISA.
 */
Test(reduce_convert, kernels_round_trip_every_pattern, .timeout = 60)
{
    uint16_t *x = malloc(65536 * 2), *z = malloc(65536 * 2), *d = malloc(65536 * 2);
    cr_assert(x && z && d);
    for (uint32_t h = 0; h < 65536; h++) x[h] = (uint16_t)h, z[h] = 0x8000;
    for (int isa = 0; isa < RDX_ISA_COUNT; isa++) {
        if (!isa_use(isa)) continue;
        for (int bf = 0; bf < 2; bf++) {
            rdx_dtype_t dt = bf ? RDX_BFLOAT16 : RDX_FLOAT16;
            uint16_t inf = bf ? 0x7f80 : 0x7c00;
            rdx_reduce_local(dt, RDX_SUM, d, NULL, x, z, 65536, 1);
            for (uint32_t h = 0; h < 65536; h++) {
                if ((h & 0x7fff) > inf)
                    cr_assert((d[h] & 0x7fff) > inf, "%s dtype %d: NaN 0x%04x -> 0x%04x",
                              rdx_reduce_isa(), (int)dt, h, d[h]);
                else
                    cr_assert_eq(d[h], h, "%s dtype %d: 0x%04x -> 0x%04x", rdx_reduce_isa(),
                                 (int)dt, h, d[h]);
            }
        }
    }
    free(x), free(z), free(d);
}

/*
 * Rounding inside the kernels for every fp16/bf16 pattern: x * 0.5 (subnormal ties), x * 1/3
 * (inexact everywhere), x + the smallest subnormal, each against the scalar reference.
 */
Test(reduce_convert, kernels_round_every_pattern, .timeout = 60)
{
    static const uint16_t k_other[2][3] = {{0x3800, 0x3555, 0x0001}, {0x3f00, 0x3eab, 0x0001}};
    static const rdx_op_t k_ops[3] = {RDX_PROD, RDX_PROD, RDX_SUM};
    uint16_t *x = malloc(65536 * 2), *y = malloc(65536 * 2), *d = malloc(65536 * 2);
    cr_assert(x && y && d);
    for (uint32_t h = 0; h < 65536; h++) x[h] = (uint16_t)h;
    for (int isa = 0; isa < RDX_ISA_COUNT; isa++) {
        if (!isa_use(isa)) continue;
        for (int bf = 0; bf < 2; bf++)
            for (int k = 0; k < 3; k++) {
                rdx_dtype_t dt = bf ? RDX_BFLOAT16 : RDX_FLOAT16;
                for (uint32_t h = 0; h < 65536; h++) y[h] = k_other[bf][k];
                rdx_reduce_local(dt, k_ops[k], d, NULL, x, y, 65536, 1);
                check_result("every pattern", dt, k_ops[k], 1, d, x, y, 65536);
                rdx_reduce_local(dt, RDX_AVG, d, NULL, x, y, 65536, 3);
                check_result("every pattern, AVG", dt, RDX_AVG, 3, d, x, y, 65536);
            }
    }
    free(x), free(y), free(d);
}

/* ---- ISA selection ---------------------------------------------------------------------- */

Test(reduce_isa, force_and_names, .timeout = 10)
{
    cr_assert_str_eq(rdx_reduce_isa(), k_isa_names[rdx_reduce_isa_best()]);
    cr_assert(rdx_reduce_isa_supported(RDX_ISA_SSE2));
    for (int isa = 0; isa < RDX_ISA_COUNT; isa++) {
        cr_assert_eq(rdx_reduce_isa_parse(k_isa_names[isa]), isa);
        if (rdx_reduce_isa_supported((rdx_isa_t)isa)) {
            cr_assert_eq(rdx_reduce_isa_force((rdx_isa_t)isa), RDX_SUCCESS);
            cr_assert_str_eq(rdx_reduce_isa(), k_isa_names[isa]);
        } else {
            cr_assert_eq(rdx_reduce_isa_force((rdx_isa_t)isa), RDX_ERR_UNSUPPORTED);
        }
    }
    cr_assert_eq(rdx_reduce_isa_parse("avx3"), -1);
    cr_assert_eq(rdx_reduce_isa_force(RDX_ISA_COUNT), RDX_ERR_UNSUPPORTED);
}

/* Each Criterion test is its own process, so the variable is read afresh by each. */
Test(reduce_isa, env_selects_sse2, .timeout = 10)
{
    setenv("RDX_REDUCE_ISA", "sse2", 1);
    cr_assert_str_eq(rdx_reduce_isa(), "sse2");
}

Test(reduce_isa, env_invalid_falls_back_to_best, .timeout = 10)
{
    setenv("RDX_REDUCE_ISA", "neon", 1);
    cr_assert_str_eq(rdx_reduce_isa(), k_isa_names[rdx_reduce_isa_best()]);
}

Test(reduce_isa, env_best_or_unsupported, .timeout = 10)
{
    /* avx512 where the CPU has it, otherwise the fallback to the best with a warning. */
    setenv("RDX_REDUCE_ISA", "avx512", 1);
    cr_assert_str_eq(rdx_reduce_isa(), k_isa_names[rdx_reduce_isa_best()]);
}
