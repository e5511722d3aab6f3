/* FNV-1a 64: checkpoint checksums and the cross-rank weight and option fingerprints. */
#ifndef RDX_TRAINER_FNV_H
#define RDX_TRAINER_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FNV_INIT 0xcbf29ce484222325ULL

static inline uint64_t fnv_hash(const void *p, size_t bytes, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < bytes; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#endif
