/*
 * Stall reports at a timeout (src/comm_stall.c): the root's comparison of what each rank
 * waits in, and the bootstrap carrying the reports (rdx_bootstrap_report_stall /
 * rdx_bootstrap_stall_reports) between real processes. The end-to-end case (ranks that
 * call rdx_reduce with different roots end with RDX_ERR_MISMATCH) is tests/fault/mismatch.c.
 */
#include <criterion/criterion.h>

#include "src/bootstrap.h"
#include "src/comm_stall.h"
#include "src/error.h"
#include "tests/fault/launch.h"

#define R0 "0000000a c reduce #4 (float32 sum count 1000 root 0)"
#define R2 "0000000a c reduce #4 (float32 sum count 1000 root 2)"

static rdx_status_t verdict(int n, const char *const *reports, char *out)
{
    return rdx_stall_verdict(n, reports, out, 512);
}

Test(stall, same_call_everywhere_is_no_mismatch, .timeout = 5)
{
    const char *rep[] = {R0, R0, R0};
    char out[512];
    cr_assert_eq(verdict(3, rep, out), RDX_SUCCESS);
    cr_assert_str_eq(out, "ranks 0-2 wait in reduce #4 (float32 sum count 1000 root 0)");
}

Test(stall, different_roots_are_a_mismatch_naming_both, .timeout = 5)
{
    const char *rep[] = {R0, R0, R2};
    char out[512];
    cr_assert_eq(verdict(3, rep, out), RDX_ERR_MISMATCH);
    cr_assert_str_eq(out, "ranks 0, 1 wait in reduce #4 (float32 sum count 1000 root 0); "
                          "rank 2 waits in reduce #4 (float32 sum count 1000 root 2)");
}

Test(stall, rank_lists_are_compact, .timeout = 5)
{
    const char *rep[] = {R0, R0, R0, R2, R0, R2, R0, R0, R0};
    char out[512];
    cr_assert_eq(verdict(9, rep, out), RDX_ERR_MISMATCH);
    cr_assert(strstr(out, "ranks 0-2, 4, 6-8 wait in") && strstr(out, "ranks 3, 5 wait in"),
              "%s", out);
}

Test(stall, silent_and_garbled_ranks_are_named, .timeout = 5)
{
    const char *rep[] = {R0, NULL, R0, "zz c x", "0000000a q reduce"};
    char out[512];
    cr_assert_eq(verdict(5, rep, out), RDX_SUCCESS);
    cr_assert_str_eq(out, "ranks 0, 2 wait in reduce #4 (float32 sum count 1000 root 0); "
                          "ranks 1, 3, 4 reported no stall (not waiting in rdx: computing, or "
                          "blocked elsewhere)");
}

Test(stall, different_communicators_are_listed_not_a_mismatch, .timeout = 5)
{
    /* rank 0 waits in the world, rank 1 in a split communicator: a cross-communicator
     * deadlock (or a slow member elsewhere), which the reports alone cannot call a mismatch */
    const char *rep[] = {R0, "0000000b c allreduce #0 (float32 sum count 8 root -1)"};
    char out[512];
    cr_assert_eq(verdict(2, rep, out), RDX_SUCCESS);
    cr_assert(strstr(out, "rank 0 waits in reduce #4") && strstr(out, "on communicator 0000000a") &&
                  strstr(out, "on communicator 0000000b"),
              "%s", out);
}

Test(stall, point_to_point_cycles_are_a_deadlock_not_a_mismatch, .timeout = 5)
{
    const char *p2p[] = {"0000000a p rdx_recv #0 from peer 1 (float32 count 4)",
                         "0000000a p rdx_recv #0 from peer 0 (float32 count 4)"};
    char out[512];
    cr_assert_eq(verdict(2, p2p, out), RDX_SUCCESS);
    const char *mixed[] = {"0000000a p rdx_recv #0 from peer 1 (float32 count 4)", R0};
    cr_assert_eq(verdict(2, mixed, out), RDX_ERR_MISMATCH, "%s", out);
}

Test(stall, a_rank_in_rdx_comm_destroy_is_a_mismatch, .timeout = 5)
{
    const char *rep[] = {R0, R0, "00000000 b rdx_comm_destroy (its closing barrier)"};
    char out[512];
    cr_assert_eq(verdict(3, rep, out), RDX_ERR_MISMATCH);
    cr_assert_str_eq(out, "ranks 0, 1 wait in reduce #4 (float32 sum count 1000 root 0); "
                          "rank 2 waits in rdx_comm_destroy (its closing barrier)");
}

Test(stall, output_is_bounded, .timeout = 5)
{
    enum { N = 300 };
    const char *rep[N];
    char labels[N][64];
    for (int r = 0; r < N; r++) {
        snprintf(labels[r], sizeof(labels[r]), "0000000a c allreduce #%d (x)", r);
        rep[r] = labels[r];
    }
    char out[100];
    cr_assert_eq(rdx_stall_verdict(N, rep, out, sizeof(out)), RDX_ERR_MISMATCH);
    cr_assert(strlen(out) < sizeof(out));
}

/* ---- the reports over the bootstrap ------------------------------------------------------ */

typedef struct sres {
    int st;
    char got[4][300];
} sres_t;

static sres_t *g_res;

/* Ranks 1 and 2 report, rank 3 goes straight into a barrier; rank 0 collects (up to 300 ms:
 * until every rank reported or waits in a bootstrap collective), then joins the barrier
 * (the STALLs must not disturb it). */
static int rank_reports(int rank, void *arg)
{
    int n = *(int *)arg;
    rdx_bootstrap_params_t p = {.rank = rank, .size = n, .addr = getenv("RDX_ADDR"),
                                .job_key = getenv("RDX_JOB_KEY"), .ifname = "",
                                .connect_timeout_ms = 10000, .timeout_ms = 10000};
    rdx_bootstrap_t *bs = NULL;
    if (rdx_bootstrap_create(&p, &bs) != RDX_SUCCESS)
        return 3;
    sres_t *me = &g_res[rank];
    if (rank == 1)
        rdx_bootstrap_report_stall(bs, "0000000a c allreduce #1 (x)");
    if (rank == 2)
        rdx_bootstrap_report_stall(bs, "0000000a c allreduce #2 (x)");
    if (rank == 0) {
        const char *rep[4] = {0}, *pending[4] = {0};
        me->st = rdx_bootstrap_stall_reports(bs, 300, rep, pending);
        for (int r = 1; r < n; r++)
            snprintf(me->got[r], sizeof(me->got[r]), "%s", rep[r]       ? rep[r]
                                                           : pending[r] ? pending[r]
                                                                        : "(none)");
    }
    if (me->st == RDX_SUCCESS)
        me->st = rdx_bootstrap_barrier(bs);
    rdx_bootstrap_destroy(bs);
    return 0;
}

Test(stall, reports_reach_the_root_and_leave_the_streams_in_step, .timeout = 30)
{
    int n = 4;
    g_res = fl_shared(sizeof(sres_t) * FL_MAX_RANKS);
    fl_job_t job;
    fl_spawn(&job, n, rank_reports, &n);
    cr_assert_eq(fl_wait(&job, fl_now_ns() + 20000000000ull), 0, "a rank hung");
    for (int r = 0; r < n; r++)
        cr_assert_eq(g_res[r].st, RDX_SUCCESS, "rank %d: %s", r, rdx_strerror(g_res[r].st));
    cr_assert_str_eq(g_res[0].got[1], "0000000a c allreduce #1 (x)");
    cr_assert_str_eq(g_res[0].got[2], "0000000a c allreduce #2 (x)");
    cr_assert_str_eq(g_res[0].got[3], "barrier"); /* its message waits unread at rank 0 */
}

/* ---- end to end: real communicators, RDX_TIMEOUT_MS=1000 ----------------------------------- */

typedef struct eres {
    int st, st_destroy; /* the rank's calls; its rdx_comm_destroy */
    double ms;          /* from the first call to the end of rdx_comm_destroy */
    char msg[1024];     /* the calls' error, or rdx_comm_destroy's if they succeeded */
} eres_t;

static eres_t *g_eres;

/* What a rank does on its communicator; returns the status of its calls. */
typedef rdx_status_t (*eres_body_t)(rdx_comm_t *comm, int rank);
static eres_body_t g_body;

static int eres_rank(int rank, void *arg)
{
    (void)arg;
    setenv("RDX_TIMEOUT_MS", "1000", 1);
    rdx_comm_t *comm;
    if (rdx_comm_init(&comm, NULL) != RDX_SUCCESS)
        return 3;
    eres_t *me = &g_eres[rank];
    uint64_t t0 = fl_now_ns();
    me->st = g_body(comm, rank);
    snprintf(me->msg, sizeof(me->msg), "%s", rdx_comm_last_error(comm));
    me->st_destroy = rdx_comm_destroy(comm);
    if (me->st == RDX_SUCCESS)
        snprintf(me->msg, sizeof(me->msg), "%s", rdx_err_last());
    me->ms = (double)(fl_now_ns() - t0) / 1e6;
    return 0;
}

/* Runs body on n ranks (real processes) with fresh results; a hang fails the test. */
static void eres_run(int n, eres_body_t body)
{
    g_eres = fl_shared(sizeof(eres_t) * FL_MAX_RANKS);
    g_body = body;
    fl_job_t job;
    fl_spawn(&job, n, eres_rank, &n);
    cr_assert_eq(fl_wait(&job, fl_now_ns() + 20000000000ull), 0, "a rank hung");
}

static float g_x[8];

/* Ranks 0 and 1 allreduce; rank 2 is "computing" for 3 s first. */
static rdx_status_t absent_body(rdx_comm_t *comm, int rank)
{
    if (rank == 2)
        fl_sleep_us(3000000);
    return rdx_allreduce(comm, g_x, g_x, 8, RDX_FLOAT32, RDX_SUM);
}

Test(stall, timeout_names_the_rank_that_never_came, .timeout = 30)
{
    eres_run(3, absent_body);
    for (int r = 0; r < 3; r++) {
        const eres_t *x = &g_eres[r];
        /* Rank 2 may complete its allreduce from what the others sent before they gave up
         * (a correct result: every contribution was in); it then learns at its next call. */
        int st = r == 2 && x->st == RDX_SUCCESS ? x->st_destroy : x->st;
        cr_assert_eq(st, RDX_ERR_TIMEOUT, "rank %d: %s: %s", r, rdx_strerror(st), x->msg);
        /* rank 0's verdict, relayed to all: who waits where, and who is missing */
        cr_assert(strstr(x->msg, "stall reports: ranks 0, 1 wait in allreduce #0") &&
                      strstr(x->msg, "rank 2 reported no stall"),
                  "rank %d: %s", r, x->msg);
    }
    /* the root's wait for reports (a quarter of the timeout) adds little */
    cr_assert(g_eres[0].ms < 2500, "rank 0 took %.0f ms", g_eres[0].ms);
}

/* Rank 0 polls an iallreduce with rdx_test (as the trainer does during backward); rank 1 is
 * "computing" for 3 s: RDX_TIMEOUT_MS applies to polling as to rdx_wait. */
static rdx_status_t polls_body(rdx_comm_t *comm, int rank)
{
    if (rank != 0) {
        fl_sleep_us(3000000);
        return rdx_allreduce(comm, g_x, g_x, 8, RDX_FLOAT32, RDX_SUM);
    }
    rdx_request_t *req;
    int done = 0;
    uint64_t t0 = fl_now_ns();
    rdx_status_t st = rdx_iallreduce(comm, g_x, g_x, 8, RDX_FLOAT32, RDX_SUM, &req);
    while (st == RDX_SUCCESS && !done && fl_now_ns() - t0 < 10000000000ull) {
        st = rdx_test(req, &done);
        fl_sleep_us(200);
    }
    if (done)
        (void)rdx_wait(req);
    return st;
}

Test(stall, polling_times_out_like_waiting, .timeout = 30)
{
    eres_run(2, polls_body);
    const eres_t *x = &g_eres[0];
    cr_assert_eq(x->st, RDX_ERR_TIMEOUT, "%s: %s", rdx_strerror(x->st), x->msg);
    cr_assert(strstr(x->msg, "no progress for") && strstr(x->msg, "rank 1 reported no stall"),
              "%s", x->msg);
    cr_assert(x->ms > 900 && x->ms < 2900, "rank 0 took %.0f ms", x->ms);
}

/* Uneven data: rank 2 runs out of batches one step early and calls rdx_comm_destroy while
 * ranks 0 and 1 still allreduce (the classic data-parallel hang). */
static rdx_status_t leaves_early_body(rdx_comm_t *comm, int rank)
{
    rdx_status_t st = rdx_allreduce(comm, g_x, g_x, 8, RDX_FLOAT32, RDX_SUM);
    if (st == RDX_SUCCESS && rank != 2)
        st = rdx_allreduce(comm, g_x, g_x, 8, RDX_FLOAT32, RDX_SUM);
    return st;
}

Test(stall, a_rank_that_left_early_is_a_mismatch_naming_it, .timeout = 30)
{
    eres_run(3, leaves_early_body);
    for (int r = 0; r < 3; r++) {
        const eres_t *x = &g_eres[r];
        int st = r == 2 ? x->st_destroy : x->st;
        cr_assert_eq(st, RDX_ERR_MISMATCH, "rank %d: %s: %s", r, rdx_strerror(st), x->msg);
        cr_assert(strstr(x->msg, "ranks 0, 1 wait in allreduce #1") &&
                      strstr(x->msg, "rank 2 waits in rdx_comm_destroy"),
                  "rank %d: %s", r, x->msg);
        cr_assert(x->ms < 4000, "rank %d took %.0f ms", r, x->ms);
    }
}
