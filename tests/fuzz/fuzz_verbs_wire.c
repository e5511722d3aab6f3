/*
 * libFuzzer target: the pure parts of the verbs wire protocol (transport/verbs_wire.c and
 * transport/verbs.h), which decide what a peer's bytes may make this rank do.
 *
 * Input: a sequence of operations, each a selector byte and its operands:
 *   0  immediate data: a run of counter increments (< 2^31 each, as the protocol
 *      guarantees) sent as data immediates (value mod 2^31) or credit immediates (bit 31
 *      set), as verbs.c encodes them; the receiver's rdx_verbs_imm_extend must recover
 *      every 64-bit counter exactly (decode(encode(x)) == x), and tells credit from data
 *   1  rdx_verbs_imm_extend on arbitrary (last, wire) pairs: the result is the unique
 *      value >= last, < last + 2^31, congruent to wire mod 2^31
 *   2  the address-blob header check (rdx_verbs_wire_check) on a mutated copy of this
 *      rank's header, read out of an exact-size byte buffer as verbs.c reads the allgather
 *   3  pool sizing (rdx_verbs_layout_compute) on arbitrary sizes
 * Each verdict is compared with an independent model; 128-bit arithmetic catches wraps.
 */
#include <string.h>

#include "src/error.h"
#include "tests/fuzz/fuzz_common.h"
#include "transport/verbs.h"

typedef unsigned __int128 u128;

/* The encodings verbs.c puts in imm_data (before htonl): see verbs.h. */
static uint32_t imm_data(uint64_t seq) { return (uint32_t)(seq & RDX_VERBS_IMM_MASK); }
static uint32_t imm_credit(uint64_t released)
{
    return RDX_VERBS_IMM_CREDIT | (uint32_t)(released & RDX_VERBS_IMM_MASK);
}

static void op_imm_stream(fz_in_t *in)
{
    /* Counters start at 0 and never reach 2^63 (messages, not bytes). */
    uint64_t sent = fz_u64(in) >> 1, seen = sent; /* both ends in step */
    int runs = 1 + fz_u8(in) % 16;
    for (int i = 0; i < runs; i++) {
        uint32_t step = fz_u8(in) & 1 ? fz_u32(in) & RDX_VERBS_IMM_MASK : fz_u8(in);
        int credit = fz_u8(in) & 1;
        sent += step;
        uint32_t imm = credit ? imm_credit(sent) : imm_data(sent);
        FZ_ASSERT(((imm & RDX_VERBS_IMM_CREDIT) != 0) == credit); /* kinds never mix */
        uint64_t got = rdx_verbs_imm_extend(seen, imm & RDX_VERBS_IMM_MASK);
        FZ_ASSERT(got == sent);
        seen = got;
    }
}

static void op_imm_any(fz_in_t *in)
{
    uint64_t last = fz_u64(in);
    uint32_t wire = fz_u32(in) & RDX_VERBS_IMM_MASK;
    uint64_t got = rdx_verbs_imm_extend(last, wire);
    uint64_t ahead = got - last; /* mod 2^64: the counter may wrap only at 2^64 */
    FZ_ASSERT(ahead <= RDX_VERBS_IMM_MASK);
    FZ_ASSERT((got & RDX_VERBS_IMM_MASK) == wire);
}

static void op_wire_check(fz_in_t *in)
{
    rdx_verbs_wire_hdr_t mine = {
        .magic = RDX_VERBS_MAGIC, .version = RDX_VERBS_WIRE_VERSION,
        .size = 2 + fz_u8(in) % 30, .slot_bytes = 4096u << (fz_u8(in) % 8),
        .slots = 2 + 2 * (fz_u8(in) % 32), .link_layer = fz_u8(in) % 3,
        .is_global = fz_u8(in) & 1,
    };
    mine.rank = fz_u8(in) % mine.size;
    mine.stride = mine.slot_bytes + RDX_VERBS_PAYLOAD_OFF;
    int from = fz_u8(in) % (mine.size + 2) - 1; /* includes -1 and size: never valid */
    rdx_verbs_wire_hdr_t t = mine;
    t.rank = from;
    uint8_t *blob = malloc(sizeof(t)); /* the header of from's blob, exact size */
    FZ_ASSERT(blob != NULL);
    memcpy(blob, &t, sizeof(t));
    for (int k = fz_u8(in) % 6; k > 0; k--) /* a few byte mutations anywhere */
        blob[fz_u8(in) % sizeof(t)] ^= (uint8_t)(1u << (fz_u8(in) % 8));
    memcpy(&t, blob, sizeof(t));
    rdx_status_t st =
        rdx_verbs_wire_check(&mine, (const rdx_verbs_wire_hdr_t *)(void *)blob, from);
    free(blob);
    rdx_status_t want = RDX_SUCCESS;
    if (t.magic != RDX_VERBS_MAGIC)
        want = RDX_ERR_TRANSPORT;
    else if (t.version != RDX_VERBS_WIRE_VERSION || t.rank != from || t.size != mine.size ||
             t.slots != mine.slots || t.slot_bytes != mine.slot_bytes ||
             t.stride != mine.stride || t.link_layer != mine.link_layer ||
             t.is_global != mine.is_global)
        want = RDX_ERR_MISMATCH;
    FZ_ASSERT(st == want);
}

static void op_layout(fz_in_t *in)
{
    int peers = fz_u8(in) & 1 ? (int)fz_u32(in) : fz_u8(in) - 8;
    int slots = fz_u8(in) & 1 ? (int)fz_u32(in) : fz_u8(in) % 70 - 2;
    size_t slot_bytes = fz_u8(in) & 1 ? (size_t)fz_u64(in) : (size_t)fz_u32(in) % (65u << 20);
    size_t limit = fz_u8(in) & 1 ? (size_t)fz_u64(in) : (size_t)(fz_u16(in)) << 20;
    rdx_verbs_layout_t l;
    memset(&l, 0xa5, sizeof(l));
    rdx_status_t st = rdx_verbs_layout_compute(0, peers, slot_bytes, slots, limit, &l);
    if (slots < 1 || slot_bytes == 0 || peers < 0 || slot_bytes > (1u << 30)) {
        FZ_ASSERT(st == RDX_ERR_CONFIG);
        return;
    }
    u128 stride = RDX_VERBS_PAYLOAD_OFF + ((u128)slot_bytes + 63) / 64 * 64;
    int too_big = (u128)(unsigned)peers * (u128)(unsigned)slots * stride * 2 > (u128)SIZE_MAX;
    if (st != RDX_SUCCESS) { /* the pool limit cannot hold the minimum, or no memory can */
        FZ_ASSERT(st == RDX_ERR_CONFIG && ((limit > 0 && peers > 0) || too_big));
        return;
    }
    FZ_ASSERT(l.slot_bytes > 0 && l.slot_bytes <= slot_bytes);
    FZ_ASSERT(l.slot_bytes == slot_bytes || l.slot_bytes >= RDX_VERBS_MIN_SLOT);
    FZ_ASSERT(l.stride % 64 == 0 && l.stride >= RDX_VERBS_PAYLOAD_OFF + l.slot_bytes);
    FZ_ASSERT(RDX_VERBS_PAYLOAD_OFF - RDX_VERBS_HDR_OFF >= sizeof(rdx_verbs_slot_hdr_t));
    /* The sizes the pool is allocated and registered with must not have wrapped. */
    u128 region = (u128)(unsigned)peers * (u128)(unsigned)slots * (u128)l.stride;
    FZ_ASSERT(region == l.region_bytes && (u128)l.pool_bytes == 2 * region);
    if (limit > 0 && peers > 0)
        FZ_ASSERT(l.pool_bytes <= limit);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    fz_in_t in = {data, n};
    for (int ops = 0; in.n > 0 && ops < 64; ops++) {
        switch (fz_u8(&in) % 4) {
        case 0: op_imm_stream(&in); break;
        case 1: op_imm_any(&in); break;
        case 2: op_wire_check(&in); break;
        case 3: op_layout(&in); break;
        }
    }
    return 0;
}
