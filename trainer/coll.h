/*
 * The trainer's collectives beyond allreduce, built from the public rdx API.
 *
 * Thin wrappers over rdx_broadcast / rdx_allgather / rdx_iallgather (bytes as uint8 or
 * 32-bit words: these move bits, no datatype arithmetic), plus the trainer's checks.
 */
#ifndef RDX_TRAINER_COLL_H
#define RDX_TRAINER_COLL_H

#include <stddef.h>
#include <stdint.h>

#include "rdx/rdx.h"

/* Prints "rdx-train: rank R: WHAT: <status>: <last error>" to stderr; returns st. */
rdx_status_t coll_report(rdx_comm_t *comm, rdx_status_t st, const char *what);

/* buf (bytes) from rank 0 to all. */
rdx_status_t coll_bcast(rdx_comm_t *comm, void *buf, size_t bytes);

/* out[r * bytes_each ...] = rank r's mine; mine may alias out + rank * bytes_each. */
rdx_status_t coll_allgather(rdx_comm_t *comm, const void *mine, void *out, size_t bytes_each);

/* Nonblocking allgather of 32-bit words already placed in out's own slice. */
rdx_status_t coll_allgather_start(rdx_comm_t *comm, uint32_t *out, size_t words_each,
                                  rdx_request_t **req);

/* Bytes one rank sends for an allreduce of `bytes` on a ring of n ranks (model, not counted). */
uint64_t coll_allreduce_wire_bytes(size_t bytes, int n);

/* Bytes one rank sends for an allgather whose gathered vector is `bytes` (ring). */
uint64_t coll_allgather_wire_bytes(size_t bytes, int n);

/*
 * Every rank passes its value; returns RDX_SUCCESS if all are equal, else RDX_ERR_MISMATCH
 * after printing (on every rank, identically) which ranks differ from rank 0, e.g.
 * "rdx-train: rank 1: weights at step 400: ranks disagree: rank 0 has 0x..., different on
 * ranks 2, 3". `what` names the compared quantity.
 */
rdx_status_t coll_check_same(rdx_comm_t *comm, uint64_t value, const char *what);

#endif
