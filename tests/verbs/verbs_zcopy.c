/*
 * verbs_zcopy: point-to-point sends (collectives/p2p.c) over the real verbs transport, with
 * and without zero-copy, checked byte by byte, and proof that the zero-copy path ran.
 *
 * Two forked ranks open the verbs transport (vt.h) and drive p2p operations directly (the
 * same code rdx_send/rdx_recv run). Cases, each checked on the receiver:
 *   registered    rank 0 sends 3 MiB + 123 B from a buffer it registered: every full chunk
 *                 goes zero-copy (the transport's counter must grow by the number of chunks
 *                 of at least 4 KiB), the short tail is copied
 *   unregistered  the same from an unregistered buffer: the counter must not move
 *   exchange      both ranks send 2 MiB + 1 B to each other at once from registered memory,
 *                 send and receive with the same peer outstanding together
 *   reuse         rank 0 overwrites its registered buffer with a new pattern as soon as a
 *                 send completes and sends again, 20 times: every message must arrive with
 *                 its own pattern (a send that completed before the NIC read the buffer
 *                 would deliver the next pattern)
 *   small         1000 B from registered memory: copied, not zero-copy (below 4 KiB)
 * Settings (RDX_CHUNK_BYTES, RDX_SLOTS, RDX_IB_*) come from the environment.
 *
 *   verbs_zcopy [--deadline S]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "collectives/coll.h"
#include "tests/verbs/vt.h"

#define ZC_MIN 4096 /* transport/verbs.c VERBS_ZCOPY_MIN */

static int g_deadline_s = 120;

typedef struct zc_rank {
    vt_rank_t v;
    rdx_coll_ctx_t ctx;
    double deadline;
} zc_rank_t;

static unsigned char zc_byte(int from, int msg, size_t i)
{
    return (unsigned char)(from * 101 + msg * 29 + i * 7 + (i >> 11));
}

static void zc_fill(unsigned char *b, size_t n, int from, int msg)
{
    for (size_t i = 0; i < n; i++)
        b[i] = zc_byte(from, msg, i);
}

/* Runs ops until all are done (the transport's progress first, as the engine does). */
static rdx_status_t zc_run(zc_rank_t *z, rdx_coll_op_t *ops, int n)
{
    bool done[4] = {0};
    int left = n;
    for (long i = 0; left > 0; i++) {
        RDX_CHECK(z->v.ops->progress(z->v.tp));
        for (int k = 0; k < n; k++) {
            if (done[k])
                continue;
            bool moved, fin;
            RDX_CHECK(ops[k].algo->progress(&z->ctx, &ops[k], &moved, &fin));
            if (fin) {
                done[k] = true;
                left--;
            }
        }
        if ((i & 1023) == 1023 && vt_now() > z->deadline) {
            char where[256];
            for (int k = 0; k < n; k++)
                if (!done[k])
                    ops[k].algo->describe(&z->ctx, &ops[k], where, sizeof(where));
            return rdx_err(RDX_ERR_TIMEOUT, "rank %d: deadline passed: %s", z->v.rank, where);
        }
    }
    return RDX_SUCCESS;
}

static rdx_status_t zc_start(zc_rank_t *z, rdx_coll_kind_t kind, void *buf, size_t bytes,
                             rdx_coll_op_t *op)
{
    rdx_coll_args_t a = {.kind = kind, .count = bytes, .dtype = RDX_UINT8, .root = 1 - z->v.rank};
    if (kind == RDX_COLL_SEND)
        a.sendbuf = buf;
    else
        a.recvbuf = buf;
    return rdx_p2p_start(&z->ctx, &a, op);
}

static long zc_check(const unsigned char *b, size_t n, int from, int msg, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != zc_byte(from, msg, i)) {
            fprintf(stderr, "FAIL %s: message %d from rank %d: byte %zu of %zu is 0x%02x, "
                    "expected 0x%02x\n", what, msg, from, i, n, b[i], zc_byte(from, msg, i));
            return 1;
        }
    return 0;
}

static uint64_t zc_count(const zc_rank_t *z)
{
    uint64_t msgs, bytes;
    rdx_verbs_tp_zcopy_stats(z->v.tp, &msgs, &bytes);
    return msgs;
}

/* One message rank 0 -> rank 1 of `bytes` from buf (rank 0) into a poisoned buffer. */
static int zc_one_way(zc_rank_t *z, unsigned char *sbuf, unsigned char *rbuf, size_t bytes,
                      int msg, const char *what)
{
    rdx_coll_op_t op;
    rdx_status_t st;
    if (z->v.rank == 0) {
        zc_fill(sbuf, bytes, 0, msg);
        st = zc_start(z, RDX_COLL_SEND, sbuf, bytes, &op);
    } else {
        memset(rbuf, 0xA5, bytes);
        st = zc_start(z, RDX_COLL_RECV, rbuf, bytes, &op);
    }
    if (st == RDX_SUCCESS)
        st = zc_run(z, &op, 1);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: FAIL %s: %s: %s\n", z->v.rank, what, rdx_strerror(st),
                rdx_err_last());
        return 1;
    }
    return z->v.rank == 1 ? (int)zc_check(rbuf, bytes, 0, msg, what) : 0;
}

static int zc_rank(int rank, void *arg)
{
    const char *addr = arg;
    zc_rank_t z;
    rdx_status_t st;
    memset(&z, 0, sizeof(z));
    int deadline_s = g_deadline_s;
    if (vt_rank_open(&z.v, rank, 2, addr, deadline_s, &st) != 0 || st != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: FAIL create: %s\n", rank, rdx_err_last());
        return 1;
    }
    z.deadline = vt_now() + deadline_s;
    z.ctx = (rdx_coll_ctx_t){.tp_ops = z.v.ops, .tp = z.v.tp, .rank = rank, .size = 2,
                             .slot_bytes = z.v.props.slot_bytes, .slots = z.v.props.slots,
                             .check = true};
    size_t big = (3u << 20) + 123, xbytes = (2u << 20) + 1;
    unsigned char *reg = aligned_alloc(64, 4u << 20), *plain = aligned_alloc(64, 4u << 20);
    unsigned char *rbuf = aligned_alloc(64, 4u << 20);
    rdx_tp_mem_t *mem = NULL;
    int fail = 0;
    if (!reg || !plain || !rbuf ||
        z.v.ops->mem_register(z.v.tp, reg, 4u << 20, &mem) != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: FAIL setup: %s\n", rank, rdx_err_last());
        return 1;
    }
    size_t slot = z.ctx.slot_bytes;
    uint64_t full = big / slot + (big % slot >= ZC_MIN ? 1 : 0);

    /* registered */
    uint64_t c0 = zc_count(&z);
    fail |= zc_one_way(&z, reg, rbuf, big, 1, "registered");
    if (rank == 0 && zc_count(&z) - c0 != full) {
        fprintf(stderr, "rank 0: FAIL registered: %llu zero-copy messages, expected %llu "
                "(chunks of >= %d B out of %zu B in %zu-byte slots)\n",
                (unsigned long long)(zc_count(&z) - c0), (unsigned long long)full, ZC_MIN, big,
                slot);
        fail = 1;
    }
    /* unregistered */
    c0 = zc_count(&z);
    fail |= zc_one_way(&z, plain, rbuf, big, 2, "unregistered");
    if (zc_count(&z) != c0) {
        fprintf(stderr, "rank %d: FAIL unregistered: zero-copy used on an unregistered buffer\n",
                rank);
        fail = 1;
    }
    /* small */
    c0 = zc_count(&z);
    fail |= zc_one_way(&z, reg, rbuf, 1000, 3, "small");
    if (zc_count(&z) != c0) {
        fprintf(stderr, "rank %d: FAIL small: 1000 B went zero-copy\n", rank);
        fail = 1;
    }
    /* exchange: send and receive with the same peer at once, both ways */
    rdx_coll_op_t ops[2];
    zc_fill(reg, xbytes, rank, 4);
    memset(rbuf, 0xA5, xbytes);
    c0 = zc_count(&z);
    st = zc_start(&z, RDX_COLL_SEND, reg, xbytes, &ops[0]);
    if (st == RDX_SUCCESS)
        st = zc_start(&z, RDX_COLL_RECV, rbuf, xbytes, &ops[1]);
    if (st == RDX_SUCCESS)
        st = zc_run(&z, ops, 2);
    if (st != RDX_SUCCESS) {
        fprintf(stderr, "rank %d: FAIL exchange: %s: %s\n", rank, rdx_strerror(st),
                rdx_err_last());
        fail = 1;
    } else {
        fail |= (int)zc_check(rbuf, xbytes, 1 - rank, 4, "exchange");
        if (zc_count(&z) == c0) {
            fprintf(stderr, "rank %d: FAIL exchange: no zero-copy message\n", rank);
            fail = 1;
        }
    }
    /* reuse: overwrite the buffer right after each send completes */
    for (int m = 0; m < 20 && !fail; m++)
        fail |= zc_one_way(&z, reg, rbuf, (1u << 20) + 17u * (unsigned)m, 10 + m, "reuse");

    uint64_t msgs, bytes;
    rdx_verbs_tp_zcopy_stats(z.v.tp, &msgs, &bytes);
    if (!fail)
        printf("rank %d: OK: got every message right; %llu messages (%llu bytes) went "
               "zero-copy, slot %zu B\n", rank, (unsigned long long)msgs,
               (unsigned long long)bytes, slot);
    z.v.ops->mem_deregister(z.v.tp, mem);
    rdx_p2p_state_free(&z.ctx);
    vt_rank_close(&z.v);
    free(reg);
    free(plain);
    free(rbuf);
    return fail;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--deadline"))
        g_deadline_s = atoi(argv[2]);
    else if (argc != 1) {
        fprintf(stderr, "usage: verbs_zcopy [--deadline S]\n");
        return 2;
    }
    char addr[64];
    vt_free_addr(addr, sizeof(addr));
    return vt_spawn(2, g_deadline_s, zc_rank, addr);
}
