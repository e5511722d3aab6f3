/*
 * Requests and the progress engine. Collectives run in issue order from the comm's queue;
 * only the head moves (every rank runs the same sequence, so the per-peer FIFOs stay in
 * step). Waiting spins for RDX_SPIN_US, then lets the transport yield or block, so ranks
 * that share a core do not starve each other. The deadline (RDX_TIMEOUT_MS) counts time
 * without any progress, so a large collective that is moving never times out, and a stuck
 * one always does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/comm.h"
#include "src/comm_stall.h"
#include "src/log.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define WAIT_CLOCK_EVERY 16u

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void op_label(const rdx_request_t *r, char *buf, size_t len)
{
    if (rdx_coll_kind_is_p2p(r->op.args.kind)) {
        snprintf(buf, len, "%s #%u %s peer %d (%s count %zu)", r->op.args.kind == RDX_COLL_SEND
                 ? "rdx_send" : "rdx_recv", r->op.seq, r->op.args.kind == RDX_COLL_SEND ?
                 "to" : "from", r->op.args.root, rdx_dtype_name(r->op.args.dtype),
                 r->op.args.count);
        return;
    }
    snprintf(buf, len, "%s #%u (%s %s count %zu root %d)", rdx_coll_kind_name(r->op.args.kind),
             r->op.seq, rdx_dtype_name(r->op.args.dtype), rdx_op_name(r->op.args.op),
             r->op.args.count, r->op.args.root);
}

/* The stream of collectives is broken: fail every queued request with the same status. */
static rdx_status_t comm_break(rdx_comm_t *comm, rdx_status_t st)
{
    char label[160] = "progress";
    st = rdx_comm_explain(comm, st);
    if (comm->head)
        op_label(comm->head, label, sizeof(label));
    rdx_comm_fail(comm, label, st);
    comm->broken = st;
    for (rdx_request_t *r = comm->head; r; r = r->next) {
        r->done = true;
        r->status = st;
    }
    comm->head = comm->tail = NULL;
    rdx_comm_tell_peers(comm, st);
    return st;
}

/* While waiting: has a rank died, broken or aborted anywhere in the job? */
static rdx_status_t comm_watch(rdx_comm_t *comm)
{
    rdx_status_t st = rdx_comm_watchdog(comm);
    return st == RDX_SUCCESS ? st : comm_break(comm, st);
}

/* Point-to-point operations queued one after another form a run whose members all move at
 * once (p2p.c orders them per peer and direction); a run at the head is driven as a whole
 * and its finished members leave the queue wherever they are in it. */
static rdx_status_t p2p_run_progress(rdx_comm_t *comm, bool *progressed)
{
    rdx_request_t **link = &comm->head, *prev = NULL;
    while (*link && rdx_coll_kind_is_p2p((*link)->op.args.kind)) {
        rdx_request_t *r = *link;
        bool moved = false, done = false;
        rdx_status_t st = r->op.algo->progress(&comm->ctx, &r->op, &moved, &done);
        *progressed |= moved;
        if (st != RDX_SUCCESS)
            return st;
        if (!done) {
            prev = r;
            link = &r->next;
            continue;
        }
        r->done = true;
        r->status = RDX_SUCCESS;
        *link = r->next;
        if (comm->tail == r)
            comm->tail = prev;
        r->next = NULL;
    }
    return RDX_SUCCESS;
}

rdx_status_t rdx_comm_progress(rdx_comm_t *comm, bool *progressed)
{
    *progressed = false;
    if (comm->broken)
        return comm->broken;
    if (!comm->head) {
        comm->poll_idle_ns = 0;
        return RDX_SUCCESS;
    }
    if (comm->ctx.tp) {
        rdx_status_t st = comm->ctx.tp_ops->progress(comm->ctx.tp);
        if (st != RDX_SUCCESS)
            return comm_break(comm, st);
    }
    while (comm->head) {
        rdx_request_t *r = comm->head;
        if (rdx_coll_kind_is_p2p(r->op.args.kind)) {
            rdx_status_t st = p2p_run_progress(comm, progressed);
            if (st != RDX_SUCCESS)
                return comm_break(comm, st);
            if (comm->head && rdx_coll_kind_is_p2p(comm->head->op.args.kind))
                break; /* the run is still going: what follows it waits */
            continue;
        }
        bool moved = false, done = false;
        rdx_status_t st = r->op.algo->progress(&comm->ctx, &r->op, &moved, &done);
        *progressed |= moved;
        if (st != RDX_SUCCESS)
            return comm_break(comm, st);
        if (!done)
            break;
        r->done = true;
        r->status = RDX_SUCCESS;
        comm->head = r->next;
        if (!comm->head)
            comm->tail = NULL;
        r->next = NULL;
    }
    if (*progressed) /* rdx_wait's moves count for the pollers' clock too */
        comm->poll_idle_ns = 0;
    return RDX_SUCCESS;
}

/* The wait in comm's head timed out: a mismatch that exchanged no message (the ranks' stall
 * reports differ, src/comm_stall.c), or a hang, reported with where the algorithm stands. */
static rdx_status_t timeout_dump(rdx_comm_t *comm, uint64_t idle_ns)
{
    char label[160], where[256] = "", hint[RDX_ERRMSG_MAX];
    rdx_request_t *r = comm->head;
    op_label(r, label, sizeof(label));
    rdx_status_t verdict = rdx_comm_stall(comm, label, rdx_coll_kind_is_p2p(r->op.args.kind),
                                          hint, sizeof(hint));
    if (verdict != RDX_SUCCESS)
        return comm_break(comm, verdict);
    r->op.algo->describe(&comm->ctx, &r->op, where, sizeof(where));
    rdx_err(RDX_ERR_TIMEOUT, "no progress for %.1f s (RDX_TIMEOUT_MS=%ld): %s; %s; transport %s%s",
            (double)idle_ns / 1e9, comm->settings.timeout_ms, label, where, comm->props.name,
            hint);
    return comm_break(comm, RDX_ERR_TIMEOUT);
}

/* Drives progress until req is done, the comm breaks, or nothing moves for timeout_ms. */
static rdx_status_t comm_wait(rdx_comm_t *comm, rdx_request_t *req)
{
    uint64_t spin_ns = (uint64_t)comm->settings.spin_us * 1000u;
    uint64_t timeout_ns = (uint64_t)comm->settings.timeout_ms * 1000000u;
    /* The clock is first read at the first idle check, not here: an operation that is
     * done within a few polls (a small send, a ping-pong reply) reads it never, which
     * matters where clock_gettime is a syscall (1.2 us in the soft-RoCE guest). */
    uint64_t last_move = 0;
    unsigned idle_polls = 0;
    bool stamp = true; /* something moved since last_move was taken (the call itself) */
    for (;;) {
        bool progressed;
        rdx_status_t st = rdx_comm_progress(comm, &progressed);
        if (req->done)
            return req->status;
        if (st != RDX_SUCCESS)
            return st;
        if (progressed) {
            stamp = true;
            idle_polls = 0;
            continue;
        }
        /* Reading the clock costs about as much as a poll of shared memory: look at it only
         * every WAIT_CLOCK_EVERY empty polls (a few hundred ns late at most). */
        if (++idle_polls % WAIT_CLOCK_EVERY) {
            cpu_relax();
            continue;
        }
        uint64_t now = now_ns();
        if (stamp) {
            last_move = now;
            stamp = false;
        }
        if (now - last_move > timeout_ns)
            return timeout_dump(comm, now - last_move);
        if (now - last_move < spin_ns) {
            cpu_relax();
            continue;
        }
        if (!comm->ctx.tp)
            continue; /* one rank: nothing to wait for */
        if ((st = comm_watch(comm)) != RDX_SUCCESS)
            return st;
        st = comm->ctx.tp_ops->idle(comm->ctx.tp, 1000);
        if (st != RDX_SUCCESS)
            return comm_break(comm, st);
    }
}

static bool ranges_overlap(const void *a, size_t abytes, const void *b, size_t bbytes)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + bbytes && y < x + abytes;
}

/* send/recv must be the same pointer (in place, as the collective defines it) or disjoint. */
static rdx_status_t check_overlap(const void *send, size_t sbytes, const void *recv,
                                  size_t rbytes, bool in_place)
{
    if (in_place || !send || !recv || !sbytes || !rbytes)
        return RDX_SUCCESS;
    if (ranges_overlap(send, sbytes, recv, rbytes))
        return rdx_err(RDX_ERR_INVALID_ARG, "sendbuf and recvbuf overlap without being the "
                       "in-place layout (see rdx.h for each collective's in-place rule)");
    return RDX_SUCCESS;
}

static rdx_status_t check_args(const rdx_comm_t *comm, const rdx_coll_args_t *a)
{
    bool reduces = a->kind == RDX_COLL_ALLREDUCE || a->kind == RDX_COLL_REDUCE_SCATTER ||
                   a->kind == RDX_COLL_REDUCE;
    bool rooted = a->kind == RDX_COLL_BROADCAST || a->kind == RDX_COLL_REDUCE;
    if (a->kind == RDX_COLL_BARRIER)
        return RDX_SUCCESS;
    if ((unsigned)a->dtype >= RDX_DTYPE_COUNT)
        return rdx_err(RDX_ERR_INVALID_ARG, "unknown dtype %d", (int)a->dtype);
    if (reduces && (unsigned)a->op >= RDX_OP_COUNT)
        return rdx_err(RDX_ERR_INVALID_ARG, "unknown op %d", (int)a->op);
    if (rooted && (a->root < 0 || a->root >= comm->size))
        return rdx_err(RDX_ERR_INVALID_ARG, "root %d is not a rank of this communicator "
                       "(size %d)", a->root, comm->size);
    size_t esize = rdx_dtype_size(a->dtype);
    size_t blocks = a->kind == RDX_COLL_REDUCE_SCATTER || a->kind == RDX_COLL_ALLGATHER
                        ? (size_t)comm->size : 1;
    if (a->count > SIZE_MAX / 2 / esize / blocks)
        return rdx_err(RDX_ERR_INVALID_ARG, "count %zu of %s overflows the byte size", a->count,
                       rdx_dtype_name(a->dtype));
    if (!a->count)
        return RDX_SUCCESS;
    size_t bytes = a->count * esize, off = (size_t)comm->rank * bytes;
    bool is_root = a->root == comm->rank;
    bool need_send = a->kind != RDX_COLL_BROADCAST || is_root;
    bool need_recv = a->kind != RDX_COLL_REDUCE || is_root;
    if ((need_send && !a->sendbuf) || (need_recv && !a->recvbuf))
        return rdx_err(RDX_ERR_INVALID_ARG, "%s is NULL with count %zu",
                       need_send && !a->sendbuf ? "sendbuf" : "recvbuf", a->count);
    switch (a->kind) {
    case RDX_COLL_REDUCE_SCATTER:
        return check_overlap(a->sendbuf, bytes * blocks, a->recvbuf, bytes,
                             (const char *)a->sendbuf + off == (const char *)a->recvbuf);
    case RDX_COLL_ALLGATHER:
        return check_overlap(a->sendbuf, bytes, a->recvbuf, bytes * blocks,
                             (const char *)a->recvbuf + off == (const char *)a->sendbuf);
    case RDX_COLL_BROADCAST:
        return is_root ? check_overlap(a->sendbuf, bytes, a->recvbuf, bytes,
                                       a->sendbuf == a->recvbuf)
                       : RDX_SUCCESS;
    case RDX_COLL_REDUCE:
        return is_root ? check_overlap(a->sendbuf, bytes, a->recvbuf, bytes,
                                       a->sendbuf == a->recvbuf)
                       : RDX_SUCCESS;
    default:
        return check_overlap(a->sendbuf, bytes, a->recvbuf, bytes, a->sendbuf == a->recvbuf);
    }
}

static rdx_request_t *request_get(rdx_comm_t *comm)
{
    rdx_request_t *r = comm->free_reqs;
    if (r)
        comm->free_reqs = r->next;
    else if (!(r = malloc(sizeof(*r))))
        return NULL;
    memset(r, 0, offsetof(rdx_request_t, op));
    r->heap = true;
    r->comm = comm;
    return r;
}

static void request_put(rdx_request_t *r)
{
    rdx_comm_t *comm = r->comm;
    r->next = comm->free_reqs;
    comm->free_reqs = r;
}

static rdx_status_t p2p_check(const rdx_comm_t *comm, const rdx_coll_args_t *a)
{
    const char *what = a->kind == RDX_COLL_SEND ? "send" : "recv";
    if ((unsigned)a->dtype >= RDX_DTYPE_COUNT)
        return rdx_err(RDX_ERR_INVALID_ARG, "peer %d: unknown dtype %d", a->root, (int)a->dtype);
    if (a->root < 0 || a->root >= comm->size)
        return rdx_err(RDX_ERR_INVALID_ARG, "peer %d is not a rank of this communicator "
                       "(size %d)", a->root, comm->size);
    if (a->root == comm->rank)
        return rdx_err(RDX_ERR_UNSUPPORTED, "peer %d is this rank: a rank cannot %s itself "
                       "(copy the buffer instead)", a->root, a->kind == RDX_COLL_SEND
                       ? "send to" : "receive from");
    if (a->count > SIZE_MAX / 2 / rdx_dtype_size(a->dtype))
        return rdx_err(RDX_ERR_INVALID_ARG, "peer %d: count %zu of %s overflows the byte size",
                       a->root, a->count, rdx_dtype_name(a->dtype));
    if (a->count && !(a->kind == RDX_COLL_SEND ? a->sendbuf : a->recvbuf))
        return rdx_err(RDX_ERR_INVALID_ARG, "peer %d: %s buffer is NULL with count %zu",
                       a->root, what, a->count);
    return RDX_SUCCESS;
}

/* Validates, starts and queues one collective, send or receive in r. Sends and receives
 * take no collective sequence number: they are ordered per peer (p2p.c). */
static rdx_status_t coll_post(rdx_comm_t *comm, rdx_request_t *r, const char *opname,
                              const rdx_coll_args_t *args)
{
    rdx_err_clear();
    bool p2p = rdx_coll_kind_is_p2p(args->kind);
    rdx_status_t st = p2p ? p2p_check(comm, args) : check_args(comm, args);
    if (st != RDX_SUCCESS)
        return rdx_comm_fail(comm, opname, st);
    if (comm->broken) {
        rdx_err(comm->broken, "the communicator failed earlier: %s", comm->last_error);
        return comm->broken;
    }
    r->comm = comm;
    r->done = false;
    r->status = RDX_SUCCESS;
    r->next = NULL;
    st = p2p ? rdx_p2p_start(&comm->ctx, args, &r->op)
             : rdx_coll_start(&comm->ctx, comm->settings.algo, args, comm->seq, &r->op);
    if (st != RDX_SUCCESS)
        return rdx_comm_fail(comm, opname, st);
    comm->seq += !p2p;
    if (comm->tail)
        comm->tail->next = r;
    else
        comm->head = r;
    comm->tail = r;
    return RDX_SUCCESS;
}

static rdx_status_t coll_blocking(rdx_comm_t *comm, const char *opname, const rdx_coll_args_t *a)
{
    if (!comm)
        return RDX_ERR_INVALID_ARG;
    rdx_request_t r;
    memset(&r, 0, offsetof(rdx_request_t, op));
    rdx_status_t st = coll_post(comm, &r, opname, a);
    if (st != RDX_SUCCESS)
        return st;
    return comm_wait(comm, &r);
}

static rdx_status_t coll_nonblocking(rdx_comm_t *comm, const char *opname,
                                     const rdx_coll_args_t *a, rdx_request_t **req)
{
    if (!comm || !req)
        return RDX_ERR_INVALID_ARG;
    rdx_request_t *r = request_get(comm);
    if (!r)
        return RDX_ERR_NO_MEMORY;
    rdx_status_t st = coll_post(comm, r, opname, a);
    if (st != RDX_SUCCESS) {
        request_put(r);
        return st;
    }
    /* Start moving right away: the first slices go out before the caller computes on. */
    bool progressed;
    (void)rdx_comm_progress(comm, &progressed);
    *req = r;
    return RDX_SUCCESS;
}

#define ARGS(kind_, send_, recv_, count_, dtype_, op_, root_)                              \
    (&(rdx_coll_args_t){.kind = (kind_), .sendbuf = (send_), .recvbuf = (recv_),           \
                        .count = (count_), .dtype = (dtype_), .op = (op_), .root = (root_)})

rdx_status_t rdx_allreduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                           rdx_dtype_t dtype, rdx_op_t op)
{
    return coll_blocking(comm, "rdx_allreduce",
                         ARGS(RDX_COLL_ALLREDUCE, sendbuf, recvbuf, count, dtype, op, -1));
}

rdx_status_t rdx_iallreduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                            rdx_dtype_t dtype, rdx_op_t op, rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_iallreduce",
                            ARGS(RDX_COLL_ALLREDUCE, sendbuf, recvbuf, count, dtype, op, -1), req);
}

rdx_status_t rdx_reduce_scatter(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                                size_t recvcount, rdx_dtype_t dtype, rdx_op_t op)
{
    return coll_blocking(comm, "rdx_reduce_scatter",
                         ARGS(RDX_COLL_REDUCE_SCATTER, sendbuf, recvbuf, recvcount, dtype, op, -1));
}

rdx_status_t rdx_ireduce_scatter(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                                 size_t recvcount, rdx_dtype_t dtype, rdx_op_t op,
                                 rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_ireduce_scatter",
                            ARGS(RDX_COLL_REDUCE_SCATTER, sendbuf, recvbuf, recvcount, dtype, op,
                                 -1), req);
}

rdx_status_t rdx_allgather(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                           size_t sendcount, rdx_dtype_t dtype)
{
    return coll_blocking(comm, "rdx_allgather",
                         ARGS(RDX_COLL_ALLGATHER, sendbuf, recvbuf, sendcount, dtype, RDX_SUM, -1));
}

rdx_status_t rdx_iallgather(rdx_comm_t *comm, const void *sendbuf, void *recvbuf,
                            size_t sendcount, rdx_dtype_t dtype, rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_iallgather",
                            ARGS(RDX_COLL_ALLGATHER, sendbuf, recvbuf, sendcount, dtype, RDX_SUM,
                                 -1), req);
}

rdx_status_t rdx_broadcast(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                           rdx_dtype_t dtype, int root)
{
    return coll_blocking(comm, "rdx_broadcast",
                         ARGS(RDX_COLL_BROADCAST, sendbuf, recvbuf, count, dtype, RDX_SUM, root));
}

rdx_status_t rdx_ibroadcast(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                            rdx_dtype_t dtype, int root, rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_ibroadcast",
                            ARGS(RDX_COLL_BROADCAST, sendbuf, recvbuf, count, dtype, RDX_SUM, root),
                            req);
}

rdx_status_t rdx_reduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                        rdx_dtype_t dtype, rdx_op_t op, int root)
{
    return coll_blocking(comm, "rdx_reduce",
                         ARGS(RDX_COLL_REDUCE, sendbuf, recvbuf, count, dtype, op, root));
}

rdx_status_t rdx_ireduce(rdx_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                         rdx_dtype_t dtype, rdx_op_t op, int root, rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_ireduce",
                            ARGS(RDX_COLL_REDUCE, sendbuf, recvbuf, count, dtype, op, root), req);
}

rdx_status_t rdx_barrier(rdx_comm_t *comm)
{
    return coll_blocking(comm, "rdx_barrier",
                         ARGS(RDX_COLL_BARRIER, NULL, NULL, 0, RDX_UINT8, RDX_SUM, -1));
}

rdx_status_t rdx_ibarrier(rdx_comm_t *comm, rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_ibarrier",
                            ARGS(RDX_COLL_BARRIER, NULL, NULL, 0, RDX_UINT8, RDX_SUM, -1), req);
}

/* After a poll (rdx_test, rdx_progress) that found comm's head still running: every 64th
 * poll without progress reads the clock (a syscall in some VMs) and looks at the watchdog;
 * RDX_TIMEOUT_MS without progress across polls is the same timeout as in rdx_wait. */
static rdx_status_t comm_poll_idle(rdx_comm_t *comm, bool progressed)
{
    if (progressed || (++comm->watch_polls & 63) != 0)
        return RDX_SUCCESS;
    uint64_t now = now_ns(), timeout_ns = (uint64_t)comm->settings.timeout_ms * 1000000u;
    if (comm->poll_idle_ns == 0)
        comm->poll_idle_ns = now;
    else if (now - comm->poll_idle_ns > timeout_ns)
        return timeout_dump(comm, now - comm->poll_idle_ns);
    return comm_watch(comm);
}

rdx_status_t rdx_test(rdx_request_t *req, int *done)
{
    if (!req || !done)
        return RDX_ERR_INVALID_ARG;
    if (!req->done) {
        bool progressed;
        (void)rdx_comm_progress(req->comm, &progressed);
        if (!req->done && req->comm->head)
            (void)comm_poll_idle(req->comm, progressed);
    }
    *done = req->done;
    return req->done ? req->status : RDX_SUCCESS;
}

rdx_status_t rdx_wait(rdx_request_t *req)
{
    if (!req)
        return RDX_ERR_INVALID_ARG;
    rdx_status_t st = req->done ? req->status : comm_wait(req->comm, req);
    request_put(req);
    return st;
}

rdx_status_t rdx_progress(rdx_comm_t *comm)
{
    if (!comm)
        return RDX_ERR_INVALID_ARG;
    bool progressed;
    rdx_status_t st = rdx_comm_progress(comm, &progressed);
    if (st == RDX_SUCCESS && comm->head)
        st = comm_poll_idle(comm, progressed);
    return st;
}

/* ---- point-to-point (collectives/p2p.c; ordering rule in rdx.h) ------------------------ */

rdx_status_t rdx_send(rdx_comm_t *comm, const void *buf, size_t count, rdx_dtype_t dtype,
                      int peer)
{
    return coll_blocking(comm, "rdx_send",
                         ARGS(RDX_COLL_SEND, buf, NULL, count, dtype, RDX_SUM, peer));
}

rdx_status_t rdx_recv(rdx_comm_t *comm, void *buf, size_t count, rdx_dtype_t dtype, int peer)
{
    return coll_blocking(comm, "rdx_recv",
                         ARGS(RDX_COLL_RECV, NULL, buf, count, dtype, RDX_SUM, peer));
}

rdx_status_t rdx_isend(rdx_comm_t *comm, const void *buf, size_t count, rdx_dtype_t dtype,
                       int peer, rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_isend",
                            ARGS(RDX_COLL_SEND, buf, NULL, count, dtype, RDX_SUM, peer), req);
}

rdx_status_t rdx_irecv(rdx_comm_t *comm, void *buf, size_t count, rdx_dtype_t dtype, int peer,
                       rdx_request_t **req)
{
    return coll_nonblocking(comm, "rdx_irecv",
                            ARGS(RDX_COLL_RECV, NULL, buf, count, dtype, RDX_SUM, peer), req);
}
