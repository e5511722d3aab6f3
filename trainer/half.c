#include "half.h"

#include <string.h>

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t half_from_float(float f)
{
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;

    if (ax >= 0x7f800000u) /* inf or nan: keep nan quiet and non-zero */
        return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return sign | 0x7c00u;
    if (ax < 0x38800000u) {
        /* Result is subnormal (or zero): value / 2^-24 rounded to an integer. Adding 0.5f
         * aligns the mantissa so the FPU's own round-to-nearest-even does the rounding. */
        float r = bits_float(ax) + 0.5f;
        return sign | (uint16_t)(float_bits(r) - 0x3f000000u);
    }
    uint32_t mant_odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to even */
    return sign | (uint16_t)(ax >> 13);
}

float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0x1f)
        return bits_float(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) /* zero or subnormal: exact in fp32 */
        return bits_float(sign) + (sign ? -1.0f : 1.0f) * (float)mant * 0x1.0p-24f;
    return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t bf16_from_float(float f)
{
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float bf16_to_float(uint16_t h)
{
    return bits_float((uint32_t)h << 16);
}

void half_pack(uint16_t *dst, const float *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = half_from_float(src[i] * scale);
}

void bf16_pack(uint16_t *dst, const float *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_from_float(src[i] * scale);
}

void half_unpack(float *dst, const uint16_t *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = half_to_float(src[i]) * scale;
}

void bf16_unpack(float *dst, const uint16_t *src, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_to_float(src[i]) * scale;
}
