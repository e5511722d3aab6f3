/*
 * An in-memory transport for testing collectives without a network: n ranks live in one
 * process and talk through FIFOs with the same semantics as the real transports (a slot is
 * never overwritten before the receiver releases it; released slots are poisoned so a
 * collective that reads after release fails its check). memworld_run() steps the ranks in a
 * random order, so every interleaving the real transports could produce is exercised, and a
 * long stretch where no rank can move is reported as a deadlock.
 */
#ifndef RDX_TEST_MEMWORLD_H
#define RDX_TEST_MEMWORLD_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/coll.h"

#define MAXR 9

typedef struct {
    int nslots;
    size_t slot_bytes;
    /* fifo[from][to]: slots, lengths, tags, head (released) and tail (committed) counters */
    unsigned char *buf[MAXR][MAXR];
    size_t len[MAXR][MAXR][64];
    uint64_t tag[MAXR][MAXR][64];
    uint64_t head[MAXR][MAXR], tail[MAXR][MAXR];
} world_t;

struct rdx_tp {
    world_t *w;
    int rank;
};

static inline rdx_status_t m_acquire(rdx_tp_t *tp, int peer, void **buf)
{
    world_t *w = tp->w;
    int me = tp->rank;
    if (w->tail[me][peer] - w->head[me][peer] >= (uint64_t)w->nslots) {
        *buf = NULL;
        return RDX_SUCCESS;
    }
    *buf = w->buf[me][peer] + (w->tail[me][peer] % (uint64_t)w->nslots) * w->slot_bytes;
    return RDX_SUCCESS;
}

static inline rdx_status_t m_commit(rdx_tp_t *tp, int peer, size_t len, uint64_t tag)
{
    world_t *w = tp->w;
    int me = tp->rank;
    cr_assert(w->tail[me][peer] - w->head[me][peer] < (uint64_t)w->nslots, "commit without credit");
    cr_assert(len <= w->slot_bytes, "message of %zu bytes > slot %zu", len, w->slot_bytes);
    uint64_t i = w->tail[me][peer] % (uint64_t)w->nslots;
    w->len[me][peer][i] = len;
    w->tag[me][peer][i] = tag;
    w->tail[me][peer]++;
    return RDX_SUCCESS;
}

static inline rdx_status_t m_peek(rdx_tp_t *tp, int peer, const void **buf, size_t *len, uint64_t *tag)
{
    world_t *w = tp->w;
    int me = tp->rank;
    if (w->head[peer][me] == w->tail[peer][me]) {
        *buf = NULL;
        return RDX_SUCCESS;
    }
    uint64_t i = w->head[peer][me] % (uint64_t)w->nslots;
    *buf = w->buf[peer][me] + i * w->slot_bytes;
    *len = w->len[peer][me][i];
    *tag = w->tag[peer][me][i];
    return RDX_SUCCESS;
}

static inline rdx_status_t m_release(rdx_tp_t *tp, int peer)
{
    world_t *w = tp->w;
    int me = tp->rank;
    cr_assert(w->head[peer][me] < w->tail[peer][me]);
    /* Poison the released slot: a collective that reads it after release fails the check. */
    uint64_t i = w->head[peer][me] % (uint64_t)w->nslots;
    memset(w->buf[peer][me] + i * w->slot_bytes, 0xA5, w->slot_bytes);
    w->head[peer][me]++;
    return RDX_SUCCESS;
}

static const rdx_tp_ops_t mem_ops = {
    .name = "mem", .send_acquire = m_acquire, .send_commit = m_commit,
    .recv_peek = m_peek, .recv_release = m_release,
};

static inline void world_init(world_t *w, int n, int nslots, size_t slot_bytes)
{
    memset(w, 0, sizeof(*w));
    w->nslots = nslots;
    w->slot_bytes = slot_bytes;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            w->buf[a][b] = malloc((size_t)nslots * slot_bytes);
}

static inline void world_free(world_t *w, int n)
{
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            free(w->buf[a][b]);
}


/* Starts args[r] on every rank r with the given algorithm setting, runs all to completion
 * in a random interleaving (seed), and fails the test on error or deadlock. */
static inline void memworld_run(int n, int nslots, size_t slot_bytes, int algo,
                                const rdx_coll_args_t *args, unsigned seed)
{
    world_t *w = malloc(sizeof(*w));
    world_init(w, n, nslots, slot_bytes);
    struct rdx_tp tps[MAXR];
    rdx_coll_ctx_t ctx[MAXR];
    rdx_coll_op_t ops[MAXR];
    bool done[MAXR] = {0};
    for (int r = 0; r < n; r++) {
        tps[r] = (struct rdx_tp){.w = w, .rank = r};
        ctx[r] = (rdx_coll_ctx_t){.tp_ops = &mem_ops, .tp = &tps[r], .rank = r, .size = n,
                                  .slot_bytes = slot_bytes, .slots = nslots, .check = true};
        cr_assert_eq(rdx_coll_start(&ctx[r], algo, &args[r], 7, &ops[r]), RDX_SUCCESS);
    }
    srand(seed);
    int ndone = 0, idle_passes = 0;
    while (ndone < n) {
        bool any = false;
        for (int k = 0; k < n; k++) {
            int r = rand() % n;
            if (done[r])
                continue;
            bool moved = false, fin = false;
            cr_assert_eq(ops[r].algo->progress(&ctx[r], &ops[r], &moved, &fin), RDX_SUCCESS,
                         "rank %d progress failed", r);
            any |= moved;
            if (fin) {
                done[r] = true;
                ndone++;
            }
        }
        idle_passes = any ? 0 : idle_passes + 1;
        cr_assert(idle_passes < 50 * n, "deadlock: n=%d slots=%d count=%zu", n, nslots,
                  args[0].count);
    }
    world_free(w, n);
    free(w);
}

#endif
