/*
 * SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for the bootstrap's challenge-response.
 * Small and dependency-free on purpose: rdx must not pull in a crypto library for 64 bytes
 * of authentication per rank. Not constant-time with respect to message length (nothing
 * secret depends on lengths here); the key only enters through HMAC's padded blocks.
 */
#ifndef RDX_SHA256_H
#define RDX_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define RDX_SHA256_DIGEST_LEN 32
#define RDX_SHA256_BLOCK_LEN 64

typedef struct rdx_sha256 {
    uint32_t state[8];
    uint64_t total_bytes;
    uint8_t block[RDX_SHA256_BLOCK_LEN];
    size_t block_len;
} rdx_sha256_t;

void rdx_sha256_init(rdx_sha256_t *ctx);
void rdx_sha256_update(rdx_sha256_t *ctx, const void *data, size_t len);
void rdx_sha256_final(rdx_sha256_t *ctx, uint8_t digest[RDX_SHA256_DIGEST_LEN]);
void rdx_sha256(const void *data, size_t len, uint8_t digest[RDX_SHA256_DIGEST_LEN]);

typedef struct rdx_hmac_sha256 {
    rdx_sha256_t inner;
    rdx_sha256_t outer;
} rdx_hmac_sha256_t;

void rdx_hmac_sha256_init(rdx_hmac_sha256_t *ctx, const void *key, size_t key_len);
void rdx_hmac_sha256_update(rdx_hmac_sha256_t *ctx, const void *data, size_t len);
void rdx_hmac_sha256_final(rdx_hmac_sha256_t *ctx, uint8_t mac[RDX_SHA256_DIGEST_LEN]);
void rdx_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                     uint8_t mac[RDX_SHA256_DIGEST_LEN]);

/* 1 if the n bytes are equal. Time depends only on n, so a MAC check leaks nothing. */
int rdx_memeq_consttime(const void *a, const void *b, size_t n);

#endif
