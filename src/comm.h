/*
 * The communicator: top of the library. It owns the bootstrap, the transport instance and
 * the queue of running collectives, and turns the public API into collective state machines.
 * Layering: public API (comm.c, request.c) -> collectives/ -> transport/ -> src utilities.
 */
#ifndef RDX_COMM_H
#define RDX_COMM_H

#include <stdbool.h>
#include "collectives/coll.h"
#include "src/bootstrap.h"
#include "src/config.h"
#include "src/error.h"
#include "transport/transport.h"

struct rdx_request {
    rdx_comm_t *comm;
    rdx_coll_op_t op;
    rdx_status_t status;
    bool done;
    bool heap;                 /* from the comm's free list (nonblocking) */
    struct rdx_request *next;  /* queue or free list */
};

struct rdx_mem {
    void *buf;
    size_t bytes;
    rdx_tp_mem_t *tp_mem;
};

/* comm->magic: a live communicator, or the shell of a destroyed one (comm.c keeps the last
 * RDX_COMM_GRAVES shells so a call on a destroyed communicator is a clear error, not a
 * use after free). */
#define RDX_COMM_LIVE 0x43584452u /* "RDXC" */
#define RDX_COMM_DEAD 0x44414544u /* "DEAD" */
#define RDX_COMM_GRAVES 64

struct rdx_comm {
    uint32_t magic;
    rdx_settings_t settings;
    int rank, size;
    rdx_bootstrap_t *bs;
    rdx_tp_props_t props;
    rdx_coll_ctx_t ctx;        /* what collectives see: transport ops + instance, geometry */
    uint32_t seq;              /* collectives issued so far */
    rdx_request_t *head, *tail;/* running collectives, in issue order */
    rdx_request_t *free_reqs;  /* recycled nonblocking requests: no malloc per call */
    rdx_comm_t *parent;        /* rdx_comm_split: shares the parent's bootstrap/transport */
    int children;              /* live communicators split from this one */
    rdx_comm_t *first_child;   /* ... as a list (rdx_comm_abort reaches the whole family) */
    rdx_comm_t *sibling;       /* next child of the same parent */
    int *peer_map;             /* split: my rank -> parent transport peer (ctx.peer_map) */
    rdx_status_t broken;       /* sticky: the first transport/peer/mismatch error */
    unsigned watch_polls;      /* rdx_test/rdx_progress polls without progress */
    uint64_t poll_idle_ns;     /* when those polls last saw progress (0: they did at the last
                                  look): RDX_TIMEOUT_MS applies to polling as to rdx_wait */
    char last_error[RDX_ERRMSG_MAX + 128];
};

/* The communicator that owns the bootstrap and transport comm's family (rdx_comm_split)
 * shares: comm itself unless it was split from another. */
rdx_comm_t *rdx_comm_family_root(rdx_comm_t *comm);

/* Records a failure of `opname` on comm: copies the thread's last error, logs it once. */
rdx_status_t rdx_comm_fail(rdx_comm_t *comm, const char *opname, rdx_status_t st);

/* Failure anywhere in the job (every transport): a rank whose process died, or that broke
 * or aborted and said so, seen through the bootstrap connections shared by comm's family.
 * Cheap when nothing happened (at most one poll() per 10 ms). Call while waiting. */
rdx_status_t rdx_comm_watchdog(rdx_comm_t *comm);

/* comm is breaking with st, recorded by the transport: when st is RDX_ERR_PEER_LOST, waits
 * for the job's verdict from the bootstrap (500 ms at most: a loaded rank 0 may be slow to
 * relay; it usually comes in 10-20 ms), which names the first failure anywhere (a mismatch
 * found by the peer that then left, say). Returns the status to report; the last error
 * then holds its message. */
rdx_status_t rdx_comm_explain(rdx_comm_t *comm, rdx_status_t st);

/* comm just broke with st (its last_error says why): tell every other rank, so nobody waits
 * for this one until a timeout. No-op when the failure came from another rank. */
void rdx_comm_tell_peers(rdx_comm_t *comm, rdx_status_t st);

/* Releases comm's own memory, keeping a small shell (magic RDX_COMM_DEAD) for a while. */
void rdx_comm_bury(rdx_comm_t *comm);

/* Drives the running collectives; *progressed tells whether anything moved. */
rdx_status_t rdx_comm_progress(rdx_comm_t *comm, bool *progressed);

#endif
