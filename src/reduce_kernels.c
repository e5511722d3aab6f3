/*
 * The reduction kernels, written once for every instruction set.
 *
 * Compiled on its own this file is the baseline table (SSE2, part of every x86-64; plain
 * 16-byte GCC vectors elsewhere). reduce_avx2.c and reduce_avx512.c include it again after
 * a `#pragma GCC target` and a wider RDX_VEC_BYTES, so the same source yields 32- and
 * 64-byte code. GCC vector types are used instead of relying on the auto-vectoriser:
 * at -O2 (RelWithDebInfo) GCC 12 will not version a loop for possible aliasing, and
 * dst == a is a normal call here. Loading a whole vector of a and b before storing dst
 * makes dst == a and dst == b safe by construction.
 *
 * Every vector kernel runs its tail (n % lanes elements) through one more vector op on a
 * zero-padded stack copy, so the last elements see exactly the instructions the others
 * did: same rounding, same NaN handling. (Integer AVG and integer scale are scalar: there
 * is no SIMD integer divide.)
 *
 *      a: |v0|v1|v2| ... |vk|t..|        one vector op per |vi|, one on the padded tail
 *      b: |v0|v1|v2| ... |vk|t..|
 *    dst: |v0|v1|v2| ... |vk|t..|
 */
#ifndef RDX_KERNEL_ISA
#define RDX_KERNEL_ISA sse2
#define RDX_VEC_BYTES 16
#if defined(__x86_64__) || defined(__i386__)
#define RDX_KERNEL_NAME "sse2"
#else
#define RDX_KERNEL_NAME "generic"
#endif
#endif

#include <stdint.h>
#include <string.h>
#include "src/reduce.h"
#include "src/reduce_isa.h"
#if defined(__F16C__)
#include <immintrin.h>
#endif

#define RDX_KCAT_(a, b) a##_##b
#define RDX_KCAT(a, b) RDX_KCAT_(a, b)

#define VB RDX_VEC_BYTES
typedef int8_t v_i8 __attribute__((vector_size(VB)));
typedef uint8_t v_u8 __attribute__((vector_size(VB)));
typedef int32_t v_i32 __attribute__((vector_size(VB)));
typedef uint32_t v_u32 __attribute__((vector_size(VB)));
typedef int64_t v_i64 __attribute__((vector_size(VB)));
typedef uint64_t v_u64 __attribute__((vector_size(VB)));
typedef float v_f32 __attribute__((vector_size(VB)));
typedef double v_f64 __attribute__((vector_size(VB)));
/* fp16 without F16C: one v_half holds as many halves as a v_f32 has lanes. */
typedef uint16_t v_half __attribute__((vector_size(VB / 2)));

/* Lane-wise m ? x : y (C has no vector ?:); m is the all-ones/all-zeros result of a compare. */
#define RDX_SELECT(m, x, y)                                                              \
    ((__typeof__(x))(((m) & (__typeof__(m))(x)) | (~(m) & (__typeof__(m))(y))))

/*
 * Combining operators on whole vectors (arguments are plain variables: they are evaluated
 * more than once). Integer SUM/PROD run on unsigned lanes so that they wrap modulo 2^bits
 * without undefined behaviour; the bits are the same for signed types.
 *
 * Float MIN/MAX are `x < y ? x : y` (resp. >) except that a NaN in either operand gives a
 * NaN, as NCCL does: a NaN in x is kept by the `x != x` term, a NaN in y makes the compare
 * false and so y is taken. Unlike fminf, a NaN is never dropped; -0.0 and +0.0 compare
 * equal, so min(x, y) returns y for them.
 */
#define OP_SUM(x, y) ((x) + (y))
#define OP_PROD(x, y) ((x) * (y))
#define OP_MIN(x, y) RDX_SELECT((x) < (y), x, y)
#define OP_MAX(x, y) RDX_SELECT((x) > (y), x, y)
#define OP_FMIN(x, y) RDX_SELECT(((x) < (y)) | ((x) != (x)), x, y)
#define OP_FMAX(x, y) RDX_SELECT(((x) > (y)) | ((x) != (x)), x, y)

/* ---- loads and stores: memory element type -> compute vector --------------------------- */

#define RDX_DEF_PLAIN_IO(sfx, T, VT)                                                     \
    static inline VT load_##sfx(const T *p)                                              \
    {                                                                                    \
        VT v;                                                                            \
        memcpy(&v, p, sizeof(v));                                                        \
        return v;                                                                        \
    }                                                                                    \
    static inline void store_##sfx(T *p, VT v) { memcpy(p, &v, sizeof(v)); }

RDX_DEF_PLAIN_IO(u8, uint8_t, v_u8)
RDX_DEF_PLAIN_IO(i8, int8_t, v_i8)
RDX_DEF_PLAIN_IO(u32, uint32_t, v_u32)
RDX_DEF_PLAIN_IO(i32, int32_t, v_i32)
RDX_DEF_PLAIN_IO(u64, uint64_t, v_u64)
RDX_DEF_PLAIN_IO(i64, int64_t, v_i64)
RDX_DEF_PLAIN_IO(f32, float, v_f32)
RDX_DEF_PLAIN_IO(f64, double, v_f64)

/*
 * bf16 is the top half of an fp32. Two bf16 share each 32-bit lane; the low one is widened
 * by a shift, the high one by a mask, and narrowing puts them back the same way, so no
 * shuffle is needed in either direction (which half is "even" does not matter: both
 * halves get the same treatment). The bf16 kernels work on these packed lanes.
 */
RDX_DEF_PLAIN_IO(bf16, uint16_t, v_u32)

static inline v_f32 bf16_lo(v_u32 p) { return (v_f32)(p << 16); }
static inline v_f32 bf16_hi(v_u32 p) { return (v_f32)(p & 0xffff0000u); }

/*
 * Round to nearest even by adding 0x7fff plus the lowest kept bit; the bf16 is then the top
 * half of the lane. Unlike the scalar rdx_float_to_bf16 this needs no NaN case: a NaN here
 * is an input NaN (low 16 bits zero, so the addition cannot carry) or the default NaN.
 */
static inline v_u32 bf16_round(v_f32 f)
{
    v_u32 b = (v_u32)f;
    return b + 0x7fffu + ((b >> 16) & 1u);
}

static inline v_u32 bf16_join(v_f32 lo, v_f32 hi)
{
    return (bf16_round(lo) >> 16) | (bf16_round(hi) & 0xffff0000u);
}

#define RDX_DEF_BF16_OP(name, FOP)                                                       \
    static inline v_u32 name(v_u32 x, v_u32 y)                                           \
    {                                                                                    \
        v_f32 xl = bf16_lo(x), yl = bf16_lo(y), xh = bf16_hi(x), yh = bf16_hi(y);        \
        return bf16_join(FOP(xl, yl), FOP(xh, yh));                                      \
    }
RDX_DEF_BF16_OP(bf16_sum, OP_SUM)
RDX_DEF_BF16_OP(bf16_prod, OP_PROD)
RDX_DEF_BF16_OP(bf16_min, OP_FMIN)
RDX_DEF_BF16_OP(bf16_max, OP_FMAX)

static inline v_u32 bf16_avg(v_u32 x, v_u32 y, float inv)
{
    return bf16_join((bf16_lo(x) + bf16_lo(y)) * inv, (bf16_hi(x) + bf16_hi(y)) * inv);
}

static inline v_u32 bf16_scale(v_u32 x, float inv)
{
    return bf16_join(bf16_lo(x) * inv, bf16_hi(x) * inv);
}

/* fp16: loads widen one v_f32 worth of halves, stores round it back. */
#if defined(__F16C__) && VB == 64
static inline v_f32 load_f16(const uint16_t *p)
{
    return (v_f32)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline void store_f16(uint16_t *p, v_f32 f)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph((__m512)f, _MM_FROUND_TO_NEAREST_INT));
}
#elif defined(__F16C__) && VB == 32
static inline v_f32 load_f16(const uint16_t *p)
{
    return (v_f32)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline void store_f16(uint16_t *p, v_f32 f)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph((__m256)f, _MM_FROUND_TO_NEAREST_INT));
}
#else
/*
 * No F16C: the conversions of reduce.c (rdx_half_to_float, rdx_float_to_half) in lane-wise
 * integer form. One step uses the FPU: a half subnormal is rounded by adding 0.5f, whose
 * ulp (2^-24) is the half subnormal unit, so the add rounds to nearest even like every
 * float op of these kernels (default MXCSR rounding; the result is normal, FTZ is moot).
 */
static inline v_f32 load_f16(const uint16_t *p)
{
    v_half h;
    memcpy(&h, p, sizeof(h));
    v_u32 x = __builtin_convertvector(h, v_u32);
    v_u32 sign = (x & 0x8000u) << 16, em = x & 0x7fffu;
    v_u32 normal = (em << 13) + (112u << 23);
    v_u32 special = (em << 13) | 0x7f800000u; /* inf, NaN with its payload */
    v_u32 tiny = (v_u32)(__builtin_convertvector((v_i32)em, v_f32) * 0x1p-24f); /* exact */
    v_u32 out = RDX_SELECT(em >= 0x7c00u, special, RDX_SELECT(em < 0x400u, tiny, normal));
    return (v_f32)(out | sign);
}

static inline void store_f16(uint16_t *p, v_f32 f)
{
    v_u32 x = (v_u32)f;
    v_u32 sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    v_u32 nan = 0x7e00u | ((ax >> 13) & 0x3ffu);
    v_u32 normal = (ax + 0xfffu + ((ax >> 13) & 1u) - (112u << 23)) >> 13;
    v_u32 tiny = (v_u32)((v_f32)ax + 0.5f) - 0x3f000000u; /* ax < 2^-14: 0..0x400 */
    v_u32 out = RDX_SELECT(ax >= 0x38800000u, normal, tiny);
    out = RDX_SELECT(ax >= 0x477ff000u, (v_u32){0} + 0x7c00u, out); /* overflow and inf */
    out = RDX_SELECT(ax > 0x7f800000u, nan, out);
    v_half h = __builtin_convertvector(out | sign, v_half);
    memcpy(p, &h, sizeof(h));
}
#endif

/* ---- kernel templates ------------------------------------------------------------------- */

/*
 * dst = a OP b, L elements of T per step, VM the in-register form of one step and sfx its
 * load_/store_ pair. SETUP runs once per call and may define what OP uses (AVG's `inv`).
 * The tail goes through zero-padded copies: zero lanes are harmless for every operator.
 */
#define RDX_DEF_BINARY(name, T, L, VM, sfx, SETUP, OP)                                   \
    static void name(void *dst, const void *a, const void *b, size_t n, int div)         \
    {                                                                                    \
        SETUP;                                                                           \
        T *d = dst;                                                                      \
        const T *pa = a, *pb = b;                                                        \
        size_t i = 0;                                                                    \
        _Pragma("GCC unroll 4")                                                          \
        for (; i + (L) <= n; i += (L)) {                                                 \
            VM x = load_##sfx(pa + i), y = load_##sfx(pb + i);                           \
            store_##sfx(d + i, OP(x, y));                                                \
        }                                                                                \
        if (i < n) {                                                                     \
            T ta[L] = {0}, tb[L] = {0}, td[L];                                           \
            memcpy(ta, pa + i, (n - i) * sizeof(T));                                     \
            memcpy(tb, pb + i, (n - i) * sizeof(T));                                     \
            VM x = load_##sfx(ta), y = load_##sfx(tb);                                   \
            store_##sfx(td, OP(x, y));                                                   \
            memcpy(d + i, td, (n - i) * sizeof(T));                                      \
        }                                                                                \
    }

/* dst = SCALE(src): the same shape with one input. */
#define RDX_DEF_UNARY(name, T, L, VM, sfx, SETUP, SCALE)                                 \
    static void name(void *dst, const void *src, size_t n, int div)                      \
    {                                                                                    \
        SETUP;                                                                           \
        T *d = dst;                                                                      \
        const T *s = src;                                                                \
        size_t i = 0;                                                                    \
        _Pragma("GCC unroll 4")                                                          \
        for (; i + (L) <= n; i += (L))                                                   \
            store_##sfx(d + i, SCALE(load_##sfx(s + i)));                                \
        if (i < n) {                                                                     \
            T ts[L] = {0}, td[L];                                                        \
            memcpy(ts, s + i, (n - i) * sizeof(T));                                      \
            store_##sfx(td, SCALE(load_##sfx(ts)));                                      \
            memcpy(d + i, td, (n - i) * sizeof(T));                                      \
        }                                                                                \
    }

#define RDX_NO_SETUP (void)div
/* Float AVG and scale multiply by 1/div computed once in the compute type CT. */
#define RDX_INV_SETUP(CT) const CT inv = (CT)1 / (CT)div
#define OP_AVG(x, y) (((x) + (y)) * inv)
#define OP_SCALE(x) ((x) * inv)

/*
 * Integer AVG: the wrapped sum (computed in the unsigned type UT), then C division, which
 * truncates toward zero. No SIMD integer divide exists, so these are scalar; integer AVG
 * is rare next to float AVG. The divisor has the promoted type of T (int for 8-bit types):
 * div may not fit in T itself.
 */
#define RDX_DEF_IAVG(name, T, UT)                                                        \
    static void name(void *dst, const void *a, const void *b, size_t n, int div)         \
    {                                                                                    \
        T *d = dst;                                                                      \
        const T *pa = a, *pb = b;                                                        \
        const __typeof__((T)0 + 0) q = div;                                              \
        for (size_t i = 0; i < n; i++) d[i] = (T)((T)((UT)pa[i] + (UT)pb[i]) / q);       \
    }

#define RDX_DEF_ISCALE(name, T)                                                          \
    static void name(void *dst, const void *src, size_t n, int div)                      \
    {                                                                                    \
        T *d = dst;                                                                      \
        const T *s = src;                                                                \
        const __typeof__((T)0 + 0) q = div;                                              \
        for (size_t i = 0; i < n; i++) d[i] = (T)(s[i] / q);                             \
    }

/* ---- the kernels ------------------------------------------------------------------------ */

/* Signed and unsigned SUM/PROD share the unsigned kernels (same bits mod 2^bits). */
#define RDX_DEF_INT(bits)                                                                \
    RDX_DEF_INT_OP(sum_u##bits, uint##bits##_t, v_u##bits, u##bits, OP_SUM)              \
    RDX_DEF_INT_OP(prod_u##bits, uint##bits##_t, v_u##bits, u##bits, OP_PROD)            \
    RDX_DEF_INT_OP(min_u##bits, uint##bits##_t, v_u##bits, u##bits, OP_MIN)              \
    RDX_DEF_INT_OP(max_u##bits, uint##bits##_t, v_u##bits, u##bits, OP_MAX)              \
    RDX_DEF_INT_OP(min_i##bits, int##bits##_t, v_i##bits, i##bits, OP_MIN)               \
    RDX_DEF_INT_OP(max_i##bits, int##bits##_t, v_i##bits, i##bits, OP_MAX)               \
    RDX_DEF_IAVG(avg_u##bits, uint##bits##_t, uint##bits##_t)                            \
    RDX_DEF_IAVG(avg_i##bits, int##bits##_t, uint##bits##_t)                             \
    RDX_DEF_ISCALE(scale_u##bits, uint##bits##_t)                                        \
    RDX_DEF_ISCALE(scale_i##bits, int##bits##_t)
#define RDX_DEF_INT_OP(name, T, VM, sfx, OP)                                             \
    RDX_DEF_BINARY(name, T, VB / sizeof(T), VM, sfx, RDX_NO_SETUP, OP)

RDX_DEF_INT(8)
RDX_DEF_INT(32)
RDX_DEF_INT(64)

/*
 * sfx: format; T, L: memory element and elements per step; VM: register form; CT: compute
 * scalar (fp32 for half types); then the operators on VM (AVG and SCALE use `inv`).
 */
#define RDX_DEF_FLOAT(sfx, T, L, VM, CT, SUM, PROD, MIN, MAX, AVG, SCALE)                \
    RDX_DEF_BINARY(sum_##sfx, T, L, VM, sfx, RDX_NO_SETUP, SUM)                          \
    RDX_DEF_BINARY(prod_##sfx, T, L, VM, sfx, RDX_NO_SETUP, PROD)                        \
    RDX_DEF_BINARY(min_##sfx, T, L, VM, sfx, RDX_NO_SETUP, MIN)                          \
    RDX_DEF_BINARY(max_##sfx, T, L, VM, sfx, RDX_NO_SETUP, MAX)                          \
    RDX_DEF_BINARY(avg_##sfx, T, L, VM, sfx, RDX_INV_SETUP(CT), AVG)                     \
    RDX_DEF_UNARY(scale_##sfx, T, L, VM, sfx, RDX_INV_SETUP(CT), SCALE)

#define OP_BF16_AVG(x, y) bf16_avg(x, y, inv)
#define OP_BF16_SCALE(x) bf16_scale(x, inv)

RDX_DEF_FLOAT(f32, float, VB / 4, v_f32, float, OP_SUM, OP_PROD, OP_FMIN, OP_FMAX, OP_AVG,
              OP_SCALE)
RDX_DEF_FLOAT(f64, double, VB / 8, v_f64, double, OP_SUM, OP_PROD, OP_FMIN, OP_FMAX, OP_AVG,
              OP_SCALE)
RDX_DEF_FLOAT(f16, uint16_t, VB / 4, v_f32, float, OP_SUM, OP_PROD, OP_FMIN, OP_FMAX, OP_AVG,
              OP_SCALE)
RDX_DEF_FLOAT(bf16, uint16_t, VB / 2, v_u32, float, bf16_sum, bf16_prod, bf16_min, bf16_max,
              OP_BF16_AVG, OP_BF16_SCALE)

/* One pass over src, two stores per vector: the copy costs one read, not two. */
static void copy2(void *dst, void *dst2, const void *src, size_t bytes)
{
    enum { L = sizeof(v_u8) };
    uint8_t *d = dst, *d2 = dst2;
    const uint8_t *s = src;
    size_t i = 0;
    _Pragma("GCC unroll 4")
    for (; i + L <= bytes; i += L) {
        v_u8 v = load_u8(s + i);
        store_u8(d + i, v);
        store_u8(d2 + i, v);
    }
    if (i < bytes) {
        memcpy(d + i, s + i, bytes - i);
        memcpy(d2 + i, s + i, bytes - i);
    }
}

/* ---- the table -------------------------------------------------------------------------- */

#define RDX_ROW(sfx) { sum_##sfx, prod_##sfx, min_##sfx, max_##sfx, avg_##sfx }
#define RDX_IROW(s, u) { sum_##u, prod_##u, min_##s, max_##s, avg_##s }

const rdx_reduce_kernels_t RDX_KCAT(rdx_reduce_kernels, RDX_KERNEL_ISA) = {
    .name = RDX_KERNEL_NAME,
    .combine = {
        [RDX_INT8] = RDX_IROW(i8, u8),
        [RDX_UINT8] = RDX_IROW(u8, u8),
        [RDX_INT32] = RDX_IROW(i32, u32),
        [RDX_UINT32] = RDX_IROW(u32, u32),
        [RDX_INT64] = RDX_IROW(i64, u64),
        [RDX_UINT64] = RDX_IROW(u64, u64),
        [RDX_FLOAT16] = RDX_ROW(f16),
        [RDX_BFLOAT16] = RDX_ROW(bf16),
        [RDX_FLOAT32] = RDX_ROW(f32),
        [RDX_FLOAT64] = RDX_ROW(f64),
    },
    .scale = {
        [RDX_INT8] = scale_i8, [RDX_UINT8] = scale_u8,
        [RDX_INT32] = scale_i32, [RDX_UINT32] = scale_u32,
        [RDX_INT64] = scale_i64, [RDX_UINT64] = scale_u64,
        [RDX_FLOAT16] = scale_f16, [RDX_BFLOAT16] = scale_bf16,
        [RDX_FLOAT32] = scale_f32, [RDX_FLOAT64] = scale_f64,
    },
    .copy2 = copy2,
};
