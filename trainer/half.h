/*
 * fp32 <-> fp16 / bf16 conversion for gradients on the wire, round to nearest even.
 * The library has the same conversions internally (src/reduce.h) but the trainer uses only
 * the public API, so it carries its own.
 */
#ifndef RDX_TRAINER_HALF_H
#define RDX_TRAINER_HALF_H

#include <stddef.h>
#include <stdint.h>

uint16_t half_from_float(float f);
float half_to_float(uint16_t h);
uint16_t bf16_from_float(float f);
float bf16_to_float(uint16_t h);

/* dst[i] = convert(src[i] * scale): scale applied in fp32 before rounding. */
void half_pack(uint16_t *dst, const float *src, size_t n, float scale);
void bf16_pack(uint16_t *dst, const float *src, size_t n, float scale);
/* dst[i] = convert(src[i]) * scale. */
void half_unpack(float *dst, const uint16_t *src, size_t n, float scale);
void bf16_unpack(float *dst, const uint16_t *src, size_t n, float scale);

#endif
