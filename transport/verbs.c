/*
 * Native verbs transport: one RC queue pair per peer, receiver-owned slots, credits.
 *
 * One chunk from S to R (see docs/verbs.md for the diagram and the reasons):
 *
 *   S: send_acquire   needs tx_tail < tx_released + slots (a credit) and a free bounce slot
 *   S: send_commit    RDMA WRITE WITH IMM  bounce[hdr|payload] -> R.slot[tail % slots]
 *                     imm = tail (31 bits); inline when small; signaled every sig_every WRs
 *   R: CQ             recv completion (a pre-posted zero-length receive) -> rx_arrived++
 *   R: recv_peek      slot[rx_head % slots]: tag and len from the header the WRITE carried
 *   R: recv_release   rx_head++; credit pending
 *   R: send_commit    to S (if R has data for S): the header carries credit = rx_head
 *   R: progress/idle  otherwise SEND WITH IMM, imm = CREDIT | rx_head (31 bits), zero bytes
 *   S: CQ             recv completion with a credit -> tx_released = rx_head
 *
 * Every work request on a QP has an index; index n is signaled when (n + 1) % sig_every
 * is 0, so a completion for index n says that all of 0..n are done (RC completes in order).
 * Bounce slot i is reused only when the WRITE that last read it is known done, and the send
 * queue never holds more than sq_depth unfinished requests:
 *   data WRITEs <= slots (one per bounce slot), credits/probes <= sq_depth - slots.
 * Receives carry no buffer (the data went by RDMA WRITE), so a completed receive is
 * reposted at once; at most `slots` data and `slots` credits can be unpolled per QP.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <arpa/inet.h>
#include "src/error.h"
#include "src/log.h"
#include "transport/verbs.h"

/* wr_id: kind (4 bits) | peer (20 bits) | value (40 bits: SQ index + 1 for sends). */
enum { WR_SEND = 1, WR_RECV = 2 };
#define WRID_VAL_BITS 40
#define WRID_VAL_MASK ((1ull << WRID_VAL_BITS) - 1)
#define WRID_PEER_MASK 0xfffffull

#define VERBS_MAX_INLINE 256     /* asked of the QP; the provider may grant less */
#define VERBS_POLL_BATCH 16
#define VERBS_ASYNC_EVERY 1024   /* progress calls between looks at the clock */
#define VERBS_ASYNC_NS 10000000ll /* ... and at least this long between reads of the async
                                     event fd (a syscall: tens of us under emulation) */
#define VERBS_CQ_ACK_BATCH 64
#define VERBS_PROBE_NS 1000000000ll /* a peer this quiet gets probed (see watch_peers) */
#define VERBS_DRAIN_MS 2000

typedef struct verbs_peer {
    struct ibv_qp *qp;
    uint32_t psn;
    uint64_t r_addr;         /* peer's receive slots for our messages */
    uint32_t r_rkey;
    char *tx_slots;          /* our bounce slots for messages to this peer */
    char *rx_slots;          /* our receive slots for messages from this peer */
    uint64_t *tx_wr_of;      /* per bounce slot: SQ index + 1 of the WRITE that read it */
    uint64_t tx_tail;        /* messages committed */
    uint64_t tx_released;    /* messages the peer has released: credits = +slots */
    uint64_t tx_last_data;   /* SQ index + 1 of the last data WRITE */
    uint64_t tx_last_zcopy;  /* SQ index + 1 of the last WRITE that reads user memory */
    uint64_t rx_arrived;     /* messages whose completion we polled */
    uint64_t rx_head;        /* messages peeked and released */
    uint64_t rx_credit_sent; /* rx_head value last sent back as a credit */
    uint64_t sq_posted;      /* work requests posted */
    uint64_t sq_done;        /* work requests known complete */
    uint64_t act;            /* successful completions involving this peer */
    uint64_t act_mark;       /* `act` at the last liveness check */
} verbs_peer_t;

struct rdx_tp {
    int rank;
    int size;
    int slots;
    int sig_every;
    int credit_batch;
    int sq_depth;
    int rq_depth;
    uint32_t max_inline;
    long spin_us;
    long timeout_ms;
    uint8_t ib_tc, ib_sl, ib_timeout, ib_retry_cnt;
    rdx_verbs_layout_t lay;
    rdx_verbs_dev_t dev;
    struct ibv_pd *pd;
    struct ibv_comp_channel *chan;
    struct ibv_cq *cq;
    unsigned cq_unacked;
    bool cq_armed;
    char *slab;
    struct ibv_mr *rx_mr;
    struct ibv_mr *tx_mr;
    verbs_peer_t *peers;
    int credits_pending;      /* peers with released slots not yet credited */
    bool credits_held;        /* progress() saw them once and let them wait (see there) */
    rdx_verbs_mr_cache_t cache;
    unsigned progress_calls;
    uint64_t events;          /* completions handled, ever */
    long long watch_ns;       /* last liveness check */
    long long async_ns;       /* last look at the async event fd from progress() */
    uint64_t sleeps, woken, slept_out; /* idle(): sleeps, ended by an event, by timeout */
    uint64_t zc_msgs, zc_bytes; /* messages and payload bytes sent zero-copy */
    rdx_status_t fatal;       /* first failure; sticky: the transport is unusable after */
    char fatal_msg[RDX_ERRMSG_MAX];
};

/* ---- helpers ----------------------------------------------------------------------------- */

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static uint64_t wrid_make(int kind, int peer, uint64_t val)
{
    return (uint64_t)kind << 60 | ((uint64_t)peer & WRID_PEER_MASK) << WRID_VAL_BITS |
           (val & WRID_VAL_MASK);
}

static int wrid_kind(uint64_t id)
{
    return (int)(id >> 60);
}

static int wrid_peer(uint64_t id)
{
    return (int)((id >> WRID_VAL_BITS) & WRID_PEER_MASK);
}

static uint64_t wrid_extend(uint64_t last, uint64_t id)
{
    return last + (((id & WRID_VAL_MASK) - last) & WRID_VAL_MASK);
}

static char *slot_at(char *base, const rdx_tp_t *tp, uint64_t seq)
{
    return base + (size_t)(seq % (uint64_t)tp->slots) * tp->lay.stride;
}

/* Records the first fatal error; every later call reports that one (the root cause). */
static rdx_status_t tp_fail(rdx_tp_t *tp, rdx_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rdx_status_t tp_fail(rdx_tp_t *tp, rdx_status_t st, const char *fmt, ...)
{
    if (tp->fatal == RDX_SUCCESS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tp->fatal_msg, sizeof(tp->fatal_msg), fmt, ap);
        va_end(ap);
        tp->fatal = st;
        rdx_log_debug("verbs: transport failed: %s", tp->fatal_msg);
    }
    return rdx_err(tp->fatal, "%s", tp->fatal_msg);
}

static rdx_status_t tp_failed(rdx_tp_t *tp)
{
    return rdx_err(tp->fatal, "%s", tp->fatal_msg);
}

static rdx_status_t peer_check(rdx_tp_t *tp, int peer, const char *op)
{
    if (tp->fatal != RDX_SUCCESS)
        return tp_failed(tp);
    if (peer < 0 || peer >= tp->size || peer == tp->rank)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: verbs: %s: peer %d is not another rank "
                       "of %d", tp->rank, op, peer, tp->size);
    return RDX_SUCCESS;
}

/* ---- posting ------------------------------------------------------------------------------ */

static rdx_status_t sq_post(rdx_tp_t *tp, int peer, struct ibv_send_wr *wr, const char *what)
{
    verbs_peer_t *p = &tp->peers[peer];
    uint64_t n = p->sq_posted;
    struct ibv_send_wr *bad;
    wr->wr_id = wrid_make(WR_SEND, peer, n + 1);
    if ((n + 1) % (uint64_t)tp->sig_every == 0)
        wr->send_flags |= IBV_SEND_SIGNALED;
    int rc = ibv_post_send(p->qp, wr, &bad);
    if (rc != 0)
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x: post %s: %s",
                       tp->rank, peer, p->qp->qp_num, what, strerror(rc > 0 ? rc : errno));
    p->sq_posted = n + 1;
    return RDX_SUCCESS;
}

/* Room for a credit or probe: keeps `slots` entries free for data WRITEs. */
static bool sq_has_ctrl_room(const rdx_tp_t *tp, const verbs_peer_t *p)
{
    return p->sq_posted - p->sq_done < (uint64_t)(tp->sq_depth - tp->slots);
}

static rdx_status_t rq_post(rdx_tp_t *tp, int peer, int count)
{
    verbs_peer_t *p = &tp->peers[peer];
    struct ibv_recv_wr wr = {.wr_id = wrid_make(WR_RECV, peer, 0), .sg_list = NULL,
                             .num_sge = 0};
    struct ibv_recv_wr *bad;
    for (int i = 0; i < count; i++) {
        int rc = ibv_post_recv(p->qp, &wr, &bad);
        if (rc != 0)
            return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x: post "
                           "receive: %s", tp->rank, peer, p->qp->qp_num,
                           strerror(rc > 0 ? rc : errno));
    }
    return RDX_SUCCESS;
}

static rdx_status_t credit_send(rdx_tp_t *tp, int peer)
{
    verbs_peer_t *p = &tp->peers[peer];
    if (p->rx_head == p->rx_credit_sent || !sq_has_ctrl_room(tp, p))
        return RDX_SUCCESS;
    struct ibv_send_wr wr = {
        .opcode = IBV_WR_SEND_WITH_IMM,
        .num_sge = 0,
        .imm_data = htonl(RDX_VERBS_IMM_CREDIT | (uint32_t)(p->rx_head & RDX_VERBS_IMM_MASK)),
    };
    RDX_CHECK(sq_post(tp, peer, &wr, "credit"));
    p->rx_credit_sent = p->rx_head;
    tp->credits_pending--;
    return RDX_SUCCESS;
}

static rdx_status_t credits_flush(rdx_tp_t *tp)
{
    for (int j = 0; j < tp->size && tp->credits_pending > 0; j++)
        if (j != tp->rank && tp->peers[j].rx_head != tp->peers[j].rx_credit_sent)
            RDX_CHECK(credit_send(tp, j));
    return RDX_SUCCESS;
}

/* A zero-byte RDMA WRITE: nothing lands and the peer sees no completion, but a peer whose
 * process is gone never acknowledges it, so we get RETRY_EXC_ERR instead of waiting. */
static rdx_status_t probe_one(rdx_tp_t *tp, int peer)
{
    verbs_peer_t *p = &tp->peers[peer];
    struct ibv_send_wr wr = {
        .opcode = IBV_WR_RDMA_WRITE,
        .num_sge = 0,
        .wr.rdma = {.remote_addr = p->r_addr, .rkey = p->r_rkey},
    };
    return sq_post(tp, peer, &wr, "probe");
}

/* Liveness: a peer that produced no completion for a whole VERBS_PROBE_NS gets a probe.
 * A live peer acknowledges it (the completion counts as activity); a dead one makes the
 * probe fail with RETRY_EXC_ERR after about (retry_cnt + 1) x 4.096 us x 2^RDX_IB_TIMEOUT.
 * Without this a rank that only waits for a dead peer's data would wait for ever. Runs
 * from idle() and every VERBS_ASYNC_EVERY progress() calls: one clock read, no syscall. */
static rdx_status_t watch_peers_at(rdx_tp_t *tp, long long now)
{
    if (now - tp->watch_ns < VERBS_PROBE_NS)
        return RDX_SUCCESS;
    tp->watch_ns = now;
    for (int j = 0; j < tp->size; j++) {
        verbs_peer_t *p = &tp->peers[j];
        if (j == tp->rank)
            continue;
        if (p->act == p->act_mark && sq_has_ctrl_room(tp, p))
            RDX_CHECK(probe_one(tp, j));
        p->act_mark = p->act;
    }
    return RDX_SUCCESS;
}

static rdx_status_t watch_peers(rdx_tp_t *tp)
{
    return watch_peers_at(tp, now_ns());
}

/* ---- completions and events ----------------------------------------------------------- */

static rdx_status_t wc_fail(rdx_tp_t *tp, const struct ibv_wc *wc, int peer)
{
    const char *what = wrid_kind(wc->wr_id) == WR_RECV ? "receive" : "send";
    rdx_status_t st = RDX_ERR_TRANSPORT;
    const char *hint = "";
    if (wc->status == IBV_WC_RETRY_EXC_ERR || wc->status == IBV_WC_RNR_RETRY_EXC_ERR) {
        st = RDX_ERR_PEER_LOST;
        hint = " (peer process gone or unreachable)";
    } else if (wc->status == IBV_WC_WR_FLUSH_ERR) {
        hint = " (queue pair was already in the error state)";
    }
    return tp_fail(tp, st, "rank %d: verbs: peer %d: QP 0x%x: %s failed: %s%s (vendor_err "
                   "0x%x)", tp->rank, peer, wc->qp_num, what, ibv_wc_status_str(wc->status),
                   hint, wc->vendor_err);
}

static rdx_status_t wc_recv(rdx_tp_t *tp, const struct ibv_wc *wc, int peer)
{
    verbs_peer_t *p = &tp->peers[peer];
    RDX_CHECK(rq_post(tp, peer, 1));
    if (!(wc->wc_flags & IBV_WC_WITH_IMM))
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x: message "
                       "without immediate data (opcode %d)", tp->rank, peer, wc->qp_num,
                       (int)wc->opcode);
    uint32_t imm = ntohl(wc->imm_data);
    if (imm & RDX_VERBS_IMM_CREDIT) {
        p->tx_released = rdx_verbs_imm_extend(p->tx_released, imm & RDX_VERBS_IMM_MASK);
        return RDX_SUCCESS;
    }
    if (imm != (uint32_t)(p->rx_arrived & RDX_VERBS_IMM_MASK))
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x: message %u "
                       "arrived, expected %u", tp->rank, peer, wc->qp_num, imm,
                       (uint32_t)(p->rx_arrived & RDX_VERBS_IMM_MASK));
    /* The slot is ours until released, so its header can be read now: take the credit. */
    const rdx_verbs_slot_hdr_t *hdr =
        (const rdx_verbs_slot_hdr_t *)(slot_at(p->rx_slots, tp, p->rx_arrived) +
                                       RDX_VERBS_HDR_OFF);
    if (hdr->seq != (uint32_t)p->rx_arrived)
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x: slot header "
                       "says message %u, completion says %u", tp->rank, peer, wc->qp_num,
                       hdr->seq, (uint32_t)p->rx_arrived);
    p->tx_released = rdx_verbs_imm_extend(p->tx_released, hdr->credit & RDX_VERBS_IMM_MASK);
    p->rx_arrived++;
    return RDX_SUCCESS;
}

static rdx_status_t wc_handle(rdx_tp_t *tp, const struct ibv_wc *wc)
{
    int peer = wrid_peer(wc->wr_id);
    if (peer >= tp->size || peer == tp->rank)
        return tp_fail(tp, RDX_ERR_INTERNAL, "rank %d: verbs: completion with bad wr_id "
                       "0x%llx on QP 0x%x", tp->rank, (unsigned long long)wc->wr_id,
                       wc->qp_num);
    if (wc->status != IBV_WC_SUCCESS)
        return wc_fail(tp, wc, peer);
    verbs_peer_t *p = &tp->peers[peer];
    p->act++;
    if (wrid_kind(wc->wr_id) == WR_RECV)
        return wc_recv(tp, wc, peer);
    p->sq_done = wrid_extend(p->sq_done, wc->wr_id);
    return RDX_SUCCESS;
}

/* Polls the CQ once; *n = completions handled. */
static rdx_status_t cq_poll(rdx_tp_t *tp, int *n)
{
    struct ibv_wc wc[VERBS_POLL_BATCH];
    int got = ibv_poll_cq(tp->cq, VERBS_POLL_BATCH, wc);
    *n = 0;
    if (got < 0)
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: ibv_poll_cq: error %d", tp->rank,
                       got);
    /* The receiver reads the slot a WRITE WITH IMM filled once its completion is seen. */
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    for (int i = 0; i < got; i++)
        RDX_CHECK(wc_handle(tp, &wc[i]));
    tp->events += (uint64_t)got;
    *n = got;
    return RDX_SUCCESS;
}

static int peer_of_qp(const rdx_tp_t *tp, const struct ibv_qp *qp)
{
    for (int j = 0; j < tp->size; j++)
        if (j != tp->rank && tp->peers[j].qp == qp)
            return j;
    return -1;
}

static rdx_status_t async_handle(rdx_tp_t *tp, const struct ibv_async_event *ev)
{
    const char *name = ibv_event_type_str(ev->event_type);
    switch (ev->event_type) {
    case IBV_EVENT_QP_FATAL:
    case IBV_EVENT_QP_REQ_ERR:
    case IBV_EVENT_QP_ACCESS_ERR:
    case IBV_EVENT_PATH_MIG_ERR:
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x: async event "
                       "%s (QP in error state)", tp->rank, peer_of_qp(tp, ev->element.qp),
                       ev->element.qp->qp_num, name);
    case IBV_EVENT_CQ_ERR:
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: async event %s (CQ overrun)",
                       tp->rank, name);
    case IBV_EVENT_DEVICE_FATAL:
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: %s: async event %s", tp->rank,
                       tp->dev.name, name);
    case IBV_EVENT_PORT_ERR:
        if (ev->element.port_num != tp->dev.port)
            break;
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: %s:%u: async event %s (port "
                       "went down)", tp->rank, tp->dev.name, tp->dev.port, name);
    default:
        rdx_log_debug("verbs: %s: async event %s", tp->dev.name, name);
        break;
    }
    return RDX_SUCCESS;
}

/* The async fd is non-blocking: no thread, we look at it from progress and idle. */
static rdx_status_t async_drain(rdx_tp_t *tp)
{
    struct ibv_async_event ev;
    rdx_status_t st = RDX_SUCCESS;
    while (ibv_get_async_event(tp->dev.ctx, &ev) == 0) {
        rdx_status_t est = async_handle(tp, &ev);
        ibv_ack_async_event(&ev);
        if (st == RDX_SUCCESS)
            st = est;
    }
    return st;
}

static rdx_status_t verbs_progress(rdx_tp_t *tp)
{
    int n;
    if (tp->fatal != RDX_SUCCESS)
        return tp_failed(tp);
    if (++tp->progress_calls % VERBS_ASYNC_EVERY == 0) {
        long long now = now_ns();
        if (now - tp->async_ns >= VERBS_ASYNC_NS) {
            tp->async_ns = now;
            RDX_CHECK(async_drain(tp));
        }
        RDX_CHECK(watch_peers_at(tp, now));
    }
    do {
        RDX_CHECK(cq_poll(tp, &n));
    } while (n == VERBS_POLL_BATCH);
    /* A credit that rides in the header of our next message to that peer is free; a
     * SEND WITH IMM of its own costs a post (a syscall on rxe) and a packet each way. Right
     * after a release the caller usually sends to the same peer (the reply of a ping-pong,
     * the next ring step), so pending credits wait for one progress() call and go out on
     * the next; idle() flushes them at once, and recv_release every credit_batch. */
    if (tp->credits_pending > 0 && tp->credits_held)
        RDX_CHECK(credits_flush(tp));
    tp->credits_held = tp->credits_pending > 0;
    return RDX_SUCCESS;
}

/* ---- data path ---------------------------------------------------------------------------- */

static bool tx_ready(const rdx_tp_t *tp, const verbs_peer_t *p)
{
    uint64_t bounce_user = p->tx_wr_of[p->tx_tail % (uint64_t)tp->slots];
    return p->tx_tail < p->tx_released + (uint64_t)tp->slots && bounce_user <= p->sq_done &&
           p->sq_posted - p->sq_done < (uint64_t)tp->sq_depth;
}

static rdx_status_t verbs_send_acquire(rdx_tp_t *tp, int peer, void **buf)
{
    RDX_CHECK(peer_check(tp, peer, "send_acquire"));
    verbs_peer_t *p = &tp->peers[peer];
    if (!tx_ready(tp, p)) {
        int n;
        RDX_CHECK(cq_poll(tp, &n));
        if (!tx_ready(tp, p)) {
            *buf = NULL;
            return RDX_SUCCESS;
        }
    }
    *buf = slot_at(p->tx_slots, tp, p->tx_tail) + RDX_VERBS_PAYLOAD_OFF;
    return RDX_SUCCESS;
}

/* Posts the WRITE WITH IMM of message tx_tail: the header from the bounce slot, then the
 * payload from the bounce slot (user == NULL) or from registered user memory (zero-copy:
 * a second scatter/gather entry, so header and payload still land contiguously). */
static rdx_status_t commit_post(rdx_tp_t *tp, int peer, size_t len, uint64_t tag,
                                const void *user, const rdx_tp_mem_t *mem)
{
    verbs_peer_t *p = &tp->peers[peer];
    if (len > tp->lay.slot_bytes || !tx_ready(tp, p))
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: verbs: peer %d: send_commit of %zu bytes "
                       "(slot %zu) without a slot from send_acquire", tp->rank, peer, len,
                       tp->lay.slot_bytes);
    char *slot = slot_at(p->tx_slots, tp, p->tx_tail);
    rdx_verbs_slot_hdr_t *hdr = (rdx_verbs_slot_hdr_t *)(slot + RDX_VERBS_HDR_OFF);
    hdr->tag = tag;
    hdr->len = (uint32_t)len;
    hdr->seq = (uint32_t)p->tx_tail;
    hdr->credit = (uint32_t)p->rx_head; /* credits ride along: no separate SEND needed */
    if (p->rx_head != p->rx_credit_sent) {
        p->rx_credit_sent = p->rx_head;
        tp->credits_pending--;
    }
    uint32_t bytes = (uint32_t)(sizeof(*hdr) + len);
    struct ibv_sge sge[2] = {
        {.addr = (uintptr_t)hdr, .length = bytes, .lkey = tp->tx_mr->lkey},
        {.addr = (uintptr_t)user, .length = (uint32_t)len,
         .lkey = mem ? rdx_verbs_mem_lkey(mem) : 0},
    };
    if (user)
        sge[0].length = (uint32_t)sizeof(*hdr);
    struct ibv_send_wr wr = {
        .opcode = IBV_WR_RDMA_WRITE_WITH_IMM,
        .sg_list = sge,
        .num_sge = user ? 2 : 1,
        .imm_data = htonl((uint32_t)(p->tx_tail & RDX_VERBS_IMM_MASK)),
        /* a zero-copy WRITE is signaled: its completion frees the user's buffer */
        .send_flags = user ? IBV_SEND_SIGNALED : bytes <= tp->max_inline ? IBV_SEND_INLINE : 0,
        .wr.rdma = {
            .remote_addr = p->r_addr + (p->tx_tail % (uint64_t)tp->slots) * tp->lay.stride +
                           RDX_VERBS_HDR_OFF,
            .rkey = p->r_rkey,
        },
    };
    RDX_CHECK(sq_post(tp, peer, &wr, "RDMA WRITE WITH IMM"));
    /* An inline WRITE copied the bounce slot already: it is free again at once. */
    p->tx_wr_of[p->tx_tail % (uint64_t)tp->slots] =
        (wr.send_flags & IBV_SEND_INLINE) ? 0 : p->sq_posted;
    p->tx_last_data = p->sq_posted;
    if (user) {
        p->tx_last_zcopy = p->sq_posted;
        tp->zc_msgs++;
        tp->zc_bytes += len;
    }
    p->tx_tail++;
    return RDX_SUCCESS;
}

static rdx_status_t verbs_send_commit(rdx_tp_t *tp, int peer, size_t len, uint64_t tag)
{
    RDX_CHECK(peer_check(tp, peer, "send_commit"));
    return commit_post(tp, peer, len, tag, NULL, NULL);
}

/* Zero-copy pays only when the copy it saves costs more than the signaled completion it
 * adds; below this a message is copied into the bounce slot (and small ones go inline). */
#define VERBS_ZCOPY_MIN 4096

static rdx_status_t verbs_send_commit_zcopy(rdx_tp_t *tp, int peer, const void *src,
                                            size_t len, uint64_t tag, bool *sent)
{
    *sent = false;
    RDX_CHECK(peer_check(tp, peer, "send_commit_zcopy"));
    if (len < VERBS_ZCOPY_MIN)
        return RDX_SUCCESS;
    const rdx_tp_mem_t *mem = rdx_verbs_mr_cache_find(&tp->cache, src, len);
    if (!mem)
        return RDX_SUCCESS;
    RDX_CHECK(commit_post(tp, peer, len, tag, src, mem));
    *sent = true;
    return RDX_SUCCESS;
}

static rdx_status_t verbs_send_zcopy_flushed(rdx_tp_t *tp, int peer, bool *done)
{
    RDX_CHECK(peer_check(tp, peer, "send_zcopy_flushed"));
    verbs_peer_t *p = &tp->peers[peer];
    if (p->sq_done < p->tx_last_zcopy) {
        int n;
        RDX_CHECK(cq_poll(tp, &n));
    }
    *done = p->sq_done >= p->tx_last_zcopy;
    return RDX_SUCCESS;
}

static rdx_status_t verbs_recv_peek(rdx_tp_t *tp, int peer, const void **buf, size_t *len,
                                    uint64_t *tag)
{
    RDX_CHECK(peer_check(tp, peer, "recv_peek"));
    verbs_peer_t *p = &tp->peers[peer];
    if (p->rx_head == p->rx_arrived) {
        int n;
        RDX_CHECK(cq_poll(tp, &n));
        if (p->rx_head == p->rx_arrived) {
            *buf = NULL;
            return RDX_SUCCESS;
        }
    }
    char *slot = slot_at(p->rx_slots, tp, p->rx_head);
    const rdx_verbs_slot_hdr_t *hdr = (const rdx_verbs_slot_hdr_t *)(slot + RDX_VERBS_HDR_OFF);
    if (hdr->seq != (uint32_t)p->rx_head || hdr->len > tp->lay.slot_bytes)
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: QP 0x%x: slot %llu "
                       "holds message %u of %u bytes, expected message %u of at most %zu",
                       tp->rank, peer, p->qp->qp_num,
                       (unsigned long long)(p->rx_head % (uint64_t)tp->slots), hdr->seq,
                       hdr->len, (uint32_t)p->rx_head, tp->lay.slot_bytes);
    *buf = slot + RDX_VERBS_PAYLOAD_OFF;
    *len = hdr->len;
    *tag = hdr->tag;
    return RDX_SUCCESS;
}

static rdx_status_t verbs_recv_release(rdx_tp_t *tp, int peer)
{
    RDX_CHECK(peer_check(tp, peer, "recv_release"));
    verbs_peer_t *p = &tp->peers[peer];
    if (p->rx_head == p->rx_arrived)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: verbs: peer %d: recv_release with no "
                       "message peeked", tp->rank, peer);
    if (p->rx_head == p->rx_credit_sent)
        tp->credits_pending++;
    p->rx_head++;
    /* Credits go back in batches (progress flushes the rest), so a stream of small messages
     * does not cost one SEND each way. */
    if (p->rx_head - p->rx_credit_sent >= (uint64_t)tp->credit_batch)
        RDX_CHECK(credit_send(tp, peer));
    return RDX_SUCCESS;
}

/* ---- idle: spin briefly, then sleep on the completion channel ----------------------- */

static rdx_status_t idle_block(rdx_tp_t *tp, long timeout_us)
{
    if (!tp->cq_armed) {
        int rc = ibv_req_notify_cq(tp->cq, 0);
        if (rc != 0)
            return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: ibv_req_notify_cq: %s",
                           tp->rank, strerror(rc > 0 ? rc : errno));
        tp->cq_armed = true;
    }
    int n;
    RDX_CHECK(cq_poll(tp, &n)); /* a completion that came before arming sends no event */
    if (n > 0)
        return RDX_SUCCESS;
    struct pollfd fds[2] = {{.fd = tp->chan->fd, .events = POLLIN},
                            {.fd = tp->dev.ctx->async_fd, .events = POLLIN}};
    struct timespec ts = {.tv_sec = timeout_us / 1000000, .tv_nsec = timeout_us % 1000000 * 1000};
    int rc = ppoll(fds, 2, &ts, NULL);
    if (rc < 0 && errno != EINTR)
        return tp_fail(tp, RDX_ERR_TRANSPORT, "rank %d: verbs: poll on completion channel: %s",
                       tp->rank, strerror(errno));
    tp->sleeps++;
    tp->woken += rc > 0;
    tp->slept_out += rc == 0;
    if (fds[0].revents & POLLIN) {
        struct ibv_cq *cq;
        void *ctx;
        if (ibv_get_cq_event(tp->chan, &cq, &ctx) == 0) {
            tp->cq_armed = false;
            if (++tp->cq_unacked >= VERBS_CQ_ACK_BATCH) {
                ibv_ack_cq_events(tp->cq, tp->cq_unacked);
                tp->cq_unacked = 0;
            }
        }
    }
    if (fds[1].revents & POLLIN)
        RDX_CHECK(async_drain(tp));
    return RDX_SUCCESS;
}

static rdx_status_t verbs_idle(rdx_tp_t *tp, long timeout_us)
{
    uint64_t before = tp->events;
    RDX_CHECK(verbs_progress(tp));
    if (tp->credits_pending > 0) /* we are about to wait: nothing else will carry them */
        RDX_CHECK(credits_flush(tp));
    RDX_CHECK(async_drain(tp));
    RDX_CHECK(watch_peers(tp));
    if (timeout_us <= 0 || tp->events != before)
        return RDX_SUCCESS; /* something came in: the caller has work again */
    long long spin_end = now_ns() + (tp->spin_us < timeout_us ? tp->spin_us : timeout_us) * 1000;
    /* Yield now and then while spinning: ranks share cores, and on soft-RoCE the kernel
     * work that completes our peer's message (softirq) needs this CPU too. */
    for (int i = 0; tp->events == before; i++) {
        int n;
        RDX_CHECK(cq_poll(tp, &n));
        if ((i & 15) == 15) {
            if (now_ns() >= spin_end)
                break;
            sched_yield();
        }
    }
    if (tp->events == before)
        RDX_CHECK(idle_block(tp, timeout_us));
    return verbs_progress(tp);
}

/* ---- set-up: pool, completion queue, queue pairs ------------------------------------- */

static rdx_status_t cq_create(rdx_tp_t *tp)
{
    int peers = tp->size - 1;
    int cqe = peers * (tp->sq_depth + tp->rq_depth) + 1;
    if (cqe > tp->dev.dev_attr.max_cqe)
        return rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: %d peers x %d slots need a CQ of %d "
                       "entries, %s allows %d: lower RDX_SLOTS", tp->rank, peers, tp->slots, cqe,
                       tp->dev.name, tp->dev.dev_attr.max_cqe);
    tp->chan = ibv_create_comp_channel(tp->dev.ctx);
    if (!tp->chan)
        return rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: ibv_create_comp_channel: %s",
                       tp->rank, strerror(errno));
    tp->cq = ibv_create_cq(tp->dev.ctx, cqe, tp, tp->chan, 0);
    if (!tp->cq) {
        int e = errno;
        ibv_destroy_comp_channel(tp->chan);
        return rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: ibv_create_cq(%d): %s", tp->rank,
                       cqe, strerror(e));
    }
    /* Non-blocking fds: idle() waits in poll() with a timeout, never in a verbs call. */
    int fl = fcntl(tp->chan->fd, F_GETFL);
    fcntl(tp->chan->fd, F_SETFL, fl | O_NONBLOCK);
    fl = fcntl(tp->dev.ctx->async_fd, F_GETFL);
    fcntl(tp->dev.ctx->async_fd, F_SETFL, fl | O_NONBLOCK);
    return RDX_SUCCESS;
}

static void cq_destroy(rdx_tp_t *tp)
{
    if (tp->cq_unacked)
        ibv_ack_cq_events(tp->cq, tp->cq_unacked);
    ibv_destroy_cq(tp->cq);
    ibv_destroy_comp_channel(tp->chan);
}

static rdx_status_t pool_create(rdx_tp_t *tp)
{
    size_t bytes = tp->lay.pool_bytes;
    if (bytes == 0)
        return RDX_SUCCESS;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: verbs: mmap of a %zu-byte pool: %s",
                       tp->rank, bytes, strerror(errno));
    tp->slab = mem;
    /* Peers may write only into receive slots; bounce slots are local-only. */
    rdx_status_t st = rdx_verbs_reg_mr(tp->pd, tp->slab, tp->lay.region_bytes,
                                       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE,
                                       tp->rank, "receive slots", &tp->rx_mr);
    if (st != RDX_SUCCESS)
        goto err_unmap;
    st = rdx_verbs_reg_mr(tp->pd, tp->slab + tp->lay.region_bytes, tp->lay.region_bytes,
                          IBV_ACCESS_LOCAL_WRITE, tp->rank, "bounce slots", &tp->tx_mr);
    if (st != RDX_SUCCESS)
        goto err_dereg_rx;
    return RDX_SUCCESS;
err_dereg_rx:
    ibv_dereg_mr(tp->rx_mr);
    tp->rx_mr = NULL;
err_unmap:
    munmap(tp->slab, bytes);
    tp->slab = NULL;
    return st;
}

static void pool_destroy(rdx_tp_t *tp)
{
    if (!tp->slab)
        return;
    ibv_dereg_mr(tp->tx_mr);
    ibv_dereg_mr(tp->rx_mr);
    munmap(tp->slab, tp->lay.pool_bytes);
}

static rdx_status_t qp_create(rdx_tp_t *tp, int peer)
{
    verbs_peer_t *p = &tp->peers[peer];
    struct ibv_qp_init_attr qia = {
        .send_cq = tp->cq,
        .recv_cq = tp->cq,
        .qp_type = IBV_QPT_RC,
        .sq_sig_all = 0,
        .cap = {.max_send_wr = (uint32_t)tp->sq_depth, .max_recv_wr = (uint32_t)tp->rq_depth,
                .max_send_sge = 2, .max_recv_sge = 1, .max_inline_data = VERBS_MAX_INLINE},
    };
    p->qp = ibv_create_qp(tp->pd, &qia);
    if (!p->qp) { /* some providers refuse inline data: ask again without */
        qia.cap.max_inline_data = 0;
        p->qp = ibv_create_qp(tp->pd, &qia);
    }
    if (!p->qp)
        return rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d: ibv_create_qp(RC, %d send, "
                       "%d receive): %s", tp->rank, peer, tp->sq_depth, tp->rq_depth,
                       strerror(errno));
    if (qia.cap.max_inline_data < tp->max_inline)
        tp->max_inline = qia.cap.max_inline_data;
    p->psn = (uint32_t)lrand48() & 0xffffff;
    rdx_status_t st = rdx_verbs_qp_init(p->qp, tp->dev.port, tp->rank, peer);
    if (st == RDX_SUCCESS)
        st = rq_post(tp, peer, tp->rq_depth); /* allowed from INIT on: all before any data */
    if (st != RDX_SUCCESS) {
        ibv_destroy_qp(p->qp);
        p->qp = NULL;
    }
    return st;
}

static void qps_destroy(rdx_tp_t *tp)
{
    if (!tp->peers)
        return;
    for (int j = 0; j < tp->size; j++)
        if (tp->peers[j].qp)
            ibv_destroy_qp(tp->peers[j].qp);
    free(tp->peers[tp->rank].tx_wr_of);
    free(tp->peers);
    tp->peers = NULL;
}

static rdx_status_t qps_create(rdx_tp_t *tp)
{
    tp->peers = calloc((size_t)tp->size, sizeof(*tp->peers));
    uint64_t *wr_of = calloc((size_t)tp->size * (size_t)tp->slots, sizeof(*wr_of));
    if (!tp->peers || !wr_of) {
        free(tp->peers);
        free(wr_of);
        tp->peers = NULL;
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: verbs: out of memory for %d peers",
                       tp->rank, tp->size);
    }
    /* One allocation for all peers; qps_destroy frees it through our own (unused) entry. */
    tp->peers[tp->rank].tx_wr_of = wr_of;
    size_t off = 0;
    for (int j = 0; j < tp->size; j++) {
        if (j == tp->rank)
            continue;
        verbs_peer_t *p = &tp->peers[j];
        p->tx_wr_of = wr_of + (size_t)j * (size_t)tp->slots;
        p->rx_slots = tp->slab + off;
        p->tx_slots = tp->slab + tp->lay.region_bytes + off;
        off += (size_t)tp->slots * tp->lay.stride;
        rdx_status_t st = qp_create(tp, j);
        if (st != RDX_SUCCESS) {
            qps_destroy(tp);
            return st;
        }
    }
    return RDX_SUCCESS;
}

/* ---- address exchange and connection --------------------------------------------------- */

static void wire_fill(const rdx_tp_t *tp, rdx_verbs_wire_hdr_t *h, rdx_verbs_wire_peer_t *e,
                      rdx_status_t local)
{
    memset(h, 0, sizeof(*h));
    h->magic = RDX_VERBS_MAGIC;
    h->version = RDX_VERBS_WIRE_VERSION;
    h->rank = tp->rank;
    h->size = tp->size;
    h->status = local;
    memset(e, 0, (size_t)tp->size * sizeof(*e));
    if (local != RDX_SUCCESS)
        return;
    h->slot_bytes = tp->lay.slot_bytes;
    h->stride = tp->lay.stride;
    h->slots = (uint32_t)tp->slots;
    h->lid = tp->dev.port_attr.lid;
    h->port = tp->dev.port;
    h->mtu = (uint8_t)tp->dev.port_attr.active_mtu;
    h->link_layer = tp->dev.port_attr.link_layer;
    h->is_global = tp->dev.gid_index >= 0;
    memcpy(h->gid, tp->dev.gid.raw, 16);
    for (int j = 0; j < tp->size; j++) {
        if (j == tp->rank)
            continue;
        e[j].qpn = tp->peers[j].qp->qp_num;
        e[j].psn = tp->peers[j].psn;
        e[j].addr = (uintptr_t)tp->peers[j].rx_slots;
        e[j].rkey = tp->rx_mr->rkey;
    }
}

static const rdx_verbs_wire_hdr_t *wire_hdr(const char *all, int size, int r)
{
    return (const rdx_verbs_wire_hdr_t *)(all + (size_t)r * rdx_verbs_wire_bytes(size));
}

static const rdx_verbs_wire_peer_t *wire_entry(const char *all, int size, int r, int j)
{
    return (const rdx_verbs_wire_peer_t *)(all + (size_t)r * rdx_verbs_wire_bytes(size) +
                                           sizeof(rdx_verbs_wire_hdr_t)) + j;
}

static rdx_status_t peer_connect(rdx_tp_t *tp, const rdx_verbs_wire_hdr_t *h,
                                 const rdx_verbs_wire_peer_t *e, int peer)
{
    verbs_peer_t *p = &tp->peers[peer];
    rdx_verbs_path_t path = {
        .port = tp->dev.port,
        .mtu = h->mtu < tp->dev.port_attr.active_mtu ? (enum ibv_mtu)h->mtu
                                                     : tp->dev.port_attr.active_mtu,
        .remote_qpn = e->qpn,
        .remote_psn = e->psn,
        .local_psn = p->psn,
        .dlid = h->lid,
        .is_global = h->is_global,
        .sgid_index = tp->dev.gid_index,
        .traffic_class = tp->ib_tc,
        .sl = tp->ib_sl,
        .timeout = tp->ib_timeout,
        .retry_cnt = tp->ib_retry_cnt,
    };
    memcpy(path.dgid.raw, h->gid, 16);
    p->r_addr = e->addr;
    p->r_rkey = e->rkey;
    RDX_CHECK(rdx_verbs_qp_rtr(p->qp, &path, tp->rank, peer));
    RDX_CHECK(rdx_verbs_qp_rts(p->qp, &path, tp->rank, peer));
    rdx_log_debug("verbs: peer %d: QP 0x%x -> 0x%x connected, mtu %d", peer, p->qp->qp_num,
                  e->qpn, 128 << path.mtu);
    return RDX_SUCCESS;
}

static rdx_status_t connect_all(rdx_tp_t *tp, const char *all)
{
    const rdx_verbs_wire_hdr_t *mine = wire_hdr(all, tp->size, tp->rank);
    for (int j = 0; j < tp->size; j++) {
        if (j == tp->rank)
            continue;
        const rdx_verbs_wire_hdr_t *h = wire_hdr(all, tp->size, j);
        RDX_CHECK(rdx_verbs_wire_check(mine, h, j));
        RDX_CHECK(peer_connect(tp, h, wire_entry(all, tp->size, j, tp->rank), j));
    }
    return RDX_SUCCESS;
}

/* First rank whose blob reports a failed local set-up, or -1. */
static int wire_failed_rank(const char *all, int size, rdx_status_t *st)
{
    for (int r = 0; r < size; r++) {
        const rdx_verbs_wire_hdr_t *h = wire_hdr(all, size, r);
        if (h->magic == RDX_VERBS_MAGIC && h->status != RDX_SUCCESS) {
            *st = (rdx_status_t)h->status;
            return r;
        }
    }
    return -1;
}

/* Every rank takes part even when its own set-up failed, so all fail fast together instead
 * of waiting for the bootstrap timeout. */
static rdx_status_t exchange(rdx_tp_t *tp, rdx_bootstrap_t *bs, rdx_status_t local, char **all)
{
    size_t one = rdx_verbs_wire_bytes(tp->size);
    char *mine = calloc(1, one), *buf = calloc((size_t)tp->size, one);
    if (!mine || !buf) {
        free(mine);
        free(buf);
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: verbs: out of memory for addresses",
                       tp->rank);
    }
    wire_fill(tp, (rdx_verbs_wire_hdr_t *)mine,
              (rdx_verbs_wire_peer_t *)(mine + sizeof(rdx_verbs_wire_hdr_t)), local);
    rdx_status_t st = rdx_bootstrap_allgather(bs, mine, one, buf);
    free(mine);
    rdx_status_t peer_st = RDX_SUCCESS;
    int bad = st == RDX_SUCCESS ? wire_failed_rank(buf, tp->size, &peer_st) : -1;
    if (st == RDX_SUCCESS && bad >= 0 && local == RDX_SUCCESS)
        st = rdx_err(peer_st == RDX_ERR_NO_MEMORY || peer_st == RDX_ERR_CONFIG
                         ? peer_st : RDX_ERR_TRANSPORT,
                     "rank %d: verbs: peer %d could not set up verbs (%s); see its log",
                     tp->rank, bad, rdx_strerror(peer_st));
    if (st != RDX_SUCCESS) {
        free(buf);
        return st;
    }
    *all = buf;
    return RDX_SUCCESS;
}

/* Connection is confirmed by a second allgather rather than a barrier, so that a rank whose
 * QP transition failed stops everyone, and nobody writes into a QP not yet in RTR. */
static rdx_status_t connect_confirm(rdx_tp_t *tp, rdx_bootstrap_t *bs, rdx_status_t local)
{
    int32_t mine = local, *all = calloc((size_t)tp->size, sizeof(*all));
    if (!all)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: verbs: out of memory", tp->rank);
    rdx_status_t st = rdx_bootstrap_allgather(bs, &mine, sizeof(mine), all);
    for (int r = 0; st == RDX_SUCCESS && local == RDX_SUCCESS && r < tp->size; r++)
        if (all[r] != RDX_SUCCESS)
            st = rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: peer %d failed to connect (%s)",
                         tp->rank, r, rdx_strerror((rdx_status_t)all[r]));
    free(all);
    return st;
}

/* ---- create / destroy -------------------------------------------------------------------- */

static void tp_settings(rdx_tp_t *tp, const rdx_tp_params_t *pp)
{
    const rdx_settings_t *s = pp->settings;
    tp->rank = pp->rank;
    tp->size = pp->size;
    tp->slots = pp->slots;
    tp->sig_every = pp->slots / 2 > 0 ? pp->slots / 2 : 1;
    tp->credit_batch = pp->slots / 4 > 0 ? pp->slots / 4 : 1;
    tp->sq_depth = 2 * pp->slots;
    tp->rq_depth = 2 * pp->slots;
    tp->max_inline = VERBS_MAX_INLINE;
    tp->spin_us = s->spin_us < 0 ? RDX_SPIN_US_DEDICATED : s->spin_us; /* not via a comm */
    tp->timeout_ms = s->timeout_ms;
    tp->ib_tc = (uint8_t)s->ib_tc;
    tp->ib_sl = (uint8_t)(s->ib_sl & 0xf);
    tp->ib_timeout = (uint8_t)(s->ib_timeout < 0 ? 0 : s->ib_timeout > 31 ? 31 : s->ib_timeout);
    tp->ib_retry_cnt = (uint8_t)(s->ib_retry_cnt < 0 ? 0 : s->ib_retry_cnt > 7 ? 7
                                                                             : s->ib_retry_cnt);
}

static rdx_status_t params_check(const rdx_tp_params_t *pp)
{
    if (!pp || !pp->settings || pp->size < 1 || pp->rank < 0 || pp->rank >= pp->size ||
        (pp->size > 1 && !pp->bs) || pp->size > (int)WRID_PEER_MASK)
        return rdx_err(RDX_ERR_INVALID_ARG, "rank %d: verbs: create: bad parameters (size %d, "
                       "bootstrap %p)", pp ? pp->rank : -1, pp ? pp->size : 0,
                       pp ? (void *)pp->bs : NULL);
    if (pp->slots < 2)
        return rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: RDX_SLOTS=%d: need at least 2",
                       pp->rank, pp->slots);
    return RDX_SUCCESS;
}

/* Everything that needs no peer: device, PD, CQ, pool, QPs in INIT with receives posted. */
static rdx_status_t setup_local(rdx_tp_t *tp, const rdx_tp_params_t *pp)
{
    rdx_status_t st;
    RDX_CHECK(rdx_verbs_layout_compute(tp->rank, tp->size - 1, pp->slot_bytes, tp->slots,
                                       pp->pool_bytes, &tp->lay));
    if (tp->lay.slot_bytes < pp->slot_bytes && tp->size > 1)
        rdx_log_info("verbs: slots shrunk to %zu bytes to fit RDX_POOL_MB", tp->lay.slot_bytes);
    RDX_CHECK(rdx_verbs_fork_init(tp->rank));
    if (tp->size > 1)
        RDX_CHECK(rdx_verbs_memlock_check(tp->rank, tp->lay.pool_bytes));
    RDX_CHECK(rdx_verbs_dev_open(pp->settings, tp->rank, &tp->dev));
    if (tp->dev.soft && tp->ib_retry_cnt == 7) {
        /* rxe reads retry_cnt 7 as "retry forever" (the spec means 7 retries): a peer that
         * died would then never produce RETRY_EXC_ERR and we could not report it. */
        tp->ib_retry_cnt = 6;
        rdx_log_debug("verbs: %s is soft-RoCE: retry count 6 instead of 7 (rxe retries 7 "
                      "forever)", tp->dev.name);
    }
    if (tp->sq_depth > tp->dev.dev_attr.max_qp_wr) {
        st = rdx_err(RDX_ERR_CONFIG, "rank %d: verbs: RDX_SLOTS=%d needs %d work requests per "
                     "QP, %s allows %d", tp->rank, tp->slots, tp->sq_depth, tp->dev.name,
                     tp->dev.dev_attr.max_qp_wr);
        goto err_close;
    }
    tp->pd = ibv_alloc_pd(tp->dev.ctx);
    if (!tp->pd) {
        st = rdx_err(RDX_ERR_TRANSPORT, "rank %d: verbs: ibv_alloc_pd on %s: %s", tp->rank,
                     tp->dev.name, strerror(errno));
        goto err_close;
    }
    rdx_verbs_mr_cache_init(&tp->cache, tp->pd, tp->rank, tp->lay.pool_bytes);
    if ((st = cq_create(tp)) != RDX_SUCCESS)
        goto err_dealloc_pd;
    if ((st = pool_create(tp)) != RDX_SUCCESS)
        goto err_destroy_cq;
    if ((st = qps_create(tp)) != RDX_SUCCESS)
        goto err_destroy_pool;
    return RDX_SUCCESS;
err_destroy_pool:
    pool_destroy(tp);
err_destroy_cq:
    cq_destroy(tp);
err_dealloc_pd:
    ibv_dealloc_pd(tp->pd);
err_close:
    rdx_verbs_dev_close(&tp->dev);
    return st;
}

static void teardown_local(rdx_tp_t *tp)
{
    qps_destroy(tp);
    rdx_verbs_mr_cache_cleanup(&tp->cache);
    pool_destroy(tp);
    cq_destroy(tp);
    ibv_dealloc_pd(tp->pd);
    rdx_verbs_dev_close(&tp->dev);
}

static rdx_status_t setup_connect(rdx_tp_t *tp, rdx_bootstrap_t *bs)
{
    char *all = NULL;
    RDX_CHECK(exchange(tp, bs, RDX_SUCCESS, &all));
    rdx_status_t st = connect_all(tp, all);
    free(all);
    char msg[RDX_ERRMSG_MAX];
    snprintf(msg, sizeof(msg), "%s", rdx_err_last());
    rdx_status_t cst = connect_confirm(tp, bs, st);
    if (st != RDX_SUCCESS)
        return rdx_err(st, "%s", msg);
    return cst;
}

static rdx_status_t verbs_create(const rdx_tp_params_t *pp, rdx_tp_t **out)
{
    RDX_CHECK(params_check(pp));
    rdx_tp_t *tp = calloc(1, sizeof(*tp));
    if (!tp)
        return rdx_err(RDX_ERR_NO_MEMORY, "rank %d: verbs: out of memory", pp->rank);
    tp_settings(tp, pp);
    srand48((long)now_ns() ^ ((long)pp->rank << 16));
    rdx_status_t st = setup_local(tp, pp);
    if (tp->size > 1) {
        if (st != RDX_SUCCESS) { /* tell the others, then report our own cause */
            char msg[RDX_ERRMSG_MAX], *all = NULL;
            snprintf(msg, sizeof(msg), "%s", rdx_err_last());
            if (exchange(tp, pp->bs, st, &all) == RDX_SUCCESS)
                free(all);
            free(tp);
            return rdx_err(st, "%s", msg);
        }
        st = setup_connect(tp, pp->bs);
    }
    if (st != RDX_SUCCESS) {
        if (tp->dev.ctx) {
            char msg[RDX_ERRMSG_MAX];
            snprintf(msg, sizeof(msg), "%s", rdx_err_last());
            teardown_local(tp);
            rdx_err(st, "%s", msg);
        }
        free(tp);
        return st;
    }
    char gid[64];
    rdx_verbs_gid_format(tp->dev.gid.raw, gid, sizeof(gid));
    rdx_log_info("verbs: ready: %d peers, %d slots of %zu bytes each way, pool %zu KiB, "
                 "inline <= %u, signal every %d", tp->size - 1, tp->slots, tp->lay.slot_bytes,
                 tp->lay.pool_bytes / 1024, tp->max_inline, tp->sig_every);
    *out = tp;
    return RDX_SUCCESS;
}

/* Waits (bounded) until the last data WRITE to one peer is known complete, so a message
 * committed just before destroy is not thrown away with its queue pair. */
static void drain_peer(rdx_tp_t *tp, int j, long long deadline)
{
    verbs_peer_t *p = &tp->peers[j];
    uint64_t sig = (uint64_t)tp->sig_every;
    while (p->tx_last_data > p->sq_done && tp->fatal == RDX_SUCCESS && now_ns() < deadline) {
        int n = 0;
        /* Unsignaled WRITEs report nothing: pad with zero-byte probes up to a signaled
         * index, whose completion covers everything before it. */
        bool covered = p->sq_posted / sig * sig >= p->tx_last_data;
        if (!covered && sq_has_ctrl_room(tp, p)) {
            if (probe_one(tp, j) != RDX_SUCCESS)
                return;
            continue;
        }
        if (cq_poll(tp, &n) != RDX_SUCCESS)
            return;
        if (n == 0)
            sched_yield();
    }
    if (p->tx_last_data > p->sq_done && tp->fatal == RDX_SUCCESS)
        rdx_log_debug("verbs: peer %d: last message still unacknowledged at destroy", j);
}

static void verbs_destroy(rdx_tp_t *tp)
{
    if (!tp)
        return;
    rdx_log_debug("verbs: idle slept %llu times: %llu woken by an event, %llu timed out",
                  (unsigned long long)tp->sleeps, (unsigned long long)tp->woken,
                  (unsigned long long)tp->slept_out);
    rdx_log_debug("verbs: zero-copy: %llu messages, %llu bytes sent from registered user "
                  "memory", (unsigned long long)tp->zc_msgs, (unsigned long long)tp->zc_bytes);
    long long deadline = now_ns() + (long long)VERBS_DRAIN_MS * 1000000ll;
    for (int j = 0; j < tp->size; j++)
        if (j != tp->rank)
            drain_peer(tp, j, deadline);
    teardown_local(tp);
    free(tp);
}

/* ---- properties and registration ---------------------------------------------------------- */

static double port_gbps(const struct ibv_port_attr *pa)
{
    double lane;
    switch (pa->active_speed) {
    case 1: lane = 2.5; break;
    case 2: lane = 5.0; break;
    case 4: case 8: lane = 10.0; break;
    case 16: lane = 14.0625; break;
    case 32: lane = 25.78125; break;
    case 64: lane = 53.125; break;
    case 128: lane = 106.25; break;
    default: lane = 10.0; break;
    }
    int width = pa->active_width == 2 ? 4 : pa->active_width == 4 ? 8
              : pa->active_width == 8 ? 12 : pa->active_width == 16 ? 2 : 1;
    return lane * width;
}

static void verbs_props(const rdx_tp_t *tp, rdx_tp_props_t *props)
{
    char gid[64];
    rdx_verbs_gid_format(tp->dev.gid.raw, gid, sizeof(gid));
    memset(props, 0, sizeof(*props));
    props->name = "verbs";
    if (tp->dev.gid_index >= 0)
        snprintf(props->detail, sizeof(props->detail), "%s:%u gid %d %s %s, mtu %d",
                 tp->dev.name, tp->dev.port, tp->dev.gid_index,
                 rdx_verbs_gid_type_name(tp->dev.gid_type), gid,
                 128 << tp->dev.port_attr.active_mtu);
    else
        snprintf(props->detail, sizeof(props->detail), "%s:%u lid %u, mtu %d", tp->dev.name,
                 tp->dev.port, tp->dev.port_attr.lid, 128 << tp->dev.port_attr.active_mtu);
    /* Soft-RoCE moves bytes with the CPU: tens of microseconds and well under 1 GB/s. */
    bool soft = tp->dev.soft;
    props->latency_us = soft ? 15.0 : 1.5;
    props->bandwidth_gbs = soft ? 0.05 : port_gbps(&tp->dev.port_attr) / 8.0;
    props->slot_bytes = tp->lay.slot_bytes;
    props->slots = tp->slots;
}

static bool verbs_peer_is_local(const rdx_tp_t *tp, int peer)
{
    return false; /* every byte goes through the HCA, even to a peer on this host */
}

static rdx_status_t verbs_mem_register(rdx_tp_t *tp, void *buf, size_t bytes, rdx_tp_mem_t **mem)
{
    return rdx_verbs_mr_cache_get(&tp->cache, buf, bytes, mem);
}

static rdx_status_t verbs_mem_deregister(rdx_tp_t *tp, rdx_tp_mem_t *mem)
{
    return rdx_verbs_mr_cache_put(&tp->cache, mem);
}

const rdx_verbs_dev_t *rdx_verbs_tp_dev(const rdx_tp_t *tp)
{
    return &tp->dev;
}

void rdx_verbs_tp_zcopy_stats(const rdx_tp_t *tp, uint64_t *msgs, uint64_t *bytes)
{
    *msgs = tp->zc_msgs;
    *bytes = tp->zc_bytes;
}

const rdx_tp_ops_t rdx_tp_verbs_ops = {
    .name = "verbs",
    .create = verbs_create,
    .destroy = verbs_destroy,
    .props = verbs_props,
    .peer_is_local = verbs_peer_is_local,
    .send_acquire = verbs_send_acquire,
    .send_commit = verbs_send_commit,
    .recv_peek = verbs_recv_peek,
    .recv_release = verbs_recv_release,
    .progress = verbs_progress,
    .idle = verbs_idle,
    .mem_register = verbs_mem_register,
    .mem_deregister = verbs_mem_deregister,
    .send_commit_zcopy = verbs_send_commit_zcopy,
    .send_zcopy_flushed = verbs_send_zcopy_flushed,
};
