/*
 * rdx: low-latency, high-bandwidth collectives for RDMA networks.
 *
 * This header is the public contract. Names here are never renamed; new ones are added.
 *
 * Threading: a communicator is used by one thread at a time (like MPI_THREAD_FUNNELED
 * per communicator). Different communicators may be used from different threads.
 * Ordering: collectives, blocking or not, must be issued in the same order on every rank
 * of a communicator; nonblocking ones complete in the order they were issued.
 */
#ifndef RDX_RDX_H
#define RDX_RDX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Everything declared with RDX_API is exported from librdx; all else is hidden. */
#if defined(__GNUC__)
#define RDX_API __attribute__((visibility("default")))
#else
#define RDX_API
#endif

#define RDX_VERSION_MAJOR 0
#define RDX_VERSION_MINOR 1
#define RDX_VERSION_PATCH 0

typedef struct rdx_comm rdx_comm_t;
typedef struct rdx_request rdx_request_t;
typedef struct rdx_mem rdx_mem_t;

typedef enum {
    RDX_SUCCESS = 0,
    RDX_ERR_INVALID_ARG,  /* a NULL pointer, unknown dtype/op, size overflow, ...   */
    RDX_ERR_NO_MEMORY,    /* malloc, registration or memlock limit                 */
    RDX_ERR_CONFIG,       /* a bad RDX_* variable or rdx_config_t field            */
    RDX_ERR_BOOTSTRAP,    /* rendezvous failed: unreachable, refused, bad key      */
    RDX_ERR_TRANSPORT,    /* the network layer reported an error                   */
    RDX_ERR_TIMEOUT,      /* a wait passed its deadline (RDX_TIMEOUT_MS)           */
    RDX_ERR_PEER_LOST,    /* a peer process died or its connection broke           */
    RDX_ERR_MISMATCH,     /* ranks called different collectives / counts / types   */
    RDX_ERR_UNSUPPORTED,  /* valid request this build or transport cannot do       */
    RDX_ERR_INTERNAL      /* a bug in rdx: please report with RDX_LOG=debug output */
} rdx_status_t;

typedef enum {
    RDX_INT8, RDX_UINT8, RDX_INT32, RDX_UINT32, RDX_INT64, RDX_UINT64,
    RDX_FLOAT16, RDX_BFLOAT16, RDX_FLOAT32, RDX_FLOAT64
} rdx_dtype_t;
#define RDX_DTYPE_COUNT 10

typedef enum { RDX_SUM, RDX_PROD, RDX_MIN, RDX_MAX, RDX_AVG } rdx_op_t;
#define RDX_OP_COUNT 5

/*
 * Explicit configuration. Start from rdx_config_default() (every field "take it from the
 * environment"), then set what you want. Environment variables fill what is left unset.
 */
typedef struct rdx_config {
    int rank;              /* < 0: discover (RDX_RANK, RANK, OMPI_COMM_WORLD_RANK, SLURM_PROCID) */
    int size;              /* < 0: discover, same sources as rank                               */
    const char *addr;      /* rendezvous "host:port"; NULL: RDX_ADDR or MASTER_ADDR:MASTER_PORT */
    const char *job_key;   /* shared secret; NULL: RDX_JOB_KEY                                  */
    const char *transport; /* "ucx" or "verbs"; NULL: RDX_TRANSPORT (default "ucx")             */
    int timeout_ms;        /* <= 0: RDX_TIMEOUT_MS                                              */
} rdx_config_t;

RDX_API void rdx_config_default(rdx_config_t *config);

RDX_API rdx_status_t rdx_comm_init(rdx_comm_t **comm, const rdx_config_t *config /* NULL = from env */);
RDX_API rdx_status_t rdx_comm_destroy(rdx_comm_t *comm);
/*
 * Gives up on comm without waiting for anyone (use it when a peer is unresponsive or the
 * application decided to stop). Every outstanding request of comm, of the communicator it
 * was split from and of every communicator split from those (they share one transport)
 * completes with RDX_ERR_PEER_LOST, and so does every later call on them; only
 * rdx_comm_destroy remains (it then skips its closing barrier). The other ranks learn of it
 * through the bootstrap connections: their current and later calls on the communicator
 * return RDX_ERR_PEER_LOST with "aborted by rank R" (R = rank in the first communicator),
 * within tens of milliseconds while rank 0 is inside an rdx call. Returns RDX_SUCCESS.
 */
RDX_API rdx_status_t rdx_comm_abort(rdx_comm_t *comm);
RDX_API int rdx_comm_rank(const rdx_comm_t *comm);
RDX_API int rdx_comm_size(const rdx_comm_t *comm);
/* Name of the transport in use ("ucx", "verbs"). */
RDX_API const char *rdx_comm_transport(const rdx_comm_t *comm);

/*
 * Collective over comm: ranks with the same color >= 0 form a new communicator, ranked by
 * (key, rank in comm); a rank with color < 0 gets *newcomm = NULL. The new communicator
 * reuses comm's transport connections (no new connection, no new memory), so it is cheap,
 * but comm and everything split from it share one FIFO per pair of ranks: collectives of
 * comm and of a communicator split from it must not be outstanding at the same time (a
 * violation is reported as RDX_ERR_MISMATCH, never mixed up). Use them from one thread.
 * Destroy sub-communicators before comm (rdx_comm_destroy refuses otherwise).
 */
RDX_API rdx_status_t rdx_comm_split(rdx_comm_t *comm, int color, int key, rdx_comm_t **newcomm);

/* sendbuf == recvbuf: in place. AVG sums then scales once by 1/size (integer types divide). */
RDX_API rdx_status_t rdx_allreduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                           rdx_dtype_t dtype, rdx_op_t op);
RDX_API rdx_status_t rdx_iallreduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                            rdx_dtype_t dtype, rdx_op_t op, rdx_request_t **req);

/*
 * The other collectives (NCCL conventions for counts and in-place use):
 *  reduce_scatter: sendbuf holds size*recvcount elements; rank r receives the reduction of
 *                  block r. In place when recvbuf ==
 *                  (char *)sendbuf + rank*recvcount*dtype_size.
 *  allgather:      every rank contributes sendcount elements; recvbuf holds size*sendcount,
 *                  by rank. In place when sendbuf == (char *)recvbuf + rank*sendcount*dtype_size.
 *  broadcast:      root's sendbuf to every rank's recvbuf (sendbuf ignored elsewhere);
 *                  in place when sendbuf == recvbuf.
 *  reduce:         like allreduce, but only root's recvbuf receives the result.
 *  barrier:        returns once every rank has entered it.
 */
RDX_API rdx_status_t rdx_reduce_scatter(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                                size_t recvcount, rdx_dtype_t dtype, rdx_op_t op);
RDX_API rdx_status_t rdx_ireduce_scatter(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                                 size_t recvcount, rdx_dtype_t dtype, rdx_op_t op,
                                 rdx_request_t **req);
RDX_API rdx_status_t rdx_allgather(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                           size_t sendcount, rdx_dtype_t dtype);
RDX_API rdx_status_t rdx_iallgather(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                            size_t sendcount, rdx_dtype_t dtype, rdx_request_t **req);
RDX_API rdx_status_t rdx_broadcast(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                           rdx_dtype_t dtype, int root);
RDX_API rdx_status_t rdx_ibroadcast(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                            rdx_dtype_t dtype, int root, rdx_request_t **req);
RDX_API rdx_status_t rdx_reduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                        rdx_dtype_t dtype, rdx_op_t op, int root);
RDX_API rdx_status_t rdx_ireduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                         rdx_dtype_t dtype, rdx_op_t op, int root, rdx_request_t **req);
RDX_API rdx_status_t rdx_barrier(rdx_comm_t *comm);
RDX_API rdx_status_t rdx_ibarrier(rdx_comm_t *comm, rdx_request_t **req);

/*
 * Point-to-point (NCCL/MPI style): count elements of dtype to or from communicator rank
 * peer (not this rank: RDX_ERR_UNSUPPORTED). Matching has no tags: the k-th send from a to
 * b pairs with the k-th receive b posts for a, and both must have the same count and dtype
 * (otherwise RDX_ERR_MISMATCH naming the peer, never a wrong result).
 *
 * Ordering rule. Point-to-point calls join the communicator's one stream of operations:
 *  - consecutive send/recv calls (no collective between them) form a group whose
 *    operations all progress at once: sends to different peers, receives from different
 *    peers, and a send and a receive with the same peer never wait for each other;
 *  - within a group, sends to one peer go in issue order, one after the other (likewise
 *    receives from one peer);
 *  - a collective issued after a group starts when the group has finished, and a
 *    send/recv issued after a collective starts when the collective has finished.
 * So the two ranks of a pair must issue their sends and receives to each other, and their
 * collectives, in a consistent order (a collective where the peer sent is a mismatch).
 *
 * Deadlock. A message travels through the receiver's slots (RDX_SLOTS x RDX_CHUNK_BYTES
 * per pair), so a send larger than that completes only once the peer receives it. Two
 * ranks that both call blocking rdx_send before rdx_recv therefore deadlock for large
 * messages (reported as RDX_ERR_TIMEOUT after RDX_TIMEOUT_MS), exactly like MPI_Send: post
 * rdx_isend and rdx_irecv and then wait for both. A send completes when its buffer may be
 * reused; a receive when the data is in buf. On verbs, a send from memory given to
 * rdx_mem_register goes zero-copy (the NIC reads the user buffer) when it is large enough.
 */
RDX_API rdx_status_t rdx_send(rdx_comm_t *comm, const void *buf, size_t count, rdx_dtype_t dtype,
                              int peer);
RDX_API rdx_status_t rdx_recv(rdx_comm_t *comm, void *buf, size_t count, rdx_dtype_t dtype,
                              int peer);
RDX_API rdx_status_t rdx_isend(rdx_comm_t *comm, const void *buf, size_t count,
                               rdx_dtype_t dtype, int peer, rdx_request_t **req);
RDX_API rdx_status_t rdx_irecv(rdx_comm_t *comm, void *buf, size_t count, rdx_dtype_t dtype,
                               int peer, rdx_request_t **req);

/* *done = 1 once complete (the request is still valid until rdx_wait or rdx_request_free).
 * RDX_TIMEOUT_MS without progress across polls (rdx_test, rdx_progress) fails the request
 * with RDX_ERR_TIMEOUT, as rdx_wait does. */
RDX_API rdx_status_t rdx_test(rdx_request_t *req, int *done);
/* Waits for completion (at most RDX_TIMEOUT_MS without progress) and frees req. */
RDX_API rdx_status_t rdx_wait(rdx_request_t *req);
/* Drives outstanding nonblocking operations of comm without waiting. */
RDX_API rdx_status_t rdx_progress(rdx_comm_t *comm);

RDX_API rdx_status_t rdx_mem_register(rdx_comm_t *comm, void *buf, size_t bytes, rdx_mem_t **mem);
RDX_API rdx_status_t rdx_mem_deregister(rdx_comm_t *comm, rdx_mem_t *mem);

RDX_API const char *rdx_strerror(rdx_status_t status);
/* The last failure on comm: "rank R: OP ...: peer P: cause". Empty string if none. */
RDX_API const char *rdx_comm_last_error(const rdx_comm_t *comm);

RDX_API size_t rdx_dtype_size(rdx_dtype_t dtype);
RDX_API const char *rdx_dtype_name(rdx_dtype_t dtype);
RDX_API const char *rdx_op_name(rdx_op_t op);

#ifdef __cplusplus
}
#endif
#endif /* RDX_RDX_H */
