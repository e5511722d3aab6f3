/* The kernels of reduce_kernels.c compiled for AVX-512 (F, BW, VL) + F16C: 64-byte vectors. */
#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,f16c,fma,avx512f,avx512bw,avx512vl")
#define RDX_KERNEL_ISA avx512
#define RDX_KERNEL_NAME "avx512"
#define RDX_VEC_BYTES 64
#include "src/reduce_kernels.c"
#else
typedef int rdx_reduce_avx512_absent; /* not x86: reduce.c never selects this table */
#endif
