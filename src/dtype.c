/* Names and sizes of the public datatypes and ops. */
#include "rdx/rdx.h"

size_t rdx_dtype_size(rdx_dtype_t dtype)
{
    static const size_t sizes[RDX_DTYPE_COUNT] = {1, 1, 4, 4, 8, 8, 2, 2, 4, 8};
    return (unsigned)dtype < RDX_DTYPE_COUNT ? sizes[dtype] : 0;
}

const char *rdx_dtype_name(rdx_dtype_t dtype)
{
    static const char *const names[RDX_DTYPE_COUNT] = {
        "int8", "uint8", "int32", "uint32", "int64", "uint64",
        "float16", "bfloat16", "float32", "float64"};
    return (unsigned)dtype < RDX_DTYPE_COUNT ? names[dtype] : "?";
}

const char *rdx_op_name(rdx_op_t op)
{
    static const char *const names[RDX_OP_COUNT] = {"sum", "prod", "min", "max", "avg"};
    return (unsigned)op < RDX_OP_COUNT ? names[op] : "?";
}
