/*
 * Bootstrap: wire parsing, authentication verdicts, and real rendezvous between forked
 * processes on 127.0.0.1 (genuine ranks, a wrong-key rank, strangers, a fake root, dead
 * and late ranks). Results come back through a shared anonymous mapping so the parent
 * can assert on statuses, messages and timings.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/bootstrap.h"
#include "src/bootstrap_wire.h"
#include "src/error.h"
#include "src/net.h"

#define MAX_PROCS 16
#define KEY "test-job-key-0123456789abcdef"

/* ---- wire format -------------------------------------------------------------------------- */

Test(bootstrap_wire, header_roundtrip_is_big_endian, .timeout = 5)
{
    uint8_t b[RDX_BS_HDR_LEN];
    rdx_bs_hdr_t h;
    rdx_bs_hdr_encode(RDX_BS_MSG_ALLGATHER, 0x00a20304u, b);
    const uint8_t want[RDX_BS_HDR_LEN] = {'R', 'D', 'X', 'B', 0, 1, 0, RDX_BS_MSG_ALLGATHER,
                                          0,   0xa2, 3, 4};
    cr_assert(memcmp(b, want, sizeof(want)) == 0);
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_OK);
    cr_assert_eq(h.magic, RDX_BS_MAGIC);
    cr_assert_eq(h.version, RDX_BS_VERSION);
    cr_assert_eq(h.type, RDX_BS_MSG_ALLGATHER);
    cr_assert_eq(h.len, 0x00a20304u);
}

Test(bootstrap_wire, header_rejects, .timeout = 5)
{
    uint8_t b[RDX_BS_HDR_LEN];
    rdx_bs_hdr_t h;

    rdx_bs_hdr_encode(RDX_BS_MSG_HELLO, 32, b);
    b[0] = 'X';
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_BAD_MAGIC);
    /* Garbage is recognised from its first four bytes, before a full header arrives. */
    cr_assert_eq(rdx_bs_hdr_decode(b, 4, &h), RDX_BS_WIRE_BAD_MAGIC);

    rdx_bs_hdr_encode(RDX_BS_MSG_HELLO, 32, b);
    b[5] = 2;
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_BAD_VERSION);
    cr_assert_eq(h.version, 2);

    rdx_bs_hdr_encode(0, 32, b);
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_BAD_TYPE);
    rdx_bs_hdr_encode(RDX_BS_MSG_LAST + 1, 32, b);
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_BAD_TYPE);

    rdx_bs_hdr_encode(RDX_BS_MSG_BCAST, RDX_BOOTSTRAP_MAX_PAYLOAD, b);
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_OK);
    rdx_bs_hdr_encode(RDX_BS_MSG_BCAST, RDX_BOOTSTRAP_MAX_PAYLOAD + 1, b);
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_TOO_LONG);
    rdx_bs_hdr_encode(RDX_BS_MSG_BCAST, 0xffffffffu, b);
    cr_assert_eq(rdx_bs_hdr_decode(b, sizeof(b), &h), RDX_BS_WIRE_TOO_LONG);

    rdx_bs_hdr_encode(RDX_BS_MSG_BCAST, 8, b);
    for (size_t n = 0; n < RDX_BS_HDR_LEN; n++)
        cr_assert_eq(rdx_bs_hdr_decode(b, n, &h), RDX_BS_WIRE_TRUNCATED, "n=%zu", n);
    cr_assert_eq(rdx_bs_hdr_decode(NULL, 0, &h), RDX_BS_WIRE_TRUNCATED);
}

Test(bootstrap_wire, header_parser_survives_every_byte_value, .timeout = 10)
{
    /* Cheap stand-in for a fuzzer: mutate each byte of a valid header through 0..255. */
    uint8_t b[RDX_BS_HDR_LEN];
    rdx_bs_hdr_t h;
    int ok = 0;
    for (size_t pos = 0; pos < RDX_BS_HDR_LEN; pos++)
        for (int v = 0; v < 256; v++) {
            rdx_bs_hdr_encode(RDX_BS_MSG_READY, 0, b);
            b[pos] = (uint8_t)v;
            rdx_bs_wire_status_t st = rdx_bs_hdr_decode(b, sizeof(b), &h);
            cr_assert(st <= RDX_BS_WIRE_TOO_LONG);
            cr_assert(strlen(rdx_bs_wire_strerror(st)) > 0);
            ok += st == RDX_BS_WIRE_OK;
            if (st == RDX_BS_WIRE_OK)
                cr_assert(h.len <= RDX_BOOTSTRAP_MAX_PAYLOAD);
        }
    /* Accepted: magic, version and the type's high byte only unchanged (7 positions x 1
     * value); the type's low byte 1..LAST; len byte 8 only 0 or 1 (<= 16 MiB); bytes 9..11
     * anything. */
    cr_assert_eq(ok, 7 + RDX_BS_MSG_LAST + 2 + 3 * 256);
}

/* ---- authentication ----------------------------------------------------------------------- */

static void make_auth(const char *key, const uint8_t *snonce, uint32_t rank, uint32_t size,
                      rdx_bs_auth_t *a)
{
    memset(a, 0, sizeof(*a));
    a->rank = rank;
    a->size = size;
    for (int i = 0; i < RDX_BS_NONCE_LEN; i++)
        a->nonce[i] = (uint8_t)(i * 7 + rank);
    rdx_bs_auth_mac(key, strlen(key), snonce, a->nonce, rank, size, a->mac);
}

Test(bootstrap_auth, verdicts, .timeout = 5)
{
    uint8_t snonce[RDX_BS_NONCE_LEN];
    uint8_t taken[4] = {0};
    rdx_bs_auth_t a, b;
    for (int i = 0; i < RDX_BS_NONCE_LEN; i++)
        snonce[i] = (uint8_t)(0xa5 ^ i);

    make_auth(KEY, snonce, 1, 4, &a);
    cr_assert_eq(rdx_bs_auth_verify(&a, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_ACCEPT);

    /* Wire encoding round-trips and keeps the MAC valid. */
    uint8_t wire[RDX_BS_AUTH_LEN];
    rdx_bs_auth_encode(&a, wire);
    rdx_bs_auth_decode(wire, &b);
    cr_assert_eq(rdx_bs_auth_verify(&b, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_ACCEPT);

    cr_assert_eq(rdx_bs_auth_verify(&a, "other", 5, snonce, 4, taken), RDX_BS_AUTH_BAD_MAC);
    b = a;
    b.rank = 2; /* tampered after signing */
    cr_assert_eq(rdx_bs_auth_verify(&b, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_BAD_MAC);
    b = a;
    b.mac[31] ^= 1;
    cr_assert_eq(rdx_bs_auth_verify(&b, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_BAD_MAC);
    uint8_t snonce2[RDX_BS_NONCE_LEN];
    memcpy(snonce2, snonce, sizeof(snonce2));
    snonce2[0] ^= 1; /* a replay against another challenge */
    cr_assert_eq(rdx_bs_auth_verify(&a, KEY, strlen(KEY), snonce2, 4, taken), RDX_BS_AUTH_BAD_MAC);

    make_auth(KEY, snonce, 1, 3, &b);
    cr_assert_eq(rdx_bs_auth_verify(&b, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_BAD_SIZE);
    make_auth(KEY, snonce, 0, 4, &b);
    cr_assert_eq(rdx_bs_auth_verify(&b, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_BAD_RANK);
    make_auth(KEY, snonce, 4, 4, &b);
    cr_assert_eq(rdx_bs_auth_verify(&b, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_BAD_RANK);
    taken[1] = 1;
    cr_assert_eq(rdx_bs_auth_verify(&a, KEY, strlen(KEY), snonce, 4, taken), RDX_BS_AUTH_DUP_RANK);

    /* No job key configured: the protocol still runs, with an empty HMAC key. */
    taken[1] = 0;
    make_auth("", snonce, 3, 4, &b);
    cr_assert_eq(rdx_bs_auth_verify(&b, "", 0, snonce, 4, taken), RDX_BS_AUTH_ACCEPT);
}

Test(bootstrap_auth, root_proof_differs_from_client_proof, .timeout = 5)
{
    uint8_t sn[RDX_BS_NONCE_LEN] = {1}, cn[RDX_BS_NONCE_LEN] = {2};
    uint8_t r1[RDX_BS_MAC_LEN], r2[RDX_BS_MAC_LEN], c[RDX_BS_MAC_LEN];
    rdx_bs_root_mac(KEY, strlen(KEY), cn, sn, r1);
    rdx_bs_root_mac("nope", 4, cn, sn, r2);
    rdx_bs_auth_mac(KEY, strlen(KEY), sn, cn, 1, 2, c);
    cr_assert(memcmp(r1, r2, RDX_BS_MAC_LEN) != 0);
    cr_assert(memcmp(r1, c, RDX_BS_MAC_LEN) != 0);
}

/* ---- multi-process harness ---------------------------------------------------------------- */

typedef struct result {
    int st;
    int st2;
    long create_ms; /* create() duration */
    long end_ms;    /* rdx_net_now_ms() when the rank finished */
    int data_ok;
    char msg[RDX_ERRMSG_MAX];
} result_t;

typedef struct shared {
    result_t res[MAX_PROCS];
    long stranger_connected_ms[MAX_PROCS];
    long stranger_closed_ms[MAX_PROCS]; /* when root closed the stranger, 0 if never */
    int strangers_connected;
} shared_t;

typedef struct job {
    int size;
    int port;
    char addr[64];
    long connect_ms;
    long timeout_ms;
    shared_t *sh;
    pid_t pids[MAX_PROCS];
    int npids;
} job_t;

typedef void (*rank_fn_t)(job_t *job, int rank, result_t *res);

static void job_init(job_t *job, int size, long connect_ms, long timeout_ms)
{
    memset(job, 0, sizeof(*job));
    job->size = size;
    job->port = rdx_net_free_port("127.0.0.1");
    cr_assert(job->port > 0);
    snprintf(job->addr, sizeof(job->addr), "127.0.0.1:%d", job->port);
    job->connect_ms = connect_ms;
    job->timeout_ms = timeout_ms;
    job->sh = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    cr_assert(job->sh != MAP_FAILED);
    memset(job->sh, 0, sizeof(shared_t));
    for (int i = 0; i < MAX_PROCS; i++)
        job->sh->res[i].st = -1;
}

static void job_spawn(job_t *job, rank_fn_t fn, int rank)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fn(job, rank, &job->sh->res[rank]);
        job->sh->res[rank].end_ms = rdx_net_now_ms();
        _exit(0);
    }
    job->pids[job->npids++] = pid;
}

/* Waits for every child up to limit_ms, then kills the rest; fails the test if any child
 * had to be killed or crashed. */
static void job_wait(job_t *job, long limit_ms)
{
    long deadline = rdx_net_now_ms() + limit_ms;
    int left = job->npids;
    while (left > 0 && rdx_net_now_ms() < deadline) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d died (status 0x%x)",
                      (int)pid, status);
            for (int i = 0; i < job->npids; i++)
                if (job->pids[i] == pid)
                    job->pids[i] = 0;
            left--;
        } else {
            usleep(5000);
        }
    }
    for (int i = 0; i < job->npids; i++)
        if (job->pids[i] > 0) {
            kill(job->pids[i], SIGKILL);
            waitpid(job->pids[i], NULL, 0);
            cr_expect(0, "child %d still running after %ld ms", (int)job->pids[i], limit_ms);
        }
}

static rdx_bootstrap_params_t params_for(const job_t *job, int rank, const char *key)
{
    return (rdx_bootstrap_params_t){.rank = rank, .size = job->size, .addr = job->addr,
                                    .job_key = key, .ifname = "",
                                    .connect_timeout_ms = job->connect_ms,
                                    .timeout_ms = job->timeout_ms};
}

static void record(result_t *res, rdx_status_t st)
{
    res->st = st;
    snprintf(res->msg, sizeof(res->msg), "%s", st == RDX_SUCCESS ? "" : rdx_err_last());
}

/* Creates the bootstrap, timing it. NULL on failure (recorded in res). */
static rdx_bootstrap_t *create_rank(job_t *job, int rank, const char *key, result_t *res)
{
    rdx_bootstrap_params_t p = params_for(job, rank, key);
    rdx_bootstrap_t *bs = NULL;
    long t0 = rdx_net_now_ms();
    rdx_status_t st = rdx_bootstrap_create(&p, &bs);
    res->create_ms = rdx_net_now_ms() - t0;
    record(res, st);
    return bs;
}

static uint8_t pattern(int rank, size_t i, int salt) { return (uint8_t)(rank * 31 + i * 7 + salt); }

/* allgather (small, large, in place), bcast from every root, barrier: all checked. */
static int exercise_collectives(rdx_bootstrap_t *bs, rdx_status_t *st)
{
    int rank = rdx_bootstrap_rank(bs), size = rdx_bootstrap_size(bs);
    const size_t lens[] = {1, 100, 1 << 20};
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t len = lens[k];
        uint8_t *mine = malloc(len), *all = malloc(len * (size_t)size);
        for (size_t i = 0; i < len; i++)
            mine[i] = pattern(rank, i, (int)k);
        *st = rdx_bootstrap_allgather(bs, mine, len, all);
        if (*st != RDX_SUCCESS)
            return 0;
        for (int r = 0; r < size; r++)
            for (size_t i = 0; i < len; i++)
                if (all[(size_t)r * len + i] != pattern(r, i, (int)k))
                    return 0;
        /* In place: my block already sits in all. */
        memset(all, 0, len * (size_t)size);
        memcpy(all + (size_t)rank * len, mine, len);
        *st = rdx_bootstrap_allgather(bs, all + (size_t)rank * len, len, all);
        if (*st != RDX_SUCCESS)
            return 0;
        for (int r = 0; r < size; r++)
            if (all[(size_t)r * len + len - 1] != pattern(r, len - 1, (int)k))
                return 0;
        free(mine);
        free(all);
    }
    for (int root = 0; root < size; root++) {
        uint8_t buf[300];
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = rank == root ? pattern(root, i, 99) : 0;
        *st = rdx_bootstrap_bcast(bs, buf, sizeof(buf), root);
        if (*st != RDX_SUCCESS)
            return 0;
        for (size_t i = 0; i < sizeof(buf); i++)
            if (buf[i] != pattern(root, i, 99))
                return 0;
    }
    for (int i = 0; i < 3; i++) {
        *st = rdx_bootstrap_barrier(bs);
        if (*st != RDX_SUCCESS)
            return 0;
    }
    return 1;
}

static void rank_genuine(job_t *job, int rank, result_t *res)
{
    rdx_bootstrap_t *bs = create_rank(job, rank, KEY, res);
    if (bs == NULL)
        return;
    rdx_status_t st = RDX_SUCCESS;
    res->data_ok = exercise_collectives(bs, &st);
    res->st2 = st;
    if (st != RDX_SUCCESS)
        snprintf(res->msg, sizeof(res->msg), "%s", rdx_err_last());
    rdx_bootstrap_destroy(bs);
}

static void assert_all_ok(const job_t *job)
{
    for (int r = 0; r < job->size; r++) {
        const result_t *res = &job->sh->res[r];
        cr_assert_eq(res->st, RDX_SUCCESS, "rank %d create: %d %s", r, res->st, res->msg);
        cr_assert_eq(res->st2, RDX_SUCCESS, "rank %d collectives: %d %s", r, res->st2, res->msg);
        cr_assert(res->data_ok, "rank %d: wrong collective results", r);
    }
}

static void run_genuine(int size)
{
    job_t job;
    job_init(&job, size, 5000, 5000);
    /* Non-roots first: they must retry until rank 0 listens. */
    for (int r = size - 1; r >= 0; r--) {
        job_spawn(&job, rank_genuine, r);
        if (r == 1)
            usleep(50000);
    }
    job_wait(&job, 15000);
    assert_all_ok(&job);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

Test(bootstrap, one_rank_uses_no_sockets, .timeout = 5)
{
    rdx_bootstrap_params_t p = {.rank = 0, .size = 1, .addr = NULL, .job_key = KEY,
                                .connect_timeout_ms = 100, .timeout_ms = 100};
    rdx_bootstrap_t *bs = NULL;
    int before = count_fds();
    cr_assert_eq(rdx_bootstrap_create(&p, &bs), RDX_SUCCESS, "%s", rdx_err_last());
    cr_assert_eq(count_fds(), before);
    rdx_status_t st;
    cr_assert(exercise_collectives(bs, &st), "status %d %s", st, rdx_err_last());
    cr_assert_eq(rdx_bootstrap_size(bs), 1);
    rdx_bootstrap_destroy(bs);
}

Test(bootstrap, two_ranks, .timeout = 20) { run_genuine(2); }
Test(bootstrap, four_ranks, .timeout = 20) { run_genuine(4); }

Test(bootstrap, bad_arguments, .timeout = 5)
{
    rdx_bootstrap_t *bs = NULL;
    rdx_bootstrap_params_t p = {.rank = 2, .size = 2, .addr = "127.0.0.1:1"};
    cr_assert_eq(rdx_bootstrap_create(&p, &bs), RDX_ERR_INVALID_ARG);
    cr_assert_eq(rdx_bootstrap_create(NULL, &bs), RDX_ERR_INVALID_ARG);
    const char *bad[] = {"nonsense", "host:", "host:99999", "host:0", "::1:5000", "[::1]5000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p = (rdx_bootstrap_params_t){.rank = 1, .size = 2, .addr = bad[i],
                                     .connect_timeout_ms = 100};
        cr_assert_eq(rdx_bootstrap_create(&p, &bs), RDX_ERR_CONFIG, "%s", bad[i]);
        cr_assert(strstr(rdx_err_last(), bad[i]) != NULL, "%s", rdx_err_last());
    }
    cr_assert_null(bs);
}

Test(bootstrap, unreachable_root, .timeout = 5)
{
    int port = rdx_net_free_port("127.0.0.1");
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    rdx_bootstrap_params_t p = {.rank = 1, .size = 2, .addr = addr, .job_key = KEY,
                                .connect_timeout_ms = 400, .timeout_ms = 400};
    rdx_bootstrap_t *bs = NULL;
    long t0 = rdx_net_now_ms();
    cr_assert_eq(rdx_bootstrap_create(&p, &bs), RDX_ERR_BOOTSTRAP);
    long took = rdx_net_now_ms() - t0;
    const char *m = rdx_err_last();
    cr_assert(took >= 400 && took < 1500, "took %ld ms", took);
    cr_assert(strstr(m, "rank 1: bootstrap connect to peer 0 (rendezvous at") && strstr(m, addr) &&
                  strstr(m, "Connection refused") && strstr(m, "attempts in"),
              "%s", m);
    /* 10, 20, 40, 80, 160 ms...: backoff keeps attempts few but not one. */
    int attempts = 0;
    const char *a = strstr(m, "after ");
    cr_assert(a && sscanf(a, "after %d attempts", &attempts) == 1, "%s", m);
    cr_assert(attempts >= 3 && attempts <= 10, "%d attempts", attempts);
}

Test(bootstrap, root_on_foreign_address_is_refused, .timeout = 5)
{
    /* 192.0.2.1 (TEST-NET-1) is never an address of this machine. */
    rdx_bootstrap_params_t p = {.rank = 0, .size = 2, .addr = "192.0.2.1:5000", .job_key = KEY,
                                .ifname = "", .connect_timeout_ms = 200, .timeout_ms = 200};
    rdx_bootstrap_t *bs = NULL;
    cr_assert_eq(rdx_bootstrap_create(&p, &bs), RDX_ERR_BOOTSTRAP);
    cr_assert(strstr(rdx_err_last(), "not an address of this machine"), "%s", rdx_err_last());
}

Test(bootstrap, root_port_in_use, .timeout = 5)
{
    /* Another listener owns the port: SO_REUSEADDR must not let rank 0 share it. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 1) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
    rdx_bootstrap_params_t p = {.rank = 0, .size = 2, .addr = addr, .job_key = KEY,
                                .ifname = "", .connect_timeout_ms = 200, .timeout_ms = 200};
    rdx_bootstrap_t *bs = NULL;
    cr_assert_eq(rdx_bootstrap_create(&p, &bs), RDX_ERR_BOOTSTRAP);
    cr_assert(strstr(rdx_err_last(), "Address already in use"), "%s", rdx_err_last());
    close(fd);
}

/* ---- wrong key, strangers, fake root ------------------------------------------------------ */

static void rank_wrong_key(job_t *job, int rank, result_t *res)
{
    rdx_bootstrap_t *bs = create_rank(job, rank, "not-the-key", res);
    rdx_bootstrap_destroy(bs);
}

static void rank_create_only(job_t *job, int rank, result_t *res)
{
    rdx_bootstrap_destroy(create_rank(job, rank, KEY, res));
}

/* Decision: root refuses the impostor and keeps waiting for the genuine rank 2, which never
 * comes; the impostor learns at once (RDX_ERR_BOOTSTRAP), the others at the deadline. */
Test(bootstrap, wrong_job_key_is_refused, .timeout = 10)
{
    job_t job;
    job_init(&job, 3, 1500, 1500);
    job_spawn(&job, rank_create_only, 0);
    job_spawn(&job, rank_create_only, 1);
    job_spawn(&job, rank_wrong_key, 2);
    job_wait(&job, 6000);
    const result_t *r0 = &job.sh->res[0], *r1 = &job.sh->res[1], *r2 = &job.sh->res[2];
    cr_assert_eq(r2->st, RDX_ERR_BOOTSTRAP, "%d %s", r2->st, r2->msg);
    cr_assert(strstr(r2->msg, "refused") && strstr(r2->msg, "wrong job key"), "%s", r2->msg);
    cr_assert(r2->create_ms < 1000, "impostor learned after %ld ms", r2->create_ms);
    cr_assert_eq(r0->st, RDX_ERR_TIMEOUT, "%d %s", r0->st, r0->msg);
    cr_assert(strstr(r0->msg, "ranks not connected: 2") && strstr(r0->msg, "refused"), "%s",
              r0->msg);
    /* The root is the arbiter: rank 1 hears its verdict, naming the missing rank. */
    cr_assert_eq(r1->st, RDX_ERR_TIMEOUT, "%d %s", r1->st, r1->msg);
    cr_assert(strstr(r1->msg, "root aborted") && strstr(r1->msg, "ranks not connected: 2"), "%s",
              r1->msg);
}

typedef enum {
    STRANGER_GARBAGE, STRANGER_HUGE_LEN, STRANGER_SILENT, STRANGER_HALF_HEADER,
    STRANGER_BAD_VERSION, STRANGER_BAD_MAC, STRANGER_CLOSE, STRANGER_COUNT
} stranger_t;

static int stranger_connect(const job_t *job, long limit_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)job->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    long deadline = rdx_net_now_ms() + limit_ms;
    while (rdx_net_now_ms() < deadline) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        close(fd);
        usleep(10000);
    }
    return -1;
}

/* Holds the connection until root closes it; returns when that happened (0: never). */
static long stranger_hold(int fd, long limit_ms)
{
    long deadline = rdx_net_now_ms() + limit_ms;
    uint8_t buf[256];
    for (long left; (left = deadline - rdx_net_now_ms()) > 0;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r <= 0)
            return rdx_net_now_ms();
    }
    return 0;
}

static void stranger_act(int fd, stranger_t kind, int size)
{
    uint8_t b[RDX_BS_HDR_LEN + RDX_BS_AUTH_LEN];
    ssize_t w = 0;
    switch (kind) {
    case STRANGER_GARBAGE:
        w = send(fd, "GET / HTTP/1.0\r\nHost: x\r\n\r\n", 27, MSG_NOSIGNAL);
        break;
    case STRANGER_HUGE_LEN:
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, 0xfffffff0u, b);
        w = send(fd, b, RDX_BS_HDR_LEN, MSG_NOSIGNAL);
        break;
    case STRANGER_HALF_HEADER:
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, RDX_BS_AUTH_LEN, b);
        w = send(fd, b, 6, MSG_NOSIGNAL);
        break;
    case STRANGER_BAD_VERSION:
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, RDX_BS_AUTH_LEN, b);
        b[5] = 9;
        w = send(fd, b, RDX_BS_HDR_LEN, MSG_NOSIGNAL);
        break;
    case STRANGER_BAD_MAC: {
        /* Speaks the protocol perfectly, claiming rank 1, but does not know the key. */
        rdx_bs_auth_t a = {.rank = 1, .size = (uint32_t)size};
        rdx_bs_hdr_encode(RDX_BS_MSG_AUTH, RDX_BS_AUTH_LEN, b);
        rdx_bs_auth_encode(&a, b + RDX_BS_HDR_LEN);
        w = send(fd, b, sizeof(b), MSG_NOSIGNAL);
        break;
    }
    case STRANGER_CLOSE:
    case STRANGER_SILENT:
    case STRANGER_COUNT:
        break;
    }
    (void)w;
}

static void run_stranger(job_t *job, int slot, stranger_t kind)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid != 0) {
        job->pids[job->npids++] = pid;
        return;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = stranger_connect(job, 3000);
    if (fd < 0)
        _exit(3);
    job->sh->stranger_connected_ms[slot] = rdx_net_now_ms();
    __atomic_add_fetch(&job->sh->strangers_connected, 1, __ATOMIC_SEQ_CST);
    if (kind == STRANGER_CLOSE) {
        close(fd);
        _exit(0);
    }
    stranger_act(fd, kind, job->size);
    job->sh->stranger_closed_ms[slot] = stranger_hold(fd, 6000);
    _exit(0);
}

Test(bootstrap, strangers_do_not_disturb_genuine_ranks, .timeout = 20)
{
    job_t job;
    job_init(&job, 3, 5000, 5000);
    job_spawn(&job, rank_genuine, 0);
    for (int k = 0; k < STRANGER_COUNT; k++)
        run_stranger(&job, k, (stranger_t)k);
    long t0 = rdx_net_now_ms();
    while (__atomic_load_n(&job.sh->strangers_connected, __ATOMIC_SEQ_CST) < STRANGER_COUNT &&
           rdx_net_now_ms() - t0 < 4000)
        usleep(2000);
    cr_assert_eq(job.sh->strangers_connected, STRANGER_COUNT);
    long genuine_start = rdx_net_now_ms();
    job_spawn(&job, rank_genuine, 1);
    job_spawn(&job, rank_genuine, 2);
    job_wait(&job, 12000);
    assert_all_ok(&job);

    /* The silent stranger would hold a slot for 2 s: the genuine ranks finished first. */
    for (int r = 1; r < 3; r++)
        cr_assert(job.sh->res[r].create_ms < 1500, "rank %d rendezvous took %ld ms", r,
                  job.sh->res[r].create_ms);
    /* Every misbehaving stranger was cut off; garbage at once, not at the deadline. */
    for (int k = 0; k < STRANGER_COUNT; k++) {
        if (k == STRANGER_CLOSE)
            continue;
        long closed = job.sh->stranger_closed_ms[k];
        cr_assert(closed > 0, "stranger %d never disconnected by root", k);
        if (k != STRANGER_SILENT && k != STRANGER_HALF_HEADER)
            cr_assert(closed - job.sh->stranger_connected_ms[k] < 1000,
                      "stranger %d dropped after %ld ms", k,
                      closed - job.sh->stranger_connected_ms[k]);
    }
    cr_assert(job.sh->res[1].create_ms + genuine_start < job.sh->stranger_closed_ms[STRANGER_SILENT] + 100);
}

/* Listens on the job's port, accepts one client, sends HELLO and reads its AUTH; returns
 * the connection, or -1. */
static int fake_root_hello(const job_t *job)
{
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)job->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4) != 0)
        return -1;
    int fd = accept(lfd, NULL, NULL);
    close(lfd);
    uint8_t b[RDX_BS_HDR_LEN + RDX_BS_AUTH_LEN] = {0};
    rdx_bs_hdr_encode(RDX_BS_MSG_HELLO, RDX_BS_NONCE_LEN, b);
    if (send(fd, b, RDX_BS_HDR_LEN + RDX_BS_NONCE_LEN, MSG_NOSIGNAL) < 0 ||
        recv(fd, b, sizeof(b), MSG_WAITALL) != (ssize_t)sizeof(b)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A listener that speaks the protocol but cannot prove the key: clients must refuse it. */
static void fake_root(job_t *job, int rank, result_t *res)
{
    (void)rank;
    int fd = fake_root_hello(job);
    if (fd < 0)
        return;
    uint8_t b[RDX_BS_HDR_LEN + RDX_BS_MAC_LEN] = {0};
    rdx_bs_hdr_encode(RDX_BS_MSG_AUTH_OK, RDX_BS_MAC_LEN, b); /* MAC: whatever follows */
    ssize_t io = send(fd, b, sizeof(b), MSG_NOSIGNAL);
    (void)io;
    res->st = RDX_SUCCESS;
    stranger_hold(fd, 3000);
}

/* A rank 0 that dies between its hello and its answer (the fault.kill_in_init race). */
static void dying_root(job_t *job, int rank, result_t *res)
{
    (void)rank;
    int fd = fake_root_hello(job);
    if (fd < 0)
        return;
    res->st = RDX_SUCCESS;
    close(fd);
}

/* Rank 1 connects to a rank 0 played by `root`; returns rank 1's result, which must come
 * quickly (well before the 3 s deadlines). */
static const result_t *client_against(job_t *job, rank_fn_t root)
{
    job_init(job, 2, 3000, 3000);
    job_spawn(job, root, 0);
    job_spawn(job, rank_create_only, 1);
    job_wait(job, 8000);
    const result_t *r1 = &job->sh->res[1];
    cr_assert(r1->create_ms < 2000, "took %ld ms", r1->create_ms);
    return r1;
}

Test(bootstrap, client_refuses_root_without_the_key, .timeout = 10)
{
    job_t job;
    const result_t *r1 = client_against(&job, fake_root);
    cr_assert_eq(r1->st, RDX_ERR_BOOTSTRAP, "%d %s", r1->st, r1->msg);
    cr_assert(strstr(r1->msg, "failed to prove"), "%s", r1->msg);
}

Test(bootstrap, root_dying_mid_handshake_is_peer_lost, .timeout = 10)
{
    job_t job;
    const result_t *r1 = client_against(&job, dying_root);
    cr_assert_eq(r1->st, RDX_ERR_PEER_LOST, "%d %s", r1->st, r1->msg);
    cr_assert(strstr(r1->msg, "rank 1: bootstrap connect to peer 0 (rendezvous at") &&
                  strstr(r1->msg, "authentication: connection closed by peer"),
              "%s", r1->msg);
}

/* ---- collective failures ------------------------------------------------------------------ */

static void rank_late(job_t *job, int rank, result_t *res)
{
    /* Rank 2 joins the rendezvous but never calls the allgather. */
    rdx_bootstrap_t *bs = create_rank(job, rank, KEY, res);
    if (bs == NULL)
        return;
    uint64_t mine = (uint64_t)rank, all[3];
    if (rank != 2) {
        long t0 = rdx_net_now_ms();
        record(res, rdx_bootstrap_allgather(bs, &mine, sizeof(mine), all));
        res->create_ms = rdx_net_now_ms() - t0; /* reused: duration of the allgather */
    } else {
        usleep(1500 * 1000);
    }
    rdx_bootstrap_destroy(bs);
}

Test(bootstrap, collective_timeout_names_missing_rank, .timeout = 10)
{
    job_t job;
    job_init(&job, 3, 3000, 500);
    for (int r = 0; r < 3; r++)
        job_spawn(&job, rank_late, r);
    job_wait(&job, 8000);
    const result_t *r0 = &job.sh->res[0], *r1 = &job.sh->res[1];
    cr_assert_eq(r0->st, RDX_ERR_TIMEOUT, "%d %s", r0->st, r0->msg);
    cr_assert(strstr(r0->msg, "rank 0: bootstrap allgather") &&
                  strstr(r0->msg, "ranks not arrived: 2"),
              "%s", r0->msg);
    cr_assert(r0->create_ms >= 500 && r0->create_ms < 1500, "%ld ms", r0->create_ms);
    cr_assert_eq(r1->st, RDX_ERR_TIMEOUT, "%d %s", r1->st, r1->msg);
    cr_assert(strstr(r1->msg, "rank 1: bootstrap allgather: peer 0: root aborted") &&
                  strstr(r1->msg, "ranks not arrived: 2"),
              "%s", r1->msg);
}

static void rank_dies(job_t *job, int rank, result_t *res)
{
    /* Rank 2 leaves right after the rendezvous; the others then call an allgather. */
    rdx_bootstrap_t *bs = create_rank(job, rank, KEY, res);
    if (bs == NULL)
        return;
    if (rank == 2) {
        rdx_bootstrap_destroy(bs);
        return;
    }
    uint64_t mine = (uint64_t)rank, all[3];
    record(res, rdx_bootstrap_allgather(bs, &mine, sizeof(mine), all));
    /* Once broken, the bootstrap says so instead of hanging. */
    res->st2 = rdx_bootstrap_barrier(bs);
    rdx_bootstrap_destroy(bs);
}

Test(bootstrap, lost_rank_is_named, .timeout = 10)
{
    job_t job;
    job_init(&job, 3, 3000, 3000);
    for (int r = 0; r < 3; r++)
        job_spawn(&job, rank_dies, r);
    job_wait(&job, 8000);
    const result_t *r0 = &job.sh->res[0], *r1 = &job.sh->res[1];
    cr_assert_eq(r0->st, RDX_ERR_PEER_LOST, "%d %s", r0->st, r0->msg);
    cr_assert(strstr(r0->msg, "rank 0: bootstrap allgather: peer 2"), "%s", r0->msg);
    /* Rank 1 hears it from the root at once, with the cause. */
    cr_assert_eq(r1->st, RDX_ERR_PEER_LOST, "%d %s", r1->st, r1->msg);
    cr_assert(strstr(r1->msg, "root aborted") && strstr(r1->msg, "peer 2"), "%s", r1->msg);
    cr_assert_eq(r0->st2, RDX_ERR_PEER_LOST);
    cr_assert_eq(r1->st2, RDX_ERR_PEER_LOST);
}

static void rank_mismatch(job_t *job, int rank, result_t *res)
{
    rdx_bootstrap_t *bs = create_rank(job, rank, KEY, res);
    if (bs == NULL)
        return;
    uint32_t v = 7, all[2];
    if (rank == 1)
        record(res, rdx_bootstrap_bcast(bs, &v, sizeof(v), 1));
    else
        record(res, rdx_bootstrap_allgather(bs, &v, sizeof(v), all));
    rdx_bootstrap_destroy(bs);
}

Test(bootstrap, mismatched_collectives_are_detected, .timeout = 10)
{
    job_t job;
    job_init(&job, 2, 3000, 3000);
    job_spawn(&job, rank_mismatch, 0);
    job_spawn(&job, rank_mismatch, 1);
    job_wait(&job, 8000);
    const result_t *r0 = &job.sh->res[0];
    cr_assert_eq(r0->st, RDX_ERR_MISMATCH, "%d %s", r0->st, r0->msg);
    cr_assert(strstr(r0->msg, "received bcast, expected allgather"), "%s", r0->msg);
}
