/* Pure checks of the UCX transport's wire headers (see ucx_wire.h). */
#include "transport/ucx_wire.h"

#include <string.h>

bool rdx_ucx_wire_src_ok(uint32_t src, int rank, int size)
{
    return size > 0 && src < (uint32_t)size && src != (uint32_t)rank;
}

rdx_ucx_wire_status_t rdx_ucx_am_data_decode(const void *header, size_t header_len,
                                             ucx_am_data_hdr_t *h)
{
    if (header == NULL || header_len != sizeof(*h))
        return RDX_UCX_WIRE_BAD_SIZE;
    memcpy(h, header, sizeof(*h)); /* UCX gives no alignment guarantee */
    return RDX_UCX_WIRE_OK;
}

rdx_ucx_wire_status_t rdx_ucx_am_data_admit(const ucx_am_data_hdr_t *h, size_t data_len,
                                            uint64_t rx_head, int slots, size_t slot_bytes)
{
    /* seq - 1 - rx_head wraps to a huge value for seq <= rx_head: one compare covers both
     * a stale message and one too far ahead. */
    if (slots < 1 || h->seq == 0 || h->seq - 1 - rx_head >= (uint64_t)slots)
        return RDX_UCX_WIRE_BAD_SEQ;
    if (h->len > slot_bytes || data_len != h->len)
        return RDX_UCX_WIRE_BAD_LEN;
    return RDX_UCX_WIRE_OK;
}

rdx_ucx_wire_status_t rdx_ucx_am_ctl_decode(const void *header, size_t header_len,
                                            size_t data_len, ucx_am_ctl_hdr_t *h)
{
    if (header == NULL || header_len != sizeof(*h) || data_len != 0)
        return RDX_UCX_WIRE_BAD_SIZE;
    memcpy(h, header, sizeof(*h));
    return h->magic == UCX_MAGIC ? RDX_UCX_WIRE_OK : RDX_UCX_WIRE_BAD_MAGIC;
}

uint64_t rdx_ucx_credit_next(uint64_t credit, uint64_t tail, uint64_t head)
{
    return head > credit && head <= tail ? head : credit;
}

rdx_ucx_wire_status_t rdx_ucx_slot_check(uint32_t len, uint32_t inl, size_t slot_bytes)
{
    if (len > slot_bytes || (inl && len > UCX_INLINE_MAX))
        return RDX_UCX_WIRE_BAD_LEN;
    return RDX_UCX_WIRE_OK;
}
