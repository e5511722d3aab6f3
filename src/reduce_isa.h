/*
 * Private side of the reduction kernels: one table of kernels per instruction set, and
 * the switch tests use to run every variant the CPU has.
 *
 * The kernel bodies live in reduce_kernels.c, written once with GCC vector types whose
 * width is a macro; reduce_avx2.c and reduce_avx512.c include that file again under a
 * target pragma with a wider width, so the three tables hold the same code compiled three
 * times. reduce.c picks a table once (CPU features, RDX_REDUCE_ISA) and every call is a
 * table lookup plus an indirect call.
 */
#ifndef RDX_REDUCE_ISA_H
#define RDX_REDUCE_ISA_H

#include <stddef.h>
#include "rdx/rdx.h"

typedef enum { RDX_ISA_SSE2 = 0, RDX_ISA_AVX2, RDX_ISA_AVX512, RDX_ISA_COUNT } rdx_isa_t;

/*
 * dst[i] = a[i] op b[i]; dst may equal a or b (each vector is loaded before it is stored).
 * div is read by the AVG kernels only, and must be > 1 there: (a + b) scaled by 1/div,
 * rounded once for half types.
 */
typedef void (*rdx_combine_fn)(void *dst, const void *a, const void *b, size_t n, int div);
/* dst[i] = src[i] scaled by 1/div; dst may equal src. */
typedef void (*rdx_scale_fn)(void *dst, const void *src, size_t n, int div);
/* dst = src and dst2 = src, reading src once. */
typedef void (*rdx_copy2_fn)(void *dst, void *dst2, const void *src, size_t bytes);

typedef struct rdx_reduce_kernels {
    const char *name;                                      /* "sse2", "avx2", "avx512" */
    rdx_combine_fn combine[RDX_DTYPE_COUNT][RDX_OP_COUNT];
    rdx_scale_fn scale[RDX_DTYPE_COUNT];
    rdx_copy2_fn copy2;
} rdx_reduce_kernels_t;

/* Defined by reduce_kernels.c, reduce_avx2.c and reduce_avx512.c (x86 only for the last two). */
extern const rdx_reduce_kernels_t rdx_reduce_kernels_sse2;
extern const rdx_reduce_kernels_t rdx_reduce_kernels_avx2;
extern const rdx_reduce_kernels_t rdx_reduce_kernels_avx512;

/* Parses "sse2|avx2|avx512"; returns -1 if unknown. */
int rdx_reduce_isa_parse(const char *name);
/* 1 if this CPU (and this build) can run the kernels of isa. */
int rdx_reduce_isa_supported(rdx_isa_t isa);
/* Best ISA the CPU supports. */
rdx_isa_t rdx_reduce_isa_best(void);
/*
 * Makes every later rdx_reduce* call use the kernels of isa (for tests and benchmarks; not
 * safe while other threads reduce). Returns RDX_ERR_UNSUPPORTED if the CPU lacks isa.
 */
rdx_status_t rdx_reduce_isa_force(rdx_isa_t isa);

#endif
