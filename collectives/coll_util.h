/*
 * Helpers shared by the algorithms (internal to collectives/): tags, mismatch reports, the
 * split of a vector into blocks and chunks, and the pointer arithmetic every file needs.
 *
 * Tags: the upper 32 bits carry the op fingerprint (sequence, kind, dtype, op, count, root,
 * communicator and algorithm), the lower 32 bits say where in the algorithm's schedule the
 * message belongs (algorithm-specific: step, chunk, tree, ...). A receiver compares the whole
 * tag and the length with what its own schedule expects next from that peer; any difference
 * means the ranks disagree about the collective and is reported as RDX_ERR_MISMATCH.
 */
#ifndef RDX_COLL_UTIL_H
#define RDX_COLL_UTIL_H

#include <string.h>

#include "collectives/coll.h"
#include "src/error.h"
#include "src/log.h"
#include "src/reduce.h"

static inline uint64_t coll_tag(const rdx_coll_op_t *op, uint32_t where)
{
    return ((uint64_t)op->fingerprint << 32) | where;
}

static inline int coll_mod(int a, int n) { return ((a % n) + n) % n; }

static inline char *coll_ptr(void *base, size_t elem, size_t esize)
{
    return (char *)base + elem * esize;
}

static inline const char *coll_cptr(const void *base, size_t elem, size_t esize)
{
    return (const char *)base + elem * esize;
}

/* Part i of `total` split into `parts` nearly equal parts (the first total % parts one
 * larger): [*lo, *lo + *len). Never overflows, whatever total is. */
static inline void coll_part(size_t total, size_t parts, size_t i, size_t *lo, size_t *len)
{
    size_t base = total / parts, rem = total % parts;
    *lo = i * base + (i < rem ? i : rem);
    *len = base + (i < rem ? 1 : 0);
}

static inline size_t coll_div_up(size_t a, size_t b) { return (a + b - 1) / b; }

/* Elements per chunk for op: the model's choice bounded by the slot, at least one element. */
static inline size_t coll_chunk_elems(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op,
                                      size_t esize)
{
    size_t bytes = op->chunk_bytes && op->chunk_bytes < ctx->slot_bytes ? op->chunk_bytes
                                                                         : ctx->slot_bytes;
    size_t e = bytes / esize;
    return e ? e : 1;
}

/* Checks a received message against the expected tag and length; RDX_ERR_MISMATCH if not. */
rdx_status_t coll_check_msg(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, int peer,
                            uint64_t got_tag, size_t got_len, uint64_t want_tag,
                            size_t want_len);

/* Common one-rank / empty handling: copies sendbuf to recvbuf as the kind defines. Returns
 * true when op is complete without any message (size 1, or nothing to move). */
bool coll_trivial(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op);

/* rdx_reduce with AVG's division (div) only on the last combine: dst = a op b [/ div]. */
static inline void coll_combine(const rdx_coll_op_t *op, void *dst, void *dst2, const void *a,
                                const void *b, size_t n, int div)
{
    rdx_reduce_local(op->args.dtype, op->args.op, dst, dst2, a, b, n,
               op->args.op == RDX_AVG ? div : 0);
}

/* ceil(log2(n)) and floor(log2(n)) for n >= 1. */
static inline int coll_log2_ceil(int n)
{
    int l = 0;
    while ((1 << l) < n)
        l++;
    return l;
}

static inline int coll_log2_floor(int n)
{
    int l = 0;
    while ((2 << l) <= n)
        l++;
    return l;
}

/*
 * Fold-in for rank counts that are not powers of two (MPICH): p = 2^floor(log2 n),
 * rem = n - p. Among the first 2 rem ranks, each even rank (an "extra") hands its vector to
 * the odd rank above it (its "proxy") and waits; the proxy reduces both and takes part in the
 * power-of-two algorithm as virtual rank r/2; ranks >= 2 rem are virtual rank r - rem. At the
 * end each proxy sends the result back to its extra. Costs alpha + N beta + N gamma before
 * and alpha + N beta after.
 */
typedef enum { FOLD_PLAIN, FOLD_PROXY, FOLD_EXTRA } coll_fold_role_t;

/* Virtual rank of real rank r (-1 for an extra). */
static inline int coll_fold_vrank(int r, int rem)
{
    if (r < 2 * rem)
        return r % 2 ? r / 2 : -1;
    return r - rem;
}

/* Real rank of virtual rank v. */
static inline int coll_fold_real(int v, int rem) { return v < rem ? 2 * v + 1 : v + rem; }

static inline coll_fold_role_t coll_fold_role(int r, int rem)
{
    if (r >= 2 * rem)
        return FOLD_PLAIN;
    return r % 2 ? FOLD_PROXY : FOLD_EXTRA;
}

/* The peer an algorithm could not move for last, and whether for credit or data: what
 * describe() reports when a collective times out. peer -1: none yet. */
typedef struct coll_wait {
    int peer;
    bool credit;
} coll_wait_t;

/* send_acquire to peer (a communicator rank); a NULL *slot records the wait for credit. */
rdx_status_t coll_acquire(const rdx_coll_ctx_t *ctx, coll_wait_t *w, int peer, void **slot);

/* recv_peek from peer; a NULL *buf records the wait for data, a message is checked against
 * the expected tag and length (coll_check_msg). */
rdx_status_t coll_peek(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, coll_wait_t *w,
                       int peer, uint64_t want, size_t bytes, const void **buf);

#endif
