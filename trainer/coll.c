#include "coll.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

rdx_status_t coll_report(rdx_comm_t *comm, rdx_status_t st, const char *what)
{
    if (st != RDX_SUCCESS) {
        const char *last = comm ? rdx_comm_last_error(comm) : "";
        fprintf(stderr, "rdx-train: rank %d: %s: %s%s%s\n", comm ? rdx_comm_rank(comm) : -1,
                what, rdx_strerror(st), last[0] ? ": " : "", last);
    }
    return st;
}

rdx_status_t coll_bcast(rdx_comm_t *comm, void *buf, size_t bytes)
{
    return rdx_broadcast(comm, buf, buf, bytes, RDX_UINT8, 0);
}

rdx_status_t coll_allgather(rdx_comm_t *comm, const void *mine, void *out, size_t bytes_each)
{
    return rdx_allgather(comm, mine, out, bytes_each, RDX_UINT8);
}

rdx_status_t coll_allgather_start(rdx_comm_t *comm, uint32_t *out, size_t words_each,
                                  rdx_request_t **req)
{
    const uint32_t *own = out + (size_t)rdx_comm_rank(comm) * words_each;  /* in place */
    return rdx_iallgather(comm, own, out, words_each, RDX_UINT32, req);
}

uint64_t coll_allreduce_wire_bytes(size_t bytes, int n)
{
    return n > 1 ? (uint64_t)bytes * 2u * (uint64_t)(n - 1) / (uint64_t)n : 0;
}

uint64_t coll_allgather_wire_bytes(size_t bytes, int n)
{
    return n > 1 ? (uint64_t)bytes * (uint64_t)(n - 1) / (uint64_t)n : 0;
}

rdx_status_t coll_check_same(rdx_comm_t *comm, uint64_t value, const char *what)
{
    int rank = rdx_comm_rank(comm), n = rdx_comm_size(comm);
    uint64_t *all = malloc((size_t)n * sizeof *all);
    if (!all)
        return RDX_ERR_NO_MEMORY;
    char msg[160];
    snprintf(msg, sizeof msg, "allgather (%s check)", what);
    rdx_status_t st = coll_report(comm, coll_allgather(comm, &value, all, sizeof value), msg);
    if (st == RDX_SUCCESS) {
        char ranks[512] = "";
        size_t len = 0;
        int bad = 0;
        for (int r = 1; r < n; r++) {
            if (all[r] == all[0])
                continue;
            if (len < sizeof ranks - 16)
                len += (size_t)snprintf(ranks + len, sizeof ranks - len, "%s%d",
                                        bad ? ", " : "", r);
            bad++;
        }
        if (bad) {
            fprintf(stderr, "rdx-train: rank %d: %s: ranks disagree: rank 0 has "
                    "0x%016" PRIx64 ", different on rank%s %s\n", rank, what, all[0],
                    bad > 1 ? "s" : "", ranks);
            st = RDX_ERR_MISMATCH;
        }
    }
    free(all);
    return st;
}
