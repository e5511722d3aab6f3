/*
 * Reduction kernels, one per (dtype, op), vectorised; the widest the CPU supports is chosen
 * at run time (the guest CPU used for soft-RoCE tests has AVX2 but not AVX-512).
 *
 * Half types (fp16, bf16) are widened to fp32, combined, and rounded back to nearest even
 * inside the kernel. AVG is SUM plus a final scale, done once by the last combine
 * (rdx_reduce with div > 1): floats multiply by 1/div, integers divide (truncating).
 */
#ifndef RDX_REDUCE_H
#define RDX_REDUCE_H

#include <stddef.h>
#include <stdint.h>
#include "rdx/rdx.h"

/*
 * dst[i] = a[i] op b[i] for i < n (n elements). If dst2 is not NULL it receives the same
 * values (used to write a result to the user buffer and a peer's slot in one pass).
 * If div > 1 the combined value is then scaled by 1/div (only meaningful for AVG).
 * dst may equal a or b; dst2 must not overlap a or b.
 */
void rdx_reduce_local(rdx_dtype_t dtype, rdx_op_t op, void *dst, void *dst2, const void *a,
                const void *b, size_t n, int div);

/* dst[i] = src[i] * (1/div) for floats, src[i] / div for integers. dst may equal src. */
void rdx_reduce_scale(rdx_dtype_t dtype, void *dst, const void *src, size_t n, int div);

/* dst = src, and dst2 = src if dst2 != NULL: memcpy into one or two places in one pass. */
void rdx_copy2(void *dst, void *dst2, const void *src, size_t bytes);

/* Name of the instruction set the kernels dispatch to ("avx512", "avx2", "sse2"). */
const char *rdx_reduce_isa(void);

/* Conversions, exact round-to-nearest-even; exposed for tests and tools. */
float rdx_half_to_float(uint16_t h);
uint16_t rdx_float_to_half(float f);
float rdx_bf16_to_float(uint16_t h);
uint16_t rdx_float_to_bf16(float f);

#endif
