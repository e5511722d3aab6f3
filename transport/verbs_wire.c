/*
 * Pure helpers of the verbs transport, kept apart so unit tests can run them on a host
 * without RDMA: pool sizing and the check of the address blob each rank publishes.
 */
#include <stdint.h>

#include "src/error.h"
#include "transport/verbs.h"

static size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

rdx_status_t rdx_verbs_layout_compute(int rank, int peers, size_t slot_bytes, int slots,
                                      size_t pool_limit, rdx_verbs_layout_t *out)
{
    if (slots < 1 || slot_bytes == 0 || peers < 0)
        return rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: %d slots of %zu bytes: need at least "
                       "one slot of at least one byte", rank, slots, slot_bytes);
    if (slot_bytes > (1u << 30))
        return rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: slot of %zu bytes: at most 1 GiB", rank,
                       slot_bytes);
    rdx_verbs_layout_t l = {.slot_bytes = slot_bytes};
    /* Two regions (receive slots and bounce slots), each peers * slots * stride. */
    size_t nslots = 2 * (size_t)peers * (size_t)slots;
    if (nslots > 0 && pool_limit > 0) {
        size_t fit = pool_limit / nslots;
        size_t max_payload = fit > RDX_VERBS_PAYLOAD_OFF
                                 ? (fit - RDX_VERBS_PAYLOAD_OFF) / 64 * 64 : 0;
        size_t floor = slot_bytes < RDX_VERBS_MIN_SLOT ? slot_bytes : RDX_VERBS_MIN_SLOT;
        if (max_payload < floor)
            return rdx_err(RDX_ERR_CONFIG,
                           "rank %d: verbs: RDX_POOL_MB (%zu MiB) cannot hold %d peers x %d "
                           "slots x 2 directions of %zu bytes: raise RDX_POOL_MB or lower "
                           "RDX_SLOTS", rank, pool_limit >> 20, peers, slots, floor);
        if (max_payload < l.slot_bytes)
            l.slot_bytes = max_payload;
    }
    l.stride = RDX_VERBS_PAYLOAD_OFF + round_up(l.slot_bytes, 64);
    /* Without a pool limit nothing above bounds the product, and the pool is allocated and
     * registered with it: a wrapped size would be a small pool indexed as a huge one. */
    if (__builtin_mul_overflow((size_t)peers * (size_t)slots, l.stride, &l.region_bytes) ||
        l.region_bytes > SIZE_MAX / 2)
        return rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: %d peers x %d slots of %zu bytes do not "
                       "fit in memory: lower RDX_SLOTS or RDX_CHUNK_BYTES", rank, peers, slots,
                       l.stride);
    l.pool_bytes = 2 * l.region_bytes;
    *out = l;
    return RDX_SUCCESS;
}

rdx_status_t rdx_verbs_wire_check(const rdx_verbs_wire_hdr_t *mine,
                                  const rdx_verbs_wire_hdr_t *theirs, int from)
{
    int rank = mine->rank;
    if (theirs->magic != RDX_VERBS_MAGIC)
        return rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: bad address blob (magic "
                       "0x%08x, want 0x%08x: not rdx verbs, or other byte order)", rank, from,
                       theirs->magic, RDX_VERBS_MAGIC);
    if (theirs->version != RDX_VERBS_WIRE_VERSION)
        return rdx_err(RDX_ERR_MISMATCH, "rank %d: verbs: peer %d speaks wire version %u, this "
                       "build %u: run the same rdx everywhere", rank, from, theirs->version,
                       RDX_VERBS_WIRE_VERSION);
    if (theirs->rank != from || theirs->size != mine->size)
        return rdx_err(RDX_ERR_MISMATCH, "rank %d: verbs: peer %d: blob says rank %d of %d, "
                       "expected rank %d of %d", rank, from, theirs->rank, theirs->size, from,
                       mine->size);
    if (theirs->slots != mine->slots || theirs->slot_bytes != mine->slot_bytes ||
        theirs->stride != mine->stride)
        return rdx_err(RDX_ERR_MISMATCH, "rank %d: verbs: peer %d uses %u slots of %llu bytes, "
                       "this rank %u of %llu: set RDX_SLOTS/RDX_CHUNK_BYTES/RDX_POOL_MB alike "
                       "on every rank", rank, from, theirs->slots,
                       (unsigned long long)theirs->slot_bytes, mine->slots,
                       (unsigned long long)mine->slot_bytes);
    if (theirs->link_layer != mine->link_layer || theirs->is_global != mine->is_global)
        return rdx_err(RDX_ERR_MISMATCH, "rank %d: verbs: peer %d is on a %s port (%s routing), "
                       "this rank on %s (%s): pick matching RDX_IB_DEV/RDX_IB_GID_INDEX", rank,
                       from, theirs->link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "IB",
                       theirs->is_global ? "GID" : "LID",
                       mine->link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "IB",
                       mine->is_global ? "GID" : "LID");
    return RDX_SUCCESS;
}
