/*
 * p2p_check: multi-process correctness of rdx_send/rdx_recv/rdx_isend/rdx_irecv through the
 * public API (run under rdx-run on any transport). Every received byte is checked.
 *
 *   all-pairs   every rank isends to and irecvs from every other rank at once, sizes from
 *               0 B to more than the FIFO (slots x chunk) and 1 MiB + 3, several dtypes;
 *               the receives are posted after the sends on even ranks and before on odd
 *   ring        blocking rdx_send/rdx_recv around the ring (even ranks send first, odd
 *               ranks receive first: the safe order for messages larger than the FIFO)
 *   order       4 messages to the same peer in one group arrive in issue order
 *   mixed       a group of sends/receives, an allreduce, another group: the ordering rule
 *   registered  the same exchange from rdx_mem_register'ed buffers (zero-copy on verbs)
 *   errors      self send is RDX_ERR_UNSUPPORTED, a bad peer RDX_ERR_INVALID_ARG, with
 *               messages naming the peer
 * --mismatch: rank 0 sends 100 int32 to rank 1, which receives 101: rank 1 must get
 *   RDX_ERR_MISMATCH naming peer 0 (then both ranks leave without rdx_comm_destroy: the
 *   communicator is broken on purpose).
 * --deadlock: ranks 0 and 1 both call blocking rdx_send of 4 MiB (more than the FIFO) to
 *   each other first: the unsafe order rdx.h warns about. Run with a short RDX_TIMEOUT_MS:
 *   each must return (never hang) with RDX_ERR_TIMEOUT, whose message says which send waits
 *   for credit, or RDX_ERR_PEER_LOST when the other rank gave up first.
 * Exit 0 when everything held.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rdx/rdx.h"

#define MAXN 16

static int g_rank, g_size, g_fail;

#define CHECK_CALL(call)                                                                   \
    do {                                                                                   \
        rdx_status_t st_ = (call);                                                         \
        if (st_ != RDX_SUCCESS) {                                                          \
            fprintf(stderr, "rank %d: FAIL %s: %s: %s\n", g_rank, #call, rdx_strerror(st_), \
                    rdx_comm_last_error(comm));                                            \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static unsigned char pat(int from, int to, int msg, size_t i)
{
    return (unsigned char)(from * 53 + to * 17 + msg * 5 + i * 11 + (i >> 10));
}

static void fill(unsigned char *b, size_t n, int from, int to, int msg)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(from, to, msg, i);
}

static void check(const char *what, const unsigned char *b, size_t n, int from, int msg)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != pat(from, g_rank, msg, i)) {
            fprintf(stderr, "rank %d: FAIL %s: message %d from rank %d: byte %zu of %zu is "
                    "0x%02x, expected 0x%02x\n", g_rank, what, msg, from, i, n, b[i],
                    pat(from, g_rank, msg, i));
            g_fail = 1;
            return;
        }
}

/* Everyone sends `bytes` (as count of dtype) to everyone else at once. */
static void all_pairs(rdx_comm_t *comm, const char *what, size_t bytes, rdx_dtype_t dt,
                      int msg, unsigned char *sbase, unsigned char *rbase)
{
    size_t es = rdx_dtype_size(dt), count = bytes / es;
    bytes = count * es;
    rdx_request_t *req[2 * MAXN];
    int nreq = 0;
    for (int pass = 0; pass < 2; pass++) {
        bool sends = (pass == 0) == (g_rank % 2 == 0);
        for (int d = 1; d < g_size; d++) {
            int to = (g_rank + d) % g_size, from = (g_rank - d + g_size) % g_size;
            if (sends) {
                unsigned char *s = sbase + (size_t)to * bytes;
                fill(s, bytes, g_rank, to, msg);
                CHECK_CALL(rdx_isend(comm, s, count, dt, to, &req[nreq++]));
            } else {
                unsigned char *r = rbase + (size_t)from * bytes;
                memset(r, 0xA5, bytes);
                CHECK_CALL(rdx_irecv(comm, r, count, dt, from, &req[nreq++]));
            }
        }
    }
    for (int k = nreq - 1; k >= 0; k--) /* wait in reverse: order of waits must not matter */
        CHECK_CALL(rdx_wait(req[k]));
    for (int from = 0; from < g_size; from++)
        if (from != g_rank)
            check(what, rbase + (size_t)from * bytes, bytes, from, msg);
}

static void ring(rdx_comm_t *comm, size_t bytes, unsigned char *s, unsigned char *r)
{
    int right = (g_rank + 1) % g_size, left = (g_rank - 1 + g_size) % g_size;
    fill(s, bytes, g_rank, right, 7);
    memset(r, 0xA5, bytes);
    if (g_rank % 2 == 0) {
        CHECK_CALL(rdx_send(comm, s, bytes, RDX_UINT8, right));
        CHECK_CALL(rdx_recv(comm, r, bytes, RDX_UINT8, left));
    } else {
        CHECK_CALL(rdx_recv(comm, r, bytes, RDX_UINT8, left));
        CHECK_CALL(rdx_send(comm, s, bytes, RDX_UINT8, right));
    }
    check("ring", r, bytes, left, 7);
}

static void order(rdx_comm_t *comm, unsigned char *s, unsigned char *r)
{
    static const size_t sizes[4] = {300000, 0, 5, 70000};
    if (g_size < 2 || g_rank > 1)
        return;
    int peer = 1 - g_rank;
    rdx_request_t *req[4];
    size_t off = 0;
    for (int k = 0; k < 4; k++) {
        if (g_rank == 0) {
            fill(s + off, sizes[k], 0, 1, 20 + k);
            CHECK_CALL(rdx_isend(comm, s + off, sizes[k], RDX_UINT8, peer, &req[k]));
        } else {
            memset(r + off, 0xA5, sizes[k]);
            CHECK_CALL(rdx_irecv(comm, r + off, sizes[k], RDX_UINT8, peer, &req[k]));
        }
        off += sizes[k];
    }
    for (int k = 0; k < 4; k++)
        CHECK_CALL(rdx_wait(req[k]));
    off = 0;
    for (int k = 0; k < 4 && g_rank == 1; k++) {
        check("order", r + off, sizes[k], 0, 20 + k);
        off += sizes[k];
    }
}

static void mixed(rdx_comm_t *comm, unsigned char *s, unsigned char *r)
{
    all_pairs(comm, "mixed-1", 4096, RDX_INT32, 30, s, r);
    int64_t v = g_rank + 1;
    CHECK_CALL(rdx_allreduce(comm, &v, &v, 1, RDX_INT64, RDX_SUM));
    if (v != (int64_t)g_size * (g_size + 1) / 2) {
        fprintf(stderr, "rank %d: FAIL mixed: allreduce gave %lld\n", g_rank, (long long)v);
        g_fail = 1;
    }
    all_pairs(comm, "mixed-2", 100003, RDX_UINT8, 31, s, r);
}

static void errors(rdx_comm_t *comm)
{
    char b[8] = {0};
    rdx_status_t st = rdx_send(comm, b, 8, RDX_UINT8, g_rank);
    if (st != RDX_ERR_UNSUPPORTED || !strstr(rdx_comm_last_error(comm), "itself")) {
        fprintf(stderr, "rank %d: FAIL self send: %s (%s)\n", g_rank, rdx_strerror(st),
                rdx_comm_last_error(comm));
        g_fail = 1;
    }
    st = rdx_recv(comm, b, 8, RDX_UINT8, g_size);
    if (st != RDX_ERR_INVALID_ARG || !strstr(rdx_comm_last_error(comm), "peer")) {
        fprintf(stderr, "rank %d: FAIL bad peer: %s (%s)\n", g_rank, rdx_strerror(st),
                rdx_comm_last_error(comm));
        g_fail = 1;
    }
}

static int mismatch(rdx_comm_t *comm)
{
    int32_t b[101] = {0};
    if (g_rank == 0) {
        rdx_status_t st = rdx_send(comm, b, 100, RDX_INT32, 1);
        printf("rank 0: send of 100 int32: %s\n", rdx_strerror(st));
        fflush(stdout);
        return 0;
    }
    if (g_rank != 1)
        return 0;
    rdx_status_t st = rdx_recv(comm, b, 101, RDX_INT32, 0);
    const char *msg = rdx_comm_last_error(comm);
    if (st != RDX_ERR_MISMATCH || !strstr(msg, "peer 0")) {
        fprintf(stderr, "rank 1: FAIL mismatch: got %s (%s)\n", rdx_strerror(st), msg);
        return 1;
    }
    printf("rank 1: OK: receive of 101 against a send of 100: %s\n", msg);
    fflush(stdout);
    return 0;
}

static int deadlock(rdx_comm_t *comm)
{
    size_t bytes = (size_t)4 << 20;
    unsigned char *b = calloc(bytes, 1);
    if (!b || g_rank > 1)
        return !b;
    rdx_status_t st = rdx_send(comm, b, bytes, RDX_UINT8, 1 - g_rank);
    const char *msg = rdx_comm_last_error(comm);
    int ok = (st == RDX_ERR_TIMEOUT && strstr(msg, "waiting for credit")) ||
             st == RDX_ERR_PEER_LOST;
    printf("rank %d: %s: rdx_send of 4 MiB to a rank that also sends: %s: %s\n", g_rank,
           ok ? "OK" : "FAIL", rdx_strerror(st), msg);
    fflush(stdout);
    free(b);
    return !ok;
}

int main(int argc, char **argv)
{
    int want_mismatch = argc > 1 && !strcmp(argv[1], "--mismatch");
    int want_deadlock = argc > 1 && !strcmp(argv[1], "--deadlock");
    rdx_comm_t *comm = NULL;
    if (rdx_comm_init(&comm, NULL) != RDX_SUCCESS) {
        fprintf(stderr, "p2p_check: rdx_comm_init failed\n");
        return 1;
    }
    g_rank = rdx_comm_rank(comm);
    g_size = rdx_comm_size(comm);
    if (g_size > MAXN) {
        fprintf(stderr, "p2p_check: at most %d ranks\n", MAXN);
        return 2;
    }
    if (want_mismatch || want_deadlock) {
        if (g_size < 2) {
            fprintf(stderr, "p2p_check: %s needs 2 ranks\n", argv[1]);
            return 2;
        }
        int rc = want_deadlock ? deadlock(comm) : mismatch(comm);
        fflush(NULL);
        _exit(rc); /* the communicator is broken on purpose: no closing barrier */
    }
    errors(comm);
    size_t big = (1u << 20) + 3, fifo = (size_t)8 * (256u << 10) + 1;
    size_t cap = (big > fifo ? big : fifo) * (size_t)g_size;
    unsigned char *s = malloc(cap), *r = malloc(cap);
    unsigned char *rs = malloc(cap), *rr = malloc(cap);
    if (!s || !r || !rs || !rr)
        return 2;
    if (g_size > 1) {
        static const struct { size_t bytes; rdx_dtype_t dt; } cases[] = {
            {0, RDX_UINT8}, {1, RDX_UINT8}, {8, RDX_FLOAT64}, {4097, RDX_UINT8},
            {65536, RDX_FLOAT32}, {(size_t)8 * (256u << 10) + 1, RDX_UINT8},
            {(1u << 20) + 3, RDX_INT8},
        };
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
            all_pairs(comm, "all-pairs", cases[k].bytes, cases[k].dt, (int)k, s, r);
        ring(comm, 3, s, r);
        ring(comm, fifo, s, r);
        order(comm, s, r);
        mixed(comm, s, r);
        rdx_mem_t *ms, *mr;
        CHECK_CALL(rdx_mem_register(comm, rs, cap, &ms));
        CHECK_CALL(rdx_mem_register(comm, rr, cap, &mr));
        all_pairs(comm, "registered", big, RDX_UINT8, 40, rs, rr);
        ring(comm, fifo, rs, rr);
        CHECK_CALL(rdx_mem_deregister(comm, ms));
        CHECK_CALL(rdx_mem_deregister(comm, mr));
    }
    if (!g_fail)
        printf("rank %d: OK: p2p_check passed (%d ranks, transport %s)\n", g_rank, g_size,
               rdx_comm_transport(comm));
    CHECK_CALL(rdx_comm_destroy(comm));
    free(s);
    free(r);
    free(rs);
    free(rr);
    return g_fail;
}
