/*
 * The bootstrap watchdog (src/bootstrap.c rdx_bootstrap_watch / rdx_bootstrap_abort): a
 * closed bootstrap connection is a lost peer, rank 0 relays what it sees or hears to every
 * rank, ABORT reasons arrive with their status, and the watchdog never consumes or trips
 * over a legitimate message that arrives early (a BCAST from rank 0 before the rank called
 * bcast, a BARRIER from a rank already waiting in it). Real processes on 127.0.0.1
 * (tests/fault/launch.h), results through a shared mapping.
 */
#include <criterion/criterion.h>

#include "src/bootstrap.h"
#include "src/error.h"
#include "tests/fault/launch.h"

typedef struct wres {
    int st, st2, st3;
    double ms;
    char msg[512];
    unsigned char data[64];
} wres_t;

static wres_t *g_res;

static rdx_bootstrap_t *bs_create(int rank, int size)
{
    rdx_bootstrap_params_t p = {.rank = rank, .size = size, .addr = getenv("RDX_ADDR"),
                                .job_key = getenv("RDX_JOB_KEY"), .ifname = "",
                                .connect_timeout_ms = 10000, .timeout_ms = 10000};
    rdx_bootstrap_t *bs = NULL;
    return rdx_bootstrap_create(&p, &bs) == RDX_SUCCESS ? bs : NULL;
}

/* Watches until it reports something or limit_ms pass; records status, message, time. */
static void watch_until(rdx_bootstrap_t *bs, wres_t *me, long limit_ms)
{
    uint64_t t0 = fl_now_ns(), end = t0 + (uint64_t)limit_ms * 1000000ull;
    rdx_status_t st = RDX_SUCCESS;
    while (st == RDX_SUCCESS && fl_now_ns() < end) {
        st = rdx_bootstrap_watch(bs);
        fl_sleep_us(1000);
    }
    me->st = st;
    me->ms = (double)(fl_now_ns() - t0) / 1e6;
    snprintf(me->msg, sizeof(me->msg), "%s", st == RDX_SUCCESS ? "" : rdx_err_last());
}

/* Runs fn on n ranks (real processes) with fresh shared results; a hang fails the test. */
static void run_ranks(int n, int (*fn)(int rank, void *arg))
{
    g_res = fl_shared(sizeof(wres_t) * FL_MAX_RANKS);
    fl_job_t job;
    fl_spawn(&job, n, fn, &n);
    cr_assert_eq(fl_wait(&job, fl_now_ns() + 20000000000ull), 0, "a rank hung");
}

static int g_victim;

/* The victim leaves without a word right after the rendezvous (as if killed). */
static int rank_dies(int rank, void *arg)
{
    int n = *(int *)arg;
    rdx_bootstrap_t *bs = bs_create(rank, n);
    if (!bs)
        return 3;
    if (rank == g_victim)
        _exit(0); /* the kernel closes the socket, like SIGKILL */
    watch_until(bs, &g_res[rank], 5000);
    /* Once failed, every later call says the same. */
    g_res[rank].st2 = rdx_bootstrap_watch(bs);
    g_res[rank].st3 = rdx_bootstrap_barrier(bs);
    rdx_bootstrap_destroy(bs);
    return 0;
}

static void run_dies(int n, int victim)
{
    g_victim = victim;
    run_ranks(n, rank_dies);
    char pat[64];
    snprintf(pat, sizeof(pat), "peer %d: bootstrap connection closed", victim);
    for (int r = 0; r < n; r++) {
        if (r == victim)
            continue;
        wres_t *x = &g_res[r];
        cr_assert_eq(x->st, RDX_ERR_PEER_LOST, "rank %d: %s: %s", r, rdx_strerror(x->st), x->msg);
        cr_assert(strstr(x->msg, pat), "rank %d: %s", r, x->msg);
        cr_assert(strstr(x->msg, "bootstrap watchdog"), "rank %d: %s", r, x->msg);
        cr_assert_eq(x->st2, RDX_ERR_PEER_LOST, "rank %d", r);
        cr_assert_eq(x->st3, RDX_ERR_PEER_LOST, "rank %d", r);
        printf("watchdog: %d ranks, rank %d died: rank %d knew after %.1f ms\n", n, victim, r,
               x->ms);
    }
}

Test(watchdog, dead_rank_is_seen_by_root_and_relayed, .timeout = 60)
{
    run_dies(4, 2);
}

Test(watchdog, dead_root_is_seen_by_everyone, .timeout = 60)
{
    run_dies(3, 0);
}

/* Rank 2 gives up with a reason and leaves at once: the reason must win over the close. */
static int rank_aborts(int rank, void *arg)
{
    int n = *(int *)arg;
    rdx_bootstrap_t *bs = bs_create(rank, n);
    if (!bs)
        return 3;
    if (rank == 2) {
        rdx_bootstrap_abort(bs, RDX_ERR_MISMATCH, "rank 2: test: fingerprints differ");
        g_res[rank].st = rdx_bootstrap_watch(bs);
        snprintf(g_res[rank].msg, sizeof(g_res[rank].msg), "%s", rdx_err_last());
        rdx_bootstrap_destroy(bs);
        return 0;
    }
    watch_until(bs, &g_res[rank], 5000);
    rdx_bootstrap_destroy(bs);
    return 0;
}

Test(watchdog, abort_reason_reaches_every_rank, .timeout = 60)
{
    int n = 4;
    run_ranks(n, rank_aborts);
    for (int r = 0; r < n; r++) {
        wres_t *x = &g_res[r];
        cr_assert_eq(x->st, RDX_ERR_MISMATCH, "rank %d: %s: %s", r, rdx_strerror(x->st), x->msg);
        cr_assert(strstr(x->msg, "rank 2: test: fingerprints differ"), "rank %d: %s", r, x->msg);
    }
}

/* Rank 0 broadcasts at once; rank 1 watches for 200 ms before its bcast (the BCAST waits in
 * its socket), then enters the barrier early while rank 0 watches for 200 ms (the BARRIER
 * waits in rank 0's socket); rank 2 is later still. Nothing may fail, the data must arrive. */
static int rank_early(int rank, void *arg)
{
    int n = *(int *)arg;
    rdx_bootstrap_t *bs = bs_create(rank, n);
    if (!bs)
        return 3;
    wres_t *me = &g_res[rank];
    unsigned char buf[64];
    for (int i = 0; i < 64; i++)
        buf[i] = rank == 0 ? (unsigned char)(i * 3 + 1) : 0;
    if (rank != 0)
        watch_until(bs, me, rank == 1 ? 200 : 400);
    me->st2 = rdx_bootstrap_bcast(bs, buf, sizeof(buf), 0);
    memcpy(me->data, buf, sizeof(buf));
    if (rank == 0)
        watch_until(bs, me, 200);
    me->st3 = rdx_bootstrap_barrier(bs);
    rdx_bootstrap_destroy(bs);
    return 0;
}

Test(watchdog, early_messages_are_left_for_their_collective, .timeout = 60)
{
    int n = 3;
    run_ranks(n, rank_early);
    for (int r = 0; r < n; r++) {
        wres_t *x = &g_res[r];
        cr_assert_eq(x->st, RDX_SUCCESS, "rank %d watch: %s", r, x->msg);
        cr_assert_eq(x->st2, RDX_SUCCESS, "rank %d bcast", r);
        cr_assert_eq(x->st3, RDX_SUCCESS, "rank %d barrier", r);
        for (int i = 0; i < 64; i++)
            cr_assert_eq(x->data[i], (unsigned char)(i * 3 + 1), "rank %d byte %d", r, i);
    }
}
