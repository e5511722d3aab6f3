/*
 * Deterministic random numbers for the trainer: splitmix64 to seed, xoshiro256** to draw.
 * Everything random in a run (initial weights, per-epoch shuffles) derives from --seed
 * through these, so runs are reproducible bit for bit and ranks agree without talking.
 */
#ifndef RDX_TRAINER_RNG_H
#define RDX_TRAINER_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct rng { uint64_t s[4]; } rng_t;

static inline uint64_t rng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* stream separates independent uses of one seed (weights, epoch e's shuffle, ...). */
static inline void rng_seed(rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = rng_splitmix64(&x);
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = s[1] * 5;
    result = ((result << 7) | (result >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, n) without modulo bias (Lemire's method). */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    for (;;) {
        unsigned __int128 m = (unsigned __int128)rng_next(r) * n;
        uint64_t lo = (uint64_t)m;
        if (lo >= n || lo >= (uint64_t)(-n) % n)
            return (uint64_t)(m >> 64);
    }
}

/* Uniform in (0, 1]: 53 random bits, never 0 so log() below is finite. */
static inline double rng_unit(rng_t *r)
{
    return ((double)(rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
}

/* Standard normal (Box-Muller; one value per call keeps the stream simple). */
static inline double rng_normal(rng_t *r)
{
    double u1 = rng_unit(r), u2 = rng_unit(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
