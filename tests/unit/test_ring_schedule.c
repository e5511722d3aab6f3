/*
 * The ring's chunk schedule, checked without a network: n ranks live in this one process and
 * talk through an in-memory transport with the same FIFO/credit semantics as the real ones
 * (a slot is never overwritten before the receiver releases it). Ranks are stepped in a
 * random order, so every interleaving the real transports could produce is exercised; a
 * pass in which no rank moves while some are unfinished is a deadlock and fails the test.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/coll.h"
#include "src/reduce.h"

#include "tests/unit/memworld.h"

static int32_t input(int rank, size_t i) { return (int32_t)((i * 2654435761u + (unsigned)rank * 97u) % 1000u) - 500; }

/* Runs one allreduce of count int32 (op SUM or AVG) on n in-process ranks and checks it. */
static void run_case(int n, int nslots, size_t slot_bytes, size_t count, rdx_op_t op,
                     bool in_place, unsigned seed)
{
    int32_t *send[MAXR], *recv[MAXR];
    rdx_coll_args_t args[MAXR];
    for (int r = 0; r < n; r++) {
        send[r] = malloc((count + 1) * sizeof(int32_t));
        recv[r] = in_place ? send[r] : malloc((count + 1) * sizeof(int32_t));
        for (size_t i = 0; i < count; i++)
            send[r][i] = input(r, i);
        if (!in_place)
            for (size_t i = 0; i <= count; i++)
                recv[r][i] = 0x7eadbeef;
        send[r][count] = 0x7eadbeef; /* guard element */
        args[r] = (rdx_coll_args_t){.kind = RDX_COLL_ALLREDUCE, .sendbuf = send[r],
                                    .recvbuf = recv[r], .count = count, .dtype = RDX_INT32,
                                    .op = op, .root = -1};
    }
    memworld_run(n, nslots, slot_bytes, 1 /* ring */, args, seed);
    for (size_t i = 0; i < count; i++) {
        int64_t sum = 0;
        for (int r = 0; r < n; r++)
            sum += input(r, i);
        int32_t want = (int32_t)(op == RDX_AVG ? sum / n : sum);
        for (int r = 0; r < n; r++)
            cr_assert_eq(recv[r][i], want, "n=%d slots=%d count=%zu rank %d elem %zu: got %d want %d",
                         n, nslots, count, r, i, recv[r][i], want);
    }
    for (int r = 0; r < n; r++) {
        cr_assert_eq(recv[r][count], 0x7eadbeef, "overrun past count");
        if (!in_place)
            free(recv[r]);
        free(send[r]);
    }
}

Test(ring_schedule, awkward_counts_every_rank_count, .timeout = 120)
{
    static const size_t counts[] = {0, 1, 2, 3, 7, 13, 1023, 4099, 65537, 100003};
    for (int n = 1; n <= 8; n++)
        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++)
            run_case(n, 4, 4096, counts[c], RDX_SUM, false, (unsigned)(n * 31 + c));
}

Test(ring_schedule, in_place_and_avg, .timeout = 120)
{
    for (int n = 1; n <= 7; n += 2) {
        run_case(n, 8, 4096, 50021, RDX_SUM, true, 1);
        run_case(n, 8, 4096, 50021, RDX_AVG, false, 2);
        run_case(n, 8, 4096, 50021, RDX_AVG, true, 3);
    }
}

Test(ring_schedule, minimal_fifo_never_deadlocks, .timeout = 120)
{
    /* Two slots per peer: one slice per step, the tightest FIFO the ring accepts. */
    for (int n = 2; n <= 8; n++)
        for (unsigned seed = 0; seed < 5; seed++)
            run_case(n, 2, 4096, 3 * 4096 + 17, RDX_SUM, seed & 1, seed);
}

Test(ring_schedule, deep_fifo_many_rounds, .timeout = 120)
{
    for (int n = 2; n <= 5; n++)
        run_case(n, 16, 4096, 400009, RDX_SUM, false, 9);
}
