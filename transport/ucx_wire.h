/*
 * UCX transport wire formats and their checks, kept pure (no UCX, no transport state) so a
 * fuzzer can drive them with arbitrary bytes: tests/fuzz/fuzz_ucx_wire.c. transport/ucx.c
 * calls exactly these functions on every active message and every shared-memory slot
 * header it reads; see the top of ucx.c for the protocol.
 *
 * Headers are raw host-order structs: both ends run the same build (checked at create with
 * UCX_WIRE_VERSION), and on shared memory the receiver reads the sender's stores directly.
 * The peer is still not trusted: every length, sequence number and rank is checked before
 * it is used as an index or a copy size.
 */
#ifndef RDX_TRANSPORT_UCX_WIRE_H
#define RDX_TRANSPORT_UCX_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UCX_MAGIC 0x55584452u /* "RDXU" little-endian */
#define UCX_LINE 64

/* A small message travels inside its header: the receiver then touches one cache line. */
#define UCX_INLINE_MAX 40

typedef struct ucx_slot_hdr {
    uint64_t seq; /* message number + 1 once the slot holds it */
    uint32_t len;
    uint32_t inl; /* 1: the payload is in data[], not in the slot */
    uint64_t tag;
    uint64_t data[UCX_INLINE_MAX / sizeof(uint64_t)]; /* 8-byte aligned for any dtype */
} ucx_slot_hdr_t;
_Static_assert(sizeof(ucx_slot_hdr_t) == UCX_LINE, "slot header is one cache line");

/* Header of an AM DATA message (payload = the slot's bytes). */
typedef struct ucx_am_data_hdr {
    uint32_t src;
    uint32_t len;
    uint64_t seq;
    uint64_t tag;
    uint64_t credit; /* sender's head for the receiver's messages: piggybacked credit */
} ucx_am_data_hdr_t;

/* Header of an AM CREDIT or HELLO message (no payload). */
typedef struct ucx_am_ctl_hdr {
    uint32_t src;
    uint32_t magic;
    uint64_t value; /* CREDIT: cumulative head */
} ucx_am_ctl_hdr_t;

typedef enum {
    RDX_UCX_WIRE_OK = 0,
    RDX_UCX_WIRE_BAD_SIZE,  /* header not the size of its struct, or a payload where none is */
    RDX_UCX_WIRE_BAD_MAGIC,
    RDX_UCX_WIRE_BAD_SEQ,   /* outside the receive window (head, head + slots] */
    RDX_UCX_WIRE_BAD_LEN    /* longer than a slot (or the inline area), or not the bytes sent */
} rdx_ucx_wire_status_t;

/* True if src names a rank other than this one: messages index peers[src]. */
bool rdx_ucx_wire_src_ok(uint32_t src, int rank, int size);

/* Copies a DATA header out of UCX's buffer; any header_len is safe. */
rdx_ucx_wire_status_t rdx_ucx_am_data_decode(const void *header, size_t header_len,
                                             ucx_am_data_hdr_t *h);
/* Whether DATA message h, carrying data_len bytes, may land in slot (h->seq - 1) % slots of
 * a receiver that has released rx_head messages: the sender never runs more than `slots`
 * messages ahead, and a message fits its slot. */
rdx_ucx_wire_status_t rdx_ucx_am_data_admit(const ucx_am_data_hdr_t *h, size_t data_len,
                                            uint64_t rx_head, int slots, size_t slot_bytes);
/* Copies a CREDIT/HELLO header out (header_len and data_len checked, then the magic; *h is
 * filled whenever the size is right, so a bad magic can name the sender). */
rdx_ucx_wire_status_t rdx_ucx_am_ctl_decode(const void *header, size_t header_len,
                                            size_t data_len, ucx_am_ctl_hdr_t *h);
/* A credit is a cumulative head: it only grows and never passes what was sent (tail). */
uint64_t rdx_ucx_credit_next(uint64_t credit, uint64_t tail, uint64_t head);
/* A ready slot header's len/inl, read once by the receiver: the payload must fit the slot
 * (inline: the header's data area). */
rdx_ucx_wire_status_t rdx_ucx_slot_check(uint32_t len, uint32_t inl, size_t slot_bytes);

#endif
