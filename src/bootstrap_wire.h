/*
 * Bootstrap wire format (private to src/bootstrap.c; exposed for unit tests and fuzzers).
 *
 * Every message, handshake included, is a 12-byte header then len payload bytes.
 * All integers are big-endian (network order):
 *
 *    0        4        6        8                12
 *    +--------+--------+--------+----------------+---------------- - -
 *    | magic  |version |  type  |      len       | payload (len bytes)
 *    | "RDXB" |   1    |        | <= MAX_PAYLOAD |
 *    +--------+--------+--------+----------------+---------------- - -
 *
 * Handshake (rank 0 = root, accepting; rank r = client, connecting):
 *    root   -> client  HELLO    server_nonce[32]
 *    client -> root    AUTH     rank u32, size u32, client_nonce[32],
 *                               HMAC(key, server_nonce || client_nonce || rank || size)
 *    root   -> client  AUTH_OK  HMAC(key, client_nonce || server_nonce)   (mutual proof)
 *                   or REJECT   reason text (then root closes)
 *    root   -> client  READY    (empty) once all size-1 ranks are in
 *                   or ABORT    status u32, reason text
 * Collectives then exchange ALLGATHER / BCAST / BARRIER messages on the star; root may send
 * ABORT instead of any of them when the collective failed elsewhere.
 */
#ifndef RDX_BOOTSTRAP_WIRE_H
#define RDX_BOOTSTRAP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "src/bootstrap.h"

#define RDX_BS_MAGIC 0x52445842u /* the bytes 'R' 'D' 'X' 'B' on the wire */
#define RDX_BS_VERSION 1
#define RDX_BS_HDR_LEN 12
#define RDX_BS_NONCE_LEN 32
#define RDX_BS_MAC_LEN 32
#define RDX_BS_AUTH_LEN (4 + 4 + RDX_BS_NONCE_LEN + RDX_BS_MAC_LEN)
#define RDX_BS_REASON_MAX 512
#define RDX_BS_ABORT_MAX (4 + RDX_BS_REASON_MAX)
#define RDX_BS_STALL_MAX 256
/* A connecting peer must finish the handshake this fast or be dropped, so a silent
 * stranger holds a slot for at most this long. */
#define RDX_BS_HANDSHAKE_MS 2000

typedef enum {
    RDX_BS_MSG_HELLO = 1,
    RDX_BS_MSG_AUTH,
    RDX_BS_MSG_AUTH_OK,
    RDX_BS_MSG_REJECT,
    RDX_BS_MSG_READY,
    RDX_BS_MSG_ABORT,
    RDX_BS_MSG_ALLGATHER,
    RDX_BS_MSG_BCAST,
    RDX_BS_MSG_BARRIER,
    RDX_BS_MSG_STALL, /* non-root -> root: what this rank waits in (rdx_bootstrap_report_stall) */
    RDX_BS_MSG_LAST = RDX_BS_MSG_STALL
} rdx_bs_msg_type_t;

typedef enum {
    RDX_BS_WIRE_OK = 0,
    RDX_BS_WIRE_TRUNCATED,   /* fewer than RDX_BS_HDR_LEN bytes */
    RDX_BS_WIRE_BAD_MAGIC,
    RDX_BS_WIRE_BAD_VERSION,
    RDX_BS_WIRE_BAD_TYPE,
    RDX_BS_WIRE_TOO_LONG     /* len > RDX_BOOTSTRAP_MAX_PAYLOAD */
} rdx_bs_wire_status_t;

typedef struct rdx_bs_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t type;
    uint32_t len;
} rdx_bs_hdr_t;

void rdx_bs_hdr_encode(uint16_t type, uint32_t len, uint8_t out[RDX_BS_HDR_LEN]);
/* Parses and validates the first RDX_BS_HDR_LEN of n bytes (any bytes at all are safe to
 * pass). Fills *hdr (even on error, as far as it could read) and says what is wrong. */
rdx_bs_wire_status_t rdx_bs_hdr_decode(const uint8_t *buf, size_t n, rdx_bs_hdr_t *hdr);
const char *rdx_bs_wire_strerror(rdx_bs_wire_status_t st);
/* "allgather", "hello", ...; "unknown" outside the enum. */
const char *rdx_bs_msg_name(unsigned type);

typedef struct rdx_bs_auth {
    uint32_t rank;
    uint32_t size;
    uint8_t nonce[RDX_BS_NONCE_LEN];
    uint8_t mac[RDX_BS_MAC_LEN];
} rdx_bs_auth_t;

void rdx_bs_auth_encode(const rdx_bs_auth_t *auth, uint8_t out[RDX_BS_AUTH_LEN]);
void rdx_bs_auth_decode(const uint8_t in[RDX_BS_AUTH_LEN], rdx_bs_auth_t *auth);

/* The client's proof: HMAC(key, server_nonce || client_nonce || rank || size). */
void rdx_bs_auth_mac(const void *key, size_t key_len, const uint8_t server_nonce[RDX_BS_NONCE_LEN],
                     const uint8_t client_nonce[RDX_BS_NONCE_LEN], uint32_t rank, uint32_t size,
                     uint8_t mac[RDX_BS_MAC_LEN]);
/* The root's proof: HMAC(key, client_nonce || server_nonce). */
void rdx_bs_root_mac(const void *key, size_t key_len, const uint8_t client_nonce[RDX_BS_NONCE_LEN],
                     const uint8_t server_nonce[RDX_BS_NONCE_LEN], uint8_t mac[RDX_BS_MAC_LEN]);

typedef enum {
    RDX_BS_AUTH_ACCEPT = 0,
    RDX_BS_AUTH_BAD_MAC,   /* wrong job key (or tampered message) */
    RDX_BS_AUTH_BAD_SIZE,  /* a genuine rank of a job with another size */
    RDX_BS_AUTH_BAD_RANK,  /* rank outside 1..size-1 */
    RDX_BS_AUTH_DUP_RANK   /* rank already connected */
} rdx_bs_auth_verdict_t;

/* Root's decision on one AUTH message. The MAC is checked first (in constant time), so an
 * unauthenticated peer learns nothing about the job. rank_taken has size entries. */
rdx_bs_auth_verdict_t rdx_bs_auth_verify(const rdx_bs_auth_t *auth, const void *key,
                                         size_t key_len,
                                         const uint8_t server_nonce[RDX_BS_NONCE_LEN], int size,
                                         const uint8_t *rank_taken);
const char *rdx_bs_auth_verdict_str(rdx_bs_auth_verdict_t v);

#endif
