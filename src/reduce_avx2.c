/* The kernels of reduce_kernels.c compiled for AVX2 + F16C + FMA: 32-byte vectors. */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,f16c,fma")
#define RDX_KERNEL_ISA avx2
#define RDX_KERNEL_NAME "avx2"
#define RDX_VEC_BYTES 32
#include "src/reduce_kernels.c"
#else
typedef int rdx_reduce_avx2_absent; /* not x86: reduce.c never selects this table */
#endif
