/*
 * The transport interface: everything a collective needs from a network, and nothing more.
 *
 * A transport instance (rdx_tp_t) belongs to one communicator and is connected to every
 * other rank at creation. Between each ordered pair of ranks it provides a one-way FIFO of
 * `slots` fixed-size slots living in the RECEIVER's registered memory:
 *
 *   sender                                   receiver (owns the slots)
 *   send_acquire(peer) -> buf  ---------->   slot[tail % slots]
 *     (needs a credit: a slot the receiver has released; never overwrites unread data)
 *   write payload into buf
 *   send_commit(peer, len, tag)  -------->   recv_peek(peer) -> buf, len, tag
 *                                            ... reduce straight from buf ...
 *                         <--- credit ----   recv_release(peer)
 *
 * Why acquire/commit rather than send(ptr): on shared memory `buf` IS the receiver's slot
 * (mapped with ucp_rkey_ptr), so a collective writes its reduction result directly into
 * the peer's memory and the peer reduces straight from it: no staging copy. On verbs `buf`
 * is a registered bounce slot that send_commit moves with RDMA WRITE WITH IMMEDIATE into a
 * slot the receiver granted; on UCX TCP it is sent as an active message. The collective
 * cannot tell the difference.
 *
 * Messages between a pair arrive in the order committed. Each carries a 64-bit tag the
 * collective uses to check it got the message it expected (sequence, step, slice).
 * The data path allocates nothing and registers nothing.
 *
 * Backends are resolved once at communicator creation into an rdx_tp_ops_t.
 */
#ifndef RDX_TRANSPORT_H
#define RDX_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "rdx/rdx.h"
#include "src/bootstrap.h"
#include "src/config.h"

typedef struct rdx_tp rdx_tp_t;
typedef struct rdx_tp_mem rdx_tp_mem_t;

typedef struct rdx_tp_params {
    int rank;
    int size;
    size_t slot_bytes;            /* payload bytes per slot (RDX_CHUNK_BYTES) */
    int slots;                    /* slots per peer, FIFO depth (RDX_SLOTS) */
    size_t pool_bytes;            /* upper bound on registered pool (RDX_POOL_MB) */
    rdx_bootstrap_t *bs;          /* for exchanging addresses at create */
    const rdx_settings_t *settings;
} rdx_tp_params_t;

/* What a transport can tell the cost model and the user about itself. */
typedef struct rdx_tp_props {
    const char *name;             /* "ucx", "verbs" */
    char detail[160];             /* e.g. "posix shm (rkey_ptr)", "rxe0:1 gid 1 RoCEv2" */
    double latency_us;            /* one-way small-message estimate */
    double bandwidth_gbs;         /* per-link estimate */
    size_t slot_bytes;            /* effective (may be less than asked) */
    int slots;
} rdx_tp_props_t;

typedef struct rdx_tp_ops {
    const char *name;

    /* Allocates and registers the pool, exchanges addresses over params->bs and connects
     * to every peer. Collective over all ranks. */
    rdx_status_t (*create)(const rdx_tp_params_t *params, rdx_tp_t **tp);
    /* Releases everything; safe on a transport whose peers are gone. */
    void (*destroy)(rdx_tp_t *tp);
    void (*props)(const rdx_tp_t *tp, rdx_tp_props_t *props);
    /* True when peer's slots are mapped into this process (same host, shared memory). */
    bool (*peer_is_local)(const rdx_tp_t *tp, int peer);

    /* --- data path: none of these block --- */

    /* Sets *buf to a writable slot of at least slot_bytes for the next message to peer, or
     * to NULL when peer has granted no credit yet. Calling it again before send_commit
     * returns the same slot. */
    rdx_status_t (*send_acquire)(rdx_tp_t *tp, int peer, void **buf);
    /* Sends the acquired slot's first len bytes (len <= slot_bytes) with tag. */
    rdx_status_t (*send_commit)(rdx_tp_t *tp, int peer, size_t len, uint64_t tag);
    /* Sets *buf to the oldest unreleased message from peer (with *len, *tag), or NULL. */
    rdx_status_t (*recv_peek)(rdx_tp_t *tp, int peer, const void **buf, size_t *len,
                              uint64_t *tag);
    /* Frees the slot returned by recv_peek and gives peer its credit back. */
    rdx_status_t (*recv_release)(rdx_tp_t *tp, int peer);

    /* Makes progress on network operations (completions, incoming messages, credits). */
    rdx_status_t (*progress)(rdx_tp_t *tp);
    /* Called when a collective found nothing to do for a while: blocks on the network's
     * event fd up to timeout_us, or yields the CPU when the peers are polled memory. */
    rdx_status_t (*idle)(rdx_tp_t *tp, long timeout_us);

    /* Registration of user buffers (for zero-copy paths); ref-counted by the caller. */
    rdx_status_t (*mem_register)(rdx_tp_t *tp, void *buf, size_t bytes, rdx_tp_mem_t **mem);
    rdx_status_t (*mem_deregister)(rdx_tp_t *tp, rdx_tp_mem_t *mem);

    /* Optional zero-copy send (both NULL when the backend cannot; callers then copy into the
     * acquired slot and send_commit, as collectives always do). Like send_commit, after a
     * successful send_acquire, but the len payload bytes are taken straight from src, which
     * must lie inside memory given to mem_register: no staging copy. *sent = false when
     * src is not inside a registration, or when copying is cheaper (small messages): nothing
     * was sent and the acquired slot is still the caller's. */
    rdx_status_t (*send_commit_zcopy)(rdx_tp_t *tp, int peer, const void *src, size_t len,
                                      uint64_t tag, bool *sent);
    /* *done = true once no message committed to peer with send_commit_zcopy is still being
     * read from user memory: only then may the caller reuse or free src. */
    rdx_status_t (*send_zcopy_flushed)(rdx_tp_t *tp, int peer, bool *done);

    /* Optional (may be NULL): prints the devices/transports this backend can see, for
     * rdx-info. Must not fail or abort on a machine without the hardware. */
    void (*print_devices)(FILE *out);
} rdx_tp_ops_t;

/* The backends compiled into this build. */
extern const rdx_tp_ops_t rdx_tp_ucx_ops;
#ifdef RDX_HAVE_VERBS
extern const rdx_tp_ops_t rdx_tp_verbs_ops;
#endif

/* Resolves a transport kind (RDX_TRANSPORT_*) to its ops, or NULL if not built. */
const rdx_tp_ops_t *rdx_tp_lookup(int kind);

#endif
