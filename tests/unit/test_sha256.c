/* SHA-256 against FIPS 180-2 appendix B vectors, HMAC-SHA256 against RFC 4231 section 4. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/sha256.h"

static void hex_of(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
    out[2 * n] = '\0';
}

static void check_sha(const void *msg, size_t len, const char *want)
{
    uint8_t d[RDX_SHA256_DIGEST_LEN];
    char hex[2 * RDX_SHA256_DIGEST_LEN + 1];
    rdx_sha256(msg, len, d);
    hex_of(d, sizeof(d), hex);
    cr_assert_str_eq(hex, want, "sha256 of %zu bytes", len);
}

static void check_hmac(const void *key, size_t klen, const void *msg, size_t mlen,
                       const char *want)
{
    uint8_t mac[RDX_SHA256_DIGEST_LEN];
    char hex[2 * RDX_SHA256_DIGEST_LEN + 1];
    rdx_hmac_sha256(key, klen, msg, mlen, mac);
    hex_of(mac, sizeof(mac), hex);
    /* RFC 4231 test case 5 truncates the output; compare only the given prefix. */
    cr_assert(strncmp(hex, want, strlen(want)) == 0, "hmac: got %s want %s", hex, want);
}

Test(sha256, fips_vectors, .timeout = 10)
{
    check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha(two, strlen(two),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(sha256, million_a_in_uneven_pieces, .timeout = 10)
{
    /* Feeding odd-sized pieces exercises the partial-block path of update. */
    char chunk[997];
    memset(chunk, 'a', sizeof(chunk));
    rdx_sha256_t ctx;
    rdx_sha256_init(&ctx);
    size_t left = 1000000;
    for (size_t piece = 1; left > 0; piece = (piece * 37 + 11) % sizeof(chunk) + 1) {
        size_t n = piece < left ? piece : left;
        rdx_sha256_update(&ctx, chunk, n);
        left -= n;
    }
    uint8_t d[RDX_SHA256_DIGEST_LEN];
    char hex[2 * RDX_SHA256_DIGEST_LEN + 1];
    rdx_sha256_final(&ctx, d);
    hex_of(d, sizeof(d), hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

Test(sha256, padding_boundaries_match_one_shot, .timeout = 10)
{
    /* Lengths 55, 56, 63, 64, 65 straddle the padding rules; byte-at-a-time must agree. */
    uint8_t msg[130];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 31 + 7);
    for (size_t len = 0; len <= sizeof(msg); len++) {
        uint8_t a[32], b[32];
        rdx_sha256(msg, len, a);
        rdx_sha256_t ctx;
        rdx_sha256_init(&ctx);
        for (size_t i = 0; i < len; i++)
            rdx_sha256_update(&ctx, msg + i, 1);
        rdx_sha256_final(&ctx, b);
        cr_assert(memcmp(a, b, 32) == 0, "length %zu", len);
    }
    /* 64 zero bytes: a block-aligned message needs a whole extra padding block. */
    memset(msg, 0, 64);
    check_sha(msg, 64, "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b");
}

Test(hmac_sha256, rfc4231_vectors, .timeout = 10)
{
    uint8_t key[131], data[50];

    memset(key, 0x0b, 20);
    check_hmac(key, 20, "Hi There", 8,
               "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    check_hmac("Jefe", 4, "what do ya want for nothing?", 28,
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    check_hmac(key, 20, data, 50,
               "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    for (int i = 0; i < 25; i++)
        key[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    check_hmac(key, 25, data, 50,
               "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

    memset(key, 0x0c, 20);
    check_hmac(key, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b");

    memset(key, 0xaa, 131);
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    check_hmac(key, 131, m6, strlen(m6),
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *m7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the "
                     "HMAC algorithm.";
    check_hmac(key, 131, m7, strlen(m7),
               "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

Test(hmac_sha256, streaming_equals_one_shot_and_key_matters, .timeout = 10)
{
    const char *msg = "server nonce || client nonce || rank || size";
    uint8_t a[32], b[32], c[32];
    rdx_hmac_sha256("k1", 2, msg, strlen(msg), a);
    rdx_hmac_sha256_t ctx;
    rdx_hmac_sha256_init(&ctx, "k1", 2);
    rdx_hmac_sha256_update(&ctx, msg, 10);
    rdx_hmac_sha256_update(&ctx, msg + 10, strlen(msg) - 10);
    rdx_hmac_sha256_final(&ctx, b);
    cr_assert(memcmp(a, b, 32) == 0);
    rdx_hmac_sha256("k2", 2, msg, strlen(msg), c);
    cr_assert(memcmp(a, c, 32) != 0);
}

Test(hmac_sha256, consttime_compare, .timeout = 10)
{
    uint8_t a[32] = {0}, b[32] = {0};
    cr_assert(rdx_memeq_consttime(a, b, 32));
    b[31] = 1;
    cr_assert(!rdx_memeq_consttime(a, b, 32));
    b[31] = 0;
    b[0] = 0x80;
    cr_assert(!rdx_memeq_consttime(a, b, 32));
    cr_assert(rdx_memeq_consttime(a, b, 0));
}
