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

/* Deadline of each later collective call (the communicator uses the connect timeout while
 * the transport wires up, then the run-time one). */
void rdx_bootstrap_set_timeout(rdx_bootstrap_t *bs, long timeout_ms);

/*
 * Failure detection over the star (for every transport): nonblocking, at most one poll()
 * per 10 ms (cheaper calls return at once). RDX_ERR_PEER_LOST naming the peer when a
 * rank's bootstrap connection closed (the process died), or the status and reason another
 * rank sent with rdx_bootstrap_abort. Once failed, every call returns the same.
 */
rdx_status_t rdx_bootstrap_watch(rdx_bootstrap_t *bs);
/* Like rdx_bootstrap_watch, but keeps looking for up to wait_ms: a rank whose transport
 * just lost a peer asks whether the job already knows why (a peer that found a mismatch
 * and left is then reported as that mismatch, not as a lost peer). */
rdx_status_t rdx_bootstrap_verdict(rdx_bootstrap_t *bs, long wait_ms);
/* Stall reports (src/comm_stall.c): a non-root whose wait timed out tells the root what it
 * waits in (text, at most 256 bytes; best effort, never blocks). The root keeps each rank's
 * report; rdx_bootstrap_stall_reports (root only) waits up to wait_ms until every other
 * rank has reported or waits in a bootstrap collective, watching for failures meanwhile,
 * and fills reports[1..size-1] (NULL: no report) and pending[1..size-1] (for a rank without
 * a report: the bootstrap collective its unread message belongs to, "barrier" for
 * rdx_comm_destroy, else NULL). Returns RDX_SUCCESS, or the failure seen while waiting. */
void rdx_bootstrap_report_stall(rdx_bootstrap_t *bs, const char *report);
rdx_status_t rdx_bootstrap_stall_reports(rdx_bootstrap_t *bs, long wait_ms,
                                         const char **reports, const char **pending);
/* Tells every rank (through the root) that this one failed with st because of reason
 * ("rank R: ..."); the bootstrap is unusable afterwards. No-op if it already failed. */
void rdx_bootstrap_abort(rdx_bootstrap_t *bs, rdx_status_t st, const char *reason);
/* RDX_SUCCESS, or the status (and, as last error, the message) of the failure seen. */
rdx_status_t rdx_bootstrap_failed(const rdx_bootstrap_t *bs);

#endif
