/*
 * Bootstrap: the out-of-band rendezvous every communicator starts with. Rank 0 listens on
 * the rendezvous address; every other rank connects (with retries until the connect
 * deadline) and proves it knows the job key by HMAC-SHA256 challenge-response (the key
 * never crosses the wire). The resulting star of TCP connections carries the small
 * collectives the transports need to wire up: allgather of addresses, broadcast, barrier.
 * Every message is framed (magic, version, type, length) and every length is bounded.
 */
#ifndef RDX_BOOTSTRAP_H
#define RDX_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>
#include "rdx/rdx.h"

typedef struct rdx_bootstrap rdx_bootstrap_t;

/* Largest payload one bootstrap message may carry (guards every length read). */
#define RDX_BOOTSTRAP_MAX_PAYLOAD (16u << 20)

typedef struct rdx_bootstrap_params {
    int rank;
    int size;
    const char *addr;        /* "host:port" of rank 0's listener */
    const char *job_key;     /* shared secret; "" means no authentication configured */
    const char *ifname;      /* "" or the interface rank 0 binds to */
    long connect_timeout_ms; /* deadline for the whole rendezvous */
    long timeout_ms;         /* deadline of each later collective call */
} rdx_bootstrap_params_t;

rdx_status_t rdx_bootstrap_create(const rdx_bootstrap_params_t *p, rdx_bootstrap_t **bs);
void rdx_bootstrap_destroy(rdx_bootstrap_t *bs);

int rdx_bootstrap_rank(const rdx_bootstrap_t *bs);
int rdx_bootstrap_size(const rdx_bootstrap_t *bs);

/* Every rank contributes len bytes (len equal on all ranks); all receives size*len, by rank. */
rdx_status_t rdx_bootstrap_allgather(rdx_bootstrap_t *bs, const void *mine, size_t len, void *all);
rdx_status_t rdx_bootstrap_bcast(rdx_bootstrap_t *bs, void *buf, size_t len, int root);
rdx_status_t rdx_bootstrap_barrier(rdx_bootstrap_t *bs);

#endif
