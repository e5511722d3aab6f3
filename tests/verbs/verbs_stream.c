/*
 * verbs_stream: transport-level test of the verbs backend with real processes.
 *
 * Forks N ranks (before any verbs call) that meet through the real bootstrap on 127.0.0.1,
 * create the verbs transport and stream messages:
 *   ring  rank r sends to r+1 and receives from r-1
 *   all   every rank sends to and receives from every other rank
 * Every message has a length from a fixed cycle (0 B, inline sizes, a full slot), a tag
 * (sender, sequence) and content derived from (sender, receiver, sequence, offset): the
 * receiver checks all three and the order. Failure modes it provokes on request:
 *   --slow R:US   rank R holds each message US microseconds before releasing it and checks
 *                 the content again afterwards (a sender that overwrote a slot shows), and
 *                 its senders must have run out of credit at least once
 *   --die R:K     rank R _exit()s after K messages each way; every survivor must report
 *                 PEER_LOST or TRANSPORT (not success, not a hang) before its deadline
 *   --expect-memlock   transport creation must fail with RDX_ERR_NO_MEMORY and the
 *                 RLIMIT_MEMLOCK message (run it under a small `ulimit -l`)
 * The parent kills every rank that outlives the deadline and exits non-zero if any rank
 * failed. Settings (RDX_CHUNK_BYTES, RDX_SLOTS, RDX_IB_*) come from the environment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/verbs/vt.h"

typedef struct opts {
    int n;
    long msgs;
    int all;
    int slow_rank;
    long slow_us;
    int die_rank;
    long die_after;
    int expect_memlock;
    int deadline_s;
    char addr[64];
} opts_t;

typedef struct rank_state {
    const opts_t *o;
    int rank;
    rdx_tp_t *tp;
    const rdx_tp_ops_t *ops;
    size_t slot;
    long *sent;                 /* per peer */
    long *recvd;
    long credit_waits;          /* send_acquire returned NULL */
} rank_state_t;

static size_t msg_len(long seq, size_t slot)
{
    static const size_t cycle[] = {0, 1, 7, 8, 64, 200, 240, 241, 1000, 4096, 0, 0};
    size_t n = sizeof(cycle) / sizeof(cycle[0]);
    size_t i = (size_t)seq % n;
    if (i == n - 2)
        return slot - 1;
    if (i == n - 1)
        return slot;
    return cycle[i] < slot ? cycle[i] : slot;
}

static uint64_t msg_tag(int src, long seq)
{
    return (uint64_t)src << 48 | (uint64_t)seq;
}

static uint8_t msg_byte(int src, int dst, long seq, size_t i)
{
    return (uint8_t)(src * 131 + dst * 31 + seq * 7 + (long)i + ((long)i >> 8));
}

static void msg_fill(uint8_t *b, int src, int dst, long seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        b[i] = msg_byte(src, dst, seq, i);
}

/* Returns the first bad offset, or -1. */
static long msg_verify(const uint8_t *b, int src, int dst, long seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != msg_byte(src, dst, seq, i))
            return (long)i;
    return -1;
}

static bool sends_to(const opts_t *o, int r, int peer)
{
    return peer != r && (o->all || peer == (r + 1) % o->n);
}

static bool recvs_from(const opts_t *o, int r, int peer)
{
    return peer != r && (o->all || peer == (r + o->n - 1) % o->n);
}

static rdx_status_t try_send(rank_state_t *s, int peer, int *did)
{
    void *buf;
    RDX_CHECK(s->ops->send_acquire(s->tp, peer, &buf));
    if (!buf) {
        s->credit_waits++;
        return RDX_SUCCESS;
    }
    long seq = s->sent[peer];
    size_t len = msg_len(seq, s->slot);
    msg_fill(buf, s->rank, peer, seq, len);
    RDX_CHECK(s->ops->send_commit(s->tp, peer, len, msg_tag(s->rank, seq)));
    s->sent[peer]++;
    *did = 1;
    return RDX_SUCCESS;
}

static rdx_status_t check_msg(rank_state_t *s, int peer, const void *buf, size_t len,
                              uint64_t tag)
{
    long seq = s->recvd[peer];
    long bad;
    if (tag != msg_tag(peer, seq) || len != msg_len(seq, s->slot))
        return rdx_err(RDX_ERR_MISMATCH, "rank %d: peer %d: message %ld: tag 0x%llx len %zu, "
                       "expected tag 0x%llx len %zu", s->rank, peer, seq,
                       (unsigned long long)tag, len, (unsigned long long)msg_tag(peer, seq),
                       msg_len(seq, s->slot));
    if ((bad = msg_verify(buf, peer, s->rank, seq, len)) >= 0)
        return rdx_err(RDX_ERR_MISMATCH, "rank %d: peer %d: message %ld: byte %ld is wrong",
                       s->rank, peer, seq, bad);
    return RDX_SUCCESS;
}

static rdx_status_t try_recv(rank_state_t *s, int peer, int *did)
{
    const void *buf;
    size_t len;
    uint64_t tag;
    RDX_CHECK(s->ops->recv_peek(s->tp, peer, &buf, &len, &tag));
    if (!buf)
        return RDX_SUCCESS;
    RDX_CHECK(check_msg(s, peer, buf, len, tag));
    if (s->rank == s->o->slow_rank) {
        /* Hold the slot while the sender keeps trying: it must not write into it. */
        double until = vt_now() + (double)s->o->slow_us * 1e-6;
        for (double t = vt_now(); t < until; t = vt_now())
            RDX_CHECK(s->ops->idle(s->tp, (long)((until - t) * 1e6) + 1));
        RDX_CHECK(check_msg(s, peer, buf, len, tag));
    }
    RDX_CHECK(s->ops->recv_release(s->tp, peer));
    s->recvd[peer]++;
    *did = 1;
    return RDX_SUCCESS;
}

static bool all_done(const rank_state_t *s)
{
    for (int p = 0; p < s->o->n; p++)
        if ((sends_to(s->o, s->rank, p) && s->sent[p] < s->o->msgs) ||
            (recvs_from(s->o, s->rank, p) && s->recvd[p] < s->o->msgs))
            return false;
    return true;
}

static bool die_now(const rank_state_t *s)
{
    if (s->rank != s->o->die_rank)
        return false;
    for (int p = 0; p < s->o->n; p++)
        if ((sends_to(s->o, s->rank, p) && s->sent[p] < s->o->die_after) ||
            (recvs_from(s->o, s->rank, p) && s->recvd[p] < s->o->die_after))
            return false;
    return true;
}

static rdx_status_t stream_step(rank_state_t *s, int *did)
{
    for (int p = 0; p < s->o->n; p++) {
        if (sends_to(s->o, s->rank, p) && s->sent[p] < s->o->msgs)
            RDX_CHECK(try_send(s, p, did));
        if (recvs_from(s->o, s->rank, p) && s->recvd[p] < s->o->msgs)
            RDX_CHECK(try_recv(s, p, did));
    }
    return RDX_SUCCESS;
}

static rdx_status_t stream(rank_state_t *s, double deadline)
{
    while (!all_done(s)) {
        int did = 0;
        if (die_now(s)) {
            printf("rank %d: exiting on purpose mid-transfer\n", s->rank);
            fflush(stdout);
            _exit(0); /* like a crash: no destroy, the kernel tears the QPs down */
        }
        RDX_CHECK(stream_step(s, &did));
        if (!did)
            RDX_CHECK(s->ops->idle(s->tp, 10000));
        if (vt_now() > deadline)
            return rdx_err(RDX_ERR_TIMEOUT, "rank %d: stream not done by the deadline",
                           s->rank);
    }
    return RDX_SUCCESS;
}

/* Registration cache: sub-ranges reuse the region, refcounts drop to zero. */
static int check_mem_cache(rank_state_t *s)
{
    size_t bytes = 1 << 20;
    char *a = malloc(bytes), *b = malloc(bytes);
    rdx_tp_mem_t *ma, *ma2, *mb;
    int ok = a && b &&
             s->ops->mem_register(s->tp, a, bytes, &ma) == RDX_SUCCESS &&
             s->ops->mem_register(s->tp, a + 4096, 8192, &ma2) == RDX_SUCCESS &&
             s->ops->mem_register(s->tp, b, bytes, &mb) == RDX_SUCCESS;
    if (ok) {
        ok = ma == ma2 && rdx_verbs_mem_refs(ma) == 2 &&
             rdx_verbs_mem_lkey(ma) == rdx_verbs_mem_lkey(ma2) &&
             rdx_verbs_mem_lkey(ma) != rdx_verbs_mem_lkey(mb) &&
             s->ops->mem_deregister(s->tp, ma2) == RDX_SUCCESS && rdx_verbs_mem_refs(ma) == 1 &&
             s->ops->mem_deregister(s->tp, ma) == RDX_SUCCESS &&
             s->ops->mem_deregister(s->tp, mb) == RDX_SUCCESS &&
             s->ops->mem_deregister(s->tp, mb) == RDX_ERR_INVALID_ARG;
    }
    free(a);
    free(b);
    if (!ok)
        fprintf(stderr, "rank %d: FAIL registration cache: %s\n", s->rank, rdx_err_last());
    return ok;
}

static int rank_report(rank_state_t *s, rdx_status_t st, double t0)
{
    const opts_t *o = s->o;
    double el = vt_now() - t0;
    if (o->die_rank >= 0) {
        if (st == RDX_ERR_PEER_LOST || st == RDX_ERR_TRANSPORT) {
            printf("rank %d: OK: got %s after %.1f s: %s\n", s->rank, rdx_strerror(st), el,
                   rdx_err_last());
            return 0;
        }
        fprintf(stderr, "rank %d: FAIL: expected PEER_LOST/TRANSPORT, got %s after %.1f s: %s\n",
                s->rank, rdx_strerror(st), el, rdx_err_last());
        return 1;
    }
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: FAIL: %s: %s\n", s->rank, rdx_strerror(st), rdx_err_last());
        return 1;
    }
    bool feeds_slow = o->slow_rank >= 0 && sends_to(o, s->rank, o->slow_rank);
    if (feeds_slow && s->credit_waits == 0) {
        fprintf(stderr, "rank %d: FAIL: never ran out of credit towards slow rank %d\n",
                s->rank, o->slow_rank);
        return 1;
    }
    long total = 0;
    for (int p = 0; p < o->n; p++)
        total += s->recvd[p];
    printf("rank %d: OK: %ld messages received and checked in %.2f s (credit waits %ld)\n",
           s->rank, total, el, s->credit_waits);
    return 0;
}

static int memlock_report(int rank, rdx_status_t st)
{
    const char *msg = rdx_err_last();
    if (st == RDX_ERR_NO_MEMORY && strstr(msg, "RLIMIT_MEMLOCK") && strstr(msg, "ulimit -l")) {
        printf("rank %d: OK: create failed as expected: %s\n", rank, msg);
        return 0;
    }
    fprintf(stderr, "rank %d: FAIL: expected the memlock message, got %s: %s\n", rank,
            rdx_strerror(st), msg);
    return 1;
}

static int rank_main(int rank, void *arg)
{
    const opts_t *o = arg;
    vt_rank_t v;
    rdx_status_t st;
    double t0 = vt_now(), deadline = t0 + o->deadline_s;
    if (vt_rank_open(&v, rank, o->n, o->addr, o->deadline_s, &st) != 0)
        return 1;
    if (o->expect_memlock) {
        int rc = memlock_report(rank, st);
        vt_rank_close(&v);
        return rc;
    }
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: FAIL create: %s\n", rank, rdx_err_last());
        vt_rank_close(&v);
        return 1;
    }
    rank_state_t s = {.o = o, .rank = rank, .ops = v.ops, .tp = v.tp,
                      .slot = v.props.slot_bytes};
    if (rank == 0)
        printf("rank 0: %s %s, %d slots of %zu bytes\n", v.props.name, v.props.detail,
               v.props.slots, v.props.slot_bytes);
    s.sent = calloc((size_t)o->n, sizeof(long));
    s.recvd = calloc((size_t)o->n, sizeof(long));
    int rc = check_mem_cache(&s) ? 0 : 1;
    st = stream(&s, deadline);
    rc |= rank_report(&s, st, t0);
    vt_rank_close(&v);
    free(s.sent);
    free(s.recvd);
    return rc;
}

static int parse_pair(const char *arg, int *a, long *b)
{
    return sscanf(arg, "%d:%ld", a, b) == 2 ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: verbs_stream [-n RANKS] [-m MSGS] [--all] [--slow R:US] "
                    "[--die R:K] [--expect-memlock] [--deadline S]\n");
    exit(2);
}

static void opts_parse(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.n = 2, .msgs = 1000, .slow_rank = -1, .die_rank = -1, .deadline_s = 120};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-n") && v)
            o->n = atoi(argv[++i]);
        else if (!strcmp(a, "-m") && v)
            o->msgs = atol(argv[++i]);
        else if (!strcmp(a, "--all"))
            o->all = 1;
        else if (!strcmp(a, "--slow") && v)
            bad = parse_pair(argv[++i], &o->slow_rank, &o->slow_us);
        else if (!strcmp(a, "--die") && v)
            bad = parse_pair(argv[++i], &o->die_rank, &o->die_after);
        else if (!strcmp(a, "--expect-memlock"))
            o->expect_memlock = 1;
        else if (!strcmp(a, "--deadline") && v)
            o->deadline_s = atoi(argv[++i]);
        else
            bad = 1;
        if (bad)
            usage();
    }
    if (o->n < 1 || o->n > 64 || o->msgs < 1 || o->deadline_s < 1)
        usage();
    vt_free_addr(o->addr, sizeof(o->addr));
}

int main(int argc, char **argv)
{
    opts_t o;
    opts_parse(argc, argv, &o);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int failed = vt_spawn(o.n, o.deadline_s, rank_main, &o);
    printf("verbs_stream: %s\n", failed ? "FAILED" : "passed");
    return failed;
}
