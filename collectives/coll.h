/*
 * The collectives layer: algorithms as resumable state machines over the transport FIFOs.
 *
 * A collective is started once (start) and then advanced by repeated, non-blocking calls
 * (progress) until done. It never waits: when it cannot move (no message yet, no credit)
 * it returns and the communicator decides whether to spin, yield or block. That is what
 * lets several nonblocking collectives be outstanding and a trainer overlap them with
 * compute. Collectives see only the transport interface, never UCX or verbs.
 */
#ifndef RDX_COLL_H
#define RDX_COLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "rdx/rdx.h"
#include "transport/transport.h"

typedef enum {
    RDX_COLL_ALLREDUCE = 1,
    RDX_COLL_REDUCE_SCATTER,
    RDX_COLL_ALLGATHER,
    RDX_COLL_BROADCAST,
    RDX_COLL_REDUCE,
    RDX_COLL_BARRIER,
    RDX_COLL_SEND,          /* point-to-point (p2p.c): args.root is the peer; not chosen */
    RDX_COLL_RECV           /* by the cost model, so after BARRIER (outside the cache) */
} rdx_coll_kind_t;

static inline bool rdx_coll_kind_is_p2p(rdx_coll_kind_t kind)
{
    return kind == RDX_COLL_SEND || kind == RDX_COLL_RECV;
}

/* "allreduce", "reduce_scatter", ... */
const char *rdx_coll_kind_name(rdx_coll_kind_t kind);

/* Inputs of the alpha-beta-gamma cost model (select.c): alpha = seconds per message on the
 * critical path, overhead = seconds per extra message of a pipelined stream, beta = seconds
 * per byte moved over one link (both directions busy, as in a collective), gamma = seconds
 * per byte reduced. Identical on every rank
 * (rank 0's values are broadcast by rdx_coll_tune), because every rank must pick the same
 * algorithm. */
#define RDX_COLL_FIT_ALGOS 4 /* allreduce: ring, tree, rd, rabenseifner (RDX_ALGO order) */
#define RDX_COLL_FIT_SIZES 6
/* The sizes (bytes) at which rdx-info --calibrate times each allreduce algorithm. */
extern const size_t rdx_coll_fit_bytes[RDX_COLL_FIT_SIZES];

typedef struct rdx_coll_model {
    double alpha_s;      /* one-way latency of a small message */
    double overhead_s;   /* per-message cost that pipelining does not hide (message rate) */
    double beta_s;       /* per byte of a stream of messages (pipelined chunks) */
    double gamma_s;
    char source[96];     /* "built-in defaults", "transport estimate", "calibration FILE" */
    /* Each allreduce algorithm's measured time over its formula's, at rdx_coll_fit_bytes,
     * on fit_ranks ranks (NCCL keeps such per-algorithm efficiencies as constants; here
     * they are measured per machine). 0 ranks: none. They apply only to communicators of
     * fit_ranks ranks: they carry what the formulas miss (cache against memory, how an
     * algorithm's steps use the transport, descheduling), and that depends on the count. */
    int32_t fit_ranks;
    float fit[RDX_COLL_FIT_ALGOS][RDX_COLL_FIT_SIZES];
} rdx_coll_model_t;

/* The model's choices resolved once per communicator (rdx_coll_cache_build): per
 * collective and size bucket (bucket b > 0 holds sizes [2^(b-1), 2^b), chosen as for
 * 2^(b-1); bucket 0 is 0 bytes), the algorithm (index + 1 into select.c's table; 0: none)
 * and the chunk as slot_bytes >> shift (0xff: the algorithm's own). Valid for one (ranks,
 * RDX_ALGO) pair; anything else is evaluated per call, with the same bucketing, so both
 * paths choose the same. */
#define RDX_COLL_BUCKETS 65
typedef struct rdx_coll_cache {
    bool valid;
    int size;
    int setting;
    uint8_t algo[RDX_COLL_BARRIER + 1][RDX_COLL_BUCKETS];
    uint8_t chunk_shift[RDX_COLL_BARRIER + 1][RDX_COLL_BUCKETS];
} rdx_coll_cache_t;

/* What a collective needs from its communicator. */
typedef struct rdx_coll_ctx {
    const rdx_tp_ops_t *tp_ops;
    rdx_tp_t *tp;
    int rank;
    int size;
    size_t slot_bytes;   /* payload bytes of one transport slot */
    int slots;           /* FIFO depth per peer */
    bool check;          /* fingerprint every message (RDX_CHECK) */
    const int *peer_map; /* communicator rank -> transport peer (NULL: identity); set for
                            communicators made by rdx_comm_split, which share the parent's
                            transport */
    uint32_t comm_id;    /* mixed into every fingerprint: a message of another communicator
                            sharing the transport (split) is a mismatch, never accepted */
    rdx_coll_model_t model; /* cost model inputs (rdx_coll_tune); all zero: built-in defaults */
    rdx_coll_cache_t cache; /* choices resolved at init (rdx_coll_tune, rdx_comm_split) */
    struct rdx_p2p_state *p2p; /* per-peer send/recv sequence numbers (p2p.c); allocated at
                                  the first send or recv, owned by this ctx only (a split
                                  copies the pointer: p2p.c notices and makes its own) */
} rdx_coll_ctx_t;

/* The transport peer of communicator rank r. */
static inline int rdx_coll_peer(const rdx_coll_ctx_t *ctx, int r)
{
    return ctx->peer_map ? ctx->peer_map[r] : r;
}

typedef struct rdx_coll_args {
    rdx_coll_kind_t kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count;
    rdx_dtype_t dtype;
    rdx_op_t op;
    int root;
} rdx_coll_args_t;

#define RDX_COLL_STATE_WORDS 64

/* One running collective. The algorithm keeps its private state in `state`. */
typedef struct rdx_coll_op {
    const struct rdx_coll_algo *algo;
    rdx_coll_args_t args;
    uint32_t seq;             /* position in the communicator's collective stream */
    uint32_t fingerprint;     /* hash of (seq, kind, dtype, op, count, root, comm, algo) */
    size_t chunk_bytes;       /* pipelining unit chosen by the cost model (<= slot_bytes);
                                 0: the algorithm's own choice */
    uint64_t state[RDX_COLL_STATE_WORDS];
} rdx_coll_op_t;

typedef struct rdx_coll_algo {
    const char *name;
    rdx_status_t (*start)(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op);
    /* Advances as far as possible without waiting. *progressed = something moved;
     * *done = the result is complete in recvbuf. */
    rdx_status_t (*progress)(const rdx_coll_ctx_t *ctx, rdx_coll_op_t *op, bool *progressed,
                             bool *done);
    /* One line for timeout dumps: step, slice, which peer we are waiting for. */
    void (*describe)(const rdx_coll_ctx_t *ctx, const rdx_coll_op_t *op, char *buf,
                     size_t len);
} rdx_coll_algo_t;

/* The algorithms. Each file opens with its diagram and cost; docs/algorithms.md compares. */
extern const rdx_coll_algo_t rdx_algo_ring_allreduce;      /* ring.c */
extern const rdx_coll_algo_t rdx_algo_ring_reduce_scatter; /* ring.c */
extern const rdx_coll_algo_t rdx_algo_ring_allgather;      /* ring.c */
extern const rdx_coll_algo_t rdx_algo_tree_allreduce;      /* tree.c: double binary tree */
extern const rdx_coll_algo_t rdx_algo_tree_broadcast;      /* tree.c: binary tree */
extern const rdx_coll_algo_t rdx_algo_chain_broadcast;     /* tree.c: pipelined chain */
extern const rdx_coll_algo_t rdx_algo_tree_reduce;         /* tree.c: binary tree */
extern const rdx_coll_algo_t rdx_algo_chain_reduce;        /* tree.c: pipelined chain */
extern const rdx_coll_algo_t rdx_algo_rd_allreduce;        /* rd.c: recursive doubling */
extern const rdx_coll_algo_t rdx_algo_rabenseifner_allreduce; /* rabenseifner.c */
extern const rdx_coll_algo_t rdx_algo_dissemination_barrier;  /* barrier.c */

/* ---- point-to-point (p2p.c) -------------------------------------------------------------- */

extern const rdx_coll_algo_t rdx_algo_p2p_send;             /* p2p.c */
extern const rdx_coll_algo_t rdx_algo_p2p_recv;             /* p2p.c */

/* Starts a send (args->kind RDX_COLL_SEND: sendbuf, count, dtype to communicator rank
 * args->root) or a receive (RDX_COLL_RECV: into recvbuf from rank args->root) in op, with
 * the pair's next sequence number in op->seq. Only the oldest unfinished send to a peer
 * moves (likewise receives), so sends to one peer never interleave their chunks; sends and
 * receives with different peers, and a send and a receive with the same peer, all move at
 * once. The caller validated the arguments. */
rdx_status_t rdx_p2p_start(rdx_coll_ctx_t *ctx, const rdx_coll_args_t *args, rdx_coll_op_t *op);
/* Frees ctx's p2p sequence numbers (no-op if none, or if they belong to another ctx). */
void rdx_p2p_state_free(rdx_coll_ctx_t *ctx);

/* Prepares op for args: chooses the algorithm (RDX_ALGO or the cost model), computes the
 * fingerprint, and starts it. */
rdx_status_t rdx_coll_start(const rdx_coll_ctx_t *ctx, int algo_setting,
                            const rdx_coll_args_t *args, uint32_t seq, rdx_coll_op_t *op);

/* Like rdx_coll_start with a given algorithm (tests, benchmarks); chunk_bytes 0 = model. */
rdx_status_t rdx_coll_start_algo(const rdx_coll_ctx_t *ctx, const rdx_coll_algo_t *algo,
                                 size_t chunk_bytes, const rdx_coll_args_t *args, uint32_t seq,
                                 rdx_coll_op_t *op);

uint32_t rdx_coll_fingerprint(const rdx_coll_args_t *args, uint32_t seq);

/* ---- algorithm choice (select.c) -------------------------------------------------------- */

/* What the cost model decided for one call. */
typedef struct rdx_coll_choice {
    const rdx_coll_algo_t *algo;
    size_t chunk_bytes;
    double predicted_us;
} rdx_coll_choice_t;

/* The choice for (kind, total bytes, ranks) under ctx's model and RDX_ALGO (algo_setting).
 * Bytes: allreduce/broadcast/reduce: count x dtype size; reduce_scatter/allgather: the whole
 * gathered buffer (size x count x dtype size). */
rdx_coll_choice_t rdx_coll_choose(const rdx_coll_ctx_t *ctx, int algo_setting,
                                  rdx_coll_kind_t kind, size_t bytes);

/* Predicted time of one algorithm (cost model, with the measured fit when m has one for
 * `ranks`; used by the table, tests and sweep). */
double rdx_coll_predict_us(const rdx_coll_model_t *m, const rdx_coll_algo_t *algo,
                           rdx_coll_kind_t kind, size_t bytes, int ranks, size_t chunk_bytes);

/* Fills ctx->model: rank 0 reads the calibration file for this transport (path NULL: the
 * default, see rdx_coll_calibration_path), else estimates from props; then broadcasts its
 * values over bs so every rank chooses alike; then builds ctx->cache for algo_setting
 * (RDX_ALGO). Call once at communicator creation, after the transport exists
 * (ctx->size, ctx->slot_bytes, ctx->slots set). bs may be NULL for one rank. */
rdx_status_t rdx_coll_tune(rdx_coll_ctx_t *ctx, const rdx_tp_props_t *props, const char *path,
                           rdx_bootstrap_t *bs, int algo_setting);

/* (Re)builds ctx->cache for ctx->size and algo_setting from ctx->model (rdx_comm_split calls
 * it for the child's size). */
void rdx_coll_cache_build(rdx_coll_ctx_t *ctx, int algo_setting);

/* Default calibration file: $XDG_CACHE_HOME/rdx/calibration, else
 * $HOME/.cache/rdx/calibration. Returns buf, or NULL if neither variable is set. */
const char *rdx_coll_calibration_path(char *buf, size_t len);

/* The calibration key of a transport ("ucx:shm", "ucx:tcp", "verbs:net"). */
void rdx_coll_calibration_key(const rdx_tp_props_t *props, char *buf, size_t len);

/* Writes/replaces the line for key in the calibration file (creating its folder). */
rdx_status_t rdx_coll_calibration_save(const char *path, const char *key,
                                       const rdx_coll_model_t *m);

/* Logs at info, once per call, the chosen algorithm and chunk per collective and size. */
void rdx_coll_log_table(const rdx_coll_ctx_t *ctx, int algo_setting);
/* The same table to a stream (rdx-info). */
void rdx_coll_print_table(const rdx_coll_ctx_t *ctx, int algo_setting, FILE *out);

/* ---- calibration probe (calibrate.c) ---------------------------------------------------- */

/* Measures alpha (an empty token around all ranks), overhead and beta (streams both ways
 * between ranks 0 and 1, and at the same time 2 and 3, ...) over ctx's transport, and gamma
 * locally; every rank of the communicator must call it. Blocks (with timeout_ms) and drives
 * tp progress itself, so no collective may be outstanding. Rank 0's result is the one to
 * keep. */
rdx_status_t rdx_coll_calibrate(const rdx_coll_ctx_t *ctx, long timeout_ms,
                                rdx_coll_model_t *out);

#endif
