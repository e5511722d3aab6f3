/*
 * fault_inject: kill (SIGKILL) a random rank at a random step of a loop of collectives and
 * check that every survivor's call returns RDX_ERR_PEER_LOST naming the dead rank, within a
 * bound, without hanging or crashing. Runs on whatever transport the environment selects
 * (RDX_TRANSPORT, RDX_UCX_TLS): tests/fault/CMakeLists.txt registers UCX shared memory and
 * UCX TCP, tests/softroce/verbs-suite.sh runs it over verbs in the soft-RoCE guest.
 *
 *   fault_inject [--trials N] [--ranks N] [--max-step K] [--max-bytes B] [--bound-ms MS]
 *                [--hard-ms MS] [--seed S] [--mode kill|abort] [--split] [--in-init] [-v]
 *
 * Each trial forks --ranks ranks (tests/fault/launch.h). They run the same pseudo-random
 * sequence of collectives: allreduce (blocking; nonblocking completed by rdx_wait or by
 * polling rdx_test) of 8 B to 1 MiB (or
 * --max-bytes, a power of two), and
 * reduce_scatter, allgather, broadcast, reduce and barrier; allreduce results are checked.
 * The parent waits until the victim has completed a random number of collectives in
 * [1, K], waits 0-500 us more (so the kill lands inside a collective as often as between
 * two), sends SIGKILL and notes the time. Each survivor notes when its call returned and
 * what it said, then waits for the parent before rdx_comm_destroy.
 *
 * A trial passes when: the victim died of SIGKILL; every survivor returned
 * RDX_ERR_PEER_LOST whose message names "peer V", at most --bound-ms (default 5000) after
 * the kill, and its next call (a barrier) returned RDX_ERR_PEER_LOST too; nobody hung (--hard-ms after the kill, default 15000, then 20 s for
 * rdx_comm_destroy) or died of a signal; no allreduce result was wrong.
 *
 * --mode abort: the victim calls rdx_comm_abort instead of dying, and must itself see
 * RDX_ERR_PEER_LOST from its next call; survivors' messages must say "aborted by rank V".
 * --split: the loop runs on a communicator split from the world (two colors, rank % 2), so
 * half of the survivors share no communicator with the victim but the world.
 * --in-init: the victim is killed 0-400 ms after the ranks start, mostly inside
 * rdx_comm_init; survivors may fail there (RDX_ERR_PEER_LOST, or when the victim died before
 * it connected, RDX_ERR_TIMEOUT after RDX_CONNECT_TIMEOUT_MS naming it as not connected)
 * or in their first collectives.
 *
 * Last line: "fault_inject: TRANSPORT: P/N trials passed; S survivors; detection median M ms,
 * worst W ms". Exit status 0 iff every trial passed.
 */
#include <getopt.h>
#include <sched.h>
#include <stdbool.h>

#include "rdx/rdx.h"
#include "src/error.h"
#include "tests/fault/launch.h"

#define MAX_BYTES (1u << 20)
#define MSG_MAX 1024

enum { R_RUNNING = 0, R_INIT_FAILED, R_ERROR, R_NO_ERROR, R_WRONG, R_ABORTED };

typedef struct rank_res {
    uint64_t step;       /* collectives completed (atomic) */
    int state;           /* R_*, written once, atomically, after the rest */
    int status;
    int err_step;
    uint64_t t_err_ns;   /* when the failing call returned */
    uint64_t t_abort_ns; /* --mode abort: when the victim called rdx_comm_abort */
    int after_abort;     /* --mode abort: status of the victim's next call */
    int later;           /* status of one more call after the error (must be the same) */
    double destroy_ms;   /* rdx_comm_destroy (survivors, after the release) */
    char msg[MSG_MAX];
} rank_res_t;

typedef struct shared {
    int release;
    int victim, abort_step, split, size_classes;
    uint64_t seed;
    rank_res_t res[FL_MAX_RANKS];
} shared_t;

typedef struct opts {
    int trials, ranks, max_step, verbose, abort_mode, split, size_classes, in_init;
    long bound_ms, hard_ms;
    uint64_t seed;
} opts_t;

static void res_set_state(rank_res_t *me, int state)
{
    __atomic_store_n(&me->state, state, __ATOMIC_RELEASE);
}

static int res_state(const rank_res_t *me) { return __atomic_load_n(&me->state, __ATOMIC_ACQUIRE); }

/* ---- a rank ------------------------------------------------------------------------------ */

/* One collective of the shared sequence; *wrong set when an allreduce result is off. */
static rdx_status_t one_step(rdx_comm_t *comm, uint64_t seed, int classes, int step, float *a,
                             float *b, bool *wrong)
{
    uint64_t s = seed ^ ((uint64_t)step * 0x2545f4914f6cdd1dull);
    int n = rdx_comm_size(comm), me = rdx_comm_rank(comm);
    int kind = (int)(fl_rand(&s) % 100);
    size_t bytes = (size_t)8 << (fl_rand(&s) % (uint64_t)classes); /* 8 B .. --max-bytes */
    size_t count = bytes / sizeof(float);
    int root = (int)(fl_rand(&s) % (uint64_t)n);
    if (kind < 62) {
        for (size_t i = 0; i < count; i += count > 64 ? count / 64 : 1)
            a[i] = (float)(me + 1);
        a[count - 1] = (float)(me + 1);
        rdx_status_t st;
        if (kind < 52) {
            st = rdx_allreduce(comm, a, b, count, RDX_FLOAT32, RDX_SUM);
        } else if (kind < 57) {
            rdx_request_t *req;
            st = rdx_iallreduce(comm, a, b, count, RDX_FLOAT32, RDX_SUM, &req);
            if (st == RDX_SUCCESS)
                st = rdx_wait(req);
        } else {
            /* an application polling with rdx_test (the other wait path) */
            rdx_request_t *req;
            int done = 0;
            st = rdx_iallreduce(comm, a, b, count, RDX_FLOAT32, RDX_SUM, &req);
            if (st == RDX_SUCCESS) {
                while (st == RDX_SUCCESS && !done) {
                    st = rdx_test(req, &done);
                    sched_yield(); /* "compute" between polls; ranks share 2 cores */
                }
                rdx_status_t wst = rdx_wait(req); /* frees it */
                st = st == RDX_SUCCESS ? wst : st;
            }
        }
        float want = (float)(n * (n + 1) / 2);
        if (st == RDX_SUCCESS && (b[0] != want || b[count - 1] != want))
            *wrong = true;
        return st;
    }
    size_t part = count / (size_t)n ? count / (size_t)n : 1;
    if (kind < 70)
        return rdx_reduce_scatter(comm, a, b, part, RDX_FLOAT32, RDX_SUM);
    if (kind < 78)
        return rdx_allgather(comm, a, b, part, RDX_FLOAT32);
    if (kind < 86)
        return rdx_broadcast(comm, a, b, count, RDX_FLOAT32, root);
    if (kind < 94)
        return rdx_reduce(comm, a, b, count, RDX_FLOAT32, RDX_MAX, root);
    return rdx_barrier(comm);
}

static void res_error(rank_res_t *me, rdx_comm_t *comm, rdx_status_t st, int step, int state)
{
    me->t_err_ns = fl_now_ns();
    me->status = st;
    me->err_step = step;
    snprintf(me->msg, sizeof(me->msg), "%s", rdx_comm_last_error(comm));
    res_set_state(me, state);
}

/* The victim in --mode abort: gives up, then checks that its own next call fails too. */
static void victim_abort(rank_res_t *me, rdx_comm_t *comm, float *a, float *b)
{
    me->t_abort_ns = fl_now_ns();
    rdx_comm_abort(comm);
    me->after_abort = rdx_allreduce(comm, a, b, 1, RDX_FLOAT32, RDX_SUM);
    snprintf(me->msg, sizeof(me->msg), "%s", rdx_comm_last_error(comm));
    res_set_state(me, R_ABORTED);
}

static void wait_release(shared_t *sh)
{
    uint64_t end = fl_now_ns() + 120ull * 1000000000ull;
    while (!__atomic_load_n(&sh->release, __ATOMIC_ACQUIRE) && fl_now_ns() < end)
        fl_sleep_us(1000);
}

static int rank_main(int rank, void *arg)
{
    shared_t *sh = arg;
    rank_res_t *me = &sh->res[rank];
    rdx_comm_t *world = NULL, *comm;
    rdx_status_t st = rdx_comm_init(&world, NULL);
    if (st == RDX_SUCCESS && sh->split) {
        st = rdx_comm_split(world, rank % 2, 0, &comm);
    } else {
        comm = world;
    }
    if (st != RDX_SUCCESS) {
        me->t_err_ns = fl_now_ns();
        me->status = st;
        me->later = st;
        snprintf(me->msg, sizeof(me->msg), "init: %s: %s", rdx_strerror(st),
                 world ? rdx_comm_last_error(world) : rdx_err_last());
        res_set_state(me, R_INIT_FAILED);
        wait_release(sh);
        return 0; /* the state says it; the exit status is for crashes */
    }
    size_t cap = (size_t)MAX_BYTES * (size_t)rdx_comm_size(comm) / sizeof(float) + 16;
    float *a = calloc(cap, sizeof(float)), *b = calloc(cap, sizeof(float));
    bool wrong = false;
    int step;
    for (step = 0; step < 1000000; step++) {
        if (rank == sh->victim && step == sh->abort_step) {
            victim_abort(me, comm, a, b);
            break;
        }
        st = one_step(comm, sh->seed, sh->size_classes, step, a, b, &wrong);
        if (st != RDX_SUCCESS || wrong) {
            me->later = rdx_barrier(comm); /* later calls fail the same way, at once */
            res_error(me, comm, st, step, wrong ? R_WRONG : R_ERROR);
            break;
        }
        __atomic_store_n(&me->step, (uint64_t)step + 1, __ATOMIC_RELEASE);
    }
    if (res_state(me) == R_RUNNING)
        res_set_state(me, R_NO_ERROR);
    wait_release(sh);
    uint64_t t0 = fl_now_ns();
    if (comm != world)
        rdx_comm_destroy(comm);
    rdx_comm_destroy(world);
    me->destroy_ms = (double)(fl_now_ns() - t0) / 1e6;
    free(a);
    free(b);
    return 0;
}

/* ---- the parent ------------------------------------------------------------------------- */

typedef struct tally {
    int passed;
    double *det_ms;
    int ndet, cap;
    double worst_destroy_ms;
} tally_t;

static void tally_add(tally_t *t, double ms)
{
    if (t->ndet == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->det_ms = realloc(t->det_ms, (size_t)t->cap * sizeof(double));
    }
    t->det_ms[t->ndet++] = ms;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Waits until the victim has done `step` collectives (or stopped); false on a stall. */
static bool wait_victim(const shared_t *sh, int victim, uint64_t step, long limit_ms)
{
    uint64_t end = fl_now_ns() + (uint64_t)limit_ms * 1000000ull;
    while (fl_now_ns() < end) {
        if (__atomic_load_n(&sh->res[victim].step, __ATOMIC_ACQUIRE) >= step)
            return true;
        if (res_state(&sh->res[victim]) != R_RUNNING)
            return false;
        fl_sleep_us(100);
    }
    return false;
}

static void wait_survivors(const shared_t *sh, int n, int victim, uint64_t until)
{
    for (;;) {
        int running = 0;
        for (int r = 0; r < n; r++)
            running += r != victim && res_state(&sh->res[r]) == R_RUNNING;
        if (!running || fl_now_ns() > until)
            return;
        fl_sleep_us(500);
    }
}

/* A rendezvous verdict naming rank v: "ranks not connected: 1, 3" and the like. */
static bool init_names(const char *msg, int v)
{
    const char *s = strstr(msg, "not connected: ");
    if (!s)
        s = strstr(msg, "not arrived: ");
    for (s = s ? strchr(s, ':') : NULL; s && *s; s++) {
        if (*s >= '0' && *s <= '9') {
            char *end;
            long r = strtol(s, &end, 10);
            if (r == v)
                return true;
            s = end - 1;
        } else if (*s != ' ' && *s != ',' && *s != ':') {
            break;
        }
    }
    return false;
}

/* Checks one survivor; prints why it failed. Adds its detection time to t. */
static bool check_survivor(const opts_t *o, const shared_t *sh, const fl_job_t *job, int r,
                           uint64_t t_kill, tally_t *t, char *line, size_t len)
{
    const rank_res_t *x = &sh->res[r];
    char how[96];
    int v = sh->victim, state = res_state(x);
    double ms = ((double)x->t_err_ns - (double)t_kill) / 1e6;
    fl_how(job, r, how, sizeof(how));
    bool init_ok = o->in_init && state == R_INIT_FAILED;
    if (state != R_ERROR && !init_ok) {
        snprintf(line, len, "rank %d: %s (%s): %s", r,
                 state == R_RUNNING ? "no error returned before the hard deadline"
                 : state == R_WRONG ? "wrong allreduce result"
                 : state == R_NO_ERROR ? "loop ended without an error"
                                       : "init failed", how, x->msg);
        return false;
    }
    if (job->hung[r] || !WIFEXITED(job->wstatus[r]) || WEXITSTATUS(job->wstatus[r]) != 0) {
        snprintf(line, len, "rank %d: returned the error but then %s (in rdx_comm_destroy?)", r,
                 how);
        return false;
    }
    bool names = o->abort_mode ? strstr(x->msg, "aborted by rank") && fl_names_peer(x->msg, v)
                               : fl_names_peer(x->msg, v) || (init_ok && init_names(x->msg, v));
    /* Killed inside rdx_comm_init: before it connected, rank 0 cannot tell a dead rank from
     * a late one, so the rendezvous times out (RDX_CONNECT_TIMEOUT_MS) naming the rank. */
    bool status_ok = x->status == RDX_ERR_PEER_LOST ||
                     (init_ok && (x->status == RDX_ERR_TIMEOUT || x->status == RDX_ERR_BOOTSTRAP));
    if (!status_ok || x->later != x->status || !names || ms < 0 || ms > (double)o->bound_ms) {
        snprintf(line, len, "rank %d: %s after %.1f ms at step %d, next call %s (want peer lost "
                 "naming peer %d within %ld ms, twice): %s", r,
                 rdx_strerror((rdx_status_t)x->status), ms, x->err_step,
                 rdx_strerror((rdx_status_t)x->later), v, o->bound_ms, x->msg);
        return false;
    }
    tally_add(t, ms);
    if (x->destroy_ms > t->worst_destroy_ms)
        t->worst_destroy_ms = x->destroy_ms;
    snprintf(line, len, "rank %d %.1f ms", r, ms);
    return true;
}

static bool check_victim(const opts_t *o, const shared_t *sh, const fl_job_t *job, char *line,
                         size_t len)
{
    int v = sh->victim;
    const rank_res_t *x = &sh->res[v];
    char how[96];
    fl_how(job, v, how, sizeof(how));
    if (!o->abort_mode) {
        bool ok = WIFSIGNALED(job->wstatus[v]) && WTERMSIG(job->wstatus[v]) == SIGKILL;
        if (!ok)
            snprintf(line, len, "victim rank %d: %s (expected SIGKILL)", v, how);
        return ok;
    }
    bool ok = res_state(x) == R_ABORTED && x->after_abort == RDX_ERR_PEER_LOST &&
              !job->hung[v] && WIFEXITED(job->wstatus[v]) && WEXITSTATUS(job->wstatus[v]) == 0;
    if (!ok)
        snprintf(line, len, "victim rank %d (aborted): next call %s, %s: %s", v,
                 rdx_strerror((rdx_status_t)x->after_abort), how, x->msg);
    return ok;
}

static bool run_trial(const opts_t *o, shared_t *sh, int trial, tally_t *t)
{
    uint64_t s = o->seed ^ ((uint64_t)(trial + 1) * 0x9e3779b97f4a7c15ull);
    int n = o->ranks;
    memset(sh, 0, sizeof(*sh));
    sh->seed = fl_rand(&s);
    sh->victim = (int)(fl_rand(&s) % (uint64_t)n);
    sh->split = o->split;
    sh->size_classes = o->size_classes;
    int kill_step = 1 + (int)(fl_rand(&s) % (uint64_t)o->max_step);
    long delay_us = (long)(fl_rand(&s) % 500);
    sh->abort_step = o->abort_mode ? kill_step : -1;
    fl_job_t job;
    fl_spawn(&job, n, rank_main, sh);

    bool ok = true;
    char line[MSG_MAX + 256];
    uint64_t t_kill = 0;
    if (o->in_init) {
        fl_sleep_us((long)(fl_rand(&s) % 400000)); /* somewhere in rdx_comm_init */
        t_kill = fl_now_ns();
        kill(job.pid[sh->victim], SIGKILL);
    } else if (o->abort_mode) {
        ok = wait_victim(sh, sh->victim, UINT64_MAX, 60000) ||
             res_state(&sh->res[sh->victim]) == R_ABORTED;
        t_kill = sh->res[sh->victim].t_abort_ns;
    } else if (wait_victim(sh, sh->victim, (uint64_t)kill_step, 60000)) {
        fl_sleep_us(delay_us);
        t_kill = fl_now_ns();
        kill(job.pid[sh->victim], SIGKILL);
    } else {
        ok = false;
    }
    if (!ok) {
        int v = sh->victim;
        printf("trial %d: FAIL: victim rank %d never reached step %d (state %d, step %llu): %s\n",
               trial, v, kill_step, res_state(&sh->res[v]),
               (unsigned long long)sh->res[v].step, sh->res[v].msg);
        __atomic_store_n(&sh->release, 1, __ATOMIC_RELEASE);
        fl_wait(&job, fl_now_ns() + 20000000000ull);
        return false;
    }
    wait_survivors(sh, n, sh->victim, t_kill + (uint64_t)o->hard_ms * 1000000ull);
    __atomic_store_n(&sh->release, 1, __ATOMIC_RELEASE);
    fl_wait(&job, fl_now_ns() + 20000000000ull);

    char summary[512] = "";
    size_t used = 0;
    int ndet_before = t->ndet;
    if (!check_victim(o, sh, &job, line, sizeof(line))) {
        printf("trial %d: %s\n", trial, line);
        ok = false;
    }
    for (int r = 0; r < n; r++) {
        if (r == sh->victim)
            continue;
        if (!check_survivor(o, sh, &job, r, t_kill, t, line, sizeof(line))) {
            printf("trial %d: FAIL: %s\n", trial, line);
            ok = false;
        } else if (used < sizeof(summary) - 32) {
            used += (size_t)snprintf(summary + used, sizeof(summary) - used, "%s%s",
                                     used ? ", " : "", line);
        }
    }
    if (!ok)
        t->ndet = ndet_before; /* only passing trials count towards the figures */
    if (ok || o->verbose)
        printf("trial %d: %s: n=%d, %s rank %d %s %d%s: %s\n", trial, ok ? "pass" : "FAIL", n,
               o->abort_mode ? "abort by" : "killed", sh->victim,
               o->in_init ? "in rdx_comm_init, survivors' states" : "at step",
               o->in_init ? sh->res[(sh->victim + 1) % n].state : kill_step,
               o->abort_mode || o->in_init ? "" : " (+0-500 us)", summary);
    fflush(stdout);
    return ok;
}

static void usage(void)
{
    fprintf(stderr, "usage: fault_inject [--trials N] [--ranks N] [--max-step K] [--max-bytes B] "
                    "[--bound-ms MS] [--hard-ms MS] [--seed S] [--mode kill|abort] [--split] "
                    "[--in-init] [-v]\n");
    exit(2);
}

static void parse(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        {"trials", 1, 0, 't'}, {"ranks", 1, 0, 'n'},  {"max-step", 1, 0, 'k'},
        {"bound-ms", 1, 0, 'b'}, {"hard-ms", 1, 0, 'H'}, {"seed", 1, 0, 's'},
        {"mode", 1, 0, 'm'},   {"split", 0, 0, 'S'},  {"verbose", 0, 0, 'v'},
        {"max-bytes", 1, 0, 'B'}, {"in-init", 0, 0, 'I'}, {0, 0, 0, 0}};
    long max_bytes = MAX_BYTES;
    *o = (opts_t){.trials = 50, .ranks = 4, .max_step = 150, .bound_ms = 5000,
                  .hard_ms = 15000, .seed = (uint64_t)time(NULL)};
    int c;
    while ((c = getopt_long(argc, argv, "v", lo, NULL)) != -1) {
        switch (c) {
        case 't': o->trials = atoi(optarg); break;
        case 'n': o->ranks = atoi(optarg); break;
        case 'k': o->max_step = atoi(optarg); break;
        case 'b': o->bound_ms = atol(optarg); break;
        case 'H': o->hard_ms = atol(optarg); break;
        case 's': o->seed = strtoull(optarg, NULL, 0); break;
        case 'm': o->abort_mode = strcmp(optarg, "abort") == 0; break;
        case 'S': o->split = 1; break;
        case 'v': o->verbose = 1; break;
        case 'B': max_bytes = atol(optarg); break;
        case 'I': o->in_init = 1; break;
        default: usage();
        }
    }
    for (o->size_classes = 1; o->size_classes < 18 && (8L << o->size_classes) <= max_bytes;)
        o->size_classes++;
    if (max_bytes < 8 || max_bytes > (long)MAX_BYTES || o->trials < 1 || o->ranks < 2 || o->ranks > FL_MAX_RANKS || o->max_step < 1 ||
        (o->split && o->ranks < 4))
        usage();
}

int main(int argc, char **argv)
{
    opts_t o;
    parse(argc, argv, &o);
    const char *tp = getenv("RDX_TRANSPORT"), *tls = getenv("RDX_UCX_TLS");
    char label[128];
    snprintf(label, sizeof(label), "%s%s%s", tp && *tp ? tp : "ucx",
             tls && *tls ? " RDX_UCX_TLS=" : "", tls && *tls ? tls : "");
    printf("fault_inject: %s, %d trials, %d ranks, %s at step 1..%d, 8..%ld B, bound %ld ms, "
           "seed %llu%s\n", label, o.trials, o.ranks, o.abort_mode ? "rdx_comm_abort" : "SIGKILL",
           o.max_step, 8L << (o.size_classes - 1), o.bound_ms, (unsigned long long)o.seed,
           o.split ? ", on a split communicator" : "");
    shared_t *sh = fl_shared(sizeof(shared_t));
    tally_t t = {0};
    uint64_t t0 = fl_now_ns();
    for (int i = 0; i < o.trials; i++)
        t.passed += run_trial(&o, sh, i, &t);
    double med = 0, worst = 0;
    if (t.ndet) {
        qsort(t.det_ms, (size_t)t.ndet, sizeof(double), cmp_double);
        med = t.det_ms[t.ndet / 2];
        worst = t.det_ms[t.ndet - 1];
    }
    printf("fault_inject: %s%s%s: %d/%d trials passed; %d survivors; detection median %.1f ms, "
           "worst %.1f ms; survivors' rdx_comm_destroy worst %.1f ms; %.1f s\n", label,
           o.abort_mode ? " (abort)" : "", o.split ? " (split)" : "", t.passed, o.trials, t.ndet,
           med, worst, t.worst_destroy_ms, (double)(fl_now_ns() - t0) / 1e9);
    free(t.det_ms);
    return t.passed == o.trials ? 0 : 1;
}
