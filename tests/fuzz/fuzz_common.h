/*
 * Shared helpers of the libFuzzer targets (tests/fuzz/README in docs/testing.md).
 * FZ_ASSERT states an invariant: a violation aborts, and libFuzzer saves the input as a
 * crash, exactly like a sanitizer finding. Never compiled with NDEBUG-style removal.
 */
#ifndef RDX_FUZZ_COMMON_H
#define RDX_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FZ_ASSERT(cond)                                                                  \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__,      \
                    __LINE__);                                                           \
            abort();                                                                     \
        }                                                                                \
    } while (0)

/* Consumes the input front to back; reads past the end give zeros (never out of bounds). */
typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in_t;

static inline uint8_t fz_u8(fz_in_t *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint16_t fz_u16(fz_in_t *in)
{
    uint16_t hi = fz_u8(in);
    return (uint16_t)((hi << 8) | fz_u8(in));
}

static inline uint32_t fz_u32(fz_in_t *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | fz_u8(in);
    return v;
}

static inline uint64_t fz_u64(fz_in_t *in)
{
    uint64_t hi = fz_u32(in);
    return (hi << 32) | fz_u32(in);
}

static inline uint32_t fz_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t fz_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

#endif
