/*
 * UCX transport, driven directly through rdx_tp_ucx_ops by 2 or 3 forked ranks that meet
 * over a real bootstrap on 127.0.0.1. Every message carries a payload, length and tag that
 * are a closed-form function of (sender, sequence number), and every byte is checked, so a
 * lost, reordered, duplicated or overwritten message fails the test. Each case runs with
 * UCX's default transports (shared memory: the direct rkey_ptr path), with UCX_TLS=tcp (the
 * active-message path, eager sends) and, as "shm_am", with UCX_TLS=sm and the slab taken
 * from the heap so rkey_ptr cannot map it (active messages over shared memory, rendezvous
 * receives into the slots for large messages).
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/bootstrap.h"
#include "src/config.h"
#include "src/error.h"
#include "src/log.h"
#include "src/net.h"
#include "transport/transport.h"

#define MAX_RANKS 4
#define RANK_DEADLINE_MS 40000L /* a rank gives up (and fails) after this */
#define JOB_LIMIT_MS 50000L     /* the parent kills what is still running after this */

typedef struct result {
    int done;
    volatile int settled; /* finished its part of the stream (set by the rank) */
    rdx_status_t create_st;
    rdx_status_t st;
    char msg[RDX_ERRMSG_MAX];
    char detail[160];
    int slots;
    size_t slot_bytes;
    int local_peers;      /* peers for which peer_is_local() is true */
    long full_seen;       /* send_acquire returned NULL (FIFO full) */
    long acquired_blind;  /* slow test: slots acquired while the receiver was away */
    long lost_ms;         /* loss test: time until RDX_ERR_PEER_LOST */
    long destroy_ms;
} result_t;

typedef struct job job_t;
typedef rdx_status_t (*body_fn_t)(job_t *job, int rank, rdx_tp_t *tp, rdx_bootstrap_t *bs,
                                  result_t *res);

struct job {
    int size;
    char addr[64];
    char tls[32];
    bool heap_slab; /* UCX_ALLOC_PRIO=heap: no shared slab, forces the message path */
    size_t slot_bytes;
    int slots;
    int slots_of[MAX_RANKS]; /* per-rank override when non-zero (mismatch test) */
    size_t pool_bytes;
    long nmsg;
    body_fn_t body;
    result_t *res; /* shared with the children */
    pid_t pids[MAX_RANKS];
};

static const rdx_tp_ops_t *ops = &rdx_tp_ucx_ops;

static void job_init(job_t *job, int size, const char *tls, size_t slot_bytes, int slots,
                     long nmsg, body_fn_t body)
{
    memset(job, 0, sizeof(*job));
    job->size = size;
    int port = rdx_net_free_port("127.0.0.1");
    cr_assert(port > 0);
    snprintf(job->addr, sizeof(job->addr), "127.0.0.1:%d", port);
    snprintf(job->tls, sizeof(job->tls), "%s", tls);
    job->slot_bytes = slot_bytes;
    job->slots = slots;
    job->pool_bytes = 64u << 20;
    job->nmsg = nmsg;
    job->body = body;
    job->res = mmap(NULL, sizeof(result_t) * MAX_RANKS, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert(job->res != MAP_FAILED);
    memset(job->res, 0, sizeof(result_t) * MAX_RANKS);
}

static void record(result_t *res, rdx_status_t st)
{
    res->st = st;
    snprintf(res->msg, sizeof(res->msg), "%s", st == RDX_SUCCESS ? "" : rdx_err_last());
}

static void rank_main(job_t *job, int rank)
{
    result_t *res = &job->res[rank];
    rdx_settings_t s;
    rdx_status_t st = rdx_settings_from_env(&s);
    if (st != RDX_SUCCESS) {
        res->create_st = st;
        record(res, st);
        return;
    }
    snprintf(s.ucx_tls, sizeof(s.ucx_tls), "%s", job->tls);
    if (job->heap_slab)
        setenv("UCX_ALLOC_PRIO", "heap", 1); /* read by ucp_config_read in create */
    s.timeout_ms = RANK_DEADLINE_MS;
    s.connect_timeout_ms = 20000;
    rdx_bootstrap_params_t bp = {.rank = rank, .size = job->size, .addr = job->addr,
                                 .job_key = "test-tp-ucx", .ifname = "",
                                 .connect_timeout_ms = 20000, .timeout_ms = RANK_DEADLINE_MS};
    rdx_bootstrap_t *bs = NULL;
    st = rdx_bootstrap_create(&bp, &bs);
    if (st != RDX_SUCCESS) {
        res->create_st = st;
        record(res, st);
        return;
    }
    rdx_tp_params_t tpp = {
        .rank = rank,
        .size = job->size,
        .slot_bytes = job->slot_bytes,
        .slots = job->slots_of[rank] ? job->slots_of[rank] : job->slots,
        .pool_bytes = job->pool_bytes,
        .bs = bs,
        .settings = &s,
    };
    rdx_tp_t *tp = NULL;
    st = ops->create(&tpp, &tp);
    res->create_st = st;
    if (st != RDX_SUCCESS) {
        record(res, st);
        rdx_bootstrap_destroy(bs);
        return;
    }
    rdx_tp_props_t props;
    ops->props(tp, &props);
    snprintf(res->detail, sizeof(res->detail), "%s", props.detail);
    res->slots = props.slots;
    res->slot_bytes = props.slot_bytes;
    for (int r = 0; r < job->size; r++)
        res->local_peers += r != rank && ops->peer_is_local(tp, r);
    st = job->body ? job->body(job, rank, tp, bs, res) : RDX_SUCCESS;
    record(res, st);
    long t0 = rdx_net_now_ms();
    ops->destroy(tp);
    res->destroy_ms = rdx_net_now_ms() - t0;
    rdx_bootstrap_destroy(bs);
}

static void job_run(job_t *job)
{
    for (int r = 0; r < job->size; r++) {
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            rank_main(job, r);
            job->res[r].done = 1;
            _exit(0);
        }
        job->pids[r] = pid;
    }
    long deadline = rdx_net_now_ms() + JOB_LIMIT_MS;
    int left = job->size;
    while (left > 0 && rdx_net_now_ms() < deadline) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            usleep(5000);
            continue;
        }
        for (int r = 0; r < job->size; r++)
            if (job->pids[r] == pid) {
                cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "rank %d died (status 0x%x)", r, status);
                job->pids[r] = 0;
                left--;
            }
    }
    for (int r = 0; r < job->size; r++)
        if (job->pids[r] > 0) {
            kill(job->pids[r], SIGKILL);
            waitpid(job->pids[r], NULL, 0);
            cr_expect(0, "rank %d still running after %ld ms", r, JOB_LIMIT_MS);
        }
}

/* With UCX_TLS unset, default transports must give the shared-memory direct path. */
static bool expect_direct(const job_t *job)
{
    return job->tls[0] == '\0' && !job->heap_slab && getenv("UCX_TLS") == NULL;
}

static void job_expect_ok(const job_t *job)
{
    for (int r = 0; r < job->size; r++) {
        const result_t *res = &job->res[r];
        cr_expect(res->done, "rank %d did not finish", r);
        cr_expect_eq(res->create_st, RDX_SUCCESS, "rank %d create: %s", r, res->msg);
        cr_expect_eq(res->st, RDX_SUCCESS, "rank %d: %s", r, res->msg);
        cr_expect_lt(res->destroy_ms, 5000, "rank %d destroy took %ld ms", r, res->destroy_ms);
        if (res->create_st != RDX_SUCCESS)
            continue;
        if (expect_direct(job)) {
            cr_expect(strstr(res->detail, "shm direct") != NULL, "rank %d: %s", r, res->detail);
            cr_expect_eq(res->local_peers, job->size - 1, "rank %d: %s", r, res->detail);
        }
        if (strcmp(job->tls, "tcp") == 0) {
            cr_expect(strstr(res->detail, "am over tcp") != NULL, "rank %d: %s", r, res->detail);
            cr_expect_eq(res->local_peers, 0, "rank %d: %s", r, res->detail);
        }
        if (job->heap_slab) {
            cr_expect(strstr(res->detail, "am over") != NULL, "rank %d: %s", r, res->detail);
            cr_expect_eq(res->local_peers, 0, "rank %d: %s", r, res->detail);
        }
    }
}

/* ---- message contents: a closed form of (sender, seq) ------------------------------- */

static size_t msg_len(const job_t *job, int src, long seq)
{
    size_t max = job->slot_bytes;
    switch (seq % 9) {
    case 0: return 0;
    case 1: return max;
    case 2: return 1;
    case 3: return max < 40 ? max : 40; /* largest message carried in the slot header */
    case 4: return max < 41 ? max : 41;
    default: return (size_t)((uint64_t)(seq * 7919 + src * 104729) % (max + 1));
    }
}

static uint64_t msg_tag(int src, int dst, long seq)
{
    return ((uint64_t)src << 56) ^ ((uint64_t)dst << 48) ^ ((uint64_t)seq * 0x9E3779B1u);
}

static uint8_t msg_byte(int src, long seq, size_t i)
{
    return (uint8_t)((unsigned)src * 131u + (unsigned long)seq * 17u + i * 7u + (i >> 8));
}

static void msg_fill(uint8_t *buf, int src, long seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = msg_byte(src, seq, i);
}

static rdx_status_t msg_check(const job_t *job, int me, int src, long seq, const uint8_t *buf,
                              size_t len, uint64_t tag)
{
    size_t want = msg_len(job, src, seq);
    if (tag != msg_tag(src, me, seq) || len != want)
        return rdx_err(RDX_ERR_MISMATCH,
                       "rank %d: message %ld from %d: tag 0x%lx len %zu, expected 0x%lx len %zu",
                       me, seq, src, (unsigned long)tag, len,
                       (unsigned long)msg_tag(src, me, seq), want);
    for (size_t i = 0; i < len; i++)
        if (buf[i] != msg_byte(src, seq, i))
            return rdx_err(RDX_ERR_MISMATCH,
                           "rank %d: message %ld from %d: byte %zu is 0x%02x, expected 0x%02x",
                           me, seq, src, i, buf[i], msg_byte(src, seq, i));
    return RDX_SUCCESS;
}

/* ---- streaming engine: per-peer counters, one pass = at most one send and one receive
 * per peer -------------------------------------------------------------------------- */

typedef struct stream {
    long sent[MAX_RANKS];
    long recvd[MAX_RANKS];
    long to_send[MAX_RANKS];
    long to_recv[MAX_RANKS];
} stream_t;

static rdx_status_t stream_send_one(job_t *job, int rank, rdx_tp_t *tp, stream_t *s, int peer,
                                    result_t *res, bool *moved)
{
    if (s->sent[peer] >= s->to_send[peer])
        return RDX_SUCCESS;
    void *buf;
    RDX_CHECK(ops->send_acquire(tp, peer, &buf));
    if (!buf) {
        res->full_seen++;
        return RDX_SUCCESS;
    }
    long seq = s->sent[peer];
    size_t len = msg_len(job, rank, seq);
    msg_fill(buf, rank, seq, len);
    RDX_CHECK(ops->send_commit(tp, peer, len, msg_tag(rank, peer, seq)));
    s->sent[peer]++;
    *moved = true;
    return RDX_SUCCESS;
}

static rdx_status_t stream_recv_one(job_t *job, int rank, rdx_tp_t *tp, stream_t *s, int peer,
                                    bool *moved)
{
    if (s->recvd[peer] >= s->to_recv[peer])
        return RDX_SUCCESS;
    const void *buf;
    size_t len;
    uint64_t tag;
    RDX_CHECK(ops->recv_peek(tp, peer, &buf, &len, &tag));
    if (!buf)
        return RDX_SUCCESS;
    RDX_CHECK(msg_check(job, rank, peer, s->recvd[peer], buf, len, tag));
    RDX_CHECK(ops->recv_release(tp, peer));
    s->recvd[peer]++;
    *moved = true;
    return RDX_SUCCESS;
}

static bool stream_done(const job_t *job, const stream_t *s)
{
    for (int p = 0; p < job->size; p++)
        if (s->sent[p] < s->to_send[p] || s->recvd[p] < s->to_recv[p])
            return false;
    return true;
}

/* Moves messages until every count is reached; recv_sleep_us slows the receive side. */
static rdx_status_t stream_run(job_t *job, int rank, rdx_tp_t *tp, stream_t *s, result_t *res,
                               long recv_sleep_us)
{
    long deadline = rdx_net_now_ms() + RANK_DEADLINE_MS;
    int idle_passes = 0;
    while (!stream_done(job, s)) {
        bool moved = false;
        for (int p = 0; p < job->size; p++) {
            if (p == rank)
                continue;
            RDX_CHECK(stream_send_one(job, rank, tp, s, p, res, &moved));
            long before = s->recvd[p];
            RDX_CHECK(stream_recv_one(job, rank, tp, s, p, &moved));
            if (recv_sleep_us && s->recvd[p] != before && s->recvd[p] % 3 == 0)
                usleep((useconds_t)recv_sleep_us);
        }
        RDX_CHECK(ops->progress(tp));
        if (moved) {
            idle_passes = 0;
            continue;
        }
        if (rdx_net_now_ms() > deadline)
            return rdx_err(RDX_ERR_TIMEOUT, "rank %d: stream stuck", rank);
        if (++idle_passes > 200)
            RDX_CHECK(ops->idle(tp, 1000));
    }
    return RDX_SUCCESS;
}

/*
 * A rank that finished its own part keeps driving progress until every rank has: on the
 * message path a committed send may still need the sender (UCX fragments, rendezvous), as a
 * collective must also keep progressing until its peers are served. A bootstrap barrier here
 * would stop progress and could deadlock.
 */
static rdx_status_t stream_settle(job_t *job, int rank, rdx_tp_t *tp)
{
    long deadline = rdx_net_now_ms() + RANK_DEADLINE_MS;
    job->res[rank].settled = 1;
    for (int r = 0; r < job->size; r++) {
        while (!job->res[r].settled) {
            RDX_CHECK(ops->progress(tp));
            RDX_CHECK(ops->idle(tp, 1000));
            if (rdx_net_now_ms() > deadline)
                return rdx_err(RDX_ERR_TIMEOUT, "rank %d: rank %d never finished", rank, r);
        }
    }
    return RDX_SUCCESS;
}

/* Ring: every rank sends nmsg to its right and receives nmsg from its left. */
static rdx_status_t body_ring(job_t *job, int rank, rdx_tp_t *tp, rdx_bootstrap_t *bs,
                              result_t *res)
{
    stream_t s = {0};
    int right = (rank + 1) % job->size, left = (rank + job->size - 1) % job->size;
    s.to_send[right] = job->nmsg;
    s.to_recv[left] = job->nmsg;
    RDX_CHECK(stream_run(job, rank, tp, &s, res, 0));
    return stream_settle(job, rank, tp);
}

/* All-to-all: every ordered pair carries nmsg messages at once. */
static rdx_status_t body_all2all(job_t *job, int rank, rdx_tp_t *tp, rdx_bootstrap_t *bs,
                                 result_t *res)
{
    stream_t s = {0};
    for (int p = 0; p < job->size; p++)
        if (p != rank)
            s.to_send[p] = s.to_recv[p] = job->nmsg;
    RDX_CHECK(stream_run(job, rank, tp, &s, res, 0));
    return stream_settle(job, rank, tp);
}

/*
 * Slow receiver, 2 ranks. Phase 1: rank 1 stays away (in a bootstrap barrier) while rank 0
 * fills the FIFO: exactly `slots` sends must be granted and the next acquire must keep
 * returning NULL. Phase 2: rank 1 drains slowly (sleeping) while rank 0 keeps pushing;
 * every byte is checked, so an overwritten slot fails.
 */
static rdx_status_t body_slow(job_t *job, int rank, rdx_tp_t *tp, rdx_bootstrap_t *bs,
                              result_t *res)
{
    stream_t s = {0};
    if (rank == 0) {
        s.to_send[1] = job->nmsg;
        bool moved = true;
        long t_end = rdx_net_now_ms() + 300;
        while (rdx_net_now_ms() < t_end) {
            moved = false;
            RDX_CHECK(stream_send_one(job, rank, tp, &s, 1, res, &moved));
            RDX_CHECK(ops->progress(tp));
        }
        res->acquired_blind = s.sent[1];
        if (s.sent[1] != res->slots)
            return rdx_err(RDX_ERR_INTERNAL, "rank 0: %ld sends granted with the receiver away, "
                           "expected %d (slots)", s.sent[1], res->slots);
        RDX_CHECK(rdx_bootstrap_barrier(bs));
        RDX_CHECK(stream_run(job, rank, tp, &s, res, 0));
    } else {
        s.to_recv[0] = job->nmsg;
        RDX_CHECK(rdx_bootstrap_barrier(bs));
        RDX_CHECK(stream_run(job, rank, tp, &s, res, 2000));
    }
    return stream_settle(job, rank, tp);
}

/* Rank 1 vanishes without a word; rank 0, waiting for its message, must hear PEER_LOST. */
static rdx_status_t body_lost(job_t *job, int rank, rdx_tp_t *tp, rdx_bootstrap_t *bs,
                              result_t *res)
{
    RDX_CHECK(rdx_bootstrap_barrier(bs));
    if (rank == 1) {
        res->done = 1;
        _exit(0); /* no destroy, no goodbye */
    }
    long t0 = rdx_net_now_ms();
    for (;;) {
        const void *buf;
        size_t len;
        uint64_t tag;
        RDX_CHECK(ops->progress(tp));
        rdx_status_t st = ops->recv_peek(tp, 1, &buf, &len, &tag);
        if (st == RDX_ERR_PEER_LOST) {
            res->lost_ms = rdx_net_now_ms() - t0;
            if (!strstr(rdx_err_last(), "peer 1"))
                return rdx_err(RDX_ERR_INTERNAL, "loss message does not name peer 1: %s",
                               rdx_err_last());
            return RDX_SUCCESS;
        }
        RDX_CHECK(st);
        if (buf)
            return rdx_err(RDX_ERR_INTERNAL, "rank 0: message from a rank that sent none");
        if (rdx_net_now_ms() - t0 > RANK_DEADLINE_MS - 5000)
            return rdx_err(RDX_ERR_TIMEOUT, "rank 0: peer 1 exited, no PEER_LOST in %ld ms",
                           rdx_net_now_ms() - t0);
        RDX_CHECK(ops->idle(tp, 1000));
    }
}

static rdx_status_t body_mem(job_t *job, int rank, rdx_tp_t *tp, rdx_bootstrap_t *bs,
                             result_t *res)
{
    size_t bytes = 3u << 20;
    char *buf = malloc(bytes);
    if (!buf)
        return rdx_err(RDX_ERR_NO_MEMORY, "test buffer");
    memset(buf, 1, bytes);
    rdx_tp_mem_t *a = NULL, *b = NULL;
    rdx_status_t st = ops->mem_register(tp, buf, bytes, &a);
    if (st == RDX_SUCCESS)
        st = ops->mem_register(tp, buf + 4096, 8192, &b);
    if (st == RDX_SUCCESS)
        st = body_ring(job, rank, tp, bs, res); /* registrations do not disturb the data path */
    if (b)
        ops->mem_deregister(tp, b);
    if (a && st == RDX_SUCCESS)
        st = ops->mem_deregister(tp, a);
    else if (a)
        ops->mem_deregister(tp, a);
    free(buf);
    if (st == RDX_SUCCESS && ops->mem_register(tp, NULL, 0, &a) != RDX_ERR_INVALID_ARG)
        return rdx_err(RDX_ERR_INTERNAL, "registering NULL did not fail");
    return st;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void run_ok(int size, const char *tls, size_t slot, int slots, long n, body_fn_t body)
{
    job_t job;
    job_init(&job, size, tls, slot, slots, n, body);
    job_run(&job);
    job_expect_ok(&job);
}

static void run_shm_am(int size, size_t slot, int slots, long n, body_fn_t body)
{
    job_t job;
    job_init(&job, size, "sm,self", slot, slots, n, body);
    job.heap_slab = true;
    job_run(&job);
    job_expect_ok(&job);
}

Test(tp_ucx, ring2_shm, .timeout = 90) { run_ok(2, "", 16384, 4, 20000, body_ring); }
Test(tp_ucx, ring3_shm, .timeout = 90) { run_ok(3, "", 65536, 8, 6000, body_ring); }
Test(tp_ucx, ring2_tcp, .timeout = 90) { run_ok(2, "tcp", 65536, 4, 3000, body_ring); }
Test(tp_ucx, ring3_tcp, .timeout = 90) { run_ok(3, "tcp", 32768, 8, 2000, body_ring); }
Test(tp_ucx, all2all3_shm, .timeout = 90) { run_ok(3, "", 8192, 4, 5000, body_all2all); }
Test(tp_ucx, all2all3_tcp, .timeout = 90) { run_ok(3, "tcp", 20000, 4, 1500, body_all2all); }
Test(tp_ucx, ring2_shm_am, .timeout = 90) { run_shm_am(2, 65536, 4, 3000, body_ring); }
Test(tp_ucx, all2all3_shm_am, .timeout = 90) { run_shm_am(3, 40000, 4, 1500, body_all2all); }
Test(tp_ucx, mem_register_shm, .timeout = 90) { run_ok(2, "", 4096, 2, 2000, body_mem); }

static void run_slow(const char *tls, bool heap_slab)
{
    job_t job;
    job_init(&job, 2, tls, 32768, 4, 300, body_slow);
    job.heap_slab = heap_slab;
    job_run(&job);
    job_expect_ok(&job);
    cr_expect_eq(job.res[0].acquired_blind, 4, "granted %ld sends with the receiver away",
                 job.res[0].acquired_blind);
    cr_expect_gt(job.res[0].full_seen, 0, "the sender never found the FIFO full");
}

Test(tp_ucx, slow_receiver_shm, .timeout = 90) { run_slow("", false); }
Test(tp_ucx, slow_receiver_tcp, .timeout = 90) { run_slow("tcp", false); }
Test(tp_ucx, slow_receiver_shm_am, .timeout = 90) { run_slow("sm,self", true); }

/* Ranks that disagree on RDX_SLOTS must all fail at create, and say which rank differs. */
Test(tp_ucx, slots_mismatch, .timeout = 90)
{
    job_t job;
    job_init(&job, 3, "", 4096, 8, 0, NULL);
    job.slots_of[2] = 4;
    job_run(&job);
    for (int r = 0; r < 3; r++) {
        cr_expect_eq(job.res[r].create_st, RDX_ERR_CONFIG, "rank %d create: %d (%s)", r,
                     job.res[r].create_st, job.res[r].msg);
        cr_expect(strstr(job.res[r].msg, "rank(s) 2") != NULL, "rank %d: %s", r, job.res[r].msg);
    }
}

/* A pool too small for 8 slots gives fewer (even, >= 2) and still moves data correctly. */
Test(tp_ucx, pool_reduces_slots, .timeout = 90)
{
    job_t job;
    job_init(&job, 2, "", 65536, 8, 2000, body_ring);
    job.pool_bytes = 600000; /* fits 4 slots of 64 KiB (plus staging) for one peer */
    job_run(&job);
    job_expect_ok(&job);
    for (int r = 0; r < 2; r++)
        cr_expect_eq(job.res[r].slots, 4, "rank %d: %d slots", r, job.res[r].slots);
}

Test(tp_ucx, pool_too_small, .timeout = 90)
{
    job_t job;
    job_init(&job, 2, "", 65536, 8, 0, NULL);
    job.pool_bytes = 100000;
    job_run(&job);
    for (int r = 0; r < 2; r++) {
        cr_expect_eq(job.res[r].create_st, RDX_ERR_CONFIG, "rank %d: %s", r, job.res[r].msg);
        cr_expect(strstr(job.res[r].msg, "RDX_POOL_MB") != NULL, "rank %d: %s", r,
                  job.res[r].msg);
    }
}

static void run_lost(const char *tls)
{
    job_t job;
    job_init(&job, 2, tls, 4096, 4, 0, body_lost);
    job_run(&job);
    cr_expect_eq(job.res[0].st, RDX_SUCCESS, "rank 0: %s", job.res[0].msg);
    cr_expect_lt(job.res[0].destroy_ms, 5000, "destroy after loss took %ld ms",
                 job.res[0].destroy_ms);
    cr_log_info("peer loss over %s noticed after %ld ms, destroy %ld ms", tls[0] ? tls : "shm",
                job.res[0].lost_ms, job.res[0].destroy_ms);
}

Test(tp_ucx, peer_lost_tcp, .timeout = 90) { run_lost("tcp"); }
Test(tp_ucx, peer_lost_shm, .timeout = 90) { run_lost(""); }
/* UCX_TLS=sm: no UCX transport reports peer failure; the transport watches the process. */
Test(tp_ucx, peer_lost_sm_only, .timeout = 90) { run_lost("sm,self"); }
