/*
 * Native verbs transport: internal interfaces shared by transport/verbs*.c and its tests.
 *
 *   verbs_dev.c   device, port and GID selection (RDX_IB_DEV, RDX_IB_GID_INDEX)
 *   verbs_wrap.c  thin libibverbs wrappers: errno/status -> rdx_err, memlock, fork, QP states
 *   verbs_mr.c    registration cache behind mem_register (ref-counted, by address range)
 *   verbs_wire.c  pool sizing and the address-blob check (pure, unit-tested on any host)
 *   verbs.c       the transport: pool, queue pairs, credits, data path, progress
 *
 * Slot layout (receiver's slab and sender's bounce slab alike, `stride` bytes per slot):
 *
 *   0              40                       64                               stride
 *   | (unused)     | hdr: tag,len,seq,credit | payload (slot_bytes, 64-byte aligned) |
 *
 * One RDMA WRITE WITH IMMEDIATE moves [hdr, payload + len) from the bounce slot into the
 * granted remote slot, so header and payload land together and the payload stays aligned.
 * See docs/verbs.md for the protocol.
 */
#ifndef RDX_TRANSPORT_VERBS_H
#define RDX_TRANSPORT_VERBS_H

#include <infiniband/verbs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "transport/transport.h"

/* ---- wire format of the address blob exchanged over the bootstrap ---------------------- */

#define RDX_VERBS_MAGIC 0x56584452u /* "RDXV" little-endian: a byte-order mismatch shows */
#define RDX_VERBS_WIRE_VERSION 1u

typedef struct rdx_verbs_wire_hdr {
    uint32_t magic;
    uint32_t version;
    int32_t rank;
    int32_t size;
    uint64_t slot_bytes;
    uint64_t stride;
    uint32_t slots;
    uint16_t lid;
    uint8_t port;
    uint8_t mtu;            /* enum ibv_mtu of the active port */
    uint8_t link_layer;     /* IBV_LINK_LAYER_* */
    uint8_t is_global;      /* 1: route by GID (RoCE, or IB with a GID index set) */
    uint8_t pad[2];
    int32_t status;         /* rdx_status_t of this rank's local set-up: all fail fast */
    uint8_t gid[16];
} rdx_verbs_wire_hdr_t;

/* Entry j of rank r's blob: r's queue pair to j, and where j's messages land in r. */
typedef struct rdx_verbs_wire_peer {
    uint32_t qpn;
    uint32_t psn;
    uint64_t addr;          /* r's receive slots for messages from j */
    uint32_t rkey;
    uint32_t pad;
} rdx_verbs_wire_peer_t;

static inline size_t rdx_verbs_wire_bytes(int size)
{
    return sizeof(rdx_verbs_wire_hdr_t) + (size_t)size * sizeof(rdx_verbs_wire_peer_t);
}

/* Checks that the header of `from`'s blob matches this rank's (magic, version, sizes). */
rdx_status_t rdx_verbs_wire_check(const rdx_verbs_wire_hdr_t *mine,
                                  const rdx_verbs_wire_hdr_t *theirs, int from);

/* ---- slot layout and pool sizing -------------------------------------------------------- */

#define RDX_VERBS_HDR_OFF 40u
#define RDX_VERBS_PAYLOAD_OFF 64u
#define RDX_VERBS_MIN_SLOT 4096u

typedef struct rdx_verbs_slot_hdr {
    uint64_t tag;
    uint32_t len;
    uint32_t seq;           /* low 32 bits of the message's sequence number on the pair */
    uint32_t credit;        /* piggybacked credit: messages the sender has released from us */
    uint32_t pad;
} rdx_verbs_slot_hdr_t;

typedef struct rdx_verbs_layout {
    size_t slot_bytes;      /* effective payload per slot (may be below the request) */
    size_t stride;          /* bytes per slot including the header area */
    size_t region_bytes;    /* one direction, all peers: peers * slots * stride */
    size_t pool_bytes;      /* receive region + bounce region */
} rdx_verbs_layout_t;

/* Sizes the pool for `peers` peers; shrinks slot_bytes (never below RDX_VERBS_MIN_SLOT)
 * to fit pool_limit. RDX_ERR_CONFIG when even the minimum does not fit. */
rdx_status_t rdx_verbs_layout_compute(int rank, int peers, size_t slot_bytes, int slots,
                                      size_t pool_limit, rdx_verbs_layout_t *out);

/* ---- immediate data --------------------------------------------------------------------- */
/* Bit 31 tells a credit (receiver -> sender, value = messages released so far) from a data
 * message (sender -> receiver, value = its sequence number); both modulo 2^31. */
#define RDX_VERBS_IMM_CREDIT 0x80000000u
#define RDX_VERBS_IMM_MASK 0x7fffffffu

/* Extends a 31-bit counter value seen on the wire to 64 bits given the last known value
 * (counters only grow, and never by 2^31 or more between two messages). */
static inline uint64_t rdx_verbs_imm_extend(uint64_t last, uint32_t wire31)
{
    return last + ((wire31 - (uint32_t)last) & RDX_VERBS_IMM_MASK);
}

/* ---- device selection (verbs_dev.c) ----------------------------------------------------- */

typedef struct rdx_verbs_dev {
    struct ibv_context *ctx;
    char name[64];
    uint8_t port;
    struct ibv_device_attr dev_attr;
    struct ibv_port_attr port_attr;
    int gid_index;          /* -1: LID routing (InfiniBand without RDX_IB_GID_INDEX) */
    union ibv_gid gid;
    int gid_type;           /* IBV_GID_TYPE_*, or -1 if unknown */
    char why[200];          /* how the GID was chosen, printed at info */
    bool soft;              /* soft-RoCE (rxe): the CPU moves the bytes; quirks apply */
} rdx_verbs_dev_t;

/* Opens the device and port of RDX_IB_DEV (or the first active port) and picks the GID. */
rdx_status_t rdx_verbs_dev_open(const rdx_settings_t *s, int rank, rdx_verbs_dev_t *dev);
void rdx_verbs_dev_close(rdx_verbs_dev_t *dev);

/* Preference of one GID table entry for auto-selection; < 0 means unusable.
 * RoCE v2 IPv4-mapped > RoCE v2 IPv6 global > RoCE v1 IPv4-mapped > RoCE v1 global. */
int rdx_verbs_gid_score(const uint8_t raw[16], int gid_type, const char **why);
/* "::ffff:10.0.0.1" or "fe80::1234:..." (compressed IPv6 text form). */
void rdx_verbs_gid_format(const uint8_t raw[16], char *out, size_t outlen);
const char *rdx_verbs_gid_type_name(int gid_type);

/* ---- wrappers (verbs_wrap.c) ------------------------------------------------------------ */

/* ibv_fork_init() unless the kernel makes it unneeded. */
rdx_status_t rdx_verbs_fork_init(int rank);
/* RDX_ERR_NO_MEMORY with a how-to-raise-it message when `bytes` cannot be pinned. */
rdx_status_t rdx_verbs_memlock_check(int rank, size_t bytes);
/* True if this process holds CAP_IPC_LOCK (pinning then ignores RLIMIT_MEMLOCK). */
bool rdx_verbs_has_ipc_lock(void);
rdx_status_t rdx_verbs_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, int rank,
                              const char *what, struct ibv_mr **mr);

typedef struct rdx_verbs_path {
    uint8_t port;
    enum ibv_mtu mtu;
    uint32_t remote_qpn;
    uint32_t remote_psn;
    uint32_t local_psn;
    uint16_t dlid;
    bool is_global;
    union ibv_gid dgid;
    int sgid_index;
    uint8_t traffic_class;
    uint8_t sl;
    uint8_t timeout;
    uint8_t retry_cnt;
} rdx_verbs_path_t;

rdx_status_t rdx_verbs_qp_init(struct ibv_qp *qp, uint8_t port, int rank, int peer);
rdx_status_t rdx_verbs_qp_rtr(struct ibv_qp *qp, const rdx_verbs_path_t *path, int rank, int peer);
rdx_status_t rdx_verbs_qp_rts(struct ibv_qp *qp, const rdx_verbs_path_t *path, int rank, int peer);

/* ---- registration cache (verbs_mr.c) ---------------------------------------------------- */

typedef struct rdx_verbs_mr_cache {
    struct rdx_tp_mem *head;
    struct ibv_pd *pd;
    int rank;
    size_t pinned;          /* bytes registered through the cache */
    size_t pinned_base;     /* bytes pinned otherwise (the pool), for the memlock check */
    int entries;
} rdx_verbs_mr_cache_t;

void rdx_verbs_mr_cache_init(rdx_verbs_mr_cache_t *c, struct ibv_pd *pd, int rank,
                             size_t pinned_base);
/* Deregisters everything left (entries the caller forgot included). */
void rdx_verbs_mr_cache_cleanup(rdx_verbs_mr_cache_t *c);
rdx_status_t rdx_verbs_mr_cache_get(rdx_verbs_mr_cache_t *c, void *buf, size_t bytes,
                                    rdx_tp_mem_t **mem);
rdx_status_t rdx_verbs_mr_cache_put(rdx_verbs_mr_cache_t *c, rdx_tp_mem_t *mem);
/* The registration holding all of [buf, buf + bytes), or NULL (no reference taken: for the
 * zero-copy send path, which must not outlive the user's registration). */
const rdx_tp_mem_t *rdx_verbs_mr_cache_find(const rdx_verbs_mr_cache_t *c, const void *buf,
                                            size_t bytes);

/* Keys and reference count of a registration (for zero-copy users and tests). */
uint32_t rdx_verbs_mem_lkey(const rdx_tp_mem_t *mem);
uint32_t rdx_verbs_mem_rkey(const rdx_tp_mem_t *mem);
int rdx_verbs_mem_refs(const rdx_tp_mem_t *mem);

/* ---- the transport (verbs.c) ------------------------------------------------------------ */

/* The device and GID an existing transport uses (for tests and rdx-info). */
const rdx_verbs_dev_t *rdx_verbs_tp_dev(const rdx_tp_t *tp);
/* Messages and payload bytes sent zero-copy from registered user memory so far (tests). */
void rdx_verbs_tp_zcopy_stats(const rdx_tp_t *tp, uint64_t *msgs, uint64_t *bytes);

#endif
