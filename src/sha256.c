/* SHA-256 and HMAC-SHA256; see sha256.h. Follows FIPS 180-4 section 6.2 directly. */
#include "src/sha256.h"

#include <string.h>

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t rotr32(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void sha256_compress(uint32_t state[8], const uint8_t block[64])
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = load_be32(block + 4 * t);
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr32(w[t - 15], 7) ^ rotr32(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr32(w[t - 2], 17) ^ rotr32(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int t = 0; t < 64; t++) {
        uint32_t S1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + sha256_k[t] + w[t];
        uint32_t S0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void rdx_sha256_init(rdx_sha256_t *ctx)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(ctx->state, iv, sizeof(iv));
    ctx->total_bytes = 0;
    ctx->block_len = 0;
}

void rdx_sha256_update(rdx_sha256_t *ctx, const void *data, size_t len)
{
    const uint8_t *p = data;
    ctx->total_bytes += len;
    if (ctx->block_len > 0) {
        size_t take = RDX_SHA256_BLOCK_LEN - ctx->block_len;
        if (take > len)
            take = len;
        memcpy(ctx->block + ctx->block_len, p, take);
        ctx->block_len += take;
        p += take;
        len -= take;
        if (ctx->block_len < RDX_SHA256_BLOCK_LEN)
            return;
        sha256_compress(ctx->state, ctx->block);
        ctx->block_len = 0;
    }
    for (; len >= RDX_SHA256_BLOCK_LEN; p += RDX_SHA256_BLOCK_LEN, len -= RDX_SHA256_BLOCK_LEN)
        sha256_compress(ctx->state, p);
    memcpy(ctx->block, p, len);
    ctx->block_len = len;
}

void rdx_sha256_final(rdx_sha256_t *ctx, uint8_t digest[RDX_SHA256_DIGEST_LEN])
{
    uint64_t bits = ctx->total_bytes * 8;
    /* Padding: 0x80, zeros up to 56 mod 64, then the bit length big-endian. */
    ctx->block[ctx->block_len++] = 0x80;
    if (ctx->block_len > 56) {
        memset(ctx->block + ctx->block_len, 0, RDX_SHA256_BLOCK_LEN - ctx->block_len);
        sha256_compress(ctx->state, ctx->block);
        ctx->block_len = 0;
    }
    memset(ctx->block + ctx->block_len, 0, 56 - ctx->block_len);
    store_be32(ctx->block + 56, (uint32_t)(bits >> 32));
    store_be32(ctx->block + 60, (uint32_t)bits);
    sha256_compress(ctx->state, ctx->block);
    for (int i = 0; i < 8; i++)
        store_be32(digest + 4 * i, ctx->state[i]);
    memset(ctx, 0, sizeof(*ctx));
}

void rdx_sha256(const void *data, size_t len, uint8_t digest[RDX_SHA256_DIGEST_LEN])
{
    rdx_sha256_t ctx;
    rdx_sha256_init(&ctx);
    rdx_sha256_update(&ctx, data, len);
    rdx_sha256_final(&ctx, digest);
}

void rdx_hmac_sha256_init(rdx_hmac_sha256_t *ctx, const void *key, size_t key_len)
{
    uint8_t k[RDX_SHA256_BLOCK_LEN] = {0};
    uint8_t pad[RDX_SHA256_BLOCK_LEN];

    /* Keys longer than a block are hashed first (RFC 2104 section 2). */
    if (key_len > RDX_SHA256_BLOCK_LEN)
        rdx_sha256(key, key_len, k);
    else if (key_len > 0)
        memcpy(k, key, key_len);

    for (int i = 0; i < RDX_SHA256_BLOCK_LEN; i++)
        pad[i] = k[i] ^ 0x36;
    rdx_sha256_init(&ctx->inner);
    rdx_sha256_update(&ctx->inner, pad, sizeof(pad));
    for (int i = 0; i < RDX_SHA256_BLOCK_LEN; i++)
        pad[i] = k[i] ^ 0x5c;
    rdx_sha256_init(&ctx->outer);
    rdx_sha256_update(&ctx->outer, pad, sizeof(pad));
    memset(k, 0, sizeof(k));
    memset(pad, 0, sizeof(pad));
}

void rdx_hmac_sha256_update(rdx_hmac_sha256_t *ctx, const void *data, size_t len)
{
    rdx_sha256_update(&ctx->inner, data, len);
}

void rdx_hmac_sha256_final(rdx_hmac_sha256_t *ctx, uint8_t mac[RDX_SHA256_DIGEST_LEN])
{
    uint8_t inner_digest[RDX_SHA256_DIGEST_LEN];
    rdx_sha256_final(&ctx->inner, inner_digest);
    rdx_sha256_update(&ctx->outer, inner_digest, sizeof(inner_digest));
    rdx_sha256_final(&ctx->outer, mac);
    memset(inner_digest, 0, sizeof(inner_digest));
}

void rdx_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                     uint8_t mac[RDX_SHA256_DIGEST_LEN])
{
    rdx_hmac_sha256_t ctx;
    rdx_hmac_sha256_init(&ctx, key, key_len);
    rdx_hmac_sha256_update(&ctx, data, len);
    rdx_hmac_sha256_final(&ctx, mac);
}

int rdx_memeq_consttime(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a;
    const volatile uint8_t *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (uint8_t)(x[i] ^ y[i]);
    return diff == 0;
}
