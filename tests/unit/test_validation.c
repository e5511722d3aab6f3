/*
 * Input validation at the API and the lifecycle errors (issue 6): NULL pointers, counts
 * whose byte size overflows, unknown dtype/op/root, partial overlap, integer AVG, calls on
 * destroyed and aborted communicators, rdx_comm_abort with outstanding requests and on a
 * split communicator. Each error must be the documented status with a message naming the
 * rank and the operation (docs/errors.md quotes these messages).
 *
 * One-rank cases run in the test process; multi-rank cases fork ranks on 127.0.0.1
 * (tests/fault/launch.h) and report through a shared mapping.
 */
#include <criterion/criterion.h>

#include <stdint.h>

#include "rdx/rdx.h"
#include "tests/fault/launch.h"

static rdx_comm_t *one_rank(void)
{
    rdx_config_t c;
    rdx_config_default(&c);
    c.rank = 0;
    c.size = 1;
    rdx_comm_t *comm = NULL;
    cr_assert_eq(rdx_comm_init(&comm, &c), RDX_SUCCESS);
    return comm;
}

#define ASSERT_FAILS(call, want, text)                                                      \
    do {                                                                                    \
        rdx_status_t st_ = (call);                                                          \
        cr_assert_eq(st_, want, "%s: got %s: %s", #call, rdx_strerror(st_),                 \
                     rdx_comm_last_error(comm));                                            \
        cr_assert(strstr(rdx_comm_last_error(comm), text), "%s: message lacks '%s': %s",    \
                  #call, text, rdx_comm_last_error(comm));                                  \
    } while (0)

Test(validation, null_pointers)
{
    float x[4] = {0};
    rdx_request_t *req;
    int done;
    cr_assert_eq(rdx_comm_init(NULL, NULL), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_allreduce(NULL, x, x, 4, RDX_FLOAT32, RDX_SUM), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_iallreduce(NULL, x, x, 4, RDX_FLOAT32, RDX_SUM, &req), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_barrier(NULL), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_comm_destroy(NULL), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_comm_abort(NULL), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_wait(NULL), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_test(NULL, &done), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_progress(NULL), RDX_ERR_INVALID_ARG);
    cr_assert_str_eq(rdx_comm_last_error(NULL), "no communicator");

    rdx_comm_t *comm = one_rank();
    rdx_comm_t *sub;
    cr_assert_eq(rdx_iallreduce(comm, x, x, 4, RDX_FLOAT32, RDX_SUM, NULL), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_comm_split(comm, 0, 0, NULL), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_comm_split(NULL, 0, 0, &sub), RDX_ERR_INVALID_ARG);
    ASSERT_FAILS(rdx_allreduce(comm, NULL, x, 4, RDX_FLOAT32, RDX_SUM), RDX_ERR_INVALID_ARG,
                 "rank 0: rdx_allreduce: invalid argument: sendbuf is NULL with count 4");
    ASSERT_FAILS(rdx_allreduce(comm, x, NULL, 4, RDX_FLOAT32, RDX_SUM), RDX_ERR_INVALID_ARG,
                 "recvbuf is NULL with count 4");
    ASSERT_FAILS(rdx_broadcast(comm, NULL, x, 4, RDX_FLOAT32, 0), RDX_ERR_INVALID_ARG,
                 "rdx_broadcast: invalid argument: sendbuf is NULL");
    ASSERT_FAILS(rdx_reduce_scatter(comm, x, NULL, 1, RDX_FLOAT32, RDX_SUM), RDX_ERR_INVALID_ARG,
                 "recvbuf is NULL");
    /* count 0 needs no buffer */
    cr_assert_eq(rdx_allreduce(comm, NULL, NULL, 0, RDX_FLOAT32, RDX_SUM), RDX_SUCCESS);
    cr_assert_eq(rdx_comm_destroy(comm), RDX_SUCCESS);
}

Test(validation, overflow_and_unknown_values)
{
    rdx_comm_t *comm = one_rank();
    float x[4] = {0};
    ASSERT_FAILS(rdx_allreduce(comm, x, x, SIZE_MAX / 2, RDX_FLOAT32, RDX_SUM),
                 RDX_ERR_INVALID_ARG, "overflows the byte size");
    ASSERT_FAILS(rdx_allgather(comm, x, x, SIZE_MAX / 8, RDX_FLOAT64), RDX_ERR_INVALID_ARG,
                 "overflows the byte size");
    ASSERT_FAILS(rdx_allreduce(comm, x, x, 4, (rdx_dtype_t)RDX_DTYPE_COUNT, RDX_SUM),
                 RDX_ERR_INVALID_ARG, "unknown dtype 10");
    ASSERT_FAILS(rdx_allreduce(comm, x, x, 4, (rdx_dtype_t)-1, RDX_SUM), RDX_ERR_INVALID_ARG,
                 "unknown dtype -1");
    ASSERT_FAILS(rdx_allreduce(comm, x, x, 4, RDX_FLOAT32, (rdx_op_t)RDX_OP_COUNT),
                 RDX_ERR_INVALID_ARG, "unknown op 5");
    ASSERT_FAILS(rdx_reduce(comm, x, x, 4, RDX_FLOAT32, RDX_SUM, 1), RDX_ERR_INVALID_ARG,
                 "root 1 is not a rank of this communicator (size 1)");
    ASSERT_FAILS(rdx_broadcast(comm, x, x, 4, RDX_FLOAT32, -1), RDX_ERR_INVALID_ARG,
                 "root -1 is not a rank");
    ASSERT_FAILS(rdx_allreduce(comm, x, x + 1, 2, RDX_FLOAT32, RDX_SUM), RDX_ERR_INVALID_ARG,
                 "sendbuf and recvbuf overlap without being the in-place layout");
    /* Argument errors do not break the communicator. */
    cr_assert_eq(rdx_allreduce(comm, x, x, 4, RDX_FLOAT32, RDX_SUM), RDX_SUCCESS);
    cr_assert_eq(rdx_comm_destroy(comm), RDX_SUCCESS);
}

Test(validation, destroyed_communicator)
{
    rdx_comm_t *comm = one_rank();
    float x[4] = {1, 2, 3, 4};
    rdx_request_t *req;
    rdx_mem_t *mem;
    rdx_comm_t *sub;
    cr_assert_eq(rdx_comm_destroy(comm), RDX_SUCCESS);
    /* The shell stays readable: a clear error, not a use after free (ASan would say). */
    ASSERT_FAILS(rdx_allreduce(comm, x, x, 4, RDX_FLOAT32, RDX_SUM), RDX_ERR_INVALID_ARG,
                 "the communicator was destroyed (rdx_comm_destroy)");
    cr_assert_eq(rdx_iallreduce(comm, x, x, 4, RDX_FLOAT32, RDX_SUM, &req), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_barrier(comm), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_progress(comm), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_comm_split(comm, 0, 0, &sub), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_mem_register(comm, x, sizeof(x), &mem), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_comm_abort(comm), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_comm_destroy(comm), RDX_ERR_INVALID_ARG, "double destroy");
}

Test(validation, aborted_communicator_one_rank)
{
    rdx_comm_t *comm = one_rank();
    float x[4] = {1, 2, 3, 4};
    cr_assert_eq(rdx_comm_abort(comm), RDX_SUCCESS);
    ASSERT_FAILS(rdx_allreduce(comm, x, x, 4, RDX_FLOAT32, RDX_SUM), RDX_ERR_PEER_LOST,
                 "aborted by rank 0");
    cr_assert_eq(rdx_barrier(comm), RDX_ERR_PEER_LOST);
    cr_assert_eq(rdx_comm_abort(comm), RDX_SUCCESS, "a second abort is harmless");
    cr_assert_eq(rdx_comm_destroy(comm), RDX_SUCCESS);
}

/* ---- multi-rank cases ------------------------------------------------------------------ */

typedef struct mres {
    int st[4];
    int ival[4];
    double ms;
    char msg[2][512];
} mres_t;

static mres_t *g_res;

/* Integer AVG: wrapped sum, then C division (truncates toward zero). */
static int rank_int_avg(int rank, void *arg)
{
    (void)arg;
    rdx_comm_t *comm;
    if (rdx_comm_init(&comm, NULL) != RDX_SUCCESS)
        return 3;
    const int32_t in[3][4] = {{7, 10, -7, 100}, {-8, 11, -7, 100}, {2, 12, -8, 101}};
    int32_t out[4];
    g_res[rank].st[0] = rdx_allreduce(comm, in[rank], out, 4, RDX_INT32, RDX_AVG);
    memcpy(g_res[rank].ival, out, sizeof(out));
    rdx_comm_destroy(comm);
    return 0;
}

Test(validation, integer_avg_truncates, .timeout = 60)
{
    g_res = fl_shared(sizeof(mres_t) * 3);
    fl_job_t job;
    fl_spawn(&job, 3, rank_int_avg, NULL);
    cr_assert_eq(fl_wait(&job, fl_now_ns() + 40000000000ull), 0, "a rank hung");
    const int want[4] = {0, 11, -7, 100}; /* 1/3, 33/3, -22/3, 301/3 */
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(g_res[r].st[0], RDX_SUCCESS, "rank %d", r);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(g_res[r].ival[i], want[i], "rank %d element %d: %d", r, i,
                         g_res[r].ival[i]);
    }
}

/* Rank 0 aborts with a request outstanding (rank 1 joins it only 200 ms later, and may
 * complete it from the data rank 0 sent before giving up); rank 1's next call waits for
 * rank 0 and must learn of the abort. Both then destroy. */
static int rank_abort_outstanding(int rank, void *arg)
{
    (void)arg;
    rdx_comm_t *comm;
    if (rdx_comm_init(&comm, NULL) != RDX_SUCCESS)
        return 3;
    mres_t *me = &g_res[rank];
    float x[1024] = {0};
    if (rank == 0) {
        rdx_request_t *req;
        me->st[0] = rdx_iallreduce(comm, x, x, 1024, RDX_FLOAT32, RDX_SUM, &req);
        usleep(50000);
        me->st[1] = rdx_comm_abort(comm);
        me->st[2] = rdx_wait(req);
        me->st[3] = rdx_barrier(comm);
    } else {
        usleep(200000);
        me->st[0] = rdx_allreduce(comm, x, x, 1024, RDX_FLOAT32, RDX_SUM);
        uint64_t t0 = fl_now_ns();
        me->st[1] = rdx_barrier(comm);
        me->ms = (double)(fl_now_ns() - t0) / 1e6;
    }
    snprintf(me->msg[0], sizeof(me->msg[0]), "%s", rdx_comm_last_error(comm));
    int dst = rdx_comm_destroy(comm);
    return dst == RDX_SUCCESS ? 0 : 4;
}

Test(validation, abort_fails_outstanding_and_reaches_peers, .timeout = 60)
{
    g_res = fl_shared(sizeof(mres_t) * 2);
    fl_job_t job;
    fl_spawn(&job, 2, rank_abort_outstanding, NULL);
    cr_assert_eq(fl_wait(&job, fl_now_ns() + 40000000000ull), 0, "a rank hung");
    for (int r = 0; r < 2; r++)
        cr_assert(WIFEXITED(job.wstatus[r]) && WEXITSTATUS(job.wstatus[r]) == 0,
                  "rank %d: status 0x%x", r, job.wstatus[r]);
    mres_t *a = &g_res[0], *b = &g_res[1];
    cr_assert_eq(a->st[0], RDX_SUCCESS);
    cr_assert_eq(a->st[1], RDX_SUCCESS);
    cr_assert_eq(a->st[2], RDX_ERR_PEER_LOST, "outstanding request: %s", rdx_strerror(a->st[2]));
    cr_assert_eq(a->st[3], RDX_ERR_PEER_LOST, "later call: %s", rdx_strerror(a->st[3]));
    cr_assert(strstr(a->msg[0], "aborted by rank 0"), "%s", a->msg[0]);
    cr_assert(b->st[0] == RDX_SUCCESS || b->st[0] == RDX_ERR_PEER_LOST, "peer: %s: %s",
              rdx_strerror(b->st[0]), b->msg[0]);
    cr_assert_eq(b->st[1], RDX_ERR_PEER_LOST, "peer: %s: %s", rdx_strerror(b->st[1]), b->msg[0]);
    cr_assert(strstr(b->msg[0], "aborted by rank 0"), "%s", b->msg[0]);
    cr_assert(b->ms < 2000, "the peer learned after %.0f ms", b->ms);
}

/* Four ranks split into {0,2} and {1,3}; rank 3 aborts its child communicator. Its whole
 * family breaks (same transport): rank 1 (same child) and ranks 0, 2 (other child, and the
 * world) learn of it; every communicator is then destroyed, children first. */
static int rank_abort_split(int rank, void *arg)
{
    (void)arg;
    rdx_comm_t *world, *sub;
    if (rdx_comm_init(&world, NULL) != RDX_SUCCESS)
        return 3;
    if (rdx_comm_split(world, rank % 2, 0, &sub) != RDX_SUCCESS)
        return 5;
    mres_t *me = &g_res[rank];
    float x[256] = {0};
    me->st[0] = rdx_allreduce(sub, x, x, 256, RDX_FLOAT32, RDX_SUM);
    if (rank == 3) {
        me->st[1] = rdx_comm_abort(sub);
        me->st[2] = rdx_allreduce(world, x, x, 4, RDX_FLOAT32, RDX_SUM);
    } else {
        /* ranks 0 and 2 wait in their own child, rank 1 in the aborted one */
        me->st[1] = rdx_barrier(sub);
        me->st[2] = rdx_allreduce(world, x, x, 4, RDX_FLOAT32, RDX_SUM);
    }
    snprintf(me->msg[0], sizeof(me->msg[0]), "%s", rdx_comm_last_error(sub));
    snprintf(me->msg[1], sizeof(me->msg[1]), "%s", rdx_comm_last_error(world));
    me->st[3] = rdx_comm_destroy(world); /* refused: a child is alive */
    int d1 = rdx_comm_destroy(sub), d2 = rdx_comm_destroy(world);
    return d1 == RDX_SUCCESS && d2 == RDX_SUCCESS ? 0 : 4;
}

Test(validation, abort_on_split_communicator_breaks_the_family, .timeout = 90)
{
    g_res = fl_shared(sizeof(mres_t) * 4);
    fl_job_t job;
    fl_spawn(&job, 4, rank_abort_split, NULL);
    cr_assert_eq(fl_wait(&job, fl_now_ns() + 60000000000ull), 0, "a rank hung");
    for (int r = 0; r < 4; r++) {
        mres_t *x = &g_res[r];
        cr_assert(WIFEXITED(job.wstatus[r]) && WEXITSTATUS(job.wstatus[r]) == 0,
                  "rank %d: status 0x%x", r, job.wstatus[r]);
        cr_assert_eq(x->st[0], RDX_SUCCESS, "rank %d", r);
        /* Rank 1 waits for rank 3 in the aborted child; ranks 0 and 2 may finish their
         * own child's barrier before the news arrives. */
        if (r == 1)
            cr_assert_eq(x->st[1], RDX_ERR_PEER_LOST, "rank %d: %s", r, x->msg[0]);
        else if (r != 3)
            cr_assert(x->st[1] == RDX_SUCCESS || x->st[1] == RDX_ERR_PEER_LOST, "rank %d", r);
        cr_assert_eq(x->st[2], RDX_ERR_PEER_LOST, "rank %d world: %s", r, x->msg[1]);
        cr_assert(strstr(x->msg[1], "aborted by rank 3"), "rank %d: %s", r, x->msg[1]);
        cr_assert_eq(x->st[3], RDX_ERR_INVALID_ARG, "rank %d: destroying a parent first", r);
    }
}
