/*
 * libFuzzer target: the UCX transport's wire checks (transport/ucx_wire.c), the functions
 * transport/ucx.c calls on every active message and shared-memory slot header it reads.
 *
 * Input: 12 bytes of receiver configuration (rank, size, slots, slot bytes, counters), then
 * a sequence of operations, each a selector byte and its operands:
 *   0  a DATA active message with arbitrary header bytes, header length and payload length;
 *      if admitted, the payload is stored as ucx.c stores it (inline in the slot header or
 *      in the slot) into buffers of their exact size, and read back through the receiver's
 *      slot check, as recv_peek does
 *   1  a CREDIT/HELLO message with arbitrary bytes and lengths
 *   2  a credit value applied to arbitrary sender counters
 *   3  a source rank
 *   4  a slot header (len, inl) as a hostile same-host sender could write it
 *   5  one step of an honest sender/receiver pair (send, release, credit): never rejected,
 *      the window never overflows, counters stay ordered
 * Invariants: each verdict equals an independent model (128-bit arithmetic, no wrap),
 * decode(encode(x)) == x for both headers, and every admitted message stays inside its
 * slot (ASan: buffers are exactly slot-sized).
 */
#include <string.h>

#include "tests/fuzz/fuzz_common.h"
#include "transport/ucx_wire.h"

typedef unsigned __int128 u128;

typedef struct rx {
    int rank, size, slots;
    size_t slot_bytes;
    uint64_t rx_head;     /* receiver: messages released */
    uint64_t tx_tail;     /* honest sender: messages committed */
    uint64_t tx_credit;   /* honest sender: last head seen */
    ucx_slot_hdr_t *hdr;  /* slots headers */
    uint8_t **slot;       /* slots payload buffers, slot_bytes each (exact) */
} rx_t;

static void op_data(rx_t *r, fz_in_t *in)
{
    uint8_t raw[48];
    size_t hlen = fz_u8(in) % 2 ? sizeof(ucx_am_data_hdr_t) : fz_u8(in) % sizeof(raw);
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = fz_u8(in);
    if (fz_u8(in) & 1) { /* a header in the window: seq near the head */
        unsigned span = (r->slots > 0 ? (unsigned)r->slots : 0u) + 2u;
        uint64_t seq = r->rx_head + fz_u8(in) % span;
        memcpy(raw + 8, &seq, sizeof(seq));
    }
    uint32_t hdr_len;
    memcpy(&hdr_len, raw + 4, sizeof(hdr_len));
    size_t dlen = fz_u8(in) & 1 ? fz_u16(in) : hdr_len;

    uint8_t *hbuf = malloc(hlen ? hlen : 1); /* exact size: a longer read is a crash */
    FZ_ASSERT(hbuf != NULL);
    memcpy(hbuf, raw, hlen);
    ucx_am_data_hdr_t h;
    rdx_ucx_wire_status_t ws = rdx_ucx_am_data_decode(hlen ? hbuf : NULL, hlen, &h);
    free(hbuf);
    FZ_ASSERT((ws == RDX_UCX_WIRE_OK) == (hlen == sizeof(h) && hlen > 0));
    FZ_ASSERT(ws == RDX_UCX_WIRE_OK || ws == RDX_UCX_WIRE_BAD_SIZE);
    if (ws != RDX_UCX_WIRE_OK)
        return;
    FZ_ASSERT(memcmp(&h, raw, sizeof(h)) == 0); /* decode(encode(x)) == x */

    ws = rdx_ucx_am_data_admit(&h, dlen, r->rx_head, r->slots, r->slot_bytes);
    int seq_ok = r->slots >= 1 && h.seq >= 1 &&
                 (u128)h.seq >= (u128)r->rx_head + 1 &&
                 (u128)h.seq <= (u128)r->rx_head + (u128)r->slots;
    int len_ok = h.len <= r->slot_bytes && dlen == h.len;
    FZ_ASSERT(ws == (!seq_ok ? RDX_UCX_WIRE_BAD_SEQ
                             : !len_ok ? RDX_UCX_WIRE_BAD_LEN : RDX_UCX_WIRE_OK));
    if (ws != RDX_UCX_WIRE_OK || r->hdr == NULL)
        return;
    /* Store it as ucx_am_data_cb does, then read it back as ucx_recv_peek does. */
    uint64_t s = (h.seq - 1) % (uint64_t)r->slots;
    FZ_ASSERT(s < (uint64_t)r->slots);
    uint8_t *payload = malloc(dlen ? dlen : 1);
    FZ_ASSERT(payload != NULL);
    for (size_t i = 0; i < dlen; i++)
        payload[i] = (uint8_t)(i * 31 + h.seq);
    ucx_slot_hdr_t *sh = &r->hdr[s];
    sh->len = h.len;
    sh->tag = h.tag;
    sh->inl = dlen <= UCX_INLINE_MAX;
    uint8_t *dst = sh->inl ? (uint8_t *)sh->data : r->slot[s];
    if (dlen)
        memcpy(dst, payload, dlen);
    sh->seq = h.seq;
    FZ_ASSERT(rdx_ucx_slot_check(sh->len, sh->inl, r->slot_bytes) == RDX_UCX_WIRE_OK);
    const uint8_t *src = sh->inl ? (const uint8_t *)sh->data : r->slot[s];
    FZ_ASSERT(dlen == 0 || memcmp(src, payload, dlen) == 0);
    free(payload);
}

static void op_ctl(fz_in_t *in)
{
    uint8_t raw[32];
    size_t hlen = fz_u8(in) % 2 ? sizeof(ucx_am_ctl_hdr_t) : fz_u8(in) % sizeof(raw);
    size_t dlen = fz_u8(in) % 3 == 0 ? fz_u8(in) : 0;
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = fz_u8(in);
    if (fz_u8(in) & 1) {
        uint32_t magic = UCX_MAGIC;
        memcpy(raw + 4, &magic, sizeof(magic));
    }
    uint8_t *hbuf = malloc(hlen ? hlen : 1);
    FZ_ASSERT(hbuf != NULL);
    memcpy(hbuf, raw, hlen);
    ucx_am_ctl_hdr_t h;
    rdx_ucx_wire_status_t ws = rdx_ucx_am_ctl_decode(hbuf, hlen, dlen, &h);
    free(hbuf);
    if (hlen != sizeof(h) || dlen != 0) {
        FZ_ASSERT(ws == RDX_UCX_WIRE_BAD_SIZE);
        return;
    }
    FZ_ASSERT(memcmp(&h, raw, sizeof(h)) == 0);
    FZ_ASSERT(ws == (h.magic == UCX_MAGIC ? RDX_UCX_WIRE_OK : RDX_UCX_WIRE_BAD_MAGIC));
}

/* A credit (cumulative head) from the peer, honest or not, applied to (credit, tail). */
static uint64_t credit_apply(uint64_t credit, uint64_t tail, uint64_t head)
{
    uint64_t next = rdx_ucx_credit_next(credit, tail, head);
    FZ_ASSERT(next >= credit);                 /* never goes back */
    FZ_ASSERT(credit > tail || next <= tail);  /* never credits what was not sent */
    FZ_ASSERT(next == (head > credit && head <= tail ? head : credit));
    return next;
}

/* One step of an honest pair: sender commits if it has a credit, receiver releases, the
 * credit goes back. The checks must accept every honest message. */
static void op_honest(rx_t *r, uint8_t what)
{
    if (r->slots < 1 || r->slots > 64)
        return;
    if (what % 3 == 0 && r->tx_tail - r->tx_credit < (uint64_t)r->slots) {
        ucx_am_data_hdr_t h = {.src = 0, .len = (uint32_t)(r->slot_bytes / 2),
                               .seq = r->tx_tail + 1, .tag = what, .credit = 0};
        uint8_t wire[sizeof(h)];
        ucx_am_data_hdr_t back;
        memcpy(wire, &h, sizeof(h)); /* what ucp_am_send_nbx carries */
        FZ_ASSERT(rdx_ucx_am_data_decode(wire, sizeof(wire), &back) == RDX_UCX_WIRE_OK);
        FZ_ASSERT(memcmp(&back, &h, sizeof(h)) == 0);
        FZ_ASSERT(rdx_ucx_am_data_admit(&back, h.len, r->rx_head, r->slots, r->slot_bytes) ==
                  RDX_UCX_WIRE_OK);
        r->tx_tail++;
    } else if (what % 3 == 1 && r->rx_head < r->tx_tail) {
        r->rx_head++;
    } else {
        r->tx_credit = credit_apply(r->tx_credit, r->tx_tail, r->rx_head);
    }
    FZ_ASSERT(r->rx_head <= r->tx_tail && r->tx_credit <= r->rx_head);
    FZ_ASSERT(r->tx_tail - r->rx_head <= (uint64_t)r->slots); /* the window never overflows */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    fz_in_t in = {data, n};
    rx_t r = {0};
    r.size = 1 + fz_u8(&in) % 64;
    r.rank = fz_u8(&in) % r.size;
    uint8_t sl = fz_u8(&in);
    r.slots = sl & 0x80 ? (int8_t)sl : sl % 17; /* negative, zero and 1..16 */
    uint16_t sb = fz_u16(&in);
    r.slot_bytes = sb & 0x8000 ? (size_t)fz_u32(&in) << 8 : sb % 4097;
    /* Counters start at 0 and count messages: 2^63 of them is centuries away, so they
     * never wrap (and the checks may rely on that). */
    r.rx_head = fz_u8(&in) & 1 ? fz_u64(&in) >> 1 : fz_u8(&in);
    r.tx_tail = r.rx_head; /* honest pair state starts in step */
    r.tx_credit = r.rx_head;
    if (r.slots >= 1 && r.slot_bytes <= 4096) { /* materialize the slots for stores */
        r.hdr = calloc((size_t)r.slots, sizeof(*r.hdr));
        r.slot = calloc((size_t)r.slots, sizeof(*r.slot));
        FZ_ASSERT(r.hdr && r.slot);
        for (int i = 0; i < r.slots; i++) {
            r.slot[i] = malloc(r.slot_bytes ? r.slot_bytes : 1);
            FZ_ASSERT(r.slot[i] != NULL);
        }
    }
    for (int ops = 0; in.n > 0 && ops < 256; ops++) {
        switch (fz_u8(&in) % 6) {
        case 0: op_data(&r, &in); break;
        case 1: op_ctl(&in); break;
        case 2: { /* hostile: any counters, any head */
            uint64_t credit = fz_u64(&in), tail = credit + fz_u8(&in);
            credit_apply(credit, tail, fz_u8(&in) & 1 ? fz_u64(&in) : credit + fz_u8(&in));
            break;
        }
        case 3: {
            uint32_t src = fz_u8(&in) & 1 ? fz_u32(&in) : fz_u8(&in);
            FZ_ASSERT(rdx_ucx_wire_src_ok(src, r.rank, r.size) ==
                      (src < (uint32_t)r.size && src != (uint32_t)r.rank));
            break;
        }
        case 4: {
            uint32_t len = fz_u8(&in) & 1 ? fz_u32(&in) : fz_u8(&in), inl = fz_u8(&in) % 3;
            rdx_ucx_wire_status_t ws = rdx_ucx_slot_check(len, inl, r.slot_bytes);
            int ok = len <= r.slot_bytes && (!inl || len <= UCX_INLINE_MAX);
            FZ_ASSERT((ws == RDX_UCX_WIRE_OK) == ok);
            /* What recv_peek hands the collective fits where it points. */
            FZ_ASSERT(!ok || (inl ? len <= sizeof(((ucx_slot_hdr_t *)0)->data)
                                  : len <= r.slot_bytes));
            break;
        }
        case 5: op_honest(&r, fz_u8(&in)); break;
        }
    }
    for (int i = 0; r.slot && i < r.slots; i++)
        free(r.slot[i]);
    free(r.slot);
    free(r.hdr);
    return 0;
}
