/*
 * Stall reports: telling a mismatch from a hang when nothing moves.
 *
 * Most mismatches show as a message whose fingerprint differs (collectives/coll_util.c).
 * Some never exchange a message at all: with different roots, rank 1 may wait for rank 2's
 * data while rank 2 waits for rank 1's, and no fingerprint is ever compared. So when a
 * rank's wait times out (RDX_TIMEOUT_MS without progress), it first tells the root of the
 * bootstrap star what it waits in: the communicator, the call and its arguments.
 *
 *     rank 1 --STALL "comm c0ffee01, reduce #4 (... root 0)"--> rank 0
 *     rank 2 --STALL "comm c0ffee01, reduce #4 (... root 2)"--> rank 0   (its own timeout:
 *                                                                        collect, compare)
 *     rank 0 ==ABORT MISMATCH "ranks 0, 1 wait in ... root 0; rank 2 waits in ... root 2"==> all
 *
 * The root, when its own wait times out, collects the reports for a short while and
 * compares them. Ranks of one communicator that wait in different calls are a mismatch
 * (RDX_ERR_MISMATCH, naming who waits where), unless both wait in point-to-point calls
 * (a send/recv cycle is a deadlock, not a mismatch). Otherwise the root's timeout stands,
 * and its message says who waits where and which ranks did not report (they are not
 * waiting in rdx: computing, or blocked outside it). PyTorch's NCCL "desync debug" does
 * the same through its store.
 *
 * A rank that sends no report may be waiting in a bootstrap collective instead: rank 0
 * finds its message unread (a BARRIER: the rank is in rdx_comm_destroy, the classic hang of
 * a rank that ran out of batches first). That is a mismatch too, named as such.
 *
 * The ranks' idle clocks start when each entered the stuck call, so reports arrive spread
 * by that skew: the root collects for rdx_comm_stall_wait_ms (a quarter of RDX_TIMEOUT_MS,
 * 0.1-5 s), the others wait twice that for its verdict, then report their own timeout as
 * before; the barrier of rdx_comm_destroy waits that much longer than RDX_TIMEOUT_MS, so
 * the verdict reaches it before its own deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/comm.h"
#include "src/comm_stall.h"
#include "src/error.h"
#include "src/log.h"

#define STALL_WAIT_MIN_MS 100L
#define STALL_WAIT_MAX_MS 5000L

typedef struct stall_rank {
    bool ok;           /* the rank's report parsed */
    char kind;         /* 'c' collective, 'p' rdx_send/rdx_recv, 'b' bootstrap collective */
    bool done, pick;   /* grouping scratch */
    unsigned id;       /* communicator */
    const char *label; /* the call: "reduce #4 (float32 sum count 1000 root 2)" */
} stall_rank_t;

/* Report text: "<comm id, 8 hex> <kind> <call label>", kind c (collective), p (point-to-point)
 * or b (a bootstrap collective: rank 0 found the rank's message waiting, it sent no report). */
static void stall_report(const rdx_comm_t *comm, const char *label, bool p2p, char *buf,
                         size_t len)
{
    snprintf(buf, len, "%08x %c %s", (unsigned)comm->ctx.comm_id, p2p ? 'p' : 'c', label);
}

/* The parts of a report; false if it is not one (a peer's text is checked, not trusted). */
static bool stall_parse(const char *rep, unsigned *comm_id, char *kind, const char **label)
{
    int used = 0;
    if (rep == NULL || sscanf(rep, "%8x %c %n", comm_id, kind, &used) != 2 || used == 0 ||
        (*kind != 'c' && *kind != 'p' && *kind != 'b'))
        return false;
    *label = rep + used;
    return true;
}

/* Whether ranks q and r, waiting in different calls, show a mismatch: in one communicator
 * (unless both are point-to-point: a send/recv cycle is a deadlock), or one of them in a
 * bootstrap collective (rdx_comm_destroy while the others still call collectives). */
static bool stall_differ_is_mismatch(const stall_rank_t *q, const stall_rank_t *r)
{
    if (q->kind == 'b' || r->kind == 'b')
        return true;
    return q->id == r->id && !(q->kind == 'p' && r->kind == 'p');
}

/* Appends "rank 3" or "ranks 0-2, 5, 7-8" (the ranks r with pick[r]) to out at *used. */
static void append_ranks(char *out, size_t len, size_t *used, const stall_rank_t *x, int n)
{
    int k = 0;
    for (int r = 0; r < n; r++)
        k += x[r].pick;
    *used += (size_t)snprintf(out + *used, len - *used, k > 1 ? "ranks " : "rank ");
    for (int r = 0, first = 1; r < n && *used < len; r++) {
        if (!x[r].pick)
            continue;
        int e = r;
        while (e + 1 < n && x[e + 1].pick)
            e++;
        const char *sep = first ? "" : ", ";
        if (e == r)
            *used += (size_t)snprintf(out + *used, len - *used, "%s%d", sep, r);
        else
            *used += (size_t)snprintf(out + *used, len - *used, "%s%d%s%d", sep, r,
                                      e == r + 1 ? ", " : "-", e);
        first = 0;
        r = e;
    }
    if (*used >= len)
        *used = len - 1;
}

/* Appends "; " unless out is still empty. */
static void append_sep(char *out, size_t len, size_t *used)
{
    if (*used > 0 && *used + 1 < len)
        *used += (size_t)snprintf(out + *used, len - *used, "; ");
}

rdx_status_t rdx_stall_verdict(int n, const char *const *reports, char *out, size_t len)
{
    out[0] = 0;
    stall_rank_t *x = calloc((size_t)n, sizeof(*x));
    if (x == NULL)
        return RDX_SUCCESS; /* no verdict: the plain timeout stands */
    bool mismatch = false, split = false, missing = false;
    for (int r = 0; r < n; r++) {
        x[r].ok = stall_parse(reports[r], &x[r].id, &x[r].kind, &x[r].label);
        missing |= !x[r].ok;
        for (int q = 0; q < r && x[r].ok; q++) {
            if (!x[q].ok || strcmp(x[q].label, x[r].label) == 0)
                continue;
            split |= x[q].id != x[r].id && x[q].kind != 'b' && x[r].kind != 'b';
            mismatch |= stall_differ_is_mismatch(&x[q], &x[r]);
        }
    }
    /* One group per distinct report: "ranks 0-1 wait in X; rank 2 waits in Y". */
    size_t used = 0;
    for (int r = 0; r < n; r++) {
        if (!x[r].ok || x[r].done)
            continue;
        int k = 0;
        for (int q = 0; q < n; q++) {
            x[q].pick = q >= r && x[q].ok && !x[q].done && x[q].id == x[r].id &&
                        strcmp(x[q].label, x[r].label) == 0;
            x[q].done |= x[q].pick;
            k += x[q].pick;
        }
        append_sep(out, len, &used);
        append_ranks(out, len, &used, x, n);
        used += (size_t)snprintf(out + used, len - used, " wait%s in %s", k > 1 ? "" : "s",
                                 x[r].label);
        if (split && x[r].kind != 'b' && used < len)
            used += (size_t)snprintf(out + used, len - used, " on communicator %08x", x[r].id);
        if (used >= len)
            used = len - 1;
    }
    if (missing) {
        for (int q = 0; q < n; q++)
            x[q].pick = !x[q].ok;
        append_sep(out, len, &used);
        append_ranks(out, len, &used, x, n);
        snprintf(out + used, len - used, " reported no stall (not waiting in rdx: computing, "
                 "or blocked elsewhere)");
    }
    free(x);
    return mismatch ? RDX_ERR_MISMATCH : RDX_SUCCESS;
}

/* Whether world rank 0 (the bootstrap root) is a member of comm. */
static bool comm_has_root(const rdx_comm_t *comm)
{
    if (comm->ctx.peer_map == NULL)
        return true;
    for (int r = 0; r < comm->size; r++)
        if (comm->ctx.peer_map[r] == 0)
            return true;
    return false;
}

long rdx_comm_stall_wait_ms(const rdx_comm_t *comm)
{
    long w = comm->settings.timeout_ms / 4;
    return w < STALL_WAIT_MIN_MS   ? STALL_WAIT_MIN_MS
           : w > STALL_WAIT_MAX_MS ? STALL_WAIT_MAX_MS
                                   : w;
}

/* The root's side: collect, compare, and either abort the job with the mismatch or leave
 * who-waits-where in hint for its own timeout message. */
/* What a rank without a report is doing, from the bootstrap message rank 0 found waiting. */
static const char *stall_pending_report(const char *pending)
{
    if (pending == NULL)
        return NULL;
    if (strcmp(pending, "barrier") == 0)
        return "00000000 b rdx_comm_destroy (its closing barrier)";
    return strcmp(pending, "allgather") == 0 ? "00000000 b rdx_comm_init (bootstrap allgather)"
                                             : "00000000 b rdx_comm_init (bootstrap bcast)";
}

static rdx_status_t stall_judge(rdx_comm_t *comm, rdx_bootstrap_t *bs, const char *mine,
                                char *hint, size_t hint_len)
{
    int n = rdx_bootstrap_size(bs);
    const char **reports = calloc(2 * (size_t)n, sizeof(*reports)), **pending = reports + n;
    if (reports == NULL)
        return RDX_SUCCESS; /* the plain timeout still stands */
    rdx_status_t st =
        rdx_bootstrap_stall_reports(bs, rdx_comm_stall_wait_ms(comm), reports, pending);
    reports[0] = mine;
    for (int r = 1; r < n; r++)
        if (reports[r] == NULL)
            reports[r] = stall_pending_report(pending[r]);
    char who[RDX_ERRMSG_MAX - 96];
    bool mismatch = st == RDX_SUCCESS &&
                    rdx_stall_verdict(n, reports, who, sizeof(who)) == RDX_ERR_MISMATCH;
    free(reports);
    if (st != RDX_SUCCESS)
        return st;
    if (!mismatch) {
        snprintf(hint, hint_len, "; stall reports: %s", who);
        return RDX_SUCCESS;
    }
    rdx_err(RDX_ERR_MISMATCH, "rank 0: no progress for %.1f s (RDX_TIMEOUT_MS) and the ranks "
            "wait in different calls: %s", (double)comm->settings.timeout_ms / 1e3, who);
    rdx_bootstrap_abort(bs, RDX_ERR_MISMATCH, rdx_err_last());
    return RDX_ERR_MISMATCH;
}

rdx_status_t rdx_comm_stall(rdx_comm_t *comm, const char *label, bool p2p, char *hint,
                            size_t hint_len)
{
    rdx_bootstrap_t *bs = rdx_comm_family_root(comm)->bs;
    hint[0] = 0;
    if (bs == NULL || rdx_bootstrap_size(bs) == 1 || rdx_bootstrap_failed(bs) != RDX_SUCCESS ||
        !comm_has_root(comm))
        return RDX_SUCCESS;
    char mine[RDX_STALL_REPORT_MAX];
    stall_report(comm, label, p2p, mine, sizeof(mine));
    rdx_log_debug("stall: waiting in %s for %ld ms: reporting it", label,
                  comm->settings.timeout_ms);
    if (rdx_bootstrap_rank(bs) == 0)
        return stall_judge(comm, bs, mine, hint, hint_len);
    rdx_bootstrap_report_stall(bs, mine);
    return rdx_bootstrap_verdict(bs, 2 * rdx_comm_stall_wait_ms(comm) + 200);
}
