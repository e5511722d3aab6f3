/*
 * UCX transport: one UCP context and worker per transport instance, endpoints to every peer,
 * and per ordered pair of ranks a FIFO of `slots` slots in the RECEIVER's registered slab.
 *
 * Receiver R's slab (ucp_mem_map ALLOCATE: posix/sysv shared memory when UCX has it):
 *
 *   | slab hdr (magic, rank, nonce) | region for sender a | region for sender b | ...
 *
 *   region:  | ctrl: head (own 128 B) | hdr[0] .. hdr[slots-1] (64 B each) | pad to page |
 *            | payload[0] | payload[1] | ... (stride = slot_bytes rounded to 64)        |
 *
 *   hdr = { seq, len, tag, inline data }: message n (n = 0, 1, ...) lives in slot n % slots
 *   and is ready when hdr.seq == n + 1 (stored last, with release). Messages of up to 40
 *   bytes are copied into the header line, so a small message is one cache-line handoff.
 *   head = messages released by R.
 *
 * Two paths, chosen per direction at create:
 *
 * (a) DIRECT: same host and ucp_rkey_ptr maps R's slab into the sender. send_acquire hands
 *     out R's payload slot itself, send_commit stores len/tag then seq (release); the sender
 *     reads credits from R's head (acquire). No UCX call, no copy: the collective writes its
 *     output straight into the receiver's memory (NCCL's FIFO, with a per-slot seq instead of
 *     a tail counter so the ready flag shares the cache line the receiver reads anyway).
 *     Both counters live in the receiver's slab: on one host they are the same physical
 *     memory either way, and then only the sender needs a mapping.
 *
 * (b) MESSAGES (TCP, verbs through UCX, ...): send_acquire hands out a staging slot of this
 *     rank's own staging slab; send_commit posts ucp_am_send_nbx (AM DATA, header {src, len,
 *     seq, tag, credit}) from it with a preallocated request. R's AM handler copies eager
 *     data into the slot, or starts ucp_am_recv_data_nbx into it for rendezvous, and stores
 *     hdr.seq when the bytes are there; completion order does not matter because R only ever
 *     looks at slot head % slots. Credits go back as the cumulative head: piggybacked on
 *     DATA headers R sends to the sender anyway, otherwise in a CREDIT AM from progress()
 *     and idle(). A rank that waits always calls one of those, so no credit can be withheld
 *     while its sender waits for it.
 *
 * The receive side is identical on both paths (poll hdr.seq of slot head % slots).
 */
#include "transport/transport.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <ucp/api/ucp.h>
#include <ucs/debug/log_def.h>

#include "src/error.h"
#include "src/host.h"
#include "src/log.h"
#include "transport/ucx_wire.h"

#define UCX_WIRE_VERSION 1u
#define UCX_PAGE 4096
#define UCX_CTRL_BYTES 128         /* head alone on an adjacent-line-prefetch pair */
#define UCX_HOSTID_MAX 192
#define UCX_PROGRESS_EVERY 64      /* all-direct: look at the clock every N progress calls */
#define UCX_CLOSE_TIMEOUT_MS 3000L /* bound on endpoint close at destroy */
#define UCX_WATCH_EVERY_MS 100L    /* liveness check of peers UCX cannot watch */

enum { UCX_AM_DATA = 1, UCX_AM_CREDIT = 2, UCX_AM_HELLO = 3 };

/* ---- layout and wire formats --------------------------------------------------------- */

typedef struct ucx_ctrl {
    uint64_t head; /* messages released by the receiver (written by it only) */
    char pad[UCX_CTRL_BYTES - sizeof(uint64_t)];
} ucx_ctrl_t;

/* Slot header and active-message headers: transport/ucx_wire.h. */

typedef struct ucx_slab_hdr {
    uint64_t magic;
    uint64_t rank;
    uint64_t nonce; /* proves a mapping shows the peer's slab, not some other segment */
    char pad[UCX_LINE - 3 * sizeof(uint64_t)];
} ucx_slab_hdr_t;

/* Exchanged at create; everything a rank must agree on or needs to reach another. */
typedef struct ucx_info {
    uint32_t magic;
    uint32_t version;
    int32_t rank;
    int32_t size;
    uint64_t slot_bytes;
    int32_t slots;
    int32_t pad;
    uint64_t pool_bytes;
    uint64_t nonce;
    uint64_t start_time; /* of the process, in clock ticks since boot (/proc/PID/stat) */
    int32_t pid;
    int32_t pad2;
    char hostid[UCX_HOSTID_MAX];
    char pidns[64];
} ucx_info_t;

typedef struct ucx_rkey_blob {
    uint64_t base; /* slab address in the owner's process */
    uint64_t len;  /* packed rkey bytes that follow */
} ucx_rkey_blob_t;

/* ---- state --------------------------------------------------------------------------- */

struct ucx_peer;

/* A preallocated UCP request: UCX keeps its request in the req_size bytes before it. */
typedef struct ucx_op {
    struct rdx_tp *tp;
    struct ucx_peer *peer;
    uint64_t seq;
    int busy;
    union {
        ucx_am_data_hdr_t data; /* UCX 1.13 reads the AM header until the send completes */
        ucx_am_ctl_hdr_t ctl;
    } hdr;
} ucx_op_t;

typedef struct ucx_peer {
    struct rdx_tp *tp;
    int rank;
    bool direct;      /* my messages to it go through its mapped slab */
    bool am_in;       /* its messages to me arrive as active messages */
    bool hello;
    bool lost;
    bool watch;         /* endpoint without error handling: check the process ourselves */
    const char *lost_why;
    pid_t pid;
    uint64_t start_time;
    uint32_t am_flags;  /* UCP_AM_SEND_FLAG_EAGER where rendezvous would need our progress */
    ucs_status_t lost_status;
    ucp_ep_h ep;
    ucp_rkey_h rkey;

    /* receive side: its messages to me, in my slab */
    ucx_ctrl_t *rx_ctrl;
    ucx_slot_hdr_t *rx_hdr;
    char *rx_data;
    uint64_t rx_head;     /* messages released */
    uint64_t credit_sent; /* rx_head value last sent to it (AM path) */
    char *rx_ops;         /* slots ops: rendezvous receives */
    char *credit_op;

    /* send side: my messages to it */
    ucx_ctrl_t *tx_ctrl;  /* direct: its ctrl block for me, mapped */
    ucx_slot_hdr_t *tx_hdr;
    char *tx_data;        /* direct: its payload slots; AM: my staging slots */
    uint64_t tx_tail;     /* messages committed */
    uint64_t tx_credit;   /* last head seen: direct from tx_ctrl, AM from CREDIT/DATA */
    char *tx_ops;         /* slots ops: AM sends */
} ucx_peer_t;

struct rdx_tp {
    int rank;
    int size;
    int slots;
    size_t slot_bytes;
    size_t stride;        /* payload stride */
    size_t region_bytes;  /* one sender's region in a receiver's slab */
    long timeout_ms;
    long connect_timeout_ms;
    unsigned tick;
    long lazy_ms;         /* coarse clock at the last lazy worker progress */
    int n_direct_out, n_direct_in, n_am_out, n_am_in;
    bool block_ok;        /* idle may sleep on the event fd: no peer is polled memory */
    bool credit_maybe;    /* some AM-path credit may be unsent */
    int n_watch;
    long watch_ms;        /* last liveness check */

    ucp_context_h ctx;
    ucp_worker_h worker;
    int efd;
    size_t req_size;      /* rounded UCP request size in front of each ucx_op_t */
    size_t op_stride;
    char *op_mem;

    ucp_mem_h slab_mh;
    char *slab;
    size_t slab_bytes;
    ucp_mem_h stage_mh;
    char *stage;
    size_t stage_bytes;

    ucx_peer_t *peers;    /* indexed by rank; own entry unused */
    uint64_t nonce;
    ucx_am_ctl_hdr_t hello_hdr;

    rdx_status_t fatal;   /* protocol error seen in a callback, reported by the next call */
    char fatal_msg[RDX_ERRMSG_MAX];
    char tls[64];         /* AM transport in use, e.g. "tcp/lo" */
    char detail[160];
    double latency_us, bandwidth_gbs;
};

struct rdx_tp_mem {
    ucp_mem_h memh;
    void *addr;
    size_t bytes;
};

/* ---- small helpers ------------------------------------------------------------------- */

static size_t ucx_round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

static long ucx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static inline uint64_t ucx_load_acq(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ucx_store_rel(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static ucx_op_t *ucx_op_at(const rdx_tp_t *tp, char *base, int i)
{
    return (ucx_op_t *)(base + (size_t)i * tp->op_stride + tp->req_size);
}

static rdx_status_t ucx_status(const rdx_tp_t *tp, const char *op, int peer, ucs_status_t st)
{
    return rdx_err(RDX_ERR_TRANSPORT, "rank %d: ucx %s: peer %d: %s", tp->rank, op, peer,
                   ucs_status_string(st));
}

/* Records the first protocol error seen inside a UCX callback (which cannot return one). */
static void ucx_fatal(rdx_tp_t *tp, rdx_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ucx_fatal(rdx_tp_t *tp, rdx_status_t st, const char *fmt, ...)
{
    if (tp->fatal != RDX_SUCCESS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tp->fatal_msg, sizeof(tp->fatal_msg), fmt, ap);
    va_end(ap);
    tp->fatal = st;
    rdx_log_debug("%s", tp->fatal_msg);
}

static rdx_status_t ucx_fatal_report(const rdx_tp_t *tp)
{
    return rdx_err(tp->fatal, "%s", tp->fatal_msg);
}

static void ucx_peer_mark_lost_why(ucx_peer_t *p, ucs_status_t st, const char *why)
{
    if (p->lost)
        return;
    p->lost = true;
    p->lost_status = st;
    p->lost_why = why;
    rdx_log_debug("rank %d: ucx: peer %d: connection lost: %s", p->tp->rank, p->rank, why);
}

static void ucx_peer_mark_lost(ucx_peer_t *p, ucs_status_t st)
{
    ucx_peer_mark_lost_why(p, st, ucs_status_string(st));
}

static rdx_status_t ucx_peer_lost_err(const rdx_tp_t *tp, const char *op, const ucx_peer_t *p)
{
    return rdx_err(RDX_ERR_PEER_LOST, "rank %d: ucx %s: peer %d: connection lost: %s", tp->rank,
                   op, p->rank, p->lost_why);
}

/* boot id + hostname + IPC namespace: equal only where a shared segment means the same thing */
static void ucx_hostid(char *out, size_t len)
{
    char host[RDX_HOST_KEY_BYTES], ipc[64] = "?";
    rdx_host_key(host);
    ssize_t n = readlink("/proc/self/ns/ipc", ipc, sizeof(ipc) - 1);
    ipc[n > 0 ? n : 0] = '\0';
    snprintf(out, len, "%s|%s", host, ipc);
}

/* State and start time (field 22) of a process; false if it does not exist. */
static bool ucx_proc_stat(pid_t pid, char *state, uint64_t *start)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain spaces and parentheses */
    unsigned long long st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime priority nice threads itrealvalue starttime(22) */
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                            "%*d %*d %*d %llu", state, &st) != 2)
        return false;
    *start = st;
    return true;
}

static void ucx_self_ids(ucx_info_t *in)
{
    char state;
    in->pid = (int32_t)getpid();
    if (!ucx_proc_stat(getpid(), &state, &in->start_time))
        in->start_time = 0;
    ssize_t n = readlink("/proc/self/ns/pid", in->pidns, sizeof(in->pidns) - 1);
    in->pidns[n > 0 ? n : 0] = '\0';
}

static uint64_t ucx_nonce(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
    }
    return v | 1u;
}

/* ---- callbacks ----------------------------------------------------------------------- */

static void ucx_ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    (void)ep;
    ucx_peer_mark_lost(arg, status);
}

static void ucx_send_done(void *request, ucs_status_t status, void *user_data)
{
    (void)request;
    ucx_op_t *op = user_data;
    op->busy = 0;
    if (status != UCS_OK && status != UCS_ERR_CANCELED)
        ucx_peer_mark_lost(op->peer, status);
}

static void ucx_publish(ucx_peer_t *p, uint64_t seq)
{
    ucx_store_rel(&p->rx_hdr[(seq - 1) % (uint64_t)p->tp->slots].seq, seq);
}

static void ucx_rndv_done(void *request, ucs_status_t status, size_t length, void *user_data)
{
    (void)request;
    (void)length;
    ucx_op_t *op = user_data;
    op->busy = 0;
    if (status == UCS_OK) {
        ucx_publish(op->peer, op->seq);
        return;
    }
    if (status != UCS_ERR_CANCELED)
        ucx_peer_mark_lost(op->peer, status);
}

static ucx_peer_t *ucx_am_peer(rdx_tp_t *tp, uint32_t src, const char *what)
{
    if (!rdx_ucx_wire_src_ok(src, tp->rank, tp->size)) {
        ucx_fatal(tp, RDX_ERR_TRANSPORT, "rank %d: ucx recv %s: peer %u: not a peer rank",
                  tp->rank, what, src);
        return NULL;
    }
    return &tp->peers[src];
}

static void ucx_credit_update(ucx_peer_t *p, uint64_t head)
{
    p->tx_credit = rdx_ucx_credit_next(p->tx_credit, p->tx_tail, head);
}

static ucs_status_t ucx_rndv_start(rdx_tp_t *tp, ucx_peer_t *p, uint64_t seq, void *desc,
                                   void *buf, size_t len)
{
    int slot = (int)((seq - 1) % (uint64_t)tp->slots);
    ucx_op_t *op = ucx_op_at(tp, p->rx_ops, slot);
    if (op->busy) {
        ucx_fatal(tp, RDX_ERR_TRANSPORT, "rank %d: ucx recv: peer %d: slot %d still receiving",
                  tp->rank, p->rank, slot);
        return UCS_ERR_NO_RESOURCE;
    }
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_REQUEST | UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH,
        .request = op,
        .cb.recv_am = ucx_rndv_done,
        .user_data = op,
        .memh = tp->slab_mh,
    };
    op->seq = seq;
    op->busy = 1;
    ucs_status_ptr_t r = ucp_am_recv_data_nbx(tp->worker, desc, buf, len, &prm);
    if (r == NULL) {
        op->busy = 0;
        ucx_publish(p, seq);
    } else if (UCS_PTR_IS_ERR(r)) {
        op->busy = 0;
        ucx_peer_mark_lost(p, UCS_PTR_STATUS(r));
    }
    return UCS_OK;
}

static ucs_status_t ucx_am_data_cb(void *arg, const void *header, size_t header_length,
                                   void *data, size_t length, const ucp_am_recv_param_t *param)
{
    rdx_tp_t *tp = arg;
    ucx_am_data_hdr_t h;
    if (rdx_ucx_am_data_decode(header, header_length, &h) != RDX_UCX_WIRE_OK) {
        ucx_fatal(tp, RDX_ERR_TRANSPORT, "rank %d: ucx recv data: header of %zu bytes",
                  tp->rank, header_length);
        return UCS_OK;
    }
    ucx_peer_t *p = ucx_am_peer(tp, h.src, "data");
    if (!p)
        return UCS_OK;
    ucx_credit_update(p, h.credit);
    /* The sender never has more than `slots` messages beyond our head. */
    if (!p->am_in ||
        rdx_ucx_am_data_admit(&h, length, p->rx_head, tp->slots, tp->slot_bytes) !=
            RDX_UCX_WIRE_OK) {
        ucx_fatal(tp, RDX_ERR_TRANSPORT,
                  "rank %d: ucx recv data: peer %d: bad message seq %" PRIu64 " len %u/%zu "
                  "(head %" PRIu64 ", %d slots of %zu)",
                  tp->rank, p->rank, h.seq, h.len, length, p->rx_head, tp->slots,
                  tp->slot_bytes);
        return UCS_OK;
    }
    uint64_t slot = (h.seq - 1) % (uint64_t)tp->slots;
    ucx_slot_hdr_t *sh = &p->rx_hdr[slot];
    char *buf = p->rx_data + slot * tp->stride;
    sh->len = h.len;
    sh->tag = h.tag;
    sh->inl = 0;
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)
        return ucx_rndv_start(tp, p, h.seq, data, buf, length);
    if (length <= UCX_INLINE_MAX) {
        sh->inl = 1;
        buf = (char *)sh->data;
    }
    if (length)
        memcpy(buf, data, length);
    ucx_publish(p, h.seq);
    return UCS_OK;
}

static ucs_status_t ucx_am_ctl_cb(void *arg, const void *header, size_t header_length,
                                  void *data, size_t length, const ucp_am_recv_param_t *param,
                                  int id)
{
    (void)data;
    (void)param;
    rdx_tp_t *tp = arg;
    ucx_am_ctl_hdr_t h;
    rdx_ucx_wire_status_t ws = rdx_ucx_am_ctl_decode(header, header_length, length, &h);
    if (ws == RDX_UCX_WIRE_BAD_SIZE) {
        ucx_fatal(tp, RDX_ERR_TRANSPORT, "rank %d: ucx recv control: header %zu data %zu bytes",
                  tp->rank, header_length, length);
        return UCS_OK;
    }
    ucx_peer_t *p = ucx_am_peer(tp, h.src, "control");
    if (!p)
        return UCS_OK;
    if (ws != RDX_UCX_WIRE_OK) {
        ucx_fatal(tp, RDX_ERR_TRANSPORT, "rank %d: ucx recv control: peer %d: bad magic 0x%x",
                  tp->rank, p->rank, h.magic);
        return UCS_OK;
    }
    if (id == UCX_AM_HELLO)
        p->hello = true;
    else
        ucx_credit_update(p, h.value);
    return UCS_OK;
}

static ucs_status_t ucx_am_credit_cb(void *arg, const void *header, size_t header_length,
                                     void *data, size_t length, const ucp_am_recv_param_t *param)
{
    return ucx_am_ctl_cb(arg, header, header_length, data, length, param, UCX_AM_CREDIT);
}

static ucs_status_t ucx_am_hello_cb(void *arg, const void *header, size_t header_length,
                                    void *data, size_t length, const ucp_am_recv_param_t *param)
{
    return ucx_am_ctl_cb(arg, header, header_length, data, length, param, UCX_AM_HELLO);
}

/* ---- create: context, worker, handlers ----------------------------------------------- */

static rdx_status_t ucx_context_create(rdx_tp_t *tp, const rdx_settings_t *s)
{
    ucp_config_t *cfg;
    ucs_status_t st = ucp_config_read(NULL, NULL, &cfg);
    if (st != UCS_OK)
        return ucx_status(tp, "config_read", -1, st);
    if (s && s->ucx_tls[0]) {
        st = ucp_config_modify(cfg, "TLS", s->ucx_tls);
        if (st != UCS_OK) {
            ucp_config_release(cfg);
            return rdx_err(RDX_ERR_CONFIG, "rank %d: ucx config: RDX_UCX_TLS=%s rejected: %s",
                           tp->rank, s->ucx_tls, ucs_status_string(st));
        }
    }
    ucp_params_t prm = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS,
        .features = UCP_FEATURE_AM | UCP_FEATURE_RMA | UCP_FEATURE_WAKEUP,
        .estimated_num_eps = (size_t)tp->size,
    };
    st = ucp_init(&prm, cfg, &tp->ctx);
    ucp_config_release(cfg);
    if (st != UCS_OK) {
        tp->ctx = NULL;
        return ucx_status(tp, "init", -1, st);
    }
    ucp_context_attr_t attr = {.field_mask = UCP_ATTR_FIELD_REQUEST_SIZE};
    st = ucp_context_query(tp->ctx, &attr);
    if (st != UCS_OK)
        return ucx_status(tp, "context_query", -1, st);
    tp->req_size = ucx_round_up(attr.request_size, UCX_LINE);
    tp->op_stride = tp->req_size + ucx_round_up(sizeof(ucx_op_t), UCX_LINE);
    return RDX_SUCCESS;
}

static rdx_status_t ucx_handler_set(rdx_tp_t *tp, unsigned id, ucp_am_recv_callback_t cb)
{
    ucp_am_handler_param_t prm = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS,
        .id = id,
        .cb = cb,
        .arg = tp,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
    };
    ucs_status_t st = ucp_worker_set_am_recv_handler(tp->worker, &prm);
    return st == UCS_OK ? RDX_SUCCESS : ucx_status(tp, "set_am_recv_handler", -1, st);
}

static rdx_status_t ucx_worker_create(rdx_tp_t *tp)
{
    ucp_worker_params_t prm = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    ucs_status_t st = ucp_worker_create(tp->ctx, &prm, &tp->worker);
    if (st != UCS_OK) {
        tp->worker = NULL;
        return ucx_status(tp, "worker_create", -1, st);
    }
    st = ucp_worker_get_efd(tp->worker, &tp->efd);
    if (st != UCS_OK)
        return ucx_status(tp, "worker_get_efd", -1, st);
    RDX_CHECK(ucx_handler_set(tp, UCX_AM_DATA, ucx_am_data_cb));
    RDX_CHECK(ucx_handler_set(tp, UCX_AM_CREDIT, ucx_am_credit_cb));
    RDX_CHECK(ucx_handler_set(tp, UCX_AM_HELLO, ucx_am_hello_cb));
    return RDX_SUCCESS;
}

/* ---- create: agreement and sizing ---------------------------------------------------- */

static rdx_status_t ucx_info_check(const rdx_tp_t *tp, const ucx_info_t *all)
{
    char bad[128] = "";
    size_t used = 0;
    int nbad = 0;
    for (int r = 0; r < tp->size; r++) {
        const ucx_info_t *in = &all[r];
        if (in->magic != UCX_MAGIC || in->version != UCX_WIRE_VERSION || in->rank != r ||
            in->size != tp->size)
            return rdx_err(RDX_ERR_BOOTSTRAP,
                           "rank %d: ucx create: peer %d sent a bad transport record (magic "
                           "0x%x version %u rank %d size %d; expected version %u size %d)",
                           tp->rank, r, in->magic, in->version, in->rank, in->size,
                           UCX_WIRE_VERSION, tp->size);
        if (in->slot_bytes != all[0].slot_bytes || in->slots != all[0].slots) {
            if (used < sizeof(bad))
                used += (size_t)snprintf(bad + used, sizeof(bad) - used, "%s%d (%" PRIu64
                                         " B x %d)", nbad ? ", " : "", r, in->slot_bytes,
                                         in->slots);
            nbad++;
        }
    }
    if (nbad)
        return rdx_err(RDX_ERR_CONFIG,
                       "rank %d: ucx create: ranks disagree on RDX_CHUNK_BYTES/RDX_SLOTS: rank 0 "
                       "has %" PRIu64 " B x %d slots, different on rank(s) %s",
                       tp->rank, all[0].slot_bytes, all[0].slots, bad);
    return RDX_SUCCESS;
}

static size_t ucx_region_bytes(size_t stride, int slots)
{
    size_t meta = ucx_round_up(UCX_CTRL_BYTES + (size_t)slots * sizeof(ucx_slot_hdr_t), UCX_PAGE);
    return meta + ucx_round_up((size_t)slots * stride, UCX_PAGE);
}

/* Worst case per peer: its receive region plus a staging copy of the slots (message path).
 * Every rank computes the same answer from agreed numbers, so slots stay equal everywhere. */
static size_t ucx_pool_need(size_t stride, int slots, int npeers)
{
    size_t stage = ucx_round_up((size_t)slots * stride, UCX_PAGE);
    return UCX_PAGE + (size_t)npeers * (ucx_region_bytes(stride, slots) + stage);
}

static rdx_status_t ucx_slots_fit(rdx_tp_t *tp, const ucx_info_t *all, int asked)
{
    uint64_t pool = UINT64_MAX;
    for (int r = 0; r < tp->size; r++)
        if (all[r].pool_bytes < pool)
            pool = all[r].pool_bytes;
    int npeers = tp->size - 1;
    int slots = asked;
    while (slots > 2 && ucx_pool_need(tp->stride, slots, npeers) > pool)
        slots -= 2;
    size_t need = ucx_pool_need(tp->stride, slots, npeers);
    if (need > pool)
        return rdx_err(RDX_ERR_CONFIG,
                       "rank %d: ucx create: a pool of %" PRIu64 " MiB cannot hold 2 slots of "
                       "%zu bytes for each of %d peers (needs %zu MiB): raise RDX_POOL_MB or "
                       "lower RDX_CHUNK_BYTES",
                       tp->rank, pool >> 20, tp->slot_bytes, npeers, (need + (1u << 20) - 1) >> 20);
    if (slots != asked)
        rdx_log_info("ucx: pool of %" PRIu64 " MiB holds %d slots (asked %d) of %zu bytes for %d "
                     "peers",
                     pool >> 20, slots, asked, tp->slot_bytes, npeers);
    tp->slots = slots;
    tp->region_bytes = ucx_region_bytes(tp->stride, slots);
    return RDX_SUCCESS;
}

/* ---- create: registered memory ------------------------------------------------------- */

static rdx_status_t ucx_mem_alloc(rdx_tp_t *tp, size_t bytes, ucp_mem_h *mh, char **addr)
{
    ucp_mem_map_params_t prm = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                      UCP_MEM_MAP_PARAM_FIELD_FLAGS,
        .address = NULL,
        .length = bytes,
        .flags = UCP_MEM_MAP_ALLOCATE,
    };
    ucs_status_t st = ucp_mem_map(tp->ctx, &prm, mh);
    if (st != UCS_OK) {
        *mh = NULL;
        return rdx_err(st == UCS_ERR_NO_MEMORY ? RDX_ERR_NO_MEMORY : RDX_ERR_TRANSPORT,
                       "rank %d: ucx mem_map: peer -1: allocating %zu bytes: %s", tp->rank,
                       bytes, ucs_status_string(st));
    }
    ucp_mem_attr_t attr = {.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS};
    st = ucp_mem_query(*mh, &attr);
    if (st != UCS_OK)
        return ucx_status(tp, "mem_query", -1, st);
    *addr = attr.address;
    return RDX_SUCCESS;
}

/* Index of sender s's region in receiver r's slab. */
static size_t ucx_region_index(int s, int r) { return (size_t)(s < r ? s : s - 1); }

static char *ucx_region(const rdx_tp_t *tp, char *slab, int sender, int receiver)
{
    return slab + UCX_PAGE + ucx_region_index(sender, receiver) * tp->region_bytes;
}

static void ucx_region_split(const rdx_tp_t *tp, char *region, ucx_ctrl_t **ctrl,
                             ucx_slot_hdr_t **hdr, char **data)
{
    *ctrl = (ucx_ctrl_t *)region;
    *hdr = (ucx_slot_hdr_t *)(region + UCX_CTRL_BYTES);
    *data = region + ucx_round_up(UCX_CTRL_BYTES + (size_t)tp->slots * sizeof(ucx_slot_hdr_t),
                                  UCX_PAGE);
}

static rdx_status_t ucx_slab_create(rdx_tp_t *tp)
{
    tp->slab_bytes = UCX_PAGE + (size_t)(tp->size - 1) * tp->region_bytes;
    RDX_CHECK(ucx_mem_alloc(tp, tp->slab_bytes, &tp->slab_mh, &tp->slab));
    /* Headers and counters must read 0 before any peer can see the slab (heap-backed
     * allocations are not zeroed). Payloads need no clearing. */
    ucx_slab_hdr_t *sh = (ucx_slab_hdr_t *)tp->slab;
    memset(sh, 0, sizeof(*sh));
    sh->magic = UCX_MAGIC;
    sh->rank = (uint64_t)tp->rank;
    sh->nonce = tp->nonce;
    for (int s = 0; s < tp->size; s++) {
        if (s == tp->rank)
            continue;
        ucx_peer_t *p = &tp->peers[s];
        char *region = ucx_region(tp, tp->slab, s, tp->rank);
        ucx_region_split(tp, region, &p->rx_ctrl, &p->rx_hdr, &p->rx_data);
        memset(region, 0, (size_t)(p->rx_data - region));
    }
    return RDX_SUCCESS;
}

/* ---- create: exchange and connection ------------------------------------------------- */

/* Allgather of a variable-length blob: lengths first, then blobs padded to the longest. */
static rdx_status_t ucx_allgather_var(rdx_tp_t *tp, rdx_bootstrap_t *bs, const void *mine,
                                      size_t len, char **all, size_t *stride)
{
    uint64_t *lens = calloc((size_t)tp->size, sizeof(*lens));
    if (!lens)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx create: allgather lengths", tp->rank);
    uint64_t my = len;
    rdx_status_t st = rdx_bootstrap_allgather(bs, &my, sizeof(my), lens);
    size_t max = 0;
    for (int r = 0; st == RDX_SUCCESS && r < tp->size; r++)
        max = lens[r] > max ? lens[r] : max;
    free(lens);
    RDX_CHECK(st);
    max = ucx_round_up(max ? max : 1, 8);
    if (max > RDX_BOOTSTRAP_MAX_PAYLOAD / (size_t)tp->size)
        return rdx_err(RDX_ERR_BOOTSTRAP, "rank %d: ucx create: blob of %zu bytes too large",
                       tp->rank, max);
    char *pad = calloc(1, max);
    char *buf = calloc((size_t)tp->size, max);
    if (!pad || !buf) {
        free(pad);
        free(buf);
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx create: allgather of %zu bytes", tp->rank,
                       max * (size_t)tp->size);
    }
    memcpy(pad, mine, len);
    st = rdx_bootstrap_allgather(bs, pad, max, buf);
    free(pad);
    if (st != RDX_SUCCESS) {
        free(buf);
        return st;
    }
    *all = buf;
    *stride = max;
    return RDX_SUCCESS;
}

/* While probing for peer-failure handling, UCX's "no transport" complaint is expected. */
static ucs_log_func_rc_t ucx_log_quiet(const char *file, unsigned line, const char *function,
                                       ucs_log_level_t level,
                                       const ucs_log_component_config_t *comp,
                                       const char *message, va_list ap)
{
    if (!strstr(file, "select.c"))
        return UCS_LOG_FUNC_RC_CONTINUE;
    if (rdx_log_level() >= RDX_LOG_DEBUG) {
        char buf[512];
        va_list aq;
        va_copy(aq, ap);
        vsnprintf(buf, sizeof(buf), message, aq);
        va_end(aq);
        rdx_log_debug("ucx: (probing error handling) %s", buf);
    }
    return UCS_LOG_FUNC_RC_STOP;
}

/* Whether peer r, on this host and in this PID namespace, has exited (or is exiting): a
 * connection to a process that died during set-up fails with a shared-memory or connection
 * error, which is the peer's loss, not a transport fault. Looks for up to 200 ms: the
 * segment can vanish a moment before the process is reaped. */
static bool ucx_info_peer_gone(const ucx_info_t *info, int me, int r)
{
    if (strcmp(info[r].hostid, info[me].hostid) != 0 ||
        strcmp(info[r].pidns, info[me].pidns) != 0 || info[r].start_time == 0)
        return false;
    for (int i = 0; i < 20; i++) {
        char state;
        uint64_t start;
        if (!ucx_proc_stat(info[r].pid, &state, &start) || start != info[r].start_time ||
            state == 'Z' || state == 'X')
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static rdx_status_t ucx_peers_connect(rdx_tp_t *tp, rdx_bootstrap_t *bs, const ucx_info_t *info)
{
    ucp_address_t *addr;
    size_t alen;
    ucs_status_t us = ucp_worker_get_address(tp->worker, &addr, &alen);
    if (us != UCS_OK)
        return ucx_status(tp, "worker_get_address", -1, us);
    char *all;
    size_t stride;
    rdx_status_t st = ucx_allgather_var(tp, bs, addr, alen, &all, &stride);
    ucp_worker_release_address(tp->worker, addr);
    RDX_CHECK(st);
    for (int r = 0; r < tp->size && st == RDX_SUCCESS; r++) {
        if (r == tp->rank)
            continue;
        ucx_peer_t *p = &tp->peers[r];
        ucp_ep_params_t prm = {
            .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                          UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER,
            .address = (const ucp_address_t *)(all + (size_t)r * stride),
            .err_mode = UCP_ERR_HANDLING_MODE_PEER,
            .err_handler = {.cb = ucx_ep_err_cb, .arg = p},
        };
        ucs_log_push_handler(ucx_log_quiet);
        us = ucp_ep_create(tp->worker, &prm, &p->ep);
        ucs_log_pop_handler();
        if (us == UCS_ERR_UNREACHABLE) {
            /* UCX 1.13's shared-memory transports cannot report peer failure: connect without
             * it and watch the peer's process instead (ucx_peers_watch). */
            prm.err_mode = UCP_ERR_HANDLING_MODE_NONE;
            prm.field_mask &= ~(uint64_t)UCP_EP_PARAM_FIELD_ERR_HANDLER;
            us = ucp_ep_create(tp->worker, &prm, &p->ep);
            p->watch = us == UCS_OK;
            rdx_log_debug("ucx: peer %d: no UCX transport to it handles peer failure: "
                          "connected without (%s)", r, ucs_status_string(us));
        }
        if (us != UCS_OK) {
            p->ep = NULL;
            st = ucx_info_peer_gone(info, tp->rank, r)
                     ? rdx_err(RDX_ERR_PEER_LOST, "rank %d: ucx ep_create: peer %d: process "
                               "exited during connection set-up (%s)", tp->rank, r,
                               ucs_status_string(us))
                     : ucx_status(tp, "ep_create", r, us);
        }
    }
    free(all);
    return st;
}

/* Maps peer r's slab if it is on this host and UCX can expose it; false keeps messages. */
static bool ucx_peer_map(rdx_tp_t *tp, ucx_peer_t *p, const ucx_rkey_blob_t *blob,
                         uint64_t nonce)
{
    ucs_status_t st = ucp_ep_rkey_unpack(p->ep, blob + 1, &p->rkey);
    if (st != UCS_OK) {
        p->rkey = NULL;
        rdx_log_debug("ucx: peer %d: rkey_unpack: %s: using messages", p->rank,
                      ucs_status_string(st));
        return false;
    }
    void *base;
    st = ucp_rkey_ptr(p->rkey, blob->base, &base);
    if (st != UCS_OK) {
        rdx_log_debug("ucx: peer %d: rkey_ptr: %s: using messages", p->rank,
                      ucs_status_string(st));
        return false;
    }
    const ucx_slab_hdr_t *sh = base;
    if (sh->magic != UCX_MAGIC || sh->rank != (uint64_t)p->rank || sh->nonce != nonce) {
        rdx_log_warn("ucx: peer %d: rkey_ptr mapped a segment that is not its slab: using "
                     "messages",
                     p->rank);
        return false;
    }
    char *region = ucx_region(tp, base, tp->rank, p->rank);
    ucx_region_split(tp, region, &p->tx_ctrl, &p->tx_hdr, &p->tx_data);
    return true;
}

static rdx_status_t ucx_peers_map(rdx_tp_t *tp, rdx_bootstrap_t *bs, const ucx_info_t *info)
{
    void *rk;
    size_t rklen;
    ucs_status_t us = ucp_rkey_pack(tp->ctx, tp->slab_mh, &rk, &rklen);
    if (us != UCS_OK)
        return ucx_status(tp, "rkey_pack", -1, us);
    size_t mylen = sizeof(ucx_rkey_blob_t) + rklen;
    char *mine = malloc(mylen);
    if (!mine) {
        ucp_rkey_buffer_release(rk);
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx create: rkey blob", tp->rank);
    }
    ucx_rkey_blob_t hdr = {.base = (uint64_t)(uintptr_t)tp->slab, .len = rklen};
    memcpy(mine, &hdr, sizeof(hdr));
    memcpy(mine + sizeof(hdr), rk, rklen);
    ucp_rkey_buffer_release(rk);
    char *all;
    size_t stride;
    rdx_status_t st = ucx_allgather_var(tp, bs, mine, mylen, &all, &stride);
    free(mine);
    RDX_CHECK(st);
    for (int r = 0; r < tp->size; r++) {
        if (r == tp->rank)
            continue;
        const ucx_rkey_blob_t *blob = (const ucx_rkey_blob_t *)(all + (size_t)r * stride);
        bool same_host = strcmp(info[r].hostid, info[tp->rank].hostid) == 0;
        if (same_host && blob->len + sizeof(*blob) <= stride)
            tp->peers[r].direct = ucx_peer_map(tp, &tp->peers[r], blob, info[r].nonce);
    }
    free(all);
    return RDX_SUCCESS;
}

/* Every rank learns which of its senders write straight into its slab. */
static rdx_status_t ucx_paths_exchange(rdx_tp_t *tp, rdx_bootstrap_t *bs)
{
    size_t n = (size_t)tp->size;
    uint8_t *row = calloc(n, 1), *all = calloc(n * n, 1);
    if (!row || !all) {
        free(row);
        free(all);
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx create: path matrix", tp->rank);
    }
    for (int r = 0; r < tp->size; r++)
        row[r] = r != tp->rank && tp->peers[r].direct;
    rdx_status_t st = rdx_bootstrap_allgather(bs, row, n, all);
    for (int r = 0; st == RDX_SUCCESS && r < tp->size; r++) {
        if (r == tp->rank)
            continue;
        ucx_peer_t *p = &tp->peers[r];
        p->am_in = all[(size_t)r * n + (size_t)tp->rank] == 0;
        tp->n_direct_out += p->direct;
        tp->n_am_out += !p->direct;
        tp->n_direct_in += !p->am_in;
        tp->n_am_in += p->am_in;
    }
    free(row);
    free(all);
    tp->block_ok = tp->n_direct_in + tp->n_direct_out == 0;
    return st;
}

static rdx_status_t ucx_stage_create(rdx_tp_t *tp)
{
    size_t per_peer = ucx_round_up((size_t)tp->slots * tp->stride, UCX_PAGE);
    if (tp->n_am_out == 0)
        return RDX_SUCCESS;
    tp->stage_bytes = per_peer * (size_t)tp->n_am_out;
    RDX_CHECK(ucx_mem_alloc(tp, tp->stage_bytes, &tp->stage_mh, &tp->stage));
    size_t off = 0;
    for (int r = 0; r < tp->size; r++) {
        if (r == tp->rank || tp->peers[r].direct)
            continue;
        tp->peers[r].tx_data = tp->stage + off;
        off += per_peer;
    }
    return RDX_SUCCESS;
}

static rdx_status_t ucx_ops_create(rdx_tp_t *tp)
{
    size_t n = (size_t)(tp->n_am_out + tp->n_am_in) * (size_t)tp->slots + (size_t)tp->n_am_in;
    if (n == 0)
        return RDX_SUCCESS;
    tp->op_mem = aligned_alloc(UCX_LINE, n * tp->op_stride);
    if (!tp->op_mem)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx create: %zu request slots", tp->rank, n);
    memset(tp->op_mem, 0, n * tp->op_stride);
    char *next = tp->op_mem;
    for (int r = 0; r < tp->size; r++) {
        ucx_peer_t *p = &tp->peers[r];
        if (r == tp->rank)
            continue;
        if (!p->direct) {
            p->tx_ops = next;
            next += (size_t)tp->slots * tp->op_stride;
        }
        if (p->am_in) {
            p->rx_ops = next;
            next += (size_t)tp->slots * tp->op_stride;
            p->credit_op = next;
            next += tp->op_stride;
        }
    }
    for (size_t i = 0; i < n; i++) {
        ucx_op_t *op = ucx_op_at(tp, tp->op_mem, (int)i);
        op->tp = tp;
    }
    for (int r = 0; r < tp->size; r++) {
        ucx_peer_t *p = &tp->peers[r];
        for (int i = 0; p->tx_ops && i < tp->slots; i++)
            ucx_op_at(tp, p->tx_ops, i)->peer = p;
        for (int i = 0; p->rx_ops && i < tp->slots; i++)
            ucx_op_at(tp, p->rx_ops, i)->peer = p;
        if (p->credit_op)
            ucx_op_at(tp, p->credit_op, 0)->peer = p;
    }
    return RDX_SUCCESS;
}

/* A HELLO each way over every endpoint: proves the connections before create returns. */
static rdx_status_t ucx_hello(rdx_tp_t *tp)
{
    rdx_status_t st = RDX_SUCCESS;
    void **reqs = calloc((size_t)tp->size, sizeof(*reqs));
    if (!reqs)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx hello", tp->rank);
    tp->hello_hdr = (ucx_am_ctl_hdr_t){.src = (uint32_t)tp->rank, .magic = UCX_MAGIC};
    ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                               .flags = UCP_AM_SEND_FLAG_EAGER};
    for (int r = 0; r < tp->size && st == RDX_SUCCESS; r++) {
        if (r == tp->rank)
            continue;
        void *q = ucp_am_send_nbx(tp->peers[r].ep, UCX_AM_HELLO, &tp->hello_hdr,
                                  sizeof(tp->hello_hdr), NULL, 0, &prm);
        if (UCS_PTR_IS_ERR(q))
            st = ucx_status(tp, "connect", r, UCS_PTR_STATUS(q));
        else
            reqs[r] = q;
    }
    long deadline = ucx_now_ms() + tp->connect_timeout_ms;
    for (;;) {
        if (st != RDX_SUCCESS)
            break;
        ucp_worker_progress(tp->worker);
        int missing = -1, pending = 0;
        for (int r = 0; r < tp->size; r++) {
            if (r == tp->rank)
                continue;
            ucx_peer_t *p = &tp->peers[r];
            if (reqs[r] && ucp_request_check_status(reqs[r]) != UCS_INPROGRESS) {
                ucs_status_t rs = ucp_request_check_status(reqs[r]);
                ucp_request_free(reqs[r]);
                reqs[r] = NULL;
                if (rs != UCS_OK)
                    ucx_peer_mark_lost(p, rs);
            }
            pending += reqs[r] != NULL;
            if (p->lost) {
                st = rdx_err(RDX_ERR_PEER_LOST, "rank %d: ucx connect: peer %d: %s", tp->rank, r,
                             p->lost_why);
                break;
            }
            if (!p->hello && missing < 0)
                missing = r;
        }
        if (st != RDX_SUCCESS || (missing < 0 && pending == 0))
            break;
        if (ucx_now_ms() > deadline) {
            st = rdx_err(RDX_ERR_TIMEOUT,
                         "rank %d: ucx connect: peer %d: no hello within %ld ms "
                         "(RDX_CONNECT_TIMEOUT_MS)",
                         tp->rank, missing >= 0 ? missing : -1, tp->connect_timeout_ms);
            break;
        }
        sched_yield();
    }
    for (int r = 0; r < tp->size; r++)
        if (reqs[r])
            ucp_request_free(reqs[r]);
    free(reqs);
    return st;
}

/* "tcp/lo" from the endpoint's lane list: the lane that carries active messages. */
static void ucx_ep_am_tl(ucp_ep_h ep, char *out, size_t len)
{
    char *text = NULL;
    size_t n = 0;
    snprintf(out, len, "?");
    FILE *f = open_memstream(&text, &n);
    if (!f)
        return;
    ucp_ep_print_info(ep, f);
    fclose(f);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *lane = strstr(line, "lane[");
        char *colon = lane ? strchr(lane, ':') : NULL;
        size_t ll = strlen(line);
        bool am = strstr(line, " am ") || (ll >= 3 && strcmp(line + ll - 3, " am") == 0);
        if (!colon || !am)
            continue;
        char *tl = strchr(colon + 1, ':'); /* "  1:tcp/lo.0 md[0] ..." */
        if (!tl)
            continue;
        tl++;
        size_t k = strcspn(tl, " .");
        snprintf(out, len, "%.*s", (int)(k < len ? k : len - 1), tl);
        break;
    }
    free(text);
}

/*
 * UCX's rendezvous over TCP is driven by the sender (RTR, then a put from its progress), so
 * a rank that committed its last message of a collective and went on to compute would hold
 * its peer back until its next call. Eager sends leave nothing for the sender to do once
 * the bytes are in the socket buffer; at most `slots` messages per peer are in flight.
 */
static void ucx_paths_tune(rdx_tp_t *tp)
{
    char tl[64];
    for (int r = 0; r < tp->size; r++) {
        ucx_peer_t *p = &tp->peers[r];
        if (r == tp->rank || p->direct)
            continue;
        ucx_ep_am_tl(p->ep, tl, sizeof(tl));
        if (!tp->tls[0])
            snprintf(tp->tls, sizeof(tp->tls), "%s", tl);
        if (strncmp(tl, "tcp", 3) == 0)
            p->am_flags = UCP_AM_SEND_FLAG_EAGER;
    }
}

static void ucx_describe(rdx_tp_t *tp)
{
    size_t used = 0;
    tp->detail[0] = '\0';
    tp->latency_us = 0.2;   /* cache-line handoff between two cores, measured 0.05-0.25 us */
    tp->bandwidth_gbs = 10; /* single-copy shared memory */
    if (tp->n_direct_out)
        used += (size_t)snprintf(tp->detail, sizeof(tp->detail),
                                 "shm direct (rkey_ptr) to %d peer%s", tp->n_direct_out,
                                 tp->n_direct_out == 1 ? "" : "s");
    if (tp->n_am_out) {
        if (used < sizeof(tp->detail))
            snprintf(tp->detail + used, sizeof(tp->detail) - used, "%sam over %s to %d peer%s",
                     used ? "; " : "", tp->tls, tp->n_am_out, tp->n_am_out == 1 ? "" : "s");
        /* Estimates for the cost model (UCX perftest on this machine kind: tcp 6.5 us and
         * 4.5-6.5 GB/s, shared-memory AM 0.2-0.6 us; verbs: typical RDMA NIC figures). */
        bool tcp = strncmp(tp->tls, "tcp", 3) == 0;
        bool shm = strncmp(tp->tls, "sysv", 4) == 0 || strncmp(tp->tls, "posix", 5) == 0;
        tp->latency_us = tcp ? 7.0 : shm ? 1.0 : 3.0;
        tp->bandwidth_gbs = tcp ? 4.0 : shm ? 5.0 : 10.0;
    }
    if (!tp->detail[0])
        snprintf(tp->detail, sizeof(tp->detail), "no peers");
}

/* ---- ops: lifetime ------------------------------------------------------------------- */

static void ucx_eps_close(rdx_tp_t *tp)
{
    void **reqs = calloc((size_t)tp->size, sizeof(*reqs));
    for (int r = 0; r < tp->size; r++) {
        ucx_peer_t *p = &tp->peers[r];
        if (!p->ep)
            continue;
        ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                   .flags = p->lost ? UCP_EP_CLOSE_FLAG_FORCE : 0};
        void *q = ucp_ep_close_nbx(p->ep, &prm);
        p->ep = NULL;
        if (UCS_PTR_IS_ERR(q))
            rdx_log_debug("ucx: peer %d: ep_close: %s", r, ucs_status_string(UCS_PTR_STATUS(q)));
        else if (q && reqs)
            reqs[r] = q;
        else if (q)
            ucp_request_free(q); /* no memory to track it: let it finish on its own */
    }
    if (!reqs)
        return;
    long deadline = ucx_now_ms() + (tp->timeout_ms < UCX_CLOSE_TIMEOUT_MS ? tp->timeout_ms
                                                                         : UCX_CLOSE_TIMEOUT_MS);
    for (;;) {
        int pending = 0;
        ucp_worker_progress(tp->worker);
        for (int r = 0; r < tp->size; r++) {
            if (reqs[r] && ucp_request_check_status(reqs[r]) != UCS_INPROGRESS) {
                ucp_request_free(reqs[r]);
                reqs[r] = NULL;
            }
            pending += reqs[r] != NULL;
        }
        if (!pending)
            break;
        if (ucx_now_ms() > deadline) {
            rdx_log_debug("ucx: %d endpoint(s) did not close within the deadline", pending);
            break;
        }
        sched_yield();
    }
    for (int r = 0; r < tp->size; r++)
        if (reqs[r])
            ucp_request_free(reqs[r]);
    free(reqs);
}

static void ucx_destroy(rdx_tp_t *tp)
{
    if (!tp)
        return;
    for (int r = 0; tp->peers && r < tp->size; r++)
        if (tp->peers[r].rkey)
            ucp_rkey_destroy(tp->peers[r].rkey);
    if (tp->worker) {
        if (tp->peers)
            ucx_eps_close(tp);
        ucp_worker_destroy(tp->worker);
    }
    if (tp->stage_mh)
        ucp_mem_unmap(tp->ctx, tp->stage_mh);
    if (tp->slab_mh)
        ucp_mem_unmap(tp->ctx, tp->slab_mh);
    if (tp->ctx)
        ucp_cleanup(tp->ctx);
    free(tp->op_mem); /* after the worker: cancelled requests complete into it */
    free(tp->peers);
    free(tp);
}

static rdx_status_t ucx_params_check(const rdx_tp_params_t *pa)
{
    if (!pa || pa->size < 1 || pa->rank < 0 || pa->rank >= pa->size)
        return rdx_err(RDX_ERR_INVALID_ARG, "ucx create: bad rank/size");
    if (pa->slot_bytes == 0 || pa->slot_bytes > UINT32_MAX || pa->slots < 2 || pa->slots % 2)
        return rdx_err(RDX_ERR_INVALID_ARG,
                       "rank %d: ucx create: slot_bytes %zu / slots %d invalid (slots: even, "
                       ">= 2)",
                       pa->rank, pa->slot_bytes, pa->slots);
    if (pa->size > 1 && !pa->bs)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: ucx create: no bootstrap", pa->rank);
    return RDX_SUCCESS;
}

static rdx_status_t ucx_exchange_info(rdx_tp_t *tp, const rdx_tp_params_t *pa, ucx_info_t **out)
{
    ucx_info_t mine = {
        .magic = UCX_MAGIC,
        .version = UCX_WIRE_VERSION,
        .rank = tp->rank,
        .size = tp->size,
        .slot_bytes = pa->slot_bytes,
        .slots = pa->slots,
        .pool_bytes = pa->pool_bytes,
        .nonce = tp->nonce,
    };
    ucx_hostid(mine.hostid, sizeof(mine.hostid));
    ucx_self_ids(&mine);
    ucx_info_t *all = calloc((size_t)tp->size, sizeof(*all));
    if (!all)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx create: info table", tp->rank);
    rdx_status_t st = rdx_bootstrap_allgather(pa->bs, &mine, sizeof(mine), all);
    for (int r = 0; st == RDX_SUCCESS && r < tp->size; r++) {
        all[r].hostid[sizeof(all[r].hostid) - 1] = '\0'; /* compared as strings later */
        all[r].pidns[sizeof(all[r].pidns) - 1] = '\0';
    }
    if (st == RDX_SUCCESS)
        st = ucx_info_check(tp, all);
    if (st != RDX_SUCCESS) {
        free(all);
        return st;
    }
    *out = all;
    return RDX_SUCCESS;
}

/* Peers whose endpoint has no error handling: only on this host, in this PID namespace, can
 * we tell whether they are alive. Elsewhere the collective's timeout is what remains. */
static void ucx_peers_watch_setup(rdx_tp_t *tp, const ucx_info_t *info)
{
    const ucx_info_t *me = &info[tp->rank];
    for (int r = 0; r < tp->size; r++) {
        ucx_peer_t *p = &tp->peers[r];
        if (r == tp->rank || !p->watch)
            continue;
        p->watch = strcmp(info[r].hostid, me->hostid) == 0 && strcmp(info[r].pidns, me->pidns) == 0 &&
                   info[r].start_time != 0;
        p->pid = info[r].pid;
        p->start_time = info[r].start_time;
        tp->n_watch += p->watch;
        if (!p->watch)
            rdx_log_info("ucx: peer %d: no failure detection (UCX transport without error "
                         "handling, other host or PID namespace)", r);
    }
}

static void ucx_peers_watch(rdx_tp_t *tp)
{
    long now = ucx_now_ms();
    if (now - tp->watch_ms < UCX_WATCH_EVERY_MS)
        return;
    tp->watch_ms = now;
    for (int r = 0; r < tp->size; r++) {
        ucx_peer_t *p = &tp->peers[r];
        char state;
        uint64_t start;
        if (!p->watch || p->lost)
            continue;
        if (!ucx_proc_stat(p->pid, &state, &start) || start != p->start_time || state == 'Z' ||
            state == 'X')
            ucx_peer_mark_lost_why(p, UCS_ERR_CONNECTION_RESET, "process exited");
    }
}

static rdx_status_t ucx_connect_all(rdx_tp_t *tp, const rdx_tp_params_t *pa)
{
    ucx_info_t *info = NULL;
    RDX_CHECK(ucx_exchange_info(tp, pa, &info));
    rdx_status_t st = ucx_slots_fit(tp, info, pa->slots);
    if (st == RDX_SUCCESS)
        st = ucx_slab_create(tp);
    if (st == RDX_SUCCESS)
        st = ucx_peers_connect(tp, pa->bs, info);
    if (st == RDX_SUCCESS)
        st = ucx_peers_map(tp, pa->bs, info);
    if (st == RDX_SUCCESS)
        ucx_peers_watch_setup(tp, info);
    free(info);
    RDX_CHECK(st);
    RDX_CHECK(ucx_paths_exchange(tp, pa->bs));
    RDX_CHECK(ucx_stage_create(tp));
    RDX_CHECK(ucx_ops_create(tp));
    return ucx_hello(tp);
}

static rdx_status_t ucx_create(const rdx_tp_params_t *pa, rdx_tp_t **out)
{
    RDX_CHECK(ucx_params_check(pa));
    rdx_tp_t *tp = calloc(1, sizeof(*tp));
    if (tp)
        tp->peers = calloc((size_t)pa->size, sizeof(*tp->peers));
    if (!tp || !tp->peers) {
        free(tp);
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx create: state", pa->rank);
    }
    tp->rank = pa->rank;
    tp->size = pa->size;
    tp->slot_bytes = pa->slot_bytes;
    tp->slots = pa->slots;
    tp->stride = ucx_round_up(pa->slot_bytes, UCX_LINE);
    tp->timeout_ms = pa->settings && pa->settings->timeout_ms > 0 ? pa->settings->timeout_ms
                                                                   : 300000;
    tp->connect_timeout_ms = pa->settings && pa->settings->connect_timeout_ms > 0
                                 ? pa->settings->connect_timeout_ms
                                 : 60000;
    tp->efd = -1;
    tp->nonce = ucx_nonce();
    for (int r = 0; r < tp->size; r++) {
        tp->peers[r].tp = tp;
        tp->peers[r].rank = r;
    }
    rdx_status_t st = ucx_context_create(tp, pa->settings);
    if (st == RDX_SUCCESS)
        st = ucx_worker_create(tp);
    if (st == RDX_SUCCESS && tp->size > 1)
        st = ucx_connect_all(tp, pa);
    if (st != RDX_SUCCESS) {
        ucx_destroy(tp);
        return st;
    }
    ucx_paths_tune(tp);
    ucx_describe(tp);
    rdx_log_info("ucx: %s; %d slots x %zu bytes per peer; %zu KiB registered", tp->detail,
                 tp->slots, tp->slot_bytes, (tp->slab_bytes + tp->stage_bytes) >> 10);
    *out = tp;
    return RDX_SUCCESS;
}

static void ucx_props(const rdx_tp_t *tp, rdx_tp_props_t *props)
{
    memset(props, 0, sizeof(*props));
    props->name = "ucx";
    snprintf(props->detail, sizeof(props->detail), "%s", tp->detail);
    props->latency_us = tp->latency_us;
    props->bandwidth_gbs = tp->bandwidth_gbs;
    props->slot_bytes = tp->slot_bytes;
    props->slots = tp->slots;
}

static bool ucx_peer_is_local(const rdx_tp_t *tp, int peer)
{
    return peer >= 0 && peer < tp->size && peer != tp->rank && tp->peers[peer].direct;
}

/* ---- data path ----------------------------------------------------------------------- */

static inline rdx_status_t ucx_peer_get(rdx_tp_t *tp, int peer, const char *op, ucx_peer_t **p)
{
    if (__builtin_expect(tp->fatal != RDX_SUCCESS, 0))
        return ucx_fatal_report(tp);
    if (__builtin_expect(peer < 0 || peer >= tp->size || peer == tp->rank, 0))
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: ucx %s: peer %d: not a peer", tp->rank, op,
                       peer);
    *p = &tp->peers[peer];
    return RDX_SUCCESS;
}

/* Credits: the receiver's head as last seen; re-read only when the FIFO looks full. */
static inline bool ucx_has_credit(const rdx_tp_t *tp, ucx_peer_t *p)
{
    if (p->tx_tail - p->tx_credit < (uint64_t)tp->slots)
        return true;
    if (p->direct)
        p->tx_credit = ucx_load_acq(&p->tx_ctrl->head);
    return p->tx_tail - p->tx_credit < (uint64_t)tp->slots;
}

static rdx_status_t ucx_send_acquire(rdx_tp_t *tp, int peer, void **buf)
{
    ucx_peer_t *p = NULL;
    RDX_CHECK(ucx_peer_get(tp, peer, "send_acquire", &p));
    if (p->lost)
        return ucx_peer_lost_err(tp, "send_acquire", p);
    *buf = NULL;
    if (!ucx_has_credit(tp, p))
        return RDX_SUCCESS;
    int slot = (int)(p->tx_tail % (uint64_t)tp->slots);
    if (!p->direct && ucx_op_at(tp, p->tx_ops, slot)->busy)
        return RDX_SUCCESS; /* the previous send from this staging slot is still in flight */
    *buf = p->tx_data + (size_t)slot * tp->stride;
    return RDX_SUCCESS;
}

static rdx_status_t ucx_send_am(rdx_tp_t *tp, ucx_peer_t *p, int slot, size_t len, uint64_t tag)
{
    ucx_op_t *op = ucx_op_at(tp, p->tx_ops, slot);
    op->hdr.data = (ucx_am_data_hdr_t){
        .src = (uint32_t)tp->rank,
        .len = (uint32_t)len,
        .seq = p->tx_tail + 1,
        .tag = tag,
        .credit = p->rx_head,
    };
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_REQUEST | UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH,
        .request = op,
        .cb.send = ucx_send_done,
        .user_data = op,
        .memh = tp->stage_mh,
    };
    if (p->am_flags) {
        prm.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
        prm.flags = p->am_flags;
    }
    op->busy = 1;
    ucs_status_ptr_t r = ucp_am_send_nbx(p->ep, UCX_AM_DATA, &op->hdr.data,
                                         sizeof(op->hdr.data),
                                         p->tx_data + (size_t)slot * tp->stride, len, &prm);
    if (UCS_PTR_IS_ERR(r)) {
        op->busy = 0;
        ucx_peer_mark_lost(p, UCS_PTR_STATUS(r));
        return ucx_peer_lost_err(tp, "send_commit", p);
    }
    if (r == NULL)
        op->busy = 0;
    if (p->am_in)
        p->credit_sent = op->hdr.data.credit; /* piggybacked */
    return RDX_SUCCESS;
}

static rdx_status_t ucx_send_commit(rdx_tp_t *tp, int peer, size_t len, uint64_t tag)
{
    ucx_peer_t *p = NULL;
    RDX_CHECK(ucx_peer_get(tp, peer, "send_commit", &p));
    if (p->lost)
        return ucx_peer_lost_err(tp, "send_commit", p);
    if (len > tp->slot_bytes)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: ucx send_commit: peer %d: %zu bytes > slot "
                       "of %zu", tp->rank, peer, len, tp->slot_bytes);
    int slot = (int)(p->tx_tail % (uint64_t)tp->slots);
    if (p->tx_tail - p->tx_credit >= (uint64_t)tp->slots ||
        (!p->direct && ucx_op_at(tp, p->tx_ops, slot)->busy))
        return rdx_err(RDX_ERR_INTERNAL, "rank %d: ucx send_commit: peer %d: no slot acquired",
                       tp->rank, peer);
    if (p->direct) {
        ucx_slot_hdr_t *h = &p->tx_hdr[slot];
        h->len = (uint32_t)len;
        h->tag = tag;
        h->inl = len <= UCX_INLINE_MAX;
        if (h->inl && len)
            memcpy(h->data, p->tx_data + (size_t)slot * tp->stride, len);
        ucx_store_rel(&h->seq, p->tx_tail + 1);
    } else {
        RDX_CHECK(ucx_send_am(tp, p, slot, len, tag));
    }
    p->tx_tail++;
    return RDX_SUCCESS;
}

static rdx_status_t ucx_recv_peek(rdx_tp_t *tp, int peer, const void **buf, size_t *len,
                                  uint64_t *tag)
{
    ucx_peer_t *p = NULL;
    RDX_CHECK(ucx_peer_get(tp, peer, "recv_peek", &p));
    uint64_t slot = p->rx_head % (uint64_t)tp->slots;
    ucx_slot_hdr_t *h = &p->rx_hdr[slot];
    if (ucx_load_acq(&h->seq) != p->rx_head + 1) {
        *buf = NULL;
        if (p->lost)
            return ucx_peer_lost_err(tp, "recv_peek", p);
        return RDX_SUCCESS;
    }
    /* Read once: on shared memory the sender could rewrite the header after the check. */
    uint32_t hlen = *(volatile uint32_t *)&h->len, inl = *(volatile uint32_t *)&h->inl;
    if (rdx_ucx_slot_check(hlen, inl, tp->slot_bytes) != RDX_UCX_WIRE_OK)
        return rdx_err(RDX_ERR_TRANSPORT, "rank %d: ucx recv_peek: peer %d: message of %u "
                       "bytes in a slot of %zu", tp->rank, peer, hlen, tp->slot_bytes);
    *buf = inl ? (const void *)h->data : (const void *)(p->rx_data + slot * tp->stride);
    *len = hlen;
    *tag = h->tag;
    return RDX_SUCCESS;
}

static rdx_status_t ucx_recv_release(rdx_tp_t *tp, int peer)
{
    ucx_peer_t *p = NULL;
    RDX_CHECK(ucx_peer_get(tp, peer, "recv_release", &p));
    uint64_t slot = p->rx_head % (uint64_t)tp->slots;
    if (ucx_load_acq(&p->rx_hdr[slot].seq) != p->rx_head + 1)
        return rdx_err(RDX_ERR_INTERNAL, "rank %d: ucx recv_release: peer %d: no message to "
                       "release", tp->rank, peer);
    p->rx_head++;
    if (p->am_in)
        tp->credit_maybe = true; /* sent by the next progress/idle or piggybacked */
    else
        ucx_store_rel(&p->rx_ctrl->head, p->rx_head);
    return RDX_SUCCESS;
}

/* Sends the cumulative head to every message-path sender that has not seen it yet. */
static void ucx_credit_flush(rdx_tp_t *tp)
{
    bool left = false;
    for (int r = 0; r < tp->size; r++) {
        ucx_peer_t *p = &tp->peers[r];
        if (!p->am_in || p->credit_sent == p->rx_head || p->lost)
            continue;
        ucx_op_t *op = ucx_op_at(tp, p->credit_op, 0);
        if (op->busy) {
            left = true;
            continue;
        }
        op->hdr.ctl = (ucx_am_ctl_hdr_t){.src = (uint32_t)tp->rank, .magic = UCX_MAGIC,
                                         .value = p->rx_head};
        ucp_request_param_t prm = {
            .op_attr_mask = UCP_OP_ATTR_FIELD_REQUEST | UCP_OP_ATTR_FIELD_CALLBACK |
                            UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS,
            .flags = UCP_AM_SEND_FLAG_EAGER,
            .request = op,
            .cb.send = ucx_send_done,
            .user_data = op,
        };
        op->busy = 1;
        ucs_status_ptr_t q = ucp_am_send_nbx(p->ep, UCX_AM_CREDIT, &op->hdr.ctl,
                                             sizeof(op->hdr.ctl), NULL, 0, &prm);
        if (q == NULL || UCS_PTR_IS_ERR(q))
            op->busy = 0;
        if (UCS_PTR_IS_ERR(q))
            ucx_peer_mark_lost(p, UCS_PTR_STATUS(q));
        else
            p->credit_sent = p->rx_head;
    }
    tp->credit_maybe = left;
}

/*
 * All peers direct: UCX only has keepalive and error detection to do, and one worker
 * progress costs microseconds when it has TCP interfaces (epoll_wait), three times a
 * shared-memory round trip. So it runs about once per tick of the coarse clock (1-4 ms).
 */
static void ucx_progress_lazy(rdx_tp_t *tp)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    long ms = (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
    if (ms == tp->lazy_ms)
        return;
    tp->lazy_ms = ms;
    ucp_worker_progress(tp->worker);
}

static rdx_status_t ucx_progress(rdx_tp_t *tp)
{
    if (tp->fatal != RDX_SUCCESS)
        return ucx_fatal_report(tp);
    if (!tp->worker)
        return RDX_SUCCESS;
    if (tp->n_am_in + tp->n_am_out == 0) {
        if (++tp->tick % UCX_PROGRESS_EVERY == 0)
            ucx_progress_lazy(tp);
        return tp->fatal == RDX_SUCCESS ? RDX_SUCCESS : ucx_fatal_report(tp);
    }
    ucp_worker_progress(tp->worker);
    if (tp->credit_maybe)
        ucx_credit_flush(tp);
    return tp->fatal == RDX_SUCCESS ? RDX_SUCCESS : ucx_fatal_report(tp);
}

static rdx_status_t ucx_idle(rdx_tp_t *tp, long timeout_us)
{
    if (tp->fatal != RDX_SUCCESS)
        return ucx_fatal_report(tp);
    if (!tp->worker)
        return RDX_SUCCESS;
    if (tp->credit_maybe)
        ucx_credit_flush(tp);
    if (tp->n_watch)
        ucx_peers_watch(tp);
    if (!tp->block_ok) {
        /* Some peer writes our memory directly and nothing would wake us: yield instead. */
        if (tp->n_am_in + tp->n_am_out == 0)
            ucx_progress_lazy(tp);
        else
            ucp_worker_progress(tp->worker);
        sched_yield();
        return RDX_SUCCESS;
    }
    if (ucp_worker_progress(tp->worker))
        return RDX_SUCCESS;
    ucs_status_t st = ucp_worker_arm(tp->worker);
    if (st == UCS_ERR_BUSY)
        return RDX_SUCCESS;
    if (st != UCS_OK)
        return ucx_status(tp, "worker_arm", -1, st);
    struct pollfd pfd = {.fd = tp->efd, .events = POLLIN};
    struct timespec ts = {.tv_sec = timeout_us / 1000000L,
                          .tv_nsec = (timeout_us % 1000000L) * 1000L};
    if (ppoll(&pfd, 1, timeout_us < 0 ? NULL : &ts, NULL) < 0 && errno != EINTR)
        return rdx_err(RDX_ERR_TRANSPORT, "rank %d: ucx idle: peer -1: poll: %s", tp->rank,
                       strerror(errno));
    return RDX_SUCCESS;
}

/* ---- user buffer registration -------------------------------------------------------- */

static rdx_status_t ucx_mem_register(rdx_tp_t *tp, void *buf, size_t bytes, rdx_tp_mem_t **mem)
{
    if (!buf || bytes == 0)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: ucx mem_register: empty buffer", tp->rank);
    rdx_tp_mem_t *m = calloc(1, sizeof(*m));
    if (!m)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: ucx mem_register: handle", tp->rank);
    ucp_mem_map_params_t prm = {
        .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
        .address = buf,
        .length = bytes,
    };
    ucs_status_t st = ucp_mem_map(tp->ctx, &prm, &m->memh);
    if (st != UCS_OK) {
        free(m);
        return rdx_err(st == UCS_ERR_NO_MEMORY ? RDX_ERR_NO_MEMORY : RDX_ERR_TRANSPORT,
                       "rank %d: ucx mem_map: peer -1: %zu bytes at %p: %s", tp->rank, bytes, buf,
                       ucs_status_string(st));
    }
    m->addr = buf;
    m->bytes = bytes;
    *mem = m;
    return RDX_SUCCESS;
}

static rdx_status_t ucx_mem_deregister(rdx_tp_t *tp, rdx_tp_mem_t *mem)
{
    if (!mem)
        return RDX_SUCCESS;
    ucs_status_t st = ucp_mem_unmap(tp->ctx, mem->memh);
    free(mem);
    if (st != UCS_OK)
        return ucx_status(tp, "mem_unmap", -1, st);
    return RDX_SUCCESS;
}

const rdx_tp_ops_t rdx_tp_ucx_ops = {
    .name = "ucx",
    .create = ucx_create,
    .destroy = ucx_destroy,
    .props = ucx_props,
    .peer_is_local = ucx_peer_is_local,
    .send_acquire = ucx_send_acquire,
    .send_commit = ucx_send_commit,
    .recv_peek = ucx_recv_peek,
    .recv_release = ucx_recv_release,
    .progress = ucx_progress,
    .idle = ucx_idle,
    .mem_register = ucx_mem_register,
    .mem_deregister = ucx_mem_deregister,
};
