/*
 * Reduction entry points: pick the kernel table once, then every call is a table lookup
 * and an indirect call. The kernels themselves are in reduce_kernels.c (see reduce_isa.h).
 */
#include "src/reduce.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "src/log.h"
#include "src/reduce_isa.h"

/*
 * Work that needs a second step (a copy into dst2, or a scale after a non-AVG op) is done
 * block by block so the block of dst is still in L1 for that step: one pass over memory.
 */
#define RDX_REDUCE_BLOCK_BYTES 8192

#if defined(__x86_64__) || defined(__i386__)
#define RDX_REDUCE_X86 1
#else
#define RDX_REDUCE_X86 0
#endif

static const char *const reduce_isa_names[RDX_ISA_COUNT] = {"sse2", "avx2", "avx512"};

static const rdx_reduce_kernels_t *reduce_isa_table(rdx_isa_t isa)
{
#if RDX_REDUCE_X86
    static const rdx_reduce_kernels_t *const tables[RDX_ISA_COUNT] = {
        &rdx_reduce_kernels_sse2, &rdx_reduce_kernels_avx2, &rdx_reduce_kernels_avx512};
    return tables[isa];
#else
    return isa == RDX_ISA_SSE2 ? &rdx_reduce_kernels_sse2 : NULL;
#endif
}

int rdx_reduce_isa_parse(const char *name)
{
    for (int i = 0; i < RDX_ISA_COUNT; i++)
        if (strcmp(name, reduce_isa_names[i]) == 0) return i;
    return -1;
}

int rdx_reduce_isa_supported(rdx_isa_t isa)
{
    if ((unsigned)isa >= RDX_ISA_COUNT) return 0;
#if RDX_REDUCE_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
               __builtin_cpu_supports("fma");
    switch (isa) {
    case RDX_ISA_SSE2:
        return 1;
    case RDX_ISA_AVX2:
        return avx2;
    case RDX_ISA_AVX512:
        return avx2 && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    default:
        return 0;
    }
#else
    return isa == RDX_ISA_SSE2;
#endif
}

rdx_isa_t rdx_reduce_isa_best(void)
{
    for (int i = RDX_ISA_COUNT - 1; i > 0; i--)
        if (rdx_reduce_isa_supported((rdx_isa_t)i)) return (rdx_isa_t)i;
    return RDX_ISA_SSE2;
}

/* ---- the table in use ------------------------------------------------------------------- */

static const rdx_reduce_kernels_t *reduce_kernels; /* atomic; NULL until resolved */
static pthread_once_t reduce_kernels_once = PTHREAD_ONCE_INIT;

/*
 * RDX_REDUCE_ISA is read here rather than through the settings table of config.c: the
 * kernels are process-wide and used before (and without) any communicator.
 */
static void reduce_kernels_resolve(void)
{
    rdx_isa_t isa = rdx_reduce_isa_best();
    const char *want = getenv("RDX_REDUCE_ISA");
    if (want != NULL && want[0] != '\0') {
        int forced = rdx_reduce_isa_parse(want);
        if (forced < 0)
            rdx_log_warn("reduce: RDX_REDUCE_ISA=%s is not one of sse2|avx2|avx512; using %s",
                         want, reduce_isa_names[isa]);
        else if (!rdx_reduce_isa_supported((rdx_isa_t)forced))
            rdx_log_warn("reduce: RDX_REDUCE_ISA=%s: this CPU lacks it; using %s", want,
                         reduce_isa_names[isa]);
        else
            isa = (rdx_isa_t)forced;
    }
    rdx_log_debug("reduce: using %s kernels", reduce_isa_names[isa]);
    __atomic_store_n(&reduce_kernels, reduce_isa_table(isa), __ATOMIC_RELEASE);
}

static inline const rdx_reduce_kernels_t *reduce_kernels_get(void)
{
    const rdx_reduce_kernels_t *k = __atomic_load_n(&reduce_kernels, __ATOMIC_ACQUIRE);
    if (__builtin_expect(k == NULL, 0)) {
        pthread_once(&reduce_kernels_once, reduce_kernels_resolve);
        k = __atomic_load_n(&reduce_kernels, __ATOMIC_ACQUIRE);
    }
    return k;
}

rdx_status_t rdx_reduce_isa_force(rdx_isa_t isa)
{
    if (!rdx_reduce_isa_supported(isa)) return RDX_ERR_UNSUPPORTED;
    pthread_once(&reduce_kernels_once, reduce_kernels_resolve); /* so it cannot undo us */
    __atomic_store_n(&reduce_kernels, reduce_isa_table(isa), __ATOMIC_RELEASE);
    return RDX_SUCCESS;
}

const char *rdx_reduce_isa(void)
{
    return reduce_kernels_get()->name;
}

/* ---- entry points ----------------------------------------------------------------------- */

static int reduce_args_valid(rdx_dtype_t dtype, rdx_op_t op)
{
    if ((unsigned)dtype < RDX_DTYPE_COUNT && (unsigned)op < RDX_OP_COUNT) return 1;
    rdx_log_error("reduce: invalid dtype %d or op %d (a caller skipped validation)",
                  (int)dtype, (int)op);
    return 0;
}

void rdx_reduce_local(rdx_dtype_t dtype, rdx_op_t op, void *dst, void *dst2, const void *a,
                const void *b, size_t n, int div)
{
    if (!reduce_args_valid(dtype, op)) return;
    const rdx_reduce_kernels_t *k = reduce_kernels_get();
    if (op == RDX_AVG && div <= 1) op = RDX_SUM;
    rdx_combine_fn combine = k->combine[dtype][op];
    int scale_after = op != RDX_AVG && div > 1; /* only meaningful for AVG, but defined */
    if (dst2 == NULL && !scale_after) {
        combine(dst, a, b, n, div);
        return;
    }
    size_t esz = rdx_dtype_size(dtype);
    size_t block = RDX_REDUCE_BLOCK_BYTES / esz;
    for (size_t off = 0; off < n; off += block) {
        size_t m = n - off < block ? n - off : block;
        char *d = (char *)dst + off * esz;
        combine(d, (const char *)a + off * esz, (const char *)b + off * esz, m, div);
        if (scale_after) k->scale[dtype](d, d, m, div);
        if (dst2 != NULL) memcpy((char *)dst2 + off * esz, d, m * esz);
    }
}

/* div <= 1 leaves values unchanged (a copy when dst != src). */
void rdx_reduce_scale(rdx_dtype_t dtype, void *dst, const void *src, size_t n, int div)
{
    if (!reduce_args_valid(dtype, RDX_SUM)) return;
    if (div > 1)
        reduce_kernels_get()->scale[dtype](dst, src, n, div);
    else if (dst != src)
        memmove(dst, src, n * rdx_dtype_size(dtype));
}

void rdx_copy2(void *dst, void *dst2, const void *src, size_t bytes)
{
    if (dst2 != NULL)
        reduce_kernels_get()->copy2(dst, dst2, src, bytes);
    else if (dst != src)
        memcpy(dst, src, bytes);
}

/* ---- half conversions ------------------------------------------------------------------- */

static inline uint32_t reduce_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float reduce_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float rdx_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) /* inf, or NaN with its payload */
        return reduce_f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in fp32 */
        float mag = (float)mant * 0x1p-24f;
        return reduce_f32_from_bits(sign | reduce_f32_bits(mag));
    }
    return reduce_f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

/*
 * Round to nearest even, integer-only (independent of MXCSR). NaN keeps the top of its
 * payload and gets the quiet bit, as F16C's vcvtps2ph does, so both paths agree.
 */
uint16_t rdx_float_to_half(float f)
{
    uint32_t x = reduce_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((ax & 0x7fffffu) >> 13));
    if (ax >= 0x477ff000u) /* >= 65520 (halfway past 65504, odd): infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* normal half: rebias, round the 13 dropped bits */
        ax += 0xfffu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | ((ax - (112u << 23)) >> 13));
    }
    if (ax <= 0x33000000u) /* <= 2^-25: zero (2^-25 itself ties to the even zero) */
        return sign;
    /* subnormal half: value = m * 2^(e-150), half unit 2^-24, so keep m >> (126 - e) */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) q++; /* may carry into 0x400: fine */
    return (uint16_t)(sign | q);
}

float rdx_bf16_to_float(uint16_t h)
{
    return reduce_f32_from_bits((uint32_t)h << 16);
}

/* Same rounding as the vector kernels (store_bf16 in reduce_kernels.c). */
uint16_t rdx_float_to_bf16(float f)
{
    uint32_t x = reduce_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
